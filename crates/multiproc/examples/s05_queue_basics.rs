//! # S5 — a bounded queue and the calls that never wait
//!
//! The tutorial's first queue program: `Queue(3)` holds at most three items. Three puts
//! fill it; a fourth `put_nowait` fails instead of waiting; three gets come out in the
//! order they went in (FIFO); a `get_nowait` on the empty queue fails instead of waiting.
//!
//! ```python
//! from multiprocessing import Queue # a process queue, not queue.Queue
//! q=Queue(3) # a queue of at most 3 items
//! #put ,get ,put_nowait,get_nowait,full,empty
//! q.put(3)   # add an item
//! q.put(2)
//! q.put(1)
//! # q.put(4)   # the queue is full: this would wait until someone takes an item — for ever
//! try:
//!     q.put_nowait(4) # never waits: fails because the queue is full
//! except: # so catch the error; the program goes on, but the item is lost
//!     print('队列已经满了')
//! print(q.full()) # True when full
//! print(q.get())  # take an item
//! print(q.get())
//! print(q.get())
//! # print(q.get()) # like put: on an empty queue this waits for ever
//! try:
//!     q.get_nowait(3) # never waits: fails because there is nothing to take
//! except:
//!     print('队列已经空了')
//! print(q.empty()) # empty now
//! ```
//!
//! What to watch for: "the queue is full", `true`, 3 2 1, "the queue is empty", `true`.
//!
//! How ours differs: `put_nowait`/`get_nowait` are `try_put`/`try_get`, and their errors
//! say exactly what happened — `TryPutError::Full(item)` hands the refused item back, so
//! nothing is lost; `TryGetError::Empty`. We match on those instead of a bare `except:`,
//! which in the seed also hides a bug: `q.get_nowait(3)` is a `TypeError` (`get_nowait`
//! takes no argument), caught and reported as "empty". `full()`/`empty()` are
//! `is_full()`/`is_empty()`: snapshots, as in Python. The queue is typed: `Queue<i32>`.
use std::error::Error;

use multiproc::queue::{TryGetError, TryPutError};
use multiproc::Queue;

pub fn main() -> Result<(), Box<dyn Error>> {
    let q: Queue<i32> = Queue::bounded(3)?;
    q.put(3)?;
    q.put(2)?;
    q.put(1)?;
    // q.put(4)? would wait here until someone takes an item: for ever.
    if let Err(TryPutError::Full(_four)) = q.try_put(4) {
        println!("the queue is full");
    }
    println!("{}", q.is_full());
    println!("{}", q.get()?);
    println!("{}", q.get()?);
    println!("{}", q.get()?);
    // q.get()? would wait here for ever.
    if let Err(TryGetError::Empty) = q.try_get() {
        println!("the queue is empty");
    }
    println!("{}", q.is_empty());
    Ok(())
}
