//! The worker side of the pool, and what the messages between parent and worker mean.
//!
//! Each worker has its own stream socket to the parent; the messages on it, and their
//! layout, are in `protocol.rs`.
//!
//! `tag(A)` and `tag(R)` are the type tags of the arguments and results (`codec/ident.rs`):
//! a worker refuses arguments of another type than its function takes (each task of the
//! chunk fails with a `Codec` error) and the parent refuses results of another type than it
//! expects (likewise), so no value is ever decoded as another type. Both sides are one
//! monomorphized `fn(A) -> R` of one binary, so this costs two compares per chunk and
//! guards against a damaged or hostile peer. (A context's bytes carry no tag: they are
//! decoded once per worker, by the same monomorphized runner that the parent encoded them
//! for.)
//!
//! A worker holds one context (the one a `WithContext` sent last), decoded once; the parent
//! knows which (it sends chunks to a worker in the order the worker runs them) and sends a
//! context's bytes with the first chunk that needs them on that worker.
//!
//! The values carry no per-task status byte (one store less per task in the worker, one load
//! and branch less per task in the parent): the tasks that failed are listed after them, by
//! index, in increasing order.
//! A worker handles its tasks in the order they came, so the parent matches a `Results` to
//! the oldest chunk it sent that worker (and checks `seq`). Everything the parent reads is
//! checked: a malformed message is that worker's failure, never the parent's (the parent
//! reads a chunk's outcomes in `outcomes.rs`).
//!
//! Which chunk a worker has begun is not a message: before running a chunk the worker stores
//! its `seq` in a word of shared memory it shares with the parent alone (its [`Mailbox`], a
//! [`Segment`](crate::shm::Segment), in `mailbox.rs`). When the worker dies the parent reads
//! the cell: the chunk with that `seq` (if its results did not come) was running and fails;
//! the chunks after it never began and go to other workers. A store costs nothing next to a
//! message (a system call and, on a busy machine, a wake-up of the parent's dispatcher that
//! preempts a worker).
//!
//! The bulk of a chunk (its arguments, its outcomes) goes through the same mailbox when it
//! fits a slot, and the socket carries a small message saying so: a copy into shared memory
//! and one out of it, where a socket costs a copy into the kernel's buffers (pages allocated
//! and charged per message), a copy out, and a wake-up of the reader for each part of a
//! large message that arrives.

use std::any::Any;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::mailbox::Mailbox;
use super::panics::{self, install_panic_hook, panic_text};
use super::protocol::{
    self, CodeKind, ContextPart, Failure, FailureEntry, Kind, OutcomesHead, Place, ResultsHead,
    Task, OUTCOMES_HEAD, RESULTS_INLINE_HEAD,
};
use super::wire::{De, Ser};
use crate::codec::{ident, Codec, Postcard};
use crate::error::{Error, ErrorKind};
use crate::handle;
use crate::process::channel::{self, FrameReader};
use crate::process::spawn::{CtxFnRef, CtxRunner, RunFnRef, Runner};

/// A closure fixed at pool creation (Fork only): runs `count` encoded arguments.
pub(crate) type ClosureRunner =
    Arc<dyn Fn(u32, &[u8], &mut Vec<u8>) -> std::result::Result<(), String> + Send + Sync>;

/// An initializer: a `fn(A)` and its encoded argument.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) f: RunFnRef,
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

/// The context a worker holds (see the module docs): its id, its bytes until a chunk decodes
/// them, then the value.
#[derive(Default)]
pub(crate) struct ContextCache {
    id: u64,
    bytes: Vec<u8>,
    value: Option<Box<dyn Any>>,
}

impl CtxRunner for ChunkRunner {
    fn run<C: DeserializeOwned + 'static, A: DeserializeOwned, R: Serialize>(
        f: fn(&C, A) -> R,
        state: &mut dyn Any,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let (count, args) = split_count(input)?;
        let cache = state
            .downcast_mut::<ContextCache>()
            .ok_or("a context task without a context")?;
        if !cache.value.as_ref().is_some_and(|v| v.is::<C>()) {
            let bytes = std::mem::take(&mut cache.bytes);
            let decoded = std::panic::catch_unwind(|| C::deserialize(&mut De::new(&bytes)));
            match decoded {
                Ok(Ok(c)) => cache.value = Some(Box::new(c)),
                Ok(Err(e)) => {
                    let msg = format!("the context does not decode: {e}");
                    return fail_all::<R>(count, Failure::Failed, &msg, out);
                }
                Err(p) => return fail_all::<R>(count, Failure::Panicked, &panic_text(&*p), out),
            }
        }
        let c: &C = cache
            .value
            .as_ref()
            .and_then(|v| v.downcast_ref())
            .ok_or("the context has another type")?;
        run_items(&|a| f(c, a), count, args, out)
    }
}

/// Outcomes for `count` tasks of result type `R` that all failed with the same message
/// (format in `protocol.rs`).
fn fail_all<R>(
    count: u32,
    failure: Failure,
    msg: &str,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let head = OutcomesHead {
        failed: count,
        vlen: ident::TAG_LEN as u64,
    };
    out.extend_from_slice(&head.to_bytes());
    ident::put_tag::<R>(out);
    for i in 0..count {
        FailureEntry::encode(i, failure, msg, out)?;
    }
    Ok(())
}

/// Runs an initializer `fn(A) -> ()` once; its panic becomes `Err(message)`.
pub(crate) struct InitRunner;

impl Runner for InitRunner {
    fn run<A: DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        input: &[u8],
        _out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        // The arguments' type tag first (`codec/ident.rs`).
        let a: A = ident::check::<A>(input)
            .and_then(|value| Postcard::decode(value))
            .map_err(|e| e.to_string())?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(a);
        }))
        .map_err(|p| panic_text(&*p))
    }
}

fn split_count(input: &[u8]) -> std::result::Result<(u32, &[u8]), String> {
    protocol::split_count(input).map_err(|e| e.to_string())
}

/// A serializer appending to `out` (the pool's codec: postcard's format, see `wire.rs`).
pub(crate) fn serializer(out: &mut Vec<u8>) -> Ser<'_> {
    Ser::new(out)
}

/// Encodes up to `n` items of `items` into `out`, back to back, with one serializer; returns
/// how many items it took, and the iterator. After the first item that fails to serialize
/// the others are still taken (and counted) but not encoded, and the error is returned with
/// the count.
///
/// The iterator is taken by value and handed back: as a local its state stays in registers
/// through the loop (through a `&mut` it was stored back to memory after every item, a
/// third of the time of encoding a `u64`).
pub(crate) fn encode_items<A: Serialize, I: Iterator<Item = A>>(
    mut items: I,
    n: usize,
    out: &mut Vec<u8>,
) -> (std::result::Result<u32, (Error, u32)>, I) {
    crate::handle::take_note();
    let mut ser = serializer(out);
    let mut count = 0u32;
    let mut err = None;
    for a in items.by_ref().take(n) {
        if err.is_none() {
            if let Err(e) = a.serialize(&mut ser) {
                let detail = crate::handle::take_note().unwrap_or_else(|| e.to_string());
                err = Some(Error::new(
                    ErrorKind::Codec,
                    format!("cannot serialize value: {detail}"),
                ));
            }
        }
        count += 1;
    }
    let r = match err {
        Some(e) => Err((e, count)),
        None => Ok(count),
    };
    (r, items)
}

/// Decodes `count` arguments one after the other, runs `f` on each (a panic is caught and
/// becomes that task's outcome), appends the outcomes to `out` (format in `protocol.rs`). One
/// deserializer reads all the arguments and one serializer writes all the values; one
/// `catch_unwind` covers the run of tasks up to a panic (a new one starts after it), not one
/// per task.
pub(crate) fn run_items<A: DeserializeOwned, R: Serialize>(
    f: &dyn Fn(A) -> R,
    count: u32,
    args: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // Arguments of another type than `f` takes: every task fails with the `Codec` error
    // (`codec/ident.rs`), none is decoded.
    let args = match ident::check::<A>(args) {
        Ok(args) => args,
        Err(e) => return fail_all::<R>(count, Failure::Failed, e.message(), out),
    };
    let mut de = De::new(args);
    let head = out.len();
    out.extend_from_slice(&[0; OUTCOMES_HEAD]); // filled in at the end
    ident::put_tag::<R>(out); // the first bytes of the values
                              // Room for small values (a few bytes each); larger ones grow the buffer.
    out.reserve((count as usize).saturating_mul(8).min(1 << 24));
    // The failed tasks' entries (index | tag | message), appended after the values.
    let mut failures: Vec<u8> = Vec::new();
    let mut failed = 0u32;
    let mut done = 0u32;
    // Where the value of task `done` starts: a failure rolls `out` back to it.
    let mut mark = out.len();
    let mut fail = |index: u32, failure: Failure, msg: String, failures: &mut Vec<u8>| {
        FailureEntry::encode(index, failure, &msg, failures)?;
        failed += 1;
        Ok::<(), String>(())
    };
    while done < count {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut ser = serializer(out);
            while done < count {
                mark = ser.out.len();
                let a = A::deserialize(&mut de)
                    .map_err(|e| format!("a task argument does not decode: {e}"))?;
                let r = f(a);
                if let Err(e) = r.serialize(&mut ser) {
                    ser.out.truncate(mark);
                    let msg = format!("cannot serialize the task's result: {e}");
                    fail(done, Failure::Failed, msg, &mut failures)?;
                }
                done += 1;
            }
            Ok::<(), String>(())
        }));
        match run {
            Ok(Ok(())) => break,
            Ok(Err(e)) => return Err(e),
            Err(p) => {
                // Task `done` panicked (in its function, or in its argument's or result's
                // serde code): its outcome is the panic message.
                out.truncate(mark);
                fail(done, Failure::Panicked, panic_text(&*p), &mut failures)?;
                done += 1;
            }
        }
    }
    let vlen = (out.len() - head - OUTCOMES_HEAD) as u64;
    out[head..head + OUTCOMES_HEAD].copy_from_slice(&OutcomesHead { failed, vlen }.to_bytes());
    out.extend_from_slice(&failures);
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
    pub(crate) mailbox: Mailbox,
    pub(crate) init: Option<Init>,
}

/// The entry point of a spawned worker (run through `Process::spawn`).
pub(crate) fn spawn_main(args: SpawnArgs) {
    // A fresh process, with no other thread yet: safe to install the hook here.
    install_panic_hook();
    worker_loop(args.sock.0, args.mailbox, args.init, None)
}

/// The worker: run the initializer, say Ready, then run chunks until Quit or the parent is
/// gone.
pub(crate) fn worker_loop(
    sock: OwnedFd,
    mailbox: Mailbox,
    init: Option<Init>,
    closure: Option<ClosureRunner>,
) {
    // This thread's panics (the initializer's, the tasks') are outcomes: not printed.
    panics::capture_this_thread();
    if let Some(init) = init {
        if let Err(msg) = init.f.call(&init.args, &mut Vec::new()) {
            let _ = channel::send_frame(sock.as_fd(), Kind::InitFailed as u8, msg.as_bytes(), &[]);
            return;
        }
    }
    if channel::send_frame(sock.as_fd(), Kind::Ready as u8, &[], &[]).is_err() {
        return;
    }
    let mut reader = FrameReader::without_fds();
    let mut out = Vec::new();
    let mut small = Vec::new();
    let mut args = Vec::new();
    let mut context = ContextCache::default();
    loop {
        let (kind, raw) = match reader.read_blocking_raw(&sock) {
            Ok(f) => f,
            Err(_) => return,
        };
        // Anything but a well-formed Task (Quit included) ends the worker.
        if kind != Kind::Task as u8 {
            return;
        }
        let Ok(task) = Task::decode(&raw[channel::HEADER..]) else {
            return;
        };
        match task.context {
            None => {}
            Some(ContextPart::Held { id }) if context.id == id && id != 0 => {}
            Some(ContextPart::Held { .. }) => return,
            Some(ContextPart::New { id, bytes }) => {
                context = ContextCache {
                    id,
                    bytes: bytes.to_vec(),
                    value: None,
                }
            }
        }
        let slot = task.slot as usize;
        let input: &[u8] = match task.args {
            Place::Inline(bytes) => bytes,
            Place::InSlot(len) => {
                args.clear();
                if !usize::try_from(len).is_ok_and(|len| mailbox.take_args(slot, len, &mut args)) {
                    return;
                }
                &args
            }
        };
        let Ok((count, _)) = protocol::split_count(input) else {
            return;
        };
        // Say which chunk runs now, so that if this worker dies the parent fails this one
        // and sends the ones queued behind it elsewhere.
        mailbox.begin(task.seq);
        // The outcomes go inline after the Results header (moved to the slot below).
        let head = |outcomes| ResultsHead {
            seq: task.seq,
            count,
            outcomes,
        };
        out.clear();
        head(Place::Inline(&[])).encode(&mut out);
        let (trampoline, target) = (task.trampoline, task.target);
        let r = match (task.code, &closure) {
            (CodeKind::Fn, _) => RunFnRef::from_parts(trampoline, target).call(input, &mut out),
            (CodeKind::Context, _) => {
                CtxFnRef::from_parts(trampoline, target).call(&mut context, input, &mut out)
            }
            (CodeKind::Closure, Some(c)) => match split_count(input) {
                Ok((count, args)) => c(count, args, &mut out),
                Err(e) => Err(e),
            },
            (CodeKind::Closure, None) => Err("this worker has no closure".into()),
        };
        if let Err(msg) = r {
            // A protocol failure: say so and exit (the parent fails the chunk).
            let _ = channel::send_frame(sock.as_fd(), Kind::Failed as u8, msg.as_bytes(), &[]);
            return;
        }
        let outcomes = &out[RESULTS_INLINE_HEAD..];
        let sent = if mailbox.put_outcomes(slot, outcomes) {
            small.clear();
            head(Place::InSlot(outcomes.len() as u64)).encode(&mut small);
            channel::send_frame(sock.as_fd(), Kind::Results as u8, &small, &[])
        } else {
            channel::send_frame(sock.as_fd(), Kind::Results as u8, &out, &[])
        };
        if sent.is_err() {
            return;
        }
        // The next task is read into this (warm) buffer.
        reader.recycle(raw);
    }
}
