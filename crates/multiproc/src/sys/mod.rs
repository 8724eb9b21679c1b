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

use std::sync::atomic::{AtomicU8, Ordering};
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
pub(crate) fn may_spin() -> bool {
    // 0: not known yet, 1: one CPU, 2: more. Not a `OnceLock`: a fork while another thread
    // initializes one leaves it "running" forever in the child (see `crate::fork`); here
    // whoever looks first computes the same answer and stores it.
    static MULTI: AtomicU8 = AtomicU8::new(0);
    match MULTI.load(Ordering::Relaxed) {
        0 => {
            let multi = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
            MULTI.store(1 + u8::from(multi), Ordering::Relaxed);
            multi
        }
        v => v == 2,
    }
}
