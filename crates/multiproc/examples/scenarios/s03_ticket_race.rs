//! S3's check: more than one buyer "buys" the single ticket (oversell).

#[path = "../s03_ticket_race.rs"]
#[allow(clippy::duplicate_mod)] // S4's program includes it too, for its functions
mod program;
pub use program::main;

use super::observe::{observe, Observed};

/// How many bought, how many were refused, and what `db` says at the end.
pub(crate) fn sales(out: &Observed) -> Result<(usize, usize, String), String> {
    let db = out.file("db");
    let db = std::fs::read_to_string(&db).map_err(|e| format!("read {}: {e}", db.display()))?;
    let looked = out.starting_with("tickets left: ").count();
    if looked != 3 {
        return Err(format!("{looked} buyers looked at the count, want 3"));
    }
    Ok((
        out.count_ending_with("bought"),
        out.count_ending_with("sorry, no tickets left"),
        db,
    ))
}

pub fn run() -> Result<(), String> {
    let (sold, _, db) = sales(&observe("S3")?)?;
    println!("sold {sold} times the single ticket; db says {db}");
    if sold > 1 {
        Ok(())
    } else {
        Err(format!("no oversell observed: sold {sold}"))
    }
}
