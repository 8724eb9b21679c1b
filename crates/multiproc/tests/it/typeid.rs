//! Issue 12, point 2: a message of the wrong type is a `Codec` error at the receiver, never a
//! silently wrong value; the queue or connection goes on. Raw-bytes messages and typed ones
//! refuse each other the same way. Children of both start methods are the senders.
//!
//! (A wrong type in a child's *return value* or *Spawn arguments* cannot be produced through
//! the public API — both sides are one `fn(A) -> R` — so those paths are tested with real
//! children inside the crate: `process::tests`. Queues read through a handle of another
//! type: `queue::tests`.)

use std::time::Duration;

use multiproc::queue::{GetError, JoinableQueue, Queue, SimpleQueue};
use multiproc::{pipe, Connection, ErrorKind, Process, RecvError, StartMethod};

use crate::util::{start_with, with_watchdog};

const LIMIT: Duration = Duration::from_secs(60);
const T: Duration = Duration::from_secs(20);

fn recv_t<V: serde::de::DeserializeOwned>(c: &Connection) -> Result<V, RecvError> {
    c.poll_timeout(T)
        .unwrap_or_else(|e| panic!("nothing arrived within {T:?}: {e}"));
    c.recv()
}

/// The error of a receive that met a message of another kind or type.
fn codec_message(e: RecvError) -> String {
    assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
    e.to_string()
}

/// The child: a tuple of two bytes, then (to show the connection goes on) a string, then
/// raw bytes, then a typed string.
fn send_mixed(c: Connection) {
    c.send(&(1u8, 2u8)).unwrap();
    c.send(&"after the wrong one").unwrap();
    c.send_bytes(b"raw").unwrap();
    c.send(&"typed again".to_string()).unwrap();
    // A large one (over the socket, not the ring), of the wrong type too.
    c.send(&vec![7u32; 100_000]).unwrap();
    c.send(&"after the large one").unwrap();
}

fn pipe_wrong_type(m: StartMethod) {
    with_watchdog(LIMIT, move || {
        let (mine, theirs) = pipe(true).unwrap();
        let p = start_with(m, Process::builder(), send_mixed, theirs);
        // The example of issue 12: `(1u8, 2u8)` read as a `String` was `Ok("\u{2}")`.
        let e = codec_message(recv_t::<String>(&mine).unwrap_err());
        assert!(e.contains("alloc::string::String"), "{e}");
        assert_eq!(recv_t::<String>(&mine).unwrap(), "after the wrong one");
        // Raw bytes where a typed value was asked for: refused, consumed.
        let e = codec_message(recv_t::<String>(&mine).unwrap_err());
        assert!(e.contains("raw bytes"), "{e}");
        // A typed value where raw bytes were asked for: refused, consumed.
        mine.poll_timeout(T).unwrap();
        let e = codec_message(mine.recv_bytes().unwrap_err());
        assert!(e.contains("alloc::string::String"), "{e}");
        let e = codec_message(recv_t::<Vec<u8>>(&mine).unwrap_err());
        assert!(e.contains("alloc::vec::Vec<u8>"), "{e}");
        assert_eq!(recv_t::<String>(&mine).unwrap(), "after the large one");
        p.join().unwrap();
    });
}

#[test]
fn pipe_wrong_type_fork() {
    pipe_wrong_type(StartMethod::Fork);
}

#[test]
fn pipe_wrong_type_spawn() {
    pipe_wrong_type(StartMethod::Spawn);
}

/// The same type (and its borrowed forms: `&str` for `String`, `&[u8]` for `Vec<u8>`) is
/// received as sent.
#[test]
fn pipe_same_type_and_borrowed_forms() {
    fn child(c: Connection) {
        c.send(&"hello").unwrap();
        c.send(&("pair", 42i32)).unwrap();
        c.send(&b"bytes"[..]).unwrap();
        c.send(&Some(3.5f64)).unwrap();
    }
    with_watchdog(LIMIT, || {
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            let (mine, theirs) = pipe(true).unwrap();
            let p = start_with(m, Process::builder(), child, theirs);
            assert_eq!(recv_t::<String>(&mine).unwrap(), "hello");
            assert_eq!(
                recv_t::<(String, i32)>(&mine).unwrap(),
                ("pair".to_string(), 42)
            );
            assert_eq!(recv_t::<Vec<u8>>(&mine).unwrap(), b"bytes");
            assert_eq!(recv_t::<Option<f64>>(&mine).unwrap(), Some(3.5));
            p.join().unwrap();
        }
    });
}

/// A handle inside a message is typed too: a `Queue<(u8, u8)>` is not a `Queue<String>`.
/// Its fds, which came with the refused message, are closed, not leaked.
#[test]
fn a_handle_of_another_type_is_refused() {
    with_watchdog(LIMIT, || {
        let (a, b) = pipe(true).unwrap();
        let q: Queue<(u8, u8)> = Queue::new().unwrap();
        let before = crate::util::open_fds();
        a.send(&q).unwrap();
        let e = codec_message(recv_t::<Queue<String>>(&b).unwrap_err());
        assert!(e.contains("Queue<alloc::string::String"), "{e}");
        assert_eq!(
            crate::util::open_fds(),
            before,
            "the refused handle's fds are closed"
        );
        a.send(&q).unwrap();
        let q2: Queue<(u8, u8)> = recv_t(&b).unwrap();
        q2.put((1, 2)).unwrap();
        assert_eq!(q.get_timeout(T).unwrap(), (1, 2));
    });
}

/// Queues: raw bytes put by a child are refused by a typed get and the other way round;
/// each refused message is consumed and the queue goes on — for `Queue`, `SimpleQueue` and
/// `JoinableQueue`.
fn queue_raw_and_typed(m: StartMethod) {
    fn child((q, s, j): (Queue<String>, SimpleQueue<String>, JoinableQueue<String>)) {
        // postcard's encoding of `(1u8, 2u8)`, which as a `String` would read "\u{2}".
        q.put_bytes(&[1, 2]).unwrap();
        q.put("typed".into()).unwrap();
        q.put("ok".into()).unwrap();
        s.as_queue().put_bytes(&[1, 2]).unwrap();
        s.put("simple".into()).unwrap();
        j.put_bytes(&[1, 2]).unwrap();
        j.put("joinable".into()).unwrap();
    }
    with_watchdog(LIMIT, move || {
        let q: Queue<String> = Queue::new().unwrap();
        let s: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let j: JoinableQueue<String> = JoinableQueue::new().unwrap();
        let p = start_with(
            m,
            Process::builder(),
            child,
            (q.clone(), s.clone(), j.clone()),
        );
        p.join().unwrap();
        let failed = |e: GetError| match e {
            GetError::Failed(e) => {
                assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
                e.to_string()
            }
            other => panic!("expected a Codec error, got {other:?}"),
        };
        let e = failed(q.get().unwrap_err());
        assert!(
            e.contains("raw bytes") && e.contains("alloc::string::String"),
            "{e}"
        );
        let e = failed(q.get_bytes().unwrap_err());
        assert!(e.contains("expected raw bytes"), "{e}");
        assert_eq!(q.get().unwrap(), "ok");
        assert!(failed(s.get().unwrap_err()).contains("raw bytes"));
        assert_eq!(s.get().unwrap(), "simple");
        assert!(failed(j.get().unwrap_err()).contains("raw bytes"));
        j.task_done().unwrap();
        assert_eq!(j.get().unwrap(), "joinable");
        j.task_done().unwrap();
        j.join_timeout(T).unwrap();
        // get_many and get_into refuse the same way; raw to raw is untouched.
        q.put_bytes(&[9]).unwrap();
        assert!(failed(q.get_many(4).unwrap_err()).contains("raw bytes"));
        q.put_bytes(&[9]).unwrap();
        let mut place = String::from("kept?");
        assert!(failed(q.get_into(&mut place).unwrap_err()).contains("raw bytes"));
        q.put_bytes(&[9, 8]).unwrap();
        assert_eq!(q.get_bytes().unwrap(), [9, 8]);
        q.put_many(vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(q.get_many(4).unwrap(), ["a", "b"]);
        assert!(q.is_empty());
    });
}

#[test]
fn queue_raw_and_typed_fork() {
    queue_raw_and_typed(StartMethod::Fork);
}

#[test]
fn queue_raw_and_typed_spawn() {
    queue_raw_and_typed(StartMethod::Spawn);
}
