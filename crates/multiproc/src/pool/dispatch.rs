//! The dispatcher: a thread of the parent that owns the workers.
//!
//! It polls, in one `poll`: a wake-up socket (commands from the pool's handles arrive on an
//! mpsc channel), each worker's socket (results in, tasks out, written without blocking) and
//! each worker's pidfd. It knows which chunks each worker holds, so when a pidfd turns
//! readable (the worker ended: killed, aborted, `exit`) it first reads whatever results the
//! worker sent before dying, then fails — or retries, if asked — exactly the chunks it still
//! held, reaps it, and starts a replacement. Nothing waits on a dead worker, so the pool
//! never hangs (CPython's does: issue 66587).
//!
//! ```text
//!  handles --Cmd--> [mpsc] --+          +--> worker 0: socket (Task/Quit out, Ready/Results in), pidfd
//!          --byte--> [wake] -+-> poll --+--> worker 1: ...
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
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

pub(crate) enum Cmd {
    Submit(Submit),
    /// A job will submit chunks (until `EndJob`): closing waits for it.
    BeginJob,
    EndJob,
    Close,
    Terminate,
}

/// The handles' side: sends commands and wakes the dispatcher.
pub(crate) struct Link {
    tx: Sender<Cmd>,
    wake_pending: AtomicBool,
    wake: OwnedFd,
    /// Set by `close`/`terminate`: no new jobs.
    pub(crate) closed: Mutex<bool>,
    pub(crate) pids: Mutex<Vec<i32>>,
}

impl Link {
    /// Sends `cmd`; false when the dispatcher is gone (a Submit is then failed).
    pub(crate) fn send(&self, cmd: Cmd) -> bool {
        match self.tx.send(cmd) {
            Ok(()) => {
                if !self.wake_pending.swap(true, Ordering::SeqCst) {
                    let _ = socket::send_msg(self.wake.as_fd(), &[IoSlice::new(&[1])], &[], true);
                }
                true
            }
            Err(e) => {
                if let Cmd::Submit(s) = e.0 {
                    s.fail(ErrorKind::Closed, "the pool was closed or terminated");
                }
                false
            }
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
        self.send(Cmd::BeginJob);
        Ok(())
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

struct Worker {
    proc: Process<()>,
    sock: OwnedFd,
    /// The seq of the chunk it began last.
    started: StartedCell,
    reader: FrameReader,
    /// Frames not sent yet (the first one maybe in part).
    out: VecDeque<Out>,
    inflight: VecDeque<InFlight>,
    /// Chunks given to it (for maxtasksperchild).
    assigned: usize,
    quitting: bool,
    /// Why it is going away, when it said so (a Failed frame, a malformed message).
    note: Option<String>,
    ended: bool,
}

static WORKER_NO: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn start_worker(cfg: &Config) -> Result<Worker> {
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
    Ok(Worker {
        proc,
        sock: parent,
        started,
        reader: FrameReader::without_fds(),
        out: VecDeque::new(),
        inflight: VecDeque::new(),
        assigned: 0,
        quitting: false,
        note: None,
        ended: false,
    })
}

pub(crate) struct Dispatcher {
    cfg: Config,
    workers: Vec<Worker>,
    pending: VecDeque<(Submit, u32)>,
    rx: Receiver<Cmd>,
    link: Arc<Link>,
    wake_rx: OwnedFd,
    closing: bool,
    terminating: bool,
    open_jobs: usize,
    broken: Option<String>,
    seq: u64,
    spawn_failures: u32,
    next_spawn: Option<Instant>,
}

/// Starts the workers (so that failures are reported to the caller) and the dispatcher
/// thread.
pub(crate) fn start(cfg: Config) -> Result<(Arc<Link>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (wake_tx, wake_rx) = socket::stream_pair().context("cannot create a socketpair")?;
    let link = Arc::new(Link {
        tx,
        wake_pending: AtomicBool::new(false),
        wake: wake_tx,
        closed: Mutex::new(false),
        pids: Mutex::new(Vec::new()),
    });
    let mut workers = Vec::with_capacity(cfg.processes);
    for _ in 0..cfg.processes {
        match start_worker(&cfg) {
            Ok(w) => workers.push(w),
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
    let d = Dispatcher {
        cfg,
        workers,
        pending: VecDeque::new(),
        rx,
        link: link.clone(),
        wake_rx,
        closing: false,
        terminating: false,
        open_jobs: 0,
        broken: None,
        seq: 0,
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
        let pids = self
            .workers
            .iter()
            .filter(|w| !w.ended)
            .map(|w| w.proc.pid())
            .collect();
        *self.link.pids.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }

    fn run(mut self) {
        loop {
            let timeout = self
                .next_spawn
                .map(|t| t.saturating_duration_since(Instant::now()));
            let ready = {
                let mut fds = vec![(self.wake_rx.as_fd(), false)];
                for w in &self.workers {
                    fds.push((w.sock.as_fd(), !w.out.is_empty()));
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
                // writes a fresh byte; one that found it set has sent its command already,
                // and `commands` below sees it.
                let mut buf = [0u8; 64];
                while matches!(
                    socket::recv_msg(self.wake_rx.as_fd(), &mut buf, &mut Vec::new(), true, false),
                    Ok(r) if r.len > 0
                ) {}
                self.link.wake_pending.store(false, Ordering::SeqCst);
            }
            self.commands();
            for i in 0..self.workers.len() {
                let (r_sock, r_pid) = (ready[1 + 2 * i], ready[2 + 2 * i]);
                if r_sock.readable {
                    self.read(i);
                }
                if r_sock.writable {
                    self.flush(i);
                }
                if r_pid.readable {
                    self.ended(i);
                }
            }
            if self.terminating {
                self.shut_down();
                return;
            }
            let before = self.workers.len();
            self.workers.retain(|w| !w.ended);
            self.replace();
            if self.workers.len() != before || self.next_spawn.is_none() {
                self.publish_pids();
            }
            self.assign();
            if self.closing && self.open_jobs == 0 && self.idle() {
                self.finish();
                return;
            }
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    fn commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Submit(s)) => match &self.broken {
                    Some(why) => s.fail(ErrorKind::ChildFailed, why),
                    None => self.pending.push_back((s, 0)),
                },
                Ok(Cmd::BeginJob) => self.open_jobs += 1,
                Ok(Cmd::EndJob) => self.open_jobs = self.open_jobs.saturating_sub(1),
                Ok(Cmd::Close) => self.closing = true,
                Ok(Cmd::Terminate) | Err(TryRecvError::Disconnected) => {
                    self.terminating = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Reads what worker `i` sent and handles every whole frame.
    fn read(&mut self, i: usize) {
        loop {
            let w = &mut self.workers[i];
            let more = w.reader.pump(&w.sock, true);
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
                let w = &mut self.workers[i];
                match w.inflight.front() {
                    Some(f)
                        if f.seq == seq
                            && f.sub.job.lock().slots[f.sub.index].count == count as usize => {}
                    _ => {
                        return self
                            .bad_worker(i, "it sent a result for a task it did not hold".into())
                    }
                }
                let f = w.inflight.pop_front().expect("checked above");
                f.sub.job.complete(
                    f.sub.index,
                    Outcome::Ran {
                        bytes: raw,
                        start: channel::HEADER + 12,
                        pid,
                    },
                );
                self.maybe_quit(i);
            }
            Tag::InitFailed => {
                let msg = format!(
                    "the pool's initializer panicked in worker {pid}: {}",
                    String::from_utf8_lossy(body)
                );
                self.workers[i].note = Some(msg.clone());
                self.break_pool(msg);
            }
            Tag::Failed => {
                let msg = String::from_utf8_lossy(body).into_owned();
                self.workers[i].note = Some(msg);
            }
            _ => self.bad_worker(i, "it sent an unexpected message".into()),
        }
    }

    /// The pool cannot run tasks any more (its initializer fails): fail what waits.
    fn break_pool(&mut self, why: String) {
        for (s, _) in self.pending.drain(..) {
            s.fail(ErrorKind::ChildFailed, &why);
        }
        self.broken = Some(why);
    }

    /// Sends Quit to worker `i` once it has done its `maxtasksperchild` chunks.
    fn maybe_quit(&mut self, i: usize) {
        let max = self.cfg.maxtasks;
        let w = &mut self.workers[i];
        if let Some(m) = max {
            if w.assigned >= m && w.inflight.is_empty() && !w.quitting {
                w.quitting = true;
                w.out.push_back(Out::quit());
                self.flush(i);
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let w = &mut self.workers[i];
        while let Some(o) = w.out.front_mut() {
            let body: &[u8] = o.body.as_ref().map_or(&[], |b| &b[..]);
            let (h, b) = if o.pos < o.head.len() {
                (&o.head[o.pos..], body)
            } else {
                (&[][..], &body[o.pos - o.head.len()..])
            };
            match socket::send_msg(
                w.sock.as_fd(),
                &[IoSlice::new(h), IoSlice::new(b)],
                &[],
                true,
            ) {
                Ok(n) => {
                    o.pos += n;
                    if o.pos >= o.head.len() + body.len() {
                        w.out.pop_front();
                    }
                }
                Err(_) => break, // WouldBlock: poll says when; EPIPE: the pidfd will say.
            }
        }
    }

    /// Worker `i` has ended: collect its last results, then fail or retry what it held.
    fn ended(&mut self, i: usize) {
        if self.workers[i].ended {
            return;
        }
        self.read(i);
        let w = &mut self.workers[i];
        w.ended = true;
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
        // Chunks run in the order sent; those whose results came are gone from `inflight`.
        // The worker stored the seq of each chunk before beginning it: the chunks up to
        // that seq were begun, those after it never were.
        let begun = w.started.last();
        let held: Vec<InFlight> = w.inflight.drain(..).collect();
        for f in held.into_iter().rev() {
            if f.seq > begun && self.broken.is_none() {
                // Never started: not this chunk's fault, send it elsewhere.
                self.pending.push_front((f.sub, f.attempts));
            } else if self.broken.is_none() && f.attempts < self.cfg.retries {
                self.pending.push_front((f.sub, f.attempts + 1));
            } else if let Some(why) = &self.broken {
                f.sub.fail(ErrorKind::ChildFailed, why);
            } else {
                f.sub.fail(ErrorKind::ChildFailed, &msg);
            }
        }
    }

    fn wanted(&self) -> bool {
        !self.terminating
            && self.broken.is_none()
            && !(self.closing && self.open_jobs == 0 && self.idle())
            && self.workers.len() < self.cfg.processes
    }

    /// Starts workers until there are `processes` again.
    fn replace(&mut self) {
        if let Some(t) = self.next_spawn {
            if Instant::now() < t {
                return;
            }
            self.next_spawn = None;
        }
        while self.wanted() {
            match start_worker(&self.cfg) {
                Ok(w) => {
                    self.spawn_failures = 0;
                    self.workers.push(w);
                }
                Err(e) => {
                    self.spawn_failures += 1;
                    if self.workers.is_empty() && self.spawn_failures >= 5 {
                        self.break_pool(format!("cannot start a pool worker: {e}"));
                    } else {
                        self.next_spawn = Some(Instant::now() + Duration::from_millis(50));
                    }
                    return;
                }
            }
        }
    }

    /// Hands pending chunks to workers with room, least loaded first.
    fn assign(&mut self) {
        for level in 0..PIPELINE {
            for i in 0..self.workers.len() {
                if self.pending.is_empty() {
                    return;
                }
                let max = self.cfg.maxtasks;
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
                self.flush(i);
            }
        }
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

    /// terminate(): kill the workers, reap them, fail what was not done.
    fn shut_down(&mut self) {
        for w in &self.workers {
            let _ = w.proc.kill();
        }
        self.fail_everything(
            ErrorKind::Closed,
            "the pool was terminated before this task ran",
        );
        for w in self.workers.drain(..) {
            let _ = w.proc.join();
        }
        self.drain_late_commands();
        self.publish_pids();
    }

    /// close() + all done: tell the workers to quit and reap them (killing any that does
    /// not go within a grace period).
    fn finish(&mut self) {
        for i in 0..self.workers.len() {
            if !self.workers[i].quitting {
                self.workers[i].quitting = true;
                self.workers[i].out.push_back(Out::quit());
                self.flush(i);
            }
        }
        for mut w in self.workers.drain(..) {
            match w.proc.join_timeout(Duration::from_secs(10)) {
                Ok(Some(())) | Err(_) => {}
                Ok(None) => {
                    let _ = w.proc.kill();
                    let _ = w.proc.join();
                }
            }
        }
        self.drain_late_commands();
        self.publish_pids();
    }

    /// Chunks submitted while the dispatcher was stopping fail instead of waiting forever.
    fn drain_late_commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            if let Cmd::Submit(s) = cmd {
                s.fail(
                    ErrorKind::Closed,
                    "the pool was closed before this task ran",
                );
            }
        }
    }
}
