//! Test helpers: a watchdog that turns a hang into a failure, and leak checks.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a thread and panics if it does not finish within `limit`. (The stuck thread
/// is abandoned; the test fails instead of hanging.)
pub fn with_watchdog<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("watchdog: test did not finish within {limit:?}"),
    }
}

/// Numbers of the fds open in this process.
pub fn open_fds() -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

/// Pids of this process's children that are zombies (ended, not reaped).
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut z = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return z;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid = f.next().unwrap_or("");
        if ppid == me && state == "Z" {
            z.push(pid);
        }
    }
    z
}

/// True when process `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}
