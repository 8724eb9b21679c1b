//! The same primitives over a Redis-protocol server, for processes on many machines
//! (feature `remote`): [`Queue`], [`JoinableQueue`], [`Lock`], [`Semaphore`], [`Event`],
//! and a [`Pool`] of [`Worker`] processes on any machine serving [`Task`]s by name.
//!
//! Any server with the Redis 6.2 command set serves them (Redis ≥ 6.2, Valkey; tested with
//! Redis 7.0). Objects are opened by URL and name — `redis://host:port/db`,
//! `unix:///path/to/socket` or `redis+unix:///path?db=N` — and every process that opens the
//! same name on the same server shares the object:
//!
//! ```text
//! use multiproc::remote::{JoinableQueue, Lock};
//!
//! let q: JoinableQueue<String> = JoinableQueue::open("redis://10.0.0.5:6379/0", "jobs")?;
//! q.put("hello".into())?;                 // any machine
//! let job = q.get()?;                     // any other machine
//! q.task_done()?;                         // acknowledged: not delivered again
//! q.join()?;                              // every item put is done
//!
//! let lock = Lock::open("redis://10.0.0.5:6379/0", "ledger")?;
//! let guard = lock.lock()?;
//! write_ledger(guard.fence())?;           // the resource refuses smaller fences
//! ```
//!
//! The calls are the local types' — the same names, the four forms of every blocking call
//! (`get`, `try_get`, `get_timeout`, `get_deadline`), the same queue errors — and both kinds
//! implement the traits of [`api`](crate::api), so generic code runs on either. Calls that
//! cannot fail locally return a `Result` here: the server may be gone. Items are encoded with
//! the local codec ([`Postcard`](crate::codec::Postcard) unless another is named).
//!
//! # Guarantees
//!
//! - **Atomic steps.** Every compound step (a bounded put, a take with its bookkeeping,
//!   `task_done`, giving back a dead consumer's items, lock acquire and release) is one Lua
//!   script, run atomically by the server. All keys of one object share one hash tag
//!   (`{mpq:NAME}`, `{mpl:NAME}`, ...), so one object lives in one cluster slot.
//! - **Blocking on the server.** Blocked calls wait in the server (`BLPOP`, `BLMOVE`,
//!   pub/sub), never by polling, in slices of at most a second; every reply is awaited for at
//!   most its block time plus two seconds (five seconds for a non-blocking command). A dead
//!   server, a cut link or a half-open TCP connection turns into
//!   [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) within that bound — never a
//!   hang.
//! - **Batches.** `put_many` and `get_many` (each in the four forms) move up to 1,000 items
//!   per script, in order, all or as many as fit.
//! - **[`Queue`]: at-most-once**, like Python's and the local queue: `get` removes the item;
//!   a consumer killed after `get` loses that item. `put` is synchronous: when it returns
//!   `Ok`, the item is on the server. `maxsize` counts ready items, checked atomically.
//! - **[`JoinableQueue`]: at-least-once across consumer crashes.** A taken item moves
//!   atomically to the consumer's in-flight list; it leaves it only by that consumer's
//!   `task_done`, or by a reaper when the consumer's lease ran out (it renews it every third
//!   of the lease from a thread, so only a dead, stopped or cut-off consumer loses it). Then
//!   its items go back to the head of the queue, in order, each exactly once, and its late
//!   `task_done` fails with [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) and counts nothing: `join` returns
//!   exactly when every item put has been acknowledged once. An item can be *processed*
//!   twice (a consumer that was only slow): work must be idempotent.
//! - **`close()` ends the stream for every consumer on every machine**: puts fail with
//!   `Closed`, consumers drain what is left and then get `Closed`; blocked consumers wake at
//!   once (a marker after the last item is passed from one to the next).
//! - **[`Lock`]: a lease with a fencing token.** Only the holder's random token releases
//!   or renews it, so a holder that died or lost its lease can never release another's lock
//!   (its `unlock` fails with `LeaseLost`). The next holder after an expired lease gets
//!   [`OwnerDied`](crate::OwnerDied). Each acquisition gets a larger
//!   [`fence`](LockGuard::fence); a lease alone cannot exclude a holder paused past its
//!   lease, a resource that checks fences can.
//! - **[`Pool`]: at-least-once across worker crashes, each result once.** A call is an
//!   item of the joinable queue of the pool's name, so a worker that dies (or stops or is
//!   cut off past its lease) with a call in flight loses it to another worker, exactly once.
//!   A worker publishes a result in the same script that acknowledges its call, and only
//!   if the call is still its own: a worker that was only slow runs the call a second time
//!   but its late result is refused. The caller reads results from a stream (nothing is
//!   removed by reading, so a reply lost on the way is read again) and ignores duplicates.
//!   Tasks must be idempotent. A call lost with its worker is counted on the server: one
//!   lost [`DEFAULT_MAX_RUNS`] times (a "poison" call that kills every worker that runs
//!   it) is not run again and its result is an error
//!   ([`ErrorKind::ChildFailed`](crate::ErrorKind::ChildFailed); see
//!   [`Worker::with_max_runs`]). Results not read stay on the server for 24 hours after
//!   the last one came.
//! - **[`Semaphore`]**: permits are leases too; a dead holder's permit comes back when its
//!   lease runs out. **[`Event`]**: `set` wakes every waiter on every machine.
//!
//! # When the server restarts or the connection is lost
//!
//! The call that finds the connection broken fails at once with
//! [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) (inside the usual error: `GetError::Failed(e)`, ...). It is
//! not retried, because the server may or may not have done it: a `put` that failed so may
//! have put its item, a `task_done` may have counted (then its retry says `LeaseLost`). The
//! next call connects again (and fails the same way while the server is down). A consumer
//! whose `get` lost its reply gives the item it may have taken back to the queue as soon as
//! it reconnects, so nothing is stranded in flight.
//!
//! A plain [`Queue`]'s `get` whose reply is lost that way (the server handed it an item just
//! as the connection broke) loses that item: at-most-once, as a consumer killed inside `get`.
//!
//! A process stopped and continued (SIGSTOP, Ctrl-Z) has its socket reads interrupted
//! (`EINTR`): reads, waits and idempotent steps are retried on a new connection; a take or
//! another non-idempotent step caught at that moment fails with `Disconnected`, as above.
//!
//! What survives a restart is what the server keeps: with `appendonly yes` and
//! `appendfsync always`, every acknowledged write (items, in-flight lists, counters, fences,
//! the closed flag) survives; with the default snapshots, the writes since the last snapshot
//! are lost; without persistence, everything is — queues come back empty and unclosed, locks
//! free, fences start again from 1, a pool's queued calls and unread results are gone
//! (its callers wait for results that will not come: bound them with `get_timeout`). Leases keep running on the server's clock across a
//! restart. Replication is asynchronous: after a failover to a replica, recent puts and
//! acknowledgements may be lost or happen twice, and a lock may be held twice with a
//! repeated fence. None of this is hidden: a process is told `Disconnected`, never a
//! silent success.
//!
//! Handles: each has its own connection (a [`Clone`] opens another, so clone per thread;
//! calls on one handle from several threads take turns). A handle used in a forked child
//! connects anew there, never speaking on the parent's socket, and a `JoinableQueue` handle
//! is a consumer of its own there. Fork while no other thread is inside a call on the same
//! handle (as with every lock at a fork), or clone it first.
//!
//! The `multiproc` command-line tool
//! (`multiproc inspect URL NAME...`, built with the feature) shows what [`inspect`] gives:
//! queue lengths, consumers alive, items in flight per consumer, and for a pool (its name)
//! its workers with their host, pid and tasks.
//!
//! ```text
//! use multiproc::remote::{Pool, Task, Worker};
//! const SQUARE: Task<u64, u64> = Task::new("square");
//! fn square(x: u64) -> u64 { x * x }
//!
//! // On each worker machine:
//! Worker::new("redis://10.0.0.5:6379/0", "maths")?.register(SQUARE, square).run()?;
//! // On any machine:
//! let pool = Pool::open("redis://10.0.0.5:6379/0", "maths")?;
//! assert_eq!(pool.map(SQUARE, 0..4)?, vec![0, 1, 4, 9]);
//! ```

mod conn;
mod keeper;
mod pool;
mod queue;
mod sync;

pub use pool::{AsyncResult, Imap, Pool, Task, Worker, DEFAULT_MAX_RUNS};
pub use queue::{inspect, ConsumerInfo, JoinableQueue, Queue, QueueInfo, DEFAULT_LEASE};
pub use sync::{Event, Lock, LockGuard, Semaphore, SemaphoreGuard, DEFAULT_LOCK_LEASE};
