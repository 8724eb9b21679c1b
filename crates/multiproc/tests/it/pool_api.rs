//! The pool's API as a user guesses it (issue 12): tasks that carry a context with both start
//! methods, chunksize as a setting, the same calls on every kind of pool, callbacks,
//! `starmap_async`, the timeout vocabulary, an `Imap` that outlives its `Pool` handle, and
//! panicking tasks reported once, in the caller, with nothing printed by the workers.
//! Every test runs under the watchdog.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use multiproc::pool::{GetTimeoutError, TryGetError};
use multiproc::{ErrorKind, Pool, PoolBuilder, Queue, StartMethod};

use crate::util::{
    join_within, pid_alive, sigkill, sleep_ms, two_workers, until, wait_no_zombies, with_watchdog,
};

const LIMIT: Duration = Duration::from_secs(60);

fn sqr(x: u64) -> u64 {
    x * x
}

fn panic_on_odd(x: u64) -> u64 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x
}

fn getpid(_: ()) -> u32 {
    std::process::id()
}

/// Decodes of a `Counted` in this process (in a worker: of the contexts it was sent).
static DECODES: AtomicU64 = AtomicU64::new(0);

/// A value that counts its decodes.
struct Counted<T>(T);

impl<T: Serialize> Serialize for Counted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Counted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        T::deserialize(d).map(Counted)
    }
}

#[derive(Serialize, Deserialize)]
struct Scale {
    factor: u64,
    /// Makes the context larger than a socket's buffer (sent in several writes).
    table: Vec<u8>,
}

type Ctx = Counted<Scale>;

/// `factor * x + table[x % len]`, with this worker's context decode count and pid.
fn probe(c: &Ctx, x: u64) -> (u64, u64, u32) {
    let s = &c.0;
    let v = s.factor * x + s.table[x as usize % s.table.len()] as u64;
    (v, DECODES.load(Ordering::SeqCst), std::process::id())
}

fn scale((a, b): (u64, u64)) -> u64 {
    a * b
}

fn scaled_pair(c: &Ctx, (a, b): (u64, u64)) -> u64 {
    c.0.factor * a + b
}

fn context(factor: u64) -> Ctx {
    Counted(Scale {
        factor,
        table: (0..600_000u32).map(|i| (i % 7) as u8).collect(),
    })
}

fn expect(factor: u64, x: u64) -> u64 {
    factor * x + x % 7
}

/// Checks `got` (from `probe`) against the inputs: right values, and every worker decoded
/// the context exactly once (so it was sent to it once).
fn check_probe(factor: u64, inputs: impl Iterator<Item = u64>, got: &[(u64, u64, u32)]) {
    let inputs: Vec<u64> = inputs.collect();
    assert_eq!(got.len(), inputs.len());
    for (x, (v, decodes, pid)) in inputs.iter().zip(got) {
        assert_eq!(*v, expect(factor, *x));
        assert_eq!(
            *decodes, 1,
            "worker {pid} decoded the context {decodes} times"
        );
    }
}

// Python: `pool.map(partial(f, config), xs)`. The context reaches workers started either
// way, once per worker, and every call of the handle has it.
#[test]
fn context_with_both_start_methods() {
    with_watchdog(LIMIT, || {
        for method in [StartMethod::Fork, StartMethod::Spawn] {
            let pool = two_workers(method);
            let ctx = context(10);
            let with = pool.with_context(&ctx).unwrap();
            // One task per chunk: 100 chunks, the context goes to each worker once.
            let got = with.with_chunksize(1).map(probe, 0..100).unwrap();
            check_probe(10, 0..100, &got);
            assert!(got.iter().any(|g| g.2 != got[0].2), "one worker ran it all");
            let got: Vec<_> = with
                .imap(probe, 0..40)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            check_probe(10, 0..40, &got);
            let mut got: Vec<_> = with
                .imap_unordered(probe, 0..40)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            got.sort();
            check_probe(10, 0..40, &got);
            assert_eq!(with.apply(probe, 5).unwrap().0, expect(10, 5));
            let r = with.apply_async(probe, 6).unwrap();
            assert_eq!(r.get().unwrap().0, expect(10, 6));
            let r = with.map_async(probe, 0..10).unwrap();
            check_probe(10, 0..10, &r.get().unwrap());
            assert_eq!(
                with.starmap(scaled_pair, [(1, 2), (3, 4)]).unwrap(),
                vec![12, 34]
            );
            let r = with.starmap_async(scaled_pair, [(5, 6)]).unwrap();
            assert_eq!(r.get().unwrap(), vec![56]);
            // Another context on the same pool: sent again (decoded a second time).
            let other = pool.with_context(&context(3)).unwrap();
            let got = other.map(probe, 0..8).unwrap();
            for (x, (v, decodes, _)) in (0..8).zip(&got) {
                assert_eq!(*v, expect(3, x));
                assert!(*decodes >= 2);
            }
            // Plain tasks beside them.
            assert_eq!(pool.map(sqr, 0..4).unwrap(), vec![0, 1, 4, 9]);
            // The first context again: its values, whatever the worker held last.
            assert_eq!(with.apply(probe, 9).unwrap().0, expect(10, 9));
            with.close();
            with.join().unwrap();
        }
        wait_no_zombies();
    })
}

// Workers that replace killed ones get the context too (the pool knows who holds what).
#[test]
fn context_reaches_replacement_workers() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let with = pool.with_context(&context(7)).unwrap();
        check_probe(7, 0..20, &with.with_chunksize(1).map(probe, 0..20).unwrap());
        let old = pool.worker_pids();
        for p in &old {
            sigkill(*p);
        }
        until("workers replaced", || {
            let now = pool.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        });
        let got = with.with_chunksize(1).map(probe, 0..20).unwrap();
        check_probe(7, 0..20, &got);
        assert!(got.iter().all(|g| !old.contains(&(g.2 as i32))));
        wait_no_zombies();
    })
}

// A context must serialize here, in the caller: a handle inside cannot travel this way.
#[test]
fn context_that_does_not_serialize() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let q: Queue<u32> = Queue::new().unwrap();
        let e = pool.with_context(&q).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
        // An empty context is fine.
        fn add_unit(_: &(), x: u64) -> u64 {
            x + 1
        }
        let with = pool.with_context(&()).unwrap();
        assert_eq!(with.map(add_unit, 0..3).unwrap(), vec![1, 2, 3]);
    })
}

// The chunksize is a setting: the pool's default from the builder, or a handle's. With
// maxtasksperchild(1) each worker runs one chunk, so the pids show how tasks were chunked.
#[test]
fn chunksize_is_a_setting() {
    with_watchdog(LIMIT, || {
        let pool = PoolBuilder::new()
            .processes(2)
            .maxtasksperchild(1)
            .chunksize(10)
            .build()
            .unwrap();
        let runs = |pids: Vec<u32>| {
            let mut n: HashMap<u32, usize> = HashMap::new();
            for p in pids {
                *n.entry(p).or_default() += 1;
            }
            let mut sizes: Vec<usize> = n.into_values().collect();
            sizes.sort();
            sizes
        };
        assert_eq!(runs(pool.map(getpid, vec![(); 40]).unwrap()), vec![10; 4]);
        let wide = pool.with_chunksize(20);
        assert_eq!(runs(wide.map(getpid, vec![(); 40]).unwrap()), vec![20; 2]);
        let pids: Vec<u32> = wide
            .imap(getpid, vec![(); 40])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(runs(pids), vec![20; 2]);
        // The pool's own handle keeps its default.
        let pids: Vec<u32> = pool
            .imap_unordered(getpid, vec![(); 30])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(runs(pids), vec![10; 3]);
        let e = pool.with_chunksize(0).imap(getpid, vec![()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = pool
            .with_chunksize(0)
            .map_async(getpid, vec![()])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    })
}

// A closure pool has the pool's calls (the same implementation underneath).
#[test]
fn closure_pool_has_the_pool_calls() {
    with_watchdog(LIMIT, || {
        let offset = 1000u64;
        let pool = Pool::builder()
            .processes(2)
            .build_with(move |(a, b): (u64, u64)| a * b + offset)
            .unwrap();
        let args: Vec<(u64, u64)> = (0..20).map(|i| (i, i + 1)).collect();
        let expect: Vec<u64> = args.iter().map(|(a, b)| a * b + offset).collect();
        assert_eq!(pool.map(args.clone()).unwrap(), expect);
        assert_eq!(pool.starmap(args.clone()).unwrap(), expect);
        assert_eq!(pool.with_chunksize(3).map(args.clone()).unwrap(), expect);
        let r = pool.map_async(args.clone()).unwrap();
        assert_eq!(r.get().unwrap(), expect);
        let r = pool.with_chunksize(7).starmap_async(args.clone()).unwrap();
        assert_eq!(r.get().unwrap(), expect);
        assert_eq!(pool.apply((6, 7)).unwrap(), 1042);
        assert_eq!(pool.apply_async((2, 3)).unwrap().get().unwrap(), 1006);
        let got: Vec<u64> = pool
            .with_chunksize(4)
            .imap(args.clone())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expect);
        let mut got: Vec<u64> = pool
            .imap_unordered(args)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        got.sort();
        assert_eq!(got, expect);
        pool.close();
        pool.join().unwrap();
    })
}

// Python's starmap_async.
#[test]
fn starmap_async() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let r = pool.starmap_async(scale, [(2, 3), (4, 5)]).unwrap();
        assert_eq!(r.get_timeout(LIMIT).unwrap(), vec![6, 20]);
    })
}

// Callbacks run once per result, on the pool's callback thread, in this process: the
// success callback with the value, the error callback with the error; `join` returns after
// all have run.
#[test]
fn callbacks_run_once_per_result() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let me = std::process::id();
        let oks = Arc::new(AtomicUsize::new(0));
        let errs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<(u64, u32, Option<String>)>();
        let mut results = Vec::new();
        for x in 0..40u64 {
            let (oks, errs) = (oks.clone(), errs.clone());
            let (tx, etx) = (tx.clone(), tx.clone());
            let r = pool
                .apply_async(panic_on_odd, x)
                .unwrap()
                .callback(move |v| {
                    oks.fetch_add(1, Ordering::SeqCst);
                    let name = std::thread::current().name().map(String::from);
                    tx.send((v, std::process::id(), name)).unwrap();
                })
                .error_callback(move |e| {
                    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                    assert!(e.to_string().contains(&format!("odd input {x}")), "{e}");
                    errs.fetch_add(1, Ordering::SeqCst);
                    etx.send((x, std::process::id(), None)).unwrap();
                });
            results.push(r);
        }
        // A map's callback gets the whole list, once.
        let lists = Arc::new(AtomicUsize::new(0));
        let (l2, ltx) = (lists.clone(), tx.clone());
        let m = pool
            .map_async(sqr, 0..100)
            .unwrap()
            .callback(move |v| {
                assert_eq!(v, (0..100).map(|x| x * x).collect::<Vec<_>>());
                l2.fetch_add(1, Ordering::SeqCst);
                ltx.send((1000, std::process::id(), None)).unwrap();
            })
            .error_callback(|e| panic!("map failed: {e}"));
        drop(tx);
        pool.close();
        pool.join().unwrap();
        // Every callback ran before join returned.
        assert_eq!(oks.load(Ordering::SeqCst), 20);
        assert_eq!(errs.load(Ordering::SeqCst), 20);
        assert_eq!(lists.load(Ordering::SeqCst), 1);
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got.len(), 41);
        for (v, pid, name) in &got {
            assert_eq!(*pid, me, "a callback ran in another process");
            if v % 2 == 0 && *v < 1000 {
                assert_eq!(name.as_deref(), Some("multiproc-pool-callbacks"));
            }
        }
        // The results still work, callbacks or not.
        assert_eq!(results[4].get().unwrap(), 4);
        assert!(results[5].get().is_err());
        assert_eq!(m.get().unwrap().len(), 100);
        // A callback set after join runs at once, here.
        let here = std::thread::current().id();
        let ran = Arc::new(AtomicUsize::new(0));
        let r2 = ran.clone();
        let _ = results.remove(0).callback(move |v| {
            assert_eq!(v, 0);
            assert_eq!(std::thread::current().id(), here);
            r2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    })
}

// A callback set on a result that is there already runs (on the callback thread) without
// waiting for anything else; terminate fails the unfinished tasks and runs their error
// callbacks before it returns.
#[test]
fn callbacks_on_ready_and_terminated_results() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(sqr, 3).unwrap();
        assert_eq!(r.get().unwrap(), 9);
        let (tx, rx) = mpsc::channel();
        let _r = r.callback(move |v| tx.send(v).unwrap());
        assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 9);
        let closed = Arc::new(AtomicUsize::new(0));
        let c2 = closed.clone();
        let _slow = pool
            .apply_async(sleep_ms, 30_000)
            .unwrap()
            .callback(|_| panic!("it was terminated"))
            .error_callback(move |e| {
                assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
                c2.fetch_add(1, Ordering::SeqCst);
            });
        // A panicking callback does not stop the ones after it.
        let _p = pool
            .apply_async(sleep_ms, 30_000)
            .unwrap()
            .error_callback(|_| panic!("a callback that panics"));
        let c3 = closed.clone();
        let _last = pool
            .apply_async(sleep_ms, 30_000)
            .unwrap()
            .error_callback(move |_| {
                c3.fetch_add(1, Ordering::SeqCst);
            });
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        pool.terminate();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(closed.load(Ordering::SeqCst), 2);
    })
}

// The timeout vocabulary on Imap: try_next never waits, next_timeout / next_deadline wait so
// long; a timeout is `Timeout`, a failed task `Failed`, the end `None`.
#[test]
fn imap_waits() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let mut it = pool.imap(sleep_ms, vec![300, 0]).unwrap();
        assert!(matches!(it.try_next(), Some(Err(TryGetError::WouldBlock))));
        let t = Instant::now();
        let r = it.next_timeout(Duration::from_millis(50));
        assert!(matches!(r, Some(Err(GetTimeoutError::Timeout))), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(50));
        let r = it.next_deadline(Instant::now() + Duration::from_millis(10));
        assert!(r.unwrap().unwrap_err().is_timeout());
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 300);
        assert_eq!(
            it.next_deadline(Instant::now() + LIMIT).unwrap().unwrap(),
            0
        );
        assert!(it.next_timeout(LIMIT).is_none());
        assert!(it.try_next().is_none());
        let mut it = pool.imap(panic_on_odd, 0..3).unwrap();
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 0);
        match it.next_timeout(LIMIT) {
            Some(Err(GetTimeoutError::Failed(e))) => {
                assert_eq!(e.kind(), ErrorKind::ChildPanicked)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(it.next().unwrap().unwrap(), 2);
    })
}

// Issue 12 point 13: an Imap outlives its Pool handle and still yields every result (it
// keeps the pool alive); the workers go once it is dropped.
#[test]
fn imap_outlives_its_pool_handle() {
    with_watchdog(LIMIT, || {
        fn make() -> (multiproc::Imap<'static, u64>, Vec<i32>) {
            let pool = Pool::new(2).unwrap();
            let pids = pool.worker_pids();
            (pool.imap(sqr, 0..200).unwrap(), pids)
        }
        let (it, pids) = make();
        let got: Vec<u64> = it.collect::<Result<_, _>>().unwrap();
        assert_eq!(got, (0..200).map(|x| x * x).collect::<Vec<_>>());
        for p in &pids {
            assert!(
                !pid_alive(*p),
                "worker {p} outlived the pool and its iterator"
            );
        }
        // An unordered one from a chunksize handle, the pool dropped mid-way.
        let pool = Pool::new(2).unwrap();
        let pids = pool.worker_pids();
        let mut it = pool
            .with_chunksize(5)
            .imap_unordered(sleep_ms, vec![1; 60])
            .unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 1);
        drop(pool);
        assert_eq!(it.by_ref().filter(|r| r.is_ok()).count(), 59);
        assert!(pids.iter().all(|p| pid_alive(*p)));
        drop(it);
        for p in &pids {
            assert!(
                !pid_alive(*p),
                "worker {p} outlived the pool and its iterator"
            );
        }
        // A closure pool's too.
        let cp = Pool::builder()
            .processes(1)
            .build_with(|x: u64| x + 1)
            .unwrap();
        let it = cp.imap(0..10).unwrap();
        drop(cp);
        assert_eq!(it.map(|r| r.unwrap()).sum::<u64>(), 55);
        wait_no_zombies();
    })
}

const PANIC_CHILD: &str = "MULTIPROC_TEST_POOL_PANIC_CHILD";

// Issue 12 point 12: a pool whose tasks panic, in a child process whose stderr is captured,
// with RUST_BACKTRACE=1: the workers print nothing, the caller gets each panic once, in the
// task's error, with the message and where it happened; a panic of the caller's own threads
// is still printed as usual.
#[test]
fn panics_are_reported_once_not_printed() {
    with_watchdog(LIMIT, || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pool_api::panic_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PANIC_CHILD, "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
        // The caller's own thread's panic: printed once, by the default hook.
        assert_eq!(
            stderr.matches("a panic of the caller").count(),
            1,
            "{stderr}"
        );
        let workers = stderr.replace("a panic of the caller", "");
        assert!(
            !workers.contains("odd input"),
            "a worker printed:\n{stderr}"
        );
        assert!(
            !workers.contains("context refuses"),
            "a worker printed:\n{stderr}"
        );
        assert_eq!(
            stderr.matches("panicked").count(),
            1,
            "panics printed:\n{stderr}"
        );
        assert!(stderr.matches("stack backtrace").count() <= 1, "{stderr}");
        for method in ["Fork", "Spawn"] {
            for what in ["map", "imap 1", "imap 3", "apply", "context"] {
                let line = format!("{method} {what}: ");
                assert_eq!(stdout.matches(&line).count(), 1, "{line}\n{stdout}");
            }
        }
        // The message says where the task panicked.
        assert!(stdout.contains("odd input 1 (at "), "{stdout}");
        assert!(stdout.contains("pool_api.rs:"), "{stdout}");
    })
}

fn refuse(_: &u64, _: u64) -> u64 {
    panic!("context refuses")
}

/// The child of `panics_are_reported_once_not_printed` (does nothing in a normal run).
#[test]
fn panic_child() {
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let pool = two_workers(method);
        let e = pool.map(panic_on_odd, 0..10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildPanicked);
        println!("{method:?} map: {e}");
        for (i, r) in pool.imap(panic_on_odd, 0..4).unwrap().enumerate() {
            if let Err(e) = r {
                println!("{method:?} imap {i}: {e}");
            }
        }
        let e = pool.apply(panic_on_odd, 5).unwrap_err();
        println!("{method:?} apply: {e}");
        let e = pool
            .with_context(&1u64)
            .unwrap()
            .apply(refuse, 0)
            .unwrap_err();
        println!("{method:?} context: {e}");
        pool.close();
        pool.join().unwrap();
    }
    // This process's own panics still reach the hook that was there before the pool's.
    let r = std::thread::spawn(|| panic!("a panic of the caller")).join();
    assert!(r.is_err());
}

// A result made before a fork is the parent's: in the child its waits neither hang nor touch
// the parent's locks, and a callback set there does not run; the parent still gets it.
#[test]
fn results_made_before_a_fork_stay_the_parents() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let slow = pool.apply_async(sleep_ms, 500).unwrap();
        let done = pool.apply_async(sqr, 3).unwrap();
        assert_eq!(done.get().unwrap(), 9);
        let (s2, d2) = (
            pool.apply_async(sleep_ms, 1).unwrap(),
            pool.apply_async(sqr, 4).unwrap(),
        );
        let child = multiproc::Process::fork(move || {
            let t = Instant::now();
            for r in [&s2, &d2] {
                assert_eq!(r.get().unwrap_err().kind(), ErrorKind::InvalidState);
                assert!(matches!(r.try_get(), Err(TryGetError::Failed(_))));
                let e = r.get_timeout(LIMIT).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidState);
                assert!(r.wait_timeout(LIMIT).is_err());
                r.wait();
                assert!(!r.ready());
                assert!(r.successful().is_err());
            }
            let _ = d2.callback(|_| panic!("ran in the child"));
            assert!(t.elapsed() < Duration::from_secs(10));
        })
        .unwrap();
        join_within(&child, LIMIT).expect("the child hung");
        assert_eq!(slow.get().unwrap(), 500);
        assert_eq!(done.get().unwrap(), 9);
    })
}

/// Handles move between threads.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<PoolBuilder>();
    send_sync::<multiproc::AsyncResult<Vec<u64>>>();
    send_sync::<multiproc::pool::WithContext<String>>();
    send_sync::<multiproc::ClosurePool<u64, u64>>();
}

// Pool::join's four forms: a join that runs out says so and can be called again; the
// timeout covers the workers' end and the callbacks still to run.
#[test]
fn pool_join_has_try_timeout_and_deadline_forms() {
    use multiproc::pool::{JoinTimeoutError, TryJoinError};
    with_watchdog(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        // Not closed: the same error as join's, in every form.
        assert!(
            matches!(pool.try_join(), Err(TryJoinError::Failed(e)) if e.kind() == ErrorKind::InvalidState)
        );
        assert!(matches!(
            pool.join_timeout(Duration::from_millis(1)),
            Err(JoinTimeoutError::Failed(e)) if e.kind() == ErrorKind::InvalidState
        ));
        // A task that runs 400 ms; its callback then takes 400 ms more.
        let (started, ran) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let r = {
            let (started, ran) = (started.clone(), ran.clone());
            pool.apply_async(sleep_ms, 400).unwrap().callback(move |_| {
                started.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
                ran.fetch_add(1, Ordering::SeqCst);
            })
        };
        pool.close();
        assert!(pool.try_join().unwrap_err().is_would_block());
        let t0 = Instant::now();
        let e = pool.join_timeout(Duration::from_millis(50)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // Once the callback is running, the workers are done but join still waits for it.
        until("the callback started", || {
            started.load(Ordering::SeqCst) > 0
        });
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let e = pool
            .join_deadline(Instant::now() + Duration::from_millis(20))
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        pool.join_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            1,
            "join returned after the callback ran"
        );
        assert_eq!(r.get().unwrap(), 400);
        pool.try_join().unwrap();
        pool.join().unwrap();
    });
}
