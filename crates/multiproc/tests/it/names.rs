//! Named objects (issue 16): queues, locks, values... created under a name by one process
//! and opened by *unrelated* ones (this test binary started again with `Command`, running
//! `names::child` with a role in `MP_IT_NAMES_CHILD`), killed mid-update, stale names left
//! by a crashed creator, and hostile files under a name.
//!
//! Every test uses names of its own (`mproc_it_names_<test>_<pid>`) and checks that none is
//! left in `/dev/shm` afterwards.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc::queue::{JoinableQueue, SimpleQueue};
use multiproc::sync::{Dict, List, Namespace};
use multiproc::{
    shm, Array, Barrier, BoundedSemaphore, Condition, ErrorKind, Event, Lock, Process, Queue,
    RLock, Semaphore, Value, WouldBlock,
};

use crate::util::{until, with_watchdog};

const LIMIT: Duration = Duration::from_secs(120);
const ROLE: &str = "MP_IT_NAMES_CHILD";

/// A name for this test and process.
fn name(tag: &str) -> String {
    format!("mproc_it_names_{tag}_{}", std::process::id())
}

/// Files in `/dev/shm` left by this test.
fn leftovers(tag: &str) -> Vec<String> {
    let n = name(tag);
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.contains(&n))
        .collect()
}

/// Runs `f` under the watchdog and checks that it left no name of test `tag` behind.
fn no_leftovers(tag: &'static str, f: impl FnOnce() + Send + 'static) {
    with_watchdog(LIMIT, f);
    assert_eq!(
        leftovers(tag),
        Vec::<String>::new(),
        "names left in /dev/shm"
    );
}

/// An unrelated process: this binary again, running `names::child` as `role` (its words
/// separated by spaces), its stdout piped.
fn start(role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "names::child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start an unrelated process")
}

/// Reads the child's stdout until a line containing `prefix` (a marker starting with `@`);
/// returns the rest of that line.
fn line(out: &mut impl BufRead, prefix: &str) -> String {
    let mut l = String::new();
    loop {
        l.clear();
        assert!(
            out.read_line(&mut l).unwrap() > 0,
            "child ended before saying {prefix:?}"
        );
        // (The harness may have written "test names::child ... " before it on the line.)
        if let Some(at) = l.find(prefix) {
            return l[at + prefix.len()..].trim().to_string();
        }
    }
}

/// Waits for a child that is to finish by itself and checks it succeeded.
fn finish(mut c: Child) {
    let st = c.wait().unwrap();
    assert!(st.success(), "child failed: {st}");
}

/// The unrelated processes' side (does nothing in a normal run).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    // Die with the test that started us, even if it is killed (no orphan left blocked).
    // SAFETY: prctl with an integer argument; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let w: Vec<&str> = role.split(' ').collect();
    match w[..] {
        // Takes items until a 0, marking each done; says the sum.
        ["consume", n] => {
            let q = JoinableQueue::<u64>::open_named(n).unwrap();
            let mut sum = 0;
            loop {
                let x = q.get_timeout(Duration::from_secs(60)).unwrap();
                q.task_done().unwrap();
                if x == 0 {
                    break;
                }
                sum += x;
            }
            println!("@sum {sum}");
        }
        // Puts vectors of one repeated value forever (until killed).
        ["produce", n] => {
            let q = Queue::<Vec<u64>>::open_named(n).unwrap();
            println!("@producing");
            for i in 1u64.. {
                q.put_timeout(vec![i; 1000], Duration::from_secs(60))
                    .unwrap();
            }
        }
        // Creates a Lock (the first run) or opens one, takes it, writes a Value half-way,
        // says so and waits to be killed.
        ["hold", n, how] => {
            let lock = if how == "create" {
                Lock::create_named(n).unwrap()
            } else {
                Lock::open_named(n).unwrap()
            };
            let _g = lock.lock().unwrap();
            let v = Value::<[u64; 2]>::open_named(&format!("{n}_v")).unwrap();
            let mut g = v.lock().unwrap();
            g[0] = 1; // [1, 0]: a pair updated half-way
            println!("@holding");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Opens or creates a counter and adds one.
        ["race", n] => {
            let v = Value::<u64>::open_or_create(n, 0).unwrap();
            *v.lock().unwrap() += 1;
            println!("counted");
        }
        // Uses one of each named sync type created by the parent.
        ["each", n] => {
            Event::open_named(&format!("{n}_event")).unwrap().set();
            Semaphore::open_named(&format!("{n}_sem"))
                .unwrap()
                .release()
                .unwrap();
            let b = BoundedSemaphore::open_named(&format!("{n}_bsem")).unwrap();
            b.acquire().forget();
            let r = RLock::open_named(&format!("{n}_rlock")).unwrap();
            {
                let _a = r.lock().unwrap();
                let _b = r.lock().unwrap();
            }
            let a = Array::<i32>::open_named(&format!("{n}_array")).unwrap();
            assert_eq!(a.to_vec(), vec![1, 2, 3]);
            a.set(2, -3);
            Barrier::open_named(&format!("{n}_barrier"))
                .unwrap()
                .wait_timeout(Duration::from_secs(60))
                .unwrap();
            println!("done");
        }
        // Counts in a named dictionary, opened (or created) by name.
        ["dict", n] => {
            let d = Dict::<String, u64>::open_or_create(n, 64, 64).unwrap();
            for _ in 0..200 {
                d.update(&"count".to_string(), |c| Some(c.unwrap_or(0) + 1))
                    .unwrap();
            }
            let l = List::<u64>::open_or_create(&format!("{n}_list"), 1000, 16).unwrap();
            for i in 0..50 {
                l.push(&i).unwrap();
            }
            let ns = Namespace::<(u64, String)>::open_named(&format!("{n}_ns")).unwrap();
            ns.update(|(c, s)| (c + 1, s + "x")).unwrap();
            println!("@counted");
        }
        // Waits on a named condition until notified, then doubles the number in a named
        // simple queue (`<n>_q`).
        ["condwait", n] => {
            let c = Condition::open_named(n).unwrap();
            let q = SimpleQueue::<u64>::open_named(&format!("{n}_q")).unwrap();
            let mut g = c.lock().unwrap_or_else(multiproc::OwnerDied::into_inner);
            println!("@waiting");
            g.wait_timeout(Duration::from_secs(60)).unwrap();
            drop(g);
            let x = q.get_timeout(Duration::from_secs(60)).unwrap();
            q.put(x * 2).unwrap();
            println!("@doubled");
        }
        // Creates (the first run) or opens a named condition, holds its lock, says so and
        // waits to be killed.
        ["condhold", n, how] => {
            let c = if how == "create" {
                Condition::create_named_with_lock(n).unwrap()
            } else {
                Condition::open_named(n).unwrap()
            };
            let _g = c.lock().unwrap();
            println!("@holding");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Puts vectors of one repeated value into a named simple queue forever.
        ["simpleput", n] => {
            let q = SimpleQueue::<Vec<u64>>::open_named(n).unwrap();
            println!("@producing");
            for i in 1u64.. {
                q.put(vec![i; 1000]).unwrap();
            }
        }
        // Takes from a named simple queue forever, saying when it has taken the first.
        ["simpleget", n] => {
            let q = SimpleQueue::<Vec<u64>>::open_named(n).unwrap();
            let first = q.get_timeout(Duration::from_secs(60)).unwrap();
            println!("@got {}", first[0]);
            loop {
                let v = q.get_timeout(Duration::from_secs(60)).unwrap();
                assert!(v.iter().all(|&x| x == v[0]));
            }
        }
        _ => panic!("unknown role {role:?}"),
    }
}

#[test]
fn a_named_joinable_queue_joins_unrelated_processes() {
    no_leftovers("jq", || {
        let n = name("jq");
        let q = JoinableQueue::<u64>::create_named(&n).unwrap();
        assert_eq!(q.name(), Some(n.as_str()));
        let kids: Vec<Child> = (0..2).map(|_| start(&format!("consume {n}"))).collect();
        for i in 1..=1000 {
            q.put(i).unwrap();
        }
        q.put(0).unwrap();
        q.put(0).unwrap();
        q.join_timeout(Duration::from_secs(60)).unwrap();
        let mut total = 0;
        for mut c in kids {
            let mut out = BufReader::new(c.stdout.take().unwrap());
            total += line(&mut out, "@sum ").parse::<u64>().unwrap();
            finish(c);
        }
        assert_eq!(total, 500_500);
        q.unlink().unwrap();
        // Gone for others; this handle still works.
        let e = JoinableQueue::<u64>::open_named(&n).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        q.put(7).unwrap();
        assert_eq!(q.get().unwrap(), 7);
    });
}

#[test]
fn a_producer_killed_mid_put_leaves_no_torn_item() {
    no_leftovers("torn", || {
        let n = name("torn");
        let q = Queue::<Vec<u64>>::builder()
            .maxsize(64)
            .capacity_bytes(1 << 20)
            .create_named(&n)
            .unwrap();
        kill_producer_mid_put(&q, start(&format!("produce {n}")));
        // The queue goes on working.
        q.put(vec![5; 3]).unwrap();
        assert_eq!(q.get().unwrap(), vec![5; 3]);
        q.unlink().unwrap();
    });
}

/// Takes items from `q` while the child `c` (a `produce` or `simpleput` role) puts vectors
/// of one repeated value, counting up: lets it fill the queue and block, takes some so that
/// it is mid-put, then kills it. Whatever is left must be whole and in order.
fn kill_producer_mid_put(q: &Queue<Vec<u64>>, mut c: Child) {
    let mut out = BufReader::new(c.stdout.take().unwrap());
    line(&mut out, "@producing");
    let mut last = 0;
    let mut next = |v: Vec<u64>| {
        assert!(v.len() == 1000 && v.iter().all(|&x| x == v[0]) && v[0] == last + 1);
        last = v[0];
    };
    for _ in 0..200 {
        next(q.get_timeout(Duration::from_secs(60)).unwrap());
    }
    c.kill().unwrap();
    c.wait().unwrap();
    while let Ok(v) = q.try_get() {
        next(v);
    }
}

#[test]
fn a_lock_held_by_a_killed_unrelated_process_is_recovered() {
    no_leftovers("held", || {
        let n = name("held");
        let lock = Lock::create_named(&n).unwrap();
        let v = Value::create_named(&format!("{n}_v"), [0u64; 2]).unwrap();
        let mut c = start(&format!("hold {n} open"));
        let mut out = BufReader::new(c.stdout.take().unwrap());
        line(&mut out, "@holding");
        assert!(matches!(lock.try_lock(), Err(e) if e.is_would_block()));
        c.kill().unwrap();
        c.wait().unwrap();
        // The next holder learns that the holder died (and the value may be half-written).
        let g = lock.lock_timeout(Duration::from_secs(30));
        assert!(
            matches!(g, Err(ref e) if !e.is_timeout()),
            "expected OwnerDied"
        );
        drop(g);
        let g = match v.lock() {
            Err(died) => died.into_inner(),
            Ok(_) => panic!("the value's lock should report its dead owner"),
        };
        assert_eq!(*g, [1, 0], "what the dead holder left, reported as such");
        drop(g);
        assert!(lock.try_lock().is_ok());
        lock.unlink().unwrap();
        v.unlink().unwrap();
    });
}

#[test]
fn a_crashed_creators_name_stays_until_a_later_run_cleans_it() {
    no_leftovers("stale", || {
        let n = name("stale");
        let v = Value::create_named(&format!("{n}_v"), [0u64; 2]).unwrap();
        // The "first run" creates the lock, holds it, and is killed.
        let mut c = start(&format!("hold {n} create"));
        let mut out = BufReader::new(c.stdout.take().unwrap());
        line(&mut out, "@holding");
        c.kill().unwrap();
        c.wait().unwrap();
        // The "later run": a second create is refused, never a silent reuse...
        let e = Lock::create_named(&n).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("unlink_named"), "{e}");
        // ... the stale lock opens, and says its holder died instead of hanging ...
        let stale = Lock::open_named(&n).unwrap();
        assert!(stale.lock().is_err(), "expected OwnerDied");
        // ... open_or_create opens it too; after unlink_named the name is free.
        drop(Lock::open_or_create(&n).unwrap());
        shm::unlink_named(&n).unwrap();
        let fresh = Lock::create_named(&n).unwrap();
        assert!(fresh.try_lock().is_ok());
        // The stale handle's unlink leaves the new object's name alone.
        let e = stale.unlink().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
        fresh.unlink().unwrap();
        assert_eq!(
            shm::unlink_named(&n).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        v.unlink().unwrap();
    });
}

#[test]
fn racing_open_or_create_makes_one_object() {
    no_leftovers("race", || {
        let n = name("race");
        let kids: Vec<Child> = (0..6).map(|_| start(&format!("race {n}"))).collect();
        for c in kids {
            finish(c);
        }
        let v = Value::<u64>::open_named(&n).unwrap();
        assert_eq!(v.get(), 6, "every process counted on the same object");
        v.unlink().unwrap();
    });
}

#[test]
fn every_named_sync_type_works_across_unrelated_processes() {
    no_leftovers("each", || {
        let n = name("each");
        let event = Event::create_named(&format!("{n}_event")).unwrap();
        let sem = Semaphore::create_named(&format!("{n}_sem"), 0).unwrap();
        let bsem = BoundedSemaphore::create_named(&format!("{n}_bsem"), 1).unwrap();
        let rlock = RLock::create_named(&format!("{n}_rlock")).unwrap();
        let array = Array::create_named(&format!("{n}_array"), &[1i32, 2, 3]).unwrap();
        let barrier = Barrier::create_named(&format!("{n}_barrier"), 2).unwrap();
        let c = start(&format!("each {n}"));
        barrier.wait_timeout(Duration::from_secs(60)).unwrap();
        finish(c);
        event.wait_timeout(Duration::from_secs(1)).unwrap();
        sem.acquire_timeout(Duration::from_secs(1))
            .unwrap()
            .forget();
        assert_eq!(bsem.try_acquire().unwrap_err(), WouldBlock);
        bsem.release().unwrap();
        assert!(rlock.try_lock().is_ok());
        assert_eq!(array.to_vec(), vec![1, 2, -3]);
        for r in [
            event.unlink(),
            sem.unlink(),
            bsem.unlink(),
            rlock.unlink(),
            array.unlink(),
            barrier.unlink(),
        ] {
            r.unwrap();
        }
    });
}

fn lock_in_child(l: Lock) -> bool {
    let g = l.lock().unwrap();
    drop(g);
    l.name().is_none() // the name is not sent; the object is
}

#[test]
fn a_named_object_travels_to_spawned_children() {
    no_leftovers("travel", || {
        let n = name("travel");
        let l = Lock::create_named(&n).unwrap();
        let p = Process::spawn(lock_in_child, l.clone()).unwrap();
        assert!(p.join().unwrap());
        let (rx, tx) = multiproc::pipe(false).unwrap();
        tx.send(&l).unwrap();
        let got: Lock = rx.recv().unwrap();
        assert!(got.try_lock().is_ok());
        l.unlink().unwrap();
    });
}

fn sum_from_named_queue(q: Queue<u32>) -> u32 {
    (0..3)
        .map(|_| q.get_timeout(Duration::from_secs(20)).unwrap())
        .sum()
}

// A queue opened by name has no readiness fd (an unrelated process cannot be handed the
// creator's eventfd): `try_as_fd` says so, and the queue still travels to a spawned child
// and through a connection, without one.
#[test]
fn a_named_queue_has_no_readiness_fd_and_travels_without_one() {
    no_leftovers("noready", || {
        let n = name("noready");
        let q: Queue<u32> = Queue::create_named(&n).unwrap();
        assert!(q.try_as_fd().is_none());
        let opened: Queue<u32> = Queue::open_named(&n).unwrap();
        assert!(opened.try_as_fd().is_none());
        for i in 1..=3 {
            opened.put(i).unwrap();
        }
        let p = Process::spawn(sum_from_named_queue, q.clone()).unwrap();
        assert_eq!(p.join().unwrap(), 6);
        let (rx, tx) = multiproc::pipe(false).unwrap();
        tx.send(&q).unwrap();
        let got: Queue<u32> = rx.recv().unwrap();
        assert!(got.try_as_fd().is_none());
        got.put(9).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap(), 9);
        // A queue made by `Queue::new` keeps its fd through the same trip.
        let plain: Queue<u32> = Queue::new().unwrap();
        tx.send(&plain).unwrap();
        let got: Queue<u32> = rx.recv().unwrap();
        assert!(got.try_as_fd().is_some());
        q.unlink().unwrap();
    });
}

/// Writes `bytes` to `/dev/shm/mp.<name>` with `mode`.
fn plant(name: &str, bytes: &[u8], mode: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(format!("/dev/shm/mp.{name}"))
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn refused(r: multiproc::Result<impl std::fmt::Debug>, says: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
    assert!(e.to_string().contains(says), "{e:?} should say {says:?}");
}

#[test]
fn hostile_files_and_wrong_types_under_a_name_are_refused() {
    no_leftovers("hostile", || {
        let n = name("hostile");
        // Garbage, private: not ours.
        plant(&format!("{n}_garbage"), &[0xa5; 8192], 0o600);
        refused(Lock::open_named(&format!("{n}_garbage")), "bad magic");
        refused(
            Queue::<u8>::open_named(&format!("{n}_garbage")),
            "bad magic",
        );
        // Readable by others: refused before it is read.
        plant(&format!("{n}_shared"), &[0; 8192], 0o644);
        refused(Lock::open_named(&format!("{n}_shared")), "not private");
        // Too short for a header; a symlink.
        plant(&format!("{n}_short"), b"MPROCSEG", 0o600);
        refused(Event::open_named(&format!("{n}_short")), "too short");
        std::os::unix::fs::symlink("/etc/passwd", format!("/dev/shm/mp.{n}_link")).unwrap();
        refused(Lock::open_named(&format!("{n}_link")), "regular file");
        // A creation never goes through a planted file or link.
        for f in ["garbage", "link"] {
            let e = Lock::create_named(&format!("{n}_{f}")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        }
        for f in ["garbage", "shared", "short", "link"] {
            shm::unlink_named(&format!("{n}_{f}")).unwrap();
        }

        // The wrong kind, the wrong type, the wrong facade.
        let lock = Lock::create_named(&format!("{n}_lock")).unwrap();
        refused(
            Queue::<u8>::open_named(&format!("{n}_lock")),
            "is a Lock, not a Queue",
        );
        refused(
            Semaphore::open_named(&format!("{n}_lock")),
            "is a Lock, not a Semaphore",
        );
        refused(RLock::open_named(&format!("{n}_lock")), "not a RLock");
        let q = Queue::<u64>::create_named(&format!("{n}_q")).unwrap();
        refused(
            Queue::<String>::open_named(&format!("{n}_q")),
            "of another type",
        );
        refused(
            Queue::<i64>::open_named(&format!("{n}_q")),
            "of another type",
        );
        refused(
            JoinableQueue::<u64>::open_named(&format!("{n}_q")),
            "not a JoinableQueue",
        );
        let v = Value::create_named(&format!("{n}_v"), 1u32).unwrap();
        refused(
            Value::<i32>::open_named(&format!("{n}_v")),
            "of another type",
        );
        refused(
            Value::<u64>::open_named(&format!("{n}_v")),
            "of another type",
        );
        let a = Array::create_named(&format!("{n}_a"), &[1u8, 2]).unwrap();
        refused(
            Array::<u16>::open_named(&format!("{n}_a")),
            "of another type",
        );

        // A later layout version; a file cut short; a damaged queue inside a valid segment.
        let path = |s: &str| format!("/dev/shm/mp.{n}_{s}");
        let mut bytes = std::fs::read(path("lock")).unwrap();
        bytes[8] = bytes[8].wrapping_add(1);
        plant(&format!("{n}_version"), &bytes, 0o600);
        refused(Lock::open_named(&format!("{n}_version")), "layout version");
        let qbytes = std::fs::read(path("q")).unwrap();
        plant(&format!("{n}_cut"), &qbytes[..8192], 0o600);
        refused(
            Queue::<u64>::open_named(&format!("{n}_cut")),
            "length in header",
        );
        let mut damaged = qbytes.clone();
        damaged[64..72].copy_from_slice(b"garbage!"); // the queue's own magic
        plant(&format!("{n}_damaged"), &damaged, 0o600);
        refused(Queue::<u64>::open_named(&format!("{n}_damaged")), "queue");
        let mut ring = qbytes;
        ring[72..80].copy_from_slice(&u64::MAX.to_ne_bytes()); // its ring size
        plant(&format!("{n}_ring"), &ring, 0o600);
        refused(Queue::<u64>::open_named(&format!("{n}_ring")), "ring size");
        for f in ["version", "cut", "damaged", "ring"] {
            shm::unlink_named(&format!("{n}_{f}")).unwrap();
        }

        // Bad names; an anonymous object has no name to unlink.
        for bad in ["", "a/b", "/abs", "nul\0", &"x".repeat(300)] {
            let e = Lock::create_named(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
            let e = Lock::open_named(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
        let e = Lock::new().unwrap().unlink().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
        assert_eq!(Lock::new().unwrap().name(), None);
        // Too large for /dev/shm: refused at creation, not a SIGBUS later.
        let e = Queue::<u8>::builder()
            .capacity_bytes(1 << 39)
            .create_named(&format!("{n}_huge"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

        for r in [lock.unlink(), q.unlink(), v.unlink(), a.unlink()] {
            r.unwrap();
        }
    });
}

#[test]
fn a_named_dict_is_shared_by_unrelated_processes() {
    no_leftovers("dict", || {
        let n = name("dict");
        let ns = Namespace::create_named(&format!("{n}_ns"), &(0u64, String::new()), 64).unwrap();
        let kids: Vec<Child> = (0..3).map(|_| start(&format!("dict {n}"))).collect();
        for c in kids {
            finish(c);
        }
        let d = Dict::<String, u64>::open_named(&n).unwrap();
        assert_eq!(d.get(&"count".to_string()).unwrap(), Some(600));
        refused(Dict::<String, i64>::open_named(&n), "of another type");
        refused(Lock::open_named(&n), "is a Dict, not a Lock");
        d.unlink().unwrap();
        let l = List::<u64>::open_named(&format!("{n}_list")).unwrap();
        assert_eq!(l.len(), 150);
        refused(
            List::<u32>::open_named(&format!("{n}_list")),
            "of another type",
        );
        assert_eq!(ns.get().unwrap(), (3, "xxx".to_string()));
        let e = Namespace::<u64>::open_named(&format!("{n}_list")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
        let pairs = List::<(u64, String)>::create_named(&format!("{n}_pairs"), 4, 64).unwrap();
        let e = Namespace::<(u64, String)>::open_named(&format!("{n}_pairs")).unwrap_err();
        assert!(e.to_string().contains("not a Namespace"), "{e}");
        pairs.unlink().unwrap();
        l.unlink().unwrap();
        ns.unlink().unwrap();
    });
}

#[test]
fn a_named_condition_and_simple_queue_serve_unrelated_processes_and_survive_a_killed_waiter() {
    no_leftovers("cond", || {
        let n = name("cond");
        let c = Condition::create_named(&n).unwrap();
        assert_eq!(c.name(), Some(n.as_str()));
        let q = SimpleQueue::<u64>::create_named(&format!("{n}_q")).unwrap();
        // A waiter that is killed inside its wait...
        let mut dead = start(&format!("condwait {n}"));
        let mut out = BufReader::new(dead.stdout.take().unwrap());
        line(&mut out, "@waiting");
        until("the first waiter waits", || c.waiters().0 == 1);
        dead.kill().unwrap();
        dead.wait().unwrap();
        // ... and a live one, which waited after it: the one notification goes to the
        // live waiter, not to the dead one's slot (oldest first would pick it).
        let mut live = start(&format!("condwait {n}"));
        let mut out = BufReader::new(live.stdout.take().unwrap());
        line(&mut out, "@waiting");
        until("the second waiter waits", || c.waiters().0 == 2);
        let g = c.lock().unwrap();
        q.put(21).unwrap();
        g.notify(1);
        drop(g);
        line(&mut out, "@doubled");
        finish(live);
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 42);
        // The notify found the dead waiter's slot and freed it.
        assert_eq!(c.waiters(), (0, 0));
        // A handle sent to a spawned child is the same condition (one segment, rebuilt).
        let done = Process::spawn(notify_from_child, (c.clone(), q.clone())).unwrap();
        let mut g = c.lock().unwrap();
        q.put(1).unwrap();
        g.wait_timeout(Duration::from_secs(60)).unwrap();
        drop(g);
        done.join().unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 2);
        c.unlink().unwrap();
        q.unlink().unwrap();
        assert_eq!(
            Condition::open_named(&n).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

fn notify_from_child((c, q): (Condition, SimpleQueue<u64>)) {
    assert!(c.name().is_none());
    let x = q.get_timeout(Duration::from_secs(60)).unwrap();
    q.put(x * 2).unwrap();
    // The parent waits once it holds the lock and has put `x`: taking the lock means it
    // is waiting (it released it in `wait`).
    let g = c.lock().unwrap();
    g.notify_all();
}

#[test]
fn a_named_condition_held_by_a_killed_creator_is_recovered_and_its_name_cleaned() {
    no_leftovers("condstale", || {
        let n = name("condstale");
        let mut c = start(&format!("condhold {n} create"));
        let mut out = BufReader::new(c.stdout.take().unwrap());
        line(&mut out, "@holding");
        c.kill().unwrap();
        c.wait().unwrap();
        let e = Condition::create_named(&n).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        // The stale condition opens (over the plain Lock it was made with), and its lock
        // says the holder died instead of hanging; it works on.
        let stale = Condition::open_or_create(&n).unwrap();
        let g = stale.lock_timeout(Duration::from_secs(30));
        assert!(
            matches!(g, Err(ref e) if !e.is_timeout()),
            "expected OwnerDied"
        );
        drop(g);
        {
            let mut g = stale.lock().unwrap();
            assert!(g
                .wait_timeout(Duration::from_millis(20))
                .unwrap_err()
                .is_timeout());
        }
        // A holder killed in an unrelated process that opened it: the same.
        let mut c = start(&format!("condhold {n} open"));
        let mut out = BufReader::new(c.stdout.take().unwrap());
        line(&mut out, "@holding");
        assert!(matches!(stale.try_lock(), Err(e) if e.is_would_block()));
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(stale.lock().is_err(), "expected OwnerDied");
        shm::unlink_named(&n).unwrap();
        let fresh = Condition::create_named(&n).unwrap();
        assert_eq!(stale.unlink().unwrap_err().kind(), ErrorKind::InvalidState);
        assert!(fresh.try_lock().is_ok());
        fresh.unlink().unwrap();
    });
}

#[test]
fn a_named_simple_queue_survives_a_killed_writer_and_a_killed_reader() {
    no_leftovers("simple", || {
        let n = name("simple");
        let q = SimpleQueue::<Vec<u64>>::from_builder_named(
            Queue::builder().capacity_bytes(1 << 20),
            &n,
        )
        .unwrap();
        // A writer killed while it puts.
        kill_producer_mid_put(q.as_queue(), start(&format!("simpleput {n}")));
        // A reader killed while it takes: what it did not take stays whole and in order.
        let mut r = start(&format!("simpleget {n}"));
        let mut out = BufReader::new(r.stdout.take().unwrap());
        let feeder = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 1..=300u64 {
                    if q.put(vec![i; 1000]).is_err() {
                        break;
                    }
                }
            })
        };
        line(&mut out, "@got ");
        r.kill().unwrap();
        r.wait().unwrap();
        feeder.join().unwrap();
        let mut prev = 0;
        while let Ok(v) = q.try_get() {
            assert!(
                v.len() == 1000 && v.iter().all(|&x| x == v[0]) && v[0] > prev,
                "{}",
                v[0]
            );
            prev = v[0];
        }
        q.put(vec![9; 2]).unwrap();
        assert_eq!(q.get().unwrap(), vec![9; 2]);
        q.unlink().unwrap();
    });
}

#[test]
fn hostile_files_under_a_condition_or_simple_queue_name_are_refused() {
    no_leftovers("hostile2", || {
        let n = name("hostile2");
        let path = |s: &str| format!("/dev/shm/mp.{n}_{s}");
        plant(&format!("{n}_garbage"), &[0x5a; 12288], 0o600);
        refused(Condition::open_named(&format!("{n}_garbage")), "bad magic");
        refused(
            SimpleQueue::<u8>::open_named(&format!("{n}_garbage")),
            "bad magic",
        );
        let c = Condition::create_named(&format!("{n}_c")).unwrap();
        let q = SimpleQueue::<u64>::create_named(&format!("{n}_q")).unwrap();
        // Truncated copies; a later layout version; a damaged lock kind.
        let cbytes = std::fs::read(path("c")).unwrap();
        plant(&format!("{n}_cut"), &cbytes[..4096], 0o600);
        refused(
            Condition::open_named(&format!("{n}_cut")),
            "length in header",
        );
        plant(&format!("{n}_tiny"), &cbytes[..40], 0o600);
        refused(Condition::open_named(&format!("{n}_tiny")), "too short");
        let qbytes = std::fs::read(path("q")).unwrap();
        plant(&format!("{n}_qcut"), &qbytes[..8192], 0o600);
        refused(
            SimpleQueue::<u64>::open_named(&format!("{n}_qcut")),
            "length in header",
        );
        let mut version = cbytes.clone();
        version[8] = version[8].wrapping_add(1);
        plant(&format!("{n}_version"), &version, 0o600);
        refused(
            Condition::open_named(&format!("{n}_version")),
            "layout version",
        );
        // The lock kind: after the header (64 bytes) and the waiters' page; 2 = an RLock.
        let at = 64 + 4096;
        assert_eq!(
            u32::from_ne_bytes(cbytes[at..at + 4].try_into().unwrap()),
            2
        );
        let mut kind = cbytes.clone();
        kind[at..at + 4].copy_from_slice(&77u32.to_ne_bytes());
        plant(&format!("{n}_kind"), &kind, 0o600);
        refused(
            Condition::open_named(&format!("{n}_kind")),
            "unknown kind of lock",
        );
        // The wrong kind and the wrong type.
        refused(
            Lock::open_named(&format!("{n}_c")),
            "is a Condition, not a Lock",
        );
        refused(
            Queue::<u64>::open_named(&format!("{n}_c")),
            "is a Condition, not a Queue",
        );
        refused(
            Condition::open_named(&format!("{n}_q")),
            "is a SimpleQueue, not a Condition",
        );
        refused(
            Queue::<u64>::open_named(&format!("{n}_q")),
            "is a SimpleQueue, not a Queue",
        );
        refused(
            JoinableQueue::<u64>::open_named(&format!("{n}_q")),
            "not a JoinableQueue",
        );
        refused(
            SimpleQueue::<String>::open_named(&format!("{n}_q")),
            "of another type",
        );
        let plain = Queue::<u64>::create_named(&format!("{n}_plain")).unwrap();
        refused(
            SimpleQueue::<u64>::open_named(&format!("{n}_plain")),
            "is a Queue, not a SimpleQueue",
        );
        assert_eq!(
            Condition::create_named(&format!("{n}_q"))
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        for f in ["garbage", "cut", "tiny", "qcut", "version", "kind"] {
            shm::unlink_named(&format!("{n}_{f}")).unwrap();
        }
        let e = Condition::new().unwrap().unlink().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
        for r in [c.unlink(), q.unlink(), plain.unlink()] {
            r.unwrap();
        }
    });
}
