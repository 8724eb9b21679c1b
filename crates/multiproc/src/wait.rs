//! Waiting on many objects at once (Python's `multiprocessing.connection.wait`): [`wait`] and
//! its forms over anything [`Waitable`] — connection ends, process sentinels, raw fds.
//!
//! Below the facades that implement [`Waitable`] (`pipe`, `process`): a connection's
//! shared-memory ring is seen here only through the crate's [`Ring`] trait.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::wait_error;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{socket, Deadline};

/// `wait` re-checks this often while another receiver is busy with a connection.
const BUSY_SLICE: Duration = Duration::from_millis(1);
/// Sleepers look at the ring at least this often, whatever the doorbell says (a sender
/// killed between claiming the doorbell and ringing it costs this much latency, no hang).
pub(crate) const SLEEP_SLICE: Duration = Duration::from_millis(100);

wait_error! {
    /// Why [`Connection::try_poll`](crate::Connection::try_poll) or [`try_wait`] found nothing
    /// ready.
    TryWaitError {
        /// Nothing is ready now.
        WouldBlock => "nothing is ready now", Timeout;
    }
    is_would_block: WouldBlock
}

wait_error! {
    /// Why [`Connection::poll_timeout`](crate::Connection::poll_timeout), `poll_deadline`,
    /// [`wait_timeout`] or
    /// [`wait_deadline`] found nothing ready.
    WaitTimeoutError {
        /// Nothing became ready before the deadline.
        Timeout => "timed out waiting for readiness", Timeout;
    }
    is_timeout: Timeout
}

/// Something [`wait`] can wait on: it is ready when its fd is readable (for a
/// [`Connection`](crate::Connection): when a message or end-of-file is there to receive).
///
/// Implemented for [`Connection`](crate::Connection), for [`Process`](crate::Process) (it has
/// ended: Python's
/// `Process.sentinel`), and for raw fds. Mix kinds with `&dyn Waitable`:
/// `wait(&[&conn as &dyn Waitable, &process])`.
pub trait Waitable {
    /// The fd to poll for readability, or `None` when the object is closed.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Readiness that the fd alone does not show (a connection's shared-memory ring);
    /// `None` for plain fds. Not meant to be implemented outside this crate.
    #[doc(hidden)]
    fn wait_ring(&self) -> Option<WaitRing<'_>> {
        None
    }
}

/// A connection's receiving side as [`wait`] sees it (see [`Waitable::wait_ring`]).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct WaitRing<'a> {
    fd: BorrowedFd<'a>,
    ring: &'a dyn Ring,
}

impl fmt::Debug for WaitRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitRing").field("fd", &self.fd).finish()
    }
}

impl<'a> WaitRing<'a> {
    /// A receiving side: its socket and its ring.
    pub(crate) fn new(fd: BorrowedFd<'a>, ring: &'a dyn Ring) -> WaitRing<'a> {
        WaitRing { fd, ring }
    }
}

/// The ring of a connection's receiving direction, as [`wait`] uses it (implemented by the
/// pipe's direction, `pipe/dir.rs`, in `pipe/recv.rs`).
pub(crate) trait Ring {
    /// True when the ring holds a record.
    fn has_records(&self) -> bool;
    /// Counts (or uncounts) a sleeper in the direction's waiters: a sender that commits a
    /// record while one is counted rings the doorbell on the socket.
    fn sleeping(&self, on: bool);
    /// The socket `fd` was readable: is there a message (or end of file), or only doorbells
    /// and leftovers (dropped, under the receive lock, if it is free)?
    fn settle(&self, fd: BorrowedFd<'_>) -> Result<Settled>;
}

/// What [`Ring::settle`] found on a connection whose socket is readable.
pub(crate) enum Settled {
    Ready,
    NotReady,
    /// Another receiver holds the receive lock: look again soon.
    Busy,
}

impl Waitable for OwnedFd {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(*self)
    }
}

/// Waits until at least one of `objects` is ready, as long as it takes, and returns the
/// indices of the ready ones, in order — never empty (Python's
/// `multiprocessing.connection.wait(objects)`).
///
/// ```
/// use std::time::Duration;
/// use multiproc::pipe::{try_wait, wait, wait_timeout};
/// let (a, b) = multiproc::pipe(true)?;
/// let (c, d) = multiproc::pipe(true)?;
/// assert!(try_wait(&[&b, &d]).unwrap_err().is_would_block());
/// c.send_bytes(b"x")?;
/// assert_eq!(wait(&[&b, &d])?, [1]);
/// assert_eq!(wait_timeout(&[&b, &d], Duration::from_secs(5))?, [1]);
/// # drop(a);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Closed`] when one of the objects is closed; an OS error if `poll` fails;
/// [`ErrorKind::InvalidArgument`] for an empty `objects` (which would wait forever).
#[doc(alias = "connection.wait")]
pub fn wait<W: Waitable + ?Sized>(objects: &[&W]) -> Result<Vec<usize>> {
    if objects.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "wait: no objects to wait for (it would wait forever)",
        ));
    }
    loop {
        let ready = wait_until(objects, Deadline::never())?;
        if !ready.is_empty() {
            return Ok(ready);
        }
    }
}

/// Returns at once the indices of the `objects` that are ready now (Python's
/// `wait(objects, 0)`).
///
/// # Errors
/// [`TryWaitError::WouldBlock`] when none is ready; `Failed` as for [`wait`] (an empty
/// `objects` is never ready).
pub fn try_wait<W: Waitable + ?Sized>(
    objects: &[&W],
) -> std::result::Result<Vec<usize>, TryWaitError> {
    match wait_until(objects, Deadline::passed())? {
        ready if ready.is_empty() => Err(TryWaitError::WouldBlock),
        ready => Ok(ready),
    }
}

/// Waits at most `timeout` (any `Duration`) until at least one of `objects` is ready and
/// returns the indices of the ready ones (Python's `wait(objects, timeout)`, whose empty list
/// is `Err(Timeout)` here).
///
/// # Errors
/// [`WaitTimeoutError::Timeout`]; `Failed` as for [`wait`] (an empty `objects` just waits
/// out the timeout, as in Python).
pub fn wait_timeout<W: Waitable + ?Sized>(
    objects: &[&W],
    timeout: Duration,
) -> std::result::Result<Vec<usize>, WaitTimeoutError> {
    timed_wait(objects, Deadline::within(timeout))
}

/// Waits until `deadline` at most until at least one of `objects` is ready.
///
/// # Errors
/// As [`wait_timeout`].
pub fn wait_deadline<W: Waitable + ?Sized>(
    objects: &[&W],
    deadline: Instant,
) -> std::result::Result<Vec<usize>, WaitTimeoutError> {
    timed_wait(objects, Deadline::at(deadline))
}

fn timed_wait<W: Waitable + ?Sized>(
    objects: &[&W],
    deadline: Deadline,
) -> std::result::Result<Vec<usize>, WaitTimeoutError> {
    match wait_until(objects, deadline)? {
        ready if ready.is_empty() => Err(WaitTimeoutError::Timeout),
        ready => Ok(ready),
    }
}

/// The indices of the ready `objects` once one is, or at `deadline` (then maybe none).
fn wait_until<W: Waitable + ?Sized>(objects: &[&W], deadline: Deadline) -> Result<Vec<usize>> {
    let mut fds = Vec::with_capacity(objects.len());
    let mut rings = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        fds.push(o.wait_fd().ok_or_else(|| {
            Error::new(ErrorKind::Closed, format!("wait: object #{i} is closed"))
        })?);
        rings.push(o.wait_ring());
    }
    if fds.is_empty() {
        if let Ok(Some(t)) = deadline.remaining() {
            std::thread::sleep(t);
        }
        return Ok(Vec::new());
    }
    loop {
        // Count in as a sleeper on every ring, then look at the rings: a sender either
        // finds us counted (and rings the doorbell, waking the poll) or its record is seen.
        for r in rings.iter().flatten() {
            r.ring.sleeping(true);
        }
        let in_ring: Vec<bool> = rings
            .iter()
            .map(|r| r.is_some_and(|r| r.ring.has_records()))
            .collect();
        let has_rings = rings.iter().any(Option::is_some);
        let t = if in_ring.contains(&true) {
            Some(Duration::ZERO)
        } else {
            let left = deadline.remaining().unwrap_or(Some(Duration::ZERO));
            if has_rings {
                Some(left.map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE)))
            } else {
                left
            }
        };
        let polled = socket::poll_readable(&fds, t);
        for r in rings.iter().flatten() {
            r.ring.sleeping(false);
        }
        let polled = polled.map_err(|e| Error::os("wait: poll failed", e))?;
        let timed_out = !polled.iter().any(|p| p.readable);
        let mut ready = Vec::new();
        let mut busy = false;
        for (i, p) in polled.iter().enumerate() {
            if in_ring[i] {
                ready.push(i);
            } else if let Some(r) = rings[i] {
                // Readable: a message, end of file, or only doorbells and leftovers. After a
                // quiet slice: look anyway (see `SLEEP_SLICE`).
                if p.readable || timed_out {
                    match r.ring.settle(r.fd)? {
                        Settled::Ready => ready.push(i),
                        Settled::Busy => busy = p.readable,
                        Settled::NotReady => {}
                    }
                }
            } else if p.readable {
                ready.push(i);
            }
        }
        if !ready.is_empty() || deadline.expired() {
            return Ok(ready);
        }
        if busy {
            let nap = match deadline.remaining() {
                Ok(Some(r)) => r.min(BUSY_SLICE),
                _ => BUSY_SLICE,
            };
            std::thread::sleep(nap);
        }
    }
}
