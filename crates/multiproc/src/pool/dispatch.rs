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
//! ```text
//!  handles --lock Core, write chunks---------------> worker 0: socket (Task/Quit in, Ready/Results out), pidfd
//!  driver  --lock Core, poll + read results--------> worker 1: ...
//!          --byte--> [wake] --> dispatcher: poll --> pidfds (+ sockets when nobody drives)
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::callback::Callbacks;
use super::job::{Job, Outcome, State};
use super::mailbox::{Mailbox, SLOTS};
use super::protocol::{CodeKind, ContextPart, Kind, Place, ResultsHead, Task, RESULTS_INLINE_HEAD};
use super::worker::{self, ClosureRunner, Init, SpawnArgs};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::process::channel::{self, FrameReader};
use crate::process::spawn::{CtxFnRef, RunFnRef};
use crate::process::{Process, StartMethod};
use crate::sys::thread::fork_generation;
use crate::sys::{socket, Deadline};

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

/// A frame to send: its header bytes, then (for a task) the chunk's arguments.
struct Out {
    head: Vec<u8>,
    body: Option<Arc<Vec<u8>>>,
    /// Bytes sent already.
    pos: usize,
}

impl Out {
    fn quit() -> Out {
        let mut head = Vec::new();
        channel::push_header(&mut head, Kind::Quit as u8, 0);
        Out {
            head,
            body: None,
            pos: 0,
        }
    }
}

struct InFlight {
    sub: Submit,
    seq: u64,
    attempts: u32,
    /// Its slot in the worker's mailbox (where its outcomes come back when they fit).
    slot: usize,
}

/// The sending side of one worker: what it was given and what is still to be written to
/// its socket. Lives in [`Core`], at the same index as the worker in the dispatcher.
struct Feed {
    pid: i32,
    sock: Arc<OwnedFd>,
    /// Results read so far (whoever reads holds the [`Core`] lock).
    reader: FrameReader,
    /// Why it is going away, when it said so (a Failed frame, a malformed message).
    note: Option<String>,
    /// It misbehaved: the dispatcher kills it.
    kill: bool,
    /// The seq of the chunk it began last, and the slots for chunks' bytes.
    mailbox: Mailbox,
    /// Frames not sent yet (the first one maybe in part).
    out: VecDeque<Out>,
    inflight: VecDeque<InFlight>,
    /// Chunks given to it (for maxtasksperchild).
    assigned: usize,
    /// The id of the context it holds (0: none), once it has run the chunks sent so far.
    context: u64,
    quitting: bool,
    ended: bool,
}

impl Feed {
    /// Writes queued frames without blocking, as far as the socket takes them.
    fn flush(&mut self) {
        while let Some(o) = self.out.front_mut() {
            let body: &[u8] = o.body.as_ref().map_or(&[], |b| &b[..]);
            let (h, b) = if o.pos < o.head.len() {
                (&o.head[o.pos..], body)
            } else {
                (&[][..], &body[o.pos - o.head.len()..])
            };
            match socket::send_msg(
                self.sock.as_fd(),
                &[IoSlice::new(h), IoSlice::new(b)],
                &[],
                true,
            ) {
                Ok(n) => {
                    o.pos += n;
                    if o.pos >= o.head.len() + body.len() {
                        self.out.pop_front();
                    }
                }
                Err(_) => break, // WouldBlock: poll says when; EPIPE: the pidfd will say.
            }
        }
    }
}

/// The state shared by the pool's handles and the dispatcher (under [`Link::core`]).
/// Workers are added and removed by the dispatcher only.
pub(crate) struct Core {
    maxtasks: Option<usize>,
    retries: u32,
    workers: Vec<Feed>,
    pending: VecDeque<(Submit, u32)>,
    closing: bool,
    terminating: bool,
    /// The dispatcher has stopped: nothing more runs.
    stopped: bool,
    open_jobs: usize,
    broken: Option<String>,
    seq: u64,
    /// A caller is reading the workers' sockets (see the module docs).
    driver: bool,
    /// The dispatcher's current poll includes the workers' sockets.
    dispatcher_reads: bool,
    /// Argument buffers of finished chunks, for the next chunks (at most `spare_max`).
    spare: Vec<Vec<u8>>,
    spare_max: usize,
}

impl Core {
    /// Keeps a finished chunk's argument buffer for [`Link::buffer`].
    fn recycle(&mut self, payload: Arc<Vec<u8>>) {
        if let Ok(v) = Arc::try_unwrap(payload) {
            if v.capacity() <= SPARE_MAX_BYTES && self.spare.len() < self.spare_max {
                self.spare.push(v);
            }
        }
    }

    /// Whether nobody would read results that come now: the dispatcher must be woken.
    fn unread(&self) -> bool {
        !self.driver && !self.dispatcher_reads
    }

    /// Reads what worker `i` sent and handles every whole frame. True when something
    /// completed (a chunk's results, a failure).
    fn read(&mut self, i: usize) -> bool {
        let mut progress = false;
        loop {
            let w = &mut self.workers[i];
            let more = w.reader.pump(&*w.sock, true);
            let mut any = false;
            while self.workers[i].reader.complete() {
                any = true;
                progress = true;
                match self.workers[i].reader.take_raw() {
                    Ok((kind, raw)) => self.frame(i, kind, raw),
                    Err(e) => {
                        self.bad_worker(i, format!("it sent a malformed message ({e})"));
                        return true;
                    }
                }
            }
            if !more || !any {
                return progress;
            }
        }
    }

    fn bad_worker(&mut self, i: usize, why: String) {
        let w = &mut self.workers[i];
        if w.note.is_none() {
            w.note = Some(why);
        }
        w.kill = true;
    }

    /// Handles one frame from worker `i`: `raw` is the whole frame, header included.
    fn frame(&mut self, i: usize, kind: u8, raw: Vec<u8>) {
        let pid = self.workers[i].pid;
        let body = &raw[channel::HEADER..];
        let kind = match Kind::decode(kind) {
            Ok(k) => k,
            Err(e) => return self.bad_worker(i, format!("it sent {e}")),
        };
        match kind {
            Kind::Ready => {}
            Kind::Results => {
                let head = match ResultsHead::decode(body) {
                    Ok(h) => h,
                    Err(e) => return self.bad_worker(i, format!("it sent a bad result: {e}")),
                };
                let w = &mut self.workers[i];
                match w.inflight.front() {
                    Some(f)
                        if f.seq == head.seq
                            && f.sub.job.lock().slots[f.sub.index].count == head.count as usize => {
                    }
                    _ => {
                        return self
                            .bad_worker(i, "it sent a result for a task it did not hold".into())
                    }
                }
                let outcome = match head.outcomes {
                    Place::Inline(_) => Outcome::Ran {
                        bytes: raw,
                        start: channel::HEADER + RESULTS_INLINE_HEAD,
                        pid,
                    },
                    Place::InSlot(len) => {
                        // Copied out now: the slot is written again for the chunk after next.
                        let slot = w.inflight.front().expect("checked above").slot;
                        let mut bytes = Vec::new();
                        let ok = usize::try_from(len)
                            .is_ok_and(|len| w.mailbox.take_outcomes(slot, len, &mut bytes));
                        if !ok {
                            return self.bad_worker(i, "it sent a malformed result".into());
                        }
                        Outcome::Ran {
                            bytes,
                            start: 0,
                            pid,
                        }
                    }
                };
                let w = &mut self.workers[i];
                let mut f = w.inflight.pop_front().expect("checked above");
                self.maybe_quit(i);
                f.sub.job.complete(f.sub.index, outcome);
                let payload = std::mem::take(&mut f.sub.payload);
                drop(f);
                self.recycle(payload);
            }
            Kind::InitFailed => {
                let msg = format!(
                    "the pool's initializer panicked in worker {pid}: {}",
                    String::from_utf8_lossy(body)
                );
                self.workers[i].note = Some(msg.clone());
                self.break_pool(msg);
            }
            Kind::Failed => {
                let msg = String::from_utf8_lossy(body).into_owned();
                self.workers[i].note = Some(msg);
            }
            Kind::Task | Kind::Quit => self.bad_worker(i, "it sent an unexpected message".into()),
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    /// Whether a worker has bytes the socket did not take yet (the dispatcher must poll
    /// for room).
    fn stuck(&self) -> bool {
        self.workers.iter().any(|w| !w.out.is_empty())
    }

    /// Hands pending chunks to workers with room, least loaded first, and writes them.
    fn assign(&mut self) {
        for level in 0..PIPELINE {
            for i in 0..self.workers.len() {
                if self.pending.is_empty() {
                    return;
                }
                let max = self.maxtasks;
                let w = &self.workers[i];
                if w.ended
                    || w.quitting
                    || w.inflight.len() != level
                    || max.is_some_and(|m| w.assigned >= m)
                {
                    continue;
                }
                let (sub, attempts) = self.pending.pop_front().expect("not empty");
                self.seq += 1;
                let seq = self.seq;
                let w = &mut self.workers[i];
                let (code, (trampoline, target)) = match &sub.code {
                    Code::Fn(f) => (CodeKind::Fn, f.to_parts()),
                    Code::Closure => (CodeKind::Closure, (0, 0)),
                    Code::Context(f, _) => (CodeKind::Context, f.to_parts()),
                };
                // The context part (see `worker.rs`): its bytes when this worker does not
                // hold it yet.
                let context = match &sub.code {
                    Code::Context(_, c) if w.context == c.id => {
                        Some(ContextPart::Held { id: c.id })
                    }
                    Code::Context(_, c) => {
                        w.context = c.id;
                        Some(ContextPart::New {
                            id: c.id,
                            bytes: &c.bytes,
                        })
                    }
                    _ => None,
                };
                // Chunk n given to this worker uses slot n % SLOTS; the chunk that used it
                // before is done (fewer than PIPELINE are in flight).
                let slot = w.assigned % SLOTS;
                let in_slot = w.mailbox.put_args(slot, &sub.payload);
                let mut head = Vec::new();
                Task {
                    seq,
                    code,
                    trampoline,
                    target,
                    slot: slot as u8,
                    context,
                    args: if in_slot {
                        Place::InSlot(sub.payload.len() as u64)
                    } else {
                        Place::Inline(&sub.payload)
                    },
                }
                .encode_head(&mut head);
                // Too large for the slot: the arguments go as they are, with the header in
                // one write (no copy into a send buffer).
                w.out.push_back(Out {
                    head,
                    body: (!in_slot).then(|| sub.payload.clone()),
                    pos: 0,
                });
                w.assigned += 1;
                w.inflight.push_back(InFlight {
                    sub,
                    seq,
                    attempts,
                    slot,
                });
                w.flush();
            }
        }
    }

    /// Sends Quit to worker `i` once it has done its `maxtasksperchild` chunks.
    fn maybe_quit(&mut self, i: usize) {
        let max = self.maxtasks;
        let w = &mut self.workers[i];
        if let Some(m) = max {
            if w.assigned >= m && w.inflight.is_empty() && !w.quitting {
                w.quitting = true;
                w.out.push_back(Out::quit());
                w.flush();
            }
        }
    }

    /// The pool cannot run tasks any more (its initializer fails): fail what waits.
    fn break_pool(&mut self, why: String) {
        for (s, _) in self.pending.drain(..) {
            s.fail(ErrorKind::ChildFailed, &why);
        }
        self.broken = Some(why);
    }

    fn fail_everything(&mut self, kind: ErrorKind, why: &str) {
        for (s, _) in self.pending.drain(..) {
            s.fail(kind, why);
        }
        for w in &mut self.workers {
            for f in w.inflight.drain(..) {
                f.sub.fail(kind, why);
            }
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

/// The pool's driver: a caller that reads the workers' results itself while it waits (see
/// the module docs). Dropping it hands the reading back to the dispatcher.
pub(crate) struct Driver<'l> {
    link: &'l Link,
}

impl Driver<'_> {
    /// Waits until `ready(job state)` or `deadline` passes, reading results and sending
    /// waiting chunks meanwhile.
    pub(crate) fn wait_for<'j>(
        &self,
        job: &'j Job,
        deadline: Deadline,
        mut ready: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'j, State>, bool) {
        let link = self.link;
        loop {
            {
                let st = job.lock();
                if ready(&st) {
                    return (st, true);
                }
            }
            let timeout = match deadline.remaining() {
                Ok(t) => t,
                Err(()) => {
                    let st = job.lock();
                    let ok = ready(&st);
                    return (st, ok);
                }
            };
            // The sockets to watch: the workers' that may still send (the dispatcher adds
            // and removes workers; a stale list is refreshed after its poke).
            let socks: Vec<(Arc<OwnedFd>, bool)> = {
                let core = link.core();
                if core.stopped {
                    drop(core);
                    return job.wait_for(deadline, ready);
                }
                core.workers
                    .iter()
                    .filter(|w| !w.ended && !w.reader.at_eof())
                    .map(|w| (w.sock.clone(), !w.out.is_empty()))
                    .collect()
            };
            let mut fds = vec![(link.poke_rx.as_fd(), false)];
            fds.extend(socks.iter().map(|(s, w)| (s.as_fd(), *w)));
            let ready_fds = match socket::poll_rw(&fds, timeout) {
                Ok(r) => r,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            if ready_fds[0].readable {
                drain(&link.poke_rx);
                link.poke_pending.store(false, Ordering::SeqCst);
            }
            if ready_fds[1..].iter().any(|r| r.readable || r.writable) {
                let mut core = link.core();
                let mut kill = false;
                for i in 0..core.workers.len() {
                    if core.workers[i].ended {
                        continue;
                    }
                    core.read(i);
                    core.workers[i].flush();
                    kill |= core.workers[i].kill;
                }
                core.assign();
                let wake = kill || core.stuck();
                drop(core);
                if wake {
                    link.wake();
                }
            }
        }
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        let mut core = self.link.core();
        core.driver = false;
        // Results still to come, or a close waiting for the end: the dispatcher reads them.
        let wake = (!core.idle() || core.closing) && !core.dispatcher_reads;
        drop(core);
        if wake {
            self.link.wake();
        }
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

/// Marks the pool stopped when the dispatcher's loop ends, failing what is left.
struct StopGuard(Arc<Link>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut core = self.0.core();
        if !core.stopped {
            core.stopped = true;
            core.fail_everything(ErrorKind::Closed, "the pool's dispatcher stopped");
        }
    }
}

/// A worker as the dispatcher sees it (its sending side is the [`Feed`] at the same index).
struct Worker {
    proc: Process<()>,
}

static WORKER_NO: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn start_worker(cfg: &Config) -> Result<(Worker, Feed)> {
    let (parent, child) = socket::stream_pair().context("cannot create a socketpair")?;
    let mailbox = Mailbox::new()?;
    let builder = Process::builder()
        .name(format!(
            "PoolWorker-{}",
            WORKER_NO.fetch_add(1, Ordering::Relaxed)
        ))
        .daemon(true);
    let proc = match cfg.method {
        StartMethod::Fork => {
            let init = cfg.init.clone();
            let closure = cfg.closure.clone();
            let mailbox = mailbox.clone();
            builder.fork(move || worker::worker_loop(child, mailbox, init, closure))?
        }
        StartMethod::Spawn => builder.spawn(
            worker::spawn_main,
            SpawnArgs {
                sock: worker::FdArg(child),
                mailbox: mailbox.clone(),
                init: cfg.init.clone(),
            },
        )?,
    };
    let pid = proc.raw_pid();
    Ok((
        Worker { proc },
        Feed {
            pid,
            sock: Arc::new(parent),
            reader: FrameReader::without_fds(),
            note: None,
            kill: false,
            mailbox,
            out: VecDeque::new(),
            inflight: VecDeque::new(),
            assigned: 0,
            context: 0,
            quitting: false,
            ended: false,
        },
    ))
}

pub(crate) struct Dispatcher {
    cfg: Config,
    /// Same indices as `Core::workers`.
    workers: Vec<Worker>,
    link: Arc<Link>,
    wake_rx: OwnedFd,
    spawn_failures: u32,
    next_spawn: Option<Deadline>,
}

/// Starts the workers (so that failures are reported to the caller) and the dispatcher
/// thread.
pub(crate) fn start(cfg: Config) -> Result<(Arc<Link>, std::thread::JoinHandle<()>)> {
    let (wake_tx, wake_rx) = socket::stream_pair().context("cannot create a socketpair")?;
    let (poke_tx, poke_rx) = socket::stream_pair().context("cannot create a socketpair")?;
    let callbacks = Callbacks::start()?;
    let mut workers = Vec::with_capacity(cfg.processes);
    let mut feeds = Vec::with_capacity(cfg.processes);
    for _ in 0..cfg.processes {
        match start_worker(&cfg) {
            Ok((w, f)) => {
                workers.push(w);
                feeds.push(f);
            }
            Err(e) => {
                for w in &workers {
                    let _ = w.proc.kill();
                }
                for w in workers {
                    let _ = w.proc.join();
                }
                return Err(e);
            }
        }
    }
    let link = Arc::new(Link {
        generation: fork_generation(),
        core: Mutex::new(Core {
            maxtasks: cfg.maxtasks,
            retries: cfg.retries,
            workers: feeds,
            pending: VecDeque::new(),
            closing: false,
            terminating: false,
            stopped: false,
            open_jobs: 0,
            broken: None,
            seq: 0,
            driver: false,
            dispatcher_reads: false,
            spare: Vec::new(),
            // A map sends 4 chunks per worker.
            spare_max: 4 * cfg.processes + 4,
        }),
        wake_pending: AtomicBool::new(false),
        wake: wake_tx,
        closed: Mutex::new(false),
        pids: Mutex::new(Vec::new()),
        poke_pending: AtomicBool::new(false),
        poke: poke_tx,
        poke_rx,
        callbacks,
    });
    let d = Dispatcher {
        cfg,
        workers,
        link: link.clone(),
        wake_rx,
        spawn_failures: 0,
        next_spawn: None,
    };
    d.publish_pids();
    let handle = std::thread::Builder::new()
        .name("multiproc-pool".into())
        .spawn(move || d.run())
        .context("cannot start the pool's dispatcher thread")?;
    Ok((link, handle))
}

impl Dispatcher {
    fn publish_pids(&self) {
        let pids = self.workers.iter().map(|w| w.proc.raw_pid()).collect();
        *self.link.pids.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }

    fn run(mut self) {
        // However the loop ends (even by a panic), later submits fail instead of waiting.
        let _stop = StopGuard(self.link.clone());
        loop {
            let timeout = self.next_spawn.and_then(|t| t.timeout());
            // The workers' sockets are polled when no caller drives (or for room to write).
            let socks: Vec<Option<(Arc<OwnedFd>, bool)>> = {
                let mut core = self.link.core();
                let reads = !core.driver;
                core.dispatcher_reads = reads;
                core.workers
                    .iter()
                    .map(|f| {
                        let write = !f.out.is_empty();
                        (reads || write).then(|| (f.sock.clone(), write))
                    })
                    .collect()
            };
            let ready = {
                let mut fds = vec![(self.wake_rx.as_fd(), false)];
                for (w, sock) in self.workers.iter().zip(&socks) {
                    fds.push((w.proc.sentinel(), false));
                    if let Some((fd, write)) = sock {
                        fds.push((fd.as_fd(), *write));
                    }
                }
                match socket::poll_rw(&fds, timeout) {
                    Ok(r) => r,
                    Err(_) => {
                        // Cannot happen with valid fds; don't spin.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
            };
            if ready[0].readable {
                // Drain first, then clear the flag: a handle that sets the flag after this
                // writes a fresh byte; one that found it set changed the state before, and
                // the checks below see it.
                drain(&self.wake_rx);
                self.link.wake_pending.store(false, Ordering::SeqCst);
            }
            let mut progress = false;
            let mut at = 1;
            for (i, sock) in socks.iter().enumerate() {
                let r_pid = ready[at];
                at += 1;
                if sock.is_some() {
                    let r_sock = ready[at];
                    at += 1;
                    if r_sock.readable || r_sock.writable {
                        let mut core = self.link.core();
                        progress |= core.read(i);
                        core.workers[i].flush();
                    }
                }
                if r_pid.readable {
                    self.ended(i);
                    progress = true;
                }
            }
            self.kill_bad();
            if self.link.core().terminating {
                self.shut_down();
                self.link.poke();
                return;
            }
            // The pids are published once the replacements run (never one short between).
            let removed = self.remove_ended();
            if self.replace() || removed {
                self.publish_pids();
                progress = true;
            }
            let mut core = self.link.core();
            core.assign();
            let driver = core.driver;
            if core.closing && core.open_jobs == 0 && core.idle() {
                drop(core);
                self.finish();
                self.link.poke();
                return;
            }
            drop(core);
            if progress && driver {
                // Its job may be done, or its list of sockets stale.
                self.link.poke();
            }
        }
    }

    /// Kills the workers that misbehaved (their pidfds then say they ended).
    fn kill_bad(&mut self) {
        let core = self.link.core();
        for (w, f) in self.workers.iter().zip(&core.workers) {
            if f.kill && !f.ended {
                let _ = w.proc.kill();
            }
        }
    }

    /// Forgets the workers that ended (reaped already by `Process`'s join in `ended`); true
    /// when there were any.
    fn remove_ended(&mut self) -> bool {
        let mut core = self.link.core();
        if !core.workers.iter().any(|f| f.ended) {
            return false;
        }
        let mut i = 0;
        while i < core.workers.len() {
            if core.workers[i].ended {
                core.workers.remove(i);
                self.workers.remove(i);
            } else {
                i += 1;
            }
        }
        true
    }

    /// Worker `i` has ended: collect its last results, then fail or retry what it held.
    fn ended(&mut self, i: usize) {
        let mut core = self.link.core();
        if core.workers[i].ended {
            return;
        }
        // What it sent before it ended counts.
        core.read(i);
        drop(core);
        let w = &mut self.workers[i];
        let pid = w.proc.pid();
        let code = w.proc.exitcode();
        let how = match code {
            Some(c) if c < 0 => format!(
                "was killed by signal {} ({})",
                -c,
                crate::sys::proc::signal_name(-c)
            ),
            Some(c) => format!("exited with code {c}"),
            None => "ended".to_string(),
        };
        let mut msg = format!("pool worker {pid} {how} while running this task");
        let mut core = self.link.core();
        let core = &mut *core;
        let f = &mut core.workers[i];
        if let Some(note) = &f.note {
            msg.push_str(&format!(": {note}"));
        }
        f.ended = true;
        // Chunks run in the order sent; those whose results came are gone from `inflight`.
        // The worker stored the seq of each chunk before beginning it: the chunks up to
        // that seq were begun, those after it never were.
        let begun = f.mailbox.last();
        let held: Vec<InFlight> = f.inflight.drain(..).collect();
        f.out.clear();
        for f in held.into_iter().rev() {
            if f.seq > begun && core.broken.is_none() {
                // Never started: not this chunk's fault, send it elsewhere.
                core.pending.push_front((f.sub, f.attempts));
            } else if core.broken.is_none() && f.attempts < core.retries {
                core.pending.push_front((f.sub, f.attempts + 1));
            } else if let Some(why) = &core.broken {
                f.sub.fail(ErrorKind::ChildFailed, why);
            } else {
                f.sub.fail(ErrorKind::ChildFailed, &msg);
            }
        }
    }

    /// Starts workers until there are `processes` again; true when it started any.
    fn replace(&mut self) -> bool {
        if let Some(t) = self.next_spawn {
            if !t.expired() {
                return false;
            }
            self.next_spawn = None;
        }
        let mut any = false;
        loop {
            {
                let core = self.link.core();
                let wanted = !core.terminating
                    && core.broken.is_none()
                    && !(core.closing && core.open_jobs == 0 && core.idle())
                    && self.workers.len() < self.cfg.processes;
                if !wanted {
                    return any;
                }
            }
            match start_worker(&self.cfg) {
                Ok((w, f)) => {
                    self.spawn_failures = 0;
                    self.workers.push(w);
                    self.link.core().workers.push(f);
                    any = true;
                }
                Err(e) => {
                    self.spawn_failures += 1;
                    if self.workers.is_empty() && self.spawn_failures >= 5 {
                        self.link
                            .core()
                            .break_pool(format!("cannot start a pool worker: {e}"));
                    } else {
                        self.next_spawn = Some(Deadline::after(Some(SPAWN_RETRY)));
                    }
                    return any;
                }
            }
        }
    }

    /// terminate(): kill the workers, reap them, fail what was not done.
    fn shut_down(&mut self) {
        for w in &self.workers {
            let _ = w.proc.kill();
        }
        let mut core = self.link.core();
        core.stopped = true;
        core.fail_everything(
            ErrorKind::Closed,
            "the pool was terminated before this task ran",
        );
        core.workers.clear();
        drop(core);
        for w in self.workers.drain(..) {
            let _ = w.proc.join();
        }
        self.publish_pids();
    }

    /// close() + all done: tell the workers to quit and reap them (killing any that does
    /// not go within a grace period).
    fn finish(&mut self) {
        let mut core = self.link.core();
        core.stopped = true;
        for f in &mut core.workers {
            if !f.quitting {
                f.quitting = true;
                f.out.push_back(Out::quit());
                f.flush();
            }
        }
        core.workers.clear();
        drop(core);
        for w in self.workers.drain(..) {
            if let Err(e) = w.proc.join_timeout(Duration::from_secs(10)) {
                if e.is_timeout() {
                    let _ = w.proc.kill();
                    let _ = w.proc.join();
                }
            }
        }
        self.publish_pids();
    }
}
