//! The errors of the pool's non-blocking and timed waits: each holds exactly the outcomes its
//! call can have, and converts into the crate's [`Error`] (so `?` works in a function
//! returning [`crate::Result`]).

use std::fmt;

use crate::error::{Error, ErrorKind};

/// Why [`AsyncResult::try_get`](super::AsyncResult::try_get) or
/// [`Imap::try_next`](super::Imap::try_next) gave no value.
#[derive(Debug)]
pub enum TryGetError {
    /// The result is not there yet (the tasks go on; ask again later).
    NotReady,
    /// The task failed: its error, as [`AsyncResult::get`](super::AsyncResult::get) gives it.
    Failed(Error),
}

/// Why [`AsyncResult::get_timeout`](super::AsyncResult::get_timeout) (or `get_deadline`,
/// [`Imap::next_timeout`](super::Imap::next_timeout), `next_deadline`) gave no value.
#[derive(Debug)]
pub enum GetTimeoutError {
    /// The result did not come in time (the tasks go on; ask again later). Python's
    /// `multiprocessing.TimeoutError`.
    Timeout,
    /// The task failed: its error, as [`AsyncResult::get`](super::AsyncResult::get) gives it.
    Failed(Error),
}

/// Why [`AsyncResult::wait_timeout`](super::AsyncResult::wait_timeout) (or `wait_deadline`)
/// returned before the result was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitTimeoutError {
    /// The result did not come in time (the tasks go on).
    Timeout,
}

impl TryGetError {
    /// True for [`TryGetError::NotReady`].
    pub fn is_not_ready(&self) -> bool {
        matches!(self, TryGetError::NotReady)
    }

    /// The broad kind, as in the crate [`Error`] ([`ErrorKind::Timeout`] for `NotReady`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            TryGetError::NotReady => ErrorKind::Timeout,
            TryGetError::Failed(e) => e.kind(),
        }
    }
}

impl GetTimeoutError {
    /// True for [`GetTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }

    /// The broad kind, as in the crate [`Error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            GetTimeoutError::Timeout => ErrorKind::Timeout,
            GetTimeoutError::Failed(e) => e.kind(),
        }
    }
}

impl WaitTimeoutError {
    /// True for [`WaitTimeoutError::Timeout`] (always).
    pub fn is_timeout(&self) -> bool {
        matches!(self, WaitTimeoutError::Timeout)
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::NotReady => f.write_str("the result is not ready yet"),
            TryGetError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("the result did not come in time"),
            GetTimeoutError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for WaitTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the result did not come in time")
    }
}

impl std::error::Error for TryGetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryGetError::Failed(e) => Some(e),
            TryGetError::NotReady => None,
        }
    }
}

impl std::error::Error for GetTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetTimeoutError::Failed(e) => Some(e),
            GetTimeoutError::Timeout => None,
        }
    }
}

impl std::error::Error for WaitTimeoutError {}

impl From<TryGetError> for Error {
    fn from(e: TryGetError) -> Error {
        match e {
            TryGetError::Failed(e) => e,
            other => Error::new(other.kind(), other.to_string()),
        }
    }
}

impl From<GetTimeoutError> for Error {
    fn from(e: GetTimeoutError) -> Error {
        match e {
            GetTimeoutError::Failed(e) => e,
            other => Error::new(other.kind(), other.to_string()),
        }
    }
}

impl From<WaitTimeoutError> for Error {
    fn from(e: WaitTimeoutError) -> Error {
        Error::new(ErrorKind::Timeout, e.to_string())
    }
}
