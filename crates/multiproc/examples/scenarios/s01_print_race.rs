//! S1's check: the program's ten lines are all there, and in some run the two lines of one
//! process are not next to each other (the race is timing-dependent: up to five runs).

#[path = "../s01_print_race.rs"]
mod program;
pub use program::main;

use super::observe::observe;

/// Whether each process's two lines are next to each other; checks all 10 lines are there.
pub(crate) fn all_adjacent(lines: &[String]) -> Result<bool, String> {
    if lines.len() != 10 {
        return Err(format!("expected 10 lines, got {}: {lines:?}", lines.len()));
    }
    let mut adjacent = true;
    for n in 0..5 {
        let run = lines
            .iter()
            .position(|l| l.starts_with(&format!("{n}: ")) && l.ends_with("is running"))
            .ok_or_else(|| format!("no running line for {n}"))?;
        let done = lines
            .iter()
            .position(|l| l.starts_with(&format!("{n}:")) && l.ends_with("is done"))
            .ok_or_else(|| format!("no done line for {n}"))?;
        if done < run {
            return Err(format!("{n} was done before it ran"));
        }
        adjacent &= done == run + 1;
    }
    Ok(adjacent)
}

pub fn run() -> Result<(), String> {
    for attempt in 1..=5 {
        if !all_adjacent(&observe("S1")?.lines)? {
            println!("(interleaved on attempt {attempt})");
            return Ok(());
        }
        println!("(attempt {attempt}: no interleaving this time, again)");
    }
    Err("in 5 runs the output of the processes never interleaved".into())
}
