//! [`PoolBuilder`]: a pool's settings, and the calls that start it.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dispatch::Config;
use super::{worker, ClosurePool, Pool};
use crate::error::{Error, ErrorKind, Result};
use crate::process::spawn::RunFnRef;
use crate::process::StartMethod;

/// Configures a [`Pool`]: number of processes, initializer, `maxtasksperchild`, start
/// method, retries, default chunksize.
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
pub struct PoolBuilder {
    processes: Option<usize>,
    method: StartMethod,
    init: Option<worker::Init>,
    init_error: Option<Error>,
    maxtasks: Option<usize>,
    retries: u32,
    chunksize: Option<usize>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("initializer", &self.init.is_some())
            .field("maxtasksperchild", &self.maxtasks)
            .field("retries", &self.retries)
            .field("chunksize", &self.chunksize)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl PoolBuilder {
    /// Default settings: one worker per CPU, Fork, no initializer, no retries, Python's
    /// chunksizes.
    pub fn new() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: StartMethod::Fork,
            init: None,
            init_error: None,
            maxtasks: None,
            retries: 0,
            chunksize: None,
        }
    }

    /// The number of worker processes (default: the number of CPUs). Zero is an error at
    /// [`build`](PoolBuilder::build).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// How workers are started (default [`StartMethod::Fork`]).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = method;
        self
    }

    /// Runs `f(args)` in every worker when it starts (Python's `initializer`, `initargs`).
    /// If it panics the pool is broken: waiting and later tasks fail with its message
    /// (Python's pool instead restarts the worker forever).
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> PoolBuilder
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        match crate::codec::to_vec_typed(&args) {
            Ok(bytes) => {
                self.init = Some(worker::Init {
                    f: RunFnRef::of::<A, (), worker::InitRunner>(f),
                    args: bytes,
                })
            }
            Err(e) => self.init_error = Some(e),
        }
        self
    }

    /// A worker exits after this many chunks and a fresh one replaces it (Python's
    /// `maxtasksperchild`; a chunk is one task unless a chunksize says otherwise). Zero is an
    /// error at [`build`](PoolBuilder::build).
    pub fn maxtasksperchild(mut self, n: usize) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// How many times a chunk whose worker died is run again before its tasks fail
    /// (default 0: they fail at once). A panic is not retried: it is the task's outcome.
    pub fn retries(mut self, n: u32) -> PoolBuilder {
        self.retries = n;
        self
    }

    /// The pool's default chunksize (Python's `chunksize` argument): how many tasks go to
    /// a worker in one message. Without it, `map` and `starmap` use Python's default,
    /// `len / (4 * processes)` rounded up, and `imap` sends one task per message.
    /// [`Pool::with_chunksize`] overrides it for some calls. Zero makes the task calls
    /// fail with [`ErrorKind::InvalidArgument`].
    pub fn chunksize(mut self, n: usize) -> PoolBuilder {
        self.chunksize = Some(n);
        self
    }

    fn config(self, closure: Option<worker::ClosureRunner>) -> Result<(Config, Option<usize>)> {
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
                 use Pool with fn tasks, or Pool::with_context, for StartMethod::Spawn",
            ));
        }
        let cfg = Config {
            processes,
            method: self.method,
            init: self.init,
            closure,
            maxtasks: self.maxtasks,
            retries: self.retries,
        };
        Ok((cfg, self.chunksize))
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for zero processes or `maxtasksperchild(0)`;
    /// [`ErrorKind::Codec`] when the initializer's arguments don't serialize;
    /// [`ErrorKind::Os`] when a worker or one of the pool's threads can't be started.
    pub fn build(self) -> Result<Pool> {
        let (cfg, chunksize) = self.config(None)?;
        Pool::start(cfg, chunksize)
    }

    /// Starts a pool whose workers run the closure `f` (forked, so it needs
    /// [`StartMethod::Fork`], the default). The closure is fixed for the pool's lifetime
    /// and may capture anything; tasks are its arguments.
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
    /// As [`build`](PoolBuilder::build); [`ErrorKind::InvalidArgument`] with
    /// [`StartMethod::Spawn`].
    pub fn build_with<A, R, F>(self, f: F) -> Result<ClosurePool<A, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let (cfg, chunksize) = self.config(Some(worker::closure_runner(f)))?;
        Ok(ClosurePool {
            pool: Pool::start(cfg, chunksize)?,
            _t: PhantomData,
        })
    }
}
