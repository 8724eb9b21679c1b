//! # S12 — `JoinableQueue`: producers that wait until their items are processed
//!
//! Three producers put ten items each and then `join()` the queue: that returns only once
//! every item put has been marked done by a consumer (`task_done()`). The two consumers loop
//! for ever, but they are daemons: when `main` — having joined the producers, so knowing
//! that everything was processed — ends, they end with it.
//!
//! ```python
//! from multiprocessing import Process,JoinableQueue
//! import time,random,os
//! def consumer(q):
//!     while True:
//!         res=q.get()
//!         # time.sleep(random.randint(1,3))
//!         time.sleep(random.random())
//!         print('\033[45m%s 吃 %s\033[0m' %(os.getpid(),res))
//!         q.task_done() # tell q.join() one more item has been taken and processed
//!
//! def producer(name,q):
//!     for i in range(10):
//!         # time.sleep(random.randint(1,3))
//!         time.sleep(random.random())
//!         res='%s%s' %(name,i)
//!         q.put(res)
//!         print('\033[44m%s 生产了 %s\033[0m' %(os.getpid(),res))
//!     print('%s生产结束'%name)
//!     q.join() # done producing: wait until every item in the queue has been processed
//!     print('%s生产结束~~~~~~'%name)
//!
//! if __name__ == '__main__':
//!     q=JoinableQueue()
//!     # the producers: the cooks
//!     p1=Process(target=producer,args=('包子',q))
//!     p2=Process(target=producer,args=('骨头',q))
//!     p3=Process(target=producer,args=('泔水',q))
//!
//!     # the consumers: the eaters
//!     c1=Process(target=consumer,args=(q,))
//!     c2=Process(target=consumer,args=(q,))
//!     c1.daemon=True # without it main could not end; with it, main must join the
//!     c2.daemon=True # producers, so that everything is processed before the daemons go
//!
//!     # go
//!     p_l=[p1,p2,p3,c1,c2]
//!     for p in p_l:
//!         p.start()
//!
//!     p1.join() # the producers' end means all their items have been processed
//!     p2.join()
//!     p3.join()
//!     print('主')
//!     # main waits for p1, p2, p3, which wait for c1, c2: once p1..p3 have ended, c1 and c2
//!     # have processed everything and have no reason to live, so as daemons they end
//!     # with main
//! ```
//!
//! What to watch for: each producer says "done producing" as soon as it has put its ten
//! items, but "done producing~~~~~~" only after the consumers have processed everything
//! put so far; "main" comes after all thirty "ate" lines; then the program ends, its
//! daemon consumers with it (包子 bun, 骨头 bone, 泔水 swill).
//!
//! How ours differs: `c1.daemon=True` before `start()` is `Process::builder().daemon(true)`
//! before `fork`. A daemon is terminated when its parent ends — at normal exit, and even
//! when the parent is SIGKILLed (the kernel's parent-death signal), so a crash leaves no
//! orphans either. `task_done()` returns an error when there was no item taken to mark
//! (Python's `ValueError`). The sleeps are up to 20 ms instead of up to 1 s.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::{JoinableQueue, Process};

fn consumer(q: JoinableQueue<String>) -> ! {
    loop {
        let res = q.get().unwrap();
        std::thread::sleep(random_ms(20));
        println!("{} ate {res}", std::process::id());
        q.task_done().unwrap(); // one more item taken and processed
    }
}

fn producer(name: &str, q: JoinableQueue<String>) {
    for i in 0..10 {
        std::thread::sleep(random_ms(20));
        let res = format!("{name}{i}");
        q.put(res.clone()).unwrap();
        println!("{} made {res}", std::process::id());
    }
    println!("{name}: done producing");
    q.join(); // wait until every item in the queue has been processed
    println!("{name}: done producing~~~~~~");
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = JoinableQueue::new()?;
    let mut producers = Vec::new();
    for name in ["bun", "bone", "swill"] {
        let q = q.clone();
        producers.push(Process::fork(move || producer(name, q))?);
    }
    for _ in 0..2 {
        let q = q.clone();
        Process::builder().daemon(true).fork(move || consumer(q))?;
    }
    for p in &producers {
        p.join()?;
    }
    println!("main");
    Ok(())
}

/// `random.random()` seconds, scaled to `0..max` ms (std has no random numbers, but every
/// hasher it builds gets a random key; the pid makes it differ between forked children).
fn random_ms(max: u64) -> Duration {
    Duration::from_millis(std::hash::RandomState::new().hash_one(std::process::id()) % max)
}
