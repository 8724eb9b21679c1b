//! The remote backend (`--features remote`) against a real `redis-server` that each test
//! starts itself, on a unix socket (or a loopback port) in a temporary directory, and kills
//! by its pid afterwards. Children are forked processes; faults are injected with SIGKILL
//! and SIGSTOP (consumers, lock holders, the server itself). Every test runs under a
//! watchdog; timings are asserted as lower bounds, and upper bounds only where the point is
//! "no hang" (and then generously).
//!
//! Without `redis-server` on PATH the tests print `SKIPPED` and pass, unless
//! `MULTIPROC_REQUIRE_REDIS=1` (set by `scripts/test-remote.sh`, which installs it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::api;
use multiproc::queue::{GetError, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use multiproc::remote;
use multiproc::{ErrorKind, Process};

// ---- the server fixture ---------------------------------------------------------------------

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    port: Option<u16>,
    aof: bool,
    /// The network namespace it runs in (listening on every address there).
    netns: Option<String>,
}

impl Server {
    /// A server on a unix socket, no persistence; `None` (and a SKIPPED line) when
    /// redis-server is missing and not required.
    fn start() -> Option<Server> {
        Server::start_with(false, false)
    }

    fn start_with(tcp: bool, aof: bool) -> Option<Server> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os("MULTIPROC_REQUIRE_REDIS").is_some() {
                panic!("redis-server is not on PATH and MULTIPROC_REQUIRE_REDIS is set");
            }
            eprintln!("SKIPPED: redis-server not on PATH");
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "multiproc-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = tcp.then(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let mut s = Server {
            child: None,
            dir,
            port,
            aof,
            netns: None,
        };
        s.launch();
        Some(s)
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn launch(&mut self) {
        let port = self.port.unwrap_or(0).to_string();
        let aof = if self.aof { "yes" } else { "no" };
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-server"]);
                c.args(["--bind", "0.0.0.0", "--protected-mode", "no"]);
                c
            }
            None => {
                let mut c = Command::new("redis-server");
                c.args(["--bind", "127.0.0.1"]);
                c
            }
        };
        cmd.args(["--port", &port, "--unixsocket"])
            .arg(self.sock())
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", aof])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("start redis-server"));
        let t0 = Instant::now();
        while !self.ping() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.sock()) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut b = [0u8; 7];
        s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n"
    }

    /// The unix-socket URL.
    fn url(&self) -> String {
        format!("unix://{}", self.sock().display())
    }

    /// The TCP URL (servers started with `tcp`).
    fn tcp_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port.expect("a TCP server"))
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same socket, port and directory (and AOF file).
    fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.sock());
        self.launch();
    }

    /// A raw command through the `redis` client, for setting up faults.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // SIGCONT first, in case a test stopped it and failed.
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            }
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The integration tests' helpers (`with_watchdog` and the rest), shared rather than copied.
#[path = "it/util.rs"]
#[macro_use]
#[allow(unused_macros)]
mod util;
use util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(60);

fn stop(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

// ---- Queue: the four forms, bounded, close ----------------------------------------------

#[test]
fn queue_four_forms_and_bounds() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let q: remote::Queue<String> = remote::Queue::open_bounded(&url, "q4", 2).unwrap();
        assert_eq!(q.maxsize(), Some(2));
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
        q.put("a".into()).unwrap();
        q.try_put("b".into()).unwrap();
        assert_eq!(q.len().unwrap(), 2);
        assert!(q.is_full().unwrap());
        // Full hands the item back; a timed put waits at least its timeout.
        assert!(matches!(q.try_put("c".into()), Err(TryPutError::Full(s)) if s == "c"));
        let t0 = Instant::now();
        let e = q
            .put_timeout("c".into(), Duration::from_millis(300))
            .unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(matches!(e, PutTimeoutError::Timeout(ref s) if s == "c"));
        let e = q
            .put_deadline("c".into(), Instant::now() + Duration::from_millis(50))
            .unwrap_err();
        assert!(e.is_timeout());
        // A blocked put wakes after a get elsewhere.
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put("c".into()));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(q.get().unwrap(), "a");
        t.join().unwrap().unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "b");
        assert_eq!(
            q.get_deadline(Instant::now() + Duration::from_secs(5))
                .unwrap(),
            "c"
        );
        // An empty timed get waits at least its timeout.
        let t0 = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(300)),
            Err(GetTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        // Opening with another maxsize is refused; open() adopts the existing one.
        let e = remote::Queue::<String>::open_bounded(&url, "q4", 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            remote::Queue::<String>::open(&url, "q4").unwrap().maxsize(),
            Some(2)
        );
        // Bad names and URLs.
        assert_eq!(
            remote::Queue::<u8>::open(&url, "a{b}").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            remote::Queue::<u8>::open("nonsense://x", "q")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    });
}

#[test]
fn batches() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    let mut raw = srv.raw();
    with_watchdog(LIMIT, move || {
        // Bounded: as many as fit, the rest handed back.
        let q: remote::Queue<u32> = remote::Queue::open_bounded(&url, "batch", 3).unwrap();
        match q.try_put_many(vec![1, 2, 3, 4, 5]) {
            Err(TryPutError::Full(rest)) => assert_eq!(rest, vec![4, 5]),
            other => panic!("{other:?}"),
        }
        let t0 = Instant::now();
        match q.put_many_timeout(vec![4, 5], Duration::from_millis(200)) {
            Err(PutTimeoutError::Timeout(rest)) => assert_eq!(rest, vec![4, 5]),
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() >= Duration::from_millis(200));
        // A blocked put_many finishes as a consumer makes room.
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put_many(vec![4, 5, 6, 7]));
        let mut got = Vec::new();
        while got.len() < 7 {
            got.extend(q.get_many_timeout(2, Duration::from_secs(10)).unwrap());
        }
        t.join().unwrap().unwrap();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(matches!(q.try_get_many(5), Err(TryGetError::Empty)));
        q.put_many(vec![8, 9]).unwrap();
        q.close().unwrap();
        assert_eq!(q.get_many(10).unwrap(), vec![8, 9]);
        assert!(matches!(q.get_many(10), Err(GetError::Closed)));

        // Unbounded and large: several scripts of at most 1,000.
        let big: remote::Queue<u32> = remote::Queue::open(&url, "batch-big").unwrap();
        big.put_many((0..2500).collect()).unwrap();
        assert_eq!(big.len().unwrap(), 2500);
        let mut all = Vec::new();
        while let Ok(b) = big.try_get_many(700) {
            assert!(b.len() <= 700);
            all.extend(b);
        }
        assert_eq!(all, (0..2500).collect::<Vec<_>>());

        // Joinable: each item of a batch is held and acknowledged once.
        let j: remote::JoinableQueue<u32> = remote::JoinableQueue::open(&url, "batch-j").unwrap();
        j.put_many(vec![1, 2, 3]).unwrap();
        assert_eq!(j.unfinished_tasks().unwrap(), 3);
        assert_eq!(
            j.get_many_deadline(10, Instant::now() + Duration::from_secs(5))
                .unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(j.held(), 3);
        for _ in 0..3 {
            j.task_done().unwrap();
        }
        j.join_timeout(Duration::from_secs(5)).unwrap();

        // A message that does not decode ends a batch; it comes first next time.
        q.unlink().unwrap();
        let q: remote::Queue<u32> = remote::Queue::open(&url, "batch").unwrap();
        q.put(1).unwrap();
        redis::cmd("RPUSH")
            .arg("{mpq:batch}:items")
            .arg(b"junk".as_slice())
            .exec(&mut raw)
            .unwrap();
        q.put(3).unwrap();
        assert_eq!(q.get_many(10).unwrap(), vec![1]);
        match q.get_many(10) {
            Err(GetError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.get_many(10).unwrap(), vec![3]);
    });
}

#[test]
fn close_ends_the_stream_for_every_consumer() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let q: remote::Queue<u32> = remote::Queue::open(&url, "closing").unwrap();
        // Four consumer processes, blocked before anything is put.
        let consumers: Vec<Process<(u32, bool)>> = (0..4)
            .map(|_| {
                let q = q.clone();
                Process::fork(move || {
                    let mut n = 0;
                    loop {
                        match q.get() {
                            Ok(_) => n += 1,
                            Err(GetError::Closed) => return (n, true),
                            Err(GetError::Failed(e)) => panic!("{e}"),
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..100 {
            q.put(i).unwrap();
        }
        q.close().unwrap();
        assert!(q.is_closed().unwrap());
        assert!(matches!(
            q.put(7),
            Err(multiproc::queue::PutError::Closed(7))
        ));
        let mut total = 0;
        for c in consumers {
            let (n, closed) = c.join().unwrap();
            assert!(closed);
            total += n;
        }
        assert_eq!(total, 100, "every item delivered once");
        assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
        assert_eq!(q.len().unwrap(), 0, "the close marker is not counted");
    });
}

#[test]
fn tcp_url_and_bad_data() {
    let Some(srv) = Server::start_with(true, false) else {
        return;
    };
    let url = srv.tcp_url();
    let mut raw = srv.raw();
    with_watchdog(LIMIT, move || {
        let q: remote::Queue<(u8, String)> = remote::Queue::open(&url, "tcp").unwrap();
        q.put((1, "one".into())).unwrap();
        assert_eq!(q.get().unwrap(), (1, "one".into()));
        // Something else in the list: a clear error, and the queue goes on.
        redis::cmd("RPUSH")
            .arg("{mpq:tcp}:items")
            .arg(b"garbage".as_slice())
            .exec(&mut raw)
            .unwrap();
        q.put((2, "two".into())).unwrap();
        match q.get() {
            Err(GetError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec, "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.get().unwrap(), (2, "two".into()));
        // A queue name used by another kind of object.
        let e = remote::JoinableQueue::<u8>::open(&url, "tcp").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle);
        // A key of the wrong type: the server's error, not a panic.
        redis::cmd("SET")
            .arg("{mpq:wrong}:items")
            .arg("x")
            .exec(&mut raw)
            .unwrap();
        let w: remote::Queue<u8> = remote::Queue::open(&url, "wrong").unwrap();
        match w.put(1) {
            Err(multiproc::queue::PutError::Failed(1, e)) => {
                assert_eq!(e.kind(), ErrorKind::Remote, "{e}")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_connected_handle_works_in_a_forked_child_and_in_the_parent() {
    // The child inherits the parent's socket: it must connect anew, never speak on it.
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let q: remote::Queue<u32> = remote::Queue::open(&url, "forked").unwrap();
        let j: remote::JoinableQueue<u32> = remote::JoinableQueue::open(&url, "forked-j").unwrap();
        q.put(0).unwrap();
        j.put(0).unwrap();
        assert_eq!(j.get().unwrap(), 0); // connected, registered as a consumer, holding one
                                         // Shared, not cloned: the child gets the very handles, connections included.
        let (q, j) = (std::sync::Arc::new(q), std::sync::Arc::new(j));
        let child = Process::fork({
            let (q, j) = (q.clone(), j.clone());
            move || {
                let mut sum = 0;
                for i in 1..=100 {
                    q.put(i).unwrap();
                    j.put(i).unwrap();
                }
                for _ in 0..50 {
                    sum += j.get().unwrap();
                    j.task_done().unwrap();
                }
                assert_eq!(j.held(), 0, "the parent's held item is not the child's");
                sum
            }
        })
        .unwrap();
        for _ in 0..100 {
            q.len().unwrap(); // the parent's connection, busy at the same time
        }
        let child_sum = child.join().unwrap();
        j.task_done().unwrap(); // the parent's item, still its own
        let mut rest = 0;
        while let Ok(n) = j.try_get() {
            rest += n;
            j.task_done().unwrap();
        }
        assert_eq!(child_sum + rest, 5050);
        j.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(q.len().unwrap(), 101);
    });
}

// ---- one generic function, both backends ------------------------------------------------

/// A producer and two consumer processes over any queue: returns the sorted items received.
fn pipeline<Q>(q: Q) -> Vec<u64>
where
    Q: api::Queue<u64> + Clone + Send + 'static,
{
    let consumers: Vec<Process<Vec<u64>>> = (0..2)
        .map(|_| {
            let q = q.clone();
            Process::fork(move || {
                let mut got = Vec::new();
                loop {
                    match api::Queue::get(&q) {
                        Ok(n) => got.push(n),
                        Err(GetError::Closed) => return got,
                        Err(GetError::Failed(e)) => panic!("{e}"),
                    }
                }
            })
            .unwrap()
        })
        .collect();
    for n in 0..200 {
        api::Queue::put(&q, n).unwrap();
    }
    api::Queue::close(&q).unwrap();
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    all
}

/// put, get and task_done through the trait, then join.
fn joinable_round<Q: api::JoinableQueue<String>>(q: &Q) {
    for i in 0..5 {
        q.put(format!("job {i}")).unwrap();
    }
    assert!(q.try_join().unwrap_err().is_would_block());
    for i in 0..5 {
        assert_eq!(q.get().unwrap(), format!("job {i}"));
        q.task_done().unwrap();
    }
    assert_eq!(
        q.task_done().unwrap_err().kind(),
        ErrorKind::InvalidState,
        "more task_done than items taken"
    );
    q.join_timeout(Duration::from_secs(5)).unwrap();
    assert!(q.is_empty().unwrap());
}

/// Mutual exclusion and the four forms through the trait.
fn lock_round<L: api::Lock>(l: &L) {
    let g = l.lock().unwrap_or_else(|e| panic!("{e}"));
    assert!(l.is_locked().unwrap());
    assert!(matches!(l.try_lock(), Err(e) if e.is_would_block()));
    let t0 = Instant::now();
    assert!(matches!(l.lock_timeout(Duration::from_millis(200)), Err(e) if e.is_timeout()));
    assert!(t0.elapsed() >= Duration::from_millis(200));
    drop(g);
    drop(
        l.lock_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap(),
    );
}

fn event_round<E: api::Event>(e: &E) {
    assert!(!e.is_set().unwrap());
    assert!(e.try_wait().unwrap_err().is_would_block());
    assert!(e
        .wait_timeout(Duration::from_millis(100))
        .unwrap_err()
        .is_timeout());
    e.set().unwrap();
    e.wait().unwrap();
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());
}

fn semaphore_round<S: api::Semaphore>(s: &S) {
    let a = s.acquire().unwrap();
    let b = s.try_acquire().unwrap();
    assert_eq!(s.value().unwrap(), 0);
    assert!(matches!(s.acquire_timeout(Duration::from_millis(100)), Err(e) if e.is_timeout()));
    drop(a);
    let c = s
        .acquire_deadline(Instant::now() + Duration::from_secs(5))
        .unwrap();
    drop((b, c));
    assert_eq!(s.value().unwrap(), 2);
}

#[test]
fn the_same_generic_code_runs_on_local_and_remote() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let expected: Vec<u64> = (0..200).collect();
        assert_eq!(pipeline(multiproc::Queue::<u64>::new().unwrap()), expected);
        assert_eq!(
            pipeline(remote::Queue::<u64>::open(&url, "generic").unwrap()),
            expected
        );

        joinable_round(&multiproc::JoinableQueue::new().unwrap());
        joinable_round(&remote::JoinableQueue::<String>::open(&url, "generic-j").unwrap());

        lock_round(&multiproc::Lock::new().unwrap());
        lock_round(&remote::Lock::open(&url, "generic-l").unwrap());

        event_round(&multiproc::Event::new().unwrap());
        event_round(&remote::Event::open(&url, "generic-e").unwrap());

        semaphore_round(&multiproc::Semaphore::new(2).unwrap());
        semaphore_round(&remote::Semaphore::open(&url, "generic-s", 2).unwrap());
    });
}

// ---- JoinableQueue: at-least-once across consumer faults ---------------------------------

#[test]
fn killed_consumer_items_come_back_exactly_once() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let q: remote::JoinableQueue<u32> = remote::JoinableQueue::open(&url, "jobs")
            .unwrap()
            .with_lease(lease);
        for i in 0..10 {
            q.put(i).unwrap();
        }
        let got = remote::Event::open(&url, "jobs-taken").unwrap();
        // A consumer takes three items, acknowledges one, and hangs holding two.
        let victim = {
            let (q, got) = (q.clone(), got.clone());
            Process::fork(move || {
                let taken: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
                q.task_done().unwrap();
                got.set().unwrap();
                std::thread::sleep(Duration::from_secs(3600));
                taken
            })
            .unwrap()
        };
        got.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(q.unfinished_tasks().unwrap(), 9);
        let info = q.info().unwrap();
        let seen = remote::inspect(&url, "jobs").unwrap();
        assert_eq!((seen.ready, seen.unfinished), (info.ready, info.unfinished));
        assert_eq!(remote::inspect(&url, "no-such-queue").unwrap().kind, "");
        assert_eq!(
            (info.kind.as_str(), info.ready, info.unfinished),
            ("joinable", 7, 9)
        );
        let holding: Vec<_> = info.consumers.iter().filter(|c| c.in_flight > 0).collect();
        assert_eq!(holding.len(), 1, "{info:?}");
        assert_eq!(holding[0].in_flight, 2);
        assert!(holding[0].lease_left.is_some());
        // The command-line tool shows the same.
        let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
            .args(["inspect", &url, "jobs"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("jobs (joinable, unbounded, open): 7 ready, 9 unfinished"),
            "{text}"
        );
        assert!(
            text.contains(": alive, lease ") && text.contains(", 2 in flight"),
            "{text}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
            .args(["inspect", &url, "nothing-here"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        victim.kill().unwrap();
        assert!(victim.join().is_err());
        // The two in-flight items (1 and 2) come back at the head, in order, once each.
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let worker = q.clone().with_lease(lease);
        while let Ok(n) = worker.get_timeout(Duration::from_secs(10)) {
            seen.push(n);
            worker.task_done().unwrap();
            if seen.len() == 9 {
                break;
            }
        }
        // Ready items may come first; the two reaped ones return at the head once reaped.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3, 4, 5, 6, 7, 8, 9], "got {seen:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "redelivery took {:?}",
            t0.elapsed()
        );
        q.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(q.unfinished_tasks().unwrap(), 0);
        assert!(
            matches!(worker.try_get(), Err(TryGetError::Empty)),
            "nothing duplicated"
        );
        q.unlink().unwrap();
        assert_eq!(remote::inspect(&url, "jobs").unwrap().kind, "", "all gone");
    });
}

#[test]
fn stopped_consumer_loses_its_lease_and_counts_nothing() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let q: remote::JoinableQueue<String> = remote::JoinableQueue::open(&url, "slow")
            .unwrap()
            .with_lease(lease);
        q.put("only".into()).unwrap();
        let taken = remote::Event::open(&url, "slow-taken").unwrap();
        let resume = remote::Event::open(&url, "slow-resume").unwrap();
        let zombie = {
            let (q, taken, resume) = (q.clone(), taken.clone(), resume.clone());
            Process::fork(move || {
                assert_eq!(q.get().unwrap(), "only");
                taken.set().unwrap();
                resume.wait().unwrap();
                q.task_done().map_err(|e| format!("{:?}", e.kind()))
            })
            .unwrap()
        };
        taken.wait_timeout(Duration::from_secs(20)).unwrap();
        stop(zombie.pid(), rustix::process::Signal::STOP);
        // Another consumer gets the same item after the lease, and finishes it.
        let other = q.clone().with_lease(lease);
        let t0 = Instant::now();
        assert_eq!(other.get_timeout(Duration::from_secs(20)).unwrap(), "only");
        assert!(t0.elapsed() >= Duration::from_millis(200));
        other.task_done().unwrap();
        q.join_timeout(Duration::from_secs(5)).unwrap();
        // The zombie wakes up: its task_done is refused and counts nothing.
        stop(zombie.pid(), rustix::process::Signal::CONT);
        resume.set().unwrap();
        assert_eq!(zombie.join().unwrap(), Err("LeaseLost".to_string()));
        assert_eq!(q.unfinished_tasks().unwrap(), 0);
        assert!(q.try_join().is_ok());
    });
}

#[test]
fn dropped_consumer_gives_its_items_back() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let q: remote::JoinableQueue<u8> = remote::JoinableQueue::open(&url, "drop").unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let c = q.clone();
        assert_eq!(c.get().unwrap(), 1);
        assert_eq!(c.held(), 1);
        drop(c); // without task_done: the item goes back at once, no lease to wait for
        assert_eq!(q.try_get().unwrap(), 1);
        assert_eq!(q.try_get().unwrap(), 2);
        q.task_done().unwrap();
        q.task_done().unwrap();
        q.join().unwrap();
    });
}

#[test]
fn an_item_whose_reply_was_lost_goes_back() {
    // A consumer stopped while blocked in `get`: the server moves the item to its in-flight
    // list and sends the reply; at SIGCONT the read fails (EINTR), the connection is dropped
    // and the reply with it. The next `get`, on a new connection, finds the stranded item in
    // its in-flight list, gives it back, and gets it: delivered once, nothing stranded.
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let q: remote::JoinableQueue<u32> = remote::JoinableQueue::open(&url, "lost").unwrap();
        let child = {
            let q = q.clone();
            Process::fork(move || {
                let mut disconnects = 0;
                loop {
                    match q.get_timeout(Duration::from_secs(20)) {
                        Ok(n) => {
                            q.task_done().unwrap();
                            return (n, disconnects);
                        }
                        Err(GetTimeoutError::Failed(e)) if e.kind() == ErrorKind::Disconnected => {
                            disconnects += 1
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
            .unwrap()
        };
        std::thread::sleep(Duration::from_millis(500));
        stop(child.pid(), rustix::process::Signal::STOP);
        std::thread::sleep(Duration::from_millis(100));
        q.put(42).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stop(child.pid(), rustix::process::Signal::CONT);
        let (n, disconnects) = child.join().unwrap();
        eprintln!("lost reply: the consumer saw {disconnects} Disconnected error(s)");
        assert_eq!(n, 42);
        q.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(q.unfinished_tasks().unwrap(), 0);
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    });
}

// ---- Lock: lease, fencing, owner death ---------------------------------------------------

#[test]
fn killed_lock_holder_lease_expires_with_a_larger_fence() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(400);
        let lock = remote::Lock::open(&url, "ledger")
            .unwrap()
            .with_lease(lease);
        let first = lock.lock().unwrap().fence();
        let holding = remote::Event::open(&url, "ledger-held").unwrap();
        let holder = {
            let (lock, holding) = (lock.clone(), holding.clone());
            Process::fork(move || {
                let g = lock.lock().unwrap();
                holding.set().unwrap();
                std::thread::sleep(Duration::from_secs(3600));
                g.fence()
            })
            .unwrap()
        };
        holding.wait_timeout(Duration::from_secs(20)).unwrap();
        // Held well past its lease while the holder lives (its thread renews it).
        std::thread::sleep(lease * 2);
        assert!(matches!(lock.try_lock(), Err(e) if e.is_would_block()));
        holder.kill().unwrap();
        let t0 = Instant::now();
        match lock.lock() {
            Err(api::LockError::OwnerDied(g)) => {
                let g = g.into_inner();
                assert_eq!(g.fence(), first + 2, "fences grow at each acquisition");
                assert!(g.is_held().unwrap());
                g.unlock().unwrap();
            }
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        // After a clean release, no OwnerDied.
        let g = lock.lock().unwrap();
        assert_eq!(g.fence(), first + 3);
    });
}

#[test]
fn a_holder_that_lost_its_lease_cannot_release_anothers_lock() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let lock = remote::Lock::open(&url, "paused")
            .unwrap()
            .with_lease(lease);
        let holding = remote::Event::open(&url, "paused-held").unwrap();
        let resume = remote::Event::open(&url, "paused-resume").unwrap();
        let holder = {
            let (lock, holding, resume) = (lock.clone(), holding.clone(), resume.clone());
            Process::fork(move || {
                let g = lock.lock().unwrap();
                let fence = g.fence();
                holding.set().unwrap();
                resume.wait().unwrap();
                (fence, g.unlock().map_err(|e| format!("{:?}", e.kind())))
            })
            .unwrap()
        };
        holding.wait_timeout(Duration::from_secs(20)).unwrap();
        stop(holder.pid(), rustix::process::Signal::STOP);
        let g = match lock.lock_timeout(Duration::from_secs(20)) {
            Err(api::LockTimeoutError::OwnerDied(g)) => g.into_inner(),
            other => panic!("expected OwnerDied after the lease ran out, got {other:?}"),
        };
        stop(holder.pid(), rustix::process::Signal::CONT);
        resume.set().unwrap();
        let (old_fence, unlocked) = holder.join().unwrap();
        assert_eq!(unlocked, Err("LeaseLost".to_string()));
        assert!(g.fence() > old_fence);
        assert!(
            g.is_held().unwrap(),
            "the stale holder did not release ours"
        );
        assert!(lock.is_locked().unwrap());
        g.unlock().unwrap();
        assert!(!lock.is_locked().unwrap());
    });
}

#[test]
fn killed_semaphore_holder_permit_comes_back() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let sem = remote::Semaphore::open(&url, "slots", 1)
            .unwrap()
            .with_lease(Duration::from_millis(300));
        let holding = remote::Event::open(&url, "slots-held").unwrap();
        let holder = {
            let (sem, holding) = (sem.clone(), holding.clone());
            Process::fork(move || {
                let _p = sem.acquire().unwrap();
                holding.set().unwrap();
                std::thread::sleep(Duration::from_secs(3600));
            })
            .unwrap()
        };
        holding.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(matches!(sem.try_acquire(), Err(e) if e.is_would_block()));
        holder.kill().unwrap();
        let p = sem.acquire_timeout(Duration::from_secs(20)).unwrap();
        p.release().unwrap();
        sem.release().unwrap(); // Python's release(): one more permit
        assert_eq!(sem.value().unwrap(), 2);
        assert_eq!(
            remote::Semaphore::open(&url, "slots", 5)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    });
}

#[test]
fn event_wakes_waiters_in_other_processes() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let e = remote::Event::open(&url, "go").unwrap();
        let waiters: Vec<Process<bool>> = (0..3)
            .map(|_| {
                let e = e.clone();
                Process::fork(move || e.wait_timeout(Duration::from_secs(30)).is_ok()).unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        e.set().unwrap();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    });
}

// ---- the server dies, stops, restarts ----------------------------------------------------

#[test]
fn server_killed_mid_wait_gives_a_clear_error_then_reconnects() {
    let Some(mut srv) = Server::start_with(false, true) else {
        return;
    };
    let url = srv.url();
    let (tx, rx) = mpsc::channel();
    let q: remote::JoinableQueue<u32> = remote::JoinableQueue::open(&url, "durable").unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 1); // in flight across the restart
    let waiter = remote::Queue::<u32>::open(&url, "empty").unwrap();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = waiter.get();
        let _ = tx.send((r.map_err(|e| e.kind()), t0.elapsed(), waiter));
    });
    std::thread::sleep(Duration::from_millis(300));
    srv.kill();
    let (r, _, waiter) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a blocked get noticed the dead server");
    assert_eq!(r, Err(ErrorKind::Disconnected));
    // While it is down: a clear error, not a hang.
    assert_eq!(
        waiter.try_get().map_err(|e| e.kind()),
        Err(ErrorKind::Disconnected)
    );
    srv.restart();
    with_watchdog(LIMIT, move || {
        // The first call on the old connection may find it broken; then it reconnects.
        let len = waiter.len().or_else(|_| waiter.len()).unwrap();
        assert_eq!(len, 0);
        let _ = q.unfinished_tasks();
        // With appendfsync always, the ready item, the in-flight one and the counter survive.
        assert_eq!(q.unfinished_tasks().unwrap(), 2);
        q.task_done().unwrap();
        assert_eq!(q.get().unwrap(), 2);
        q.task_done().unwrap();
        q.join_timeout(Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn stopped_server_is_noticed_by_a_blocked_call() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    let q: remote::Queue<u32> = remote::Queue::open(&url, "halfopen").unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    // A server that stops answering (as over a half-open TCP connection).
    srv.signal(rustix::process::Signal::STOP);
    let t0 = Instant::now();
    let r = with_watchdog(LIMIT, move || {
        q.get_timeout(Duration::from_secs(60)).map_err(|e| e.kind())
    });
    assert_eq!(r, Err(ErrorKind::Disconnected));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "noticed after {:?}",
        t0.elapsed()
    );
    srv.signal(rustix::process::Signal::CONT);
}

// ---- Pool: tasks by name, at-least-once across worker faults, each result once -----------

const SQUARE: remote::Task<u64, u64> = remote::Task::new("square");
const BOOM: remote::Task<u64, u64> = remote::Task::new("boom");
const UNKNOWN: remote::Task<u64, u64> = remote::Task::new("not-registered");
const NAP: remote::Task<u64, u64> = remote::Task::new("nap");

/// Set in a victim worker's process only (after its fork): (url, pool name, the item it
/// hangs on). The victim signals `<pool>-hang` when it holds that item, then waits for
/// `<pool>-release`.
static VICTIM: std::sync::OnceLock<(String, String, u64)> = std::sync::OnceLock::new();

fn square(x: u64) -> u64 {
    if let Some((url, pool, on)) = VICTIM.get() {
        if x == *on {
            let hang = remote::Event::open(url, &format!("{pool}-hang")).unwrap();
            let release = remote::Event::open(url, &format!("{pool}-release")).unwrap();
            hang.set().unwrap();
            release.wait_timeout(Duration::from_secs(120)).unwrap();
        }
    }
    x * x
}

/// `square`, taking 20 ms: calls stay in flight long enough for faults to meet them.
fn nap(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    square(x)
}

fn boom(x: u64) -> u64 {
    assert!(x != 3, "boom at {x}");
    x
}

/// A forked worker of `pool`; a victim hangs on item `hang_on`.
fn pool_worker(url: &str, pool: &str, lease: Duration, hang_on: Option<u64>) -> Process<u64> {
    pool_worker_in(None, url, pool, lease, hang_on)
}

/// `pool_worker`, in the network namespace `netns` if given.
fn pool_worker_in(
    netns: Option<&str>,
    url: &str,
    pool: &str,
    lease: Duration,
    hang_on: Option<u64>,
) -> Process<u64> {
    let (url, pool) = (url.to_string(), pool.to_string());
    let netns = netns.map(str::to_string);
    Process::fork(move || {
        if let Some(ns) = &netns {
            enter_netns(ns);
        }
        if let Some(on) = hang_on {
            VICTIM.set((url.clone(), pool.clone(), on)).unwrap();
        }
        remote::Worker::new(&url, &pool)
            .unwrap()
            .with_lease(lease)
            .register(SQUARE, square)
            .register(BOOM, boom)
            .register(NAP, nap)
            .run()
            .unwrap()
    })
    .unwrap()
}

fn inspect_text(url: &str, name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["inspect", url, name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pool_map_apply_imap_and_errors() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let pool = remote::Pool::open(&url, "maths").unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| pool_worker(&url, "maths", Duration::from_secs(5), None))
            .collect();
        let want: Vec<u64> = (0..50u64).map(|x| x * x).collect();
        assert_eq!(pool.map(SQUARE, 0..50u64).unwrap(), want);
        assert_eq!(
            pool.map(SQUARE, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(pool.apply(SQUARE, 9).unwrap(), 81);
        let r = pool.apply_async(SQUARE, 12).unwrap();
        assert_eq!(r.get_timeout(Duration::from_secs(20)).unwrap(), 144);
        assert_eq!(r.get().unwrap(), 144, "get again");
        assert!(r.ready().unwrap());
        let ordered: Vec<u64> = pool
            .imap(SQUARE, 0..20u64)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(ordered, want[..20]);
        let mut any: Vec<u64> = pool
            .imap_unordered(SQUARE, 0..20u64)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        any.sort();
        assert_eq!(any, want[..20]);
        // A panic in a task is that call's error, with its message; the others succeed.
        let e = pool.map(BOOM, 0..6u64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildPanicked, "{e}");
        assert!(e.to_string().contains("boom at 3"), "{e}");
        let each: Vec<_> = pool.imap(BOOM, 0..6u64).unwrap().collect();
        assert_eq!(each.len(), 6);
        assert!(each[3].is_err() && each.iter().filter(|r| r.is_ok()).count() == 5);
        let e = pool.apply(UNKNOWN, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        // A result not there yet: WouldBlock and Timeout, then it comes.
        let w = pool.workers().unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|c| c.lease_left.is_some()
            && c.worker
                .as_deref()
                .is_some_and(|d| d.contains("tasks boom,nap,square"))));
        let text = inspect_text(&url, "maths");
        assert_eq!(text.matches("  worker ").count(), 2, "{text}");
        assert!(
            text.contains("tasks boom,nap,square): alive, lease"),
            "{text}"
        );
        // Closing ends the workers' runs once the queue is drained; new calls are refused.
        pool.close().unwrap();
        let e = pool.apply_async(SQUARE, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        let mut ran = 0;
        for w in workers {
            ran += util::join_within(&w, Duration::from_secs(20)).expect("worker ends");
        }
        assert_eq!(ran, 50 + 1 + 1 + 20 + 20 + 6 + 6 + 1);
        assert!(
            pool.workers().unwrap().is_empty(),
            "clean exits leave no record"
        );
        let info = pool.info().unwrap();
        assert_eq!((info.ready, info.unfinished), (0, 0));
    });
}

/// Counts the entries of every replies stream of `pool` (one per published result).
fn published(srv: &Server, pool: &str) -> Vec<usize> {
    let mut c = srv.raw();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{mpq:{pool}}}:replies:*"))
        .query(&mut c)
        .unwrap();
    keys.iter()
        .map(|k| redis::cmd("XLEN").arg(k).query(&mut c).unwrap())
        .collect()
}

#[test]
fn pool_worker_killed_mid_task_its_call_runs_again_each_result_once() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let pool = remote::Pool::open(&url, "crash").unwrap();
        let hang = remote::Event::open(&url, "crash-hang").unwrap();
        let victim = pool_worker(&url, "crash", lease, Some(7));
        let r = pool.map_async(SQUARE, 0..20u64).unwrap();
        // The victim ran 0..=6 and holds 7.
        hang.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(matches!(
            r.try_get(),
            Err(multiproc::pool::TryGetError::WouldBlock)
        ));
        let w = pool.workers().unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].in_flight, 1);
        let pid = victim.pid();
        assert!(w[0]
            .worker
            .as_deref()
            .unwrap()
            .contains(&format!("pid {pid} ")));
        let text = inspect_text(&url, "crash");
        assert!(
            text.contains(&format!("pid {pid} tasks boom,nap,square): alive, lease"))
                && text.contains(", 1 in flight"),
            "{text}"
        );
        assert_eq!(published(&srv, "crash"), vec![7], "0..=6 published");
        victim.kill().unwrap();
        assert!(victim.join().is_err());
        // Another worker gets 7 back once the lease ran out, and the rest.
        let healthy = pool_worker(&url, "crash", lease, None);
        let t0 = Instant::now();
        let got = r.get_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(got, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert_eq!(published(&srv, "crash"), vec![20], "each result once");
        util::until("the dead worker is reaped", || {
            pool.workers().unwrap().len() == 1
        });
        pool.close().unwrap();
        assert_eq!(
            util::join_within(&healthy, Duration::from_secs(20)).expect("worker ends"),
            13
        );
        assert_eq!(pool.info().unwrap().unfinished, 0);
        drop(r);
        assert!(
            published(&srv, "crash").is_empty(),
            "the results are deleted"
        );
    });
}

#[test]
fn pool_worker_stopped_past_its_lease_finishes_late_and_is_refused() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let pool = remote::Pool::open(&url, "slow").unwrap();
        let hang = remote::Event::open(&url, "slow-hang").unwrap();
        let release = remote::Event::open(&url, "slow-release").unwrap();
        let victim = pool_worker(&url, "slow", lease, Some(3));
        let mut it = pool.imap_unordered(SQUARE, 0..10u64).unwrap();
        hang.wait_timeout(Duration::from_secs(20)).unwrap();
        stop(victim.pid(), rustix::process::Signal::STOP);
        // Past its lease, another worker runs 3 again, and the rest.
        let healthy = pool_worker(&url, "slow", lease, None);
        let mut got = Vec::new();
        while let Some(r) = it.next_timeout(Duration::from_secs(30)) {
            got.push(r.unwrap());
        }
        got.sort();
        assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
        // The victim wakes, finishes 3 late: its result is refused, not published twice.
        stop(victim.pid(), rustix::process::Signal::CONT);
        release.set().unwrap();
        pool.close().unwrap();
        assert_eq!(
            util::join_within(&victim, Duration::from_secs(20)).expect("victim ends"),
            4,
            "it ran 0..=3"
        );
        assert_eq!(published(&srv, "slow"), vec![10], "each result once");
        util::join_within(&healthy, Duration::from_secs(20)).expect("worker ends");
        assert_eq!(pool.info().unwrap().unfinished, 0);
    });
}

const POISON: remote::Task<u64, u64> = remote::Task::new("poison");

/// The server's URL, in a poison worker.
static POISON_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Kills its worker on 5 (counting the runs on the server first); identity otherwise.
fn poison(x: u64) -> u64 {
    if x == 5 {
        let url = POISON_URL.get().expect("set in the worker");
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        let _: i64 = redis::cmd("INCR").arg("poison-runs").query(&mut c).unwrap();
        stop(std::process::id(), rustix::process::Signal::KILL);
    }
    x
}

fn poison_worker(url: &str, lease: Duration) -> Process<u64> {
    let url = url.to_string();
    Process::fork(move || {
        POISON_URL.set(url.clone()).unwrap();
        remote::Worker::new(&url, "poison")
            .unwrap()
            .with_lease(lease)
            .with_max_runs(2)
            .register(POISON, poison)
            .run()
            .unwrap()
    })
    .unwrap()
}

#[test]
fn pool_call_that_kills_every_worker_runs_max_runs_times_then_fails() {
    let Some(srv) = Server::start() else { return };
    let url = srv.url();
    with_watchdog(LIMIT, move || {
        let lease = Duration::from_millis(300);
        let pool = remote::Pool::open(&url, "poison").unwrap();
        let r = pool.map_async(POISON, 0..10u64).unwrap();
        // One worker at a time, a dead one replaced, until every call has its result.
        let mut worker = poison_worker(&url, lease);
        let mut deaths = 0;
        let t0 = Instant::now();
        while !r.ready().unwrap() {
            assert!(
                t0.elapsed() < Duration::from_secs(40),
                "the poison call still circulates after {deaths} deaths"
            );
            if !worker.is_alive() {
                assert!(worker.join().is_err(), "killed by its task");
                deaths += 1;
                worker = poison_worker(&url, lease);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = r.get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildFailed, "{e}");
        assert!(
            e.to_string()
                .contains("lost with its remote worker 2 times"),
            "{e}"
        );
        assert_eq!(deaths, 2, "two workers died running it");
        let mut raw = srv.raw();
        let runs: i64 = redis::cmd("GET")
            .arg("poison-runs")
            .query(&mut raw)
            .unwrap();
        assert_eq!(runs, 2, "run max_runs times, never again");
        let counted: i64 = redis::cmd("HLEN")
            .arg("{mpq:poison}:lost")
            .query(&mut raw)
            .unwrap();
        assert_eq!(counted, 0, "the count goes with the acknowledgement");
        // The live worker serves other calls: the pool goes on.
        assert_eq!(pool.map(POISON, [1u64, 2, 3]).unwrap(), vec![1, 2, 3]);
        assert_eq!(published(&srv, "poison"), vec![10], "each result once");
        pool.close().unwrap();
        // It ran 1, 2, 3 and those of 6..=9 the second worker had not run (not the poison).
        let ran = util::join_within(&worker, Duration::from_secs(20)).expect("worker ends");
        assert!((3..=7).contains(&ran), "{ran}");
        assert_eq!(pool.info().unwrap().unfinished, 0);
    });
}

// ---- many hosts: network namespaces ---------------------------------------------------------

/// Runs `ip ARGS`; `Err` with its output when it fails.
fn ip(args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Moves this (single-threaded, forked) process into the network namespace `ns`.
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&f),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap();
}

/// Three namespaces — the server's and two "hosts" — with a veth pair from each host to
/// the server's; deleted on drop (the veths go with them), also when the test fails.
struct Net {
    names: Vec<String>,
}

impl Net {
    /// `Err` with the reason when namespaces cannot be made here (not root, no `ip`).
    fn new() -> std::result::Result<Net, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        let tag = std::process::id() % 100_000;
        let mut net = Net { names: Vec::new() };
        for role in ["s", "a", "b"] {
            let ns = format!("mp{role}{tag}");
            ip(&["netns", "add", &ns])?;
            net.names.push(ns);
        }
        let (s, a, b) = (&net.names[0], &net.names[1], &net.names[2]);
        for (host, n) in [(a, 1), (b, 2)] {
            let (near, far) = (format!("v{tag}s{n}"), format!("v{tag}h{n}"));
            ip(&[
                "link", "add", &near, "netns", s, "type", "veth", "peer", "name", &far, "netns",
                host,
            ])?;
            ip(&[
                "-n",
                s,
                "addr",
                "add",
                &format!("10.77.{n}.1/24"),
                "dev",
                &near,
            ])?;
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("10.77.{n}.2/24"),
                "dev",
                &far,
            ])?;
            ip(&["-n", s, "link", "set", &near, "up"])?;
            ip(&["-n", host, "link", "set", &far, "up"])?;
        }
        for ns in &net.names {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Host `n`'s end of its link, down or up.
    fn link(&self, n: usize, up: bool) {
        let tag = std::process::id() % 100_000;
        ip(&[
            "-n",
            &self.names[n],
            "link",
            "set",
            &format!("v{tag}h{n}"),
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.names {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// The server in one namespace; a producer on host a and workers on host b, each reaching
/// it over its own veth pair. A worker is SIGKILLed holding a call, the workers' link is
/// cut and restored, the server is restarted (append-only file, fsync always): every
/// call's result comes back, once, and nothing hangs.
#[test]
fn many_hosts_worker_killed_link_cut_server_restarted() {
    let net = match Net::new() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("SKIPPED: the multi-host test needs `ip netns` ({why})");
            return;
        }
    };
    let Some(mut srv) = Server::start_with(false, true) else {
        return;
    };
    // The same server again, inside the server's namespace, listening on its veths.
    srv.kill();
    srv.netns = Some(net.names[0].clone());
    srv.port = Some(6379);
    srv.restart();
    let local = srv.url(); // the unix socket: this process watches from outside
    let (url_a, url_b) = ("redis://10.77.1.1:6379/0", "redis://10.77.2.1:6379/0");
    let (ns_a, ns_b) = (net.names[1].clone(), net.names[2].clone());
    let pool = remote::Pool::open(&local, "hosts").unwrap();
    let hang = remote::Event::open(&local, "hosts-hang").unwrap();
    let lease = Duration::from_millis(500);
    // The victim, alone at first, takes calls in order and hangs holding call 5.
    let victim = pool_worker_in(Some(&ns_b), url_b, "hosts", lease, Some(5));
    // The producer, on host a: sends 200 calls, then collects their results across the
    // faults (a lost server is an error of that wait; the next wait goes on from there).
    let producer = Process::fork(move || {
        enter_netns(&ns_a);
        let pool = remote::Pool::open(url_a, "hosts").unwrap();
        let r = pool.map_async(NAP, 0..200u64).unwrap();
        let t0 = Instant::now();
        let mut disconnects = 0u32;
        loop {
            match r.get_timeout(Duration::from_secs(1)) {
                Ok(v) => return (v, disconnects),
                Err(multiproc::pool::GetTimeoutError::Timeout) => {}
                Err(multiproc::pool::GetTimeoutError::Failed(e)) => {
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                    disconnects += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(90), "results never came");
        }
    })
    .unwrap();
    let net = &net;
    let out = with_watchdog(Duration::from_secs(120), {
        let ns_b = net.names[2].clone();
        move || {
            hang.wait_timeout(Duration::from_secs(30)).unwrap();
            let dead = format!("pid {} ", victim.pid());
            victim.kill().unwrap();
            assert!(victim.join().is_err());
            // Two healthy workers on host b; 200 calls of 20 ms keep them busy for seconds.
            let workers: Vec<_> = (0..2)
                .map(|_| pool_worker_in(Some(&ns_b), url_b, "hosts", lease, None))
                .collect();
            // Both registered and busy, and the dead victim reaped (its call 5 went back).
            util::until("the workers take calls", || {
                let w = pool.workers().unwrap();
                w.len() == 2
                    && w.iter().all(|w| {
                        w.lease_left.is_some() && !w.worker.as_ref().unwrap().contains(&dead)
                    })
                    && w.iter().any(|w| w.in_flight > 0)
            });
            (pool, workers, srv)
        }
    });
    let (pool, workers, mut srv) = out;
    // The workers' link is cut for longer than their lease, with calls in flight.
    net.link(2, false);
    // Seen from the server: both workers go silent until their leases run out.
    util::until("the cut-off workers' leases run out", || {
        let w = pool.workers().unwrap();
        w.len() == 2 && w.iter().all(|c| c.lease_left.is_none())
    });
    net.link(2, true);
    // The server restarts (its append-only file keeps every acknowledged write).
    srv.restart();
    let (results, disconnects) = with_watchdog(Duration::from_secs(120), move || {
        let r = util::join_within(&producer, Duration::from_secs(100)).expect("producer ends");
        // This handle's connection broke with the restart: its first call says so, the
        // next connects again.
        let info = match pool.info() {
            Err(e) if e.kind() == ErrorKind::Disconnected => pool.info().unwrap(),
            r => r.unwrap(),
        };
        pool.close().unwrap();
        let mut ran = 0;
        for w in workers {
            ran += util::join_within(&w, Duration::from_secs(30)).expect("worker ends");
        }
        assert_eq!(info.unfinished, 0, "{info:?}");
        assert!(
            ran >= 195,
            "the healthy workers ran {ran} calls (0..5 by the victim)"
        );
        r
    });
    assert_eq!(results, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
    eprintln!("many hosts: the producer saw {disconnects} disconnection(s)");
    drop(srv);
}
