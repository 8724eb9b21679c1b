//! The per-end locks of a connection: a robust process-shared mutex in a shared arena slot.
//!
//! Every copy of one connection end (in this process, in fork children, in processes it was
//! sent to) shares two of them: the *send* lock, held while a message's frames are written,
//! so that messages of concurrent senders never interleave; and the *recv* lock, held while
//! one message's frames are read, so that concurrent receivers never split one. A holder that
//! dies (SIGKILL) releases them through the robust-mutex protocol; the state they protect lives
//! in the socket, and the frame protocol (`frame.rs`) copes with a half-written or half-read
//! message, so "owner died" needs no repair here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Shared, ShmObject, ShmSafe};
use crate::sync::RawMutex;
use crate::sys::Deadline;

/// Shared object kind of an end lock (pipe codes are 24–31).
const KIND_END_LOCK: u8 = 24;

#[repr(C)]
pub(crate) struct LockCell {
    mutex: RawMutex,
}

// SAFETY: `RawMutex` is `ShmSafe` (valid for every bit pattern, no pointers, used only through
// `&` with its own synchronization), and `LockCell` is `repr(C)` with nothing else in it.
unsafe impl ShmSafe for LockCell {}

impl ShmObject for LockCell {
    const KIND: u8 = KIND_END_LOCK;
}

/// One end lock (a cheap handle; clones share the lock).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct EndLock(Shared<LockCell>);

/// Holds an [`EndLock`]; unlocks on drop.
#[must_use]
pub(crate) struct EndGuard<'a>(&'a EndLock);

impl EndLock {
    /// A new unlocked lock in shared memory.
    pub(crate) fn new() -> Result<EndLock> {
        Ok(EndLock(Shared::new(|c: &LockCell| c.mutex.init())?))
    }

    /// Takes the lock, waiting as long as it takes. A previous holder that died is not an
    /// error here (see the module docs).
    pub(crate) fn lock(&self) -> Result<EndGuard<'_>> {
        match self.0.get().mutex.lock(Deadline::never()) {
            Ok(_) => Ok(EndGuard(self)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "connection lock: wait without deadline timed out",
            )),
        }
    }
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.get().mutex.unlock();
    }
}
