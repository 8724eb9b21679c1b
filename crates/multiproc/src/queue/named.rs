//! Named queues: [`Queue`], [`JoinableQueue`] and [`SimpleQueue`] under a name in `/dev/shm`, opened by
//! unrelated processes of the same user (the mechanism: `shm/named.rs`; the user's
//! documentation: docs/names.md). Only the public-ish constructors of the ring engine are
//! used (`SharedQueue::create_in`, `SharedQueue::open`): a named queue is the same segment as
//! an anonymous one, validated on open as a received one is.

use super::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::kinds::named::{JOINABLE_QUEUE, QUEUE, SIMPLE_QUEUE};
use crate::ring::SharedQueue;
use crate::shm::{named, Identity, SegmentKind};

/// The control block's page (`queue/shared.rs`' `RING_AT`): allocated at creation, so a
/// full `/dev/shm` fails there; the ring's pages come as a backlog needs them.
const CONTROL_LEN: usize = 4096;

fn identity<T, C: Codec>(what: u32) -> Identity {
    Identity {
        what,
        // The item type and the codec: a queue of `T` encoded by another codec is another
        // type of queue.
        tag: crate::codec::ident::tag_of::<(T, C)>(),
    }
}

fn expected<T, C>(what: u32) -> String {
    let facade = match what {
        JOINABLE_QUEUE => "JoinableQueue",
        SIMPLE_QUEUE => "SimpleQueue",
        _ => "Queue",
    };
    format!(
        "a {facade}<{}, {}>",
        std::any::type_name::<T>(),
        std::any::type_name::<C>()
    )
}

fn create<T, C: Codec>(b: &QueueBuilder<T, C>, name: &str, what: u32) -> Result<Queue<T, C>> {
    let (len, cap) = SharedQueue::area_len(b.capacity_bytes)
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "queue capacity too large"))?;
    let seg = named::create_segment(SegmentKind::Queue, len, identity::<T, C>(what), CONTROL_LEN)?;
    let shared = SharedQueue::create_in(seg.clone(), 0, cap, b.maxsize.map(|n| n as u64))?;
    named::publish(&seg, name)?;
    Ok(Queue::from_shared(shared))
}

fn open<T, C: Codec>(name: &str, what: u32) -> Result<Queue<T, C>> {
    let seg = named::open_segment(name, SegmentKind::Queue, identity::<T, C>(what), &|| {
        expected::<T, C>(what)
    })?;
    Ok(Queue::from_shared(SharedQueue::open(seg)?))
}

impl<T, C: Codec> QueueBuilder<T, C> {
    /// Creates the queue under the name `name` (see [`Queue::create_named`]), with this
    /// builder's settings.
    ///
    /// # Errors
    /// As [`Queue::create_named`].
    pub fn create_named(self, name: &str) -> Result<Queue<T, C>> {
        create(&self, name, QUEUE)
    }

    /// Opens the queue named `name`, or creates it with this builder's settings when there
    /// is none (an existing queue keeps its own capacity and `maxsize`).
    ///
    /// # Errors
    /// As [`Queue::open_named`] and [`Queue::create_named`].
    pub fn open_or_create(self, name: &str) -> Result<Queue<T, C>> {
        named::open_or_create(name, || open(name, QUEUE), || create(&self, name, QUEUE))
    }
}

impl<T> Queue<T> {
    /// A new queue (as [`Queue::new`]) under the name `name`, which unrelated processes of
    /// this user open with [`Queue::open_named`] (other settings: [`QueueBuilder::create_named`]).
    /// The name appears only once the queue is ready, and stays until
    /// [`unlink`](Queue::unlink) or [`shm::unlink_named`](crate::shm::unlink_named); the
    /// queue's ring lives in `/dev/shm` (see docs/names.md for its size).
    ///
    /// ```
    /// use multiproc::{ErrorKind, Queue};
    /// # let name = format!("doc_queue_named_{}", std::process::id());
    /// let jobs = Queue::<String>::create_named(&name)?;
    /// // In another process of this user (a service's client, started on its own):
    /// let q = Queue::<String>::open_named(&name)?;
    /// q.put("work".to_string())?;
    /// assert_eq!(jobs.get()?, "work");
    /// // Another item type is refused, as is a second creation.
    /// assert_eq!(Queue::<u32>::open_named(&name).unwrap_err().kind(), ErrorKind::InvalidHandle);
    /// assert_eq!(Queue::<String>::create_named(&name).unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// jobs.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken (by any named object);
    /// [`ErrorKind::InvalidArgument`] for a bad name; OS errors (`/dev/shm` full).
    pub fn create_named(name: &str) -> Result<Self> {
        Self::builder().create_named(name)
    }

    /// Opens the queue named `name`, or creates it (as [`Queue::new`]) when there is none;
    /// of several processes racing to create it, one does and the others open that one.
    ///
    /// # Errors
    /// As [`Queue::open_named`] and [`Queue::create_named`].
    pub fn open_or_create(name: &str) -> Result<Self> {
        Self::builder().open_or_create(name)
    }
}

impl<T, C: Codec> Queue<T, C> {
    /// Opens the queue named `name`, created by [`Queue::create_named`] in any process of
    /// this user, for the same item type `T` and codec `C`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no object has that name; [`ErrorKind::InvalidHandle`]
    /// when the name holds another kind of object (a `JoinableQueue`, a `Lock`, ...), a queue
    /// of another item type or codec, one of another layout version, a damaged queue, or no
    /// multiproc object at all (the message says which).
    pub fn open_named(name: &str) -> Result<Self> {
        open(name, QUEUE)
    }

    /// The name this queue was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.shared.segment().name()
    }

    /// Removes this queue's name: no process can open it any more; those that have it keep
    /// using it, and its memory is freed when the last one lets go.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when it has no name, or the name now belongs to another
    /// object (left alone); [`ErrorKind::NotFound`] when the name is gone already.
    pub fn unlink(&self) -> Result<()> {
        named::unlink_segment(self.shared.segment())
    }
}

impl<T> JoinableQueue<T, Postcard> {
    /// A new joinable queue (as [`JoinableQueue::new`]) under the name `name`; see
    /// [`Queue::create_named`]. `name()` and `unlink()` are the [`Queue`]'s.
    ///
    /// # Errors
    /// As [`Queue::create_named`].
    pub fn create_named(name: &str) -> Result<Self> {
        Self::from_builder_named(Queue::builder(), name)
    }

    /// Opens the joinable queue named `name`, or creates it when there is none.
    ///
    /// # Errors
    /// As [`JoinableQueue::open_named`] and [`JoinableQueue::create_named`].
    pub fn open_or_create(name: &str) -> Result<Self> {
        named::open_or_create(name, || Self::open_named(name), || Self::create_named(name))
    }
}

impl<T, C: Codec> JoinableQueue<T, C> {
    /// A new joinable queue with a builder's settings under the name `name`.
    ///
    /// # Errors
    /// As [`Queue::create_named`].
    pub fn from_builder_named(b: QueueBuilder<T, C>, name: &str) -> Result<Self> {
        Ok(JoinableQueue(create(&b, name, JOINABLE_QUEUE)?))
    }

    /// Opens the joinable queue named `name` (a plain [`Queue`] of that name is refused,
    /// and a `JoinableQueue` is refused by [`Queue::open_named`]: only one kind of handle
    /// counts `task_done`).
    ///
    /// # Errors
    /// As [`Queue::open_named`].
    pub fn open_named(name: &str) -> Result<Self> {
        Ok(JoinableQueue(open(name, JOINABLE_QUEUE)?))
    }
}

impl<T> SimpleQueue<T, Postcard> {
    /// A new simple queue (as [`SimpleQueue::new`]) under the name `name`, which unrelated
    /// processes of this user open with [`SimpleQueue::open_named`]; see
    /// [`Queue::create_named`] for the name's lifecycle. A `SimpleQueue` and a [`Queue`]
    /// are different kinds of named object: each refuses the other's name.
    ///
    /// ```
    /// use multiproc::queue::SimpleQueue;
    /// # let name = format!("doc_simple_queue_named_{}", std::process::id());
    /// let q = SimpleQueue::<String>::create_named(&name)?;
    /// // In another process of this user:
    /// let other = SimpleQueue::<String>::open_named(&name)?;
    /// other.put("hello".to_string())?;
    /// assert_eq!(q.get()?, "hello");
    /// assert!(multiproc::Queue::<String>::open_named(&name).is_err());
    /// q.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Queue::create_named`].
    pub fn create_named(name: &str) -> Result<Self> {
        Self::from_builder_named(Queue::builder(), name)
    }

    /// Opens the simple queue named `name`, or creates it when there is none; of several
    /// processes racing to create it, one does and the others open that one.
    ///
    /// # Errors
    /// As [`SimpleQueue::open_named`] and [`SimpleQueue::create_named`].
    pub fn open_or_create(name: &str) -> Result<Self> {
        named::open_or_create(name, || Self::open_named(name), || Self::create_named(name))
    }
}

impl<T, C: Codec> SimpleQueue<T, C> {
    /// A new simple queue with a builder's settings (its codec, its capacity in bytes)
    /// under the name `name`.
    ///
    /// # Errors
    /// As [`Queue::create_named`].
    pub fn from_builder_named(b: QueueBuilder<T, C>, name: &str) -> Result<Self> {
        Ok(SimpleQueue(create(&b, name, SIMPLE_QUEUE)?))
    }

    /// Opens the simple queue named `name`, created by [`SimpleQueue::create_named`] in any
    /// process of this user, for the same item type `T` and codec `C` (a [`Queue`] or a
    /// [`JoinableQueue`] of that name is refused).
    ///
    /// # Errors
    /// As [`Queue::open_named`].
    pub fn open_named(name: &str) -> Result<Self> {
        Ok(SimpleQueue(open(name, SIMPLE_QUEUE)?))
    }

    /// The name this queue was created or opened under, if any.
    pub fn name(&self) -> Option<&str> {
        self.0.name()
    }

    /// Removes this queue's name (as [`Queue::unlink`]).
    ///
    /// # Errors
    /// As [`Queue::unlink`].
    pub fn unlink(&self) -> Result<()> {
        self.0.unlink()
    }
}
