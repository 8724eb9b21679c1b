import os
import time
import random
from multiprocessing import Process
def work(n):
    print('%s: %s is running' %(n,os.getpid()))
    time.sleep(random.random())
    print('%s:%s is done' %(n,os.getpid()))
if __name__ == '__main__':
    for i in range(5):
        p=Process(target=work,args=(i,))
        p.start()
