//! [`Barrier`]: `n` parties wait until all have arrived.
//!
//! # Layout (own segment: 2,096 bytes)
//!
//! ```text
//! lock:    RawMutex          guards everything below except `round`'s futex waits
//! round:   AtomicU32         futex word; +1 when a round ends (passed or broken)
//! parties: AtomicU32
//! count:   AtomicU32         arrived in the current round
//! broken:  AtomicU32         1 while broken (until reset)
//! history: AtomicU32         bit (r % 32) set when round r ended broken
//! members: [AtomicU64; 256]  owner identities of the parties waiting in this round
//! ```
//!
//! A party that arrives takes index `count`, records itself in `members`, and sleeps on
//! `round`. When the round ends it looks at `history` bit for its round: passed or broken.
//! Sleepers check the recorded members 4 ms after they start sleeping, then at intervals
//! doubling to 128 ms, scheduled by the clock (signals that cut their sleeps short do not
//! postpone the checks): a dead one (killed inside the barrier) breaks the barrier, so the
//! survivors get [`BrokenBarrier`] instead of hanging. Parties beyond the 256th of a round
//! are not tracked.
//!
//! # Safety
//!
//! `BarrierState` is declared [`ShmSafe`]: atomics only, every bit pattern a
//! peer can write is a state the code handles.

#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Acquired, RawMutex};
use crate::error::{Error, ErrorKind, Result, Timeout, WouldBlock};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::futex::{self, Recheck};
use crate::sys::thread::{self, Liveness};
use crate::sys::Deadline;

const TRACKED: usize = 256;
/// When a sleeper first checks the other parties' liveness, and the longest interval between
/// checks (scheduled by the clock: see [`Recheck`]).
const FIRST_CHECK: Duration = Duration::from_millis(4);
const MAX_CHECK: Duration = Duration::from_millis(128);
/// The longest sleep of [`Barrier::wait_interruptible`] between questions.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

#[repr(C)]
pub(crate) struct BarrierState {
    lock: RawMutex,
    round: AtomicU32,
    parties: AtomicU32,
    count: AtomicU32,
    broken: AtomicU32,
    history: AtomicU32,
    _pad: AtomicU32,
    members: [AtomicU64; TRACKED],
}

// SAFETY: atomics and a RawMutex only; every bit pattern is a valid state (indices read from
// it are bounds-checked before use).
unsafe impl ShmSafe for BarrierState {}
impl ShmObject for BarrierState {
    const KIND: u8 = crate::kinds::object::BARRIER;
}

/// The barrier was broken: aborted, reset while waiting, a party timed out, or a party died
/// inside it (Python's `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenBarrier;

impl fmt::Display for BrokenBarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the barrier is broken")
    }
}
impl std::error::Error for BrokenBarrier {}
impl From<BrokenBarrier> for Error {
    fn from(_: BrokenBarrier) -> Error {
        Error::new(ErrorKind::BrokenBarrier, "the barrier is broken")
    }
}

/// Why [`Barrier::try_wait`] did not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TryBarrierError {
    /// This party would have to wait for others: it has not arrived (nothing changed).
    WouldBlock,
    /// The barrier is broken.
    Broken,
}

/// Why [`Barrier::wait_timeout`] or [`Barrier::wait_deadline`] did not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierTimeoutError {
    /// This party's deadline passed first. As in Python, running out breaks the barrier: the
    /// other parties of the round get [`BarrierTimeoutError::Broken`] (or [`BrokenBarrier`]),
    /// and so does every later `wait` until [`Barrier::reset`].
    Timeout,
    /// The barrier is or became broken while waiting (aborted, reset, another party ran out
    /// of time or died inside it).
    Broken,
}

/// Why [`Barrier::wait_interruptible`] did not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierWaitError {
    /// This party's deadline passed first (the barrier is broken now).
    Timeout,
    /// `interrupted()` returned true first (the barrier is broken now).
    Interrupted,
    /// The barrier is or became broken while waiting.
    Broken,
}

impl fmt::Display for BarrierWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarrierWaitError::Timeout => "timed out waiting at the barrier (it is broken now)",
            BarrierWaitError::Interrupted => {
                "interrupted waiting at the barrier (it is broken now)"
            }
            BarrierWaitError::Broken => "the barrier is broken",
        })
    }
}

impl std::error::Error for BarrierWaitError {}

impl TryBarrierError {
    /// True for [`TryBarrierError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryBarrierError::WouldBlock)
    }
}

impl BarrierTimeoutError {
    /// True for [`BarrierTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, BarrierTimeoutError::Timeout)
    }
}

impl From<BrokenBarrier> for TryBarrierError {
    fn from(_: BrokenBarrier) -> Self {
        TryBarrierError::Broken
    }
}

impl From<BrokenBarrier> for BarrierTimeoutError {
    fn from(_: BrokenBarrier) -> Self {
        BarrierTimeoutError::Broken
    }
}

impl fmt::Display for TryBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryBarrierError::WouldBlock => fmt::Display::fmt(&WouldBlock, f),
            TryBarrierError::Broken => fmt::Display::fmt(&BrokenBarrier, f),
        }
    }
}

impl fmt::Display for BarrierTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierTimeoutError::Timeout => {
                f.write_str("timed out waiting at the barrier (which is broken now)")
            }
            BarrierTimeoutError::Broken => fmt::Display::fmt(&BrokenBarrier, f),
        }
    }
}

impl std::error::Error for TryBarrierError {}
impl std::error::Error for BarrierTimeoutError {}

impl From<TryBarrierError> for Error {
    fn from(e: TryBarrierError) -> Error {
        match e {
            TryBarrierError::WouldBlock => WouldBlock.into(),
            TryBarrierError::Broken => BrokenBarrier.into(),
        }
    }
}

impl From<BarrierTimeoutError> for Error {
    fn from(e: BarrierTimeoutError) -> Error {
        match e {
            BarrierTimeoutError::Timeout => Timeout.into(),
            BarrierTimeoutError::Broken => BrokenBarrier.into(),
        }
    }
}

type Action = Arc<dyn Fn() + Send + Sync>;

/// A process-shared barrier (Python's `multiprocessing.Barrier`).
///
/// Each of `parties` callers of [`wait`](Barrier::wait) blocks until all have called it, then
/// all return, each with a distinct index in `0..parties`. An optional action runs once per
/// round, in the last party to arrive, before the others are released. The action is local to
/// this process's handles: a handle received by another process has none, so the action runs
/// only when a handle with one arrives last.
///
/// ```
/// use multiproc::{Barrier, Process};
/// let b = Barrier::new(2)?;
/// let b2 = b.clone();
/// let child = Process::fork(move || b2.wait().unwrap())?;
/// let mine = b.wait().unwrap();
/// let theirs = child.join()?;
/// assert_eq!(mine + theirs, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Shared<BarrierState>,
    action: Option<Action>,
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Barrier, D::Error> {
        Ok(Barrier {
            inner: Shared::deserialize(d)?,
            action: None,
        })
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

named_api!(
    Barrier,
    BarrierState,
    crate::kinds::object::BARRIER as u32,
    (parties: u32),
    {
        if parties == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a barrier needs at least one party",
            ));
        }
    },
    |s| {
        s.lock.init();
        s.parties.store(parties, Ordering::Relaxed);
    },
    rest { action: None }
);

impl Barrier {
    /// A barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `parties` is 0; shared-memory failures.
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a barrier needs at least one party",
            ));
        }
        Ok(Barrier {
            inner: Shared::new(|s: &BarrierState| {
                s.lock.init();
                s.parties.store(parties, Ordering::Relaxed);
            })?,
            action: None,
        })
    }

    /// A barrier whose last arriving party runs `action` before releasing the others. If the
    /// action panics, the barrier breaks and the panic continues in that party.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_action(parties: u32, action: impl Fn() + Send + Sync + 'static) -> Result<Barrier> {
        let mut b = Self::new(parties)?;
        b.action = Some(Arc::new(action));
        Ok(b)
    }

    fn st(&self) -> &BarrierState {
        self.inner.get()
    }

    /// Takes the internal lock; a dead previous holder may have left the state half-updated,
    /// so the barrier is broken then.
    fn locked(&self) -> Locked<'_> {
        let st = self.st();
        let a = st.lock.lock_forever();
        let l = Locked(st);
        if a == Acquired::OwnerDied {
            l.break_round();
        }
        l
    }

    /// Waits for all parties; returns this party's index in `0..parties`.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] if the barrier is or becomes broken while waiting — the only error.
    pub fn wait(&self) -> std::result::Result<u32, BrokenBarrier> {
        self.arrive(Deadline::never(), false, None)
            .map_err(|_| BrokenBarrier)
    }

    /// Passes only if this party is the last one the round waits for (it then releases the
    /// others and returns its index); never waits. When others are still missing nothing
    /// changes: this party has not arrived.
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// assert!(b.try_wait().unwrap_err().is_would_block());
    /// assert_eq!(b.n_waiting(), 0, "a try_wait that would block does not arrive");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TryBarrierError::WouldBlock`] when others are still missing;
    /// [`TryBarrierError::Broken`] when the barrier is broken.
    pub fn try_wait(&self) -> std::result::Result<u32, TryBarrierError> {
        self.arrive(Deadline::never(), true, None)
            .map_err(|s| match s {
                Stop::WouldBlock => TryBarrierError::WouldBlock,
                Stop::Timeout | Stop::Broken | Stop::Interrupted => TryBarrierError::Broken,
            })
    }

    /// Like [`wait`](Self::wait), at most `timeout` (any `Duration`). Running out breaks the
    /// barrier, as in Python (whose `wait(timeout)` raises `BrokenBarrierError` in every
    /// party): this party gets [`BarrierTimeoutError::Timeout`], the others of the round
    /// [`BarrierTimeoutError::Broken`] / [`BrokenBarrier`], until [`reset`](Self::reset).
    ///
    /// # Errors
    ///
    /// [`BarrierTimeoutError::Timeout`]; [`BarrierTimeoutError::Broken`].
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<u32, BarrierTimeoutError> {
        self.wait_until(Deadline::within(timeout))
    }

    /// Like [`wait_timeout`](Self::wait_timeout), until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<u32, BarrierTimeoutError> {
        self.wait_until(Deadline::at(deadline))
    }

    fn wait_until(&self, deadline: Deadline) -> std::result::Result<u32, BarrierTimeoutError> {
        self.arrive(deadline, false, None).map_err(|s| match s {
            Stop::Timeout | Stop::Interrupted => BarrierTimeoutError::Timeout,
            Stop::WouldBlock | Stop::Broken => BarrierTimeoutError::Broken,
        })
    }

    /// Like [`wait_deadline`](Self::wait_deadline) (`None`: no deadline), for bindings that
    /// must notice signals (Python's Ctrl-C): `interrupted()` is asked after every sleep,
    /// which lasts at most 50 ms (and ends at once when a signal interrupts it). True ends
    /// the wait as running out of time does: the barrier breaks for the others.
    ///
    /// ```
    /// use multiproc::sync::BarrierWaitError;
    /// let b = multiproc::Barrier::new(2)?;
    /// assert_eq!(b.wait_interruptible(None, || true), Err(BarrierWaitError::Interrupted));
    /// assert!(b.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`BarrierWaitError`]: which of the three ended it.
    pub fn wait_interruptible(
        &self,
        deadline: Option<Instant>,
        mut interrupted: impl FnMut() -> bool,
    ) -> std::result::Result<u32, BarrierWaitError> {
        let deadline = deadline.map_or(Deadline::never(), Deadline::at);
        self.arrive(deadline, false, Some(&mut interrupted))
            .map_err(|s| match s {
                Stop::Timeout => BarrierWaitError::Timeout,
                Stop::Interrupted => BarrierWaitError::Interrupted,
                Stop::WouldBlock | Stop::Broken => BarrierWaitError::Broken,
            })
    }

    /// Arrives and waits for the round to end, at most until `deadline`; with `only_last`,
    /// arrives only when it completes the round (else `WouldBlock`, nothing changed).
    ///
    /// `interrupted`, when given, is asked after every sleep (sleeps last at most
    /// [`INTERRUPT_CHECK`] then); true ends the wait as running out of time does.
    fn arrive(
        &self,
        deadline: Deadline,
        only_last: bool,
        mut interrupted: Option<&mut dyn FnMut() -> bool>,
    ) -> std::result::Result<u32, Stop> {
        let l = self.locked();
        let st = self.st();
        if st.broken.load(Ordering::Relaxed) != 0 {
            return Err(Stop::Broken);
        }
        let parties = st.parties.load(Ordering::Relaxed).max(1);
        let index = st.count.load(Ordering::Relaxed);
        if index >= parties {
            // Corrupted state: only a dead holder mid-update could leave this.
            l.break_round();
            return Err(Stop::Broken);
        }
        if only_last && index + 1 != parties {
            return Err(Stop::WouldBlock);
        }
        let round = st.round.load(Ordering::Relaxed);
        if (index as usize) < TRACKED {
            st.members[index as usize].store(thread::current_id(), Ordering::Relaxed);
        }
        st.count.store(index + 1, Ordering::Relaxed);
        if index + 1 == parties {
            if let Some(action) = &self.action {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action()))
                {
                    l.break_round();
                    drop(l);
                    std::panic::resume_unwind(p);
                }
            }
            l.end_round(false);
            return Ok(index);
        }
        drop(l);
        let mut checks = Recheck::new(FIRST_CHECK, MAX_CHECK);
        let mut woken = false;
        loop {
            let r = st.round.load(Ordering::Acquire);
            if r != round {
                return if st.history.load(Ordering::Acquire) & (1 << (round % 32)) != 0 {
                    Err(Stop::Broken)
                } else {
                    Ok(index)
                };
            }
            // Checked by the clock, however the sleeps end (signals must not postpone it).
            if checks.due() {
                let l = self.locked();
                if st.round.load(Ordering::Relaxed) == round && l.member_died() {
                    l.break_round();
                }
                drop(l);
                continue; // the round may have ended: look again
            }
            let t = match checks.sleep_time(deadline) {
                Some(t) if !(woken && interrupted.as_mut().is_some_and(|f| f())) => t,
                sleep => {
                    let l = self.locked();
                    if st.round.load(Ordering::Relaxed) == round {
                        // Still waiting at our deadline (or interrupted): we break the round
                        // (as Python does), and we are the one that ran out.
                        l.break_round();
                        return Err(if sleep.is_none() {
                            Stop::Timeout
                        } else {
                            Stop::Interrupted
                        });
                    }
                    drop(l);
                    continue; // the round has ended meanwhile, one way or the other: report it
                }
            };
            let t = if interrupted.is_some() {
                t.min(INTERRUPT_CHECK)
            } else {
                t
            };
            futex::wait(&st.round, round, Some(t));
            woken = true;
        }
    }

    /// Breaks the barrier: current and future waiters get [`BrokenBarrier`] until
    /// [`reset`](Self::reset).
    pub fn abort(&self) {
        let l = self.locked();
        l.break_round();
        self.st().broken.store(1, Ordering::Relaxed);
    }

    /// Returns the barrier to its initial state; parties waiting now get [`BrokenBarrier`].
    pub fn reset(&self) {
        let l = self.locked();
        let st = self.st();
        if st.count.load(Ordering::Relaxed) > 0 {
            l.break_round();
        }
        st.broken.store(0, Ordering::Relaxed);
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.st().parties.load(Ordering::Relaxed)
    }

    /// How many parties wait right now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        if self.is_broken() {
            0
        } else {
            self.st().count.load(Ordering::Relaxed)
        }
    }

    /// Whether the barrier is broken.
    #[doc(alias = "broken")]
    pub fn is_broken(&self) -> bool {
        self.st().broken.load(Ordering::Relaxed) != 0
    }
}

/// How an arrival ended without passing.
enum Stop {
    WouldBlock,
    Timeout,
    Broken,
    Interrupted,
}

/// The barrier's internal lock, held.
struct Locked<'a>(&'a BarrierState);

impl Locked<'_> {
    fn end_round(&self, broken: bool) {
        let st = self.0;
        let round = st.round.load(Ordering::Relaxed);
        let bit = 1 << (round % 32);
        if broken {
            st.history.fetch_or(bit, Ordering::Relaxed);
            st.broken.store(1, Ordering::Relaxed);
        } else {
            st.history.fetch_and(!bit, Ordering::Relaxed);
        }
        for m in &st.members {
            m.store(0, Ordering::Relaxed);
        }
        st.count.store(0, Ordering::Relaxed);
        st.round.store(round.wrapping_add(1), Ordering::Release);
        futex::wake_all(&st.round);
    }

    fn break_round(&self) {
        self.end_round(true);
    }

    fn member_died(&self) -> bool {
        let st = self.0;
        let n = (st.count.load(Ordering::Relaxed) as usize).min(TRACKED);
        st.members[..n].iter().any(|m| {
            let id = m.load(Ordering::Relaxed);
            id != 0 && thread::liveness(id) == Liveness::Dead
        })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_distinct_indices_and_broken_on_abort() {
        let b = Barrier::new(3).unwrap();
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait().unwrap())
            })
            .collect();
        let mut idx: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        idx.sort();
        assert_eq!(idx, vec![0, 1, 2]);
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait());
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        b.abort();
        assert_eq!(h.join().unwrap(), Err(BrokenBarrier));
        assert_eq!(b.wait(), Err(BrokenBarrier));
        assert_eq!(b.try_wait(), Err(TryBarrierError::Broken));
        b.reset();
        assert!(!b.is_broken());
        assert_eq!(
            b.wait_timeout(Duration::from_millis(10)),
            Err(BarrierTimeoutError::Timeout)
        );
        assert!(b.is_broken());
    }

    #[test]
    fn dead_thread_inside_breaks_barrier() {
        let b = Barrier::new(3).unwrap();
        let b2 = b.clone();
        // A thread that "dies" inside: its membership stays recorded after it exits. Simulate
        // by recording the identity of an exited thread.
        let id = std::thread::spawn(crate::sys::thread::current_id)
            .join()
            .unwrap();
        {
            let l = b.locked();
            l.0.members[0].store(id, Ordering::Relaxed);
            l.0.count.store(1, Ordering::Relaxed);
        }
        let r = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(10)))
            .join()
            .unwrap();
        assert_eq!(r, Err(BarrierTimeoutError::Broken));
    }

    #[test]
    fn try_wait_passes_only_as_the_last_party() {
        let b = Barrier::new(2).unwrap();
        assert_eq!(b.try_wait(), Err(TryBarrierError::WouldBlock));
        assert_eq!(b.n_waiting(), 0);
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait());
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(b.try_wait(), Ok(1));
        assert_eq!(h.join().unwrap(), Ok(0));
        assert_eq!(Barrier::new(1).unwrap().try_wait(), Ok(0));
    }
}
