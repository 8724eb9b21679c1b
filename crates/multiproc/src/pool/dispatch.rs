//! The dispatcher: a thread of the parent that watches the workers, and the state it
//! shares with the pool's handles.
//!
//! A handle that submits a chunk hands it to a worker itself: under the lock of the shared
//! state ([`Core`]) it picks the least loaded worker and writes the chunk to that worker's
//! socket without blocking (from the caller's thread, where the encoded arguments are still
//! in the cache; no hop through another thread). The dispatcher thread polls, in one
//! `poll`: a wake-up socket (close, terminate, a chunk that did not fit the socket at once),
//! each worker's socket (results in; the rest of a partly written chunk out) and each
//! worker's pidfd. It knows which chunks each worker holds, so when a pidfd turns readable
//! (the worker ended: killed, aborted, `exit`) it first reads whatever results the worker
//! sent before dying, then fails — or retries, if asked — exactly the chunks it still held,
//! reaps it, and starts a replacement. Nothing waits on a dead worker, so the pool never
//! hangs (CPython's does: issue 66587).
//!
//! ```text
//!  handles --lock Core, write--------------------> worker 0: socket (Task/Quit in, Ready/Results out), pidfd
//!          --byte--> [wake] --> dispatcher: poll --> worker 1: ... (reads results, sends the rest)
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::job::{Job, Outcome};
use super::worker::{
    self, ClosureRunner, Init, SpawnArgs, StartedCell, KIND_CLOSURE, KIND_FN, TASK_HEADER,
};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::process::channel::{self, FrameReader, Tag};
use crate::process::spawn::FnRef;
use crate::process::{Process, StartMethod};
use crate::sys::socket;

/// Chunks sent ahead to one worker (the second one hides the round trip).
const PIPELINE: usize = 2;

/// The largest argument buffer kept for reuse once its chunk is done.
const SPARE_MAX_BYTES: usize = 1 << 20;

/// Which code a chunk runs.
#[derive(Clone, Copy)]
pub(crate) enum Code {
    Fn(FnRef),
    Closure,
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
        channel::push_header(&mut head, Tag::Quit, 0);
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
}

/// The sending side of one worker: what it was given and what is still to be written to
/// its socket. Lives in [`Core`], at the same index as the worker in the dispatcher.
struct Feed {
    sock: Arc<OwnedFd>,
    /// The seq of the chunk it began last.
    started: StartedCell,
    /// Frames not sent yet (the first one maybe in part).
    out: VecDeque<Out>,
    inflight: VecDeque<InFlight>,
    /// Chunks given to it (for maxtasksperchild).
    assigned: usize,
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
}

impl Core {
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
                let (kind, (tramp, target)) = match sub.code {
                    Code::Fn(f) => (KIND_FN, f.to_parts()),
                    Code::Closure => (KIND_CLOSURE, (0, 0)),
                };
                let mut head = Vec::with_capacity(channel::HEADER + TASK_HEADER - 4);
                channel::push_header(&mut head, Tag::Task, TASK_HEADER - 4 + sub.payload.len());
                head.extend_from_slice(&seq.to_le_bytes());
                head.push(kind);
                head.extend_from_slice(&tramp.to_le_bytes());
                head.extend_from_slice(&target.to_le_bytes());
                // The arguments go as they are: no copy into a send buffer.
                w.out.push_back(Out {
                    head,
                    body: Some(sub.payload.clone()),
                    pos: 0,
                });
                w.assigned += 1;
                w.inflight.push_back(InFlight { sub, seq, attempts });
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
    core: Mutex<Core>,
    wake_pending: AtomicBool,
    wake: OwnedFd,
    /// Set by `close`/`terminate`: no new jobs.
    pub(crate) closed: Mutex<bool>,
    pub(crate) pids: Mutex<Vec<i32>>,
    /// Argument buffers of finished chunks, for the next chunks (at most `spare_max`).
    spare: Mutex<Vec<Vec<u8>>>,
    spare_max: usize,
}

impl Link {
    /// An empty buffer of at least `hint` bytes for a chunk's arguments: a finished chunk's
    /// when there is one (mapped already and likely in the cache), else a new one.
    pub(crate) fn buffer(&self, hint: usize) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match spare {
            Some(mut b) => {
                b.clear();
                b.reserve(hint);
                b
            }
            None => Vec::with_capacity(hint),
        }
    }

    /// Keeps a finished chunk's argument buffer for [`buffer`](Link::buffer).
    fn recycle(&self, payload: Arc<Vec<u8>>) {
        if let Ok(v) = Arc::try_unwrap(payload) {
            if v.capacity() <= SPARE_MAX_BYTES {
                let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
                if spare.len() < self.spare_max {
                    spare.push(v);
                }
            }
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the dispatcher look at the shared state again.
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = socket::send_msg(self.wake.as_fd(), &[IoSlice::new(&[1])], &[], true);
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
        let stuck = core.stuck();
        drop(core);
        if stuck {
            self.wake();
        }
    }

    /// Starts a job: fails once the pool is closed.
    pub(crate) fn begin(&self) -> Result<()> {
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
    sock: Arc<OwnedFd>,
    reader: FrameReader,
    /// Why it is going away, when it said so (a Failed frame, a malformed message).
    note: Option<String>,
}

static WORKER_NO: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn start_worker(cfg: &Config) -> Result<(Worker, Feed)> {
    let (parent, child) = socket::stream_pair().context("cannot create a socketpair")?;
    let started = StartedCell::new()?;
    let builder = Process::builder()
        .name(format!(
            "PoolWorker-{}",
            WORKER_NO.fetch_add(1, Ordering::Relaxed)
        ))
        .daemon(true)
        .start_method(cfg.method);
    let proc = match cfg.method {
        StartMethod::Fork => {
            let init = cfg.init.clone();
            let closure = cfg.closure.clone();
            let cell = started.clone();
            builder.spawn(move || worker::worker_loop(child, cell, init, closure))?
        }
        StartMethod::Spawn => builder.spawn_fn(
            worker::spawn_main,
            SpawnArgs {
                sock: worker::FdArg(child),
                started: started.clone(),
                init: cfg.init.clone(),
            },
        )?,
    };
    let sock = Arc::new(parent);
    Ok((
        Worker {
            proc,
            sock: sock.clone(),
            reader: FrameReader::without_fds(),
            note: None,
        },
        Feed {
            sock,
            started,
            out: VecDeque::new(),
            inflight: VecDeque::new(),
            assigned: 0,
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
    next_spawn: Option<Instant>,
}

/// Starts the workers (so that failures are reported to the caller) and the dispatcher
/// thread.
pub(crate) fn start(cfg: Config) -> Result<(Arc<Link>, std::thread::JoinHandle<()>)> {
    let (wake_tx, wake_rx) = socket::stream_pair().context("cannot create a socketpair")?;
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
        }),
        wake_pending: AtomicBool::new(false),
        wake: wake_tx,
        closed: Mutex::new(false),
        pids: Mutex::new(Vec::new()),
        spare: Mutex::new(Vec::new()),
        // A map sends 4 chunks per worker.
        spare_max: 4 * cfg.processes + 4,
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
        let pids = self.workers.iter().map(|w| w.proc.pid()).collect();
        *self.link.pids.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }

    fn run(mut self) {
        // However the loop ends (even by a panic), later submits fail instead of waiting.
        let _stop = StopGuard(self.link.clone());
        loop {
            let timeout = self
                .next_spawn
                .map(|t| t.saturating_duration_since(Instant::now()));
            let ready = {
                let writes: Vec<bool> = {
                    let core = self.link.core();
                    core.workers.iter().map(|f| !f.out.is_empty()).collect()
                };
                let mut fds = vec![(self.wake_rx.as_fd(), false)];
                for (w, write) in self.workers.iter().zip(writes) {
                    fds.push((w.sock.as_fd(), write));
                    fds.push((w.proc.sentinel(), false));
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
                let mut buf = [0u8; 64];
                while matches!(
                    socket::recv_msg(self.wake_rx.as_fd(), &mut buf, &mut Vec::new(), true, false),
                    Ok(r) if r.len > 0
                ) {}
                self.link.wake_pending.store(false, Ordering::SeqCst);
            }
            for i in 0..self.workers.len() {
                let (r_sock, r_pid) = (ready[1 + 2 * i], ready[2 + 2 * i]);
                if r_sock.readable {
                    self.read(i);
                }
                if r_sock.writable {
                    self.link.core().workers[i].flush();
                }
                if r_pid.readable {
                    self.ended(i);
                }
            }
            if self.link.core().terminating {
                self.shut_down();
                return;
            }
            self.remove_ended();
            let replaced = self.replace();
            if replaced {
                self.publish_pids();
            }
            let mut core = self.link.core();
            core.assign();
            if core.closing && core.open_jobs == 0 && core.idle() {
                drop(core);
                self.finish();
                return;
            }
        }
    }

    /// Forgets the workers that ended (reaped already by `Process`'s join in `ended`).
    fn remove_ended(&mut self) {
        let mut core = self.link.core();
        if !core.workers.iter().any(|f| f.ended) {
            return;
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
        drop(core);
        self.publish_pids();
    }

    /// Reads what worker `i` sent and handles every whole frame.
    fn read(&mut self, i: usize) {
        loop {
            let w = &mut self.workers[i];
            let more = w.reader.pump(&*w.sock, true);
            let mut any = false;
            while self.workers[i].reader.complete() {
                any = true;
                match self.workers[i].reader.take_raw() {
                    Ok((tag, raw)) => self.frame(i, tag, raw),
                    Err(e) => {
                        self.bad_worker(i, format!("it sent a malformed message ({e})"));
                        return;
                    }
                }
            }
            if !more || !any {
                return;
            }
        }
    }

    fn bad_worker(&mut self, i: usize, why: String) {
        let w = &mut self.workers[i];
        if w.note.is_none() {
            w.note = Some(why);
        }
        let _ = w.proc.kill();
    }

    /// Handles one frame from worker `i`: `raw` is the whole frame, header included.
    fn frame(&mut self, i: usize, tag: Tag, raw: Vec<u8>) {
        let pid = self.workers[i].proc.pid();
        let body = &raw[channel::HEADER..];
        match tag {
            Tag::Ready => {}
            Tag::Results => {
                if body.len() < 12 {
                    return self.bad_worker(i, "it sent a truncated result".into());
                }
                let seq = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
                let mut core = self.link.core();
                let w = &mut core.workers[i];
                match w.inflight.front() {
                    Some(f)
                        if f.seq == seq
                            && f.sub.job.lock().slots[f.sub.index].count == count as usize => {}
                    _ => {
                        drop(core);
                        return self
                            .bad_worker(i, "it sent a result for a task it did not hold".into());
                    }
                }
                let mut f = w.inflight.pop_front().expect("checked above");
                core.maybe_quit(i);
                drop(core);
                f.sub.job.complete(
                    f.sub.index,
                    Outcome::Ran {
                        bytes: raw,
                        start: channel::HEADER + 12,
                        pid,
                    },
                );
                let payload = std::mem::take(&mut f.sub.payload);
                drop(f);
                self.link.recycle(payload);
            }
            Tag::InitFailed => {
                let msg = format!(
                    "the pool's initializer panicked in worker {pid}: {}",
                    String::from_utf8_lossy(body)
                );
                self.workers[i].note = Some(msg.clone());
                self.link.core().break_pool(msg);
            }
            Tag::Failed => {
                let msg = String::from_utf8_lossy(body).into_owned();
                self.workers[i].note = Some(msg);
            }
            _ => self.bad_worker(i, "it sent an unexpected message".into()),
        }
    }

    /// Worker `i` has ended: collect its last results, then fail or retry what it held.
    fn ended(&mut self, i: usize) {
        if self.link.core().workers[i].ended {
            return;
        }
        self.read(i);
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
        if let Some(note) = &w.note {
            msg.push_str(&format!(": {note}"));
        }
        let mut core = self.link.core();
        let core = &mut *core;
        let f = &mut core.workers[i];
        f.ended = true;
        // Chunks run in the order sent; those whose results came are gone from `inflight`.
        // The worker stored the seq of each chunk before beginning it: the chunks up to
        // that seq were begun, those after it never were.
        let begun = f.started.last();
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
            if Instant::now() < t {
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
                        self.next_spawn = Some(Instant::now() + Duration::from_millis(50));
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
        for mut w in self.workers.drain(..) {
            match w.proc.join_timeout(Duration::from_secs(10)) {
                Ok(Some(())) | Err(_) => {}
                Ok(None) => {
                    let _ = w.proc.kill();
                    let _ = w.proc.join();
                }
            }
        }
        self.publish_pids();
    }
}
