//! # S6 — one queue, several processes
//!
//! The queue made in `main` is handed to two children: `f` puts an item and prints the
//! size, `f2` takes one; `main` takes one too. Every item is received once, by someone.
//!
//! ```python
//! import time
//! from multiprocessing import Process, Queue
//! def f(q):
//!     # q = Queue() # 9. a new queue made here would not be the one main made
//!     q.put('姑娘,多少钱~')  # 4. put into the queue passed from main
//!     print(q.qsize()) # 6. how many items now: 2, sometimes 1
//! def f2(q):
//!     print('》》》》》》》》')
//!     print(q.get())  # 5. take an item
//! if __name__ == '__main__':
//!     q = Queue() # 1. make a queue
//!     q.put('小鬼')
//!     p = Process(target=f, args=(q,)) # 2. a process
//!     p2 = Process(target=f2, args=(q,)) # 3. another
//!     p.start()
//!     p2.start()
//!     print(q.qsize())
//!     time.sleep(1) # 7. without it, main may run so early that f sees a size of 1
//!     print(q.get()) # "姑娘,多少钱~"
//!     p.join()
//! # so a queue shares data between processes
//! ```
//!
//! What to watch for: the sizes printed vary from run to run (they are snapshots), and
//! which process gets which item too; but each of the two items is printed exactly once.
//!
//! How ours differs: the queue is handed to a child by cloning the handle into its closure
//! (a handle to the same shared queue, not a copy of the items). `qsize()` is `len()`. The
//! sleep is 0.1 s. `p2` is not joined, as in the seed: `main` waits for it on return.
use std::error::Error;
use std::time::Duration;

use multiproc::{Process, Queue};

fn f(q: Queue<String>) {
    q.put("how much?".to_string()).unwrap();
    println!("{}", q.len());
}

fn f2(q: Queue<String>) {
    println!(">>>>>>>>");
    println!("{}", q.get().unwrap());
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    q.put("little ghost".to_string())?;
    let p = Process::fork({
        let q = q.clone();
        move || f(q)
    })?;
    let _p2 = Process::fork({
        let q = q.clone();
        move || f2(q)
    })?;
    println!("{}", q.len());
    std::thread::sleep(Duration::from_millis(100));
    println!("{}", q.get()?);
    p.join()?;
    Ok(())
}
