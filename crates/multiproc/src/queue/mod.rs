//! Cross-process FIFO queues in shared memory: [`Queue`], [`SimpleQueue`], [`JoinableQueue`].
//!
//! A queue is a ring of length-prefixed frames in its own shared segment, guarded by two robust
//! process-shared mutexes (one for producers, one for consumers). Items are serialized by a [`Codec`] ([`Postcard`] by default) in the
//! caller, so a value that cannot be serialized fails at `put`, and one that does not decode
//! as `T` fails at `get` — the queue goes on either way. There are no background threads:
//! when `put` returns, the item is in the queue.
//!
//! # Guarantees
//!
//! - **Crash safety.** A process killed anywhere inside `put`, `get`, `put_many` or
//!   `get_many` leaves each message wholly in the queue or wholly absent; the others go on
//!   without a hang. A consumer killed after taking a batch loses that batch (at most one
//!   `get_many`), nothing else.
//! - **End of stream.** [`Queue::close`] means "no more items, from anyone": puts fail with
//!   `Closed`, every consumer drains what is left and then gets `Closed`; blocked callers
//!   wake at once. `for item in &q` ends there — no sentinels, however many consumers.
//! - **No system call when uncontended**: `put`/`get` are a mutex CAS, a copy and a store;
//!   the futex is touched only when someone sleeps.
//! - **Memory follows the backlog.** [`Queue::new`] reserves a large ring (1 GiB by default)
//!   of *address space*; pages are allocated as they are written and given back to the kernel
//!   as a backlog drains, while a consumer that keeps up keeps the ring in its first pages.
//!   A producer ahead of its consumer keeps the ring near its start too: a put whose frame
//!   would go well past the backlog (beyond 4 MiB, or into pages that are given back) first
//!   waits a little for the consumers to empty the queue, then starts again at the ring's
//!   start. That wait is bounded (at most 10 ms, only while consumers keep taking, and
//!   never for `try_put`), and the put appends as before when it runs out: it keeps a
//!   steady stream's bytes in the cache (1 MiB messages: about 23 GB/s instead of 17, or
//!   1 GB/s through fresh pages; see `ring/mod.rs`, `DRAIN_MAX`).
//!
//! ```
//! use multiproc::queue::{Queue, TryGetError};
//!
//! let q: Queue<String> = Queue::bounded(3)?;
//! q.put("hello".to_string())?;
//! assert_eq!(q.get()?, "hello");
//! assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
//! q.close();
//! assert!(q.put("late".to_string()).is_err());
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Readiness
//!
//! A queue's fd (`AsFd`, `AsRawFd`, on [`Queue`], [`SimpleQueue`] and [`JoinableQueue`]) is
//! its *readiness fd*: an eventfd made with the queue, which handles carry everywhere (forked
//! children inherit it; a queue sent to a spawned child or over a `Connection` travels with
//! it). Asking for it arms it for good, in every process; until then it costs one fd per queue
//! and nothing on puts and gets, and after it they stay free of system calls except at
//! transitions (a `write` by the first producer after a get found the queue empty, a
//! `read` by that get):
//!
//! - **Turns readable** when a message is put into a queue announced empty (one `write`
//!   by the first producer after the transition, not one per message), and for good when
//!   the queue is closed.
//! - **Stays readable** while a message is waiting (level-triggered).
//! - **Stops being readable** when a get finds the queue empty (`try_get`'s `Empty`, a
//!   timed get that runs out), as a poller's loop does: it drains the eventfd, then looks
//!   again (one `read`). A get that takes the last message leaves it readable until then
//!   (at most one spurious wake-up), so a consumer that keeps up with blocking gets on a
//!   watched queue makes no system call, and nor do its producers (the fd stays rung).
//! - **A poller** waits for readable, then gets with `try_get` (or `try_get_many`) until
//!   `Empty`, then polls again: epoll level- or edge-triggered, mio, tokio (`AsyncFd::
//!   readable`, then `try_io` mapping `Empty` to `WouldBlock`). A wake-up may find nothing
//!   (another consumer took the message): not an error.
//! - **Messages already waiting when the fd is first asked for** are announced at once
//!   (the arming call looks).
//! - **Faults**: a producer killed between its put and its `write`, or a consumer killed
//!   inside the drain, can leave waiting messages unannounced until the next put; a killed
//!   process never leaves the fd silent for later messages. A stale
//!   `write` costs a poller one spurious wake-up.

mod error;
// Named queues (issue 16): constructors by name, in their own file.
mod named;

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::codec::ident::{self, TAG_LEN};
use crate::codec::{Codec, Postcard};
#[allow(unused_imports)] // the docs' links
use crate::error::ErrorKind;
use crate::error::{Error, Result, Timeout, WouldBlock};
use crate::ring::{check_bell, new_bell, FrameRef, GetStop, PutStop, SharedQueue, Wait};
use crate::shm::Segment;
use crate::sys::Deadline;

/// Ring bytes of a queue unless [`QueueBuilder::capacity_bytes`] says otherwise: 1 GiB of
/// address space, of which only the pages a backlog needs are ever backed by memory.
pub const DEFAULT_CAPACITY_BYTES: u64 = 1 << 30;

thread_local! {
    /// Scratch buffer for encoding (reused, so a put allocates nothing in steady state).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a cleared scratch buffer (a fresh one if the scratch is in use, e.g. when a
/// `Serialize` impl itself puts into a queue).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > 16 << 20 {
                *buf = Vec::new(); // don't keep a huge buffer for good
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// A multi-producer, multi-consumer FIFO queue shared between processes (Python's
/// `multiprocessing.Queue`).
///
/// A handle is cheap to [`Clone`]; clones (in this process, in forked children, or sent to
/// spawned children, since the handle is `Serialize + Deserialize` through the fd table)
/// all refer to the same queue. The memory is freed when the last process holding it goes.
///
/// Items are `T: Serialize + DeserializeOwned`, encoded with `C` (default [`Postcard`]).
/// The `*_bytes` calls skip the codec and move raw bytes.
///
/// ```
/// use multiproc::queue::Queue;
///
/// let q: Queue<(u32, String)> = Queue::new()?;
/// q.put_many(vec![(1, "a".into()), (2, "b".into())])?;
/// assert_eq!(q.len(), 2);
/// let got = q.get_many(10)?;
/// assert_eq!(got, vec![(1, "a".into()), (2, "b".into())]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Queue<T, C: Codec = Postcard> {
    shared: SharedQueue,
    /// `T`'s type tag (`codec/ident.rs`), written before every typed message and checked
    /// by every typed get.
    tag: u64,
    _marker: PhantomData<fn(T) -> T>,
    _codec: PhantomData<fn() -> C>,
}

impl<T, C: Codec> Clone for Queue<T, C> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            tag: self.tag,
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }
}

impl<T, C: Codec> fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.snapshot();
        f.debug_struct("Queue")
            .field("id", &format_args!("{:016x}", self.shared.id()))
            .field("len", &st.count)
            .field("maxsize", &self.shared.maxsize())
            .field("closed", &st.closed)
            .finish()
    }
}

impl<T, C: Codec> AsFd for Queue<T, C> {
    /// The queue's *readiness fd*: an eventfd that is readable whenever a message is
    /// waiting (or the queue is closed), for `poll(2)`, `epoll`, mio or tokio's `AsyncFd`.
    /// Asking for it (in any process, once is enough) arms it; the contract, and what a
    /// poller must do, are in the [module docs](mod@crate::queue#readiness).
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use multiproc::queue::Queue;
    /// use rustix::event::{poll, PollFd, PollFlags, Timespec};
    ///
    /// let q: Queue<u32> = Queue::new()?;
    /// let fd = q.as_fd(); // asked once: from now on the fd tells
    /// q.put(7)?;
    /// let t = Timespec { tv_sec: 5, tv_nsec: 0 };
    /// assert_eq!(poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&t))?, 1);
    /// assert_eq!(q.try_get()?, 7);
    /// assert!(q.try_get().is_err()); // empty: the fd is settled
    /// let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    /// assert_eq!(poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&now))?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// For a queue opened by name ([`Queue::open_named`] and the rest), which has no
    /// readiness fd: an eventfd cannot be shared with unrelated processes. Use
    /// [`Queue::try_as_fd`] where a queue may be named.
    #[doc(alias = "readiness_fd")]
    #[doc(alias = "fileno")]
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.try_as_fd().expect(
            "a queue opened by name has no readiness fd (an eventfd cannot be shared with \
             unrelated processes): use Queue::try_as_fd",
        )
    }
}

impl<T, C: Codec> Queue<T, C> {
    /// The readiness fd, armed (as [`as_fd`](AsFd::as_fd)), or `None` for a queue opened by
    /// name, which has none (an eventfd cannot be shared with unrelated processes; see
    /// `docs/names.md`).
    pub fn try_as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.shared.watch()
    }

    /// The readiness fd, armed (as [`try_as_fd`](Self::try_as_fd)) and brought in step with
    /// the queue now: readable if and only if a message is waiting or the queue is closed
    /// (one `read` of the eventfd, under its lock, and a `write` if something is waiting).
    /// For a caller about to wait on the fd and then make a *blocking* get (Python's
    /// `connection.wait([q._reader])` then `recv()`): a get that took the last message
    /// leaves the fd readable (see the [module docs](mod@crate::queue#readiness)), and
    /// such a caller would block in its get. `None` for a queue opened by name.
    pub fn settled_fd(&self) -> Option<BorrowedFd<'_>> {
        let fd = self.shared.watch()?;
        self.shared.settle_now();
        Some(fd)
    }
}

impl<T, C: Codec> AsRawFd for Queue<T, C> {
    /// The readiness fd's number: as [`Queue::as_fd`](AsFd::as_fd) (it arms the fd).
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A queue travels as its segment and its readiness eventfd (both fds, see `handle.rs`); a
/// queue opened by name has no readiness fd and travels without one.
impl<T, C: Codec> Serialize for Queue<T, C> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let bell = match self.shared.bell() {
            Some(b) => Some(
                crate::handle::export_fd(b, None).map_err(crate::handle::ser_err::<S::Error>)?,
            ),
            None => None,
        };
        (self.shared.segment(), bell).serialize(s)
    }
}

impl<'de, T, C: Codec> Deserialize<'de> for Queue<T, C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (seg, bell) = <(Segment, Option<u32>)>::deserialize(d)?;
        let shared = SharedQueue::open(seg).map_err(D::Error::custom)?;
        let Some(bell) = bell else {
            return Ok(Queue::from_shared(shared));
        };
        let bell = crate::handle::import_fd(bell).map_err(crate::handle::de_err::<D::Error>)?;
        check_bell(bell.as_fd()).map_err(D::Error::custom)?;
        Ok(Queue::from_shared(shared.with_bell(bell)))
    }
}

/// Configures a [`Queue`] before creating it: [`Queue::builder`].
#[derive(Debug)]
#[must_use]
pub struct QueueBuilder<T, C: Codec = Postcard> {
    maxsize: Option<usize>,
    capacity_bytes: u64,
    _marker: PhantomData<fn() -> (T, C)>,
}

impl<T, C: Codec> QueueBuilder<T, C> {
    /// Encodes items with codec `C2` instead (default [`Postcard`]).
    ///
    /// ```
    /// use multiproc::codec::Postcard;
    /// use multiproc::queue::Queue;
    /// let q = Queue::<u32>::builder().codec::<Postcard>().build()?;
    /// q.put(1)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn codec<C2: Codec>(self) -> QueueBuilder<T, C2> {
        QueueBuilder {
            maxsize: self.maxsize,
            capacity_bytes: self.capacity_bytes,
            _marker: PhantomData,
        }
    }

    /// At most `n` items queued at once (`Queue(maxsize)` in Python). Default: no bound on
    /// the number of items. 0 means no bound, as in Python (`maxsize <= 0`).
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = (n > 0).then_some(n);
        self
    }

    /// Ring size in bytes (rounded up to whole pages); bounds the total size of queued
    /// messages and the size of one message (a little less than this). Default
    /// [`DEFAULT_CAPACITY_BYTES`]. It reserves address space, not memory: pages are backed
    /// only while a backlog needs them.
    pub fn capacity_bytes(mut self, n: u64) -> Self {
        self.capacity_bytes = n;
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for an absurd capacity; [`ErrorKind::Os`] when the
    /// shared memory cannot be created.
    pub fn build(self) -> Result<Queue<T, C>> {
        let shared = SharedQueue::create(self.capacity_bytes, self.maxsize.map(|n| n as u64))?;
        Ok(Queue::from_shared(shared.with_bell(new_bell()?)))
    }
}

/// What a blocking put reports (it never stops for `Full` or `Timeout`).
fn put_error<T>(item: T, stop: PutStop) -> PutError<T> {
    put_stop(
        item,
        stop,
        PutError::Closed,
        PutError::Closed,
        PutError::Closed,
        PutError::Failed,
    )
}

/// What a `try_put` reports: running out of a zero-length wait is `Full`.
fn try_put_error<T>(item: T, stop: PutStop) -> TryPutError<T> {
    put_stop(
        item,
        stop,
        TryPutError::Full,
        TryPutError::Full,
        TryPutError::Closed,
        TryPutError::Failed,
    )
}

/// What a timed put reports: still full at the deadline is `Timeout`.
fn put_timeout_error<T>(item: T, stop: PutStop) -> PutTimeoutError<T> {
    put_stop(
        item,
        stop,
        PutTimeoutError::Timeout,
        PutTimeoutError::Timeout,
        PutTimeoutError::Closed,
        PutTimeoutError::Failed,
    )
}

fn put_stop<T, E>(
    item: T,
    stop: PutStop,
    full: fn(T) -> E,
    timeout: fn(T) -> E,
    closed: fn(T) -> E,
    failed: fn(T, Error) -> E,
) -> E {
    match stop {
        PutStop::Full => full(item),
        PutStop::Timeout => timeout(item),
        PutStop::Closed => closed(item),
        PutStop::Failed(e) => failed(item, e),
    }
}

/// The wait of a plain (blocking) call.
const FOREVER: Wait = Wait::For(None);

/// The wait of a `_timeout` call: any `Duration`, up to `Duration::MAX`.
fn within(timeout: Duration) -> Wait {
    Wait::timeout(Some(timeout))
}

/// The wait of a `_deadline` call. (The ring starts its clock at its first wait, so a
/// deadline is kept to within the time of the first attempt, a few microseconds.)
fn until(deadline: Instant) -> Wait {
    Wait::timeout(Some(deadline.saturating_duration_since(Instant::now())))
}

/// The constructors name the default codec, so that `let q = Queue::new()?; q.put(5u32)?;`
/// infers `Queue<u32>` (another codec: [`QueueBuilder::codec`]).
impl<T> Queue<T> {
    /// A queue with no bound on the number of items (Python's `Queue()`); its byte capacity
    /// is [`DEFAULT_CAPACITY_BYTES`] of address space, backed by memory only as a backlog
    /// needs it.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when the shared memory cannot be created.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`). A `maxsize` of 0
    /// means no bound, as in Python: `Queue::bounded(0)` is [`Queue::new`].
    ///
    /// ```
    /// use multiproc::queue::Queue;
    /// assert_eq!(Queue::<u8>::bounded(2)?.maxsize(), Some(2));
    /// assert_eq!(Queue::<u8>::bounded(0)?.maxsize(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when the shared memory cannot be created.
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Self::builder().maxsize(maxsize).build()
    }

    /// A builder for the less common settings (byte capacity).
    ///
    /// ```
    /// use multiproc::queue::Queue;
    /// let q: Queue<Vec<u8>> = Queue::builder().maxsize(4).capacity_bytes(64 << 20).build()?;
    /// q.put(vec![0; 32 << 20])?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            maxsize: None,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            _marker: PhantomData,
        }
    }
}

impl<T, C: Codec> Queue<T, C> {
    fn from_shared(shared: SharedQueue) -> Self {
        Queue {
            shared,
            tag: ident::tag_of::<T>(),
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }

    /// Items queued now. A snapshot: it may be stale at once (Python's `qsize()`).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.shared.snapshot().count as usize
    }

    /// True when nothing is queued now (a snapshot, Python's `empty()`).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `maxsize` items are queued now (a snapshot, Python's `full()`). An unbounded
    /// queue is never full by count (a message can still wait for ring bytes).
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.shared
            .maxsize()
            .is_some_and(|m| self.shared.snapshot().count >= m)
    }

    /// The item bound given at creation, if any.
    pub fn maxsize(&self) -> Option<usize> {
        self.shared.maxsize().map(|m| m as usize)
    }

    /// Ring size in bytes: the total of queued messages (plus 8 to 15 bytes of framing each)
    /// never exceeds it.
    pub fn capacity_bytes(&self) -> u64 {
        self.shared.capacity_bytes()
    }

    /// The largest encoded message this queue accepts: the most bytes for `put_bytes`; a
    /// typed `put` carries an 8-byte type tag before its value's encoding, so a value may
    /// encode to 8 bytes fewer.
    pub fn max_message_bytes(&self) -> u64 {
        self.shared.max_payload()
    }

    /// Closes the queue for everyone: later puts fail with `Closed`; consumers get what is
    /// still queued, then `Closed`. Every blocked caller wakes at once. Idempotent.
    ///
    /// (Python's `Queue.close()` only closes the calling process's handle; this is the "end
    /// of stream" that Python spells with one sentinel per consumer.)
    ///
    /// ```
    /// use multiproc::queue::{GetError, Queue};
    /// let q: Queue<u8> = Queue::new()?;
    /// q.put(1)?;
    /// q.close();
    /// assert_eq!(q.get()?, 1);
    /// assert!(matches!(q.get(), Err(GetError::Closed)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// True once [`close`](Self::close) was called (by any process).
    pub fn is_closed(&self) -> bool {
        self.shared.snapshot().closed
    }

    // ----- raw bytes -----

    /// Puts raw bytes, skipping the codec; waits for room.
    ///
    /// A consumer reads them with [`get_bytes`](Self::get_bytes); a typed `get` refuses
    /// them (a [`ErrorKind::Codec`] error; the message is consumed): raw messages carry no
    /// type identity (see the [`codec`](crate::codec) docs).
    ///
    /// # Errors
    /// `Closed`, or `Failed` when the bytes exceed [`max_message_bytes`](Self::max_message_bytes).
    #[doc(alias = "send_bytes")]
    pub fn put_bytes(&self, bytes: &[u8]) -> std::result::Result<(), PutError<()>> {
        self.put_one_raw(bytes, false, FOREVER)
            .map_err(|s| put_error((), s))
    }

    /// Puts raw bytes if there is room now; never waits.
    ///
    /// # Errors
    /// `Full`, `Closed`, or `Failed` (too large).
    pub fn try_put_bytes(&self, bytes: &[u8]) -> std::result::Result<(), TryPutError<()>> {
        self.put_one_raw(bytes, false, Wait::No)
            .map_err(|s| try_put_error((), s))
    }

    /// Puts raw bytes, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Closed`, or `Failed` (too large).
    pub fn put_bytes_timeout(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<()>> {
        self.put_one_raw(bytes, false, within(timeout))
            .map_err(|s| put_timeout_error((), s))
    }

    /// Puts raw bytes, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`put_bytes_timeout`](Self::put_bytes_timeout).
    pub fn put_bytes_deadline(
        &self,
        bytes: &[u8],
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<()>> {
        self.put_one_raw(bytes, false, until(deadline))
            .map_err(|s| put_timeout_error((), s))
    }

    /// Takes the next message as raw bytes, skipping the codec; waits for one.
    ///
    /// # Errors
    /// `Closed` once the queue is closed and drained; `Failed` on corrupted shared memory.
    #[doc(alias = "recv_bytes")]
    pub fn get_bytes(&self) -> std::result::Result<Vec<u8>, GetError> {
        self.get_bytes_wait(FOREVER).map_err(get_err)
    }

    /// Takes the next message as raw bytes if there is one now; never waits.
    ///
    /// # Errors
    /// `Empty`, `Closed`, or `Failed` (corruption).
    pub fn try_get_bytes(&self) -> std::result::Result<Vec<u8>, TryGetError> {
        self.get_bytes_wait(Wait::No).map_err(try_get_err)
    }

    /// Takes the next message as raw bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Closed`, or `Failed` (corruption).
    pub fn get_bytes_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Vec<u8>, GetTimeoutError> {
        self.get_bytes_wait(within(timeout))
            .map_err(get_timeout_err)
    }

    /// Takes the next message as raw bytes, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<Vec<u8>, GetTimeoutError> {
        self.get_bytes_wait(until(deadline))
            .map_err(get_timeout_err)
    }

    /// Takes the next message as raw bytes into `buf` (replacing its contents and reusing
    /// its allocation), waiting for one: the fastest way to move bulk bytes, as a consumer
    /// that keeps one buffer makes no allocation and takes no fresh page per message.
    ///
    /// ```
    /// use multiproc::queue::Queue;
    /// let q: Queue<()> = Queue::new()?;
    /// q.put_bytes(b"hello")?;
    /// let mut buf = Vec::new();
    /// q.get_bytes_into(&mut buf)?;
    /// assert_eq!(buf, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Closed` once the queue is closed and drained; `Failed` on corrupted shared memory.
    /// `buf` is left empty on error.
    #[doc(alias = "recv_bytes_into")]
    pub fn get_bytes_into(&self, buf: &mut Vec<u8>) -> std::result::Result<(), GetError> {
        self.get_bytes_into_wait(buf, FOREVER).map_err(get_err)
    }

    /// As [`get_bytes_into`](Self::get_bytes_into) if a message is there now; never waits.
    ///
    /// # Errors
    /// `Empty`, `Closed`, or `Failed` (corruption); `buf` is left empty.
    pub fn try_get_bytes_into(&self, buf: &mut Vec<u8>) -> std::result::Result<(), TryGetError> {
        self.get_bytes_into_wait(buf, Wait::No).map_err(try_get_err)
    }

    /// As [`get_bytes_into`](Self::get_bytes_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Closed`, or `Failed` (corruption); `buf` is left empty.
    pub fn get_bytes_into_timeout(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<(), GetTimeoutError> {
        self.get_bytes_into_wait(buf, within(timeout))
            .map_err(get_timeout_err)
    }

    /// As [`get_bytes_into`](Self::get_bytes_into), waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_bytes_into_timeout`](Self::get_bytes_into_timeout).
    pub fn get_bytes_into_deadline(
        &self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> std::result::Result<(), GetTimeoutError> {
        self.get_bytes_into_wait(buf, until(deadline))
            .map_err(get_timeout_err)
    }

    #[inline]
    fn get_bytes_into_wait(
        &self,
        buf: &mut Vec<u8>,
        wait: Wait,
    ) -> std::result::Result<(), GetStop> {
        buf.clear();
        self.shared.take_one(wait, |f: FrameRef<'_>| {
            if f.typed() {
                return Err(ident::typed_where_raw(f.bytes()));
            }
            f.read_into(buf);
            Ok(())
        })
    }

    #[inline]
    fn get_bytes_wait(&self, wait: Wait) -> std::result::Result<Vec<u8>, GetStop> {
        let mut out = Vec::new();
        self.get_bytes_into_wait(&mut out, wait)?;
        Ok(out)
    }

    /// Puts `bytes` as one message: a raw one, or a `typed` one (`bytes` start with the
    /// type tag).
    #[inline]
    fn put_one_raw(
        &self,
        bytes: &[u8],
        typed: bool,
        wait: Wait,
    ) -> std::result::Result<(), PutStop> {
        let write = |dst: &mut [u8]| {
            dst.copy_from_slice(bytes);
            Ok(())
        };
        self.shared.put_one_with(bytes.len(), typed, write, wait)
    }

    /// The value bytes of a frame that a typed get took: after its type tag, which must be
    /// `T`'s (else a `Codec` error naming the types; the frame is consumed all the same).
    #[inline(always)]
    fn value_bytes<'f>(&self, f: &'f FrameRef<'_>) -> Result<&'f [u8]> {
        ident::value_of::<T>(self.tag, f.bytes(), f.typed())
    }
}

/// What a blocking get reports (it never stops for `Empty` or `Timeout`).
fn get_err(s: GetStop) -> GetError {
    match s {
        GetStop::Failed(e) => GetError::Failed(e),
        _ => GetError::Closed,
    }
}

fn try_get_err(s: GetStop) -> TryGetError {
    match s {
        GetStop::Empty | GetStop::Timeout => TryGetError::Empty,
        GetStop::Closed => TryGetError::Closed,
        GetStop::Failed(e) => TryGetError::Failed(e),
    }
}

fn get_timeout_err(s: GetStop) -> GetTimeoutError {
    match s {
        GetStop::Empty | GetStop::Timeout => GetTimeoutError::Timeout,
        GetStop::Closed => GetTimeoutError::Closed,
        GetStop::Failed(e) => GetTimeoutError::Failed(e),
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> Queue<T, C> {
    #[inline(always)]
    fn put_wait(&self, item: T, wait: Wait) -> std::result::Result<(), (T, PutStop)> {
        self.put_ref_wait(&item, wait).map_err(|s| (item, s))
    }

    #[inline(always)]
    fn put_ref_wait(&self, item: &T, wait: Wait) -> std::result::Result<(), PutStop> {
        match C::encoded_len(item) {
            // Encoded straight into the ring (under the producer mutex): no copy between.
            // The type tag, then the value (`codec/ident.rs`).
            Ok(Some(n)) => self.shared.put_one_with(
                TAG_LEN + n,
                true,
                |dst| {
                    let (tag, value) = dst.split_at_mut(TAG_LEN);
                    tag.copy_from_slice(&self.tag.to_le_bytes());
                    C::encode_to_slice(item, value)
                },
                wait,
            ),
            Ok(None) => with_scratch(|buf| {
                buf.extend_from_slice(&self.tag.to_le_bytes());
                match C::encode(item, buf) {
                    Ok(()) => self.put_one_raw(buf, true, wait),
                    Err(e) => Err(PutStop::Failed(e)),
                }
            }),
            Err(e) => Err(PutStop::Failed(e)),
        }
    }

    /// Puts a copy of `*item`, waiting for room as long as it takes: the message is
    /// serialized from the borrow, so the caller keeps `item`, as with Python's `put(item)`.
    /// Sends a value that is still needed, or the same one many times, without a `clone`
    /// (an allocation and a free per message for a `Vec` or `String`).
    ///
    /// # Errors
    /// [`PutError::Closed`] when the queue is closed; [`PutError::Failed`] when the item
    /// does not serialize or is larger than the queue's byte capacity.
    ///
    /// ```
    /// use multiproc::Queue;
    /// let q: Queue<Vec<u8>> = Queue::new()?;
    /// let msg = b"hello".to_vec();
    /// q.put_ref(&msg).unwrap();
    /// q.put_ref(&msg).unwrap();
    /// assert_eq!(q.get().unwrap(), msg);
    /// assert_eq!(q.get().unwrap(), msg);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[inline]
    pub fn put_ref(&self, item: &T) -> std::result::Result<(), PutError<()>> {
        self.put_ref_wait(item, FOREVER)
            .map_err(|s| put_error((), s))
    }

    /// [`put_ref`](Self::put_ref) if there is room now; never waits.
    ///
    /// # Errors
    /// `Full`, `Closed`, or `Failed` (the caller still has the item).
    #[inline]
    pub fn try_put_ref(&self, item: &T) -> std::result::Result<(), TryPutError<()>> {
        self.put_ref_wait(item, Wait::No)
            .map_err(|s| try_put_error((), s))
    }

    /// [`put_ref`](Self::put_ref), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Closed`, or `Failed` (the caller still has the item).
    #[inline]
    pub fn put_ref_timeout(
        &self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<()>> {
        self.put_ref_wait(item, within(timeout))
            .map_err(|s| put_timeout_error((), s))
    }

    /// [`put_ref`](Self::put_ref), waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`put_ref_timeout`](Self::put_ref_timeout).
    #[inline]
    pub fn put_ref_deadline(
        &self,
        item: &T,
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<()>> {
        self.put_ref_wait(item, until(deadline))
            .map_err(|s| put_timeout_error((), s))
    }

    /// Puts `item`, waiting for room as long as it takes (Python's `put(item)`).
    ///
    /// # Errors
    /// [`PutError::Closed`] when the queue is closed; [`PutError::Failed`] when the item
    /// does not serialize or is larger than the queue's byte capacity. Both hand the item
    /// back.
    #[inline]
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_wait(item, FOREVER)
            .map_err(|(t, s)| put_error(t, s))
    }

    /// Puts `item` if there is room now; never waits (Python's `put_nowait`,
    /// `put(item, False)`).
    ///
    /// # Errors
    /// [`TryPutError::Full`], `Closed`, or `Failed`; each hands the item back.
    ///
    /// ```
    /// use multiproc::queue::{Queue, TryPutError};
    /// let q: Queue<u8> = Queue::bounded(1)?;
    /// q.try_put(1).unwrap();
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.put_wait(item, Wait::No)
            .map_err(|(t, s)| try_put_error(t, s))
    }

    /// Puts `item`, waiting at most `timeout` for room (Python's `put(item, True, timeout)`);
    /// any `Duration`, up to `Duration::MAX`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::queue::{PutTimeoutError, Queue};
    /// let q: Queue<u8> = Queue::bounded(1)?;
    /// q.put(1)?;
    /// let err = q.put_timeout(2, Duration::from_millis(1)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert!(matches!(err, PutTimeoutError::Timeout(2)), "the item comes back");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`], `Closed`, or `Failed`; each hands the item back.
    #[inline]
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_wait(item, within(timeout))
            .map_err(|(t, s)| put_timeout_error(t, s))
    }

    /// Puts `item`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`put_timeout`](Self::put_timeout).
    #[inline]
    pub fn put_deadline(
        &self,
        item: T,
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_wait(item, until(deadline))
            .map_err(|(t, s)| put_timeout_error(t, s))
    }

    /// Puts all `items` in order, taking the queue's lock once for as many as fit (and again
    /// only when it has to wait for room).
    ///
    /// # Errors
    /// `Closed` or `Failed`, handing back the items that were *not* put (the ones before
    /// them are in the queue). A `Failed` from serialization or size is reported before any
    /// item is put.
    pub fn put_many(&self, items: Vec<T>) -> std::result::Result<(), PutError<Vec<T>>> {
        self.put_many_wait(items, FOREVER)
            .map_err(|(rest, s)| put_error(rest, s))
    }

    /// Puts as many of `items`, in order, as there is room for now; never waits.
    ///
    /// # Errors
    /// `Full` with the items that did not fit (the ones before them are in the queue);
    /// `Closed` or `Failed` as for [`put_many`](Self::put_many).
    pub fn try_put_many(&self, items: Vec<T>) -> std::result::Result<(), TryPutError<Vec<T>>> {
        self.put_many_wait(items, Wait::No)
            .map_err(|(rest, s)| try_put_error(rest, s))
    }

    /// [`put_many`](Self::put_many), waiting at most `timeout` in all for room.
    ///
    /// # Errors
    /// `Timeout` with the items that were not put by then; `Closed` or `Failed` as for
    /// [`put_many`](Self::put_many).
    pub fn put_many_timeout(
        &self,
        items: Vec<T>,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<Vec<T>>> {
        self.put_many_wait(items, within(timeout))
            .map_err(|(rest, s)| put_timeout_error(rest, s))
    }

    /// [`put_many`](Self::put_many), waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`put_many_timeout`](Self::put_many_timeout).
    pub fn put_many_deadline(
        &self,
        items: Vec<T>,
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<Vec<T>>> {
        self.put_many_wait(items, until(deadline))
            .map_err(|(rest, s)| put_timeout_error(rest, s))
    }

    fn put_many_wait(
        &self,
        items: Vec<T>,
        wait: Wait,
    ) -> std::result::Result<(), (Vec<T>, PutStop)> {
        let mut items = items;
        let r = with_scratch(|buf| {
            let mut ends = Vec::with_capacity(items.len());
            for it in &items {
                buf.extend_from_slice(&self.tag.to_le_bytes());
                if let Err(e) = C::encode(it, buf) {
                    return Err((0, PutStop::Failed(e)));
                }
                ends.push(buf.len());
            }
            let mut start = 0;
            let slices: Vec<&[u8]> = ends
                .iter()
                .map(|&e| {
                    let s = &buf[start..e];
                    start = e;
                    s
                })
                .collect();
            self.shared.put_frames(&slices, true, wait)
        });
        r.map_err(|(done, s)| (items.split_off(done), s))
    }

    #[inline(always)]
    fn get_into_wait(&self, place: &mut T, wait: Wait) -> std::result::Result<(), GetStop> {
        // As `get_wait`, decoding into `place`.
        let mut panicked = None;
        let r = self.shared.take_one(wait, |f: FrameRef<'_>| {
            crate::codec::decode_into_guarded::<T, C>(self.value_bytes(&f)?, place, &mut panicked)
        });
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        r
    }

    #[inline(always)]
    fn get_wait(&self, wait: Wait) -> std::result::Result<T, GetStop> {
        // Decoded straight from the ring, under the consumer mutex: no copy in between. A
        // message that does not decode is consumed and reported (see `take_frames`).
        // A `Deserialize` that panics: the message is consumed like one that fails to
        // decode, the lock released, and then the panic goes on (else every later get would
        // panic on the same message).
        let mut panicked = None;
        let r = self.shared.take_one(wait, |f: FrameRef<'_>| {
            crate::codec::decode_guarded::<T, C>(self.value_bytes(&f)?, &mut panicked)
        });
        if let Some(p) = panicked {
            std::panic::resume_unwind(p);
        }
        r
    }

    /// Takes the next item into `place`, waiting as long as it takes: as [`get`](Self::get),
    /// but decoded in place, so a `Vec` or `String` (or a type whose `Deserialize` supports
    /// serde's in-place decoding) keeps its buffer instead of the queue allocating a new one
    /// for every message. For a consumer that handles one message at a time in a loop.
    ///
    /// # Errors
    /// As [`get`](Self::get). When the message does not decode (it is consumed, as with
    /// `get`), `place` holds some valid value, not necessarily the one it held.
    ///
    /// ```
    /// use multiproc::Queue;
    /// let q: Queue<Vec<u8>> = Queue::new()?;
    /// q.put(b"first".to_vec()).unwrap();
    /// q.put(b"second".to_vec()).unwrap();
    /// let mut buf = Vec::with_capacity(64);
    /// q.get_into(&mut buf).unwrap();
    /// assert_eq!(buf, b"first");
    /// q.get_into(&mut buf).unwrap();
    /// assert_eq!(buf, b"second");
    /// assert!(buf.capacity() >= 64, "the same buffer");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[inline]
    pub fn get_into(&self, place: &mut T) -> std::result::Result<(), GetError> {
        self.get_into_wait(place, FOREVER).map_err(get_err)
    }

    /// [`get_into`](Self::get_into) if an item is there now; never waits.
    ///
    /// # Errors
    /// As [`try_get`](Self::try_get); after a `Failed`, as `get_into`.
    #[inline]
    pub fn try_get_into(&self, place: &mut T) -> std::result::Result<(), TryGetError> {
        self.get_into_wait(place, Wait::No).map_err(try_get_err)
    }

    /// [`get_into`](Self::get_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout); after a `Failed`, as `get_into`.
    #[inline]
    pub fn get_into_timeout(
        &self,
        place: &mut T,
        timeout: Duration,
    ) -> std::result::Result<(), GetTimeoutError> {
        self.get_into_wait(place, within(timeout))
            .map_err(get_timeout_err)
    }

    /// [`get_into`](Self::get_into), waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_into_timeout`](Self::get_into_timeout).
    #[inline]
    pub fn get_into_deadline(
        &self,
        place: &mut T,
        deadline: Instant,
    ) -> std::result::Result<(), GetTimeoutError> {
        self.get_into_wait(place, until(deadline))
            .map_err(get_timeout_err)
    }

    /// Takes the next item, waiting as long as it takes (Python's `get()`).
    ///
    /// # Errors
    /// [`GetError::Closed`] once the queue is closed and drained; [`GetError::Failed`] when
    /// the next message does not decode as `T` (that message is consumed; the queue goes on):
    /// an [`ErrorKind::Codec`] error also for a message of another type (a handle of another
    /// `T` to the same queue) or raw bytes from `put_bytes` — never a wrong value.
    #[inline]
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.get_wait(FOREVER).map_err(get_err)
    }

    /// Takes the next item if there is one now; never waits (Python's `get_nowait`,
    /// `get(False)`).
    ///
    /// # Errors
    /// [`TryGetError::Empty`], `Closed` (closed and drained), or `Failed` (decode).
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.get_wait(Wait::No).map_err(try_get_err)
    }

    /// Takes the next item, waiting at most `timeout` (Python's `get(True, timeout)`); any
    /// `Duration`, up to `Duration::MAX`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`], `Closed` (closed and drained), or `Failed` (decode).
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.get_wait(within(timeout)).map_err(get_timeout_err)
    }

    /// Takes the next item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    #[inline]
    pub fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError> {
        self.get_wait(until(deadline)).map_err(get_timeout_err)
    }

    /// Takes up to `max` items with one lock: waits until at least one is there, then takes
    /// what is queued, up to `max`.
    ///
    /// A message that does not decode ends the batch before it; it is reported (and
    /// consumed) by the next call, so no good item is lost to a bad one.
    ///
    /// # Errors
    /// `Closed` once closed and drained, `Failed` when the first message does not decode.
    pub fn get_many(&self, max: usize) -> std::result::Result<Vec<T>, GetError> {
        self.get_many_wait(max, FOREVER).map_err(get_err)
    }

    /// Takes up to `max` of the items queued now, with one lock; never waits.
    ///
    /// # Errors
    /// `Empty` when nothing is queued; otherwise as [`get_many`](Self::get_many).
    pub fn try_get_many(&self, max: usize) -> std::result::Result<Vec<T>, TryGetError> {
        self.get_many_wait(max, Wait::No).map_err(try_get_err)
    }

    /// [`get_many`](Self::get_many), waiting at most `timeout` for the first item.
    ///
    /// # Errors
    /// `Timeout` when nothing arrived in time; otherwise as [`get_many`](Self::get_many).
    pub fn get_many_timeout(
        &self,
        max: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<T>, GetTimeoutError> {
        self.get_many_wait(max, within(timeout))
            .map_err(get_timeout_err)
    }

    /// [`get_many`](Self::get_many), waiting until `deadline` at most for the first item.
    ///
    /// # Errors
    /// As [`get_many_timeout`](Self::get_many_timeout).
    pub fn get_many_deadline(
        &self,
        max: usize,
        deadline: Instant,
    ) -> std::result::Result<Vec<T>, GetTimeoutError> {
        self.get_many_wait(max, until(deadline))
            .map_err(get_timeout_err)
    }

    fn get_many_wait(&self, max: usize, wait: Wait) -> std::result::Result<Vec<T>, GetStop> {
        let mut out = Vec::new();
        let mut panicked = None;
        let r = self.shared.take_frames(max, wait, |_, f: FrameRef<'_>| {
            out.push(crate::codec::decode_guarded::<T, C>(
                self.value_bytes(&f)?,
                &mut panicked,
            )?);
            Ok(())
        });
        // A panicking `Deserialize` ends the batch like a failed decode: the items before it
        // are returned, and the panic goes on when that message comes first (then it is
        // consumed, see `get_wait`).
        if let Some(p) = panicked {
            if out.is_empty() {
                std::panic::resume_unwind(p);
            }
            return Ok(out);
        }
        r?;
        Ok(out)
    }

    /// An iterator that takes items until the queue is closed and drained; each item is a
    /// `Result` because a message may fail to decode.
    ///
    /// ```
    /// use multiproc::queue::Queue;
    /// let q: Queue<u32> = Queue::new()?;
    /// q.put_many(vec![1, 2, 3])?;
    /// q.close();
    /// let all: Vec<u32> = q.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T, C> {
        Iter { q: self }
    }

    /// The items queued now, without waiting (crossbeam's `try_iter`): stops when the queue
    /// is empty.
    ///
    /// ```
    /// use multiproc::queue::Queue;
    /// let q = Queue::new()?;
    /// q.put_many(vec![1u32, 2])?;
    /// let now: Vec<u32> = q.try_iter().collect::<Result<_, _>>()?;
    /// assert_eq!(now, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T, C> {
        TryIter { q: self }
    }
}

/// Iterator over a queue's items until it is closed and drained: [`Queue::iter`].
#[derive(Debug)]
pub struct Iter<'a, T, C: Codec = Postcard> {
    q: &'a Queue<T, C>,
}

impl<T: Serialize + DeserializeOwned, C: Codec> Iterator for Iter<'_, T, C> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.q.get() {
            Ok(t) => Some(Ok(t)),
            Err(GetError::Closed) => None,
            Err(GetError::Failed(e)) => Some(Err(e)),
        }
    }
}

impl<'a, T: Serialize + DeserializeOwned, C: Codec> IntoIterator for &'a Queue<T, C> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned, C: Codec> IntoIterator for &'a SimpleQueue<T, C> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.0.iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned, C: Codec> IntoIterator for &'a JoinableQueue<T, C> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T, C>;

    /// Items as they come (each still needs its [`JoinableQueue::task_done`]).
    fn into_iter(self) -> Iter<'a, T, C> {
        self.0.iter()
    }
}

/// Iterator over the items queued now, without waiting: [`Queue::try_iter`]. It ends at the
/// first moment the queue is empty (or closed and drained).
#[derive(Debug)]
pub struct TryIter<'a, T, C: Codec = Postcard> {
    q: &'a Queue<T, C>,
}

impl<T: Serialize + DeserializeOwned, C: Codec> Iterator for TryIter<'_, T, C> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.q.try_get() {
            Ok(t) => Some(Ok(t)),
            Err(TryGetError::Empty | TryGetError::Closed) => None,
            Err(TryGetError::Failed(e)) => Some(Err(e)),
        }
    }
}

/// A minimal unbounded queue (Python's `multiprocessing.SimpleQueue`): `put`, `get`,
/// `is_empty`, `close`.
///
/// ```
/// use multiproc::queue::SimpleQueue;
/// let q: SimpleQueue<String> = SimpleQueue::new()?;
/// q.put("x".to_string())?;
/// assert!(!q.is_empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct SimpleQueue<T, C: Codec = Postcard>(Queue<T, C>);

impl<T, C: Codec> SimpleQueue<T, C> {
    /// The readiness fd, armed: as [`Queue::try_as_fd`].
    pub fn try_as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.try_as_fd()
    }
}

impl<T, C: Codec> AsFd for SimpleQueue<T, C> {
    /// The readiness fd, as [`Queue`]'s ([module docs](mod@crate::queue#readiness)).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<T, C: Codec> AsRawFd for SimpleQueue<T, C> {
    /// The readiness fd's number, as [`Queue`]'s.
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl<T, C: Codec> Clone for SimpleQueue<T, C> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T, C: Codec> fmt::Debug for SimpleQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T> SimpleQueue<T> {
    /// A new, empty, unbounded queue (default codec: `SimpleQueue::new()` infers `T` from
    /// the first `put`).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when the shared memory cannot be created.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue(Queue::new()?))
    }
}

impl<T, C: Codec> SimpleQueue<T, C> {
    /// A simple queue from a configured builder (e.g. another codec).
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    pub fn from_builder(b: QueueBuilder<T, C>) -> Result<Self> {
        Ok(SimpleQueue(b.build()?))
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> SimpleQueue<T, C> {
    /// Puts `item`. The queue has no item bound, so this waits only when its byte
    /// capacity is used up by a backlog.
    ///
    /// # Errors
    /// As [`Queue::put`].
    #[inline]
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.0.put(item)
    }

    /// Puts `item` if there is room now; never waits.
    ///
    /// # Errors
    /// As [`Queue::try_put`].
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.0.try_put(item)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`].
    #[inline]
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.0.put_timeout(item, timeout)
    }

    /// Puts `item`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`Queue::put_deadline`].
    #[inline]
    pub fn put_deadline(
        &self,
        item: T,
        deadline: Instant,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.0.put_deadline(item, deadline)
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    /// As [`Queue::get`].
    #[inline]
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.0.get()
    }

    /// Takes the next item if there is one now; never waits.
    ///
    /// # Errors
    /// As [`Queue::try_get`].
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.0.try_get()
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.0.get_timeout(timeout)
    }

    /// Takes the next item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`Queue::get_deadline`].
    #[inline]
    pub fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError> {
        self.0.get_deadline(deadline)
    }

    /// True when nothing is queued now (a snapshot).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Closes the queue for everyone (see [`Queue::close`]).
    pub fn close(&self) {
        self.0.close()
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Items until closed and drained (see [`Queue::iter`]).
    pub fn iter(&self) -> Iter<'_, T, C> {
        self.0.iter()
    }

    /// The underlying [`Queue`].
    pub fn as_queue(&self) -> &Queue<T, C> {
        &self.0
    }
}

/// A [`Queue`] that also counts unfinished tasks (Python's `multiprocessing.JoinableQueue`):
/// every `put` adds one, every [`task_done`](Self::task_done) takes one away, and
/// [`join`](Self::join) waits for zero. All of [`Queue`]'s calls are available through
/// `Deref`.
///
/// ```
/// use multiproc::queue::JoinableQueue;
/// let q: JoinableQueue<u32> = JoinableQueue::new()?;
/// q.put(7)?;
/// let x = q.get()?;
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err(), "more task_done() than items taken");
/// # let _ = x;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct JoinableQueue<T, C: Codec = Postcard>(Queue<T, C>);

impl<T, C: Codec> JoinableQueue<T, C> {
    /// The readiness fd, armed, or `None` for a queue opened by name: as
    /// [`Queue::try_as_fd`].
    pub fn try_as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.try_as_fd()
    }
}

impl<T, C: Codec> AsFd for JoinableQueue<T, C> {
    /// The readiness fd, as [`Queue`]'s ([module docs](mod@crate::queue#readiness)): about
    /// messages waiting, not about `join`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<T, C: Codec> AsRawFd for JoinableQueue<T, C> {
    /// The readiness fd's number, as [`Queue`]'s.
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl<T, C: Codec> Clone for JoinableQueue<T, C> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T, C: Codec> fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.0).finish()
    }
}

impl<T, C: Codec> std::ops::Deref for JoinableQueue<T, C> {
    type Target = Queue<T, C>;
    fn deref(&self) -> &Queue<T, C> {
        &self.0
    }
}

impl<T> JoinableQueue<T> {
    /// A new joinable queue without an item bound.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when the shared memory cannot be created.
    pub fn new() -> Result<Self> {
        Ok(JoinableQueue(Queue::new()?))
    }

    /// A new joinable queue holding at most `maxsize` items; 0 means no bound (as
    /// [`Queue::bounded`]).
    ///
    /// # Errors
    /// As [`Queue::bounded`].
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Ok(JoinableQueue(Queue::bounded(maxsize)?))
    }
}

impl<T, C: Codec> JoinableQueue<T, C> {
    /// A joinable queue from a configured builder.
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    pub fn from_builder(b: QueueBuilder<T, C>) -> Result<Self> {
        Ok(JoinableQueue(b.build()?))
    }

    /// Marks one taken item as processed (Python's `task_done()`).
    ///
    /// Counted against the items *taken* (by any consumer, in any process), where Python
    /// counts the items *put*: `put(x)` then `task_done()` while `x` is still queued is an
    /// error here. Python accepts it and lets [`join`](Self::join) return while `x` still
    /// waits in the queue, so that call is a bug in the consumer protocol, reported here where
    /// it happens. One `task_done()` per item got — the correct use in Python too — behaves
    /// the same in both. An item whose `get` failed to decode counts as taken; a supervisor
    /// may call `task_done()` for a consumer that was killed between its `get` and its
    /// `task_done()`.
    ///
    /// ```
    /// use multiproc::queue::JoinableQueue;
    /// let q: JoinableQueue<u32> = JoinableQueue::new()?;
    /// q.put(1)?;
    /// assert!(q.task_done().is_err(), "nobody has taken the item yet");
    /// q.get()?;
    /// q.task_done()?;
    /// q.join();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when called more times than items were taken from the
    /// queue (Python raises `ValueError` only past the number of items put).
    pub fn task_done(&self) -> Result<()> {
        self.0.shared.task_done()
    }

    /// Waits until every item ever put has been marked done (Python's `join()`). Cannot
    /// fail: the count lives in the queue's shared memory, and a consumer killed between its
    /// `get` and its `task_done` leaves its item unfinished (a supervisor may mark it done).
    pub fn join(&self) {
        while !self.0.shared.join(Deadline::never()) {}
    }

    /// Returns at once: `Ok` when every item ever put has been marked done.
    ///
    /// # Errors
    /// [`WouldBlock`] while tasks are unfinished.
    pub fn try_join(&self) -> std::result::Result<(), WouldBlock> {
        if self.0.shared.join(Deadline::passed()) {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Like [`join`](Self::join), giving up after `timeout` (any `Duration`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::JoinableQueue;
    /// let q: JoinableQueue<u8> = JoinableQueue::new()?;
    /// q.put(1)?;
    /// assert_eq!(q.join_timeout(Duration::from_millis(1)), Err(multiproc::Timeout));
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_timeout(Duration::from_secs(5))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Timeout`] when tasks are still unfinished after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), Timeout> {
        self.join_until(Deadline::within(timeout))
    }

    /// Like [`join`](Self::join), giving up at `deadline`.
    ///
    /// # Errors
    /// [`Timeout`] when tasks are still unfinished at `deadline`.
    pub fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), Timeout> {
        self.join_until(Deadline::at(deadline))
    }

    fn join_until(&self, deadline: Deadline) -> std::result::Result<(), Timeout> {
        if self.0.shared.join(deadline) {
            Ok(())
        } else {
            Err(Timeout)
        }
    }

    /// Items put and not yet marked done (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.0.shared.snapshot().unfinished
    }

    /// The underlying [`Queue`].
    pub fn as_queue(&self) -> &Queue<T, C> {
        &self.0
    }
}

#[cfg(test)]
mod tests;
