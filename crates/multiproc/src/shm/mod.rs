//! Shared memory: segments (anonymous memfds mapped `MAP_SHARED`), small objects carved out of
//! shared arenas, and [`ShmSafe`], the types allowed to live there; and [`SharedMemory`], a
//! block of bytes for the user, anonymous or named in `/dev/shm` (Python's
//! `multiprocessing.shared_memory`), with [`View`], its typed window for arrays of numbers,
//! and [`ShareableList`], Python's fixed-length list of numbers and strings in one.
//!
//! # Safety
//!
//! Memory here is visible to other processes, which may be buggy or hostile. So:
//! - only [`ShmSafe`] types live in it: valid for every bit pattern, no pointers, no heap
//!   data, no fds; shared words are atomics (or `UnsafeCell`s whose users document their
//!   synchronization, like the pthread mutex in `sync::raw_mutex`);
//! - nothing in it is a pointer: locations are offsets, and every offset or length read from
//!   it or from a message is bounds-checked before use (`Segment::get`);
//! - segments are sealed against shrinking, so a peer cannot turn our loads into SIGBUS.

#![allow(unsafe_code)]

mod arena;
pub(crate) mod named;
mod segment;
mod shareable_list;
mod shared_memory;
pub(crate) mod slots;

pub use named::unlink_named;
pub use shareable_list::{Item, ShareableList};
pub use shared_memory::{Element, SharedMemory, View};

#[allow(unused_imports)]
pub(crate) use arena::{Pins, Shared, ShmObject};
pub(crate) use segment::{Identity, Placed, Segment, SegmentKind};

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

/// Types that may live in memory shared with other processes.
///
/// # Safety
///
/// Implementors must be valid for every bit pattern (another process may write anything),
/// hold no pointers, references, heap allocations or fds, have a stable layout (`repr(C)` or
/// primitive), and be safe to access concurrently from several processes through `&T`
/// (atomics, or interior mutability whose synchronization the type documents).
pub unsafe trait ShmSafe: Sized + Sync + 'static {}

macro_rules! shm_safe {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive integer, float or atomic: every bit pattern is valid, no
        // pointers, and `&T` allows no mutation (or only atomic mutation).
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64, usize, isize);
shm_safe!(
    AtomicU8,
    AtomicU32,
    AtomicU64,
    AtomicI32,
    AtomicI64,
    AtomicUsize
);

// SAFETY: an array of ShmSafe elements is ShmSafe: same reasoning element by element.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

// AtomicBool is deliberately not ShmSafe: a peer could store 2 into it, an invalid bool.

/// Locks taken across `fork` so that the child never inherits them held by another thread,
/// and the slots the parent pins for the child (see `arena`'s module docs).
pub(crate) fn fork_guards() -> ForkGuards {
    // Same order as `Shared::new` (arena, then the registry inside `Segment::create`):
    // the other order deadlocks a fork against a thread creating a new arena. The `SlotRef`
    // registry is taken alone everywhere else, so last here.
    let arena = arena::lock_current();
    let registry = segment::lock_registry();
    let refs = arena::lock_refs();
    let pins = arena::pin_all(&refs);
    ForkGuards {
        _refs: refs,
        _registry: registry,
        _arena: arena,
        pins,
    }
}

/// Held across `fork` (see [`fork_guards`]); [`ForkGuards::in_parent`] or
/// [`ForkGuards::in_child`] releases the locks on each side.
pub(crate) struct ForkGuards {
    _refs: std::sync::MutexGuard<'static, arena::Refs>,
    _registry: std::sync::MutexGuard<
        'static,
        Option<std::collections::HashMap<u64, std::sync::Weak<segment::Inner>>>,
    >,
    _arena: std::sync::MutexGuard<'static, Option<Segment>>,
    pins: Pins,
}

impl ForkGuards {
    /// In the parent after the fork (or a failed fork): releases the locks and returns the
    /// pins, to keep until the child is reaped (dropped at once if the fork failed).
    pub(crate) fn in_parent(self) -> Pins {
        self.pins
    }

    /// In the child after the fork: releases the locks and forgets the parent's pins. (Every
    /// inherited `SlotRef` is of an older fork generation already: it holds no count here.)
    pub(crate) fn in_child(self) {
        let ForkGuards {
            _refs,
            _registry,
            _arena,
            pins,
        } = self;
        pins.forget_in_child();
    }
}
