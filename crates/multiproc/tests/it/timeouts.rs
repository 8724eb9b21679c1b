//! `Duration::MAX` as a timeout (issue 17 item 4): every public call that takes a timeout
//! accepts any `Duration` — it means "as good as forever" — and returns normally when what
//! it waits for is ready. (`Instant::now() + Duration::MAX` panics: the crate turns timeouts
//! into deadlines in one place, `sys::Deadline`.)

use std::time::Duration;

use multiproc::{
    pipe, wait, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Pool, Process,
    Queue, RLock, Semaphore, SimpleQueue,
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

/// Every other timeout of the crate, on something ready.
#[test]
fn all_timeouts_accept_duration_max() {
    with_watchdog(LIMIT, || {
        let p = Process::fork(|| 4u8).unwrap();
        assert_eq!(p.join_timeout(MAX).unwrap(), 4);

        let q: Queue<u32> = Queue::new().unwrap();
        q.put_timeout(1, MAX).unwrap();
        assert_eq!(q.get_timeout(MAX).unwrap(), 1);
        q.put(2).unwrap();
        let mut place = 0;
        q.get_into_timeout(&mut place, MAX).unwrap();
        assert_eq!(place, 2);
        let raw: Queue<Vec<u8>> = Queue::new().unwrap();
        raw.put_bytes_timeout(b"ab", MAX).unwrap();
        assert_eq!(raw.get_bytes_timeout(MAX).unwrap(), b"ab");
        raw.put_bytes(b"cd").unwrap();
        let mut buf = Vec::new();
        raw.get_bytes_into_timeout(&mut buf, MAX).unwrap();
        assert_eq!(buf, b"cd");
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        sq.put(3).unwrap();
        assert_eq!(sq.get_timeout(MAX).unwrap(), 3);
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        jq.put(4).unwrap();
        assert_eq!(jq.get_timeout(MAX).unwrap(), 4);
        jq.task_done().unwrap();
        jq.join_timeout(MAX).unwrap();

        let lock = Lock::new().unwrap();
        drop(lock.try_lock_for(MAX).unwrap());
        let rlock = RLock::new().unwrap();
        let outer = rlock.try_lock_for(MAX).unwrap();
        drop(rlock.try_lock_for(MAX).unwrap());
        drop(outer);
        let s = Semaphore::new(1).unwrap();
        drop(s.acquire_timeout(MAX).expect("acquired"));
        let b = BoundedSemaphore::new(1).unwrap();
        drop(b.acquire_timeout(MAX).expect("acquired"));
        let e = Event::new().unwrap();
        e.set();
        assert!(e.wait_timeout(MAX));
        let barrier = Barrier::new(1).unwrap();
        barrier.wait_timeout(MAX).unwrap();

        let cond = Condition::new().unwrap();
        let mut g = cond.try_lock_for(MAX).unwrap();
        assert!(g.wait_for(|| true, Some(MAX)).unwrap());
        // A notifier that can only get the lock once this thread waits (and has released it).
        let c2 = cond.clone();
        let notifier = std::thread::spawn(move || {
            c2.lock().unwrap().notify_all();
        });
        assert!(g.wait_timeout(MAX).unwrap());
        drop(g);
        notifier.join().unwrap();

        let (a, b) = pipe(true).unwrap();
        a.send(&5u8).unwrap();
        assert!(b.poll(Some(MAX)).unwrap());
        assert_eq!(wait(&[&b], Some(MAX)).unwrap(), vec![0]);
        assert_eq!(b.recv::<u8>().unwrap(), 5);
    });
}
