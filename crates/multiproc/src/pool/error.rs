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
    WouldBlock,
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

impl TryGetError {
    /// True for [`TryGetError::WouldBlock`] (the result is not there yet).
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryGetError::WouldBlock)
    }

    /// The broad kind, as in the crate [`Error`] ([`ErrorKind::Timeout`] for `WouldBlock`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            TryGetError::WouldBlock => ErrorKind::Timeout,
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

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::WouldBlock => f.write_str("the result is not ready yet"),
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

impl std::error::Error for TryGetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryGetError::Failed(e) => Some(e),
            TryGetError::WouldBlock => None,
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

/// Why [`Pool::try_join`](super::Pool::try_join) did not return `Ok`.
#[derive(Debug)]
pub enum TryJoinError {
    /// Workers or callbacks are still running.
    WouldBlock,
    /// The pool cannot be joined: not closed, or made by the process this one was forked
    /// from (as for [`Pool::join`](super::Pool::join)).
    Failed(Error),
}

/// Why [`Pool::join_timeout`](super::Pool::join_timeout) (or `join_deadline`) did not return
/// `Ok`.
#[derive(Debug)]
pub enum JoinTimeoutError {
    /// Workers or callbacks were still running when the time ran out.
    Timeout,
    /// The pool cannot be joined (as for [`Pool::join`](super::Pool::join)).
    Failed(Error),
}

impl TryJoinError {
    /// True for [`TryJoinError::WouldBlock`].
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryJoinError::WouldBlock)
    }
}

impl JoinTimeoutError {
    /// True for [`JoinTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, JoinTimeoutError::Timeout)
    }
}

impl fmt::Display for TryJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryJoinError::WouldBlock => f.write_str("the pool's workers are still running"),
            TryJoinError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for JoinTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinTimeoutError::Timeout => f.write_str("the pool's workers did not end in time"),
            JoinTimeoutError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TryJoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryJoinError::Failed(e) => Some(e),
            TryJoinError::WouldBlock => None,
        }
    }
}

impl std::error::Error for JoinTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinTimeoutError::Failed(e) => Some(e),
            JoinTimeoutError::Timeout => None,
        }
    }
}

impl From<TryJoinError> for Error {
    fn from(e: TryJoinError) -> Error {
        match e {
            TryJoinError::WouldBlock => Error::new(ErrorKind::Timeout, e.to_string()),
            TryJoinError::Failed(e) => e,
        }
    }
}

impl From<JoinTimeoutError> for Error {
    fn from(e: JoinTimeoutError) -> Error {
        match e {
            JoinTimeoutError::Timeout => Error::new(ErrorKind::Timeout, e.to_string()),
            JoinTimeoutError::Failed(e) => e,
        }
    }
}
