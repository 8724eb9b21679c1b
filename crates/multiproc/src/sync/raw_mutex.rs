//! A robust, process-shared mutex on one 64-bit word plus a futex sequence word.
//!
//! # Why not glibc's robust pthread mutex
//!
//! Both were considered. glibc's robust mutexes are detected dead by the kernel at once, but
//! (a) every lock/unlock links the mutex into the thread's robust list through raw pointers
//! into the mapping — a guard leaked with `mem::forget` followed by unmapping the segment
//! leaves a dangling list entry that the next robust lock in that thread writes through
//! (memory corruption from safe code), and (b) its lock/unlock path is longer: measured
//! uncontended lock+unlock on the dev machine (`uncontended_cost` test below, release):
//! this mutex 5-7 ns, `std::sync::Mutex` 4.6-6 ns, glibc robust 8-9 ns (about 1.7x std). This mutex keeps no pointers anywhere: the lock word records *who* owns
//! it, and a waiter that has slept a while checks whether that owner is still alive.
//!
//! # Layout (16 bytes, lives in shared memory)
//!
//! ```text
//! state: AtomicU64   0 = unlocked, else owner identity | CONTENDED
//!                    owner identity = tid << 32 | (thread start time & 0x7fff_ffff) << 1
//! seq:   AtomicU32   futex word sleepers wait on; bumped by an unlock that saw CONTENDED
//! depth: AtomicU32   levels held, for re-entrant use (`lock_reentrant`); only the owner
//!                    touches it, and a new owner sets it (a dead one may have left any value)
//! ```
//!
//! # State table
//!
//! | state              | meaning                               | lock()                        | unlock()                   |
//! |--------------------|---------------------------------------|-------------------------------|----------------------------|
//! | 0                  | free                                  | CAS 0 → me                    | (bug: not ours)            |
//! | owner              | held, nobody waits                    | spin, then CAS → owner\|C, sleep | swap → 0                   |
//! | owner \| C         | held, someone may sleep on `seq`      | sleep on `seq`, check owner by the clock | swap → 0, seq += 1, wake 1 |
//! | C alone (RESERVED) | free, kept for a sleeper (`unlock_fair`) | a waiter that slept: CAS → me\|C; else sleep | — |
//! | dead owner (\| C)  | the holder died (SIGKILL, exit, ...)  | at a check: CAS → me\|C, OwnerDied | —                  |
//!
//! A waiter that acquires after sleeping stores `me | C` (others may still sleep), as std's
//! futex mutex does with its "contended" state.
//!
//! # Owner death
//!
//! A sleeper checks whether the recorded owner is alive 1 ms after it starts sleeping, then at
//! intervals doubling to 16 ms, scheduled by the clock ([`Recheck`]): a sleep cut short by a
//! signal or a wake-up meant for another waiter resumes only until the next check is due, so
//! no rate of signals postpones it. A check reads `/proc/<tid>/task/<tid>/stat` of the
//! recorded owner: gone, a zombie, or a
//! different start time (the tid was recycled) means dead, and the waiter takes the lock over
//! with one CAS from exactly the dead owner's word — so exactly one waiter wins and reports
//! [`Acquired::OwnerDied`]. The mutex itself is consistent again at once (there is no
//! "consistent" step as with pthreads); what it protected may not be, which is what the
//! indication is for. A failed [`RawMutex::try_lock`] makes the same check.
//!
//! Requirements and limits: all processes sharing a mutex are in one PID namespace; a thread
//! that exits while holding (a leaked guard) counts as dead, like glibc's robust mutexes.
//!
//! # Safety
//!
//! No unsafe code here; the type is `ShmSafe` because it is three atomics and every bit
//! pattern of them is a state the algorithm handles (a garbage owner is just "dead").

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::shm::ShmSafe;
use crate::sys::futex::{self, Recheck};
use crate::sys::thread::{self, Liveness};
use crate::sys::Deadline;

use crate::error::Timeout;

const UNLOCKED: u64 = 0;
/// Someone may be sleeping on `seq`: the unlocker must wake.
const CONTENDED: u64 = 1;
/// Free, but kept for a sleeper that a fair unlock woke ([`RawMutex::unlock_fair`]): no owner,
/// `CONTENDED` set, so the lock's fast path (a CAS from [`UNLOCKED`]) fails and only a waiter
/// that has slept may take it.
const RESERVED: u64 = CONTENDED;

/// How often a thread's contended [`RawMutex::unlock_fair`] hands the lock to a sleeper
/// instead of letting whoever comes first take it (parking_lot's "eventual fairness" uses
/// 0.5 ms too).
const FAIR_EVERY: Duration = Duration::from_micros(500);

thread_local! {
    /// When this thread's turn with a contended lock began: when it last took a lock after
    /// sleeping for it, or last handed one over ([`RawMutex::unlock_fair`]). A fair unlock
    /// hands over only [`FAIR_EVERY`] after it.
    ///
    /// Why from the turn's start, not from the last hand-over alone (as first built): a
    /// process that had slept for many milliseconds found its last hand-over long past, so
    /// its first contended unlock handed the lock on at once. A fair hand-over then ran
    /// through the queue of sleepers one acquisition each, and the lock's real turns went
    /// to whoever happened to be running when the chain ended.
    ///
    /// A forked child's thread inherits its parent thread's value: a hint only (at most one
    /// turn's delay before the child's first hand-over), nothing to reset.
    static TURN: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Marks the start of this thread's turn with a contended lock (see [`TURN`]).
fn turn_starts() {
    let _ = TURN.try_with(|l| l.set(Some(std::time::Instant::now())));
}

/// Whether this thread's contended unlock at `now` hands the lock over (its turn began at
/// least [`FAIR_EVERY`] ago, or it has had none); if so, its next turn starts now.
fn hand_over_due(now: std::time::Instant) -> bool {
    TURN.try_with(|l| match l.get() {
        Some(t) if now.saturating_duration_since(t) < FAIR_EVERY => false,
        _ => {
            l.set(Some(now));
            true
        }
    })
    .unwrap_or(false)
}

/// Every how many of a thread's contended lock calls it first gives up its CPU
/// (`sched_yield`, see [`RawMutex::lock_contended`]).
const YIELD_EVERY: u32 = 10;

thread_local! {
    /// This thread's contended lock calls since it last gave up its CPU for one
    /// ([`YIELD_EVERY`]). A forked child's thread inherits its parent thread's count: a hint
    /// only (when the next yield comes), nothing to reset.
    static CONTENDED_CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts a contended lock call of this thread; true for every [`YIELD_EVERY`]th.
fn yield_due() -> bool {
    CONTENDED_CALLS
        .try_with(|c| {
            let n = c.get() + 1;
            let due = n >= YIELD_EVERY;
            c.set(if due { 0 } else { n });
            due
        })
        .unwrap_or(false)
}

/// When a sleeper first checks the owner's liveness, and the longest interval between checks.
const FIRST_CHECK: Duration = Duration::from_millis(1);
const MAX_CHECK: Duration = Duration::from_millis(16);
const SPINS: u32 = 100;

/// How a lock was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous holder released it.
    Clean,
    /// The previous holder died holding it; the mutex is consistent again, the data it
    /// protects may not be.
    OwnerDied,
}

/// A robust process-shared mutex (see the module docs).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RawMutex {
    state: AtomicU64,
    seq: AtomicU32,
    depth: AtomicU32,
}

// SAFETY: three atomics; every bit pattern is a valid (if possibly "dead owner") state, no
// pointers, and all access is atomic.
unsafe impl ShmSafe for RawMutex {}

impl RawMutex {
    /// Sets up the mutex, unlocked. Call on zeroed memory before sharing it.
    pub(crate) fn init(&self) {
        self.state.store(UNLOCKED, Ordering::Relaxed);
        self.seq.store(0, Ordering::Relaxed);
        self.depth.store(0, Ordering::Relaxed);
    }

    /// Locks, waiting until `deadline`. No system call when the mutex is free.
    ///
    /// # Errors
    ///
    /// [`Timeout`] when the deadline passes first.
    #[inline]
    pub(crate) fn lock(&self, deadline: Deadline) -> Result<Acquired, Timeout> {
        let me = thread::current_id();
        if self
            .state
            .compare_exchange(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Acquired::Clean);
        }
        self.lock_contended(me, deadline)
    }

    /// Locks, waiting as long as it takes.
    #[inline]
    pub(crate) fn lock_forever(&self) -> Acquired {
        loop {
            // A wait without a deadline does not time out; were it ever to, wait again.
            if let Ok(a) = self.lock(Deadline::never()) {
                return a;
            }
        }
    }

    /// Locks if free, with one CAS and nothing else (no liveness check of a holder).
    #[inline]
    pub(crate) fn try_lock_free(&self) -> bool {
        self.state
            .compare_exchange(
                UNLOCKED,
                thread::current_id(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Locks if free (or held by a dead owner) without waiting.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<Acquired> {
        let me = thread::current_id();
        match self
            .state
            .compare_exchange(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(RESERVED) => self
                .take_reserved_if_unclaimed(me)
                .then_some(Acquired::Clean),
            Err(cur) => self.steal_if_dead(cur, me).then_some(Acquired::OwnerDied),
        }
    }

    /// A reserved lock seen by a caller that does not wait ([`try_lock`](Self::try_lock)):
    /// wakes one sleeper to take it; when none sleeps, takes it (true).
    ///
    /// Why: the sleeper a fair unlock woke may have died (SIGKILL) or left before taking the
    /// lock. Other sleepers take it at their next wake-up, but with no sleeper left, callers
    /// that only ever `try_lock` (Python's `acquire(False)` in a polling loop) would find it
    /// reserved forever. A sleeper still queued is woken instead, so a live one keeps its
    /// turn; a woken sleeper not yet running may lose this one turn, as it would to any
    /// newcomer without fairness.
    #[cold]
    fn take_reserved_if_unclaimed(&self, me: u64) -> bool {
        if futex::wake(&self.seq, 1) != 0 {
            return false;
        }
        self.take_reserved(me)
    }

    /// Takes a reserved lock (see [`unlock_fair`](Self::unlock_fair)); false when it is not
    /// reserved any more. Keeps CONTENDED: a waiter may be just going to sleep, and our
    /// unlock must wake it.
    fn take_reserved(&self, me: u64) -> bool {
        self.state
            .compare_exchange(
                RESERVED,
                me | CONTENDED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Unlocks. Must be called by the holder (the guards guarantee it).
    #[inline]
    pub(crate) fn unlock(&self) {
        let old = self.state.swap(UNLOCKED, Ordering::Release);
        if old & CONTENDED != 0 {
            self.wake_one();
        }
    }

    /// Unlocks as [`unlock`](Self::unlock) does, except that at most once every
    /// [`FAIR_EVERY`] per thread, when others sleep, the lock goes to a sleeper instead of to
    /// whoever comes first: bounded unfairness (issue 18).
    ///
    /// Why: a process that releases and at once takes the lock again nearly always wins
    /// against a sleeper, which needs microseconds to wake and finds the lock taken again; it
    /// goes back to sleep at the end of the futex queue. Measured (bench `load`, 2-core VM,
    /// each process taking and releasing the lock in a tight loop for 0.5 s): the fewest
    /// acquisitions of one process were 0.59 of the most with 16 processes and 0.69 with 2,
    /// where Python's `multiprocessing.Lock` (a POSIX semaphore, as unfair) gave 0.69 and 0.98
    /// because its own loop spends most of its time outside the lock.
    ///
    /// With the fair unlock (first built with the time since the thread's last hand-over,
    /// then from the start of its turn, [`TURN`]), 16 processes: scratch probe, medians of 5
    /// runs of 0.5 s, three alternated rounds, 0.37-0.46 before the turn rule and 0.51-0.56
    /// with it; bench `load`, two alternated runs, 0.42-0.46 and 0.45-0.48 (Python
    /// 0.63-0.70 in the same runs). What was left was how the scheduler shared 2 cores among
    /// 16 tight loops: per process 43-77 ms of CPU and 10-15 k acquisitions per CPU-ms; the
    /// yield in [`lock_contended`](Self::lock_contended) addresses that.
    /// Turns counted in acquisitions instead of time (2,000 to 10,000) did no better
    /// (0.48-0.59).
    ///
    /// How: the unlock that sees `CONTENDED` and whose thread's turn began more than
    /// [`FAIR_EVERY`] ago ([`TURN`]: when it took the lock after sleeping, or last handed it
    /// over) stores [`RESERVED`] and wakes one sleeper (the futex queue's oldest); a
    /// waiter that has slept takes a reserved lock, a newcomer sleeps. When the wake found no
    /// sleeper (`CONTENDED` was stale), the lock is freed again and the sleepers' word bumped
    /// once more, so a waiter that went to sleep on the reserved lock meanwhile looks again.
    /// A reserved lock whose woken sleeper died or timed out is taken by the next sleeper
    /// that wakes (at its next liveness check at the latest: 1 to 16 ms), by a waiter whose
    /// deadline passes, or by a `try_lock` when no sleeper is left to wake.
    #[inline]
    pub(crate) fn unlock_fair(&self) {
        let old = self.state.swap(UNLOCKED, Ordering::Release);
        if old & CONTENDED != 0 {
            self.wake_fair();
        }
    }

    #[cold]
    fn wake_fair(&self) {
        let due = hand_over_due(std::time::Instant::now());
        // (A Release CAS right after the Release swap: the taker's Acquire sees the
        // critical section either way.)
        if !due
            || self
                .state
                .compare_exchange(UNLOCKED, RESERVED, Ordering::Release, Ordering::Relaxed)
                .is_err()
        {
            self.wake_one();
            return;
        }
        self.seq.fetch_add(1, Ordering::Release);
        if futex::wake(&self.seq, 1) == 0 {
            // Nobody slept: free it, and make anyone who is just going to sleep on the
            // reserved lock look again.
            if self
                .state
                .compare_exchange(RESERVED, UNLOCKED, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                self.wake_one();
            }
        }
    }

    /// Unlocks whoever holds the mutex (Python's `Lock.release()`, which any thread or process
    /// may call); `false`, changing nothing, when it was not locked.
    #[inline]
    pub(crate) fn unlock_any(&self) -> bool {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old == UNLOCKED || old == RESERVED {
                return false;
            }
            match self.state.compare_exchange_weak(
                old,
                UNLOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        if old & CONTENDED != 0 {
            self.wake_fair();
        }
        true
    }

    /// Locks, or takes one more level when the calling thread holds the mutex already (for
    /// re-entrant users: Value, Array). Release each level with
    /// [`unlock_reentrant`](Self::unlock_reentrant), never [`unlock`](Self::unlock).
    ///
    /// # Errors
    ///
    /// [`Timeout`] when the deadline passes first.
    ///
    /// # Panics
    ///
    /// When the depth would pass `u32::MAX`.
    pub(crate) fn lock_reentrant(&self, deadline: Deadline) -> Result<Acquired, Timeout> {
        if self.is_owned_by_current_thread() {
            let d = self.depth.load(Ordering::Relaxed);
            assert!(d < u32::MAX, "lock recursion depth overflow");
            self.depth.store(d + 1, Ordering::Relaxed);
            return Ok(Acquired::Clean);
        }
        let a = self.lock(deadline)?;
        self.depth.store(1, Ordering::Relaxed);
        Ok(a)
    }

    /// [`lock_reentrant`](Self::lock_reentrant), waiting as long as it takes.
    pub(crate) fn lock_reentrant_forever(&self) -> Acquired {
        loop {
            if let Ok(a) = self.lock_reentrant(Deadline::never()) {
                return a;
            }
        }
    }

    /// [`lock_reentrant`](Self::lock_reentrant) without waiting: `None` when another thread
    /// holds the mutex (a dead holder's mutex is taken over).
    ///
    /// # Panics
    ///
    /// When the depth would pass `u32::MAX`.
    pub(crate) fn try_lock_reentrant(&self) -> Option<Acquired> {
        if self.is_owned_by_current_thread() {
            let d = self.depth.load(Ordering::Relaxed);
            assert!(d < u32::MAX, "lock recursion depth overflow");
            self.depth.store(d + 1, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let a = self.try_lock()?;
        self.depth.store(1, Ordering::Relaxed);
        Some(a)
    }

    /// Releases one level taken by [`lock_reentrant`](Self::lock_reentrant); the mutex itself
    /// when it was the last. Must be called by the holder (the guards guarantee it).
    pub(crate) fn unlock_reentrant(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        if d > 1 {
            self.depth.store(d - 1, Ordering::Relaxed);
        } else {
            self.depth.store(0, Ordering::Relaxed);
            self.unlock();
        }
    }

    /// True when the calling thread holds the mutex.
    pub(crate) fn is_owned_by_current_thread(&self) -> bool {
        self.state.load(Ordering::Relaxed) & !CONTENDED == thread::current_id()
    }

    /// True when somebody (alive or not) holds the mutex. A snapshot.
    pub(crate) fn is_locked(&self) -> bool {
        !matches!(self.state.load(Ordering::Relaxed), UNLOCKED | RESERVED)
    }

    /// If the owner recorded in `cur` is dead, takes the mutex over from it; true on success.
    #[cold]
    fn steal_if_dead(&self, cur: u64, me: u64) -> bool {
        // (A reserved lock has no owner to be dead: a sleeper takes it, see `unlock_fair`.)
        if cur == UNLOCKED || cur == RESERVED || cur & !CONTENDED == me {
            return false;
        }
        if thread::liveness(cur & !CONTENDED) != Liveness::Dead {
            return false;
        }
        // Keep CONTENDED: other waiters may be asleep and must be woken by our unlock.
        self.state
            .compare_exchange(cur, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn wake_one(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, 1);
    }

    /// The lock found taken: every [`YIELD_EVERY`]th time in this thread, give up the CPU
    /// first; then a short spin, then sleep on `seq` (checking the owner's liveness by the
    /// clock) until the lock is ours, reserved for us, or the deadline passes.
    ///
    /// Why the yield (issue 18): processes that take one lock in a tight loop, more of them
    /// than CPUs, got the lock by cache-line luck. Nearly every contended call won within
    /// its short spin, so few slept; the two running processes took turns by whoever's CAS
    /// landed, and each process's count was its CPU time (16 processes on 2 cores: 40-90
    /// ms each in 0.5 s) times its luck against whoever ran beside it (6.5-15 k acquisitions
    /// per CPU-ms). A thread that keeps finding the lock taken now lets the scheduler run
    /// someone else now and then: the holder, if it was preempted on this CPU, or another
    /// waiter. With nothing else to run, `sched_yield` returns at once, and the half
    /// microsecond it takes is a back-off that leaves the lock to the other side meanwhile.
    /// Measured (scratch probe `fair`: P processes in a tight lock loop for 0.5 s, medians of
    /// 5, alternated with the build before): 16 processes, fairness (fewest acquisitions of
    /// one process over the most) 0.49-0.59 before, 0.61-0.88 after, every process at 62-63
    /// ms of CPU; throughput 22-30 M acquisitions/s before, 56-78 M after (2 and 4 processes:
    /// 22-38 M before, 38-71 M after). Yielding every 3rd call gave about the same fairness
    /// and 1.5 times the throughput again, at more system calls under light contention;
    /// every 30th to 300th, less of both. Queue `N->N` (whose side locks are these) was the
    /// same within noise at 1, 4 and 32 processes.
    #[cold]
    fn lock_contended(&self, me: u64, deadline: Deadline) -> Result<Acquired, Timeout> {
        if yield_due() {
            std::thread::yield_now();
        }
        // Short spin: most critical sections are shorter than a futex round trip.
        for _ in 0..SPINS {
            let s = self.state.load(Ordering::Relaxed);
            if s == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(Acquired::Clean);
            }
            if s & CONTENDED != 0 {
                break; // others already sleep; don't compete with them by spinning
            }
            std::hint::spin_loop();
        }
        let mut checks = Recheck::new(FIRST_CHECK, MAX_CHECK);
        // Whether this waiter has slept: only such a waiter takes a reserved lock.
        let mut slept = false;
        loop {
            // Read `seq` before checking the state: an unlock after this load bumps it, so
            // the futex wait below returns at once instead of missing the wake-up.
            let seen = self.seq.load(Ordering::Acquire);
            let s = self.state.load(Ordering::Relaxed);
            if s == UNLOCKED || (s == RESERVED && slept) {
                // We may have been woken for this; others may still sleep, so keep CONTENDED.
                if self
                    .state
                    .compare_exchange(s, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    if slept {
                        turn_starts();
                    }
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if s & CONTENDED == 0
                && self
                    .state
                    .compare_exchange(s, s | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // Is the owner still there? Checked by the clock, however the sleeps end (a
            // signal every millisecond must not postpone it).
            if checks.due() && self.steal_if_dead(self.state.load(Ordering::Relaxed), me) {
                return Ok(Acquired::OwnerDied);
            }
            let Some(t) = checks.sleep_time(deadline) else {
                // Last chance: the lock may be reserved for a sleeper that is gone, or the
                // owner dead rather than slow.
                let cur = self.state.load(Ordering::Relaxed);
                if cur == RESERVED && self.take_reserved(me) {
                    return Ok(Acquired::Clean);
                }
                if self.steal_if_dead(cur, me) {
                    return Ok(Acquired::OwnerDied);
                }
                return Err(Timeout);
            };
            futex::wait(&self.seq, seen, Some(t));
            slept = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::{Shared, ShmObject};
    use std::sync::Arc;
    use std::time::Instant;

    impl ShmObject for RawMutex {
        const KIND: u8 = crate::kinds::object::TEST_RAW_MUTEX;
    }

    fn new() -> Shared<RawMutex> {
        Shared::new(|m: &RawMutex| m.init()).unwrap()
    }

    #[test]
    fn size_fits_a_slot() {
        assert!(std::mem::size_of::<RawMutex>() <= 48);
        assert_eq!(std::mem::size_of::<RawMutex>(), 16);
    }

    #[test]
    fn lock_unlock_try() {
        let m = new();
        assert_eq!(m.get().lock(Deadline::never()), Ok(Acquired::Clean));
        assert!(m.get().is_owned_by_current_thread());
        assert_eq!(m.get().try_lock(), None);
        let t0 = Instant::now();
        assert_eq!(
            m.get()
                .lock(Deadline::after(Some(Duration::from_millis(30)))),
            Err(Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        m.get().unlock();
        assert!(!m.get().is_locked());
        assert_eq!(m.get().try_lock(), Some(Acquired::Clean));
        m.get().unlock();
    }

    #[test]
    fn threads_count_exactly() {
        struct Cell(std::cell::UnsafeCell<u64>);
        // SAFETY: only accessed under the mutex.
        unsafe impl Sync for Cell {}
        let m = Arc::new(new());
        let c = Arc::new(Cell(std::cell::UnsafeCell::new(0)));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (m, c) = (m.clone(), c.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        assert_eq!(m.get().lock(Deadline::never()), Ok(Acquired::Clean));
                        // SAFETY: the mutex is held.
                        unsafe { *c.0.get() += 1 };
                        m.get().unlock();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *c.0.get() }, 80_000);
    }

    #[test]
    fn reentrant_levels() {
        let m = new();
        assert_eq!(
            m.get().lock_reentrant(Deadline::never()),
            Ok(Acquired::Clean)
        );
        assert_eq!(
            m.get().lock_reentrant(Deadline::never()),
            Ok(Acquired::Clean)
        );
        m.get().unlock_reentrant();
        assert!(m.get().is_owned_by_current_thread());
        m.get().unlock_reentrant();
        assert!(!m.get().is_locked());
        // A dead owner's depth does not carry over.
        let m = Arc::new(m);
        let m2 = m.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                m2.get().lock_reentrant(Deadline::never()).unwrap();
            }
        })
        .join()
        .unwrap();
        let r = m
            .get()
            .lock_reentrant(Deadline::after(Some(Duration::from_secs(5))));
        assert_eq!(r, Ok(Acquired::OwnerDied));
        m.get().unlock_reentrant();
        assert!(!m.get().is_locked());
    }

    #[test]
    fn dead_thread_owner_is_recovered_once() {
        let m = Arc::new(new());
        let m2 = m.clone();
        std::thread::spawn(move || {
            assert_eq!(m2.get().lock(Deadline::never()), Ok(Acquired::Clean));
            // exits holding it
        })
        .join()
        .unwrap();
        let t0 = Instant::now();
        let r = m.get().lock(Deadline::after(Some(Duration::from_secs(5))));
        assert_eq!(r, Ok(Acquired::OwnerDied));
        assert!(t0.elapsed() < Duration::from_secs(1));
        m.get().unlock();
        assert_eq!(m.get().lock(Deadline::never()), Ok(Acquired::Clean));
        m.get().unlock();
    }

    #[test]
    fn try_lock_recovers_dead_owner() {
        let m = Arc::new(new());
        let m2 = m.clone();
        std::thread::spawn(move || {
            m2.get().lock(Deadline::never()).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(m.get().try_lock(), Some(Acquired::OwnerDied));
        m.get().unlock();
    }

    #[test]
    fn a_fair_unlock_without_sleepers_leaves_the_lock_free() {
        let m = new();
        let m = m.get();
        // A stale CONTENDED (its waiter took the lock and left): the fair unlock finds
        // nobody to hand the lock to, and frees it.
        assert_eq!(m.try_lock(), Some(Acquired::Clean));
        m.state.fetch_or(CONTENDED, Ordering::Relaxed);
        m.unlock_fair();
        assert!(!m.is_locked());
        assert_eq!(m.try_lock(), Some(Acquired::Clean));
        m.unlock_fair();
    }

    #[test]
    fn a_reserved_lock_is_no_dead_owner_and_a_waiter_takes_it() {
        let m = new();
        let m = m.get();
        // Reserved for a sleeper that never came (it died or timed out).
        m.state.store(RESERVED, Ordering::Relaxed);
        assert!(!m.is_locked());
        assert!(!m.unlock_any(), "nothing to release");
        // With nobody asleep to take it, a try_lock does, cleanly (not as from a dead owner).
        assert_eq!(m.try_lock(), Some(Acquired::Clean));
        assert_eq!(m.try_lock(), None);
        m.unlock_fair();
        assert_eq!(m.state.load(Ordering::Relaxed), UNLOCKED);
        m.state.store(RESERVED, Ordering::Relaxed);
        // A waiter takes it after its first sleep (its liveness check, 1 ms), cleanly.
        let t = Instant::now();
        assert_eq!(
            m.lock(Deadline::after(Some(Duration::from_secs(10)))),
            Ok(Acquired::Clean)
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        m.unlock_fair();
        assert_eq!(m.state.load(Ordering::Relaxed), UNLOCKED);
    }

    #[test]
    fn a_sleeper_is_not_starved_by_a_thread_that_takes_the_lock_again_at_once() {
        let m = Arc::new(new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let hog = {
            let (m, stop, runs) = (m.clone(), stop.clone(), runs.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    m.get().lock_forever();
                    n += 1;
                    runs.store(n, Ordering::Relaxed);
                    m.get().unlock_fair();
                }
                n
            })
        };
        // The hog is running before the waits start (else they may all end before it does,
        // which tests nothing: the assertion below failed so on a loaded machine).
        let t = Instant::now();
        while runs.load(Ordering::Relaxed) == 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "the hog never ran");
            std::thread::yield_now();
        }
        // The other thread waits for the lock 20 times; each wait ends, however busy the hog.
        let t = Instant::now();
        for _ in 0..20 {
            let a = m.get().lock(Deadline::after(Some(Duration::from_secs(20))));
            assert_eq!(a, Ok(Acquired::Clean), "a waiter was starved for 20 s");
            m.get().unlock_fair();
        }
        let waited = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let n = hog.join().unwrap();
        assert!(n > 0, "the hog ran ({n} acquisitions in {waited:?})");
    }

    #[test]
    fn garbage_state_is_recoverable() {
        let m = new();
        m.get()
            .state
            .store(0xdead_beef_0000_0003, Ordering::Relaxed);
        // tid 0xdeadbeef as i32 is negative: "dead".
        assert_eq!(m.get().try_lock(), Some(Acquired::OwnerDied));
        m.get().unlock();
    }

    #[test]
    fn killed_process_owner_is_recovered_while_zombie() {
        use crate::sys::proc;
        let m = new();
        // Lock in the parent first so the child's identity differs after the fork reset.
        let parent_id = thread::current_id();
        // SAFETY: the child only touches the shared mutex (atomics) and then sleeps or exits.
        match unsafe { proc::fork() }.unwrap() {
            proc::Forked::Child => {
                let ok = thread::current_id() != parent_id
                    && m.get().lock(Deadline::never()) == Ok(Acquired::Clean);
                if !ok {
                    proc::exit_now(3);
                }
                std::thread::sleep(Duration::from_secs(30));
                proc::exit_now(0);
            }
            proc::Forked::Parent(pid) => {
                let t0 = Instant::now();
                while !m.get().is_locked() {
                    assert!(t0.elapsed() < Duration::from_secs(10), "child never locked");
                    if let Some(st) = proc::reap(pid, false).unwrap() {
                        panic!("child ended early: {st:?}");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                proc::kill(pid, libc::SIGKILL).unwrap();
                // Not reaped yet: the owner is a zombie.
                let t0 = Instant::now();
                let r = m.get().lock(Deadline::after(Some(Duration::from_secs(5))));
                assert_eq!(r, Ok(Acquired::OwnerDied));
                assert!(t0.elapsed() < Duration::from_secs(1));
                m.get().unlock();
                assert_eq!(
                    proc::reap(pid, true).unwrap(),
                    Some(proc::ExitStatus::Signal(libc::SIGKILL))
                );
            }
        }
    }

    /// True when process `pid` is asleep (state `S` in its `/proc` stat).
    fn asleep(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? == "S"))
            .unwrap_or(false)
    }

    /// The worst moment for a woken sleeper to die: a fair unlock has reserved the lock for it
    /// and woken it, and it is killed before it takes the lock. The sleeper here is a child
    /// asleep on the futex word itself (as a lock waiter is), so the fair unlock's wake-up is
    /// known to reach it (it is the only or the oldest sleeper) and it is known not to take
    /// the lock: the reservation is left with nobody to claim it, every time. Whoever comes
    /// next takes the lock cleanly (never as from a dead owner), within a generous bound:
    /// another sleeper (at its next wake-up), a newcomer's `lock`, a `try_lock`.
    #[test]
    fn a_woken_sleeper_killed_before_it_takes_the_lock_does_not_keep_it() {
        use crate::sys::proc;
        const BOUND: Duration = Duration::from_secs(5);
        for next in ["sleeper", "lock", "try_lock"] {
            let m = new();
            assert_eq!(m.get().lock(Deadline::never()), Ok(Acquired::Clean));
            // SAFETY: the child only touches the shared mutex's atomics, the futex, and sleeps.
            let woken = match unsafe { proc::fork() }.unwrap() {
                proc::Forked::Child => {
                    let seq = &m.get().seq;
                    let seen = seq.load(Ordering::Acquire);
                    while seq.load(Ordering::Acquire) == seen {
                        futex::wait(seq, seen, None);
                    }
                    // Woken: dies here (killed) without taking the lock.
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                proc::Forked::Parent(pid) => pid,
            };
            let t0 = Instant::now();
            while !asleep(woken) {
                assert!(t0.elapsed() < Duration::from_secs(20), "child never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
            // As a waiter that went to sleep would have.
            m.get().state.fetch_or(CONTENDED, Ordering::Relaxed);
            // A lock waiter queued behind it: it sleeps, waking at its liveness checks.
            let other = (next == "sleeper").then(|| {
                // SAFETY: as above (plus the liveness check's read of /proc).
                match unsafe { proc::fork() }.unwrap() {
                    proc::Forked::Child => {
                        let code =
                            match m.get().lock(Deadline::after(Some(Duration::from_secs(20)))) {
                                Ok(Acquired::Clean) => 0,
                                Ok(Acquired::OwnerDied) => 2,
                                Err(Timeout) => 3,
                            };
                        if code != 3 {
                            m.get().unlock_fair();
                        }
                        proc::exit_now(code)
                    }
                    proc::Forked::Parent(pid) => pid,
                }
            });
            if let Some(pid) = other {
                let t0 = Instant::now();
                while !asleep(pid) {
                    assert!(t0.elapsed() < Duration::from_secs(20), "waiter never slept");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            // More than FAIR_EVERY since this thread's last fair hand-over (if any): this one
            // hands over.
            std::thread::sleep(FAIR_EVERY * 2);
            m.get().unlock_fair();
            proc::kill(woken, libc::SIGKILL).unwrap();
            let t = Instant::now();
            if other.is_none() {
                // Only the killed child slept: the lock was reserved for it and stays so.
                assert_eq!(m.get().state.load(Ordering::Relaxed), RESERVED, "{next}");
            }
            assert_eq!(
                proc::reap(woken, true).unwrap(),
                Some(proc::ExitStatus::Signal(libc::SIGKILL))
            );
            match other {
                Some(pid) => assert_eq!(
                    proc::reap(pid, true).unwrap(),
                    Some(proc::ExitStatus::Code(0)),
                    "the other sleeper took it cleanly (2: as from a dead owner, 3: timed out)"
                ),
                None if next == "lock" => assert_eq!(
                    m.get().lock(Deadline::after(Some(Duration::from_secs(20)))),
                    Ok(Acquired::Clean)
                ),
                None => assert_eq!(m.get().try_lock(), Some(Acquired::Clean)),
            }
            assert!(t.elapsed() < BOUND, "{next}: took {:?}", t.elapsed());
            if other.is_none() {
                m.get().unlock_fair();
            }
            assert_eq!(m.get().state.load(Ordering::Relaxed) & !CONTENDED, UNLOCKED);
        }
    }

    /// The turn rule: a thread that took a lock after sleeping for it (or handed one over)
    /// does not hand over again within `FAIR_EVERY`; a thread with no turn yet does at once.
    #[test]
    fn a_turn_lasts_fair_every_from_its_start() {
        std::thread::spawn(|| {
            let t0 = Instant::now();
            assert!(hand_over_due(t0), "no turn yet: hands over");
            assert!(
                !hand_over_due(t0 + FAIR_EVERY / 2),
                "within the turn it just began"
            );
            assert!(hand_over_due(t0 + FAIR_EVERY), "a turn's end");
            // Taking a lock after a sleep starts a turn: a first contended unlock right after
            // it keeps the lock going (before issue 18's second round it handed over at
            // once when the last hand-over was long ago).
            turn_starts();
            let start = Instant::now();
            assert!(!hand_over_due(start));
            assert!(hand_over_due(start + FAIR_EVERY * 2));
        })
        .join()
        .unwrap();
    }

    /// Every `YIELD_EVERY`th contended lock call of a thread yields first, counted per thread.
    #[test]
    fn every_tenth_contended_call_of_a_thread_yields() {
        std::thread::spawn(|| {
            let due: Vec<bool> = (0..3 * YIELD_EVERY).map(|_| yield_due()).collect();
            let at: Vec<usize> = (0..due.len()).filter(|&i| due[i]).collect();
            let every = YIELD_EVERY as usize;
            assert_eq!(at, vec![every - 1, 2 * every - 1, 3 * every - 1]);
            // Another thread counts its own.
            std::thread::spawn(|| assert!(!yield_due())).join().unwrap();
            assert!(!yield_due());
        })
        .join()
        .unwrap();
    }

    /// A `try_lock` on a reserved lock while a sleeper is queued wakes that sleeper, which
    /// takes the lock (its turn is kept); the `try_lock` gets nothing. (When the sleeper was
    /// between two sleeps at that instant, the `try_lock` takes it instead: allowed, and the
    /// round is repeated.)
    #[test]
    fn a_try_lock_on_a_reserved_lock_wakes_a_sleeper_to_take_it() {
        use crate::sys::proc;
        let mut kept = 0;
        for _ in 0..10 {
            let m = new();
            assert_eq!(m.get().lock(Deadline::never()), Ok(Acquired::Clean));
            // SAFETY: the child only touches the shared mutex (atomics, futex, /proc reads).
            let pid = match unsafe { proc::fork() }.unwrap() {
                proc::Forked::Child => {
                    let ok = m.get().lock(Deadline::after(Some(Duration::from_secs(20))))
                        == Ok(Acquired::Clean);
                    if ok {
                        m.get().unlock_fair();
                    }
                    proc::exit_now(if ok { 0 } else { 2 })
                }
                proc::Forked::Parent(pid) => pid,
            };
            let t0 = Instant::now();
            while !(asleep(pid) && m.get().state.load(Ordering::Relaxed) & CONTENDED != 0) {
                assert!(t0.elapsed() < Duration::from_secs(20), "child never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
            // Released fairly, and the sleeper woken for it died: reserved, nobody coming.
            m.get().state.store(RESERVED, Ordering::Release);
            match m.get().try_lock() {
                None => kept += 1,
                Some(a) => {
                    assert_eq!(a, Acquired::Clean);
                    m.get().unlock_fair();
                }
            }
            let t = Instant::now();
            assert_eq!(
                proc::reap(pid, true).unwrap(),
                Some(proc::ExitStatus::Code(0)),
                "the sleeper took the lock cleanly"
            );
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "took {:?}",
                t.elapsed()
            );
            assert_eq!(m.get().state.load(Ordering::Relaxed) & !CONTENDED, UNLOCKED);
            if kept == 3 {
                return;
            }
        }
        panic!("the sleeper kept its turn only {kept} times in 10");
    }

    /// Quick look at the uncontended cost (the real numbers come from `bench/`):
    /// `cargo test --release --lib uncontended_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing probe, not a check: the real numbers come from bench/"]
    fn uncontended_cost() {
        let m = new();
        let n = 10_000_000u32;
        let std_m = std::sync::Mutex::new(0u64);
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..n {
                m.get().lock(Deadline::never()).unwrap();
                m.get().unlock();
            }
            let ours = t.elapsed().as_nanos() as f64 / n as f64;
            let t = Instant::now();
            for _ in 0..n {
                *std::hint::black_box(&std_m).lock().unwrap() += 1;
            }
            let theirs = t.elapsed().as_nanos() as f64 / n as f64;
            // glibc's robust process-shared mutex, for the record of the choice made above.
            let pm = Box::new(std::cell::UnsafeCell::new(unsafe {
                // SAFETY: an all-zero pthread_mutex_t is a valid value to initialize over.
                std::mem::zeroed::<libc::pthread_mutex_t>()
            }));
            // SAFETY: `attr` and `pm` are valid for the calls; standard pthread setup.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                libc::pthread_mutexattr_init(&mut attr);
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
                libc::pthread_mutex_init(pm.get(), &attr);
            }
            let t = Instant::now();
            for _ in 0..n {
                // SAFETY: `pm` was initialized above and outlives the loop.
                unsafe {
                    libc::pthread_mutex_lock(std::hint::black_box(pm.get()));
                    libc::pthread_mutex_unlock(pm.get());
                }
            }
            let glibc = t.elapsed().as_nanos() as f64 / n as f64;
            println!(
                "RawMutex {ours:.1} ns, std::sync::Mutex {theirs:.1} ns, glibc robust {glibc:.1} ns"
            );
        }
    }
}
