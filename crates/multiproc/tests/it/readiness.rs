//! Readiness fds (issue 12, point 3): a `Connection`'s socket (its `fileno()`) and a
//! queue's eventfd turn readable whenever a message is waiting, for raw `poll(2)` and
//! `epoll` (level- and edge-triggered), with senders in other processes (fork and Spawn),
//! messages sent before and after the poll starts, one and many, large ones, SIGKILLed
//! senders and receivers, and `multiproc::wait` on the same objects.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use multiproc::pipe::TryRecvError;
use multiproc::{pipe, wait_timeout, Connection, Process, StartMethod};
use rustix::event::epoll;

use crate::util::{open_fds, start_with, with_watchdog};

const LIMIT: Duration = Duration::from_secs(90);
/// Generous bound for "it turns readable".
const T: Duration = Duration::from_secs(20);
/// How long "it stays unreadable" is watched.
const QUIET: Duration = Duration::from_millis(150);

/// Raw `poll(2)` on one fd for POLLIN; true when readable (or hung up) within `t`.
fn poll_in(fd: RawFd, t: Duration) -> bool {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = t.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid, initialized pollfd for the length given.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 1, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        return n == 1;
    }
}

/// Asserts that `fd` stays unreadable for [`QUIET`] (and that poll waited that long).
fn assert_quiet(fd: RawFd, what: &str) {
    let t0 = Instant::now();
    assert!(!poll_in(fd, QUIET), "{what}: readable with nothing waiting");
    assert!(t0.elapsed() >= QUIET - Duration::from_millis(5), "{what}");
}

/// An epoll instance watching `fd` for input, level- or edge-triggered.
struct Ep {
    ep: OwnedFd,
}

impl Ep {
    fn new(fd: BorrowedFd<'_>, edge: bool) -> Ep {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
        let mut flags = epoll::EventFlags::IN;
        if edge {
            flags |= epoll::EventFlags::ET;
        }
        epoll::add(&ep, fd, epoll::EventData::new_u64(7), flags).unwrap();
        Ep { ep }
    }

    /// True when an event came within `t`.
    fn wait(&self, t: Duration) -> bool {
        let mut events = Vec::with_capacity(4);
        let ts = rustix::time::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        };
        loop {
            events.clear();
            match epoll::wait(
                &self.ep,
                rustix::buffer::spare_capacity(&mut events),
                Some(&ts),
            ) {
                Ok(_) => return !events.is_empty(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => panic!("epoll_wait: {e}"),
            }
        }
    }
}

// ----- connections -----

/// Orders for the sending child.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Order {
    /// Send `n` messages of `len` bytes each (message `i` starts with byte `i`), then
    /// report on the control connection.
    Send {
        n: u32,
        len: usize,
    },
    /// Send them after `delay` (the poller is most likely waiting by then; either order
    /// must work), without reporting.
    SendLater {
        n: u32,
        len: usize,
        delay_ms: u64,
    },
    Stop,
}

fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; len.max(1)];
    m[0] = (i % 256) as u8;
    m
}

/// The sending child: obeys orders on `ctl`, sends on `out`.
fn sender((ctl, out): (Connection, Connection)) {
    loop {
        match ctl.recv::<Order>().unwrap() {
            Order::Send { n, len } => {
                for i in 0..n {
                    out.send_bytes(&message(i, len)).unwrap();
                }
                ctl.send(&"sent").unwrap();
            }
            Order::SendLater { n, len, delay_ms } => {
                std::thread::sleep(Duration::from_millis(delay_ms));
                for i in 0..n {
                    out.send_bytes(&message(i, len)).unwrap();
                }
            }
            Order::Stop => return,
        }
    }
}

/// Receives everything waiting, as a poller would after a wake-up: `try_recv_bytes` until
/// `WouldBlock`; checks the messages are `0..n` of `len` bytes.
fn drain_expect(c: &Connection, n: u32, len: usize) {
    for i in 0..n {
        let m = c
            .try_recv_bytes()
            .unwrap_or_else(|e| panic!("message {i} of {n} not there after a wake-up: {e}"));
        assert_eq!(m, message(i, len), "message {i}");
    }
    assert!(c.try_recv_bytes().unwrap_err().is_empty());
}

/// One poller (this process) on `b`'s fd, with `how` waiting on it; the sender is a child
/// started with `m`.
fn connection_readiness(m: StartMethod, how: &str) {
    let (ctl, ctl_child) = pipe(true).unwrap();
    let (a, b) = pipe(true).unwrap();
    // Armed before any message flows, as the contract asks.
    let fd = b.as_raw_fd();
    let p = start_with(m, Process::builder(), sender, (ctl_child, a));
    let ep = match how {
        "epoll" => Some(Ep::new(b.as_fd(), false)),
        "epoll-et" => Some(Ep::new(b.as_fd(), true)),
        _ => None,
    };
    let ready = |t: Duration| match &ep {
        Some(e) => e.wait(t),
        None => poll_in(fd, t),
    };
    let quiet = |what: &str| {
        let t0 = Instant::now();
        assert!(
            !ready(QUIET),
            "{how}: {what}: readable with nothing waiting"
        );
        assert!(t0.elapsed() >= QUIET - Duration::from_millis(5));
    };
    quiet("before any message");
    // Small messages (through the ring), then large ones (over the socket), each sent
    // before the poll starts (the child reports) and after. (Sizes that fit the ring and
    // the socket's buffer: the sender reports before anyone reads.)
    for (n, len) in [(1, 8), (200, 40), (1, 60_000), (2, 40_000), (20, 9000)] {
        ctl.send(&Order::Send { n, len }).unwrap();
        ctl.poll_timeout(T).unwrap();
        assert_eq!(ctl.recv::<String>().unwrap(), "sent");
        assert!(
            ready(T),
            "{how}: {n} x {len} B sent before the poll: not readable"
        );
        if how == "poll" {
            // Level-triggered: readable again without taking anything.
            assert!(poll_in(fd, Duration::ZERO));
        }
        drain_expect(&b, n, len);
        quiet("after the last message was taken");

        ctl.send(&Order::SendLater {
            n,
            len,
            delay_ms: 30,
        })
        .unwrap();
        // Messages arrive while we wait: take them as they come.
        let mut got = 0;
        while got < n {
            assert!(
                ready(T),
                "{how}: {got} of {n} x {len} B, sent during the poll"
            );
            loop {
                match b.try_recv_bytes() {
                    Ok(msg) => {
                        assert_eq!(msg, message(got, len));
                        got += 1;
                    }
                    Err(e) if e.is_empty() => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // The last message's doorbell may still be on its way when we take the message
        // (the record is visible before its sender rings): one spurious wake-up is allowed
        // by the contract; the `try_recv` that finds nothing drops it, and then it is quiet.
        if ready(QUIET) {
            assert!(b.try_recv_bytes().unwrap_err().is_empty());
        }
        quiet("after the last message sent during the poll was taken");
    }
    // Large and small interleaved: a doorbell in front of a large message's frames is
    // dropped by the receiver; the ones behind must still be announced.
    for round in 0..20u32 {
        ctl.send(&Order::Send { n: 1, len: 70_000 }).unwrap();
        ctl.send(&Order::Send { n: 2, len: 10 }).unwrap();
        for _ in 0..2 {
            ctl.poll_timeout(T).unwrap();
            assert_eq!(ctl.recv::<String>().unwrap(), "sent");
        }
        assert!(ready(T), "{how}: round {round}");
        assert_eq!(b.try_recv_bytes().unwrap(), message(0, 70_000));
        // (Edge-triggered: no new edge until the poller has seen `WouldBlock`.)
        if how != "epoll-et" {
            assert!(
                ready(T),
                "{how}: round {round}: small messages behind a large one"
            );
        }
        drain_expect(&b, 2, 10);
        quiet("interleaved");
    }
    // The library's own wait sees the same.
    ctl.send(&Order::Send { n: 1, len: 5 }).unwrap();
    assert_eq!(wait_timeout(&[&b], T).unwrap(), [0]);
    assert!(ready(T));
    drain_expect(&b, 1, 5);
    ctl.send(&Order::Stop).unwrap();
    p.join().unwrap();
    // End of file makes it readable for good, and recv says so.
    assert!(ready(T), "{how}: end of file");
    assert!(matches!(b.try_recv_bytes(), Err(TryRecvError::Eof)));
}

#[test]
fn connection_fd_with_raw_poll_fork() {
    with_watchdog(LIMIT, || connection_readiness(StartMethod::Fork, "poll"));
}

#[test]
fn connection_fd_with_raw_poll_spawn() {
    with_watchdog(LIMIT, || connection_readiness(StartMethod::Spawn, "poll"));
}

#[test]
fn connection_fd_with_epoll_fork() {
    with_watchdog(LIMIT, || {
        connection_readiness(StartMethod::Fork, "epoll");
        connection_readiness(StartMethod::Fork, "epoll-et");
    });
}

#[test]
fn connection_fd_with_epoll_spawn() {
    with_watchdog(LIMIT, || {
        connection_readiness(StartMethod::Spawn, "epoll");
        connection_readiness(StartMethod::Spawn, "epoll-et");
    });
}

/// The poller is the child: it receives the end, arms it there, and polls it raw.
fn child_poller((ctl, b): (Connection, Connection)) -> u32 {
    let fd = b.as_raw_fd();
    ctl.send(&"armed").unwrap();
    let mut got = 0;
    while got < 100 {
        assert!(poll_in(fd, T), "child: not readable after {got}");
        while let Ok(m) = b.try_recv_bytes() {
            assert_eq!(m, message(got, 16));
            got += 1;
        }
    }
    assert!(
        !poll_in(fd, QUIET),
        "child: readable after the last message"
    );
    got
}

#[test]
fn a_child_polls_an_end_it_received() {
    with_watchdog(LIMIT, || {
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            let (ctl, ctl_child) = pipe(true).unwrap();
            let (a, b) = pipe(true).unwrap();
            let p = start_with(m, Process::builder(), child_poller, (ctl_child, b));
            ctl.poll_timeout(T).unwrap();
            assert_eq!(ctl.recv::<String>().unwrap(), "armed");
            for i in 0..100 {
                a.send_bytes(&message(i, 16)).unwrap();
                if i % 10 == 0 {
                    std::thread::yield_now();
                }
            }
            assert_eq!(p.join().unwrap(), 100, "{m:?}");
        }
    });
}

/// A receiver that takes one message, reports, and waits to be killed.
fn take_one_then_hang((ctl, b): (Connection, Connection)) {
    let m = b.recv_bytes().unwrap();
    ctl.send(&m.len()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_receiver_leaves_waiting_messages_announced() {
    with_watchdog(LIMIT, || {
        for len in [10, 100_000] {
            let (ctl, ctl_child) = pipe(true).unwrap();
            let (a, b) = pipe(true).unwrap();
            let fd = b.as_raw_fd();
            let p = Process::fork({
                let b = b.try_clone().unwrap();
                move || take_one_then_hang((ctl_child, b))
            })
            .unwrap();
            // Sent together: the second rings no doorbell of its own (one is pending).
            a.send_bytes(&message(0, len)).unwrap();
            a.send_bytes(&message(1, len)).unwrap();
            a.send_bytes(&message(2, 10)).unwrap();
            ctl.poll_timeout(T).unwrap();
            assert_eq!(ctl.recv::<usize>().unwrap(), len);
            p.kill().unwrap();
            let _ = p.join();
            assert!(
                poll_in(fd, T),
                "len {len}: messages left by a killed receiver"
            );
            assert_eq!(b.try_recv_bytes().unwrap(), message(1, len));
            assert!(poll_in(fd, T));
            assert_eq!(b.try_recv_bytes().unwrap(), message(2, 10));
            assert!(b.try_recv_bytes().unwrap_err().is_empty());
            assert_quiet(fd, "after a killed receiver");
        }
    });
}

/// Sends one huge message (it blocks: nobody reads) after reporting.
fn huge_sender((ctl, a): (Connection, Connection)) {
    ctl.send(&"start").unwrap();
    a.send_bytes(&vec![1u8; 256 << 20]).unwrap();
}

#[test]
fn a_killed_senders_leftovers_do_not_keep_the_fd_readable() {
    with_watchdog(LIMIT, || {
        let (ctl, ctl_child) = pipe(true).unwrap();
        let (a, b) = pipe(true).unwrap();
        let fd = b.as_raw_fd();
        let p = Process::fork({
            let a = a.try_clone().unwrap();
            move || huge_sender((ctl_child, a))
        })
        .unwrap();
        ctl.poll_timeout(T).unwrap();
        assert_eq!(ctl.recv::<String>().unwrap(), "start");
        // Its first frames make the socket readable: it is in the middle of the message.
        assert!(poll_in(fd, T));
        p.kill().unwrap();
        let _ = p.join();
        // We hold a copy of the sending end, so no end of file: the unfinished message is
        // dropped, and then nothing is waiting.
        let t0 = Instant::now();
        let e = b
            .recv_bytes_timeout(Duration::from_millis(300))
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_quiet(fd, "after a killed sender's partial message was dropped");
        // And the connection goes on, announced.
        a.send_bytes(b"after").unwrap();
        assert!(poll_in(fd, T));
        assert_eq!(b.try_recv_bytes().unwrap(), b"after");
        assert_quiet(fd, "after the next message");
    });
}

#[test]
fn arming_opens_no_fd() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(false).unwrap();
        let before = open_fds();
        for x in [&a, &b, &c, &d] {
            let _ = x.as_raw_fd();
            let _ = x.try_as_fd();
        }
        a.send_bytes(b"1").unwrap();
        b.send_bytes(b"2").unwrap();
        d.send_bytes(b"3").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"1");
        assert_eq!(a.recv_bytes().unwrap(), b"2");
        assert_eq!(c.recv_bytes().unwrap(), b"3");
        assert_eq!(open_fds(), before);
    });
}
