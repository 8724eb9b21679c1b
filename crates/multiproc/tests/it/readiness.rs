//! Readiness fds (issue 12, point 3): a `Connection`'s socket (its `fileno()`) and a
//! queue's eventfd turn readable whenever a message is waiting, for raw `poll(2)` and
//! `epoll` (level- and edge-triggered), with senders in other processes (fork and Spawn),
//! messages sent before and after the poll starts, one and many, large ones, SIGKILLed
//! senders and receivers, and `multiproc::wait` on the same objects.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use multiproc::pipe::TryRecvError;
use multiproc::queue::TryGetError;
use multiproc::{
    pipe, wait_timeout, Connection, JoinableQueue, Process, Queue, SimpleQueue, StartMethod,
};
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

/// An fd watched the way `how` names it: "poll" (raw `poll(2)`), "epoll" or "epoll-et"
/// (level- or edge-triggered).
struct Watch<'a> {
    fd: RawFd,
    ep: Option<Ep>,
    how: &'a str,
}

impl<'a> Watch<'a> {
    fn new(fd: BorrowedFd<'_>, how: &'a str) -> Watch<'a> {
        let ep = match how {
            "epoll" => Some(Ep::new(fd, false)),
            "epoll-et" => Some(Ep::new(fd, true)),
            _ => None,
        };
        Watch {
            fd: fd.as_raw_fd(),
            ep,
            how,
        }
    }

    /// True when the fd turned readable within `t`.
    fn ready(&self, t: Duration) -> bool {
        match &self.ep {
            Some(e) => e.wait(t),
            None => poll_in(self.fd, t),
        }
    }

    /// Asserts that the fd stays unreadable for [`QUIET`] (and that the wait took that long).
    fn quiet(&self, what: &str) {
        let (how, t0) = (self.how, Instant::now());
        assert!(
            !self.ready(QUIET),
            "{how}: {what}: readable with nothing waiting"
        );
        assert!(t0.elapsed() >= QUIET - Duration::from_millis(5));
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
    let w = Watch::new(b.as_fd(), how);
    let (ready, quiet) = (|t| w.ready(t), |what: &str| w.quiet(what));
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

// ----- queues -----

/// Orders for a producing child.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Put {
    /// Put `n` messages (`i` for `i` in `from..from + n`), then report.
    Now {
        from: u32,
        n: u32,
    },
    /// Put them after `delay_ms`, without reporting.
    Later {
        from: u32,
        n: u32,
        delay_ms: u64,
    },
    Stop,
}

/// The producing child: obeys orders on `ctl`, puts into `q`.
fn queue_producer((ctl, q): (Connection, Queue<u32>)) {
    loop {
        match ctl.recv::<Put>().unwrap() {
            Put::Now { from, n } => {
                for i in from..from + n {
                    q.put(i).unwrap();
                }
                ctl.send(&"put").unwrap();
            }
            Put::Later { from, n, delay_ms } => {
                std::thread::sleep(Duration::from_millis(delay_ms));
                for i in from..from + n {
                    q.put(i).unwrap();
                }
            }
            Put::Stop => return,
        }
    }
}

/// Takes what is waiting, as a poller does after a wake-up (`try_get` until `Empty`).
fn take_waiting(q: &Queue<u32>, out: &mut Vec<u32>) {
    loop {
        match q.try_get() {
            Ok(v) => out.push(v),
            Err(TryGetError::Empty) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// One poller (this process) on a queue's fd with `how`; the producer is a child started
/// with `m` (for Spawn the queue travels to it as fds).
fn queue_readiness(m: StartMethod, how: &str) {
    let q: Queue<u32> = Queue::new().unwrap();
    let (ctl, ctl_child) = pipe(true).unwrap();
    let fd = q.as_raw_fd(); // armed before anything flows
    let p = start_with(
        m,
        Process::builder(),
        queue_producer,
        (ctl_child, q.clone()),
    );
    let w = Watch::new(q.as_fd(), how);
    let (ready, quiet) = (|t| w.ready(t), |what: &str| w.quiet(what));
    quiet("before any message");
    let mut from = 0;
    for n in [1, 2, 500] {
        // Put before the poll starts (the child reports), then during it.
        ctl.send(&Put::Now { from, n }).unwrap();
        ctl.poll_timeout(T).unwrap();
        assert_eq!(ctl.recv::<String>().unwrap(), "put");
        assert!(ready(T), "{how}: {n} put before the poll: not readable");
        if how == "poll" {
            assert!(poll_in(fd, Duration::ZERO), "level-triggered");
        }
        let mut got = Vec::new();
        take_waiting(&q, &mut got);
        assert_eq!(got, (from..from + n).collect::<Vec<_>>());
        quiet("after the last message was taken");
        from += n;

        ctl.send(&Put::Later {
            from,
            n,
            delay_ms: 30,
        })
        .unwrap();
        let mut got = Vec::new();
        while got.len() < n as usize {
            assert!(ready(T), "{how}: {} of {n}, put during the poll", got.len());
            take_waiting(&q, &mut got);
        }
        assert_eq!(got, (from..from + n).collect::<Vec<_>>());
        // A producer may write the eventfd just after we took its message (its commit is
        // visible first): one spurious wake-up is allowed; the get that finds nothing
        // settles it.
        if ready(QUIET) {
            assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
        }
        quiet("after the messages put during the poll were taken");
        from += n;
    }
    // Blocking gets that take everything leave it readable (no system call for them); the
    // get that finds the queue empty settles it.
    ctl.send(&Put::Now { from, n: 3 }).unwrap();
    ctl.poll_timeout(T).unwrap();
    assert_eq!(ctl.recv::<String>().unwrap(), "put");
    assert!(ready(T));
    for i in from..from + 3 {
        assert_eq!(q.get().unwrap(), i);
    }
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    quiet("after blocking gets took everything and a try_get found it empty");
    ctl.send(&Put::Stop).unwrap();
    p.join().unwrap();
    // Closing makes it readable for good, and a get says so.
    q.close();
    assert!(ready(T), "{how}: closed");
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(poll_in(fd, Duration::ZERO), "{how}: closed, after a get");
}

both_methods! {
    fn queue_fd_with_raw_poll(m) {
        with_watchdog(LIMIT, move || queue_readiness(m, "poll"));
    }
}

both_methods! {
    fn queue_fd_with_epoll(m) {
        with_watchdog(LIMIT, move || {
            queue_readiness(m, "epoll");
            queue_readiness(m, "epoll-et");
        });
    }
}

#[test]
fn simple_and_joinable_queues_have_the_same_fd() {
    with_watchdog(LIMIT, || {
        let s: SimpleQueue<u8> = SimpleQueue::new().unwrap();
        let fd = s.as_raw_fd();
        assert_quiet(fd, "empty SimpleQueue");
        s.put(1).unwrap();
        assert!(poll_in(fd, T));
        assert_eq!(s.try_get().unwrap(), 1);
        assert!(s.try_get().is_err());
        assert_quiet(fd, "drained SimpleQueue");
        let j: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        let fd = j.as_fd().as_raw_fd();
        j.put(2).unwrap();
        assert!(poll_in(fd, T));
        assert_eq!(j.get().unwrap(), 2);
        j.task_done().unwrap();
        assert!(j.try_get().is_err());
        assert_quiet(fd, "drained JoinableQueue");
    });
}

#[test]
fn messages_waiting_before_the_fd_is_asked_for_are_announced() {
    with_watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let p = Process::fork({
            let q = q.clone();
            move || q.put_many((0..5).collect()).unwrap()
        })
        .unwrap();
        p.join().unwrap();
        let fd = q.as_raw_fd();
        assert!(poll_in(fd, T), "put before arming");
        let mut got = Vec::new();
        take_waiting(&q, &mut got);
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_quiet(fd, "drained");
        // A timed get that runs out on an empty queue leaves it quiet too.
        assert!(q.get_timeout(Duration::from_millis(1)).is_err());
        assert_quiet(fd, "after a timed-out get");
    });
}

/// A producer that puts `from..from + n` once `go` says so, then reports.
fn many_producer((go, q, from, n): (Connection, Queue<u32>, u32, u32)) {
    assert_eq!(go.recv::<String>().unwrap(), "go");
    for i in from..from + n {
        q.put(i).unwrap();
        if i % 64 == 0 {
            std::thread::yield_now();
        }
    }
}

/// Two consumers poll the same queue (one is a child armed there); four producers put at
/// once. Every message is taken exactly once, each poller is woken while any waits, and
/// the fd is quiet at the end.
fn many_producers_and_consumers(m: StartMethod) {
    const N: u32 = 2000;
    let q: Queue<u32> = Queue::new().unwrap();
    let fd = q.as_raw_fd();
    let (res, res_child) = pipe(true).unwrap();
    let (stop, stop_child) = pipe(true).unwrap();
    // The child consumer polls until told to stop, then reports what it took.
    let consumer = start_with(
        m,
        Process::builder(),
        child_consumer,
        (res_child, stop_child, q.clone()),
    );
    assert_eq!(res.recv::<String>().unwrap(), "armed");
    let mut gos = Vec::new();
    let mut producers = Vec::new();
    for k in 0..4 {
        let (go, go_child) = pipe(true).unwrap();
        producers.push(start_with(
            m,
            Process::builder(),
            many_producer,
            (go_child, q.clone(), k * N, N),
        ));
        gos.push(go);
    }
    for g in &gos {
        g.send(&"go").unwrap();
    }
    let mut mine = Vec::new();
    let t0 = Instant::now();
    while producers.iter().any(|p| p.is_alive()) || !q.is_empty() {
        assert!(t0.elapsed() < LIMIT, "producers did not finish");
        if poll_in(fd, Duration::from_millis(50)) {
            take_waiting(&q, &mut mine);
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    take_waiting(&q, &mut mine);
    stop.send(&"stop").unwrap();
    let theirs: Vec<u32> = consumer.join().unwrap();
    let mut all: Vec<u32> = mine.iter().chain(&theirs).copied().collect();
    all.sort();
    assert_eq!(
        all,
        (0..4 * N).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert_quiet(fd, "after everything was taken");
}

/// A consumer that arms the queue's fd in its own process and polls it until `stop` says
/// so; returns what it took.
fn child_consumer((res, stop, q): (Connection, Connection, Queue<u32>)) -> Vec<u32> {
    let fd = q.as_raw_fd();
    res.send(&"armed").unwrap();
    let mut got = Vec::new();
    let sfd = stop.as_raw_fd();
    loop {
        if poll_in(fd, Duration::from_millis(20)) {
            take_waiting(&q, &mut got);
        }
        if poll_in(sfd, Duration::ZERO) {
            take_waiting(&q, &mut got);
            return got;
        }
    }
}

both_methods! {
    fn queue_fd_with_many_producers_and_consumers(m) {
        with_watchdog(LIMIT, move || many_producers_and_consumers(m));
    }
}

/// A consumer that takes one message with a blocking get, reports, and waits to be killed;
/// or (`looping`) keeps taking until killed.
fn queue_consumer_to_kill((ctl, q, looping): (Connection, Queue<u32>, bool)) {
    let v = q.get().unwrap();
    ctl.send(&v).unwrap();
    if looping {
        loop {
            let _ = q.get_timeout(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_queue_consumer_leaves_waiting_messages_announced() {
    with_watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let fd = q.as_raw_fd();
        let (ctl, ctl_child) = pipe(true).unwrap();
        let p = start_with(
            StartMethod::Fork,
            Process::builder(),
            queue_consumer_to_kill,
            (ctl_child, q.clone(), false),
        );
        q.put_many(vec![0, 1, 2]).unwrap();
        ctl.poll_timeout(T).unwrap();
        assert_eq!(ctl.recv::<u32>().unwrap(), 0);
        p.kill().unwrap();
        let _ = p.join();
        assert!(poll_in(fd, T), "messages left by a killed consumer");
        let mut got = Vec::new();
        take_waiting(&q, &mut got);
        assert_eq!(got, [1, 2]);
        assert_quiet(fd, "after a killed consumer");
    });
}

#[test]
fn consumers_killed_mid_stream_never_silence_the_fd() {
    with_watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let fd = q.as_raw_fd();
        let mut landed = 0;
        for round in 0..20u32 {
            // A consumer taking (and settling) in a loop, killed while it runs, while this
            // process puts: wherever the kill lands, the next put must make the fd readable.
            let (ctl, ctl_child) = pipe(true).unwrap();
            let p = start_with(
                StartMethod::Fork,
                Process::builder(),
                queue_consumer_to_kill,
                (ctl_child, q.clone(), true),
            );
            q.put(u32::MAX).unwrap();
            ctl.poll_timeout(T).unwrap();
            assert_eq!(ctl.recv::<u32>().unwrap(), u32::MAX);
            for i in 0..(round * 37) % 200 {
                q.put(i).unwrap();
            }
            p.kill().unwrap();
            let _ = p.join();
            let mut left = Vec::new();
            take_waiting(&q, &mut left);
            if !left.is_empty() && left.len() < ((round * 37) % 200) as usize {
                landed += 1; // killed while taking the stream
            }
            let _ = poll_in(fd, Duration::ZERO); // whatever a stale write says
            let _ = q.try_get(); // settles
            q.put(round).unwrap();
            assert!(
                poll_in(fd, T),
                "round {round}: fd silent after a killed consumer"
            );
            assert_eq!(q.try_get().unwrap(), round);
            assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
            assert_quiet(fd, "after the round");
        }
        eprintln!("kills that landed mid-stream: {landed} of 20");
    });
}

/// A producer that puts forever (reporting after its first put) until killed.
fn queue_producer_to_kill((ctl, q): (Connection, Queue<u32>)) {
    q.put(0).unwrap();
    ctl.send(&"putting").unwrap();
    for i in 1.. {
        q.put(i).unwrap();
        if q.len() > 10_000 {
            std::thread::yield_now();
        }
    }
}

both_methods! {
    fn a_killed_queue_producer_never_silences_the_fd(m) {
        with_watchdog(LIMIT, move || {
            let q: Queue<u32> = Queue::new().unwrap();
            let fd = q.as_raw_fd();
            for round in 0..10u32 {
                let (ctl, ctl_child) = pipe(true).unwrap();
                let p = start_with(m, Process::builder(), queue_producer_to_kill, (ctl_child, q.clone()));
                ctl.poll_timeout(T).unwrap();
                assert_eq!(ctl.recv::<String>().unwrap(), "putting");
                p.kill().unwrap();
                let _ = p.join();
                // What it committed is whole and in order; then the fd must work on.
                let mut got = Vec::new();
                take_waiting(&q, &mut got);
                assert!(!got.is_empty());
                assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>());
                q.put(round).unwrap();
                assert!(poll_in(fd, T), "round {round}: fd silent after a killed producer");
                assert_eq!(q.try_get().unwrap(), round);
                assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
                assert_quiet(fd, "after a killed producer");
            }
        });
    }
}

#[test]
fn unarmed_queues_open_one_fd_and_arming_none() {
    with_watchdog(LIMIT, || {
        let before = open_fds();
        let q: Queue<u8> = Queue::new().unwrap();
        let with_queue = open_fds();
        // The segment and the eventfd.
        assert_eq!(
            with_queue.len(),
            before.len() + 2,
            "{before:?} {with_queue:?}"
        );
        let _ = q.as_raw_fd();
        q.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(open_fds(), with_queue);
    });
}
