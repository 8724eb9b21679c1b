//! # S9 — stop by sentinel
//!
//! S8 (`s08_endless_consumer.rs`) fixed the way the tutorial fixes it: when the producer
//! has made its buns it puts an end signal, `None`, and the consumer stops when it gets it.
//!
//! ```python
//! from multiprocessing import Process,Queue
//! import time,random,os
//! def consumer(q):
//!     while True:
//!         res=q.get()
//!         if res is None:break # the end signal: stop
//!         time.sleep(random.randint(1,3))
//!         print('\033[45m%s 吃 %s\033[0m' %(os.getpid(),res))
//! def producer(q):
//!     for i in range(1,5):
//!         time.sleep(random.randint(1,3))
//!         res='包子%s' %i
//!         q.put(res)
//!         print('\033[44m%s 生产了 %s\033[0m' %(os.getpid(),res))
//!     q.put(None) # the end signal, last thing the producer does
//! if __name__ == '__main__':
//!     q=Queue()
//!     p1=Process(target=producer,args=(q,))
//!     c1=Process(target=consumer,args=(q,))
//!     p1.start()
//!     c1.start()
//!     print('主')
//! # the end signal need not come from the producer: main can send it too, but only after
//! # the producer has finished
//! ```
//!
//! What to watch for: four buns made, four eaten, in order, and the program ends.
//!
//! How ours differs: a queue of `Option<String>`: the buns are `Some(..)`, the sentinel is
//! `None`, and `while let Some(res) = q.get().unwrap()` is the loop with its `break` (a
//! child has no caller to hand an error to, so it panics on one, as an uncaught Python
//! exception would end it). The sleeps are 10–30 ms. Closing the queue (S11b) stops the
//! consumer without a sentinel.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::{Process, Queue};

fn consumer(q: Queue<Option<String>>) {
    while let Some(res) = q.get().unwrap() {
        std::thread::sleep(randint_10ms(1, 3));
        println!("{} ate {res}", std::process::id());
    }
}

fn producer(q: Queue<Option<String>>) {
    for i in 1..5 {
        std::thread::sleep(randint_10ms(1, 3));
        let res = format!("bun {i}");
        q.put(Some(res.clone())).unwrap();
        println!("{} made {res}", std::process::id());
    }
    q.put(None).unwrap();
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    Process::fork({
        let q = q.clone();
        move || producer(q)
    })?;
    Process::fork(move || consumer(q))?;
    println!("main");
    Ok(())
}

/// `random.randint(a, b)` seconds, in units of 10 ms.
fn randint_10ms(a: u64, b: u64) -> Duration {
    let r = std::hash::RandomState::new().hash_one(std::process::id());
    Duration::from_millis(10 * (a + r % (b - a + 1)))
}
