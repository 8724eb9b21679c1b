//! [`Pool`]: Python's `multiprocessing.Pool` — a fixed set of worker processes that run
//! tasks (`map`, `imap`, `imap_unordered`, `starmap`, `apply`, `apply_async`, `map_async`),
//! and that survives its workers dying.
//!
//! Tasks are plain functions `fn(A) -> R` with serde arguments and results; they work with
//! both start methods (with [`StartMethod::Spawn`] the function travels as an offset inside
//! the binary, as for [`Process::spawn`](crate::Process::spawn)). With
//! [`StartMethod::Fork`] a pool can also run one closure fixed at creation
//! ([`Builder::build_with`] gives a [`ClosurePool`]).
//!
//! # Robustness
//! - A task that panics gives an [`ErrorKind::ChildPanicked`] error for that task, carrying
//!   the panic message; the worker and the other tasks go on.
//! - A worker that dies (SIGKILL, abort, `exit`, the OOM killer) never hangs the pool
//!   (Python's hangs forever: CPython issue 66587). The dispatcher watches every worker's
//!   pidfd, fails exactly the tasks that worker held with an [`ErrorKind::ChildFailed`] error
//!   saying what happened (or runs them again, up to [`Builder::retries`] times), reaps the
//!   dead worker and starts a replacement.
//!
//! Tasks are sent in chunks (as in Python): when a worker dies, every task of the chunk(s)
//! it held gets the error, since the pool cannot know which of them had finished.
//!
//! ```
//! use multiproc::Pool;
//! fn square(x: u64) -> u64 { x * x }
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
//! # Ok::<(), multiproc::Error>(())
//! ```

mod dispatch;
mod job;
mod wire;
mod worker;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::process::spawn::FnRef;
use crate::process::StartMethod;
use crate::sys::Deadline;
use dispatch::{Code, Config, Driver, Link, Submit};
use job::{Job, Outcome, Slot};

/// Configures a [`Pool`]: number of processes, initializer, `maxtasksperchild`, start
/// method, retries.
///
/// ```
/// use multiproc::{Pool, StartMethod};
/// fn double(x: i32) -> i32 { 2 * x }
/// let pool = Pool::builder()
///     .processes(2)
///     .maxtasksperchild(10)
///     .start_method(StartMethod::Fork)
///     .build()?;
/// assert_eq!(pool.apply(double, 21)?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use]
pub struct Builder {
    processes: Option<usize>,
    method: StartMethod,
    init: Option<worker::Init>,
    init_error: Option<Error>,
    maxtasks: Option<usize>,
    retries: u32,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default settings: one worker per CPU, Fork, no initializer, no retries.
    pub fn new() -> Builder {
        Builder {
            processes: None,
            method: StartMethod::Fork,
            init: None,
            init_error: None,
            maxtasks: None,
            retries: 0,
        }
    }

    /// The number of worker processes (default: the number of CPUs). Zero is an error at
    /// [`build`](Builder::build).
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = Some(n);
        self
    }

    /// How workers are started (default [`StartMethod::Fork`]).
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.method = method;
        self
    }

    /// Runs `f(args)` in every worker when it starts (Python's `initializer`, `initargs`).
    /// If it panics the pool is broken: waiting and later tasks fail with its message
    /// (Python's pool instead restarts the worker forever).
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Builder
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        match crate::codec::to_vec(&args) {
            Ok(bytes) => {
                self.init = Some(worker::Init {
                    f: FnRef::of::<A, (), worker::InitRunner>(f),
                    args: bytes,
                })
            }
            Err(e) => self.init_error = Some(e),
        }
        self
    }

    /// A worker exits after this many chunks and a fresh one replaces it (Python's
    /// `maxtasksperchild`; a chunk is one task unless a chunksize is given). Zero is an error
    /// at [`build`](Builder::build).
    pub fn maxtasksperchild(mut self, n: usize) -> Builder {
        self.maxtasks = Some(n);
        self
    }

    /// How many times a chunk whose worker died is run again before its tasks fail
    /// (default 0: they fail at once). A panic is not retried: it is the task's outcome.
    pub fn retries(mut self, n: u32) -> Builder {
        self.retries = n;
        self
    }

    fn config(self, closure: Option<worker::ClosureRunner>) -> Result<Config> {
        if let Some(e) = self.init_error {
            return Err(e);
        }
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "a pool needs at least one process (Python: 'Number of processes must be at least 1')",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.maxtasks == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "maxtasksperchild must be at least 1",
            ));
        }
        if closure.is_some() && self.method == StartMethod::Spawn {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a closure pool needs StartMethod::Fork (a closure cannot cross an exec); \
                 use Pool with fn tasks for StartMethod::Spawn",
            ));
        }
        Ok(Config {
            processes,
            method: self.method,
            init: self.init,
            closure,
            maxtasks: self.maxtasks,
            retries: self.retries,
        })
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for zero processes or `maxtasksperchild(0)`;
    /// [`ErrorKind::Codec`] when the initializer's arguments don't serialize;
    /// [`ErrorKind::Os`] when a worker can't be started.
    pub fn build(self) -> Result<Pool> {
        Pool::start(self.config(None)?)
    }

    /// Starts a pool whose workers run the closure `f` (forked, so it needs
    /// [`StartMethod::Fork`], the default). The closure is fixed for the pool's lifetime;
    /// tasks are its arguments.
    ///
    /// ```
    /// use multiproc::Pool;
    /// let offset = 100;
    /// let pool = Pool::builder().processes(2).build_with(move |x: i32| x + offset)?;
    /// assert_eq!(pool.map(vec![1, 2, 3])?, vec![101, 102, 103]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`build`](Builder::build); [`ErrorKind::InvalidArgument`] with
    /// [`StartMethod::Spawn`].
    pub fn build_with<A, R, F>(self, f: F) -> Result<ClosurePool<A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let pool = Pool::start(self.config(Some(worker::closure_runner(f)))?)?;
        Ok(ClosurePool {
            pool,
            _t: PhantomData,
        })
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Methods take `&self`, so a pool can be shared between threads. Dropping the pool
/// terminates it (Python's `with Pool() as p:` calls `terminate` on exit too): workers are
/// killed and reaped, unfinished tasks fail with [`ErrorKind::Closed`]. Call
/// [`close`](Pool::close) then [`join`](Pool::join) to let the work finish first.
///
/// A pool belongs to the process that made it. In a child forked after it was made, whose
/// copy names the parent's workers and a dispatcher thread the child does not have, new
/// work and [`join`](Pool::join) fail with [`ErrorKind::InvalidState`], and `close`,
/// `terminate` and dropping do nothing (the parent's pool is not disturbed). Make a new
/// pool in the child.
///
/// See the [module docs](crate::pool) for what happens when tasks panic or workers die.
pub struct Pool {
    link: Arc<Link>,
    thread: Mutex<Option<JoinHandle<()>>>,
    processes: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("workers", &self.worker_pids())
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` workers, started with [`StartMethod::Fork`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when `processes` is 0; [`ErrorKind::Os`] when a worker
    /// can't be started.
    pub fn new(processes: usize) -> Result<Pool> {
        Builder::new().processes(processes).build()
    }

    /// A builder: processes, initializer, `maxtasksperchild`, start method, retries.
    pub fn builder() -> Builder {
        Builder::new()
    }

    fn start(cfg: Config) -> Result<Pool> {
        let processes = cfg.processes;
        let (link, thread) = dispatch::start(cfg)?;
        Ok(Pool {
            link,
            thread: Mutex::new(Some(thread)),
            processes,
        })
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the live workers (they change as workers are replaced).
    pub fn worker_pids(&self) -> Vec<i32> {
        self.link
            .pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `f` on every item, in parallel, and returns the results in order (Python's
    /// `map`). Items go to the workers in chunks of `len / (4 * processes)` (rounded up), as
    /// in Python.
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn len(s: String) -> usize { s.len() }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(len, ["a".to_string(), "bcd".to_string()])?, vec![1, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// The first failed task's error, in item order: [`ErrorKind::ChildPanicked`] (the
    /// message is in it), [`ErrorKind::ChildFailed`] (its worker died), [`ErrorKind::Codec`],
    /// [`ErrorKind::Closed`] (the pool is closed or was terminated). The other tasks still
    /// ran; use [`imap`](Pool::imap) to see each task's outcome. [`ErrorKind::InvalidState`]
    /// in a process forked from the one that made the pool (see [`Pool`]).
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let driver = self.link.try_drive();
        self.map_async(f, items)?.take_list(driver)
    }

    /// [`map`](Pool::map) with an explicit chunksize (tasks sent to a worker at once).
    ///
    /// # Errors
    /// As [`map`](Pool::map); [`ErrorKind::InvalidArgument`] when `chunksize` is 0.
    pub fn map_chunksize<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let driver = self.link.try_drive();
        self.map_async_chunksize(f, items, chunksize)?
            .take_list(driver)
    }

    /// Python's `starmap`: `f` takes its arguments as one tuple, which Rust destructures in
    /// the signature — `fn add((a, b): (i32, i32)) -> i32`.
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

    /// Starts a `map` and returns at once (Python's `map_async`).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed; [`ErrorKind::Codec`] when an item
    /// doesn't serialize.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        map_async_code(&self.link, self.processes, fn_code(f), items, None)
    }

    /// [`map_async`](Pool::map_async) with an explicit chunksize.
    ///
    /// # Errors
    /// As [`map_async`](Pool::map_async); [`ErrorKind::InvalidArgument`] when `chunksize`
    /// is 0.
    pub fn map_async_chunksize<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        map_async_code(
            &self.link,
            self.processes,
            fn_code(f),
            items,
            Some(chunksize),
        )
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
        self.apply_async(f, arg)?.get()
    }

    /// Starts `f(arg)` in a worker and returns at once (Python's `apply_async`).
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 7)?;
    /// assert_eq!(r.get_timeout(std::time::Duration::from_secs(30))?, 49);
    /// assert!(r.ready() && r.successful()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed; [`ErrorKind::Codec`] when `arg` doesn't
    /// serialize.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        apply_async_code(&self.link, fn_code(f), arg)
    }

    /// A lazy iterator over `f(item)` for every item, in order (Python's `imap`), one task
    /// per chunk. Items are taken from `items` as results are consumed, a few chunks ahead
    /// of the consumer, so the input may be long or endless. Each item gives its own
    /// `Result`: a failed task doesn't stop the others.
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
    /// [`ErrorKind::Closed`] when the pool is closed.
    pub fn imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_chunksize(f, items, 1)
    }

    /// [`imap`](Pool::imap) with `chunksize` items per task message.
    ///
    /// # Errors
    /// As [`imap`](Pool::imap); [`ErrorKind::InvalidArgument`] when `chunksize` is 0.
    pub fn imap_chunksize<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        Imap::start(
            &self.link,
            self.processes,
            fn_code(f),
            items,
            chunksize,
            false,
        )
    }

    /// Like [`imap`](Pool::imap), but results come as soon as they are ready, in any order
    /// (Python's `imap_unordered`).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is closed.
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with `chunksize` items per task message.
    ///
    /// # Errors
    /// As [`imap_unordered`](Pool::imap_unordered); [`ErrorKind::InvalidArgument`] when
    /// `chunksize` is 0.
    pub fn imap_unordered_chunksize<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        Imap::start(
            &self.link,
            self.processes,
            fn_code(f),
            items,
            chunksize,
            true,
        )
    }

    /// No more tasks may be submitted; the workers exit once the submitted work is done
    /// (Python's `close`). Iterators from [`imap`](Pool::imap) made before go on feeding
    /// their input.
    pub fn close(&self) {
        if self.link.foreign() {
            return; // (the parent's pool: see `join`)
        }
        let mut closed = self.link.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            self.link.close();
        }
    }

    /// Stops at once: workers are killed and reaped, unfinished tasks fail with
    /// [`ErrorKind::Closed`] (Python's `terminate`). Waits for the workers to be gone.
    pub fn terminate(&self) {
        if self.link.foreign() {
            return; // (the parent's pool: see `join`)
        }
        *self.link.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.link.terminate();
        self.wait_thread();
    }

    /// Waits for the workers to exit, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`). Live [`Imap`]s keep the pool
    /// working until they have sent all their input or are dropped.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the pool was neither closed nor terminated (Python
    /// raises `ValueError`), or was made by the process this one was forked from.
    pub fn join(&self) -> Result<()> {
        if self.link.foreign() {
            return self.link.begin();
        }
        if !*self.link.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join() needs close() or terminate() first",
            ));
        }
        self.wait_thread();
        Ok(())
    }

    fn wait_thread(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn fn_code<A, R>(f: fn(A) -> R) -> Code
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    Code::Fn(FnRef::of::<A, R, worker::ChunkRunner>(f))
}

/// Encodes up to `n` items as a chunk payload (`count u32 | arguments`).
/// (The iterator goes in and comes back by value: see [`worker::encode_items`].)
fn encode_chunk<A: Serialize, I: Iterator<Item = A>>(
    items: I,
    n: usize,
    buf: &mut Vec<u8>,
) -> (std::result::Result<u32, (Error, u32)>, I) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    let (r, items) = worker::encode_items(items, n, buf);
    let count = match &r {
        Ok(c) | Err((_, c)) => *c,
    };
    buf[..4].copy_from_slice(&count.to_le_bytes());
    (r, items)
}

/// Adds a chunk to `job` and sends it (or fails it locally when encoding failed).
fn submit_chunk(link: &Link, job: &Arc<Job>, code: Code, payload: Payload) {
    match payload {
        Ok((payload, count)) => {
            let index = job.add_chunk(count as usize);
            link.submit(Submit {
                job: job.clone(),
                index,
                code,
                payload: Arc::new(payload),
            });
        }
        Err((e, count)) => {
            let index = job.add_chunk(count as usize);
            job.complete(
                index,
                Outcome::Failed {
                    kind: e.kind(),
                    message: format!("cannot send a task's argument: {}", e.message()),
                },
            );
        }
    }
}

type Payload = std::result::Result<(Vec<u8>, u32), (Error, u32)>;

/// Encodes the next chunk of up to `n` items. `hint` is the room to start with; it becomes
/// the size of this chunk (plus a little) for the next one, so that a run of chunks grows no
/// buffer after the first. With a `link`, the buffer is one a finished chunk left behind
/// (memory already mapped and likely cached), when there is one.
/// The iterator goes in and comes back by value (see [`worker::encode_items`]).
fn next_payload<A: Serialize, I: Iterator<Item = A>>(
    items: I,
    n: usize,
    link: Option<&Link>,
    hint: &mut usize,
) -> (Option<Payload>, I) {
    let mut buf = match link {
        Some(l) => l.buffer(*hint),
        None => Vec::with_capacity(*hint),
    };
    let (r, items) = encode_chunk(items, n, &mut buf);
    *hint = (buf.len() + buf.len() / 8 + 16).min(1 << 24);
    let p = match r {
        Ok(0) => None,
        Ok(count) => Some(Ok((buf, count))),
        Err(e) => Some(Err(e)),
    };
    (p, items)
}

fn check_chunksize(chunksize: Option<usize>) -> Result<()> {
    if chunksize == Some(0) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "chunksize must be at least 1",
        ));
    }
    Ok(())
}

fn map_async_code<A, R>(
    link: &Arc<Link>,
    processes: usize,
    code: Code,
    items: impl IntoIterator<Item = A>,
    chunksize: Option<usize>,
) -> Result<AsyncResult<Vec<R>>>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    check_chunksize(chunksize)?;
    let it = items.into_iter();
    match it.size_hint() {
        // The length is known: no need to gather the items first.
        (lo, Some(hi)) if lo == hi => map_submit(link, processes, code, it, lo, chunksize),
        // Python makes a list too, to know the length (and so the chunksize).
        _ => {
            let items: Vec<A> = it.collect();
            let len = items.len();
            map_submit(link, processes, code, items.into_iter(), len, chunksize)
        }
    }
}

fn map_submit<A, R>(
    link: &Arc<Link>,
    processes: usize,
    code: Code,
    mut it: impl Iterator<Item = A>,
    len: usize,
    chunksize: Option<usize>,
) -> Result<AsyncResult<Vec<R>>>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let chunksize = chunksize.unwrap_or_else(|| len.div_ceil(processes * 4).max(1));
    link.begin()?;
    let job = Arc::new(Job::default());
    // Room for small arguments; bigger ones grow the buffer (the first one only).
    let mut hint = 4 + chunksize.min(len).saturating_mul(4).min(1 << 24);
    loop {
        let (p, rest) = next_payload(it, chunksize, Some(link), &mut hint);
        it = rest;
        match p {
            Some(p) => submit_chunk(link, &job, code, p),
            None => break,
        }
    }
    link.end_job();
    Ok(AsyncResult {
        link: link.clone(),
        job,
        finish: finish_list::<R>,
    })
}

fn apply_async_code<A, R>(link: &Arc<Link>, code: Code, arg: A) -> Result<AsyncResult<R>>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    link.begin()?;
    let job = Arc::new(Job::default());
    let p = next_payload(std::iter::once(arg), 1, None, &mut 64)
        .0
        .expect("one item");
    submit_chunk(link, &job, code, p);
    link.end_job();
    Ok(AsyncResult {
        link: link.clone(),
        job,
        finish: finish_one::<R>,
    })
}

/// Decodes one chunk's outcomes, appending one `Result` per task.
fn decode_slot<R: DeserializeOwned>(count: usize, outcome: &Outcome, out: &mut Vec<Result<R>>) {
    match outcome {
        Outcome::Ran { bytes, start, pid } => {
            worker::decode_outcomes(&bytes[*start..], count, *pid, out)
        }
        Outcome::Failed { kind, message } => {
            out.extend((0..count).map(|_| Err(Outcome::error(*kind, message))))
        }
    }
}

fn finish_list<R: DeserializeOwned>(slots: &[Slot]) -> Result<Vec<R>> {
    let mut all = Vec::with_capacity(slots.iter().map(|s| s.count).sum());
    for s in slots {
        match s.outcome.as_ref().expect("complete") {
            Outcome::Ran { bytes, start, pid } => {
                let before = all.len();
                worker::decode_values(&bytes[*start..], s.count, *pid, &mut all)?;
                debug_assert_eq!(all.len() - before, s.count);
            }
            Outcome::Failed { kind, message } => return Err(Outcome::error(*kind, message)),
        }
    }
    Ok(all)
}

fn finish_one<R: DeserializeOwned>(slots: &[Slot]) -> Result<R> {
    let mut all = finish_list::<R>(slots)?;
    all.pop()
        .ok_or_else(|| Error::new(ErrorKind::ChildFailed, "the task gave no result"))
}

/// The result of [`Pool::apply_async`] or [`Pool::map_async`], once it is there (Python's
/// `AsyncResult`). [`get`](AsyncResult::get) may be called many times.
pub struct AsyncResult<T> {
    link: Arc<Link>,
    job: Arc<Job>,
    finish: fn(&[Slot]) -> Result<T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    fn all_done(st: &job::State) -> bool {
        st.done == st.slots.len()
    }

    /// Waits for the result and returns it.
    ///
    /// # Errors
    /// The (first) failed task's error, as for [`Pool::map`].
    pub fn get(&self) -> Result<T> {
        let (st, _) = self
            .link
            .wait_for(&self.job, Deadline::never(), Self::all_done);
        (self.finish)(&st.slots)
    }

    /// Waits at most `timeout` for the result.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when it is not there in time (the tasks go on; ask again
    /// later); otherwise as [`get`](AsyncResult::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let (st, ok) =
            self.link
                .wait_for(&self.job, Deadline::after(Some(timeout)), Self::all_done);
        if !ok {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("the result was not ready within {timeout:?}"),
            ));
        }
        (self.finish)(&st.slots)
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        let _ = self
            .link
            .wait_for(&self.job, Deadline::never(), Self::all_done);
    }

    /// Waits at most `timeout`; true when the result is there (Python's `wait(timeout)`,
    /// then `ready()`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.link
            .wait_for(&self.job, Deadline::after(Some(timeout)), Self::all_done)
            .1
    }

    /// True once every task has finished (well or not).
    pub fn ready(&self) -> bool {
        Self::all_done(&self.job.lock())
    }

    /// Whether every task succeeded.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the result is not ready yet (Python raises
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        let st = self.job.lock();
        if !Self::all_done(&st) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "the result is not ready yet",
            ));
        }
        Ok((self.finish)(&st.slots).is_ok())
    }
}

impl<R: DeserializeOwned> AsyncResult<Vec<R>> {
    /// [`get`](AsyncResult::get) for a caller that asks once (`map`): decodes each chunk's
    /// results into the list as soon as they are there, while later chunks still run, and
    /// frees their bytes. The first failed task's error is returned once every task is done.
    ///
    /// `driver`: the caller's hold on the pool's driving, taken before it submitted (so
    /// that nobody else was woken to read the results); without one it tries to take it.
    fn take_list(self, driver: Option<Driver<'_>>) -> Result<Vec<R>> {
        let driver = driver.or_else(|| self.link.try_drive());
        let mut all = Vec::new();
        let mut first_err = None;
        let mut i = 0;
        loop {
            let slot_done = |st: &job::State| st.slots.get(i).is_none_or(|s| s.outcome.is_some());
            let (mut st, _) = match &driver {
                Some(d) => d.wait_for(&self.job, Deadline::never(), slot_done),
                None => self.job.wait_for(Deadline::never(), slot_done),
            };
            if i == 0 {
                all.reserve(st.slots.iter().map(|s| s.count).sum());
            }
            let Some(slot) = st.slots.get_mut(i) else {
                break;
            };
            let outcome = slot.outcome.take().expect("complete");
            slot.taken = true;
            let count = slot.count;
            drop(st);
            if first_err.is_none() {
                let r = match &outcome {
                    Outcome::Ran { bytes, start, pid } => {
                        worker::decode_values(&bytes[*start..], count, *pid, &mut all)
                    }
                    Outcome::Failed { kind, message } => Err(Outcome::error(*kind, message)),
                };
                if let Err(e) = r {
                    first_err = Some(e);
                    all = Vec::new();
                }
            }
            i += 1;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }
}

/// A lazy iterator over task results: [`Pool::imap`] (in order) and
/// [`Pool::imap_unordered`] (as they come). Each item is that task's `Result`.
///
/// Dropping it early stops feeding new input; tasks already sent still run.
pub struct Imap<'a, R> {
    link: Arc<Link>,
    job: Arc<Job>,
    code: Code,
    feed: Option<Box<dyn FnMut() -> Option<Payload> + 'a>>,
    ahead: usize,
    unordered: bool,
    submitted: usize,
    consumed: usize,
    buffer: VecDeque<Result<R>>,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("unordered", &self.unordered)
            .field("submitted_chunks", &self.submitted)
            .field("consumed_chunks", &self.consumed)
            .finish()
    }
}

impl<'a, R: DeserializeOwned> Imap<'a, R> {
    fn start<A>(
        link: &Arc<Link>,
        processes: usize,
        code: Code,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
        unordered: bool,
    ) -> Result<Imap<'a, R>>
    where
        A: Serialize + 'a,
    {
        check_chunksize(Some(chunksize))?;
        link.begin()?;
        let mut it = Some(items.into_iter());
        let mut hint = 4 + chunksize.saturating_mul(4).min(1 << 20);
        let feed_link = link.clone();
        let feed = Box::new(move || {
            let (p, rest) = next_payload(it.take()?, chunksize, Some(&feed_link), &mut hint);
            it = Some(rest);
            p
        });
        let mut me = Imap {
            link: link.clone(),
            job: Arc::new(Job::default()),
            code,
            feed: Some(feed),
            ahead: 2 * processes + 2,
            unordered,
            submitted: 0,
            consumed: 0,
            buffer: VecDeque::new(),
        };
        me.fill();
        Ok(me)
    }

    /// Submits chunks until `ahead` are outstanding or the input ends.
    fn fill(&mut self) {
        while self.submitted - self.consumed < self.ahead {
            let Some(feed) = self.feed.as_mut() else {
                return;
            };
            match feed() {
                Some(p) => {
                    submit_chunk(&self.link, &self.job, self.code, p);
                    self.submitted += 1;
                }
                None => {
                    self.feed = None;
                    self.link.end_job();
                }
            }
        }
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`): `None` at the
    /// end, `Some(Err(Timeout))` when it did not come in time (ask again later).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(Some(timeout)))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(r);
            }
            self.fill();
            if self.consumed == self.submitted {
                return None;
            }
            let next = self.consumed;
            let unordered = self.unordered;
            let (mut st, ok) = self.job.wait_for(deadline, |st| {
                if unordered {
                    !st.completed.is_empty()
                } else {
                    st.slots[next].outcome.is_some()
                }
            });
            if !ok {
                return Some(Err(Error::new(
                    ErrorKind::Timeout,
                    "the next result did not come in time",
                )));
            }
            let index = if unordered {
                st.completed.pop_front().expect("not empty")
            } else {
                next
            };
            let slot = &mut st.slots[index];
            let outcome = slot.outcome.take().expect("complete");
            slot.taken = true;
            let count = slot.count;
            drop(st);
            let mut out = Vec::with_capacity(count);
            decode_slot(count, &outcome, &mut out);
            self.buffer.extend(out);
            self.consumed += 1;
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(Deadline::never())
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if self.feed.take().is_some() {
            self.link.end_job();
        }
    }
}

/// A pool whose workers all run one closure, fixed at creation: [`Builder::build_with`]
/// (Fork start method only). It has the [`Pool`] calls, without the function argument.
pub struct ClosurePool<A, R> {
    pool: Pool,
    _t: PhantomData<fn(A) -> R>,
}

impl<A, R> std::fmt::Debug for ClosurePool<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosurePool")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<A, R> ClosurePool<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// The underlying pool (for `close`, `join`, `terminate`, `worker_pids`; its
    /// fn-task calls work too).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// [`Pool::map`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn map(&self, items: impl IntoIterator<Item = A>) -> Result<Vec<R>> {
        let driver = self.pool.link.try_drive();
        self.map_async(items)?.take_list(driver)
    }

    /// [`Pool::map_async`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map_async`].
    pub fn map_async(&self, items: impl IntoIterator<Item = A>) -> Result<AsyncResult<Vec<R>>> {
        map_async_code(
            &self.pool.link,
            self.pool.processes,
            Code::Closure,
            items,
            None,
        )
    }

    /// [`Pool::map_chunksize`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::map_chunksize`].
    pub fn map_chunksize(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        let driver = self.pool.link.try_drive();
        map_async_code(
            &self.pool.link,
            self.pool.processes,
            Code::Closure,
            items,
            Some(chunksize),
        )?
        .take_list(driver)
    }

    /// [`Pool::apply`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::apply`].
    pub fn apply(&self, arg: A) -> Result<R> {
        self.apply_async(arg)?.get()
    }

    /// [`Pool::apply_async`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::apply_async`].
    pub fn apply_async(&self, arg: A) -> Result<AsyncResult<R>> {
        apply_async_code(&self.pool.link, Code::Closure, arg)
    }

    /// [`Pool::imap`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::imap`].
    pub fn imap<'a>(&self, items: impl IntoIterator<Item = A> + 'a) -> Result<Imap<'a, R>> {
        Imap::start(
            &self.pool.link,
            self.pool.processes,
            Code::Closure,
            items,
            1,
            false,
        )
    }

    /// [`Pool::imap_unordered`] with the pool's closure.
    ///
    /// # Errors
    /// As [`Pool::imap_unordered`].
    pub fn imap_unordered<'a>(
        &self,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Result<Imap<'a, R>> {
        Imap::start(
            &self.pool.link,
            self.pool.processes,
            Code::Closure,
            items,
            1,
            true,
        )
    }

    /// [`Pool::close`].
    pub fn close(&self) {
        self.pool.close()
    }

    /// [`Pool::join`].
    ///
    /// # Errors
    /// As [`Pool::join`].
    pub fn join(&self) -> Result<()> {
        self.pool.join()
    }

    /// [`Pool::terminate`].
    pub fn terminate(&self) {
        self.pool.terminate()
    }
}
