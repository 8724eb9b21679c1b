//! S8's check: the consumer ate all nine buns, was still blocked afterwards (it has no stop
//! signal), and ended only when terminated.

#[path = "../s08_endless_consumer.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S8")?;
    let blocked = out
        .lines
        .iter()
        .position(|l| l.starts_with("the consumer is still waiting"))
        .ok_or("the consumer was not seen blocked")?;
    let ate: Vec<&str> = out.lines[..blocked]
        .iter()
        .filter_map(|l| l.split_once(" ate ").map(|(_, bun)| bun))
        .collect();
    let want: Vec<String> = (1..10).map(|i| format!("bun {i}")).collect();
    if ate != want {
        return Err(format!("eaten before the block: {ate:?}"));
    }
    let code = format!("consumer exitcode: {}", -libc::SIGTERM);
    out.position(&code).map(|_| ())
}
