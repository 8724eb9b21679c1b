//! Waiting under load (issue 18): what a consumer costs while it waits for a trickle of work,
//! how a queue scales with more processes than cores, how fair a contended lock is, and round
//! trips while two CPU-bound processes compete for the same two cores. Ours and Python's
//! `multiprocessing` are interleaved sample by sample (one of ours, then one of Python's), so
//! both see the same machine.
//!
//! - **Trickle**: a producer puts one 8-byte message (its send time) every 1/rate s for
//!   1.5 s into an unbounded queue; the consumer process reports its own CPU time per message
//!   (`getrusage`, from its first message to its last) and the delivery latency, median and
//!   99th percentile (send time to `get` returning, on `CLOCK_MONOTONIC`). The reference is
//!   the floor: the same trickle through a bare futex (the consumer sleeps at once, the
//!   producer wakes it), what a wake-up of a sleeping process costs on this machine.
//! - **N->N**: N producer processes -> N consumer processes through one
//!   `Queue::bounded(1000)`, 64-byte messages; the reference is our own 1->1 of the same run.
//! - **Lock fairness**: P processes lock, count, unlock one `Lock` for 0.5 s; acquisitions per
//!   second in all, and fairness as the fewest acquisitions of one process over the most.
//! - **Beside two hogs**: Event, Pipe (small object) and Queue (request/reply over two queues)
//!   round trips while two busy-looping processes run (about 3.x cores wanted on 2).
//! - **On one CPU**: the same round trips with both ends pinned to one CPU, so that every
//!   answer needs a sleep, a wake-up and a context switch: where a round trip lands when the
//!   scheduler puts both ends on one CPU (beside hogs, a round trip has two modes: both ends
//!   on their own CPUs, or on one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{Event, Lock, Process, Queue};

use crate::harness::{median, python, shared_atomics, Better, Config, Row};

const T: Duration = Duration::from_secs(60);

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's user + system CPU time, in microseconds.
fn cpu_us() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to write.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// (consumer CPU us per message, latency median us, latency p99 us) at `rate` messages/s.
fn trickle(rate: u64) -> (f64, f64, f64) {
    let q: Queue<u64> = Queue::new().unwrap();
    let qc = q.clone();
    paced(
        rate,
        move |_| qc.get_timeout(T).unwrap(),
        || q.put(mono_ns()).unwrap(),
    )
}

/// The floor of [`trickle`]: the same producer and consumer with no queue, only a futex. The
/// producer stores its send time and bumps a shared word, then wakes the consumer, which
/// sleeps on that word without spinning first (`FUTEX_WAIT`). What a sleeping consumer's
/// wake-up costs on this machine, in CPU and in latency: (CPU us per message, latency median
/// us, latency p99 us).
fn bare_trickle(rate: u64, flags: &'static [AtomicU64]) -> (f64, f64, f64) {
    let (word, sent) = (&flags[16], &flags[24]);
    word.store(0, Ordering::SeqCst);
    let futex = |op: i32, val: u32| {
        // SAFETY: FUTEX_WAIT/FUTEX_WAKE on the low 32 bits of a live, aligned AtomicU64 in
        // shared memory (little-endian); no timeout, no second word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word as *const AtomicU64 as *const u32,
                op,
                val,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        }
    };
    paced(
        rate,
        move |i| {
            // Message `i` is there once the word has counted past `i` (two bumps may come
            // before one look: a look then counts as two messages).
            loop {
                let now = word.load(Ordering::Acquire);
                if now > i as u64 {
                    return sent.load(Ordering::Acquire);
                }
                futex(libc::FUTEX_WAIT, now as u32);
            }
        },
        || {
            sent.store(mono_ns(), Ordering::Release);
            word.fetch_add(1, Ordering::Release);
            futex(libc::FUTEX_WAKE, 1);
        },
    )
}

/// A trickle of 1.5 s at `rate` messages/s: this process calls `send` once every 1/rate s;
/// a forked consumer calls `take(i)` for message `i`, which returns that message's send time
/// (`mono_ns`). The consumer's CPU time per message and its latency median and 99th
/// percentile, counted from its first message on, all in us.
fn paced(
    rate: u64,
    mut take: impl FnMut(usize) -> u64 + Send + 'static,
    mut send: impl FnMut(),
) -> (f64, f64, f64) {
    let n = (rate as f64 * 1.5) as usize;
    let c = Process::fork(move || {
        take(0);
        let cpu0 = cpu_us();
        let mut lat = Vec::with_capacity(n);
        for i in 1..n {
            let sent = take(i);
            lat.push(mono_ns().saturating_sub(sent));
        }
        let cpu = cpu_us() - cpu0;
        lat.sort_unstable();
        (
            cpu / (n - 1) as f64,
            lat[lat.len() / 2] as f64 / 1e3,
            lat[lat.len() * 99 / 100] as f64 / 1e3,
        )
    })
    .unwrap();
    let period = 1e9 / rate as f64;
    let start = mono_ns() + 20_000_000;
    for i in 0..n {
        let due = start + (i as f64 * period) as u64;
        let now = mono_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        send();
    }
    c.join().unwrap()
}

/// (acquisitions per second in all, fewest / most acquisitions of one process) for `procs`
/// processes contending for one lock for 0.5 s.
fn lock_fair(procs: usize, stop: &'static AtomicU64) -> (f64, f64) {
    stop.store(0, Ordering::Relaxed);
    let lock = Lock::new().unwrap();
    let go = Event::new().unwrap();
    let kids: Vec<Process<u64>> = (0..procs)
        .map(|_| {
            let (l, go) = (lock.clone(), go.clone());
            Process::fork(move || {
                go.wait_timeout(T).unwrap();
                let mut k = 0u64;
                while stop.load(Ordering::Relaxed) == 0 {
                    let _g = l.lock().unwrap();
                    k += 1;
                }
                k
            })
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    go.set();
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(1, Ordering::Relaxed);
    let el = t.elapsed().as_secs_f64();
    let counts: Vec<u64> = kids.into_iter().map(|k| k.join().unwrap()).collect();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    (
        counts.iter().sum::<u64>() as f64 / el,
        min as f64 / max.max(1) as f64,
    )
}

/// Runs `f` while two processes busy-loop (CPU hogs); stops and reaps them after.
fn with_hogs<R>(flag: &'static AtomicU64, f: impl FnOnce() -> R) -> R {
    flag.store(0, Ordering::Relaxed);
    let hogs: Vec<Process<()>> = (0..2)
        .map(|_| {
            Process::fork(move || {
                while flag.load(Ordering::Relaxed) == 0 {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    let r = f();
    flag.store(1, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    r
}

/// Runs `f` with this process, and the processes it forks meanwhile, pinned to one CPU (the
/// first this process may use); the CPU mask is restored after. Every answer then needs a
/// context switch: what a round trip costs when the scheduler puts both ends on one CPU, as
/// it does beside CPU hogs now and then.
fn on_one_cpu<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: an all-zero cpu_set_t is a valid empty set for sched_getaffinity to fill.
    let mut was: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `was` is a valid cpu_set_t of `size` bytes; pid 0 is this thread.
    let got = unsafe { libc::sched_getaffinity(0, size, &mut was) } == 0;
    // SAFETY: CPU_ISSET reads the set; 1024 is CPU_SETSIZE.
    let first = (0..1024).find(|&c| got && unsafe { libc::CPU_ISSET(c, &was) });
    let Some(first) = first else {
        return f();
    };
    // SAFETY: as above, a zeroed set is empty.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `first` (< 1024, CPU_SETSIZE) of a valid set.
    unsafe { libc::CPU_SET(first, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of `size` bytes.
    unsafe { libc::sched_setaffinity(0, size, &one) };
    let r = f();
    // SAFETY: `was` is the mask read above.
    unsafe { libc::sched_setaffinity(0, size, &was) };
    r
}

/// us per request/reply round trip over two queues (8-byte messages), after `warm` untimed
/// ones.
fn queue_round_trip_us(warm: u64, n: u64) -> f64 {
    let (a, b): (Queue<u64>, Queue<u64>) = (Queue::new().unwrap(), Queue::new().unwrap());
    let (a2, b2) = (a.clone(), b.clone());
    let child = Process::fork(move || {
        for _ in 0..warm + n {
            b2.put(a2.get_timeout(T).unwrap()).unwrap();
        }
    })
    .unwrap();
    let trip = |i: u64| {
        a.put(i).unwrap();
        assert_eq!(b.get_timeout(T).unwrap(), i);
    };
    (0..warm).for_each(trip);
    let t = Instant::now();
    (0..n).for_each(trip);
    let el = t.elapsed();
    child.join().unwrap();
    el.as_secs_f64() * 1e6 / n as f64
}

/// One Python case run once (its samples interleave with ours); `key` picks a value of a
/// case that reports several.
fn py_once(case: &str, key: Option<&str>, quick: bool) -> Option<f64> {
    let m = python(&[case], quick);
    match key {
        Some(k) => m.get(&format!("{case}.{k}")).copied(),
        None => m.get(case).copied(),
    }
}

/// Medians of interleaved samples: `ours()` then Python's `case`, `samples` times each.
struct Pairs {
    ours: Vec<Vec<f64>>,
    py: Vec<Vec<f64>>,
}

impl Pairs {
    fn new(k: usize) -> Pairs {
        Pairs {
            ours: vec![Vec::new(); k],
            py: vec![Vec::new(); k],
        }
    }
    fn push(&mut self, i: usize, ours: f64, py: Option<f64>) {
        self.ours[i].push(ours);
        if let Some(p) = py {
            self.py[i].push(p);
        }
    }
    fn medians(&mut self, i: usize) -> (f64, Option<f64>) {
        let p = (!self.py[i].is_empty()).then(|| median(&mut self.py[i]));
        (median(&mut self.ours[i]), p)
    }
}

fn row(
    name: String,
    unit: &'static str,
    better: Better,
    (ours, baseline): (f64, Option<f64>),
    reference: Option<(String, f64)>,
) -> Row {
    Row {
        name,
        unit,
        better,
        ours,
        baseline,
        reference,
    }
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let s = cfg.samples(5);
    let q = cfg.quick;
    let flags = shared_atomics(64);
    let mut out = Vec::new();

    // Trickles.
    for rate in [1_000u64, 10_000] {
        let case = format!("trickle_{rate}");
        let mut p = Pairs::new(3);
        let mut floor = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..s {
            let (cpu, l50, l99) = trickle(rate);
            let py = python(&[case.as_str()], q);
            let get = |k: &str| py.get(&format!("{case}.{k}")).copied();
            p.push(0, cpu, get("cpu"));
            p.push(1, l50, get("lat50"));
            p.push(2, l99, get("lat99"));
            let (fc, f50, f99) = bare_trickle(rate, flags);
            floor[0].push(fc);
            floor[1].push(f50);
            floor[2].push(f99);
        }
        let what = format!("trickle {rate} msgs/s");
        let bare = |i: usize, floor: &mut [Vec<f64>; 3]| {
            Some((
                "bare futex wake of a sleeper (floor)".to_string(),
                median(&mut floor[i]),
            ))
        };
        out.push(row(
            format!("{what}: consumer CPU per message"),
            "us",
            Better::Lower,
            p.medians(0),
            bare(0, &mut floor),
        ));
        out.push(row(
            format!("{what}: delivery latency median"),
            "us",
            Better::Lower,
            p.medians(1),
            bare(1, &mut floor),
        ));
        out.push(row(
            format!("{what}: delivery latency p99"),
            "us",
            Better::Lower,
            p.medians(2),
            bare(2, &mut floor),
        ));
    }

    // N->N.
    let total = if q { 400_000 } else { 1_600_000 };
    let ns = [1usize, 4, 16, 32];
    let mut p = Pairs::new(ns.len());
    for _ in 0..s {
        for (i, &k) in ns.iter().enumerate() {
            let ours = crate::queue::n_to_n(k, 64, total);
            p.push(i, ours, py_once(&format!("nn_{k}"), None, q));
        }
    }
    let (one, _) = p.medians(0);
    for (i, &k) in ns.iter().enumerate() {
        let reference = (k > 1).then(|| ("our 1->1, same run".to_string(), one));
        out.push(row(
            format!("queue {k}->{k} 64 B, bounded(1000)"),
            "msg/s",
            Better::Higher,
            p.medians(i),
            reference,
        ));
    }

    // Lock fairness and throughput.
    let ps = [2usize, 4, 16];
    let mut rate = Pairs::new(ps.len());
    let mut fair = Pairs::new(ps.len());
    for _ in 0..s {
        for (i, &n) in ps.iter().enumerate() {
            let (r, f) = lock_fair(n, &flags[0]);
            let case = format!("lock_fair_{n}");
            let py = python(&[case.as_str()], q);
            rate.push(i, r, py.get(&format!("{case}.rate")).copied());
            fair.push(i, f, py.get(&format!("{case}.fair")).copied());
        }
    }
    for (i, &n) in ps.iter().enumerate() {
        out.push(row(
            format!("Lock, {n} processes contending: acquisitions"),
            "acq/s",
            Better::Higher,
            rate.medians(i),
            None,
        ));
        out.push(row(
            format!("Lock, {n} processes: fairness (min/max per process)"),
            "ratio",
            Better::Higher,
            fair.medians(i),
            None,
        ));
    }

    // Round trips beside two CPU hogs.
    let trips = if q { 300 } else { 1_000 };
    let mut p = Pairs::new(3);
    for _ in 0..s {
        with_hogs(&flags[8], || {
            p.push(
                0,
                crate::sync::ping_pong_us(trips),
                py_once("hog_event", None, q),
            );
            p.push(
                1,
                crate::pipe::ping_pong_obj_us(trips),
                py_once("hog_pipe", None, q),
            );
            p.push(
                2,
                queue_round_trip_us(0, trips),
                py_once("hog_queue", None, q),
            );
        });
    }
    let whats = [
        "Event ping-pong",
        "Pipe round trip, small object",
        "Queue request/reply",
    ];
    for (i, what) in whats.into_iter().enumerate() {
        out.push(row(
            format!("{what}, beside 2 CPU hogs"),
            "us",
            Better::Lower,
            p.medians(i),
            None,
        ));
    }

    // The same round trips with both ends on one CPU (no hogs), after `WARM` untimed ones:
    // on one CPU, the forked child's start-up (its first page faults) would run inside the
    // timed loop.
    const WARM: u64 = 50;
    let mut p = Pairs::new(3);
    for _ in 0..s {
        let (e, pi, qu) = on_one_cpu(|| {
            (
                crate::sync::ping_pong_warm_us(WARM, trips),
                crate::pipe::ping_pong_obj_warm_us(WARM, trips),
                queue_round_trip_us(WARM, trips),
            )
        });
        p.push(0, e, py_once("cpu1_event", None, q));
        p.push(1, pi, py_once("cpu1_pipe", None, q));
        p.push(2, qu, py_once("cpu1_queue", None, q));
    }
    for (i, what) in whats.into_iter().enumerate() {
        out.push(row(
            format!("{what}, both ends on one CPU"),
            "us",
            Better::Lower,
            p.medians(i),
            None,
        ));
    }
    out
}
