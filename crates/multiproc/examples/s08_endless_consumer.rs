//! # S8 — a consumer that never stops
//!
//! The producer–consumer model with no stop signal: one producer makes nine buns and ends;
//! the consumer loops on `get()` for ever. Once the buns are eaten it waits in `get()` for
//! a tenth that never comes, so the program never ends.
//!
//! ```python
//! from multiprocessing import Process,Queue
//! import time,random,os
//! def consumer(q):
//!     while True:
//!         res=q.get()
//!         time.sleep(random.randint(1,3))
//!         print('\033[45m%s 吃 %s\033[0m' %(os.getpid(),res))
//! def producer(q):
//!     for i in range(1,10):
//!         time.sleep(random.randint(1,3))
//!         res='包子%s' %i
//!         q.put(res)
//!         print('\033[44m%s 生产了 %s\033[0m' %(os.getpid(),res))
//! if __name__ == '__main__':
//!     q=Queue()
//!     # the producers: the cooks
//!     p1=Process(target=producer,args=(q,))
//!     # the consumers: the eaters
//!     c1=Process(target=consumer,args=(q,))
//!     p1.start() # go
//!     c1.start()
//!     print('主')  # but the while-True child never ends, so neither does main: the producer
//!                  # ends when it is done, the consumer empties q and then hangs in q.get()
//! ```
//!
//! What to watch for: nine "made" and nine "ate" lines (包子 is a bun, 吃 is ate), then
//! nothing: the consumer is still there, waiting.
//!
//! How ours differs: rather than hang, `main` waits for the consumer a bounded while
//! (`join_timeout`), says it is still blocked, and terminates it (SIGTERM: exit code -15,
//! as Python's `exitcode`). The next scenarios stop the consumer properly: S9 with a
//! sentinel, S11b by closing the queue. The sleeps are 10–30 ms instead of 1–3 s.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::{Process, Queue};

fn consumer(q: Queue<String>) -> ! {
    loop {
        let res = q.get().unwrap();
        std::thread::sleep(randint_10ms(1, 3));
        println!("{} ate {res}", std::process::id());
    }
}

fn producer(q: Queue<String>) {
    for i in 1..10 {
        std::thread::sleep(randint_10ms(1, 3));
        let res = format!("bun {i}");
        q.put(res.clone()).unwrap();
        println!("{} made {res}", std::process::id());
    }
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    let p1 = Process::fork({
        let q = q.clone();
        move || producer(q)
    })?;
    let c1 = Process::fork({
        let q = q.clone();
        move || consumer(q)
    })?;
    println!("main");
    // The seed ends here and never exits. Wait for the buns to be eaten, then show it.
    p1.join()?;
    while !q.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    if c1.join_timeout(Duration::from_secs(1)).is_err() {
        println!("the consumer is still waiting in get() 1 s after the last bun: terminating it");
        c1.terminate()?;
    }
    let _ = c1.join(); // Err: it was killed
    println!("consumer exitcode: {}", c1.exitcode().unwrap_or(0));
    Ok(())
}

/// `random.randint(a, b)` seconds, in units of 10 ms (std has no random numbers, but every
/// hasher it builds gets a random key; the pid makes it differ between forked children).
fn randint_10ms(a: u64, b: u64) -> Duration {
    let r = std::hash::RandomState::new().hash_one(std::process::id());
    Duration::from_millis(10 * (a + r % (b - a + 1)))
}
