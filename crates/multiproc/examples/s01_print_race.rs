//! # S1 — five processes print, without a lock
//!
//! The tutorial's first program (section 一, 案例1): five processes each print a "running"
//! line, sleep a random while and print a "done" line. Nothing orders them, so the lines of
//! different processes interleave: one process's "done" is not right after its "running".
//!
//! ```python
//! import os
//! import time
//! import random
//! from multiprocessing import Process
//! def work(n):
//!     print('%s: %s is running' %(n,os.getpid()))
//!     time.sleep(random.random())
//!     print('%s:%s is done' %(n,os.getpid()))
//! if __name__ == '__main__':
//!     for i in range(5):
//!         p=Process(target=work,args=(i,))
//!         p.start()
//! # 0: 9560 is running
//! # 2: 13824 is running
//! # 1: 7476 is running
//! # ...
//! # 2:13824 is done
//! # 1:7476 is done
//! ```
//!
//! What to watch for: run it a few times (`cargo run --example s01_print_race`); the order
//! changes from run to run, and the "done" lines come in another order than the "running"
//! ones. S2 (`s02_print_lock.rs`) fixes the second problem with a lock; the first (which
//! process starts first) is the scheduler's business and stays.
//!
//! How ours differs: `Process::fork` creates and starts the child in one call, running a
//! closure, so `args=(i,)` becomes `move || work(i)`. As in Python, `main` does not join:
//! when it returns, multiproc waits for the children it started. The sleep is up to 0.1 s
//! instead of up to 1 s.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::Process;

fn work(n: u32) {
    println!("{n}: {} is running", std::process::id());
    std::thread::sleep(random_ms(100));
    println!("{n}:{} is done", std::process::id());
}

pub fn main() -> Result<(), Box<dyn Error>> {
    for i in 0..5 {
        Process::fork(move || work(i))?;
    }
    Ok(())
}

/// `random.random()` seconds, scaled to `0..max` ms (std has no random numbers, but every
/// hasher it builds gets a random key; the pid makes it differ between forked children).
fn random_ms(max: u64) -> Duration {
    Duration::from_millis(std::hash::RandomState::new().hash_one(std::process::id()) % max)
}
