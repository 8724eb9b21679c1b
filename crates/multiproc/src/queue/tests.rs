//! In-process tests of the queue logic (cross-process tests are in `tests/it/queue.rs`).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

fn allocated_bytes(q: &Queue<Vec<u8>>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let fd = q.shared.segment().fd().as_raw_fd();
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .blocks()
        * 512
}

#[test]
fn fifo_bounded_and_nonblocking() {
    let q: Queue<u32> = Queue::bounded(3).unwrap();
    for i in 0..3 {
        q.try_put(i).unwrap();
    }
    assert!(q.is_full());
    assert_eq!(q.len(), 3);
    match q.try_put(9) {
        Err(TryPutError::Full(9)) => {}
        other => panic!("{other:?}"),
    }
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(9, Duration::from_millis(50)),
        Err(PutTimeoutError::Timeout(9))
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    for i in 0..3 {
        assert_eq!(q.get().unwrap(), i);
    }
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(50)),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[test]
fn bounded_zero_is_unbounded() {
    assert_eq!(Queue::<u8>::bounded(0).unwrap().maxsize(), None);
}

#[test]
fn close_drains_then_reports_closed() {
    let q: Queue<String> = Queue::new().unwrap();
    q.put("a".into()).unwrap();
    q.put("b".into()).unwrap();
    q.close();
    q.close();
    assert!(q.is_closed());
    match q.put("c".into()) {
        Err(PutError::Closed(s)) => assert_eq!(s, "c"),
        other => panic!("{other:?}"),
    }
    let got: Vec<String> = q.iter().map(|r| r.unwrap()).collect();
    assert_eq!(got, ["a", "b"]);
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(
        q.get_many_timeout(5, Duration::from_millis(10)),
        Err(GetTimeoutError::Closed)
    ));
}

#[test]
fn close_wakes_blocked_threads_at_once() {
    let q: Queue<u8> = Queue::bounded(1).unwrap();
    let getters: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(Duration::from_secs(30)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    q.close();
    for g in getters {
        assert!(matches!(g.join().unwrap(), Err(GetTimeoutError::Closed)));
    }
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn too_large_names_the_limit_and_the_fix() {
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
    assert_eq!(q.capacity_bytes(), 4096);
    let big = vec![7u8; 5000];
    match q.put(big) {
        Err(PutError::Failed(v, e)) => {
            assert_eq!(v.len(), 5000);
            assert_eq!(e.kind(), ErrorKind::TooLarge);
            let m = e.to_string();
            assert!(m.contains("4096") && m.contains("capacity_bytes"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // The largest message that fits does fit.
    let n = q.max_message_bytes() as usize;
    q.put_bytes(&vec![1u8; n]).unwrap();
    assert_eq!(q.get_bytes().unwrap().len(), n);
}

#[test]
fn wrong_type_is_an_error_at_get_and_the_queue_goes_on() {
    let q: Queue<String> = Queue::new().unwrap();
    q.put_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    q.put("fine".into()).unwrap();
    match q.get() {
        Err(GetError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.get().unwrap(), "fine");
}

#[test]
fn get_many_stops_before_a_bad_message() {
    let q: Queue<u32> = Queue::new().unwrap();
    q.put_many(vec![1, 2]).unwrap();
    q.put_bytes(&[0xff; 9]).unwrap();
    q.put(3).unwrap();
    assert_eq!(q.get_many(10).unwrap(), [1, 2]);
    assert!(matches!(q.get_many(10), Err(GetError::Failed(_))));
    assert_eq!(q.get_many(10).unwrap(), [3]);
}

#[test]
fn put_many_waits_for_room_and_keeps_order() {
    let q: Queue<u64> = Queue::bounded(4).unwrap();
    let q2 = q.clone();
    let consumer = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 100 {
            got.extend(q2.get_many_timeout(7, Duration::from_secs(10)).unwrap());
        }
        got
    });
    q.put_many((0..100).collect()).unwrap();
    assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<_>>());
}

#[test]
fn put_many_hands_back_the_rest_when_closed() {
    let q: Queue<u8> = Queue::bounded(2).unwrap();
    let q2 = q.clone();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        q2.close();
    });
    match q.put_many(vec![1, 2, 3, 4]) {
        Err(PutError::Closed(rest)) => assert_eq!(rest, [3, 4]),
        other => panic!("{other:?}"),
    }
    closer.join().unwrap();
    assert_eq!(q.get_many(10).unwrap(), [1, 2]);
}

#[test]
fn task_done_counts() {
    let q: JoinableQueue<u8> = JoinableQueue::new().unwrap();
    assert!(q.task_done().is_err());
    q.put_many(vec![1, 2]).unwrap();
    assert_eq!(q.unfinished_tasks(), 2);
    assert!(q.join_timeout(Duration::from_millis(20)).is_err());
    q.get().unwrap();
    q.task_done().unwrap();
    assert!(q.task_done().is_err(), "only one item was taken");
    q.get().unwrap();
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        q2.task_done().unwrap();
    });
    q.join_timeout(Duration::from_secs(10)).unwrap();
    t.join().unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn many_threads_no_loss_no_duplicates() {
    let q: Queue<(u32, u32)> = Queue::bounded(16).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    q.put((p, i)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for it in &q {
                    got.push(it.unwrap());
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close();
    let mut all: Vec<(u32, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let want: Vec<(u32, u32)> = (0..3)
        .flat_map(|p| (0..2000).map(move |i| (p, i)))
        .collect();
    assert_eq!(all, want);
}

#[test]
fn memory_follows_the_backlog() {
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(256 << 20).build().unwrap();
    let msg = vec![5u8; 1 << 20];
    for _ in 0..96 {
        q.put_bytes(&msg).unwrap();
    }
    let full = allocated_bytes(&q);
    assert!(full >= 96 << 20, "backlog is backed: {full}");
    for _ in 0..96 {
        assert_eq!(q.get_bytes().unwrap().len(), 1 << 20);
    }
    let drained = allocated_bytes(&q);
    assert!(
        drained <= 20 << 20, // only the warm area (16 MiB) stays
        "pages given back after draining: {drained}"
    );
    // A consumer that keeps up keeps the ring in its first pages.
    for _ in 0..200 {
        q.put_bytes(&[1u8; 1000]).unwrap();
        q.get_bytes().unwrap();
    }
    assert!(allocated_bytes(&q) <= 20 << 20);
}

#[test]
fn a_consumer_that_keeps_up_keeps_large_messages_in_the_warm_start() {
    // A fresh 1 GiB queue (no item bound: the producer never needs to look at the consumers
    // for room) carrying 1 MiB messages put and taken in turn: the producer must still notice
    // that the start is free again and wrap there, not march through fresh pages (each one
    // faulted in, zeroed and given back). Two frames' worth of pages is all it needs.
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    let msg = vec![3u8; 1 << 20];
    for _ in 0..48 {
        q.put(msg.clone()).unwrap();
        assert_eq!(q.get().unwrap().len(), 1 << 20);
    }
    let used = allocated_bytes(&q);
    assert!(used <= 3 << 20, "ring pages in use: {used}");
}

/// A word of the producers' committed slot (layout in ring/mod.rs), for corrupting in tests.
fn producer_slot_word(q: &Queue<u32>, word: usize) -> &AtomicU64 {
    let seq: &std::sync::atomic::AtomicU32 = q.shared.segment().get(384).unwrap();
    let slot = (seq.load(Ordering::Relaxed) & 1) as usize;
    q.shared.segment().get(392 + slot * 24 + word * 8).unwrap()
}

#[test]
fn corrupted_state_is_reported_and_the_queue_is_reset() {
    let q: Queue<u32> = Queue::new().unwrap();
    q.put_many(vec![1, 2, 3]).unwrap();
    producer_slot_word(&q, 0).store(u64::MAX - 6, Ordering::Relaxed); // tail
    match q.get() {
        Err(GetError::Failed(e)) => {
            assert_eq!(e.kind(), ErrorKind::InvalidState);
            assert!(e.to_string().contains("corrupted"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    q.put(4).unwrap();
    assert_eq!(q.get().unwrap(), 4);
}

#[test]
fn corrupted_frame_header_is_reported() {
    let q: Queue<u32> = Queue::new().unwrap();
    q.put(1).unwrap();
    // The first frame header is at ring offset 0 = payload offset 4096.
    let h: &AtomicU64 = q.shared.segment().get(4096).unwrap();
    h.store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(q.try_get(), Err(TryGetError::Failed(_))));
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn serialize_outside_an_fd_context_fails_cleanly() {
    let q: Queue<u32> = Queue::new().unwrap();
    assert!(postcard::to_allocvec(&q).is_err());
}

#[test]
fn typed_byte_vectors_and_structs_round_trip_through_the_ring() {
    // Byte vectors take the codec's one-copy path on both sides; check every byte, across
    // many sizes (frames padded differently, wrapping) and nested in other types.
    let q: Queue<(u32, Vec<u8>, Option<String>)> =
        Queue::builder().capacity_bytes(3 << 20).build().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = |n: usize| {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    let sizes = [0usize, 1, 7, 8, 9, 127, 128, 4095, 65_536, 1 << 20];
    for round in 0..3 {
        let sent: Vec<_> = sizes
            .iter()
            .map(|&n| {
                (
                    n as u32 + round,
                    bytes(n),
                    (n % 2 == 0).then(|| "x".repeat(n % 300)),
                )
            })
            .collect();
        for m in &sent {
            q.put(m.clone()).unwrap();
        }
        for m in &sent {
            assert_eq!(&q.get().unwrap(), m);
        }
    }
    let big: Queue<Vec<u8>> = Queue::new().unwrap();
    let v = bytes(3 << 20);
    big.put(v.clone()).unwrap();
    assert_eq!(big.get().unwrap(), v);
}

/// Serializes to a different length every time it is asked.
struct Shifty(std::cell::Cell<usize>);

impl Serialize for Shifty {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let n = self.0.get();
        self.0.set(n + 1);
        vec![0u8; n].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Shifty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Shifty(std::cell::Cell::new(
            Vec::<u8>::deserialize(d)?.len(),
        )))
    }
}

#[test]
fn a_value_that_changes_while_encoded_fails_the_put_and_nothing_is_queued() {
    let q: Queue<Shifty> = Queue::new().unwrap();
    match q.put(Shifty(std::cell::Cell::new(5))) {
        Err(PutError::Failed(_, e)) => {
            assert_eq!(e.kind(), ErrorKind::Codec);
            assert!(e.to_string().contains("changed size"), "{e}");
        }
        other => panic!("{:?}", other.map_err(|e| e.to_string())),
    }
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

thread_local! {
    static INNER: RefCell<Option<Queue<Reentrant>>> = const { RefCell::new(None) };
}

/// Puts into (or gets from) the queue in `INNER` while being encoded (decoded).
#[derive(Debug)]
struct Reentrant(u8);

impl Serialize for Reentrant {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0 == 1 {
            let r = INNER.with(|q| q.borrow().as_ref().unwrap().put(Reentrant(0)));
            if let Err(e) = r {
                return Err(serde::ser::Error::custom(e));
            }
        }
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Reentrant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        if v == 2 {
            let r = INNER.with(|q| q.borrow().as_ref().unwrap().try_get());
            if let Err(e) = r {
                return Err(D::Error::custom(format!("{e:?}")));
            }
        }
        Ok(Reentrant(v))
    }
}

#[test]
fn a_codec_callback_that_reenters_the_queue_is_an_error_not_a_hang() {
    let q: Queue<Reentrant> = Queue::new().unwrap();
    INNER.with(|i| *i.borrow_mut() = Some(q.clone()));
    // The put's first pass (measuring, no lock held) may put; the second (writing, under
    // the producer mutex) must not wait for itself.
    let e = match q.put(Reentrant(1)) {
        Err(PutError::Failed(_, e)) => e,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert!(
        e.to_string().contains("inside a Serialize or Deserialize"),
        "{e}"
    );
    // The get decodes under the consumer mutex: a get from inside fails the same way, and
    // the message is consumed as any message that fails to decode.
    while q.try_get().is_ok() {}
    q.put(Reentrant(2)).unwrap();
    q.put(Reentrant(3)).unwrap();
    match q.get() {
        Err(GetError::Failed(e)) => assert!(e.to_string().contains("inside a Serialize"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.get().unwrap().0, 3);
    INNER.with(|i| *i.borrow_mut() = None);
}

/// Deserializes a `u32`, but panics on 13.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Touchy(u32);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Touchy, D::Error> {
        let v = u32::deserialize(d)?;
        assert!(v != 13, "unlucky");
        Ok(Touchy(v))
    }
}

#[test]
fn a_panicking_deserialize_consumes_its_message_and_the_queue_goes_on() {
    let q: Queue<Touchy> = Queue::new().unwrap();
    let get = |q: &Queue<Touchy>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.try_get().map_err(|_| ())))
    };
    q.put_many(vec![Touchy(1), Touchy(13), Touchy(3)]).unwrap();
    assert_eq!(get(&q).unwrap(), Ok(Touchy(1)));
    assert!(get(&q).is_err(), "the panic reaches the caller");
    assert_eq!(get(&q).unwrap(), Ok(Touchy(3)), "and the message is gone");
    // get_many: the good items before it come back; the next call panics, then goes on.
    q.put_many(vec![Touchy(1), Touchy(13), Touchy(3)]).unwrap();
    let many = |q: &Queue<Touchy>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.get_many_timeout(10, Duration::ZERO).unwrap()
        }))
    };
    assert_eq!(many(&q).unwrap(), vec![Touchy(1)]);
    assert!(many(&q).is_err());
    assert_eq!(many(&q).unwrap(), vec![Touchy(3)]);
    assert!(q.is_empty());
}

// Issue 17 (2): a put into an unbounded queue waited for a consumer once the ring had wrapped
// early to its warm start with messages still queued (the bytes after the skip were lost
// until a get passed it). A put must wait only when the bytes in use (or `maxsize`) say the
// queue is full; every put below has a timeout or does not wait, so a regression fails
// instead of hanging.

/// A recognizable payload: message `i` of `len` bytes.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; len];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

#[test]
fn one_thread_puts_1mib_messages_after_one_passed_through() {
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    let mib = 1 << 20;
    q.put_timeout(numbered(0, mib), Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(2)).unwrap(),
        numbered(0, mib)
    );
    // The report: the second of these timed out with one message queued.
    for i in 1..=24 {
        if let Err(e) = q.put_timeout(numbered(i, mib), Duration::from_secs(2)) {
            panic!(
                "put {i} of 1 MiB into a 1 GiB queue holding {} failed: {e:?}",
                q.len()
            );
        }
    }
    assert_eq!(q.len(), 24);
    for i in 1..=24 {
        assert_eq!(q.try_get().unwrap(), numbered(i, mib), "message {i}");
    }
    assert!(q.is_empty());
}

#[test]
fn one_thread_puts_1kib_messages_after_one_get() {
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    for i in 0..300 {
        q.try_put(numbered(i, 1024)).unwrap();
    }
    assert_eq!(q.try_get().unwrap(), numbered(0, 1024));
    // Only 18 more went in before the fix (317 KiB queued in a 1 GiB ring).
    for i in 300..4000 {
        if let Err(e) = q.try_put(numbered(i, 1024)) {
            panic!(
                "put {i} of 1 KiB into a 1 GiB queue holding {} failed: {e:?}",
                q.len()
            );
        }
    }
    for i in 1..4000 {
        assert_eq!(q.try_get().unwrap(), numbered(i, 1024), "message {i}");
    }
    assert!(q.is_empty());
}

/// Issue 12, point 2: a queue read through a handle of another type (what a named queue
/// opened with the wrong `T` would be) refuses each message with a `Codec` error naming both
/// types, instead of decoding `(1u8, 2u8)` as the string `"\u{2}"`; a message of the right
/// type goes through, and the queue goes on. The writers are children of both start methods.
#[test]
fn a_message_of_another_type_is_refused_across_processes() {
    fn child(q: Queue<(u8, u8)>) {
        q.put((1, 2)).unwrap();
        q.put_many(vec![(3, 4), (5, 6)]).unwrap();
    }
    for m in [crate::StartMethod::Fork, crate::StartMethod::Spawn] {
        let pairs: Queue<(u8, u8)> = Queue::new().unwrap();
        let strings: Queue<String> = Queue::from_shared(pairs.shared.clone());
        let p = match m {
            crate::StartMethod::Fork => {
                let q = pairs.clone();
                crate::Process::fork(move || child(q))
            }
            crate::StartMethod::Spawn => crate::Process::spawn(child, pairs.clone()),
        }
        .unwrap();
        p.join().unwrap();
        let e = match strings.get_timeout(Duration::from_secs(20)) {
            Err(GetTimeoutError::Failed(e)) => e,
            other => panic!("{m:?}: {other:?}"),
        };
        assert_eq!(e.kind(), ErrorKind::Codec);
        let text = e.to_string();
        assert!(
            text.contains("expected a `alloc::string::String`"),
            "{text}"
        );
        assert!(text.contains("`(u8, u8)`"), "{text}");
        let mut place = String::new();
        assert!(matches!(
            strings.get_into(&mut place),
            Err(GetError::Failed(_))
        ));
        assert_eq!(pairs.get().unwrap(), (5, 6), "the queue goes on");
        strings.put("a string".into()).unwrap();
        assert!(matches!(pairs.try_get(), Err(TryGetError::Failed(_))));
        assert!(pairs.is_empty());
    }
}

// Issue 19: a producer faster than its consumer keeps a backlog, so the ring was never found
// empty and never moved back to its warm start; the tail marched through the whole 1 GiB
// ring, every page past the 16 MiB warm area faulted in and zeroed afresh (1 GB/s for 1 MiB
// messages instead of 20). A put that would touch those pages now first waits a little for
// the consumer to empty the ring (`DRAIN_MAX` in ring/mod.rs). The timing of one drain is up to
// the scheduler, so this asserts only that the tail came back to the ring's start at least
// once in 80 puts of 1 MiB, which it never did before the fix (80 MiB through a 1 GiB ring).
#[test]
fn a_backlog_that_drains_keeps_the_ring_in_its_warm_start() {
    let q: Queue<Vec<u8>> = Queue::bounded(4).unwrap();
    let mib = 1 << 20;
    let n = 64 + 16;
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let m = q.get_timeout(Duration::from_secs(20)).unwrap();
                assert_eq!(m[..4], (i as u32).to_le_bytes(), "message {i}");
            }
        })
    };
    let (mut prev, mut came_back) = (0, false);
    for i in 0..n {
        q.put_timeout(numbered(i as u32, mib), Duration::from_secs(20))
            .unwrap();
        let at = q.shared.tail_offset();
        came_back |= at < prev;
        prev = at;
    }
    consumer.join().unwrap();
    assert!(came_back, "the tail never came back to the ring's start");
}
