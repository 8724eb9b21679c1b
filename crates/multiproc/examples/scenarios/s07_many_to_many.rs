//! S7's check: all nine items are delivered, each once; the tenth consumer was seen
//! waiting and was ended by closing the queue.

#[path = "../s07_many_to_many.rs"]
mod program;
pub use program::main;

use super::observe::observe;

pub fn run() -> Result<(), String> {
    let out = observe("S7")?;
    let mut got: Vec<&str> = out
        .lines
        .iter()
        .filter_map(|l| l.split_once("(get):").map(|(_, info)| info))
        .filter(|info| info.contains("(put):"))
        .collect();
    got.sort();
    got.dedup();
    if got.len() != 9 {
        return Err(format!("{} distinct items delivered, want 9", got.len()));
    }
    let closed = out.count_ending_with("(get): closed, nothing for me");
    let waiting: usize = out
        .lines
        .iter()
        .find_map(|l| l.split_once(" consumer(s) still waiting"))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or("the program never said who was still waiting")?;
    if closed != 1 || waiting < 1 {
        return Err(format!(
            "{closed} consumer(s) ended by close, {waiting} seen waiting; want 1 and >= 1"
        ));
    }
    Ok(())
}
