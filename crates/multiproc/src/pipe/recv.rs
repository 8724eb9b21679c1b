//! The socket receive state machine: a receive takes the ring's next record; on a marker it
//! reads the socket until that message's frames are complete, dropping doorbells, leftovers
//! and a dead sender's unfinished message (the table in the module docs of `pipe`); and it
//! keeps the socket's readiness in step with the ring for a watched direction.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::dir::{Dir, Record};
use super::error::{os_recv_error, Stop};
use super::frame::{self, Assembler, Outcome};
use super::{Connection, RecvError, KEEP_BUFFER_MAX, LOST_FIRST, LOST_MAX, MAX_FRAME};
use crate::codec::ident;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{socket, Deadline};
use crate::wait::{Ring, Settled, SLEEP_SLICE};

thread_local! {
    /// A receive buffer of `MAX_FRAME` bytes per thread, taken while in use.
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    /// The buffer a typed receive assembles a socket message in, per thread, taken while in
    /// use (see [`take_assembly`]).
    static ASSEMBLY: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// This thread's assembly buffer for a typed socket message (or an empty one).
///
/// Why a kept buffer (issue 19): a typed receive used to assemble each large message in a
/// new `Vec` (the frames' bytes), decode the value out of it (a second allocation of the
/// same size: a `Vec<u8>` value), then free the bytes. Measured on the bench row "Pipe
/// one-way 1 MiB typed `Vec<u8>`": 0.7 GB/s against 3 GB/s for the raw bytes of the same
/// run, the time in page faults and in `brk`: glibc trimmed the heap top after each freed
/// 1 MiB body and grew it again for the next, so every message faulted in fresh pages, twice.
/// (With `mallopt(M_TRIM_THRESHOLD)` raised in a probe the row ran at 2-4.6 GB/s; a library
/// must not change that for its process.) Assembling in a buffer kept by the thread
/// leaves one allocation per message, the decoded value that the caller keeps, as for
/// `recv_bytes` and as Python's `recv` (which unpickles out of one buffer). Measured with a
/// probe (300 messages of 1 MiB one way, median of 5, builds alternated three times on a
/// loaded 2-core machine): typed 335-712 MB/s = 0.25-0.28x the raw bytes before, 1566-2141
/// MB/s = 0.82-0.91x after.
pub(super) fn take_assembly() -> Vec<u8> {
    ASSEMBLY.with(|a| a.take()).unwrap_or_default()
}

/// Gives a buffer back for the next typed receive (kept up to [`KEEP_BUFFER_MAX`]).
pub(super) fn give_back_assembly(b: Vec<u8>) {
    if b.capacity() <= KEEP_BUFFER_MAX {
        ASSEMBLY.with(|a| a.set(Some(b)));
    }
}

pub(super) fn take_scratch() -> Box<[u8]> {
    SCRATCH
        .with(|s| s.take())
        .unwrap_or_else(|| vec![0u8; MAX_FRAME].into_boxed_slice())
}

pub(super) fn give_back_scratch(b: Box<[u8]>) {
    SCRATCH.with(|s| s.set(Some(b)));
}

/// Allocates this thread's receive buffer at its first receive of any kind, not at its first
/// socket message. Measured (bench row "Pipe one-way 1 MiB bytes", after the ring rows): a
/// 256 KiB buffer allocated late lands in glibc's heap in a place that makes the heap trim
/// and grow again around every freed 1 MiB message, so each message faults its pages in
/// anew: 2.8 GB/s instead of 8 GB/s. Allocated early, as before the ring existed, it does
/// not. (Receiving frames straight into the message buffer, without this buffer, would
/// remove the dependence and a copy.)
pub(super) fn warm_scratch() {
    SCRATCH.with(|s| {
        let b = s.take();
        s.set(Some(
            b.unwrap_or_else(|| vec![0u8; MAX_FRAME].into_boxed_slice()),
        ));
    });
}

/// `recvmsg` on a connection's socket. `ECONNRESET` (the peer closed with packets unread,
/// say doorbells) is reported once by the kernel and then cleared, in front of whatever is
/// still queued for us: it is retried, and the queue (or end of file) is what counts.
pub(super) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    peek: bool,
) -> std::io::Result<socket::Received> {
    let mut tries = 0;
    loop {
        match socket::recv_msg(fd, buf, fds, true, peek) {
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) && tries < 3 => tries += 1,
            r => return r,
        }
    }
}

impl<C> Connection<C> {
    /// Receives one whole message and the fds that came with it, waiting until `deadline`.
    pub(super) fn recv_message(
        &self,
        max: Option<usize>,
        deadline: Deadline,
    ) -> std::result::Result<Message, Stop<RecvError>> {
        // A typed message is refused (and consumed): see `codec/ident.rs`.
        self.recv_with(
            |body, typed| match max {
                _ if typed => Err(RecvError::Failed(ident::typed_where_raw(body))),
                Some(m) if body.len() > m => Err(RecvError::TooLong {
                    len: body.len() as u64,
                    max: m,
                }),
                _ => Ok((body.to_vec(), Vec::new())),
            },
            |m, typed| {
                if typed {
                    return Err(RecvError::Failed(ident::typed_where_raw(&m.0)));
                }
                Ok(m)
            },
            max,
            false,
            false,
            deadline,
        )
    }

    /// Receives one message: one from the ring goes to `from_ring` in place, one from the
    /// socket (longer than `max`: [`RecvError::TooLong`]) to `from_socket`; each is told
    /// whether the message is typed.
    ///
    /// `deadline` bounds the wait for the receive lock and for a message to *begin*: a
    /// message whose marker has been taken is received to its end (its sender is writing it
    /// now; one that died or gave up is detected within milliseconds, see the module docs),
    /// so a deadline can be overrun by the time its sender takes to finish it, never
    /// by a hang.
    ///
    /// A Listener/Client connection has no frame to say whether a message is typed (CPython's
    /// framing is a bare length): its messages are taken as `stream_typed` says, that is as
    /// the caller expects, and a typed receive checks the type tag at the start of the bytes.
    ///
    /// With `reuse`, a message from the socket is assembled in this thread's kept buffer
    /// (see [`take_assembly`]): `from_socket` is handed it as the message's bytes and gives it
    /// back with [`give_back_assembly`]; a message that is not handed over gives it back here.
    pub(super) fn recv_with<R>(
        &self,
        from_ring: impl FnOnce(&[u8], bool) -> std::result::Result<R, RecvError>,
        from_socket: impl FnOnce(Message, bool) -> std::result::Result<R, RecvError>,
        max: Option<usize>,
        stream_typed: bool,
        reuse: bool,
        deadline: Deadline,
    ) -> std::result::Result<R, Stop<RecvError>> {
        if let Some(s) = &self.stream {
            let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
            let body = s.recv(fd.as_fd(), max, deadline)?;
            return Ok(from_socket((body, Vec::new()), stream_typed)?);
        }
        let (fd, dir) = self.recv_fd()?;
        let _held = if deadline.is_never() {
            dir.lock_recv().map_err(RecvError::Failed)?
        } else {
            dir.lock_recv_until(deadline).ok_or(Stop::Timeout)?
        };
        warm_scratch();
        let mut from_ring = Some(from_ring);
        // True once this receive has read the socket (and so may have dropped doorbells).
        let mut read_socket = false;
        loop {
            let taken = dir.take(|body, typed| match from_ring.take() {
                Some(f) => f(body, typed),
                None => unreachable!("one data record per receive"),
            });
            // (Not after a marker: the ring may look empty while its frames are on the way.)
            if dir.watched() && !matches!(taken, Ok(None) | Ok(Some(Record::Marker(..)))) {
                settle_watched(fd, dir, read_socket);
            }
            match taken.map_err(RecvError::Failed)? {
                Some(Record::Data(r)) => return Ok(r?),
                Some(Record::Marker(seq, typed)) => {
                    let mut scratch = take_scratch();
                    let mut asm = if reuse {
                        Assembler::with_buffer(max, take_assembly())
                    } else {
                        Assembler::new(max)
                    };
                    let r = recv_socket_message(fd, dir, seq, &mut scratch, &mut asm);
                    give_back_scratch(scratch);
                    if reuse {
                        // Not handed over (the message was lost or bad): kept for the next.
                        if let Some(b) = asm.take_buffer() {
                            give_back_assembly(b);
                        }
                    }
                    if dir.watched() {
                        read_socket = true;
                        if !matches!(r, Ok(None)) {
                            settle_watched(fd, dir, true);
                        }
                    }
                    if let Some(m) = r? {
                        return Ok(from_socket(m, typed)?);
                    }
                    // Lost with its dead sender: on to the next record.
                }
                None => {
                    let futex_first = !self.hup_seen.load(Ordering::Relaxed);
                    if let Err(e) = wait_for_record(fd, dir, deadline, futex_first) {
                        if matches!(e, Stop::Error(RecvError::Eof)) {
                            // The socket is both directions': the peer is gone for sends too.
                            self.hup_seen.store(true, Ordering::Relaxed);
                        }
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// What is at the head of a socket, looked at without taking it.
pub(super) enum Head {
    /// Nothing to read now.
    Empty,
    /// End of file: every copy of the peer end is closed.
    Eof,
    /// A doorbell, or a packet that is not a frame.
    Junk,
    /// A frame with this message id.
    Frame(u32),
}

pub(super) fn peek_head(fd: BorrowedFd<'_>) -> std::result::Result<Head, RecvError> {
    let mut b = [0u8; frame::HEADER_LEN];
    // Fds of a peeked packet are installed as copies; they are closed on drop here.
    let mut fds = Vec::new();
    match recv_packet(fd, &mut b, &mut fds, true) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Head::Empty),
        Err(e) => Err(os_recv_error(e)),
        Ok(r) if r.len == 0 => {
            // End of file, or an empty packet from a hostile peer.
            let p = socket::poll_rw(&[(fd, false)], Some(Duration::ZERO)).map_err(os_recv_error)?;
            Ok(if p[0].hangup { Head::Eof } else { Head::Junk })
        }
        Ok(r) if r.len < frame::HEADER_LEN => Ok(Head::Junk),
        Ok(_) => Ok(frame::peek_id(&b).map_or(Head::Junk, Head::Frame)),
    }
}

/// A received message's bytes and the fds that came with it.
pub(super) type Message = (Vec<u8>, Vec<OwnedFd>);

/// Takes the packet at the head of the socket and drops it.
pub(super) fn drop_head(fd: BorrowedFd<'_>) -> std::result::Result<(), RecvError> {
    let mut b = [0u8; 1];
    let mut fds = Vec::new();
    match recv_packet(fd, &mut b, &mut fds, false) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(os_recv_error(e)),
        Ok(_) => Ok(()),
    }
}

/// What [`drain_junk`] found.
pub(super) enum Drained {
    /// The ring holds a record.
    Record,
    /// End of file and the ring is empty.
    Eof,
    /// The socket is empty and so is the ring.
    Empty,
}

/// With the receive lock held: allows the next doorbell, then drops the packets on the
/// socket while the ring stays empty (see the table in the module docs: with the ring
/// empty, no packet there belongs to a live message). A doorbell rung after the
/// `clear_rung` announces a record that nobody can take while we hold the lock, so it is
/// never dropped here: after this, "rung" always means "a doorbell is on the socket".
pub(super) fn drain_junk(fd: BorrowedFd<'_>, dir: &Dir) -> std::result::Result<Drained, RecvError> {
    drain_junk_upto(fd, dir, usize::MAX)
}

/// [`drain_junk`] that returns `Empty` after dropping `most` packets, whether or not more
/// are left: for a waiter about to sleep in `poll(2)`, which wakes at once for any packet
/// left and comes back (so the usual case, one doorbell, costs one `recvmsg` fewer).
pub(super) fn drain_junk_upto(
    fd: BorrowedFd<'_>,
    dir: &Dir,
    most: usize,
) -> std::result::Result<Drained, RecvError> {
    dir.clear_rung();
    let mut dropped = 0;
    loop {
        if dropped == most {
            return Ok(Drained::Empty);
        }
        dropped += 1;
        let head = peek_head(fd)?;
        // After the look at the socket: a live sender committed a packet's marker before
        // writing the packet.
        if dir.has_records() {
            return Ok(Drained::Record);
        }
        match head {
            Head::Empty => return Ok(Drained::Empty),
            Head::Eof => return Ok(Drained::Eof),
            Head::Junk | Head::Frame(_) => drop_head(fd)?,
        }
    }
}

/// With the receive lock held, on a watched direction, after a receive took a record (or
/// after [`Connection::watch`]): brings the socket's readability in step with the ring
/// (see "Readiness" in the module docs). An empty ring: drop the doorbells (and leftovers),
/// so that the fd stops being readable. Records left, after this receive read the socket
/// (where it may have dropped the doorbell that announced them, in front of its frames) or
/// after arming: if nothing is on the socket, allow the next doorbell, so that the next
/// record a sender commits rings it (a receiver cannot ring its own socket). Best effort:
/// an OS error here must not cost the message just taken; the next receive sees it.
pub(super) fn settle_watched(fd: BorrowedFd<'_>, dir: &Dir, read_socket: bool) {
    if !dir.has_records() {
        let _ = drain_junk(fd, dir);
    } else if read_socket && matches!(peek_head(fd), Ok(Head::Empty)) {
        dir.clear_rung();
    }
}

/// Looks for a record without sleeping: spins for as long as recent waits say it pays
/// (`sys/futex.rs`, learned budgets), when another CPU can run the sender, not past
/// `deadline`; true when the ring holds one.
pub(super) fn spin_for_record(dir: &Dir, deadline: Deadline) -> bool {
    crate::sys::futex::spin_until_ready(|| dir.has_records(), deadline)
}

/// How long a receiver sleeps on the ring's futex before it sleeps in `poll(2)` on the
/// socket ([`wait_for_record`]): the longest a SIGKILLed peer can go unnoticed, on top of the
/// socket's own report.
///
/// Why (issue 18): a receiver that slept in `poll(2)` cost a doorbell packet (`sendmsg`), a
/// `ppoll`, and a peek and a drop of the doorbell (two `recvmsg`) per wake-up; the queue's
/// futex sleep costs a `futex_wait` and a `futex_wake`. Measured (2-core VM, both ends
/// pinned to one CPU, so that every answer needs a sleep and a wake-up, rounds of 1,000 `u64`
/// round trips): 18.3 us a round trip with the `poll` sleep alone, 14.3 once the stale
/// doorbell was dropped before sleeping, 8.7-8.9 with this futex sleep first (a `Queue`
/// request/reply: 7.1); with a busy-looping process on that CPU too, 35-38 us, then 25-30,
/// then 18-20. That is where a round trip lands whenever the scheduler puts both ends on one
/// CPU (more processes than cores).
///
/// Why 2 ms: a counterpart that answers at all answers within a few scheduler time slices,
/// and a peer SIGKILLed meanwhile (no close wakes the futex) costs at most this much more
/// before its end of file shows.
pub(super) const FUTEX_FIRST: Duration = Duration::from_millis(2);

/// With the receive lock held and the ring found empty: waits until the ring may hold a
/// record, at most until `deadline`. `Err(Eof)` when every copy of the peer end is closed
/// and the ring is empty; `Err(Timeout)` when the deadline passed with neither (after one
/// last look at the socket, so that a `try_` receive reports end of file too).
pub(super) fn wait_for_record(
    fd: BorrowedFd<'_>,
    dir: &Dir,
    deadline: Deadline,
    futex_first: bool,
) -> std::result::Result<(), Stop<RecvError>> {
    if dir.has_records() || spin_for_record(dir, deadline) {
        return Ok(());
    }
    // First a sleep on the ring's own futex, which the sender's commit wakes (one
    // `futex_wake`, no doorbell packet, no `poll`, nothing to drop after): for a counterpart
    // that answers soon. Then, or when this sleep ends without a record (a signal, a
    // handle dropped, the time up), the sleep in `poll(2)` on the socket, which also sees
    // end of file: a peer SIGKILLed during the futex sleep is noticed at its end
    // ([`FUTEX_FIRST`]); a peer that closes or drops its end wakes this sleep at once
    // (`Drop for Dir`).
    if futex_first && dir.sleep_for_record(FUTEX_FIRST, deadline) && dir.has_records() {
        return Ok(());
    }
    loop {
        let Ok(left) = deadline.remaining() else {
            return match drain_junk(fd, dir)? {
                Drained::Record => Ok(()),
                Drained::Eof => Err(RecvError::Eof.into()),
                Drained::Empty => Err(Stop::Timeout),
            };
        };
        let slice = left.map_or(SLEEP_SLICE, |l| l.min(SLEEP_SLICE));
        // The doorbell that woke the last wait is still on the socket (the receive that
        // found its record left it there): drop it now, or `poll` returns at once for it and
        // the socket is read after all. Measured (2-core VM, both ends pinned to one CPU,
        // `Pipe` round trips of a `u64`): 18.3 us a round trip before, 14.3 after, with one
        // `ppoll` and one `recvmsg` fewer per wait (see `drain_junk_upto` for the second).
        if dir.rung() {
            match drain_junk_upto(fd, dir, 1)? {
                Drained::Record => return Ok(()),
                Drained::Eof => return Err(RecvError::Eof.into()),
                Drained::Empty => {}
            }
        }
        dir.sleeping(true);
        let r = if dir.has_records() {
            Ok(())
        } else {
            socket::poll_rw(&[(fd, false)], Some(slice)).map(|_| ())
        };
        dir.sleeping(false);
        r.map_err(os_recv_error)?;
        if dir.has_records() {
            return Ok(());
        }
        match drain_junk_upto(fd, dir, 1)? {
            Drained::Record => return Ok(()),
            Drained::Eof => return Err(RecvError::Eof.into()),
            Drained::Empty => {}
        }
    }
}

/// Waits until the socket has a packet, spinning first (a sender mid-message writes the next
/// frame soon), then sleeping up to `slice`; true when it has one.
pub(super) fn wait_for_packet(
    fd: BorrowedFd<'_>,
    slice: Duration,
    spin: bool,
) -> std::result::Result<bool, RecvError> {
    if spin && crate::sys::may_spin() {
        let start = std::time::Instant::now();
        while start.elapsed() < crate::sys::futex::SPIN {
            if !matches!(peek_head(fd)?, Head::Empty) {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
    }
    let r = socket::poll_rw(&[(fd, false)], Some(slice)).map_err(os_recv_error)?;
    Ok(r[0].readable)
}

/// With the receive lock held and marker `seq` taken: reads the socket until message `seq`
/// is complete. `Ok(None)` when it is lost (its sender died; see the module docs).
pub(super) fn recv_socket_message(
    fd: BorrowedFd<'_>,
    dir: &Dir,
    seq: u32,
    scratch: &mut [u8],
    asm: &mut Assembler,
) -> std::result::Result<Option<Message>, RecvError> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut fds_lost = false;
    let mut slice = LOST_FIRST;
    loop {
        let id = match peek_head(fd)? {
            Head::Frame(id) => id,
            Head::Junk => {
                drop_head(fd)?;
                continue;
            }
            Head::Eof => return Ok(None),
            Head::Empty => {
                if wait_for_packet(fd, slice, slice == LOST_FIRST)? {
                    continue;
                }
                slice = (slice * 2).min(LOST_MAX);
                // Its sender holds the send lock until the last frame is written: if nobody
                // holds it, or a later sender does (it has taken a later number: a sender
                // takes its number right after the lock), every frame of `seq` that will
                // ever come is there. (The later sender may be waiting for ring room for its
                // marker, which only this receiver can make: waiting for it to finish would
                // never end.)
                let done = dir.last_seq() != seq || dir.no_socket_sender();
                if done && matches!(peek_head(fd)?, Head::Empty) {
                    return Ok(None);
                }
                continue;
            }
        };
        let age = id.wrapping_sub(seq) as i32;
        if age > 0 {
            return Ok(None); // a later message: `seq`'s sender died
        }
        if age < 0 {
            drop_head(fd)?; // left over from a receiver that died
            continue;
        }
        let mut frame_fds = Vec::new();
        let r = match recv_packet(fd, scratch, &mut frame_fds, false) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => r.map_err(os_recv_error)?,
        };
        if r.len == 0 {
            continue; // looked at again: end of file or junk
        }
        if r.truncated {
            // Not one of ours (we never write bigger frames): drop it and the partial.
            return Err(RecvError::Failed(Error::new(
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
                    return Err(RecvError::Failed(Error::new(
                        ErrorKind::Os,
                        "file descriptors attached to the message were lost (fd limit?)",
                    )));
                }
                return Ok(Some((msg, fds)));
            }
            Outcome::TooLong(len) => {
                return Err(RecvError::TooLong {
                    len,
                    max: asm.max().unwrap_or(usize::MAX),
                })
            }
            Outcome::Corrupt(why) => {
                return Err(RecvError::Failed(Error::new(
                    ErrorKind::Codec,
                    format!("corrupt frame on connection: {why}"),
                )))
            }
        }
    }
}

impl Ring for Dir {
    fn has_records(&self) -> bool {
        Dir::has_records(self)
    }

    fn sleeping(&self, on: bool) {
        Dir::sleeping(self, on);
    }

    fn settle(&self, fd: BorrowedFd<'_>) -> Result<Settled> {
        if Dir::has_records(self) {
            return Ok(Settled::Ready);
        }
        let Some(_held) = self.try_lock_recv() else {
            return Ok(Settled::Busy);
        };
        Ok(match drain_junk(fd, self)? {
            Drained::Record | Drained::Eof => Settled::Ready,
            Drained::Empty => Settled::NotReady,
        })
    }
}
