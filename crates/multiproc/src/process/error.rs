//! How a child ended ([`ExitStatus`]) and why a join gave no value: [`JoinError`],
//! [`TryJoinError`], [`JoinTimeoutError`] — one per call, each holding exactly the outcomes
//! that call can have. All three convert into the crate [`Error`] (for `?`).

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::sys::proc;

/// How a child process ended: Python's `exitcode` as data.
///
/// ```
/// use multiproc::process::ExitStatus;
/// use multiproc::Process;
///
/// let p = Process::fork(|| -> () { std::process::exit(3) })?;
/// let _ = p.join();
/// assert_eq!(p.exit_status(), Some(ExitStatus::Code(3)));
/// assert_eq!(p.exitcode(), Some(3));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code: 0 after its target returned, 1 after a panic, `n` after
    /// `std::process::exit(n)`.
    Code(i32),
    /// It was killed by this signal: 15 (`SIGTERM`) after [`terminate`], 9 (`SIGKILL`) after
    /// [`kill`], 6 (`SIGABRT`) after `std::process::abort()`.
    ///
    /// [`terminate`]: super::Process::terminate
    /// [`kill`]: super::Process::kill
    Signal(i32),
}

impl ExitStatus {
    /// The exit code, unless it was killed by a signal.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Code(_) => None,
            ExitStatus::Signal(s) => Some(s),
        }
    }

    /// Python's `exitcode`: the exit code, or minus the signal's number (`-15` after
    /// `terminate`).
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl From<proc::ExitStatus> for ExitStatus {
    fn from(s: proc::ExitStatus) -> ExitStatus {
        match s {
            proc::ExitStatus::Code(c) => ExitStatus::Code(c),
            proc::ExitStatus::Signal(s) => ExitStatus::Signal(s),
        }
    }
}

impl fmt::Display for ExitStatus {
    /// `exit code 3`, `signal 9 (SIGKILL)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => match proc::signal_name(s) {
                "signal" => write!(f, "signal {s}"),
                name => write!(f, "signal {s} ({name})"),
            },
        }
    }
}

macro_rules! join_error {
    (
        $(#[$m:meta])*
        $name:ident { $( $(#[$vm:meta])* $var:ident => $text:literal, $kind:ident ),* $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// The target panicked; the child then exited with code 1.
            Panicked {
                /// The panic message (`"a panic with a non-string payload"` when the payload
                /// was not a string).
                message: String,
                /// How the child ended.
                status: ExitStatus,
            },
            /// The child ended before its target returned: it called `exit`, aborted, or was
            /// killed by a signal ([`ExitStatus::Signal`]).
            Exited(ExitStatus),
            /// The target returned, but its value did not come back: it could not be
            /// serialized in the child (the message says why) or did not decode here; or a
            /// spawned child could not start its target; or waiting for the child failed (an
            /// OS error; then `status` is `None`).
            Failed {
                /// What went wrong.
                error: Error,
                /// How the child ended, when it is known.
                status: Option<ExitStatus>,
            },
            /// An earlier join handed out the outcome already.
            AlreadyJoined,
        }

        impl $name {
            /// How the child ended, when it has and that is known.
            pub fn exit_status(&self) -> Option<ExitStatus> {
                match self {
                    $name::Panicked { status, .. } | $name::Exited(status) => Some(*status),
                    $name::Failed { status, .. } => *status,
                    _ => None,
                }
            }

            /// The target's panic message, if it panicked.
            pub fn panic_message(&self) -> Option<&str> {
                match self {
                    $name::Panicked { message, .. } => Some(message),
                    _ => None,
                }
            }

            /// The broad kind, as in the crate [`Error`]: `ChildPanicked`, `ChildFailed`,
            /// `InvalidState` (already joined), `Timeout` (also for "not yet").
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $( $name::$var => ErrorKind::$kind, )*
                    $name::Panicked { .. } => ErrorKind::ChildPanicked,
                    $name::Exited(_) => ErrorKind::ChildFailed,
                    $name::Failed { error, .. } => error.kind(),
                    $name::AlreadyJoined => ErrorKind::InvalidState,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$var => f.write_str($text), )*
                    $name::Panicked { message, status } => write!(
                        f,
                        "the child panicked: {message} (exitcode {})",
                        status.exitcode()
                    ),
                    $name::Exited(s @ ExitStatus::Code(_)) => write!(
                        f,
                        "the child ended with {s} before its target returned (exitcode {})",
                        s.exitcode()
                    ),
                    $name::Exited(s) => write!(
                        f,
                        "the child was killed by {s} (exitcode {})",
                        s.exitcode()
                    ),
                    $name::Failed { error, .. } => fmt::Display::fmt(error, f),
                    $name::AlreadyJoined => {
                        f.write_str("the child's outcome was handed out by an earlier join")
                    }
                }
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed { error, .. } => Some(error),
                    _ => None,
                }
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                match e {
                    $name::Failed { error, .. } => error,
                    other => Error::new(other.kind(), other.to_string()),
                }
            }
        }
    };
    (@from $from:ident => $name:ident) => {
        impl From<$from> for $name {
            fn from(e: $from) -> $name {
                match e {
                    $from::Panicked { message, status } => $name::Panicked { message, status },
                    $from::Exited(s) => $name::Exited(s),
                    $from::Failed { error, status } => $name::Failed { error, status },
                    $from::AlreadyJoined => $name::AlreadyJoined,
                }
            }
        }
    };
}

join_error! {
    /// Why [`join`](super::Process::join) gave no value.
    ///
    /// ```
    /// use multiproc::process::{ExitStatus, JoinError};
    /// use multiproc::Process;
    ///
    /// let p = Process::fork(|| -> u32 { panic!("no luck") })?;
    /// match p.join() {
    ///     Err(JoinError::Panicked { message, status }) => {
    ///         assert_eq!(message, "no luck");
    ///         assert_eq!(status, ExitStatus::Code(1));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    JoinError {}
}

join_error! {
    /// Why [`try_join`](super::Process::try_join) gave no value.
    TryJoinError {
        /// The child is still running (it is not touched).
        WouldBlock => "the child is still running", Timeout,
    }
}

join_error! {
    /// Why [`join_timeout`](super::Process::join_timeout) or
    /// [`join_deadline`](super::Process::join_deadline) gave no value.
    JoinTimeoutError {
        /// The child was still running when the time ran out (it is not touched).
        Timeout => "timed out waiting for the child to end", Timeout,
    }
}

join_error!(@from JoinError => TryJoinError);
join_error!(@from JoinError => JoinTimeoutError);

impl TryJoinError {
    /// True for [`TryJoinError::WouldBlock`]: the child is still running.
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryJoinError::WouldBlock)
    }
}

impl JoinTimeoutError {
    /// True for [`JoinTimeoutError::Timeout`]: the child is still running.
    pub fn is_timeout(&self) -> bool {
        matches!(self, JoinTimeoutError::Timeout)
    }
}
