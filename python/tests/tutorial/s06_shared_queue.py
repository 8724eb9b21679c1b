import time
from multiprocessing import Process, Queue
def f(q):
    q.put('姑娘,多少钱~')
    print(q.qsize())
def f2(q):
    print('》》》》》》》》')
    print(q.get())
if __name__ == '__main__':
    q = Queue()
    q.put('小鬼')
    p = Process(target=f, args=(q,))
    p2 = Process(target=f2, args=(q,))
    p.start()
    p2.start()
    print(q.qsize())
    time.sleep(1)
    print(q.get())
    p.join()
