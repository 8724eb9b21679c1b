//! `Duration::MAX` as a timeout (issue 17 item 4): every public call that takes a timeout
//! accepts any `Duration` — it means "as good as forever" — and returns normally when what
//! it waits for is ready. (`Instant::now() + Duration::MAX` panics: the crate turns timeouts
//! into deadlines in one place, `sys::Deadline`.)

use std::time::{Duration, Instant};

use multiproc::queue::{PutTimeoutError, TryPutError};
use multiproc::sync::BarrierTimeoutError;
use multiproc::{
    pipe, try_wait, wait_deadline, wait_timeout, Array, Barrier, BoundedSemaphore, BrokenBarrier,
    Condition, Event, JoinableQueue, Lock, Pool, Process, Queue, RLock, Semaphore, SimpleQueue,
    Value, WouldBlock,
};

use crate::util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const MAX: Duration = Duration::MAX;

fn sqr(x: u64) -> u64 {
    x * x
}

/// The pool's `_timeout` calls (they panicked with "overflow when adding duration to
/// instant").
#[test]
fn pool_timeouts_accept_duration_max() {
    with_watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let r = pool.apply_async(sqr, 3).unwrap();
        assert_eq!(r.get_timeout(MAX).unwrap(), 9);
        r.wait_timeout(MAX).unwrap();
        let m = pool.map_async(sqr, 0..4u64).unwrap();
        m.wait_timeout(MAX).unwrap();
        assert_eq!(m.get_timeout(MAX).unwrap(), vec![0, 1, 4, 9]);
        let mut it = pool.imap(sqr, 0..3u64).unwrap();
        let got: Vec<u64> = std::iter::from_fn(|| it.next_timeout(MAX))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec![0, 1, 4]);
        let mut it = pool.imap_unordered(sqr, 0..3u64).unwrap();
        let mut got: Vec<u64> = std::iter::from_fn(|| it.next_timeout(MAX))
            .map(|r| r.unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 4]);
        pool.close();
        pool.join().unwrap();

        let pool = Pool::builder().processes(1).build_with(sqr).unwrap();
        let r = pool.apply_async(5).unwrap();
        assert_eq!(r.get_timeout(MAX).unwrap(), 25);
        r.wait_timeout(MAX).unwrap();
        let mut it = pool.imap(0..2u64).unwrap();
        assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 0);
        assert_eq!(it.next_timeout(MAX).unwrap().unwrap(), 1);
        assert!(it.next_timeout(MAX).is_none());
        pool.close();
        pool.join().unwrap();
    });
}

/// Every other timeout of the crate, on something ready; and every `_deadline` form with a
/// deadline an hour away.
#[test]
fn all_timeouts_accept_duration_max() {
    with_watchdog(LIMIT, || {
        let later = Instant::now() + Duration::from_secs(3600);
        let p = Process::fork(|| 4u8).unwrap();
        assert_eq!(p.join_timeout(MAX).unwrap(), 4);
        let p = Process::fork(|| 5u8).unwrap();
        assert_eq!(p.join_deadline(later).unwrap(), 5);

        let q: Queue<u32> = Queue::new().unwrap();
        q.put_timeout(1, MAX).unwrap();
        assert_eq!(q.get_timeout(MAX).unwrap(), 1);
        q.put_deadline(1, later).unwrap();
        assert_eq!(q.get_deadline(later).unwrap(), 1);
        q.put_ref_timeout(&2, MAX).unwrap();
        q.put_ref_deadline(&2, later).unwrap();
        let mut place = 0;
        q.get_into_timeout(&mut place, MAX).unwrap();
        q.get_into_deadline(&mut place, later).unwrap();
        assert_eq!(place, 2);
        q.put_many_timeout(vec![3, 4], MAX).unwrap();
        q.put_many_deadline(vec![5], later).unwrap();
        assert_eq!(q.get_many_timeout(2, MAX).unwrap(), [3, 4]);
        assert_eq!(q.get_many_deadline(2, later).unwrap(), [5]);
        let raw: Queue<Vec<u8>> = Queue::new().unwrap();
        raw.put_bytes_timeout(b"ab", MAX).unwrap();
        assert_eq!(raw.get_bytes_timeout(MAX).unwrap(), b"ab");
        raw.put_bytes_deadline(b"ab", later).unwrap();
        assert_eq!(raw.get_bytes_deadline(later).unwrap(), b"ab");
        raw.put_bytes(b"cd").unwrap();
        raw.put_bytes(b"cd").unwrap();
        let mut buf = Vec::new();
        raw.get_bytes_into_timeout(&mut buf, MAX).unwrap();
        raw.get_bytes_into_deadline(&mut buf, later).unwrap();
        assert_eq!(buf, b"cd");
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        sq.put_timeout(3, MAX).unwrap();
        sq.put_deadline(3, later).unwrap();
        assert_eq!(sq.get_timeout(MAX).unwrap(), 3);
        assert_eq!(sq.get_deadline(later).unwrap(), 3);
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        jq.put(4).unwrap();
        assert_eq!(jq.get_timeout(MAX).unwrap(), 4);
        jq.task_done().unwrap();
        jq.join_timeout(MAX).unwrap();
        jq.join_deadline(later).unwrap();

        let lock = Lock::new().unwrap();
        drop(lock.lock_timeout(MAX).unwrap());
        drop(lock.lock_deadline(later).unwrap());
        let rlock = RLock::new().unwrap();
        let outer = rlock.lock_timeout(MAX).unwrap();
        drop(rlock.lock_timeout(MAX).unwrap());
        drop(rlock.lock_deadline(later).unwrap());
        drop(outer);
        let v = Value::new(1u8).unwrap();
        drop(v.lock_timeout(MAX).unwrap());
        drop(v.lock_deadline(later).unwrap());
        let a = Array::from_elem(1u8, 2).unwrap();
        drop(a.lock_timeout(MAX).unwrap());
        drop(a.lock_deadline(later).unwrap());
        let s = Semaphore::new(1).unwrap();
        drop(s.acquire_timeout(MAX).expect("acquired"));
        drop(s.acquire_deadline(later).expect("acquired"));
        let b = BoundedSemaphore::new(1).unwrap();
        drop(b.acquire_timeout(MAX).expect("acquired"));
        drop(b.acquire_deadline(later).expect("acquired"));
        let e = Event::new().unwrap();
        e.set();
        e.wait_timeout(MAX).unwrap();
        e.wait_deadline(later).unwrap();
        let barrier = Barrier::new(1).unwrap();
        barrier.wait_timeout(MAX).unwrap();
        barrier.wait_deadline(later).unwrap();

        let cond = Condition::new().unwrap();
        drop(cond.lock_deadline(later).unwrap());
        let mut g = cond.lock_timeout(MAX).unwrap();
        g.wait_for_timeout(|| true, MAX).unwrap();
        g.wait_for_deadline(|| true, later).unwrap();
        for deadline in [false, true] {
            // A notifier that can only get the lock once this thread waits (and has released
            // it).
            let c2 = cond.clone();
            let notifier = std::thread::spawn(move || {
                c2.lock().unwrap().notify_all();
            });
            if deadline {
                g.wait_deadline(later).unwrap();
            } else {
                g.wait_timeout(MAX).unwrap();
            }
            notifier.join().unwrap();
        }
        drop(g);

        let (a, b) = pipe(true).unwrap();
        a.send_timeout(&5u8, MAX).unwrap();
        b.poll_timeout(MAX).unwrap();
        b.poll_deadline(later).unwrap();
        assert_eq!(wait_timeout(&[&b], MAX).unwrap(), vec![0]);
        assert_eq!(wait_deadline(&[&b], later).unwrap(), vec![0]);
        assert_eq!(b.recv_timeout::<u8>(MAX).unwrap(), 5);
        a.send_deadline(&6u8, later).unwrap();
        assert_eq!(b.recv_deadline::<u8>(later).unwrap(), 6);
        a.send_bytes_timeout(b"x", MAX).unwrap();
        assert_eq!(b.recv_bytes_timeout(MAX).unwrap(), b"x");
        a.send_bytes_deadline(b"y", later).unwrap();
        assert_eq!(b.recv_bytes_deadline(later).unwrap(), b"y");
    });
}

/// Holds `f`'s guard in another thread until the returned sender is dropped (re-entrant locks
/// are free for the thread that holds them, so "held" must mean "by another thread").
fn held_elsewhere<L: Clone + Send + 'static>(
    l: &L,
    f: for<'a> fn(&'a L) -> Box<dyn Held + 'a>,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (l, (go, stop)) = (l.clone(), std::sync::mpsc::channel());
    let (held, is_held) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _g = f(&l);
        held.send(()).unwrap();
        let _ = stop.recv();
    });
    is_held.recv().unwrap();
    (go, h)
}

/// Anything, kept alive (a guard).
trait Held {}
impl<T> Held for T {}

const SHORT: Duration = Duration::from_millis(20);

/// Issue 12, point 4: one shape for "the wait ran out". Every `try_` form of every blocking
/// call reports "not now" (`WouldBlock`, `Empty`, `Full`), and every `_timeout` and
/// `_deadline` form reports a `Timeout` whose error says `is_timeout()` — on something that
/// is not ready, after at least the time asked for.
#[test]
fn every_timed_form_runs_out_with_the_timeout_shape() {
    with_watchdog(LIMIT, || {
        // Checks one timed form: it ran out, said so, and waited at least `SHORT`.
        fn ran_out<T, E: std::fmt::Debug>(r: Result<T, E>, is_timeout: impl Fn(&E) -> bool) {
            match r {
                Err(e) => assert!(is_timeout(&e), "{e:?} is not a timeout"),
                Ok(_) => panic!("did not run out"),
            }
        }
        macro_rules! both {
            ($timeout:expr, $deadline:expr) => {{
                let t0 = Instant::now();
                ran_out($timeout(SHORT), |e| e.is_timeout());
                assert!(
                    t0.elapsed() >= SHORT,
                    "returned early: {}",
                    stringify!($timeout)
                );
                let t0 = Instant::now();
                ran_out($deadline(Instant::now() + SHORT), |e| e.is_timeout());
                assert!(
                    t0.elapsed() >= SHORT,
                    "returned early: {}",
                    stringify!($deadline)
                );
            }};
        }

        // Locks held by another thread.
        let lock = Lock::new().unwrap();
        let (stop, h) = held_elsewhere(&lock, |l| Box::new(l.lock().unwrap()));
        assert!(lock.try_lock().unwrap_err().is_would_block());
        both!(|t| lock.lock_timeout(t), |d| lock.lock_deadline(d));
        drop(stop);
        h.join().unwrap();
        let rlock = RLock::new().unwrap();
        let (stop, h) = held_elsewhere(&rlock, |l| Box::new(l.lock().unwrap()));
        assert!(rlock.try_lock().unwrap_err().is_would_block());
        both!(|t| rlock.lock_timeout(t), |d| rlock.lock_deadline(d));
        drop(stop);
        h.join().unwrap();
        let cond = Condition::new().unwrap();
        let (stop, h) = held_elsewhere(&cond, |c| Box::new(c.lock().unwrap()));
        assert!(cond.try_lock().unwrap_err().is_would_block());
        both!(|t| cond.lock_timeout(t), |d| cond.lock_deadline(d));
        drop(stop);
        h.join().unwrap();
        let v = Value::new(0u32).unwrap();
        let (stop, h) = held_elsewhere(&v, |v| Box::new(v.lock().unwrap()));
        assert!(v.try_lock().unwrap_err().is_would_block());
        both!(|t| v.lock_timeout(t), |d| v.lock_deadline(d));
        drop(stop);
        h.join().unwrap();
        let arr = Array::from_elem(0u32, 3).unwrap();
        let (stop, h) = held_elsewhere(&arr, |a| Box::new(a.lock().unwrap()));
        assert!(arr.try_lock().unwrap_err().is_would_block());
        both!(|t| arr.lock_timeout(t), |d| arr.lock_deadline(d));
        drop(stop);
        h.join().unwrap();

        // Waits whose only failure is running out: `multiproc::Timeout`.
        let s = Semaphore::new(0).unwrap();
        assert_eq!(s.try_acquire().err(), Some(WouldBlock));
        both!(|t| s.acquire_timeout(t), |d| s.acquire_deadline(d));
        let bs = BoundedSemaphore::new(1).unwrap();
        bs.acquire().forget();
        assert_eq!(bs.try_acquire().err(), Some(WouldBlock));
        both!(|t| bs.acquire_timeout(t), |d| bs.acquire_deadline(d));
        let e = Event::new().unwrap();
        assert_eq!(e.try_wait(), Err(WouldBlock));
        both!(|t| e.wait_timeout(t), |d| e.wait_deadline(d));
        assert_eq!(e.wait_timeout(SHORT), Err(multiproc::Timeout));
        let jq: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        jq.put(1).unwrap();
        assert_eq!(jq.try_join(), Err(WouldBlock));
        both!(|t| jq.join_timeout(t), |d| jq.join_deadline(d));

        // A condition's waits (nobody notifies) and a barrier's (nobody else comes). The
        // barrier is broken by the party that ran out, as in Python.
        let mut g = cond.lock().unwrap();
        both!(|t| g.wait_timeout(t), |d| g.wait_deadline(d));
        both!(|t| g.wait_for_timeout(|| false, t), |d| g
            .wait_for_deadline(|| false, d));
        drop(g);
        for deadline in [false, true] {
            let b = Barrier::new(2).unwrap();
            assert!(b.try_wait().unwrap_err().is_would_block());
            let t0 = Instant::now();
            let r = if deadline {
                b.wait_deadline(Instant::now() + SHORT)
            } else {
                b.wait_timeout(SHORT)
            };
            assert_eq!(r, Err(BarrierTimeoutError::Timeout));
            assert!(r.unwrap_err().is_timeout());
            assert!(t0.elapsed() >= SHORT);
            assert!(b.is_broken(), "running out breaks the barrier");
            assert_eq!(b.wait(), Err(BrokenBarrier));
        }

        // Queues: empty for gets, full for puts; every put hands its item back.
        let q: Queue<u32> = Queue::bounded(1).unwrap();
        assert!(q.try_get().unwrap_err().is_empty());
        assert!(q.try_get_many(4).unwrap_err().is_empty());
        let mut place = 0;
        assert!(q.try_get_into(&mut place).unwrap_err().is_empty());
        both!(|t| q.get_timeout(t), |d| q.get_deadline(d));
        both!(|t| q.get_many_timeout(4, t), |d| q.get_many_deadline(4, d));
        both!(|t| q.get_into_timeout(&mut place, t), |d| q
            .get_into_deadline(&mut place, d));
        assert!(q.try_get_bytes().unwrap_err().is_empty());
        both!(|t| q.get_bytes_timeout(t), |d| q.get_bytes_deadline(d));
        let mut buf = Vec::new();
        assert!(q.try_get_bytes_into(&mut buf).unwrap_err().is_empty());
        both!(|t| q.get_bytes_into_timeout(&mut buf, t), |d| q
            .get_bytes_into_deadline(&mut buf, d));
        q.put(0).unwrap();
        assert!(matches!(q.try_put(7), Err(TryPutError::Full(7))));
        assert!(matches!(
            q.put_timeout(8, SHORT),
            Err(PutTimeoutError::Timeout(8))
        ));
        assert!(matches!(
            q.put_deadline(9, Instant::now() + SHORT),
            Err(PutTimeoutError::Timeout(9))
        ));
        both!(|t| q.put_timeout(1, t), |d| q.put_deadline(1, d));
        assert!(q.try_put_ref(&1).unwrap_err().is_full());
        both!(|t| q.put_ref_timeout(&1, t), |d| q.put_ref_deadline(&1, d));
        assert!(q.try_put_bytes(b"x").unwrap_err().is_full());
        both!(|t| q.put_bytes_timeout(b"x", t), |d| q
            .put_bytes_deadline(b"x", d));
        assert!(matches!(q.try_put_many(vec![1, 2]), Err(TryPutError::Full(v)) if v == [1, 2]));
        both!(|t| q.put_many_timeout(vec![1], t), |d| q
            .put_many_deadline(vec![1], d));
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        assert!(sq.try_get().unwrap_err().is_empty());
        both!(|t| sq.get_timeout(t), |d| sq.get_deadline(d));

        // Connections: nothing to receive; a full ring to send into.
        let (a, b) = pipe(true).unwrap();
        assert!(b.try_recv::<u8>().unwrap_err().is_empty());
        assert!(b.try_recv_bytes().unwrap_err().is_empty());
        assert!(b.try_poll().unwrap_err().is_would_block());
        assert!(try_wait(&[&b]).unwrap_err().is_would_block());
        both!(|t| b.recv_timeout::<u8>(t), |d| b.recv_deadline::<u8>(d));
        both!(|t| b.recv_bytes_timeout(t), |d| b.recv_bytes_deadline(d));
        both!(|t| b.poll_timeout(t), |d| b.poll_deadline(d));
        both!(|t| wait_timeout(&[&b], t), |d| wait_deadline(&[&b], d));
        // (Ring messages: at most `INLINE_MAX`; the ring holds a few MiB of them.)
        let chunk = vec![0u8; 256 << 10];
        assert!(chunk.len() <= multiproc::pipe::INLINE_MAX);
        let mut sent = 0;
        while a.try_send_bytes(&chunk).is_ok() {
            sent += 1;
            assert!(sent < 1000, "the ring never filled");
        }
        assert!(a.try_send_bytes(&chunk).unwrap_err().is_full());
        assert!(a.try_send(&chunk).unwrap_err().is_full());
        both!(|t| a.send_timeout(&chunk, t), |d| a
            .send_deadline(&chunk, d));
        both!(|t| a.send_bytes_timeout(&chunk, t), |d| a
            .send_bytes_deadline(&chunk, d));
        // Everything that went is there, whole, and nothing else.
        for _ in 0..sent {
            assert_eq!(b.recv_bytes_timeout(LIMIT).unwrap().len(), chunk.len());
        }
        assert!(b.try_recv_bytes().unwrap_err().is_empty());
    });
}
