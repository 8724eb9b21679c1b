//! Starting a child: the fork (the library's one `fork()`), the launcher thread that starts
//! daemons, and running a target in the child and handing its outcome back. (The spawn
//! method's exec is in `spawn.rs`.)
//!
//! # Safety
//!
//! The one `fork()` of the library is here: the locks a child could inherit held are taken across
//! it and released on both sides; the child runs only its target and exits with `_exit`.

#![allow(unsafe_code)]

use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;

use super::channel::{self, FrameReader, Tag};
use super::current::{self, Identity};
use super::results::{self, Ticket};
use super::{outcome, panic_message, registry, spawn, Outcome};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::fork::PerProcess;
use crate::handle;
use crate::sys::proc::{self, Forked};

/// What starting a child produced.
pub(crate) struct Started {
    pub(super) pid: i32,
    pub(super) link: Link,
    pub(super) reader: FrameReader,
}

/// How a child's result comes back.
pub(crate) enum Link {
    /// Spawn: a frame on a private socket; a pidfd to watch the exit.
    Socket { pidfd: OwnedFd, sock: OwnedFd },
    /// Fork: a shared result slot; a pidfd only when asked for (sentinel, timed waits).
    Slot {
        ticket: Ticket,
        pidfd: OnceCell<OwnedFd>,
    },
}

/// Where a child sends its outcome.
pub(crate) enum Sink {
    Socket(OwnedFd),
    Slot(Ticket),
}

pub(super) fn on_main_thread() -> bool {
    proc::gettid() == proc::getpid()
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the launcher thread, a thread that lives as long as the process, and waits
/// for its result. Daemon children are started there, so that `PR_SET_PDEATHSIG` (which fires
/// when the *thread* that forked ends) means "when the process ends".
///
/// Each process has its own launcher, started on first use (see `crate::fork`): a forked
/// child inherits its parent's channel, but not the thread that reads it.
pub(super) fn launcher<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    static LAUNCHER: PerProcess<mpsc::Sender<Job>> = PerProcess::new();
    let tx = LAUNCHER.get_or_try_init(|| {
        let (s, r) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("multiproc-launcher".into())
            .spawn(move || {
                // (Ends when the sender is dropped: only a sender that lost the race to be
                // this process's launcher is.)
                for job in r {
                    job();
                }
            })
            .context("cannot start the launcher thread")?;
        Ok::<_, Error>(s)
    })?;
    let (rtx, rrx) = mpsc::channel();
    let boxed: Job = Box::new(move || {
        let _ = rtx.send(job());
    });
    tx.send(boxed)
        .map_err(|_| Error::new(ErrorKind::Os, "the launcher thread is gone"))?;
    rrx.recv()
        .map_err(|_| Error::new(ErrorKind::Os, "the launcher thread dropped a job"))?
}

/// Forks; the child takes on identity `who` and runs `body` with where to leave its result,
/// and never returns.
pub(super) fn fork_child(who: Box<Identity>, body: impl FnOnce(Sink) -> i32) -> Result<Started> {
    let daemon = who.daemon;
    let ticket = results::for_this_thread()?.take_slot()?;
    let parent_pid = if daemon { proc::getpid() } else { 0 };
    // Locks taken across the fork, released on both sides afterwards, so the child never
    // inherits one held by another thread: stdout/stderr (flushed first, so nothing buffered
    // is printed twice), the shared-memory registries, the children registry.
    use std::io::Write;
    let panics = crate::fork::panic_gate();
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.flush();
    // The shared-memory locks, and the arena slots this process holds, pinned for the child
    // until it is reaped (see `shm/arena.rs`).
    let shm_guards = crate::shm::fork_guards();
    let mut children = registry::lock();
    let reaped = registry::reap_detached(&mut children);
    // Writes after the fork cost a copy-on-write fault per page: make room and set up
    // thread-locals now.
    children.reserve(1);
    handle::warm_up();
    // SAFETY: the locks this library or std's stdio could leave held in the child are held by
    // this thread across the fork (above) and released below on both sides; the child then
    // runs only the target and exits with `_exit`.
    let forked = unsafe { proc::fork() };
    match forked {
        Err(e) => {
            drop(children);
            drop(shm_guards.in_parent());
            drop(reaped);
            ticket.results.release(ticket);
            Err(Error::os("fork failed", e))
        }
        Ok(Forked::Child) => {
            registry::clear_in_child(&mut children);
            drop(children);
            shm_guards.in_child();
            // The parent's pins of children it reaped just before the fork are its own.
            reaped.forget_in_child();
            drop(err);
            drop(out);
            drop(panics);
            results::forget_in_child();
            if daemon && !proc::die_with_parent(parent_pid) {
                proc::exit_now(1);
            }
            spawn::mark_child();
            current::set(who);
            let code = body(Sink::Slot(ticket));
            registry::finish_children();
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            proc::exit_now(code)
        }
        Ok(Forked::Parent(pid)) => {
            let pins = shm_guards.in_parent();
            registry::add(&mut children, pid, daemon, Some(ticket), pins);
            drop(children);
            drop(reaped);
            drop(err);
            drop(out);
            drop(panics);
            Ok(Started {
                pid,
                link: Link::Slot {
                    ticket,
                    pidfd: OnceCell::new(),
                },
                reader: FrameReader::default(),
            })
        }
    }
}

/// Runs a target in the child and sends its outcome on `sock`; returns the exit code.
pub(crate) fn run_target<R: Outcome<M>, M>(sink: Sink, f: impl FnOnce() -> R) -> i32 {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let (tag, body, fds, code) = match outcome {
        Ok(value) => match outcome::encode(&value) {
            Ok((bytes, fds)) => (Tag::Value, bytes, fds, 0),
            Err(e) => (
                Tag::Failed,
                format!("cannot serialize the return value: {e}").into_bytes(),
                Vec::new(),
                1,
            ),
        },
        Err(payload) => (
            Tag::Panic,
            panic_message(&*payload).into_bytes(),
            Vec::new(),
            1,
        ),
    };
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    match sink {
        Sink::Socket(sock) => {
            let _ = channel::send_frame(sock.as_fd(), tag as u8, &body, &borrowed);
        }
        Sink::Slot(t) => t.results.deliver(t.slot, tag, &body, &borrowed),
    }
    code
}
