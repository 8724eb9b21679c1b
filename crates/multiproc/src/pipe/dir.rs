//! One direction of a connection: a shared-memory ring of small messages (the queue's ring,
//! `ring/`, reused as is) and a small shared cell with the direction's two locks,
//! its count of sleeping receivers and its message sequence counter.
//!
//! All directions of a connection (two for a duplex pipe, one for a simplex one) live in one
//! segment, so that an end holds two fds: its socket and this segment. Payload layout:
//!
//! ```text
//! 0             header   magic b"MPCONN01" (u64), directions (u64: 1 or 2)
//! 128 + 128*i   cell i   DirCell of direction i
//! 4096 + S*i    area i   direction i's queue area (control block, then RING_BYTES of ring;
//!                        S = the area's length, see `SharedQueue::area_len`)
//! ```
//!
//! The creator fills it in before anyone else can see it. Whoever opens it (a process that
//! received an end) checks the segment kind, the magic, the direction count, that the cell
//! and the whole area of the direction lie inside the segment, and the area's queue
//! configuration (`SharedQueue::open_at`); the area's ring must not reach into the next area.
//!
//! Every copy of both ends shares the direction: the sending end's copies put records into
//! the ring, the receiving end's copies take them. A record is a message's bytes followed by
//! one tag byte ([`TAG_DATA`]), or a *marker* (a `u32` sequence number, then [`TAG_MARKER`])
//! saying "the next message is on the socket, in frames whose id is this number". The ring
//! frame of a record says whether its message is typed (its bytes start with a type tag,
//! `codec/ident.rs`) or raw (`send_bytes`): for a marker, the socket message's kind. The ring
//! commits each record with one store, so a sender killed mid-put leaves it wholly there or
//! absent; a receiver killed mid-take has taken it or not (see `ring/mod.rs`).
//!
//! The locks (robust process-shared mutexes, [`RawMutex`]):
//! - *send*: held by a sender from committing a marker to its message's last frame, so that
//!   socket messages never interleave and their frames are in the socket in marker order.
//!   Senders of ring records don't take it (the ring orders them).
//! - *recv*: held by a receiver from taking a record to the end of the message (for a marker:
//!   its last frame), so that concurrent receivers never split a socket message.
//!
//! A holder that dies releases them through the robust-mutex protocol; nothing they protect
//! needs repair (the ring commits by one store; the socket side copes with partial messages
//! by sequence numbers, see `mod.rs`).
//!
//! # Safety
//!
//! `DirCell` and `Header` are declared [`ShmSafe`]: atomics only, so a peer
//! can write any bit pattern without making them invalid.

#![allow(unsafe_code)]

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(test)]
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::ring::{FrameRef, GetStop, PutStop, SharedQueue, Wait};
use crate::shm::{Placed, Segment, SegmentKind, ShmSafe};
use crate::sync::RawMutex;
use crate::sys::Deadline;

/// Segment kind of a connection's shared memory (pipe codes are 24–31).
pub(crate) const SEGMENT_KIND: SegmentKind = SegmentKind::Other(crate::kinds::segment::CONNECTION);
const MAGIC: u64 = u64::from_le_bytes(crate::kinds::magic::CONNECTION);
/// Payload offset of direction 0's cell; direction `i`'s is `CELLS_AT + CELL_STRIDE * i`.
/// Two cache lines each (against the adjacent-line prefetcher), as in the queue's control
/// block: the two directions' cells are written by different processes in a ping-pong.
const CELLS_AT: usize = 128;
const CELL_STRIDE: usize = 128;
/// Payload offset of direction 0's queue area (page-aligned, as the area requires).
const AREAS_AT: usize = 4096;
/// Directions a connection has at most.
const MAX_DIRS: u64 = 2;

/// Ring bytes per direction: room for messages up to `INLINE_MAX` (2 MiB, see there why) with
/// a backlog beside them. Only touched pages cost memory: a receiver that keeps up keeps
/// the ring in its first few pages (the ring prefers wrapping early, see `ring/geometry.rs`),
/// and at most the warm half (4 MiB) stays mapped after large messages.
pub(crate) const RING_BYTES: u64 = 8 << 20;

/// Tag of a record holding a whole message.
pub(crate) const TAG_DATA: u8 = 0xD7;
/// Tag of a marker record: the message is on the socket.
pub(crate) const TAG_MARKER: u8 = 0x4B;

/// The sticky "someone polls this direction's socket" bit of [`DirCell`]'s `waiters` word.
const WATCHED: u32 = 1 << 31;

#[repr(C)]
pub(crate) struct DirCell {
    send: RawMutex,
    recv: RawMutex,
    /// Receivers (and `poll`/`wait` callers) about to sleep in `poll(2)` on the socket
    /// (the low bits), and [`WATCHED`] once any process has asked for the receiving end's
    /// fd (`mod.rs`, "Readiness"): a sender that commits a record while the word is non-zero
    /// rings the doorbell (one load after the commit, with or without a watcher).
    waiters: AtomicU32,
    /// Sequence number of the last socket message (bumped under the send lock).
    seq: AtomicU32,
    /// 1 once a sender has rung the doorbell, until a receiver (holding the receive lock)
    /// clears it before dropping doorbells: one doorbell per sleep, not one per record.
    rung: AtomicU32,
}

// SAFETY: two `RawMutex`es (ShmSafe: atomics only) and three `AtomicU32`; repr(C), no pointers,
// every bit pattern is a valid state (a garbage count only costs doorbells or a sleep slice).
unsafe impl ShmSafe for DirCell {}

const _: () = assert!(std::mem::size_of::<DirCell>() <= CELL_STRIDE);
const _: () = assert!(CELLS_AT + CELL_STRIDE * MAX_DIRS as usize <= AREAS_AT);

/// The segment's header.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    dirs: AtomicU64,
}

// SAFETY: two `AtomicU64`; repr(C), no pointers, every bit pattern is valid (and checked
// before use).
unsafe impl ShmSafe for Header {}

/// Length of one direction's queue area (control block and ring).
fn area_len() -> usize {
    SharedQueue::area_len(RING_BYTES)
        .expect("RING_BYTES is a small constant")
        .0
}

/// Writes the concatenation of `parts` into `dst`, which is exactly as long.
pub(crate) fn write_parts(parts: &[&[u8]], dst: &mut [u8]) -> Result<()> {
    let mut at = 0;
    for p in parts {
        dst[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    Ok(())
}

/// A record taken from the ring.
#[derive(Debug)]
pub(crate) enum Record<R> {
    /// A whole message, as the taker's closure made it of the bytes.
    Data(R),
    /// The message is on the socket, in frames with this id; typed or raw.
    Marker(u32, bool),
}

/// Holds one of a direction's locks; unlocks on drop.
#[must_use]
pub(crate) struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// One direction of a connection (a cheap handle; clones share it).
#[derive(Clone, Debug)]
pub(crate) struct Dir {
    ring: SharedQueue,
    cell: Placed<DirCell>,
    /// Which direction of the segment this is.
    index: u8,
}

fn lock(m: &RawMutex) -> Result<Held<'_>> {
    // A previous holder that died is not an error here (see the module docs).
    if !m.try_lock_free() && m.lock(Deadline::never()).is_err() {
        return Err(Error::new(
            ErrorKind::Timeout,
            "connection lock: wait without deadline timed out",
        ));
    }
    Ok(Held(m))
}

/// Takes `m`, waiting until `deadline` at most (a previous holder that died is not an error
/// here either); `None` when it ran out.
fn lock_until(m: &RawMutex, deadline: Deadline) -> Option<Held<'_>> {
    (m.try_lock_free() || m.lock(deadline).is_ok()).then_some(Held(m))
}

impl Dir {
    /// A new connection's shared memory: one segment with one direction (`duplex = false`)
    /// or two, each an empty ring with unlocked locks. Returns the directions.
    pub(crate) fn create(duplex: bool) -> Result<(Dir, Option<Dir>)> {
        let n = if duplex { 2 } else { 1 };
        let seg = Segment::create(SEGMENT_KIND, AREAS_AT + n * area_len())?;
        let mut dirs = Vec::with_capacity(n);
        for i in 0..n {
            let cell = Placed::<DirCell>::new(&seg, CELLS_AT + CELL_STRIDE * i)
                .expect("the cells fit before the areas");
            cell.get().send.init();
            cell.get().recv.init();
            let ring =
                SharedQueue::create_in(seg.clone(), AREAS_AT + i * area_len(), RING_BYTES, None)?;
            dirs.push(Dir {
                ring,
                cell,
                index: i as u8,
            });
        }
        let h: &Header = seg.get(0).expect("the header fits the segment");
        h.dirs.store(n as u64, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        let mut dirs = dirs.into_iter();
        let first = dirs.next().expect("at least one direction");
        Ok((first, dirs.next()))
    }

    /// Direction `index` of a connection's segment (ours or received), validated: see the
    /// module docs.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidHandle`] when any check fails.
    pub(crate) fn open(seg: &Segment, index: u8) -> Result<Dir> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("not a valid multiproc connection segment: {why}"),
            )
        };
        if seg.kind() != SEGMENT_KIND {
            return Err(bad("wrong segment kind"));
        }
        let h: &Header = seg.get(0).ok_or_else(|| bad("segment too small"))?;
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(bad("bad magic"));
        }
        let dirs = h.dirs.load(Ordering::Relaxed);
        if dirs == 0 || dirs > MAX_DIRS {
            return Err(bad("implausible number of directions"));
        }
        if u64::from(index) >= dirs {
            return Err(bad("no such direction"));
        }
        let i = usize::from(index);
        let cell = Placed::<DirCell>::new(seg, CELLS_AT + CELL_STRIDE * i)
            .ok_or_else(|| bad("cell outside the segment"))?;
        let base = AREAS_AT + i * area_len();
        let fits = base
            .checked_add(area_len())
            .is_some_and(|end| end <= seg.payload_len());
        if !fits {
            return Err(bad("direction's area outside the segment"));
        }
        let ring = SharedQueue::open_at(seg.clone(), base)?;
        // The ring's size comes from shared memory: it must stay inside its own area.
        if SharedQueue::area_len(ring.capacity_bytes()).is_none_or(|(len, _)| len > area_len()) {
            return Err(bad("ring larger than its area"));
        }
        Ok(Dir { ring, cell, index })
    }

    /// The connection's segment (the same for all its directions).
    pub(crate) fn segment(&self) -> &Segment {
        self.ring.segment()
    }

    /// Which direction of the segment this is.
    pub(crate) fn index(&self) -> u8 {
        self.index
    }

    #[inline]
    fn cell(&self) -> &DirCell {
        self.cell.get()
    }

    /// Takes the send lock.
    pub(crate) fn lock_send(&self) -> Result<Held<'_>> {
        lock(&self.cell().send)
    }

    /// Takes the receive lock.
    pub(crate) fn lock_recv(&self) -> Result<Held<'_>> {
        lock(&self.cell().recv)
    }

    /// Takes the send lock, waiting until `deadline` at most; `None` when it ran out.
    pub(crate) fn lock_send_until(&self, deadline: Deadline) -> Option<Held<'_>> {
        lock_until(&self.cell().send, deadline)
    }

    /// Takes the receive lock, waiting until `deadline` at most; `None` when it ran out.
    pub(crate) fn lock_recv_until(&self, deadline: Deadline) -> Option<Held<'_>> {
        lock_until(&self.cell().recv, deadline)
    }

    /// Takes the receive lock if nobody holds it (a dead holder counts as nobody).
    pub(crate) fn try_lock_recv(&self) -> Option<Held<'_>> {
        let m = &self.cell().recv;
        m.try_lock().map(|_| Held(m))
    }

    /// True when no sender holds the send lock right now (a dead holder counts as none:
    /// the lock is taken over and released).
    pub(crate) fn no_socket_sender(&self) -> bool {
        let m = &self.cell().send;
        match m.try_lock() {
            Some(_) => {
                m.unlock();
                true
            }
            None => false,
        }
    }

    /// The next socket message's sequence number. Hold the send lock.
    pub(crate) fn next_seq(&self) -> u32 {
        self.cell()
            .seq
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// The sequence number of the last socket message begun (a snapshot, without locks).
    pub(crate) fn last_seq(&self) -> u32 {
        self.cell().seq.load(Ordering::Relaxed)
    }

    /// Puts one record, the concatenation of `parts` (written in place), in a `typed` or
    /// raw ring frame, waiting up to `slice` for room. `Ok(false)`: no room yet.
    #[cfg(test)]
    pub(crate) fn put(
        &self,
        parts: &[&[u8]],
        typed: bool,
        slice: std::time::Duration,
    ) -> Result<bool> {
        let len = parts.iter().map(|p| p.len()).sum();
        self.put_with(len, typed, |dst| write_parts(parts, dst), slice)
    }

    /// Puts one record of `len` bytes that `write` writes in place (it fills
    /// the slice it is given, of exactly `len` bytes; an error puts nothing).
    #[inline]
    pub(crate) fn put_with(
        &self,
        len: usize,
        typed: bool,
        write: impl FnOnce(&mut [u8]) -> Result<()>,
        slice: std::time::Duration,
    ) -> Result<bool> {
        match self
            .ring
            .put_one_with(len, typed, write, Wait::For(Some(slice)))
        {
            Ok(()) => Ok(true),
            Err(PutStop::Full | PutStop::Timeout) => Ok(false),
            Err(PutStop::Closed) => Err(closed_ring()),
            Err(PutStop::Failed(e)) => Err(e),
        }
    }

    /// After a commit: true when a receiver sleeps (or is about to) and no doorbell is
    /// pending since the last [`Dir::clear_rung`]; then the caller must ring it. The fence
    /// pairs with the one in [`Dir::sleeping`].
    pub(crate) fn must_ring(&self) -> bool {
        fence(Ordering::SeqCst);
        let c = self.cell();
        c.waiters.load(Ordering::Relaxed) != 0
            && c.rung.load(Ordering::Relaxed) == 0
            && c.rung.swap(1, Ordering::SeqCst) == 0
    }

    /// True when a doorbell was rung since the last [`Dir::clear_rung`]: one is on the
    /// socket (or its sender died before sending it). A hint, read without ordering.
    pub(crate) fn rung(&self) -> bool {
        self.cell().rung.load(Ordering::Relaxed) != 0
    }

    /// Allows the next doorbell. Hold the receive lock, and call it *before* dropping
    /// doorbells: a doorbell rung after this call announces a record that stays in the ring
    /// while the lock is held, so it is never dropped (see `drain_junk` in `mod.rs`).
    pub(crate) fn clear_rung(&self) {
        self.cell().rung.store(0, Ordering::SeqCst);
    }

    /// Counts this caller as sleeping (`true`) or awake again (`false`). After counting in,
    /// check the ring once more before sleeping: a sender either sees the count or its
    /// record is seen by that check.
    pub(crate) fn sleeping(&self, on: bool) {
        let w = &self.cell().waiters;
        if on {
            w.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        } else {
            // Saturating: a garbage count must not wrap to "someone sleeps" forever (nor
            // take the `WATCHED` bit down with it).
            let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v & !WATCHED != 0).then(|| v - 1)
            });
        }
    }

    /// Marks the direction watched for good: from now on every sender rings the doorbell
    /// on the first record after a [`Dir::clear_rung`], and receivers drain the doorbells
    /// when they empty the ring (see "Readiness" in `mod.rs`). True when it was already.
    pub(crate) fn watch(&self) -> bool {
        let w = &self.cell().waiters;
        w.load(Ordering::Relaxed) & WATCHED != 0
            || w.fetch_or(WATCHED, Ordering::SeqCst) & WATCHED != 0
    }

    /// True once some process has asked for the receiving end's fd ([`Dir::watch`]).
    #[inline]
    pub(crate) fn watched(&self) -> bool {
        self.cell().waiters.load(Ordering::Relaxed) & WATCHED != 0
    }

    /// Sleeps until a sender commits a record, at most `max` and not past `deadline`, on the
    /// ring's own futex: the commit's wake-up, no doorbell, no socket. True when a sender
    /// committed meanwhile (look again). See `wait_for_record` in `recv.rs`.
    pub(crate) fn sleep_for_record(&self, max: std::time::Duration, deadline: Deadline) -> bool {
        self.ring.sleep_while_empty(max, deadline)
    }

    /// True when the ring holds a record (a snapshot, without locks).
    pub(crate) fn has_records(&self) -> bool {
        self.ring.snapshot().count > 0
    }

    /// Takes the oldest record, if any; a data record's bytes go to `on_data` in place (under
    /// the ring's consumer mutex), with whether the record is typed. Hold the receive lock.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] for a record that is not one of ours (it is consumed);
    /// [`ErrorKind::InvalidState`] when the ring was found corrupted (and reset).
    pub(crate) fn take<R>(
        &self,
        on_data: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<Option<Record<R>>> {
        let r = self
            .ring
            .take_one(Wait::No, |f: FrameRef<'_>| match f.bytes().split_last() {
                Some((&TAG_DATA, body)) => Ok(Record::Data(on_data(body, f.typed()))),
                Some((&TAG_MARKER, &[a, b, c, d])) => {
                    Ok(Record::Marker(u32::from_le_bytes([a, b, c, d]), f.typed()))
                }
                _ => Err(Error::new(
                    ErrorKind::Codec,
                    "corrupt record in the connection's ring (it was dropped)",
                )),
            });
        match r {
            Ok(record) => Ok(Some(record)),
            Err(GetStop::Empty | GetStop::Timeout) => Ok(None),
            Err(GetStop::Closed) => Err(closed_ring()),
            Err(GetStop::Failed(e)) => Err(e),
        }
    }
}

/// A handle going away wakes a receiver sleeping on this direction's ring
/// ([`Dir::sleep_for_record`]): when it was the peer's last, the receiver then finds end of
/// file on the socket at once instead of at the end of its futex sleep. Any other drop costs
/// a sleeping receiver one look at the socket; with none sleeping, one load.
impl Drop for Dir {
    fn drop(&mut self) {
        self.ring.wake_sleeping_getters();
    }
}

/// A connection's ring is never closed by its users: only corrupted shared memory shows it so.
#[cold]
fn closed_ring() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "connection ring was closed (corrupted shared memory?)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(seg: &Segment, offset: usize) -> &AtomicU64 {
        seg.get(offset).unwrap()
    }

    #[test]
    fn one_segment_holds_every_direction() {
        let (a, b) = Dir::create(true).unwrap();
        let b = b.unwrap();
        assert_eq!(a.segment().id(), b.segment().id());
        assert_eq!((a.index(), b.index()), (0, 1));
        // The directions are independent rings with their own cells.
        assert!(a
            .put(&[b"to a", &[TAG_DATA]], true, Duration::ZERO)
            .unwrap());
        assert!(!b.has_records());
        let _l = a.lock_send().unwrap();
        assert!(b.no_socket_sender());
        let got = a.take(|m, typed| (m.to_vec(), typed)).unwrap();
        assert!(matches!(got, Some(Record::Data((m, true))) if m == b"to a"));
        // Opened again from the segment (as a receiver does), they are the same ones.
        let a2 = Dir::open(a.segment(), 0).unwrap();
        assert!(!a2.no_socket_sender(), "a2 sees a's send lock held");
        assert!(b
            .put(&[b"to b", &[TAG_DATA]], false, Duration::ZERO)
            .unwrap());
        assert!(Dir::open(b.segment(), 1).unwrap().has_records());
        let (s, none) = Dir::create(false).unwrap();
        assert!(none.is_none());
        assert!(s.segment().payload_len() < a.segment().payload_len());
    }

    #[test]
    fn open_checks_what_shared_memory_says() {
        let (a, _) = Dir::create(true).unwrap();
        let seg = a.segment().clone();
        let err = |seg: &Segment, i: u8| Dir::open(seg, i).unwrap_err().to_string();
        assert!(err(&seg, 2).contains("no such direction"));
        // Another kind of segment (a queue's) is refused.
        let q = SharedQueue::create(4096, None).unwrap();
        assert!(err(q.segment(), 0).contains("wrong segment kind"));
        // A hostile header: bad magic, no or too many directions.
        word(&seg, 0).store(7, Ordering::Relaxed);
        assert!(err(&seg, 0).contains("magic"));
        word(&seg, 0).store(MAGIC, Ordering::Relaxed);
        for n in [0, 3, u64::MAX] {
            word(&seg, 8).store(n, Ordering::Relaxed);
            assert!(err(&seg, 0).contains("directions"), "{n}");
        }
        word(&seg, 8).store(2, Ordering::Relaxed);
        // A ring that claims more than its area (it would reach into the next one).
        let cap = word(&seg, AREAS_AT + 8);
        cap.store(2 * RING_BYTES, Ordering::Relaxed);
        assert!(err(&seg, 0).contains("larger than its area"));
        cap.store(u64::MAX - 7, Ordering::Relaxed);
        assert!(err(&seg, 0).contains("ring size"));
        cap.store(RING_BYTES, Ordering::Relaxed);
        Dir::open(&seg, 0).unwrap();
        // A one-direction segment that claims two: the second area is not there.
        let (s, _) = Dir::create(false).unwrap();
        word(s.segment(), 8).store(2, Ordering::Relaxed);
        assert!(err(s.segment(), 1).contains("outside the segment"));
    }
}

#[cfg(test)]
mod fuzz_records;
