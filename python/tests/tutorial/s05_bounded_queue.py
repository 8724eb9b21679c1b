from multiprocessing import Queue
q=Queue(3)
q.put(3)
q.put(2)
q.put(1)
try:
    q.put_nowait(4)
except:
    print('队列已经满了')
print(q.full())
print(q.get())
print(q.get())
print(q.get())
try:
    q.get_nowait(3)  # (sic: a TypeError, caught like Empty by the bare except)
except:
    print('队列已经空了')
print(q.empty())
