//! S2's check: all five processes finish, and every process's two lines are adjacent.

#[path = "../s02_print_lock.rs"]
mod program;
pub use program::main;

use super::observe::observe;
use super::s01_print_race::all_adjacent;

pub fn run() -> Result<(), String> {
    let out = observe("S2")?;
    if all_adjacent(&out.lines)? {
        Ok(())
    } else {
        Err(format!(
            "lines interleaved despite the lock: {:?}",
            out.lines
        ))
    }
}
