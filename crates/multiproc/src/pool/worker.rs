//! The worker side of the pool, and the wire format between parent and worker.
//!
//! Each worker has its own stream socket to the parent; frames as in `process/channel.rs`:
//!
//! ```text
//! parent -> worker   Task     seq u64 | kind u8 (0 fn, 1 closure) | trampoline i64 | target i64
//!                             | count u32 | count postcard-encoded arguments, back to back
//!                    Quit     (empty): finish and exit
//! worker -> parent   Ready    (empty): the initializer ran
//!                    InitFailed  the initializer's panic message
//!                    Started  seq u64: the worker begins this chunk
//!                    Results  seq u64 | count u32 | count outcomes, back to back
//! outcome := 0 | postcard(R)          the task returned
//!          | 1 | postcard(String)     the task panicked: the message
//!          | 2 | postcard(String)     the task could not run (argument or result codec)
//! ```
//! A worker handles its tasks in the order they came, so the parent matches a `Results` to
//! the oldest chunk it sent that worker (and checks `seq`). Everything the parent reads is
//! checked: a malformed message is that worker's failure, never the parent's.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::process::channel::{self, FrameReader, Tag};
use crate::process::panic_message;
use crate::process::spawn::{FnRef, Runner};

pub(crate) const OUT_OK: u8 = 0;
pub(crate) const OUT_PANIC: u8 = 1;
pub(crate) const OUT_FAILED: u8 = 2;

pub(crate) const KIND_FN: u8 = 0;
pub(crate) const KIND_CLOSURE: u8 = 1;

/// Bytes of a Task body before the arguments.
pub(crate) const TASK_HEADER: usize = 8 + 1 + 8 + 8 + 4;

/// A closure fixed at pool creation (Fork only): runs `count` encoded arguments.
pub(crate) type ClosureRunner =
    Arc<dyn Fn(u32, &[u8], &mut Vec<u8>) -> std::result::Result<(), String> + Send + Sync>;

/// An initializer: a `fn(A)` and its encoded argument.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) f: FnRef,
    pub(crate) args: Vec<u8>,
}

/// Runs the tasks of one chunk: `input` is `count u32 | arguments`.
pub(crate) struct ChunkRunner;

impl Runner for ChunkRunner {
    fn run<A: DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let (count, args) = split_count(input)?;
        run_items(&f, count, args, out)
    }
}

/// Runs an initializer `fn(A) -> ()` once; its panic becomes `Err(message)`.
pub(crate) struct InitRunner;

impl Runner for InitRunner {
    fn run<A: DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        input: &[u8],
        _out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let a: A = Postcard::decode(input).map_err(|e| e.to_string())?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(a);
        }))
        .map_err(|p| panic_message(&*p))
    }
}

fn split_count(input: &[u8]) -> std::result::Result<(u32, &[u8]), String> {
    if input.len() < 4 {
        return Err("truncated task message".into());
    }
    let count = u32::from_le_bytes(input[..4].try_into().expect("4 bytes"));
    Ok((count, &input[4..]))
}

/// Decodes `count` arguments one after the other, runs `f` on each (a panic is caught and
/// becomes that task's outcome), appends the outcomes to `out`.
pub(crate) fn run_items<A: DeserializeOwned, R: Serialize>(
    f: &dyn Fn(A) -> R,
    count: u32,
    mut args: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    for _ in 0..count {
        let (a, rest) = postcard::take_from_bytes::<A>(args)
            .map_err(|e| format!("a task argument does not decode: {e}"))?;
        args = rest;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(a))) {
            Ok(r) => {
                let mark = out.len();
                out.push(OUT_OK);
                if let Err(e) = Postcard::encode(&r, out) {
                    out.truncate(mark);
                    out.push(OUT_FAILED);
                    let msg = format!("cannot serialize the task's result: {e}");
                    Postcard::encode(&msg, out).map_err(|e| e.to_string())?;
                }
            }
            Err(p) => {
                out.push(OUT_PANIC);
                Postcard::encode(&panic_message(&*p), out).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// A closure runner for `F: Fn(A) -> R`.
pub(crate) fn closure_runner<A, R, F>(f: F) -> ClosureRunner
where
    A: DeserializeOwned,
    R: Serialize,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    Arc::new(move |count, args, out| run_items(&f, count, args, out))
}

/// An fd that crosses into a Spawn child through the fd table.
pub(crate) struct FdArg(pub(crate) OwnedFd);

impl Serialize for FdArg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let i = handle::export_fd(self.0.as_fd(), None).map_err(S::Error::custom)?;
        s.serialize_u32(i)
    }
}

impl<'de> Deserialize<'de> for FdArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let i = u32::deserialize(d)?;
        handle::import_fd(i).map(FdArg).map_err(D::Error::custom)
    }
}

/// The arguments of a worker started with the Spawn method.
#[derive(Serialize, Deserialize)]
pub(crate) struct SpawnArgs {
    pub(crate) sock: FdArg,
    pub(crate) init: Option<Init>,
}

/// The entry point of a spawned worker (run through `Process::spawn_fn`).
pub(crate) fn spawn_main(args: SpawnArgs) {
    worker_loop(args.sock.0, args.init, None)
}

/// The worker: run the initializer, say Ready, then run chunks until Quit or the parent is
/// gone.
pub(crate) fn worker_loop(sock: OwnedFd, init: Option<Init>, closure: Option<ClosureRunner>) {
    if let Some(init) = init {
        if let Err(msg) = init.f.call(&init.args, &mut Vec::new()) {
            let _ = channel::send_frame(sock.as_fd(), Tag::InitFailed, msg.as_bytes(), &[]);
            return;
        }
    }
    if channel::send_frame(sock.as_fd(), Tag::Ready, &[], &[]).is_err() {
        return;
    }
    let mut reader = FrameReader::default();
    let mut out = Vec::new();
    loop {
        let frame = match reader.read_blocking(&sock) {
            Ok(f) => f,
            Err(_) => return,
        };
        match frame.tag {
            Tag::Task => {}
            _ => return,
        }
        let body = &frame.body;
        if body.len() < TASK_HEADER {
            return;
        }
        let seq = &body[..8];
        let kind = body[8];
        let tramp = i64::from_le_bytes(body[9..17].try_into().expect("8 bytes"));
        let target = i64::from_le_bytes(body[17..25].try_into().expect("8 bytes"));
        let input = &body[25..];
        // Say which chunk runs now, so that if this worker dies the parent fails this one
        // and sends the ones queued behind it elsewhere.
        if channel::send_frame(sock.as_fd(), Tag::Started, seq, &[]).is_err() {
            return;
        }
        out.clear();
        out.extend_from_slice(seq);
        out.extend_from_slice(&input[..4]);
        let r = match (kind, &closure) {
            (KIND_FN, _) => FnRef::from_parts(tramp, target).call(input, &mut out),
            (KIND_CLOSURE, Some(c)) => match split_count(input) {
                Ok((count, args)) => c(count, args, &mut out),
                Err(e) => Err(e),
            },
            _ => Err("this worker has no closure".into()),
        };
        if let Err(msg) = r {
            // A protocol failure: say so and exit (the parent fails the chunk).
            let _ = channel::send_frame(sock.as_fd(), Tag::Failed, msg.as_bytes(), &[]);
            return;
        }
        if channel::send_frame(sock.as_fd(), Tag::Results, &out, &[]).is_err() {
            return;
        }
    }
}

/// Decodes the outcomes of a chunk of `count` tasks, as sent by a worker.
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    mut bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<Result<R>>,
) {
    for i in 0..count {
        let Some((&tag, rest)) = bytes.split_first() else {
            for _ in i..count {
                out.push(Err(Error::new(
                    ErrorKind::ChildFailed,
                    format!("pool worker {pid} sent fewer results than tasks"),
                )));
            }
            return;
        };
        let r = match tag {
            OUT_OK => postcard::take_from_bytes::<R>(rest)
                .map(|(v, rest)| (Ok(v), rest))
                .map_err(|e| format!("a task's result does not decode: {e}")),
            OUT_PANIC | OUT_FAILED => postcard::take_from_bytes::<String>(rest)
                .map(|(m, rest)| {
                    let e = if tag == OUT_PANIC {
                        Error::new(
                            ErrorKind::ChildPanicked,
                            format!("task panicked in pool worker {pid}: {m}"),
                        )
                    } else {
                        Error::new(
                            ErrorKind::Codec,
                            format!("task failed in pool worker {pid}: {m}"),
                        )
                    };
                    (Err(e), rest)
                })
                .map_err(|e| format!("a task's outcome does not decode: {e}")),
            _ => Err("unknown outcome tag".to_string()),
        };
        match r {
            Ok((v, rest)) => {
                out.push(v);
                bytes = rest;
            }
            Err(msg) => {
                for _ in i..count {
                    out.push(Err(Error::new(
                        ErrorKind::ChildFailed,
                        format!("pool worker {pid} sent a malformed result: {msg}"),
                    )));
                }
                return;
            }
        }
    }
}

/// Like [`decode_outcomes`], for callers that want values only: appends them to `out` and
/// stops at the first failed task (whose error it returns). No `Result` per task.
pub(crate) fn decode_values<R: DeserializeOwned>(
    mut bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<R>,
) -> Result<()> {
    let mut done = 0;
    for _ in 0..count {
        match bytes.split_first() {
            Some((&OUT_OK, rest)) => match postcard::take_from_bytes::<R>(rest) {
                Ok((v, rest)) => {
                    out.push(v);
                    bytes = rest;
                    done += 1;
                }
                Err(_) => break,
            },
            _ => break,
        }
    }
    if done == count {
        return Ok(());
    }
    // Slow path: a failure in this chunk; let the general decoder name it.
    let mut all: Vec<Result<R>> = Vec::new();
    decode_outcomes(bytes, 1, pid, &mut all);
    match all.pop() {
        Some(Err(e)) => Err(e),
        _ => Err(Error::new(
            ErrorKind::ChildFailed,
            format!("pool worker {pid} sent a malformed result"),
        )),
    }
}
