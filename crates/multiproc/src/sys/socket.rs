//! Unix socket pairs, messages with attached file descriptors (SCM_RIGHTS), and `poll`.
//!
//! # Safety
//!
//! Fds are `OwnedFd`/`BorrowedFd`, received fds arrive as `OwnedFd` with `CLOEXEC` set
//! (`MSG_CMSG_CLOEXEC`), so none can leak into an unrelated child. One unsafe block:
//! [`recv_spare`] extends a `Vec` over the bytes the kernel wrote into its spare capacity.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The most descriptors the kernel accepts in one message (`SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MSG: usize = 253;

/// A connected pair of `SOCK_SEQPACKET` Unix sockets (message boundaries kept by the kernel).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A connected pair of `SOCK_STREAM` Unix sockets.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends `iov` as one `sendmsg`, attaching `fds` (at most [`MAX_FDS_PER_MSG`]).
/// Never raises SIGPIPE; a closed peer gives `EPIPE`. Returns bytes sent.
pub(crate) fn send_msg(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many file descriptors in one message",
        ));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        let r = if fds.is_empty() {
            rustix::net::sendmsg(fd, iov, &mut SendAncillaryBuffer::default(), flags)
        } else {
            let mut space =
                [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("control buffer too small"));
            }
            rustix::net::sendmsg(fd, iov, &mut control, flags)
        };
        match r {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// What [`recv_msg`] got.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes of the message (may exceed the buffer when `truncated`, with `peek`/`TRUNC`).
    pub(crate) len: usize,
    /// The message did not fit the buffer (SEQPACKET only).
    pub(crate) truncated: bool,
    /// The ancillary data was cut (more fds than fit): the extra fds are lost.
    pub(crate) fds_truncated: bool,
}

/// Receives one message (SEQPACKET) or some bytes (STREAM) into `buf`, appending attached
/// fds to `fds`. `len == 0` on a stream or seqpacket socket means end of file.
pub(crate) fn recv_msg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
    peek: bool,
) -> io::Result<Received> {
    let mut flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    if peek {
        flags |= RecvFlags::PEEK;
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                for cmsg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = cmsg {
                        fds.extend(received);
                    }
                }
                return Ok(Received {
                    len: msg.bytes,
                    truncated: msg.flags.contains(ReturnFlags::TRUNC),
                    fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
                });
            }
        }
    }
}

/// Receives up to `max` bytes from a STREAM socket into the spare capacity of `buf`, which
/// grows by the bytes received: unlike [`recv_msg`] the room needs no zeroing first (for a
/// large message that memset cost as much as the copy out of the kernel). Fds attached to
/// the bytes are not received (the kernel closes them): for peers that never send any.
/// Returns the bytes received; 0 means end of file.
pub(crate) fn recv_spare(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut flags = RecvFlags::empty();
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    buf.reserve(max);
    loop {
        let spare = &mut buf.spare_capacity_mut()[..max];
        match rustix::net::recv(fd, spare, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(((init, _), _)) => {
                let n = init.len();
                // SAFETY: `recv` initialized the first `n` bytes of the spare capacity
                // (rustix hands exactly those back as an initialized slice, `n <= max`,
                // and `max` bytes of capacity were reserved above).
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
        }
    }
}

/// Sets `SO_SNDBUF` / `SO_RCVBUF` (the kernel doubles and caps the value).
pub(crate) fn set_buffer_sizes(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    rustix::net::sockopt::set_socket_send_buffer_size(fd, bytes)?;
    rustix::net::sockopt::set_socket_recv_buffer_size(fd, bytes)?;
    Ok(())
}

/// Readiness of one fd after a poll ([`poll_rw`], [`poll_readable`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Data (or EOF, or an error) is there to read.
    pub(crate) readable: bool,
    /// The peer hung up.
    pub(crate) hangup: bool,
    /// Room to write (only reported for fds polled with write interest).
    pub(crate) writable: bool,
}

/// Like [`poll_readable`], with write interest for the fds whose flag is true.
pub(crate) fn poll_rw(
    fds: &[(BorrowedFd<'_>, bool)],
    timeout: Option<Duration>,
) -> io::Result<Vec<Ready>> {
    let deadline = super::Deadline::after(timeout);
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(fd, w)| {
                let ev = if *w {
                    PollFlags::IN | PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                PollFd::from_borrowed_fd(*fd, ev)
            })
            .collect();
        match rustix::event::poll(&mut pfds, timespec_until(&deadline).as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(pfds.iter().map(ready_of).collect()),
        }
    }
}

/// [`poll_readable`] for one or two fds, without allocating (for `Process::join`, which runs
/// right after a fork, where every heap page written costs a copy-on-write fault).
pub(crate) fn poll_readable2(
    a: BorrowedFd<'_>,
    b: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<(Ready, Ready)> {
    let deadline = super::Deadline::after(timeout);
    loop {
        let mut pfds = [
            PollFd::from_borrowed_fd(a, PollFlags::IN),
            PollFd::from_borrowed_fd(b.unwrap_or(a), PollFlags::IN),
        ];
        let n = if b.is_some() { 2 } else { 1 };
        match rustix::event::poll(&mut pfds[..n], timespec_until(&deadline).as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let second = if b.is_some() {
                    ready_of(&pfds[1])
                } else {
                    Ready::default()
                };
                return Ok((ready_of(&pfds[0]), second));
            }
        }
    }
}

/// The time left until `deadline` as a poll timeout (`None`: forever; zero once past).
fn timespec_until(deadline: &super::Deadline) -> Option<rustix::time::Timespec> {
    match deadline.remaining() {
        Ok(None) => None,
        Ok(Some(d)) => Some(rustix::time::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as _,
        }),
        Err(()) => Some(rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    }
}

fn ready_of(p: &PollFd<'_>) -> Ready {
    let r = p.revents();
    Ready {
        readable: r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        hangup: r.contains(PollFlags::HUP),
        writable: r.intersects(PollFlags::OUT | PollFlags::ERR),
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: forever). Returns the
/// readiness of each, in order. EINTR is retried with the time that is left.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<Ready>> {
    let with_interest: Vec<(BorrowedFd<'_>, bool)> = fds.iter().map(|fd| (*fd, false)).collect();
    poll_rw(&with_interest, timeout)
}

/// The socket's `SO_SNDBUF` (bytes the kernel lets it have in flight).
pub(crate) fn send_buffer_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::net::sockopt::socket_send_buffer_size(fd)?)
}

/// True when `fd` is a Unix-domain `SOCK_SEQPACKET` socket (what a `Connection` must be).
pub(crate) fn is_unix_seqpacket(fd: BorrowedFd<'_>) -> bool {
    let ty = rustix::net::sockopt::socket_type(fd);
    let domain = rustix::net::sockopt::socket_domain(fd);
    matches!(
        (ty, domain),
        (Ok(SocketType::SEQPACKET), Ok(AddressFamily::UNIX))
    )
}

/// Reads what a stream socket has now into `buf` without blocking: `Ok(0)` is end of file,
/// `WouldBlock` means nothing is there yet.
pub(crate) fn recv_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(fd, buf, RecvFlags::DONTWAIT)?.0)
}

/// Like [`recv_some`], appending to `buf`, at most its spare capacity.
pub(crate) fn recv_append(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    Ok(rustix::net::recv(fd, rustix::buffer::spare_capacity(buf), RecvFlags::DONTWAIT)?.0)
}

/// Writes as much of `iov` as a stream socket takes now, without blocking or SIGPIPE.
pub(crate) fn send_some(fd: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    send_msg(fd, iov, &[], true)
}
