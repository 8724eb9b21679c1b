//! Small shared objects carved out of shared arenas, so that 20,000 locks cost a couple of fds
//! rather than 20,000.
//!
//! An arena is one [`Segment`] of kind `Arena`. Its payload layout:
//! ```text
//! 0                 hint       AtomicU32   where the next allocation starts looking
//! 64                slot table AtomicU32 x SLOTS   0 = free, else (kind << 24) | count
//! 64 + 4*SLOTS      slots      SLOTS x 64 bytes, each 64-byte aligned (one cache line)
//! ```
//! Allocation CASes a table entry from 0 to `(kind << 24) | 1`; the slot is free again when
//! its count reaches zero. All of it is lock-free, so a process killed at any point leaks at
//! most the counts it held (freed with the arena when the last process holding it ends).
//!
//! # Who holds a count
//!
//! The shared count counts *holders*, not handles:
//! - each process that uses a slot holds **one** count, through a [`SlotRef`] that all its
//!   handles to that slot share (an `Arc`: cloning a handle touches no shared memory);
//! - a handle serialized into a message carries one count "in flight", which the receiver
//!   adopts (or gives back, if it already holds one);
//! - a forked child holds **no** count of its own on what it inherited: its parent *pins*
//!   every slot it held at the instant of the fork (an extra `Arc` per `SlotRef`, kept with
//!   the child's entry in the children registry) until it has reaped that child — so a slot
//!   cannot be freed while a child may still use it, whether the child returns, exits or is
//!   SIGKILLed. The child tells inherited `SlotRef`s from its own by their *fork generation*
//!   (`sys::thread::fork_generation`, different in every forked child): dropping an
//!   inherited one gives back no count.
//!
//! Before this scheme every handle held its own count and a forked child's copies of the
//! parent's handles were not counted, so a clone moved into a child was released twice (by
//! the parent when it dropped the closure after the fork, and by the child): the slot was
//! freed while the parent still used it, and the next allocation aliased it (issue 17.1).
//!
//! Audit of the other state that crosses a fork (issue 17.1): queues, pipes, big `Value`s,
//! `Array`s and pool mailboxes hold no shared reference count — each handle owns its fd and
//! mapping, and a forked child's copies of those are its own (the kernel counts them). The
//! only shared counts in the crate are the arena slots here.
//!
//! Objects larger than a slot get a segment of their own (kind `Object(k)`), offset 0.
//!
//! # Safety
//!
//! Slots are addressed inside a mapped segment whose table size was checked against the mapping
//! before any slot is touched.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Segment, SegmentKind, ShmSafe};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::thread::fork_generation;

const SLOTS: usize = 16384;
const SLOT: usize = 64;
const TABLE_AT: usize = 64;
const SLOTS_AT: usize = TABLE_AT + 4 * SLOTS; // 65600, a multiple of 64
const ARENA_PAYLOAD: usize = SLOTS_AT + SLOTS * SLOT;
const COUNT_MASK: u32 = 0x00ff_ffff;

/// An object type that lives in shared memory behind a [`Shared`] handle.
pub(crate) trait ShmObject: ShmSafe {
    /// Distinct per type (see the table in `shm/mod.rs`' users); checked when a handle is
    /// opened, so a Lock's description can't open a Semaphore.
    const KIND: u8;
}

static CURRENT: Mutex<Option<Segment>> = Mutex::new(None);

pub(super) fn lock_current() -> MutexGuard<'static, Option<Segment>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's `SlotRef`s by (segment id, slot): how a received handle finds the count its
/// process already holds, and what a fork pins.
pub(super) type Refs = BTreeMap<(u64, usize), Weak<SlotRef>>;

static REFS: Mutex<Refs> = Mutex::new(BTreeMap::new());

pub(super) fn lock_refs() -> MutexGuard<'static, Refs> {
    REFS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slot table, or `None` when the segment is too small to be an arena (a forged or
/// corrupt segment received from a peer).
fn table(seg: &Segment) -> Option<&[AtomicU32]> {
    if seg.payload_len() < ARENA_PAYLOAD {
        return None;
    }
    let t: &[AtomicU32; SLOTS] = seg.get(TABLE_AT)?;
    Some(t)
}

/// The table of an arena this process created (always full-sized).
fn own_table(seg: &Segment) -> &[AtomicU32] {
    table(seg).expect("an arena created here has a full slot table")
}

fn try_alloc_in(seg: &Segment, kind: u8) -> Option<usize> {
    let hint: &AtomicU32 = seg.get(0)?;
    let table = table(seg)?;
    let start = hint.load(Ordering::Relaxed) as usize % SLOTS;
    for i in (start..SLOTS).chain(0..start) {
        if table[i].load(Ordering::Relaxed) == 0
            && table[i]
                .compare_exchange(
                    0,
                    ((kind as u32) << 24) | 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            hint.store((i + 1) as u32, Ordering::Relaxed);
            return Some(i);
        }
    }
    None
}

/// Takes one count on `slot` away; at zero the slot is free for the next allocation.
fn release(seg: &Segment, slot: usize) {
    let e = &own_table(seg)[slot];
    let mut cur = e.load(Ordering::Relaxed);
    loop {
        let next = if cur & COUNT_MASK <= 1 { 0 } else { cur - 1 };
        match e.compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(c) => cur = c,
        }
    }
}

/// This process's one count on an arena slot, shared by all its handles to that slot (see
/// the module docs). Dropping the last handle gives the count back — unless the `SlotRef`
/// was inherited through a fork, whose count is the parent's.
pub(super) struct SlotRef {
    seg: Segment,
    slot: usize,
    generation: u64,
}

impl SlotRef {
    /// Registers a new `SlotRef` holding a count this process already took (allocation, or
    /// one adopted from a message). The caller holds `refs`.
    fn register(refs: &mut Refs, seg: Segment, slot: usize) -> Arc<SlotRef> {
        let r = Arc::new(SlotRef {
            seg,
            slot,
            generation: fork_generation(),
        });
        refs.insert((r.seg.id(), slot), Arc::downgrade(&r));
        r
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        {
            let mut refs = lock_refs();
            let key = (self.seg.id(), self.slot);
            // A handle received while this one was being dropped may have registered a new
            // `SlotRef` under the same key: remove only our own entry.
            if refs
                .get(&key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self as *const SlotRef))
            {
                refs.remove(&key);
            }
        }
        if self.generation == fork_generation() {
            release(&self.seg, self.slot);
        }
    }
}

/// Slots a parent keeps alive for a forked child until it has reaped it (see the module
/// docs). Dropping it (in the parent, after the reap) gives them back. Never drop one while
/// holding the children registry's lock or across a fork: it takes the `SlotRef` registry's.
#[must_use]
pub(crate) struct Pins(Vec<Arc<SlotRef>>);

impl Pins {
    /// No pins (a child that inherited nothing, or a spawned one).
    pub(crate) fn none() -> Pins {
        Pins(Vec::new())
    }

    /// Forgets the pins without giving anything back: for the copy a forked child inherits
    /// of its parent's pins (they are the parent's to drop).
    pub(crate) fn forget_in_child(self) {
        std::mem::forget(self);
    }
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pins({} slots)", self.0.len())
    }
}

/// Under the `SlotRef` registry's lock, just before a fork: an extra reference to every
/// `SlotRef` of this process that is alive.
pub(super) fn pin_all(refs: &Refs) -> Pins {
    Pins(refs.values().filter_map(Weak::upgrade).collect())
}

/// A handle to one `T` in shared memory. Clones refer to the same object; the object is freed
/// when the last holder in any process has let go (see the module docs).
pub(crate) struct Shared<T: ShmObject> {
    seg: Segment,
    /// Payload offset of the object.
    offset: usize,
    /// This process's count on the slot, when in an arena.
    slot: Option<Arc<SlotRef>>,
    _t: PhantomData<T>,
}

impl<T: ShmObject> Shared<T> {
    /// Allocates a zeroed `T` in shared memory and lets `init` set it up before anyone else
    /// can see it.
    pub(crate) fn new(init: impl FnOnce(&T)) -> Result<Shared<T>> {
        let this = if std::mem::size_of::<T>() <= SLOT && std::mem::align_of::<T>() <= SLOT {
            let mut cur = lock_current();
            let found = cur
                .as_ref()
                .and_then(|s| Some((s.clone(), try_alloc_in(s, T::KIND)?)));
            let (seg, slot) = match found {
                Some(f) => f,
                None => {
                    let seg = Segment::create(SegmentKind::Arena, ARENA_PAYLOAD)?;
                    let slot = try_alloc_in(&seg, T::KIND)
                        .ok_or_else(|| Error::new(ErrorKind::Os, "a new arena has no free slot"))?;
                    *cur = Some(seg.clone());
                    (seg, slot)
                }
            };
            drop(cur);
            let offset = SLOTS_AT + slot * SLOT;
            // SAFETY: the slot lies inside the payload (slot < SLOTS) and we own it (the CAS
            // above); nobody else can reach it until we hand out the handle.
            unsafe { std::ptr::write_bytes(seg.payload().add(offset), 0, SLOT) };
            let r = SlotRef::register(&mut lock_refs(), seg.clone(), slot);
            Shared {
                seg,
                offset,
                slot: Some(r),
                _t: PhantomData,
            }
        } else {
            let seg = Segment::create(SegmentKind::Object(T::KIND), std::mem::size_of::<T>())?;
            Shared {
                seg,
                offset: 0,
                slot: None,
                _t: PhantomData,
            }
        };
        init(this.get());
        Ok(this)
    }

    /// Creates a `T` in a segment of its own named `name` (see `named.rs`): `init` sets it
    /// up before the name appears. `what` is the facade type (`kinds::named`), `tag` the
    /// type tag of its contents (0 when not generic).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; a bad name; OS errors.
    pub(crate) fn create_named(
        name: &str,
        what: u32,
        tag: u64,
        init: impl FnOnce(&T),
    ) -> Result<Shared<T>> {
        let size = std::mem::size_of::<T>();
        let seg = super::named::create_segment(
            SegmentKind::Object(T::KIND),
            size,
            super::Identity { what, tag },
            size,
        )?;
        let this = Shared {
            seg,
            offset: 0,
            slot: None,
            _t: PhantomData,
        };
        init(this.get());
        super::named::publish(&this.seg, name)?;
        Ok(this)
    }

    /// Opens the `T` named `name`, checking the file as `named.rs` says (`expected` names
    /// the type for messages).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`]; [`ErrorKind::InvalidHandle`] when it is not such an object.
    pub(crate) fn open_named(
        name: &str,
        what: u32,
        tag: u64,
        expected: &dyn Fn() -> String,
    ) -> Result<Shared<T>> {
        let seg = super::named::open_segment(
            name,
            SegmentKind::Object(T::KIND),
            super::Identity { what, tag },
            expected,
        )?;
        seg.get::<T>(0).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("shared object {name:?} is too small for its type"),
            )
        })?;
        Ok(Shared {
            seg,
            offset: 0,
            slot: None,
            _t: PhantomData,
        })
    }

    /// The name of a named object.
    pub(crate) fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Removes the name of a named object, if it still names this one.
    pub(crate) fn unlink(&self) -> Result<()> {
        super::named::unlink_segment(&self.seg)
    }

    /// The shared object.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `offset` was checked in bounds and aligned for T when this handle was made
        // (by allocation, or by `Segment::get` on deserialize), and the mapping lives as long
        // as `self.seg`.
        unsafe { &*(self.seg.payload().add(self.offset) as *const T) }
    }

    /// A handle to a `T` at `offset` in the object segment `seg`, as one part of a larger
    /// object that owns the segment (a named `Condition`'s lock, in the condition's segment):
    /// `None` when it does not fit there. Such a handle must not travel on its own (its
    /// `Deserialize` refuses a `T` in another kind's segment): the owner sends the segment
    /// and rebuilds its parts on arrival.
    pub(crate) fn part_of(seg: &Segment, offset: usize) -> Option<Shared<T>> {
        seg.get::<T>(offset)?;
        Some(Shared {
            seg: seg.clone(),
            offset,
            slot: None,
            _t: PhantomData,
        })
    }

    /// The segment the object lives in.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Adds the count a serialized handle carries in flight.
    fn add_in_flight(&self, r: &SlotRef) {
        let prev = own_table(&self.seg)[r.slot].fetch_add(1, Ordering::Relaxed);
        assert!(
            prev & COUNT_MASK < COUNT_MASK - 1,
            "too many handles to one shared object"
        );
    }
}

impl<T: ShmObject> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            seg: self.seg.clone(),
            offset: self.offset,
            slot: self.slot.clone(),
            _t: PhantomData,
        }
    }
}

/// The `SlotRef` for a handle just received with a count in flight: this process's existing
/// one (and the count in flight is given back), or a new one that adopts it.
fn adopt(seg: Segment, slot: usize) -> Arc<SlotRef> {
    let mut refs = lock_refs();
    if let Some(existing) = refs.get(&(seg.id(), slot)).and_then(Weak::upgrade) {
        drop(refs);
        // We hold a count already (or our parent pins the slot for us): the one in flight
        // is not needed, and giving it back cannot free the slot.
        release(&seg, slot);
        return existing;
    }
    SlotRef::register(&mut refs, seg, slot)
}

impl<T: ShmObject> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &format_args!("{:016x}", self.seg.id()))
            .field("offset", &self.offset)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    seg: Segment,
    offset: u64,
    kind: u8,
}

impl<T: ShmObject> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // Check the context first so a failed serialization leaks no count.
        crate::handle::export_fd(self.seg.fd(), Some(self.seg.id()))
            .map_err(crate::handle::ser_err::<S::Error>)?;
        // The count "in flight": the receiver adopts it (see the module docs).
        if let Some(r) = &self.slot {
            self.add_in_flight(r);
        }
        Wire {
            seg: self.seg.clone(),
            offset: self.offset as u64,
            kind: T::KIND,
        }
        .serialize(s)
    }
}

impl<'de, T: ShmObject> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Shared<T>, D::Error> {
        let w = Wire::deserialize(d)?;
        if w.kind != T::KIND {
            return Err(crate::handle::de_err::<D::Error>(format!(
                "handle is for object kind {}, expected {}",
                w.kind,
                T::KIND
            )));
        }
        let offset = usize::try_from(w.offset).map_err(crate::handle::de_err::<D::Error>)?;
        match w.seg.kind() {
            SegmentKind::Arena => {
                let rel = offset
                    .checked_sub(SLOTS_AT)
                    .filter(|r| r % SLOT == 0 && r / SLOT < SLOTS)
                    .ok_or_else(|| {
                        crate::handle::de_err::<D::Error>("arena offset out of range")
                    })?;
                let slot = rel / SLOT;
                let table = table(&w.seg).ok_or_else(|| {
                    crate::handle::de_err::<D::Error>("arena segment too small for its table")
                })?;
                let entry = table[slot].load(Ordering::Acquire);
                if entry >> 24 != T::KIND as u32 || entry & COUNT_MASK == 0 {
                    return Err(crate::handle::de_err::<D::Error>(
                        "arena slot does not hold this kind of object",
                    ));
                }
                w.seg
                    .get::<T>(offset)
                    .ok_or_else(|| crate::handle::de_err::<D::Error>("object out of bounds"))?;
                Ok(Shared {
                    seg: w.seg.clone(),
                    offset,
                    slot: Some(adopt(w.seg, slot)),
                    _t: PhantomData,
                })
            }
            SegmentKind::Object(k) if k == T::KIND && offset == 0 => {
                w.seg
                    .get::<T>(0)
                    .ok_or_else(|| crate::handle::de_err::<D::Error>("object segment too small"))?;
                Ok(Shared {
                    seg: w.seg,
                    offset: 0,
                    slot: None,
                    _t: PhantomData,
                })
            }
            other => Err(crate::handle::de_err::<D::Error>(format!(
                "handle points into a {other:?} segment"
            ))),
        }
    }
}
