//! Process start, join, exit codes, signals, daemons, reaping — with both start methods.
//!
//! Tests marked "ported" come from CPython's `Lib/test/_test_multiprocessing.py`,
//! class `_TestProcess`, adapted to Rust (closures/fns instead of targets).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::process::{ExitStatus, JoinError, JoinTimeoutError, TryJoinError};
use multiproc::{ErrorKind, Process, StartMethod};

use crate::util::{pid_alive, start_with, until, with_watchdog, zombie_children};

const LIMIT: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms_then_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn panics(msg: String) {
    panic!("{msg}");
}

fn exits(code: i32) {
    std::process::exit(code);
}

fn both<R>(f: impl Fn(StartMethod) -> R) {
    f(StartMethod::Fork);
    f(StartMethod::Spawn);
}

fn start<A, R>(m: StartMethod, f: fn(A) -> R, a: A) -> Process<R>
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    start_with(m, Process::builder(), f, a)
}

// ported: _TestProcess.test_process (value, name, pid, is_alive, exitcode)
both_methods! {
    fn join_returns_the_value(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, square, 9);
            assert!(p.pid() > 0);
            assert_eq!(p.start_method(), m);
            assert!(p.name().starts_with("Process-"));
            assert_eq!(p.join().unwrap(), 81);
        });
    }
}

#[test]
fn a_forked_closure_returns_a_tuple() {
    with_watchdog(LIMIT, || {
        let p = Process::fork(|| (String::from("from child"), vec![1u8, 2, 3])).unwrap();
        assert_eq!(p.join().unwrap(), ("from child".to_string(), vec![1, 2, 3]));
    });
}

both_methods! {
    fn child_is_a_different_process(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, sleep_ms_then_pid, 0);
            let pid = p.pid();
            assert_eq!(p.join().unwrap(), pid);
            assert_ne!(pid, std::process::id());
        });
    }
}

both_methods! {
    fn join_timeout_returns_after_the_timeout_with_child_alive(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, sleep_ms_then_pid, 20_000);
            let t = Instant::now();
            let r = p.join_timeout(Duration::from_millis(300)).unwrap_err();
            assert!(r.is_timeout(), "{r}");
            assert!(t.elapsed() >= Duration::from_millis(300));
            let t = Instant::now();
            let r = p.join_deadline(t + Duration::from_millis(200)).unwrap_err();
            assert!(matches!(r, JoinTimeoutError::Timeout), "{r}");
            assert!(t.elapsed() >= Duration::from_millis(200));
            assert!(matches!(p.try_join(), Err(TryJoinError::WouldBlock)));
            assert!(p.is_alive());
            assert_eq!(p.exitcode(), None);
            assert_eq!(p.exit_status(), None);
            p.kill().unwrap();
            let err = p.join().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ChildFailed);
            assert!(
                matches!(err, JoinError::Exited(ExitStatus::Signal(9))),
                "{err:?}"
            );
        });
    }
}

#[test]
fn join_timeout_hands_the_value_once() {
    with_watchdog(LIMIT, || {
        let p = Process::fork(|| 5u8).unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 5);
        let again = p.join_timeout(Duration::from_secs(1)).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::InvalidState);
        assert!(matches!(again, JoinTimeoutError::AlreadyJoined));
        assert!(matches!(p.join(), Err(JoinError::AlreadyJoined)));
        assert!(matches!(p.try_join(), Err(TryJoinError::AlreadyJoined)));
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(p.exit_status(), Some(ExitStatus::Code(0)));
    });
}

// ported: _TestProcess.test_terminate
both_methods! {
    fn terminate_gives_minus_15(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, sleep_ms_then_pid, 20_000);
            assert!(p.is_alive());
            p.terminate().unwrap();
            let err = p.join_timeout(Duration::from_secs(10)).unwrap_err();
            assert_eq!(err.exit_status(), Some(ExitStatus::Signal(15)), "{err}");
            assert_eq!(p.exitcode(), Some(-15));
            assert!(!p.is_alive());
        });
    }
}

// ported: _TestProcess.test_kill
both_methods! {
    fn kill_gives_minus_9(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, sleep_ms_then_pid, 20_000);
            p.kill().unwrap();
            let err = p.join().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ChildFailed);
            assert!(err.to_string().contains("-9"), "{err}");
            assert_eq!(err.exit_status().and_then(ExitStatus::signal), Some(9));
            assert_eq!(p.exit_status(), Some(ExitStatus::Signal(9)));
        });
    }
}

// ported: _TestProcess.test_exitcode / test_sys_exit
both_methods! {
    fn exit_code_is_reported(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, exits, 7);
            let err = p.join_timeout(Duration::from_secs(20)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ChildFailed);
            assert!(err.to_string().contains("code 7"), "{err}");
            assert!(matches!(err, JoinTimeoutError::Exited(ExitStatus::Code(7))));
            assert_eq!(p.exitcode(), Some(7));
        });
    }
}

#[test]
fn exit_zero_without_a_value_is_reported() {
    with_watchdog(LIMIT, || {
        let p = Process::fork(|| -> () { std::process::exit(0) }).unwrap();
        // exit(0) without a value: exit code 0, but join says no value came back.
        let err = p.join_timeout(Duration::from_secs(20)).unwrap_err();
        assert!(matches!(err, JoinTimeoutError::Exited(ExitStatus::Code(0))));
        assert_eq!(p.exitcode(), Some(0));
    });
}

both_methods! {
    fn panic_message_arrives(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, panics, "boom in the child".to_string());
            let err = p.join_timeout(Duration::from_secs(20)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ChildPanicked);
            assert!(err.to_string().contains("boom in the child"), "{err}");
            assert_eq!(err.panic_message(), Some("boom in the child"));
            assert_eq!(err.exit_status(), Some(ExitStatus::Code(1)));
            let e = multiproc::Error::from(err);
            assert_eq!(e.kind(), ErrorKind::ChildPanicked);
            assert!(e.to_string().contains("boom in the child"), "{e}");
            assert_eq!(p.exitcode(), Some(1));
        });
    }
}

// ported: _TestProcess.test_many_processes
both_methods! {
    fn many_processes(m) {
        with_watchdog(Duration::from_secs(60), move || {
            let n = if m == StartMethod::Fork { 60 } else { 20 };
            let ps: Vec<_> = (0..n).map(|i| start(m, square, i)).collect();
            for (i, p) in ps.into_iter().enumerate() {
                assert_eq!(p.join().unwrap(), (i * i) as u64);
            }
            let mut ps: Vec<_> = (0..n)
                .map(|_| start(m, sleep_ms_then_pid, 30_000))
                .collect();
            for p in &ps {
                p.terminate().unwrap();
            }
            for p in &mut ps {
                let _ = p.join_timeout(Duration::from_secs(20));
                assert_eq!(p.exitcode(), Some(-15));
            }
        });
    }
}

// ported: _TestProcess.test_lose_target_ref (the parent keeps no reference to the target)
#[test]
fn parent_drops_the_target() {
    with_watchdog(LIMIT, || {
        let shared = Arc::new(5u32);
        let c = shared.clone();
        let p = Process::fork(move || *c + 1).unwrap();
        assert_eq!(Arc::strong_count(&shared), 1);
        assert_eq!(p.join().unwrap(), 6);
    });
}

#[test]
fn builder_name_and_daemon() {
    with_watchdog(LIMIT, || {
        let p = Process::builder()
            .name("worker-7")
            .daemon(true)
            .fork(|| 1)
            .unwrap();
        assert_eq!(p.name(), "worker-7");
        assert!(p.daemon());
        assert_eq!(p.join().unwrap(), 1);
    });
}

/// A pipe whose write end a child can inherit (fork) to report something.
fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    (std::fs::File::from(r), std::fs::File::from(w))
}

fn read_pid(r: &mut std::fs::File) -> u32 {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).unwrap();
    u32::from_le_bytes(b)
}

fn wait_gone(pid: u32, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn daemon_dies_with_killed_parent(m: StartMethod) {
    let (mut r, w) = pipe();
    // The middle process starts a daemon, reports its pid, then sleeps until killed.
    let middle = Process::fork(move || {
        let mut w = w;
        let d = start_with(
            m,
            Process::builder().daemon(true),
            sleep_ms_then_pid,
            60_000,
        );
        w.write_all(&d.pid().to_le_bytes()).unwrap();
        std::mem::forget(d);
        std::thread::sleep(Duration::from_secs(60));
    })
    .unwrap();
    let daemon = read_pid(&mut r);
    assert!(pid_alive(daemon));
    middle.kill().unwrap();
    assert!(middle.join().is_err());
    assert!(
        wait_gone(daemon, Duration::from_secs(1)),
        "daemon {daemon} outlived its killed parent"
    );
}

#[test]
fn daemon_child_dies_when_parent_is_killed() {
    with_watchdog(LIMIT, || {
        daemon_dies_with_killed_parent(StartMethod::Fork);
        daemon_dies_with_killed_parent(StartMethod::Spawn);
    });
}

#[test]
fn daemon_started_from_a_short_lived_thread_survives_the_thread() {
    with_watchdog(LIMIT, || {
        let p = std::thread::spawn(|| {
            Process::builder()
                .daemon(true)
                .fork(|| sleep_ms_then_pid(60_000))
                .unwrap()
        })
        .join()
        .unwrap();
        // The thread that asked for it has ended; the daemon must still run.
        std::thread::sleep(Duration::from_millis(200));
        assert!(p.is_alive(), "daemon died with the thread that started it");
        p.kill().unwrap();
        assert!(p.join().is_err());
    });
}

#[test]
fn daemons_are_terminated_and_non_daemons_waited_for_at_exit() {
    with_watchdog(LIMIT, || {
        let (mut r, w) = pipe();
        // The middle process starts a non-daemon that sleeps 500 ms and a daemon that sleeps
        // a minute, reports both pids, then calls exit() (what returning from main does).
        let middle = Process::fork(move || -> () {
            let mut w = w;
            let slow = Process::fork(|| sleep_ms_then_pid(500)).unwrap();
            let d = Process::builder()
                .daemon(true)
                .fork(|| sleep_ms_then_pid(60_000))
                .unwrap();
            w.write_all(&slow.pid().to_le_bytes()).unwrap();
            w.write_all(&d.pid().to_le_bytes()).unwrap();
            drop(slow);
            drop(d);
            std::process::exit(3);
        })
        .unwrap();
        let t = Instant::now();
        let slow = read_pid(&mut r);
        let daemon = read_pid(&mut r);
        assert!(middle.join_timeout(Duration::from_secs(20)).is_err());
        assert_eq!(middle.exitcode(), Some(3));
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "exit did not wait for the child"
        );
        assert!(!pid_alive(slow));
        assert!(wait_gone(daemon, Duration::from_secs(1)));
    });
}

#[test]
fn dropped_children_are_reaped() {
    with_watchdog(LIMIT, || {
        let pids: Vec<u32> = (0..10)
            .map(|_| Process::fork(|| ()).unwrap().pid())
            .collect();
        until("children reaped", || {
            let active = multiproc::active_children();
            pids.iter().all(|p| !active.contains(p))
        });
        let z = zombie_children();
        assert!(pids.iter().all(|p| !z.contains(p)), "zombies left: {z:?}");
    });
}

both_methods! {
    fn no_zombie_after_join(m) {
        with_watchdog(LIMIT, move || {
            let p = start(m, square, 2);
            let pid = p.pid();
            p.join().unwrap();
            assert!(!zombie_children().contains(&pid));
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        });
    }
}

#[test]
fn library_fds_do_not_leak_into_unrelated_children() {
    with_watchdog(LIMIT, || {
        // A running child: the parent holds its pidfd (sentinel) and this thread's result
        // socket. (Other tests open and close fds meanwhile: `opened` may hold theirs too.)
        let before = crate::util::open_fds();
        let p = Process::fork(|| sleep_ms_then_pid(5_000)).unwrap();
        let held = p.as_raw_fd();
        let opened: Vec<i32> = crate::util::open_fds()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .collect();
        // `readlink` prints the targets of those of its fds that exist (it opens none of its
        // own while it reads them, unlike `ls /proc/self/fd`, whose directory fd is the
        // lowest free number and may equal ours).
        let mut fds = opened.clone();
        fds.push(held);
        let out = std::process::Command::new("readlink")
            .args(fds.iter().map(|fd| format!("/proc/self/fd/{fd}")))
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            listed.trim().is_empty(),
            "fds opened by the library {fds:?} (pidfd {held}) leaked into an unrelated \
             child, which sees: {listed}"
        );
        p.kill().unwrap();
        let _ = p.join();
    });
}

#[test]
fn fd_count_is_stable_across_many_children() {
    // In a clean child, where no other test opens fds at the same time: exact equality.
    with_watchdog(LIMIT, || {
        crate::util::in_clean_child(|| {
            for m in [StartMethod::Fork, StartMethod::Spawn] {
                for _ in 0..20 {
                    start(m, square, 3).join().unwrap();
                }
                let p = start(m, sleep_ms_then_pid, 20_000);
                p.kill().unwrap();
                assert!(p.join_timeout(Duration::from_secs(10)).is_err());
            }
        })
    });
}

#[test]
fn buffered_output_is_not_printed_twice() {
    with_watchdog(LIMIT, || {
        let dir = std::env::temp_dir().join(format!("mp-out-{}", std::process::id()));
        let path = dir.with_extension("txt");
        let path2 = path.clone();
        // In a middle process, point stdout at a file, leave text in the buffer, fork.
        let p = Process::fork(move || {
            let f = std::fs::File::create(&path2).unwrap();
            rustix::stdio::dup2_stdout(&f).unwrap();
            // (`write!` on `stdout()`, not `print!`: the test harness captures `print!`.)
            write!(std::io::stdout(), "buffered;").unwrap();
            let c = Process::fork(|| writeln!(std::io::stdout(), "child").unwrap()).unwrap();
            c.join().unwrap();
            writeln!(std::io::stdout(), "end").unwrap();
        })
        .unwrap();
        p.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "buffered;child\nend\n");
    });
}

fn spawn_from_threads() -> Vec<u64> {
    let hs: Vec<_> = (0..4u64)
        .map(|i| std::thread::spawn(move || Process::spawn(square, i).unwrap().join().unwrap()))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn spawn_from_a_multithreaded_parent() {
    with_watchdog(LIMIT, || {
        assert_eq!(spawn_from_threads(), vec![0, 1, 4, 9]);
    });
}

fn reply_on(conn: multiproc::Connection) -> u32 {
    let n: u32 = conn.recv().unwrap();
    conn.send(&(n + 1)).unwrap();
    n
}

#[test]
fn handles_travel_into_spawned_children() {
    with_watchdog(LIMIT, || {
        // A connection end is not inherited by a Spawn child: it travels in the fd table.
        let (mine, theirs) = multiproc::pipe(true).unwrap();
        let p = Process::spawn(reply_on, theirs).unwrap();
        mine.send(&41u32).unwrap();
        mine.poll_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(mine.recv::<u32>().unwrap(), 42);
        assert_eq!(p.join().unwrap(), 41);
    });
}

fn make_pipe_end(_: ()) -> multiproc::Connection {
    let (a, b) = multiproc::pipe(true).unwrap();
    a.send(&"kept alive by the parent").unwrap();
    drop(a);
    b
}

both_methods! {
    fn handles_travel_back_in_results(m) {
        with_watchdog(LIMIT, move || {
            let end = start(m, make_pipe_end, ()).join().unwrap();
            assert_eq!(end.recv::<String>().unwrap(), "kept alive by the parent");
        });
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + n) as u8).collect()
}

#[test]
fn results_of_every_size_come_back() {
    // A forked child's result lives in a 4 KiB shared slot when it fits, else in a memfd
    // passed over the result socket: sizes around the edge, and large ones.
    with_watchdog(LIMIT, || {
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            for n in [0, 1, 4000, 4025, 4026, 4032, 4033, 5000, 1 << 20, 8 << 20] {
                let v = start(m, pattern, n).join().unwrap();
                assert!(v == pattern(n), "{m:?}: result of {n} bytes differs");
            }
        }
    });
}

fn big_with_handle(i: usize) -> (Vec<u8>, Option<multiproc::Connection>) {
    let end = i.is_multiple_of(5).then(|| make_pipe_end(()));
    (pattern(10_000 + i), end)
}

#[test]
fn many_unjoined_children_with_large_results() {
    // More large results than the result socket holds: children wait (stopped) until a
    // join, is_alive or join_timeout drains it; nothing is lost, nothing hangs.
    with_watchdog(Duration::from_secs(60), || {
        let n = 600;
        let ps: Vec<Process<(Vec<u8>, Option<multiproc::Connection>)>> = (0..n)
            .map(|i| Process::fork(move || big_with_handle(i)).unwrap())
            .collect();
        // Some through is_alive and join_timeout first, the rest by join in reverse order.
        let mut seen = 0;
        for p in ps.iter().step_by(7) {
            let _ = p.is_alive();
            assert!(p.join_timeout(Duration::from_secs(20)).is_ok());
            seen += 1;
        }
        for (i, p) in ps.into_iter().enumerate().rev() {
            if i.is_multiple_of(7) {
                assert!(p.join().is_err(), "a second join must fail");
                continue;
            }
            let (v, end) = p.join().unwrap();
            assert!(v == pattern(10_000 + i), "child {i}: result differs");
            assert_eq!(end.is_some(), i.is_multiple_of(5));
            if let Some(end) = end {
                assert_eq!(end.recv::<String>().unwrap(), "kept alive by the parent");
            }
            seen += 1;
        }
        assert_eq!(seen, n);
        crate::util::wait_no_zombies();
    });
}

#[test]
fn forking_from_many_short_lived_threads_keeps_fds_bounded() {
    // Each forking thread holds a result table and socket (2 fds); a thread that ends
    // leaves them to the next one.
    with_watchdog(LIMIT, || {
        crate::util::in_clean_child_loose(|| {
            for i in 0..50u64 {
                let v = std::thread::spawn(move || Process::fork(move || i * 2).unwrap().join())
                    .join()
                    .unwrap()
                    .unwrap();
                assert_eq!(v, i * 2);
            }
        })
    });
}

/// What a child knows of itself and its parent.
type WhoAmI = (
    String,
    u32,
    bool,
    Option<StartMethod>,
    Option<(u32, String, bool)>,
);

fn whoami(_: ()) -> WhoAmI {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().map(|p| (p.pid(), p.name().to_string(), p.is_alive()));
    (
        me.name().to_string(),
        me.pid(),
        me.daemon(),
        me.start_method(),
        parent,
    )
}

#[test]
fn current_and_parent_process_in_the_main_process() {
    let me = multiproc::current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert!(!me.daemon());
    assert_eq!(me.start_method(), None);
    assert!(multiproc::parent_process().is_none());
}

both_methods! {
    fn current_and_parent_process_in_children(m) {
        with_watchdog(LIMIT, move || {
            for daemon in [false, true] {
                let b = Process::builder().name(format!("who-{m:?}")).daemon(daemon);
                let p = start_with(m, b, whoami, ());
                let (name, pid, d, method, parent) = p.join().unwrap();
                assert_eq!(name, format!("who-{m:?}"));
                assert_eq!(pid, p.pid());
                assert_eq!(d, daemon);
                assert_eq!(method, Some(m));
                assert_eq!(
                    parent,
                    Some((std::process::id(), "MainProcess".to_string(), true))
                );
            }
            // A default name, as the parent's Process reports it.
            let p = start_with(m, Process::builder(), whoami, ());
            let (name, ..) = p.join().unwrap();
            assert_eq!(name, p.name());
            assert!(name.starts_with("Process-"), "{name}");
        });
    }
}

both_methods! {
    fn a_grandchild_knows_its_parent_and_sees_it_die(m) {
        with_watchdog(LIMIT, move || {
            let (mut r, w) = pipe();
            // middle -> grandchild; the grandchild reports who it is, then waits for its
            // parent (middle) to die and reports that too.
            let middle = Process::builder()
                .name("middle")
                .fork(move || {
                    let mut w = w;
                    let g = start_with(m, Process::builder().name("grandchild"), watch_parent, ());
                    w.write_all(&g.pid().to_le_bytes()).unwrap();
                    std::mem::forget(g);
                    std::thread::sleep(Duration::from_secs(60));
                })
                .unwrap();
            let grandchild = read_pid(&mut r);
            // The grandchild's report comes through a file it names after its pid.
            let report = report_path(grandchild);
            let t = Instant::now();
            while !report.with_extension("1").exists() {
                assert!(t.elapsed() < Duration::from_secs(20), "no first report");
                std::thread::sleep(Duration::from_millis(10));
            }
            let first = std::fs::read_to_string(report.with_extension("1")).unwrap();
            assert_eq!(first, format!("grandchild {} middle true", middle.pid()));
            middle.kill().unwrap();
            assert!(middle.join().is_err());
            while !report.with_extension("2").exists() {
                assert!(t.elapsed() < Duration::from_secs(20), "no second report");
                std::thread::sleep(Duration::from_millis(10));
            }
            let second = std::fs::read_to_string(report.with_extension("2")).unwrap();
            assert_eq!(second, "parent gone");
            let _ = std::fs::remove_file(report.with_extension("1"));
            let _ = std::fs::remove_file(report.with_extension("2"));
        });
    }
}

fn report_path(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("multiproc-parent-report-{pid}"))
}

/// In the grandchild: writes "NAME PARENT_PID PARENT_NAME ALIVE" to `<report>.1`, then waits
/// (at most 20 s) for the parent to end and writes "parent gone" to `<report>.2`.
fn watch_parent(_: ()) {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().expect("a parent");
    let path = report_path(me.pid());
    let line = format!(
        "{} {} {} {}",
        me.name(),
        parent.pid(),
        parent.name(),
        parent.is_alive()
    );
    // (Written then renamed: the test never reads half a file.)
    std::fs::write(path.with_extension("tmp1"), line).unwrap();
    std::fs::rename(path.with_extension("tmp1"), path.with_extension("1")).unwrap();
    let t = Instant::now();
    while parent.is_alive() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !parent.is_alive() {
        std::fs::write(path.with_extension("tmp2"), "parent gone").unwrap();
        std::fs::rename(path.with_extension("tmp2"), path.with_extension("2")).unwrap();
    }
}

#[test]
fn cpu_count_is_what_this_process_may_use() {
    let n = multiproc::cpu_count();
    assert!(n >= 1);
    assert_eq!(n, std::thread::available_parallelism().unwrap().get());
}

/// A logger for the tests: keeps the messages of this process. A forked child never touches the
/// lock (it may find it held by a thread it does not have): the pid check comes first. The parent
/// takes the lock and waits for it: a `try_lock` here dropped lines whenever two test threads
/// logged at once (CI failed on a missing "started process" line).
struct Collect {
    pid: u32,
    lines: std::sync::Mutex<Vec<String>>,
}

impl log::Log for Collect {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("multiproc")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) && std::process::id() == self.pid {
            let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            l.push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

fn collector() -> &'static Collect {
    static C: std::sync::OnceLock<&'static Collect> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Collect = Box::leak(Box::new(Collect {
            pid: std::process::id(),
            lines: std::sync::Mutex::new(Vec::new()),
        }));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        c
    })
}

#[test]
fn start_signal_and_exit_are_logged_at_debug_level() {
    with_watchdog(LIMIT, || {
        let c = collector();
        both(|m| {
            let p = start_with(
                m,
                Process::builder().name("logged"),
                sleep_ms_then_pid,
                20_000,
            );
            p.kill().unwrap();
            let _ = p.join();
            let pid = p.pid();
            let lines = c.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let method = if m == StartMethod::Fork {
                "fork"
            } else {
                "spawn"
            };
            for want in [
                format!("DEBUG started process {pid} (logged) by {method}"),
                format!("DEBUG sending SIGKILL to process {pid} (logged)"),
                format!("DEBUG process {pid} (logged) ended: signal 9 (SIGKILL)"),
            ] {
                assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
            }
        });
    });
}
