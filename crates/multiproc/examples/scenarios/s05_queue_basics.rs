//! S5's check: the 4th put fails with Full, the items come out in FIFO order, and
//! `try_get` on the empty queue fails with Empty — the program prints exactly this.

#[path = "../s05_queue_basics.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S5")?;
    let want = [
        "the queue is full",
        "true",
        "3",
        "2",
        "1",
        "the queue is empty",
        "true",
    ];
    if out.lines == want {
        Ok(())
    } else {
        Err(format!("printed {:?}, want {want:?}", out.lines))
    }
}
