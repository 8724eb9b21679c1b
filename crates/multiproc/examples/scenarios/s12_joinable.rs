//! S12's check: the producers' `join()` returned only after all 30 items were processed
//! ("main", printed after joining them, follows every "ate" line), and once the program
//! ended its daemon consumers were gone.

#[path = "../s12_joinable.rs"]
mod program;
pub use program::main;

use std::time::{Duration, Instant};

use super::observe::observe;

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X") | None
        ),
        Err(_) => false,
    }
}

pub fn run() -> Result<(), String> {
    let out = observe("S12")?;
    let main = out.position("main")?;
    let ate: Vec<usize> = (0..out.lines.len())
        .filter(|&i| out.lines[i].contains(" ate "))
        .collect();
    if ate.len() != 30 {
        return Err(format!("{} items processed, want 30", ate.len()));
    }
    if ate.iter().any(|&i| i > main) {
        return Err("an item was processed after the producers had returned".into());
    }
    let joined = out.count_ending_with(": done producing~~~~~~");
    if joined != 3 {
        return Err(format!("{joined} producers returned from join(), want 3"));
    }
    let mut daemons: Vec<u32> = ate
        .iter()
        .filter_map(|&i| out.lines[i].split_once(' ')?.0.parse().ok())
        .collect();
    daemons.sort();
    daemons.dedup();
    let t0 = Instant::now();
    while daemons.iter().any(|&p| alive(p)) {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(format!("daemon consumers {daemons:?} outlived the program"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("the program ended; its daemon consumers {daemons:?} are gone");
    Ok(())
}
