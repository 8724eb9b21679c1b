//! The fixed table under [`Dict`](super::Dict) and [`List`](super::List): a segment holding
//! a robust mutex, a header, a one-entry journal and `entries` entries of one size, and the
//! journal that makes every change whole after the death of its writer. Each container
//! gives its entries their meaning (a hash bucket, a list slot); this file knows their
//! size only.
//!
//! # Layout (payload of a segment of kind `Object(kind)`)
//!
//! ```text
//! 0    RawMutex (16 bytes)
//! 16   magic (the container's)    24 entries (u64)    32 slot bytes (u64)
//! 40   len (u64)                  48 type tag of the contents (u64)
//! 56   journal state (u64)        64 journal index (u64)
//! 72   saved len (u64)            80 shift progress (u64)
//! 128  journal: one entry's bytes
//! 128 + E   entries x E bytes, E = the container's entry head + slot bytes, rounded to 8
//! ```
//!
//! # The journal
//!
//! Every change happens with the mutex held. The robust mutex tells the next process to
//! take it when the holder died, at any instruction; that process looks at the journal
//! state before anything else, and finishes or undoes the interrupted change:
//!
//! | state | change in progress | recovery |
//! |-------|--------------------|----------|
//! | 0 `NONE` | none (or one that publishes itself with one store: a `List`'s `push`, `pop`) | nothing |
//! | 1 `UNDO` | entry `index` is being rewritten; its old bytes and `len` are saved | copy the old bytes back, restore `len`: undone whole |
//! | 2 `INSERT` | entries `index..saved` move up by one, then the journal's entry goes to `index`, then `len` = saved + 1 | finish it from `progress` (rolled forward) |
//! | 3 `REMOVE` | entries `index+1..saved` move down by one, then `len` = saved - 1 | finish it from `progress` |
//!
//! A shift is a sequence of copies of one entry onto its neighbour, each followed by a
//! store of `progress`. The entry a copy reads is overwritten only by the next copy, so a
//! copy cut short is simply done again: the recovery runs the very loop the writer ran,
//! from the step it had reached. The saved length, not the current one, sets the result,
//! so a recovery cut short is finished by the next one alike. A state word is published
//! (Release) only after what it refers to is in place.
//!
//! # Trust
//!
//! Every number read from the segment is checked before use: the geometry on open (it
//! must fit the segment), the journal's index, saved length and progress on recovery, and
//! the length on each access (an error naming the corruption, never an out-of-bounds
//! access); bytes move by bounds-checked copies.

use std::sync::atomic::{AtomicU64, Ordering};

use super::RawMutex;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Identity, Segment, SegmentKind};

/// Where the journal's entry starts; the entries follow it.
pub(super) const JOURNAL_AT: usize = 128;
const MAGIC_AT: usize = 16;
const ENTRIES_AT: usize = 24;
const SLOT_AT: usize = 32;
/// The number of items (a `Dict`'s entries, a `List`'s length).
pub(super) const LEN_AT: usize = 40;
const TAG_AT: usize = 48;
const STATE_AT: usize = 56;
const INDEX_AT: usize = 64;
const SAVED_LEN_AT: usize = 72;
const PROGRESS_AT: usize = 80;

const NONE: u64 = 0;
const UNDO: u64 = 1;
const INSERT: u64 = 2;
const REMOVE: u64 = 3;

/// What makes a table a `Dict` or a `List`.
pub(super) struct Spec {
    /// The object kind of its segments.
    pub(super) kind: u8,
    /// Its magic, at 16.
    pub(super) magic: [u8; 8],
    /// Bytes of an entry before its slot bytes.
    pub(super) head: usize,
    /// The container's name, for messages.
    pub(super) what: &'static str,
    /// Whether it shifts entries (`INSERT`, `REMOVE`); a journal state it does not use is
    /// corruption.
    pub(super) shifts: bool,
}

impl Spec {
    fn entry_len(&self, slot: usize) -> usize {
        (self.head + slot).next_multiple_of(8)
    }

    /// A new empty table of `entries` entries of `slot` bytes each (after their head), for
    /// contents of type tag `tag`; in a named segment, not yet published, when `named`
    /// gives its identity.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for sizes too large; OS errors.
    pub(super) fn create(
        &'static self,
        entries: usize,
        slot: usize,
        tag: u64,
        named: Option<Identity>,
    ) -> Result<Table> {
        let too_big = || {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{} capacity too large", self.what),
            )
        };
        if slot > u32::MAX as usize / 2 {
            return Err(too_big());
        }
        let e = self.entry_len(slot);
        let total = e
            .checked_mul(entries.checked_add(1).ok_or_else(too_big)?)
            .and_then(|t| t.checked_add(JOURNAL_AT))
            .ok_or_else(too_big)?;
        let seg = match named {
            None => Segment::create(SegmentKind::Object(self.kind), total)?,
            Some(id) => crate::shm::named::create_segment(
                SegmentKind::Object(self.kind),
                total,
                id,
                JOURNAL_AT + e,
            )?,
        };
        seg.get::<RawMutex>(0).expect("header in bounds").init();
        let w = |at: usize, v: u64| {
            seg.get::<AtomicU64>(at)
                .expect("header in bounds")
                .store(v, Ordering::Relaxed)
        };
        w(ENTRIES_AT, entries as u64);
        w(SLOT_AT, slot as u64);
        w(TAG_AT, tag);
        w(MAGIC_AT, u64::from_le_bytes(self.magic));
        self.open(seg, tag, "contents")
    }

    /// Checks a segment received from elsewhere, opened by name or just made, for contents
    /// of type tag `tag` (`contents` names them for the message).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidHandle`] naming what is wrong.
    pub(super) fn open(&'static self, seg: Segment, tag: u64, contents: &str) -> Result<Table> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("not a valid multiproc {}: {why}", self.what),
            )
        };
        if seg.kind() != SegmentKind::Object(self.kind) {
            return Err(bad("wrong segment kind"));
        }
        let w = |at: usize| {
            seg.get::<AtomicU64>(at)
                .map(|w| w.load(Ordering::Acquire))
                .ok_or_else(|| bad("segment too small"))
        };
        if w(MAGIC_AT)? != u64::from_le_bytes(self.magic) {
            return Err(bad("bad magic"));
        }
        if w(TAG_AT)? != tag {
            return Err(bad(&format!("it holds {contents} of another type")));
        }
        let entries = usize::try_from(w(ENTRIES_AT)?).map_err(|_| bad("size out of range"))?;
        let slot = usize::try_from(w(SLOT_AT)?).map_err(|_| bad("slot size out of range"))?;
        let fits = slot
            .checked_add(self.head + 8)
            .map(|_| self.entry_len(slot))
            .and_then(|b| b.checked_mul(entries.checked_add(1)?))
            .and_then(|t| t.checked_add(JOURNAL_AT))
            .is_some_and(|t| t <= seg.payload_len());
        if slot > u32::MAX as usize || !fits {
            return Err(bad("table does not fit its segment"));
        }
        seg.get::<RawMutex>(0)
            .ok_or_else(|| bad("segment too small"))?;
        Ok(Table {
            seg,
            entries,
            slot,
            entry_len: self.entry_len(slot),
            spec: self,
        })
    }
}

/// Holds a table's mutex; releases it when dropped (also by a panic).
pub(super) struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// One handle's view of a table (its geometry, checked at open).
#[derive(Clone)]
pub(super) struct Table {
    pub(super) seg: Segment,
    /// Entries (a `Dict`'s buckets, a `List`'s capacity).
    pub(super) entries: usize,
    /// Slot bytes of an entry, after its head.
    pub(super) slot: usize,
    /// Bytes of an entry, head and padding included.
    pub(super) entry_len: usize,
    spec: &'static Spec,
}

impl Table {
    /// A header word.
    pub(super) fn word(&self, at: usize) -> &AtomicU64 {
        self.seg
            .get(at)
            .expect("header checked when the handle was made")
    }

    pub(super) fn raw(&self) -> &RawMutex {
        self.seg
            .get(0)
            .expect("header checked when the handle was made")
    }

    /// Where entry `i` starts.
    pub(super) fn entry_at(&self, i: usize) -> usize {
        JOURNAL_AT + self.entry_len * (i + 1)
    }

    /// An error that says the table is corrupt.
    pub(super) fn corrupt(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::InvalidState,
            format!("shared {} is corrupt: {why}", self.spec.what),
        )
    }

    /// The length word, checked against the entries.
    pub(super) fn checked_len(&self) -> Result<usize> {
        usize::try_from(self.word(LEN_AT).load(Ordering::Relaxed))
            .ok()
            .filter(|&l| l <= self.entries)
            .ok_or_else(|| self.corrupt("length over capacity"))
    }

    /// Takes the mutex, then finishes or undoes the change of a writer that died (see the
    /// module docs).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the journal is corrupt (the mutex is released).
    pub(super) fn lock(&self) -> Result<Held<'_>> {
        let raw = self.raw();
        raw.lock_forever();
        let held = Held(raw);
        match self.word(STATE_AT).load(Ordering::Acquire) {
            NONE => {}
            UNDO => {
                let i = self.journal_index(self.entries)?;
                let mut old = Vec::new();
                if !self.seg.read_bytes(JOURNAL_AT, self.entry_len, &mut old)
                    || !self.seg.write_bytes(self.entry_at(i), &old)
                {
                    return Err(self.corrupt("journal out of bounds"));
                }
                let len = self.word(SAVED_LEN_AT).load(Ordering::Relaxed);
                self.word(LEN_AT).store(len, Ordering::Relaxed);
                self.word(STATE_AT).store(NONE, Ordering::Release);
            }
            INSERT | REMOVE if self.spec.shifts => self.roll_forward()?,
            _ => return Err(self.corrupt("bad journal state")),
        }
        Ok(held)
    }

    /// The journal's index, checked to be below `limit`.
    fn journal_index(&self, limit: usize) -> Result<usize> {
        usize::try_from(self.word(INDEX_AT).load(Ordering::Relaxed))
            .ok()
            .filter(|&i| i < limit)
            .ok_or_else(|| self.corrupt("journal names no entry"))
    }

    /// Saves entry `i` and the length in the journal (lock held), before entry `i` and the
    /// length change; [`commit`](Self::commit) ends the change.
    pub(super) fn save(&self, i: usize) {
        let mut old = Vec::with_capacity(self.entry_len);
        self.seg
            .read_bytes(self.entry_at(i), self.entry_len, &mut old);
        self.seg.write_bytes(JOURNAL_AT, &old);
        self.word(INDEX_AT).store(i as u64, Ordering::Relaxed);
        self.word(SAVED_LEN_AT)
            .store(self.word(LEN_AT).load(Ordering::Relaxed), Ordering::Relaxed);
        self.word(STATE_AT).store(UNDO, Ordering::Release);
    }

    /// Ends the change [`save`](Self::save) began: it stays.
    pub(super) fn commit(&self) {
        self.word(STATE_AT).store(NONE, Ordering::Release);
    }

    /// Inserts `entry` (an entry's bytes, at most `entry_len`) at `i` of the first `len`
    /// entries (lock held; `i <= len < entries`, checked by the caller), moving the later
    /// ones up by one, and makes the length `len + 1`.
    pub(super) fn insert(&self, i: usize, len: usize, entry: &[u8]) -> Result<()> {
        debug_assert!(i <= len && len < self.entries && entry.len() <= self.entry_len);
        self.seg.write_bytes(JOURNAL_AT, entry);
        self.begin_shift(INSERT, i, len, len);
        self.roll_forward()
    }

    /// Removes entry `i` of the first `len` (lock held; `i < len <= entries`, checked by
    /// the caller), moving the later ones down by one, and makes the length `len - 1`.
    pub(super) fn remove(&self, i: usize, len: usize) -> Result<()> {
        debug_assert!(i < len && len <= self.entries);
        self.begin_shift(REMOVE, i, len, i);
        self.roll_forward()
    }

    fn begin_shift(&self, state: u64, i: usize, len: usize, progress: usize) {
        self.word(INDEX_AT).store(i as u64, Ordering::Relaxed);
        self.word(SAVED_LEN_AT).store(len as u64, Ordering::Relaxed);
        self.word(PROGRESS_AT)
            .store(progress as u64, Ordering::Relaxed);
        self.word(STATE_AT).store(state, Ordering::Release);
    }

    /// Runs the shift the journal describes from where it stands to its end (the writer's
    /// own loop, and the recovery of one that died).
    fn roll_forward(&self) -> Result<()> {
        let state = self.word(STATE_AT).load(Ordering::Acquire);
        let word = |at: usize| usize::try_from(self.word(at).load(Ordering::Relaxed)).ok();
        let (saved, progress) = (word(SAVED_LEN_AT), word(PROGRESS_AT));
        let mut buf = Vec::with_capacity(self.entry_len);
        let mut copy = |from: usize, to: usize| {
            buf.clear();
            if !self.seg.read_bytes(from, self.entry_len, &mut buf)
                || !self.seg.write_bytes(to, &buf)
            {
                return Err(self.corrupt("journal out of bounds"));
            }
            Ok(())
        };
        if state == INSERT {
            // Entries index..saved move up, from the top; `progress` is the next to fill.
            let (Some(saved), Some(mut p)) = (saved, progress) else {
                return Err(self.corrupt("journal out of range"));
            };
            if saved >= self.entries {
                return Err(self.corrupt("journal out of range"));
            }
            let i = self.journal_index(saved + 1)?;
            if p < i || p > saved {
                return Err(self.corrupt("journal out of range"));
            }
            while p > i {
                copy(self.entry_at(p - 1), self.entry_at(p))?;
                p -= 1;
                self.word(PROGRESS_AT).store(p as u64, Ordering::Release);
            }
            copy(JOURNAL_AT, self.entry_at(i))?;
            self.word(LEN_AT).store(saved as u64 + 1, Ordering::Release);
        } else {
            // Entries index+1..saved move down, from the bottom; `progress` is the next
            // to fill.
            let (Some(saved), Some(mut p)) = (saved, progress) else {
                return Err(self.corrupt("journal out of range"));
            };
            let i = self.journal_index(saved)?;
            if saved > self.entries || p < i || p >= saved {
                return Err(self.corrupt("journal out of range"));
            }
            while p + 1 < saved {
                copy(self.entry_at(p + 1), self.entry_at(p))?;
                p += 1;
                self.word(PROGRESS_AT).store(p as u64, Ordering::Release);
            }
            self.word(LEN_AT).store(saved as u64 - 1, Ordering::Release);
        }
        self.word(STATE_AT).store(NONE, Ordering::Release);
        Ok(())
    }
}
