//! Fork hygiene (issue 17): every process-global listed in `src/fork.rs`, used from a forked
//! child's *second* thread. (The thread that forks becomes the child's main thread, which
//! takes other paths: a daemon started there is forked at once, not by the launcher.)
//!
//! Before each fork this process has started its own lazily started threads (a daemon from
//! a second thread starts the launcher), so the child inherits them as they are. Every test
//! is bounded twice: the child gives its second thread [`IN_CHILD`] and reports a hang as a
//! failure with a message; this process gives the child [`LIMIT`].

use std::sync::{mpsc, Arc};
use std::time::Duration;

use multiproc::{
    active_children, pipe, ErrorKind, Event, Lock, Pool, Process, Queue, StartMethod, Value,
};

use crate::util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(60);

/// What a forked child gives its second thread before reporting it hung.
const IN_CHILD: Duration = Duration::from_secs(20);
/// How long a panicking child may take before it counts as hung.
const PANIC_CHILD: Duration = Duration::from_secs(5);

fn message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Starts a daemon from a new thread of this process and joins it: this starts this
/// process's launcher thread (if nothing had yet), the state a forked child inherits.
fn daemon_from_a_second_thread() {
    let got = std::thread::spawn(|| {
        let p = Process::builder()
            .daemon(true)
            .fork(std::process::id)
            .expect("start a daemon");
        let pid = p.pid();
        (pid, p.join_timeout(IN_CHILD))
    })
    .join()
    .expect("the thread that starts a daemon panicked");
    match got {
        (pid, Ok(id)) => assert_eq!(id, pid),
        (_, Err(e)) if e.is_timeout() => panic!("the daemon did not end within {IN_CHILD:?}"),
        (_, Err(e)) => panic!("{e}"),
    }
}

/// Runs `f` on a new thread, at most [`IN_CHILD`]: `Err` with its panic message, or when it
/// hangs (the thread is abandoned: the caller is a child about to exit).
fn on_a_new_thread(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("second".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.map_err(|p| message(&*p)));
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(IN_CHILD).unwrap_or_else(|_| {
        Err(format!(
            "hung: the second thread did not finish within {IN_CHILD:?}"
        ))
    })
}

/// Forks a child (after starting this process's launcher) and runs `f` on a second thread
/// of it; panics with what went wrong there.
fn on_a_forked_childs_second_thread(f: impl FnOnce() + Send + 'static) {
    daemon_from_a_second_thread();
    let child = Process::fork(move || on_a_new_thread(f)).expect("fork");
    match child.join_timeout(LIMIT) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => panic!("in the forked child's second thread: {why}"),
        Err(e) if e.is_timeout() => {
            let _ = child.kill();
            let _ = child.join();
            panic!("the forked child did not end within {LIMIT:?}");
        }
        Err(e) => panic!("{e}"),
    }
}

fn sqr(x: u64) -> u64 {
    x * x
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(sqr).collect()
}

/// The launcher (issue 17 item 3): a daemon started from a forked child's second thread,
/// after this process started one from its own second thread.
#[test]
fn daemon_from_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            assert!(multiproc::process::is_spawned_child());
            daemon_from_a_second_thread();
            // This thread is not the child's main thread either.
            let p = Process::builder().daemon(true).fork(|| 7u8).unwrap();
            assert_eq!(p.join_timeout(IN_CHILD).unwrap(), 7);
        });
    });
}

/// The launcher, one fork deeper: the child has started its own launcher; its child must
/// start another.
#[test]
fn daemon_from_a_forked_grandchilds_second_thread() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            daemon_from_a_second_thread();
            let p = Process::fork(|| on_a_new_thread(daemon_from_a_second_thread)).unwrap();
            match p.join_timeout(IN_CHILD) {
                Ok(r) => r.unwrap_or_else(|why| panic!("in the grandchild: {why}")),
                Err(e) if e.is_timeout() => {
                    let _ = p.kill();
                    panic!("the grandchild did not end within {IN_CHILD:?}");
                }
                Err(e) => panic!("the grandchild: {e}"),
            }
        });
    });
}

fn lock_it(lock: Lock) -> bool {
    lock.try_lock().is_ok()
}

/// The launcher with the Spawn start method, with a handle (exported fds) in the arguments.
#[test]
fn spawned_daemon_from_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            let lock = Lock::new().unwrap();
            let p = Process::builder()
                .daemon(true)
                .spawn(lock_it, lock.clone())
                .unwrap();
            assert!(p.join_timeout(IN_CHILD).unwrap());
        });
    });
}

/// A pool's workers are daemons started by the launcher (issue 17 item 3: `Pool::new(2)` +
/// `map` hung on a forked child's second thread), with both start methods; the pool's
/// dispatcher thread is the child's own.
#[test]
fn pool_from_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.map(sqr, 0..10u64).unwrap(), squares(10));
            let r = pool.apply_async(sqr, 7).unwrap();
            assert_eq!(r.get_timeout(IN_CHILD).unwrap(), 49);
            pool.close();
            pool.join().unwrap();

            let pool = Pool::builder()
                .processes(2)
                .start_method(StartMethod::Spawn)
                .build()
                .unwrap();
            assert_eq!(pool.map(sqr, 0..10u64).unwrap(), squares(10));
            pool.close();
            pool.join().unwrap();
        });
    });
}

/// Result tables: threads of the child that fork, end (their table goes to the spare list)
/// and are followed by threads that reuse it; results that need a table's socket (large,
/// or carrying a handle).
#[test]
fn result_tables_in_a_forked_childs_threads() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            for round in 0..3u8 {
                std::thread::spawn(move || {
                    let p = Process::fork(move || vec![round; 100_000]).unwrap();
                    assert_eq!(p.join().unwrap(), vec![round; 100_000]);
                    let lock = Process::fork(|| Lock::new().unwrap())
                        .unwrap()
                        .join()
                        .unwrap();
                    drop(lock.try_lock().unwrap());
                })
                .join()
                .expect("a forking thread of the child failed");
            }
            let ps: Vec<Process<u64>> = (0..20u64)
                .map(|i| Process::fork(move || sqr(i)).unwrap())
                .collect();
            let got: Vec<u64> = ps.into_iter().map(|p| p.join().unwrap()).collect();
            assert_eq!(got, squares(20));
        });
    });
}

/// The children registry: the parent's children are not the child's.
#[test]
fn children_registry_in_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        let go = Event::new().unwrap();
        let go2 = go.clone();
        let ours = Process::fork(move || go2.wait_timeout(LIMIT).is_ok()).unwrap();
        let our_pid = ours.pid();
        assert!(active_children().contains(&our_pid));
        on_a_forked_childs_second_thread(move || {
            assert!(
                !active_children().contains(&our_pid),
                "the parent's child is listed in the forked child"
            );
            let p = Process::fork(|| 1u8).unwrap();
            assert!(active_children().contains(&p.pid()));
            assert_eq!(p.join().unwrap(), 1);
            assert_eq!(active_children(), Vec::<u32>::new());
        });
        go.set();
        assert!(ours.join().unwrap());
    });
}

/// Shared memory (arena, segment registry, handles sent over a connection): objects made
/// in the child's second thread are shared with its own child and with this process.
#[test]
fn shared_objects_made_in_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        let (ours, theirs) = pipe(true).unwrap();
        let child = std::thread::spawn(move || {
            on_a_forked_childs_second_thread(move || {
                let lock = Lock::new().unwrap();
                let value = Value::new(7u64).unwrap();
                let q: Queue<String> = Queue::new().unwrap();
                let (l2, v2, q2) = (lock.clone(), value.clone(), q.clone());
                let p = Process::fork(move || {
                    let _g = l2.lock().unwrap();
                    v2.set(8);
                    q2.put("from the grandchild".to_string()).unwrap();
                })
                .unwrap();
                p.join().unwrap();
                assert_eq!(q.get_timeout(IN_CHILD).unwrap(), "from the grandchild");
                theirs.send(&(lock.clone(), value.clone())).unwrap();
                theirs.poll_timeout(IN_CHILD).expect("no reply");
                assert_eq!(theirs.recv::<String>().unwrap(), "set to 9");
                assert_eq!(value.get(), 9);
                drop(lock.try_lock().unwrap());
            });
        });
        ours.poll_timeout(LIMIT).expect("nothing from the child");
        let (lock, value): (Lock, Value<u64>) = ours.recv().unwrap();
        assert_eq!(value.get(), 8);
        drop(lock.try_lock().unwrap());
        value.set(9);
        ours.send("set to 9").unwrap();
        child.join().expect("the forked child failed");
    });
}

/// Lock owner identity: the child's second thread holds a lock its own children see held,
/// and sees the death of a child that died holding one.
#[test]
fn lock_owners_in_a_forked_childs_second_thread() {
    with_watchdog(LIMIT, || {
        on_a_forked_childs_second_thread(|| {
            let lock = Lock::new().unwrap();
            let g = lock.lock().unwrap();
            let l2 = lock.clone();
            let p = Process::fork(move || {
                matches!(
                    l2.try_lock(),
                    Err(multiproc::sync::TryLockError::WouldBlock)
                )
            });
            assert!(p.unwrap().join().unwrap(), "a child could take a held lock");
            drop(g);
            let l3 = lock.clone();
            Process::fork(move || {
                std::mem::forget(l3.lock().unwrap());
            })
            .unwrap()
            .join()
            .unwrap();
            assert!(matches!(
                lock.lock_timeout(IN_CHILD),
                Err(multiproc::sync::LockTimeoutError::OwnerDied(_))
            ));
        });
    });
}

/// A pool made before the fork is the parent's (its dispatcher thread and workers): in the
/// child, new work and `join` fail, and `close`, `terminate` and dropping neither wait for
/// a thread the child does not have nor disturb the parent's pool.
#[test]
fn pool_made_before_the_fork_stays_the_parents() {
    with_watchdog(LIMIT, || {
        let shared = Arc::new(Pool::new(1).unwrap());
        assert_eq!(shared.map(sqr, 0..3u64).unwrap(), squares(3));
        let theirs = shared.clone();
        let dropped = Pool::new(1).unwrap();
        on_a_forked_childs_second_thread(move || {
            let not_ours = |e: multiproc::Error| assert_eq!(e.kind(), ErrorKind::InvalidState);
            not_ours(theirs.map(sqr, 0..3u64).unwrap_err());
            not_ours(theirs.apply(sqr, 2).unwrap_err());
            not_ours(theirs.imap(sqr, 0..2u64).map(drop).expect_err("an error"));
            theirs.close();
            not_ours(theirs.join().unwrap_err());
            theirs.terminate();
            drop(theirs);
            drop(dropped);
        });
        assert_eq!(shared.map(sqr, 0..5u64).unwrap(), squares(5));
        shared.close();
        shared.join().unwrap();
    });
}

/// A forked child that panics while another thread of its parent was printing a panic: std's
/// default hook holds a process-wide lock while it prints, and a child forked in that window
/// used to inherit it held and hang at its own first panic. Forks and panic hooks now take
/// turns (`fork::panic_gate`).
#[test]
fn a_child_panics_while_another_parent_thread_is_panicking() {
    with_watchdog(LIMIT, || {
        let r = Process::fork(|| {
            // In a child of our own, so that the test harness's output is not flooded: its
            // stderr goes to /dev/null (panic messages are printed there).
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap();
            rustix::stdio::dup2_stderr(&null).unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s2 = stop.clone();
            let panicker = std::thread::spawn(move || {
                let mut n = 0u64;
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::panic::catch_unwind(|| panic!("noise {n}"));
                    n += 1;
                }
                n
            });
            let mut hung = 0;
            for _ in 0..80 {
                let p = Process::fork(|| -> u8 { panic!("in the child") }).unwrap();
                match p.join_timeout(PANIC_CHILD) {
                    Err(e) if e.is_timeout() => {
                        hung += 1;
                        let _ = p.kill();
                        let _ = p.join_timeout(IN_CHILD);
                    }
                    Ok(_) => unreachable!("the child panicked"),
                    Err(_) => {}
                }
                if hung > 0 {
                    break;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let noise = panicker.join().unwrap();
            (hung, noise)
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(
            r.0, 0,
            "a child hung at its panic ({} panics in the parent)",
            r.1
        );
        assert!(r.1 > 0, "the parent's second thread panicked");
    });
}
