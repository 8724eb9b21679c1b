//! [`Condition`]: wait for a notification while holding a [`Lock`] or [`RLock`].
//!
//! # Layout (own segment: 4,096 bytes)
//!
//! ```text
//! header (64 bytes)
//!   next:         AtomicU32   ticket of the next waiter (arrival order, wrapping)
//!   high:         AtomicU32   every registered waiter's slot index is below this
//!   over_seq:     AtomicU32   futex word of untracked waiters; +1 by a notify that chose some
//!   over_waiting: AtomicU32   untracked waiters not chosen yet
//!   over_tokens:  AtomicU32   notifications for untracked waiters not taken yet
//! slots: [Slot; 252], 16 bytes each, one per waiter
//!   who:          AtomicU64   owner identity of the waiting thread (`sys::thread`); 0 = free
//!   state:        AtomicU32   the futex word its waiter sleeps on (table below)
//!   ticket:       AtomicU32   arrival order
//! ```
//!
//! | `state`     | meaning                                   | set by                            |
//! |-------------|-------------------------------------------|-----------------------------------|
//! | `FREE`      | no waiter (`who` = 0)                     | the waiter leaving (lock held)    |
//! | `WAITING`   | registered; asleep or about to be         | the waiter (lock held)            |
//! | `NOTIFIED`  | a notify chose it: its wait returns true  | notify: CAS from `WAITING`        |
//! | `TIMED_OUT` | its deadline came first: returns false    | the waiter: CAS from `WAITING`    |
//!
//! Everything but `state` changes only under the condition's lock; `TIMED_OUT` is set
//! without it (the waiter gives up before it has the lock back).
//!
//! `wait`: with the lock held, take a free slot (`who` = me, `WAITING`, the next ticket);
//! release the lock; sleep on the slot's `state` while it is `WAITING` (at most 100 ms at a
//! time, so that a notifier killed between marking and waking costs a delay, not a hang); at
//! the deadline CAS `WAITING → TIMED_OUT` (a failed CAS means a notify chose us first);
//! re-acquire; return whether `state` is `NOTIFIED`; free the slot.
//!
//! `notify(n)`: with the lock held, choose `WAITING` slots oldest first: CAS each to `NOTIFIED`
//! and wake its one sleeper. When the wake finds nobody asleep and another waiter could take
//! the notification instead, look whether the chosen waiter is alive (`/proc`); a waiter
//! killed inside `wait` is dropped (its slot freed) and the notification goes to the next.
//! Notifications are bound to the waiters present when `notify` runs: nothing is left over
//! for a later waiter, so a waiter killed inside `wait` can never turn into a stray wake-up
//! (issue 17, item 5: it used to stay counted and `notify_all` made a token for it that the
//! next waiter took). A wait returns `true` exactly when a notify chose it, and `notify(n)`
//! wakes `min(n, live waiters)`. Each waiter has its own futex word, so `notify(1)` wakes
//! one process however many wait, and the common path reads no `/proc` file.
//!
//! A slot whose waiter died is freed when a notify finds it dead or when a waiter finds no
//! free slot. More than 252 waiters at once: the extra ones are *untracked*, counted in
//! `over_waiting` and woken through `over_seq` with counted tokens, the scheme this module
//! used for everyone before; among them (only), a waiter killed inside `wait` can still leave
//! a token that a later untracked waiter takes.
//!
//! A **named** condition (docs/names.md) is one segment for both of its objects: this page,
//! then which lock it is over (`u32` at 4,096: 1 a `Lock`, 2 an `RLock`; any other value
//! is refused on open), then the lock's state at 4,160. It travels as that segment, and the
//! receiver rebuilds the lock's handle from it (`Wire::OneSegment`).
//!
//! # Safety
//!
//! `CondState` is declared [`ShmSafe`]: atomics only, every bit pattern a
//! peer can write is a state the code handles.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{owned, LockState, LockTimeoutError, RLockState, TryLockError};
use super::{Acquired, Lock, RLock};
use crate::error::{Error, ErrorKind, OwnerDied, Result, Timeout};
use crate::shm::{named, Identity, Segment, SegmentKind, Shared, ShmObject, ShmSafe};
use crate::sys::futex;
use crate::sys::thread::{self, Liveness};
use crate::sys::Deadline;

/// Waiters tracked one by one (the rest of the page after the header).
const SLOTS: usize = 252;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
const TIMED_OUT: u32 = 3;

/// The longest single sleep of a waiter: it then looks at its slot again, in case the
/// notifier was killed between marking it and waking it.
const MAX_SLEEP: Duration = Duration::from_millis(100);

#[repr(C)]
struct Slot {
    who: AtomicU64,
    state: AtomicU32,
    ticket: AtomicU32,
}

#[repr(C)]
pub(crate) struct CondState {
    next: AtomicU32,
    high: AtomicU32,
    over_seq: AtomicU32,
    over_waiting: AtomicU32,
    over_tokens: AtomicU32,
    _pad: [AtomicU32; 11],
    slots: [Slot; SLOTS],
}

// SAFETY: atomics only; every bit pattern is a valid (if odd) state: `high` is clamped to
// `SLOTS` before use, a garbage `who` is a dead owner, an unknown `state` is never `WAITING`
// or `NOTIFIED` for long (its slot is freed when found dead, or by its waiter).
unsafe impl ShmSafe for CondState {}
impl ShmObject for CondState {
    const KIND: u8 = crate::kinds::object::CONDITION;
}

const _: () = assert!(std::mem::size_of::<CondState>() == 4096);

impl CondState {
    /// Slots that may be in use: `0..high`.
    fn in_use(&self) -> &[Slot] {
        let high = (self.high.load(Ordering::Relaxed) as usize).min(SLOTS);
        &self.slots[..high]
    }

    /// Takes a slot for the calling thread (lock held); `None` when all are taken by live
    /// waiters.
    fn register(&self) -> Option<usize> {
        let high = (self.high.load(Ordering::Relaxed) as usize).min(SLOTS);
        let i = (0..high)
            .find(|&i| self.slots[i].who.load(Ordering::Relaxed) == 0)
            .or_else(|| {
                (high < SLOTS).then(|| {
                    self.high.store(high as u32 + 1, Ordering::Relaxed);
                    high
                })
            })
            .or_else(|| {
                // Full: a waiter killed inside `wait` leaves its slot behind.
                (0..SLOTS).find(|&i| {
                    let who = self.slots[i].who.load(Ordering::Relaxed);
                    who == 0 || thread::liveness(who) == Liveness::Dead
                })
            })?;
        let slot = &self.slots[i];
        let ticket = self.next.load(Ordering::Relaxed);
        self.next.store(ticket.wrapping_add(1), Ordering::Relaxed);
        slot.ticket.store(ticket, Ordering::Relaxed);
        slot.state.store(WAITING, Ordering::Relaxed);
        slot.who.store(thread::current_id(), Ordering::Relaxed);
        Some(i)
    }

    /// Frees slot `i` (lock held) and lowers `high` past free slots at the top.
    fn free(&self, i: usize) {
        let slot = &self.slots[i];
        slot.who.store(0, Ordering::Relaxed);
        slot.state.store(FREE, Ordering::Relaxed);
        let mut high = (self.high.load(Ordering::Relaxed) as usize).min(SLOTS);
        while high > 0 && self.slots[high - 1].who.load(Ordering::Relaxed) == 0 {
            high -= 1;
        }
        self.high.store(high as u32, Ordering::Relaxed);
    }

    /// Chooses up to `n` waiters, oldest first (lock held); see the module docs.
    fn notify(&self, n: u32) {
        if n == 0 {
            return;
        }
        let next = self.next.load(Ordering::Relaxed);
        // (age, index) of every waiting slot; the oldest has the largest age.
        let mut waiting = [(0u32, 0u16); SLOTS];
        let mut m = 0;
        for (i, slot) in self.in_use().iter().enumerate() {
            if slot.state.load(Ordering::Relaxed) == WAITING {
                let age = next.wrapping_sub(slot.ticket.load(Ordering::Relaxed));
                waiting[m] = (age, i as u16);
                m += 1;
            }
        }
        let waiting = &mut waiting[..m];
        if (n as usize) < m {
            waiting.sort_unstable_by_key(|&(age, _)| std::cmp::Reverse(age));
        }
        let untracked = self.over_waiting.load(Ordering::Relaxed);
        let mut left = n;
        for (k, &(_, i)) in waiting.iter().enumerate() {
            if left == 0 {
                break;
            }
            let slot = &self.slots[i as usize];
            if slot
                .state
                .compare_exchange(WAITING, NOTIFIED, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                continue; // its deadline came first: it is leaving unnotified
            }
            let woke = futex::wake(&slot.state, 1);
            // Nobody asleep: dead, or alive and just not asleep right now (about to sleep,
            // or back from a signal). Only worth a look when someone else could take it.
            let others = m - k - 1 > (left - 1) as usize || untracked > 0;
            if woke == 0
                && others
                && thread::liveness(slot.who.load(Ordering::Relaxed)) == Liveness::Dead
            {
                self.free(i as usize);
                continue;
            }
            left -= 1;
        }
        if left > 0 && untracked > 0 {
            let k = left.min(untracked);
            self.over_waiting.store(untracked - k, Ordering::Relaxed);
            let t = self.over_tokens.load(Ordering::Relaxed);
            self.over_tokens
                .store(t.saturating_add(k), Ordering::Relaxed);
            self.over_seq.fetch_add(1, Ordering::Release);
            futex::wake(&self.over_seq, k);
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
enum Inner {
    Lock(Lock),
    RLock(RLock),
}

/// A named condition is one segment (one name for its two objects), laid out as
/// `CondState` at 0, which lock it is over (`OVER_LOCK`, `OVER_RLOCK`) as a `u32` at
/// `OVER_AT`, that lock's state at `LOCK_AT` (a `LockState` or an `RLockState`, which
/// start alike; the room is the larger's).
const OVER_AT: usize = std::mem::size_of::<CondState>();
const LOCK_AT: usize = OVER_AT + 64;
const NAMED_LEN: usize = LOCK_AT
    + if std::mem::size_of::<LockState>() > std::mem::size_of::<RLockState>() {
        std::mem::size_of::<LockState>()
    } else {
        std::mem::size_of::<RLockState>()
    };
const OVER_LOCK: u32 = 1;
const OVER_RLOCK: u32 = 2;

/// A condition on the wire: its two objects, or the one segment of a named condition
/// (whose lock handle cannot travel alone: the receiver rebuilds it from the segment).
#[derive(Serialize, Deserialize)]
enum Wire {
    Own {
        lock: Inner,
        state: Shared<CondState>,
    },
    OneSegment(Shared<CondState>),
}

impl From<Condition> for Wire {
    fn from(c: Condition) -> Wire {
        if c.one_segment {
            Wire::OneSegment(c.state)
        } else {
            Wire::Own {
                lock: c.lock,
                state: c.state,
            }
        }
    }
}

impl TryFrom<Wire> for Condition {
    type Error = Error;

    fn try_from(w: Wire) -> Result<Condition> {
        match w {
            Wire::Own { lock, state } => Ok(Condition {
                lock,
                state,
                one_segment: false,
            }),
            Wire::OneSegment(state) => Condition::from_segment(state.segment(), &|| {
                "a Condition handle in a message".to_string()
            }),
        }
    }
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
/// g.wait_for_timeout(|| flag.get() == 1, Duration::from_secs(10)).unwrap();
/// drop(g);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct Condition {
    lock: Inner,
    state: Shared<CondState>,
    /// A named condition: `state`'s segment holds the lock too (see `Wire`).
    one_segment: bool,
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

/// Why a timed wait of a [`ConditionGuard`] (`wait_timeout`, `wait_deadline`,
/// `wait_for_timeout`, `wait_for_deadline`) did not return `Ok`. Either way the lock is held
/// again when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitTimeoutError {
    /// No notification came (or, for `wait_for_*`, the predicate stayed false) before the
    /// deadline (Python's `wait(timeout)` returning `False`).
    Timeout,
    /// Re-acquiring the lock found that its previous holder had died holding it; the lock is
    /// held again, shared state may be inconsistent. (Reported even when the wait also ran
    /// out: the dead holder is the news that matters.)
    OwnerDied(OwnerDied),
}

impl WaitTimeoutError {
    /// True for [`WaitTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, WaitTimeoutError::Timeout)
    }
}

impl From<OwnerDied> for WaitTimeoutError {
    fn from(e: OwnerDied) -> Self {
        WaitTimeoutError::OwnerDied(e)
    }
}

impl fmt::Display for WaitTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitTimeoutError::Timeout => f.write_str("timed out waiting for a notification"),
            WaitTimeoutError::OwnerDied(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for WaitTimeoutError {}

impl From<WaitTimeoutError> for Error {
    fn from(e: WaitTimeoutError) -> Error {
        match e {
            WaitTimeoutError::Timeout => Timeout.into(),
            WaitTimeoutError::OwnerDied(e) => e.into(),
        }
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
            one_segment: false,
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
            one_segment: false,
        })
    }

    /// A new condition under the name `name`, over a new [`RLock`] (Python's default),
    /// which unrelated processes of this user open with [`open_named`](Self::open_named).
    /// The condition and its lock are one object under one name: it appears only once both
    /// are set up, and stays until [`unlink`](Self::unlink) or
    /// [`shm::unlink_named`](crate::shm::unlink_named) (see docs/names.md).
    ///
    /// ```
    /// use multiproc::Condition;
    /// use std::time::Duration;
    /// # let name = format!("doc_condition_named_{}", std::process::id());
    /// let c = Condition::create_named(&name)?;
    /// // In another process of this user:
    /// let other = Condition::open_named(&name)?;
    /// let mut g = other.lock().unwrap();
    /// assert!(g.wait_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// drop(g);
    /// assert!(multiproc::Lock::open_named(&name).is_err()); // not a Lock
    /// c.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken (by any named object);
    /// [`ErrorKind::InvalidArgument`] for a bad name; OS errors (`/dev/shm` full).
    pub fn create_named(name: &str) -> Result<Condition> {
        Self::create_named_over(name, OVER_RLOCK)
    }

    /// As [`create_named`](Self::create_named), over a plain (not re-entrant) [`Lock`]:
    /// Python's `Condition(Lock())`. [`open_named`](Self::open_named) finds out which.
    ///
    /// # Errors
    /// As [`create_named`](Self::create_named).
    pub fn create_named_with_lock(name: &str) -> Result<Condition> {
        Self::create_named_over(name, OVER_LOCK)
    }

    fn create_named_over(name: &str, over: u32) -> Result<Condition> {
        let seg = named::create_segment(
            SegmentKind::Object(CondState::KIND),
            NAMED_LEN,
            Identity {
                what: CondState::KIND as u32,
                tag: 0,
            },
            NAMED_LEN,
        )?;
        // The file is new and zeroed: the condition has no waiter; set the lock up.
        let word = seg.get::<AtomicU32>(OVER_AT).ok_or_else(too_small)?;
        word.store(over, Ordering::Relaxed);
        match over {
            OVER_LOCK => Shared::<LockState>::part_of(&seg, LOCK_AT)
                .ok_or_else(too_small)?
                .get()
                .raw
                .init(),
            _ => Shared::<RLockState>::part_of(&seg, LOCK_AT)
                .ok_or_else(too_small)?
                .get()
                .raw
                .init(),
        }
        let c = Self::from_segment(&seg, &|| "a new Condition".to_string())?;
        named::publish(&seg, name)?;
        Ok(c)
    }

    /// The condition in a named condition's segment `seg` (validated: its size, which lock).
    fn from_segment(seg: &Segment, what: &dyn Fn() -> String) -> Result<Condition> {
        let damaged = |why: &str| {
            Error::new(
                ErrorKind::InvalidHandle,
                format!("{} is not a valid named Condition: {why}", what()),
            )
        };
        let state = Shared::<CondState>::part_of(seg, 0)
            .ok_or_else(|| damaged("too small for its waiters"))?;
        let over = seg
            .get::<AtomicU32>(OVER_AT)
            .ok_or_else(|| damaged("too small for its lock"))?
            .load(Ordering::Relaxed);
        let lock = match over {
            OVER_LOCK => Inner::Lock(Lock::from_shared(
                Shared::part_of(seg, LOCK_AT).ok_or_else(|| damaged("too small for its lock"))?,
            )),
            OVER_RLOCK => Inner::RLock(RLock::from_shared(
                Shared::part_of(seg, LOCK_AT).ok_or_else(|| damaged("too small for its lock"))?,
            )),
            other => return Err(damaged(&format!("unknown kind of lock {other}"))),
        };
        Ok(Condition {
            lock,
            state,
            one_segment: true,
        })
    }

    /// Opens the condition named `name`, created by [`create_named`](Self::create_named)
    /// or [`create_named_with_lock`](Self::create_named_with_lock) in any process of this
    /// user, over the lock it was made with.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no object has that name; [`ErrorKind::InvalidHandle`]
    /// when the name holds another kind of object, one of another layout version, a damaged
    /// condition, or no multiproc object at all (the message says which).
    pub fn open_named(name: &str) -> Result<Condition> {
        let expected = || "a Condition".to_string();
        let seg = named::open_segment(
            name,
            SegmentKind::Object(CondState::KIND),
            Identity {
                what: CondState::KIND as u32,
                tag: 0,
            },
            &expected,
        )?;
        Self::from_segment(&seg, &|| format!("shared object {name:?}"))
    }

    /// Opens the condition named `name`, or creates it over a new [`RLock`] when there is
    /// none; of several processes racing to create it, one does and the others open that
    /// one.
    ///
    /// # Errors
    /// As [`open_named`](Self::open_named) and [`create_named`](Self::create_named).
    pub fn open_or_create(name: &str) -> Result<Condition> {
        named::open_or_create(name, || Self::open_named(name), || Self::create_named(name))
    }

    /// The name this condition was created or opened under, if any (not for one made by
    /// `new`, nor for a handle received in a message).
    pub fn name(&self) -> Option<&str> {
        self.state.name()
    }

    /// Removes this condition's name: no process can open it any more; those that have it
    /// keep using it, and it is freed when the last one lets go.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name, or the name now belongs to another
    /// object (left alone); [`ErrorKind::NotFound`] when the name is gone already.
    pub fn unlink(&self) -> Result<()> {
        self.state.unlink()
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
    /// [`OwnerDied`] with the guard, when the previous holder died holding it — the only
    /// error.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> std::result::Result<ConditionGuard<'_>, OwnerDied<ConditionGuard<'_>>> {
        // Take a level through the lock's own API, then keep it with our guard instead.
        let died = match &self.lock {
            Inner::Lock(l) => keep_level(l.lock()),
            Inner::RLock(l) => keep_level(l.lock()),
        };
        self.guard_after(died)
    }

    /// Takes the lock if it is free (or re-enters an RLock this thread holds); never waits.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another holds it; [`TryLockError::OwnerDied`] with
    /// the guard.
    #[doc(alias = "acquire")]
    pub fn try_lock(
        &self,
    ) -> std::result::Result<ConditionGuard<'_>, TryLockError<ConditionGuard<'_>>> {
        let died = match &self.lock {
            Inner::Lock(l) => keep_level_or(l.try_lock(), TryLockError::into_guard),
            Inner::RLock(l) => keep_level_or(l.try_lock(), TryLockError::into_guard),
        };
        match died {
            Some(died) => Ok(self.guard_after(died)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout` (any `Duration`).
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`]; [`LockTimeoutError::OwnerDied`] with the guard.
    #[doc(alias = "acquire", alias = "try_lock_for")]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ConditionGuard<'_>, LockTimeoutError<ConditionGuard<'_>>> {
        self.lock_deadline(Deadline::within(timeout).instant())
    }

    /// Takes the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<ConditionGuard<'_>, LockTimeoutError<ConditionGuard<'_>>> {
        let died = match &self.lock {
            Inner::Lock(l) => {
                keep_level_or(l.lock_deadline(deadline), LockTimeoutError::into_guard)
            }
            Inner::RLock(l) => {
                keep_level_or(l.lock_deadline(deadline), LockTimeoutError::into_guard)
            }
        };
        match died {
            Some(died) => Ok(self.guard_after(died)?),
            None => Err(LockTimeoutError::Timeout),
        }
    }

    fn guard_after(
        &self,
        died: bool,
    ) -> std::result::Result<ConditionGuard<'_>, OwnerDied<ConditionGuard<'_>>> {
        let a = if died {
            Acquired::OwnerDied
        } else {
            Acquired::Clean
        };
        owned(a, self.guard())
    }

    /// Releases the lock fully; returns what `reacquire` needs.
    fn release_for_wait(&self) -> u32 {
        match &self.lock {
            Inner::Lock(l) => {
                l.raw().unlock_fair();
                1
            }
            Inner::RLock(l) => l.release_all(),
        }
    }

    fn reacquire(&self, depth: u32) -> Acquired {
        match &self.lock {
            Inner::Lock(l) => l.raw().lock_forever(),
            Inner::RLock(l) => l.restore(depth),
        }
    }
}

fn too_small() -> Error {
    Error::new(
        ErrorKind::Os,
        "a new named Condition's segment is too small for it",
    )
}

/// How [`Condition::wait_held`] ended; the lock is held again either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldWait {
    /// A notify chose this waiter.
    Notified,
    /// The deadline passed first.
    TimedOut,
    /// `interrupted()` returned true first.
    Interrupted,
}

/// For bindings whose callers hold the lock through the lock's own handle (Python's
/// `lock.acquire()`, then `cond.wait()` on a condition made over that lock): the waits and
/// notifies of [`ConditionGuard`], checked against the calling thread's ownership instead of
/// a guard.
impl Condition {
    /// Whether the calling thread holds the condition's lock.
    pub fn is_held(&self) -> bool {
        match &self.lock {
            Inner::Lock(l) => l.is_owned(),
            Inner::RLock(l) => l.is_owned(),
        }
    }

    fn check_held(&self, what: &str) -> Result<()> {
        if self.is_held() {
            Ok(())
        } else {
            Err(Error::new(
                crate::ErrorKind::InvalidState,
                format!("must hold the condition's lock to {what}"),
            ))
        }
    }

    /// Waits as [`ConditionGuard::wait_deadline`] does (`None`: no deadline), releasing
    /// every level of an RLock, and asking `interrupted()` each time the sleep ends without
    /// a notification (at least every 100 ms, and at once when a signal interrupts it): true
    /// gives up as the deadline does. Returns how it ended and whether re-acquiring the lock
    /// took it over from a holder that died.
    ///
    /// ```
    /// use multiproc::sync::HeldWait;
    /// let c = multiproc::Condition::new()?;
    /// std::mem::forget(c.lock().unwrap()); // held, as by Python's `cond.acquire()`
    /// assert_eq!(c.wait_held(None, || true)?, (HeldWait::Interrupted, false));
    /// assert!(c.is_held());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the calling thread
    /// does not hold the lock.
    pub fn wait_held(
        &self,
        deadline: Option<Instant>,
        mut interrupted: impl FnMut() -> bool,
    ) -> Result<(HeldWait, bool)> {
        self.check_held("wait")?;
        let deadline = deadline.map_or(Deadline::never(), Deadline::at);
        let mut asked = false;
        let (notified, acquired) = self.wait_raw(deadline, &mut || {
            asked = interrupted();
            asked
        });
        let how = if notified {
            HeldWait::Notified
        } else if asked {
            HeldWait::Interrupted
        } else {
            HeldWait::TimedOut
        };
        Ok((how, acquired == Acquired::OwnerDied))
    }

    /// [`ConditionGuard::notify`] for a caller holding the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the calling thread
    /// does not hold the lock.
    pub fn notify_held(&self, n: u32) -> Result<()> {
        self.check_held("notify")?;
        self.state.get().notify(n);
        Ok(())
    }

    /// `(waiting, notified)`: the waiters inside a wait that no notify chose yet, and those a
    /// notify chose that have not left their wait yet (a snapshot; both 0 when nobody
    /// waits).
    pub fn waiters(&self) -> (u32, u32) {
        let st = self.state.get();
        let (mut waiting, mut notified) = (st.over_waiting.load(Ordering::Relaxed), 0u32);
        for slot in st.in_use() {
            match slot.state.load(Ordering::Relaxed) {
                WAITING => waiting += 1,
                NOTIFIED => notified += 1,
                _ => {}
            }
        }
        (
            waiting,
            notified.saturating_add(st.over_tokens.load(Ordering::Relaxed)),
        )
    }

    /// Registers, releases the lock, sleeps, re-acquires (see the module docs): whether a
    /// notify chose us and how the lock came back.
    fn wait_raw(
        &self,
        deadline: Deadline,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> (bool, Acquired) {
        match self.state.get().register() {
            Some(i) => self.wait_tracked(i, deadline, interrupted),
            None => self.wait_untracked(deadline, interrupted),
        }
    }

    /// Waits in slot `i` (see the module docs); returns whether a notify chose us and how
    /// the lock came back. `interrupted()` is asked after every wake-up that did not
    /// end the wait; true gives up as the deadline does.
    fn wait_tracked(
        &self,
        i: usize,
        deadline: Deadline,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> (bool, Acquired) {
        let st = self.state.get();
        let slot = &st.slots[i];
        let depth = self.release_for_wait();
        let mut woken = false;
        loop {
            if slot.state.load(Ordering::Acquire) != WAITING {
                break;
            }
            let remaining = match deadline.remaining() {
                Ok(r) if !(woken && interrupted()) => Ok(r),
                _ => Err(()),
            };
            let Ok(remaining) = remaining else {
                // Give up, unless a notify has chosen us meanwhile (then the CAS fails).
                let _ = slot.state.compare_exchange(
                    WAITING,
                    TIMED_OUT,
                    Ordering::Acquire,
                    Ordering::Acquire,
                );
                break;
            };
            let t = remaining.map_or(MAX_SLEEP, |r| r.min(MAX_SLEEP));
            // Any return (woken, a signal, a timeout): look at the slot again.
            futex::wait(&slot.state, WAITING, Some(t));
            woken = true;
        }
        let acquired = self.reacquire(depth);
        let notified = slot.state.load(Ordering::Acquire) == NOTIFIED;
        // The slot is ours until we free it: nobody frees the slot of a live waiter.
        if slot.who.load(Ordering::Relaxed) == thread::current_id() {
            st.free(i);
        }
        (notified, acquired)
    }

    /// Waits without a slot (more than [`SLOTS`] waiters): counted, woken by tokens.
    fn wait_untracked(
        &self,
        deadline: Deadline,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> (bool, Acquired) {
        let st = self.state.get();
        st.over_waiting.fetch_add(1, Ordering::Relaxed);
        let mut acquired = Acquired::Clean;
        let notified = loop {
            let seen = st.over_seq.load(Ordering::Relaxed);
            let depth = self.release_for_wait();
            let mut gave_up = true;
            if let Ok(r) = deadline.remaining() {
                let t = r.map_or(MAX_SLEEP, |r| r.min(MAX_SLEEP));
                futex::wait(&st.over_seq, seen, Some(t));
                gave_up = interrupted();
            }
            if self.reacquire(depth) == Acquired::OwnerDied {
                acquired = Acquired::OwnerDied;
            }
            let t = st.over_tokens.load(Ordering::Relaxed);
            if t > 0 {
                st.over_tokens.store(t - 1, Ordering::Relaxed);
                break true;
            }
            if gave_up || deadline.expired() {
                let w = st.over_waiting.load(Ordering::Relaxed);
                st.over_waiting
                    .store(w.saturating_sub(1), Ordering::Relaxed);
                break false;
            }
        };
        (notified, acquired)
    }
}

impl ConditionGuard<'_> {
    fn st(&self) -> &CondState {
        self.cond.state.get()
    }

    /// Releases the lock, waits for a notification, re-acquires the lock. Returns only when
    /// a [`notify`](Self::notify) or [`notify_all`](Self::notify_all) chose this waiter:
    /// no spurious wake-ups (Python's `wait()`).
    ///
    /// (A condition wait has no `try_` form: a notification reaches only a waiter that is
    /// waiting when it is sent.)
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the lock's holder died while we waited; the lock is held again.
    pub fn wait(&mut self) -> std::result::Result<(), OwnerDied> {
        match self.wait_until(Deadline::never(), &mut || false) {
            Err(WaitTimeoutError::OwnerDied(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Like [`wait`](Self::wait), at most `timeout` (any `Duration`): `Ok(())` when a notify
    /// chose this waiter, [`WaitTimeoutError::Timeout`] when the timeout ran out first —
    /// never `Ok` without a notify. Python's `wait(timeout)` is `wait_timeout(t).is_ok()`.
    /// Either way it returns with the lock held again, so it may return a little after the
    /// timeout when the lock is busy.
    ///
    /// # Errors
    ///
    /// [`WaitTimeoutError::Timeout`]; [`WaitTimeoutError::OwnerDied`] as for `wait`.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_until(Deadline::within(timeout), &mut || false)
    }

    /// Like [`wait`](Self::wait), until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(
        &mut self,
        deadline: Instant,
    ) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_until(Deadline::at(deadline), &mut || false)
    }

    /// Waits until `pred()` is true, checked with the lock held, first before any wait
    /// (Python's `wait_for(pred)`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] as for `wait` (the predicate is not re-checked then).
    pub fn wait_for(&mut self, pred: impl FnMut() -> bool) -> std::result::Result<(), OwnerDied> {
        match self.wait_for_until(pred, Deadline::never()) {
            Err(WaitTimeoutError::OwnerDied(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Waits until `pred()` is true, at most `timeout` (Python's `wait_for(pred, timeout)`,
    /// whose `True` is `Ok(())`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = multiproc::Condition::new()?;
    /// let mut g = c.lock().unwrap();
    /// let r = g.wait_for_timeout(|| false, Duration::from_millis(1));
    /// assert!(r.unwrap_err().is_timeout());
    /// assert!(g.wait_for_timeout(|| true, Duration::ZERO).is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`WaitTimeoutError::Timeout`] when `pred()` is still false at the deadline;
    /// [`WaitTimeoutError::OwnerDied`] as for `wait`.
    pub fn wait_for_timeout(
        &mut self,
        pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_for_until(pred, Deadline::within(timeout))
    }

    /// Waits until `pred()` is true, until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`wait_for_timeout`](Self::wait_for_timeout).
    pub fn wait_for_deadline(
        &mut self,
        pred: impl FnMut() -> bool,
        deadline: Instant,
    ) -> std::result::Result<(), WaitTimeoutError> {
        self.wait_for_until(pred, Deadline::at(deadline))
    }

    fn wait_for_until(
        &mut self,
        mut pred: impl FnMut() -> bool,
        deadline: Deadline,
    ) -> std::result::Result<(), WaitTimeoutError> {
        loop {
            if pred() {
                return Ok(());
            }
            if deadline.expired() {
                return Err(WaitTimeoutError::Timeout);
            }
            match self.wait_until(deadline, &mut || false) {
                Err(WaitTimeoutError::OwnerDied(e)) => return Err(e.into()),
                // Notified or not: look at the predicate again (a last time at the deadline).
                Ok(()) | Err(WaitTimeoutError::Timeout) => {}
            }
        }
    }

    fn wait_until(
        &mut self,
        deadline: Deadline,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> std::result::Result<(), WaitTimeoutError> {
        let (notified, acquired) = self.cond.wait_raw(deadline, interrupted);
        if acquired == Acquired::OwnerDied {
            Err(WaitTimeoutError::OwnerDied(OwnerDied::new(())))
        } else if notified {
            Ok(())
        } else {
            Err(WaitTimeoutError::Timeout)
        }
    }

    /// Wakes up to `n` of the waiters waiting now, oldest first; each of their waits returns
    /// `Ok(())` once it has the lock back. Waiters that arrive later are not affected, and
    /// a waiter killed inside `wait` is skipped (the notification goes to the next one).
    pub fn notify(&self, n: u32) {
        self.st().notify(n);
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
            Inner::Lock(l) => l.raw().unlock_fair(),
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
fn keep_level<G>(r: std::result::Result<G, OwnerDied<G>>) -> bool {
    match r {
        Ok(g) => {
            std::mem::forget(g);
            false
        }
        Err(e) => {
            std::mem::forget(e.into_inner());
            true
        }
    }
}

/// As [`keep_level`] for a `try_lock` or timed lock: `None` when nothing was acquired.
fn keep_level_or<G, E>(r: std::result::Result<G, E>, guard: fn(E) -> Option<G>) -> Option<bool> {
    match r {
        Ok(g) => Some(keep_level(Ok(g))),
        Err(e) => guard(e).map(|g| keep_level(Err(OwnerDied::new(g)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Instant;

    /// Starts `n` threads that wait (at most 20 s) and count how many were notified; returns
    /// once all of them are inside `wait`.
    fn waiters(
        c: &Condition,
        n: usize,
        notified: &Arc<AtomicUsize>,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let inside = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (c, inside, notified) = (c.clone(), inside.clone(), notified.clone());
                std::thread::spawn(move || {
                    let mut g = c.lock().unwrap();
                    inside.fetch_add(1, Ordering::Relaxed);
                    if g.wait_timeout(Duration::from_secs(20)).is_ok() {
                        notified.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        // Each waiter counts itself with the lock held and releases it only inside `wait`.
        while inside.load(Ordering::Relaxed) < n {
            assert!(t0.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(c.lock().unwrap());
        hs
    }

    fn until(what: &str, cond: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn more_waiters_than_slots_are_all_notified_exactly() {
        let c = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let notified = Arc::new(AtomicUsize::new(0));
        let n = SLOTS + 6;
        let hs = waiters(&c, n, &notified);
        assert_eq!(c.state.get().over_waiting.load(Ordering::Relaxed), 6);
        // Exact counts across tracked and untracked waiters.
        c.lock().unwrap().notify(SLOTS as u32 - 1);
        until("notified", || notified.load(Ordering::Relaxed) == SLOTS - 1);
        c.lock().unwrap().notify(3);
        until("notified", || notified.load(Ordering::Relaxed) == SLOTS + 2);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(notified.load(Ordering::Relaxed), SLOTS + 2);
        c.lock().unwrap().notify_all();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(notified.load(Ordering::Relaxed), n);
        let st = c.state.get();
        assert_eq!(st.high.load(Ordering::Relaxed), 0, "every slot freed");
        assert_eq!(st.over_waiting.load(Ordering::Relaxed), 0);
        assert_eq!(st.over_tokens.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn slots_of_dead_waiters_are_reclaimed_when_full() {
        let c = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let st = c.state.get();
        // Every slot held by a waiter that died inside `wait` (an exited thread's identity).
        let dead = std::thread::spawn(thread::current_id).join().unwrap();
        for (k, slot) in st.slots.iter().enumerate() {
            slot.who.store(dead, Ordering::Relaxed);
            slot.state.store(
                if k % 2 == 0 { WAITING } else { NOTIFIED },
                Ordering::Relaxed,
            );
        }
        st.high.store(SLOTS as u32, Ordering::Relaxed);
        let mut g = c.lock().unwrap();
        assert!(g
            .wait_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout());
        assert_eq!(
            st.over_waiting.load(Ordering::Relaxed),
            0,
            "tracked, not counted"
        );
        // The dead waiters' notifications go nowhere: a live waiter gets its own.
        drop(g);
        let notified = Arc::new(AtomicUsize::new(0));
        let hs = waiters(&c, 2, &notified);
        c.lock().unwrap().notify(1);
        until("one notified", || notified.load(Ordering::Relaxed) == 1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            notified.load(Ordering::Relaxed),
            1,
            "notify(1) woke exactly one"
        );
        c.lock().unwrap().notify(1);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(notified.load(Ordering::Relaxed), 2);
    }

    /// One try of [`a_waiter_past_its_deadline_is_not_chosen`] with the older waiter's
    /// timeout `early_timeout`; false when that waiter had left before we held the lock (the
    /// situation to test did not arise).
    fn past_deadline_not_chosen(early_timeout: Duration) -> bool {
        let c = Condition::new().unwrap();
        let st = c.state.get();
        let (c2, inside) = (c.clone(), Arc::new(AtomicUsize::new(0)));
        let inside2 = inside.clone();
        let early = std::thread::spawn(move || {
            let mut g = c2.lock().unwrap();
            inside2.store(1, Ordering::Relaxed);
            g.wait_timeout(early_timeout).is_ok()
        });
        until("early inside", || inside.load(Ordering::Relaxed) == 1);
        let notified = Arc::new(AtomicUsize::new(0));
        let hs = waiters(&c, 1, &notified);
        let g = c.lock().unwrap();
        // The older waiter holds ticket 0. Still registered, it cannot leave while we hold
        // the lock, however soon its deadline passes.
        let early_slot = st
            .in_use()
            .iter()
            .find(|s| s.who.load(Ordering::Relaxed) != 0 && s.ticket.load(Ordering::Relaxed) == 0);
        let arose = early_slot.is_some();
        if let Some(slot) = early_slot {
            until("early past its deadline", || {
                slot.state.load(Ordering::Relaxed) == TIMED_OUT
            });
            g.notify(1);
        } else {
            g.notify_all();
        }
        drop(g);
        assert!(!early.join().unwrap(), "timed out, not notified");
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(notified.load(Ordering::Relaxed), 1);
        arose
    }

    #[test]
    fn a_waiter_past_its_deadline_is_not_chosen() {
        // The older waiter's deadline passes while we hold the lock, so it cannot leave yet;
        // notify(1) must skip it and choose the younger one.
        let mut t = Duration::from_millis(30);
        while !past_deadline_not_chosen(t) {
            assert!(
                t < Duration::from_secs(5),
                "the older waiter always left first"
            );
            t *= 2;
        }
    }
}
