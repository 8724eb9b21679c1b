//! S2: the same five processes, each holding one `Lock` around both prints: every process's
//! two lines are adjacent.

use super::s01_print_race::{all_adjacent, round};

pub fn run() -> Result<(), String> {
    let lock = multiproc::Lock::new().map_err(|e| format!("Lock::new: {e}"))?;
    let lines = round(Some(&lock))?;
    if all_adjacent(&lines)? {
        Ok(())
    } else {
        Err(format!("lines interleaved despite the lock: {lines:?}"))
    }
}
