//! # S11b — the same, closing the queue instead of counting sentinels
//!
//! S11 (`s11_sentinels.rs`) without the sentinels: once every producer has been joined,
//! `main` closes the queue. Each consumer's loop then ends by itself after the queue is
//! drained — however many consumers there are, and without `None` mixed into the data.
//! Not a program of the tutorial: it is what this library offers in place of the "very low
//! way" that the tutorial complains about.
//!
//! ```python
//! # S11's program, with main ending
//!     for i in pro_lis:
//!         i.join()
//!     q.close()  # in Python this only stops *this* process from putting: the consumers
//!                # blocked in q.get() would wait for ever
//! ```
//!
//! What to watch for: the same 18 items, each received once, and all four consumers done.
//!
//! How ours differs: `Queue::close` ends the stream for every process that holds the
//! queue: items already put are still delivered, then `get()` fails with `Closed` and
//! `for data in &q` ends. The producer is S11's own (this file includes it as a module).
use std::error::Error;

use multiproc::{Process, Queue};

#[path = "s11_sentinels.rs"]
#[allow(dead_code)] // its main
mod s11;
use s11::producer;

fn consumer(name: &str, q: Queue<String>) {
    for data in &q {
        println!("consumer {name} got: {}", data.unwrap());
    }
    println!("{name} is done");
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    let producers = ["alex", "wusir", "wang"].map(|name| {
        let q = q.clone();
        Process::fork(move || producer(name, q))
    });
    for name in ["aaa", "bb", "c", "ddd"] {
        let q = q.clone();
        Process::fork(move || consumer(name, q))?;
    }
    for p in producers {
        p?.join()?; // (`?` twice: the fork may have failed, then the producer)
    }
    q.close(); // instead of one None per consumer
    Ok(())
}
