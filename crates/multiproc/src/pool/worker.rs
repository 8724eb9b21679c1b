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
//! checked: a malformed message is that worker's failure, never the parent's.
//!
//! Which chunk a worker has begun is not a message: before running a chunk the worker stores
//! its `seq` in a word of shared memory it shares with the parent alone (its [`Mailbox`], a
//! [`Segment`]). When the worker dies the parent reads the cell: the chunk with that `seq`
//! (if its results did not come) was running and fails; the chunks after it never began and
//! go to other workers. A store costs nothing next to a message (a system call and, on a
//! busy machine, a wake-up of the parent's dispatcher that preempts a worker).
//!
//! The bulk of a chunk (its arguments, its outcomes) goes through the same mailbox when it
//! fits a slot, and the socket carries a small message saying so: a copy into shared memory
//! and one out of it, where a socket costs a copy into the kernel's buffers (pages allocated
//! and charged per message), a copy out, and a wake-up of the reader for each part of a
//! large message that arrives.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{
    self, CodeKind, ContextPart, Failure, FailureEntry, Kind, OutcomesHead, Place, ResultsHead,
    Task, OUTCOMES_HEAD, RESULTS_INLINE_HEAD,
};
use super::wire::{De, Ser};
use crate::codec::{ident, Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::process::channel::{self, FrameReader};
use crate::process::panic_message;
use crate::process::spawn::{CtxFnRef, CtxRunner, RunFnRef, Runner};
use crate::shm::{Segment, SegmentKind};

/// The kind of a worker's mailbox segment.
const MAILBOX_KIND: SegmentKind = SegmentKind::Other(crate::kinds::segment::POOL_MAILBOX);

/// Bytes of one slot of a worker's mailbox: a chunk's arguments, or its outcomes, up to this
/// size pass through shared memory; larger ones go inline in the socket message.
pub(crate) const SLOT: usize = 256 << 10;
/// Slots per direction: one for each chunk a worker may hold (the dispatcher's pipeline).
pub(crate) const SLOTS: usize = 2;
const ARGS_AT: usize = 64;
const OUTCOMES_AT: usize = ARGS_AT + SLOTS * SLOT;

/// A worker's mailbox, in shared memory between the parent and that worker alone: its
/// "started" cell (the `seq` of the chunk it began last, 0: none yet), and `SLOTS` slots each
/// for chunk arguments (written by the parent) and chunk outcomes (written by the worker).
/// Chunk `n` given to a worker uses slot `n % SLOTS` both ways; the parent gives chunk
/// `n + SLOTS` only after it has copied out the outcomes of chunk `n`, so a slot is never
/// written while the other side may still read it. Only touched pages use memory.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Mailbox(Segment);

impl Mailbox {
    pub(crate) fn new() -> Result<Mailbox> {
        Ok(Mailbox(Segment::create(
            MAILBOX_KIND,
            OUTCOMES_AT + SLOTS * SLOT,
        )?))
    }

    fn cell(&self) -> Option<&AtomicU64> {
        self.0.get::<AtomicU64>(0)
    }

    /// The worker: it begins chunk `seq`.
    pub(crate) fn begin(&self, seq: u64) {
        if let Some(c) = self.cell() {
            c.store(seq, Ordering::Release);
        }
    }

    /// The parent: the `seq` of the chunk the worker began last (any value a worker wrote:
    /// only compared with the `seq`s the parent handed out).
    pub(crate) fn last(&self) -> u64 {
        self.cell().map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// The parent: puts a chunk's arguments in slot `slot`; false when they don't fit.
    pub(crate) fn put_args(&self, slot: usize, bytes: &[u8]) -> bool {
        slot < SLOTS && bytes.len() <= SLOT && self.0.write_bytes(ARGS_AT + slot * SLOT, bytes)
    }

    /// The worker: appends the `len` argument bytes of slot `slot` to `out`.
    fn take_args(&self, slot: usize, len: usize, out: &mut Vec<u8>) -> bool {
        slot < SLOTS && len <= SLOT && self.0.read_bytes(ARGS_AT + slot * SLOT, len, out)
    }

    /// The worker: puts a chunk's outcomes in slot `slot`; false when they don't fit.
    fn put_outcomes(&self, slot: usize, bytes: &[u8]) -> bool {
        slot < SLOTS && bytes.len() <= SLOT && self.0.write_bytes(OUTCOMES_AT + slot * SLOT, bytes)
    }

    /// The parent: appends the `len` outcome bytes of slot `slot` to `out` (untrusted bytes;
    /// false when `len` is out of bounds).
    pub(crate) fn take_outcomes(&self, slot: usize, len: usize, out: &mut Vec<u8>) -> bool {
        slot < SLOTS && len <= SLOT && self.0.read_bytes(OUTCOMES_AT + slot * SLOT, len, out)
    }
}

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
/// (format above).
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

// Panics in workers. A task's panic is its outcome: the message goes back to the caller, in
// the task's error, and nothing is printed (std's default hook would print it, and with
// RUST_BACKTRACE set, every worker's backtrace, interleaved on the shared stderr). So the
// worker's thread is marked (`CAPTURE`), and a panic hook records where a panic of a marked
// thread happened (`WHERE`, added to the message) instead of printing; other threads' panics
// go to the hook that was there before.
//
// The hook is installed in the process that makes the pool, before it forks workers, and in
// a spawned worker before it runs anything: never in a forked worker, where `set_hook` would
// take std's hook lock — which another thread of the parent may have held at the fork
// (while panicking) — and where std's default hook may wait forever for its backtrace lock
// or stderr's lock, held at the fork by another thread. The hook a forked worker inherits
// only reads its thread-locals and formats a string.

thread_local! {
    /// This thread runs pool tasks: its panics are recorded, not printed.
    static CAPTURE: Cell<bool> = const { Cell::new(false) };
    /// Where the last recorded panic happened (`file:line:column`).
    static WHERE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The hook is installed in this process (inherited by forked children with the hook).
static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the panic hook described above, once per process (it passes every panic it does
/// not record to the hook that was installed before it). A hook set later replaces it:
/// workers forked after that print their tasks' panics again (their messages still come
/// back in the tasks' errors).
pub(crate) fn install_panic_hook() {
    // Two threads may both install it (the check and the store are apart): the outer one
    // then passes the panics it does not record to the inner one, which does the same.
    if HOOK_INSTALLED.load(Ordering::Acquire) || std::thread::panicking() {
        return;
    }
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CAPTURE.try_with(Cell::get).unwrap_or(false) {
            if let Some(l) = info.location() {
                let at = format!("{}:{}:{}", l.file(), l.line(), l.column());
                let _ = WHERE.try_with(|w| w.replace(Some(at)));
            }
        } else {
            prev(info)
        }
    }));
    HOOK_INSTALLED.store(true, Ordering::Release);
}

/// The message of a recorded panic, with where it happened: `message (at file:line:col)`.
pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    let msg = panic_message(p);
    match WHERE.try_with(|w| w.take()).ok().flatten() {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
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
/// becomes that task's outcome), appends the outcomes to `out` (format above). One
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
    CAPTURE.with(|c| c.set(true));
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

fn fewer(pid: i32) -> Error {
    Error::new(
        ErrorKind::ChildFailed,
        format!("pool worker {pid} sent fewer results than tasks"),
    )
}

fn malformed(pid: i32, msg: &str) -> Error {
    Error::new(
        ErrorKind::ChildFailed,
        format!("pool worker {pid} sent a malformed result: {msg}"),
    )
}

/// A chunk's outcomes as sent (see the module docs), split into the values and the list of
/// failed tasks. Everything is checked: the bytes come from another process.
struct Outcomes<'a> {
    values: &'a [u8],
    /// Failed tasks not read yet, and the bytes of their entries.
    failed: u32,
    failures: &'a [u8],
    pid: i32,
    count: usize,
    /// The index of the last failure read (they must increase).
    last: Option<u32>,
}

impl<'a> Outcomes<'a> {
    fn parse(bytes: &'a [u8], count: usize, pid: i32) -> Result<Outcomes<'a>> {
        let (head, values, failures) = OutcomesHead::decode(bytes).map_err(|_| fewer(pid))?;
        if head.failed as usize > count {
            return Err(malformed(pid, "more failures than tasks"));
        }
        Ok(Outcomes {
            values,
            failed: head.failed,
            failures,
            pid,
            count,
            last: None,
        })
    }

    /// The next failure entry: its task index and error.
    fn next_failure(&mut self) -> Option<Result<(u32, Error)>> {
        if self.failed == 0 {
            return None;
        }
        self.failed -= 1;
        let pid = self.pid;
        let r = (|| {
            let (entry, rest) = FailureEntry::decode(self.failures)
                .map_err(|e| malformed(pid, &format!("a task's outcome: {e}")))?;
            let (index, m) = (entry.index, entry.message);
            if index as usize >= self.count || self.last.is_some_and(|l| index <= l) {
                return Err(malformed(pid, "a failed task's index is out of order"));
            }
            let e = match entry.failure {
                Failure::Panicked => Error::new(
                    ErrorKind::ChildPanicked,
                    format!("task panicked in pool worker {pid}: {m}"),
                ),
                Failure::Failed => Error::new(
                    ErrorKind::Codec,
                    format!("task failed in pool worker {pid}: {m}"),
                ),
            };
            self.failures = rest;
            self.last = Some(index);
            Ok((index, e))
        })();
        if r.is_err() {
            self.failed = 0;
        }
        Some(r)
    }
}

/// The encoded values of a chunk's outcomes, after their type tag, which must be `R`'s.
///
/// # Errors
/// [`ErrorKind::Codec`] naming the types when it is another type's.
fn values_of<R>(values: &[u8], pid: i32) -> Result<&[u8]> {
    ident::check::<R>(values).map_err(|e| {
        Error::new(
            ErrorKind::Codec,
            format!("the results of pool worker {pid}: {}", e.message()),
        )
    })
}

/// Decodes the outcomes of a chunk of `count` tasks, as sent by a worker, appending one
/// `Result` per task (always `count` of them).
pub(crate) fn decode_outcomes<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<Result<R>>,
) {
    out.reserve(count);
    let mut o = match Outcomes::parse(bytes, count, pid) {
        Ok(o) => o,
        Err(e) => {
            let msg = e.message().to_string();
            out.extend((0..count).map(|_| Err(Error::new(ErrorKind::ChildFailed, msg.clone()))));
            return;
        }
    };
    let values = match values_of::<R>(o.values, pid) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.message().to_string();
            out.extend((0..count).map(|_| Err(Error::new(ErrorKind::Codec, msg.clone()))));
            return;
        }
    };
    let mut de = De::new(values);
    let mut next = o.next_failure();
    let mut i = 0;
    while i < count {
        match next {
            Some(Ok((index, _))) if index as usize == i => {
                let Some(Ok((_, e))) = next.take() else {
                    unreachable!()
                };
                out.push(Err(e));
                next = o.next_failure();
            }
            Some(Err(e)) => {
                let msg = e.message().to_string();
                out.extend(
                    (i..count).map(|_| Err(Error::new(ErrorKind::ChildFailed, msg.clone()))),
                );
                return;
            }
            _ => match R::deserialize(&mut de) {
                Ok(v) => out.push(Ok(v)),
                Err(e) => {
                    let msg = format!("a task's result does not decode: {e}");
                    out.extend((i..count).map(|_| Err(malformed(pid, &msg))));
                    return;
                }
            },
        }
        i += 1;
    }
}

/// Like [`decode_outcomes`], for callers that want values only: appends them to `out`, or
/// returns the error of the first failed task. No `Result` per task, one deserializer for
/// the whole chunk.
pub(crate) fn decode_values<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    pid: i32,
    out: &mut Vec<R>,
) -> Result<()> {
    let mut o = Outcomes::parse(bytes, count, pid)?;
    let values = values_of::<R>(o.values, pid)?;
    if let Some(r) = o.next_failure() {
        return Err(r?.1);
    }
    let mut de = De::new(values);
    for _ in 0..count {
        match R::deserialize(&mut de) {
            Ok(v) => out.push(v),
            Err(e) => {
                return Err(malformed(
                    pid,
                    &format!("a task's result does not decode: {e}"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::alloc_probe;

    fn half(x: u32) -> u32 {
        if x % 3 == 1 {
            panic!("no {x}");
        }
        x / 2
    }

    fn run(items: &[u32]) -> Vec<u8> {
        let mut args = Vec::new();
        ident::put_tag::<u32>(&mut args);
        let n = encode_items(items.iter().copied(), usize::MAX, &mut args)
            .0
            .unwrap();
        assert_eq!(n as usize, items.len());
        let mut out = Vec::new();
        run_items(&half, n, &args, &mut out).unwrap();
        out
    }

    #[test]
    fn outcomes_round_trip_with_panics_between_values() {
        let items: Vec<u32> = (0..10).chain([300, 70_000]).collect();
        let out = run(&items);
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, items.len(), 7, &mut all);
        assert_eq!(all.len(), items.len());
        for (x, r) in items.iter().zip(&all) {
            match r {
                Ok(v) => assert_eq!(*v, x / 2),
                Err(e) => {
                    assert_eq!(x % 3, 1);
                    assert_eq!(e.kind(), ErrorKind::ChildPanicked);
                    assert!(e.message().contains(&format!("no {x}")), "{e}");
                }
            }
        }
        // Values only: the first failure (item 1) is the error.
        let mut vals: Vec<u32> = Vec::new();
        let e = decode_values(&out, items.len(), 7, &mut vals).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChildPanicked);
        assert!(e.message().contains("no 1"), "{e}");
        // Panics back to back, first and last.
        let out = run(&[1, 4, 0, 7]);
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, 4, 7, &mut all);
        let shown: Vec<String> = all
            .iter()
            .map(|r| match r {
                Ok(v) => v.to_string(),
                Err(e) => e.message().rsplit(' ').next().unwrap_or("").to_string(),
            })
            .collect();
        assert_eq!(shown, ["1", "4", "0", "7"]);
        assert!(all[0].is_err() && all[1].is_err() && all[2].is_ok() && all[3].is_err());
        let ok = run(&[0, 2, 300, 70_001]);
        let mut vals: Vec<u32> = Vec::new();
        decode_values(&ok, 4, 7, &mut vals).unwrap();
        assert_eq!(vals, vec![0, 1, 150, 35_000]);
    }

    /// Issue 12, point 2: arguments of another type than the function takes fail every task
    /// of the chunk with a `Codec` error (none is decoded); results of another type than
    /// the caller expects likewise.
    #[test]
    fn arguments_and_results_of_another_type_are_codec_errors() {
        let mut args = Vec::new();
        ident::put_tag::<(u8, u8)>(&mut args);
        let n = encode_items([(1u8, 2u8), (3, 4)].into_iter(), usize::MAX, &mut args)
            .0
            .unwrap();
        let mut out = Vec::new();
        run_items(&half, n, &args, &mut out).unwrap();
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&out, 2, 7, &mut all);
        for r in &all {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
            assert!(e.message().contains("expected a `u32`"), "{e}");
        }
        let mut vals: Vec<u32> = Vec::new();
        assert_eq!(
            decode_values(&out, 2, 7, &mut vals).unwrap_err().kind(),
            ErrorKind::Codec
        );
        // Results: `u32` values read as `i32` (the same bytes would decode).
        let out = run(&[0, 2]);
        let mut all: Vec<Result<i32>> = Vec::new();
        decode_outcomes(&out, 2, 7, &mut all);
        for r in &all {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
            assert!(e.message().contains("expected a `i32`"), "{e}");
        }
        let mut vals: Vec<i32> = Vec::new();
        let e = decode_values(&out, 2, 7, &mut vals).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(vals.is_empty());
        let mut vals: Vec<u32> = Vec::new();
        decode_values(&out, 2, 7, &mut vals).unwrap();
        assert_eq!(vals, [0, 1]);
    }

    #[test]
    fn mailbox_slots_are_bounded() {
        let m = Mailbox::new().unwrap();
        let a = vec![7u8; SLOT];
        assert!(m.put_args(1, &a));
        let mut back = vec![1, 2];
        assert!(m.take_args(1, SLOT, &mut back));
        assert_eq!(back.len(), 2 + SLOT);
        assert!(back[2..].iter().all(|&x| x == 7));
        // The other slot and the outcomes are separate bytes.
        assert!(m.put_outcomes(0, b"abc"));
        assert!(m.put_args(0, b"xyz"));
        let mut o = Vec::new();
        assert!(m.take_outcomes(0, 3, &mut o));
        assert_eq!(o, b"abc");
        // Out of bounds: a slot past the last, a length past the slot.
        assert!(!m.put_args(SLOTS, b"x"));
        assert!(!m.put_outcomes(0, &vec![0; SLOT + 1]));
        let mut o = Vec::new();
        assert!(!m.take_outcomes(SLOTS, 1, &mut o));
        assert!(!m.take_outcomes(0, SLOT + 1, &mut o));
        assert!(!m.take_args(1, usize::MAX, &mut o));
        assert!(o.is_empty());
    }

    /// Decodes `bytes` as the outcomes of a chunk of `count` tasks of result type `R`, both
    /// ways, with the allocations measured: always `count` outcomes, never a panic, and no
    /// more allocated at once than the bytes there pay for.
    fn decode_checked<R: DeserializeOwned>(bytes: &[u8], count: usize) {
        let budget = (1 << 20) + 512 * bytes.len() + count * 64;
        let (all, peak) = alloc_probe::peak_bytes(|| {
            let mut all: Vec<Result<R>> = Vec::new();
            decode_outcomes(bytes, count, 7, &mut all);
            all
        });
        assert_eq!(all.len(), count);
        assert!(peak <= budget, "{peak} bytes for {} bytes", bytes.len());
        let (r, peak) = alloc_probe::peak_bytes(|| {
            let mut vals: Vec<R> = Vec::new();
            decode_values(bytes, count, 7, &mut vals).map(|()| vals.len())
        });
        if let Ok(n) = r {
            assert_eq!(n, count);
            assert!(
                all.iter().all(|r| r.is_ok()),
                "values only when every task returned"
            );
        }
        assert!(peak <= budget, "{peak} bytes for {} bytes", bytes.len());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 500,
            ..Default::default()
        })]

        /// A chunk's outcomes are bytes a worker wrote: whatever they are, the parent gets an
        /// outcome per task (values or errors), never a panic.
        #[test]
        fn arbitrary_outcomes_decode_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            count in 0usize..40,
        ) {
            decode_checked::<u32>(&bytes, count);
            decode_checked::<String>(&bytes, count);
            decode_checked::<Vec<(u64, Option<String>)>>(&bytes, count);
        }

        /// The same for real outcomes (values and failures), cut or damaged.
        #[test]
        fn damaged_outcomes_decode_or_fail_cleanly(
            items in proptest::collection::vec(0u32..1000, 0..30),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 1u8..),
                0..3,
            ),
        ) {
            let mut bytes = run(&items);
            let full = bytes.len();
            for (at, b) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
            bytes.truncate(cut.index(full + 1));
            decode_checked::<u32>(&bytes, items.len());
            if flips.is_empty() && bytes.len() == full {
                let mut all: Vec<Result<u32>> = Vec::new();
                decode_outcomes(&bytes, items.len(), 7, &mut all);
                for (x, r) in items.iter().zip(&all) {
                    match r {
                        Ok(v) => proptest::prop_assert_eq!(*v, x / 2),
                        Err(e) => proptest::prop_assert_eq!(e.kind(), ErrorKind::ChildPanicked),
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_garbage_outcomes_are_errors() {
        let out = run(&[0, 2, 4, 6]);
        for cut in 0..out.len() {
            let mut all: Vec<Result<u32>> = Vec::new();
            decode_outcomes(&out[..cut], 4, 7, &mut all);
            assert_eq!(all.len(), 4);
            assert!(all.iter().any(|r| r.is_err()));
            let mut vals: Vec<u32> = Vec::new();
            assert!(decode_values(&out[..cut], 4, 7, &mut vals).is_err());
        }
        let mut all: Vec<Result<u32>> = Vec::new();
        decode_outcomes(&[9, 1, 2, 3], 2, 7, &mut all);
        assert_eq!(all.len(), 2);
        assert!(all
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::ChildFailed));
    }
}
