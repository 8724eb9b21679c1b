//! Test helpers: a watchdog that turns a hang into a failure, and leak checks.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use multiproc::{Pool, Process, ProcessBuilder, StartMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Starts a child configured by `b` that runs `f(a)` with start method `m`: forked (a
/// closure calling `f`) or spawned — for tests run with both.
pub fn start_with<A, R>(m: StartMethod, b: ProcessBuilder, f: fn(A) -> R, a: A) -> Process<R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    match m {
        StartMethod::Fork => b.fork(move || f(a)),
        StartMethod::Spawn => b.spawn(f, a),
    }
    .expect("start a child")
}

/// A pool of two workers started with `m`.
pub fn two_workers(m: StartMethod) -> Pool {
    Pool::builder()
        .processes(2)
        .start_method(m)
        .build()
        .expect("start a pool")
}

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
        Err(_) => {
            // Kill this process's children so that the test binary can still exit (it waits
            // for non-daemon children at exit) and CI sees a failure, not a hang.
            // (Our own unreaped children: their pids cannot have been recycled.)
            for pid in multiproc::active_children() {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            panic!("watchdog: test did not finish within {limit:?}")
        }
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
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut z = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return z;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
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
pub fn pid_alive(pid: impl std::fmt::Display) -> bool {
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

/// Runs `f` in a forked child, where no other test opens fds or starts children (the test
/// harness runs tests in parallel threads of one process), and checks there that `f` leaked
/// no fd and left no zombie. Panics with the child's message if anything failed.
pub fn in_clean_child(f: fn()) {
    let r = multiproc::Process::fork(move || {
        // A thread's first fork makes its result slots and socket, kept for later children:
        // fork once before counting.
        multiproc::Process::fork(|| ()).unwrap().join().unwrap();
        // The shared arena (one memfd, kept for the process's life) is made by the first
        // small object: make it before counting too. (Under `cargo test` the parent had
        // made it already; a test run alone, as nextest runs each, made it inside `f`.)
        drop(multiproc::Event::new().unwrap());
        let fds = open_fds();
        f();
        let after = open_fds();
        let what: Vec<String> = after
            .iter()
            .filter(|f| !fds.contains(f))
            .map(|f| {
                let to = std::fs::read_link(format!("/proc/self/fd/{f}"));
                format!("{f} -> {to:?}")
            })
            .collect();
        assert_eq!(after, fds, "fd leak: {what:?}");
        assert!(zombie_children().is_empty(), "zombies left");
    })
    .expect("fork")
    .join();
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Like [`in_clean_child`], but allows `f` to keep one new forking thread's result table
/// and socket (2 fds).
pub fn in_clean_child_loose(f: fn()) {
    let r = multiproc::Process::fork(move || {
        multiproc::Process::fork(|| ()).unwrap().join().unwrap();
        drop(multiproc::Event::new().unwrap()); // the arena: see `in_clean_child`
        let fds = open_fds();
        f();
        let after = open_fds();
        assert!(
            after.len() <= fds.len() + 2,
            "fd leak: {fds:?} -> {after:?}"
        );
        assert!(zombie_children().is_empty(), "zombies left");
    })
    .expect("fork")
    .join();
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Waits (at most 10 s) until this process has no zombie child. Tests run in parallel, so a
/// child another test has just killed may be a zombie for a moment before it is reaped; a
/// zombie that stays is a leak.
pub fn wait_no_zombies() {
    until("no zombies", || zombie_children().is_empty());
}

/// Waits until `cond` holds, looking every millisecond; fails the test with `what` after
/// 20 s (the one polling loop of the tests: for states no event announces, such as a
/// process asleep or reaped).
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `join_timeout` as an `Option`: `None` while the child runs on; panics on any other error.
pub fn join_within<R>(p: &multiproc::Process<R>, timeout: std::time::Duration) -> Option<R> {
    match p.join_timeout(timeout) {
        Ok(r) => Some(r),
        Err(e) if e.is_timeout() => None,
        Err(e) => panic!("join failed: {e}"),
    }
}

/// One test body, two tests: `name::fork` and `name::spawn`, with the start method bound to
/// the given name, so that a failure says which start method broke.
///
/// ```ignore
/// both_methods! {
///     fn join_returns_the_value(m) {
///         with_watchdog(LIMIT, move || assert_eq!(start(m, square, 9).join().unwrap(), 81));
///     }
/// }
/// ```
macro_rules! both_methods {
    ($(#[$meta:meta])* fn $name:ident($m:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn fork() {
                let $m = multiproc::StartMethod::Fork;
                $body
            }

            #[test]
            fn spawn() {
                let $m = multiproc::StartMethod::Spawn;
                $body
            }
        }
    };
}

/// SIGKILLs `pid` (a child the caller has not reaped, so the pid is not recycled); a process
/// that has already ended is not an error.
pub fn sigkill(pid: impl TryInto<i32>) {
    let Some(pid) = pid.try_into().ok().and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// True when process `pid` is asleep (state `S`): a child known to be inside a blocking call
/// (`lock()`, `recv()`) is then waiting in it.
pub fn asleep(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? == "S"))
        .unwrap_or(false)
}

/// Sleeps `ms` milliseconds and returns them (a child's body for timing tests).
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}
