//! Process-shared synchronization that survives its holders.
//!
//! Raw algorithms on shared words live in submodules (`raw_mutex`, ...); the safe types are
//! built on them.

pub(crate) mod raw_mutex;

#[allow(unused_imports)]
pub(crate) use raw_mutex::{Acquired, RawMutex};

/// A bounded wait ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

impl From<TimedOut> for crate::Error {
    fn from(_: TimedOut) -> crate::Error {
        crate::Error::new(crate::ErrorKind::Timeout, "timed out")
    }
}
