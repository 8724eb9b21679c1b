//! The pool's callback thread: where [`AsyncResult::callback`](super::AsyncResult::callback)
//! and [`error_callback`](super::AsyncResult::error_callback) run (Python runs them in its
//! pool's result-handler thread).
//!
//! One thread per pool, started with it. A job's callbacks wait in the job (`Job::when_done`)
//! until its last chunk completes; whoever completes it (the dispatcher, or a caller driving
//! the pool) hands them to this thread through a channel and goes on: a callback never runs
//! under the pool's locks, nor in a thread that reads results. The thread runs them one at a
//! time, in the order their jobs completed; a panicking callback is reported (by the panic
//! hook, as any panic of the parent) and the next one runs.
//!
//! `join` and `terminate` stop the thread once the dispatcher has stopped (every job has its
//! outcome, so every callback has been handed over): the pool's sender is dropped, the
//! thread runs what is queued and ends, and they wait for it. A callback set after that runs
//! at once in the thread that sets it.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::{JoinHandle, ThreadId};

use crate::error::{Context, Result};
use crate::sys::Deadline;

/// A callback with what it needs, ready to run.
pub(crate) type Thunk = Box<dyn FnOnce() + Send>;

/// Hands thunks to the callback thread.
#[derive(Clone)]
pub(crate) struct Runner(mpsc::Sender<Thunk>);

impl Runner {
    /// Queues `t` for the callback thread.
    pub(crate) fn run(&self, t: Thunk) {
        // The thread lives while a sender does (it catches the callbacks' panics), so the
        // send cannot fail; if it did, the callback is dropped rather than run here, where
        // the caller may hold the pool's locks.
        let _ = self.0.send(t);
    }
}

/// The pool's side of its callback thread.
pub(crate) struct Callbacks {
    runner: Mutex<Option<Runner>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    id: ThreadId,
}

impl Callbacks {
    /// Starts the thread.
    pub(crate) fn start() -> Result<Callbacks> {
        let (tx, rx) = mpsc::channel::<Thunk>();
        let thread = std::thread::Builder::new()
            .name("multiproc-pool-callbacks".into())
            .spawn(move || {
                for t in rx {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(t));
                }
            })
            .context("cannot start the pool's callback thread")?;
        Ok(Callbacks {
            runner: Mutex::new(Some(Runner(tx))),
            id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A handle to queue callbacks; `None` once the thread was stopped.
    pub(crate) fn runner(&self) -> Option<Runner> {
        self.runner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lets the thread end once it has run what is queued, and waits for it until `deadline`
    /// at most (unless this is that thread: a callback that terminates the pool, or drops
    /// its last handle). False when it was still running callbacks then (a later call waits
    /// for it again).
    pub(crate) fn stop_by(&self, deadline: Deadline) -> bool {
        drop(self.runner.lock().unwrap_or_else(|e| e.into_inner()).take());
        if std::thread::current().id() == self.id {
            return true;
        }
        join_thread_by(&self.thread, deadline)
    }
}

/// Joins the thread in `slot` (if any) once it has finished, waiting until `deadline` at most
/// (std's `JoinHandle` has no timed join: looks at `is_finished` every millisecond or so).
/// False when it is still running at the deadline; it stays in `slot` for a later call.
pub(crate) fn join_thread_by(
    slot: &std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    deadline: Deadline,
) -> bool {
    loop {
        let mut t = slot.lock().unwrap_or_else(|e| e.into_inner());
        let done = t.as_ref().is_none_or(|h| h.is_finished());
        if done || deadline.is_never() {
            if let Some(h) = t.take() {
                drop(t);
                let _ = h.join();
            }
            return true;
        }
        drop(t);
        match deadline.remaining() {
            Ok(Some(left)) if !left.is_zero() => {
                std::thread::sleep(left.min(std::time::Duration::from_millis(1)))
            }
            _ => return false,
        }
    }
}
