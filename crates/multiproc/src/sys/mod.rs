//! The only place that makes system calls.
//!
//! # Safety
//!
//! Everything above this module is safe code over these wrappers. Each wrapper either takes
//! owned or borrowed file descriptors (so an fd can't be used after close) or documents the
//! invariant its caller must keep. Raw pointers appear only in [`mem::Mapping`], which owns
//! its mapping and unmaps it on drop.

pub(crate) mod futex;
pub(crate) mod mem;
pub(crate) mod proc;
pub(crate) mod socket;
pub(crate) mod thread;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A point in time after which a blocking call gives up; `None` inside means "never".
///
/// Measured on `Instant`, i.e. `CLOCK_MONOTONIC`: wall-clock jumps do not shorten or
/// lengthen a timeout. The crate's one way to turn a timeout into a deadline: every
/// `_timeout` call accepts any `Duration`, up to `Duration::MAX` (a deadline too far to
/// represent is about 30 years away), where `Instant::now() + timeout` would panic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// A deadline `timeout` from now; `None` waits forever.
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline(timeout.map(|d| Instant::now().checked_add(d).unwrap_or_else(far_future)))
    }

    /// The deadline `at` (a `_deadline` call's argument).
    pub(crate) const fn at(at: Instant) -> Self {
        Deadline(Some(at))
    }

    /// A deadline `timeout` from now (a `_timeout` call's argument); any `Duration`.
    pub(crate) fn within(timeout: Duration) -> Self {
        Self::after(Some(timeout))
    }

    /// A deadline that has passed already: look, don't wait (a `try_` call).
    pub(crate) fn passed() -> Self {
        Deadline(Some(Instant::now()))
    }

    /// The instant, for calls that take one (about 30 years away for [`Deadline::never`]).
    pub(crate) fn instant(&self) -> Instant {
        self.0.unwrap_or_else(far_future)
    }

    /// True for [`Deadline::never`].
    pub(crate) fn is_never(&self) -> bool {
        self.0.is_none()
    }

    /// A deadline that never comes.
    pub(crate) const fn never() -> Self {
        Deadline(None)
    }

    /// Time left: `Ok(None)` for no deadline, `Ok(Some(d))` with `d > 0`, `Err(())` when past.
    #[allow(clippy::result_unit_err)]
    pub(crate) fn remaining(&self) -> Result<Option<Duration>, ()> {
        match self.0 {
            None => Ok(None),
            Some(at) => {
                let now = Instant::now();
                if now >= at {
                    Err(())
                } else {
                    Ok(Some(at - now))
                }
            }
        }
    }

    /// Time left as a wait's timeout: `None` for no deadline, zero once past.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.remaining().unwrap_or(Some(Duration::ZERO))
    }

    /// True when the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.remaining().is_err()
    }
}

fn far_future() -> Instant {
    // About 30 years: long enough to mean "forever", small enough not to overflow.
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

/// Milliseconds of a coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: a few ms resolution,
/// read without a system call through the vDSO), for cheap "has a while passed" checks.
pub(crate) fn coarse_millis() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).wrapping_mul(1000) + (t.tv_nsec as u64) / 1_000_000
}

/// Fills `buf` with random bytes from the kernel; `false` if it would not give them (then
/// callers fall back to something unique, such as time and pid).
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn random_bytes(buf: &mut [u8]) -> bool {
    let len = buf.len();
    rustix::rand::getrandom(buf, rustix::rand::GetRandomFlags::empty()).is_ok_and(|n| n == len)
}

/// True when spinning can help: another CPU may run the process we wait for.
///
/// The answer (does this process have more than one CPU to run on) is cached, stamped with
/// the fork generation and a coarse time, and looked up again in a forked child and every
/// [`MAY_SPIN_FOR`]: a process pinned to one CPU after it first asked (`sched_setaffinity`,
/// `os.sched_setaffinity`), and the children it forks then, stop spinning. They used to
/// keep the first answer for life, and a child forked by a process pinned to one CPU
/// inherited "more than one" and spun away the time slice its peer needed (bench `load`,
/// rows "both ends on one CPU").
pub(crate) fn may_spin() -> bool {
    // Not a `OnceLock`: a fork while another thread initializes one leaves it "running"
    // forever in the child (see `crate::fork`); whoever looks first computes the answer and
    // stores it, the rest read it.
    static MULTI: AtomicU64 = AtomicU64::new(0);
    let v = MULTI.load(Ordering::Relaxed);
    let now = coarse_millis();
    let generation = thread::fork_generation();
    if let Some(multi) = may_spin_cached(v, now, generation) {
        return multi;
    }
    let multi = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    MULTI.store(may_spin_stamp(multi, now, generation), Ordering::Relaxed);
    multi
}

/// How long [`may_spin`]'s cached answer is used before it is looked up again.
const MAY_SPIN_FOR: u64 = 250;

/// Low bits of a coarse time in [`may_spin`]'s cache word.
const STAMP_MASK: u64 = (1 << 30) - 1;

/// [`may_spin`]'s cache word: fork generation (low 32 bits) << 32 | coarse ms (low 30 bits)
/// << 2 | answer (1: one CPU, 2: more; 0: none yet).
fn may_spin_stamp(multi: bool, now_ms: u64, generation: u64) -> u64 {
    (generation & 0xffff_ffff) << 32 | (now_ms & STAMP_MASK) << 2 | (1 + u64::from(multi))
}

/// The answer in [`may_spin`]'s cache word `v`, if it was made in this process (same fork
/// generation) less than [`MAY_SPIN_FOR`] ago.
fn may_spin_cached(v: u64, now_ms: u64, generation: u64) -> Option<bool> {
    let answer = v & 3;
    let fresh =
        (now_ms & STAMP_MASK).wrapping_sub((v >> 2) & STAMP_MASK) & STAMP_MASK < MAY_SPIN_FOR;
    (answer != 0 && v >> 32 == generation & 0xffff_ffff && fresh).then_some(answer == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn may_spin_cache_word_holds_the_answer_for_its_process_for_a_while() {
        for multi in [false, true] {
            let v = may_spin_stamp(multi, 1_000, 7);
            assert_eq!(may_spin_cached(v, 1_000, 7), Some(multi));
            assert_eq!(may_spin_cached(v, 1_000 + MAY_SPIN_FOR - 1, 7), Some(multi));
            assert_eq!(may_spin_cached(v, 1_000 + MAY_SPIN_FOR, 7), None, "stale");
            assert_eq!(may_spin_cached(v, 1_000, 8), None, "another process's");
        }
        assert_eq!(may_spin_cached(0, 0, 0), None, "nothing cached yet");
        // Across the wrap of the stamp's 30 bits of milliseconds.
        let v = may_spin_stamp(true, STAMP_MASK - 10, 1);
        assert_eq!(may_spin_cached(v, STAMP_MASK + 20, 1), Some(true));
        assert_eq!(may_spin_cached(v, STAMP_MASK + MAY_SPIN_FOR, 1), None);
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_child_forked_while_pinned_to_one_cpu_does_not_spin() {
        use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
        if !may_spin() {
            return; // one CPU (or a one-CPU quota): nothing to show
        }
        let was = sched_getaffinity(None).unwrap();
        let cpu = (0..CpuSet::MAX_CPU).find(|&c| was.is_set(c)).unwrap();
        let mut one = CpuSet::new();
        one.set(cpu);
        // Only this test's thread is pinned; it forks, then takes its CPUs back.
        sched_setaffinity(None, &one).unwrap();
        // SAFETY: the child only asks `may_spin` (an atomic, the clock, a /proc or sysfs
        // read) and exits at once.
        let forked = unsafe { proc::fork() };
        if let Ok(proc::Forked::Child) = forked {
            proc::exit_now(if may_spin() { 3 } else { 0 });
        }
        sched_setaffinity(None, &was).unwrap();
        let proc::Forked::Parent(pid) = forked.unwrap() else {
            unreachable!()
        };
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = proc::reap(pid, false).unwrap() {
                break st;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "child never ended");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            matches!(status, proc::ExitStatus::Code(0)),
            "the child pinned to one CPU would spin: {status:?}"
        );
    }
}
