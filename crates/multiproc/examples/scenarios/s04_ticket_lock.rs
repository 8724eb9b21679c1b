//! S4's check: exactly one buyer buys, the other two are told there are no tickets, and
//! `db` ends at 0.

#[path = "../s04_ticket_lock.rs"]
mod program;
pub use program::main;

use super::observe::observe;
use super::s03_ticket_race::sales;

pub fn run() -> Result<(), String> {
    let (sold, refused, db) = sales(&observe("S4")?)?;
    if sold == 1 && refused == 2 && db == r#"{"count":0}"# {
        Ok(())
    } else {
        Err(format!("sold {sold}, refused {refused}, db says {db}"))
    }
}
