//! One trait per kind of primitive, implemented by the local types (shared memory, one
//! machine) and by the remote ones (`multiproc::remote`, cargo feature `remote`, many
//! machines): code written against [`Queue`], [`JoinableQueue`], [`Lock`], [`Semaphore`] or
//! [`Event`] runs on either, and a program moves from one machine to many by changing how
//! its objects are opened.
//!
//! The traits keep the local names and the four forms of every blocking call (`op`,
//! `try_op`, `op_timeout`, `op_deadline`). Where a local call cannot fail but a remote one
//! can (the server is gone: [`ErrorKind::Disconnected`]), the trait's result has room for
//! that: a crate [`Error`], or an enum of this module that adds `Failed(Error)` to the local
//! call's outcomes ([`TryWaitError`], [`WaitTimeoutError`], [`LockError`], ...). The queue
//! calls already have `Failed`, so the queue traits use the local queue errors as they are.
//!
//! ```
//! use multiproc::api;
//! use multiproc::queue::GetError;
//!
//! /// Sums a stream of numbers until the queue is closed: local or remote alike.
//! fn sum(q: &impl api::Queue<u64>) -> multiproc::Result<u64> {
//!     let mut total = 0;
//!     loop {
//!         match api::Queue::get(q) {
//!             Ok(n) => total += n,
//!             Err(GetError::Closed) => return Ok(total),
//!             Err(GetError::Failed(e)) => return Err(e),
//!         }
//!     }
//! }
//!
//! let q = multiproc::Queue::new()?;
//! for n in 1..=4 {
//!     q.put(n)?;
//! }
//! q.close();
//! assert_eq!(sum(&q)?, 10);
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Codec;
#[allow(unused_imports)] // the docs' links
use crate::error::ErrorKind;
use crate::error::{Error, OwnerDied, Result};
use crate::queue::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};

/// A FIFO queue of `T` shared by processes: [`crate::Queue`] and `remote::Queue`.
///
/// The errors are the local queue's: a lost server is `Failed(e)` with
/// [`ErrorKind::Disconnected`].
pub trait Queue<T> {
    /// Puts `item`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// `Closed(item)` or `Failed(item, e)`.
    fn put(&self, item: T) -> std::result::Result<(), PutError<T>>;
    /// Puts `item` if there is room now.
    ///
    /// # Errors
    /// `Full(item)`, `Closed(item)` or `Failed(item, e)`.
    fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>>;
    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout(item)`, `Closed(item)` or `Failed(item, e)`.
    fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>>;
    /// Puts `item`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`put_timeout`](Self::put_timeout).
    fn put_deadline(
        &self,
        item: T,
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<T>>;
    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    /// `Closed` (closed and drained) or `Failed(e)`.
    fn get(&self) -> std::result::Result<T, GetError>;
    /// Takes the next item if there is one now.
    ///
    /// # Errors
    /// `Empty`, `Closed` or `Failed(e)`.
    fn try_get(&self) -> std::result::Result<T, TryGetError>;
    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Closed` or `Failed(e)`.
    fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError>;
    /// Takes the next item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError>;
    /// Closes the queue for everyone: puts fail, consumers drain what is left, then get
    /// `Closed`.
    ///
    /// # Errors
    /// Only a remote queue's transport errors.
    fn close(&self) -> Result<()>;
    /// True once the queue is closed.
    ///
    /// # Errors
    /// Only a remote queue's transport errors.
    fn is_closed(&self) -> Result<bool>;
    /// The number of items queued now (a snapshot).
    ///
    /// # Errors
    /// Only a remote queue's transport errors.
    fn len(&self) -> Result<usize>;
    /// True when no item is queued now (a snapshot).
    ///
    /// # Errors
    /// Only a remote queue's transport errors.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A [`Queue`] whose items are acknowledged with [`task_done`](Self::task_done), and whose
/// [`join`](Self::join) waits until every item put has been: [`crate::JoinableQueue`] and
/// `remote::JoinableQueue`.
pub trait JoinableQueue<T>: Queue<T> {
    /// Says that an item taken with `get` has been dealt with.
    ///
    /// # Errors
    /// More `task_done` calls than items taken ([`ErrorKind::InvalidState`]); remote: the
    /// consumer's lease ran out and the item went to another ([`ErrorKind::LeaseLost`]), or
    /// a transport error.
    fn task_done(&self) -> Result<()>;
    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    /// Only a remote queue's transport errors.
    fn join(&self) -> Result<()>;
    /// [`join`](Self::join) if every item is done now.
    ///
    /// # Errors
    /// `WouldBlock` when some are not, or `Failed(e)`.
    fn try_join(&self) -> std::result::Result<(), TryWaitError>;
    /// [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError>;
    /// [`join`](Self::join), waiting until `deadline` at most.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError>;
}

/// Mutual exclusion between processes, with a guard that releases on drop:
/// [`crate::Lock`] and `remote::Lock`.
pub trait Lock {
    /// What holding the lock looks like.
    type Guard<'a>
    where
        Self: 'a;
    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    /// `OwnerDied(guard)` (the lock is held; its previous holder died holding it), or
    /// `Failed(e)`.
    fn lock(&self) -> std::result::Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;
    /// Takes the lock if it is free now.
    ///
    /// # Errors
    /// `WouldBlock`, `OwnerDied(guard)` or `Failed(e)`.
    fn try_lock(&self) -> std::result::Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;
    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `OwnerDied(guard)` or `Failed(e)`.
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>>;
    /// Takes the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`lock_timeout`](Self::lock_timeout).
    fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>>;
    /// True if someone holds the lock now (a snapshot).
    ///
    /// # Errors
    /// Only a remote lock's transport errors.
    fn is_locked(&self) -> Result<bool>;
}

/// A counting semaphore whose permits come back on guard drop: [`crate::Semaphore`] and
/// `remote::Semaphore`.
pub trait Semaphore {
    /// A permit, given back on drop.
    type Guard<'a>
    where
        Self: 'a;
    /// Takes a permit, waiting as long as it takes.
    ///
    /// # Errors
    /// Only a remote semaphore's transport errors.
    fn acquire(&self) -> Result<Self::Guard<'_>>;
    /// Takes a permit if one is free now.
    ///
    /// # Errors
    /// `WouldBlock`, or `Failed(e)`.
    fn try_acquire(&self) -> std::result::Result<Self::Guard<'_>, TryWaitError>;
    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError>;
    /// Takes a permit, waiting until `deadline` at most.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError>;
    /// Adds a permit (Python's `release()` without a guard).
    ///
    /// # Errors
    /// A bounded semaphore at its initial value; a remote semaphore's transport errors.
    fn release(&self) -> Result<()>;
    /// The number of free permits now (a snapshot).
    ///
    /// # Errors
    /// Only a remote semaphore's transport errors.
    fn value(&self) -> Result<u32>;
}

/// A flag that processes wait for: [`crate::Event`] and `remote::Event`.
pub trait Event {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    /// Only a remote event's transport errors.
    fn set(&self) -> Result<()>;
    /// Clears the flag.
    ///
    /// # Errors
    /// Only a remote event's transport errors.
    fn clear(&self) -> Result<()>;
    /// True if the flag is set now.
    ///
    /// # Errors
    /// Only a remote event's transport errors.
    fn is_set(&self) -> Result<bool>;
    /// Waits until the flag is set.
    ///
    /// # Errors
    /// Only a remote event's transport errors.
    fn wait(&self) -> Result<()>;
    /// Returns at once: `Ok` if the flag is set.
    ///
    /// # Errors
    /// `WouldBlock` when it is not, or `Failed(e)`.
    fn try_wait(&self) -> std::result::Result<(), TryWaitError>;
    /// Waits at most `timeout` for the flag.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError>;
    /// Waits until `deadline` at most for the flag.
    ///
    /// # Errors
    /// `Timeout`, or `Failed(e)`.
    fn wait_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError>;
}

// ---- errors ---------------------------------------------------------------------------------

macro_rules! unit_error {
    ($(#[$m:meta])* $name:ident, $var:ident, $is:ident, $text:literal) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            #[doc = concat!("The call's \"", $text, "\" outcome (as the local call's unit error).")]
            $var,
            /// The call failed for another reason: a lost server
            /// ([`ErrorKind::Disconnected`]), an answer that makes no sense, ...
            Failed(Error),
        }

        impl $name {
            #[doc = concat!("True for `", stringify!($var), "`.")]
            pub fn $is(&self) -> bool {
                matches!(self, $name::$var)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::$var => f.write_str($text),
                    $name::Failed(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl From<Error> for $name {
            fn from(e: Error) -> $name {
                $name::Failed(e)
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                match e {
                    $name::$var => crate::error::$var.into(),
                    $name::Failed(e) => e,
                }
            }
        }
    };
}

unit_error!(
    /// Why a `try_` wait (`try_join`, `try_acquire`, `try_wait`) did not succeed.
    TryWaitError, WouldBlock, is_would_block, "the call would have to wait"
);
unit_error!(
    /// Why a timed wait (`join_timeout`, `acquire_timeout`, `wait_timeout`, ...) did not
    /// succeed.
    WaitTimeoutError, Timeout, is_timeout, "timed out"
);

macro_rules! lock_error {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $text:literal, $conv:expr;)* }) => {
        $(#[$m])*
        pub enum $name<G> {
            $($(#[$vm])* $var,)*
            /// Acquired, but the previous holder died holding it (or, remote, its lease ran
            /// out without a release): the guard is inside.
            OwnerDied(OwnerDied<G>),
            /// The call failed for another reason: a lost server
            /// ([`ErrorKind::Disconnected`]), an answer that makes no sense, ...
            Failed(Error),
        }

        impl<G> $name<G> {
            /// The guard, if the lock was acquired (the `OwnerDied` case).
            pub fn into_guard(self) -> Option<G> {
                match self {
                    $name::OwnerDied(e) => Some(e.into_inner()),
                    _ => None,
                }
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var => f.write_str(stringify!($var)),)*
                    $name::OwnerDied(_) => f.write_str("OwnerDied(..)"),
                    $name::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
                }
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var => f.write_str($text),)*
                    $name::OwnerDied(e) => fmt::Display::fmt(e, f),
                    $name::Failed(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<G> std::error::Error for $name<G> {}

        impl<G> From<OwnerDied<G>> for $name<G> {
            fn from(e: OwnerDied<G>) -> Self {
                $name::OwnerDied(e)
            }
        }

        impl<G> From<Error> for $name<G> {
            fn from(e: Error) -> Self {
                $name::Failed(e)
            }
        }

        impl<G> From<$name<G>> for Error {
            fn from(e: $name<G>) -> Error {
                match e {
                    $($name::$var => $conv,)*
                    $name::OwnerDied(e) => e.into(),
                    $name::Failed(e) => e,
                }
            }
        }
    };
}

lock_error!(
    /// Why a `lock()` returned no plain guard.
    LockError {}
);
lock_error!(
    /// Why a `try_lock()` returned no plain guard.
    TryLockError {
        /// Somebody else holds the lock; nothing was acquired.
        WouldBlock => "the lock is held by someone else", crate::error::WouldBlock.into();
    }
);
lock_error!(
    /// Why a timed lock (`lock_timeout`, `lock_deadline`) returned no plain guard.
    LockTimeoutError {
        /// The lock stayed held until the timeout ran out; nothing was acquired.
        Timeout => "timed out waiting for the lock", crate::error::Timeout.into();
    }
);

impl<G> TryLockError<G> {
    /// True for [`TryLockError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryLockError::WouldBlock)
    }
}

impl<G> LockTimeoutError<G> {
    /// True for [`LockTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockTimeoutError::Timeout)
    }
}

// ---- the local types ------------------------------------------------------------------------

macro_rules! local_queue {
    ($ty:ident) => {
        impl<T: Serialize + DeserializeOwned, C: Codec> Queue<T> for crate::queue::$ty<T, C> {
            fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
                self.as_queue().put(item)
            }
            fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
                self.as_queue().try_put(item)
            }
            fn put_timeout(
                &self,
                item: T,
                timeout: Duration,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
                self.as_queue().put_timeout(item, timeout)
            }
            fn put_deadline(
                &self,
                item: T,
                deadline: Instant,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
                self.as_queue().put_deadline(item, deadline)
            }
            fn get(&self) -> std::result::Result<T, GetError> {
                self.as_queue().get()
            }
            fn try_get(&self) -> std::result::Result<T, TryGetError> {
                self.as_queue().try_get()
            }
            fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
                self.as_queue().get_timeout(timeout)
            }
            fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError> {
                self.as_queue().get_deadline(deadline)
            }
            fn close(&self) -> Result<()> {
                self.as_queue().close();
                Ok(())
            }
            fn is_closed(&self) -> Result<bool> {
                Ok(self.as_queue().is_closed())
            }
            fn len(&self) -> Result<usize> {
                Ok(self.as_queue().len())
            }
        }
    };
}

impl<T, C: Codec> crate::queue::Queue<T, C> {
    fn as_queue(&self) -> &Self {
        self
    }
}

local_queue!(Queue);
local_queue!(SimpleQueue);
local_queue!(JoinableQueue);

impl<T: Serialize + DeserializeOwned, C: Codec> JoinableQueue<T>
    for crate::queue::JoinableQueue<T, C>
{
    fn task_done(&self) -> Result<()> {
        crate::queue::JoinableQueue::task_done(self)
    }
    fn join(&self) -> Result<()> {
        crate::queue::JoinableQueue::join(self);
        Ok(())
    }
    fn try_join(&self) -> std::result::Result<(), TryWaitError> {
        crate::queue::JoinableQueue::try_join(self).map_err(|_| TryWaitError::WouldBlock)
    }
    fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        crate::queue::JoinableQueue::join_timeout(self, timeout)
            .map_err(|_| WaitTimeoutError::Timeout)
    }
    fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        crate::queue::JoinableQueue::join_deadline(self, deadline)
            .map_err(|_| WaitTimeoutError::Timeout)
    }
}

impl Lock for crate::sync::Lock {
    type Guard<'a> = crate::sync::LockGuard<'a>;

    fn lock(&self) -> std::result::Result<Self::Guard<'_>, LockError<Self::Guard<'_>>> {
        crate::sync::Lock::lock(self).map_err(LockError::OwnerDied)
    }
    fn try_lock(&self) -> std::result::Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>> {
        crate::sync::Lock::try_lock(self).map_err(|e| match e {
            crate::sync::TryLockError::WouldBlock => TryLockError::WouldBlock,
            crate::sync::TryLockError::OwnerDied(g) => TryLockError::OwnerDied(g),
        })
    }
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>> {
        crate::sync::Lock::lock_timeout(self, timeout).map_err(local_timed)
    }
    fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>> {
        crate::sync::Lock::lock_deadline(self, deadline).map_err(local_timed)
    }
    fn is_locked(&self) -> Result<bool> {
        Ok(crate::sync::Lock::is_locked(self))
    }
}

fn local_timed<G>(e: crate::sync::LockTimeoutError<G>) -> LockTimeoutError<G> {
    match e {
        crate::sync::LockTimeoutError::Timeout => LockTimeoutError::Timeout,
        crate::sync::LockTimeoutError::OwnerDied(g) => LockTimeoutError::OwnerDied(g),
    }
}

macro_rules! local_semaphore {
    ($ty:ident) => {
        impl Semaphore for crate::sync::$ty {
            type Guard<'a> = crate::sync::SemaphoreGuard<'a>;

            fn acquire(&self) -> Result<Self::Guard<'_>> {
                Ok(crate::sync::$ty::acquire(self))
            }
            fn try_acquire(&self) -> std::result::Result<Self::Guard<'_>, TryWaitError> {
                crate::sync::$ty::try_acquire(self).map_err(|_| TryWaitError::WouldBlock)
            }
            fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError> {
                crate::sync::$ty::acquire_timeout(self, timeout)
                    .map_err(|_| WaitTimeoutError::Timeout)
            }
            fn acquire_deadline(
                &self,
                deadline: Instant,
            ) -> std::result::Result<Self::Guard<'_>, WaitTimeoutError> {
                crate::sync::$ty::acquire_deadline(self, deadline)
                    .map_err(|_| WaitTimeoutError::Timeout)
            }
            fn release(&self) -> Result<()> {
                crate::sync::$ty::release(self)
            }
            fn value(&self) -> Result<u32> {
                Ok(crate::sync::$ty::value(self))
            }
        }
    };
}

local_semaphore!(Semaphore);
local_semaphore!(BoundedSemaphore);

impl Event for crate::sync::Event {
    fn set(&self) -> Result<()> {
        crate::sync::Event::set(self);
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        crate::sync::Event::clear(self);
        Ok(())
    }
    fn is_set(&self) -> Result<bool> {
        Ok(crate::sync::Event::is_set(self))
    }
    fn wait(&self) -> Result<()> {
        crate::sync::Event::wait(self);
        Ok(())
    }
    fn try_wait(&self) -> std::result::Result<(), TryWaitError> {
        crate::sync::Event::try_wait(self).map_err(|_| TryWaitError::WouldBlock)
    }
    fn wait_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        crate::sync::Event::wait_timeout(self, timeout).map_err(|_| WaitTimeoutError::Timeout)
    }
    fn wait_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        crate::sync::Event::wait_deadline(self, deadline).map_err(|_| WaitTimeoutError::Timeout)
    }
}
