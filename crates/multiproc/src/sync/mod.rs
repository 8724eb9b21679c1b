//! Process-shared synchronization that survives its holders: [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`],
//! [`Array`].
//!
//! Every type is a cheap `Clone` handle to an object in shared memory, and `Serialize` +
//! `Deserialize` through the crate's fd table, so it can be captured by a forked
//! [`Process`](crate::Process), passed as an argument to a spawned one, or sent over a
//! [`Connection`](crate::Connection).
//!
//! Every blocking call comes in four forms — `op()`, `try_op()`, `op_timeout(Duration)`,
//! `op_deadline(Instant)` — with the result shapes listed in the crate docs ("Every blocking
//! call and its four forms"). Locks answer in std's shape: `lock()` can only say
//! [`OwnerDied`], `try_lock()` adds `WouldBlock`, the timed forms add `Timeout`.
//!
//! Robustness: a process killed while holding a lock leaves it to the next locker with
//! [`OwnerDied`] within milliseconds; a party killed inside a [`Barrier`] breaks
//! it; a waiter killed in [`Event::wait`] or [`ConditionGuard::wait`] leaves nothing stuck
//! and no stray notification. Waiters look whether the holder they wait for is alive at
//! instants set by the clock, so signals that keep cutting their sleeps short (`EINTR`) do
//! not postpone the detection. Event is built on a futex sequence word, Condition on one
//! futex word per waiter, never on `pthread_cond_t`.
//!
//! Shared-object kind codes (`ShmObject::KIND`): Lock 1, RLock 2, Semaphore 3,
//! BoundedSemaphore 4, Event 5, Condition 6 (segment), Barrier 7 (segment), Value 8,
//! Array 9 (segment), 15 tests.

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod raw_mutex;
mod semaphore;
mod value;

pub use crate::error::{OwnerDied, Timeout, WouldBlock};
pub use barrier::{Barrier, BarrierTimeoutError, BarrierWaitError, BrokenBarrier, TryBarrierError};
pub use condition::{Condition, ConditionGuard, HeldWait, WaitTimeoutError};
pub use event::Event;
pub use lock::{Lock, LockGuard, LockTimeoutError, RLock, RLockGuard, TryLockError};
#[allow(unused_imports)]
pub(crate) use raw_mutex::{Acquired, RawMutex};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use value::{Array, ArrayGuard, Atomic, Value, ValueGuard};
