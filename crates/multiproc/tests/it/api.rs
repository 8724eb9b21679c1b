//! The shape of the API (issue 12): what a user writes first compiles and does what it says.

use std::time::{Duration, Instant};

use multiproc::queue::{GetError, PutError};
use multiproc::sync::{ArrayGuard, LockGuard, TryLockError, ValueGuard, WaitTimeoutError};
use multiproc::{
    pipe, Array, Condition, ErrorKind, Event, JoinableQueue, Lock, OwnerDied, Process, Queue,
    RLock, RecvError, RecvTimeoutError, SendError, SendTimeoutError, SimpleQueue, TryRecvError,
    Value,
};

use crate::util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(60);

// 12.6: the constructors infer the item type from use (the codec parameter has a default
// that the constructors name).
#[test]
fn queue_constructors_infer_the_item_type() {
    let q = Queue::new().unwrap();
    q.put(5u32).unwrap();
    assert_eq!(q.get().unwrap() + 1, 6);
    let b = Queue::bounded(2).unwrap();
    b.put("x".to_string()).unwrap();
    assert_eq!(b.get().unwrap(), "x");
    let s = SimpleQueue::new().unwrap();
    s.put(1.5f64).unwrap();
    assert_eq!(s.get().unwrap(), 1.5);
    let j = JoinableQueue::new().unwrap();
    j.put(7u8).unwrap();
    assert_eq!(j.get().unwrap(), 7);
    j.task_done().unwrap();
}

// 12.8: `for x in &q` for every queue type, and `try_iter`.
#[test]
fn every_queue_type_iterates_by_reference() {
    with_watchdog(LIMIT, || {
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        for i in 0..3 {
            jq.put(i).unwrap();
            sq.put(i * 10).unwrap();
        }
        jq.close();
        sq.close();
        let mut got = Vec::new();
        for x in &jq {
            got.push(x.unwrap());
            jq.task_done().unwrap();
        }
        assert_eq!(got, [0, 1, 2]);
        jq.join_timeout(LIMIT).unwrap();
        let got: Vec<u32> = (&sq).into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [0, 10, 20]);
    });
}

#[test]
fn try_iter_takes_what_is_there_and_never_waits() {
    with_watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new().unwrap();
        assert_eq!(q.try_iter().count(), 0, "empty: ends at once");
        q.put_many(vec![1, 2, 3]).unwrap();
        let now: Vec<u32> = q.try_iter().map(Result::unwrap).collect();
        assert_eq!(now, [1, 2, 3]);
        // A producer in another process: try_iter takes what has arrived, never blocks.
        let q2 = q.clone();
        let p = Process::fork(move || q2.put(4).unwrap()).unwrap();
        p.join().unwrap();
        assert_eq!(q.try_iter().map(Result::unwrap).collect::<Vec<_>>(), [4]);
    });
}

// ---- 12.4: Connection's timed and non-blocking forms ---------------------------------------

#[test]
fn connection_recv_timeout_on_an_empty_connection() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let t0 = Instant::now();
        let e = b
            .recv_timeout::<u32>(Duration::from_millis(50))
            .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(b
            .recv_bytes_deadline(Instant::now() + Duration::from_millis(20))
            .unwrap_err()
            .is_timeout());
        assert!(matches!(b.try_recv::<u32>(), Err(TryRecvError::Empty)));
        // Nothing was consumed by the ones that ran out.
        a.send(&1u32).unwrap();
        assert_eq!(b.recv_timeout::<u32>(LIMIT).unwrap(), 1);
        // End of file is end of file, not a timeout, in every form. The waiting form first:
        // a child another test forks meanwhile holds a copy of `a` until it exits (fork
        // copies every fd), and end of file comes only when every copy is closed.
        drop(a);
        assert!(matches!(
            b.recv_timeout::<u32>(LIMIT),
            Err(RecvTimeoutError::Eof)
        ));
        assert!(matches!(b.try_recv::<u32>(), Err(TryRecvError::Eof)));
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
    });
}

/// The case: a 100 MiB send with no reader blocked forever. Now it runs out, and the
/// connection is still usable in both directions: the cut-off message never reaches the
/// reader, the ones after it arrive whole.
#[test]
fn send_timeout_of_100_mib_with_no_reader_runs_out_and_the_connection_stays_usable() {
    with_watchdog(Duration::from_secs(120), || {
        let (a, b) = pipe(true).unwrap();
        let big = vec![7u8; 100 << 20];
        let t0 = Instant::now();
        let e = a
            .send_bytes_timeout(&big, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(e, SendTimeoutError::Timeout), "{e:?}");
        assert!(t0.elapsed() >= Duration::from_millis(200));
        // The typed form, cut off the same way.
        let e = a
            .send_deadline(&big, Instant::now() + Duration::from_millis(100))
            .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        // Small messages go on, then a large one with a reader (in another process).
        a.send_bytes(b"after").unwrap();
        let reader = Process::fork(move || {
            let first = b.recv_bytes_timeout(LIMIT).unwrap();
            let second = b.recv_bytes_timeout(LIMIT).unwrap();
            let third: Vec<u8> = b.recv_timeout(LIMIT).unwrap();
            b.send(&"reply").unwrap();
            (
                first,
                second.len(),
                second.iter().all(|&x| x == 7),
                third.len(),
            )
        })
        .unwrap();
        a.send_bytes_timeout(&big, LIMIT).unwrap();
        a.send_timeout(&vec![7u8; 3 << 20], LIMIT).unwrap();
        assert_eq!(a.recv_timeout::<String>(LIMIT).unwrap(), "reply");
        let (first, len, all_sevens, third) = reader.join().unwrap();
        assert_eq!(first, b"after", "the cut-off messages were skipped");
        assert_eq!((len, all_sevens, third), (100 << 20, true, 3 << 20));
    });
}

/// Whatever a killed peer does, nothing hangs: sends to a killed reader fail at once (plain
/// and timed), receives from a killed sender end with end of file.
#[test]
fn a_killed_peer_never_hangs_sends_or_receives() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let ready = Event::new().unwrap();
        let ready2 = ready.clone();
        // The child holds the only other copy of `b` (moved in; the parent's closes once the
        // child has started).
        let reader = Process::fork(move || {
            ready2.set();
            let _keep = b;
            std::thread::sleep(Duration::from_secs(60));
        })
        .unwrap();
        ready.wait_timeout(LIMIT).unwrap();
        let big = vec![1u8; 100 << 20];
        let sender = std::thread::scope(|s| {
            let h = s.spawn(|| a.send_bytes(&big));
            std::thread::sleep(Duration::from_millis(100));
            reader.kill().unwrap();
            h.join().unwrap()
        });
        assert!(reader.join().is_err());
        assert!(matches!(sender, Err(SendError::Disconnected)), "{sender:?}");
        assert!(matches!(
            a.send_bytes_timeout(&big, LIMIT),
            Err(SendTimeoutError::Disconnected)
        ));
        assert!(matches!(
            a.recv_timeout::<u8>(LIMIT),
            Err(RecvTimeoutError::Eof)
        ));
    });
}

// ---- 12.5: lock results in std's shape; one OwnerDied ---------------------------------------

/// The type makes the impossible outcomes impossible: `lock()`'s error is `OwnerDied` alone,
/// `try_lock()`'s adds `WouldBlock`, the timed ones add `Timeout` (exhaustive matches with no
/// catch-all arm), and every lock's `OwnerDied` is the crate's one type, whose `into_inner`
/// never panics.
#[test]
fn lock_results_have_std_shape_and_one_owner_died() {
    with_watchdog(LIMIT, || {
        fn guard_of<G>(r: Result<G, OwnerDied<G>>) -> G {
            r.unwrap_or_else(OwnerDied::into_inner)
        }
        let lock = Lock::new().unwrap();
        let plain: Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> = lock.lock();
        let g = guard_of(plain);
        match lock.try_lock() {
            Ok(_) => panic!("held"),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::OwnerDied(_)) => panic!("nobody died"),
        }
        match lock.lock_timeout(Duration::from_millis(1)) {
            Ok(_) => panic!("held"),
            Err(multiproc::sync::LockTimeoutError::Timeout) => {}
            Err(multiproc::sync::LockTimeoutError::OwnerDied(_)) => panic!("nobody died"),
        }
        drop(g);
        drop(guard_of(RLock::new().unwrap().lock()));
        let c = Condition::new().unwrap();
        let mut cg = guard_of(c.lock());
        let v = Value::new(1u8).unwrap();
        let _: ValueGuard<'_, u8> = guard_of(v.lock());
        let arr = Array::from_elem(1u8, 2).unwrap();
        let _: ArrayGuard<'_, u8> = guard_of(arr.lock());
        // A condition's wait keeps its guard: its OwnerDied is the same type, `OwnerDied<()>`.
        let waited: Result<(), OwnerDied> = cg.wait_for(|| true);
        waited.unwrap();
        let timed: Result<(), WaitTimeoutError> = cg.wait_timeout(Duration::from_millis(1));
        assert!(matches!(timed, Err(WaitTimeoutError::Timeout)));
        drop(cg);

        // A holder killed: every lock kind hands its guard over through the same type.
        let ready = Event::new().unwrap();
        let (l2, v2, a2, r2) = (lock.clone(), v.clone(), arr.clone(), ready.clone());
        let rl = RLock::new().unwrap();
        let rl2 = rl.clone();
        let holder = Process::fork(move || {
            std::mem::forget(l2.lock().unwrap());
            std::mem::forget(rl2.lock().unwrap());
            std::mem::forget(v2.lock().unwrap());
            std::mem::forget(a2.lock().unwrap());
            r2.set();
            std::thread::sleep(Duration::from_secs(60));
        })
        .unwrap();
        ready.wait_timeout(LIMIT).unwrap();
        holder.kill().unwrap();
        assert!(holder.join().is_err());
        let died: OwnerDied<LockGuard<'_>> = lock.lock().unwrap_err();
        let e: multiproc::Error = died.into();
        assert_eq!(e.kind(), ErrorKind::OwnerDied);
        assert!(lock.try_lock().is_ok(), "the lock works again");
        let g = rl
            .lock_timeout(LIMIT)
            .unwrap_err()
            .into_guard()
            .expect("the guard comes with OwnerDied");
        assert_eq!(rl.depth(), 1);
        drop(g);
        match v.try_lock() {
            Err(TryLockError::OwnerDied(died)) => {
                let mut g = died.into_inner();
                *g += 1;
            }
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert_eq!(v.get(), 2);
        let mut g = arr.lock().unwrap_err().into_inner();
        g[1] = 9;
        drop(g);
        assert_eq!(arr.to_vec(), [1, 9]);
    });
}

// ---- 12.9: Value and Array guards dereference ----------------------------------------------

#[test]
fn value_and_array_guards_deref() {
    with_watchdog(LIMIT, || {
        let v = Value::new(41u64).unwrap();
        *v.lock().unwrap() += 1;
        assert_eq!(v.get(), 42);
        let a = Array::from_slice(&[1u32, 2, 3, 4, 5]).unwrap();
        {
            let mut g = a.lock().unwrap();
            g[3] = 7;
            g[0] += 10;
            assert_eq!(g.iter().sum::<u32>(), 11 + 2 + 3 + 7 + 5);
            g.sort_unstable_by(|x, y| y.cmp(x));
            assert_eq!(&g[..2], &[11, 7]);
        }
        assert_eq!(a.to_vec(), [11, 7, 5, 3, 2]);
        // Python's `with v.get_lock(): v.value += 1` from two processes: exact.
        let counter = Value::new(0u64).unwrap();
        let arr = Array::from_elem(0u64, 4).unwrap();
        let workers: Vec<Process<()>> = (0..2)
            .map(|_| {
                let (c, arr) = (counter.clone(), arr.clone());
                Process::fork(move || {
                    for i in 0..2000 {
                        *c.lock().unwrap() += 1;
                        arr.lock().unwrap()[i % 4] += 1;
                    }
                })
                .unwrap()
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(counter.get(), 4000);
        assert_eq!(arr.to_vec(), [1000; 4]);
    });
}

/// The locks are re-entrant, so a deref must not alias another access of the same thread: a
/// guard that has handed out a reference has lent the data until it is dropped, and other
/// access from this thread meanwhile panics (a `RefCell`'s rule) instead of aliasing.
#[test]
fn a_guard_that_lent_its_data_out_refuses_the_other_paths_of_its_thread() {
    with_watchdog(LIMIT, || {
        let v = Value::new(1u32).unwrap();
        let panics =
            |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        {
            let mut g = v.lock().unwrap();
            *g += 1;
            assert!(panics(&|| {
                v.get();
            }));
            assert!(panics(&|| v.set(5)));
            assert!(panics(&|| {
                let other = v.lock().unwrap();
                let _ = *other;
            }));
            assert!(panics(&|| {
                let _ = v.lock().unwrap().get();
            }));
            // Its own guard goes on working.
            assert_eq!(*g, 2);
            g.set(3);
            assert_eq!(g.get(), 3);
        }
        // Dropped (also the ones unwound above): free again, and re-entrant without a deref.
        assert_eq!(v.get(), 3);
        {
            let mut outer = v.lock().unwrap();
            v.set(v.get() + 1);
            outer.set(outer.get() + 1);
            let inner = v.lock().unwrap();
            assert_eq!(
                *inner, 5,
                "the inner guard may lend while the outer has not"
            );
            assert!(panics(&|| {
                let _ = outer.get();
            }));
            drop(inner);
            *outer += 1;
        }
        assert_eq!(v.get(), 6);
        // Another thread waits for the lock as usual, whatever this one has lent.
        let g = v.lock().unwrap();
        let _ = *g;
        let v2 = v.clone();
        let t = std::thread::spawn(move || v2.get());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        drop(g);
        assert_eq!(t.join().unwrap(), 6);

        let a = Array::from_elem(0u8, 3).unwrap();
        let mut g = a.lock().unwrap();
        g[0] = 1;
        assert!(panics(&|| {
            a.get(0);
        }));
        assert!(panics(&|| {
            let _ = a.lock().unwrap()[1];
        }));
        drop(g);
        assert_eq!(a.to_vec(), [1, 0, 0]);
        // Debug does not panic while lent.
        let g = v.lock().unwrap();
        let _ = *g;
        assert!(format!("{v:?}").contains("lent"));
    });
}

// ---- 12.15: one catch-all name; is_closed everywhere ---------------------------------------

#[test]
fn one_catch_all_variant_name_and_is_closed() {
    with_watchdog(LIMIT, || {
        // A message that does not decode: `Failed(Error)` from a connection and a queue.
        let (mut a, b) = pipe(true).unwrap();
        a.send(&"not a number").unwrap();
        match b.recv::<u64>() {
            Err(RecvError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        let q: Queue<u64> = Queue::new().unwrap();
        q.put_bytes(&[0xff; 20]).unwrap();
        match q.get() {
            Err(GetError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        // Too large for the queue: `Failed` with the item back.
        let small: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
        match small.put(vec![0; 1 << 20]) {
            Err(PutError::Failed(v, e)) => {
                assert_eq!(v.len(), 1 << 20);
                assert_eq!(e.kind(), ErrorKind::TooLarge);
            }
            other => panic!("{other:?}"),
        }
        let bad_range = a.send_bytes_range(b"abc", 2, 5);
        assert!(matches!(bad_range, Err(SendError::Failed(_))));
        // `is_closed` on both.
        assert!(!a.is_closed() && !q.is_closed());
        a.close();
        q.close();
        assert!(a.is_closed() && q.is_closed());
    });
}

/// A message cut off by a timed send, then a full ring, then a plain send of a large message
/// that may have to wait for ring room for its marker while it holds the send lock: the
/// receiver, reading the cut-off message, must not wait for that sender (only it can make
/// the room). Whether the later sender finds room at once depends on the ring's layout, so
/// this guards the path without always reaching the wait.
#[test]
fn a_cut_off_message_then_a_full_ring_then_a_waiting_sender_do_not_hang() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let big = vec![3u8; 8 << 20];
        assert!(a
            .send_bytes_timeout(&big, Duration::from_millis(50))
            .unwrap_err()
            .is_timeout());
        let mut small = 0u32;
        for size in [4096usize, 64, 1] {
            while a.try_send_bytes(&vec![9u8; size]).is_ok() {
                small += 1;
            }
        }
        std::thread::scope(|s| {
            let sender = s.spawn(|| a.send_bytes(&big));
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..small {
                let m = b.recv_bytes_timeout(LIMIT).unwrap();
                assert!(m.iter().all(|&x| x == 9));
            }
            let m = b.recv_bytes_timeout(LIMIT).unwrap();
            assert_eq!(m.len(), big.len());
            sender.join().unwrap().unwrap();
        });
        assert!(b.try_recv_bytes().unwrap_err().is_empty());
    });
}
