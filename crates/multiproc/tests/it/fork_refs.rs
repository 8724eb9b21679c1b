//! Reference counts across fork (issue 17.1): a handle cloned into a forked child that returns
//! normally must not free the object under the parent, and a parent that lets go of an object
//! must not free it under a child still using it.
//!
//! For every primitive that lives in a shared arena slot (all but `Barrier` and `Condition`,
//! whose states own a segment), each test puts the object into a
//! state no fresh object has ("marked"), then allocates 20,000 fresh objects of the same kind
//! (more than an arena holds, so a freed slot is reused) and checks that the marked object
//! kept its state and every fresh one is fresh: an object placed on top of a live one would
//! show in both.

use std::time::Duration;

use multiproc::{
    pipe, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Process, Queue, RLock,
    Semaphore, SimpleQueue, Value,
};

use crate::util::with_watchdog;

const LIMIT: Duration = Duration::from_secs(120);
const FRESH: usize = 20_000;

/// From another thread of this process (so a re-entrant lock held by the caller counts as
/// held), whether `try` fails.
fn busy_from_another_thread(try_lock: impl FnOnce() -> bool + Send) -> bool {
    std::thread::scope(|s| s.spawn(try_lock).join().expect("probe thread"))
}

macro_rules! arena_object_tests {
    ($mod_name:ident, $ty:ty, $count:expr,
     make: $make:expr,
     mark: $mark:expr,
     fresh: $fresh:expr,
     is_marked: $is_marked:expr,
     is_fresh: $is_fresh:expr $(,)?) => {
        mod $mod_name {
            use super::*;

            fn make() -> $ty {
                let x: $ty = $make;
                let mark: fn(&$ty) = $mark;
                mark(&x);
                x
            }

            fn is_marked(x: &$ty) -> bool {
                let f: fn(&$ty) -> bool = $is_marked;
                f(x)
            }

            fn fresh_objects() -> Vec<$ty> {
                let fresh: fn() -> $ty = $fresh;
                let is_fresh: fn(&$ty) -> bool = $is_fresh;
                let v: Vec<$ty> = (0..$count).map(|_| fresh()).collect();
                assert!(
                    v.iter().all(is_fresh),
                    "a new object was placed on top of a live one"
                );
                v
            }

            /// The check a re-executed (Spawn) child runs on the object it received.
            fn check_in_spawned_child(x: $ty) -> bool {
                is_marked(&x)
            }

            // Issue 17.1 as reported: a clone moved into a forked child that returns normally.
            #[test]
            fn clone_into_forked_child_then_keep_using_in_parent() {
                with_watchdog(LIMIT, || {
                    let x = make();
                    let x2 = x.clone();
                    let seen = Process::fork(move || is_marked(&x2))
                        .unwrap()
                        .join()
                        .unwrap();
                    assert!(seen, "the forked child saw the object's state");
                    assert!(is_marked(&x), "the parent's object after the child ended");
                    // A freed slot fails the receiver's check ("arena slot does not hold
                    // this kind of object").
                    let spawned = Process::builder()
                        .spawn(check_in_spawned_child, x.clone())
                        .unwrap()
                        .join()
                        .unwrap();
                    assert!(spawned, "a spawned child received the live object");
                    let others = fresh_objects();
                    assert!(is_marked(&x), "no new object landed on the parent's");
                    drop(others);
                    assert!(is_marked(&x));
                });
            }

            // The other direction: the parent drops every handle while the child still
            // uses the object; the slot stays pinned until the child is reaped.
            #[test]
            fn parent_lets_go_while_forked_child_still_uses_it() {
                with_watchdog(LIMIT, || {
                    let x = make();
                    let go = Event::new().unwrap();
                    let go2 = go.clone();
                    let child = Process::fork(move || {
                        go2.wait_timeout(Duration::from_secs(60)).expect("no go");
                        is_marked(&x)
                    })
                    .unwrap();
                    // `x` moved into the closure, which the parent has dropped by now.
                    let others = fresh_objects();
                    go.set();
                    assert!(
                        child.join().unwrap(),
                        "the child's object was freed and reused by the parent"
                    );
                    drop(others);
                });
            }

            // Many forked children, each dropping its clone; the object survives them all,
            // and after the last handle is gone its slot is reused (no leak of counts).
            #[test]
            fn many_children_then_the_slot_is_freed_once() {
                with_watchdog(LIMIT, || {
                    let x = make();
                    let kids: Vec<_> = (0..8)
                        .map(|_| {
                            let x2 = x.clone();
                            Process::fork(move || {
                                let x3 = x2.clone();
                                drop(x2);
                                is_marked(&x3)
                            })
                            .unwrap()
                        })
                        .collect();
                    for k in kids {
                        assert!(k.join().unwrap());
                    }
                    assert!(is_marked(&x));
                    let others = fresh_objects();
                    assert!(is_marked(&x));
                    drop(others);
                });
            }
        }
    };
}

arena_object_tests!(lock, Lock, FRESH,
    make: Lock::new().unwrap(),
    mark: |l| std::mem::forget(l.lock().unwrap()),
    fresh: || Lock::new().unwrap(),
    is_marked: |l| l.is_locked(),
    is_fresh: |l| !l.is_locked(),
);

arena_object_tests!(rlock, RLock, FRESH,
    make: RLock::new().unwrap(),
    mark: |r| std::mem::forget(r.lock().unwrap()),
    fresh: || RLock::new().unwrap(),
    is_marked: |r| busy_from_another_thread(|| r.try_lock().is_err()),
    is_fresh: |r| !r.is_owned(),
);

arena_object_tests!(semaphore, Semaphore, FRESH,
    make: Semaphore::new(7).unwrap(),
    mark: |s| {
        s.acquire().forget();
        s.acquire().forget();
    },
    fresh: || Semaphore::new(1).unwrap(),
    is_marked: |s| s.value() == 5,
    is_fresh: |s| s.value() == 1,
);

arena_object_tests!(bounded_semaphore, BoundedSemaphore, FRESH,
    make: BoundedSemaphore::new(7).unwrap(),
    mark: |s| {
        s.acquire().forget();
        s.acquire().forget();
    },
    fresh: || BoundedSemaphore::new(1).unwrap(),
    is_marked: |s| s.value() == 5,
    is_fresh: |s| s.value() == 1,
);

arena_object_tests!(event, Event, FRESH,
    make: Event::new().unwrap(),
    mark: |e| e.set(),
    fresh: || Event::new().unwrap(),
    is_marked: |e| e.is_set(),
    is_fresh: |e| !e.is_set(),
);

// A condition's waiter slots take a segment of their own (an fd each): fewer fresh ones.
arena_object_tests!(condition, Condition, 100,
    make: Condition::with_lock(Lock::new().unwrap()).unwrap(),
    mark: |c| std::mem::forget(c.lock().unwrap()),
    fresh: || Condition::with_lock(Lock::new().unwrap()).unwrap(),
    is_marked: |c| c.lock_timeout(Duration::ZERO).is_err(),
    is_fresh: |c| c.lock_timeout(Duration::ZERO).is_ok(),
);

// A barrier's state is larger than an arena slot: it owns a segment (an fd each), so fewer
// fresh ones; the same tests still check that a clone in a child leaves it working.
arena_object_tests!(barrier, Barrier, 100,
    make: Barrier::new(3).unwrap(),
    mark: |_| (),
    fresh: || Barrier::new(2).unwrap(),
    is_marked: |b| b.parties() == 3,
    is_fresh: |b| b.parties() == 2,
);

arena_object_tests!(value, Value<u64>, FRESH,
    make: Value::new(12345u64).unwrap(),
    mark: |_| (),
    fresh: || Value::new(7u64).unwrap(),
    is_marked: |v| v.get() == 12345,
    is_fresh: |v| v.get() == 7,
);

// ---- primitives that own a segment: a clone into a forked child, then keep using it -------

fn sum_from_queue(q: Queue<u32>) -> u32 {
    (0..3)
        .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
        .sum()
}

#[test]
fn queue_clone_into_forked_child_then_keep_using_in_parent() {
    with_watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let q2 = q.clone();
        Process::fork(move || q2.put(1).unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 1);
        for i in 1..=3 {
            q.put(i).unwrap();
        }
        let sum = Process::spawn(sum_from_queue, q.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(sum, 6);
    });
}

#[test]
fn joinable_and_simple_queue_clones_into_forked_children() {
    with_watchdog(LIMIT, || {
        let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        let sq: SimpleQueue<u32> = SimpleQueue::new().unwrap();
        let (jq2, sq2) = (jq.clone(), sq.clone());
        Process::fork(move || {
            jq2.put(5).unwrap();
            sq2.put(6).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(jq.get_timeout(Duration::from_secs(30)).unwrap(), 5);
        jq.task_done().unwrap();
        jq.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(sq.get().unwrap(), 6);
        sq.put(7).unwrap();
        assert_eq!(sq.get().unwrap(), 7);
    });
}

#[test]
fn connection_clone_into_forked_child_then_keep_using_in_parent() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let b2 = b.try_clone().unwrap();
        Process::fork(move || b2.send(&1u32).unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(a.recv::<u32>().unwrap(), 1);
        b.send(&2u32).unwrap();
        assert_eq!(a.recv::<u32>().unwrap(), 2);
    });
}
