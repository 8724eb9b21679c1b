//! [`Condition`]: wait for a notification while holding a [`Lock`] or [`RLock`].
//!
//! # Layout (16 bytes, one arena slot) and protocol
//!
//! ```text
//! seq:     AtomicU32   futex word; bumped by every notify that woke someone
//! waiting: AtomicU32   waiters not yet notified        (changed only under the lock)
//! tokens:  AtomicU32   notifications not yet consumed  (changed only under the lock)
//! ```
//!
//! `wait`: under the lock, `waiting += 1` and read `seq`; release the lock; sleep on `seq`;
//! re-acquire; if `tokens > 0` take one and return "notified", else sleep again (or give up at
//! the deadline, `waiting -= 1`). `notify(n)`: `k = min(n, waiting)`, move `k` from `waiting`
//! to `tokens`, bump `seq`, wake `k` sleepers. So exactly `k` waits return "notified" (tokens
//! are consumed under the lock), never `pthread_cond_t` (glibc bug 21422).
//!
//! A waiter killed inside `wait` stays counted in `waiting`; a later `notify(n)` may hand it a
//! token that another (later) waiter then consumes. Nothing hangs; `notify_all` is unaffected.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::{wrap, LockError};
use super::{Acquired, Lock, RLock};
use crate::error::Result;
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::futex;
use crate::sys::Deadline;

#[repr(C)]
pub(crate) struct CondState {
    seq: AtomicU32,
    waiting: AtomicU32,
    tokens: AtomicU32,
}

// SAFETY: atomics only; every bit pattern is a valid (if odd) state.
unsafe impl ShmSafe for CondState {}
impl ShmObject for CondState {
    const KIND: u8 = 6;
}

#[derive(Clone, Serialize, Deserialize)]
enum Inner {
    Lock(Lock),
    RLock(RLock),
}

/// A process-shared condition variable (Python's `multiprocessing.Condition`), over a
/// [`Lock`] or an [`RLock`] (the default, as in Python).
///
/// [`lock`](Condition::lock) returns a [`ConditionGuard`]; waiting and notifying are methods
/// of the guard, so they can only be called with the lock held.
///
/// ```
/// use multiproc::{Condition, Process};
/// use std::time::Duration;
/// let c = Condition::new()?;
/// let flag = multiproc::Value::new(0u32)?;
/// let (c2, flag2) = (c.clone(), flag.clone());
/// let child = Process::fork(move || {
///     let g = c2.lock().unwrap();
///     flag2.set(1);
///     g.notify_all();
/// })?;
/// let mut g = c.lock().unwrap();
/// assert!(g.wait_for(|| flag.get() == 1, Some(Duration::from_secs(10))).unwrap());
/// drop(g);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: Inner,
    state: Shared<CondState>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condition")
    }
}

/// Holds a [`Condition`]'s lock (one level of it, for an RLock); waits and notifies. Not
/// `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

/// Re-acquiring the lock after a wait found that its previous holder had died holding it.
/// The lock is held again (the guard is still valid); shared state may be inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDied;

impl fmt::Display for OwnerDied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder of the lock died holding it")
    }
}
impl std::error::Error for OwnerDied {}

impl From<OwnerDied> for crate::Error {
    fn from(_: OwnerDied) -> crate::Error {
        crate::Error::new(crate::ErrorKind::OwnerDied, OwnerDied.to_string())
    }
}

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new() -> Result<Condition> {
        Self::with_rlock(RLock::new()?)
    }

    /// A condition over `lock`.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition {
            lock: Inner::Lock(lock),
            state: Shared::new(|_: &CondState| {})?,
        })
    }

    /// A condition over `lock`, a re-entrant lock.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn with_rlock(lock: RLock) -> Result<Condition> {
        Ok(Condition {
            lock: Inner::RLock(lock),
            state: Shared::new(|_: &CondState| {})?,
        })
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock (Python's `acquire()` / `with cond:`).
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] with the guard, when the previous holder died holding it.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.lock_with(None)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; [`LockError::OwnerDied`] with the guard.
    #[doc(alias = "acquire")]
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.lock_with(Some(timeout))
    }

    fn lock_with(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        // Take a level through the lock's own API, then keep it with our guard instead.
        let died = match &self.lock {
            Inner::Lock(l) => keep_level(match timeout {
                None => l.lock(),
                Some(t) => l.try_lock_for(t),
            })?,
            Inner::RLock(l) => keep_level(match timeout {
                None => l.lock(),
                Some(t) => l.try_lock_for(t),
            })?,
        };
        wrap(
            if died {
                Acquired::OwnerDied
            } else {
                Acquired::Clean
            },
            self.guard(),
        )
    }

    /// Releases the lock fully; returns what `reacquire` needs.
    fn release_for_wait(&self) -> u32 {
        match &self.lock {
            Inner::Lock(l) => {
                l.raw().unlock();
                1
            }
            Inner::RLock(l) => l.release_all(),
        }
    }

    fn reacquire(&self, depth: u32) -> Acquired {
        match &self.lock {
            Inner::Lock(l) => l.raw().lock(Deadline::never()).unwrap_or(Acquired::Clean),
            Inner::RLock(l) => l.restore(depth),
        }
    }
}

impl ConditionGuard<'_> {
    fn st(&self) -> &CondState {
        self.cond.state.get()
    }

    /// Releases the lock, waits for a notification, re-acquires the lock.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the lock's holder died while we waited; the lock is held again.
    pub fn wait(&mut self) -> std::result::Result<(), OwnerDied> {
        self.wait_until(Deadline::never()).map(|_| ())
    }

    /// Like [`wait`](Self::wait), at most `timeout`; `Ok(false)` when it ran out (Python's
    /// `wait(timeout)` returning False). The lock is held again in every case.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] as for `wait`.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::result::Result<bool, OwnerDied> {
        self.wait_until(Deadline::after(Some(timeout)))
    }

    /// Waits until `pred()` is true (checked with the lock held, first before any wait), at
    /// most `timeout` if given; returns the last value of `pred()` (Python's `wait_for`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] as for `wait` (the predicate is not re-checked then).
    pub fn wait_for(
        &mut self,
        mut pred: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, OwnerDied> {
        let deadline = Deadline::after(timeout);
        loop {
            if pred() {
                return Ok(true);
            }
            if deadline.expired() {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
    }

    fn wait_until(&mut self, deadline: Deadline) -> std::result::Result<bool, OwnerDied> {
        let st = self.st();
        st.waiting.fetch_add(1, Ordering::Relaxed);
        let mut died = false;
        let notified = loop {
            let seen = st.seq.load(Ordering::Relaxed);
            let depth = self.cond.release_for_wait();
            let remaining = deadline.remaining();
            if let Ok(r) = remaining {
                futex::wait(&st.seq, seen, r);
            }
            if self.cond.reacquire(depth) == Acquired::OwnerDied {
                died = true;
            }
            let t = st.tokens.load(Ordering::Relaxed);
            if t > 0 {
                st.tokens.store(t - 1, Ordering::Relaxed);
                break true;
            }
            if deadline.expired() {
                let w = st.waiting.load(Ordering::Relaxed);
                st.waiting.store(w.saturating_sub(1), Ordering::Relaxed);
                break false;
            }
        };
        if died {
            Err(OwnerDied)
        } else {
            Ok(notified)
        }
    }

    /// Wakes up to `n` waiters (they return once they get the lock back).
    pub fn notify(&self, n: u32) {
        let st = self.st();
        let w = st.waiting.load(Ordering::Relaxed);
        let k = n.min(w);
        if k == 0 {
            return;
        }
        st.waiting.store(w - k, Ordering::Relaxed);
        st.tokens.store(
            st.tokens.load(Ordering::Relaxed).saturating_add(k),
            Ordering::Relaxed,
        );
        st.seq.fetch_add(1, Ordering::Release);
        futex::wake(&st.seq, k);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    /// The condition this guard belongs to.
    pub fn condition(&self) -> &Condition {
        self.cond
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        match &self.cond.lock {
            Inner::Lock(l) => l.raw().unlock(),
            Inner::RLock(l) => {
                let _ = l.release();
            }
        }
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}

/// Keeps the level a lock call took (forgets its guard; the condition's guard releases it) and
/// says whether the previous holder had died.
fn keep_level<G, H>(
    r: std::result::Result<G, LockError<G>>,
) -> std::result::Result<bool, LockError<H>> {
    match r {
        Ok(g) => {
            std::mem::forget(g);
            Ok(false)
        }
        Err(LockError::OwnerDied(g)) => {
            std::mem::forget(g);
            Ok(true)
        }
        Err(_) => Err(LockError::Timeout),
    }
}
