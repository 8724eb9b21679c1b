//! Pipes: [`pipe`] makes two connected [`Connection`] ends (Python's `Pipe()`), and [`wait`]
//! waits on many of them (Python's `multiprocessing.connection.wait`). [`Listener`] and
//! [`Client`] connect unrelated processes (Python's `Listener`/`Client`, on the wire too):
//! they give the same `Connection`, over a socket only (see [`Listener`] for what differs).
//!
//! # Design
//!
//! A connection is a `SOCK_SEQPACKET` Unix socket pair plus, for each direction, a ring of
//! bytes in shared memory (the queue's ring engine, `ring/`) and a small shared cell with
//! the direction's locks and counters (`dir.rs`). Both directions' rings and cells live in
//! one shared-memory segment (one memfd) per connection, so an end holds **two fds**: its
//! socket and that segment, duplex or not (Python's holds one). A process holding both ends
//! holds three (two sockets, one segment), and one that receives several ends of the same
//! connection maps its segment once. Each tool does what it is good at:
//!
//! - **Small messages** (up to [`INLINE_MAX`] bytes, no fds) go into the ring: one copy in,
//!   one copy out, no system call while the receiver keeps up (it spins briefly before it
//!   sleeps). A record is committed by one store, so a sender killed mid-message leaves it
//!   wholly there or absent.
//! - **Large messages and messages with fds** go over the socket, as frames (see `frame.rs`:
//!   a message that does not fit one packet is split), under the direction's send lock. The
//!   sender first commits a *marker* record into the ring carrying the message's sequence
//!   number, then writes the frames, whose ids are that number. The ring thus orders every
//!   message: a receiver takes records in order and, on a marker, reads the socket until the
//!   message with that id is complete.
//! - **End of file and sleeping** stay with the kernel: the socket reports that every copy of
//!   the peer end is closed, also after SIGKILL. A receiver that finds the ring empty spins
//!   for as long as recent waits say it pays (`sys/futex.rs`, learned budgets), then sleeps
//!   up to 2 ms on the ring's own futex, which a sender's commit wakes (as a queue's get
//!   sleeps; a closing end wakes it too). Then it
//!   counts itself in the direction's *waiters*, looks at the ring once more and sleeps in
//!   `poll(2)` on the socket. So a peer SIGKILLed while a receiver sleeps on the futex shows
//!   as end of file up to 2 ms later than the socket reports it. A sender that commits a record while waiters
//!   are counted sends a one-byte *doorbell* packet (non-blocking: a full socket already
//!   holds doorbells). A receive woken by a doorbell leaves it on the socket; the next wait
//!   drops it before it sleeps, one packet per look between sleeps.
//!   [`Connection::poll`] and [`wait`] check the rings before the fds and
//!   use the same waiters-and-doorbell protocol, so they report a connection ready when its
//!   ring holds a message.
//!
//! What a receiver may find on the socket, holding the receive lock:
//!
//! | found                                  | when                        | action                          |
//! |----------------------------------------|-----------------------------|---------------------------------|
//! | frame with id = marker's               | reading a marker's message  | take it (reassemble)            |
//! | frame with an older id                 | reading a marker's message  | drop: a dead receiver's leftover|
//! | frame with a newer id                  | reading a marker's message  | keep; the marker's sender died: its message is lost, back to the ring |
//! | nothing, and the send lock is free or held by a later sender | reading a marker's message | the marker's sender died or gave up before its last frame: lost, back to the ring |
//! | end of file                            | reading a marker's message  | lost, back to the ring (which may hold later messages) |
//! | doorbell, garbage                      | any time                    | drop                            |
//! | any packet while the ring is empty     | waiting for a record        | drop: its marker was taken by a receiver that died (a live sender commits the marker before the frames, and the ring is looked at after the packet) |
//! | end of file while the ring is empty    | waiting for a record        | [`RecvError::Eof`]              |
//!
//! So a process killed anywhere never leaves a torn message: a sender killed mid-message
//! leaves it whole or absent (ring) or unfinished and skipped (socket); a receiver killed
//! mid-message takes that one message with it. A timed send that runs out (`try_send`,
//! `send_timeout`, ...) leaves its message the same way — absent, or unfinished and skipped
//! — so nothing of it is ever delivered and the connection goes on. A timed receive bounds
//! the wait for a message to begin; one whose frames are arriving is received to its end. Locks held by a dead process are taken over
//! (robust mutexes). One end may be used by many processes at once without ever
//! interleaving or splitting messages — which Python's pipes do not promise.
//!
//! A small message sent after every copy of the peer end closed is accepted into the ring
//! (nobody will read it) unless the sender notices first: a send checks the socket for a
//! hang-up before its put at most every 10 ms, and whenever it waits for room, and an end
//! that has received end-of-file (or found the peer gone when ringing a doorbell) knows;
//! then it fails with [`SendError::Disconnected`]. A send whose message is in the ring has
//! succeeded, even if the peer went right after (perhaps having taken it).
//!
//! # Readiness
//!
//! An end's socket ([`Connection::try_as_fd`], `AsFd`, `AsRawFd`: Python's `fileno()`) is
//! its *readiness fd*, for `poll(2)`, `epoll`, mio or tokio's `AsyncFd`. Small messages
//! bypass the socket, so it is kept in step with the ring only once some process has asked
//! for it: asking sets a sticky *watched* bit in the direction's shared cell (the high bit
//! of its waiters count, so a sender's one load after a commit is the same instruction with
//! or without a watcher, and an unwatched connection makes no system call more than
//! before). On a watched direction, for as long as the connection lives:
//!
//! - **Turns readable**: when a sender commits a record into an empty ring (precisely: the
//!   first record after a receiver last allowed a doorbell) it sends the doorbell packet;
//!   large messages arrive as frames on the socket anyway, followed by a doorbell; end of
//!   file (every copy of the peer end closed, also by SIGKILL) makes it readable for good,
//!   as for any socket.
//! - **Stays readable** while a message is waiting (level-triggered): receivers drop
//!   doorbells only while the ring is empty (a look at the socket, then at the ring, then
//!   the drop of the packet looked at: a doorbell rung after the look announces a record
//!   the ring check sees). A receive that reads a large message may drop doorbells lying in
//!   front of its frames; the trailing doorbell behind them stays.
//! - **Stops being readable** when a receive takes the last message: it then drops the
//!   doorbells and leftovers, under the receive lock. A receive that finds nothing
//!   (`try_recv`, `try_poll`, [`wait`]) does the same, so a stale doorbell costs a poller
//!   one spurious wake-up, never a spin.
//! - **A poller** waits for readable, then receives with `try_recv` (or `try_recv_bytes`)
//!   until it says `WouldBlock`, then polls again: with epoll level- or edge-triggered, mio
//!   and tokio (`AsyncFd::readable`, then `try_io` with `try_recv`, whose `WouldBlock`
//!   clears tokio's readiness). A wake-up may find nothing (another receiver took the
//!   message, or a doorbell was stale): that is not an error.
//! - **Messages already waiting when the fd is first asked for** (in any process) rang no
//!   doorbell, and a receiver cannot ring its own socket: they are announced by the next
//!   message's doorbell. So ask once when the end is set up, before messages flow (the
//!   arming call lets the next message ring), or receive with `try_recv` until
//!   `WouldBlock` right after asking, as the loop above does anyway.
//! - **Faults**: a receiver killed anywhere leaves either the doorbell or a cleared
//!   "rung" flag (it is cleared before any doorbell is dropped), so a waiting message stays
//!   announced or the next one rings. A sender killed between its commit and its doorbell,
//!   or in the middle of a large message with small ones queued behind it, can leave
//!   messages unannounced until the next message is sent (the library's own receivers and
//!   [`wait`] look at the ring every 100 ms whatever the socket says; a raw poller does not).
//!   Leftovers of a killed sender make the socket readable until a receive drops them.
//!
//! The library's own [`Connection::poll`] and [`wait`] do not need the watch: they count
//! themselves as sleepers for the time they wait (see above).
//!
//! Handles (a `Connection`, a `Queue`, a `Lock`, ...) inside a sent value travel with their
//! file descriptors (`SCM_RIGHTS`), so the receiving process can use them even though it
//! never inherited them. A `Connection` itself travels as its socket and its connection's
//! segment (with the indices of the directions it sends and receives on), each validated on
//! arrival (`dir.rs` lists the checks).

mod auth;
mod connection;
mod dir;
mod error;
mod frame;
mod listener;
mod recv;
mod stream;
mod wire;

pub use connection::Connection;
pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use listener::{Address, Client, Listener};
pub use wire::Fd;
// `wait` lives in its own module, below the facades that implement `Waitable`; its paths
// under `pipe` stay for Python's `multiprocessing.connection` layout.
pub use crate::wait::{
    try_wait, wait, wait_deadline, wait_timeout, TryWaitError, WaitRing, WaitTimeoutError, Waitable,
};

use std::os::fd::AsFd;
use std::time::Duration;

use self::dir::Dir;
use self::error::Stop;
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::sys::socket;

/// Socket buffer size asked for at creation (the kernel caps it at `net.core.wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest frame payload a sender writes (also bounded by the socket's send buffer).
const MAX_FRAME_PAYLOAD: usize = 256 << 10;
/// Largest frame a receiver accepts (header + payload); bigger packets are corrupt.
const MAX_FRAME: usize = frame::HEADER_LEN + MAX_FRAME_PAYLOAD;
/// Messages up to this many bytes (without fds) go through the shared-memory ring; longer
/// ones over the socket.
///
/// 2 MiB since 2026-12-03 (16 KiB before; issue 19): a 1 MiB message over the socket ran at
/// about 2.4 GB/s (two copies through the kernel, frames of 256 KiB, a wake-up per frame),
/// against about 19 GB/s for the same message through a queue's ring, and under half of
/// ipc-channel's 6.5 GB/s (bench `pipe`, 10 quiet runs). The ring holds a message whole
/// (one copy in, one out, committed by one store), so the ring grew to 8 MiB per direction
/// (`dir.rs`, `RING_BYTES`) and messages up to a quarter of it use it. Only touched pages
/// cost memory: a connection of small messages keeps its ring in its first pages, and the
/// pages a large message touched stay mapped only up to the ring's warm area (half the ring),
/// past which they are given back as the receiver passes them.
pub const INLINE_MAX: usize = 2 << 20;
/// The doorbell packet: "look at the ring". Not a frame (frames are at least 24 bytes).
const DOORBELL: [u8; 1] = [0xDB];
/// A sender waiting for room in the ring checks for a hang-up this often.
const ROOM_SLICE: Duration = Duration::from_millis(10);
/// A sender checks for a hang-up at most this often (milliseconds, coarse clock).
const HUP_CHECK_MS: u64 = 10;
/// A receiver waiting for a marker's frames checks whether its sender died this often
/// (doubling up to `LOST_MAX`).
const LOST_FIRST: Duration = Duration::from_millis(1);
const LOST_MAX: Duration = Duration::from_millis(16);
/// The largest encode or assembly buffer a thread keeps between messages. A thread that
/// once sent or received a larger value frees its buffer (and allocates per message, as
/// for any value of that size); one that keeps sending values up to this size keeps up to
/// this much memory per buffer.
const KEEP_BUFFER_MAX: usize = 64 << 20;

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
/// An OS error when the socket pair or the shared memory cannot be created (fd limit,
/// memory).
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
    // `ba` carries what b sends to a; `ab` what a sends to b. Both live in one segment.
    let (ba, ab) = Dir::create(duplex)?;
    let ends = match ab {
        Some(ab) => (
            Connection::from_parts(a, Some(ab.clone()), Some(ba.clone())),
            Connection::from_parts(b, Some(ba), Some(ab)),
        ),
        None => (
            Connection::from_parts(a, None, Some(ba.clone())),
            Connection::from_parts(b, Some(ba), None),
        ),
    };
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::dir::TAG_MARKER;
    use super::wire::Wire;
    use super::*;
    use crate::error::ErrorKind;
    use crate::handle;
    use crate::shm::Segment;

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
        assert_eq!(r.poll().unwrap_err().kind(), ErrorKind::Closed);
        // A large message goes over the socket: the hang-up is seen at once.
        assert!(matches!(
            w.send_bytes(&vec![0; INLINE_MAX + 1]),
            Err(SendError::Disconnected)
        ));
        // A small one goes into the ring: the sender notices within a few milliseconds.
        let start = std::time::Instant::now();
        loop {
            match w.send_bytes(b"x") {
                Err(SendError::Disconnected) => break,
                Ok(()) => assert!(start.elapsed() < Duration::from_secs(10), "never noticed"),
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn frame_bytes(id: u32, m: &[u8]) -> Vec<u8> {
        let mut f = frame::Header {
            kind: frame::Kind::Whole,
            id,
            index: 0,
            count: 1,
            total: m.len() as u64,
        }
        .encode()
        .to_vec();
        f.extend_from_slice(m);
        f
    }

    #[test]
    fn hostile_packets_and_records_are_dropped_and_the_end_stays_usable() {
        let (a, b) = pipe(true).unwrap();
        // Someone holding a's socket writes garbage into it, without markers.
        let raw = a.try_as_fd().unwrap();
        let send_raw = |bytes: &[u8]| {
            socket::send_msg(raw, &[IoSlice::new(bytes)], &[], false).unwrap();
        };
        send_raw(&vec![0u8; MAX_FRAME + 100]); // bigger than any frame
        send_raw(b"not a frame at all, just bytes");
        send_raw(&[]); // an empty packet is not end of file
        send_raw(&frame_bytes(0x9000_0000, b"a stray frame"));
        a.send_bytes(b"fine").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"fine");
        // A socket message after the junk: the junk is skipped.
        let big: Vec<u8> = (0..(INLINE_MAX * 3) as u32).map(|i| i as u8).collect();
        a.send_bytes(&big).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), big);
        // Garbage in the ring: a record with an unknown tag, a marker whose frames never come.
        let dir = a.out.as_ref().unwrap();
        assert!(dir.put(&[b"\x01\x02\x03"], false, Duration::ZERO).unwrap());
        let mut marker = [TAG_MARKER; 5];
        marker[..4].copy_from_slice(&12345u32.to_le_bytes());
        assert!(dir.put(&[&marker], false, Duration::ZERO).unwrap());
        a.send_bytes(b"after").unwrap();
        match b.recv_bytes() {
            Err(RecvError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.recv_bytes().unwrap(), b"after");
        a.send_bytes(&[0xff, 0xff, 0xff]).unwrap();
        match b.recv::<String>() {
            Err(RecvError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Codec),
            other => panic!("{other:?}"),
        }
        send_raw(b"junk before the end");
        assert!(b.try_poll().is_err(), "junk is not a message");
        drop(a);
        assert!(b.try_poll().is_ok(), "end of file is");
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
    }

    #[test]
    fn a_dead_senders_marker_without_frames_is_skipped() {
        let (a, b) = pipe(true).unwrap();
        // A sender that died right after committing its marker: no frames ever come.
        let dir = a.out.as_ref().unwrap();
        let seq = dir.next_seq();
        let mut marker = [TAG_MARKER; 5];
        marker[..4].copy_from_slice(&seq.to_le_bytes());
        assert!(dir.put(&[&marker], false, Duration::ZERO).unwrap());
        // Later messages: the socket one's frames, newer than the dead marker, are kept for
        // their own marker; the ring one follows.
        let big: Vec<u8> = (0..INLINE_MAX as u32 + 7).map(|i| i as u8).collect();
        a.send_bytes(&big).unwrap();
        a.send_bytes(b"small").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), big);
        assert_eq!(b.recv_bytes().unwrap(), b"small");
        assert!(b.try_poll().is_err());
    }

    #[test]
    fn a_received_description_is_checked() {
        let (a, _b) = pipe(true).unwrap();
        let seg = a.out.as_ref().unwrap().segment().clone();
        let queue = crate::ring::SharedQueue::create(4096, None).unwrap();
        let decode = |seg: &Segment, out: Option<u8>, inn: Option<u8>| {
            let (bytes, fds) = handle::with_exported_fds(|| {
                let fd = handle::export_fd(a.try_as_fd().unwrap(), None)
                    .map_err(|m| Error::new(ErrorKind::Codec, m))?;
                crate::codec::to_vec(&Wire {
                    fd,
                    seg: seg.clone(),
                    out,
                    inn,
                })
            })
            .unwrap();
            handle::with_imported_fds(fds, || Postcard::decode::<Connection>(&bytes))
        };
        // What a real end sends decodes; its description names one segment, once.
        assert!(decode(&seg, Some(0), Some(1)).unwrap().writable());
        let (_, fds) = handle::with_exported_fds(|| crate::codec::to_vec(&a)).unwrap();
        assert_eq!(fds.len(), 2, "an end travels as its socket and one segment");
        for (seg, out, inn, why) in [
            (&seg, Some(0), Some(0), "same direction"),
            (&seg, None, None, "neither direction"),
            (&seg, Some(2), Some(1), "no such direction"),
            (queue.segment(), Some(0), None, "wrong segment kind"),
        ] {
            let e = decode(seg, out, inn).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec);
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
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
