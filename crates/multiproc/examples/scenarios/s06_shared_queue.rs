//! S6's check: each of the two items is received (printed) exactly once, by someone.

#[path = "../s06_shared_queue.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S6")?;
    for item in ["little ghost", "how much?"] {
        let n = out.lines.iter().filter(|l| *l == item).count();
        if n != 1 {
            return Err(format!("{item:?} received {n} times"));
        }
    }
    out.position(">>>>>>>>").map(|_| ())
}
