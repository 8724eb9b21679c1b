//! S4: the ticket office with a `Lock` around the read-modify-write: exactly one buyer buys,
//! the others are told there are no tickets, and the file ends at 0.

use super::s03_ticket_race::office;

pub fn run() -> Result<(), String> {
    let lock = multiproc::Lock::new().map_err(|e| format!("Lock::new: {e}"))?;
    let (lines, left) = office(Some(&lock))?;
    let sold = lines.iter().filter(|l| *l == "bought").count();
    let refused = lines
        .iter()
        .filter(|l| *l == "sorry, no tickets left")
        .count();
    if sold == 1 && refused == 2 && left == 0 {
        Ok(())
    } else {
        Err(format!(
            "sold {sold}, refused {refused}, file says {left}: {lines:?}"
        ))
    }
}
