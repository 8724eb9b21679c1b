//! What a task call hands back: [`AsyncResult`] (one result, or a list, later) and
//! [`Imap`] (a lazy iterator over results).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::callback::Thunk;
use super::calls::{submit_chunk, Payload};
use super::dispatch::{Code, Driver, Link};
use super::error::{GetTimeoutError, TryGetError};
use super::job::{self, Job, Outcome, Slot};
use super::{outcomes, Shared};
use crate::error::{Error, ErrorKind, Result, Timeout};
use crate::sys::Deadline;

/// A deadline at `t` (the crate's deadlines are made from timeouts; `t` in the past is a
/// deadline that has passed).
fn deadline_at(t: Instant) -> Deadline {
    Deadline::after(Some(t.saturating_duration_since(Instant::now())))
}

/// A deadline that has passed already: look, don't wait.
fn now() -> Deadline {
    Deadline::after(Some(Duration::ZERO))
}

/// The error for a result or iterator used in a process forked from the one that made the
/// pool: its outcomes come to that process only, and this one must not touch the pool's
/// locks (they may have been held at the fork).
fn not_ours() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "this result belongs to a Pool made by the process this one was forked from: \
         its outcomes go to that process",
    )
}

/// Decodes one chunk's outcomes, appending one `Result` per task.
fn decode_slot<R: DeserializeOwned>(count: usize, outcome: &Outcome, out: &mut Vec<Result<R>>) {
    match outcome {
        Outcome::Ran { bytes, start, pid } => {
            outcomes::decode_outcomes(&bytes[*start..], count, *pid, out)
        }
        Outcome::Failed { kind, message } => {
            out.extend((0..count).map(|_| Err(Outcome::error(*kind, message))))
        }
    }
}

pub(crate) fn finish_list<R: DeserializeOwned>(slots: &[Slot]) -> Result<Vec<R>> {
    let mut all = Vec::with_capacity(slots.iter().map(|s| s.count).sum());
    for s in slots {
        match s.outcome.as_ref().expect("complete") {
            Outcome::Ran { bytes, start, pid } => {
                let before = all.len();
                outcomes::decode_values(&bytes[*start..], s.count, *pid, &mut all)?;
                debug_assert_eq!(all.len() - before, s.count);
            }
            Outcome::Failed { kind, message } => return Err(Outcome::error(*kind, message)),
        }
    }
    Ok(all)
}

pub(crate) fn finish_one<R: DeserializeOwned>(slots: &[Slot]) -> Result<R> {
    let mut all = finish_list::<R>(slots)?;
    all.pop()
        .ok_or_else(|| Error::new(ErrorKind::ChildFailed, "the task gave no result"))
}

/// The result of an `apply_async`, `map_async` or `starmap_async`, once it is there
/// (Python's `AsyncResult`).
///
/// [`get`](AsyncResult::get) waits for it and may be called many times;
/// [`try_get`](AsyncResult::try_get) never waits; [`get_timeout`](AsyncResult::get_timeout)
/// and [`get_deadline`](AsyncResult::get_deadline) wait so long. Dropping it does not stop
/// the tasks. [`callback`](AsyncResult::callback) and
/// [`error_callback`](AsyncResult::error_callback) have something run when it comes.
///
/// It does not keep the pool alive: when the pool's last handle is dropped (or it is
/// terminated), unfinished tasks fail with [`ErrorKind::Closed`].
///
/// In a process forked from the one that made the pool, the result never comes (it goes to
/// the parent): the `get` calls fail with [`ErrorKind::InvalidState`], the waits return at
/// once ([`wait_timeout`](AsyncResult::wait_timeout) with `Timeout`), callbacks are not run.
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
    pub(crate) fn new(
        link: Arc<Link>,
        job: Arc<Job>,
        finish: fn(&[Slot]) -> Result<T>,
    ) -> AsyncResult<T> {
        AsyncResult { link, job, finish }
    }

    fn all_done(st: &job::State) -> bool {
        st.done == st.slots.len()
    }

    /// Waits until `deadline` for the result; `None` when it did not come.
    fn get_until(&self, deadline: Deadline) -> Option<Result<T>> {
        if self.link.foreign() {
            return Some(Err(not_ours()));
        }
        let (st, ok) = self.link.wait_for(&self.job, deadline, Self::all_done);
        ok.then(|| (self.finish)(&st.slots))
    }

    /// Waits for the result and returns it.
    ///
    /// ```
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 7)?;
    /// assert_eq!(r.get()?, 49);
    /// assert_eq!(r.get()?, 49); // again
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// The (first, in item order) failed task's error, as for [`Pool::map`](super::Pool::map).
    pub fn get(&self) -> Result<T> {
        self.get_until(Deadline::never())
            .expect("no deadline, so it came")
    }

    /// The result if it is there, without waiting.
    ///
    /// # Errors
    /// [`TryGetError::WouldBlock`] when it is not there yet; [`TryGetError::Failed`] with the
    /// task's error as [`get`](AsyncResult::get) gives it.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        match self.get_until(now()) {
            Some(r) => r.map_err(TryGetError::Failed),
            None => Err(TryGetError::WouldBlock),
        }
    }

    /// Waits at most `timeout` for the result (Python's `get(timeout)`); any `Duration`,
    /// up to `Duration::MAX`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Pool;
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(slow, 500)?;
    /// assert!(r.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// assert_eq!(r.get_timeout(Duration::from_secs(60))?, 500);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] when it did not come in time (the tasks go on; ask
    /// again later); [`GetTimeoutError::Failed`] with the task's error as
    /// [`get`](AsyncResult::get) gives it.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_by(Deadline::after(Some(timeout)))
    }

    /// Waits until `deadline` for the result.
    ///
    /// # Errors
    /// As [`get_timeout`](AsyncResult::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.get_by(deadline_at(deadline))
    }

    fn get_by(&self, deadline: Deadline) -> Result<T, GetTimeoutError> {
        match self.get_until(deadline) {
            Some(r) => r.map_err(GetTimeoutError::Failed),
            None => Err(GetTimeoutError::Timeout),
        }
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        if self.link.foreign() {
            return; // (it never comes here: see above)
        }
        let _ = self
            .link
            .wait_for(&self.job, Deadline::never(), Self::all_done);
    }

    /// Waits at most `timeout` until the result is there (Python's `wait(timeout)`; any
    /// `Duration`, up to `Duration::MAX`).
    ///
    /// # Errors
    /// [`Timeout`] when it did not come in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.wait_by(Deadline::after(Some(timeout)))
    }

    /// Waits until `deadline` at most until the result is there.
    ///
    /// # Errors
    /// [`Timeout`] when it did not come in time.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Timeout> {
        self.wait_by(deadline_at(deadline))
    }

    fn wait_by(&self, deadline: Deadline) -> Result<(), Timeout> {
        if self.link.foreign() {
            return Err(Timeout);
        }
        match self.link.wait_for(&self.job, deadline, Self::all_done).1 {
            true => Ok(()),
            false => Err(Timeout),
        }
    }

    /// True once every task has finished, well or not (the non-blocking
    /// [`wait`](AsyncResult::wait)).
    #[doc(alias = "try_wait")]
    pub fn ready(&self) -> bool {
        !self.link.foreign() && Self::all_done(&self.job.lock())
    }

    /// Whether every task succeeded.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the result is not ready yet (Python raises
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        if self.link.foreign() {
            return Err(not_ours());
        }
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

impl<T: 'static> AsyncResult<T> {
    /// Has `f` called with the result once it is there, if every task succeeded (Python's
    /// `callback=`).
    ///
    /// `f` runs in this process, on the pool's callback thread (as Python runs callbacks on
    /// its pool's result-handler thread): once, after the last task's outcome came in (at
    /// once if it is there already), one callback at a time in the order the results
    /// complete — a slow callback delays the callbacks after it, not the pool. `f` gets its
    /// own copy of the result (decoded for it); [`get`](AsyncResult::get) still works.
    /// [`Pool::join`](super::Pool::join) and [`Pool::terminate`](super::Pool::terminate)
    /// return after every callback has run; a callback set after that runs at once, in the
    /// calling thread. A callback that panics is reported like any panic of this process,
    /// and the next one runs.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// let (ok, err) = (tx.clone(), tx);
    /// let r = pool
    ///     .map_async(square, 0..4)?
    ///     .callback(move |v| ok.send(Ok(v)).unwrap())
    ///     .error_callback(move |e| err.send(Err(e.to_string())).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Ok(vec![0, 1, 4, 9]));
    /// assert_eq!(r.get()?, vec![0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[must_use = "the AsyncResult is how you get the result; `let _ =` drops it (the callback still runs)"]
    pub fn callback(self, f: impl FnOnce(T) + Send + 'static) -> Self {
        let (job, finish) = (self.job.clone(), self.finish);
        let t: Thunk = Box::new(move || {
            let r = finish(&job.lock().slots);
            if let Ok(v) = r {
                f(v)
            }
        });
        self.when_done(t);
        self
    }

    /// Has `f` called with the error once the result is there, if a task failed: the
    /// error [`get`](AsyncResult::get) gives (Python's `error_callback=`). Where and when it
    /// runs: as for [`callback`](AsyncResult::callback).
    #[must_use = "the AsyncResult is how you get the result; `let _ =` drops it (the callback still runs)"]
    pub fn error_callback(self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        let (job, finish) = (self.job.clone(), self.finish);
        let t: Thunk = Box::new(move || {
            let r = finish(&job.lock().slots);
            if let Err(e) = r {
                f(e)
            }
        });
        self.when_done(t);
        self
    }
}

impl<T> AsyncResult<T> {
    fn when_done(&self, t: Thunk) {
        // (In a forked child the result never comes: nothing to run, no lock to touch.)
        if !self.link.foreign() {
            self.job.when_done(t, self.link.callbacks.runner());
        }
    }
}

impl<R: DeserializeOwned> AsyncResult<Vec<R>> {
    /// [`get`](AsyncResult::get) for a caller that asks once (`map`): decodes each chunk's
    /// results into the list as soon as they are there, while later chunks still run, and
    /// frees their bytes. The first failed task's error is returned once every task is done.
    ///
    /// `driver`: the caller's hold on the pool's driving, taken before it submitted (so
    /// that nobody else was woken to read the results); without one it tries to take it.
    pub(crate) fn take_list(self, driver: Option<Driver<'_>>) -> Result<Vec<R>> {
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
                        outcomes::decode_values(&bytes[*start..], count, *pid, &mut all)
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

/// A lazy iterator over task results: [`Pool::imap`](super::Pool::imap) (in order) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) (as they come). Each item is that
/// task's `Result`.
///
/// It keeps its pool alive: dropping the pool's last handle while an `Imap` is still in use
/// terminates the pool only once the `Imap` is dropped, so it yields every result (Python's
/// iterator gets no more results once the `with Pool()` block that made it has ended).
/// [`Pool::terminate`] still stops it: the tasks not done then fail with
/// [`ErrorKind::Closed`].
///
/// [`next`](Iterator::next) waits for the next result; [`try_next`](Imap::try_next) never
/// waits; [`next_timeout`](Imap::next_timeout) and [`next_deadline`](Imap::next_deadline)
/// wait so long. Dropping it early stops feeding new input; tasks already sent still run.
///
/// [`Pool::terminate`]: super::Pool::terminate
pub struct Imap<'a, R> {
    /// Keeps the pool alive (see above).
    pool: Arc<Shared>,
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
    /// A started job (`Link::begin` done) whose chunks `feed` encodes, one per call.
    pub(crate) fn start(
        pool: Arc<Shared>,
        code: Code,
        feed: Box<dyn FnMut() -> Option<Payload> + 'a>,
        unordered: bool,
    ) -> Imap<'a, R> {
        let ahead = 2 * pool.processes + 2;
        let mut me = Imap {
            pool,
            job: Arc::new(Job::default()),
            code,
            feed: Some(feed),
            ahead,
            unordered,
            submitted: 0,
            consumed: 0,
            buffer: VecDeque::new(),
        };
        me.fill();
        me
    }

    /// Submits chunks until `ahead` are outstanding or the input ends.
    fn fill(&mut self) {
        while self.submitted - self.consumed < self.ahead {
            let Some(feed) = self.feed.as_mut() else {
                return;
            };
            match feed() {
                Some(p) => {
                    submit_chunk(&self.pool.link, &self.job, self.code.clone(), p);
                    self.submitted += 1;
                }
                None => {
                    self.feed = None;
                    self.pool.link.end_job();
                }
            }
        }
    }

    /// The next result if it is there, without waiting: `None` at the end.
    ///
    /// # Errors
    /// `Some(Err(`[`TryGetError::WouldBlock`]`))` when it is not there yet (ask again later);
    /// `Some(Err(`[`TryGetError::Failed`]`))` when that task failed (the next ones follow).
    pub fn try_next(&mut self) -> Option<Result<R, TryGetError>> {
        Some(match self.next_until(now())? {
            Ok(v) => Ok(v),
            Err(GetTimeoutError::Timeout) => Err(TryGetError::WouldBlock),
            Err(GetTimeoutError::Failed(e)) => Err(TryGetError::Failed(e)),
        })
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`; any
    /// `Duration`, up to `Duration::MAX`): `None` at the end.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut it = pool.imap(square, 0..3)?;
    /// let mut got = Vec::new();
    /// while let Some(r) = it.next_timeout(Duration::from_secs(60)) {
    ///     got.push(r?);
    /// }
    /// assert_eq!(got, vec![0, 1, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Some(Err(`[`GetTimeoutError::Timeout`]`))` when it did not come in time (ask again
    /// later); `Some(Err(`[`GetTimeoutError::Failed`]`))` when that task failed (the next
    /// ones follow).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, GetTimeoutError>> {
        self.next_until(Deadline::after(Some(timeout)))
    }

    /// The next result, waiting until `deadline` at most: `None` at the end.
    ///
    /// # Errors
    /// As [`next_timeout`](Imap::next_timeout).
    pub fn next_deadline(&mut self, deadline: Instant) -> Option<Result<R, GetTimeoutError>> {
        self.next_until(deadline_at(deadline))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R, GetTimeoutError>> {
        if self.pool.link.foreign() {
            // Made before a fork: its results go to the parent. Said once, then the end.
            return (self.consumed < self.submitted || self.feed.is_some()).then(|| {
                self.feed = None;
                self.consumed = self.submitted;
                self.buffer.clear();
                Err(GetTimeoutError::Failed(not_ours()))
            });
        }
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(r.map_err(GetTimeoutError::Failed));
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
                return Some(Err(GetTimeoutError::Timeout));
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
        Some(match self.next_until(Deadline::never())? {
            Ok(v) => Ok(v),
            Err(GetTimeoutError::Failed(e)) => Err(e),
            Err(GetTimeoutError::Timeout) => unreachable!("no deadline"),
        })
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if self.feed.take().is_some() && !self.pool.link.foreign() {
            self.pool.link.end_job();
        }
    }
}
