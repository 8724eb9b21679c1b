//! Small shared objects carved out of shared arenas, so that 20,000 locks cost a couple of fds
//! rather than 20,000.
//!
//! An arena is one [`Segment`] of kind `Arena`. Its payload layout:
//! ```text
//! 0                 hint       AtomicU32   where the next allocation starts looking
//! 64                slot table AtomicU32 x SLOTS   0 = free, else (kind << 24) | refcount
//! 64 + 4*SLOTS      slots      SLOTS x 64 bytes, each 64-byte aligned (one cache line)
//! ```
//! Allocation CASes a table entry from 0 to `(kind << 24) | 1`; every handle clone adds one
//! to the count and every drop takes one away; the slot is free again when it reaches zero.
//! All of it is lock-free, so a process killed at any point leaks at most the one slot it
//! held a count on (freed with the arena when the last process holding it ends). A handle
//! serialized into a message carries one count "in flight" that the receiver adopts.
//!
//! Objects larger than a slot get a segment of their own (kind `Object(k)`), offset 0.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Segment, SegmentKind, ShmSafe};
use crate::error::{Error, ErrorKind, Result};

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

fn table(seg: &Segment) -> &[AtomicU32] {
    let t: &[AtomicU32; SLOTS] = seg.get(TABLE_AT).expect("arena table in bounds");
    t
}

fn try_alloc_in(seg: &Segment, kind: u8) -> Option<usize> {
    let hint: &AtomicU32 = seg.get(0).expect("arena hint in bounds");
    let table = table(seg);
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

/// A handle to one `T` in shared memory. Clones refer to the same object; the object is freed
/// when the last handle in any process is dropped.
pub(crate) struct Shared<T: ShmObject> {
    seg: Segment,
    /// Payload offset of the object.
    offset: usize,
    /// Slot index when in an arena.
    slot: Option<usize>,
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
            Shared {
                seg,
                offset,
                slot: Some(slot),
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

    /// The shared object.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `offset` was checked in bounds and aligned for T when this handle was made
        // (by allocation, or by `Segment::get` on deserialize), and the mapping lives as long
        // as `self.seg`.
        unsafe { &*(self.seg.payload().add(self.offset) as *const T) }
    }

    fn add_ref(&self) {
        if let Some(slot) = self.slot {
            let prev = table(&self.seg)[slot].fetch_add(1, Ordering::Relaxed);
            assert!(
                prev & COUNT_MASK < COUNT_MASK - 1,
                "too many handles to one shared object"
            );
        }
    }
}

impl<T: ShmObject> Clone for Shared<T> {
    fn clone(&self) -> Self {
        self.add_ref();
        Shared {
            seg: self.seg.clone(),
            offset: self.offset,
            slot: self.slot,
            _t: PhantomData,
        }
    }
}

impl<T: ShmObject> Drop for Shared<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let e = &table(&self.seg)[slot];
            let mut cur = e.load(Ordering::Relaxed);
            loop {
                let next = if cur & COUNT_MASK <= 1 { 0 } else { cur - 1 };
                match e.compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(c) => cur = c,
                }
            }
        }
    }
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
        self.add_ref();
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
                let entry = table(&w.seg)[slot].load(Ordering::Acquire);
                if entry >> 24 != T::KIND as u32 || entry & COUNT_MASK == 0 {
                    return Err(crate::handle::de_err::<D::Error>(
                        "arena slot does not hold this kind of object",
                    ));
                }
                w.seg
                    .get::<T>(offset)
                    .ok_or_else(|| crate::handle::de_err::<D::Error>("object out of bounds"))?;
                Ok(Shared {
                    seg: w.seg,
                    offset,
                    slot: Some(slot),
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
