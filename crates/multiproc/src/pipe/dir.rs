//! One direction of a connection: a shared-memory ring of small messages (the queue's ring,
//! `queue/shared.rs`, reused as is) and a small shared cell with the direction's two locks,
//! its count of sleeping receivers and its message sequence counter.
//!
//! Every copy of both ends shares the direction: the sending end's copies put records into
//! the ring, the receiving end's copies take them. A record is a message's bytes followed by
//! one tag byte ([`TAG_DATA`]), or a *marker* (a `u32` sequence number, then [`TAG_MARKER`])
//! saying "the next message is on the socket, in frames whose id is this number". The ring
//! commits each record with one store, so a sender killed mid-put leaves it wholly there or
//! absent; a receiver killed mid-take has taken it or not (see `queue/shared.rs`).
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

use std::sync::atomic::{fence, AtomicU32, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::queue::shared::{FrameRef, GetStop, PutStop, SharedQueue, Wait};
use crate::shm::{Segment, Shared, ShmObject, ShmSafe};
use crate::sync::RawMutex;
use crate::sys::Deadline;

/// Shared object kind of a direction's cell (pipe codes are 24–31).
const KIND_DIR_CELL: u8 = 25;

/// Ring bytes per direction. Only touched pages cost memory: a receiver that keeps up keeps
/// the ring in its first few pages (the ring prefers wrapping early, see `queue/ring.rs`).
pub(crate) const RING_BYTES: u64 = 256 << 10;

/// Tag of a record holding a whole message.
pub(crate) const TAG_DATA: u8 = 0xD7;
/// Tag of a marker record: the message is on the socket.
pub(crate) const TAG_MARKER: u8 = 0x4B;

#[repr(C)]
pub(crate) struct DirCell {
    send: RawMutex,
    recv: RawMutex,
    /// Receivers (and `poll`/`wait` callers) about to sleep in `poll(2)` on the socket:
    /// a sender that commits a record while it is non-zero rings the doorbell.
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

impl ShmObject for DirCell {
    const KIND: u8 = KIND_DIR_CELL;
}

/// A record taken from the ring.
#[derive(Debug)]
pub(crate) enum Record<R> {
    /// A whole message, as the taker's closure made it of the bytes.
    Data(R),
    /// The message is on the socket, in frames with this id.
    Marker(u32),
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
    cell: Shared<DirCell>,
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

impl Dir {
    /// A new direction: an empty ring, unlocked locks.
    pub(crate) fn new() -> Result<Dir> {
        Ok(Dir {
            ring: SharedQueue::create(RING_BYTES, None)?,
            cell: Shared::new(|c: &DirCell| {
                c.send.init();
                c.recv.init();
            })?,
        })
    }

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

    /// Puts one record, the concatenation of `parts` (written in place), waiting up to
    /// `slice` for room. `Ok(false)`: no room yet.
    pub(crate) fn put(&self, parts: &[&[u8]], slice: std::time::Duration) -> Result<bool> {
        let len = parts.iter().map(|p| p.len()).sum();
        let write = |_, dst: &mut [u8]| {
            let mut at = 0;
            for p in parts {
                dst[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            Ok(())
        };
        match self
            .ring
            .put_frames_with(1, |_| len, write, Wait::For(Some(slice)))
        {
            Ok(()) => Ok(true),
            Err((_, PutStop::Full | PutStop::Timeout)) => Ok(false),
            Err((_, PutStop::Closed)) => Err(Error::new(
                ErrorKind::InvalidState,
                "connection ring was closed (corrupted shared memory?)",
            )),
            Err((_, PutStop::Failed(e))) => Err(e),
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
            // Saturating: a garbage count must not wrap to "someone sleeps" forever.
            let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
        }
    }

    /// True when the ring holds a record (a snapshot, without locks).
    pub(crate) fn has_records(&self) -> bool {
        self.ring.snapshot().count > 0
    }

    /// Takes the oldest record, if any; a data record's bytes go to `on_data` in place (under
    /// the ring's consumer mutex). Hold the receive lock.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] for a record that is not one of ours (it is consumed);
    /// [`ErrorKind::InvalidState`] when the ring was found corrupted (and reset).
    pub(crate) fn take<R>(&self, on_data: impl FnOnce(&[u8]) -> R) -> Result<Option<Record<R>>> {
        let mut on_data = Some(on_data);
        let mut out = None;
        let r = self.ring.take_frames(1, Wait::No, |_, f: FrameRef<'_>| {
            out = Some(match f.bytes().split_last() {
                Some((&TAG_DATA, body)) => match on_data.take() {
                    Some(g) => Record::Data(g(body)),
                    None => unreachable!("take_frames(1) hands over one frame"),
                },
                Some((&TAG_MARKER, &[a, b, c, d])) => {
                    Record::Marker(u32::from_le_bytes([a, b, c, d]))
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Codec,
                        "corrupt record in the connection's ring (it was dropped)",
                    ))
                }
            });
            Ok(())
        });
        match r {
            Ok(_) => Ok(out),
            Err(GetStop::Empty | GetStop::Timeout) => Ok(None),
            Err(GetStop::Closed) => Err(Error::new(
                ErrorKind::InvalidState,
                "connection ring was closed (corrupted shared memory?)",
            )),
            Err(GetStop::Failed(e)) => Err(e),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    ring: Segment,
    cell: Shared<DirCell>,
}

impl Serialize for Dir {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Wire {
            ring: self.ring.segment().clone(),
            cell: self.cell.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dir {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let ring = SharedQueue::open(w.ring).map_err(crate::handle::de_err::<D::Error>)?;
        Ok(Dir { ring, cell: w.cell })
    }
}
