//! A connection's errors: one enum per operation and form (plain, `try_`, timed), each
//! with its [`ErrorKind`], and the internal [`Stop`] that the forms map from.

use std::fmt;

use crate::error::wait_error;
use crate::error::{Error, ErrorKind};

/// Why a receive failed ([`Connection::recv`](super::Connection::recv),
/// [`Connection::recv_bytes`](super::Connection::recv_bytes) and the other
/// plain receives).
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// End of file: every copy of the peer end is closed, in every process (Python's
    /// `EOFError`). Any half-received message of a dead sender was dropped.
    Eof,
    /// This end was closed with [`Connection::close`](super::Connection::close) (Python's
    /// `OSError`).
    Closed,
    /// This end only sends (the second end of `pipe(false)`).
    SendOnly,
    /// The message was longer than the limit given to
    /// [`Connection::recv_bytes_max`](super::Connection::recv_bytes_max); it was
    /// consumed and dropped, and the connection stays usable.
    TooLong {
        /// The message's length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The buffer given to [`Connection::recv_bytes_into`](super::Connection::recv_bytes_into) was
    /// too small; here is the whole
    /// message (Python's `BufferTooShort`). The connection stays usable.
    BufferTooShort(Vec<u8>),
    /// Anything else: an OS failure, a message that does not decode as the asked type, a
    /// corrupt frame (the connection stays usable; the message is lost).
    Failed(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Eof => f.write_str(EOF_TEXT),
            RecvError::Closed => f.write_str(CLOSED_TEXT),
            RecvError::SendOnly => f.write_str("connection is send-only"),
            RecvError::TooLong { len, max } => {
                write!(
                    f,
                    "message of {len} bytes is longer than the limit of {max}"
                )
            }
            RecvError::BufferTooShort(m) => {
                write!(f, "buffer too short for a message of {} bytes", m.len())
            }
            RecvError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> RecvError {
        RecvError::Failed(e)
    }
}

impl RecvError {
    /// The broad kind, as in the crate [`Error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecvError::Eof => ErrorKind::Disconnected,
            RecvError::Closed => ErrorKind::Closed,
            RecvError::SendOnly => ErrorKind::InvalidState,
            RecvError::TooLong { .. } | RecvError::BufferTooShort(_) => ErrorKind::TooLarge,
            RecvError::Failed(e) => e.kind(),
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        match e {
            RecvError::Failed(inner) => inner,
            e => Error::new(e.kind(), e.to_string()),
        }
    }
}

/// Why a send failed ([`Connection::send`](super::Connection::send),
/// [`Connection::send_bytes`](super::Connection::send_bytes)).
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// Every copy of the peer end is closed (Python's `BrokenPipeError`).
    Disconnected,
    /// This end was closed with [`Connection::close`](super::Connection::close).
    Closed,
    /// This end only receives (the first end of `pipe(false)`).
    ReceiveOnly,
    /// Anything else: an OS failure, a value that cannot be serialized, a bad range.
    Failed(Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str(DISCONNECTED_TEXT),
            SendError::Closed => f.write_str(CLOSED_TEXT),
            SendError::ReceiveOnly => f.write_str("connection is receive-only"),
            SendError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> SendError {
        SendError::Failed(e)
    }
}

impl SendError {
    /// The broad kind, as in the crate [`Error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            SendError::Disconnected => ErrorKind::Disconnected,
            SendError::Closed => ErrorKind::Closed,
            SendError::ReceiveOnly => ErrorKind::InvalidState,
            SendError::Failed(e) => e.kind(),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        match e {
            SendError::Failed(inner) => inner,
            e => Error::new(e.kind(), e.to_string()),
        }
    }
}

pub(super) const EOF_TEXT: &str = "end of file: every copy of the other end is closed";
pub(super) const DISCONNECTED_TEXT: &str = "every copy of the other end is closed";
pub(super) const CLOSED_TEXT: &str = "connection is closed";

wait_error! {
    /// Why [`Connection::try_recv`](super::Connection::try_recv) or
    /// [`Connection::try_recv_bytes`](super::Connection::try_recv_bytes) returned no message.
    TryRecvError {
        /// No message is there now (and the peer is still there), or another receiver of
        /// this end is taking one.
        Empty => "no message to receive now", Timeout;
        /// End of file, as [`RecvError::Eof`].
        Eof => EOF_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only sends.
        SendOnly => "connection is send-only", InvalidState;
    }
    is_empty: Empty
}

wait_error! {
    /// Why a timed receive ([`Connection::recv_timeout`](super::Connection::recv_timeout),
    /// `recv_deadline`,
    /// [`Connection::recv_bytes_timeout`](super::Connection::recv_bytes_timeout),
    /// `recv_bytes_deadline`) returned no message.
    RecvTimeoutError {
        /// No message arrived before the deadline (nothing was consumed).
        Timeout => "timed out waiting for a message", Timeout;
        /// End of file, as [`RecvError::Eof`].
        Eof => EOF_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only sends.
        SendOnly => "connection is send-only", InvalidState;
    }
    is_timeout: Timeout
}

wait_error! {
    /// Why [`Connection::try_send`](super::Connection::try_send) or
    /// [`Connection::try_send_bytes`](super::Connection::try_send_bytes) did not send. The
    /// value was borrowed, so the caller still has it: `Full` carries nothing.
    TrySendError {
        /// No room now: the ring is full, another sender holds the socket, or the socket
        /// would not take the whole message at once. Nothing of the message reaches the
        /// receiver.
        Full => "no room to send now", Timeout;
        /// Every copy of the peer end is closed.
        Disconnected => DISCONNECTED_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only receives.
        ReceiveOnly => "connection is receive-only", InvalidState;
    }
    is_full: Full
}

wait_error! {
    /// Why a timed send ([`Connection::send_timeout`](super::Connection::send_timeout),
    /// `send_deadline`,
    /// [`Connection::send_bytes_timeout`](super::Connection::send_bytes_timeout),
    /// `send_bytes_deadline`) did not send. The value
    /// was borrowed, so the caller still has it: `Timeout` carries nothing.
    SendTimeoutError {
        /// There was no room for the whole message before the deadline (nobody reading).
        /// Nothing of the message reaches the receiver: a message cut off mid-way on the
        /// socket is skipped by the receiver as one of a dead sender, and the connection
        /// stays usable in both directions.
        Timeout => "timed out waiting for room to send", Timeout;
        /// Every copy of the peer end is closed.
        Disconnected => DISCONNECTED_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only receives.
        ReceiveOnly => "connection is receive-only", InvalidState;
    }
    is_timeout: Timeout
}

/// How an internal receive or send ended without its value: the deadline passed, or the
/// plain call's error. Each public form maps it onto its own error.
pub(super) enum Stop<E> {
    Timeout,
    Error(E),
}

impl<E> From<E> for Stop<E> {
    fn from(e: E) -> Self {
        Stop::Error(e)
    }
}

impl Stop<RecvError> {
    pub(super) fn plain(self) -> RecvError {
        match self {
            Stop::Error(e) => e,
            // (A wait without a deadline does not run out.)
            Stop::Timeout => RecvError::Failed(crate::Timeout.into()),
        }
    }

    pub(super) fn tried(self) -> TryRecvError {
        match self {
            Stop::Timeout => TryRecvError::Empty,
            Stop::Error(RecvError::Eof) => TryRecvError::Eof,
            Stop::Error(RecvError::Closed) => TryRecvError::Closed,
            Stop::Error(RecvError::SendOnly) => TryRecvError::SendOnly,
            Stop::Error(e) => TryRecvError::Failed(e.into()),
        }
    }

    pub(super) fn timed(self) -> RecvTimeoutError {
        match self {
            Stop::Timeout => RecvTimeoutError::Timeout,
            Stop::Error(RecvError::Eof) => RecvTimeoutError::Eof,
            Stop::Error(RecvError::Closed) => RecvTimeoutError::Closed,
            Stop::Error(RecvError::SendOnly) => RecvTimeoutError::SendOnly,
            Stop::Error(e) => RecvTimeoutError::Failed(e.into()),
        }
    }
}

impl Stop<SendError> {
    pub(super) fn plain(self) -> SendError {
        match self {
            Stop::Error(e) => e,
            Stop::Timeout => SendError::Failed(crate::Timeout.into()),
        }
    }

    pub(super) fn tried(self) -> TrySendError {
        match self {
            Stop::Timeout => TrySendError::Full,
            Stop::Error(SendError::Disconnected) => TrySendError::Disconnected,
            Stop::Error(SendError::Closed) => TrySendError::Closed,
            Stop::Error(SendError::ReceiveOnly) => TrySendError::ReceiveOnly,
            Stop::Error(SendError::Failed(e)) => TrySendError::Failed(e),
        }
    }

    pub(super) fn timed(self) -> SendTimeoutError {
        match self {
            Stop::Timeout => SendTimeoutError::Timeout,
            Stop::Error(SendError::Disconnected) => SendTimeoutError::Disconnected,
            Stop::Error(SendError::Closed) => SendTimeoutError::Closed,
            Stop::Error(SendError::ReceiveOnly) => SendTimeoutError::ReceiveOnly,
            Stop::Error(SendError::Failed(e)) => SendTimeoutError::Failed(e),
        }
    }
}

pub(super) fn os_send_error(e: std::io::Error) -> SendError {
    if e.raw_os_error() == Some(libc::EPIPE) || e.raw_os_error() == Some(libc::ECONNRESET) {
        SendError::Disconnected
    } else {
        SendError::Failed(Error::os("cannot send on connection", e))
    }
}

pub(super) fn os_recv_error(e: std::io::Error) -> RecvError {
    RecvError::Failed(Error::os("cannot receive on connection", e))
}
