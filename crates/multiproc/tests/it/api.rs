//! The shape of the API (issue 12): what a user writes first compiles and does what it says.

use std::time::Duration;

use multiproc::{JoinableQueue, Process, Queue, SimpleQueue};

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
