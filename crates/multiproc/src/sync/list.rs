//! [`List`]: a fixed-capacity list in shared memory that every process uses directly
//! (Python's `Manager().list()`, without the manager; the reasons are `dict.rs`').
//!
//! # Layout (payload of a segment of kind `Object(LIST)`)
//!
//! ```text
//! 0    RawMutex (16 bytes)
//! 16   magic b"MPLIST01"     24 capacity (u64)   32 slot bytes (u64)
//! 40   len (u64)             48 type tag of T (u64)
//! 56   journal_valid (u64)   64 journal_index (u64)
//! 128  journal: one slot's bytes
//! 128 + S   capacity x S bytes, S = 8 + slot bytes (rounded to 8)
//! slot: length u32, pad u32, then the item's encoding
//! ```
//!
//! # Crash safety
//!
//! `push` writes the item into the slot past the end, then publishes it with one store of
//! `len`; `pop`, `truncate` and `clear` are one store of `len`: a process killed before that
//! store changed nothing visible. `set` and `update` change a visible slot in place, under a
//! one-slot undo journal (as `Dict`'s): the next process to take the lock after a writer
//! died puts the old slot back. Every length and index read from the segment is checked.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RawMutex;
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Segment, SegmentKind};

const KIND: u8 = crate::kinds::object::LIST;
const MAGIC: u64 = u64::from_le_bytes(crate::kinds::magic::LIST);
const JOURNAL_AT: usize = 128;
const SLOT_HEAD: usize = 8;

/// `List<T>` holds no `T`, only encodings: invariant in `T`, `Send + Sync` whatever it is.
type Invariant<T> = fn(T) -> T;

/// A list shared by processes (Python's `Manager().list()`): items of any serde type,
/// encoded with postcard into a fixed-capacity array in shared memory, behind a robust lock.
///
/// ```
/// use multiproc::{sync::List, Process};
///
/// let l: List<String> = List::with_capacity(100, 64)?;
/// let child = {
///     let l = l.clone();
///     Process::fork(move || l.push(&"from the child".to_string()).unwrap())?
/// };
/// child.join()?;
/// l.push(&"from the parent".to_string())?;
/// assert_eq!(l.to_vec()?, vec!["from the child", "from the parent"]);
/// l.update(0, |s| s + "!")?;
/// assert_eq!(l.get(0)?.as_deref(), Some("from the child!"));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// `push`, `pop`, `get`, `set`, `update` (atomic read-modify-write of one item), `len`,
/// `to_vec`, `truncate`, `clear`. No insertion or removal in the middle (each would move
/// every later item). A process killed inside any call leaves the list as it was before the
/// call or after it, never with a torn item.
pub struct List<T> {
    seg: Segment,
    cap: usize,
    slot: usize,
    _t: PhantomData<Invariant<T>>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            seg: self.seg.clone(),
            cap: self.cap,
            slot: self.slot,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("len", &self.len())
            .field("capacity", &self.cap)
            .finish()
    }
}

impl<T> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        List::open(seg).map_err(crate::handle::de_err::<D::Error>)
    }
}

/// Holds the list's mutex; releases it when dropped (also by a panic).
struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

fn corrupt(why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidState,
        format!("shared List is corrupt: {why}"),
    )
}

fn out_of_range(i: usize, len: usize) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("List index {i} out of range (length {len})"),
    )
}

impl<T> List<T> {
    fn tag() -> u64 {
        crate::codec::ident::tag_of::<T>()
    }

    fn slot_len(slot: usize) -> usize {
        (SLOT_HEAD + slot).next_multiple_of(8)
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        self.seg
            .get(at)
            .expect("header checked when the handle was made")
    }

    fn raw(&self) -> &RawMutex {
        self.seg
            .get(0)
            .expect("header checked when the handle was made")
    }

    fn open(seg: Segment) -> Result<List<T>> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("not a valid multiproc List: {why}"),
            )
        };
        if seg.kind() != SegmentKind::Object(KIND) {
            return Err(bad("wrong segment kind"));
        }
        let w = |at: usize| {
            seg.get::<AtomicU64>(at)
                .map(|w| w.load(Ordering::Acquire))
                .ok_or_else(|| bad("segment too small"))
        };
        if w(16)? != MAGIC {
            return Err(bad("bad magic"));
        }
        if w(48)? != Self::tag() {
            return Err(bad("it holds items of another type"));
        }
        let cap = usize::try_from(w(24)?).map_err(|_| bad("capacity out of range"))?;
        let slot = usize::try_from(w(32)?).map_err(|_| bad("slot size out of range"))?;
        let fits = slot
            .checked_add(SLOT_HEAD + 8)
            .map(|_| Self::slot_len(slot))
            .and_then(|b| b.checked_mul(cap.checked_add(1)?))
            .and_then(|t| t.checked_add(JOURNAL_AT))
            .is_some_and(|t| t <= seg.payload_len());
        if slot > u32::MAX as usize || !fits {
            return Err(bad("array does not fit its segment"));
        }
        seg.get::<RawMutex>(0)
            .ok_or_else(|| bad("segment too small"))?;
        Ok(List {
            seg,
            cap,
            slot,
            _t: PhantomData,
        })
    }

    fn slot_at(&self, i: usize) -> usize {
        JOURNAL_AT + Self::slot_len(self.slot) * (i + 1)
    }

    /// Takes the mutex; undoes the change of a writer that died (see the module docs).
    fn lock(&self) -> Result<Held<'_>> {
        let raw = self.raw();
        raw.lock_forever();
        let held = Held(raw);
        if self.word(56).load(Ordering::Acquire) != 0 {
            let i = usize::try_from(self.word(64).load(Ordering::Relaxed))
                .ok()
                .filter(|&i| i < self.cap)
                .ok_or_else(|| corrupt("journal names no slot"))?;
            let mut old = Vec::new();
            if !self
                .seg
                .read_bytes(JOURNAL_AT, Self::slot_len(self.slot), &mut old)
                || !self.seg.write_bytes(self.slot_at(i), &old)
            {
                return Err(corrupt("journal out of bounds"));
            }
            self.word(56).store(0, Ordering::Release);
        }
        Ok(held)
    }

    /// The length under the lock, checked against the capacity.
    fn checked_len(&self) -> Result<usize> {
        usize::try_from(self.word(40).load(Ordering::Relaxed))
            .ok()
            .filter(|&l| l <= self.cap)
            .ok_or_else(|| corrupt("length over capacity"))
    }

    fn item_bytes(&self, i: usize) -> Result<Vec<u8>> {
        let at = self.slot_at(i);
        let n = self
            .seg
            .get::<AtomicU32>(at)
            .expect("slot in bounds: checked at open")
            .load(Ordering::Relaxed) as usize;
        if n > self.slot {
            return Err(corrupt("item longer than its slot"));
        }
        let mut out = Vec::with_capacity(n);
        self.seg.read_bytes(at + SLOT_HEAD, n, &mut out);
        Ok(out)
    }

    /// Writes `bytes` into slot `i` (length checked by the caller); under the journal when
    /// the slot is visible.
    fn write_slot(&self, i: usize, bytes: &[u8], journal: bool) {
        let at = self.slot_at(i);
        if journal {
            let mut old = Vec::new();
            self.seg.read_bytes(at, Self::slot_len(self.slot), &mut old);
            self.seg.write_bytes(JOURNAL_AT, &old);
            self.word(64).store(i as u64, Ordering::Relaxed);
            self.word(56).store(1, Ordering::Release);
        }
        self.seg
            .get::<AtomicU32>(at)
            .expect("slot in bounds: checked at open")
            .store(bytes.len() as u32, Ordering::Relaxed);
        self.seg.write_bytes(at + SLOT_HEAD, bytes);
        if journal {
            self.word(56).store(0, Ordering::Release);
        }
    }

    fn check_size(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.slot {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "List item of {} bytes encoded, over this List's {} (List::with_capacity)",
                    bytes.len(),
                    self.slot
                ),
            ));
        }
        Ok(())
    }

    /// Items now (a snapshot).
    pub fn len(&self) -> usize {
        (self.word(40).load(Ordering::Relaxed) as usize).min(self.cap)
    }

    /// Whether it has no items (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name this list was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Removes this list's name (those that have it keep it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name or the name now belongs to another
    /// object; [`ErrorKind::NotFound`] when the name is gone.
    pub fn unlink(&self) -> Result<()> {
        crate::shm::named::unlink_segment(&self.seg)
    }

    /// How many items it can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Keeps the first `len` items (Python's `del l[len:]`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the list is corrupt.
    pub fn truncate(&self, len: usize) -> Result<()> {
        let _held = self.lock()?;
        if len < self.checked_len()? {
            self.word(40).store(len as u64, Ordering::Release);
        }
        Ok(())
    }

    /// Removes every item.
    ///
    /// # Errors
    /// As [`truncate`](Self::truncate).
    pub fn clear(&self) -> Result<()> {
        self.truncate(0)
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// An empty list for up to `capacity` items of up to `item_bytes` bytes each once
    /// encoded (postcard). Memory: about `capacity * (item_bytes + 8)` bytes, allocated as
    /// used.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for sizes too large.
    pub fn with_capacity(capacity: usize, item_bytes: usize) -> Result<List<T>> {
        Self::make(capacity, item_bytes, None)
    }

    /// A new list (as [`with_capacity`](Self::with_capacity)) under the name `name`, which
    /// unrelated processes of this user open with [`open_named`](Self::open_named) (see
    /// docs/names.md).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; as
    /// [`with_capacity`](Self::with_capacity).
    pub fn create_named(name: &str, capacity: usize, item_bytes: usize) -> Result<List<T>> {
        Self::make(capacity, item_bytes, Some(name))
    }

    /// Opens the list named `name`, for the same item type.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidHandle`] when the name holds another
    /// kind of object, a `List` of another type, or a damaged one.
    pub fn open_named(name: &str) -> Result<List<T>> {
        let seg = crate::shm::named::open_segment(
            name,
            SegmentKind::Object(KIND),
            Self::identity(),
            &|| format!("a List<{}>", std::any::type_name::<T>()),
        )?;
        Self::open(seg)
    }

    /// Opens the list named `name`, or creates it (empty) when there is none.
    ///
    /// # Errors
    /// As [`open_named`](Self::open_named) and [`create_named`](Self::create_named).
    pub fn open_or_create(name: &str, capacity: usize, item_bytes: usize) -> Result<List<T>> {
        crate::shm::named::open_or_create(
            name,
            || Self::open_named(name),
            || Self::create_named(name, capacity, item_bytes),
        )
    }

    fn identity() -> crate::shm::Identity {
        crate::shm::Identity {
            what: KIND as u32,
            tag: Self::tag(),
        }
    }

    /// A new list; in a named segment, published once ready, when `name` is given (and
    /// holding `first` as its first item when given: a `Namespace`'s value).
    pub(super) fn make_with(
        capacity: usize,
        item_bytes: usize,
        name: Option<&str>,
        first: Option<&T>,
    ) -> Result<List<T>> {
        let l = Self::make_unpublished(capacity, item_bytes, name.is_some())?;
        if let Some(item) = first {
            l.push(item)?;
        }
        if let Some(name) = name {
            crate::shm::named::publish(&l.seg, name)?;
        }
        Ok(l)
    }

    fn make(capacity: usize, item_bytes: usize, name: Option<&str>) -> Result<List<T>> {
        Self::make_with(capacity, item_bytes, name, None)
    }

    fn make_unpublished(capacity: usize, item_bytes: usize, named: bool) -> Result<List<T>> {
        let too_big = || Error::new(ErrorKind::InvalidArgument, "List capacity too large");
        if item_bytes > u32::MAX as usize / 2 {
            return Err(too_big());
        }
        let total = Self::slot_len(item_bytes)
            .checked_mul(capacity.checked_add(1).ok_or_else(too_big)?)
            .and_then(|t| t.checked_add(JOURNAL_AT))
            .ok_or_else(too_big)?;
        let seg = if named {
            crate::shm::named::create_segment(
                SegmentKind::Object(KIND),
                total,
                Self::identity(),
                JOURNAL_AT + Self::slot_len(item_bytes),
            )?
        } else {
            Segment::create(SegmentKind::Object(KIND), total)?
        };
        seg.get::<RawMutex>(0).expect("header in bounds").init();
        let w = |at: usize, v: u64| {
            seg.get::<AtomicU64>(at)
                .expect("header in bounds")
                .store(v, Ordering::Relaxed)
        };
        w(24, capacity as u64);
        w(32, item_bytes as u64);
        w(48, Self::tag());
        w(16, MAGIC);
        Self::open(seg)
    }

    fn decode(bytes: &[u8]) -> Result<T> {
        Postcard::decode(bytes)
    }

    /// Appends `item` (Python's `l.append(item)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the list is full or the item's encoding is
    /// longer than a slot (nothing changed); [`ErrorKind::Codec`] when it does not encode.
    pub fn push(&self, item: &T) -> Result<()> {
        let bytes = crate::codec::to_vec(item)?;
        self.check_size(&bytes)?;
        let _held = self.lock()?;
        let len = self.checked_len()?;
        if len == self.cap {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("List is full ({} items)", self.cap),
            ));
        }
        // Past the end: invisible until the length says otherwise.
        self.write_slot(len, &bytes, false);
        self.word(40).store(len as u64 + 1, Ordering::Release);
        Ok(())
    }

    /// Removes and returns the last item (Python's `l.pop()`), `None` when empty.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the item does not decode (it is removed all the same);
    /// [`ErrorKind::InvalidState`] when the list is corrupt.
    pub fn pop(&self) -> Result<Option<T>> {
        let bytes = {
            let _held = self.lock()?;
            let len = self.checked_len()?;
            if len == 0 {
                return Ok(None);
            }
            let b = self.item_bytes(len - 1)?;
            self.word(40).store(len as u64 - 1, Ordering::Release);
            b
        };
        Self::decode(&bytes).map(Some)
    }

    /// A copy of item `i` (Python's `l[i]`), `None` past the end.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the item does not decode; [`ErrorKind::InvalidState`]
    /// when the list is corrupt.
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        let bytes = {
            let _held = self.lock()?;
            if i >= self.checked_len()? {
                return Ok(None);
            }
            self.item_bytes(i)?
        };
        Self::decode(&bytes).map(Some)
    }

    /// Replaces item `i` (Python's `l[i] = item`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for an index past the end or an item too long.
    pub fn set(&self, i: usize, item: &T) -> Result<()> {
        let bytes = crate::codec::to_vec(item)?;
        self.check_size(&bytes)?;
        let _held = self.lock()?;
        let len = self.checked_len()?;
        if i >= len {
            return Err(out_of_range(i, len));
        }
        self.write_slot(i, &bytes, true);
        Ok(())
    }

    /// Atomic read-modify-write of item `i`: `f` gets it and returns its new value, with the
    /// list's lock held (`f` must not call this list: the lock is not re-entrant).
    ///
    /// # Errors
    /// As [`set`](Self::set); `f` is not called when the item does not decode.
    pub fn update(&self, i: usize, f: impl FnOnce(T) -> T) -> Result<()> {
        let _held = self.lock()?;
        let len = self.checked_len()?;
        if i >= len {
            return Err(out_of_range(i, len));
        }
        let new = crate::codec::to_vec(&f(Self::decode(&self.item_bytes(i)?)?))?;
        self.check_size(&new)?;
        self.write_slot(i, &new, true);
        Ok(())
    }

    /// A copy of every item, taken at one instant (Python's `l[:]`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let raw = {
            let _held = self.lock()?;
            (0..self.checked_len()?)
                .map(|i| self.item_bytes(i))
                .collect::<Result<Vec<_>>>()?
        };
        raw.iter().map(|b| Self::decode(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that dies half-way through a `set` (journal written, slot scribbled on, lock
    /// held): the next caller puts the old item back.
    #[test]
    fn a_set_cut_short_by_death_is_undone() {
        let l: List<String> = List::with_capacity(4, 32).unwrap();
        l.push(&"zero".to_string()).unwrap();
        l.push(&"one".to_string()).unwrap();
        let l2 = l.clone();
        std::thread::spawn(move || {
            let l = l2;
            l.raw().lock_forever();
            let at = l.slot_at(1);
            let mut old = Vec::new();
            l.seg
                .read_bytes(at, List::<String>::slot_len(l.slot), &mut old);
            l.seg.write_bytes(JOURNAL_AT, &old);
            l.word(64).store(1, Ordering::Relaxed);
            l.word(56).store(1, Ordering::Release);
            l.seg.write_bytes(at, &[0x07; 20]);
            // Ends holding the lock: a dead owner.
        })
        .join()
        .unwrap();
        assert_eq!(l.to_vec().unwrap(), vec!["zero", "one"]);
        assert_eq!(l.word(56).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn corrupt_lists_are_errors() {
        let l: List<u32> = List::with_capacity(2, 8).unwrap();
        l.push(&1).unwrap();
        l.seg.write_bytes(l.slot_at(0), &u32::MAX.to_ne_bytes());
        assert_eq!(l.get(0).unwrap_err().kind(), ErrorKind::InvalidState);
        l.word(40).store(99, Ordering::Relaxed);
        assert_eq!(l.to_vec().unwrap_err().kind(), ErrorKind::InvalidState);
        assert!(List::<u64>::open(l.seg.clone()).is_err());
        l.word(24).store(u64::MAX / 2, Ordering::Relaxed);
        assert!(List::<u32>::open(l.seg.clone()).is_err());
    }
}
