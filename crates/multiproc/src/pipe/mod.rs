//! Pipes: [`pipe`] makes two connected [`Connection`] ends (Python's `Pipe()`), and [`wait`]
//! waits on many of them (Python's `multiprocessing.connection.wait`). [`Listener`] and
//! [`Client`] connect unrelated processes (Python's `Listener`/`Client`, on the wire too):
//! they give the same `Connection`, over a socket only (see [`Listener`] for what differs).
//!
//! # Design
//!
//! A connection is a `SOCK_SEQPACKET` Unix socket pair plus, for each direction, a ring of
//! bytes in shared memory (the queue's ring, `queue/shared.rs`) and a small shared cell with
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
//!   briefly, then yields the CPU between looks (up to 200 us, as the queue does), then
//!   counts itself in the direction's *waiters*, looks at the ring once more and sleeps in
//!   `poll(2)` on the socket. A sender that commits a record while waiters
//!   are counted sends a one-byte *doorbell* packet (non-blocking: a full socket already
//!   holds doorbells). [`Connection::poll`] and [`wait`] check the rings before the fds and
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
//! hang-up at most every 10 ms, and whenever it waits for room or rings a doorbell, and an
//! end that has received end-of-file knows; then it fails with [`SendError::Disconnected`].
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
mod dir;
mod frame;
mod listener;
mod stream;

pub use listener::{Address, Client, Listener};

use std::cell::Cell;
use std::fmt;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::dir::{Dir, Record, TAG_DATA, TAG_MARKER};
use self::frame::{Assembler, Outcome};
use crate::codec::{ident, Codec, Postcard};
use crate::error::wait_error;
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::shm::Segment;
use crate::sys::{socket, Deadline};

/// Socket buffer size asked for at creation (the kernel caps it at `net.core.wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest frame payload a sender writes (also bounded by the socket's send buffer).
const MAX_FRAME_PAYLOAD: usize = 256 << 10;
/// Largest frame a receiver accepts (header + payload); bigger packets are corrupt.
const MAX_FRAME: usize = frame::HEADER_LEN + MAX_FRAME_PAYLOAD;
/// Messages up to this many bytes (without fds) go through the shared-memory ring; longer
/// ones over the socket.
pub const INLINE_MAX: usize = 16 << 10;
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
/// `wait` re-checks this often while another receiver is busy with a connection.
const BUSY_SLICE: Duration = Duration::from_millis(1);
/// Sleepers look at the ring at least this often, whatever the doorbell says (a sender
/// killed between claiming the doorbell and ringing it costs this much latency, no hang).
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// A send's question "give up now?" (see `Connection::send_bytes_interruptible`).
type Interrupted<'a, 'f> = Option<&'a mut (dyn FnMut() -> bool + 'f)>;

/// How long a send may wait for room: until `deadline`, or until `interrupted` says stop.
struct Until<'a, 'f> {
    deadline: Deadline,
    interrupted: Interrupted<'a, 'f>,
}

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

/// Why a receive failed ([`Connection::recv`], [`Connection::recv_bytes`] and the other
/// plain receives).
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
    Failed(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Eof => f.write_str(EOF_TEXT),
            RecvError::Closed => f.write_str(CLOSED_TEXT),
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
            RecvError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> RecvError {
        RecvError::Failed(e)
    }
}

impl RecvError {
    /// The broad kind, as in the crate [`Error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecvError::Eof => ErrorKind::Disconnected,
            RecvError::Closed => ErrorKind::Closed,
            RecvError::SendOnly => ErrorKind::InvalidState,
            RecvError::TooLong { .. } | RecvError::BufferTooShort(_) => ErrorKind::TooLarge,
            RecvError::Failed(e) => e.kind(),
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        match e {
            RecvError::Failed(inner) => inner,
            e => Error::new(e.kind(), e.to_string()),
        }
    }
}

/// Why a send failed ([`Connection::send`], [`Connection::send_bytes`]).
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
    Failed(Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str(DISCONNECTED_TEXT),
            SendError::Closed => f.write_str(CLOSED_TEXT),
            SendError::ReceiveOnly => f.write_str("connection is receive-only"),
            SendError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> SendError {
        SendError::Failed(e)
    }
}

impl SendError {
    /// The broad kind, as in the crate [`Error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            SendError::Disconnected => ErrorKind::Disconnected,
            SendError::Closed => ErrorKind::Closed,
            SendError::ReceiveOnly => ErrorKind::InvalidState,
            SendError::Failed(e) => e.kind(),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        match e {
            SendError::Failed(inner) => inner,
            e => Error::new(e.kind(), e.to_string()),
        }
    }
}

const EOF_TEXT: &str = "end of file: every copy of the other end is closed";
const DISCONNECTED_TEXT: &str = "every copy of the other end is closed";
const CLOSED_TEXT: &str = "connection is closed";

wait_error! {
    /// Why [`Connection::try_recv`] or [`Connection::try_recv_bytes`] returned no message.
    TryRecvError {
        /// No message is there now (and the peer is still there), or another receiver of
        /// this end is taking one.
        Empty => "no message to receive now", Timeout;
        /// End of file, as [`RecvError::Eof`].
        Eof => EOF_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only sends.
        SendOnly => "connection is send-only", InvalidState;
    }
    is_empty: Empty
}

wait_error! {
    /// Why a timed receive ([`Connection::recv_timeout`], `recv_deadline`,
    /// [`Connection::recv_bytes_timeout`], `recv_bytes_deadline`) returned no message.
    RecvTimeoutError {
        /// No message arrived before the deadline (nothing was consumed).
        Timeout => "timed out waiting for a message", Timeout;
        /// End of file, as [`RecvError::Eof`].
        Eof => EOF_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only sends.
        SendOnly => "connection is send-only", InvalidState;
    }
    is_timeout: Timeout
}

wait_error! {
    /// Why [`Connection::try_send`] or [`Connection::try_send_bytes`] did not send. The
    /// value was borrowed, so the caller still has it: `Full` carries nothing.
    TrySendError {
        /// No room now: the ring is full, another sender holds the socket, or the socket
        /// would not take the whole message at once. Nothing of the message reaches the
        /// receiver.
        Full => "no room to send now", Timeout;
        /// Every copy of the peer end is closed.
        Disconnected => DISCONNECTED_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only receives.
        ReceiveOnly => "connection is receive-only", InvalidState;
    }
    is_full: Full
}

wait_error! {
    /// Why a timed send ([`Connection::send_timeout`], `send_deadline`,
    /// [`Connection::send_bytes_timeout`], `send_bytes_deadline`) did not send. The value
    /// was borrowed, so the caller still has it: `Timeout` carries nothing.
    SendTimeoutError {
        /// There was no room for the whole message before the deadline (nobody reading).
        /// Nothing of the message reaches the receiver: a message cut off mid-way on the
        /// socket is skipped by the receiver as one of a dead sender, and the connection
        /// stays usable in both directions.
        Timeout => "timed out waiting for room to send", Timeout;
        /// Every copy of the peer end is closed.
        Disconnected => DISCONNECTED_TEXT, Disconnected;
        /// This end was closed.
        Closed => CLOSED_TEXT, Closed;
        /// This end only receives.
        ReceiveOnly => "connection is receive-only", InvalidState;
    }
    is_timeout: Timeout
}

wait_error! {
    /// Why [`Connection::try_poll`] or [`try_wait`] found nothing ready.
    TryWaitError {
        /// Nothing is ready now.
        WouldBlock => "nothing is ready now", Timeout;
    }
    is_would_block: WouldBlock
}

wait_error! {
    /// Why [`Connection::poll_timeout`], `poll_deadline`, [`wait_timeout`] or
    /// [`wait_deadline`] found nothing ready.
    WaitTimeoutError {
        /// Nothing became ready before the deadline.
        Timeout => "timed out waiting for readiness", Timeout;
    }
    is_timeout: Timeout
}

/// How an internal receive or send ended without its value: the deadline passed, or the
/// plain call's error. Each public form maps it onto its own error.
enum Stop<E> {
    Timeout,
    Error(E),
}

impl<E> From<E> for Stop<E> {
    fn from(e: E) -> Self {
        Stop::Error(e)
    }
}

impl Stop<RecvError> {
    fn plain(self) -> RecvError {
        match self {
            Stop::Error(e) => e,
            // (A wait without a deadline does not run out.)
            Stop::Timeout => RecvError::Failed(crate::Timeout.into()),
        }
    }

    fn tried(self) -> TryRecvError {
        match self {
            Stop::Timeout => TryRecvError::Empty,
            Stop::Error(RecvError::Eof) => TryRecvError::Eof,
            Stop::Error(RecvError::Closed) => TryRecvError::Closed,
            Stop::Error(RecvError::SendOnly) => TryRecvError::SendOnly,
            Stop::Error(e) => TryRecvError::Failed(e.into()),
        }
    }

    fn timed(self) -> RecvTimeoutError {
        match self {
            Stop::Timeout => RecvTimeoutError::Timeout,
            Stop::Error(RecvError::Eof) => RecvTimeoutError::Eof,
            Stop::Error(RecvError::Closed) => RecvTimeoutError::Closed,
            Stop::Error(RecvError::SendOnly) => RecvTimeoutError::SendOnly,
            Stop::Error(e) => RecvTimeoutError::Failed(e.into()),
        }
    }
}

impl Stop<SendError> {
    fn plain(self) -> SendError {
        match self {
            Stop::Error(e) => e,
            Stop::Timeout => SendError::Failed(crate::Timeout.into()),
        }
    }

    fn tried(self) -> TrySendError {
        match self {
            Stop::Timeout => TrySendError::Full,
            Stop::Error(SendError::Disconnected) => TrySendError::Disconnected,
            Stop::Error(SendError::Closed) => TrySendError::Closed,
            Stop::Error(SendError::ReceiveOnly) => TrySendError::ReceiveOnly,
            Stop::Error(SendError::Failed(e)) => TrySendError::Failed(e),
        }
    }

    fn timed(self) -> SendTimeoutError {
        match self {
            Stop::Timeout => SendTimeoutError::Timeout,
            Stop::Error(SendError::Disconnected) => SendTimeoutError::Disconnected,
            Stop::Error(SendError::Closed) => SendTimeoutError::Closed,
            Stop::Error(SendError::ReceiveOnly) => SendTimeoutError::ReceiveOnly,
            Stop::Error(SendError::Failed(e)) => SendTimeoutError::Failed(e),
        }
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
///
/// An end from a [`Listener`] or a [`Client`] has the same calls over a socket only
/// ([`is_socket`](Self::is_socket)), in CPython's wire format: see [`Listener`] for what
/// differs (no handles inside, no sending the end itself, one sender per process at a time).
pub struct Connection<C = Postcard> {
    fd: Option<OwnedFd>,
    /// The direction this end sends on (`None`: receive-only, or closed).
    out: Option<Dir>,
    /// The direction this end receives on (`None`: send-only, or closed).
    inn: Option<Dir>,
    /// Largest frame payload this end writes.
    frame_payload: usize,
    /// Coarse-clock milliseconds of the last hang-up check by a send through the ring.
    hup_checked: AtomicU64,
    /// This copy saw the peer hang up (end of file, `EPIPE`): sends fail at once.
    hup_seen: AtomicBool,
    /// `Some` for a connection over a byte-stream socket (from a [`Listener`] or a
    /// [`Client`]): no rings, Python's framing (`stream.rs`); `out` and `inn` are `None`.
    stream: Option<Arc<stream::Stream>>,
    _codec: PhantomData<fn() -> C>,
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
    /// A receive buffer of `MAX_FRAME` bytes per thread, taken while in use.
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    /// An encode (or record) buffer per thread, taken while in use.
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

/// Allocates this thread's receive buffer at its first receive of any kind, not at its first
/// socket message. Measured (bench row "Pipe one-way 1 MiB bytes", after the ring rows): a
/// 256 KiB buffer allocated late lands in glibc's heap in a place that makes the heap trim
/// and grow again around every freed 1 MiB message, so each message faults its pages in
/// anew: 2.8 GB/s instead of 8 GB/s. Allocated early, as before the ring existed, it does
/// not. (Receiving frames straight into the message buffer, without this buffer, would
/// remove the dependence and a copy.)
fn warm_scratch() {
    SCRATCH.with(|s| {
        let b = s.take();
        s.set(Some(
            b.unwrap_or_else(|| vec![0u8; MAX_FRAME].into_boxed_slice()),
        ));
    });
}

fn take_encode_buf() -> Vec<u8> {
    let mut b = ENCODE.with(|e| e.take()).unwrap_or_default();
    b.clear();
    b
}

fn give_back_encode_buf(b: Vec<u8>) {
    if b.capacity() <= 1 << 20 {
        ENCODE.with(|e| e.set(Some(b)));
    }
}

fn os_send_error(e: std::io::Error) -> SendError {
    if e.raw_os_error() == Some(libc::EPIPE) || e.raw_os_error() == Some(libc::ECONNRESET) {
        SendError::Disconnected
    } else {
        SendError::Failed(Error::os("cannot send on connection", e))
    }
}

fn os_recv_error(e: std::io::Error) -> RecvError {
    RecvError::Failed(Error::os("cannot receive on connection", e))
}

/// `recvmsg` on a connection's socket. `ECONNRESET` (the peer closed with packets unread,
/// say doorbells) is reported once by the kernel and then cleared, in front of whatever is
/// still queued for us: it is retried, and the queue (or end of file) is what counts.
fn recv_packet(
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
    fn from_parts(fd: OwnedFd, out: Option<Dir>, inn: Option<Dir>) -> Connection<C> {
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
    fn from_stream(fd: OwnedFd, max_message_len: usize) -> Connection<C> {
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

    /// True for an end from a [`Listener`] or a [`Client`] (a socket that may reach another
    /// machine, with Python's framing), false for one from [`pipe`].
    pub fn is_socket(&self) -> bool {
        self.stream.is_some()
    }

    /// For `poll`: an error unless this end can receive.
    fn check_readable(&self) -> Result<()> {
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
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Marks this end's receiving direction watched (see "Readiness" in the module docs).
    /// The first call for a direction, in any process, also settles the socket with what
    /// the ring holds, as far as a receiver can.
    fn watch(&self) {
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

    fn send_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &Dir), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
        self.out
            .as_ref()
            .map(|d| (fd.as_fd(), d))
            .ok_or(SendError::ReceiveOnly)
    }

    fn recv_fd(&self) -> std::result::Result<(BorrowedFd<'_>, &Dir), RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
        self.inn
            .as_ref()
            .map(|d| (fd.as_fd(), d))
            .ok_or(RecvError::SendOnly)
    }

    /// Sends `body` as one message (`typed`: it starts with a type tag, see
    /// `codec/ident.rs`; else raw bytes) with `fds` attached, waiting for room until
    /// `deadline`.
    fn send_message(
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
    fn put_record(
        &self,
        fd: BorrowedFd<'_>,
        dir: &Dir,
        parts: &[&[u8]],
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
        loop {
            let slice = match deadline.remaining() {
                Ok(None) => ROOM_SLICE,
                Ok(Some(left)) => left.min(ROOM_SLICE),
                Err(()) => Duration::ZERO, // one more look
            };
            if dir.put(parts, typed, slice).map_err(SendError::Failed)? {
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
                Err(e) => Err(os_send_error(e).into()),
            };
        }
        // The ring does not notice a peer that has gone: look now and then.
        let now = crate::sys::coarse_millis();
        let last = self.hup_checked.load(Ordering::Relaxed);
        if now.wrapping_sub(last) >= HUP_CHECK_MS || last == 0 {
            self.hup_checked.store(now.max(1), Ordering::Relaxed);
            if self.peer_gone(fd)? {
                return Err(SendError::Disconnected.into());
            }
        }
        Ok(())
    }

    /// True when every copy of the peer end is closed (the socket reports a hang-up).
    fn peer_gone(&self, fd: BorrowedFd<'_>) -> std::result::Result<bool, SendError> {
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
    fn send_on_socket(
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
    fn send_frames(
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

    /// Receives one whole message and the fds that came with it, waiting until `deadline`.
    fn recv_message(
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
    fn recv_with<R>(
        &self,
        from_ring: impl FnOnce(&[u8], bool) -> std::result::Result<R, RecvError>,
        from_socket: impl FnOnce(Message, bool) -> std::result::Result<R, RecvError>,
        max: Option<usize>,
        stream_typed: bool,
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
                    let r = recv_socket_message(fd, dir, seq, &mut scratch, max);
                    give_back_scratch(scratch);
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
                    if let Err(e) = wait_for_record(fd, dir, deadline) {
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

    fn send_value<T: Serialize + ?Sized>(
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

    fn recv_value<T: DeserializeOwned>(
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
                let bytes = ident::value_of::<T>(tag, &body, typed)?;
                if fds.is_empty() {
                    return Ok(C::decode(bytes)?);
                }
                Ok(handle::with_imported_fds(fds, || C::decode(bytes))?)
            },
            None,
            true,
            deadline,
        );
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        r
    }
}

fn check_sent(n: usize, want: usize) -> std::result::Result<(), SendError> {
    if n == want {
        Ok(())
    } else {
        Err(SendError::Failed(Error::new(
            ErrorKind::Os,
            format!("short send on a packet socket ({n} of {want} bytes)"),
        )))
    }
}

/// What is at the head of a socket, looked at without taking it.
enum Head {
    /// Nothing to read now.
    Empty,
    /// End of file: every copy of the peer end is closed.
    Eof,
    /// A doorbell, or a packet that is not a frame.
    Junk,
    /// A frame with this message id.
    Frame(u32),
}

fn peek_head(fd: BorrowedFd<'_>) -> std::result::Result<Head, RecvError> {
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
type Message = (Vec<u8>, Vec<OwnedFd>);

/// Takes the packet at the head of the socket and drops it.
fn drop_head(fd: BorrowedFd<'_>) -> std::result::Result<(), RecvError> {
    let mut b = [0u8; 1];
    let mut fds = Vec::new();
    match recv_packet(fd, &mut b, &mut fds, false) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(os_recv_error(e)),
        Ok(_) => Ok(()),
    }
}

/// What [`drain_junk`] found.
enum Drained {
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
fn drain_junk(fd: BorrowedFd<'_>, dir: &Dir) -> std::result::Result<Drained, RecvError> {
    dir.clear_rung();
    loop {
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
fn settle_watched(fd: BorrowedFd<'_>, dir: &Dir, read_socket: bool) {
    if !dir.has_records() {
        let _ = drain_junk(fd, dir);
    } else if read_socket && matches!(peek_head(fd), Ok(Head::Empty)) {
        dir.clear_rung();
    }
}

/// Looks for a record without sleeping: spins briefly, then keeps looking with a
/// `sched_yield` between looks (as the queue does: a sender that needs this very CPU runs at
/// once), when another CPU can run the sender, not past `deadline`; true when the ring holds
/// one.
fn spin_for_record(dir: &Dir, deadline: Deadline) -> bool {
    crate::sys::futex::spin_yield_until(|| dir.has_records(), deadline)
}

/// With the receive lock held and the ring found empty: waits until the ring may hold a
/// record, at most until `deadline`. `Err(Eof)` when every copy of the peer end is closed
/// and the ring is empty; `Err(Timeout)` when the deadline passed with neither (after one
/// last look at the socket, so that a `try_` receive reports end of file too).
fn wait_for_record(
    fd: BorrowedFd<'_>,
    dir: &Dir,
    deadline: Deadline,
) -> std::result::Result<(), Stop<RecvError>> {
    if dir.has_records() || spin_for_record(dir, deadline) {
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
        match drain_junk(fd, dir)? {
            Drained::Record => return Ok(()),
            Drained::Eof => return Err(RecvError::Eof.into()),
            Drained::Empty => {}
        }
    }
}

/// Sends one packet without blocking, waiting for room in the socket until `deadline`
/// (a timed send's frame). `Err(Timeout)` when the socket stayed full.
fn send_packet_until(
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

/// Waits until the socket has a packet, spinning first (a sender mid-message writes the next
/// frame soon), then sleeping up to `slice`; true when it has one.
fn wait_for_packet(
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
fn recv_socket_message(
    fd: BorrowedFd<'_>,
    dir: &Dir,
    seq: u32,
    scratch: &mut [u8],
    max: Option<usize>,
) -> std::result::Result<Option<Message>, RecvError> {
    let mut asm = Assembler::new(max);
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
                    max: max.unwrap_or(usize::MAX),
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

/// Wire form of an end: its socket's index in the message's fd table, the connection's
/// segment (one for all directions, so a receiver maps it once), and which of the segment's
/// directions the end sends and receives on.
#[derive(Serialize, Deserialize)]
struct Wire {
    fd: u32,
    seg: Segment,
    out: Option<u8>,
    inn: Option<u8>,
}

impl<C> Serialize for Connection<C> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| crate::handle::ser_err::<S::Error>("cannot send a closed Connection"))?;
        if self.stream.is_some() {
            return Err(crate::handle::ser_err::<S::Error>(
                "a Listener/Client connection cannot be sent to another process (fork \
                 children inherit it)",
            ));
        }
        let seg = match (&self.out, &self.inn) {
            (Some(d), _) | (None, Some(d)) => d.segment(),
            (None, None) => {
                return Err(crate::handle::ser_err::<S::Error>(
                    "cannot send a Connection without directions",
                ))
            }
        };
        debug_assert!(
            self.inn
                .as_ref()
                .is_none_or(|d| d.segment().id() == seg.id()),
            "both directions of a connection live in one segment"
        );
        let index =
            handle::export_fd(fd.as_fd(), None).map_err(crate::handle::ser_err::<S::Error>)?;
        Wire {
            fd: index,
            seg: seg.clone(),
            out: self.out.as_ref().map(Dir::index),
            inn: self.inn.as_ref().map(Dir::index),
        }
        .serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for Connection<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        if w.out.is_none() && w.inn.is_none() {
            return Err(crate::handle::de_err::<D::Error>(
                "connection description has neither direction",
            ));
        }
        if w.out.is_some() && w.out == w.inn {
            return Err(crate::handle::de_err::<D::Error>(
                "connection description sends and receives on the same direction",
            ));
        }
        let open = |i: Option<u8>| i.map(|i| Dir::open(&w.seg, i)).transpose();
        let out = open(w.out).map_err(crate::handle::de_err::<D::Error>)?;
        let inn = open(w.inn).map_err(crate::handle::de_err::<D::Error>)?;
        let fd = handle::import_fd(w.fd).map_err(crate::handle::de_err::<D::Error>)?;
        if !socket::is_unix_seqpacket(fd.as_fd()) {
            return Err(crate::handle::de_err::<D::Error>(
                "received fd for a Connection is not a Unix SOCK_SEQPACKET socket",
            ));
        }
        Ok(Connection::from_parts(fd, out, inn))
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

/// Something [`wait`] can wait on: it is ready when its fd is readable (for a
/// [`Connection`]: when a message or end-of-file is there to receive).
///
/// Implemented for [`Connection`], for [`Process`](crate::Process) (it has ended: Python's
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
    dir: &'a Dir,
}

impl fmt::Debug for WaitRing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitRing").field("fd", &self.fd).finish()
    }
}

/// What [`WaitRing::settle`] found on a connection whose socket is readable.
enum Settled {
    Ready,
    NotReady,
    /// Another receiver holds the receive lock: look again soon.
    Busy,
}

impl WaitRing<'_> {
    /// The socket was readable: is there a message (or end of file), or only doorbells and
    /// leftovers (dropped here, under the receive lock, if it is free)?
    fn settle(&self) -> std::result::Result<Settled, RecvError> {
        if self.dir.has_records() {
            return Ok(Settled::Ready);
        }
        let Some(_held) = self.dir.try_lock_recv() else {
            return Ok(Settled::Busy);
        };
        Ok(match drain_junk(self.fd, self.dir)? {
            Drained::Record | Drained::Eof => Settled::Ready,
            Drained::Empty => Settled::NotReady,
        })
    }
}

impl<C> Waitable for Connection<C> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        // Not `try_as_fd`: `wait` counts itself as a sleeper and needs no watch.
        self.socket()
    }

    fn wait_ring(&self) -> Option<WaitRing<'_>> {
        let (fd, dir) = self.recv_fd().ok()?;
        Some(WaitRing { fd, dir })
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
            r.dir.sleeping(true);
        }
        let in_ring: Vec<bool> = rings
            .iter()
            .map(|r| r.is_some_and(|r| r.dir.has_records()))
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
            r.dir.sleeping(false);
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
                    match r.settle()? {
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
        let queue = crate::queue::shared::SharedQueue::create(4096, None).unwrap();
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
