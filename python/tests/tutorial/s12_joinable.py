from multiprocessing import Process,JoinableQueue
import time,random,os
def consumer(q):
    while True:
        res=q.get()
        time.sleep(random.random())
        print('\033[45m%s 吃 %s\033[0m' %(os.getpid(),res))
        q.task_done()
def producer(name,q):
    for i in range(10):
        time.sleep(random.random())
        res='%s%s' %(name,i)
        q.put(res)
        print('\033[44m%s 生产了 %s\033[0m' %(os.getpid(),res))
    print('%s生产结束'%name)
    q.join()
    print('%s生产结束~~~~~~'%name)
if __name__ == '__main__':
    q=JoinableQueue()
    p1=Process(target=producer,args=('包子',q))
    p2=Process(target=producer,args=('骨头',q))
    p3=Process(target=producer,args=('泔水',q))
    c1=Process(target=consumer,args=(q,))
    c2=Process(target=consumer,args=(q,))
    # The seed's listing sets only c2.daemon (c1 would keep the program alive forever); its
    # text says both consumers are daemons ("daemon children die with the parent").
    c1.daemon=True
    c2.daemon=True
    p_l=[p1,p2,p3,c1,c2]
    for p in p_l:
        p.start()
    p1.join()
    p2.join()
    p3.join()
    print('主')
