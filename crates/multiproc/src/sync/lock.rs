//! [`Lock`] and [`RLock`]: process-shared mutual exclusion with guards, robust to the death of
//! the holder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Acquired, RawMutex};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::Deadline;

/// Why a lock call did not simply return a guard.
///
/// [`LockError::OwnerDied`] still carries the guard: the lock *is* held, but its previous holder
/// died while holding it, so the state it protects may be half-updated (like std's
/// `PoisonError`, except that only the one caller who took it over is told).
pub enum LockError<G> {
    /// Acquired, but the previous holder died holding it. The guard is inside.
    OwnerDied(G),
    /// `try_lock`: somebody else holds it.
    WouldBlock,
    /// `try_lock_for`: the timeout ran out.
    Timeout,
}

impl<G> LockError<G> {
    /// The guard, if the lock was acquired (the `OwnerDied` case).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The guard of an `OwnerDied` error.
    ///
    /// # Panics
    ///
    /// On `WouldBlock` and `Timeout`, which hold no guard.
    pub fn into_inner(self) -> G {
        match self {
            LockError::OwnerDied(g) => g,
            LockError::WouldBlock => panic!("LockError::WouldBlock holds no guard"),
            LockError::Timeout => panic!("LockError::Timeout holds no guard"),
        }
    }

    fn kind_str(&self) -> &'static str {
        match self {
            LockError::OwnerDied(_) => "the previous holder of the lock died holding it",
            LockError::WouldBlock => "the lock is held by someone else",
            LockError::Timeout => "timed out waiting for the lock",
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_str())
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        let kind = match e {
            LockError::OwnerDied(_) => ErrorKind::OwnerDied,
            LockError::WouldBlock => ErrorKind::InvalidState,
            LockError::Timeout => ErrorKind::Timeout,
        };
        Error::new(kind, e.kind_str())
    }
}

/// Turns a raw acquisition into the public result.
pub(crate) fn wrap<G>(a: Acquired, g: G) -> std::result::Result<G, LockError<G>> {
    match a {
        Acquired::Clean => Ok(g),
        Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
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
    const KIND: u8 = 1;
}

/// A process-shared lock (Python's `multiprocessing.Lock`), robust to the death of its holder.
///
/// A cheap handle: clones (and copies received by other processes) refer to the same lock.
/// [`lock`](Lock::lock) returns a guard that releases the lock when dropped, including during
/// a panic. Not re-entrant: locking twice from one thread waits forever (use [`RLock`]).
///
/// If the holder dies (SIGKILL, `abort`, `exit` with a leaked guard), the next locker gets the
/// lock with [`LockError::OwnerDied`] within milliseconds; the lock keeps working afterwards.
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

impl Lock {
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

    /// Locks, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match self.raw().lock(Deadline::never()) {
            Ok(a) => wrap(a, self.guard()),
            Err(_) => unreachable!("a wait without deadline cannot time out"),
        }
    }

    /// Locks if nobody holds the lock (Python's `acquire(block=False)`).
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] when held; [`LockError::OwnerDied`] (with the guard) when
    /// the holder had died.
    #[doc(alias = "acquire")]
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match self.raw().try_lock() {
            Some(a) => wrap(a, self.guard()),
            None => Err(LockError::WouldBlock),
        }
    }

    /// Locks, waiting at most `timeout` (Python's `acquire(timeout=...)`).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; [`LockError::OwnerDied`] (with the guard).
    #[doc(alias = "acquire")]
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match self.raw().lock(Deadline::after(Some(timeout))) {
            Ok(a) => wrap(a, self.guard()),
            Err(_) => Err(LockError::Timeout),
        }
    }

    /// Whether somebody holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
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
        self.lock.raw().unlock();
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
    const KIND: u8 = 2;
}

/// A re-entrant process-shared lock (Python's `multiprocessing.RLock`): the owning thread of
/// the owning process may lock it again; it is released when every guard is gone.
///
/// Robust to the death of its holder like [`Lock`]: a holder killed at any depth leaves the
/// lock to the next locker with [`LockError::OwnerDied`], at depth 1.
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

impl RLock {
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

    fn acquired(
        &self,
        a: Acquired,
    ) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        // A dead previous owner may have left any depth: we start at 1.
        self.state().depth.store(1, Ordering::Relaxed);
        wrap(a, self.guard())
    }

    /// Locks (or re-enters), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.state().raw.lock(Deadline::never()) {
            Ok(a) => self.acquired(a),
            Err(_) => unreachable!("a wait without deadline cannot time out"),
        }
    }

    /// Locks or re-enters without waiting.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] when another thread holds it; [`LockError::OwnerDied`].
    #[doc(alias = "acquire")]
    pub fn try_lock(&self) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.state().raw.try_lock() {
            Some(a) => self.acquired(a),
            None => Err(LockError::WouldBlock),
        }
    }

    /// Locks or re-enters, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; [`LockError::OwnerDied`].
    #[doc(alias = "acquire")]
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.state().raw.lock(Deadline::after(Some(timeout))) {
            Ok(a) => self.acquired(a),
            Err(_) => Err(LockError::Timeout),
        }
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
            s.raw.unlock();
        }
    }

    /// Releases every level (for `Condition::wait`); returns the depth to restore.
    pub(crate) fn release_all(&self) -> u32 {
        let s = self.state();
        let d = s.depth.swap(0, Ordering::Relaxed);
        s.raw.unlock();
        d
    }

    /// Re-acquires after [`release_all`](Self::release_all), restoring `depth`.
    pub(crate) fn restore(&self, depth: u32) -> Acquired {
        let a = match self.state().raw.lock(Deadline::never()) {
            Ok(a) => a,
            Err(_) => unreachable!("a wait without deadline cannot time out"),
        };
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
            assert!(matches!(r2.try_lock(), Err(LockError::WouldBlock)));
            assert!(r2.release().is_err());
        })
        .join()
        .unwrap();
    }
}
