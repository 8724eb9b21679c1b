//! [`Event`]: a process-shared flag that processes can wait for.
//!
//! # Layout and states
//!
//! One futex word: `generation << 2 | WAITERS << 1 | SET`.
//!
//! | word bits        | meaning                                                        |
//! |------------------|----------------------------------------------------------------|
//! | `SET`            | the flag; `wait` returns at once                               |
//! | `WAITERS`        | someone may sleep on the word; `set` must wake                 |
//! | generation       | bumped by every `set` that changed the flag                    |
//!
//! A waiter returns `true` when it sees `SET`, or a new generation (the flag was set while it
//! slept, even if cleared again since — Python's semantics). No state belongs to a waiter, so a
//! waiter killed in `wait` leaves nothing behind but possibly one unneeded wake-up.
//!
//! # Safety
//!
//! `EventState` is declared [`ShmSafe`]: atomics only, every bit pattern a
//! peer can write is a state the code handles.

#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, Timeout, WouldBlock};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sys::futex;
use crate::sys::Deadline;

const SET: u32 = 1;
const WAITERS: u32 = 2;
const GEN_ONE: u32 = 4;

#[repr(C)]
pub(crate) struct EventState {
    word: AtomicU32,
}

// SAFETY: one atomic; every bit pattern is a valid state.
unsafe impl ShmSafe for EventState {}
impl ShmObject for EventState {
    const KIND: u8 = crate::kinds::object::EVENT;
}

/// A process-shared event (Python's `multiprocessing.Event`): a flag that starts clear;
/// [`wait`](Event::wait) blocks until it is set.
///
/// Python's `e.wait(timeout)`, which returns whether the flag was set, is
/// `e.wait_timeout(timeout).is_ok()`.
///
/// ```
/// let e = multiproc::Event::new()?;
/// assert!(e.wait_timeout(std::time::Duration::from_millis(1)).is_err());
/// e.set();
/// assert!(e.is_set());
/// e.wait();
/// e.try_wait()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    inner: Shared<EventState>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

named_api!(
    Event,
    EventState,
    crate::kinds::object::EVENT as u32,
    (),
    {},
    |_s| {},
    rest {}
);

impl Event {
    /// A new event, clear.
    ///
    /// # Errors
    ///
    /// If shared memory cannot be allocated.
    pub fn new() -> Result<Event> {
        Ok(Event {
            inner: Shared::new(|_: &EventState| {})?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        &self.inner.get().word
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter. No system call if nobody waits.
    pub fn set(&self) {
        let w = self.word();
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & SET != 0 {
                return;
            }
            let next = ((cur & !(SET | WAITERS)).wrapping_add(GEN_ONE)) | SET;
            match w.compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        if cur & WAITERS != 0 {
            futex::wake_all(w);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word().fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is set (or was set while it waited, even if cleared since).
    pub fn wait(&self) {
        while !self.wait_until(Deadline::never()) {}
    }

    /// Returns at once: `Ok` when the flag is set (the non-blocking `wait`, the same as
    /// [`is_set`](Self::is_set)).
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] when the flag is clear.
    pub fn try_wait(&self) -> std::result::Result<(), WouldBlock> {
        if self.is_set() {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Waits until the flag is set, at most `timeout` (any `Duration`). Python's
    /// `wait(timeout)` is `wait_timeout(timeout).is_ok()`.
    ///
    /// # Errors
    ///
    /// [`Timeout`] when the flag was not set in time.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), Timeout> {
        self.wait_until(Deadline::within(timeout))
            .then_some(())
            .ok_or(Timeout)
    }

    /// Waits until the flag is set, until `deadline` at most.
    ///
    /// # Errors
    ///
    /// [`Timeout`] when the flag was not set in time.
    pub fn wait_deadline(&self, deadline: Instant) -> std::result::Result<(), Timeout> {
        self.wait_until(Deadline::at(deadline))
            .then_some(())
            .ok_or(Timeout)
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        let w = self.word();
        let mut cur = w.load(Ordering::Acquire);
        if cur & SET != 0 {
            return true;
        }
        let gen = cur & !(SET | WAITERS);
        // A set that comes soon is seen without registering as a waiter, so `set` makes no
        // system call and this side does not sleep.
        if futex::spin_until_changed(w, cur, deadline) {
            cur = w.load(Ordering::Acquire);
        }
        loop {
            if cur & SET != 0 || cur & !(SET | WAITERS) != gen {
                return true;
            }
            if cur & WAITERS == 0 {
                match w.compare_exchange(cur, cur | WAITERS, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => cur |= WAITERS,
                    Err(c) => {
                        cur = c;
                        continue;
                    }
                }
            }
            let Ok(remaining) = deadline.remaining() else {
                return false;
            };
            futex::wait(w, cur, remaining);
            cur = w.load(Ordering::Acquire);
        }
    }
}
