//! One submitted job (a map, an apply, an imap): its chunks' outcomes as the dispatcher
//! delivers them, and the waiting for them.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::callback::{Runner, Thunk};
use crate::error::{Error, ErrorKind};
use crate::sys::Deadline;

/// What became of one chunk.
pub(crate) enum Outcome {
    /// The worker `pid` ran it: `bytes[start..]` are its encoded outcomes (see `protocol.rs`).
    Ran {
        bytes: Vec<u8>,
        start: usize,
        pid: i32,
    },
    /// It could not run (its worker died, the pool was terminated...): every task of the
    /// chunk gets this error.
    Failed { kind: ErrorKind, message: String },
}

impl Outcome {
    pub(crate) fn error(kind: ErrorKind, message: &str) -> Error {
        Error::new(kind, message.to_string())
    }
}

pub(crate) struct Slot {
    /// Tasks in the chunk.
    pub(crate) count: usize,
    pub(crate) outcome: Option<Outcome>,
    /// The outcome was handed to a consumer (an iterator) and removed.
    pub(crate) taken: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) slots: Vec<Slot>,
    /// Chunk indices in the order they completed (for unordered consumers).
    pub(crate) completed: VecDeque<usize>,
    pub(crate) done: usize,
    /// Callbacks waiting for the last chunk (see `callback.rs`).
    on_done: Vec<(Thunk, Runner)>,
}

/// Shared between the caller's handle and the dispatcher.
#[derive(Default)]
pub(crate) struct Job {
    state: Mutex<State>,
    cv: Condvar,
}

impl Job {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a chunk of `count` tasks; returns its index.
    pub(crate) fn add_chunk(&self, count: usize) -> usize {
        let mut st = self.lock();
        st.slots.push(Slot {
            count,
            outcome: None,
            taken: false,
        });
        st.slots.len() - 1
    }

    /// Whether chunk `index` has its outcome.
    pub(crate) fn is_complete(&self, index: usize) -> bool {
        self.lock()
            .slots
            .get(index)
            .is_none_or(|s| s.outcome.is_some() || s.taken)
    }

    /// Records the outcome of chunk `index` (the first one wins) and wakes waiters; hands
    /// the callbacks to their thread when it was the last chunk.
    pub(crate) fn complete(&self, index: usize, outcome: Outcome) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.get_mut(index) {
            if slot.outcome.is_none() && !slot.taken {
                slot.outcome = Some(outcome);
                st.done += 1;
                st.completed.push_back(index);
            }
        }
        let ready = if st.done == st.slots.len() {
            std::mem::take(&mut st.on_done)
        } else {
            Vec::new()
        };
        drop(st);
        self.cv.notify_all();
        for (t, runner) in ready {
            runner.run(t);
        }
    }

    /// Runs `t` on the callback thread once every chunk has its outcome (at once if they
    /// do), or here and now when there is no callback thread any more (`runner` is `None`:
    /// the pool has stopped, so every job has its outcomes). Only for a job whose chunks
    /// were all added.
    pub(crate) fn when_done(&self, t: Thunk, runner: Option<Runner>) {
        let mut st = self.lock();
        let done = st.done == st.slots.len();
        match runner {
            Some(r) if !done => st.on_done.push((t, r)),
            Some(r) => {
                drop(st);
                r.run(t);
            }
            None if done => {
                drop(st);
                t();
            }
            // (Cannot happen, see above: dropped rather than run on missing outcomes.)
            None => {}
        }
    }

    /// Waits until `ready(state)` or `deadline` passes; returns the guard and whether ready.
    pub(crate) fn wait_for(
        &self,
        deadline: Deadline,
        mut ready: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'_, State>, bool) {
        let mut st = self.lock();
        loop {
            if ready(&st) {
                return (st, true);
            }
            match deadline.remaining() {
                Ok(None) => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Ok(Some(left)) => {
                    st = self
                        .cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                Err(()) => return (st, false),
            }
        }
    }
}
