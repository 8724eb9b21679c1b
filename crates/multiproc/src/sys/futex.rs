//! Process-shared futex wait and wake (no `FUTEX_PRIVATE_FLAG`: the words live in shared
//! memory and other processes wait on them too).
//!
//! No unsafe code: rustix's futex calls take the word as a `&AtomicU32`.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::thread::futex::{self, Timespec};

/// Why [`wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A `futex_wake` (or, rarely, a spurious return) ended the sleep: re-check the word.
    Woken,
    /// Interrupted by a signal, or the word no longer held `expected`: re-check it.
    Maybe,
    /// The timeout ran out.
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (relative, measured by the kernel on
/// `CLOCK_MONOTONIC`). Spurious returns happen: callers re-check their condition in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    // `Flags::empty()`: no FUTEX_PRIVATE_FLAG (the word is shared between processes).
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => Wake::Woken,
        Err(rustix::io::Errno::TIMEDOUT) => Wake::TimedOut,
        Err(_) => Wake::Maybe,
    }
}

/// Wakes at most `n` waiters on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

/// Wakes every waiter on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

/// When a sleeper next looks whether the party it waits for is still alive, scheduled by the
/// clock: a "next check at" instant, not a count of sleeps that ran their full length.
///
/// A futex sleep ends early on a signal (`EINTR`, with or without `SA_RESTART`: a timed
/// `FUTEX_WAIT` is never restarted by the kernel), on a wake-up meant for someone else, or
/// spuriously. A waiter that checked liveness only after a sleep that timed out, and started
/// a full sleep again after every early return, could postpone the check forever under a
/// steady stream of signals (issue 17, item 7). With `Recheck`, every sleep ends at the next
/// check at the latest, and an early return sleeps again only for what is left until then.
///
/// ```text
/// let mut checks = Recheck::new(FIRST, MAX);
/// loop {
///     if done() { return }
///     if checks.due() && dead() { recover(); return }
///     let Some(t) = checks.sleep_time(deadline) else { return timed_out() };
///     futex::wait(word, seen, Some(t));   // any return: loop and look again
/// }
/// ```
#[derive(Debug)]
pub(crate) struct Recheck {
    next: Instant,
    every: Duration,
    max: Duration,
}

impl Recheck {
    /// The first check comes `first` from now; the interval then doubles up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Recheck {
        Recheck {
            next: Instant::now() + first,
            every: first,
            max,
        }
    }

    /// True when a check is due (its instant has come); schedules the next one.
    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.every = (self.every * 2).min(self.max);
        self.next = now + self.every;
        true
    }

    /// How long to sleep now: until the next check or `deadline`, whichever comes first
    /// (at least 1 ns, so that a sleep is never "forever"). `None` when `deadline` has passed.
    pub(crate) fn sleep_time(&self, deadline: super::Deadline) -> Option<Duration> {
        let to_check = self
            .next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        match deadline.remaining() {
            Err(()) => None,
            Ok(None) => Some(to_check),
            Ok(Some(r)) => Some(r.min(to_check)),
        }
    }
}

/// How long a receiver spins for the next frame of a large message that is arriving (the
/// sender writes it soon): see `pipe/recv.rs`.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// The most a waiter spins before it sleeps ([`spin_until_changed`], [`spin_until_ready`]);
/// how long it really spins is learned ([`Learned`]).
pub(crate) const SPIN_MAX: Duration = Duration::from_micros(200);

/// The least a learned budget falls to while spinning still pays now and then: a short spin
/// catches a counterpart that is answering right now, and costs less than a sleep and its
/// wake-up. An `Event`'s or a pipe receiver's budget that misses again at this floor falls
/// to zero: no spin at all, only the probes (see [`Learned`]).
const BUDGET_MIN: u32 = 2_000;

/// One wait in this many looks longer ([`PROBE_MIN`], or eight times the budget), so a
/// budget that fell can learn that waits got short again.
const PROBE_EVERY: u32 = 32;

/// The least a probe looks.
const PROBE_MIN: u32 = 20_000;

/// The most hits grow a budget to (a budget that starts higher keeps what it has until it
/// misses twice in a row): spinning longer than this for a hiccup costs more than a sleep.
const GROW_MAX: u32 = 2 * WORTH;

/// A change found after looking longer than this was not worth looking for: sleeping
/// would have cost less CPU (a futex sleep and its wake-up cost a few microseconds on
/// each side), so such a wait counts as one that slept. Without this rule a probe that
/// caught a steady 100 us gap (a trickle of 10,000 messages a second) raised the budget
/// to 200 us, and every wait after it spun through its gap.
const WORTH: u32 = 20_000;

/// How long to look before sleeping, learned per thread and per waited-on word from how
/// recent waits ended (issue 18), as glibc's adaptive mutex and parking_lot's spin-then-park
/// do.
///
/// Why: looking costs the CPU for as long as it looks, and `sched_yield` returns at once on
/// an idle core, so a fixed 200 us of spinning and yielding made every gap shorter than that
/// a busy loop. Measured (2-core VM, `cargo run --release -p multiproc-bench -- load`, the
/// issue's numbers): a consumer fed 10,000 messages a second spent 99 us of CPU per message
/// (Python's: 18 us), and an `Event` ping-pong beside two CPU-bound processes took 315 us a
/// round trip (Python's: 71 us): the pure 50 us spin held the CPU the other side needed.
///
/// The rule: a wait that found its change while looking, after `w` of at most [`WORTH`], is a
/// hit: the budget grows by an eighth and to at least `2 w` (up to [`GROW_MAX`] and the limit). A
/// wait that had to sleep, or found its change only after more than [`WORTH`], is a miss: the
/// second miss in a row halves the budget (down to [`BUDGET_MIN`]; then, for a waiter with one
/// counterpart, an `Event` or a pipe's receiver, to zero), a lone one keeps it. One wait in
/// [`PROBE_EVERY`] looks longer. So a stream where the other side answers within
/// microseconds keeps spinning (and makes no system call) and rides out a lone hiccup of the
/// other side (a page fault, an interrupt) without a sleep and a wake-up, while a trickle, or a
/// counterpart that needs this very CPU, misses again and again and is soon slept for after a
/// short spin.
///
/// Why an `Event`'s or a pipe receiver's budget falls to zero (issue 18, fourth session): a
/// counterpart that needs this very CPU (both ends on one CPU, or beside CPU hogs) can never
/// answer during a spin, and a budget held at 2 us (3.2 us spent, with the clock read every
/// 64 looks) doubled a round trip there. Measured (2-core VM, both ends pinned to one CPU,
/// 1,000 round trips after the process had spun on two CPUs): an `Event` round trip 13.6 us,
/// against 6-7 us for a process that never spins. A queue's waits keep the floor (see
/// [`spin_until_changed_after`]).
///
/// Why hits grow and a lone miss keeps the budget (2026-12-03): with the first rule (a miss
/// halved, a hit only kept `max(budget, 2 w)`), a queue 1->1 stream of 8-byte messages ran
/// 20-25% slower on a quiet machine than with the fixed 200 us spin (bisected to this
/// learning, bench `queue`): each rare hiccup halved the budget, nothing but a probe that
/// happened to wait long grew it back, so the budget sat at its 2 us floor and every hiccup
/// longer than that became a sleep and a futex wake (about one per 350 messages, counted
/// with `getrusage`'s voluntary context switches; none with the fixed spin).
///
/// Per thread (a thread-local table of a few entries keyed by the word's address): no shared
/// state, nothing to get wrong in a forked child, which inherits its forking thread's table
/// (hints only; the child learns its own).
#[derive(Clone, Copy)]
struct Learned {
    key: usize,
    budget_ns: u32,
    waits: u32,
    /// Whether the last wait was a miss.
    missed: bool,
}

const LEARNED_SLOTS: usize = 8;

thread_local! {
    static LEARNED: [std::cell::Cell<Learned>; LEARNED_SLOTS] = const {
        [const { std::cell::Cell::new(Learned { key: 0, budget_ns: 0, waits: 0, missed: false }) };
            LEARNED_SLOTS]
    };
}

/// How low a learned spin budget may fall (see [`Learned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// To zero, where only the probes look: waits with one counterpart (an `Event`, a pipe's
    /// receiver).
    Zero,
    /// To [`BUDGET_MIN`]: a queue's waits.
    Min,
}

/// A wait being timed against its learned budget.
struct Budget {
    key: usize,
    limit_ns: u32,
    ns: u32,
    start: Instant,
    /// How low the budget may fall (see [`Learned`]).
    floor: Floor,
}

impl Budget {
    /// The budget for a wait on `key` (the word's address), at most `limit`, falling no
    /// lower than `floor`.
    fn start(key: usize, limit: Duration, floor: Floor) -> Budget {
        let limit_ns = limit.as_nanos().min(u32::MAX as u128) as u32;
        let slot = (key >> 3 ^ key >> 11) % LEARNED_SLOTS;
        let ns = LEARNED
            .try_with(|t| {
                let mut l = t[slot].get();
                if l.key != key {
                    l = Learned {
                        key,
                        budget_ns: (limit_ns / 4).max(BUDGET_MIN),
                        waits: 0,
                        missed: false,
                    };
                }
                l.waits = l.waits.wrapping_add(1);
                t[slot].set(l);
                if l.waits % PROBE_EVERY == 0 {
                    l.budget_ns.saturating_mul(8).max(PROBE_MIN).min(limit_ns)
                } else {
                    l.budget_ns.min(limit_ns)
                }
            })
            .unwrap_or(limit_ns);
        Budget {
            key,
            limit_ns,
            ns,
            start: Instant::now(),
            floor,
        }
    }

    fn spent(&self) -> Duration {
        self.start.elapsed()
    }

    fn over(&self) -> bool {
        self.spent() >= Duration::from_nanos(self.ns.into())
    }

    /// Records how the wait ended: `found` after the time spent, or not (it will sleep).
    fn end(self, found: bool) -> bool {
        let spent = self.spent().as_nanos().min(u32::MAX as u128) as u32;
        let slot = (self.key >> 3 ^ self.key >> 11) % LEARNED_SLOTS;
        let _ = LEARNED.try_with(|t| {
            let mut l = t[slot].get();
            if l.key != self.key {
                return;
            }
            (l.budget_ns, l.missed) = next_budget(
                l.budget_ns,
                spent,
                found,
                l.missed,
                self.limit_ns,
                self.floor,
            );
            t[slot].set(l);
        });
        found
    }
}

/// The budget after a wait that looked for `spent_ns` and `found` its change or not, the last
/// wait having `missed` or not (the rule in [`Learned`]); and whether this one missed.
fn next_budget(
    budget_ns: u32,
    spent_ns: u32,
    found: bool,
    missed: bool,
    limit_ns: u32,
    floor: Floor,
) -> (u32, bool) {
    let hit = found && spent_ns <= WORTH;
    let next = if hit {
        let grown = budget_ns
            .saturating_add(budget_ns / 8)
            .max(spent_ns.saturating_mul(2))
            .min(GROW_MAX);
        budget_ns.max(grown).max(BUDGET_MIN)
    } else if missed {
        // Halved down to the floor; a miss at the floor: no spin at all (only the probes
        // look).
        if budget_ns > BUDGET_MIN || floor == Floor::Min {
            (budget_ns / 2).max(BUDGET_MIN)
        } else {
            0
        }
    } else {
        budget_ns
    };
    (next.min(limit_ns), !hit)
}

/// Spins until `word != seen`, for at most the learned budget (up to [`SPIN_MAX`], see
/// [`Learned`]) and not past `deadline`; true when it changed. Only when another CPU can run
/// the process we wait for ([`super::may_spin`]): a change that comes within the spin costs
/// neither side a sleep and a wake-up system call.
///
/// No `sched_yield` between looks any more (issue 18). Waits used to spin 2 us, then look
/// with a yield between looks for 200 us, for a counterpart that waits for this very CPU.
/// Measured beside two busy-looping processes (2-core VM, bench `load`): a yield hands the
/// CPU to whichever process the scheduler picks, often a busy loop for its whole time
/// slice, and a queue or pipe round trip took 0.3 to 9 ms against Python's 0.07 to 0.3 ms;
/// on an idle core a yield returns at once and is a spin. A waiter now spins while spinning
/// pays, then sleeps, and the waker's one wake-up per sleep (`ring/wait.rs`, `Sleepers`)
/// keeps sleeping cheap.
///
/// For a waiter with one counterpart (an `Event`): its budget may fall to zero (see
/// [`Learned`]).
pub(crate) fn spin_until_changed(word: &AtomicU32, seen: u32, deadline: super::Deadline) -> bool {
    spin_until_moved(word, seen, Duration::ZERO, deadline, Floor::Zero)
}

/// [`spin_until_changed`] for a queue's waiter that has already spun `already` on this word
/// (its short spin): that time counts against the learned budget and in what the wait
/// teaches it. This budget keeps its 2 us floor: with many producers and consumers on few
/// CPUs, the waits the learned spin sees are the ones the short spin missed, and a budget
/// let fall to zero on them cost `queue 32->32 64 B` half its rate (measured, bench `load`).
pub(crate) fn spin_until_changed_after(
    word: &AtomicU32,
    seen: u32,
    already: Duration,
    deadline: super::Deadline,
) -> bool {
    spin_until_moved(word, seen, already, deadline, Floor::Min)
}

/// The learned spin on `word` (its address the budget's key) until it is no longer `seen`.
fn spin_until_moved(
    word: &AtomicU32,
    seen: u32,
    already: Duration,
    deadline: super::Deadline,
    floor: Floor,
) -> bool {
    spin_learned(
        word as *const AtomicU32 as usize,
        || word.load(std::sync::atomic::Ordering::Acquire) != seen,
        already,
        deadline,
        floor,
    )
}

/// Spins until `word` has moved at least `by` steps past `seen` (wrapping), for at most
/// `max` and not past `deadline`; true when it has. Only when another CPU can run the
/// process we wait for ([`super::may_spin`]); false at once otherwise. A waiter that can use
/// room in batches calls this before [`spin_until_changed`]: see the queue's put.
pub(crate) fn spin_until_advanced(
    word: &AtomicU32,
    seen: u32,
    by: u32,
    max: Duration,
    deadline: super::Deadline,
) -> bool {
    spin_until(
        || {
            word.load(std::sync::atomic::Ordering::Acquire)
                .wrapping_sub(seen)
                >= by
        },
        max,
        deadline,
    )
}

/// Spins for `d` (not past `deadline`) without reading shared memory, when another CPU can
/// make progress meanwhile ([`super::may_spin`]); at once otherwise.
pub(crate) fn pause_for(d: Duration, deadline: super::Deadline) {
    if d.is_zero() || !super::may_spin() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d && !deadline.expired() {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
}

/// [`spin_until_changed`] for any condition that is cheap to check (read shared memory, no
/// system call): true when `ready()` became true. The learned budget is the thread's own
/// for all such waits (a thread waits for one thing at a time).
pub(crate) fn spin_until_ready(ready: impl Fn() -> bool, deadline: super::Deadline) -> bool {
    spin_learned(1, ready, Duration::ZERO, deadline, Floor::Zero)
}

/// Spins until `ready()` for the budget learned for `key` (see [`Learned`]).
fn spin_learned(
    key: usize,
    ready: impl Fn() -> bool,
    already: Duration,
    deadline: super::Deadline,
    floor: Floor,
) -> bool {
    if !super::may_spin() {
        return false;
    }
    let mut b = Budget::start(key, SPIN_MAX, floor);
    b.start = b.start.checked_sub(already).unwrap_or(b.start);
    // A budget that may fall to zero reads the clock every 16 looks: every 64 (about 1.2 us
    // here) made a 2 us budget 3.2 us. (A queue's waits keep the 64 they were tuned with.)
    let looks = match floor {
        Floor::Zero => 16,
        Floor::Min => 64,
    };
    loop {
        for _ in 0..looks {
            if ready() {
                return b.end(true);
            }
            std::hint::spin_loop();
        }
        if b.over() || deadline.expired() {
            let found = ready();
            return b.end(found);
        }
    }
}

/// Spins until `ready()`, for at most `max` and not past `deadline`, and only when another
/// CPU can make it true meanwhile ([`super::may_spin`]); true when it became true.
fn spin_until(ready: impl Fn() -> bool, max: Duration, deadline: super::Deadline) -> bool {
    if !super::may_spin() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= max || deadline.expired() {
            return ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Deadline;

    #[test]
    fn recheck_is_due_by_the_clock_and_bounds_sleeps() {
        let mut c = Recheck::new(Duration::from_millis(20), Duration::from_millis(50));
        assert!(!c.due());
        let t = c.sleep_time(Deadline::never()).unwrap();
        assert!(t <= Duration::from_millis(20) && t > Duration::ZERO);
        // A deadline sooner than the check bounds the sleep; a passed one ends the wait.
        let soon = Deadline::after(Some(Duration::from_millis(5)));
        assert!(c.sleep_time(soon).unwrap() <= Duration::from_millis(5));
        assert!(c
            .sleep_time(Deadline::after(Some(Duration::ZERO)))
            .is_none());
        // However the sleeps end (here: many short ones, as under signals), the check comes
        // when its instant has come.
        let t0 = Instant::now();
        while !c.due() {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!c.due(), "the next check is scheduled later");
        assert!(c.sleep_time(Deadline::never()).unwrap() <= Duration::from_millis(40));
    }

    #[test]
    fn a_budget_halves_after_misses_in_a_row_and_grows_back_with_hits() {
        let limit = SPIN_MAX.as_nanos() as u32;
        // Waits that slept, one after another, halve the budget down to its floor; the
        // first of them keeps it.
        let (mut b, mut missed) = (limit / 4, false);
        (b, missed) = next_budget(b, b, false, missed, limit, Floor::Zero);
        assert_eq!((b, missed), (limit / 4, true));
        let mut seen = vec![];
        for _ in 0..12 {
            (b, missed) = next_budget(b, b, false, missed, limit, Floor::Zero);
            seen.push(b);
        }
        assert!(seen.contains(&BUDGET_MIN), "{seen:?}");
        // One more miss at the floor: no spin at all, and it stays so while waits miss.
        assert_eq!(b, 0);
        assert_eq!(
            next_budget(0, 0, false, true, limit, Floor::Zero),
            (0, true)
        );
        assert_eq!(
            next_budget(0, 0, false, false, limit, Floor::Zero),
            (0, true)
        );
        // A hit (a probe's, or the few looks a zero budget still makes) brings it back to
        // at least the floor.
        assert_eq!(
            next_budget(0, 300, true, true, limit, Floor::Zero),
            (BUDGET_MIN, false)
        );
        assert_eq!(
            next_budget(BUDGET_MIN, BUDGET_MIN, false, true, limit, Floor::Zero).0,
            0,
            "half the floor is no spin"
        );
        // A queue's budget (`Floor::Min`) keeps its floor however many waits miss.
        assert_eq!(
            next_budget(BUDGET_MIN, BUDGET_MIN, false, true, limit, Floor::Min),
            (BUDGET_MIN, true)
        );
        // A change found after 8 us is a hit: a budget of at least 16 us...
        (b, missed) = next_budget(b, 8_000, true, missed, limit, Floor::Zero);
        assert_eq!((b, missed), (16_000, false));
        // ...a short one grows it by an eighth...
        assert_eq!(
            next_budget(b, 500, true, false, limit, Floor::Zero),
            (18_000, false)
        );
        // ...but never past `GROW_MAX` (a higher budget is kept)...
        assert_eq!(
            next_budget(GROW_MAX, 500, true, false, limit, Floor::Zero).0,
            GROW_MAX
        );
        assert_eq!(
            next_budget(limit, 500, true, false, limit, Floor::Zero).0,
            limit
        );
        // ...a lone miss keeps it, and one found only after more than `WORTH` is a miss.
        assert_eq!(
            next_budget(b, WORTH + 1, true, false, limit, Floor::Zero),
            (16_000, true)
        );
        assert_eq!(
            next_budget(b, WORTH + 1, true, true, limit, Floor::Zero),
            (8_000, true)
        );
        // Never over the limit, even when a hit brings it to the floor.
        assert_eq!(next_budget(0, 100, true, true, 1_000, Floor::Zero).0, 1_000);
    }

    #[test]
    fn a_stream_with_rare_hiccups_keeps_its_budget() {
        let limit = SPIN_MAX.as_nanos() as u32;
        let (mut b, mut missed) = (BUDGET_MIN, false);
        // Fast hits bring a budget at the floor back up within a few dozen waits...
        for _ in 0..40 {
            (b, missed) = next_budget(b, 100, true, missed, limit, Floor::Zero);
        }
        assert_eq!(b, GROW_MAX);
        // ...and one hiccup in every 100 waits never lowers it.
        for i in 0..1000 {
            (b, missed) = next_budget(b, 100, i % 100 != 0, missed, limit, Floor::Zero);
        }
        assert_eq!(b, GROW_MAX);
    }

    #[test]
    fn budgets_are_learned_per_word() {
        let (w1, w2) = (AtomicU32::new(0), AtomicU32::new(0));
        let k1 = &w1 as *const AtomicU32 as usize;
        let k2 = &w2 as *const AtomicU32 as usize;
        for _ in 0..12 {
            Budget::start(k1, SPIN_MAX, Floor::Zero).end(false);
        }
        // (Two words may share a slot; then the second starts afresh, as here too.)
        let fresh = Budget::start(k2, SPIN_MAX, Floor::Zero);
        assert_eq!(fresh.ns, SPIN_MAX.as_nanos() as u32 / 4);
        fresh.end(true);
    }

    #[test]
    fn one_wait_in_probe_every_looks_longer() {
        let w = AtomicU32::new(0);
        let key = &w as *const AtomicU32 as usize;
        // Down to the floor first (these waits are not counted).
        for _ in 0..8 {
            Budget::start(key, SPIN_MAX, Floor::Zero).end(false);
        }
        let mut probes = 0;
        for _ in 0..(2 * PROBE_EVERY) {
            let b = Budget::start(key, SPIN_MAX, Floor::Zero);
            if b.ns >= PROBE_MIN {
                probes += 1;
            }
            b.end(false);
        }
        assert_eq!(probes, 2);
    }
}
