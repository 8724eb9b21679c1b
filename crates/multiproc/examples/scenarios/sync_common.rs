//! Helpers shared by the lock scenarios S1–S4: a temp dir, a line log that several processes
//! append to (O_APPEND, one `write` per line, so lines never tear), and the seed's `db` file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh directory under the system temp dir; removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("multiproc-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints `line` and appends it to `log` in one write.
pub fn say(log: &Path, line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The lines logged so far.
pub fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A pseudo-random duration in `0..max_ms` milliseconds, different per process.
pub fn random_ms(max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ ((std::process::id() as u64) << 17) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    Duration::from_millis(x % max_ms.max(1))
}

/// Writes the seed's `db` file: `{"count":N}`.
pub fn write_db(db: &Path, count: i64) -> Result<(), String> {
    std::fs::write(db, format!("{{\"count\":{count}}}")).map_err(|e| format!("write db: {e}"))
}

/// Reads `count` from the `db` file (the seed's `json.load(open('db'))['count']`).
pub fn read_db(db: &Path) -> Result<i64, String> {
    let s = std::fs::read_to_string(db).map_err(|e| format!("read db: {e}"))?;
    let rest = s
        .split_once("\"count\"")
        .map(|(_, r)| r)
        .ok_or_else(|| format!("db has no count: {s:?}"))?;
    let num: String = rest
        .trim_start()
        .trim_start_matches(':')
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    num.parse()
        .map_err(|_| format!("db count unreadable: {s:?}"))
}
