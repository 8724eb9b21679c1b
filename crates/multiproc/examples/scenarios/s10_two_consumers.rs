//! S10's check: the nine servings are each eaten once, and both consumers stopped (the
//! program ended: it waits for its children when `main` returns).

#[path = "../s10_two_consumers.rs"]
mod program;
pub use program::main;

use super::observe::{observe, Observed};

/// What follows `sep` in the lines that contain it, sorted.
pub(crate) fn received(out: &Observed, sep: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines
        .iter()
        .filter_map(|l| l.split_once(sep).map(|(_, item)| item.to_string()))
        .collect();
    v.sort();
    v
}

pub fn run() -> Result<(), String> {
    let out = observe("S10")?;
    let ate = received(&out, " ate ");
    let mut want: Vec<String> = (1..10).map(|i| format!("swill {i}")).collect();
    want.sort();
    if ate != want {
        return Err(format!("eaten: {ate:?}"));
    }
    Ok(())
}
