//! A worker's mailbox: the shared memory between the parent and one worker (which chunk the
//! worker began, and the bulk of chunks that fit a slot). What travels through it is
//! described in `worker.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::Result;
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
    pub(crate) fn take_args(&self, slot: usize, len: usize, out: &mut Vec<u8>) -> bool {
        slot < SLOTS && len <= SLOT && self.0.read_bytes(ARGS_AT + slot * SLOT, len, out)
    }

    /// The worker: puts a chunk's outcomes in slot `slot`; false when they don't fit.
    pub(crate) fn put_outcomes(&self, slot: usize, bytes: &[u8]) -> bool {
        slot < SLOTS && bytes.len() <= SLOT && self.0.write_bytes(OUTCOMES_AT + slot * SLOT, bytes)
    }

    /// The parent: appends the `len` outcome bytes of slot `slot` to `out` (untrusted bytes;
    /// false when `len` is out of bounds).
    pub(crate) fn take_outcomes(&self, slot: usize, len: usize, out: &mut Vec<u8>) -> bool {
        slot < SLOTS && len <= SLOT && self.0.read_bytes(OUTCOMES_AT + slot * SLOT, len, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
