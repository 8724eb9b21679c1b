//! The remote [`Pool`]: task functions registered by name in [`Worker`] processes on any
//! machine, called from any machine.
//
// A pool NAME is the joinable queue NAME (so `multiproc inspect URL NAME` shows its
// backlog and its workers), carrying one `Job` per task call:
//
//   {mpq:NAME}:items, :meta, :consumers, :inflight:<cid>   the joinable queue's keys
//   {mpq:NAME}:workers           HASH   consumer id -> "host H pid P tasks a,b"
//   {mpq:NAME}:replies:<batch>   STREAM one entry per result of a batch (field `r`)
//
// A worker takes a job (it moves to the worker's in-flight list, under the worker's lease),
// runs it, and acknowledges it with its result: one script removes the job from the
// in-flight list and appends the result to the batch's stream, or, if the job is no longer
// there (the worker's lease ran out and the job went back to the queue), does neither. So
// a job is *run* at least once (again after a crash, or twice if a worker was only slow)
// but its result is *published* once. The caller reads the stream with XREAD (a read that
// removes nothing, resumed from the last entry id seen), so a reply lost on the way is read
// again; duplicate indexes are ignored all the same.
//
// Poison calls: the reaper counts, in {mpq:NAME}:lost, each time it takes a call back from a
// worker whose lease ran out; the take returns that count with the call, and a worker that
// takes a call lost `max_runs` times publishes a `Failure::Lost` instead of running it
// (acknowledging it, which clears the count).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::conn::{self, Conn};
use super::queue::{ConsumerInfo, JoinableQueue, QueueInfo};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{GetTimeoutError, TryGetError};
use crate::process::panic_message;
use crate::queue::{GetTimeoutError as QueueGetTimeoutError, PutError};
use crate::sys::Deadline;

/// A task of a remote [`Pool`]: its name, and the types of its argument and result. The
/// same constant names it in the workers ([`Worker::register`]) and in the callers
/// ([`Pool::map`], ...), so both sides agree on the types.
///
/// ```
/// use multiproc::remote::Task;
/// const SQUARE: Task<u64, u64> = Task::new("square");
/// assert_eq!(SQUARE.name(), "square");
/// ```
pub struct Task<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Task<A, R> {
    /// The task called `name` (at most 256 bytes), taking `A` and giving `R`.
    pub const fn new(name: &'static str) -> Task<A, R> {
        Task {
            name,
            _types: PhantomData,
        }
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> Clone for Task<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Task<A, R> {}

impl<A, R> fmt::Debug for Task<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Task").field(&self.name).finish()
    }
}

/// One task call on the wire.
#[derive(Serialize, Deserialize)]
struct Job {
    /// The caller's batch: where the result goes.
    batch: String,
    /// The call's place in its batch.
    index: u64,
    task: String,
    /// The argument, in the Postcard format.
    arg: Vec<u8>,
}

/// One result on the wire.
#[derive(Serialize, Deserialize)]
struct Reply {
    index: u64,
    outcome: std::result::Result<Vec<u8>, Failure>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
enum Failure {
    /// The task panicked: its message.
    Panicked(String),
    /// The argument did not decode as the task's argument type.
    BadArgument(String),
    /// No task of that name in the worker.
    NoSuchTask(String),
    /// The result did not encode.
    BadResult(String),
    /// The call was lost this many times with its worker (a worker that died, or stopped
    /// past its lease, holding it): not run again.
    Lost(u64),
}

impl Failure {
    fn error(&self, task: &str) -> Error {
        match self {
            Failure::Panicked(m) => Error::new(
                ErrorKind::ChildPanicked,
                format!("task {task:?} panicked in a remote worker: {m}"),
            ),
            Failure::BadArgument(m) => Error::new(
                ErrorKind::Codec,
                format!("task {task:?}: the worker could not decode its argument: {m}"),
            ),
            Failure::NoSuchTask(m) => Error::new(ErrorKind::NotFound, m.clone()),
            Failure::BadResult(m) => Error::new(
                ErrorKind::Codec,
                format!("task {task:?}: the worker could not encode its result: {m}"),
            ),
            Failure::Lost(n) => Error::new(
                ErrorKind::ChildFailed,
                format!(
                    "task {task:?}: the call was lost with its remote worker {n} times (each \
                     worker died, or stopped past its lease, while running it); not run again"
                ),
            ),
        }
    }
}

type Runner = Box<dyn Fn(&[u8]) -> std::result::Result<Vec<u8>, Failure> + Send + Sync>;

/// A process serving a remote [`Pool`]'s tasks (Python's pool worker, on any machine).
///
/// Register task functions by [`Task`], then [`run`](Worker::run): it takes one call at a
/// time from the pool's queue, runs it and publishes its result, until the pool is
/// [closed](Pool::close). Run as many workers as wanted, on as many machines; each serves
/// every task it registered (every worker of a pool should register the same tasks: a
/// call to a task a worker does not know fails with [`ErrorKind::NotFound`]).
///
/// A worker holds a lease on its calls in flight (renewed by a thread every third of it,
/// default [`DEFAULT_LEASE`](super::DEFAULT_LEASE)): when the worker dies, or stops or is cut off for longer, its
/// call goes back to the queue and another worker runs it.
///
/// ```text
/// use multiproc::remote::{Task, Worker};
/// const SQUARE: Task<u64, u64> = Task::new("square");
/// fn square(x: u64) -> u64 { x * x }
/// Worker::new("redis://10.0.0.5:6379/0", "maths")?.register(SQUARE, square).run()?;
/// ```
pub struct Worker {
    queue: JoinableQueue<Job>,
    tasks: HashMap<String, Runner>,
    max_runs: u64,
}

/// How many times a remote [`Pool`]'s call is run at most by default (see
/// [`Worker::with_max_runs`]).
pub const DEFAULT_MAX_RUNS: u64 = 3;

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.tasks.keys().collect();
        names.sort();
        f.debug_struct("remote::Worker")
            .field("pool", &self.queue.name())
            .field("tasks", &names)
            .field("max_runs", &self.max_runs)
            .finish()
    }
}

impl Worker {
    /// A worker for the pool `pool` on the server at `url` (nothing is taken before
    /// [`run`](Worker::run)).
    ///
    /// # Errors
    /// As [`JoinableQueue::open`].
    pub fn new(url: &str, pool: &str) -> Result<Worker> {
        Ok(Worker {
            queue: JoinableQueue::open(url, pool)?,
            tasks: HashMap::new(),
            max_runs: DEFAULT_MAX_RUNS,
        })
    }

    /// This worker runs a call at most `runs` times (default [`DEFAULT_MAX_RUNS`]): a call
    /// lost with its worker `runs` times (each worker died, or stopped past its lease,
    /// holding it — a "poison" call that kills every worker that runs it) is not run
    /// again; its result is an error of kind [`ErrorKind::ChildFailed`]. The count is
    /// kept on the server with the call, so every worker of the pool should use the same
    /// limit.
    ///
    /// # Panics
    /// If `runs` is 0.
    pub fn with_max_runs(mut self, runs: u64) -> Worker {
        assert!(runs > 0, "a call must be allowed to run at least once");
        self.max_runs = runs;
        self
    }

    /// This worker with a lease of `lease` (at least 30 ms) on its calls in flight: how long
    /// it may be silent before its call is given to another worker. Longer than any pause
    /// the process may have; a task's own run time does not count (the lease is renewed
    /// while it runs).
    ///
    /// # Panics
    /// If `lease` is shorter than 30 ms.
    pub fn with_lease(mut self, lease: Duration) -> Worker {
        self.queue = self.queue.with_lease(lease);
        self
    }

    /// Serves `task` with `f`. A later registration of the same name replaces it.
    ///
    /// # Panics
    /// If the task's name is empty or longer than 256 bytes.
    pub fn register<A, R>(mut self, task: Task<A, R>, f: fn(A) -> R) -> Worker
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        check_task_name(task.name);
        let run: Runner = Box::new(move |arg: &[u8]| {
            let a: A = Postcard::decode(arg).map_err(|e| Failure::BadArgument(e.to_string()))?;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(a)))
                .map_err(|p| Failure::Panicked(panic_message(p.as_ref())))?;
            let mut out = Vec::new();
            Postcard::encode(&r, &mut out).map_err(|e| Failure::BadResult(e.to_string()))?;
            Ok(out)
        });
        self.tasks.insert(task.name.to_string(), run);
        self
    }

    /// Serves calls until the pool is closed and its queue drained; returns how many calls
    /// this worker ran. A lost server does not end it: it waits (a second at a time) and
    /// connects again.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidHandle`] when the pool's name is another kind of object on the
    /// server.
    pub fn run(&self) -> Result<u64> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "?".to_string());
        let mut names: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
        names.sort_unstable();
        let what = format!(
            "host {host} pid {} tasks {}",
            std::process::id(),
            names.join(",")
        );
        let mut described = false;
        let mut ran = 0;
        // The next call, taken with the last acknowledgement (one round trip per call while
        // calls are ready).
        let mut next: Option<Result<(Job, u64)>> = None;
        loop {
            if !described {
                described = self.queue.describe_worker(&what).is_ok();
            }
            let got = match next.take() {
                Some(r) => r.map_err(QueueGetTimeoutError::Failed),
                None => self.queue.get_counted_timeout(Duration::from_secs(1)),
            };
            let (job, lost) = match got {
                Ok(got) => got,
                Err(QueueGetTimeoutError::Timeout) => continue,
                Err(QueueGetTimeoutError::Closed) => return Ok(ran),
                Err(QueueGetTimeoutError::Failed(e)) => {
                    match e.kind() {
                        ErrorKind::Disconnected => {
                            described = false;
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        ErrorKind::Codec => {
                            // Not a job of ours: acknowledged, so that it is not redelivered.
                            log::warn!(
                                "multiproc::remote: pool {:?}: dropped a malformed call: {e}",
                                self.queue.name()
                            );
                            let _ = self.queue.task_done();
                        }
                        _ => return Err(e),
                    }
                    continue;
                }
            };
            let outcome = if !valid_batch(&job.batch) {
                // No reply can go anywhere: acknowledge it and drop it.
                log::warn!(
                    "multiproc::remote: pool {:?}: dropped a call with a malformed batch id",
                    self.queue.name()
                );
                self.ack(None);
                continue;
            } else if lost >= self.max_runs {
                log::warn!(
                    "multiproc::remote: pool {:?}: a call of task {:?} was lost with its \
                     worker {lost} times: not run again",
                    self.queue.name(),
                    job.task
                );
                Err(Failure::Lost(lost))
            } else {
                match self.tasks.get(&job.task) {
                    Some(run) => run(&job.arg),
                    None => Err(Failure::NoSuchTask(format!(
                        "no task {:?} in the remote worker {what} of pool {:?}",
                        job.task,
                        self.queue.name()
                    ))),
                }
            };
            if !matches!(outcome, Err(Failure::Lost(_))) {
                ran += 1;
            }
            let mut bytes = Vec::new();
            let reply = Reply {
                index: job.index,
                outcome,
            };
            if let Err(e) = Postcard::encode(&reply, &mut bytes) {
                log::warn!("multiproc::remote: cannot encode a reply: {e}");
                continue;
            }
            next = self.ack_then_take(&job.batch, &bytes);
        }
    }

    /// Acknowledges the call in hand with its reply and takes the next call if one is
    /// ready, in one round trip; a lost server falls back to [`ack`](Worker::ack)'s retries
    /// (and the next call is taken by a plain `get`).
    fn ack_then_take(&self, batch: &str, bytes: &[u8]) -> Option<Result<(Job, u64)>> {
        match self.queue.task_done_then_take((batch, bytes)) {
            Ok((acked, next)) => {
                if let Err(e) = acked {
                    // LeaseLost: the call went back and someone else publishes its result.
                    log::debug!(
                        "multiproc::remote: pool {:?}: a result was not published: {e}",
                        self.queue.name()
                    );
                }
                next
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                self.ack(Some((batch, bytes)));
                None
            }
            Err(e) => {
                log::debug!(
                    "multiproc::remote: pool {:?}: a result was not published: {e}",
                    self.queue.name()
                );
                None
            }
        }
    }

    /// Acknowledges the call in hand with its reply; a lost server is retried (the call
    /// stays held) for as long as the lease could still be ours.
    fn ack(&self, reply: Option<(&str, &[u8])>) {
        let mut tries = 0;
        loop {
            match self.queue.task_done_with(reply) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::Disconnected && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    // LeaseLost: the call went back and someone else publishes its result.
                    log::debug!(
                        "multiproc::remote: pool {:?}: a result was not published: {e}",
                        self.queue.name()
                    );
                    if e.kind() == ErrorKind::Disconnected {
                        // Give up this call: forget it here, its lease brings it back.
                        let _ = self.queue.forget_held();
                    }
                    return;
                }
            }
        }
    }
}

fn check_task_name(name: &str) {
    assert!(
        !name.is_empty() && name.len() <= 256,
        "a remote task's name must be 1 to 256 bytes: {name:?}"
    );
}

/// A batch id as the callers make them (32 hex digits); nothing else is trusted as a key.
fn valid_batch(b: &str) -> bool {
    b.len() == 32 && b.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A pool of [`Worker`]s on any machines, called from any machine (Python's `Pool`, remote).
///
/// The calls are the local [`Pool`](crate::Pool)'s, with a [`Task`] in place of the
/// function: [`map`](Pool::map), [`map_async`](Pool::map_async), [`apply`](Pool::apply),
/// [`apply_async`](Pool::apply_async), [`imap`](Pool::imap),
/// [`imap_unordered`](Pool::imap_unordered); results come as the local ones do
/// ([`AsyncResult::get`], `try_get`, `get_timeout`, `get_deadline`, with the local pool's
/// error types).
///
/// **At-least-once across worker crashes, each result once**: a call in flight in a worker
/// that dies (or stops or is cut off past its lease) goes back to the queue and another
/// worker runs it; its result is published exactly when the call is acknowledged, once
/// (a worker that was only slow and finishes late is refused). Tasks must be idempotent.
/// A task that crashes every worker it runs in is retried forever (no delivery count yet).
///
/// Each handle has its own connection; a [`Clone`] opens another.
///
/// ```text
/// use multiproc::remote::{Pool, Task};
/// const SQUARE: Task<u64, u64> = Task::new("square");
/// let pool = Pool::open("redis://10.0.0.5:6379/0", "maths")?;
/// assert_eq!(pool.map(SQUARE, 0..4)?, vec![0, 1, 4, 9]);
/// ```
pub struct Pool {
    queue: JoinableQueue<Job>,
    conn: Arc<Conn>,
}

impl Clone for Pool {
    fn clone(&self) -> Pool {
        Pool {
            queue: self.queue.clone(),
            conn: Arc::new(self.conn.fresh()),
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Pool")
            .field("server", &self.conn.shown())
            .field("name", &self.queue.name())
            .finish()
    }
}

impl Pool {
    /// Opens the pool `name` on the server at `url` (its queue is created if needed).
    ///
    /// # Errors
    /// As [`JoinableQueue::open`].
    pub fn open(url: &str, name: &str) -> Result<Pool> {
        Ok(Pool {
            queue: JoinableQueue::open(url, name)?,
            conn: Arc::new(Conn::open(url)?),
        })
    }

    /// Sends one call of `task` per item, as one batch (in chunks of up to 1,000 per
    /// script); the results go to a new stream.
    fn submit<A: Serialize, R>(
        &self,
        task: Task<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Batch> {
        check_task_name(task.name);
        let batch = conn::token();
        let mut jobs = Vec::new();
        for (i, a) in items.into_iter().enumerate() {
            let mut arg = Vec::new();
            Postcard::encode(&a, &mut arg)?;
            jobs.push(Job {
                batch: batch.clone(),
                index: i as u64,
                task: task.name.to_string(),
                arg,
            });
        }
        let n = jobs.len();
        if n > 0 {
            self.queue.put_many(jobs).map_err(|e| match e {
                PutError::Closed(_) => Error::new(
                    ErrorKind::Closed,
                    format!("the remote pool {:?} is closed", self.queue.name()),
                ),
                PutError::Failed(_, e) => e,
            })?;
        }
        Ok(Batch {
            conn: Arc::clone(&self.conn),
            key: self.queue.replies_key(&batch),
            task: task.name,
            state: Mutex::new(Gathered {
                slots: (0..n).map(|_| None).collect(),
                left: n,
                last_id: "0-0".to_string(),
                arrived: VecDeque::new(),
            }),
        })
    }

    /// Runs `task` on every item on the pool's workers and returns the results in item
    /// order (Python's `map`). Waits as long as it takes (no worker: forever; use
    /// [`map_async`](Pool::map_async) and `get_timeout` to bound it).
    ///
    /// # Errors
    /// The first failed call's error, in item order: a panic in the task
    /// ([`ErrorKind::ChildPanicked`] with its message), a task the worker does not know
    /// ([`ErrorKind::NotFound`]), an argument or result that does not (de)serialize
    /// ([`ErrorKind::Codec`]); [`ErrorKind::Closed`] when the pool is closed;
    /// [`ErrorKind::Disconnected`] when the server is lost (the calls may have been sent).
    pub fn map<A: Serialize, R: DeserializeOwned>(
        &self,
        task: Task<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>> {
        self.map_async(task, items)?.get()
    }

    /// [`map`](Pool::map) without waiting: the calls are sent, the results come later.
    ///
    /// # Errors
    /// As [`map`](Pool::map), for sending.
    pub fn map_async<A: Serialize, R: DeserializeOwned>(
        &self,
        task: Task<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>> {
        Ok(AsyncResult {
            batch: self.submit(task, items)?,
            finish: finish_list::<R>,
        })
    }

    /// Runs `task(arg)` on a worker and returns its result (Python's `apply`).
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    pub fn apply<A: Serialize, R: DeserializeOwned>(&self, task: Task<A, R>, arg: A) -> Result<R> {
        self.apply_async(task, arg)?.get()
    }

    /// [`apply`](Pool::apply) without waiting.
    ///
    /// # Errors
    /// As [`map`](Pool::map), for sending.
    pub fn apply_async<A: Serialize, R: DeserializeOwned>(
        &self,
        task: Task<A, R>,
        arg: A,
    ) -> Result<AsyncResult<R>> {
        Ok(AsyncResult {
            batch: self.submit(task, [arg])?,
            finish: finish_one::<R>,
        })
    }

    /// Sends every call now and yields the results in item order as they come (Python's
    /// `imap`; the items are all sent at once).
    ///
    /// # Errors
    /// As [`map`](Pool::map), for sending; each result is a `Result` of its own.
    pub fn imap<A: Serialize, R: DeserializeOwned>(
        &self,
        task: Task<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Imap<R>> {
        Ok(Imap::new(self.submit(task, items)?, false))
    }

    /// Sends every call now and yields the results as they come, in any order (Python's
    /// `imap_unordered`).
    ///
    /// # Errors
    /// As [`map`](Pool::map), for sending; each result is a `Result` of its own.
    pub fn imap_unordered<A: Serialize, R: DeserializeOwned>(
        &self,
        task: Task<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Imap<R>> {
        Ok(Imap::new(self.submit(task, items)?, true))
    }

    /// Closes the pool for everyone: new calls fail with [`ErrorKind::Closed`]; workers run
    /// what is queued, then their [`run`](Worker::run) returns.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn close(&self) -> Result<()> {
        self.queue.close()
    }

    /// The pool's workers alive or recently alive, with their leases and calls in flight
    /// (`worker` says where each runs).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn workers(&self) -> Result<Vec<ConsumerInfo>> {
        Ok(self.info()?.consumers)
    }

    /// A snapshot of the pool's queue: calls waiting, calls not finished, workers.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn info(&self) -> Result<QueueInfo> {
        self.queue.info()
    }

    /// Deletes the pool from the server (its queue, calls in flight and worker records;
    /// replies streams expire by themselves). For when no one uses it any more.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn unlink(&self) -> Result<()> {
        self.queue.unlink()
    }

    /// The pool's name on the server.
    pub fn name(&self) -> &str {
        self.queue.name()
    }
}

/// One call's outcome as it arrived.
type Slot = std::result::Result<Vec<u8>, Failure>;

/// The results of one batch: read from its stream as they come.
struct Batch {
    conn: Arc<Conn>,
    key: String,
    task: &'static str,
    state: Mutex<Gathered>,
}

struct Gathered {
    slots: Vec<Option<Slot>>,
    left: usize,
    /// The last stream entry read.
    last_id: String,
    /// Indexes in the order they arrived (for `imap_unordered`).
    arrived: VecDeque<usize>,
}

impl Batch {
    /// Reads results until all are there (`Ok(true)`) or `deadline` passes (`Ok(false)`).
    fn gather(
        &self,
        g: &mut Gathered,
        deadline: Deadline,
        until: impl Fn(&Gathered) -> bool,
    ) -> Result<bool> {
        loop {
            if until(g) {
                return Ok(true);
            }
            let rem = deadline.remaining();
            let block = conn::slice(rem.unwrap_or(Some(Duration::ZERO)));
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(1000);
            if rem.is_ok() {
                cmd.arg("BLOCK").arg(block.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&self.key).arg(&g.last_id);
            let reply = self.conn.session().wait_hint(&cmd, block)?;
            let n = self.take(g, reply)?;
            if n == 0 && rem.is_err() {
                return Ok(until(g));
            }
        }
    }

    /// Files the entries of an XREAD reply; returns how many there were.
    fn take(&self, g: &mut Gathered, reply: Value) -> Result<usize> {
        const W: &str = "reading a pool's results";
        let streams = match reply {
            Value::Nil => return Ok(0),
            Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
            v => conn::array(W, v)?
                .into_iter()
                .map(|s| match conn::array(W, s)?.into_iter().nth(1) {
                    Some(v) => Ok(v),
                    None => Err(conn::bad_reply(W, &Value::Nil)),
                })
                .collect::<Result<Vec<Value>>>()?,
        };
        let mut n = 0;
        for entries in streams {
            for e in conn::array(W, entries)? {
                let [id, fields] = <[Value; 2]>::try_from(conn::array(W, e)?)
                    .map_err(|p| conn::bad_reply(W, &Value::Array(p)))?;
                let id = String::from_utf8(conn::bytes(W, id)?)
                    .map_err(|_| conn::bad_reply(W, &Value::Nil))?;
                let fields = match fields {
                    Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                    v => conn::array(W, v)?,
                };
                let payload = fields
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| conn::bad_reply(W, &Value::Nil))?;
                let payload = conn::bytes(W, payload)?;
                g.last_id = id;
                n += 1;
                match Postcard::decode::<Reply>(&payload) {
                    Ok(r) => {
                        let i = usize::try_from(r.index).unwrap_or(usize::MAX);
                        match g.slots.get_mut(i) {
                            Some(s @ None) => {
                                *s = Some(r.outcome);
                                g.left -= 1;
                                g.arrived.push_back(i);
                            }
                            Some(Some(_)) => {
                                log::debug!("multiproc::remote: a duplicate result, ignored")
                            }
                            None => log::warn!(
                                "multiproc::remote: a result for no call of this batch, ignored"
                            ),
                        }
                    }
                    Err(e) => log::warn!("multiproc::remote: a malformed result, ignored: {e}"),
                }
            }
        }
        Ok(n)
    }

    fn error(&self, f: &Failure) -> Error {
        f.error(self.task)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Results still to come re-create the stream; it expires by itself then.
        let _ = self.conn.session().query(redis::cmd("DEL").arg(&self.key));
    }
}

fn finish_list<R: DeserializeOwned>(b: &Batch, g: &Gathered) -> Result<Vec<R>> {
    g.slots
        .iter()
        .map(|s| match s.as_ref().expect("complete") {
            Ok(bytes) => Postcard::decode(bytes),
            Err(f) => Err(b.error(f)),
        })
        .collect()
}

fn finish_one<R: DeserializeOwned>(b: &Batch, g: &Gathered) -> Result<R> {
    finish_list::<R>(b, g)?
        .pop()
        .ok_or_else(|| Error::new(ErrorKind::ChildFailed, "the task gave no result"))
}

/// The result of a remote [`Pool::apply_async`] or [`Pool::map_async`], once it is there.
/// [`get`](AsyncResult::get) may be called many times. Dropping it does not stop the calls.
pub struct AsyncResult<T> {
    batch: Batch,
    finish: fn(&Batch, &Gathered) -> Result<T>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::AsyncResult")
            .field("task", &self.batch.task)
            .finish()
    }
}

impl<T> AsyncResult<T> {
    fn get_until(&self, deadline: Deadline) -> std::result::Result<T, GetTimeoutError> {
        let mut g = self.batch.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.batch.gather(&mut g, deadline, |g| g.left == 0)? {
            Ok((self.finish)(&self.batch, &g)?)
        } else {
            Err(GetTimeoutError::Timeout)
        }
    }

    /// Waits for the result (blocking on the server, a second at a time) and returns it.
    ///
    /// # Errors
    /// As [`Pool::map`].
    pub fn get(&self) -> Result<T> {
        self.get_until(Deadline::never()).map_err(Error::from)
    }

    /// The result if it is all there now.
    ///
    /// # Errors
    /// `WouldBlock` when not yet, or `Failed(e)` as [`Pool::map`].
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        match self.get_until(Deadline::passed()) {
            Ok(t) => Ok(t),
            Err(GetTimeoutError::Timeout) => Err(TryGetError::WouldBlock),
            Err(GetTimeoutError::Failed(e)) => Err(TryGetError::Failed(e)),
        }
    }

    /// The result, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout` (the calls go on; ask again later), or `Failed(e)` as [`Pool::map`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.get_until(Deadline::within(timeout))
    }

    /// The result, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get_timeout`](AsyncResult::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetTimeoutError> {
        self.get_until(Deadline::at(deadline))
    }

    /// True when every result is there (looks, does not wait).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server is lost.
    pub fn ready(&self) -> Result<bool> {
        let mut g = self.batch.state.lock().unwrap_or_else(|e| e.into_inner());
        self.batch
            .gather(&mut g, Deadline::passed(), |g| g.left == 0)
    }
}

/// The results of a remote [`Pool::imap`] or [`Pool::imap_unordered`]: an iterator of
/// `Result<R>`, one per item; [`next_timeout`](Imap::next_timeout) and
/// [`try_next`](Imap::try_next) bound the wait.
pub struct Imap<R> {
    batch: Batch,
    unordered: bool,
    /// Results handed out.
    yielded: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Imap")
            .field("task", &self.batch.task)
            .field("unordered", &self.unordered)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<R: DeserializeOwned> Imap<R> {
    fn new(batch: Batch, unordered: bool) -> Imap<R> {
        Imap {
            batch,
            unordered,
            yielded: 0,
            _r: PhantomData,
        }
    }

    fn next_until(
        &mut self,
        deadline: Deadline,
    ) -> Option<std::result::Result<R, GetTimeoutError>> {
        let mut g = self.batch.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.yielded == g.slots.len() {
            return None;
        }
        let (unordered, next) = (self.unordered, self.yielded);
        let ready = move |g: &Gathered| {
            if unordered {
                !g.arrived.is_empty()
            } else {
                g.slots[next].is_some()
            }
        };
        match self.batch.gather(&mut g, deadline, ready) {
            Ok(true) => {}
            Ok(false) => return Some(Err(GetTimeoutError::Timeout)),
            Err(e) => return Some(Err(GetTimeoutError::Failed(e))),
        }
        let i = if unordered {
            g.arrived.pop_front().expect("ready")
        } else {
            next
        };
        self.yielded += 1;
        let slot = g.slots[i].as_ref().expect("arrived");
        Some(match slot {
            Ok(bytes) => Postcard::decode(bytes).map_err(GetTimeoutError::Failed),
            Err(f) => Err(GetTimeoutError::Failed(self.batch.error(f))),
        })
    }

    /// The next result if it is there now: `None` at the end.
    ///
    /// # Errors
    /// `Some(Err(WouldBlock))` when not yet; `Some(Err(Failed(e)))` when that call failed
    /// or the server was lost.
    pub fn try_next(&mut self) -> Option<std::result::Result<R, TryGetError>> {
        Some(match self.next_until(Deadline::passed())? {
            Ok(v) => Ok(v),
            Err(GetTimeoutError::Timeout) => Err(TryGetError::WouldBlock),
            Err(GetTimeoutError::Failed(e)) => Err(TryGetError::Failed(e)),
        })
    }

    /// The next result, waiting at most `timeout`: `None` at the end.
    ///
    /// # Errors
    /// `Some(Err(Timeout))` when it did not come in time; `Some(Err(Failed(e)))` when that
    /// call failed or the server was lost.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<std::result::Result<R, GetTimeoutError>> {
        self.next_until(Deadline::within(timeout))
    }

    /// The next result, waiting until `deadline` at most: `None` at the end.
    ///
    /// # Errors
    /// As [`next_timeout`](Imap::next_timeout).
    pub fn next_deadline(
        &mut self,
        deadline: Instant,
    ) -> Option<std::result::Result<R, GetTimeoutError>> {
        self.next_until(Deadline::at(deadline))
    }
}

impl<R: DeserializeOwned> Iterator for Imap<R> {
    type Item = Result<R>;

    /// The next result, waiting as long as it takes; `None` at the end.
    fn next(&mut self) -> Option<Result<R>> {
        Some(self.next_until(Deadline::never())?.map_err(Error::from))
    }
}
