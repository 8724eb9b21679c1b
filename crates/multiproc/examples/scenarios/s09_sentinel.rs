//! S9's check: the consumer ate the four buns, in order, and stopped on the sentinel (the
//! program ended: it waits for its children when `main` returns).

#[path = "../s09_sentinel.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S9")?;
    let ate: Vec<&str> = out
        .lines
        .iter()
        .filter_map(|l| l.split_once(" ate ").map(|(_, bun)| bun))
        .collect();
    if ate != ["bun 1", "bun 2", "bun 3", "bun 4"] {
        return Err(format!("ate {ate:?}"));
    }
    Ok(())
}
