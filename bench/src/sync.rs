//! Locks and events: uncontended Lock lock+unlock (reference `std::sync::Mutex`), contended
//! between 2 processes (reference: a bare futex lock in shared memory with a short spin), and
//! Event ping-pong between 2 processes. Python's `multiprocessing` equivalents beside them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{Event, Lock, Process};

use crate::harness::{median, median_of, python, time_us, Better, Config, Row};

const UNCONTENDED_ITERS: usize = 1_000_000;
const CONTENDED_ITERS: u64 = 200_000;
const PINGS: u64 = 5_000;

/// ns per lock+unlock of `f` called `UNCONTENDED_ITERS` times per sample.
fn ns_per(samples: usize, mut f: impl FnMut()) -> f64 {
    time_us(samples, UNCONTENDED_ITERS, &mut f) * 1000.0
}

// ---- the bare futex lock (reference for the contended row) ---------------------------------

/// 0 unlocked, 1 locked, 2 locked with waiters (std's futex mutex), short spin.
fn bare_lock(w: &AtomicU32) {
    if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    for _ in 0..100 {
        if w.load(Ordering::Relaxed) == 0
            && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        std::hint::spin_loop();
    }
    while w.swap(2, Ordering::Acquire) != 0 {
        // SAFETY: FUTEX_WAIT on a valid, aligned u32 in shared memory; no timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAIT,
                2u32,
                0usize,
                0usize,
                0u32,
            )
        };
    }
}

fn bare_unlock(w: &AtomicU32) {
    if w.swap(0, Ordering::Release) == 2 {
        // SAFETY: FUTEX_WAKE only uses the address as a key.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                w.as_ptr(),
                libc::FUTEX_WAKE,
                1i32,
                0usize,
                0usize,
                0u32,
            )
        };
    }
}

/// A page of anonymous shared memory (inherited by forked children), never unmapped.
fn shared_page() -> &'static [AtomicU64; 512] {
    crate::harness::shared_atomics(512)
        .try_into()
        .expect("512 atomics")
}

/// Two processes each running `critical` (lock, increment `counter`, unlock) `iters` times;
/// ns per lock+unlock overall. Checks no update was lost.
fn contended(
    iters: u64,
    critical: impl Fn() + Clone + Send + 'static,
    counter: &'static AtomicU64,
) -> f64 {
    counter.store(0, Ordering::Relaxed);
    let t = Instant::now();
    let kids: Vec<Process<()>> = (0..2)
        .map(|_| {
            let c = critical.clone();
            Process::fork(move || {
                for _ in 0..iters {
                    c();
                }
            })
            .unwrap()
        })
        .collect();
    for k in kids {
        k.join().unwrap();
    }
    let el = t.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), 2 * iters, "lost updates");
    el.as_nanos() as f64 / (2 * iters) as f64
}

fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

pub(crate) fn ping_pong_us(n: u64) -> f64 {
    ping_pong_warm_us(0, n)
}

/// [`ping_pong_us`] after `warm` untimed round trips (the child's start-up left out).
pub(crate) fn ping_pong_warm_us(warm: u64, n: u64) -> f64 {
    let (a, b) = (Event::new().unwrap(), Event::new().unwrap());
    let (a2, b2) = (a.clone(), b.clone());
    let child = Process::fork(move || {
        for _ in 0..warm + n {
            a2.wait();
            a2.clear();
            b2.set();
        }
    })
    .unwrap();
    let trip = || {
        a.set();
        b.wait_timeout(Duration::from_secs(30)).expect("pong lost");
        b.clear();
    };
    (0..warm).for_each(|_| trip());
    let t = Instant::now();
    (0..n).for_each(|_| trip());
    let el = t.elapsed();
    child.join().unwrap();
    el.as_secs_f64() * 1e6 / n as f64
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(
        &["lock_uncontended", "lock_contended", "event_ping_pong"],
        cfg.quick,
    );
    let n = cfg.samples(15);

    let lock = Lock::new().unwrap();
    let ours = ns_per(n, || drop(std::hint::black_box(&lock).lock().unwrap()));
    let m = std::sync::Mutex::new(0u64);
    let std_m = ns_per(n, || *std::hint::black_box(&m).lock().unwrap() += 1);

    let page = shared_page();
    let counter: &'static AtomicU64 = &page[8];
    // The bare lock's word: the low half of the page's first u64 (never used as a u64).
    let word: &'static AtomicU32 = {
        let p = &page[0] as *const AtomicU64 as *const AtomicU32;
        // SAFETY: aligned (u64 alignment), inside the leaked page, only used as an AtomicU32.
        unsafe { &*p }
    };
    let iters = if cfg.quick {
        CONTENDED_ITERS / 4
    } else {
        CONTENDED_ITERS
    };
    // Bare and ours alternate sample by sample, so that both see the same machine (where the
    // scheduler puts the two processes decides whether they really contend).
    let (mut bare_v, mut ours_v) = (Vec::new(), Vec::new());
    for _ in 0..cfg.samples(7) {
        bare_v.push(contended(
            iters,
            move || {
                bare_lock(word);
                bump(counter);
                bare_unlock(word);
            },
            counter,
        ));
        let l = lock.clone();
        ours_v.push(contended(
            iters,
            move || {
                let _g = l.lock().unwrap();
                bump(counter);
            },
            counter,
        ));
    }
    let (bare, ours_c) = (median(&mut bare_v), median(&mut ours_v));

    let pp = median_of(cfg.samples(5), || {
        ping_pong_us(if cfg.quick { PINGS / 5 } else { PINGS })
    });

    vec![
        Row {
            name: "Lock lock+unlock, uncontended".into(),
            unit: "ns",
            better: Better::Lower,
            ours,
            baseline: py.get("lock_uncontended").copied(),
            reference: Some(("std::sync::Mutex".into(), std_m)),
        },
        Row {
            name: "Lock lock+unlock, 2 processes contending".into(),
            unit: "ns",
            better: Better::Lower,
            ours: ours_c,
            baseline: py.get("lock_contended").copied(),
            reference: Some(("bare futex lock in shm".into(), bare)),
        },
        Row {
            name: "Event ping-pong round trip, 2 processes".into(),
            unit: "us",
            better: Better::Lower,
            ours: pp,
            baseline: py.get("event_ping_pong").copied(),
            reference: None,
        },
    ]
}
