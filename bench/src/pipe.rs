//! Pipes: ping-pong round trip (small bytes, small objects), one-way small-message throughput
//! (bytes, objects), 1 MiB throughput (bytes, and a typed `Vec<u8>` beside Python's pickled
//! `bytes`); Python's `multiprocessing.Pipe` beside each, and raw
//! floors measured in the same run: a bare SEQPACKET socketpair ping-pong (one write, one
//! read per hop) and a bare pipe(2) with one write and one read per message.
//!
//! What the rows exercise: 8 B, 64 B and small objects go through a connection's
//! shared-memory ring (messages up to `pipe::INLINE_MAX`), 1 MiB through its socket (a marker
//! record in the ring, then the frames). The floors are system calls per message, so the ring
//! rows can beat them; on a loaded machine a receiver that spins (50 us) before sleeping loses
//! its CPU share to other jobs and the ping-pong rows swing by 10x between runs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use multiproc::{pipe, Connection, Process};

use crate::harness::{median_of, python, Better, Config, Row};

const PINGS: u64 = 20_000;
const ONE_WAY: u64 = 200_000;
/// 1 MiB messages per sample: 1,000, as the queue's 1 MiB rows send (with 400, the first
/// laps' page faults in a new connection's ring and the allocator's warm-up were a large part
/// of a sample once these messages went through shared memory: 11 GB/s against 24 GB/s with
/// 1,000, 2026-12-03).
const MIB_MSGS: u64 = 1000;

// ---- raw floors --------------------------------------------------------------------------

fn raw_pair(ty: i32) -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two fds into the array on success.
    let r =
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair");
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn raw_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2");
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn raw_write(fd: &OwnedFd, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the pointer and length describe the live slice `buf[off..]`.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                buf[off..].as_ptr() as *const libc::c_void,
                buf.len() - off,
            )
        };
        assert!(n > 0, "write");
        off += n as usize;
    }
}

/// Reads exactly `buf.len()` bytes (a pipe may return fewer per read).
fn raw_read_exact(fd: &OwnedFd, buf: &mut [u8]) {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the pointer and length describe the live slice `buf[off..]`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[off..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - off,
            )
        };
        assert!(n > 0, "read");
        off += n as usize;
    }
}

/// us per round trip over a bare SEQPACKET socketpair, 8-byte messages.
fn raw_ping_pong_us(n: u64) -> f64 {
    let (a, b) = raw_pair(libc::SOCK_SEQPACKET);
    let child = Process::fork(move || {
        let mut buf = [0u8; 8];
        for _ in 0..n {
            raw_read_exact(&b, &mut buf);
            raw_write(&b, &buf);
        }
    })
    .unwrap();
    let mut buf = [7u8; 8];
    let t = Instant::now();
    for _ in 0..n {
        raw_write(&a, &buf);
        raw_read_exact(&a, &mut buf);
    }
    let el = t.elapsed();
    child.join().unwrap();
    el.as_secs_f64() * 1e6 / n as f64
}

/// Messages/s (or MB/s when `mb`) over a bare pipe: one write and one read per message.
fn raw_one_way(size: usize, n: u64, mb: bool) -> f64 {
    raw_one_way_on(raw_pipe(), size, n, mb)
}

/// As [`raw_one_way`] over a bare SEQPACKET socketpair (what a `Connection` is).
fn raw_seqpacket_one_way(size: usize, n: u64) -> f64 {
    raw_one_way_on(raw_pair(libc::SOCK_SEQPACKET), size, n, false)
}

fn raw_one_way_on((r, w): (OwnedFd, OwnedFd), size: usize, n: u64, mb: bool) -> f64 {
    let (go_r, go_w) = raw_pipe();
    let child = Process::fork(move || {
        let mut go = [0u8; 1];
        raw_read_exact(&go_r, &mut go);
        let msg = vec![7u8; size];
        for _ in 0..n {
            raw_write(&w, &msg);
        }
    })
    .unwrap();
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    raw_write(&go_w, &[1]);
    for _ in 0..n {
        raw_read_exact(&r, &mut buf);
    }
    let el = t.elapsed().as_secs_f64();
    child.join().unwrap();
    rate(size, n, el, mb)
}

fn rate(size: usize, n: u64, secs: f64, mb: bool) -> f64 {
    if mb {
        (size as f64 * n as f64) / secs / 1e6
    } else {
        n as f64 / secs
    }
}

// ---- multiproc ---------------------------------------------------------------------------

fn ping_pong_bytes_us(n: u64) -> f64 {
    let (a, b) = pipe(true).unwrap();
    let child = Process::fork(move || {
        for _ in 0..n {
            let m = b.recv_bytes().unwrap();
            b.send_bytes(&m).unwrap();
        }
    })
    .unwrap();
    let msg = [7u8; 8];
    let t = Instant::now();
    for _ in 0..n {
        a.send_bytes(&msg).unwrap();
        assert_eq!(a.recv_bytes().unwrap().len(), 8);
    }
    let el = t.elapsed();
    child.join().unwrap();
    el.as_secs_f64() * 1e6 / n as f64
}

type Small = (u64, String);

fn small() -> Small {
    (12345, "hello".to_string())
}

pub(crate) fn ping_pong_obj_us(n: u64) -> f64 {
    ping_pong_obj_warm_us(0, n)
}

/// [`ping_pong_obj_us`] after `warm` untimed round trips (the child's start-up left out).
pub(crate) fn ping_pong_obj_warm_us(warm: u64, n: u64) -> f64 {
    let (a, b) = pipe(true).unwrap();
    let child = Process::fork(move || {
        for _ in 0..warm + n {
            let m: Small = b.recv().unwrap();
            b.send(&m).unwrap();
        }
    })
    .unwrap();
    let msg = small();
    let trip = || {
        a.send(&msg).unwrap();
        let back: Small = a.recv().unwrap();
        assert_eq!(back.0, 12345);
    };
    (0..warm).for_each(|_| trip());
    let t = Instant::now();
    (0..n).for_each(|_| trip());
    let el = t.elapsed();
    child.join().unwrap();
    el.as_secs_f64() * 1e6 / n as f64
}

/// One-way: a child waits for "go", then sends `n` messages; we time receiving them all.
fn one_way(n: u64, send: fn(&Connection, u64), recv: fn(&Connection)) -> f64 {
    let (rx, tx) = pipe(false).unwrap();
    let (go_rx, go_tx) = pipe(false).unwrap();
    let child = Process::fork(move || {
        go_rx.recv_bytes().unwrap();
        send(&tx, n);
    })
    .unwrap();
    let t = Instant::now();
    go_tx.send_bytes(b"").unwrap();
    for _ in 0..n {
        recv(&rx);
    }
    let el = t.elapsed().as_secs_f64();
    child.join().unwrap();
    el
}

fn send_64(c: &Connection, n: u64) {
    let m = [7u8; 64];
    for _ in 0..n {
        c.send_bytes(&m).unwrap();
    }
}

fn recv_64(c: &Connection) {
    assert_eq!(c.recv_bytes().unwrap().len(), 64);
}

fn send_obj(c: &Connection, n: u64) {
    let m = small();
    for _ in 0..n {
        c.send(&m).unwrap();
    }
}

fn recv_obj(c: &Connection) {
    let m: Small = c.recv().unwrap();
    assert_eq!(m.0, 12345);
}

fn send_mib(c: &Connection, n: u64) {
    let m = vec![7u8; 1 << 20];
    for _ in 0..n {
        c.send_bytes(&m).unwrap();
    }
}

fn recv_mib(c: &Connection) {
    assert_eq!(c.recv_bytes().unwrap().len(), 1 << 20);
}

fn send_mib_typed(c: &Connection, n: u64) {
    let m = vec![7u8; 1 << 20];
    for _ in 0..n {
        c.send(&m).unwrap();
    }
}

fn recv_mib_typed(c: &Connection) {
    let m: Vec<u8> = c.recv().unwrap();
    assert_eq!(m.len(), 1 << 20);
}

pub fn rows(cfg: &Config) -> Vec<Row> {
    let py = python(
        &[
            "pipe_ping_pong_bytes",
            "pipe_ping_pong_obj",
            "pipe_one_way_64",
            "pipe_one_way_obj",
            "pipe_1m",
            "pipe_1m_obj",
        ],
        cfg.quick,
    );
    let s = cfg.samples(7);
    let scale = |n: u64| if cfg.quick { n / 4 } else { n };

    let raw_pp = median_of(s, || raw_ping_pong_us(scale(PINGS)));
    let pp_bytes = median_of(s, || ping_pong_bytes_us(scale(PINGS)));
    let pp_obj = median_of(s, || ping_pong_obj_us(scale(PINGS)));

    let n1 = scale(ONE_WAY);
    let raw_64 = median_of(s, || raw_one_way(64, n1, false));
    let raw_sp_64 = median_of(s, || raw_seqpacket_one_way(64, n1));
    let ow_64 = median_of(s, || rate(64, n1, one_way(n1, send_64, recv_64), false));
    let ow_obj = median_of(s, || rate(0, n1, one_way(n1, send_obj, recv_obj), false));

    let nm = scale(MIB_MSGS);
    let raw_mib = median_of(s, || raw_one_way(1 << 20, nm, true));
    let mib = median_of(s, || {
        rate(1 << 20, nm, one_way(nm, send_mib, recv_mib), true)
    });
    let mib_typed = median_of(s, || {
        rate(
            1 << 20,
            nm,
            one_way(nm, send_mib_typed, recv_mib_typed),
            true,
        )
    });
    // The best Rust peer for large messages between processes (issue 19's goal: typed 1 MiB
    // at least 3x it), in MB/s as the rows above.
    let ipc_mib = median_of(s, || {
        crate::queue::ipc_bytes(1 << 20, nm as usize) * (1 << 20) as f64 / 1e6
    });
    let _ = Duration::ZERO;

    vec![
        Row {
            name: "Pipe ping-pong round trip, 8 B bytes".into(),
            unit: "us",
            better: Better::Lower,
            ours: pp_bytes,
            baseline: py.get("pipe_ping_pong_bytes").copied(),
            reference: Some(("bare seqpacket ping-pong".into(), raw_pp)),
        },
        Row {
            name: "Pipe ping-pong round trip, small object".into(),
            unit: "us",
            better: Better::Lower,
            ours: pp_obj,
            baseline: py.get("pipe_ping_pong_obj").copied(),
            reference: Some(("bare seqpacket ping-pong".into(), raw_pp)),
        },
        Row {
            name: "Pipe one-way 64 B bytes".into(),
            unit: "msg/s",
            better: Better::Higher,
            ours: ow_64,
            baseline: py.get("pipe_one_way_64").copied(),
            reference: Some(("bare pipe write+read".into(), raw_64)),
        },
        Row {
            name: "Pipe one-way 64 B bytes (vs bare seqpacket)".into(),
            unit: "msg/s",
            better: Better::Higher,
            ours: ow_64,
            baseline: py.get("pipe_one_way_64").copied(),
            reference: Some(("bare seqpacket send+recv".into(), raw_sp_64)),
        },
        Row {
            name: "Pipe one-way small objects".into(),
            unit: "msg/s",
            better: Better::Higher,
            ours: ow_obj,
            baseline: py.get("pipe_one_way_obj").copied(),
            reference: Some(("bare pipe write+read 64 B".into(), raw_64)),
        },
        Row {
            name: "Pipe one-way 1 MiB bytes".into(),
            unit: "MB/s",
            better: Better::Higher,
            ours: mib,
            baseline: py.get("pipe_1m").copied(),
            reference: Some(("bare pipe write+read".into(), raw_mib)),
        },
        Row {
            name: "Pipe one-way 1 MiB typed Vec<u8>".into(),
            unit: "MB/s",
            better: Better::Higher,
            ours: mib_typed,
            baseline: py.get("pipe_1m_obj").copied(),
            reference: Some(("our send_bytes row".into(), mib)),
        },
        Row {
            name: "Pipe one-way 1 MiB typed Vec<u8> (vs ipc-channel)".into(),
            unit: "MB/s",
            better: Better::Higher,
            ours: mib_typed,
            baseline: py.get("pipe_1m_obj").copied(),
            reference: Some(("ipc-channel bytes, 2 procs".into(), ipc_mib)),
        },
    ]
}
