//! # S7 — nine producers, ten consumers, a queue of three
//!
//! Nine processes each put one line "pid(put):time"; ten processes each take one and print
//! it; the queue holds at most three at a time, so producers wait for consumers too. Each
//! item is taken by exactly one consumer ("the queue is process-safe").
//!
//! ```python
//! import os
//! import time
//! import multiprocessing
//! # puts into the queue
//! def inputQ(queue):
//!     info = str(os.getpid()) + '(put):' + str(time.asctime())
//!     queue.put(info)
//! # takes from the queue
//! def outputQ(queue):
//!     info = queue.get()
//!     print ('%s%s\033[32m%s\033[0m'%(str(os.getpid()), '(get):',info))
//! # Main
//! if __name__ == '__main__':
//!     # needed on Windows when starting many processes
//!     multiprocessing.freeze_support()
//!     record1 = []   # store input processes
//!     record2 = []   # store output processes
//!     queue = multiprocessing.Queue(3)
//!     # producers
//!     for i in range(1,10):
//!         process = multiprocessing.Process(target=inputQ,args=(queue,))
//!         process.start()
//!         record1.append(process)
//!     # consumers
//!     for i in range(10):
//!         process = multiprocessing.Process(target=outputQ,args=(queue,))
//!         process.start()
//!         record2.append(process)
//!     for p in record1:
//!         p.join()
//!     for p in record2:
//!         p.join()
//! ```
//!
//! What to watch for: nine "(get):" lines, each with a different "(put):" pid. Nine items
//! for ten consumers: in the seed the tenth consumer waits in `get()` for ever, and so does
//! `main`, joining it — the program never ends.
//!
//! How ours differs: after the producers are done and the nine items taken, `main` shows
//! who is still waiting and then closes the queue. `close()` wakes every consumer blocked
//! in `get()` with `Err(GetError::Closed)` (a Python `close()` does not: it only stops this
//! process from putting), so the tenth consumer says so and ends, and the program too.
//! `time.asctime()` is the time in seconds since 1970.
use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use multiproc::queue::GetError;
use multiproc::{Process, Queue};

fn input_q(queue: Queue<String>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let info = format!("{}(put):{:.3}", std::process::id(), now.as_secs_f64());
    queue.put(info).unwrap();
}

fn output_q(queue: Queue<String>) {
    match queue.get() {
        Ok(info) => println!("{}(get):{info}", std::process::id()),
        Err(GetError::Closed) => println!("{}(get): closed, nothing for me", std::process::id()),
        Err(e) => panic!("{e}"),
    }
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let queue = Queue::bounded(3)?;
    let mut record1 = Vec::new(); // the producers
    let mut record2 = Vec::new(); // the consumers
    for _ in 1..10 {
        let queue = queue.clone();
        record1.push(Process::fork(move || input_q(queue))?);
    }
    for _ in 0..10 {
        let queue = queue.clone();
        record2.push(Process::fork(move || output_q(queue))?);
    }
    for p in &record1 {
        p.join()?;
    }
    // Python would now wait for ever on the tenth consumer. Let the nine items be taken,
    // show who is left waiting, then close the queue.
    while !queue.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let waiting = record2.iter().filter(|p| p.is_alive()).count();
    println!("{waiting} consumer(s) still waiting in get() after 0.2 s: closing the queue");
    queue.close();
    for p in &record2 {
        p.join()?;
    }
    Ok(())
}
