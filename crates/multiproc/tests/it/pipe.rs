//! Pipes across real processes: CPython's `_TestConnection`, `_TestPoll` and `_TestWait`
//! (from `Lib/test/_test_multiprocessing.py`, ported with a header naming each origin), plus
//! shared ends under concurrency, SIGKILLed senders and receivers, big messages, handle
//! passing and fd leaks.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use multiproc::pipe::Fd;
use multiproc::{
    pipe, try_wait, wait, wait_timeout, Connection, ErrorKind, Process, RecvError, SendError,
    StartMethod,
};

use crate::util::{open_fds, sleep_ms, start_with, with_watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const T: Duration = Duration::from_secs(20);

/// Receives with a bounded wait: panics instead of hanging.
fn recv_bytes_t(c: &Connection) -> Result<Vec<u8>, RecvError> {
    c.poll_timeout(T)
        .unwrap_or_else(|e| panic!("nothing arrived within {T:?}: {e}"));
    c.recv_bytes()
}

fn recv_t<V: serde::de::DeserializeOwned>(c: &Connection) -> Result<V, RecvError> {
    c.poll_timeout(T)
        .unwrap_or_else(|e| panic!("nothing arrived within {T:?}: {e}"));
    c.recv()
}

/// CPython's `_echo`: sends back every byte message until an empty-tuple-like sentinel
/// (here: the message `b"__stop__"`).
fn echo(conn: Connection) {
    loop {
        match conn.recv_bytes() {
            Ok(m) if m == b"__stop__" => break,
            Ok(m) => conn.send_bytes(&m).unwrap(),
            Err(RecvError::Eof) => break,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ported: _TestConnection.test_connection
#[test]
fn connection_round_trips_with_an_echo_child() {
    with_watchdog(LIMIT, || {
        let (conn, child_conn) = pipe(true).unwrap();
        let p = Process::fork(move || echo(child_conn)).unwrap();

        let seq = (1, 2.25f64, None::<i32>, "abc".to_string());
        conn.send_bytes(&postcard::to_allocvec(&seq).unwrap())
            .unwrap();
        let back: (i32, f64, Option<i32>, String) =
            postcard::from_bytes(&recv_bytes_t(&conn).unwrap()).unwrap();
        assert_eq!(back, seq);

        let msg = b"hello world".to_vec();
        conn.send_bytes(&msg).unwrap();
        assert_eq!(recv_bytes_t(&conn).unwrap(), msg);

        // recv_bytes_into, at offset 0 and further in, then a too-small buffer.
        conn.send_bytes(&msg).unwrap();
        let mut buf = vec![0u8; 64];
        conn.poll_timeout(T).unwrap();
        assert_eq!(conn.recv_bytes_into(&mut buf, 0).unwrap(), msg.len());
        assert_eq!(&buf[..msg.len()], &msg[..]);
        conn.send_bytes(&msg).unwrap();
        conn.poll_timeout(T).unwrap();
        assert_eq!(conn.recv_bytes_into(&mut buf, 30).unwrap(), msg.len());
        assert_eq!(&buf[30..30 + msg.len()], &msg[..]);
        conn.send_bytes(&msg).unwrap();
        conn.poll_timeout(T).unwrap();
        match conn.recv_bytes_into(&mut buf, 60) {
            Err(RecvError::BufferTooShort(whole)) => assert_eq!(whole, msg),
            other => panic!("expected BufferTooShort, got {other:?}"),
        }

        // poll: nothing there, a bounded wait lasts at least its timeout.
        assert!(conn.try_poll().unwrap_err().is_would_block());
        let t0 = Instant::now();
        assert!(conn
            .poll_timeout(Duration::from_millis(100))
            .unwrap_err()
            .is_timeout());
        assert!(t0.elapsed() >= Duration::from_millis(100));
        conn.send_bytes(b"x").unwrap();
        conn.poll_timeout(T).unwrap();
        conn.poll().expect("poll must not consume");
        assert_eq!(conn.recv_bytes().unwrap(), b"x");

        // A really big message (CPython uses 16 MiB).
        let big = pattern(16 << 20, 3);
        conn.send_bytes(&big).unwrap();
        assert_eq!(recv_bytes_t(&conn).unwrap(), big);

        conn.send_bytes(b"__stop__").unwrap();
        p.join().unwrap();
        // The child ended: its end is gone everywhere (the parent's copy went with the closure).
        assert!(matches!(recv_bytes_t(&conn), Err(RecvError::Eof)));
        assert!(matches!(
            conn.send_bytes(b"x"),
            Err(SendError::Disconnected)
        ));
    });
}

// ported: _TestConnection.test_duplex_false
#[test]
fn duplex_false_gives_a_reader_and_a_writer() {
    with_watchdog(LIMIT, || {
        let (reader, writer) = pipe(false).unwrap();
        assert!(reader.readable() && !reader.writable());
        assert!(writer.writable() && !writer.readable());
        let p = Process::fork(move || {
            writer.send(&1i32).unwrap();
            // Wrong-way use is a clear error.
            matches!(writer.recv_bytes(), Err(RecvError::SendOnly))
        })
        .unwrap();
        assert_eq!(recv_t::<i32>(&reader).unwrap(), 1);
        assert!(p.join().unwrap());
        assert!(matches!(reader.send(&1), Err(SendError::ReceiveOnly)));
        assert_eq!(reader.try_poll().ok(), Some(()), "poll works on the reader");
        assert!(matches!(recv_bytes_t(&reader), Err(RecvError::Eof)));
    });
}

fn send_test_and_close(mut conn: Connection) {
    conn.send_bytes(b"TEST").unwrap();
    conn.close();
}

// ported: _TestConnection.test_spawn_close
both_methods! {
    fn parent_closes_its_copy_right_after_spawn(m) {
        with_watchdog(LIMIT, move || {
            let (conn, child_conn) = pipe(true).unwrap();
            // `child_conn` moves into the child's arguments: the parent's copy is closed as
            // soon as the child has started.
            let p = start_with(m, Process::builder(), send_test_and_close, child_conn);
            assert_eq!(recv_bytes_t(&conn).unwrap(), b"TEST");
            p.join().unwrap();
            assert!(matches!(recv_bytes_t(&conn), Err(RecvError::Eof)));
        });
    }
}

// ported: _TestConnection.test_sendbytes
#[test]
fn send_bytes_ranges_are_checked() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let p = Process::fork(move || echo(b)).unwrap();
        let msg: Vec<u8> = (0..16u8).collect();
        let n = msg.len();
        a.send_bytes(&msg).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), msg);
        a.send_bytes_range(&msg, 0, n).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), msg);
        a.send_bytes_range(&msg, n / 2, n - n / 2).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), &msg[n / 2..]);
        a.send_bytes_range(&msg, n / 2, n / 4).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), &msg[n / 2..n / 2 + n / 4]);
        a.send_bytes_range(&msg, n, 0).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), b"");
        a.send_bytes(&[]).unwrap();
        assert_eq!(recv_bytes_t(&a).unwrap(), b"");
        for (off, size) in [(n + 1, 0), (0, n + 1), (n / 2, n / 2 + 1), (usize::MAX, 2)] {
            match a.send_bytes_range(&msg, off, size) {
                Err(SendError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
                other => panic!("range {off}+{size}: {other:?}"),
            }
        }
        a.send_bytes(b"__stop__").unwrap();
        p.join().unwrap();
    });
}

fn write_to_fd(conn: Connection) -> bool {
    let Fd(fd) = conn.recv().unwrap();
    std::fs::File::from(fd).write_all(b"foo").unwrap();
    true
}

fn fd_transfer(m: StartMethod, dup_high: bool) {
    let (parent, child) = pipe(true).unwrap();
    let p = start_with(m, Process::builder(), write_to_fd, child);
    let path = std::env::temp_dir().join(format!(
        "multiproc-fd-transfer-{}-{}",
        std::process::id(),
        dup_high as u8
    ));
    let file = std::fs::File::create(&path).unwrap();
    let fd: OwnedFd = if dup_high {
        // ported: test_large_fd_transfer — an fd number above 256.
        let high = rustix::io::fcntl_dupfd_cloexec(&file, 300).unwrap();
        assert!(high.as_raw_fd() >= 300);
        drop(file);
        high
    } else {
        file.into()
    };
    parent.send(&Fd(fd)).unwrap();
    assert!(p.join().unwrap());
    let mut s = String::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s, "foo");
}

// ported: _TestConnection.test_fd_transfer
#[test]
fn fd_transfer_to_a_child() {
    with_watchdog(LIMIT, || {
        fd_transfer(StartMethod::Fork, false);
        fd_transfer(StartMethod::Spawn, false);
    });
}

// ported: _TestConnection.test_large_fd_transfer
#[test]
fn large_fd_transfer_to_a_child() {
    with_watchdog(LIMIT, || {
        fd_transfer(StartMethod::Fork, true);
        fd_transfer(StartMethod::Spawn, true);
    });
}

// ported: _TestPoll.test_empty_string
#[test]
fn poll_and_an_empty_message() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        assert!(a.try_poll().unwrap_err().is_would_block());
        b.send_bytes(b"").unwrap();
        a.poll_timeout(T).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"");
        assert!(a.try_poll().unwrap_err().is_would_block());
    });
}

fn send_strings(conn: Connection) {
    for s in [&b"hello"[..], b"", b"a", b"b", b"", b"bye", b"", b"lop"] {
        conn.send_bytes(s).unwrap();
    }
}

// ported: _TestPoll.test_strings
#[test]
fn poll_then_receive_each_string() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let p = Process::spawn(send_strings, b).unwrap();
        for s in [&b"hello"[..], b"", b"a", b"b", b"", b"bye", b"", b"lop"] {
            a.poll_timeout(T).unwrap();
            assert_eq!(a.recv_bytes().unwrap(), s);
        }
        p.join().unwrap();
    });
}

// ported: _TestPoll.test_boundaries and test_dont_merge
#[test]
fn messages_keep_their_boundaries() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(false).unwrap();
        let p = Process::fork(move || {
            b.send_bytes(&vec![b'a'; 2000]).unwrap();
            b.send_bytes(b"b").unwrap();
            b.send_bytes(&vec![b'c'; 700_000]).unwrap();
            b.send_bytes(b"d").unwrap();
        })
        .unwrap();
        p.join().unwrap();
        a.poll_timeout(T).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), vec![b'a'; 2000]);
        assert_eq!(a.recv_bytes().unwrap(), b"b");
        assert_eq!(a.recv_bytes().unwrap(), vec![b'c'; 700_000]);
        assert_eq!(a.recv_bytes().unwrap(), b"d");
        assert!(matches!(a.recv_bytes(), Err(RecvError::Eof)));
    });
}

#[test]
fn recv_bytes_max_drops_a_long_message_and_stays_usable() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(&[1; 100]).unwrap();
        a.send_bytes(&[2; 10]).unwrap();
        match b.recv_bytes_max(50) {
            Err(RecvError::TooLong { len: 100, max: 50 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(b.recv_bytes_max(50).unwrap(), [2; 10]);
        // A multi-frame message over the limit is consumed whole, too.
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let t = std::thread::spawn(move || {
            a2.send_bytes(&vec![3; 3 << 20]).unwrap();
            a2.send_bytes(b"next").unwrap();
        });
        assert!(matches!(
            b2.recv_bytes_max(1 << 20),
            Err(RecvError::TooLong { .. })
        ));
        assert_eq!(b2.recv_bytes_max(1 << 20).unwrap(), b"next");
        t.join().unwrap();
    });
}

#[test]
fn closed_end_is_a_clear_error() {
    let (mut a, b) = pipe(true).unwrap();
    a.close();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.send_bytes(b"x"), Err(SendError::Closed)));
    assert!(matches!(a.recv_bytes(), Err(RecvError::Closed)));
    assert_eq!(a.poll().unwrap_err().kind(), ErrorKind::Closed);
    assert!(a.try_as_fd().is_none());
    assert_eq!(wait(&[&a]).unwrap_err().kind(), ErrorKind::Closed);
    assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
    let e: multiproc::Error = b.recv_bytes().unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
}

#[test]
fn sixty_four_mib_round_trip() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let p = Process::fork(move || echo(b)).unwrap();
        let big = pattern(64 << 20, 9);
        // The echo child sends back while we still send: receive on another thread.
        let a2 = a.try_clone().unwrap();
        let rx = std::thread::spawn(move || recv_bytes_t(&a2).unwrap());
        a.send_bytes(&big).unwrap();
        let back = rx.join().unwrap();
        assert!(back == big, "64 MiB message came back different");
        a.send_bytes(b"__stop__").unwrap();
        p.join().unwrap();
    });
}

/// A message that says who sent it and checks itself.
fn tagged(sender: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(12));
    m.extend_from_slice(&sender.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&(len as u32).to_le_bytes());
    let fill = (sender * 7 + seq) as u8;
    m.resize(len.max(12), fill);
    m
}

fn check_tagged(m: &[u8]) -> (u32, u32) {
    assert!(m.len() >= 12, "short message");
    let w = |i: usize| u32::from_le_bytes(m[i..i + 4].try_into().unwrap());
    let (sender, seq, len) = (w(0), w(4), w(8) as usize);
    assert_eq!(
        m.len(),
        len.max(12),
        "message length does not match its tag"
    );
    let fill = (sender * 7 + seq) as u8;
    assert!(
        m[12..].iter().all(|&b| b == fill),
        "message {sender}/{seq} is torn or interleaved"
    );
    (sender, seq)
}

fn size_for(seq: u32) -> usize {
    match seq % 5 {
        0 => 700_000, // several frames
        1 => 0,
        2 => 100,
        3 => 300_000,
        _ => 5_000,
    }
}

#[test]
fn many_senders_share_one_end_without_interleaving() {
    with_watchdog(LIMIT, || {
        const SENDERS: u32 = 4;
        const EACH: u32 = 25;
        let (rx, tx) = pipe(false).unwrap();
        let kids: Vec<Process<()>> = (0..SENDERS)
            .map(|s| {
                let tx = tx.try_clone().unwrap();
                Process::fork(move || {
                    for q in 0..EACH {
                        tx.send_bytes(&tagged(s, q, size_for(q))).unwrap();
                    }
                })
                .unwrap()
            })
            .collect();
        drop(tx);
        let mut next = vec![0u32; SENDERS as usize];
        for _ in 0..SENDERS * EACH {
            let m = recv_bytes_t(&rx).unwrap();
            let (s, q) = check_tagged(&m);
            assert_eq!(next[s as usize], q, "sender {s}: out of order");
            next[s as usize] += 1;
        }
        assert!(matches!(recv_bytes_t(&rx), Err(RecvError::Eof)));
        for k in kids {
            k.join().unwrap();
        }
    });
}

#[test]
fn many_receivers_share_one_end_without_splitting() {
    with_watchdog(LIMIT, || {
        const RECEIVERS: usize = 3;
        const TOTAL: u32 = 60;
        let (rx, tx) = pipe(false).unwrap();
        let kids: Vec<Process<Vec<u32>>> = (0..RECEIVERS)
            .map(|_| {
                let rx = rx.try_clone().unwrap();
                Process::fork(move || {
                    let mut got = Vec::new();
                    loop {
                        match rx.recv_bytes() {
                            Ok(m) if m == b"__stop__" => return got,
                            Ok(m) => got.push(check_tagged(&m).1),
                            Err(e) => panic!("receiver: {e}"),
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        drop(rx);
        for q in 0..TOTAL {
            tx.send_bytes(&tagged(0, q, size_for(q))).unwrap();
        }
        for _ in 0..RECEIVERS {
            tx.send_bytes(b"__stop__").unwrap();
        }
        let mut all: Vec<u32> = kids.into_iter().flat_map(|k| k.join().unwrap()).collect();
        all.sort();
        assert_eq!(all, (0..TOTAL).collect::<Vec<_>>());
    });
}

/// A child that starts sending a huge message and gets stuck mid-way (nobody reads yet).
fn stuck_sender(tx: Connection) -> Process<()> {
    Process::fork(move || {
        tx.send_bytes(&vec![0xAB; 64 << 20]).unwrap();
    })
    .unwrap()
}

#[test]
fn sender_killed_mid_message_gives_eof_not_a_torn_message() {
    with_watchdog(LIMIT, || {
        let (rx, tx) = pipe(false).unwrap();
        let p = stuck_sender(tx); // the parent's copy of `tx` went with the closure
        rx.poll_timeout(T).expect("first frame never arrived");
        std::thread::sleep(Duration::from_millis(50));
        p.kill().unwrap();
        assert!(p.join().is_err());
        match recv_bytes_t(&rx) {
            Err(RecvError::Eof) => {}
            Ok(m) => panic!("got a message of {} bytes from a killed sender", m.len()),
            Err(e) => panic!("{e}"),
        }
    });
}

#[test]
fn sender_killed_mid_message_then_another_sender_goes_on() {
    with_watchdog(LIMIT, || {
        let (rx, tx) = pipe(false).unwrap();
        let tx_keep = tx.try_clone().unwrap();
        let p = stuck_sender(tx);
        rx.poll_timeout(T).expect("first frame never arrived");
        std::thread::sleep(Duration::from_millis(50));
        p.kill().unwrap();
        assert!(p.join().is_err());
        // The killed child held the send lock: we take it over and send. (On a thread: the
        // socket buffer is full of the dead sender's frames until the receiver drains them.)
        let sender = std::thread::spawn(move || {
            tx_keep.send_bytes(b"after the crash").unwrap();
        });
        assert_eq!(recv_bytes_t(&rx).unwrap(), b"after the crash");
        sender.join().unwrap();
        assert!(matches!(recv_bytes_t(&rx), Err(RecvError::Eof)));
    });
}

/// The typed sizes for the assembly-buffer test: larger and smaller than the one before,
/// over the socket (a frame or many) and through the ring, and one (40 MiB) over the size a
/// thread keeps its buffer at.
const TYPED_SIZES: [usize; 8] = [
    3 << 20,
    10,
    1 << 20,
    40 << 20,
    20 << 10,
    3 << 20,
    100 << 10,
    1 << 20,
];

// Issue 18: a receive that slept and was woken by a doorbell leaves it on the socket; the
// next wait drops it before sleeping again (and drops at most one packet per look). Small
// messages (ring) and large ones (frames on the socket) alternate, with pauses that put the
// receivers on both sides to sleep, so those drops run beside frames in flight: every
// message comes back whole and in order.
#[test]
fn receivers_that_sleep_between_messages_get_small_and_large_ones_whole() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let p = Process::fork(move || {
            let mut n = 0u32;
            loop {
                let m = b.recv_bytes_timeout(T).unwrap();
                if m == b"__stop__" {
                    return n;
                }
                b.send_bytes(&m).unwrap();
                n += 1;
            }
        })
        .unwrap();
        let rounds = 300u32;
        for i in 0..rounds {
            let len = match i % 4 {
                0 => 8,
                1 => 200 << 10,
                2 => 100,
                _ => 3 << 20,
            };
            if i % 3 == 0 {
                sleep_ms(1);
            }
            let m = pattern(len, i as u8);
            a.send_bytes(&m).unwrap();
            let back = a.recv_bytes_timeout(T).unwrap();
            assert!(back == m, "message {i} ({len} bytes) came back changed");
        }
        a.send_bytes(b"__stop__").unwrap();
        assert_eq!(p.join().unwrap(), rounds);
    });
}

// Issue 18: a receiver first sleeps on the ring's futex (which no end of file wakes), then in
// `poll(2)` on the socket. A receiver asleep in `recv` when its peer is SIGKILLed, or exits,
// still gets end of file, soon: the futex sleep is bounded (`FUTEX_FIRST`, 2 ms) and a
// closing end wakes it.
#[test]
fn a_receiver_asleep_in_recv_gets_eof_when_its_peer_is_killed_or_exits() {
    with_watchdog(LIMIT, || {
        for kill in [true, false] {
            let (rx, tx) = pipe(false).unwrap();
            let (ready_rx, ready_tx) = pipe(false).unwrap();
            let (go_rx, go_tx) = pipe(false).unwrap();
            // The sender: says it is there, then waits (killed) or exits when told.
            let sender = Process::fork(move || {
                let _tx = tx;
                ready_tx.send_bytes(b"sender").unwrap();
                let _ = go_rx.recv_bytes_timeout(T);
            })
            .unwrap();
            // (The parent's copy of `tx` went with the closure: only the sender holds it.)
            let receiver = Process::fork(move || {
                let t = Instant::now();
                let r = rx.recv_bytes_timeout(T);
                (
                    matches!(r, Err(multiproc::RecvTimeoutError::Eof)),
                    t.elapsed(),
                )
            })
            .unwrap();
            assert_eq!(recv_bytes_t(&ready_rx).unwrap(), b"sender");
            let pid = receiver.pid();
            crate::util::until("the receiver to sleep in recv", || crate::util::asleep(pid));
            if kill {
                crate::util::sigkill(sender.pid());
            } else {
                go_tx.send_bytes(b"go").unwrap();
            }
            let (eof, took) = receiver.join().unwrap();
            assert!(eof, "end of file (kill: {kill})");
            assert!(took < T / 2, "end of file after {took:?} (kill: {kill})");
            let _ = sender.join();
        }
    });
}

// Issue 19: a typed receive assembles socket messages in a buffer its thread keeps; each
// message must still come out whole with its own bytes (none of the previous message's),
// around raw messages, a refused one and the size bound.
#[test]
fn typed_messages_of_alternating_sizes_come_out_whole() {
    with_watchdog(LIMIT, || {
        let (rx, tx) = pipe(false).unwrap();
        let p = Process::fork(move || {
            for (i, &len) in TYPED_SIZES.iter().enumerate() {
                tx.send(&pattern(len, i as u8)).unwrap();
                tx.send_bytes(&pattern(len / 2 + 1, 100 + i as u8)).unwrap();
            }
            // Refused (another type), then a good one.
            tx.send(&"x".repeat(2 << 20)).unwrap();
            tx.send(&pattern(1 << 20, 200)).unwrap();
        })
        .unwrap();
        for (i, &len) in TYPED_SIZES.iter().enumerate() {
            let v: Vec<u8> = recv_t(&rx).unwrap();
            assert!(
                v == pattern(len, i as u8),
                "typed message {i} ({len} bytes)"
            );
            let b = recv_bytes_t(&rx).unwrap();
            assert!(b == pattern(len / 2 + 1, 100 + i as u8), "raw message {i}");
        }
        let e = recv_t::<Vec<u8>>(&rx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
        let v: Vec<u8> = recv_t(&rx).unwrap();
        assert!(v == pattern(1 << 20, 200));
        p.join().unwrap();
    });
}

// Issue 19: a typed sender killed mid-message (its frames half on the socket, which the
// receiver assembles in its kept buffer, then drops), then a good typed message from
// another sender, and one more from this thread's buffer again.
#[test]
fn typed_sender_killed_mid_message_then_a_good_message() {
    with_watchdog(LIMIT, || {
        let (rx, tx) = pipe(false).unwrap();
        let tx_keep = tx.try_clone().unwrap();
        // The socket holds a few MiB: the sender stays stuck inside its 64 MiB message
        // until someone reads, so once its first frame is there it is mid-message.
        let p = Process::fork(move || {
            tx.send(&pattern(64 << 20, 1)).unwrap();
        })
        .unwrap();
        rx.poll_timeout(T).expect("first frame never arrived");
        p.kill().unwrap();
        assert!(p.join().is_err());
        let sender = std::thread::spawn(move || {
            tx_keep.send(&pattern(1 << 20, 2)).unwrap();
            tx_keep.send(&pattern(3 << 20, 3)).unwrap();
            tx_keep.send(&pattern(10, 4)).unwrap();
        });
        for (len, seed) in [(1 << 20, 2), (3 << 20, 3), (10, 4)] {
            let v: Vec<u8> = recv_t(&rx).unwrap();
            assert!(v == pattern(len, seed), "message of {len} bytes");
        }
        sender.join().unwrap();
        assert!(matches!(recv_t::<Vec<u8>>(&rx), Err(RecvError::Eof)));
    });
}

#[test]
fn receiver_killed_mid_message_leaves_no_torn_message() {
    with_watchdog(LIMIT, || {
        for delay_ms in [0u64, 5, 30] {
            let (rx, tx) = pipe(false).unwrap();
            let rx_keep = rx.try_clone().unwrap();
            let p = Process::fork(move || {
                let _ = rx.recv_bytes();
                std::thread::sleep(Duration::from_secs(60));
            })
            .unwrap();
            let big = tagged(1, 1, 20 << 20);
            let tx2 = tx.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                tx2.send_bytes(&big).unwrap();
                tx2.send_bytes(&tagged(2, 2, 10)).unwrap();
            });
            std::thread::sleep(Duration::from_millis(delay_ms));
            p.kill().unwrap();
            let _ = p.join();
            // Whatever the timing: whole messages in order, never a piece of one.
            let first = check_tagged(&recv_bytes_t(&rx_keep).unwrap());
            if first == (1, 1) {
                assert_eq!(check_tagged(&recv_bytes_t(&rx_keep).unwrap()), (2, 2));
            } else {
                assert_eq!(first, (2, 2));
            }
            sender.join().unwrap();
        }
    });
}

fn use_received_connection(conn: Connection) -> String {
    // The pipe end inside the message was never inherited by this process.
    let inner: Connection = conn.recv().unwrap();
    inner.send(&"hi through a passed end").unwrap();
    let back: String = inner.recv().unwrap();
    back
}

both_methods! {
    fn a_connection_end_passed_over_a_connection_works_there(m) {
        with_watchdog(LIMIT, move || {
            let (parent, child) = pipe(true).unwrap();
            let p = start_with(m, Process::builder(), use_received_connection, child);
            // Created after the child started: it can only get `x` through the message.
            let (x, y) = pipe(true).unwrap();
            parent.send(&x).unwrap();
            drop(x);
            assert_eq!(recv_t::<String>(&y).unwrap(), "hi through a passed end");
            y.send(&"reply").unwrap();
            assert_eq!(p.join().unwrap(), "reply");
            assert!(matches!(recv_bytes_t(&y), Err(RecvError::Eof)));
        });
    }
}

fn child_of_s14(args: (Connection, Connection)) -> Vec<String> {
    let (mut parent_end, child_end) = args;
    parent_end.close();
    let mut got = Vec::new();
    loop {
        match child_end.recv::<String>() {
            Ok(s) => got.push(s),
            Err(RecvError::Eof) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn eof_only_after_every_copy_is_closed() {
    with_watchdog(LIMIT, || {
        let (parent_end, child_end) = pipe(true).unwrap();
        let p = Process::spawn(child_of_s14, (parent_end.try_clone().unwrap(), child_end)).unwrap();
        parent_end.send(&"hello".to_string()).unwrap();
        drop(parent_end);
        assert_eq!(p.join().unwrap(), ["hello"]);
    });
}

fn send_after(args: (Connection, u64)) {
    std::thread::sleep(Duration::from_millis(args.1));
    args.0.send(&args.1).unwrap();
}

// ported: _TestWait.test_wait
#[test]
fn wait_collects_from_many_connections() {
    with_watchdog(LIMIT, || {
        let mut readers = Vec::new();
        let mut kids = Vec::new();
        for i in 0..4u64 {
            let (r, w) = pipe(false).unwrap();
            kids.push(Process::spawn(send_after, (w, 10 * i)).unwrap());
            readers.push(r);
        }
        let mut got = Vec::new();
        let mut open: Vec<usize> = (0..readers.len()).collect();
        while !open.is_empty() {
            let refs: Vec<&Connection> = open.iter().map(|&i| &readers[i]).collect();
            let ready = wait_timeout(&refs, T).unwrap();
            assert!(!ready.is_empty(), "wait timed out");
            let mut done = Vec::new();
            for k in ready {
                match refs[k].recv::<u64>() {
                    Ok(v) => got.push(v),
                    Err(RecvError::Eof) => done.push(open[k]),
                    Err(e) => panic!("{e}"),
                }
            }
            open.retain(|i| !done.contains(i));
        }
        got.sort();
        assert_eq!(got, [0, 10, 20, 30]);
        for k in kids {
            k.join().unwrap();
        }
    });
}

// ported: _TestWait.test_wait_timeout and test_neg_timeout
#[test]
fn wait_times_out_then_sees_readiness() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let t0 = Instant::now();
        assert!(wait_timeout(&[&a], Duration::from_millis(200))
            .unwrap_err()
            .is_timeout());
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(try_wait(&[&a]).unwrap_err().is_would_block());
        b.send_bytes(b"x").unwrap();
        assert_eq!(wait_timeout(&[&a, &b], T).unwrap(), [0]);
        // Still there: wait never consumes.
        assert_eq!(try_wait(&[&a]).unwrap(), [0]);
    });
}

// ported: _TestWait.test_wait_integer (process sentinels) — mixed with a connection
#[test]
fn wait_on_process_sentinels_and_connections() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        // Timed from before the slow child starts: its 600 ms sleep cannot begin earlier
        // (timing from after both spawns missed the bound when the second spawn was slow).
        let t0 = Instant::now();
        let slow = Process::spawn(sleep_ms, 600).unwrap();
        let fast = Process::spawn(sleep_ms, 0).unwrap();
        let objs: [&dyn multiproc::Waitable; 3] = [&slow, &fast, &a];
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let ready = wait_timeout(&objs, T).unwrap();
            assert!(!ready.is_empty(), "wait timed out");
            for i in ready {
                if !seen.contains(&i) {
                    seen.push(i);
                }
            }
        }
        assert_eq!(seen, [1, 0], "the fast process ends first");
        assert!(t0.elapsed() >= Duration::from_millis(600));
        b.send_bytes(b"x").unwrap();
        let ready = wait_timeout(&objs, T).unwrap();
        assert_eq!(ready, [0, 1, 2]);
        slow.join().unwrap();
        fast.join().unwrap();
    });
}

/// The body of the leak check; runs in a fresh child (one thread, so other tests' fds do
/// not come and go under it).
fn leak_check_body() -> (Vec<i32>, Vec<i32>) {
    // Warm up: arenas, thread-local buffers, this thread's result slots (first fork).
    Process::fork(|| ()).unwrap().join().unwrap();
    let (a, b) = pipe(true).unwrap();
    a.send(&pipe(true).unwrap()).unwrap();
    let _: (Connection, Connection) = b.recv().unwrap();
    drop((a, b));
    let before = open_fds();
    for _ in 0..30 {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(false).unwrap();
        a.send(&(c, d)).unwrap();
        let (c, d): (Connection, Connection) = b.recv().unwrap();
        d.send_bytes(&vec![1; 500_000]).unwrap();
        let p = Process::fork(move || c.recv_bytes().unwrap().len()).unwrap();
        assert_eq!(p.join().unwrap(), 500_000);
        // Fds sent but never claimed (recv_bytes refuses a typed message, here one with
        // handles) are closed too.
        let (x, _y) = pipe(true).unwrap();
        a.send(&x).unwrap();
        drop(x);
        assert!(b.recv_bytes().is_err());
        // A failed decode closes the received fds.
        let (x, _y) = pipe(true).unwrap();
        a.send(&x).unwrap();
        assert!(b.recv::<u8>().is_err());
    }
    (before, open_fds())
}

#[test]
fn no_fd_leaks() {
    fds_unchanged_after(leak_check_body);
}

/// Runs `body` in a fresh child (so other tests' fds don't count) and checks that its open
/// fds after equal those before.
fn fds_unchanged_after(body: fn() -> (Vec<i32>, Vec<i32>)) {
    with_watchdog(LIMIT, move || {
        let p = Process::fork(body).unwrap();
        let (before, after) = p.join().unwrap();
        assert_eq!(before, after, "fds leaked");
    });
}

fn use_received_lock_and_queue(conn: Connection) -> bool {
    let (lock, q): (multiproc::Lock, multiproc::Queue<String>) = conn.recv().unwrap();
    // The parent holds the lock: the same lock, seen from a process that never inherited it.
    let held_elsewhere = lock.try_lock().is_err();
    q.put("put by a process that got the queue over a pipe".into())
        .unwrap();
    conn.send_bytes(b"done").unwrap();
    // Now the parent releases it; we can take it.
    conn.poll_timeout(T).unwrap();
    conn.recv_bytes().unwrap();
    let ok = lock.lock().is_ok();
    held_elsewhere && ok
}

#[test]
fn a_lock_and_a_queue_passed_over_a_connection_work_there() {
    with_watchdog(LIMIT, || {
        let (parent, child) = pipe(true).unwrap();
        let p = Process::spawn(use_received_lock_and_queue, child).unwrap();
        // Created after the child started: it can only get them through the message.
        let lock = multiproc::Lock::new().unwrap();
        let q: multiproc::Queue<String> = multiproc::Queue::new().unwrap();
        let g = lock.lock().unwrap();
        parent.send(&(&lock, &q)).unwrap();
        assert_eq!(recv_bytes_t(&parent).unwrap(), b"done");
        drop(g);
        parent.send_bytes(b"released").unwrap();
        assert!(p.join().unwrap());
        assert_eq!(
            q.get_timeout(Duration::from_secs(20)).unwrap(),
            "put by a process that got the queue over a pipe"
        );
    });
}

/// Sizes for the tight-loop fault tests: mostly ring messages, every tenth a socket one
/// (larger than `INLINE_MAX`), and empty ones.
fn mixed_size(seq: u32) -> usize {
    match seq % 10 {
        0 => multiproc::pipe::INLINE_MAX + 50_000,
        1 | 6 => 0,
        2 | 7 => 64,
        3 => multiproc::pipe::INLINE_MAX,
        _ => 900,
    }
}

#[test]
fn senders_killed_in_a_tight_send_loop_leave_only_whole_messages() {
    with_watchdog(LIMIT, || {
        for round in 0..3u32 {
            let (rx, tx) = pipe(false).unwrap();
            let tx_keep = tx.try_clone().unwrap();
            let kids: Vec<Process<()>> = (0..2u32)
                .map(|s| {
                    let tx = tx.try_clone().unwrap();
                    Process::fork(move || {
                        for q in 0.. {
                            tx.send_bytes(&tagged(s, q, mixed_size(q))).unwrap();
                        }
                    })
                    .unwrap()
                })
                .collect();
            drop(tx);
            // Kill each sender after it got some messages through (different points per
            // round), while it is still sending as fast as it can.
            let mut next = [0u32; 3];
            let kill_at = [50 + 37 * round, 120 + 53 * round];
            let mut killed = [false; 2];
            while !killed.iter().all(|&k| k) {
                let m = recv_bytes_t(&rx).unwrap();
                let (s, q) = check_tagged(&m);
                assert_eq!(
                    next[s as usize], q,
                    "sender {s}: out of order or duplicated"
                );
                next[s as usize] += 1;
                for k in 0..2 {
                    if !killed[k] && next[k] >= kill_at[k] {
                        kids[k].kill().unwrap();
                        killed[k] = true;
                    }
                }
            }
            for k in kids {
                assert!(k.join().is_err());
            }
            // What the dead senders left is whole, in order; then a survivor goes on.
            let survivor = std::thread::spawn(move || {
                for q in 0..20 {
                    tx_keep.send_bytes(&tagged(2, q, mixed_size(q))).unwrap();
                }
            });
            loop {
                match recv_bytes_t(&rx) {
                    Ok(m) => {
                        let (s, q) = check_tagged(&m);
                        assert_eq!(next[s as usize], q, "sender {s}: out of order");
                        next[s as usize] += 1;
                    }
                    Err(RecvError::Eof) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            survivor.join().unwrap();
            assert_eq!(next[2], 20, "the survivor's messages all arrived");
        }
    });
}

#[test]
fn receivers_killed_in_a_tight_recv_loop_leave_no_torn_message() {
    with_watchdog(LIMIT, || {
        const TOTAL: u32 = 1500;
        let (rx, tx) = pipe(false).unwrap();
        // The receivers report how many messages they took, every 20.
        let (progress_rx, progress_tx) = pipe(false).unwrap();
        let kids: Vec<Process<()>> = (0..2)
            .map(|_| {
                let rx = rx.try_clone().unwrap();
                let progress = progress_tx.try_clone().unwrap();
                Process::fork(move || {
                    for n in 1u32.. {
                        match rx.recv_bytes() {
                            // A torn message panics: the join below checks it.
                            Ok(m) => drop(check_tagged(&m)),
                            Err(e) => panic!("receiver: {e}"),
                        }
                        if n % 20 == 0 {
                            progress.send(&20u32).unwrap();
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        drop(progress_tx);
        let sender = std::thread::spawn(move || {
            for q in 0..TOTAL {
                tx.send_bytes(&tagged(0, q, mixed_size(q))).unwrap();
            }
        });
        // Kill the receivers one after the other while messages stream through them.
        let mut taken = 0;
        for (k, at) in [200, 500].into_iter().enumerate() {
            while taken < at {
                taken += recv_t::<u32>(&progress_rx).unwrap();
            }
            kids[k].kill().unwrap();
        }
        for k in kids {
            let e = k.join().unwrap_err();
            assert!(
                !matches!(e.kind(), ErrorKind::ChildPanicked),
                "a receiver saw a torn message: {e}"
            );
        }
        // The survivor (us) gets whole messages in order, up to the last one.
        let mut last = None;
        while last != Some(TOTAL - 1) {
            let (_, q) = check_tagged(&recv_bytes_t(&rx).unwrap());
            assert!(
                last.is_none_or(|l| q > l),
                "out of order: {q} after {last:?}"
            );
            last = Some(q);
        }
        sender.join().unwrap();
        assert!(matches!(recv_bytes_t(&rx), Err(RecvError::Eof)));
    });
}

/// A byte that refuses to be zero when deserialized (its `Deserialize` panics).
#[derive(Debug, PartialEq, serde::Serialize)]
struct Brittle(u8);

impl<'de> serde::Deserialize<'de> for Brittle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Brittle, D::Error> {
        match u8::deserialize(d)? {
            0 => panic!("zero"),
            b => Ok(Brittle(b)),
        }
    }
}

#[test]
fn a_panicking_deserialize_consumes_its_message() {
    // The ring path decodes in place under the receive lock: the panic must not leave the
    // message at the head (every later recv would panic on it) nor the lock held.
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        for v in [7u8, 0, 9] {
            a.send(&Brittle(v)).unwrap();
        }
        let recv = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                b.poll_timeout(Duration::from_secs(10)).unwrap();
                b.recv::<Brittle>().unwrap()
            }))
        };
        assert_eq!(recv().unwrap(), Brittle(7));
        assert!(recv().is_err(), "the panic reaches the caller");
        assert_eq!(recv().unwrap(), Brittle(9), "and its message is gone");
    });
}

/// How many fds `N` connection ends add to a process, counted in /proc/self/fd: in the
/// process that creates the pipes, and in one that receives the ends in messages (a fresh
/// fork made before the pipes existed, so it holds only what the messages brought).
const FD_N: usize = 8;

/// Fds added, relative to a baseline taken after a warm-up, at each step (see
/// [`fd_count_receiver`] and [`fd_count_body`]).
type FdSteps = Vec<(String, usize)>;

fn fds_now() -> usize {
    open_fds().len()
}

/// The receiving side: takes batches of ends over `ctl` and counts after each.
fn fd_count_receiver(ctl: Connection) -> FdSteps {
    let got = |ctl: &Connection| -> Vec<Connection> { recv_t(ctl).unwrap() };
    // Warm up (arena mappings, buffers): one batch of each kind, then dropped.
    drop(got(&ctl));
    let base = fds_now();
    let mut steps = FdSteps::new();
    let duplex_a = got(&ctl);
    steps.push(("duplex, one end each".into(), fds_now() - base));
    let duplex_b = got(&ctl);
    steps.push(("duplex, both ends".into(), fds_now() - base));
    let simplex_r = got(&ctl);
    steps.push(("+ simplex, reader ends".into(), fds_now() - base));
    let simplex_w = got(&ctl);
    steps.push(("+ simplex, both ends".into(), fds_now() - base));
    // Asking for every end's readiness fd (it is the socket) opens nothing.
    for c in duplex_a
        .iter()
        .chain(&duplex_b)
        .chain(&simplex_r)
        .chain(&simplex_w)
    {
        assert!(c.as_raw_fd() >= 0);
    }
    steps.push(("+ every readiness fd asked for".into(), fds_now() - base));
    // The received ends work: a message each way on every duplex pipe, one on each simplex.
    for (a, b) in duplex_a.iter().zip(&duplex_b) {
        a.send_bytes(b"ab").unwrap();
        b.send_bytes(b"ba").unwrap();
        assert_eq!(recv_bytes_t(b).unwrap(), b"ab");
        assert_eq!(recv_bytes_t(a).unwrap(), b"ba");
    }
    for (r, w) in simplex_r.iter().zip(&simplex_w) {
        w.send_bytes(b"w").unwrap();
        assert_eq!(recv_bytes_t(r).unwrap(), b"w");
    }
    drop((duplex_a, duplex_b, simplex_r, simplex_w));
    steps.push(("all dropped".into(), fds_now() - base));
    steps
}

/// Runs in a fresh one-thread child (other tests' fds must not come and go under it).
fn fd_count_body() -> (FdSteps, FdSteps) {
    let (ctl, ctl_child) = pipe(true).unwrap();
    // Warm up this process too (first fork, arenas, buffers).
    let warm: Vec<Connection> = {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(false).unwrap();
        vec![a, b, c, d]
    };
    let receiver = Process::fork(move || fd_count_receiver(ctl_child)).unwrap();
    ctl.send(&warm).unwrap();
    drop(warm);
    let base = fds_now();
    let mut steps = FdSteps::new();
    let (da, db): (Vec<Connection>, Vec<Connection>) =
        (0..FD_N).map(|_| pipe(true).unwrap()).unzip();
    steps.push(("duplex pipes created".into(), fds_now() - base));
    let (sr, sw): (Vec<Connection>, Vec<Connection>) =
        (0..FD_N).map(|_| pipe(false).unwrap()).unzip();
    steps.push(("+ simplex pipes created".into(), fds_now() - base));
    let batches = [da, db, sr, sw];
    for b in &batches {
        ctl.send(b).unwrap();
    }
    steps.push(("sent, still held".into(), fds_now() - base));
    drop(batches);
    steps.push(("sent and dropped".into(), fds_now() - base));
    let theirs = receiver.join().unwrap();
    (steps, theirs)
}

#[test]
fn fds_held_per_connection_end() {
    with_watchdog(LIMIT, || {
        let p = Process::fork(fd_count_body).unwrap();
        let (ours, theirs) = p.join().unwrap();
        eprintln!("fds added by {FD_N} pipes of each kind:");
        eprintln!("  creator:  {ours:?}");
        eprintln!("  receiver: {theirs:?}");
        let n = FD_N;
        // The creator: a duplex pipe is two sockets and one shared segment; a simplex pipe
        // the same.
        assert_eq!(ours[0].1, 3 * n, "{ours:?}");
        assert_eq!(ours[1].1, 6 * n, "{ours:?}");
        assert_eq!(ours[3].1, 0, "{ours:?}");
        // The receiver: one end of each duplex pipe is its socket and the connection's one
        // segment: 2 fds (Python's is 1); the other end adds only its socket (the segment is
        // mapped once). Simplex ends alike. (With a segment per direction, as before, these
        // were: creator 4 per duplex pipe, receiver 3 per duplex end and 4 per pipe.)
        assert_eq!(theirs[0].1, 2 * n, "{theirs:?}");
        assert_eq!(theirs[1].1, 3 * n, "{theirs:?}");
        assert_eq!(theirs[2].1, 5 * n, "{theirs:?}");
        assert_eq!(theirs[3].1, 6 * n, "{theirs:?}");
        assert_eq!(theirs[4].1, 6 * n, "{theirs:?}");
        assert_eq!(theirs[5].1, 0, "{theirs:?}");
    });
}

/// The body of [`a_sigkilled_peer_leaves_no_fds_behind`]; runs in a fresh one-thread child.
fn kill_peer_body() -> (Vec<i32>, Vec<i32>) {
    // Warm up: first fork, arenas, buffers, a received end.
    Process::fork(|| ()).unwrap().join().unwrap();
    {
        let (a, b) = pipe(true).unwrap();
        a.send(&pipe(true).unwrap()).unwrap();
        let _: (Connection, Connection) = recv_t(&b).unwrap();
    }
    let before = open_fds();
    for round in 0..3u32 {
        // A sending peer, killed while it streams ring and socket messages: it sent us an
        // end of a pipe of its own first.
        let (ours, theirs) = pipe(true).unwrap();
        let p: Process<()> = Process::fork(move || {
            let (x, _y) = pipe(true).unwrap();
            theirs.send(&x).unwrap();
            for q in 0u32.. {
                theirs.send_bytes(&tagged(0, q, mixed_size(q))).unwrap();
            }
        })
        .unwrap();
        let x: Connection = recv_t(&ours).unwrap();
        for q in 0..40 + 30 * round {
            assert_eq!(check_tagged(&recv_bytes_t(&ours).unwrap()), (0, q));
        }
        p.kill().unwrap();
        assert!(p.join().is_err());
        loop {
            match recv_bytes_t(&ours) {
                Ok(m) => drop(check_tagged(&m)),
                Err(RecvError::Eof) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // The other end of `x` died with the peer.
        assert!(matches!(recv_bytes_t(&x), Err(RecvError::Eof)));
        drop((ours, x));

        // A receiving peer, killed while we stream to it (some messages carry pipe ends, so
        // fds are in flight in the socket when it dies).
        let (ours, theirs) = pipe(true).unwrap();
        let mut p: Option<Process<()>> = Some(
            Process::fork(move || loop {
                // Messages carrying ends are taken as bytes: refused (they are typed), and
                // their fds closed unclaimed; the connection goes on.
                match theirs.recv_bytes() {
                    Ok(_) => {}
                    Err(RecvError::Failed(e)) if e.kind() == multiproc::ErrorKind::Codec => {}
                    Err(e) => panic!("receiver: {e}"),
                }
            })
            .unwrap(),
        );
        let kill_at = 60 + 25 * round;
        let deadline = Instant::now() + Duration::from_secs(20);
        for q in 0u32.. {
            if q == kill_at {
                let p = p.take().unwrap();
                p.kill().unwrap();
                assert!(p.join().is_err());
            }
            let sent = if q % 7 == 3 {
                let (e1, _e2) = pipe(q % 2 == 0).unwrap();
                ours.send(&e1)
            } else {
                ours.send_bytes(&tagged(0, q, mixed_size(q)))
            };
            match sent {
                Ok(()) => assert!(Instant::now() < deadline, "the hang-up was never seen"),
                Err(SendError::Disconnected) if q >= kill_at => break,
                Err(e) => panic!("send {q}: {e}"),
            }
        }
        drop(ours);
    }
    (before, open_fds())
}

#[test]
fn a_sigkilled_peer_leaves_no_fds_behind() {
    fds_unchanged_after(kill_peer_body);
}

// An interrupted large send (Python's Ctrl-C) abandons its message in the middle: the
// receiver in another process skips it whole and gets the next one; the sender was asked
// only once the socket was full.
#[test]
fn interrupted_large_send_is_skipped_by_the_reader() {
    with_watchdog(Duration::from_secs(60), || {
        let (a, b) = pipe(true).unwrap();
        let (go_a, go_b) = pipe(true).unwrap();
        let reader = Process::fork(move || {
            // Waits for the word before reading anything.
            go_b.recv_bytes().unwrap();
            let first = b.recv_bytes().unwrap();
            (first.len(), first)
        })
        .unwrap();
        let big = vec![7u8; 16 << 20];
        let mut asked = 0;
        let err = a
            .send_bytes_interruptible(&big, || {
                asked += 1;
                asked == 3
            })
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(
            asked, 3,
            "asked after each wait for room, until it said stop"
        );
        a.send_bytes_interruptible(b"next", || panic!("room: never asked"))
            .unwrap();
        go_a.send_bytes(b"go").unwrap();
        let (len, first) = reader.join().unwrap();
        assert_eq!((len, &first[..]), (4, &b"next"[..]));
    })
}
