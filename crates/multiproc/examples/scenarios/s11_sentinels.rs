//! S11's check: all 18 items are received once each, and all four consumers stopped.

#[path = "../s11_sentinels.rs"]
#[allow(clippy::duplicate_mod)] // S11b's program includes it too, for its functions
mod program;
pub use program::main;

use super::observe::observe;
use super::s10_two_consumers::received;

/// Checks the output of S11 or S11b (the same program, stopped in two ways).
pub(crate) fn check(id: &str) -> Result<(), String> {
    let out = observe(id)?;
    let got = received(&out, " got: ");
    let mut want: Vec<String> = (1..7).flat_map(|i| vec![format!("data {i}"); 3]).collect();
    want.sort();
    if got != want {
        return Err(format!("received {got:?}, want data 1..6 three times each"));
    }
    let done = out.count_ending_with(" is done");
    if done != 4 {
        return Err(format!("{done} consumers said they were done, want 4"));
    }
    Ok(())
}

pub fn run() -> Result<(), String> {
    check("S11")
}
