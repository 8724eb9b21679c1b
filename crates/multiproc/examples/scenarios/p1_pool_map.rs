//! P1's check: the pool's answers are the one process's answers, and right (2262 primes
//! below 20000). Timing is shown, not judged: the machine may be loaded.

#[path = "../p1_pool_map.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("P1")?;
    out.position("primes below 20000: 2262")?;
    out.position("same answers: true")?;
    Ok(())
}
