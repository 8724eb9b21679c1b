//! The crate-level [`Error`] for setup and OS failures, and [`ErrorKind`]; the three small
//! outcomes every blocking call shares: [`Timeout`], [`WouldBlock`] and [`OwnerDied`].
//!
//! Operations whose callers branch on the outcome have their own small enums next to them
//! (`TryPutError<T>`, `RecvTimeoutError`, `TryLockError<G>`, ...), each holding exactly the
//! outcomes its call can have; those convert into [`Error`] too. The naming is the same
//! everywhere: a `try_` call's "not now" is `WouldBlock` (locks, semaphores, barriers,
//! waits) or `Empty`/`Full` (queues, connections); a `_timeout`/`_deadline` call's "ran out"
//! is `Timeout` and its error has `is_timeout()`; the catch-all variant is `Failed(Error)`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, broadly. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed; `source()` holds the `io::Error`.
    Os,
    /// A handle (fd, shared segment, serialized description) failed validation: wrong magic,
    /// version, kind, size, offset, or it was used outside a context that can carry fds.
    InvalidHandle,
    /// A value could not be serialized or deserialized.
    Codec,
    /// A message is larger than the channel's configured limit.
    TooLarge,
    /// The object (queue, connection end, pool) is closed.
    Closed,
    /// A bounded wait ran out.
    Timeout,
    /// The other side is gone (end of file on a connection, a dead peer).
    Disconnected,
    /// A child process panicked; the message carries the panic text.
    ChildPanicked,
    /// A child process ended without handing back its result (exit code, signal, exec failure).
    ChildFailed,
    /// A call was made in a state that does not allow it (joining an unstarted process, ...).
    InvalidState,
    /// An argument is out of range.
    InvalidArgument,
    /// A process holding a shared lock died; state it protected may be inconsistent.
    OwnerDied,
    /// A barrier was broken (aborted, reset, or a party timed out or died).
    BrokenBarrier,
    /// A lease ran out before its holder was done (remote backend): a lock's lease expired,
    /// or a consumer's in-flight items were given to others, so this holder's
    /// `unlock`/`task_done` was refused.
    LeaseLost,
    /// A remote server answered a command with an error (its text is in the message).
    Remote,
    /// A name (shared memory in `/dev/shm`) is taken already: Python's `FileExistsError`.
    AlreadyExists,
    /// No object has that name (shared memory in `/dev/shm`), or no one listens at an
    /// address: Python's `FileNotFoundError` / `ConnectionRefusedError`.
    NotFound,
    /// The peer failed the authentication handshake of a [`Listener`](crate::Listener) or
    /// [`Client`](crate::Client) (a wrong `authkey`, or not a multiprocessing peer at all):
    /// Python's `AuthenticationError`.
    AuthenticationFailed,
}

/// An error from multiproc: a kind, a message saying what was being done, and for OS failures
/// the underlying `io::Error`.
///
/// One pointer wide (the parts are boxed), so a `Result<T, Error>` is hardly larger than `T`:
/// a queue's `get` moves its result a few times on the way out, and a 40-byte error inside
/// every result made that a measurable part of a small message's time.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<io::Error>,
}

impl Error {
    /// A new error of `kind` with a message.
    #[cold]
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    /// An OS error: `what` failed with `source`.
    #[cold]
    pub fn os(what: impl Into<Cow<'static, str>>, source: io::Error) -> Error {
        Error(Box::new(Inner {
            kind: ErrorKind::Os,
            message: what.into(),
            source: Some(source),
        }))
    }

    /// Attaches an underlying `io::Error`.
    pub fn with_source(mut self, source: io::Error) -> Error {
        self.0.source = Some(source);
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The raw OS error number, if this came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.0.source.as_ref().and_then(|e| e.raw_os_error())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(s) = &self.0.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(s) = &self.0.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.0.kind {
            ErrorKind::Os => match &e.0.source {
                Some(s) => s.kind(),
                None => io::ErrorKind::Other,
            },
            ErrorKind::InvalidHandle | ErrorKind::Codec => io::ErrorKind::InvalidData,
            ErrorKind::TooLarge | ErrorKind::InvalidArgument => io::ErrorKind::InvalidInput,
            ErrorKind::Closed | ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::LeaseLost => io::ErrorKind::PermissionDenied,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::AuthenticationFailed => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::os("system call failed", e)
    }
}

/// Builds an `Error::os` from an `io::Error`, naming what failed.
pub(crate) trait Context<T> {
    fn context(self, what: &'static str) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: &'static str) -> Result<T> {
        self.map_err(|e| Error::os(what, e))
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn context(self, what: &'static str) -> Result<T> {
        self.map_err(|e| Error::os(what, e.into()))
    }
}

/// A bounded wait ran out (a `_timeout` or `_deadline` call).
///
/// The whole error of the timed calls whose only failure is running out —
/// [`Event::wait_timeout`](crate::Event::wait_timeout),
/// [`Semaphore::acquire_timeout`](crate::Semaphore::acquire_timeout),
/// [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout), ... — and the
/// meaning of the `Timeout` variant of every other timed call's error.
///
/// ```
/// use std::time::Duration;
/// let e = multiproc::Event::new()?;
/// let r = e.wait_timeout(Duration::from_millis(1));
/// assert_eq!(r, Err(multiproc::Timeout));
/// assert!(r.unwrap_err().is_timeout());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Timeout;

impl Timeout {
    /// True (always): as `is_timeout()` on the other timed calls' errors.
    pub fn is_timeout(&self) -> bool {
        true
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Timeout {}

impl From<Timeout> for Error {
    fn from(_: Timeout) -> Error {
        Error::new(ErrorKind::Timeout, "timed out")
    }
}

/// A `try_` call would have had to wait.
///
/// The whole error of the non-blocking calls whose only failure is "not now" —
/// [`Semaphore::try_acquire`](crate::Semaphore::try_acquire),
/// [`Event::try_wait`](crate::Event::try_wait),
/// [`JoinableQueue::try_join`](crate::JoinableQueue::try_join), ... — and the meaning of the
/// `WouldBlock` variant of the other `try_` calls' errors. Converted into [`Error`] it is
/// [`ErrorKind::Timeout`] (a wait of zero length that ran out), as `Empty` and `Full` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct WouldBlock;

impl fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the call would have to wait")
    }
}

impl std::error::Error for WouldBlock {}

impl From<WouldBlock> for Error {
    fn from(_: WouldBlock) -> Error {
        Error::new(ErrorKind::Timeout, "the call would have to wait")
    }
}

/// The lock was acquired, but its previous holder died holding it: what it protects may be
/// half-updated. The guard is inside ([`into_inner`](Self::into_inner)); the lock itself is
/// consistent again and keeps working.
///
/// Like std's `PoisonError`, except that only the one caller who took the lock over is told.
/// The one type for every lock of the crate ([`Lock`](crate::Lock),
/// [`RLock`](crate::RLock), [`Condition`](crate::Condition), [`Value`](crate::Value),
/// [`Array`](crate::Array)); a condition's wait, which keeps its guard, reports it as
/// `OwnerDied<()>` (the default `G`).
///
/// ```
/// use multiproc::{Lock, OwnerDied};
/// let lock = Lock::new()?;
/// // Carry on after a dead holder, as after a clean acquisition:
/// let guard = lock.lock().unwrap_or_else(OwnerDied::into_inner);
/// # drop(guard);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerDied<G = ()> {
    guard: G,
}

impl<G> OwnerDied<G> {
    /// Wraps the guard of a lock taken over from a dead holder.
    pub fn new(guard: G) -> OwnerDied<G> {
        OwnerDied { guard }
    }

    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, borrowed mutably.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied { .. }")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder of the lock died holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

impl<G> From<OwnerDied<G>> for Error {
    fn from(e: OwnerDied<G>) -> Error {
        Error::new(ErrorKind::OwnerDied, e.to_string())
    }
}
/// The error enums of the `try_` and timed forms: one "not now" or "ran out" variant, then
/// the plain call's outcomes that the form can have.
macro_rules! wait_error {
    (
        $(#[$m:meta])*
        $name:ident { $( $(#[$vm:meta])* $var:ident => $text:expr, $kind:ident; )* }
        $is:ident: $first:ident
    ) => {
        $(#[$m])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// Anything else, as for the plain call: an OS failure, a value that does not
            /// encode or decode, a corrupt frame, a task's failure, a pool that cannot be
            /// joined.
            Failed($crate::error::Error),
        }

        impl $name {
            #[doc = concat!("True for [`", stringify!($name), "::", stringify!($first), "`].")]
            pub fn $is(&self) -> bool {
                matches!(self, $name::$first)
            }

            /// The broad kind, as in the crate [`Error`]($crate::Error).
            pub fn kind(&self) -> $crate::error::ErrorKind {
                match self {
                    $( $name::$var => $crate::error::ErrorKind::$kind, )*
                    $name::Failed(e) => e.kind(),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $( $name::$var => f.write_str($text), )*
                    $name::Failed(e) => ::std::fmt::Display::fmt(e, f),
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

        impl From<$crate::error::Error> for $name {
            fn from(e: $crate::error::Error) -> $name {
                $name::Failed(e)
            }
        }

        impl From<$name> for $crate::error::Error {
            fn from(e: $name) -> $crate::error::Error {
                match e {
                    $name::Failed(inner) => inner,
                    e => $crate::error::Error::new(e.kind(), e.to_string()),
                }
            }
        }
    };
}
pub(crate) use wait_error;
