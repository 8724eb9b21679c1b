//! Queue throughput: 1 producer process -> 1 consumer with 8 B, 64 B and 1 MiB messages,
//! 2 -> 2, `get_many` batching, JoinableQueue put + task_done; beside Python's
//! `multiprocessing.Queue` doing the same, and two references measured in the same run:
//! crossbeam-channel between two threads (the in-process ceiling) and ipc-channel's bytes
//! channel between two processes (the best Rust peer).
//!
//! Two rows repeat the 8 B and 1 MiB figures beside faster-fifo (a C++ shared-memory queue for
//! Python with `multiprocessing.Queue`'s API, `pip install faster-fifo`) as the reference;
//! without it installed, their reference column stays empty.
//!
//! Messages are `Vec<u8>` payloads through the typed API (serialized with postcard), as
//! Python pickles `bytes`. Producers send one message many times with `put_ref` (serialized
//! from a borrow, as Python's `put` does not copy its argument; before 2026-11-27 they sent a
//! `clone` by value, an allocation and a free per message that Python does not make);
//! consumers `get` a new `Vec` per message, as Python's unpickling makes a new `bytes`.
//! The 8-byte row is also measured as a fixed-size `[u8; 8]` (what a Rust program sends as a
//! small message: no heap allocation on either side), beside Python sending an 8-byte `int`;
//! with `get_into` (each message decoded into the consumer's one buffer: no allocation per
//! message, which Python has no way to do); and through the raw-bytes calls. Each sample times from the consumer's first message to its last, so
//! process start-up is not counted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::{JoinableQueue, Process, Queue};

use crate::harness::{median_of, python, Better, Config, Row};

const T: Duration = Duration::from_secs(60);

/// Messages per second, 1 producer process -> this process, `n` messages of `size` bytes.
fn one_to_one(size: usize, n: usize, maxsize: usize) -> f64 {
    one_to_one_of(move || vec![7u8; size], n, maxsize)
}

/// As [`one_to_one`], `n` copies of the message `make` builds (any message type). The
/// producer builds it after the fork, as a producer process would.
fn one_to_one_of<M, F>(make: F, n: usize, maxsize: usize) -> f64
where
    M: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce() -> M + Send + 'static,
{
    one_to_one_with(maxsize, n, put_copies(make, n), |q: &Queue<M>| {
        std::hint::black_box(q.get_timeout(T).unwrap());
    })
}

/// As [`one_to_one`], taken with `get_into` into one buffer (no allocation per message).
fn one_to_one_into(size: usize, n: usize, maxsize: usize) -> f64 {
    let mut buf = Vec::new();
    let make = move || vec![7u8; size];
    one_to_one_with(
        maxsize,
        n,
        put_copies(make, n),
        move |q: &Queue<Vec<u8>>| {
            q.get_into_timeout(&mut buf, T).unwrap();
            std::hint::black_box(&buf);
        },
    )
}

/// As [`one_to_one`] through the raw-bytes calls (`put_bytes`, `get_bytes_into` reusing one
/// buffer): what ipc-channel's bytes channel does.
fn one_to_one_bytes(size: usize, n: usize, maxsize: usize) -> f64 {
    let mut buf = Vec::new();
    let send = move |q: &Queue<()>| {
        let msg = vec![7u8; size];
        for _ in 0..n {
            q.put_bytes(&msg).unwrap();
        }
    };
    one_to_one_with(maxsize, n, send, move |q: &Queue<()>| {
        q.get_bytes_into_timeout(&mut buf, T).unwrap();
        std::hint::black_box(&buf);
    })
}

/// A producer that puts `n` copies of the message `make` builds, by reference.
fn put_copies<M, F>(make: F, n: usize) -> impl FnOnce(&Queue<M>) + Send + 'static
where
    M: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce() -> M + Send + 'static,
{
    move |q: &Queue<M>| {
        let msg = make();
        for _ in 0..n {
            q.put_ref(&msg).unwrap();
        }
    }
}

/// Messages per second on a `Queue::bounded(maxsize)`: a producer process runs `send`
/// (which puts `n` messages), this process calls `take` `n` times, timed from the first
/// message on.
fn one_to_one_with<M, S, R>(maxsize: usize, n: usize, send: S, mut take: R) -> f64
where
    M: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    S: FnOnce(&Queue<M>) + Send + 'static,
    R: FnMut(&Queue<M>),
{
    let q: Queue<M> = Queue::bounded(maxsize).unwrap();
    let qp = q.clone();
    let p = Process::fork(move || send(&qp)).unwrap();
    take(&q);
    let t = Instant::now();
    for _ in 1..n {
        take(&q);
    }
    let rate = (n - 1) as f64 / t.elapsed().as_secs_f64();
    p.join().unwrap();
    rate
}

/// The floor for 8-byte messages between two processes: a bare single-producer,
/// single-consumer ring of 8-byte slots in shared memory, no locks, no system calls (each
/// side spins, keeps the other's index cached and looks again only when it must), as Lamport
/// with cached indices. Messages per second, timed from the consumer's first message.
fn bare_spsc(n: u64) -> f64 {
    const SLOTS: u64 = 1024;
    // [0]: the consumer's head, [16]: the producer's tail (128 bytes apart), slots from [32].
    let mem = crate::harness::shared_atomics(32 + SLOTS as usize);
    mem[0].store(0, Ordering::Relaxed);
    mem[16].store(0, Ordering::Relaxed);
    let p = Process::fork(move || {
        let (mut tail, mut head) = (0u64, 0u64);
        for i in 0..n {
            while tail - head >= SLOTS {
                head = mem[0].load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            mem[32 + (tail % SLOTS) as usize].store(i, Ordering::Relaxed);
            tail += 1;
            mem[16].store(tail, Ordering::Release);
        }
    })
    .unwrap();
    let (mut head, mut tail) = (0u64, 0u64);
    let mut t = Instant::now();
    for i in 0..n {
        while head == tail {
            tail = mem[16].load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        let v = mem[32 + (head % SLOTS) as usize].load(Ordering::Relaxed);
        assert_eq!(v, i, "bare ring out of order");
        head += 1;
        mem[0].store(head, Ordering::Release);
        if i == 0 {
            t = Instant::now();
        }
    }
    let rate = (n - 1) as f64 / t.elapsed().as_secs_f64();
    p.join().unwrap();
    rate
}

/// As [`one_to_one`] with `put_many` / `get_many` in batches of `batch`.
fn one_to_one_batched(size: usize, n: usize, batch: usize) -> f64 {
    let q: Queue<Vec<u8>> = Queue::bounded(4 * batch).unwrap();
    let qp = q.clone();
    let p = Process::fork(move || {
        let msg = vec![7u8; size];
        let mut left = n;
        while left > 0 {
            let k = left.min(batch);
            qp.put_many(vec![msg.clone(); k]).unwrap();
            left -= k;
        }
    })
    .unwrap();
    let mut got = q.get_many_timeout(batch, T).unwrap().len();
    let first = got;
    let t = Instant::now();
    while got < n {
        got += std::hint::black_box(q.get_many_timeout(batch, T).unwrap()).len();
    }
    let rate = (n - first) as f64 / t.elapsed().as_secs_f64();
    p.join().unwrap();
    rate
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Messages per second, 2 producer processes -> 2 consumer processes, `n` messages in all.
fn two_to_two(size: usize, n: usize) -> f64 {
    n_to_n(2, size, n)
}

/// Messages per second, `k` producer processes -> `k` consumer processes through one
/// `Queue::bounded(1000)`, `n` messages of `size` bytes in all.
pub(crate) fn n_to_n(k: usize, size: usize, n: usize) -> f64 {
    let q: Queue<Vec<u8>> = Queue::bounded(1000).unwrap();
    let consumers: Vec<Process<(u64, u64, usize, usize)>> = (0..k)
        .map(|_| {
            let q = q.clone();
            // Reads the clock at the first message and every `EVERY` messages after it, and
            // counts only the messages up to the last reading: a clock read per message
            // (about 20 ns) would be a large part of a get. Each consumer leaves out fewer
            // than `EVERY` messages at its end.
            Process::fork(move || {
                const EVERY: usize = 256;
                let mut k = 0;
                let (mut first, mut last, mut counted) = (0, 0, 0);
                while q.get_timeout(T).is_ok() {
                    k += 1;
                    if k == 1 {
                        first = now_ns();
                        (last, counted) = (first, 1);
                    } else if k % EVERY == 0 {
                        (last, counted) = (now_ns(), k);
                    }
                }
                (first, last, counted, k)
            })
            .unwrap()
        })
        .collect();
    let producers: Vec<Process<()>> = (0..k)
        .map(|_| {
            let q = q.clone();
            Process::fork(move || {
                let msg = vec![7u8; size];
                for _ in 0..n / k {
                    q.put_ref(&msg).unwrap();
                }
            })
            .unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close();
    let r: Vec<(u64, u64, usize, usize)> =
        consumers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(
        r.iter().map(|x| x.3).sum::<usize>(),
        n / k * k,
        "messages received"
    );
    // A consumer that got nothing (the other one took everything) has no timestamps.
    let got: Vec<_> = r.iter().filter(|x| x.2 > 0).collect();
    let first = got.iter().map(|x| x.0).min().unwrap();
    let last = got.iter().map(|x| x.1).max().unwrap();
    let counted: usize = r.iter().map(|x| x.2).sum();
    (counted - 1) as f64 / ((last - first) as f64 / 1e9)
}

/// Items per second: this process puts `n` items and `join()`s; a consumer process gets and
/// calls `task_done` for each.
fn joinable(n: usize) -> f64 {
    let q: JoinableQueue<Vec<u8>> = JoinableQueue::bounded(1000).unwrap();
    let qc = q.clone();
    let c = Process::fork(move || {
        while let Ok(x) = qc.get_timeout(T) {
            std::hint::black_box(x);
            qc.task_done().unwrap();
        }
    })
    .unwrap();
    // Let the consumer reach its first get.
    q.put(vec![1]).unwrap();
    q.join_timeout(T).unwrap();
    let msg = vec![7u8; 64];
    let t = Instant::now();
    for _ in 0..n {
        q.put_ref(&msg).unwrap();
    }
    q.join_timeout(T).unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    q.close();
    c.join().unwrap();
    rate
}

/// crossbeam-channel between two threads: messages per second for `size`-byte `Vec`s.
fn crossbeam(size: usize, n: usize) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1000);
    let h = std::thread::spawn(move || {
        let msg = vec![7u8; size];
        for _ in 0..n {
            tx.send(msg.clone()).unwrap();
        }
    });
    rx.recv().unwrap();
    let t = Instant::now();
    for _ in 1..n {
        std::hint::black_box(rx.recv().unwrap());
    }
    let rate = (n - 1) as f64 / t.elapsed().as_secs_f64();
    h.join().unwrap();
    rate
}

/// ipc-channel's bytes channel, a forked producer process -> this process (messages/s).
pub(crate) fn ipc_bytes(size: usize, n: usize) -> f64 {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().unwrap();
    let p = Process::fork(move || {
        let msg = vec![7u8; size];
        for _ in 0..n {
            tx.send(&msg).unwrap();
        }
    })
    .unwrap();
    rx.recv().unwrap();
    let t = Instant::now();
    for _ in 1..n {
        std::hint::black_box(rx.recv().unwrap());
    }
    let rate = (n - 1) as f64 / t.elapsed().as_secs_f64();
    p.join().unwrap();
    rate
}

/// A queue row: name, unit, our figure, the Python case, the reference (name and value; a
/// missing value leaves the reference out).
type Spec<'a> = (
    &'a str,
    &'static str,
    f64,
    &'a str,
    Option<(&'a str, Option<f64>)>,
);

fn row(
    name: &str,
    unit: &'static str,
    ours: f64,
    py: Option<f64>,
    reference: Option<(&str, f64)>,
) -> Row {
    Row {
        name: name.into(),
        unit,
        better: Better::Higher,
        ours,
        baseline: py,
        reference: reference.map(|(n, v)| (n.to_string(), v)),
    }
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(
        &[
            "queue_1to1_8",
            "queue_1to1_int8",
            "queue_ff_1to1_8",
            "queue_ff_1to1_1m",
            "queue_1to1_64",
            "queue_1to1_1m",
            "queue_2to2_64",
            "joinable_64",
        ],
        cfg.quick,
    );
    let s = cfg.samples(7);
    let small = if cfg.quick { 50_000 } else { 200_000 };
    let mb = |rate: f64| rate; // 1 MiB messages: messages/s == MiB/s
    let r8 = median_of(s, || one_to_one(8, small, 1000));
    let r8a = median_of(s, || one_to_one_of(|| [7u8; 8], small, 1000));
    let spsc = median_of(s, || bare_spsc(small as u64 * 20));
    let r8b = median_of(s, || one_to_one_bytes(8, small, 1000));
    let r8i = median_of(s, || one_to_one_into(8, small, 1000));
    let r64 = median_of(s, || one_to_one(64, small, 1000));
    let r1m = mb(median_of(s, || one_to_one(1 << 20, 1000, 8)));
    let r1m_bytes = mb(median_of(s, || one_to_one_bytes(1 << 20, 1000, 8)));
    let r22 = median_of(s, || two_to_two(64, small));
    let rb = median_of(s, || one_to_one_batched(64, small * 2, 256));
    let rj = median_of(s, || joinable(small / 2));
    let cb64 = median_of(s, || crossbeam(64, small * 2));
    let ipc8 = median_of(s, || ipc_bytes(8, small / 2));
    let ipc64 = median_of(s, || ipc_bytes(64, small / 2));
    let ipc1m = mb(median_of(s, || ipc_bytes(1 << 20, 1000)));
    let ipc = "ipc-channel bytes, 2 procs";
    let ff = "Python faster-fifo";
    let ff8 = py.get("queue_ff_1to1_8").copied();
    let ff1m = py.get("queue_ff_1to1_1m").copied();
    let (msgs, mibs) = ("msg/s", "MiB/s");
    let table: [Spec; 12] = [
        (
            "queue 1->1 8 B",
            msgs,
            r8,
            "queue_1to1_8",
            Some((ipc, Some(ipc8))),
        ),
        (
            "queue 1->1 8 B (vs faster-fifo)",
            msgs,
            r8,
            "queue_1to1_8",
            Some((ff, ff8)),
        ),
        (
            "queue 1->1 8 B as [u8; 8] (Python: an int)",
            msgs,
            r8a,
            "queue_1to1_int8",
            Some(("bare SPSC ring in shm (floor)", Some(spsc))),
        ),
        (
            "queue 1->1 8 B get_into (no alloc)",
            msgs,
            r8i,
            "queue_1to1_8",
            Some((ipc, Some(ipc8))),
        ),
        (
            "queue 1->1 8 B put_bytes/get_bytes_into",
            msgs,
            r8b,
            "queue_1to1_8",
            Some((ipc, Some(ipc8))),
        ),
        (
            "queue 1->1 64 B",
            msgs,
            r64,
            "queue_1to1_64",
            Some((ipc, Some(ipc64))),
        ),
        (
            "queue 1->1 1 MiB",
            mibs,
            r1m,
            "queue_1to1_1m",
            Some((ipc, Some(ipc1m))),
        ),
        (
            "queue 1->1 1 MiB (vs faster-fifo)",
            mibs,
            r1m,
            "queue_1to1_1m",
            Some((ff, ff1m)),
        ),
        (
            "queue 1->1 1 MiB put_bytes/get_bytes_into",
            mibs,
            r1m_bytes,
            "queue_1to1_1m",
            Some((ipc, Some(ipc1m))),
        ),
        ("queue 2->2 64 B", msgs, r22, "queue_2to2_64", None),
        (
            "queue 1->1 64 B put_many/get_many(256)",
            msgs,
            rb,
            "queue_1to1_64",
            Some(("crossbeam-channel, 2 threads", Some(cb64))),
        ),
        (
            "JoinableQueue put+task_done 64 B",
            msgs,
            rj,
            "joinable_64",
            None,
        ),
    ];
    table
        .into_iter()
        .map(|(name, unit, ours, case, reference)| {
            let reference = reference.and_then(|(n, v)| v.map(|v| (n, v)));
            row(name, unit, ours, py.get(case).copied(), reference)
        })
        .collect()
}
