//! [`List`]: a fixed-capacity list in shared memory that every process uses directly
//! (Python's `Manager().list()`, without the manager; the reasons are `dict.rs`').
//!
//! # Layout (payload of a segment of kind `Object(LIST)`)
//!
//! The table of `table.rs` (mutex, header, journal, entries) with magic `b"MPLIST02"`,
//! `capacity` entries (the slots), `len` the list's length, the type tag of `T`; each slot:
//!
//! ```text
//! length u32, pad u32, then the item's encoding
//! ```
//!
//! # Crash safety
//!
//! `push` writes the item into the slot past the end, then publishes it with one store of
//! `len`; `pop`, `truncate` and `clear` are one store of `len`: a process killed before that
//! store changed nothing visible. `set` and `update` change a visible slot in place, under
//! the table's one-entry undo journal (as `Dict`'s): the next process to take the lock
//! after a writer died puts the old slot back. `insert` and `remove` move the later items
//! by one slot each under the journal's shift states, which the next process finishes
//! (the loop is the writer's own, restarted where it stood): the list is then as after the
//! call, whole. Every length and index read from the segment is checked (`table.rs`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::table::{Held, Spec, Table, LEN_AT};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Segment, SegmentKind};

const KIND: u8 = crate::kinds::object::LIST;
const SLOT_HEAD: usize = 8;
static SPEC: Spec = Spec {
    kind: KIND,
    magic: crate::kinds::magic::LIST,
    head: SLOT_HEAD,
    what: "List",
    shifts: true,
};

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
/// `push`, `pop`, `get`, `set`, `update` (atomic read-modify-write of one item), `insert`
/// and `remove` in the middle (Python's `l.insert(i, x)` and `l.pop(i)` / `del l[i]`: they
/// move every later item, so they cost a copy of each), `len`, `to_vec`, `truncate`,
/// `clear`. A process killed inside any call leaves the list as it was before the call or
/// after it, never with a torn item, a lost item or a doubled one.
pub struct List<T> {
    t: Table,
    _t: PhantomData<Invariant<T>>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            t: self.t.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.t.seg.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        List::open(seg).map_err(crate::handle::de_err::<D::Error>)
    }
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

    fn open(seg: Segment) -> Result<List<T>> {
        Ok(List {
            t: SPEC.open(seg, Self::tag(), "items")?,
            _t: PhantomData,
        })
    }

    fn slot_at(&self, i: usize) -> usize {
        self.t.entry_at(i)
    }

    /// Takes the mutex; undoes or finishes the change of a writer that died (see the
    /// module docs).
    fn lock(&self) -> Result<Held<'_>> {
        self.t.lock()
    }

    /// The length under the lock, checked against the capacity.
    fn checked_len(&self) -> Result<usize> {
        self.t.checked_len()
    }

    fn item_bytes(&self, i: usize) -> Result<Vec<u8>> {
        let at = self.slot_at(i);
        let n = self
            .t
            .seg
            .get::<AtomicU32>(at)
            .expect("slot in bounds: checked at open")
            .load(Ordering::Relaxed) as usize;
        if n > self.t.slot {
            return Err(self.t.corrupt("item longer than its slot"));
        }
        let mut out = Vec::with_capacity(n);
        self.t.seg.read_bytes(at + SLOT_HEAD, n, &mut out);
        Ok(out)
    }

    /// Writes `bytes` into slot `i` (length checked by the caller); under the journal when
    /// the slot is visible.
    fn write_slot(&self, i: usize, bytes: &[u8], journal: bool) {
        let at = self.slot_at(i);
        if journal {
            self.t.save(i);
        }
        self.t
            .seg
            .get::<AtomicU32>(at)
            .expect("slot in bounds: checked at open")
            .store(bytes.len() as u32, Ordering::Relaxed);
        self.t.seg.write_bytes(at + SLOT_HEAD, bytes);
        if journal {
            self.t.commit();
        }
    }

    fn check_size(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.t.slot {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "List item of {} bytes encoded, over this List's {} (List::with_capacity)",
                    bytes.len(),
                    self.t.slot
                ),
            ));
        }
        Ok(())
    }

    /// Items now (a snapshot).
    pub fn len(&self) -> usize {
        (self.t.word(LEN_AT).load(Ordering::Relaxed) as usize).min(self.t.entries)
    }

    /// Whether it has no items (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name this list was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.t.seg.name()
    }

    /// Removes this list's name (those that have it keep it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name or the name now belongs to another
    /// object; [`ErrorKind::NotFound`] when the name is gone.
    pub fn unlink(&self) -> Result<()> {
        crate::shm::named::unlink_segment(&self.t.seg)
    }

    /// How many items it can hold.
    pub fn capacity(&self) -> usize {
        self.t.entries
    }

    /// Keeps the first `len` items (Python's `del l[len:]`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the list is corrupt.
    pub fn truncate(&self, len: usize) -> Result<()> {
        let _held = self.lock()?;
        if len < self.checked_len()? {
            self.t.word(LEN_AT).store(len as u64, Ordering::Release);
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
            crate::shm::named::publish(&l.t.seg, name)?;
        }
        Ok(l)
    }

    fn make(capacity: usize, item_bytes: usize, name: Option<&str>) -> Result<List<T>> {
        Self::make_with(capacity, item_bytes, name, None)
    }

    fn make_unpublished(capacity: usize, item_bytes: usize, named: bool) -> Result<List<T>> {
        let t = SPEC.create(
            capacity,
            item_bytes,
            Self::tag(),
            named.then(Self::identity),
        )?;
        Ok(List { t, _t: PhantomData })
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
        if len == self.t.entries {
            return Err(self.full());
        }
        // Past the end: invisible until the length says otherwise.
        self.write_slot(len, &bytes, false);
        self.t.word(LEN_AT).store(len as u64 + 1, Ordering::Release);
        Ok(())
    }

    fn full(&self) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("List is full ({} items)", self.t.entries),
        )
    }

    /// Inserts `item` before item `i` (Python's `l.insert(i, item)`; `i == len()` appends),
    /// moving the later items up by one.
    ///
    /// ```
    /// use multiproc::sync::List;
    /// let l: List<char> = List::with_capacity(8, 4)?;
    /// for c in ['a', 'c'] {
    ///     l.push(&c)?;
    /// }
    /// l.insert(1, &'b')?;
    /// l.insert(0, &'_')?;
    /// assert_eq!(l.remove(0)?, '_');
    /// assert_eq!(l.to_vec()?, vec!['a', 'b', 'c']);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for an index past the end (unlike Python, which
    /// appends), a full list or an item too long (nothing changed); [`ErrorKind::Codec`]
    /// when it does not encode; [`ErrorKind::InvalidState`] when the list is corrupt.
    pub fn insert(&self, i: usize, item: &T) -> Result<()> {
        let bytes = crate::codec::to_vec(item)?;
        self.check_size(&bytes)?;
        let _held = self.lock()?;
        let len = self.checked_len()?;
        if i > len {
            return Err(out_of_range(i, len));
        }
        if len == self.t.entries {
            return Err(self.full());
        }
        let mut entry = Vec::with_capacity(SLOT_HEAD + bytes.len());
        entry.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
        entry.extend_from_slice(&[0; SLOT_HEAD - 4]);
        entry.extend_from_slice(&bytes);
        self.t.insert(i, len, &entry)
    }

    /// Removes item `i` and returns it (Python's `l.pop(i)`, and `del l[i]`), moving the
    /// later items down by one.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for an index past the end (nothing changed);
    /// [`ErrorKind::Codec`] when the item does not decode (it is removed all the same);
    /// [`ErrorKind::InvalidState`] when the list is corrupt.
    #[doc(alias = "pop")]
    pub fn remove(&self, i: usize) -> Result<T> {
        let bytes = {
            let _held = self.lock()?;
            let len = self.checked_len()?;
            if i >= len {
                return Err(out_of_range(i, len));
            }
            let b = self.item_bytes(i)?;
            self.t.remove(i, len)?;
            b
        };
        Self::decode(&bytes)
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
            self.t.word(LEN_AT).store(len as u64 - 1, Ordering::Release);
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
    use crate::sync::table::JOURNAL_AT;
    use std::sync::atomic::AtomicU64;

    fn word(l: &List<String>, at: usize) -> &AtomicU64 {
        l.t.word(at)
    }

    fn list(items: &[&str]) -> List<String> {
        let l = List::with_capacity(8, 32).unwrap();
        for s in items {
            l.push(&s.to_string()).unwrap();
        }
        l
    }

    /// Runs `f` in a thread that takes the list's lock and ends holding it: a writer that
    /// died half-way through whatever `f` wrote.
    fn die_holding(l: &List<String>, f: impl FnOnce(&List<String>) + Send + 'static) {
        let l2 = l.clone();
        std::thread::spawn(move || {
            l2.t.raw().lock_forever();
            f(&l2);
        })
        .join()
        .unwrap();
    }

    /// A writer that dies half-way through a `set` (journal written, slot scribbled on, lock
    /// held): the next caller puts the old item back.
    #[test]
    fn a_set_cut_short_by_death_is_undone() {
        let l = list(&["zero", "one"]);
        die_holding(&l, |l| {
            l.t.save(1);
            l.t.seg.write_bytes(l.slot_at(1), &[0x07; 20]);
        });
        assert_eq!(l.to_vec().unwrap(), vec!["zero", "one"]);
        assert_eq!(word(&l, 56).load(Ordering::Relaxed), 0);
    }

    /// What a writer shifting item 1 of 5 did before it died: the copies `moves` (from, to),
    /// then half of the copy into `torn`, with the journal in state `state` at `progress`.
    fn cut_shift(
        l: &List<String>,
        state: u64,
        progress: u64,
        moves: impl Iterator<Item = (usize, usize)>,
        torn: Option<usize>,
    ) {
        for (from, to) in moves {
            let mut b = Vec::new();
            l.t.seg.read_bytes(l.slot_at(from), l.t.entry_len, &mut b);
            l.t.seg.write_bytes(l.slot_at(to), &b);
        }
        if let Some(t) = torn {
            l.t.seg.write_bytes(l.slot_at(t), &[0xee; 6]);
        }
        word(l, 64).store(1, Ordering::Relaxed);
        word(l, 72).store(5, Ordering::Relaxed);
        word(l, 80).store(progress, Ordering::Relaxed);
        word(l, 56).store(state, Ordering::Release);
    }

    /// Every point an insert or a remove can be cut at: the journal set up, some of the
    /// items moved, one copy torn half-way (garbage in the slot being filled). The next
    /// caller finishes the change.
    #[test]
    fn an_insert_or_remove_cut_short_by_death_is_finished() {
        let base = ["a", "b", "c", "d", "e"];
        // Insert "X" at 1 of 5: slots 5, 4, 3, 2 are filled from below, then slot 1.
        for progress in [5u64, 4, 3, 2, 1] {
            let l = list(&base);
            die_holding(&l, move |l| {
                let entry = [&2u32.to_ne_bytes()[..], &[0; 4], &[1, b'X']].concat();
                l.t.seg.write_bytes(JOURNAL_AT, &entry);
                let p = progress as usize;
                let moves = (p + 1..=5).rev().map(|to| (to - 1, to));
                cut_shift(l, 2, progress, moves, Some(p));
            });
            assert_eq!(
                l.to_vec().unwrap(),
                vec!["a", "X", "b", "c", "d", "e"],
                "insert cut at {progress}"
            );
        }
        // Remove 1 of 5: slots 1, 2, 3 are filled from above, then the length drops.
        for progress in [1u64, 2, 3, 4] {
            let l = list(&base);
            die_holding(&l, move |l| {
                let p = progress as usize;
                let moves = (1..p).map(|to| (to + 1, to));
                cut_shift(l, 3, progress, moves, (p < 4).then_some(p));
            });
            assert_eq!(
                l.to_vec().unwrap(),
                vec!["a", "c", "d", "e"],
                "remove cut at {progress}"
            );
            assert_eq!(word(&l, 56).load(Ordering::Relaxed), 0);
        }
    }

    /// A journal whose numbers are out of range is an error, never an access out of
    /// bounds or a shift of the wrong items.
    #[test]
    fn a_corrupt_shift_journal_is_an_error() {
        for (state, index, saved, progress) in [
            (2u64, 1u64, 8u64, 8u64), // insert into a full list
            (2, 6, 5, 5),             // index past the saved length
            (2, 1, 5, 0),             // progress below the index
            (2, 1, 5, 6),             // progress past the saved length
            (3, 5, 5, 5),             // remove past the end
            (3, 1, 9, 1),             // saved length over capacity
            (3, 1, 5, 5),             // progress at the saved length
            (3, 1, u64::MAX, 1),
            (2, 1, u64::MAX, 1),
            (2, u64::MAX, 5, 5),
            (7, 0, 0, 0), // an unknown state
        ] {
            let l = list(&["a", "b", "c", "d", "e"]);
            word(&l, 64).store(index, Ordering::Relaxed);
            word(&l, 72).store(saved, Ordering::Relaxed);
            word(&l, 80).store(progress, Ordering::Relaxed);
            word(&l, 56).store(state, Ordering::Relaxed);
            let e = l.to_vec().unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidState,
                "{state} {index} {saved} {progress}"
            );
        }
    }

    #[test]
    fn corrupt_lists_are_errors() {
        let l: List<u32> = List::with_capacity(2, 8).unwrap();
        l.push(&1).unwrap();
        l.t.seg.write_bytes(l.slot_at(0), &u32::MAX.to_ne_bytes());
        assert_eq!(l.get(0).unwrap_err().kind(), ErrorKind::InvalidState);
        l.t.word(LEN_AT).store(99, Ordering::Relaxed);
        assert_eq!(l.to_vec().unwrap_err().kind(), ErrorKind::InvalidState);
        assert!(List::<u64>::open(l.t.seg.clone()).is_err());
        l.t.word(24).store(u64::MAX / 2, Ordering::Relaxed);
        assert!(List::<u32>::open(l.t.seg.clone()).is_err());
    }
}
