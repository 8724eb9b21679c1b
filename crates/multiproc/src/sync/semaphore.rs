//! [`Semaphore`] and [`BoundedSemaphore`].
//!
//! # Layout (64 bytes, one arena slot)
//!
//! ```text
//! value:    AtomicU32        permits available; the futex word sleepers wait on (while 0)
//! sleepers: AtomicU32        how many may be asleep (release wakes only if > 0)
//! bound:    AtomicU32        0 = unbounded, else the most `value` may reach
//! _pad:     AtomicU32
//! holders:  [AtomicU64; 6]   owner identities of permits held by guards; 0 = free entry
//! ```
//!
//! # Permits of a killed process
//!
//! A permit taken through a guard is recorded in `holders` (if one of the 6 entries is free)
//! with the identity of the thread holding it. A waiter that gets no permit checks those
//! owners 2 ms after it starts sleeping, then at intervals doubling to 32 ms, scheduled by the
//! clock (signals that cut its sleeps short do not postpone the checks); a dead one's permit
//! is given back (one CAS on its entry, so it is returned exactly once). Permits not
//! recorded — more than 6 guards at once, [`SemaphoreGuard::forget`], or a process killed in
//! the few instructions between taking the permit and recording it — are lost when their
//! holder dies, as in Python.
//!
//! # Safety
//!
//! The semaphore states are declared [`ShmSafe`]: atomics only, every bit
//! pattern a peer can write is a state the code handles.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, Timeout, WouldBlock};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::futex::{self, Recheck};
use crate::sys::thread::{self, Liveness};
use crate::sys::Deadline;

const HOLDERS: usize = 6;
/// When a sleeper first looks for permits of dead holders, and the longest interval between
/// looks (scheduled by the clock: see [`Recheck`]).
const FIRST_CHECK: Duration = Duration::from_millis(2);
const MAX_CHECK: Duration = Duration::from_millis(32);

#[repr(C)]
pub(crate) struct SemState {
    value: AtomicU32,
    sleepers: AtomicU32,
    bound: AtomicU32,
    _pad: AtomicU32,
    holders: [AtomicU64; HOLDERS],
}

// SAFETY: atomics only; every bit pattern is a valid state (a garbage holder is "dead").
unsafe impl ShmSafe for SemState {}
impl ShmObject for SemState {
    const KIND: u8 = crate::kinds::object::SEMAPHORE;
}

#[repr(transparent)]
pub(crate) struct BoundedSemState(SemState);
// SAFETY: as SemState.
unsafe impl ShmSafe for BoundedSemState {}
impl ShmObject for BoundedSemState {
    const KIND: u8 = crate::kinds::object::BOUNDED_SEMAPHORE;
}

impl SemState {
    fn init(&self, value: u32, bound: u32) {
        self.value.store(value, Ordering::Relaxed);
        self.bound.store(bound, Ordering::Relaxed);
    }

    fn try_take(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(c) => v = c,
            }
        }
        false
    }

    fn track(&self) -> Option<usize> {
        let me = thread::current_id();
        (0..HOLDERS).find(|&i| {
            self.holders[i]
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Gives back the permits of dead holders; returns how many.
    fn reclaim_dead(&self) -> u32 {
        let mut n = 0;
        for h in &self.holders {
            let id = h.load(Ordering::Relaxed);
            if id != 0
                && thread::liveness(id) == Liveness::Dead
                && h.compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                // Ignore the bound: this permit was taken, so giving it back cannot exceed it.
                self.value.fetch_add(1, Ordering::Release);
                n += 1;
            }
        }
        if n > 0 {
            futex::wake(&self.value, n);
        }
        n
    }

    fn acquire(&self, deadline: Deadline) -> bool {
        let mut checks = Recheck::new(FIRST_CHECK, MAX_CHECK);
        loop {
            if self.try_take() {
                return true;
            }
            // Checked by the clock, however the sleeps end (signals must not postpone it).
            if checks.due() && self.reclaim_dead() > 0 {
                continue;
            }
            let Some(t) = checks.sleep_time(deadline) else {
                if self.reclaim_dead() > 0 {
                    continue;
                }
                return false;
            };
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            futex::wait(&self.value, 0, Some(t));
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn release(&self, n: u32) -> Result<()> {
        let bound = self.bound.load(Ordering::Relaxed);
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            let next = v.checked_add(n).filter(|&x| bound == 0 || x <= bound);
            let Some(next) = next else {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    if bound == 0 {
                        "semaphore value overflow"
                    } else {
                        "BoundedSemaphore released too many times"
                    },
                ));
            };
            match self
                .value
                .compare_exchange_weak(v, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(c) => v = c,
            }
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, n);
        }
        Ok(())
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; given back on drop. Not `Send`.
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    state: &'a SemState,
    slot: Option<usize>,
    _not_send: PhantomData<*const ()>,
}

impl SemaphoreGuard<'_> {
    fn new(state: &SemState) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            slot: state.track(),
            state,
            _not_send: PhantomData,
        }
    }

    /// Keeps the permit taken: it is not given back on drop (someone calls `release` later,
    /// the Python way). Its death-recovery record is dropped too.
    pub fn forget(mut self) {
        if let Some(i) = self.slot.take() {
            self.state.holders[i].store(0, Ordering::Relaxed);
        }
        std::mem::forget(self);
    }

    /// Gives the permit back (the same as dropping the guard).
    pub fn release(self) {}
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // If our record is gone, the permit was reclaimed as if we were dead: don't add
            // it a second time. (Cannot happen while we live; this is belt and braces.)
            let me = thread::current_id();
            if self.state.holders[i]
                .compare_exchange(me, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                return;
            }
        }
        let _ = self.state.release(1);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

macro_rules! semaphore_api {
    ($ty:ident) => {
        impl $ty {
            /// Takes a permit, waiting as long as it takes; the guard gives it back. Never
            /// fails: permits held by killed processes come back (see the type's docs).
            pub fn acquire(&self) -> SemaphoreGuard<'_> {
                let s = self.state();
                while !s.acquire(Deadline::never()) {}
                SemaphoreGuard::new(s)
            }

            /// Takes a permit if one is available now; never waits (Python's
            /// `acquire(block=False)`).
            ///
            /// # Errors
            ///
            /// [`WouldBlock`] when no permit is available.
            #[doc(alias = "acquire")]
            pub fn try_acquire(&self) -> std::result::Result<SemaphoreGuard<'_>, WouldBlock> {
                let s = self.state();
                if s.try_take() || (s.reclaim_dead() > 0 && s.try_take()) {
                    Ok(SemaphoreGuard::new(s))
                } else {
                    Err(WouldBlock)
                }
            }

            /// Takes a permit, waiting at most `timeout` (any `Duration`; Python's
            /// `acquire(timeout=t)`, whose `True` is `is_ok()`).
            ///
            /// # Errors
            ///
            /// [`Timeout`] when none became available in time.
            #[doc(alias = "acquire")]
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> std::result::Result<SemaphoreGuard<'_>, Timeout> {
                self.acquire_until(Deadline::within(timeout))
            }

            /// Takes a permit, waiting until `deadline` at most.
            ///
            /// # Errors
            ///
            /// [`Timeout`] when none became available in time.
            pub fn acquire_deadline(
                &self,
                deadline: Instant,
            ) -> std::result::Result<SemaphoreGuard<'_>, Timeout> {
                self.acquire_until(Deadline::at(deadline))
            }

            fn acquire_until(
                &self,
                deadline: Deadline,
            ) -> std::result::Result<SemaphoreGuard<'_>, Timeout> {
                let s = self.state();
                if s.acquire(deadline) {
                    Ok(SemaphoreGuard::new(s))
                } else {
                    Err(Timeout)
                }
            }

            /// The number of permits available now (a snapshot; Python's `get_value()`).
            #[doc(alias = "get_value")]
            pub fn value(&self) -> u32 {
                self.state().value.load(Ordering::Relaxed)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("value", &self.value())
                    .finish()
            }
        }
    };
}

/// A process-shared counting semaphore (Python's `multiprocessing.Semaphore`).
///
/// [`acquire`](Semaphore::acquire) returns a guard that gives the permit back when dropped;
/// [`release`](Semaphore::release) adds a permit without a guard (signalling, the Python
/// way). Permits held through guards by a process that gets killed are recovered (see the
/// module notes in the source: up to 6 guards at a time are tracked).
///
/// ```
/// let s = multiproc::Semaphore::new(2)?;
/// let a = s.acquire();
/// let b = s.try_acquire().unwrap();
/// assert_eq!(s.try_acquire().unwrap_err(), multiproc::WouldBlock);
/// drop(a);
/// assert_eq!(s.value(), 1);
/// # drop(b);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    inner: Shared<SemState>,
}

named_api!(Semaphore, SemState, crate::kinds::object::SEMAPHORE as u32, (value: u32), {}, |s| {
    s.init(value, 0)
}, rest {});

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore {
            inner: Shared::new(|s: &SemState| s.init(value, 0))?,
        })
    }

    fn state(&self) -> &SemState {
        self.inner.get()
    }

    /// Adds a permit and wakes a waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if the count would pass `u32::MAX`.
    pub fn release(&self) -> Result<()> {
        self.state().release(1)
    }
}
semaphore_api!(Semaphore);

/// A semaphore whose value may never exceed its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): a [`release`](BoundedSemaphore::release) too many is
/// an error.
///
/// ```
/// let s = multiproc::BoundedSemaphore::new(1)?;
/// assert!(s.release().is_err()); // already at its bound
/// s.acquire().forget();
/// s.release()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    inner: Shared<BoundedSemState>,
}

named_api!(
    BoundedSemaphore,
    BoundedSemState,
    crate::kinds::object::BOUNDED_SEMAPHORE as u32,
    (value: u32),
    {
        if value == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a BoundedSemaphore needs at least one permit",
            ));
        }
    },
    |s| { s.0.init(value, value) },
    rest {}
);

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its bound.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated, or `value` is 0 (nothing could ever be taken).
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        if value == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a BoundedSemaphore needs at least one permit",
            ));
        }
        Ok(BoundedSemaphore {
            inner: Shared::new(|s: &BoundedSemState| s.0.init(value, value))?,
        })
    }

    fn state(&self) -> &SemState {
        &self.inner.get().0
    }

    /// Adds a permit and wakes a waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if that would exceed the initial value (Python's
    /// `ValueError`).
    pub fn release(&self) -> Result<()> {
        self.state().release(1)
    }
}
semaphore_api!(BoundedSemaphore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_thread_permit_comes_back() {
        let s = Semaphore::new(1).unwrap();
        let s2 = s.clone();
        std::thread::spawn(move || std::mem::forget(s2.acquire()))
            .join()
            .unwrap();
        // forget() keeps the record only via SemaphoreGuard::forget; mem::forget keeps it.
        assert_eq!(s.value(), 0);
        let g = s.acquire_timeout(Duration::from_secs(5));
        assert!(g.is_ok());
    }

    #[test]
    fn bounded() {
        let s = BoundedSemaphore::new(2).unwrap();
        assert!(s.release().is_err());
        let g = s.acquire();
        assert_eq!(s.value(), 1);
        drop(g);
        assert_eq!(s.value(), 2);
        assert!(BoundedSemaphore::new(0).is_err());
    }
}
