//! The queue's shared segment: control block, committed state, ring bytes; and the raw
//! operations on them (frames in, frames out, close, task accounting, waiting).
//!
//! # Layout (payload offsets of a `SegmentKind::Queue` segment)
//!
//! ```text
//! 0     Control
//!       0    magic      u64   b"MPQUEUE1"
//!       8    cap        u64   ring bytes        } written once by the creator,
//!       16   warm       u64   see ring.rs       } copied and validated by every
//!       24   maxsize    u64   u64::MAX = none   } process that opens the queue
//!       32   seq        u32   commit counter; futex word every waiter sleeps on
//!       36   getters    u32   sleepers waiting for an item
//!       40   putters    u32   sleepers waiting for room
//!       44   joiners    u32   sleepers in join()
//!       64   mutex      RawMutex (robust, see sync/raw_mutex.rs)
//!       128  slots      [Slot; 2], 64 bytes each
//! 4096  ring        cap bytes of frames (ring.rs)
//! ```
//!
//! # Commit protocol (crash safety)
//!
//! Everything that defines the queue — ring positions, message count, `closed`, task counts —
//! is one [`Slot`]. There are two; the active one is `slots[seq & 1]`. Under the mutex, an
//! operation reads the active slot, writes frames into *free* ring bytes, fills the inactive
//! slot with the new state, and then commits with a single store `seq = seq + 1`. A process
//! killed anywhere before that store changed nothing that counts (bytes it wrote lie in free
//! space, the slot it wrote is inactive); killed after it, the operation is complete. So on
//! `OwnerDied` there is nothing to repair: the state is consistent by construction. A
//! consumer killed after its commit has taken its batch with it (at most one `get_many`).
//!
//! The same store is the wake-up signal: waiters sleep on `seq`, so any commit after they
//! looked makes their `futex_wait` return at once. A committer calls `futex_wake` only when a
//! sleeper count says someone sleeps, so an uncontended put or get makes no system call.
//! Sleepers wait in bounded slices and re-check, so a wake-up lost to a process killed between
//! its commit and its wake (or a sleeper count left raised by a killed sleeper) costs latency,
//! never a hang.
//!
//! # Safety
//!
//! Ring bytes are accessed through raw pointers into the mapping, only at offsets that were
//! bounds-checked against the locally validated geometry, and only while holding the mutex,
//! in ranges the protocol gives the holder (free space for writes, committed frames for
//! reads). A misbehaving process can make us read garbage (caught by frame checks) but not
//! read or write outside the mapping.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::ring::{self, Corrupt, Geometry, Ring};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Segment, SegmentKind, ShmSafe};
use crate::sync::RawMutex;
use crate::sys::{futex, Deadline};

const MAGIC: u64 = u64::from_le_bytes(*b"MPQUEUE1");
/// Where the ring starts in the payload.
const RING_AT: usize = 4096;
const NO_MAXSIZE: u64 = u64::MAX;
/// Sleep slices: a sleeper re-checks at least this often (see "Commit protocol").
const FIRST_SLICE: Duration = Duration::from_millis(10);
const MAX_SLICE: Duration = Duration::from_millis(200);

/// One committed state of the queue.
#[repr(C)]
struct Slot {
    head: AtomicU64,
    tail: AtomicU64,
    end: AtomicU64,
    count: AtomicU64,
    closed: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue::join` waits for 0).
    unfinished: AtomicU64,
    /// Items taken and not yet marked done (`task_done` beyond this is an error).
    taken: AtomicU64,
    _pad: AtomicU64,
}

#[repr(C)]
struct Control {
    magic: AtomicU64,
    cap: AtomicU64,
    warm: AtomicU64,
    maxsize: AtomicU64,
    seq: AtomicU32,
    getters: AtomicU32,
    putters: AtomicU32,
    joiners: AtomicU32,
    _pad: [AtomicU64; 2],
    mutex: RawMutex,
    _pad2: [AtomicU64; 6],
    slots: [Slot; 2],
}

// SAFETY: every field is an atomic or a RawMutex (itself ShmSafe: atomics only), so every bit
// pattern is valid and all access through `&Control` is atomic; repr(C), no pointers.
unsafe impl ShmSafe for Control {}

const _: () = assert!(std::mem::size_of::<Control>() <= RING_AT);
const _: () = assert!(std::mem::offset_of!(Control, mutex) == 64);
const _: () = assert!(std::mem::offset_of!(Control, slots) == 128);

/// A snapshot of a [`Slot`], worked on locally and committed whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) ring: Ring,
    pub(crate) closed: bool,
    pub(crate) unfinished: u64,
    pub(crate) taken: u64,
}

impl Slot {
    fn load(&self) -> State {
        State {
            ring: Ring {
                head: self.head.load(Ordering::Relaxed),
                tail: self.tail.load(Ordering::Relaxed),
                end: self.end.load(Ordering::Relaxed),
                count: self.count.load(Ordering::Relaxed),
            },
            closed: self.closed.load(Ordering::Relaxed) != 0,
            unfinished: self.unfinished.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
        }
    }

    fn store(&self, s: &State) {
        self.head.store(s.ring.head, Ordering::Relaxed);
        self.tail.store(s.ring.tail, Ordering::Relaxed);
        self.end.store(s.ring.end, Ordering::Relaxed);
        self.count.store(s.ring.count, Ordering::Relaxed);
        self.closed.store(s.closed as u64, Ordering::Relaxed);
        self.unfinished.store(s.unfinished, Ordering::Relaxed);
        self.taken.store(s.taken, Ordering::Relaxed);
    }
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
    /// Until the deadline (which may be "never").
    Until(Deadline),
}

impl Wait {
    pub(crate) fn timeout(t: Option<Duration>) -> Wait {
        Wait::Until(Deadline::after(t))
    }
    fn deadline(&self) -> Deadline {
        match self {
            Wait::No => Deadline::never(),
            Wait::Until(d) => *d,
        }
    }
}

/// One frame being read, handed to a get's sink while the mutex is held.
pub(crate) struct FrameRef<'a> {
    q: &'a SharedQueue,
    at: usize,
    len: usize,
}

impl FrameRef<'_> {
    /// Payload length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends the payload to `out`.
    pub(crate) fn read_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        let start = out.len();
        // SAFETY: `at..at+len` lies inside the ring (checked in `take_frames` against the
        // local geometry, which was checked against the mapping size); `out` has room for
        // `len` more bytes (reserved above) and is not shared memory, so the ranges don't
        // overlap. The bytes are a committed frame that no honest process writes while we
        // hold the mutex; a dishonest one can only change their values (u8: any value is
        // valid).
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

/// The process-local handle on a queue segment: the segment and a validated copy of its
/// configuration.
#[derive(Clone, Debug)]
pub(crate) struct SharedQueue {
    seg: Segment,
    geo: Geometry,
    maxsize: u64,
}

/// Holds the mutex; unlocks on drop.
struct Locked<'a> {
    q: &'a SharedQueue,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.q.ctl().mutex.unlock();
    }
}

impl Locked<'_> {
    fn seq(&self) -> u32 {
        self.q.ctl().seq.load(Ordering::Relaxed)
    }

    /// The committed state (stable while we hold the mutex).
    fn state(&self) -> State {
        let c = self.q.ctl();
        c.slots[(self.seq() & 1) as usize].load()
    }

    /// Publishes `s` as the new state with one store (the commit point); returns the new seq.
    fn commit(&self, s: &State) -> u32 {
        let c = self.q.ctl();
        let seq = self.seq();
        let next = seq.wrapping_add(1);
        c.slots[(next & 1) as usize].store(s);
        c.seq.store(next, Ordering::Release);
        next
    }
}

impl SharedQueue {
    /// Creates a queue segment with a ring of `cap` bytes (rounded to pages) and an optional
    /// item bound.
    pub(crate) fn create(cap: u64, maxsize: Option<u64>) -> Result<SharedQueue> {
        let cap = cap.max(4096).next_multiple_of(4096);
        let geo = Geometry::new(cap);
        let len = usize::try_from(cap)
            .ok()
            .and_then(|c| c.checked_add(RING_AT))
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "queue capacity too large"))?;
        let seg = Segment::create(SegmentKind::Queue, len)?;
        let c: &Control = seg.get(0).expect("control block fits the segment");
        c.cap.store(geo.cap, Ordering::Relaxed);
        c.warm.store(geo.warm, Ordering::Relaxed);
        c.maxsize
            .store(maxsize.unwrap_or(NO_MAXSIZE), Ordering::Relaxed);
        c.mutex.init();
        c.magic.store(MAGIC, Ordering::Release);
        SharedQueue::open(seg)
    }

    /// Opens a queue segment (ours or received), validating its configuration.
    pub(crate) fn open(seg: Segment) -> Result<SharedQueue> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("not a valid multiproc queue: {why}"),
            )
        };
        if seg.kind() != SegmentKind::Queue {
            return Err(bad("wrong segment kind"));
        }
        let c: &Control = seg.get(0).ok_or_else(|| bad("segment too small"))?;
        if c.magic.load(Ordering::Acquire) != MAGIC {
            return Err(bad("bad magic"));
        }
        let geo = Geometry {
            cap: c.cap.load(Ordering::Relaxed),
            warm: c.warm.load(Ordering::Relaxed),
            chunk: ring::DISCARD_CHUNK,
        };
        let fits = RING_AT as u64 + geo.cap <= seg.payload_len() as u64;
        if !geo.is_valid() || !fits {
            return Err(bad("ring size does not match the segment"));
        }
        let maxsize = c.maxsize.load(Ordering::Relaxed);
        if maxsize == 0 {
            return Err(bad("zero maxsize"));
        }
        Ok(SharedQueue { seg, geo, maxsize })
    }

    /// The segment (for serialization).
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    fn ctl(&self) -> &Control {
        self.seg.get(0).expect("validated at open")
    }

    fn ring_ptr(&self) -> *mut u8 {
        // SAFETY: RING_AT + cap <= payload_len was checked at open.
        unsafe { self.seg.payload().add(RING_AT) }
    }

    /// Ring bytes.
    pub(crate) fn capacity_bytes(&self) -> u64 {
        self.geo.cap
    }

    /// The largest payload a message may have.
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

    fn lock(&self, deadline: Deadline) -> Option<Locked<'_>> {
        // OwnerDied needs no repair: see "Commit protocol" above.
        self.ctl().mutex.lock(deadline).ok()?;
        Some(Locked { q: self })
    }

    /// A consistent snapshot of the state without taking the mutex (seqlock read).
    pub(crate) fn snapshot(&self) -> State {
        let c = self.ctl();
        loop {
            let s = c.seq.load(Ordering::Acquire);
            let st = c.slots[(s & 1) as usize].load();
            fence(Ordering::Acquire);
            if c.seq.load(Ordering::Relaxed) == s {
                return st;
            }
            std::hint::spin_loop();
        }
    }

    /// Validates `st`; on corruption resets the ring to empty (keeping the other counts),
    /// commits, and returns the error to report.
    fn checked(&self, l: &Locked<'_>, st: State) -> std::result::Result<State, Error> {
        match st.ring.validate(&self.geo) {
            Ok(()) => Ok(st),
            Err(c) => Err(self.reset_corrupt(l, st, c)),
        }
    }

    #[cold]
    fn reset_corrupt(&self, l: &Locked<'_>, st: State, why: Corrupt) -> Error {
        let lost = st.ring.count;
        let fixed = State {
            ring: Ring::EMPTY,
            ..st
        };
        l.commit(&fixed);
        self.wake_all_sleepers();
        Error::new(
            ErrorKind::InvalidState,
            format!(
                "queue shared memory was corrupted ({}); its {lost} queued messages were \
                 discarded and the queue was reset",
                why.0
            ),
        )
    }

    fn write_frame(&self, at: u64, payload: &[u8]) {
        let flen = ring::frame_len(payload.len() as u64);
        assert!(at + flen <= self.geo.cap, "frame placed outside the ring");
        let header: &AtomicU64 = self
            .seg
            .get(RING_AT + at as usize)
            .expect("frame header inside the ring and aligned");
        // SAFETY: `at + 8 + len <= at + flen <= cap` (asserted above) and the ring lies
        // inside the mapping (checked at open); these bytes are free space owned by the mutex
        // holder (us) by the ring protocol, and `payload` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.ring_ptr()
                    .add(at as usize + ring::FRAME_HEADER as usize),
                payload.len(),
            );
        }
        header.store(ring::encode_header(payload.len() as u32), Ordering::Relaxed);
    }

    /// Puts the payloads in order, waiting for room as `wait` allows. Returns how many went
    /// in, with the reason it stopped early.
    pub(crate) fn put_frames(
        &self,
        payloads: &[&[u8]],
        wait: Wait,
    ) -> std::result::Result<(), (usize, PutStop)> {
        let max = self.max_payload();
        if let Some(p) = payloads.iter().find(|p| p.len() as u64 > max) {
            return Err((0, PutStop::Failed(self.too_large(p.len()))));
        }
        let deadline = wait.deadline();
        let mut done = 0;
        let mut slice = FIRST_SLICE;
        loop {
            let Some(l) = self.lock(deadline) else {
                return Err((done, PutStop::Timeout));
            };
            let mut st = match self.checked(&l, l.state()) {
                Ok(st) => st,
                Err(e) => return Err((done, PutStop::Failed(e))),
            };
            if st.closed {
                return Err((done, PutStop::Closed));
            }
            let start = done;
            while done < payloads.len() && st.ring.count < self.maxsize {
                let flen = ring::frame_len(payloads[done].len() as u64);
                let Some((at, next)) = st.ring.place(&self.geo, flen) else {
                    break;
                };
                self.write_frame(at, payloads[done]);
                st.ring = next;
                st.unfinished += 1;
                done += 1;
            }
            let seen = if done > start { l.commit(&st) } else { l.seq() };
            drop(l);
            if done > start {
                self.wake(&self.ctl().getters);
            }
            if done == payloads.len() {
                return Ok(());
            }
            if let Wait::No = wait {
                return Err((done, PutStop::Full));
            }
            if !self.sleep(&self.ctl().putters, seen, deadline, &mut slice) {
                return Err((done, PutStop::Timeout));
            }
        }
    }

    /// Takes up to `max` frames (at least one, waiting as `wait` allows), handing each to
    /// `sink` under the mutex. A sink error on the first frame consumes it and is returned;
    /// on a later frame the batch ends before it (it stays queued). Returns frames taken.
    pub(crate) fn take_frames(
        &self,
        max: usize,
        wait: Wait,
        sink: &mut dyn FnMut(usize, FrameRef<'_>) -> Result<()>,
    ) -> std::result::Result<usize, GetStop> {
        let deadline = wait.deadline();
        let mut slice = FIRST_SLICE;
        loop {
            let Some(l) = self.lock(deadline) else {
                return Err(GetStop::Timeout);
            };
            let mut st = self.checked(&l, l.state()).map_err(GetStop::Failed)?;
            if st.ring.is_empty() {
                if st.closed {
                    return Err(GetStop::Closed);
                }
                if let Wait::No = wait {
                    return Err(GetStop::Empty);
                }
                let seen = l.seq();
                drop(l);
                if !self.sleep(&self.ctl().getters, seen, deadline, &mut slice) {
                    return Err(GetStop::Timeout);
                }
                continue;
            }
            let mut n = 0;
            let mut failure = None;
            while n < max.max(1) {
                let Some((at, limit)) = st.ring.front() else {
                    break;
                };
                let header: Option<&AtomicU64> = self.seg.get(RING_AT + at as usize);
                let word = header.map(|h| h.load(Ordering::Relaxed)).unwrap_or(0);
                let len = ring::decode_header(word).map(u64::from);
                let flen = len.map(ring::frame_len);
                let next = match flen {
                    Some(f) if at + f <= limit => st.ring.pop(&self.geo, f),
                    _ => Err(Corrupt("frame header is damaged or runs past the data")),
                };
                let (next, discard) = match next {
                    Ok(v) => v,
                    Err(c) => {
                        if n > 0 {
                            break; // commit the good part; the next get reports it
                        }
                        return Err(GetStop::Failed(self.reset_corrupt(&l, st, c)));
                    }
                };
                let frame = FrameRef {
                    q: self,
                    at: at as usize + ring::FRAME_HEADER as usize,
                    len: len.unwrap_or(0) as usize,
                };
                if let Err(e) = sink(n, frame) {
                    if n > 0 {
                        break;
                    }
                    failure = Some(e);
                }
                if let Some(d) = discard {
                    // Free space only, and we hold the mutex: nobody writes there now.
                    let _ = self
                        .seg
                        .discard(RING_AT + d.start as usize, (d.end - d.start) as usize);
                }
                st.ring = next;
                st.taken += 1;
                n += 1;
                if failure.is_some() {
                    break;
                }
            }
            l.commit(&st);
            drop(l);
            self.wake(&self.ctl().putters);
            return match failure {
                Some(e) => Err(GetStop::Failed(e)),
                None => Ok(n),
            };
        }
    }

    /// Closes the queue: no more puts; gets drain, then fail with `Closed`. Idempotent.
    pub(crate) fn close(&self) {
        let Some(l) = self.lock(Deadline::never()) else {
            return;
        };
        let st = l.state();
        if !st.closed {
            l.commit(&State { closed: true, ..st });
        }
        drop(l);
        self.wake_all_sleepers();
    }

    /// Marks one taken item done.
    pub(crate) fn task_done(&self) -> Result<()> {
        let l = self
            .lock(Deadline::never())
            .expect("a lock without deadline does not time out");
        let mut st = l.state();
        if st.taken == 0 {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "task_done() called more times than items were taken from the queue",
            ));
        }
        st.taken -= 1;
        st.unfinished = st.unfinished.saturating_sub(1);
        l.commit(&st);
        drop(l);
        if st.unfinished == 0 {
            self.wake(&self.ctl().joiners);
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; false on timeout.
    pub(crate) fn join(&self, deadline: Deadline) -> bool {
        let mut slice = FIRST_SLICE;
        loop {
            let Some(l) = self.lock(deadline) else {
                return false;
            };
            if l.state().unfinished == 0 {
                return true;
            }
            let seen = l.seq();
            drop(l);
            if !self.sleep(&self.ctl().joiners, seen, deadline, &mut slice) {
                return false;
            }
        }
    }

    /// Sleeps on `seq` while it still equals `seen`, counted in `sleepers`, for at most one
    /// slice; false when the deadline has passed.
    fn sleep(
        &self,
        sleepers: &AtomicU32,
        seen: u32,
        deadline: Deadline,
        slice: &mut Duration,
    ) -> bool {
        let Ok(remaining) = deadline.remaining() else {
            return false;
        };
        let t = remaining.map_or(*slice, |r| r.min(*slice));
        let c = self.ctl();
        sleepers.fetch_add(1, Ordering::SeqCst);
        if c.seq.load(Ordering::SeqCst) == seen
            && futex::wait(&c.seq, seen, Some(t)) == futex::Wake::TimedOut
        {
            *slice = (*slice * 2).min(MAX_SLICE);
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        // One more look even when the deadline has just passed: the caller re-checks.
        true
    }

    /// After a commit: wakes the sleepers on `seq` if `sleepers` says there are any.
    fn wake(&self, sleepers: &AtomicU32) {
        fence(Ordering::SeqCst);
        if sleepers.load(Ordering::Relaxed) > 0 {
            futex::wake_all(&self.ctl().seq);
        }
    }

    fn wake_all_sleepers(&self) {
        futex::wake_all(&self.ctl().seq);
    }

    fn too_large(&self, len: usize) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {len} bytes is larger than this queue can hold (at most {} bytes \
                 per message in a ring of {} bytes); create the queue with \
                 Queue::builder().capacity_bytes(n) for a larger ring",
                self.max_payload(),
                self.geo.cap
            ),
        )
    }
}
