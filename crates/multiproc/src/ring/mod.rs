//! The ring engine: a shared segment (control block, committed states, ring bytes) and the
//! raw operations on it, under two facades (`queue/` and `pipe/dir.rs`). Split by role:
//! this file the layout, opening and the commit protocol; `geometry.rs` the ring arithmetic;
//! `put.rs`, `get.rs`; `wait.rs` (close, tasks, sleeping and waking); `repair.rs`; and
//! `model.rs`, the model checker.
//!
//! # Layout (payload offsets of a `SegmentKind::Queue` segment)
//!
//! ```text
//! 0     config     magic b"MPQUEUE3", cap, warm, maxsize (u64 each; u64::MAX = no maxsize):
//!                  written once by the creator, copied and validated by every process
//! 128   pmutex     RawMutex: serializes producers (sync/raw_mutex.rs); then the producers'
//!                  spinner slot u32 (wait.rs, `spin_for`)
//! 256   cmutex     RawMutex: serializes consumers; then the consumers' spinner slot u32
//! 384   producer   pseq u32 (commit counter), getters u32 (sleeping getters: epoch and
//!                  count, and their futex word; wait.rs `Sleepers`; high bit: WATCHED),
//!                  pslots [PSlot; 2] {tail, puts, closed}
//! 512   consumer   cseq u32 (commit counter), putters u32 (sleepers, as getters; high bit:
//!                  WATCHED), joiners u32 (sleepers), cslots [CSlot; 2] {head, gets, done,
//!                  reclaimed, punch_to}
//! 640   ready      lock RawMutex, rung u32: the readiness bell (ready.rs; only when watched)
//! 4096  ring       cap bytes of frames (geometry.rs)
//! ```
//!
//! A queue's own segment holds one such area at offset 0. A connection keeps both its
//! directions' areas in one segment of its own (`pipe/dir.rs`): there the offsets above
//! count from the area's start, a page-aligned payload offset (`SharedQueue::create_in`,
//! `open_at`, which checks that the whole area lies inside the segment).
//!
//! Each group sits on its own cache lines: producers write only the producer lines,
//! consumers only the consumer lines, so a producer and a consumer never contend for a lock
//! and read each other's lines only when the ring looks full or empty to them (each handle
//! keeps the last positions it saw of the other side, which only grow).
//!
//! # Commit protocol (crash safety)
//!
//! Each side's state is one slot of a pair; the active one is `slots[seq & 1]`. Under its
//! side's mutex, an operation reads the active slot, writes frames into *free* ring bytes
//! (a put) or copies frames out (a get), fills the inactive slot with the new state, and
//! commits with a single store `seq = seq + 1`. A process killed anywhere before that store
//! changed nothing that counts (bytes it wrote lie in free space, the slot it wrote is
//! inactive); killed after it, the operation is complete. So on `OwnerDied` there is nothing
//! to repair: each side is consistent by construction, and the two sides only ever publish
//! positions that keep `reclaimed <= head <= tail <= reclaimed + cap`. A consumer killed
//! after its commit has taken its batch with it (at most one `get_many`).
//!
//! Taken bytes are given back to producers in two steps when pages are to be discarded:
//! the get commits `head` with `punch_to` set, discards the pages in `[reclaimed, punch_to)`
//! (nobody may write there yet), then commits `reclaimed = punch_to`. A process killed
//! in between leaves `punch_to` set; the next consumer (or a producer waiting for room)
//! finishes the step.
//!
//! Readers of the other side's state use the slot pair as a seqlock: read `seq`, the active
//! slot, then `seq` again.
//!
//! A sleeper registers in its side's sleeper word (getters, putters, joiners), looks at the
//! other side's commit counter once more, and sleeps on the sleeper word. A committer
//! looks at the sleeper words after its commit, and only one that finds sleepers registered
//! claims them (a new epoch, count zero) and calls `futex_wake`: an uncontended put or get
//! makes no system call, and a stream of commits makes one per sleep, not one per commit
//! (`wait.rs`, `Sleepers`). A put of `n` messages that finds more than `n` getters asleep
//! claims and wakes only `n` of them. A waiter first looks for a while without sleeping, for as long
//! as recent waits on that word say it pays (`sys/futex.rs`, learned budgets; a getter whose
//! last sleep was long, a trickle's consumer, sleeps at once: `get.rs`), and only
//! then sleeps (a put that found a bounded queue full first spins, at most
//! `BATCH_WAIT`, until the consumers have committed `BATCH` gets: it then fills that room
//! with one look at their state instead of one look per get; a get that finds the queue empty
//! right after taking a message without waiting first pauses `GET_BACKOFF` without looking,
//! so a consumer that caught up with a stream lets the producers work unhindered for a
//! moment). Sleepers wait in bounded slices
//! and re-check, so a wake-up lost to a process killed between its commit and its wake (or
//! a sleeper count left raised by a killed sleeper) costs latency, never a hang.
//!
//! # What was checked, and how
//!
//! Everything one side reads of the other without its lock — the seqlock snapshots of the
//! other side's committed slot, the position hints built from them (and when a producer refreshes
//! them: on no room, and past `wrap_at` on stale ones), the sleeper counts and
//! futex wake decisions, the page-discard handoff (`punch_to`, finished by a later consumer
//! or by a producer that needs room), realigning an empty ring (a producer holding both
//! mutexes), `close`, and the `len()`/`is_empty()` snapshots — is model-checked by
//! `model.rs` (`cargo test --lib ring::model`; the larger configurations with
//! `cargo test --release --lib ring::model -- --ignored`). loom was not used: the real
//! code keeps its atomics in a memfd mapping (`ShmSafe` types), sleeps through raw futex
//! calls, recovers mutexes by reading /proc and is about *processes* killed at any step,
//! none of which loom models. Instead the model is a state machine whose steps are this
//! file's shared-memory accesses in order (each half of a slot written or read, each payload
//! cell, each header store, each sleeper count change, the futex compare-and-sleep and wake,
//! a discard), driven by the real `geometry.rs` arithmetic on a 32- or 48-byte ring, with
//! producers, consumers (the last live one replaced if killed), a closer and a `len()`
//! observer, and every reachable state explored with up to two processes SIGKILLed at any
//! step (configurations and state counts: `model.rs` tests). It asserts: no
//! message read torn, half-written, discarded or uncommitted; each producer's messages taken
//! in order; none received twice; every message whose put returned received, except a killed
//! consumer's committed batch; every snapshot equal to a committed state; committed positions
//! always ordered; without kills no sleeper ever stuck (sleeps have no timeout in the model,
//! so a lost wake-up hangs it), with kills every survivor finishes (sleeps may time out, as
//! the slices do). Planted mistakes (no seqlock re-check, the sleeper count read before the
//! commit, an uncounted sleeper, `reclaimed` published before the discard) are each found.
//!
//! The single-message entry points (`put_one_with`, `take_one`: what `put` and `get` call)
//! run the common case as straight-line code that makes the same accesses, in the same order,
//! as `put_frames_with` / `take_frames` make for it, and hand every other case to those; so
//! the model of the general paths covers them, and the fault tests kill processes in both.
//!
//! Not covered by the model: memory ordering weaker than sequential consistency (the
//! orderings were argued by hand: a slot's stores follow a `Release` fence placed after the
//! previous `seq` store, so a reader whose loads saw any of them sees the new `seq` after its
//! `Acquire` fence; the sleeper/waker pair is a Dekker pattern on `SeqCst` operations and
//! fences, where on x86-64 the waker's fence is the locked `xchg` of the unlock just before
//! it: `fence_after_unlock`); `JoinableQueue::join` and `task_done` (the same count-then-wake pattern as
//! putters, on the same word); the `RawMutex` algorithm itself (modeled by its contract:
//! tested in sync/); `repair` after corruption (unit-tested); `seq` wrapping after 2^32
//! commits during one snapshot; and batches of several payloads in one put.
//!
//! # Safety
//!
//! Ring bytes are accessed through raw pointers into the mapping, only at physical offsets
//! that were bounds-checked against the locally validated geometry, and only while holding
//! the side's mutex, in ranges the protocol gives the holder (free space for writes,
//! committed frames for reads). A typed put encodes straight into its frame's free space and
//! a typed get decodes straight from its committed frame: the codec is lent that range as a
//! slice for the duration of the call, under the mutex. A misbehaving process can make us read garbage (caught by
//! frame checks) but not read or write outside the mapping.

#![allow(unsafe_code)]

mod geometry;
mod get;
#[cfg(test)]
mod model;
mod put;
mod ready;
mod repair;
mod wait;

pub(crate) use self::ready::{check_bell, new_bell};

use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use self::geometry::{Corrupt, Front, Geometry};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Segment, SegmentKind, ShmSafe};
use crate::sync::RawMutex;
use crate::sys::{futex, Deadline};

const MAGIC: u64 = u64::from_le_bytes(crate::kinds::magic::QUEUE);
/// Where the ring starts in the payload.
const RING_AT: usize = 4096;
const NO_MAXSIZE: u64 = u64::MAX;
/// The sticky "someone polls this queue's readiness fd" bit (`ready.rs`): the high bit of
/// the producers' `getters` and of the consumers' `putters` sleeper counts, so that the one
/// load each side already makes after a commit also says whether to ring or settle.
const WATCHED: u32 = 1 << 31;
/// Sleep slices: a sleeper re-checks at least this often (see "Commit protocol").
const FIRST_SLICE: Duration = Duration::from_millis(10);
/// A put that found the queue full first waits (spinning, at most [`BATCH_WAIT`]) until the
/// consumers have committed this many gets, then puts into the room they made, instead of
/// putting one message after every single get. Each look at the consumers' state pulls the
/// cache line they commit to over to the producer's core, and the consumer's next commit
/// then waits to get it back; one look per batch lets a consumer keep its line for a batch
/// of gets. Measured (1 producer -> 1 consumer process, `Queue::bounded(1000)`, 8-byte
/// `[u8; 8]` messages, 20 alternated runs of 7 samples each against waiting for any room):
/// faster in 17 of 20 runs, medians about 18 -> 26 M msg/s; `Vec<u8>` messages (where the
/// consumer's allocation dominates) unchanged. Queues bounded below `4 * BATCH` items use a
/// quarter of their bound, and none below 8.
const BATCH: u32 = 16;
const BATCH_WAIT: Duration = Duration::from_micros(5);
const MAX_SLICE: Duration = Duration::from_millis(200);
/// A get that finds the queue empty right after taking a message without waiting (a
/// consumer that caught up with a stream) first pauses this long without looking, then
/// waits as usual. Looking at once would pull the producers' committed state over to this
/// core for every message (the producers then wait to get it back at their next commit):
/// a producer slower than its consumer was slowed further by the consumer's looks, and the
/// queue stayed at one message in flight. A get that had to wait for its previous message
/// (one message at a time, a request and its reply) does not pause.
///
/// Measured (scratch probe, 1 producer process -> 1 consumer, `bounded(1000)`, `put_ref`,
/// four alternated rounds of 7 samples with and without the pause): 64-byte `Vec<u8>`
/// messages, where the producer is the slower side, 12.8-17.9 -> 18.9-22.2 M msg/s with
/// `get` and 11.0-16.7 -> 18.8-23.0 M with `get_into`; 8-byte messages unchanged
/// (16.1-27.4 and 16.1-19.5 M); a request-reply round trip over two queues unchanged
/// (0.33-1.24 us and 0.34-1.13 us).
const GET_BACKOFF: Duration = Duration::from_nanos(500);
/// A put whose frame goes far into the ring ([`geometry::wants_drain`]: past the warm area,
/// whose pages are given back as consumers pass them, or well past the backlog beyond
/// [`geometry::DRAIN_MIN`]) while the backlog would fit in the warm area first waits, at most
/// this long and only while the consumers keep taking, for them to empty the ring, then moves
/// it to its lap start ([`SharedQueue::drain_then_rewind`]).
///
/// Why: a producer faster than its consumer keeps a backlog, so the ring is never found
/// empty and never moved back to its start; the tail then marched through the whole
/// 1 GiB ring, and past the 16 MiB warm area every page was new. Measured (issue 19, 2-core
/// VM, quiet, `Queue::bounded(8)`, 1 MiB `Vec<u8>` messages, `cargo run --release -p
/// multiproc-bench -- queue`): 1,030-1,066 MiB/s, typed and raw alike, with one
/// `fallocate(PUNCH_HOLE)` per message in `strace -c` (200 us each, 16% of the time) and
/// the rest in page faults; the typed row's earlier "two speeds" (3.7 or 17 GB/s) were
/// the same march, depending on whether the ring happened to be found empty. The wait
/// keeps a put's promise (it waits only when the queue is full): it is bounded, and the
/// put appends as before when the wait runs out.
///
/// 10 ms, not 5 as first built: once a give-up let the tail past the warm area, the
/// consumer went as slowly as the march (8 MiB of backlog took about 8 ms to drain), so
/// every later wait gave up too and the march went on to the lap's end (samples at 0.8-1.2
/// GB/s with 13-16 page faults per message in the consumer, in 2 of 15 `--quick queue`
/// runs, 2026-12-03).
const DRAIN_MAX: Duration = Duration::from_millis(10);
/// A drain wait gives up when the consumers took nothing for this long (busy with a
/// message, or gone). Longer than one `fallocate(PUNCH_HOLE)` of a discard chunk (about
/// 200 us here, and more under load), for the same reason as `DRAIN_MAX`'s 10 ms: a stall
/// shorter than that made each wait give up while the consumer was giving pages back.
const DRAIN_STALL: Duration = Duration::from_millis(1);
/// After a drain wait gave up, the next one waits until this many more bytes were put.
const DRAIN_RETRY: u64 = 4 << 20;

/// The producers' committed state.
#[repr(C)]
struct PSlot {
    /// Virtual position after the last committed frame.
    tail: AtomicU64,
    /// Frames ever put.
    puts: AtomicU64,
    closed: AtomicU64,
}

/// The consumers' committed state.
#[repr(C)]
struct CSlot {
    /// Virtual position of the oldest frame not taken.
    head: AtomicU64,
    /// Frames ever taken.
    gets: AtomicU64,
    /// `task_done` calls.
    done: AtomicU64,
    /// Producers may write up to `reclaimed + cap`.
    reclaimed: AtomicU64,
    /// Non-zero while pages in `[reclaimed, punch_to)` are being discarded.
    punch_to: AtomicU64,
}

// Each group is padded to 128 bytes (two cache lines, against the adjacent-line
// prefetcher), so producers and consumers never write the same line.
#[repr(C)]
struct Config {
    magic: AtomicU64,
    cap: AtomicU64,
    warm: AtomicU64,
    maxsize: AtomicU64,
    _pad: [AtomicU64; 12],
}

/// A side's mutex, and that side's spinner slot (`wait.rs`, [`SharedQueue::spin_for`]): on
/// the mutex's lines, which only that side writes.
#[repr(C)]
struct Mutex128(RawMutex, AtomicU32, AtomicU32, [AtomicU64; 13]);

#[repr(C)]
struct Producer {
    seq: AtomicU32,
    getters: AtomicU32,
    slots: [PSlot; 2],
    _pad: [AtomicU64; 9],
}

#[repr(C)]
struct Consumer {
    seq: AtomicU32,
    putters: AtomicU32,
    joiners: AtomicU32,
    _pad: AtomicU32,
    slots: [CSlot; 2],
    _pad2: [AtomicU64; 4],
}

/// Readiness (`ready.rs`): written only on a watched queue, once per transition.
#[repr(C)]
struct Ready {
    /// Serializes writing the bell (with setting `rung`) against draining it (`ready.rs`).
    lock: RawMutex,
    /// Non-zero once the bell was rung since a consumer last allowed it (`ready.rs`).
    rung: AtomicU32,
    _pad: [AtomicU32; 27],
}

#[repr(C)]
struct Control {
    config: Config,
    pmutex: Mutex128,
    cmutex: Mutex128,
    p: Producer,
    c: Consumer,
    ready: Ready,
}

// SAFETY: every field is an atomic or a RawMutex (itself ShmSafe: atomics only), so every bit
// pattern is valid and all access through `&Control` is atomic; repr(C), no pointers.
unsafe impl ShmSafe for Control {}

const _: () = assert!(std::mem::size_of::<Control>() <= RING_AT);
const _: () = assert!(std::mem::offset_of!(Control, pmutex) == 128);
const _: () = assert!(std::mem::offset_of!(Control, cmutex) == 256);
const _: () = assert!(std::mem::offset_of!(Control, p) == 384);
const _: () = assert!(std::mem::offset_of!(Control, c) == 512);
const _: () = assert!(std::mem::offset_of!(Control, ready) == 640);
const _: () = assert!(std::mem::size_of::<Control>() == 768);
const _: () = assert!(std::mem::size_of::<Ready>() == 128);

/// A snapshot of the producers' state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PState {
    tail: u64,
    puts: u64,
    closed: bool,
}

/// A snapshot of the consumers' state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CState {
    head: u64,
    gets: u64,
    done: u64,
    reclaimed: u64,
    punch_to: u64,
}

impl PSlot {
    #[inline]
    fn load(&self) -> PState {
        PState {
            tail: self.tail.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed) != 0,
        }
    }
    #[inline]
    fn store(&self, s: &PState) {
        self.tail.store(s.tail, Ordering::Relaxed);
        self.puts.store(s.puts, Ordering::Relaxed);
        self.closed.store(s.closed as u64, Ordering::Relaxed);
    }
}

impl CSlot {
    #[inline]
    fn load(&self) -> CState {
        CState {
            head: self.head.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
            punch_to: self.punch_to.load(Ordering::Relaxed),
        }
    }
    #[inline]
    fn store(&self, s: &CState) {
        self.head.store(s.head, Ordering::Relaxed);
        self.gets.store(s.gets, Ordering::Relaxed);
        self.done.store(s.done, Ordering::Relaxed);
        self.reclaimed.store(s.reclaimed, Ordering::Relaxed);
        self.punch_to.store(s.punch_to, Ordering::Relaxed);
    }
}

/// The whole queue's counts, for `len`, `is_closed`, `unfinished_tasks`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) count: u64,
    pub(crate) closed: bool,
    pub(crate) unfinished: u64,
}

/// Why a raw put stopped; `done` payloads of the batch went in before it.
#[derive(Debug)]
pub(crate) enum PutStop {
    /// No room and the caller does not wait.
    Full,
    Timeout,
    Closed,
    /// A payload is larger than the ring can ever hold (nothing was put), or the ring was
    /// found corrupted (and reset; the rest of the batch was not put).
    Failed(Error),
}

/// Why a raw get returned no frame.
#[derive(Debug)]
pub(crate) enum GetStop {
    Empty,
    Timeout,
    Closed,
    /// The frame did not decode (it was consumed), or the ring was found corrupted (and
    /// reset).
    Failed(Error),
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: `try_*`.
    No,
    /// At most this long from the call (`None`: as long as it takes).
    For(Option<Duration>),
}

impl Wait {
    pub(crate) fn timeout(t: Option<Duration>) -> Wait {
        Wait::For(t)
    }
}

/// The deadline of a [`Wait`], read from the clock only once the operation has to wait
/// (an operation that does not wait makes no clock call). Starting the clock a little late
/// only lengthens a timeout by the time of the first attempt.
struct Lazy {
    wait: Wait,
    at: Option<Deadline>,
}

impl Lazy {
    #[inline]
    fn new(wait: Wait) -> Lazy {
        Lazy { wait, at: None }
    }
    fn get(&mut self) -> Deadline {
        let wait = self.wait;
        *self.at.get_or_insert_with(|| match wait {
            Wait::No => Deadline::never(),
            Wait::For(t) => Deadline::after(t),
        })
    }
}

/// One frame being read, handed to a get's sink while the consumer mutex is held.
pub(crate) struct FrameRef<'a> {
    q: &'a SharedQueue,
    at: usize,
    len: usize,
    typed: bool,
}

impl FrameRef<'_> {
    /// True when the frame holds a typed message (a type tag, then the codec's bytes: see
    /// `codec/ident.rs`), false for raw bytes (`put_bytes`, a connection's records).
    #[inline(always)]
    pub(crate) fn typed(&self) -> bool {
        self.typed
    }

    /// The payload, in place in the ring (valid while the sink runs, under the consumer
    /// mutex): decoding straight from it saves a copy.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `at..at+len` lies inside the ring (checked by `geometry::front` against the
        // local geometry, which was checked against the mapping size at open), and the
        // mapping outlives `self.q`. The bytes are a committed frame in `[head, tail)`, which
        // no honest process writes while we hold the consumer mutex (producers write only
        // free space, other consumers wait for the mutex), and this borrow ends before the
        // sink returns, i.e. before we commit or unlock. A dishonest process could still
        // change them; the decoder bounds-checks every read against this slice's length
        // and treats every value as untrusted, so that yields wrong values or a decode
        // error, never an access outside the frame.
        unsafe { std::slice::from_raw_parts(self.q.ring_ptr().add(self.at), self.len) }
    }

    /// Appends the payload to `out`.
    #[inline]
    pub(crate) fn read_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        let start = out.len();
        // SAFETY: `at..at+len` lies inside the ring (checked by `geometry::front` against the
        // local geometry, which was checked against the mapping size); `out` has room for
        // `len` more bytes (reserved above) and is not shared memory, so the ranges don't
        // overlap. The bytes are a committed frame that no honest process writes while we
        // hold the consumer mutex (it lies in `[head, tail)`); a dishonest one can only
        // change their values (u8: any value is valid).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.q.ring_ptr().add(self.at),
                out.as_mut_ptr().add(start),
                self.len,
            );
            out.set_len(start + self.len);
        }
    }
}

/// What this handle last saw of the other side's positions. They only grow (short of
/// corruption, which the frame checks catch), so a stale value is a safe lower bound:
/// a producer may write below `reclaimed + cap`, a consumer may read frames below `tail`.
#[derive(Debug, Default)]
struct Hints {
    tail: AtomicU64,
    reclaimed: AtomicU64,
    gets: AtomicU64,
    /// The producers' tail when this handle last refreshed `reclaimed` and `gets`.
    refreshed_at: AtomicU64,
    /// True when this handle's last get found its message without waiting: see
    /// [`GET_BACKOFF`].
    flowing: AtomicBool,
    /// No drain wait ([`DRAIN_MAX`]) before the producers' tail reaches this position: set
    /// when one gave up, so a consumer that is away costs one give-up per [`DRAIN_RETRY`]
    /// bytes put, not one per put.
    drain_after: AtomicU64,
}

/// The process-local handle on a queue segment: the segment, a validated copy of its
/// configuration, and position hints.
#[derive(Debug)]
pub(crate) struct SharedQueue {
    seg: Segment,
    /// Payload offset of this queue's area in `seg` (0 for a queue's own segment; a
    /// connection keeps both directions' areas in one segment).
    base: usize,
    /// The control block and the ring's first byte, inside `seg`'s mapping (found and
    /// checked once at open: every put and get uses them several times).
    ctl: *const Control,
    ring: *mut u8,
    geo: Geometry,
    maxsize: u64,
    hints: Hints,
    /// The queue's readiness eventfd (`ready.rs`), shared by every handle of a queue; `None`
    /// for a connection's rings (a connection announces on its socket).
    bell: Option<Arc<OwnedFd>>,
}

// SAFETY: the two pointers point into `seg`'s shared mapping, which lives as long as `seg`
// (owned here) and is only accessed through atomics (`Control`) or under the protocol's
// mutexes (ring bytes), exactly as through `seg` itself, which is Send + Sync.
unsafe impl Send for SharedQueue {}
// SAFETY: as for Send: every access through the pointers is an atomic operation or a ring
// access the protocol serializes across processes, hence across threads too.
unsafe impl Sync for SharedQueue {}

impl Clone for SharedQueue {
    fn clone(&self) -> Self {
        let h = &self.hints;
        SharedQueue {
            seg: self.seg.clone(),
            base: self.base,
            ctl: self.ctl,
            ring: self.ring,
            geo: self.geo,
            maxsize: self.maxsize,
            bell: self.bell.clone(),
            hints: Hints {
                tail: AtomicU64::new(h.tail.load(Ordering::Relaxed)),
                reclaimed: AtomicU64::new(h.reclaimed.load(Ordering::Relaxed)),
                gets: AtomicU64::new(h.gets.load(Ordering::Relaxed)),
                refreshed_at: AtomicU64::new(h.refreshed_at.load(Ordering::Relaxed)),
                flowing: AtomicBool::new(false),
                drain_after: AtomicU64::new(h.drain_after.load(Ordering::Relaxed)),
            },
        }
    }
}

/// Why a side's mutex was not taken.
enum LockFail {
    Timeout,
    /// This thread holds it already (a codec callback re-entered the queue).
    Reentrant,
}

fn reentrant_error() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "a queue was called from inside a Serialize or Deserialize impl that this queue was \
         running (for a put or get on the same queue); that would wait for itself",
    )
}

/// The `SeqCst` fence of the sleeper/waker pair (see "Commit protocol"), between a commit
/// and reading a sleeper count, when a side's mutex was unlocked in between. The unlock is a
/// `swap` (`xchg`), and on x86-64 a locked instruction is a full memory barrier (Intel SDM
/// vol. 3 §9.2.2, AMD APM vol. 2 §7.4.2: loads and stores are not reordered with locked
/// instructions), so the hardware fence is already there and `mfence` would only cost
/// time (it was a large part of an uncontended put); the compiler fence keeps the compiler
/// from moving the sleeper-count load above the unlock. Elsewhere, a real fence.
#[inline(always)]
fn fence_after_unlock() {
    #[cfg(target_arch = "x86_64")]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(not(target_arch = "x86_64"))]
    fence(Ordering::SeqCst);
}

/// Holds a mutex; unlocks on drop.
struct Locked<'a>(&'a RawMutex);

impl Drop for Locked<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl SharedQueue {
    /// Bytes a queue area with a ring of `cap` bytes takes (control block and ring), and the
    /// ring size it will really have (`cap` rounded up to pages, at least one); `None` when
    /// too large. See [`SharedQueue::create_in`].
    pub(crate) fn area_len(cap: u64) -> Option<(usize, u64)> {
        let cap = cap.max(4096).checked_next_multiple_of(4096)?;
        let len = usize::try_from(cap).ok()?.checked_add(RING_AT)?;
        Some((len, cap))
    }

    /// Creates a queue segment with a ring of `cap` bytes (rounded to pages) and an optional
    /// item bound.
    pub(crate) fn create(cap: u64, maxsize: Option<u64>) -> Result<SharedQueue> {
        let (len, _) = SharedQueue::area_len(cap)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "queue capacity too large"))?;
        let seg = Segment::create(SegmentKind::Queue, len)?;
        SharedQueue::create_in(seg, 0, cap, maxsize)
    }

    /// Sets up a queue area (control block, then the ring of `cap` bytes rounded as in
    /// [`SharedQueue::area_len`]) at payload offset `base` of `seg`, a segment just created
    /// and not shared yet (zero-filled there), and opens it. Lets one segment hold several
    /// queue areas (a connection's two directions).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `base` is not page-aligned or the area does not
    /// fit the segment.
    pub(crate) fn create_in(
        seg: Segment,
        base: usize,
        cap: u64,
        maxsize: Option<u64>,
    ) -> Result<SharedQueue> {
        let (len, cap) = SharedQueue::area_len(cap)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "queue capacity too large"))?;
        let fits = base.is_multiple_of(4096)
            && base
                .checked_add(len)
                .is_some_and(|end| end <= seg.payload_len());
        if !fits {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "queue area does not fit its segment",
            ));
        }
        let geo = Geometry::new(cap);
        let c: &Control = seg.get(base).expect("control block fits the segment");
        c.config.cap.store(geo.cap, Ordering::Relaxed);
        c.config.warm.store(geo.warm, Ordering::Relaxed);
        c.config
            .maxsize
            .store(maxsize.unwrap_or(NO_MAXSIZE), Ordering::Relaxed);
        c.pmutex.0.init();
        c.cmutex.0.init();
        c.ready.lock.init();
        c.config.magic.store(MAGIC, Ordering::Release);
        SharedQueue::open_at(seg, base)
    }

    /// Opens a queue segment (ours or received), validating its configuration.
    pub(crate) fn open(seg: Segment) -> Result<SharedQueue> {
        if seg.kind() != SegmentKind::Queue {
            return Err(Error::new(
                ErrorKind::InvalidHandle,
                "not a valid multiproc queue: wrong segment kind",
            ));
        }
        SharedQueue::open_at(seg, 0)
    }

    /// Opens the queue area at payload offset `base` of `seg` (ours or received; the caller
    /// checks the segment's kind), validating its configuration: nothing read from the
    /// segment is trusted, and the area must lie wholly inside it.
    pub(crate) fn open_at(seg: Segment, base: usize) -> Result<SharedQueue> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("not a valid multiproc queue: {why}"),
            )
        };
        if !base.is_multiple_of(4096) {
            return Err(bad("queue area not page-aligned"));
        }
        let c: &Control = seg.get(base).ok_or_else(|| bad("segment too small"))?;
        if c.config.magic.load(Ordering::Acquire) != MAGIC {
            return Err(bad("bad magic"));
        }
        let geo = Geometry::with(
            c.config.cap.load(Ordering::Relaxed),
            c.config.warm.load(Ordering::Relaxed),
            geometry::DISCARD_CHUNK,
        );
        let fits = (base as u64)
            .checked_add(RING_AT as u64)
            .and_then(|r| r.checked_add(geo.cap))
            .is_some_and(|e| e <= seg.payload_len() as u64);
        if !geo.is_valid() || !fits {
            return Err(bad("ring size does not match the segment"));
        }
        let maxsize = c.config.maxsize.load(Ordering::Relaxed);
        if maxsize == 0 {
            return Err(bad("zero maxsize"));
        }
        let ctl: *const Control = c;
        // SAFETY: base + RING_AT + cap <= payload_len (checked above), so the offset stays
        // inside the mapping.
        let ring = unsafe { seg.payload().add(base + RING_AT) };
        Ok(SharedQueue {
            seg,
            base,
            ctl,
            ring,
            geo,
            maxsize,
            hints: Hints::default(),
            bell: None,
        })
    }

    /// The segment (for serialization).
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    #[inline(always)]
    fn ctl(&self) -> &Control {
        // SAFETY: `ctl` came from `seg.get(base)` at open (in bounds, aligned, `Control` is
        // ShmSafe), and the mapping lives as long as `self.seg`, which `&self` borrows.
        unsafe { &*self.ctl }
    }

    #[inline(always)]
    fn ring_ptr(&self) -> *mut u8 {
        self.ring
    }

    /// Ring bytes.
    pub(crate) fn capacity_bytes(&self) -> u64 {
        self.geo.cap
    }

    /// The largest payload a message may have.
    #[inline]
    pub(crate) fn max_payload(&self) -> u64 {
        self.geo.max_payload()
    }

    /// The item bound, if any.
    pub(crate) fn maxsize(&self) -> Option<u64> {
        (self.maxsize != NO_MAXSIZE).then_some(self.maxsize)
    }

    /// The segment's id (equal in every process).
    pub(crate) fn id(&self) -> u64 {
        self.seg.id()
    }

    #[inline]
    fn lock<'a>(
        &self,
        m: &'a RawMutex,
        deadline: &mut Lazy,
    ) -> std::result::Result<Locked<'a>, LockFail> {
        // OwnerDied needs no repair: see "Commit protocol" above.
        if !m.try_lock_free() {
            if m.is_owned_by_current_thread() {
                // A `Serialize` / `Deserialize` impl run under this mutex (an item encoded
                // into or decoded from the ring) called back into the same queue: waiting
                // would wait for ourselves.
                return Err(LockFail::Reentrant);
            }
            m.lock(deadline.get()).map_err(|_| LockFail::Timeout)?;
        }
        Ok(Locked(m))
    }

    fn lock_forever<'a>(&self, m: &'a RawMutex) -> Locked<'a> {
        match self.lock(m, &mut Lazy::new(Wait::For(None))) {
            Ok(l) => l,
            Err(LockFail::Reentrant) => panic!("{}", reentrant_error()),
            Err(LockFail::Timeout) => unreachable!("a lock without deadline does not time out"),
        }
    }

    // ----- the two sides' states -----

    /// The producers' committed state (seqlock read) and the `pseq` it belongs to.
    #[inline]
    fn p_snapshot(&self) -> (u32, PState) {
        let p = &self.ctl().p;
        loop {
            let s = p.seq.load(Ordering::Acquire);
            let st = p.slots[(s & 1) as usize].load();
            fence(Ordering::Acquire);
            if p.seq.load(Ordering::Relaxed) == s {
                return (s, st);
            }
            std::hint::spin_loop();
        }
    }

    /// The consumers' committed state (seqlock read) and the `cseq` it belongs to.
    #[inline]
    fn c_snapshot(&self) -> (u32, CState) {
        let c = &self.ctl().c;
        loop {
            let s = c.seq.load(Ordering::Acquire);
            let st = c.slots[(s & 1) as usize].load();
            fence(Ordering::Acquire);
            if c.seq.load(Ordering::Relaxed) == s {
                return (s, st);
            }
            std::hint::spin_loop();
        }
    }

    /// The producers' state; stable while holding `pmutex`.
    #[inline]
    fn p_state(&self) -> PState {
        let p = &self.ctl().p;
        p.slots[(p.seq.load(Ordering::Relaxed) & 1) as usize].load()
    }

    /// The consumers' state; stable while holding `cmutex`.
    #[inline]
    fn c_state(&self) -> CState {
        let c = &self.ctl().c;
        c.slots[(c.seq.load(Ordering::Relaxed) & 1) as usize].load()
    }

    /// Publishes the producers' state with one store (the commit point). Hold `pmutex`.
    #[inline]
    fn p_commit(&self, s: &PState) {
        let p = &self.ctl().p;
        let next = p.seq.load(Ordering::Relaxed).wrapping_add(1);
        // Seqlock readers that saw the slot we are about to overwrite must see the seq
        // store that retired it first.
        fence(Ordering::Release);
        p.slots[(next & 1) as usize].store(s);
        p.seq.store(next, Ordering::Release);
    }

    /// Publishes the consumers' state with one store (the commit point). Hold `cmutex`.
    #[inline]
    fn c_commit(&self, s: &CState) {
        let c = &self.ctl().c;
        let next = c.seq.load(Ordering::Relaxed).wrapping_add(1);
        fence(Ordering::Release);
        c.slots[(next & 1) as usize].store(s);
        c.seq.store(next, Ordering::Release);
    }

    /// The physical offset of the producers' tail in the ring (tests: where puts go).
    #[cfg(test)]
    pub(crate) fn tail_offset(&self) -> u64 {
        self.geo.phys(self.p_snapshot().1.tail)
    }

    /// A consistent-enough view of the whole queue without taking a mutex: consumers' state
    /// first, so `unfinished == 0` was true at that moment when it says so.
    pub(crate) fn snapshot(&self) -> State {
        let (_, c) = self.c_snapshot();
        let (_, p) = self.p_snapshot();
        State {
            count: p.puts.saturating_sub(c.gets),
            closed: p.closed,
            unfinished: p.puts.saturating_sub(c.done),
        }
    }

    // ----- ring bytes -----

    #[inline(always)]
    fn header(&self, phys: u64) -> &AtomicU64 {
        assert!(
            phys.is_multiple_of(8) && phys + 8 <= self.geo.cap,
            "frame header inside the ring and aligned"
        );
        // SAFETY: `phys + 8 <= cap` (asserted), the ring's `cap` bytes lie inside the
        // mapping (checked at open) and start page-aligned, so with `phys` a multiple of 8
        // the pointer is in bounds and aligned for an AtomicU64 (any bits are a valid one);
        // the mapping lives as long as `self.seg`.
        unsafe { &*(self.ring.add(phys as usize) as *const AtomicU64) }
    }

    /// Writes a frame of a `len`-byte payload (`typed` or raw) at `phys`: the payload by
    /// `fill` (given the payload bytes, in place), then the header. On a `fill` error no
    /// header is written.
    #[inline]
    fn write_frame(
        &self,
        phys: u64,
        len: usize,
        typed: bool,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let flen = geometry::frame_len(len as u64);
        assert!(phys + flen <= self.geo.cap, "frame placed outside the ring");
        // SAFETY: `phys + 8 + len <= phys + flen <= cap` (asserted above) and the ring lies
        // inside the mapping (checked at open), so the slice is inside the mapping. These
        // bytes are free space, which the ring protocol gives to the producer mutex holder
        // (us) alone: no honest process reads or writes them until we commit, and the slice
        // does not outlive this call. (A dishonest process writing there at the same time can
        // only spoil the payload, which the reader treats as untrusted.)
        let dst = unsafe {
            std::slice::from_raw_parts_mut(
                self.ring_ptr()
                    .add(phys as usize + geometry::FRAME_HEADER as usize),
                len,
            )
        };
        fill(dst)?;
        self.header(phys).store(
            geometry::encode_header(len as u32, typed),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Discards the pages of `[from, to)` (taken bytes nobody may write yet).
    fn punch(&self, from: u64, to: u64) {
        for d in geometry::discard_ranges(&self.geo, from, to)
            .into_iter()
            .flatten()
        {
            let _ = self.seg.discard(
                self.base + RING_AT + d.start as usize,
                (d.end - d.start) as usize,
            );
        }
    }

    /// Finishes a discard step left half-done by a killed consumer. Hold `cmutex`.
    #[cold]
    fn finish_punch(&self, c: &mut CState) -> std::result::Result<(), Corrupt> {
        if c.punch_to == 0 {
            return Ok(());
        }
        if !(c.reclaimed <= c.punch_to && c.punch_to <= c.head && c.punch_to.is_multiple_of(8)) {
            return Err(Corrupt("discard step out of order"));
        }
        self.punch(c.reclaimed, c.punch_to);
        c.reclaimed = c.punch_to;
        c.punch_to = 0;
        self.c_commit(c);
        Ok(())
    }
}
