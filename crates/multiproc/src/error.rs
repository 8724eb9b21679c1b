//! The crate-level [`Error`] for setup and OS failures, and [`ErrorKind`].
//!
//! Operations whose callers branch on the outcome have their own small enums next to them
//! (`TryPutError<T>`, `RecvError`, `LockError`, ...); those convert into [`Error`] too.

use std::borrow::Cow;
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
