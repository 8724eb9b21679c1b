//! [`Pool`]: Python's `multiprocessing.Pool` — a fixed set of worker processes that run
//! tasks, and that survives its workers dying.
//!
//! ```
//! use multiproc::Pool;
//! fn square(x: u64) -> u64 { x * x }
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # The calls
//! Each exists once, with Python's name: [`map`](Pool::map), [`map_async`](Pool::map_async),
//! [`starmap`](Pool::starmap), [`starmap_async`](Pool::starmap_async),
//! [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered), [`apply`](Pool::apply),
//! [`apply_async`](Pool::apply_async). Python's `chunksize` argument is a setting of the
//! handle the call is made on: [`pool.with_chunksize(n)`](Pool::with_chunksize), or a default
//! for the pool, [`PoolBuilder::chunksize`]. Python's `callback` and `error_callback` are
//! set on the [`AsyncResult`] ([`callback`](AsyncResult::callback),
//! [`error_callback`](AsyncResult::error_callback)).
//!
//! # What a task runs
//! - A function `fn(A) -> R` with serde arguments and results (or a closure that captures
//!   nothing, which is one): [`Pool`], with both start methods (with
//!   [`StartMethod::Spawn`] the function travels as an offset inside the binary, as for
//!   [`Process::spawn`](crate::Process::spawn)).
//! - A function `fn(&C, A) -> R` and a context `C` (Python's `partial(f, config)` or a
//!   lambda over it): [`pool.with_context(&config)`](Pool::with_context) gives a
//!   [`WithContext`] with the same calls. The context is serialized once and sent to each
//!   worker once, with the first task it runs there; both start methods.
//! - Any closure, fixed when the pool is made ([`PoolBuilder::build_with`] gives a
//!   [`ClosurePool`], with the same calls): it may capture anything, since the workers are
//!   forked with it, so it needs [`StartMethod::Fork`].
//!
//! # Robustness
//! - A task that panics gives an [`ErrorKind::ChildPanicked`] error for that task, carrying
//!   the panic message and where it happened; the worker and the other tasks go on. Nothing
//!   is printed by the worker (no "thread 'main' panicked", no backtraces from several
//!   workers interleaved): the panic is reported once, in the caller, by the task's error.
//! - A worker that dies (SIGKILL, abort, `exit`, the OOM killer) never hangs the pool
//!   (Python's hangs forever: CPython issue 66587). The dispatcher watches every worker's
//!   pidfd, fails exactly the tasks that worker held with an [`ErrorKind::ChildFailed`] error
//!   saying what happened (or runs them again, up to [`PoolBuilder::retries`] times), reaps
//!   the dead worker and starts a replacement.
//!
//! Tasks are sent in chunks (as in Python): when a worker dies, every task of the chunk(s)
//! it held gets the error, since the pool cannot know which of them had finished.
//!
//! # Where things are
//! The handles, one file each: [`Pool`] and what its handles share (here), [`PoolBuilder`]
//! (`builder.rs`), [`WithContext`] (`context.rs`), [`ClosurePool`] (`closure.rs`); what the
//! calls hand back, [`AsyncResult`] and [`Imap`] (`result.rs`), and their errors
//! (`error.rs`). Behind them: the task calls, written once (`calls.rs`); a job and its
//! outcomes (`job.rs`); the callback thread (`callback.rs`); the parent's side, which hands
//! chunks to workers and watches them (`dispatch.rs`), and reads a chunk's outcomes
//! (`outcomes.rs`); the worker's side (`worker.rs`, its panics in `panics.rs`); the messages
//! between the two (`protocol.rs`), the shared memory of each pair (`mailbox.rs`), and the
//! codec of task arguments and results (`wire.rs`).
//!
//! [`StartMethod::Spawn`]: crate::StartMethod::Spawn
//! [`StartMethod::Fork`]: crate::StartMethod::Fork

mod builder;
mod callback;
mod calls;
mod closure;
mod context;
mod dispatch;
mod error;
mod job;
mod mailbox;
mod outcomes;
mod panics;
mod protocol;
mod result;
mod wire;
mod worker;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::process::spawn::RunFnRef;
use crate::process::StartMethod;
use crate::sys::Deadline;
use calls::Calls;
use dispatch::{Code, Config, Link, TaskContext};

pub use builder::PoolBuilder;
pub use closure::ClosurePool;
pub use context::WithContext;
pub use error::{GetTimeoutError, JoinTimeoutError, TryGetError, TryJoinError};
pub use result::{AsyncResult, Imap};

/// What every handle of one pool shares; dropping it (the last [`Pool`] handle and the
/// last [`Imap`]) terminates the pool.
pub(crate) struct Shared {
    pub(crate) link: Arc<Link>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) processes: usize,
}

impl Shared {
    fn close(&self) {
        if self.link.foreign() {
            return; // (the parent's pool: see `Pool::join`)
        }
        let mut closed = self.link.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            self.link.close();
        }
    }

    fn terminate(&self) {
        if self.link.foreign() {
            return; // (the parent's pool: see `Pool::join`)
        }
        *self.link.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.link.terminate();
        self.wait_threads();
    }

    /// Python's `join`, waiting until `deadline` at most: `Ok(false)` when the workers or
    /// the callbacks were still going then.
    fn join_by(&self, deadline: Deadline) -> Result<bool> {
        if self.link.foreign() {
            self.link.begin()?;
        }
        if !*self.link.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join() needs close() or terminate() first",
            ));
        }
        Ok(self.wait_threads_by(deadline))
    }

    /// Waits for the dispatcher to stop (every task has its outcome then, and every
    /// callback has been handed to the callback thread), then for the callbacks.
    fn wait_threads(&self) {
        self.wait_threads_by(Deadline::never());
    }

    /// [`wait_threads`](Self::wait_threads) until `deadline` at most: false when a thread
    /// was still running then (a later call waits for it again).
    fn wait_threads_by(&self, deadline: Deadline) -> bool {
        callback::join_thread_by(&self.thread, deadline) && self.link.callbacks.stop_by(deadline)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// A `Pool` is a handle: methods take `&self`, so a pool can be shared between threads, and
/// clones (and [`with_chunksize`](Pool::with_chunksize), [`with_context`](Pool::with_context))
/// are handles to the same workers. Dropping the last handle terminates the pool (Python's
/// `with Pool() as p:` calls `terminate` on exit too): workers are killed and reaped,
/// unfinished tasks fail with [`ErrorKind::Closed`] — unless an [`Imap`] is still in use,
/// which keeps the pool going until it is dropped. Call [`close`](Pool::close) then
/// [`join`](Pool::join) to let the work finish first.
///
/// A pool belongs to the process that made it. In a child forked after it was made, whose
/// copy names the parent's workers and a dispatcher thread the child does not have, new
/// work and [`join`](Pool::join) fail with [`ErrorKind::InvalidState`], and `close`,
/// `terminate` and dropping do nothing (the parent's pool is not disturbed). Make a new
/// pool in the child.
///
/// See the [module docs](crate::pool) for the calls, what tasks may run, and what happens
/// when tasks panic or workers die.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    chunksize: Option<usize>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.processes)
            .field("workers", &self.worker_pids())
            .field("chunksize", &self.chunksize)
            .finish()
    }
}

fn fn_code<A, R>(f: fn(A) -> R) -> Code
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    Code::Fn(RunFnRef::of::<A, R, worker::ChunkRunner>(f))
}

impl Pool {
    /// A pool of `processes` workers, started with [`StartMethod::Fork`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `processes` is 0; [`ErrorKind::Os`] when a worker
    /// can't be started.
    pub fn new(processes: usize) -> Result<Pool> {
        PoolBuilder::new().processes(processes).build()
    }

    /// A builder: processes, initializer, `maxtasksperchild`, start method, retries,
    /// default chunksize.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn start(cfg: Config, chunksize: Option<usize>) -> Result<Pool> {
        if cfg.method == StartMethod::Fork {
            // Before the first fork: the workers inherit it (see `panics.rs`).
            panics::install_panic_hook();
        }
        let processes = cfg.processes;
        let (link, thread) = dispatch::start(cfg)?;
        Ok(Pool {
            shared: Arc::new(Shared {
                link,
                thread: Mutex::new(Some(thread)),
                processes,
            }),
            chunksize,
        })
    }

    fn calls(&self, code: Code) -> Calls<'_> {
        Calls {
            pool: &self.shared,
            code,
            chunksize: self.chunksize,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.processes
    }

    /// The pids of the live workers (they change as workers are replaced).
    pub fn worker_pids(&self) -> Vec<i32> {
        self.shared
            .link
            .pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A handle to this pool whose calls send `chunksize` tasks to a worker in one message
    /// (Python's `chunksize` argument; see [`PoolBuilder::chunksize`] for the default).
    /// Larger chunks cost fewer messages; smaller ones balance uneven tasks better.
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let squares = pool.with_chunksize(100).map(square, 0..1000)?;
    /// assert_eq!(squares[999], 998_001);
    /// let mut it = pool.with_chunksize(10).imap_unordered(square, 0..50)?;
    /// assert!(it.next().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// Zero makes its task calls fail with [`ErrorKind::InvalidArgument`].
    pub fn with_chunksize(&self, chunksize: usize) -> Pool {
        Pool {
            shared: self.shared.clone(),
            chunksize: Some(chunksize),
        }
    }

    /// A handle to this pool whose tasks get `context` as well as their argument: they are
    /// functions `fn(&C, A) -> R` (Python's `pool.map(partial(f, config), xs)`, or a lambda
    /// over `config`). The context is serialized here, once, and sent to each worker once,
    /// with the first task it runs there; a worker decodes it once and lends it to every
    /// task of this handle. Works with both start methods.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use multiproc::Pool;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Scale { factor: u64, offset: u64 }
    ///
    /// fn scale(s: &Scale, x: u64) -> u64 { s.factor * x + s.offset }
    ///
    /// let pool = Pool::new(2)?;
    /// let scaled = pool.with_context(&Scale { factor: 10, offset: 1 })?;
    /// assert_eq!(scaled.map(scale, 0..4)?, vec![1, 11, 21, 31]);
    /// assert_eq!(scaled.apply(scale, 7)?, 71);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// A worker holds one context at a time: handles with different contexts used by turns
    /// on the same pool send theirs again each time a worker switches.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when `context` does not serialize (a multiproc handle in it
    /// cannot travel this way).
    #[doc(alias = "partial")]
    #[doc(alias = "map_with")]
    pub fn with_context<C>(&self, context: &C) -> Result<WithContext<C>>
    where
        C: Serialize + DeserializeOwned + 'static,
    {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut bytes = Vec::new();
        crate::handle::take_note();
        if let Err(e) = context.serialize(&mut worker::serializer(&mut bytes)) {
            let detail = crate::handle::take_note().unwrap_or_else(|| e.to_string());
            return Err(Error::new(
                ErrorKind::Codec,
                format!("cannot serialize the context: {detail}"),
            ));
        }
        Ok(WithContext {
            pool: self.clone(),
            context: Arc::new(TaskContext {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                bytes,
            }),
            _c: PhantomData,
        })
    }

    /// Runs `f` on every item, in parallel, and returns the results in order (Python's
    /// `map`). Items go to the workers in chunks of `len / (4 * processes)` (rounded up), as
    /// in Python, unless a chunksize is set ([`with_chunksize`](Pool::with_chunksize)).
    ///
    /// `f` is a function, or a closure that captures nothing:
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn len(s: String) -> usize { s.len() }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(len, ["a".to_string(), "bcd".to_string()])?, vec![1, 3]);
    /// assert_eq!(pool.map(|x: u32| x + 1, 0..3)?, vec![1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// The first failed task's error, in item order: [`ErrorKind::ChildPanicked`] (the
    /// message is in it), [`ErrorKind::ChildFailed`] (its worker died), [`ErrorKind::Codec`],
    /// [`ErrorKind::Closed`] (the pool is closed or was terminated). The other tasks still
    /// ran; use [`imap`](Pool::imap) to see each task's outcome.
    /// [`ErrorKind::InvalidArgument`] for a chunksize of 0; [`ErrorKind::InvalidState`] in a
    /// process forked from the one that made the pool (see [`Pool`]).
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).map(items)
    }

    /// Starts a [`map`](Pool::map) and returns at once (Python's `map_async`); the
    /// [`AsyncResult`] gives the list, and takes callbacks.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed; [`ErrorKind::InvalidArgument`] for a
    /// chunksize of 0. A task's failure (an item that does not serialize, too) is in the
    /// result.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).map_async(items)
    }

    /// Python's `starmap`: `f` takes its arguments as one tuple, which Rust destructures in
    /// the signature — `fn add((a, b): (i32, i32)) -> i32`. Otherwise [`map`](Pool::map).
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, vec![3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    pub fn starmap<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map(f, items)
    }

    /// Python's `starmap_async`: [`starmap`](Pool::starmap) that returns at once, as
    /// [`map_async`](Pool::map_async).
    ///
    /// # Errors
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items)
    }

    /// Runs `f(arg)` in a worker and waits for it (Python's `apply`).
    ///
    /// # Errors
    /// The task's error, as for [`map`](Pool::map).
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).apply(arg)
    }

    /// Starts `f(arg)` in a worker and returns at once (Python's `apply_async`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 7)?;
    /// assert_eq!(r.get_timeout(Duration::from_secs(30))?, 49);
    /// assert!(r.ready() && r.successful()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed. A task's failure (an argument that
    /// does not serialize, too) is in the result.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).apply_async(arg)
    }

    /// A lazy iterator over `f(item)` for every item, in order (Python's `imap`), one task
    /// per chunk unless a chunksize is set. Items are taken from `items` as results are
    /// consumed, a few chunks ahead of the consumer, so the input may be long or endless.
    /// Each item gives its own `Result`: a failed task doesn't stop the others. The
    /// iterator keeps the pool alive (see [`Imap`]).
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.imap(square, 0..)?.take(4).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, vec![0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed; [`ErrorKind::InvalidArgument`] for a
    /// chunksize of 0.
    pub fn imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).imap(items, false)
    }

    /// Like [`imap`](Pool::imap), but results come as soon as they are ready, in any order
    /// (Python's `imap_unordered`).
    ///
    /// # Errors
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.calls(fn_code(f)).imap(items, true)
    }

    /// No more tasks may be submitted; the workers exit once the submitted work is done
    /// (Python's `close`). Iterators from [`imap`](Pool::imap) made before go on feeding
    /// their input.
    pub fn close(&self) {
        self.shared.close()
    }

    /// Stops at once: workers are killed and reaped, unfinished tasks fail with
    /// [`ErrorKind::Closed`] (Python's `terminate`). Waits for the workers to be gone and
    /// for the callbacks of the failed results to have run.
    pub fn terminate(&self) {
        self.shared.terminate()
    }

    /// Waits for the workers to exit, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`), then for every callback to have
    /// run. Live [`Imap`]s keep the pool working until they have sent all their input or
    /// are dropped.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the pool was neither closed nor terminated (Python
    /// raises `ValueError`), or was made by the process this one was forked from.
    pub fn join(&self) -> Result<()> {
        self.shared.join_by(Deadline::never()).map(drop)
    }

    /// [`join`](Pool::join) if the workers have exited and every callback has run; never
    /// waits.
    ///
    /// # Errors
    /// [`TryJoinError::WouldBlock`] when something is still running; `Failed` as for `join`.
    pub fn try_join(&self) -> std::result::Result<(), TryJoinError> {
        match self.shared.join_by(Deadline::passed()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TryJoinError::WouldBlock),
            Err(e) => Err(TryJoinError::Failed(e)),
        }
    }

    /// [`join`](Pool::join), waiting at most `timeout` (any `Duration`, up to
    /// `Duration::MAX`). A join that ran out can be called again.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] when the workers or callbacks were still going then;
    /// `Failed` as for `join`.
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), JoinTimeoutError> {
        self.join_by(Deadline::after(Some(timeout)))
    }

    /// [`join`](Pool::join), waiting until `deadline` at most.
    ///
    /// # Errors
    /// As for [`join_timeout`](Pool::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> std::result::Result<(), JoinTimeoutError> {
        self.join_by(Deadline::after(Some(
            deadline.saturating_duration_since(Instant::now()),
        )))
    }

    fn join_by(&self, deadline: Deadline) -> std::result::Result<(), JoinTimeoutError> {
        match self.shared.join_by(deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(JoinTimeoutError::Timeout),
            Err(e) => Err(JoinTimeoutError::Failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Issue 12, point 2, with real workers of both start methods: tasks whose arguments or
    //! results are of another type than the other side's fail with `Codec` errors, and the
    //! pool goes on. Through the public API both sides are one `fn(A) -> R`; the mismatch is
    //! made here by pairing a function with another argument or result type.

    use super::*;

    fn length(s: String) -> usize {
        s.len()
    }

    fn pair(x: u32) -> (u8, u8) {
        (x as u8, 2)
    }

    #[test]
    fn tasks_of_another_type_are_codec_errors_and_the_pool_goes_on() {
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            let pool = Pool::builder()
                .processes(2)
                .start_method(m)
                .build()
                .unwrap();
            // Arguments: `(u8, u8)` sent to a `fn(String) -> usize` (as a `String`,
            // `(1, 2)` would be "\u{2}", length 1).
            let code = Code::Fn(RunFnRef::of::<String, usize, worker::ChunkRunner>(length));
            let e = pool
                .calls(code)
                .map::<(u8, u8), usize>(vec![(1, 2), (1, 3)])
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{m:?}: {e}");
            assert!(
                e.message().contains("expected a `alloc::string::String`"),
                "{e}"
            );
            // Results: `(u8, u8)` values read as `String`s.
            let code = Code::Fn(RunFnRef::of::<u32, (u8, u8), worker::ChunkRunner>(pair));
            let e = pool.calls(code).map::<u32, String>(vec![1, 2]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{m:?}: {e}");
            assert!(e.message().contains("(u8, u8)"), "{e}");
            // The right types, on the same pool.
            assert_eq!(
                pool.map(length, vec!["ab".to_string(), "cde".into()])
                    .unwrap(),
                [2, 3]
            );
            assert_eq!(pool.map(pair, vec![7]).unwrap(), [(7, 2)]);
        }
    }
}
