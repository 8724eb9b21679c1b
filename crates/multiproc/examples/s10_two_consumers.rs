//! # S10 — one producer, two consumers, sentinels from `main`
//!
//! The end signal need not come from the producer: here `main` joins the producer and then
//! puts one `None` per consumer — each consumer takes exactly one and stops.
//!
//! ```python
//! import time
//! import random
//! from multiprocessing import Process,Queue
//! def producer(q):
//!     for i in range(1,10): # not put(0): `if not food` would stop a consumer on it
//!         time.sleep(random.random())
//!         food = '泔水%s'%i
//!         print('%s生产了%s'%('taibai',food))
//!         q.put(food)
//! def consumer(q,name):
//!     while True:
//!         food = q.get()   # food, or None
//!         if not food : break
//!         time.sleep(random.uniform(1,2))
//!         print('%s 吃了 %s'%(name,food))
//! if __name__ == '__main__':
//!     q = Queue()
//!     p1 = Process(target=producer,args=(q,))
//!     p1.start()
//!     c1 = Process(target=consumer,args=(q,'alex'))
//!     c1.start()
//!     c2 = Process(target=consumer,args=(q,'wusir'))
//!     c2.start()
//!     p1.join()  # wait for p1 to finish
//!     q.put(None) # one None per consumer (each loops `while True`), or one is left behind
//!     q.put(None)
//! ```
//!
//! What to watch for: the nine servings (泔水, "swill") are each eaten once, by alex or
//! wusir, and the program ends.
//!
//! How ours differs: `Option<String>` items, `None` the sentinel, as in S9; the test is
//! `is None`, not Python's `if not food`, so an empty string would not stop anyone. The
//! sleeps are up to 0.1 s and 10–20 ms. With more consumers, counting sentinels gets
//! clumsy: S11 shows it, S11b closes the queue instead.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::{Process, Queue};

fn producer(q: Queue<Option<String>>) {
    for i in 1..10 {
        std::thread::sleep(random_ms(0, 100));
        let food = format!("swill {i}");
        println!("taibai made {food}");
        q.put(Some(food)).unwrap();
    }
}

fn consumer(q: Queue<Option<String>>, name: &str) {
    while let Some(food) = q.get().unwrap() {
        std::thread::sleep(random_ms(10, 20));
        println!("{name} ate {food}");
    }
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    let (qp, q1, q2) = (q.clone(), q.clone(), q.clone()); // a handle for each child
    let p1 = Process::fork(move || producer(qp))?;
    Process::fork(move || consumer(q1, "alex"))?;
    Process::fork(move || consumer(q2, "wusir"))?;
    p1.join()?; // wait for p1 to finish
    q.put(None)?; // one None per consumer
    q.put(None)?;
    Ok(())
}

/// `random.uniform(a, b)` seconds, as `a..b` ms (std has no random numbers, but every
/// hasher it builds gets a random key; the pid makes it differ between forked children).
fn random_ms(a: u64, b: u64) -> Duration {
    let r = std::hash::RandomState::new().hash_one(std::process::id());
    Duration::from_millis(a + r % (b - a).max(1))
}
