//! The dispatcher: a thread of the parent that watches the workers, and the state it
//! shares with the pool's handles.
//!
//! A handle that submits a chunk hands it to a worker itself: under the lock of the shared
//! state ([`Core`]) it picks the least loaded worker and writes the chunk to that worker's
//! socket without blocking (from the caller's thread, where the encoded arguments are still
//! in the cache; no hop through another thread). A caller that waits for a job's results
//! (`map`, `AsyncResult::get`) becomes the pool's *driver* while it waits, if no other
//! thread is: it polls the workers' sockets itself, reads the results, and sends the chunks
//! that were waiting for room. The results land in the thread that decodes them, and no
//! other thread has to wake up for each of them.
//!
//! The dispatcher thread polls, in one `poll`: a wake-up socket (close, terminate, a chunk
//! that did not fit the socket at once, work submitted with no driver), each worker's socket
//! when no caller is driving (results in; the rest of a partly written chunk out) and each
//! worker's pidfd, always. It knows which chunks each worker holds, so when a pidfd turns
//! readable (the worker ended: killed, aborted, `exit`) it first reads whatever results the
//! worker sent before dying, then fails — or retries, if asked — exactly the chunks it still
//! held, reaps it, and starts a replacement (and pokes the driver, whose job may be done).
//! Nothing waits on a dead worker, so the pool never hangs (CPython's does: issue 66587).
//!
//! Where things are: the handles' side ([`Link`]) and what a chunk is ([`Submit`]) here; the
//! state the three actors share, and what it does with the workers' messages, in `core.rs`;
//! the driver in `driver.rs`; the dispatcher thread, which also starts the workers, in
//! `thread.rs`.
//!
//! ```text
//!  handles --lock Core, write chunks---------------> worker 0: socket (Task/Quit in, Ready/Results out), pidfd
//!  driver  --lock Core, poll + read results--------> worker 1: ...
//!          --byte--> [wake] --> dispatcher: poll --> pidfds (+ sockets when nobody drives)
//! ```

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::callback::Callbacks;
use super::job::{Job, Outcome, State};
use super::mailbox::SLOTS;
use super::worker::{ClosureRunner, Init};
use crate::error::{Error, ErrorKind, Result};
use crate::process::spawn::{CtxFnRef, RunFnRef};
use crate::process::StartMethod;
use crate::sys::thread::fork_generation;
use crate::sys::{socket, Deadline};

mod core;
mod driver;
mod thread;

use self::core::Core;
pub(crate) use driver::Driver;
pub(crate) use thread::start;

/// Chunks sent ahead to one worker (the second one hides the round trip).
const PIPELINE: usize = 2;
// A worker's mailbox has a slot each way for every chunk it may hold.
const _: () = assert!(SLOTS == PIPELINE);

/// How long the dispatcher waits before it tries again to start a worker that failed to
/// start.
const SPAWN_RETRY: Duration = Duration::from_millis(50);

/// The largest argument buffer kept for reuse once its chunk is done.
const SPARE_MAX_BYTES: usize = 1 << 20;

/// Which code a chunk runs.
#[derive(Clone)]
pub(crate) enum Code {
    Fn(RunFnRef),
    Closure,
    /// A `fn(&C, A) -> R` and its context.
    Context(CtxFnRef, Arc<TaskContext>),
}

/// The context of a `WithContext`: encoded once, sent to each worker with the first chunk
/// that needs it there (see `worker.rs`).
pub(crate) struct TaskContext {
    /// Unique in this process (never 0).
    pub(crate) id: u64,
    pub(crate) bytes: Vec<u8>,
}

/// A chunk of tasks for a job.
pub(crate) struct Submit {
    pub(crate) job: Arc<Job>,
    pub(crate) index: usize,
    pub(crate) code: Code,
    /// `count u32 | arguments` (shared with the send queue, which sends it as it is, and
    /// kept until the results come, for retries).
    pub(crate) payload: Arc<Vec<u8>>,
}

impl Submit {
    fn fail(self, kind: ErrorKind, message: &str) {
        self.job.complete(
            self.index,
            Outcome::Failed {
                kind,
                message: message.to_string(),
            },
        );
    }
}

impl Drop for Submit {
    /// A chunk dropped unfinished (the dispatcher stopped with it still queued) fails rather
    /// than leave its job waiting forever. After a real outcome this does nothing.
    fn drop(&mut self) {
        if !self.job.is_complete(self.index) {
            self.job.complete(
                self.index,
                Outcome::Failed {
                    kind: ErrorKind::Closed,
                    message: "the pool stopped before this task ran".to_string(),
                },
            );
        }
    }
}

/// The handles' side: the shared state, and a way to wake the dispatcher.
pub(crate) struct Link {
    /// The fork generation of the process that made the pool (`crate::fork`): in a process
    /// forked from it, the dispatcher thread does not exist and the workers are the
    /// parent's, so the pool refuses work there.
    generation: u64,
    core: Mutex<Core>,
    wake_pending: AtomicBool,
    wake: OwnedFd,
    /// Set by `close`/`terminate`: no new jobs.
    pub(crate) closed: Mutex<bool>,
    pub(crate) pids: Mutex<Vec<i32>>,
    /// Pokes the driver (its job may be done, or the workers changed).
    poke_pending: AtomicBool,
    poke: OwnedFd,
    poke_rx: OwnedFd,
    /// The thread that runs `AsyncResult` callbacks.
    pub(crate) callbacks: Callbacks,
}

impl Link {
    /// An empty buffer of at least `hint` bytes for a chunk's arguments: a finished chunk's
    /// when there is one (mapped already and likely in the cache), else a new one.
    pub(crate) fn buffer(&self, hint: usize) -> Vec<u8> {
        let spare = self.core().spare.pop();
        match spare {
            Some(mut b) => {
                b.clear();
                b.reserve(hint);
                b
            }
            None => Vec::with_capacity(hint),
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True in a process forked from the one that made the pool (which must not touch its
    /// locks, sockets or threads: they are the parent's, and may have been held at the fork).
    pub(crate) fn foreign(&self) -> bool {
        self.generation != fork_generation()
    }

    /// Makes the dispatcher look at the shared state again.
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = socket::send_msg(self.wake.as_fd(), &[IoSlice::new(&[1])], &[], true);
        }
    }

    /// Makes the driver (if any) look at its job and the workers again.
    fn poke(&self) {
        if !self.poke_pending.swap(true, Ordering::SeqCst) {
            let _ = socket::send_msg(self.poke.as_fd(), &[IoSlice::new(&[1])], &[], true);
        }
    }

    /// Becomes the pool's driver, unless another thread is (or the pool stopped).
    pub(crate) fn try_drive(&self) -> Option<Driver<'_>> {
        if self.foreign() {
            return None;
        }
        let mut core = self.core();
        if core.stopped || core.driver {
            return None;
        }
        core.driver = true;
        Some(Driver { link: self })
    }

    /// Waits until `ready(job state)` or `deadline` passes, as the driver when nobody else
    /// is, else for whoever reads the results.
    pub(crate) fn wait_for<'j>(
        &self,
        job: &'j Job,
        deadline: Deadline,
        ready: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'j, State>, bool) {
        match self.try_drive() {
            Some(d) => d.wait_for(job, deadline, ready),
            None => job.wait_for(deadline, ready),
        }
    }

    /// Queues a chunk and writes it to a worker with room, from the caller's thread.
    pub(crate) fn submit(&self, s: Submit) {
        let mut core = self.core();
        if core.stopped {
            drop(core);
            return s.fail(ErrorKind::Closed, "the pool was closed or terminated");
        }
        if let Some(why) = &core.broken {
            let why = why.clone();
            drop(core);
            return s.fail(ErrorKind::ChildFailed, &why);
        }
        core.pending.push_back((s, 0));
        core.assign();
        // The dispatcher polls for room when a chunk did not fit, and reads the results
        // when no driver does.
        let wake = core.stuck() || core.unread();
        drop(core);
        if wake {
            self.wake();
        }
    }

    /// Starts a job: fails once the pool is closed.
    pub(crate) fn begin(&self) -> Result<()> {
        if self.foreign() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "this Pool was made by the process this one was forked from: its workers \
                 and dispatcher are that process's; make a new Pool in this process",
            ));
        }
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return Err(Error::new(
                ErrorKind::Closed,
                "the pool is closed: no new tasks (Python's 'Pool not running')",
            ));
        }
        self.core().open_jobs += 1;
        Ok(())
    }

    /// A job will submit no more chunks.
    pub(crate) fn end_job(&self) {
        let mut core = self.core();
        core.open_jobs = core.open_jobs.saturating_sub(1);
        let closing = core.closing;
        drop(core);
        if closing {
            self.wake();
        }
    }

    /// No new jobs; the dispatcher stops once the submitted work is done.
    pub(crate) fn close(&self) {
        self.core().closing = true;
        self.wake();
    }

    /// Stop now.
    pub(crate) fn terminate(&self) {
        self.core().terminating = true;
        self.wake();
    }
}

/// Reads and drops every byte waiting on a wake-up socket.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while matches!(
        socket::recv_msg(fd.as_fd(), &mut buf, &mut Vec::new(), true, false),
        Ok(r) if r.len > 0
    ) {}
}

/// How to start workers.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) init: Option<Init>,
    pub(crate) closure: Option<ClosureRunner>,
    pub(crate) maxtasks: Option<usize>,
    pub(crate) retries: u32,
}
