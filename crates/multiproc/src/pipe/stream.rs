//! A connection over a byte-stream socket (Unix or TCP), from a [`Listener`](super::Listener)
//! or a [`Client`](super::Client): Python's message framing, no shared memory.
//!
//! # Wire format (CPython's `multiprocessing.connection.Connection`)
//!
//! ```text
//! len < 2^31:   [len: i32 big-endian][len bytes]
//! otherwise:    [-1: i32 big-endian][len: u64 big-endian][len bytes]
//! ```
//!
//! A byte stream has no message boundaries of its own, so one end's sends (and receives)
//! are serialized by a lock, and a receive that runs out mid-message keeps what it has read
//! (the next receive goes on from there): nothing is lost or misread. A send that runs out
//! mid-message cannot take back what went, so it leaves the end *broken* for sends (every
//! later send fails); one that runs out before its first byte leaves no trace. The locks
//! are this process's: two processes sharing one end (by fork) must not send (or receive)
//! at the same time — as in Python. (Nor may a child forked while another thread of its
//! parent was sending or receiving on an end use that end: the child's copy of the lock
//! stays held.)
//!
//! Nothing read is trusted: a length over the end's limit (`max_message_len`, 1 GiB unless
//! set) breaks the end for receives with an error instead of allocating it, and the buffer
//! of a message grows with the bytes that actually arrive, never ahead of them.

use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use super::{RecvError, SendError, Stop};
use crate::error::{Error, ErrorKind};
use crate::sys::{socket, Deadline};

/// Default bound on one received message (see the module docs).
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 1 << 30;
/// The body buffer grows by at least this much at a time (and at most doubles).
const GROW_MIN: usize = 64 << 10;
/// A lock held by another thread is looked at again this often by a timed call.
const LOCK_SLICE: Duration = Duration::from_millis(1);

/// The state shared by every copy of an end in this process ([`Connection::try_clone`]).
///
/// [`Connection::try_clone`]: super::Connection::try_clone
#[derive(Debug)]
pub(crate) struct Stream {
    send: Mutex<SendState>,
    recv: Mutex<RecvState>,
    max_len: usize,
}

#[derive(Debug, Default)]
struct SendState {
    /// A send ran out mid-message: the stream holds part of a message.
    broken: bool,
}

#[derive(Debug, Default)]
struct RecvState {
    /// Header bytes read so far (4, or 12 for a long message).
    header: [u8; 12],
    have: usize,
    /// The message's length once the header is complete.
    len: Option<u64>,
    /// Body bytes read so far.
    body: Vec<u8>,
    /// The message is longer than the receive's `max` (`recv_bytes_max`): read and dropped.
    skipping: bool,
    /// Bytes of it dropped so far.
    dropped: u64,
    /// Why the stream can no longer be read (a bad or too-long header).
    broken: Option<String>,
}

/// The header of a message of `len` bytes.
pub(crate) fn header(len: usize, out: &mut [u8; 12]) -> &[u8] {
    if len > 0x7fff_ffff {
        out[..4].copy_from_slice(&(-1i32).to_be_bytes());
        out[4..].copy_from_slice(&(len as u64).to_be_bytes());
        &out[..]
    } else {
        out[..4].copy_from_slice(&(len as i32).to_be_bytes());
        &out[..4]
    }
}

/// Takes `m`, waiting until `deadline` while another thread holds it.
fn lock_until<T>(m: &Mutex<T>, deadline: Deadline) -> Option<MutexGuard<'_, T>> {
    if deadline.is_never() {
        return Some(m.lock().unwrap_or_else(|e| e.into_inner()));
    }
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        let left = deadline.remaining().ok()?;
        std::thread::sleep(left.map_or(LOCK_SLICE, |l| l.min(LOCK_SLICE)));
    }
}

fn recv_os(e: std::io::Error) -> RecvError {
    RecvError::Failed(Error::os("cannot receive on connection", e))
}

fn send_os(e: std::io::Error) -> SendError {
    match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => SendError::Disconnected,
        _ => SendError::Failed(Error::os("cannot send on connection", e)),
    }
}

/// Waits until `fd` is readable (`write` false) or writable, at most until `deadline`.
fn wait_fd(fd: BorrowedFd<'_>, write: bool, deadline: Deadline) -> Result<(), Stop<()>> {
    let Ok(left) = deadline.remaining() else {
        return Err(Stop::Timeout);
    };
    socket::poll_rw(&[(fd, write)], left).map_err(|_| Stop::Error(()))?;
    Ok(())
}

impl Stream {
    pub(crate) fn new(max_len: usize) -> Stream {
        Stream {
            send: Mutex::new(SendState::default()),
            recv: Mutex::new(RecvState::default()),
            max_len,
        }
    }

    /// Sends `body` as one message, waiting for room until `deadline`.
    pub(crate) fn send(
        &self,
        fd: BorrowedFd<'_>,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<(), Stop<SendError>> {
        let mut st = lock_until(&self.send, deadline).ok_or(Stop::Timeout)?;
        if st.broken {
            return Err(SendError::Failed(Error::new(
                ErrorKind::InvalidState,
                "connection is broken for sends: an earlier timed send ran out in the middle \
                 of a message",
            ))
            .into());
        }
        let mut h = [0u8; 12];
        let head = header(body.len(), &mut h);
        let total = head.len() + body.len();
        let mut done = 0;
        while done < total {
            let iov: [IoSlice<'_>; 2] = if done < head.len() {
                [IoSlice::new(&head[done..]), IoSlice::new(body)]
            } else {
                [IoSlice::new(&body[done - head.len()..]), IoSlice::new(&[])]
            };
            match socket::send_some(fd, &iov) {
                Ok(n) => {
                    done += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    st.broken |= done > 0;
                    return Err(send_os(e).into());
                }
            }
            match wait_fd(fd, true, deadline) {
                Ok(()) => {}
                Err(Stop::Timeout) => {
                    st.broken |= done > 0;
                    return Err(Stop::Timeout);
                }
                Err(Stop::Error(())) => {
                    st.broken |= done > 0;
                    return Err(SendError::Failed(Error::new(
                        ErrorKind::Os,
                        "cannot poll connection",
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Receives one whole message (longer than `max`: consumed, dropped, and
    /// [`RecvError::TooLong`]), waiting until `deadline` for its bytes. Running out keeps
    /// what was read for the next receive.
    pub(crate) fn recv(
        &self,
        fd: BorrowedFd<'_>,
        max: Option<usize>,
        deadline: Deadline,
    ) -> Result<Vec<u8>, Stop<RecvError>> {
        let mut st = lock_until(&self.recv, deadline).ok_or(Stop::Timeout)?;
        if let Some(why) = &st.broken {
            return Err(RecvError::Failed(Error::new(ErrorKind::InvalidState, why.clone())).into());
        }
        loop {
            let Some(len) = st.len else {
                self.read_header(fd, &mut st, deadline)?;
                let len = st.len.expect("header complete");
                st.skipping = max.is_some_and(|m| len > m as u64);
                continue;
            };
            let have = st.body.len() as u64;
            if have == len && !st.skipping {
                let body = std::mem::take(&mut st.body);
                *st = RecvState::default();
                return Ok(body);
            }
            if st.skipping {
                // Drop what comes, a buffer's worth at a time.
                let left = len - st.dropped;
                if left == 0 {
                    *st = RecvState::default();
                    return Err(RecvError::TooLong {
                        len,
                        max: max.unwrap_or(usize::MAX),
                    }
                    .into());
                }
                let mut sink = [0u8; 16 << 10];
                let want = left.min(sink.len() as u64) as usize;
                if let Some(n) =
                    read_step(fd, deadline, |fd| socket::recv_some(fd, &mut sink[..want]))?
                {
                    st.dropped += n as u64;
                }
                continue;
            }
            let left = (len - have) as usize;
            if st.body.capacity() == st.body.len() {
                let grow = left.min(st.body.len().max(GROW_MIN));
                st.body.reserve_exact(grow);
            }
            let room = st.body.capacity() - st.body.len();
            if room > left {
                // Never read past the message: the rest of the stream is the next one's.
                let mut chunk = [0u8; 16 << 10];
                let want = left.min(chunk.len());
                if let Some(n) =
                    read_step(fd, deadline, |fd| socket::recv_some(fd, &mut chunk[..want]))?
                {
                    st.body.extend_from_slice(&chunk[..n]);
                }
            } else {
                let body = &mut st.body;
                read_step(fd, deadline, |fd| socket::recv_append(fd, body))?;
            }
        }
    }

    /// Reads the rest of the header; checks the length against the limit.
    fn read_header(
        &self,
        fd: BorrowedFd<'_>,
        st: &mut RecvState,
        deadline: Deadline,
    ) -> Result<(), Stop<RecvError>> {
        loop {
            let need = if st.have >= 4 && st.header[..4] == (-1i32).to_be_bytes() {
                12
            } else {
                4
            };
            if st.have == need {
                break;
            }
            let (have, header) = (st.have, &mut st.header);
            match read_step(fd, deadline, |fd| {
                socket::recv_some(fd, &mut header[have..need])
            }) {
                Ok(Some(n)) => st.have += n,
                Ok(None) => {}
                Err(Stop::Error(RecvError::Eof)) if st.have == 0 => {
                    return Err(RecvError::Eof.into())
                }
                Err(Stop::Error(RecvError::Eof)) => {
                    return Err(RecvError::Failed(Error::new(
                        ErrorKind::Disconnected,
                        "the peer closed the connection in the middle of a message header",
                    ))
                    .into())
                }
                Err(e) => return Err(e),
            }
        }
        let short = i32::from_be_bytes(st.header[..4].try_into().expect("4 bytes"));
        let len = if short == -1 {
            u64::from_be_bytes(st.header[4..12].try_into().expect("8 bytes"))
        } else if short < 0 {
            let why = format!("corrupt message header on connection (length {short})");
            st.broken = Some(why.clone());
            return Err(RecvError::Failed(Error::new(ErrorKind::Codec, why)).into());
        } else {
            short as u64
        };
        if len > self.max_len as u64 {
            let why = format!(
                "the peer announced a message of {len} bytes, over this connection's limit of \
                 {} (Listener::with_max_message_len / Client::max_message_len); the \
                 connection can no longer be read",
                self.max_len
            );
            st.broken = Some(why.clone());
            return Err(RecvError::Failed(Error::new(ErrorKind::TooLarge, why)).into());
        }
        st.len = Some(len);
        Ok(())
    }
}

/// One read attempt: `Ok(Some(n))` bytes read, `Ok(None)` retry (interrupted, or it waited
/// and the fd is readable now), `Err(Eof)` at end of file, `Err(Timeout)` past `deadline`.
fn read_step(
    fd: BorrowedFd<'_>,
    deadline: Deadline,
    read: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<usize>,
) -> Result<Option<usize>, Stop<RecvError>> {
    match read(fd) {
        Ok(0) => Err(RecvError::Eof.into()),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            match wait_fd(fd, false, deadline) {
                Ok(()) => Ok(None),
                Err(Stop::Timeout) => Err(Stop::Timeout),
                Err(Stop::Error(())) => Err(RecvError::Failed(Error::new(
                    ErrorKind::Os,
                    "cannot poll connection",
                ))
                .into()),
            }
        }
        Err(e) => Err(recv_os(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pythons() {
        let mut h = [0u8; 12];
        assert_eq!(header(5, &mut h), [0, 0, 0, 5]);
        assert_eq!(header(0x7fff_ffff, &mut h), [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(
            header(0x8000_0000, &mut h),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
    }

    #[test]
    fn hostile_headers_are_errors_without_allocating() {
        let (a, b) = socket::stream_pair().unwrap();
        let s = Stream::new(1 << 20);
        let send = |bytes: &[u8]| {
            socket::send_some(a.as_fd_ref(), &[IoSlice::new(bytes)]).unwrap();
        };
        // A huge announced length: refused at once, the end is broken for receives.
        send(&[
            0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        let e = s.recv(
            b.as_fd_ref(),
            None,
            Deadline::within(Duration::from_secs(5)),
        );
        match e {
            Err(Stop::Error(RecvError::Failed(e))) => {
                assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}")
            }
            _ => panic!("a huge length must be refused"),
        }
        assert!(s
            .recv(b.as_fd_ref(), None, Deadline::passed())
            .is_err_and(|e| matches!(e, Stop::Error(RecvError::Failed(_)))));
        // A negative length.
        let s = Stream::new(1 << 20);
        let (a2, b2) = socket::stream_pair().unwrap();
        socket::send_some(a2.as_fd_ref(), &[IoSlice::new(&(-7i32).to_be_bytes())]).unwrap();
        let e = s.recv(
            b2.as_fd_ref(),
            None,
            Deadline::within(Duration::from_secs(5)),
        );
        assert!(matches!(e, Err(Stop::Error(RecvError::Failed(_)))));
        drop(a);
    }

    #[test]
    fn a_timed_out_receive_keeps_its_part_and_too_long_messages_are_skipped() {
        let (a, b) = socket::stream_pair().unwrap();
        let s = Stream::new(1 << 20);
        let r = Stream::new(1 << 20);
        // Half a message, then a timed receive runs out; the rest arrives later.
        socket::send_some(a.as_fd_ref(), &[IoSlice::new(&[0, 0, 0, 6, b'h', b'a'])]).unwrap();
        let e = r.recv(
            b.as_fd_ref(),
            None,
            Deadline::within(Duration::from_millis(20)),
        );
        assert!(matches!(e, Err(Stop::Timeout)));
        socket::send_some(a.as_fd_ref(), &[IoSlice::new(b"lves")]).unwrap();
        let m = r.recv(b.as_fd_ref(), None, Deadline::never());
        assert_eq!(m.ok().unwrap(), b"halves");
        // A message over `max` is consumed and dropped; the next one arrives whole.
        s.send(a.as_fd_ref(), &[7u8; 100_000], Deadline::never())
            .ok()
            .unwrap();
        s.send(a.as_fd_ref(), b"next", Deadline::never())
            .ok()
            .unwrap();
        let e = r.recv(b.as_fd_ref(), Some(10), Deadline::never());
        assert!(matches!(
            e,
            Err(Stop::Error(RecvError::TooLong {
                len: 100_000,
                max: 10
            }))
        ));
        assert_eq!(
            r.recv(b.as_fd_ref(), None, Deadline::never()).ok().unwrap(),
            b"next"
        );
    }

    trait AsFdRef {
        fn as_fd_ref(&self) -> BorrowedFd<'_>;
    }
    impl AsFdRef for std::os::fd::OwnedFd {
        fn as_fd_ref(&self) -> BorrowedFd<'_> {
            std::os::fd::AsFd::as_fd(self)
        }
    }
}
