//! Process-shared synchronization that survives its holders: [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`],
//! [`Array`]; and [`Dict`], [`List`] and [`Namespace`]: a shared dictionary, list and typed
//! value (Python's `Manager().dict()`, `.list()`, `.Namespace()`).
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
//! Array 9 (segment), Dict 10 (segment), List 11
//! (segment), 15 tests.

/// The named-object methods of a sync type whose state is one `Shared<$state>` in field
/// `inner` (see `shm/named.rs` and docs/names.md): `create_named(name, args..)`,
/// `open_named`, `open_or_create`, `name`, `unlink`. `$check` validates the arguments
/// before anything is created, `$init` sets the state up (as the type's `new` does), and
/// `rest` gives the other fields of a handle.
macro_rules! named_api {
    (
        $ty:ident, $state:ty, $what:expr,
        ($($arg:ident: $argty:ty),*), $check:block, |$s:ident| $init:block,
        rest { $($field:ident: $val:expr),* }
    ) => {
        impl $ty {
            #[doc = concat!(
                "A new `", stringify!($ty), "` under the name `name`, which unrelated ",
                "processes of this user open with [`open_named`](Self::open_named) ",
                "(the arguments as for [`new`](Self::new)). The name appears only once the ",
                "object is complete, and stays until [`unlink`](Self::unlink) or ",
                "[`shm::unlink_named`](crate::shm::unlink_named) (see docs/names.md).\n\n",
                "# Errors\n[`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) ",
                "when the name is taken (by any named object); ",
                "[`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a bad ",
                "name or argument; OS errors (`/dev/shm` full)."
            )]
            pub fn create_named(name: &str, $($arg: $argty),*) -> crate::Result<$ty> {
                $check
                Ok($ty {
                    inner: crate::shm::Shared::create_named(
                        name,
                        $what,
                        0,
                        |$s: &$state| $init,
                    )?,
                    $($field: $val),*
                })
            }

            #[doc = concat!(
                "Opens the `", stringify!($ty), "` named `name`, created by ",
                "[`create_named`](Self::create_named) in any process of this user.\n\n",
                "# Errors\n[`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when no ",
                "object has that name; ",
                "[`ErrorKind::InvalidHandle`](crate::ErrorKind::InvalidHandle) when the name ",
                "holds another kind of object, one of another layout version, or no ",
                "multiproc object at all (the message says which)."
            )]
            pub fn open_named(name: &str) -> crate::Result<$ty> {
                Ok($ty {
                    inner: crate::shm::Shared::<$state>::open_named(name, $what, 0, &|| {
                        concat!("a ", stringify!($ty)).to_string()
                    })?,
                    $($field: $val),*
                })
            }

            #[doc = concat!(
                "Opens the `", stringify!($ty), "` named `name`, or creates it with these ",
                "arguments when there is none; of several processes racing to create it, ",
                "one does and the others open that one.\n\n",
                "# Errors\nAs [`open_named`](Self::open_named) and ",
                "[`create_named`](Self::create_named)."
            )]
            pub fn open_or_create(name: &str, $($arg: $argty),*) -> crate::Result<$ty> {
                crate::shm::named::open_or_create(
                    name,
                    || Self::open_named(name),
                    || Self::create_named(name, $($arg),*),
                )
            }

            /// The name this object was created or opened under, if any (not for one made
            /// by `new`, nor for a handle received in a message).
            pub fn name(&self) -> Option<&str> {
                self.inner.name()
            }

            /// Removes this object's name: no process can open it any more; those that have
            /// it keep using it, and it is freed when the last one lets go.
            ///
            /// # Errors
            /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) when it has no
            /// name, or the name now belongs to another object (removed and created again
            /// since: left alone); [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when
            /// the name is gone already.
            pub fn unlink(&self) -> crate::Result<()> {
                self.inner.unlink()
            }
        }
    };
}

mod barrier;
mod condition;
mod dict;
mod event;
mod list;
mod lock;
mod namespace;
pub(crate) mod raw_mutex;
mod semaphore;
mod table;
mod value;

pub use crate::error::{OwnerDied, Timeout, WouldBlock};
pub use barrier::{Barrier, BarrierTimeoutError, BarrierWaitError, BrokenBarrier, TryBarrierError};
pub use condition::{Condition, ConditionGuard, HeldWait, WaitTimeoutError};
pub use dict::Dict;
pub use event::Event;
pub use list::List;
pub use lock::{Lock, LockGuard, LockTimeoutError, RLock, RLockGuard, TryLockError};
pub use namespace::Namespace;
#[allow(unused_imports)]
pub(crate) use raw_mutex::{Acquired, RawMutex};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use value::{Array, ArrayGuard, Atomic, Value, ValueGuard};
