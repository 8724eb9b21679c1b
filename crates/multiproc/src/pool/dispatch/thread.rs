//! The dispatcher thread: it starts the workers, watches their pidfds (and their sockets when
//! no caller drives), fails or retries the chunks of a worker that died and starts its
//! replacement.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::core::{Core, Feed, InFlight, Out};
use super::{drain, Config, Link, SPAWN_RETRY};
use crate::error::{Context, ErrorKind, Result};
use crate::pool::callback::Callbacks;
use crate::pool::mailbox::Mailbox;
use crate::pool::worker::{self, SpawnArgs};
use crate::process::channel::FrameReader;
use crate::process::{Process, StartMethod};
use crate::sys::thread::fork_generation;
use crate::sys::{socket, Deadline};

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
