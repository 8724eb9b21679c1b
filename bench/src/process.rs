//! Process start+join: Fork and Spawn beside Python's fork and spawn, and the bare floors
//! (fork()+waitpid of a child that exits at once; executing this binary).

use multiproc::Process;

use crate::harness::{python, time_us, Better, Config, Row};

fn noop(_: ()) {}

fn bare_fork_wait() {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` is always safe.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut st = 0;
    // SAFETY: valid out-pointer.
    unsafe { libc::waitpid(pid, &mut st, 0) };
}

fn bare_exec_self() {
    let st = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .env("MULTIPROC_BENCH_EXIT_NOW", "1")
        .status()
        .expect("exec self");
    assert!(st.success());
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(&["process_fork", "process_spawn"], cfg.quick);
    let n = cfg.samples(15);
    let fork_floor = time_us(n, 20, bare_fork_wait);
    let fork = time_us(n, 20, || Process::fork(|| ()).unwrap().join().unwrap());
    let exec_floor = time_us(n, 5, bare_exec_self);
    let spawn = time_us(n, 5, || {
        Process::builder().spawn(noop, ()).unwrap().join().unwrap()
    });
    vec![
        Row {
            name: "process start+join, Fork".into(),
            unit: "us",
            better: Better::Lower,
            ours: fork,
            baseline: py.get("process_fork").copied(),
            reference: Some(("bare fork+waitpid".into(), fork_floor)),
        },
        Row {
            name: "process start+join, Spawn".into(),
            unit: "us",
            better: Better::Lower,
            ours: spawn,
            baseline: py.get("process_spawn").copied(),
            reference: Some(("exec own binary".into(), exec_floor)),
        },
    ]
}
