//! S3: the ticket office without a lock. `db` holds `{"count":1}`; three buyers each print the
//! count, then read, sleep 0.1 s, decrement if > 0, sleep 0.2 s, write back and print
//! "bought". The race sells the single ticket more than once.

use std::path::Path;
use std::time::Duration;

use super::sync_common::{lines, read_db, say, write_db, TempDir};
use multiproc::{Lock, Process};

/// One buyer, as in the seed: `search()` then `get()` (under `lock` if given).
fn buyer(db: &Path, log: &Path, lock: Option<&Lock>) {
    match read_db(db) {
        Ok(c) => say(log, &format!("tickets left: {c}")),
        Err(e) => say(log, &format!("error: {e}")),
    }
    let _held = lock.map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
    let mut count = match read_db(db) {
        Ok(c) => c,
        Err(e) => return say(log, &format!("error: {e}")),
    };
    std::thread::sleep(Duration::from_millis(100));
    if count > 0 {
        count -= 1;
        std::thread::sleep(Duration::from_millis(200));
        if let Err(e) = write_db(db, count) {
            return say(log, &format!("error: {e}"));
        }
        say(log, "bought");
    } else {
        say(log, "sorry, no tickets left");
    }
}

/// Runs three buyers; returns (log lines, final count).
pub(crate) fn office(lock: Option<&Lock>) -> Result<(Vec<String>, i64), String> {
    let dir = TempDir::new("tickets")?;
    let (db, log) = (dir.0.join("db"), dir.0.join("log"));
    write_db(&db, 1)?;
    let buyers: Vec<Process<()>> = (0..3)
        .map(|_| {
            let (db, log, lock) = (db.clone(), log.clone(), lock.cloned());
            Process::fork(move || buyer(&db, &log, lock.as_ref()))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("spawn: {e}"))?;
    for b in buyers {
        b.join().map_err(|e| format!("join: {e}"))?;
    }
    let lines = lines(&log);
    if let Some(e) = lines.iter().find(|l| l.starts_with("error")) {
        return Err(e.clone());
    }
    Ok((lines, read_db(&db)?))
}

pub fn run() -> Result<(), String> {
    let (lines, left) = office(None)?;
    let sold = lines.iter().filter(|l| *l == "bought").count();
    println!("sold {sold} times the single ticket; the file says {left} left");
    if sold > 1 {
        Ok(())
    } else {
        Err(format!("no oversell observed: {lines:?}"))
    }
}
