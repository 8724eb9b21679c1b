from multiprocessing import Process,Queue
import random
import time
def producer(name,q):
    for i in range(1,7):
        time.sleep(random.random())
        data= 'data  %s'%i
        q.put(data)
        print('生产者 %s 生产了数据: %s'%(name,data))
def consumer(name,q):
    while 1:
        data= q.get()
        if data is None:
            print('\033[31;1m %s 消费完了 \033[0m'%name)
            break
        print('消费者 %s 收到数据: %s'%(name,data))
if __name__ =='__main__':
    q=Queue()
    pro_name=['alex','wusir','wang']
    con_name=['aaa','bb','c','ddd']
    pro_lis=[]
    for i in pro_name:
        p=Process(target=producer,args=(i,q))
        p.start()
        pro_lis.append(p)
    for i in con_name:
        p=Process(target=consumer,args=(i,q))
        p.start()
    for i in pro_lis:
        i.join()
    for i in range(len(con_name)):
        q.put(None)
