//! [`Dict`]: a hash map in shared memory that every process uses directly (Python's
//! `Manager().dict()`, without the manager).
//!
//! # Why shared memory, not a manager process
//!
//! A Python manager proxy call is a socket round trip to a server process (tens of
//! microseconds, and the server is one more process that can die). Here a `get` or an
//! `insert` is: take a robust process-shared mutex, hash the key's encoding, probe a table
//! in shared memory, copy the entry's bytes, release — no system call when uncontended. The
//! price is a fixed capacity, chosen at creation (entries and bytes per entry), as for
//! [`Array`](crate::Array).
//!
//! # Layout (payload of a segment of kind `Object(DICT)`)
//!
//! The table of `table.rs` (mutex, header, journal, entries) with magic `b"MPDICT01"`,
//! `2 * capacity` entries (the buckets), `len` the number of entries, the type tag of
//! `(K, V)`; each bucket:
//!
//! ```text
//! state u32 (0 empty, 1 full, 2 removed), key length u32, value length u32, pad u32,
//! then the key's and the value's encodings
//! ```
//!
//! Open addressing with linear probing from the FNV-1a hash of the key's encoding (the
//! same in every process; keys compare by their encodings). Twice as many buckets as
//! entries allowed, so probes stay short.
//!
//! # Crash safety: a one-bucket undo journal
//!
//! Every change touches one bucket (and `len`). Under the mutex, a writer first saves the
//! bucket and `len` in the table's journal (`table.rs`), then changes the bucket, then
//! clears the journal. The next process to take the mutex — after a writer was killed at
//! any point, which the robust mutex reports — finds the journal set and copies the old
//! bucket back: the interrupted change is undone whole, never half-applied. A killed
//! *reader*, or a writer killed before its journal was set, changed nothing. So there is no
//! torn entry and no lock held forever.
//!
//! # Trust
//!
//! Everything read from the segment is checked: the geometry on open (it must fit the
//! segment), every state word, length and bucket index on each access (a bad one is an
//! [`ErrorKind::InvalidState`] error naming the corruption); bytes are copied with
//! bounds-checked copies, and decoded as untrusted input.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::table::{Held, Spec, Table, LEN_AT};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Segment, SegmentKind};

const KIND: u8 = crate::kinds::object::DICT;
const BUCKET_HEAD: usize = 16;
static SPEC: Spec = Spec {
    kind: KIND,
    magic: crate::kinds::magic::DICT,
    head: BUCKET_HEAD,
    what: "Dict",
    shifts: false,
};
const EMPTY: u32 = 0;
const FULL: u32 = 1;
const REMOVED: u32 = 2;

/// Makes `Dict<K, V>` invariant in `K` and `V` and `Send + Sync` whatever they are (it holds
/// no `K` or `V`, only their encodings).
type Invariant<K, V> = fn(K, V) -> (K, V);

/// A dictionary shared by processes (Python's `Manager().dict()`): keys and values of any
/// serde types, encoded with postcard into a fixed-capacity table in shared memory.
///
/// ```
/// use multiproc::{sync::Dict, Process};
///
/// let d: Dict<String, u64> = Dict::new()?;
/// d.insert(&"apples".to_string(), &3)?;
/// let child = {
///     let d = d.clone();
///     Process::fork(move || {
///         // Atomic read-modify-write of one entry.
///         d.update(&"apples".to_string(), |n| Some(n.unwrap_or(0) + 1)).unwrap();
///     })?
/// };
/// child.join()?;
/// assert_eq!(d.get(&"apples".to_string())?, Some(4));
/// assert_eq!(d.len(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Every call takes the dictionary's robust lock for the duration of one bucket's change
/// (a process killed inside leaves the entry as it was before: see the module source for the
/// journal). Values come back as copies. A cheap `Clone` handle; it travels to children
/// (fork, Spawn arguments, `Connection::send`) as its fd.
pub struct Dict<K, V> {
    t: Table,
    _t: PhantomData<Invariant<K, V>>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            t: self.t.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dict")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<K, V> Serialize for Dict<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.t.seg.serialize(s)
    }
}

impl<'de, K, V> Deserialize<'de> for Dict<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        Dict::open(seg).map_err(crate::handle::de_err::<D::Error>)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where a key is, or where it would go.
enum Probe {
    Found(usize),
    Vacant(usize),
    Full,
}

impl<K, V> Dict<K, V> {
    fn tag() -> u64 {
        crate::codec::ident::tag_of::<(K, V)>()
    }

    /// Checks a segment received from elsewhere (or just made) and makes a handle.
    fn open(seg: Segment) -> Result<Dict<K, V>> {
        let t = SPEC.open(seg, Self::tag(), "keys or values")?;
        if t.entries == 0 {
            return Err(Error::new(
                ErrorKind::InvalidHandle,
                "not a valid multiproc Dict: it has no buckets",
            ));
        }
        Ok(Dict { t, _t: PhantomData })
    }

    fn bucket_at(&self, i: usize) -> usize {
        self.t.entry_at(i)
    }

    /// Takes the mutex; undoes the change of a writer that died (see the module docs).
    fn lock(&self) -> Result<Held<'_>> {
        self.t.lock()
    }

    fn state(&self, i: usize) -> &AtomicU32 {
        self.t
            .seg
            .get(self.bucket_at(i))
            .expect("bucket in bounds: geometry checked at open")
    }

    /// Key and value lengths of full bucket `i`, checked against the slot.
    fn lens(&self, i: usize) -> Result<(usize, usize)> {
        let at = self.bucket_at(i);
        let k = self.t.seg.get::<AtomicU32>(at + 4).expect("in bounds");
        let v = self.t.seg.get::<AtomicU32>(at + 8).expect("in bounds");
        let (k, v) = (
            k.load(Ordering::Relaxed) as usize,
            v.load(Ordering::Relaxed) as usize,
        );
        if k.checked_add(v).is_none_or(|t| t > self.t.slot) {
            return Err(self.t.corrupt("entry longer than its slot"));
        }
        Ok((k, v))
    }

    fn probe(&self, key: &[u8]) -> Result<Probe> {
        let start = (fnv(key) % self.t.entries as u64) as usize;
        let mut vacant = None;
        let mut buf = Vec::new();
        for n in 0..self.t.entries {
            let i = (start + n) % self.t.entries;
            match self.state(i).load(Ordering::Relaxed) {
                EMPTY => return Ok(Probe::Vacant(vacant.unwrap_or(i))),
                REMOVED => {
                    vacant.get_or_insert(i);
                }
                FULL => {
                    let (k, _) = self.lens(i)?;
                    if k == key.len() {
                        buf.clear();
                        self.t
                            .seg
                            .read_bytes(self.bucket_at(i) + BUCKET_HEAD, k, &mut buf);
                        if buf == key {
                            return Ok(Probe::Found(i));
                        }
                    }
                }
                _ => return Err(self.t.corrupt("bad bucket state")),
            }
        }
        Ok(vacant.map_or(Probe::Full, Probe::Vacant))
    }

    fn value_bytes(&self, i: usize) -> Result<Vec<u8>> {
        let (k, v) = self.lens(i)?;
        let mut out = Vec::with_capacity(v);
        self.t
            .seg
            .read_bytes(self.bucket_at(i) + BUCKET_HEAD + k, v, &mut out);
        Ok(out)
    }

    /// Changes bucket `i` under the journal: `state`, then the key and value (if any).
    fn write_bucket(&self, i: usize, state: u32, kv: Option<(&[u8], &[u8])>, len: u64) {
        let at = self.bucket_at(i);
        self.t.save(i);
        if let Some((k, v)) = kv {
            let head = self.t.seg.get::<AtomicU32>(at + 4).expect("in bounds");
            head.store(k.len() as u32, Ordering::Relaxed);
            let vl = self.t.seg.get::<AtomicU32>(at + 8).expect("in bounds");
            vl.store(v.len() as u32, Ordering::Relaxed);
            self.t.seg.write_bytes(at + BUCKET_HEAD, k);
            self.t.seg.write_bytes(at + BUCKET_HEAD + k.len(), v);
        }
        self.state(i).store(state, Ordering::Relaxed);
        self.t.word(LEN_AT).store(len, Ordering::Relaxed);
        self.t.commit();
    }

    /// Entries now (a snapshot).
    pub fn len(&self) -> usize {
        self.t.word(LEN_AT).load(Ordering::Relaxed) as usize
    }

    /// Whether it has no entries (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name this dictionary was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.t.seg.name()
    }

    /// Removes this dictionary's name (those that have it keep it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name or the name now belongs to another
    /// object; [`ErrorKind::NotFound`] when the name is gone.
    pub fn unlink(&self) -> Result<()> {
        crate::shm::named::unlink_segment(&self.t.seg)
    }

    /// How many entries it can hold.
    pub fn capacity(&self) -> usize {
        self.t.entries / 2
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// An empty dictionary for up to 1024 entries of up to 240 bytes each (key and value
    /// encoded together).
    ///
    /// # Errors
    /// If shared memory cannot be had.
    pub fn new() -> Result<Dict<K, V>> {
        Self::with_capacity(1024, 240)
    }

    /// An empty dictionary for up to `entries` entries whose key and value take up to
    /// `entry_bytes` bytes together once encoded (postcard: a `u64` takes 1 to 10 bytes, a
    /// string its length plus 1 or 2). Memory: about `2 * entries * (entry_bytes + 16)`
    /// bytes, allocated as used.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for 0 entries or sizes too large.
    pub fn with_capacity(entries: usize, entry_bytes: usize) -> Result<Dict<K, V>> {
        Self::make(entries, entry_bytes, None)
    }

    /// A new dictionary (as [`with_capacity`](Self::with_capacity)) under the name `name`,
    /// which unrelated processes of this user open with [`open_named`](Self::open_named)
    /// (see docs/names.md: the name appears once the table is ready, and stays until
    /// [`unlink`](Self::unlink) or [`shm::unlink_named`](crate::shm::unlink_named)).
    ///
    /// ```
    /// use multiproc::sync::Dict;
    /// # let name = format!("doc_dict_named_{}", std::process::id());
    /// let d: Dict<String, u64> = Dict::create_named(&name, 1024, 64)?;
    /// let other: Dict<String, u64> = Dict::open_named(&name)?; // in any process of this user
    /// other.insert(&"hits".to_string(), &1)?;
    /// assert_eq!(d.get(&"hits".to_string())?, Some(1));
    /// assert!(Dict::<String, String>::open_named(&name).is_err()); // another type
    /// d.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; as
    /// [`with_capacity`](Self::with_capacity).
    pub fn create_named(name: &str, entries: usize, entry_bytes: usize) -> Result<Dict<K, V>> {
        Self::make(entries, entry_bytes, Some(name))
    }

    /// Opens the dictionary named `name`, for the same key and value types.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidHandle`] when the name holds another
    /// kind of object, a `Dict` of other types, or a damaged one.
    pub fn open_named(name: &str) -> Result<Dict<K, V>> {
        let seg = crate::shm::named::open_segment(
            name,
            SegmentKind::Object(KIND),
            Self::identity(),
            &|| {
                format!(
                    "a Dict<{}, {}>",
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>()
                )
            },
        )?;
        Self::open(seg)
    }

    /// Opens the dictionary named `name`, or creates it (as
    /// [`create_named`](Self::create_named)) when there is none.
    ///
    /// # Errors
    /// As [`open_named`](Self::open_named) and [`create_named`](Self::create_named).
    pub fn open_or_create(name: &str, entries: usize, entry_bytes: usize) -> Result<Dict<K, V>> {
        crate::shm::named::open_or_create(
            name,
            || Self::open_named(name),
            || Self::create_named(name, entries, entry_bytes),
        )
    }

    fn identity() -> crate::shm::Identity {
        crate::shm::Identity {
            what: KIND as u32,
            tag: Self::tag(),
        }
    }

    fn make(entries: usize, entry_bytes: usize, name: Option<&str>) -> Result<Dict<K, V>> {
        let too_big = || Error::new(ErrorKind::InvalidArgument, "Dict capacity too large");
        if entries == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a Dict needs room for at least one entry",
            ));
        }
        let buckets = entries.checked_mul(2).ok_or_else(too_big)?;
        let t = SPEC.create(
            buckets,
            entry_bytes,
            Self::tag(),
            name.map(|_| Self::identity()),
        )?;
        let d = Self::open(t.seg)?;
        if let Some(name) = name {
            crate::shm::named::publish(&d.t.seg, name)?;
        }
        Ok(d)
    }

    fn encode_key(key: &K) -> Result<Vec<u8>> {
        crate::codec::to_vec(key)
    }

    fn decode_value(bytes: &[u8]) -> Result<V> {
        Postcard::decode(bytes)
    }

    /// A copy of the value for `key` (Python's `d.get(key)`).
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the key does not encode or the stored value does not
    /// decode; [`ErrorKind::InvalidState`] when the table is corrupt.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = Self::encode_key(key)?;
        let bytes = {
            let _held = self.lock()?;
            match self.probe(&k)? {
                Probe::Found(i) => self.value_bytes(i)?,
                _ => return Ok(None),
            }
        };
        Self::decode_value(&bytes).map(Some)
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let k = Self::encode_key(key)?;
        let _held = self.lock()?;
        Ok(matches!(self.probe(&k)?, Probe::Found(_)))
    }

    /// The core of every change: under the lock, finds `key`, lets `f` see the encoding of
    /// its value (if any) and say the new one (`None`: no value), applies it under the
    /// journal, and returns the old encoding with `f`'s result.
    fn modify<R>(
        &self,
        key: &K,
        f: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, R)>,
    ) -> Result<(Option<Vec<u8>>, R)> {
        let k = Self::encode_key(key)?;
        let _held = self.lock()?;
        let p = self.probe(&k)?;
        let old = match p {
            Probe::Found(i) => Some(self.value_bytes(i)?),
            _ => None,
        };
        let (new, r) = f(old.as_deref())?;
        let len = self.t.word(LEN_AT).load(Ordering::Relaxed);
        if let Some(v) = &new {
            if k.len() + v.len() > self.t.slot {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "Dict entry of {} bytes encoded, over this Dict's {} (Dict::with_capacity)",
                        k.len() + v.len(),
                        self.t.slot
                    ),
                ));
            }
        }
        match (p, new) {
            (Probe::Found(i), Some(v)) => self.write_bucket(i, FULL, Some((&k, &v)), len),
            (Probe::Found(i), None) => self.write_bucket(i, REMOVED, None, len.saturating_sub(1)),
            (Probe::Vacant(i), Some(v)) if (len as usize) < self.capacity() => {
                self.write_bucket(i, FULL, Some((&k, &v)), len + 1)
            }
            (_, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("Dict is full ({} entries)", self.capacity()),
                ))
            }
            (_, None) => {}
        }
        Ok((old, r))
    }

    /// Sets `key` to `value` (Python's `d[key] = value`); returns the value it replaced.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when the encoded entry is longer than the
    /// dictionary's entry size, or the dictionary is full (nothing changed then); as
    /// [`get`](Self::get) otherwise.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let v = crate::codec::to_vec(value)?;
        let (old, ()) = self.modify(key, |_| Ok((Some(v), ())))?;
        old.map(|b| Self::decode_value(&b)).transpose()
    }

    /// Removes `key`; returns its value (Python's `d.pop(key, None)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let (old, ()) = self.modify(key, |_| Ok((None, ())))?;
        old.map(|b| Self::decode_value(&b)).transpose()
    }

    /// Atomic read-modify-write of one entry: `f` gets the current value (or `None`) and
    /// returns the new one (or `None` to remove the entry), with the dictionary's lock held,
    /// so no other process changes the entry in between (Python needs a separate lock
    /// around `d[k] = d[k] + 1`). Returns what `f` returned. A process killed while `f`
    /// runs, or while the change is written, leaves the entry as it was.
    ///
    /// Keep `f` short: every other call on this dictionary waits for it. `f` must not call
    /// this dictionary (through any handle): the lock is not re-entrant, so that waits
    /// forever.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); `f` is not called when the stored value does not
    /// decode.
    pub fn update(&self, key: &K, f: impl FnOnce(Option<V>) -> Option<V>) -> Result<()> {
        self.modify(key, |old| {
            let old = old.map(Self::decode_value).transpose()?;
            let new = f(old).map(|v| crate::codec::to_vec(&v)).transpose()?;
            Ok((new, ()))
        })?;
        Ok(())
    }

    /// A copy of every entry, in no particular order (Python's `d.items()`), taken at one
    /// instant.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        let mut raw = Vec::new();
        {
            let _held = self.lock()?;
            for i in 0..self.t.entries {
                match self.state(i).load(Ordering::Relaxed) {
                    FULL => {
                        let (k, v) = self.lens(i)?;
                        let mut b = Vec::with_capacity(k + v);
                        self.t
                            .seg
                            .read_bytes(self.bucket_at(i) + BUCKET_HEAD, k + v, &mut b);
                        raw.push((b, k));
                    }
                    EMPTY | REMOVED => {}
                    _ => return Err(self.t.corrupt("bad bucket state")),
                }
            }
        }
        raw.into_iter()
            .map(|(b, k)| Ok((Postcard::decode(&b[..k])?, Self::decode_value(&b[k..])?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that dies half-way through a change (journal written, bucket scribbled on,
    /// lock held): the next caller undoes the change whole.
    #[test]
    fn a_change_cut_short_by_death_is_undone() {
        let d: Dict<u32, String> = Dict::with_capacity(4, 64).unwrap();
        d.insert(&1, &"before".to_string()).unwrap();
        d.insert(&2, &"other".to_string()).unwrap();
        let k = crate::codec::to_vec(&1u32).unwrap();
        let Probe::Found(i) = d.probe(&k).unwrap() else {
            panic!("key 1 is there")
        };
        let d2 = d.clone();
        std::thread::spawn(move || {
            let d = d2;
            d.t.raw().lock_forever();
            // The first half of `write_bucket`, then garbage where the entry was.
            let at = d.bucket_at(i);
            d.t.save(i);
            d.t.seg.write_bytes(at + 4, &[0xff; 40]);
            d.t.word(LEN_AT).store(77, Ordering::Relaxed);
            // The thread ends holding the lock: a dead owner.
        })
        .join()
        .unwrap();
        assert_eq!(d.get(&1).unwrap().as_deref(), Some("before"));
        assert_eq!(d.get(&2).unwrap().as_deref(), Some("other"));
        assert_eq!(d.len(), 2);
        assert_eq!(d.t.word(56).load(Ordering::Relaxed), 0, "journal cleared");
    }

    /// Corruption written by another process is an error, never a panic or a wrong value.
    #[test]
    fn corrupt_tables_are_errors() {
        let d: Dict<u32, u32> = Dict::with_capacity(2, 16).unwrap();
        d.insert(&5, &6).unwrap();
        let k = crate::codec::to_vec(&5u32).unwrap();
        let Probe::Found(i) = d.probe(&k).unwrap() else {
            panic!("key 5 is there")
        };
        // A length past its slot.
        d.t.seg
            .write_bytes(d.bucket_at(i) + 4, &u32::MAX.to_ne_bytes());
        assert_eq!(d.get(&5).unwrap_err().kind(), ErrorKind::InvalidState);
        // A bad state word.
        d.state(i).store(9, Ordering::Relaxed);
        assert_eq!(d.items().unwrap_err().kind(), ErrorKind::InvalidState);
        // A journal that names no bucket.
        d.t.word(64).store(u64::MAX, Ordering::Relaxed);
        d.t.word(56).store(1, Ordering::Relaxed);
        assert_eq!(d.get(&5).unwrap_err().kind(), ErrorKind::InvalidState);
        // A geometry that does not fit, or another type, is refused on open.
        d.t.word(24).store(u64::MAX / 4, Ordering::Relaxed);
        assert!(Dict::<u32, u32>::open(d.t.seg.clone()).is_err());
        d.t.word(24).store(4, Ordering::Relaxed);
        let e = Dict::<u32, u64>::open(d.t.seg.clone()).unwrap_err();
        assert!(e.to_string().contains("another type"), "{e}");
        d.t.word(16).store(0, Ordering::Relaxed);
        assert!(Dict::<u32, u32>::open(d.t.seg.clone()).is_err());
    }
}
