//! Pool tests: CPython's `_TestPool` cases that apply (each names its origin), panicking
//! tasks, and dying workers. Every test runs under the watchdog.

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, StartMethod};

use crate::util::{pid_alive, sigkill, sleep_ms, two_workers, wait_no_zombies, with_watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn sqr(x: i64) -> i64 {
    x * x
}

fn sqr_slow((x, ms): (i64, u64)) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

fn mul((a, b): (i64, i64)) -> i64 {
    a * b
}

fn panic_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x
}

fn getpid(_: ()) -> u32 {
    std::process::id()
}

fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn abort_on(x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x
}

fn exit_on(x: u32) -> u32 {
    if x == 5 {
        std::process::exit(7);
    }
    x
}

// From _TestPool.test_apply.
#[test]
fn apply() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
        assert_eq!(pool.apply(mul, (3, 4)).unwrap(), 12);
    })
}

// From _TestPool.test_map.
#[test]
fn map() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let expect: Vec<i64> = (0..10).map(|x| x * x).collect();
        assert_eq!(pool.map(sqr, 0..10).unwrap(), expect);
        let expect: Vec<i64> = (0..100).map(|x| x * x).collect();
        assert_eq!(pool.map(sqr, 0..100).unwrap(), expect);
    })
}

// From _TestPool.test_map_chunksize (and test_map with chunksize=100): the chunksize is a
// setting of the handle.
#[test]
fn map_chunksize() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let expect: Vec<i64> = (0..1000).map(|x| x * x).collect();
        assert_eq!(pool.with_chunksize(100).map(sqr, 0..1000).unwrap(), expect);
        assert_eq!(pool.with_chunksize(1).map(sqr, 0..1000).unwrap(), expect);
        assert_eq!(pool.with_chunksize(5000).map(sqr, 0..1000).unwrap(), expect);
        let e = pool.with_chunksize(0).map(sqr, 0..3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    })
}

// From _TestPool.test_starmap.
#[test]
fn starmap() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let args: Vec<(i64, i64)> = (0..10).map(|i| (i, i + 1)).collect();
        let expect: Vec<i64> = args.iter().map(|(a, b)| a * b).collect();
        assert_eq!(pool.starmap(mul, args.clone()).unwrap(), expect);
        assert_eq!(
            pool.with_chunksize(3)
                .map_async(mul, args)
                .unwrap()
                .get_timeout(LIMIT)
                .unwrap(),
            expect
        );
    })
}

// From _TestPool.test_async.
#[test]
fn apply_async() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let t = Instant::now();
        let res = pool.apply_async(sqr_slow, (7, 200)).unwrap();
        assert_eq!(res.get_timeout(LIMIT).unwrap(), 49);
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(res.ready());
        assert!(res.successful().unwrap());
        // get() may be called again.
        assert_eq!(res.get().unwrap(), 49);
    })
}

// From _TestPool.test_async_timeout.
#[test]
fn async_timeout() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let res = pool.apply_async(sqr_slow, (6, 1000)).unwrap();
        let t = Instant::now();
        let e = res.get_timeout(Duration::from_millis(100)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(!res.ready());
        // The other forms of the same wait: never blocking, and until an instant.
        assert!(res.try_get().unwrap_err().is_would_block());
        let t = Instant::now();
        let until = t + Duration::from_millis(50);
        assert!(res.get_deadline(until).unwrap_err().is_timeout());
        assert!(res.wait_deadline(until).unwrap_err().is_timeout());
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(
            res.successful().unwrap_err().kind(),
            ErrorKind::InvalidState
        );
        assert!(res
            .wait_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout());
        assert_eq!(res.get_timeout(LIMIT).unwrap(), 36);
        assert_eq!(res.try_get().unwrap(), 36);
        res.wait_deadline(Instant::now()).unwrap();
        pool.terminate();
    })
}

// From _TestPool.test_imap.
#[test]
fn imap() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let it = pool.imap(sqr, 0..10).unwrap();
        let got: Vec<i64> = it.map(|r| r.unwrap()).collect();
        assert_eq!(got, (0..10).map(|x| x * x).collect::<Vec<_>>());
        let mut it = pool.with_chunksize(100).imap(sqr, 0..1000).unwrap();
        for i in 0..1000 {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        assert!(it.next().is_none());
        // Lazy: an endless input is fine.
        let firsts: Vec<i64> = pool
            .imap(sqr, 0..)
            .unwrap()
            .take(5)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(firsts, vec![0, 1, 4, 9, 16]);
    })
}

// From _TestPool.test_imap_unordered.
#[test]
fn imap_unordered() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let mut got: Vec<i64> = pool
            .imap_unordered(sqr, 0..100)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<_>>());
        let mut got: Vec<i64> = pool
            .with_chunksize(53)
            .imap_unordered(sqr, 0..1000)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..1000).map(|x| x * x).collect::<Vec<_>>());
        // A slow first task does not hold back the others.
        let first = pool
            .imap_unordered(sleep_ms, vec![800, 1, 1, 1])
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(first, 1);
    })
}

// From _TestPool.test_make_pool.
#[test]
fn make_pool() {
    with_watchdog(LIMIT, || {
        assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            Pool::builder().processes(0).build().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            Pool::builder()
                .maxtasksperchild(0)
                .build()
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        let p = Pool::new(3).unwrap();
        assert_eq!(p.processes(), 3);
        assert_eq!(p.worker_pids().len(), 3);
        p.close();
        p.join().unwrap();
    })
}

// From _TestPool.test_terminate.
#[test]
fn terminate() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let pids = pool.worker_pids();
        let res = pool
            .with_chunksize(1)
            .map_async(sleep_ms, vec![10_000; 100])
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        pool.terminate();
        // Python: terminate must not wait for the running tasks.
        assert!(t.elapsed() < Duration::from_secs(5));
        pool.join().unwrap();
        assert_eq!(res.get().unwrap_err().kind(), ErrorKind::Closed);
        for p in pids {
            assert!(!pid_alive(p), "worker {p} still alive");
        }
        wait_no_zombies();
    })
}

// From _TestPool.test_empty_iterable.
#[test]
fn empty_iterable() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(sqr, Vec::<i64>::new()).unwrap(), Vec::<i64>::new());
        assert_eq!(pool.starmap(mul, Vec::new()).unwrap(), Vec::<i64>::new());
        assert_eq!(pool.imap(sqr, Vec::new()).unwrap().count(), 0);
        assert_eq!(pool.imap_unordered(sqr, Vec::new()).unwrap().count(), 0);
        assert_eq!(
            pool.map_async(sqr, Vec::new())
                .unwrap()
                .get_timeout(LIMIT)
                .unwrap(),
            Vec::<i64>::new()
        );
    })
}

// From _TestPool.test_context and test_pool_worker_lifetime_early_close (close + join).
#[test]
fn close_join() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidState);
        let pids = pool.worker_pids();
        let res = pool.apply_async(sleep_ms, 300).unwrap();
        let it = pool.imap(sqr, 0..20).unwrap();
        pool.close();
        // Closed: no new work.
        assert_eq!(pool.apply(sqr, 1).unwrap_err().kind(), ErrorKind::Closed);
        // Work submitted before close still completes; an imap made before keeps feeding.
        let got: Vec<i64> = it.map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 20);
        pool.join().unwrap();
        assert_eq!(res.get().unwrap(), 300);
        for p in pids {
            assert!(!pid_alive(p), "worker {p} still alive after join");
        }
        wait_no_zombies();
    })
}

// From _TestPool.test_pool_worker_lifetime (maxtasksperchild).
#[test]
fn maxtasksperchild() {
    with_watchdog(LIMIT, || {
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(10)
            .build()
            .unwrap();
        let first = pool.worker_pids();
        let pids = pool.with_chunksize(1).map(getpid, vec![(); 100]).unwrap();
        let mut distinct = pids.clone();
        distinct.sort();
        distinct.dedup();
        // 100 tasks, at most 10 per worker: at least 10 different workers ran them.
        assert!(distinct.len() >= 10, "only {} workers", distinct.len());
        for p in &distinct {
            assert!(pids.iter().filter(|&q| q == p).count() <= 10);
        }
        assert!(first.iter().all(|p| distinct.contains(&(*p as u32))));
        pool.close();
        pool.join().unwrap();
        wait_no_zombies();
    })
}

static INIT_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn init(v: u64) {
    INIT_SEEN.store(v, std::sync::atomic::Ordering::SeqCst);
}

fn read_init(_: ()) -> u64 {
    INIT_SEEN.load(std::sync::atomic::Ordering::SeqCst)
}

fn bad_init(_: ()) {
    panic!("initializer refuses");
}

// From _TestInitializers.test_pool_initializer.
#[test]
fn initializer() {
    with_watchdog(LIMIT, || {
        for method in [StartMethod::Fork, StartMethod::Spawn] {
            let pool = Pool::builder()
                .processes(2)
                .start_method(method)
                .initializer(init, 42)
                .build()
                .unwrap();
            assert_eq!(pool.map(read_init, vec![(); 8]).unwrap(), vec![42; 8]);
        }
        // A panicking initializer breaks the pool with its message instead of looping.
        let pool = Pool::builder()
            .processes(2)
            .initializer(bad_init, ())
            .build()
            .unwrap();
        let e = pool.apply(sqr, 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildFailed);
        assert!(e.to_string().contains("initializer refuses"), "{e}");
    })
}

#[test]
fn spawn_start_method() {
    with_watchdog(LIMIT, || {
        let pool = two_workers(StartMethod::Spawn);
        let expect: Vec<i64> = (0..500).map(|x| x * x).collect();
        assert_eq!(pool.map(sqr, 0..500).unwrap(), expect);
        let e = pool.apply(panic_on_odd, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildPanicked);
        assert!(Pool::builder()
            .start_method(StartMethod::Spawn)
            .build_with(|x: i32| x)
            .is_err());
    })
}

#[test]
fn closure_pool() {
    with_watchdog(LIMIT, || {
        let table: Vec<u64> = (0..10).map(|i| i * 100).collect();
        let pool = Pool::builder()
            .processes(2)
            .build_with(move |i: usize| table[i] + 1)
            .unwrap();
        assert_eq!(
            pool.map(0..10).unwrap(),
            (0..10).map(|i| i * 100 + 1).collect::<Vec<u64>>()
        );
        assert_eq!(pool.apply(3).unwrap(), 301);
        assert_eq!(
            pool.imap(vec![9, 8])
                .unwrap()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>(),
            vec![901, 801]
        );
        // Index out of range panics in the worker: an error for that task only.
        let got: Vec<_> = pool.imap(vec![1, 99, 2]).unwrap().collect();
        assert_eq!(got[0].as_ref().unwrap(), &101);
        assert_eq!(
            got[1].as_ref().unwrap_err().kind(),
            ErrorKind::ChildPanicked
        );
        assert_eq!(got[2].as_ref().unwrap(), &201);
    })
}

#[test]
fn panicking_task() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<_> = pool
            .with_chunksize(3)
            .imap(panic_on_odd, 0..20)
            .unwrap()
            .collect();
        assert_eq!(got.len(), 20);
        for (i, r) in got.iter().enumerate() {
            if i % 2 == 1 {
                let e = r.as_ref().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                assert!(e.to_string().contains(&format!("odd input {i}")), "{e}");
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u32);
            }
        }
        // map reports the first failure; the pool still works afterwards.
        let e = pool.map(panic_on_odd, 0..10).unwrap_err();
        assert!(e.to_string().contains("odd input 1"), "{e}");
        let r = pool.apply_async(panic_on_odd, 3).unwrap();
        assert!(r.get().is_err());
        assert!(!r.successful().unwrap());
        assert_eq!(pool.map(sqr, 0..4).unwrap(), vec![0, 1, 4, 9]);
    })
}

#[test]
fn dying_worker_fails_only_its_task() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<_> = pool.imap(abort_on, 0..8).unwrap().collect();
        for (i, r) in got.iter().enumerate() {
            if i == 3 {
                let e = r.as_ref().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ChildFailed);
                assert!(e.to_string().contains("SIGABRT"), "{e}");
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u32);
            }
        }
        let got: Vec<_> = pool.imap(exit_on, 0..8).unwrap().collect();
        let e = got[5].as_ref().unwrap_err();
        assert!(e.to_string().contains("exited with code 7"), "{e}");
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 7);
        // Replaced: still two workers, and they work.
        assert_eq!(pool.worker_pids().len(), 2);
        assert_eq!(pool.map(sqr, 0..4).unwrap(), vec![0, 1, 4, 9]);
        wait_no_zombies();
    })
}

#[test]
fn retries_rerun_a_killed_workers_task() {
    with_watchdog(LIMIT, || {
        let pool = Pool::builder().processes(2).retries(2).build().unwrap();
        let r = pool.apply_async(pid_after, 500).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        // Kill whichever worker holds it: kill both, once.
        for p in pool.worker_pids() {
            sigkill(p);
        }
        let pid = r.get_timeout(LIMIT).unwrap();
        assert!(pool.worker_pids().contains(&(pid as i32)));
        wait_no_zombies();
    })
}

fn busy(x: u32) -> u32 {
    // A little work so that kills land mid-task.
    let mut h = x as u64;
    for i in 0..2000u64 {
        h = h.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    std::hint::black_box(h);
    x
}

// The fault test of issue 6: SIGKILL random workers during a 10,000-task map.
#[test]
fn sigkill_workers_during_map() {
    with_watchdog(Duration::from_secs(120), || {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let killer = kill_randomly(pool.clone());
        let got: Vec<_> = pool
            .with_chunksize(20)
            .imap(busy, 0..10_000u32)
            .unwrap()
            .collect();
        let kills = killer.join().unwrap();
        assert_eq!(got.len(), 10_000);
        let mut ok = 0;
        let mut failed = 0;
        for (i, r) in got.iter().enumerate() {
            match r {
                Ok(v) => {
                    assert_eq!(*v, i as u32);
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::ChildFailed, "{e}");
                    assert!(e.to_string().contains("SIGKILL"), "{e}");
                    failed += 1;
                }
            }
        }
        assert_eq!(ok + failed, 10_000);
        assert!(ok > 0);
        // Exact accounting: a kill fails only the one chunk (20 tasks) its worker had begun;
        // the chunk queued behind it goes to another worker.
        assert!(
            failed <= kills * 20,
            "{failed} failed tasks for {kills} kills"
        );
        eprintln!("sigkill test: {kills} kills, {ok} ok, {failed} failed");
        // The pool still works and is whole.
        assert_eq!(pool.map(sqr, 0..10).unwrap().len(), 10);
        assert_eq!(pool.worker_pids().len(), 2);
        pool.close();
        pool.join().unwrap();
        wait_no_zombies();
    })
}

#[test]
fn drop_terminates() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let pids = pool.worker_pids();
        let res = pool.apply_async(sleep_ms, 30_000).unwrap();
        drop(pool);
        assert_eq!(res.get().unwrap_err().kind(), ErrorKind::Closed);
        for p in pids {
            assert!(!pid_alive(p));
        }
        wait_no_zombies();
    })
}

fn fail_slow_or_fast((x, ms): (u32, u64)) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("item {x}");
}

// map takes each chunk's results as they come; it still reports the first failure in item
// order (not in completion order), after every task has finished.
#[test]
fn map_error_is_first_in_item_order() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let t = Instant::now();
        let e = pool
            .with_chunksize(1)
            .map(fail_slow_or_fast, [(0, 300), (1, 0), (2, 0), (3, 0)])
            .unwrap_err();
        assert!(e.to_string().contains("item 0"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300));
    })
}

// Inputs whose length is not known ahead are gathered first (as Python makes a list).
#[test]
fn map_of_unknown_length() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let evens = (0..1000i64).filter(|x| x % 2 == 0);
        let expect: Vec<i64> = evens.clone().map(|x| x * x).collect();
        assert_eq!(pool.map(sqr, evens).unwrap(), expect);
        let big: Vec<i64> = (0..30_000).collect();
        let got = pool.map(sqr, big.iter().copied()).unwrap();
        assert!(got.iter().enumerate().all(|(i, &v)| v == (i * i) as i64));
    })
}

/// Kills a random worker of `pool` every 15 ms, 20 times; returns how many kills were sent.
fn kill_randomly(pool: std::sync::Arc<Pool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut kills = 0;
        let mut seed = 0x2545f4914f6cdd1du64;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(15));
            let pids = pool.worker_pids();
            if pids.is_empty() {
                continue;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            sigkill(pids[(seed % pids.len() as u64) as usize]);
            kills += 1;
        }
        kills
    })
}

// The issue 6 fault test again, for `map`: its caller reads the workers' results itself
// while it waits (the pool's driver), so deaths must reach it from the dispatcher. With
// retries every killed chunk runs again: the map completes with every value right.
#[test]
fn sigkill_workers_during_driven_map() {
    with_watchdog(Duration::from_secs(120), || {
        let pool = std::sync::Arc::new(Pool::builder().processes(2).retries(1000).build().unwrap());
        let killer = kill_randomly(pool.clone());
        let mut maps = 0;
        while !killer.is_finished() || maps == 0 {
            let got = pool.with_chunksize(20).map(busy, 0..10_000u32).unwrap();
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as u32));
            maps += 1;
        }
        let kills = killer.join().unwrap();
        assert!(kills > 0);
        eprintln!("driven map under kills: {kills} kills during {maps} maps");
        assert_eq!(pool.worker_pids().len(), 2);
        pool.close();
        pool.join().unwrap();
        wait_no_zombies();
    })
}

// Without retries a driven map under kills fails with the killed chunk's error (never
// hangs), and AsyncResult::get (also a driver) does the same.
#[test]
fn sigkill_workers_during_driven_map_without_retries() {
    with_watchdog(Duration::from_secs(120), || {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let killer = kill_randomly(pool.clone());
        let mut failed = 0;
        // A kill that lands on an idle worker (between maps, or while a loaded machine keeps
        // the caller from handing it chunks) fails nothing: the worker is replaced. So maps
        // go on after the killer's 20 kills until one has failed (or the time is up).
        let until = std::time::Instant::now() + Duration::from_secs(60);
        let mut more = None;
        while !killer.is_finished() || (failed == 0 && std::time::Instant::now() < until) {
            if killer.is_finished()
                && more
                    .as_ref()
                    .is_none_or(|k: &std::thread::JoinHandle<u32>| k.is_finished())
            {
                more = Some(kill_randomly(pool.clone()));
            }
            let r = if failed % 2 == 0 {
                pool.with_chunksize(20).map(busy, 0..10_000u32)
            } else {
                pool.with_chunksize(20)
                    .map_async(busy, 0..10_000u32)
                    .unwrap()
                    .get_timeout(LIMIT)
                    .map_err(multiproc::Error::from)
            };
            match r {
                Ok(v) => assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32)),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::ChildFailed, "{e}");
                    assert!(e.to_string().contains("SIGKILL"), "{e}");
                    failed += 1;
                }
            }
        }
        killer.join().unwrap();
        if let Some(k) = more {
            k.join().unwrap();
        }
        assert!(failed > 0, "no map failed in 60 s of SIGKILLs");
        assert_eq!(pool.map(sqr, 0..10).unwrap().len(), 10);
        drop(pool);
        wait_no_zombies();
    })
}

// Several threads map at once: one of them drives, the others wait for the results it (or
// the dispatcher) reads; a waiter becomes the driver when the first one is done.
#[test]
fn maps_from_many_threads() {
    with_watchdog(LIMIT, || {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let threads: Vec<_> = (0..4i64)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for k in 0..25i64 {
                        let base = t * 1_000_000 + k * 1000;
                        let got = pool.map(sqr, base..base + 3000).unwrap();
                        assert!(got
                            .iter()
                            .enumerate()
                            .all(|(i, &v)| v == (base + i as i64) * (base + i as i64)));
                        let r = pool.apply_async(sqr, base).unwrap();
                        assert_eq!(r.get().unwrap(), base * base);
                    }
                })
            })
            .collect();
        // An imap beside them (it never drives; whoever drives reads for it).
        let got: Vec<i64> = pool
            .imap(sqr, 0..2000)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(got.iter().enumerate().all(|(i, &v)| v == (i * i) as i64));
        for t in threads {
            t.join().unwrap();
        }
    })
}

// map_async results arrive with nobody waiting in get: ready() turns true by itself.
#[test]
fn map_async_becomes_ready_without_get() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        // A driven map first, so that the dispatcher stopped polling the sockets.
        assert_eq!(pool.map(sqr, 0..100).unwrap().len(), 100);
        let r = pool.map_async(sqr, 0..20_000).unwrap();
        while !r.ready() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.get().unwrap().len(), 20_000);
        let r = pool.apply_async(sqr, 12).unwrap();
        while !r.ready() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.get().unwrap(), 144);
    })
}

fn blob(n: u32) -> Vec<u8> {
    vec![n as u8; 64 * 1024]
}

fn blob_len(b: Vec<u8>) -> usize {
    assert!(b.iter().all(|&x| x == b[0]));
    b.len() + b[0] as usize
}

// A chunk's arguments and outcomes pass through shared memory when they fit the worker's
// mailbox slot (256 KiB), inline in the socket message when not: both ways, both sizes.
#[test]
fn large_chunks_go_inline() {
    with_watchdog(LIMIT, || {
        large_chunks_with(StartMethod::Fork);
        large_chunks_with(StartMethod::Spawn);
    })
}

fn large_chunks_with(method: StartMethod) {
    {
        let pool = two_workers(method);
        // Small arguments, 8 x 64 KiB of results per chunk (inline).
        let got = pool.with_chunksize(8).map(blob, 0..40u32).unwrap();
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, b)| b.len() == 64 * 1024 && b.iter().all(|&x| x == i as u8)));
        // 8 x 64 KiB of arguments per chunk (inline), small results; then 2 per chunk (slot).
        for chunk in [8, 2] {
            let args: Vec<Vec<u8>> = (0..24u32).map(blob).collect();
            let got = pool.with_chunksize(chunk).map(blob_len, args).unwrap();
            assert_eq!(got, (0..24).map(|i| 64 * 1024 + i).collect::<Vec<_>>());
        }
        // Both sizes in one imap (slot and inline chunks alternate on each worker).
        let got: Vec<usize> = pool
            .with_chunksize(1)
            .imap(
                blob_len,
                (0..30u32).map(|i| blob(i).repeat(1 + (i % 5) as usize)),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            (0..30)
                .map(|i| 64 * 1024 * (1 + i % 5) + i)
                .collect::<Vec<_>>()
        );
    }
}

// terminate() from another thread while a map waits as the driver: the map returns the
// Closed error at once (the dispatcher pokes the driver), the workers are gone.
#[test]
fn terminate_while_a_map_drives() {
    with_watchdog(LIMIT, || {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let pids = pool.worker_pids();
        let stopper = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                pool.terminate();
            })
        };
        let t = Instant::now();
        let e = pool
            .with_chunksize(1)
            .map(sleep_ms, vec![400u64; 8])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        stopper.join().unwrap();
        for p in pids {
            assert!(!pid_alive(p));
        }
        wait_no_zombies();
    })
}
