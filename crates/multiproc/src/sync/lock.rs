//! [`Lock`] and [`RLock`]: process-shared mutual exclusion with guards, robust to the death of
//! the holder.
//!
//! # Safety
//!
//! The lock states are declared [`ShmSafe`]: atomics only, every bit pattern
//! a peer can write is a state the code handles.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Acquired, RawMutex};
use crate::error::{Error, ErrorKind, OwnerDied, Result, Timeout, WouldBlock};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::Deadline;

/// Why a `try_lock` returned no plain guard ([`Lock::try_lock`], [`RLock::try_lock`],
/// [`Condition::try_lock`](super::Condition::try_lock), [`Value::try_lock`](super::Value::try_lock),
/// [`Array::try_lock`](super::Array::try_lock)).
pub enum TryLockError<G> {
    /// Somebody else holds the lock; nothing was acquired.
    WouldBlock,
    /// Acquired, but the previous holder died holding it: the guard is inside.
    OwnerDied(OwnerDied<G>),
}

/// Why a timed lock (`lock_timeout`, `lock_deadline`) returned no plain guard.
pub enum LockTimeoutError<G> {
    /// The lock stayed held until the timeout ran out; nothing was acquired.
    Timeout,
    /// Acquired, but the previous holder died holding it: the guard is inside.
    OwnerDied(OwnerDied<G>),
}

impl<G> TryLockError<G> {
    /// True for [`TryLockError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryLockError::WouldBlock)
    }

    /// The guard, if the lock was acquired (the `OwnerDied` case).
    pub fn into_guard(self) -> Option<G> {
        match self {
            TryLockError::OwnerDied(e) => Some(e.into_inner()),
            TryLockError::WouldBlock => None,
        }
    }

    fn text(&self) -> &'static str {
        match self {
            TryLockError::WouldBlock => "the lock is held by someone else",
            TryLockError::OwnerDied(_) => "the previous holder of the lock died holding it",
        }
    }
}

impl<G> LockTimeoutError<G> {
    /// True for [`LockTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockTimeoutError::Timeout)
    }

    /// The guard, if the lock was acquired (the `OwnerDied` case).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockTimeoutError::OwnerDied(e) => Some(e.into_inner()),
            LockTimeoutError::Timeout => None,
        }
    }

    fn text(&self) -> &'static str {
        match self {
            LockTimeoutError::Timeout => "timed out waiting for the lock",
            LockTimeoutError::OwnerDied(_) => "the previous holder of the lock died holding it",
        }
    }
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}

impl<G> From<OwnerDied<G>> for LockTimeoutError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        LockTimeoutError::OwnerDied(e)
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::Timeout => f.write_str("Timeout"),
            LockTimeoutError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl<G> std::error::Error for TryLockError<G> {}
impl<G> std::error::Error for LockTimeoutError<G> {}

impl<G> From<TryLockError<G>> for Error {
    fn from(e: TryLockError<G>) -> Error {
        match e {
            TryLockError::WouldBlock => WouldBlock.into(),
            TryLockError::OwnerDied(e) => e.into(),
        }
    }
}

impl<G> From<LockTimeoutError<G>> for Error {
    fn from(e: LockTimeoutError<G>) -> Error {
        match e {
            LockTimeoutError::Timeout => Timeout.into(),
            LockTimeoutError::OwnerDied(e) => e.into(),
        }
    }
}

/// Turns a raw acquisition into the public result.
pub(crate) fn owned<G>(a: Acquired, g: G) -> std::result::Result<G, OwnerDied<G>> {
    match a {
        Acquired::Clean => Ok(g),
        Acquired::OwnerDied => Err(OwnerDied::new(g)),
    }
}

/// A `try_lock`'s result from a raw one (`None`: held by someone else).
pub(crate) fn tried<G>(
    a: Option<Acquired>,
    g: impl FnOnce() -> G,
) -> std::result::Result<G, TryLockError<G>> {
    match a {
        Some(a) => Ok(owned(a, g())?),
        None => Err(TryLockError::WouldBlock),
    }
}

/// A timed lock's result from a raw one.
pub(crate) fn timed<G>(
    a: std::result::Result<Acquired, Timeout>,
    g: impl FnOnce() -> G,
) -> std::result::Result<G, LockTimeoutError<G>> {
    match a {
        Ok(a) => Ok(owned(a, g())?),
        Err(Timeout) => Err(LockTimeoutError::Timeout),
    }
}

// ---------------------------------------------------------------------------------------
// Lock

#[repr(C)]
pub(crate) struct LockState {
    pub(crate) raw: RawMutex,
}

// SAFETY: a RawMutex only (ShmSafe).
unsafe impl ShmSafe for LockState {}
impl ShmObject for LockState {
    const KIND: u8 = crate::kinds::object::LOCK;
}

/// A process-shared lock (Python's `multiprocessing.Lock`), robust to the death of its holder.
///
/// A cheap handle: clones (and copies received by other processes) refer to the same lock.
/// [`lock`](Lock::lock) returns a guard that releases the lock when dropped, including during
/// a panic. Not re-entrant: locking twice from one thread waits forever (use [`RLock`]).
///
/// If the holder dies (SIGKILL, `abort`, `exit` with a leaked guard), the next locker gets the
/// lock with [`OwnerDied`] within milliseconds; the lock keeps working afterwards.
///
/// The four forms of every blocking call: [`lock`](Lock::lock) (its only error is
/// [`OwnerDied`]), [`try_lock`](Lock::try_lock) (adds [`TryLockError::WouldBlock`]),
/// [`lock_timeout`](Lock::lock_timeout) and [`lock_deadline`](Lock::lock_deadline) (add
/// [`LockTimeoutError::Timeout`]).
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// {
///     let _held = lock.lock().unwrap();
///     assert!(lock.try_lock().is_err());
/// } // released here
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    inner: Shared<LockState>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

/// Held while a [`Lock`] is locked; unlocks on drop. Not `Send`: it must be dropped by the
/// thread that locked.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

named_api!(
    Lock,
    LockState,
    crate::kinds::object::LOCK as u32,
    (),
    {},
    |s| { s.raw.init() },
    rest {}
);

impl Lock {
    /// A handle on a lock state made elsewhere (a part of a named `Condition`).
    pub(super) fn from_shared(inner: Shared<LockState>) -> Lock {
        Lock { inner }
    }

    /// A new, unlocked lock in shared memory.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            inner: Shared::new(|s: &LockState| s.raw.init())?,
        })
    }

    pub(crate) fn raw(&self) -> &RawMutex {
        &self.inner.get().raw
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Locks, waiting as long as it takes (Python's `acquire()`, `with lock:`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard: the lock is held) when the previous holder died
    /// holding it — the only error.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> {
        owned(self.raw().lock_forever(), self.guard())
    }

    /// Locks if nobody holds the lock; never waits (Python's `acquire(block=False)`).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when held, and in the moment a fair release hands the
    /// lock to a sleeper (not held, [`is_locked`](Self::is_locked) false: that sleeper takes
    /// it; with no sleeper left to take it, `try_lock` does); [`TryLockError::OwnerDied`]
    /// (with the guard) when the holder had died.
    #[doc(alias = "acquire")]
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        tried(self.raw().try_lock(), || self.guard())
    }

    /// Locks, waiting at most `timeout` (Python's `acquire(timeout=...)`); any `Duration`,
    /// up to `Duration::MAX`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiproc::Lock::new()?;
    /// let held = lock.lock().unwrap();
    /// let again = lock.lock_timeout(Duration::from_millis(1));
    /// assert!(again.unwrap_err().is_timeout());
    /// # drop(held);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`]; [`LockTimeoutError::OwnerDied`] (with the guard).
    #[doc(alias = "acquire", alias = "try_lock_for")]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        timed(self.raw().lock(Deadline::within(timeout)), || self.guard())
    }

    /// Locks, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    #[doc(alias = "try_lock_until")]
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        timed(self.raw().lock(Deadline::at(deadline)), || self.guard())
    }

    /// Whether somebody holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// Whether the calling thread holds the lock (Python's `SemLock._is_mine()`).
    pub fn is_owned(&self) -> bool {
        self.raw().is_owned_by_current_thread()
    }

    /// Unlocks a lock whose guard was leaked with [`std::mem::forget`], whoever holds it
    /// (Python's bare `release()`: there a `Lock` is a binary semaphore, which any thread or
    /// process may release). Use guards where you can.
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// std::mem::forget(lock.lock().unwrap());
    /// lock.release()?;
    /// assert!(lock.release().is_err()); // not locked any more
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the lock is not locked (Python raises `ValueError`).
    pub fn release(&self) -> Result<()> {
        if self.raw().unlock_any() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidState,
                "cannot release an unlocked Lock",
            ))
        }
    }
}

impl LockGuard<'_> {
    /// Releases the lock (the same as dropping the guard).
    #[doc(alias = "release")]
    pub fn unlock(self) {}

    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw().unlock_fair();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

// ---------------------------------------------------------------------------------------
// RLock

#[repr(C)]
pub(crate) struct RLockState {
    pub(crate) raw: RawMutex,
    /// Recursion depth; only touched by the owner.
    pub(crate) depth: AtomicU32,
}

// SAFETY: atomics only.
unsafe impl ShmSafe for RLockState {}
impl ShmObject for RLockState {
    const KIND: u8 = crate::kinds::object::RLOCK;
}

/// A re-entrant process-shared lock (Python's `multiprocessing.RLock`): the owning thread of
/// the owning process may lock it again; it is released when every guard is gone.
///
/// Robust to the death of its holder like [`Lock`]: a holder killed at any depth leaves the
/// lock to the next locker with [`OwnerDied`], at depth 1. The same four forms as
/// [`Lock`]: `lock`, `try_lock`, `lock_timeout`, `lock_deadline`.
///
/// ```
/// let r = multiproc::RLock::new()?;
/// let a = r.lock().unwrap();
/// let b = r.lock().unwrap(); // same thread: fine
/// assert_eq!(r.depth(), 2);
/// drop(b);
/// drop(a);
/// assert_eq!(r.depth(), 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    inner: Shared<RLockState>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.inner.get().raw.is_locked())
            .finish()
    }
}

/// One level of an [`RLock`]; released on drop. Not `Send`.
#[must_use = "the lock level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

named_api!(
    RLock,
    RLockState,
    crate::kinds::object::RLOCK as u32,
    (),
    {},
    |s| { s.raw.init() },
    rest {}
);

impl RLock {
    /// A handle on a lock state made elsewhere (a part of a named `Condition`).
    pub(super) fn from_shared(inner: Shared<RLockState>) -> RLock {
        RLock { inner }
    }

    /// A new, unlocked re-entrant lock in shared memory.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            inner: Shared::new(|s: &RLockState| s.raw.init())?,
        })
    }

    pub(crate) fn state(&self) -> &RLockState {
        self.inner.get()
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes one more level if this thread owns it already; `None` otherwise.
    fn reenter(&self) -> Option<RLockGuard<'_>> {
        let s = self.state();
        if s.raw.is_owned_by_current_thread() {
            let d = s.depth.load(Ordering::Relaxed);
            assert!(d < u32::MAX, "RLock recursion depth overflow");
            s.depth.store(d + 1, Ordering::Relaxed);
            Some(self.guard())
        } else {
            None
        }
    }

    /// A fresh acquisition (not a re-entry): a dead previous owner may have left any depth,
    /// so we start at 1.
    fn acquired(&self, a: Acquired) -> Acquired {
        self.state().depth.store(1, Ordering::Relaxed);
        a
    }

    /// Locks (or re-enters), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the guard) when the previous holder died holding it — the only
    /// error.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<RLockGuard<'_>, OwnerDied<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        owned(self.acquired(self.state().raw.lock_forever()), self.guard())
    }

    /// Locks or re-enters; never waits.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another thread holds it;
    /// [`TryLockError::OwnerDied`].
    #[doc(alias = "acquire")]
    pub fn try_lock(&self) -> std::result::Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let a = self.state().raw.try_lock().map(|a| self.acquired(a));
        tried(a, || self.guard())
    }

    /// Locks or re-enters, waiting at most `timeout` (any `Duration`).
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`]; [`LockTimeoutError::OwnerDied`].
    #[doc(alias = "acquire", alias = "try_lock_for")]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        self.lock_until(Deadline::within(timeout))
    }

    /// Locks or re-enters, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    #[doc(alias = "try_lock_until")]
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        self.lock_until(Deadline::at(deadline))
    }

    fn lock_until(
        &self,
        deadline: Deadline,
    ) -> std::result::Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let a = self.state().raw.lock(deadline).map(|a| self.acquired(a));
        timed(a, || self.guard())
    }

    /// This thread's recursion depth: 0 when it does not hold the lock.
    pub fn depth(&self) -> u32 {
        let s = self.state();
        if s.raw.is_owned_by_current_thread() {
            s.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether the calling thread holds the lock (Python's `RLock._is_owned()`).
    pub fn is_owned(&self) -> bool {
        self.state().raw.is_owned_by_current_thread()
    }

    /// Releases one level taken by a guard that was leaked with [`std::mem::forget`]
    /// (Python's bare `release()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the calling thread does not own the lock (Python
    /// raises `AssertionError`/`RuntimeError` for this).
    pub fn release(&self) -> Result<()> {
        if !self.is_owned() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "cannot release an RLock the calling thread does not own",
            ));
        }
        self.release_level();
        Ok(())
    }

    fn release_level(&self) {
        let s = self.state();
        let d = s.depth.load(Ordering::Relaxed);
        if d > 1 {
            s.depth.store(d - 1, Ordering::Relaxed);
        } else {
            s.depth.store(0, Ordering::Relaxed);
            s.raw.unlock_fair();
        }
    }

    /// Releases every level (for `Condition::wait`); returns the depth to restore.
    pub(crate) fn release_all(&self) -> u32 {
        let s = self.state();
        let d = s.depth.swap(0, Ordering::Relaxed);
        s.raw.unlock_fair();
        d
    }

    /// Re-acquires after [`release_all`](Self::release_all), restoring `depth`.
    pub(crate) fn restore(&self, depth: u32) -> Acquired {
        let a = self.state().raw.lock_forever();
        self.state().depth.store(depth.max(1), Ordering::Relaxed);
        a
    }
}

impl RLockGuard<'_> {
    /// Releases this level (the same as dropping the guard).
    #[doc(alias = "release")]
    pub fn unlock(self) {}

    /// The lock this guard holds.
    pub fn lock(&self) -> &RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Only the owner can hold a guard (guards are !Send), unless the lock was taken over
        // from this thread, which cannot happen while it is alive.
        if self.lock.is_owned() {
            self.lock.release_level();
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_guard_releases_on_panic() {
        let l = Lock::new().unwrap();
        let l2 = l.clone();
        let r = std::panic::catch_unwind(move || {
            let _g = l2.lock().unwrap();
            panic!("boom");
        });
        assert!(r.is_err());
        assert!(!l.is_locked());
    }

    #[test]
    fn rlock_depth_and_release() {
        let r = RLock::new().unwrap();
        assert!(r.release().is_err());
        let a = r.lock().unwrap();
        let b = r.try_lock().unwrap();
        std::mem::forget(b);
        assert_eq!(r.depth(), 2);
        r.release().unwrap();
        assert_eq!(r.depth(), 1);
        drop(a);
        assert_eq!(r.depth(), 0);
        assert!(r.release().is_err());
        let r2 = r.clone();
        let _g = r.lock().unwrap();
        std::thread::spawn(move || {
            assert!(matches!(r2.try_lock(), Err(TryLockError::WouldBlock)));
            assert!(r2.release().is_err());
        })
        .join()
        .unwrap();
    }
}
