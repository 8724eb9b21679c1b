//! [`Connection`] itself: making ends, sending (into the ring, or as frames over the
//! socket), the public receive calls (over `recv.rs`), polling, and the typed forms.

use std::cell::Cell;
use std::fmt;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dir::{Dir, TAG_DATA, TAG_MARKER};
use super::error::{os_send_error, Stop};
use super::recv::{give_back_assembly, settle_watched};
use super::{frame, stream};
use super::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError, DOORBELL,
    HUP_CHECK_MS, INLINE_MAX, KEEP_BUFFER_MAX, MAX_FRAME_PAYLOAD, ROOM_SLICE,
};
use crate::codec::{ident, Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys::{socket, Deadline};
use crate::wait::{
    try_wait, wait, wait_deadline, wait_timeout, TryWaitError, WaitRing, WaitTimeoutError,
    Waitable, SLEEP_SLICE,
};

/// A send's question "give up now?" (see `Connection::send_bytes_interruptible`).
pub(super) type Interrupted<'a, 'f> = Option<&'a mut (dyn FnMut() -> bool + 'f)>;

/// How long a send may wait for room: until `deadline`, or until `interrupted` says stop.
pub(super) struct Until<'a, 'f> {
    pub(super) deadline: Deadline,
    pub(super) interrupted: Interrupted<'a, 'f>,
}

/// One end of a pipe (Python's `multiprocessing.connection.Connection`).
///
/// Send with [`send`](Self::send) (any `Serialize` value, through the codec `C`) or
/// [`send_bytes`](Self::send_bytes); receive with [`recv`](Self::recv),
/// [`recv_bytes`](Self::recv_bytes) and friends; wait with [`poll`](Self::poll) or [`wait`].
///
/// Methods take `&self`: one end may be used by several threads and, through fork or by
/// sending it, by several processes at once; messages never interleave or split. An end is
/// itself `Serialize`/`Deserialize` through the fd table, so it can be sent over another
/// connection or passed to a Spawn child.
///
/// Dropping an end closes this copy of it; the peer sees end-of-file once every copy is gone.
///
/// An end from a [`Listener`](super::Listener) or a [`Client`](super::Client) has the same calls
/// over a socket only
/// ([`is_socket`](Self::is_socket)), in CPython's wire format: see [`Listener`](super::Listener)
/// for what
/// differs (no handles inside, no sending the end itself, one sender per process at a time).
pub struct Connection<C = Postcard> {
    pub(super) fd: Option<OwnedFd>,
    /// The direction this end sends on (`None`: receive-only, or closed).
    pub(super) out: Option<Dir>,
    /// The direction this end receives on (`None`: send-only, or closed).
    pub(super) inn: Option<Dir>,
    /// Largest frame payload this end writes.
    pub(super) frame_payload: usize,
    /// Coarse-clock milliseconds of the last hang-up check by a send through the ring.
    pub(super) hup_checked: AtomicU64,
    /// This copy saw the peer hang up (end of file, `EPIPE`): sends fail at once.
    pub(super) hup_seen: AtomicBool,
    /// `Some` for a connection over a byte-stream socket (from a [`Listener`](super::Listener) or a
    /// [`Client`](super::Client)): no rings, Python's framing (`stream.rs`); `out` and `inn` are
    /// `None`.
    pub(super) stream: Option<Arc<stream::Stream>>,
    pub(super) _codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Connection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_ref().map(|f| f.as_raw_fd()))
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .finish()
    }
}

thread_local! {
    /// An encode (or record) buffer per thread, taken while in use.
    static ENCODE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

pub(super) fn take_encode_buf() -> Vec<u8> {
    let mut b = ENCODE.with(|e| e.take()).unwrap_or_default();
    b.clear();
    b
}

/// Keeps the buffer for the next send, up to [`KEEP_BUFFER_MAX`]. (It was 1 MiB: a 1 MiB
/// value with its tag and length needs a 2 MiB buffer, which was allocated anew for every
/// message.)
pub(super) fn give_back_encode_buf(b: Vec<u8>) {
    if b.capacity() <= KEEP_BUFFER_MAX {
        ENCODE.with(|e| e.set(Some(b)));
    }
}

impl<C> Connection<C> {
    pub(super) fn from_parts(fd: OwnedFd, out: Option<Dir>, inn: Option<Dir>) -> Connection<C> {
        // The kernel refuses a packet larger than about the send buffer; stay well within it.
        let sndbuf = socket::send_buffer_size(fd.as_fd()).unwrap_or(212_992);
        let frame_payload = (sndbuf / 2)
            .saturating_sub(frame::HEADER_LEN + 512)
            .clamp(4096, MAX_FRAME_PAYLOAD);
        Connection {
            fd: Some(fd),
            out,
            inn,
            frame_payload,
            hup_checked: AtomicU64::new(0),
            hup_seen: AtomicBool::new(false),
            stream: None,
            _codec: PhantomData,
        }
    }

    /// An end over a connected byte-stream socket (Unix or TCP) speaking Python's framing.
    pub(super) fn from_stream(fd: OwnedFd, max_message_len: usize) -> Connection<C> {
        Connection {
            fd: Some(fd),
            out: None,
            inn: None,
            frame_payload: MAX_FRAME_PAYLOAD,
            hup_checked: AtomicU64::new(0),
            hup_seen: AtomicBool::new(false),
            stream: Some(Arc::new(stream::Stream::new(max_message_len))),
            _codec: PhantomData,
        }
    }

    /// True for an end from a [`Listener`](super::Listener) or a [`Client`](super::Client) (a
    /// socket that may reach another
    /// machine, with Python's framing), false for one from [`pipe`](super::pipe).
    pub fn is_socket(&self) -> bool {
        self.stream.is_some()
    }

    /// For `poll`: an error unless this end can receive.
    pub(super) fn check_readable(&self) -> Result<()> {
        if self.stream.is_some() {
            return match self.fd {
                Some(_) => Ok(()),
                None => Err(RecvError::Closed.into()),
            };
        }
        self.recv_fd().map(|_| ()).map_err(Error::from)
    }

    /// True when this end can receive (it is open and not the send-only end of `pipe(false)`).
    pub fn readable(&self) -> bool {
        self.fd.is_some() && (self.inn.is_some() || self.stream.is_some())
    }

    /// True when this end can send (it is open and not the receive-only end of `pipe(false)`).
    pub fn writable(&self) -> bool {
        self.fd.is_some() && (self.out.is_some() || self.stream.is_some())
    }

    /// True after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.fd.is_none()
    }

    /// Closes this copy of the end. Later calls on it fail with `Closed`; the peer gets
    /// end-of-file once every copy (in every process) is closed. Closing twice is harmless.
    pub fn close(&mut self) {
        self.fd = None;
        self.out = None;
        self.inn = None;
    }

    /// Another copy of this end (the socket is `dup`ed; the rings and locks are shared), like
    /// a copy inherited by fork. The peer sees end-of-file only once every copy is closed.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// let a2 = a.try_clone()?;
    /// drop(a);
    /// a2.send_bytes(b"still here")?;
    /// assert_eq!(b.recv_bytes()?, b"still here");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] on a closed end; an OS error when `dup` fails (fd limit).
    pub fn try_clone(&self) -> Result<Connection<C>> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "cannot clone a closed Connection"))?;
        let fd = fd
            .try_clone()
            .map_err(|e| Error::os("cannot duplicate connection", e))?;
        Ok(Connection {
            fd: Some(fd),
            out: self.out.clone(),
            inn: self.inn.clone(),
            frame_payload: self.frame_payload,
            hup_checked: AtomicU64::new(0),
            hup_seen: AtomicBool::new(false),
            stream: self.stream.clone(),
            _codec: PhantomData,
        })
    }

    /// The socket, or `None` when closed (Python's `fileno()`): the end's *readiness fd*.
    /// Asking for it makes the fd turn readable whenever a message (or end of file) is
    /// waiting on this end, for `poll(2)`, `epoll`, mio or tokio's `AsyncFd`; the exact
    /// contract, and what a poller must do, are in the [module docs](mod@crate::pipe#readiness).
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags, Timespec};
    /// let (a, b) = multiproc::pipe(true)?;
    /// let fd = b.try_as_fd().unwrap(); // asked once: from now on the socket tells
    /// a.send_bytes(b"x")?;
    /// let t = Timespec { tv_sec: 5, tv_nsec: 0 };
    /// assert_eq!(poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&t))?, 1);
    /// assert_eq!(b.try_recv_bytes()?, b"x");
    /// assert!(b.try_recv_bytes().unwrap_err().is_empty());
    /// let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    /// assert_eq!(poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&now))?, 0); // not readable
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "fileno")]
    #[doc(alias = "readiness_fd")]
    pub fn try_as_fd(&self) -> Option<BorrowedFd<'_>> {
        let fd = self.socket()?;
        self.watch();
        Some(fd)
    }

    /// The socket itself, or `None` when closed, *without* arming readiness: for code that
    /// writes or reads the socket directly beside the library (Python's
    /// `multiprocessing.reduction.send_handle`/`recv_handle` pass an fd with one raw
    /// `sendmsg`; the Python package's `fileno()` is this). Arming ([`try_as_fd`], `AsFd`)
    /// lets receives drop what they find on the socket while the ring is empty (stale
    /// doorbells), which would eat such a raw message; this accessor never arms. Not for
    /// polling: small messages do not make this fd readable unless some handle armed it.
    ///
    /// [`try_as_fd`]: Connection::try_as_fd
    pub fn socket_fd(&self) -> Option<BorrowedFd<'_>> {
        self.socket()
    }

    /// The socket, without arming readiness (the library's own use).
    pub(super) fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Marks this end's receiving direction watched (see "Readiness" in the module docs).
    /// The first call for a direction, in any process, also settles the socket with what
    /// the ring holds, as far as a receiver can.
    pub(super) fn watch(&self) {
        let (Some(fd), Some(dir)) = (self.socket(), self.inn.as_ref()) else {
            return;
        };
        if dir.watch() {
            return;
        }
        if let Some(_held) = dir.try_lock_recv() {
            settle_watched(fd, dir, true);
        }
    }

    pub(super) fn send_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &Dir), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
        self.out
            .as_ref()
            .map(|d| (fd.as_fd(), d))
            .ok_or(SendError::ReceiveOnly)
    }

    pub(super) fn recv_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &Dir), RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
        self.inn
            .as_ref()
            .map(|d| (fd.as_fd(), d))
            .ok_or(RecvError::SendOnly)
    }

    /// Sends `body` as one message (`typed`: it starts with a type tag, see
    /// `codec/ident.rs`; else raw bytes) with `fds` attached, waiting for room until
    /// `deadline`.
    pub(super) fn send_message(
        &self,
        body: &[u8],
        fds: &[OwnedFd],
        typed: bool,
        deadline: Deadline,
    ) -> std::result::Result<(), Stop<SendError>> {
        self.send_message_or(body, fds, typed, deadline, None)
    }

    /// [`send_message`](Self::send_message), also giving up (as at the deadline) when
    /// `interrupted` returns true; it is asked whenever the send has waited a while (at most
    /// [`SLEEP_SLICE`]) for room or for the send lock. A Listener/Client connection does not
    /// ask it.
    fn send_message_or(
        &self,
        body: &[u8],
        fds: &[OwnedFd],
        typed: bool,
        deadline: Deadline,
        mut interrupted: Interrupted<'_, '_>,
    ) -> std::result::Result<(), Stop<SendError>> {
        if let Some(s) = &self.stream {
            let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
            if !fds.is_empty() {
                return Err(SendError::Failed(Error::new(
                    ErrorKind::InvalidArgument,
                    "handles (fds) cannot travel over a Listener/Client connection (a socket \
                     that may reach another machine): send them over a pipe()",
                ))
                .into());
            }
            return s.send(fd.as_fd(), body, deadline);
        }
        let (fd, dir) = self.send_fd()?;
        if fds.is_empty() && body.len() <= INLINE_MAX {
            let parts = [body, &[TAG_DATA]];
            return self.put_record(
                fd,
                dir,
                &parts,
                typed,
                true,
                Until {
                    deadline,
                    interrupted: interrupted.as_deref_mut(),
                },
            );
        }
        self.send_on_socket(
            fd,
            dir,
            body,
            fds,
            typed,
            Until {
                deadline,
                interrupted,
            },
        )
    }

    /// Puts a record (the concatenation of `parts`; `typed` or raw) into the ring, waiting
    /// for room (while the peer is there) until `deadline`; then rings the doorbell if a
    /// receiver sleeps and `doorbell` is set. Running out puts nothing.
    pub(super) fn put_record(
        &self,
        fd: BorrowedFd<'_>,
        dir: &Dir,
        parts: &[&[u8]],
        typed: bool,
        doorbell: bool,
        until: Until<'_, '_>,
    ) -> std::result::Result<(), Stop<SendError>> {
        let len = parts.iter().map(|p| p.len()).sum();
        self.put_record_with(
            fd,
            dir,
            len,
            |dst| super::dir::write_parts(parts, dst),
            typed,
            doorbell,
            until,
        )
    }

    /// [`put_record`](Self::put_record) of a record of `len` bytes that `write` writes in
    /// place (called once per try: it must write the same bytes every time).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_record_with(
        &self,
        fd: BorrowedFd<'_>,
        dir: &Dir,
        len: usize,
        write: impl Fn(&mut [u8]) -> Result<()>,
        typed: bool,
        doorbell: bool,
        until: Until<'_, '_>,
    ) -> std::result::Result<(), Stop<SendError>> {
        let Until {
            deadline,
            mut interrupted,
        } = until;
        if self.hup_seen.load(Ordering::Relaxed) {
            return Err(SendError::Disconnected.into());
        }
        // The ring does not notice a peer that has gone: look now and then, before the put.
        // (After it, the message is in, and a peer may well have taken it and gone since: a
        // receiver asleep on the ring's futex is woken by the commit itself, and one that
        // ended at that message closed its end before this look, which then reported a
        // delivered message as `Disconnected`.)
        let now = crate::sys::coarse_millis();
        let last = self.hup_checked.load(Ordering::Relaxed);
        if now.wrapping_sub(last) >= HUP_CHECK_MS || last == 0 {
            self.hup_checked.store(now.max(1), Ordering::Relaxed);
            if self.peer_gone(fd)? {
                return Err(SendError::Disconnected.into());
            }
        }
        loop {
            let slice = match deadline.remaining() {
                Ok(None) => ROOM_SLICE,
                Ok(Some(left)) => left.min(ROOM_SLICE),
                Err(()) => Duration::ZERO, // one more look
            };
            if dir
                .put_with(len, typed, &write, slice)
                .map_err(SendError::Failed)?
            {
                break;
            }
            // No room for a while: is anyone still there to read it?
            if self.peer_gone(fd)? {
                return Err(SendError::Disconnected.into());
            }
            if deadline.expired() || interrupted.as_mut().is_some_and(|f| f()) {
                return Err(Stop::Timeout);
            }
        }
        if doorbell && dir.must_ring() {
            return match socket::send_msg(fd, &[IoSlice::new(&DOORBELL)], &[], true) {
                Ok(_) => Ok(()),
                // Full: doorbells (or frames) are already waiting to be read.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => match os_send_error(e) {
                    // The message is in; its peer went after the put (maybe having taken
                    // it): the next send says so.
                    SendError::Disconnected => {
                        self.hup_seen.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                    other => Err(other.into()),
                },
            };
        }
        Ok(())
    }

    /// True when every copy of the peer end is closed (the socket reports a hang-up).
    pub(super) fn peer_gone(&self, fd: BorrowedFd<'_>) -> std::result::Result<bool, SendError> {
        let r = socket::poll_rw(&[(fd, false)], Some(Duration::ZERO))
            .map_err(|e| SendError::Failed(Error::os("cannot poll connection", e)))?;
        if r[0].hangup {
            self.hup_seen.store(true, Ordering::Relaxed);
        }
        Ok(r[0].hangup)
    }

    /// Sends a message over the socket: a marker into the ring, then the frames, under the
    /// direction's send lock, until `deadline`.
    ///
    /// Running out before the marker is committed sends nothing. Running out after it (the
    /// socket stays full: nobody reads) abandons the message: the send lock is released
    /// with some frames on the socket, and a receiver that reaches the marker finds the
    /// message unfinished with no sender, exactly as after a sender killed mid-message, and
    /// skips it (see the table in the module docs). Either way no part of the message is
    /// ever delivered, and later messages are.
    pub(super) fn send_on_socket(
        &self,
        fd: BorrowedFd<'_>,
        dir: &Dir,
        body: &[u8],
        fds: &[OwnedFd],
        typed: bool,
        until: Until<'_, '_>,
    ) -> std::result::Result<(), Stop<SendError>> {
        let Until {
            deadline,
            mut interrupted,
        } = until;
        let _held = match interrupted.as_mut() {
            None if deadline.is_never() => dir.lock_send().map_err(SendError::Failed)?,
            None => dir.lock_send_until(deadline).ok_or(Stop::Timeout)?,
            Some(f) => loop {
                // In slices, asking `interrupted` between them.
                let slice = match deadline.remaining() {
                    Ok(left) => Deadline::within(left.map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE))),
                    Err(()) => Deadline::passed(),
                };
                if let Some(held) = dir.lock_send_until(slice) {
                    break held;
                }
                if deadline.expired() || f() {
                    return Err(Stop::Timeout);
                }
            },
        };
        let seq = dir.next_seq();
        let mut marker = [TAG_MARKER; 5];
        marker[..4].copy_from_slice(&seq.to_le_bytes());
        // No doorbell: the frames wake a sleeping receiver. The marker's frame says whether
        // the message is typed.
        let parts = [&marker[..]];
        self.put_record(
            fd,
            dir,
            &parts,
            typed,
            false,
            Until {
                deadline,
                interrupted: interrupted.as_deref_mut(),
            },
        )?;
        let r = self.send_frames(fd, seq, body, fds, deadline, interrupted);
        if dir.watched() {
            // A trailing doorbell, behind the last frame (or what went of them): the receiver
            // may drop doorbells that lie in front of the frames, announcing records that
            // stay in the ring behind this message; this one stays on the socket until the
            // ring is empty (see "Readiness" in the module docs). Full: frames are waiting.
            let _ = socket::send_msg(fd, &[IoSlice::new(&DOORBELL)], &[], true);
        }
        r
    }

    /// Writes message `seq`'s frames (the marker is committed, the send lock held).
    pub(super) fn send_frames(
        &self,
        fd: BorrowedFd<'_>,
        seq: u32,
        body: &[u8],
        fds: &[OwnedFd],
        deadline: Deadline,
        mut interrupted: Interrupted<'_, '_>,
    ) -> std::result::Result<(), Stop<SendError>> {
        let max_fds = socket::MAX_FDS_PER_MSG;
        for p in frame::plan(seq, body.len(), fds.len(), self.frame_payload, max_fds) {
            let h = p.header.encode();
            let bytes = &body[p.bytes];
            let fd_list: Vec<BorrowedFd<'_>> = fds[p.fds].iter().map(|f| f.as_fd()).collect();
            let iov = [IoSlice::new(&h), IoSlice::new(bytes)];
            let n = if deadline.is_never() && interrupted.is_none() {
                socket::send_msg(fd, &iov, &fd_list, false).map_err(os_send_error)?
            } else {
                send_packet_until(fd, &iov, &fd_list, deadline, interrupted.as_deref_mut())?
            };
            check_sent(n, frame::HEADER_LEN + bytes.len())?;
        }
        Ok(())
    }
}

impl<C> Connection<C> {
    /// Sends `buf` as one message (Python's `send_bytes`), waiting for room as long as it
    /// takes. An empty `buf` is a message too.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// a.send_bytes(b"")?;
    /// a.send_bytes(&vec![7u8; 1 << 20])?;
    /// assert_eq!(b.recv_bytes()?, b"");
    /// assert_eq!(b.recv_bytes()?.len(), 1 << 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`SendError::Disconnected`] when every copy of the peer end is closed; `Closed` or
    /// `ReceiveOnly` when this end cannot send; `Failed` for an OS failure.
    pub fn send_bytes(&self, buf: &[u8]) -> std::result::Result<(), SendError> {
        self.send_message(buf, &[], false, Deadline::never())
            .map_err(|s| s.plain())
    }

    /// Sends `buf` as one message if there is room for all of it now; never waits (see
    /// [`try_send`](Connection::try_send)).
    ///
    /// # Errors
    /// [`TrySendError::Full`]; otherwise as [`send_bytes`](Self::send_bytes).
    pub fn try_send_bytes(&self, buf: &[u8]) -> std::result::Result<(), TrySendError> {
        self.send_message(buf, &[], false, Deadline::passed())
            .map_err(|s| s.tried())
    }

    /// Sends `buf` as one message, waiting at most `timeout` (any `Duration`) for room.
    /// Running out delivers nothing of it and leaves the connection usable (see
    /// [`send_timeout`](Connection::send_timeout)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe(true)?;
    /// // Nobody reads `b`: 64 MiB do not fit into the socket.
    /// let big = vec![0u8; 64 << 20];
    /// let err = a.send_bytes_timeout(&big, Duration::from_millis(50)).unwrap_err();
    /// assert!(err.is_timeout());
    /// a.send_bytes(b"next")?;
    /// assert_eq!(b.recv_bytes()?, b"next", "the cut-off message is skipped");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`]; otherwise as [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_timeout(
        &self,
        buf: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendTimeoutError> {
        self.send_message(buf, &[], false, Deadline::within(timeout))
            .map_err(|s| s.timed())
    }

    /// Sends `buf` as one message, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`send_bytes_timeout`](Self::send_bytes_timeout).
    pub fn send_bytes_deadline(
        &self,
        buf: &[u8],
        deadline: Instant,
    ) -> std::result::Result<(), SendTimeoutError> {
        self.send_message(buf, &[], false, Deadline::at(deadline))
            .map_err(|s| s.timed())
    }

    /// Sends `buf` as one message, waiting for room as long as it takes, for bindings that
    /// must notice signals (Python's Ctrl-C): `interrupted()` is asked whenever the send has
    /// waited a while for room or for the send lock (at most 100 ms, less when a signal
    /// interrupts the wait). True gives up as a timed send that runs out does: nothing of
    /// the message is delivered, later messages are. (A Listener/Client connection does not
    /// ask it: there the send waits as [`send_bytes`](Self::send_bytes) does.)
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// let big = vec![7u8; 16 << 20]; // more than the socket holds: nobody reads yet
    /// let err = a.send_bytes_interruptible(&big, || true).unwrap_err();
    /// assert!(err.is_timeout(), "interrupted");
    /// a.send_bytes_interruptible(b"next", || true)?; // room: never asked
    /// assert_eq!(b.recv_bytes()?, b"next", "the cut-off message is skipped");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] when interrupted; otherwise as
    /// [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_interruptible(
        &self,
        buf: &[u8],
        mut interrupted: impl FnMut() -> bool,
    ) -> std::result::Result<(), SendTimeoutError> {
        self.send_message_or(buf, &[], false, Deadline::never(), Some(&mut interrupted))
            .map_err(|s| s.timed())
    }

    /// Sends `buf[offset..offset + size]` as one message (Python's `send_bytes(buf, offset,
    /// size)`). Its `try_`, `_timeout` and `_deadline` forms are those of `send_bytes` on
    /// the slice: `a.send_bytes_timeout(&buf[offset..][..size], t)`.
    ///
    /// # Errors
    /// `Failed` with [`ErrorKind::InvalidArgument`] when the range is outside `buf`;
    /// otherwise as [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_range(
        &self,
        buf: &[u8],
        offset: usize,
        size: usize,
    ) -> std::result::Result<(), SendError> {
        let end = offset.checked_add(size).filter(|&e| e <= buf.len());
        let Some(end) = end else {
            return Err(SendError::Failed(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "range {offset}+{size} is outside a buffer of {} bytes",
                    buf.len()
                ),
            )));
        };
        self.send_bytes(&buf[offset..end])
    }

    /// Receives one whole message as bytes (Python's `recv_bytes()`), waiting for one as long
    /// as it takes.
    ///
    /// # Errors
    /// [`RecvError::Eof`] when every copy of the peer end is closed and nothing is left;
    /// `Closed` / `SendOnly` when this end cannot receive; `Failed` for OS failures and
    /// corrupt frames, and with [`ErrorKind::Codec`] for a typed message (from `send`: it
    /// is consumed, the connection goes on; see the [`codec`](crate::codec) docs).
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.recv_message(None, Deadline::never())
            .map(|m| m.0)
            .map_err(|s| s.plain())
    }

    /// Receives one whole message as bytes if one is there now; never waits.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`]; otherwise as [`recv_bytes`](Self::recv_bytes).
    pub fn try_recv_bytes(&self) -> std::result::Result<Vec<u8>, TryRecvError> {
        self.recv_message(None, Deadline::passed())
            .map(|m| m.0)
            .map_err(|s| s.tried())
    }

    /// Receives one whole message as bytes, waiting at most `timeout` (any `Duration`) for
    /// one to begin (see [`recv_timeout`](Connection::recv_timeout)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe(true)?;
    /// assert!(b.recv_bytes_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// a.send_bytes(b"x")?;
    /// assert_eq!(b.recv_bytes_timeout(Duration::from_secs(5))?, b"x");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`]; otherwise as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Vec<u8>, RecvTimeoutError> {
        self.recv_message(None, Deadline::within(timeout))
            .map(|m| m.0)
            .map_err(|s| s.timed())
    }

    /// Receives one whole message as bytes, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`recv_bytes_timeout`](Self::recv_bytes_timeout).
    pub fn recv_bytes_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Vec<u8>, RecvTimeoutError> {
        self.recv_message(None, Deadline::at(deadline))
            .map(|m| m.0)
            .map_err(|s| s.timed())
    }

    /// Like [`recv_bytes`](Self::recv_bytes), but a message longer than `maxlength` bytes is
    /// consumed, dropped, and reported as [`RecvError::TooLong`] (Python's
    /// `recv_bytes(maxlength)`; unlike Python, the connection stays usable). Its bytes are
    /// never held in memory beyond one frame. (A Python spelling with the plain form only:
    /// to bound the wait, [`poll_timeout`](Self::poll_timeout) first.)
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes), plus `TooLong`.
    pub fn recv_bytes_max(&self, maxlength: usize) -> std::result::Result<Vec<u8>, RecvError> {
        self.recv_message(Some(maxlength), Deadline::never())
            .map(|m| m.0)
            .map_err(|s| s.plain())
    }

    /// Receives one message into `buf[offset..]` and returns its length (Python's
    /// `recv_bytes_into`).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// a.send_bytes(b"abc")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_bytes_into(&mut buf, 2)?, 3);
    /// assert_eq!(&buf[2..5], b"abc");
    /// let long = b"too long for it";
    /// a.send_bytes(long)?;
    /// match b.recv_bytes_into(&mut buf, 0) {
    ///     Err(multiproc::RecvError::BufferTooShort(whole)) => assert_eq!(whole, long),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvError::BufferTooShort`] with the whole message when it does not fit (nothing is
    /// written to `buf`); `Failed` with [`ErrorKind::InvalidArgument`] when `offset` is beyond
    /// `buf`; otherwise as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_into(
        &self,
        buf: &mut [u8],
        offset: usize,
    ) -> std::result::Result<usize, RecvError> {
        if offset > buf.len() {
            return Err(RecvError::Failed(Error::new(
                ErrorKind::InvalidArgument,
                format!("offset {offset} is beyond a buffer of {} bytes", buf.len()),
            )));
        }
        let msg = self.recv_bytes()?;
        let room = &mut buf[offset..];
        if msg.len() > room.len() {
            return Err(RecvError::BufferTooShort(msg));
        }
        room[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// Waits until a message (or end-of-file) is there to receive, as long as it takes;
    /// never consumes a message (Python's `poll(None)`).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when this end is closed, [`ErrorKind::InvalidState`] on a
    /// send-only end, an OS error if `poll` fails.
    pub fn poll(&self) -> Result<()> {
        self.check_readable()?;
        wait(&[self]).map(|_| ())
    }

    /// Returns at once: `Ok` when a message (or end-of-file) is there to receive (Python's
    /// `poll()`, whose `True` is `is_ok()`). Never consumes a message.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe(true)?;
    /// assert!(b.try_poll().unwrap_err().is_would_block());
    /// a.send_bytes(b"x")?;
    /// b.poll_timeout(Duration::from_secs(5))?;
    /// b.poll()?; // still there
    /// assert_eq!(b.recv_bytes()?, b"x");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TryWaitError::WouldBlock`] when nothing is there; `Failed` as for
    /// [`poll`](Self::poll).
    pub fn try_poll(&self) -> std::result::Result<(), TryWaitError> {
        self.check_readable()?;
        try_wait(&[self]).map(|_| ())
    }

    /// Waits at most `timeout` (any `Duration`) until a message (or end-of-file) is there
    /// (Python's `poll(timeout)`, whose `True` is `is_ok()`). Never consumes a message.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`]; `Failed` as for [`poll`](Self::poll).
    pub fn poll_timeout(&self, timeout: Duration) -> std::result::Result<(), WaitTimeoutError> {
        self.check_readable()?;
        wait_timeout(&[self], timeout).map(|_| ())
    }

    /// Waits until `deadline` at most until a message (or end-of-file) is there.
    ///
    /// # Errors
    /// As [`poll_timeout`](Self::poll_timeout).
    pub fn poll_deadline(&self, deadline: Instant) -> std::result::Result<(), WaitTimeoutError> {
        self.check_readable()?;
        wait_deadline(&[self], deadline).map(|_| ())
    }
}

impl<C: Codec> Connection<C> {
    /// Sends `value`, serialized with the codec `C` (Python's `send(obj)`), waiting for room
    /// as long as it takes (a message longer than the socket's buffer waits for the reader).
    /// Handles inside it (connection ends, queues, locks, ...) travel with their fds and
    /// work in the receiver.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// let (c, d) = multiproc::pipe(true)?;
    /// a.send(&c)?;                         // a connection end inside a message
    /// let c2: multiproc::Connection = b.recv()?;
    /// c2.send(&vec![1, 2, 3])?;
    /// assert_eq!(d.recv::<Vec<i32>>()?, [1, 2, 3]);
    /// # drop(c);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Failed` with [`ErrorKind::Codec`] when the value cannot be serialized; otherwise as
    /// [`send_bytes`](Self::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<(), SendError> {
        self.send_value(value, Deadline::never())
            .map_err(|s| s.plain())
    }

    /// Sends `value` if there is room for the whole message now; never waits.
    ///
    /// A small message (up to [`INLINE_MAX`] bytes, without fds) goes if the connection's
    /// ring has room. A larger one goes over the socket and only if the socket takes all of
    /// it at once; when it does not, the frames that went are skipped by the receiver (as a
    /// dead sender's). `send` borrows the value, so on `Full` the caller still has it:
    /// the variant carries nothing.
    ///
    /// # Errors
    /// [`TrySendError::Full`]; otherwise as [`send`](Self::send).
    pub fn try_send<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> std::result::Result<(), TrySendError> {
        self.send_value(value, Deadline::passed())
            .map_err(|s| s.tried())
    }

    /// Sends `value`, waiting at most `timeout` (any `Duration`) for room.
    ///
    /// Running out delivers nothing of the message, and the connection stays usable: a
    /// message cut off on the socket (nobody read it in time) is skipped by the receiver as
    /// one of a dead sender, and the messages after it arrive whole.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] (the caller still has `value`); otherwise as
    /// [`send`](Self::send).
    pub fn send_timeout<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> std::result::Result<(), SendTimeoutError> {
        self.send_value(value, Deadline::within(timeout))
            .map_err(|s| s.timed())
    }

    /// Sends `value`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Instant,
    ) -> std::result::Result<(), SendTimeoutError> {
        self.send_value(value, Deadline::at(deadline))
            .map_err(|s| s.timed())
    }

    pub(super) fn send_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Deadline,
    ) -> std::result::Result<(), Stop<SendError>> {
        if self.stream.is_some() {
            // The tag travels in the message itself (see `recv_with`).
            let mut buf = take_encode_buf();
            ident::put_tag::<T>(&mut buf);
            let r = match handle::with_exported_fds(|| C::encode(value, &mut buf)) {
                Ok(((), fds)) => self.send_message(&buf, &fds, true, deadline),
                Err(e) => Err(SendError::Failed(e).into()),
            };
            give_back_encode_buf(buf);
            return r;
        }
        let (fd, dir) = self.send_fd()?;
        // Straight into the ring when the codec tells the length and the value holds no
        // handles (a handle refuses to be measured outside a message that carries fds; then
        // the value goes through the buffer below, which collects them): one copy less.
        // Measured (issue 19): a 1 MiB `Vec<u8>` made three copies (encode, into the ring,
        // out of it) against `send_bytes`' two, typed/raw 0.67x in the same run.
        if let Ok(Some(n)) = C::encoded_len(value) {
            let len = ident::TAG_LEN + n + 1;
            if len - 1 <= INLINE_MAX {
                let tag = ident::tag_of::<T>().to_le_bytes();
                return self.put_record_with(
                    fd,
                    dir,
                    len,
                    |dst| {
                        let (head, rest) = dst.split_at_mut(ident::TAG_LEN);
                        head.copy_from_slice(&tag);
                        let (body, last) = rest.split_at_mut(n);
                        last[0] = TAG_DATA;
                        C::encode_to_slice(value, body)
                    },
                    true,
                    true,
                    Until {
                        deadline,
                        interrupted: None,
                    },
                );
            }
        }
        let mut buf = take_encode_buf();
        // The type tag, then the value (`codec/ident.rs`).
        ident::put_tag::<T>(&mut buf);
        let encoded = handle::with_exported_fds(|| C::encode(value, &mut buf));
        let r = match encoded {
            Ok(((), fds)) if fds.is_empty() && buf.len() <= INLINE_MAX => self.put_record(
                fd,
                dir,
                &[&buf, &[TAG_DATA]],
                true,
                true,
                Until {
                    deadline,
                    interrupted: None,
                },
            ),
            Ok(((), fds)) => self.send_message(&buf, &fds, true, deadline),
            Err(e) => Err(SendError::Failed(e).into()),
        };
        give_back_encode_buf(buf);
        r
    }

    /// Receives one message and decodes it as a `T` (Python's `recv()`), waiting for one as
    /// long as it takes. Handles inside it come back to life with the fds that travelled
    /// with the message.
    ///
    /// # Errors
    /// `Failed` with [`ErrorKind::Codec`] when the message is not a valid `T`: a value of
    /// another type (named in the error), raw bytes from `send_bytes`, or bytes that do not
    /// decode. The message is consumed; the connection goes on. Otherwise as
    /// [`recv_bytes`](Self::recv_bytes).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// a.send(&(1u8, 2u8))?;
    /// assert_eq!(b.recv::<String>().unwrap_err().kind(), multiproc::ErrorKind::Codec);
    /// a.send(&(1u8, 2u8))?;
    /// assert_eq!(b.recv::<(u8, u8)>()?, (1, 2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv<T: DeserializeOwned>(&self) -> std::result::Result<T, RecvError> {
        self.recv_value(Deadline::never()).map_err(|s| s.plain())
    }

    /// Receives one message if one is there now; never waits.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe(true)?;
    /// assert!(b.try_recv::<u32>().unwrap_err().is_empty());
    /// a.send(&7u32)?;
    /// # b.poll()?;
    /// assert_eq!(b.try_recv::<u32>()?, 7);
    /// drop(a);
    /// assert!(matches!(b.try_recv::<u32>(), Err(multiproc::pipe::TryRecvError::Eof)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when no message is there (and the peer is);
    /// [`TryRecvError::Eof`] when every copy of the peer end is closed and nothing is left;
    /// otherwise as [`recv`](Self::recv).
    pub fn try_recv<T: DeserializeOwned>(&self) -> std::result::Result<T, TryRecvError> {
        self.recv_value(Deadline::passed()).map_err(|s| s.tried())
    }

    /// Receives one message, waiting at most `timeout` (any `Duration`) for one to begin.
    ///
    /// Running out consumes nothing. The deadline bounds the wait for a message to *begin*:
    /// one whose transfer has begun (a large message, sent in frames over the socket) is
    /// received to its end, which takes as long as its sender takes to write it; a sender
    /// that was killed or gave up mid-message is noticed within milliseconds, so this never
    /// hangs.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`]; otherwise as [`recv`](Self::recv).
    pub fn recv_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> std::result::Result<T, RecvTimeoutError> {
        self.recv_value(Deadline::within(timeout))
            .map_err(|s| s.timed())
    }

    /// Receives one message, waiting until `deadline` at most for one to begin.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline<T: DeserializeOwned>(
        &self,
        deadline: Instant,
    ) -> std::result::Result<T, RecvTimeoutError> {
        self.recv_value(Deadline::at(deadline))
            .map_err(|s| s.timed())
    }

    pub(super) fn recv_value<T: DeserializeOwned>(
        &self,
        deadline: Deadline,
    ) -> std::result::Result<T, Stop<RecvError>> {
        // Decoded in place in the ring: no copy, no allocation of the bytes. A panicking
        // `Deserialize` consumes its message like a failed decode; the panic resumes after
        // the receive lock is released (`codec::decode_guarded`).
        let mut panicked = None;
        // A message of another type, or raw bytes, is refused before the codec sees it (and
        // consumed): see `codec/ident.rs`.
        let tag = ident::tag_of::<T>();
        let r = self.recv_with(
            |body, typed| {
                let bytes = ident::value_of::<T>(tag, body, typed)?;
                Ok(crate::codec::decode_guarded::<T, C>(bytes, &mut panicked)?)
            },
            |(body, fds), typed| {
                // The bytes are this thread's assembly buffer (a pipe's) or a new one (a
                // Listener/Client's): kept for the next typed receive either way.
                let r = match ident::value_of::<T>(tag, &body, typed) {
                    Ok(bytes) if fds.is_empty() => C::decode(bytes).map_err(RecvError::from),
                    Ok(bytes) => {
                        handle::with_imported_fds(fds, || C::decode(bytes)).map_err(RecvError::from)
                    }
                    Err(e) => Err(e.into()),
                };
                give_back_assembly(body);
                r
            },
            None,
            true,
            true,
            deadline,
        );
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        r
    }
}

pub(super) fn check_sent(n: usize, want: usize) -> std::result::Result<(), SendError> {
    if n == want {
        Ok(())
    } else {
        Err(SendError::Failed(Error::new(
            ErrorKind::Os,
            format!("short send on a packet socket ({n} of {want} bytes)"),
        )))
    }
}

/// Sends one packet without blocking, waiting for room in the socket until `deadline`
/// (a timed send's frame). `Err(Timeout)` when the socket stayed full.
pub(super) fn send_packet_until(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    deadline: Deadline,
    mut interrupted: Interrupted<'_, '_>,
) -> std::result::Result<usize, Stop<SendError>> {
    let mut polled = false;
    loop {
        match socket::send_msg(fd, iov, fds, true) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(os_send_error(e).into()),
        }
        let Ok(left) = deadline.remaining() else {
            return Err(Stop::Timeout);
        };
        if polled && interrupted.as_mut().is_some_and(|f| f()) {
            return Err(Stop::Timeout);
        }
        polled = true;
        let slice = left.map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE));
        let r = socket::poll_rw(&[(fd, true)], Some(slice))
            .map_err(|e| SendError::Failed(Error::os("cannot poll connection", e)))?;
        if r[0].hangup && !r[0].writable {
            return Err(SendError::Disconnected.into());
        }
    }
}

impl<C> AsFd for Connection<C> {
    /// The socket (Python's `fileno()`), the end's readiness fd: as
    /// [`Connection::try_as_fd`], whose docs say what asking for it does.
    ///
    /// # Panics
    /// If the end is closed; use [`Connection::try_as_fd`] to check.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.try_as_fd()
            .expect("as_fd called on a closed Connection")
    }
}

impl<C> AsRawFd for Connection<C> {
    /// The socket's fd number (Python's `fileno()`), the end's readiness fd: as
    /// [`Connection::try_as_fd`].
    ///
    /// # Panics
    /// If the end is closed.
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl<C> Waitable for Connection<C> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        // Not `try_as_fd`: `wait` counts itself as a sleeper and needs no watch.
        self.socket()
    }

    fn wait_ring(&self) -> Option<WaitRing<'_>> {
        let (fd, dir) = self.recv_fd().ok()?;
        Some(WaitRing::new(fd, dir))
    }
}
