//! Per-operation errors of the queues. Put errors hand the item back.
//!
//! Each converts into the crate [`Error`]; `Full` and `Empty` (a wait of zero length that
//! ran out) map to [`ErrorKind::Timeout`].

use std::fmt;

use crate::error::{Error, ErrorKind};

macro_rules! put_error {
    (
        $(#[$m:meta])*
        $name:ident { $( $(#[$vm:meta])* $var:ident => $text:literal, $kind:ident ),* $(,)? }
    ) => {
        $(#[$m])*
        pub enum $name<T> {
            $( $(#[$vm])* $var(T), )*
            /// The item could not be put: it failed to serialize, is larger than the queue's
            /// byte capacity ([`ErrorKind::TooLarge`], the message says how to raise it), or
            /// the queue's memory was found corrupted.
            Failed(T, Error),
        }

        impl<T> $name<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $( $name::$var(t) => t, )*
                    $name::Failed(t, _) => t,
                }
            }

            /// The broad kind, as in the crate [`Error`].
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $( $name::$var(_) => ErrorKind::$kind, )*
                    $name::Failed(_, e) => e.kind(),
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$var(_) => f.write_str(concat!(stringify!($var), "(..)")), )*
                    $name::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$var(_) => f.write_str($text), )*
                    $name::Failed(_, e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(_, e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Error {
                match e {
                    $name::Failed(_, e) => e,
                    other => Error::new(other.kind(), other.to_string()),
                }
            }
        }
    };
}

put_error! {
    /// Why [`put`](super::Queue::put) failed.
    PutError {
        /// The queue is closed.
        Closed => "the queue is closed", Closed,
    }
}

put_error! {
    /// Why [`try_put`](super::Queue::try_put) failed.
    TryPutError {
        /// The queue is full (its `maxsize` items, or no ring bytes left for this one).
        Full => "the queue is full", Timeout,
        /// The queue is closed.
        Closed => "the queue is closed", Closed,
    }
}

put_error! {
    /// Why [`put_timeout`](super::Queue::put_timeout) failed.
    PutTimeoutError {
        /// The queue stayed full until the timeout ran out.
        Timeout => "timed out waiting for room in the queue", Timeout,
        /// The queue is closed.
        Closed => "the queue is closed", Closed,
    }
}

macro_rules! get_error {
    (
        $(#[$m:meta])*
        $name:ident { $( $(#[$vm:meta])* $var:ident => $text:literal, $kind:ident ),* $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A message was taken but did not decode as the queue's item type (it is gone;
            /// the queue goes on), or the queue's memory was found corrupted (the queue was
            /// reset and goes on; the message says how many items were lost).
            Failed(Error),
        }

        impl $name {
            /// The broad kind, as in the crate [`Error`].
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $( $name::$var => ErrorKind::$kind, )*
                    $name::Failed(e) => e.kind(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$var => f.write_str($text), )*
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

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                match e {
                    $name::Failed(e) => e,
                    other => Error::new(other.kind(), other.to_string()),
                }
            }
        }
    };
}

get_error! {
    /// Why [`get`](super::Queue::get) failed.
    GetError {
        /// The queue is closed and drained.
        Closed => "the queue is closed and empty", Closed,
    }
}

get_error! {
    /// Why [`try_get`](super::Queue::try_get) failed.
    TryGetError {
        /// Nothing is queued right now.
        Empty => "the queue is empty", Timeout,
        /// The queue is closed and drained.
        Closed => "the queue is closed and empty", Closed,
    }
}

get_error! {
    /// Why [`get_timeout`](super::Queue::get_timeout) failed.
    GetTimeoutError {
        /// Nothing arrived before the timeout ran out.
        Timeout => "timed out waiting for an item", Timeout,
        /// The queue is closed and drained.
        Closed => "the queue is closed and empty", Closed,
    }
}

impl<T> TryPutError<T> {
    /// True for [`TryPutError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }
}

impl<T> PutTimeoutError<T> {
    /// True for [`PutTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }
}

impl TryGetError {
    /// True for [`TryGetError::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }
}

impl GetTimeoutError {
    /// True for [`GetTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }
}
