//! S1: five processes print "n: pid is running", sleep a random time, print "n:pid is done" —
//! without a lock, so the lines of different processes interleave.

use super::sync_common::{lines, random_ms, say, TempDir};
use multiproc::Process;

/// One round: returns the log lines.
pub(crate) fn round(lock: Option<&multiproc::Lock>) -> Result<Vec<String>, String> {
    let dir = TempDir::new("print")?;
    let log = dir.0.join("log");
    let workers: Vec<Process<()>> = (0..5)
        .map(|n| {
            let log = log.clone();
            let lock = lock.cloned();
            Process::fork(move || {
                let _held = lock
                    .as_ref()
                    .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
                let pid = std::process::id();
                say(&log, &format!("{n}: {pid} is running"));
                std::thread::sleep(random_ms(100));
                say(&log, &format!("{n}:{pid} is done"));
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("spawn: {e}"))?;
    for w in workers {
        w.join().map_err(|e| format!("join: {e}"))?;
    }
    Ok(lines(&log))
}

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
        let lines = round(None)?;
        if !all_adjacent(&lines)? {
            println!("(interleaved on attempt {attempt})");
            return Ok(());
        }
        println!("(attempt {attempt}: no interleaving this time, again)");
    }
    Err("in 5 rounds the output of the processes never interleaved".into())
}
