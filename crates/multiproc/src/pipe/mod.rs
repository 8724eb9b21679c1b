//! Pipes: [`pipe`] makes two connected [`Connection`] ends (Python's `Pipe()`), and [`wait`]
//! waits on many of them (Python's `multiprocessing.connection.wait`).
//!
//! An end is a `SOCK_SEQPACKET` Unix socket: the kernel keeps message boundaries, so a message
//! is never merged with another. Each message is sent as one packet when it fits (the fast
//! path: one `sendmsg`, one `recvmsg`), else as several frames (see `frame.rs`) written under
//! the end's process-shared send lock and read under its receive lock, so that one end may be
//! used by many processes at once without ever interleaving or splitting messages — which
//! Python's pipes do not promise. A process killed mid-message never leaves a torn message
//! behind: receivers get whole messages, an error, or end-of-file.
//!
//! Handles (a `Connection`, a `Queue`, a `Lock`, ...) inside a sent value travel with their
//! file descriptors (`SCM_RIGHTS`), so the receiving process can use them even though it
//! never inherited them.

mod frame;
mod lock;

use std::cell::Cell;
use std::fmt;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::frame::{Assembler, Header, Kind, Outcome};
use self::lock::EndLock;
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys::socket;

/// Socket buffer size asked for at creation (the kernel caps it at `net.core.wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest frame payload a sender writes (also bounded by the socket's send buffer).
const MAX_FRAME_PAYLOAD: usize = 256 << 10;
/// Largest frame a receiver accepts (header + payload); bigger packets are corrupt.
const MAX_FRAME: usize = frame::HEADER_LEN + MAX_FRAME_PAYLOAD;

/// Makes a connected pair of connection ends (Python's `Pipe(duplex)`).
///
/// With `duplex = true` both ends send and receive. With `duplex = false` the first end only
/// receives and the second only sends (Python's order: `r, w = Pipe(False)`); using an end the
/// wrong way gives [`RecvError::SendOnly`] / [`SendError::ReceiveOnly`].
///
/// ```
/// let (a, b) = multiproc::pipe(true)?;
/// a.send(&("hello", 42))?;
/// assert_eq!(b.recv::<(String, i32)>()?, ("hello".to_string(), 42));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// An OS error when the socket pair or the shared locks cannot be created (fd limit, memory).
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    pipe_with::<Postcard>(duplex)
}

/// [`pipe`] with a chosen [`Codec`] for [`Connection::send`] and [`Connection::recv`].
///
/// # Errors
/// As [`pipe`].
pub fn pipe_with<C: Codec>(duplex: bool) -> Result<(Connection<C>, Connection<C>)> {
    let (a, b) =
        socket::seqpacket_pair().map_err(|e| Error::os("cannot create a socket pair", e))?;
    for fd in [&a, &b] {
        // Best effort: a bigger buffer means bigger frames and fewer wake-ups.
        let _ = socket::set_buffer_sizes(fd.as_fd(), SOCKET_BUFFER);
    }
    let ends = if duplex {
        (
            Connection::from_parts(a, true, true, Some(EndLock::new()?), Some(EndLock::new()?)),
            Connection::from_parts(b, true, true, Some(EndLock::new()?), Some(EndLock::new()?)),
        )
    } else {
        (
            Connection::from_parts(a, true, false, None, Some(EndLock::new()?)),
            Connection::from_parts(b, false, true, Some(EndLock::new()?), None),
        )
    };
    Ok(ends)
}

/// Why a receive failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// End of file: every copy of the peer end is closed, in every process (Python's
    /// `EOFError`). Any half-received message of a dead sender was dropped.
    Eof,
    /// This end was closed with [`Connection::close`] (Python's `OSError`).
    Closed,
    /// This end only sends (the second end of `pipe(false)`).
    SendOnly,
    /// The message was longer than the limit given to [`Connection::recv_bytes_max`]; it was
    /// consumed and dropped, and the connection stays usable.
    TooLong {
        /// The message's length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The buffer given to [`Connection::recv_bytes_into`] was too small; here is the whole
    /// message (Python's `BufferTooShort`). The connection stays usable.
    BufferTooShort(Vec<u8>),
    /// Anything else: an OS failure, a message that does not decode as the asked type, a
    /// corrupt frame (the connection stays usable; the message is lost).
    Other(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Eof => f.write_str("end of file: every copy of the other end is closed"),
            RecvError::Closed => f.write_str("connection is closed"),
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
            RecvError::Other(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Other(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> RecvError {
        RecvError::Other(e)
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        let kind = match &e {
            RecvError::Eof => ErrorKind::Disconnected,
            RecvError::Closed => ErrorKind::Closed,
            RecvError::SendOnly => ErrorKind::InvalidState,
            RecvError::TooLong { .. } | RecvError::BufferTooShort(_) => ErrorKind::TooLarge,
            RecvError::Other(_) => match e {
                RecvError::Other(inner) => return inner,
                _ => unreachable!(),
            },
        };
        Error::new(kind, e.to_string())
    }
}

/// Why a send failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// Every copy of the peer end is closed (Python's `BrokenPipeError`).
    Disconnected,
    /// This end was closed with [`Connection::close`].
    Closed,
    /// This end only receives (the first end of `pipe(false)`).
    ReceiveOnly,
    /// Anything else: an OS failure, a value that cannot be serialized, a bad range.
    Other(Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str("every copy of the other end is closed"),
            SendError::Closed => f.write_str("connection is closed"),
            SendError::ReceiveOnly => f.write_str("connection is receive-only"),
            SendError::Other(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Other(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> SendError {
        SendError::Other(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        let kind = match e {
            SendError::Disconnected => ErrorKind::Disconnected,
            SendError::Closed => ErrorKind::Closed,
            SendError::ReceiveOnly => ErrorKind::InvalidState,
            SendError::Other(inner) => return inner,
        };
        Error::new(kind, e.to_string())
    }
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
pub struct Connection<C = Postcard> {
    fd: Option<OwnedFd>,
    readable: bool,
    writable: bool,
    /// Held while sending one message (shared by every copy of this end).
    send_lock: Option<EndLock>,
    /// Held while receiving one message (shared by every copy of this end).
    recv_lock: Option<EndLock>,
    /// Largest frame payload this end writes.
    frame_payload: usize,
    _codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Connection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_ref().map(|f| f.as_raw_fd()))
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

/// Message ids: distinct per process (pid in the high bits) and per message.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    (std::process::id().wrapping_mul(0x9E37_79B1)) ^ n
}

thread_local! {
    /// A receive buffer of `MAX_FRAME` bytes per thread, taken while in use.
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    /// An encode buffer per thread, taken while in use.
    static ENCODE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

fn take_scratch() -> Box<[u8]> {
    SCRATCH
        .with(|s| s.take())
        .unwrap_or_else(|| vec![0u8; MAX_FRAME].into_boxed_slice())
}

fn give_back_scratch(b: Box<[u8]>) {
    SCRATCH.with(|s| s.set(Some(b)));
}

fn os_send_error(e: std::io::Error) -> SendError {
    if e.raw_os_error() == Some(libc::EPIPE) || e.raw_os_error() == Some(libc::ECONNRESET) {
        SendError::Disconnected
    } else {
        SendError::Other(Error::os("cannot send on connection", e))
    }
}

impl<C> Connection<C> {
    fn from_parts(
        fd: OwnedFd,
        readable: bool,
        writable: bool,
        send_lock: Option<EndLock>,
        recv_lock: Option<EndLock>,
    ) -> Connection<C> {
        // The kernel refuses a packet larger than about the send buffer; stay well within it.
        let sndbuf = socket::send_buffer_size(fd.as_fd()).unwrap_or(212_992);
        let frame_payload = (sndbuf / 2)
            .saturating_sub(frame::HEADER_LEN + 512)
            .clamp(4096, MAX_FRAME_PAYLOAD);
        Connection {
            fd: Some(fd),
            readable,
            writable,
            send_lock,
            recv_lock,
            frame_payload,
            _codec: PhantomData,
        }
    }

    /// True when this end can receive (it is open and not the send-only end of `pipe(false)`).
    pub fn readable(&self) -> bool {
        self.fd.is_some() && self.readable
    }

    /// True when this end can send (it is open and not the receive-only end of `pipe(false)`).
    pub fn writable(&self) -> bool {
        self.fd.is_some() && self.writable
    }

    /// True after [`close`](Self::close).
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// Closes this copy of the end. Later calls on it fail with `Closed`; the peer gets
    /// end-of-file once every copy (in every process) is closed. Closing twice is harmless.
    pub fn close(&mut self) {
        self.fd = None;
        self.send_lock = None;
        self.recv_lock = None;
    }

    /// Another copy of this end (the socket is `dup`ed; the locks are shared), like a copy
    /// inherited by fork. The peer sees end-of-file only once every copy is closed.
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
            readable: self.readable,
            writable: self.writable,
            send_lock: self.send_lock.clone(),
            recv_lock: self.recv_lock.clone(),
            frame_payload: self.frame_payload,
            _codec: PhantomData,
        })
    }

    /// The socket, or `None` when closed (Python's `fileno()`).
    #[doc(alias = "fileno")]
    pub fn try_as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    fn send_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &EndLock), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
        match (&self.send_lock, self.writable) {
            (Some(l), true) => Ok((fd.as_fd(), l)),
            _ => Err(SendError::ReceiveOnly),
        }
    }

    fn recv_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &EndLock), RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
        match (&self.recv_lock, self.readable) {
            (Some(l), true) => Ok((fd.as_fd(), l)),
            _ => Err(RecvError::SendOnly),
        }
    }

    /// Sends `head ++ body` as one message with `fds` attached.
    fn send_message(
        &self,
        head: &[u8],
        body: &[u8],
        fds: &[OwnedFd],
    ) -> std::result::Result<(), SendError> {
        let (fd, lock) = self.send_fd()?;
        let len = head.len() + body.len();
        let max_fds = socket::MAX_FDS_PER_MSG;
        let _held = lock.lock()?;
        if len <= self.frame_payload && fds.len() <= max_fds {
            // The fast path: one packet.
            let h = Header {
                kind: Kind::Whole,
                id: 0,
                index: 0,
                count: 1,
                total: len as u64,
            }
            .encode();
            let borrowed: Vec<BorrowedFd<'_>>;
            let fd_list: &[BorrowedFd<'_>] = if fds.is_empty() {
                &[]
            } else {
                borrowed = fds.iter().map(|f| f.as_fd()).collect();
                &borrowed
            };
            let iov = [IoSlice::new(&h), IoSlice::new(head), IoSlice::new(body)];
            let n = socket::send_msg(fd, &iov, fd_list, false).map_err(os_send_error)?;
            return check_sent(n, frame::HEADER_LEN + len);
        }
        let id = next_id();
        for p in frame::plan(id, len, fds.len(), self.frame_payload, max_fds) {
            let h = p.header.encode();
            // The frame's bytes may straddle `head` and `body`.
            let (s, e) = (p.bytes.start, p.bytes.end);
            let hs = &head[s.min(head.len())..e.min(head.len())];
            let bs = &body[s.saturating_sub(head.len())..e.saturating_sub(head.len())];
            let fd_list: Vec<BorrowedFd<'_>> = fds[p.fds].iter().map(|f| f.as_fd()).collect();
            let iov = [IoSlice::new(&h), IoSlice::new(hs), IoSlice::new(bs)];
            let n = socket::send_msg(fd, &iov, &fd_list, false).map_err(os_send_error)?;
            check_sent(n, frame::HEADER_LEN + hs.len() + bs.len())?;
        }
        Ok(())
    }

    /// Receives one whole message and the fds that came with it.
    fn recv_message(
        &self,
        max: Option<usize>,
    ) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        let (fd, lock) = self.recv_fd()?;
        let _held = lock.lock()?;
        let mut scratch = take_scratch();
        let r = recv_frames(fd, &mut scratch, max);
        give_back_scratch(scratch);
        r
    }

    /// Sends `buf` as one message (Python's `send_bytes`). An empty `buf` is a message too.
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
    /// `ReceiveOnly` when this end cannot send; `Other` for an OS failure.
    pub fn send_bytes(&self, buf: &[u8]) -> std::result::Result<(), SendError> {
        self.send_message(&[], buf, &[])
    }

    /// Sends `buf[offset..offset + size]` as one message (Python's `send_bytes(buf, offset,
    /// size)`).
    ///
    /// # Errors
    /// `Other` with [`ErrorKind::InvalidArgument`] when the range is outside `buf`; otherwise
    /// as [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_range(
        &self,
        buf: &[u8],
        offset: usize,
        size: usize,
    ) -> std::result::Result<(), SendError> {
        let end = offset.checked_add(size).filter(|&e| e <= buf.len());
        let Some(end) = end else {
            return Err(SendError::Other(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "range {offset}+{size} is outside a buffer of {} bytes",
                    buf.len()
                ),
            )));
        };
        self.send_message(&[], &buf[offset..end], &[])
    }

    /// Receives one whole message as bytes (Python's `recv_bytes()`). Blocks until a message
    /// arrives; use [`poll`](Self::poll) or [`wait`] to wait with a timeout.
    ///
    /// # Errors
    /// [`RecvError::Eof`] when every copy of the peer end is closed and nothing is left;
    /// `Closed` / `SendOnly` when this end cannot receive; `Other` for OS failures and
    /// corrupt frames.
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        Ok(self.recv_message(None)?.0)
    }

    /// Like [`recv_bytes`](Self::recv_bytes), but a message longer than `maxlength` bytes is
    /// consumed, dropped, and reported as [`RecvError::TooLong`] (Python's
    /// `recv_bytes(maxlength)`; unlike Python, the connection stays usable). Its bytes are
    /// never held in memory beyond one frame.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes), plus `TooLong`.
    pub fn recv_bytes_max(&self, maxlength: usize) -> std::result::Result<Vec<u8>, RecvError> {
        Ok(self.recv_message(Some(maxlength))?.0)
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
    /// a.send_bytes(b"too long for it")?;
    /// match b.recv_bytes_into(&mut buf, 0) {
    ///     Err(multiproc::RecvError::BufferTooShort(whole)) => assert_eq!(whole, b"too long for it"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvError::BufferTooShort`] with the whole message when it does not fit (nothing is
    /// written to `buf`); `Other` with [`ErrorKind::InvalidArgument`] when `offset` is beyond
    /// `buf`; otherwise as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_into(
        &self,
        buf: &mut [u8],
        offset: usize,
    ) -> std::result::Result<usize, RecvError> {
        if offset > buf.len() {
            return Err(RecvError::Other(Error::new(
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

    /// True when a message (or end-of-file) is there to receive; waits up to `timeout`
    /// (`None`: forever, `Some(ZERO)`: just look). Never consumes anything.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"x")?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// assert!(b.poll(None)?); // still there
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when this end is closed, [`ErrorKind::InvalidState`] on a
    /// send-only end, an OS error if `poll` fails.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let (fd, _) = self.recv_fd().map_err(Error::from)?;
        let r = socket::poll_readable(&[fd], timeout)
            .map_err(|e| Error::os("cannot poll connection", e))?;
        Ok(r[0].readable)
    }
}

impl<C: Codec> Connection<C> {
    /// Sends `value`, serialized with the codec `C` (Python's `send(obj)`). Handles inside it
    /// (connection ends, queues, locks, ...) travel with their fds and work in the receiver.
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
    /// `Other` with [`ErrorKind::Codec`] when the value cannot be serialized; otherwise as
    /// [`send_bytes`](Self::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<(), SendError> {
        self.send_fd()?;
        let mut buf = ENCODE.with(|e| e.take()).unwrap_or_default();
        buf.clear();
        let encoded = handle::with_exported_fds(|| C::encode(value, &mut buf));
        let r = match encoded {
            Ok(((), fds)) => self.send_message(&[], &buf, &fds),
            Err(e) => Err(SendError::Other(e)),
        };
        if buf.capacity() <= 1 << 20 {
            ENCODE.with(|e| e.set(Some(buf)));
        }
        r
    }

    /// Receives one message and decodes it as a `T` (Python's `recv()`). Handles inside it
    /// come back to life with the fds that travelled with the message.
    ///
    /// # Errors
    /// `Other` with [`ErrorKind::Codec`] when the message is not a valid `T` (it is consumed);
    /// otherwise as [`recv_bytes`](Self::recv_bytes).
    pub fn recv<T: DeserializeOwned>(&self) -> std::result::Result<T, RecvError> {
        let (bytes, fds) = self.recv_message(None)?;
        if fds.is_empty() {
            return Ok(C::decode(&bytes)?);
        }
        Ok(handle::with_imported_fds(fds, || C::decode(&bytes))?)
    }
}

fn check_sent(n: usize, want: usize) -> std::result::Result<(), SendError> {
    if n == want {
        Ok(())
    } else {
        Err(SendError::Other(Error::new(
            ErrorKind::Os,
            format!("short send on a packet socket ({n} of {want} bytes)"),
        )))
    }
}

/// `recvmsg`, but first polls without blocking for up to [`futex::SPIN`](crate::sys::futex::SPIN) (when another CPU can run
/// the sender). A reply that comes within the spin is picked up without either side paying for
/// a sleep and a cross-CPU wake-up, which on a virtual machine costs tens of microseconds.
fn recv_spinning(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<socket::Received> {
    if crate::sys::may_spin() {
        let start = std::time::Instant::now();
        loop {
            match socket::recv_msg(fd, buf, fds, true, false) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() >= crate::sys::futex::SPIN {
                        break;
                    }
                    std::hint::spin_loop();
                }
                r => return r,
            }
        }
    }
    socket::recv_msg(fd, buf, fds, false, false)
}

/// Reads frames until a message is complete (the caller holds the receive lock).
fn recv_frames(
    fd: BorrowedFd<'_>,
    scratch: &mut [u8],
    max: Option<usize>,
) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
    let mut asm = Assembler::new(max);
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut fds_lost = false;
    loop {
        let mut frame_fds = Vec::new();
        let r = recv_spinning(fd, scratch, &mut frame_fds)
            .map_err(|e| RecvError::Other(Error::os("cannot receive on connection", e)))?;
        if r.len == 0 {
            return Err(RecvError::Eof);
        }
        if r.truncated {
            // Not one of ours (we never write bigger frames): drop it and any partial.
            return Err(RecvError::Other(Error::new(
                ErrorKind::Codec,
                format!(
                    "received a packet of {} bytes, larger than any frame",
                    r.len
                ),
            )));
        }
        let push = asm.push(&scratch[..r.len]);
        if push.started {
            fds.clear();
            fds_lost = false;
        }
        if push.keeps_fds() {
            fds.append(&mut frame_fds);
            fds_lost |= r.fds_truncated;
        }
        match push.outcome {
            Outcome::Pending | Outcome::Skipped => continue,
            Outcome::Complete(msg) => {
                if fds_lost {
                    return Err(RecvError::Other(Error::new(
                        ErrorKind::Os,
                        "file descriptors attached to the message were lost (fd limit?)",
                    )));
                }
                return Ok((msg, fds));
            }
            Outcome::TooLong(len) => {
                return Err(RecvError::TooLong {
                    len,
                    max: max.unwrap_or(usize::MAX),
                })
            }
            Outcome::Corrupt(why) => {
                return Err(RecvError::Other(Error::new(
                    ErrorKind::Codec,
                    format!("corrupt frame on connection: {why}"),
                )))
            }
        }
    }
}

impl<C> AsFd for Connection<C> {
    /// The socket (Python's `fileno()`).
    ///
    /// # Panics
    /// If the end is closed; use [`Connection::try_as_fd`] to check.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.try_as_fd()
            .expect("as_fd called on a closed Connection")
    }
}

impl<C> AsRawFd for Connection<C> {
    /// The socket's fd number (Python's `fileno()`).
    ///
    /// # Panics
    /// If the end is closed.
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fd: u32,
    readable: bool,
    writable: bool,
    send_lock: Option<EndLock>,
    recv_lock: Option<EndLock>,
}

impl<C> Serialize for Connection<C> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| crate::handle::ser_err::<S::Error>("cannot send a closed Connection"))?;
        let index =
            handle::export_fd(fd.as_fd(), None).map_err(crate::handle::ser_err::<S::Error>)?;
        Wire {
            fd: index,
            readable: self.readable,
            writable: self.writable,
            send_lock: self.send_lock.clone(),
            recv_lock: self.recv_lock.clone(),
        }
        .serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for Connection<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        if w.readable != w.recv_lock.is_some() || w.writable != w.send_lock.is_some() {
            return Err(crate::handle::de_err::<D::Error>(
                "connection description is inconsistent (direction vs locks)",
            ));
        }
        let fd = handle::import_fd(w.fd).map_err(crate::handle::de_err::<D::Error>)?;
        if !socket::is_unix_seqpacket(fd.as_fd()) {
            return Err(crate::handle::de_err::<D::Error>(
                "received fd for a Connection is not a Unix SOCK_SEQPACKET socket",
            ));
        }
        Ok(Connection::from_parts(
            fd,
            w.readable,
            w.writable,
            w.send_lock,
            w.recv_lock,
        ))
    }
}

/// Any file descriptor, made sendable: inside a value given to [`Connection::send`] (or to a
/// Spawn child's arguments) it travels by `SCM_RIGHTS`, and the receiver gets its own copy —
/// Python's `multiprocessing.reduction.send_handle` / `recv_handle`.
///
/// ```
/// use std::io::{Read, Write};
/// use multiproc::pipe::Fd;
/// let (a, b) = multiproc::pipe(true)?;
/// let (r, w) = std::io::pipe()?;
/// a.send(&Fd(w.into()))?;
/// let Fd(w2) = b.recv()?;
/// std::fs::File::from(w2).write_all(b"through the fd")?;
/// let mut s = String::new();
/// std::fs::File::from(std::os::fd::OwnedFd::from(r)).read_to_string(&mut s)?;
/// assert_eq!(s, "through the fd");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "send_handle")]
#[doc(alias = "recv_handle")]
#[derive(Debug)]
pub struct Fd(pub OwnedFd);

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let i = handle::export_fd(self.0.as_fd(), None).map_err(handle::ser_err::<S::Error>)?;
        s.serialize_u32(i)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Fd, D::Error> {
        let i = u32::deserialize(d)?;
        Ok(Fd(handle::import_fd(i).map_err(handle::de_err::<D::Error>)?))
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Something [`wait`] can wait on: it is ready when its fd is readable.
///
/// Implemented for [`Connection`] (a message or end-of-file is there), for
/// [`Process`](crate::Process) (it has ended: Python's `Process.sentinel`), and for raw fds.
/// Mix kinds with `&dyn Waitable`: `wait(&[&conn as &dyn Waitable, &process], None)`.
pub trait Waitable {
    /// The fd to poll for readability, or `None` when the object is closed.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;
}

impl<C> Waitable for Connection<C> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.try_as_fd()
    }
}

impl<R> Waitable for crate::Process<R> {
    /// The process's sentinel (a pidfd): ready once the process has ended.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sentinel())
    }
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

/// Waits until at least one of `objects` is ready or `timeout` passes (`None`: forever) and
/// returns the indices of the ready ones, in order — empty on timeout (Python's
/// `multiprocessing.connection.wait`).
///
/// ```
/// use std::time::Duration;
/// let (a, b) = multiproc::pipe(true)?;
/// let (c, d) = multiproc::pipe(true)?;
/// assert!(multiproc::wait(&[&b, &d], Some(Duration::ZERO))?.is_empty());
/// c.send_bytes(b"x")?;
/// assert_eq!(multiproc::wait(&[&b, &d], Some(Duration::from_secs(5)))?, [1]);
/// # drop(a);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Closed`] when one of the objects is closed; an OS error if `poll` fails.
#[doc(alias = "connection.wait")]
pub fn wait<W: Waitable + ?Sized>(objects: &[&W], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut fds = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        fds.push(o.wait_fd().ok_or_else(|| {
            Error::new(ErrorKind::Closed, format!("wait: object #{i} is closed"))
        })?);
    }
    if fds.is_empty() {
        if let Some(t) = timeout {
            std::thread::sleep(t);
        }
        return Ok(Vec::new());
    }
    let ready =
        socket::poll_readable(&fds, timeout).map_err(|e| Error::os("wait: poll failed", e))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| r.readable)
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_basics() {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            a.send_bytes(&big).unwrap();
            a.send(&"after").unwrap();
            big
        });
        let got = b.recv_bytes().unwrap();
        assert_eq!(b.recv::<String>().unwrap(), "after");
        let big = t.join().unwrap();
        assert_eq!(got, big);
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
    }

    #[test]
    fn directions_and_close() {
        let (mut r, w) = pipe(false).unwrap();
        assert!(matches!(r.send_bytes(b"x"), Err(SendError::ReceiveOnly)));
        assert!(matches!(w.recv_bytes(), Err(RecvError::SendOnly)));
        w.send_bytes(b"x").unwrap();
        r.close();
        assert!(matches!(r.recv_bytes(), Err(RecvError::Closed)));
        assert_eq!(r.poll(None).unwrap_err().kind(), ErrorKind::Closed);
        assert!(matches!(w.send_bytes(b"x"), Err(SendError::Disconnected)));
    }

    #[test]
    fn hostile_packets_are_errors_and_the_end_stays_usable() {
        let (raw, theirs) = socket::seqpacket_pair().unwrap();
        let _ = socket::set_buffer_sizes(raw.as_fd(), SOCKET_BUFFER);
        let conn: Connection = Connection::from_parts(
            theirs,
            true,
            true,
            Some(EndLock::new().unwrap()),
            Some(EndLock::new().unwrap()),
        );
        let send_raw = |b: &[u8]| {
            socket::send_msg(raw.as_fd(), &[IoSlice::new(b)], &[], false).unwrap();
        };
        send_raw(&vec![0u8; MAX_FRAME + 100]); // bigger than any frame
        send_raw(b"not a frame at all, just bytes");
        let mut lie = Header {
            kind: Kind::Whole,
            id: 1,
            index: 0,
            count: 1,
            total: 99,
        }
        .encode()
        .to_vec();
        lie.extend_from_slice(b"short");
        send_raw(&lie);
        let good = |m: &[u8]| {
            let mut f = Header {
                kind: Kind::Whole,
                id: 2,
                index: 0,
                count: 1,
                total: m.len() as u64,
            }
            .encode()
            .to_vec();
            f.extend_from_slice(m);
            f
        };
        send_raw(&good(b"fine"));
        for _ in 0..3 {
            match conn.recv_bytes() {
                Err(RecvError::Other(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(conn.recv_bytes().unwrap(), b"fine");
        send_raw(&good(&[0xff, 0xff, 0xff]));
        match conn.recv::<String>() {
            Err(RecvError::Other(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        drop(raw);
        assert!(matches!(conn.recv_bytes(), Err(RecvError::Eof)));
    }

    #[test]
    fn many_fds_span_frames() {
        let (a, b) = pipe(true).unwrap();
        let ends: Vec<Connection> = (0..300)
            .map(|_| {
                let (x, _y) = pipe(true).unwrap();
                x
            })
            .collect();
        a.send(&ends).unwrap();
        let got: Vec<Connection> = b.recv().unwrap();
        assert_eq!(got.len(), 300);
    }
}
