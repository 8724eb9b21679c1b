//! Processes: [`Process`], its [`ProcessBuilder`], the two [`StartMethod`]s, and how a child's
//! result and panics come back.
//!
//! - Start: [`Process::fork`]`(closure)` (Python's `fork` start method) or
//!   [`Process::spawn`]`(f, args)` (its `spawn`: the binary runs again); the same verbs on
//!   [`Process::builder`] after `.name(..)` and `.daemon(..)`. A target returns any serde
//!   value, or never returns ([`Outcome`]).
//! - Wait: [`Process::join`], [`try_join`](Process::try_join),
//!   [`join_timeout`](Process::join_timeout), [`join_deadline`](Process::join_deadline):
//!   the value, or how the child ended ([`JoinError`], [`ExitStatus`]).
//! - Look around: [`current_process`], [`parent_process`], [`active_children`],
//!   [`cpu_count`].
//!
//! # Diagnostics
//!
//! multiproc reports what it does with processes through the [`log`](https://docs.rs/log)
//! facade, at debug level, with targets under `multiproc::process`: each start ("started
//! process 4242 (worker) by fork"), signal sent, exit seen ("process 4242 (worker) ended:
//! signal 9 (SIGKILL)"), and at exit, the daemons terminated and children waited for. Silent
//! unless the program installs a logger; to see them, e.g. with the `env_logger` crate, call
//! `env_logger::init()` in `main` and run with `RUST_LOG=multiproc=debug` (Python's
//! `log_to_stderr(logging.DEBUG)`). Nothing is logged in a forked child before its target
//! runs. (As with any lock, a logger that takes a lock of its own may find it held in a
//! forked child, if another thread of the parent held it at the fork and the child logs.)
//!
//! # How results come back
//!
//! A forked child leaves its encoded result (or its panic message) in a shared result slot
//! and exits; the parent blocks in `waitpid` and reads the slot after reaping it — no
//! per-child socket or pidfd (see `results` for results that don't fit a slot or carry fds).
//! A spawned child talks back over a private stream socket: it sends one frame, then exits;
//! the parent reads that frame while it waits for the exit, watching a pidfd so that a child
//! that dies without a word (killed, `exit(n)`) is seen at once, and so that grandchildren
//! that inherited the socket can't keep `join` waiting.
//!
//! # Where things are
//! [`Process`] and how a parent waits for its child (here); [`ProcessBuilder`] (`builder.rs`);
//! starting a child: the fork, the launcher thread of daemons, running a target in the
//! child (`start.rs`), and the spawn method (`spawn.rs`); how results come back (`results.rs`
//! for a forked child's slot, `channel.rs` for the frames of a spawned one, `outcome.rs`
//! for what a target returns); the children registry (`registry.rs`), the current process
//! (`current.rs`), the errors (`error.rs`).

mod builder;
pub(crate) mod channel;
mod current;
mod error;
mod outcome;
mod registry;
mod results;
pub(crate) mod spawn;
mod start;

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::sys::proc::{self, Waited};
use crate::sys::{socket, Deadline};
use crate::wait::Waitable;
use channel::{FrameReader, Tag};
use results::Ticket;

pub use builder::ProcessBuilder;
pub use current::{cpu_count, current_process, parent_process, CurrentProcess, ParentProcess};
pub use error::{ExitStatus, JoinError, JoinTimeoutError, TryJoinError};
pub use outcome::{Never, NeverReturns, Outcome, Returns};
pub use spawn::is_spawned_child;
pub(crate) use start::{run_target, Link, Sink, Started};

/// How a child process is started: [`Process::fork`] or [`Process::spawn`] (and the same
/// verbs on a [`ProcessBuilder`]). Python's `set_start_method` names.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StartMethod {
    /// `fork()`: the child is a copy of the parent and runs a closure. Fastest, and the
    /// tutorial's model. In a multi-threaded parent only the forking thread is copied; the
    /// library takes stdout/stderr and its own locks across the fork so none is left held.
    #[default]
    Fork,
    /// Re-execute the current binary and run a `fn(A) -> R` with serialized arguments. Safe
    /// in any parent; primitives inside the arguments travel as fds (see [`Process::spawn`]).
    Spawn,
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// A child process: Python's `multiprocessing.Process`, started by [`Process::fork`],
/// [`Process::spawn`] or a [`ProcessBuilder`]. `R` is what the target returns; [`join`]
/// hands it back.
///
/// Dropping a `Process` without joining it does not kill the child: it runs on and is
/// reaped when it ends (or waited for when the parent exits, unless it is a daemon).
///
/// [`join`]: Process::join
///
/// ```
/// use multiproc::Process;
/// let p = Process::fork(|| std::process::id())?;
/// let child_pid = p.pid();
/// assert_eq!(p.join()?, child_pid);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Children that never return
///
/// A target may return any serde value, or never return at all: a closure that ends in
/// `std::process::abort()`, `panic!` or `std::process::exit` compiles as written (see
/// [`Outcome`]). Its `join` reports how it ended. In edition 2024 (the closure's return type
/// is `!`):
///
/// ```edition2024
/// use multiproc::process::ExitStatus;
/// use multiproc::{Lock, Process};
///
/// let lock = Lock::new()?;
/// let l = lock.clone();
/// let child = Process::fork(move || {
///     std::mem::forget(l.lock().unwrap()); // dies holding it
///     std::process::abort();
/// })?;
/// let _ = child.join();
/// match lock.lock() {
///     Ok(_guard) => {}
///     Err(died) => { let _guard = died.into_inner(); /* repair what it protected */ }
/// }
/// assert_eq!(child.exit_status().and_then(|s| s.signal()), Some(6)); // SIGABRT
///
/// let p = Process::builder().name("gives up").fork(|| panic!("no way"))?;
/// // (A let chain: this example is compiled as edition 2024.)
/// if let Err(e) = p.join() && let Some(message) = e.panic_message() {
///     assert_eq!(message, "no way");
/// } else {
///     unreachable!();
/// }
/// let p = Process::fork(|| std::process::exit(3))?;
/// assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(3)));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// And in edition 2021 (the return type falls back to `()`, without the never-type fallback
/// lint, which would fire under a plain `Serialize` bound):
///
/// ```edition2021
/// use multiproc::process::ExitStatus;
/// use multiproc::Process;
///
/// let p = Process::fork(move || {
///     let _ = std::process::id();
///     std::process::abort();
/// })?;
/// assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Signal(6)));
/// let p = Process::fork(|| std::process::exit(3))?;
/// assert_eq!(p.join().unwrap_err().exit_status(), Some(ExitStatus::Code(3)));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process<R> {
    pid: i32,
    name: String,
    daemon: bool,
    method: StartMethod,
    link: Link,
    state: RefCell<State>,
    decode: outcome::Decoder<R>,
}

#[derive(Default)]
struct State {
    reader: FrameReader,
    status: Option<ExitStatus>,
    /// The result has been handed out (or turned into an error) already.
    taken: bool,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl Process<()> {
    /// A builder: name, daemon flag.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::new()
    }
}

impl<R> Process<R> {
    /// Forks a child ([`StartMethod::Fork`]) that runs `f`; [`join`](Process::join) returns
    /// its value. Python's `Process(target=f).start()` with the `fork` start method.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] when the fork fails.
    #[doc(alias = "start")]
    pub fn fork<F, M>(f: F) -> Result<Process<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Outcome<M>,
    {
        ProcessBuilder::new().fork(f)
    }

    /// Starts a child with [`StartMethod::Spawn`] that runs `f(args)`: Python's
    /// `Process(target=f, args=args).start()` with the `spawn` start method; see
    /// [`ProcessBuilder::spawn`].
    ///
    /// ```
    /// use multiproc::Process;
    /// fn square(x: u64) -> u64 { x * x }
    /// let p = Process::spawn(square, 12)?;
    /// assert_eq!(p.join()?, 144);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`ProcessBuilder::spawn`].
    pub fn spawn<A, M>(f: fn(A) -> R, args: A) -> Result<Process<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Outcome<M> + 'static,
    {
        ProcessBuilder::new().spawn(f, args)
    }
}

impl<R> Process<R> {
    fn new(
        s: Started,
        name: String,
        daemon: bool,
        method: StartMethod,
        decode: outcome::Decoder<R>,
    ) -> Process<R> {
        Process {
            pid: s.pid,
            name,
            daemon,
            method,
            link: s.link,
            state: RefCell::new(State {
                reader: s.reader,
                ..State::default()
            }),
            decode,
        }
    }

    fn logged(self) -> Process<R> {
        log::debug!(
            "started process {} ({}) by {}{}",
            self.pid,
            self.name,
            match self.method {
                StartMethod::Fork => "fork",
                StartMethod::Spawn => "spawn",
            },
            if self.daemon { ", a daemon" } else { "" }
        );
        self
    }

    fn log_ended(&self, status: ExitStatus) {
        log::debug!("process {} ({}) ended: {status}", self.pid, self.name);
    }

    /// The child's process id (Python's `pid`), a `u32` like [`std::process::id`] and
    /// [`std::process::Child::id`].
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The pid as the kernel's `pid_t`, for the crate's system calls.
    pub(crate) fn raw_pid(&self) -> i32 {
        self.pid
    }

    /// The name given to the builder, or `Process-N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// How the child was started.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A pidfd of the child: readable once it has ended (Python's `sentinel`). For a forked
    /// child it is opened on first use; asked for after the child was reaped, it is an fd
    /// that is always readable.
    ///
    /// # Panics
    /// When no pidfd can be opened for a running child (out of file descriptors).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.link {
            Link::Socket { pidfd, .. } => pidfd.as_fd(),
            Link::Slot { pidfd, .. } => pidfd
                .get_or_init(|| {
                    let reaped = self.state.borrow().status.is_some();
                    let opened = if reaped {
                        Err(std::io::Error::from_raw_os_error(libc::ESRCH))
                    } else {
                        proc::pidfd_open(self.pid)
                    };
                    match opened {
                        Ok(fd) => fd,
                        // Reaped (by us, or it is a zombie about to be): an fd at end of file
                        // is readable forever, like the pidfd of an ended process.
                        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                            match socket::stream_pair() {
                                Ok((a, _b)) => a,
                                Err(e) => panic!("cannot make a sentinel fd: {e}"),
                            }
                        }
                        Err(e) => panic!("cannot open a pidfd for process {}: {e}", self.pid),
                    }
                })
                .as_fd(),
        }
    }

    /// True until the child has ended.
    pub fn is_alive(&self) -> bool {
        self.poll_exit().is_none()
    }

    /// Python's `exitcode`: `None` while running, then the exit code, or `-N` when the child
    /// was killed by signal N (`-15` after [`terminate`](Process::terminate)).
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(ExitStatus::exitcode)
    }

    /// How the child ended: `None` while it runs. Reaps it if it has ended, without waiting;
    /// after a join it is always known.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.poll_exit()
    }

    /// Reaps the child if it has ended, without blocking. Reading pending output first keeps
    /// a child that is blocked writing a large result from looking dead or alive wrongly.
    fn poll_exit(&self) -> Option<ExitStatus> {
        let mut st = self.state.borrow_mut();
        if st.status.is_none() {
            match &self.link {
                Link::Socket { sock, .. } => {
                    if !st.taken {
                        st.reader.pump(sock, true);
                    }
                    if let Ok(Some(s)) = proc::reap(self.pid, false) {
                        st.status = Some(s.into());
                        registry::remove(self.pid);
                        self.log_ended(s.into());
                    }
                }
                Link::Slot { ticket, .. } => {
                    if let Some(s) = self.wait_slot(*ticket, false) {
                        st.status = Some(s);
                    }
                }
            }
        }
        st.status
    }

    /// A forked child: waits for it to end (`block`) or checks once, serving it if it stopped
    /// to have its result socket drained. Reaps it and forgets it in the registry.
    fn wait_slot(&self, ticket: Ticket, block: bool) -> Option<ExitStatus> {
        loop {
            let status = match proc::wait_child(self.pid, block) {
                Ok(Waited::Running) => return None,
                Ok(Waited::Stopped) => {
                    ticket.results.service_stop(ticket, self.pid);
                    continue;
                }
                Ok(Waited::Exited(s)) => s.into(),
                // Reaped by someone else (a `waitpid(-1)` elsewhere): the status is lost.
                Err(_) => ExitStatus::Code(255),
            };
            registry::remove(self.pid);
            self.log_ended(status);
            return Some(status);
        }
    }

    /// Sends `SIGTERM` (Python's `terminate`). Does nothing once the child has been reaped.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal can't be sent.
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill`).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal can't be sent.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends signal `sig` to the child, unless it has been reaped (so never to a recycled pid).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal can't be sent.
    pub fn send_signal(&self, sig: i32) -> Result<()> {
        if self.state.borrow().status.is_some() {
            return Ok(());
        }
        log::debug!(
            "sending {} to process {} ({})",
            proc::signal_name(sig),
            self.pid,
            self.name
        );
        let sent = match &self.link {
            Link::Socket { pidfd, .. } => proc::pidfd_kill(pidfd.as_fd(), sig),
            Link::Slot { pidfd, .. } => match pidfd.get() {
                Some(fd) => proc::pidfd_kill(fd.as_fd(), sig),
                // Not reaped yet, so the pid is still our child's (a zombie at worst).
                None => proc::kill(self.pid, sig),
            },
        };
        match sent {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(Error::os("cannot signal the child", e)),
        }
    }

    fn signal(&self, sig: i32) -> Result<()> {
        self.send_signal(sig)
    }

    /// Waits until the child has ended or `deadline` passes, reading its result meanwhile.
    /// True when it has ended (and been reaped).
    fn wait_until(&self, deadline: Deadline) -> Result<bool> {
        if self.state.borrow().status.is_some() {
            return Ok(true);
        }
        let (sock, pidfd) = match &self.link {
            Link::Socket { sock, pidfd } => (sock, pidfd),
            Link::Slot { ticket, .. } => return self.wait_slot_until(*ticket, deadline),
        };
        // The first slice watches only the pidfd: a child that finishes quickly has sent its
        // whole result before it exits, so waking for the data and again for the exit would
        // cost a context switch for nothing. A child whose result is larger than the socket
        // buffer blocks until we read, so after the slice the socket is watched too.
        let mut first = true;
        loop {
            let (timeout, expired) = match deadline.remaining() {
                Ok(t) => (t, false),
                Err(()) => (Some(Duration::ZERO), true),
            };
            let (exited, data) = {
                let st = self.state.borrow();
                let (sock, slice) = if first {
                    (
                        None,
                        Some(timeout.map_or(FIRST_SLICE, |t| t.min(FIRST_SLICE))),
                    )
                } else if !st.taken && !st.reader.complete() {
                    (Some(sock.as_fd()), timeout)
                } else {
                    (None, timeout)
                };
                socket::poll_readable2(pidfd.as_fd(), sock, slice).context("poll failed")?
            };
            first = false;
            if data.readable {
                self.state.borrow_mut().reader.pump(sock, true);
            }
            if (exited.readable || expired) && self.poll_exit().is_some() {
                return Ok(true);
            }
            if expired {
                return Ok(false);
            }
        }
    }
}

impl<R> Process<R> {
    /// `wait_until` for a forked child: a plain blocking `waitpid` without a deadline;
    /// with one, the pidfd is watched in slices (a child that stopped to have its result
    /// socket drained is seen at the end of a slice).
    fn wait_slot_until(&self, ticket: Ticket, deadline: Deadline) -> Result<bool> {
        loop {
            let timeout = match deadline.remaining() {
                Ok(None) => {
                    let status = self.wait_slot(ticket, true);
                    self.state.borrow_mut().status = status;
                    return Ok(status.is_some());
                }
                Ok(Some(t)) => Some(t),
                Err(()) => None,
            };
            if let Some(status) = self.wait_slot(ticket, false) {
                self.state.borrow_mut().status = Some(status);
                return Ok(true);
            }
            let Some(t) = timeout else {
                return Ok(false);
            };
            let slice = t.min(STOP_CHECK);
            socket::poll_readable2(self.sentinel(), None, Some(slice)).context("poll failed")?;
        }
    }
}

/// How often a timed wait for a forked child looks for it having stopped (see `results`).
const STOP_CHECK: Duration = Duration::from_millis(10);

/// How long `join` first waits on the exit alone (see `wait_until`).
const FIRST_SLICE: Duration = Duration::from_millis(2);

impl<R> Process<R> {
    /// Waits for the child to end and returns the value its target returned (Python's
    /// `join`, which also hands over the target's value). Once it has returned, the outcome
    /// has been handed out: a further join gives [`JoinError::AlreadyJoined`]; the exit status
    /// stays available from [`exit_status`](Process::exit_status) and
    /// [`exitcode`](Process::exitcode).
    ///
    /// ```
    /// use multiproc::process::{ExitStatus, JoinError};
    /// use multiproc::Process;
    ///
    /// let p = Process::fork(|| 6 * 7)?;
    /// assert_eq!(p.join()?, 42);
    /// assert_eq!(p.exitcode(), Some(0));
    ///
    /// let p = Process::fork(|| -> u8 { std::process::exit(3) })?;
    /// assert!(matches!(p.join(), Err(JoinError::Exited(ExitStatus::Code(3)))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`JoinError::Panicked`] (with the panic message), [`JoinError::Exited`] (`exit(n)`,
    /// abort, a signal: the [`ExitStatus`] says which), [`JoinError::Failed`] (the value did
    /// not come back), [`JoinError::AlreadyJoined`].
    #[doc(alias = "wait")]
    pub fn join(&self) -> Result<R, JoinError> {
        match self.wait_until(Deadline::never()) {
            Ok(_) => self.take_result(),
            Err(error) => Err(JoinError::Failed {
                error,
                status: None,
            }),
        }
    }

    /// Returns the child's value if it has ended, without waiting.
    ///
    /// # Errors
    /// [`TryJoinError::WouldBlock`] while it runs (it is not touched); otherwise as
    /// [`join`](Process::join).
    pub fn try_join(&self) -> Result<R, TryJoinError> {
        if !self.state.borrow().taken && self.poll_exit().is_none() {
            return Err(TryJoinError::WouldBlock);
        }
        self.take_result().map_err(TryJoinError::from)
    }

    /// Waits at most `timeout` (any `Duration`, up to `Duration::MAX`) for the child to end,
    /// then returns its value as [`join`](Process::join) does. Python's `join(timeout)`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use multiproc::Process;
    ///
    /// let p = Process::fork(|| std::thread::sleep(Duration::from_secs(30)))?;
    /// assert!(p.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// p.kill()?;
    /// assert_eq!(p.join_timeout(Duration::MAX).unwrap_err().exit_status().unwrap().signal(), Some(9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if it is still running then (it is not touched);
    /// otherwise as [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<R, JoinTimeoutError> {
        self.join_until(Deadline::after(Some(timeout)))
    }

    /// Waits until `deadline` at the latest for the child to end, then returns its value as
    /// [`join`](Process::join) does.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if it is still running then (it is not touched);
    /// otherwise as [`join`](Process::join).
    pub fn join_deadline(&self, deadline: Instant) -> Result<R, JoinTimeoutError> {
        self.join_until(Deadline::at(deadline))
    }

    fn join_until(&self, deadline: Deadline) -> Result<R, JoinTimeoutError> {
        match self.wait_until(deadline) {
            Ok(true) => self.take_result().map_err(JoinTimeoutError::from),
            Ok(false) => Err(JoinTimeoutError::Timeout),
            Err(error) => Err(JoinTimeoutError::Failed {
                error,
                status: None,
            }),
        }
    }

    fn take_result(&self) -> Result<R, JoinError> {
        let mut st = self.state.borrow_mut();
        if st.taken {
            return Err(JoinError::AlreadyJoined);
        }
        st.taken = true;
        let status = st.status.expect("reaped before taking the result");
        // (Formatted only on failure: a fresh allocation right after a fork costs a fault.)
        let who = || format!("process {} ({})", self.pid, self.name);
        let failed = |message: String| JoinError::Failed {
            error: Error::new(ErrorKind::ChildFailed, message),
            status: Some(status),
        };
        let frame = match &self.link {
            Link::Socket { sock, .. } => {
                // The child has exited: everything it sent is in the socket buffer.
                st.reader.pump(sock, true);
                if st.reader.complete() {
                    st.reader.take().ok()
                } else {
                    None
                }
            }
            Link::Slot { ticket, .. } => match ticket.results.take(*ticket) {
                Ok(frame) => frame,
                Err(e) => return Err(failed(format!("{}: {e}", who()))),
            },
        };
        match frame {
            // A value that does not decode, or is of another type (`codec/ident.rs`), and
            // arguments the child could not decode: `ErrorKind::Codec`.
            Some(f) if Tag::Value.of(&f) => {
                (self.decode)(&f.body, f.fds).map_err(|e| JoinError::Failed {
                    error: Error::new(
                        e.kind(),
                        format!("{} returned a value that does not decode: {e}", who()),
                    ),
                    status: Some(status),
                })
            }
            Some(f) if Tag::BadArgs.of(&f) => Err(JoinError::Failed {
                error: Error::new(
                    ErrorKind::Codec,
                    format!("{}: {}", who(), String::from_utf8_lossy(&f.body)),
                ),
                status: Some(status),
            }),
            Some(f) if Tag::Panic.of(&f) => Err(JoinError::Panicked {
                message: String::from_utf8_lossy(&f.body).into_owned(),
                status,
            }),
            Some(f) => Err(failed(format!(
                "{} failed: {}",
                who(),
                String::from_utf8_lossy(&f.body)
            ))),
            None => Err(JoinError::Exited(status)),
        }
    }
}

impl<R> AsRawFd for Process<R> {
    /// The pidfd ([`Process::sentinel`]).
    fn as_raw_fd(&self) -> RawFd {
        self.sentinel().as_raw_fd()
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        let ended = match &self.link {
            Link::Socket { .. } => {
                self.state.get_mut().status.is_some()
                    || match proc::reap(self.pid, false) {
                        Ok(None) => false,
                        r => {
                            registry::remove(self.pid);
                            if let Ok(Some(s)) = r {
                                self.log_ended(s.into());
                            }
                            true
                        }
                    }
            }
            Link::Slot { ticket, .. } => {
                let ticket = *ticket;
                let ended = self.state.get_mut().status.is_some()
                    || self.wait_slot(ticket, false).is_some();
                if ended {
                    ticket.results.release(ticket);
                }
                ended
            }
        };
        if !ended {
            // The registry reaps it later (and gives its result slot back).
            registry::detach(self.pid);
        }
    }
}

/// Pids of the children this process started that have not been reaped yet; finished
/// children whose `Process` was dropped are reaped on the way (Python's `active_children`).
///
/// ```
/// use multiproc::{active_children, Process};
/// let p = Process::fork(|| std::thread::sleep(std::time::Duration::from_secs(30)))?;
/// assert!(active_children().contains(&p.pid()));
/// p.kill()?;
/// let _ = p.join();
/// assert!(!active_children().contains(&p.pid()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn active_children() -> Vec<u32> {
    registry::active().into_iter().map(|p| p as u32).collect()
}

impl<R> Waitable for Process<R> {
    /// The process's sentinel (a pidfd): ready once the process has ended.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sentinel())
    }
}

#[cfg(test)]
mod tests {
    //! A child's value or Spawn arguments of another type than the other side expects (issue
    //! 12, point 2). Through the public API both sides are one `fn(A) -> R`, so the mismatch
    //! is made here, with real children: a `Process<String>` whose child returns a
    //! `(u8, u8)`, and a `fn(String)` child handed a `(u8, u8)`.

    use super::current::Identity;
    use super::outcome::Returns;
    use super::start::fork_child;
    use super::*;
    use crate::codec;

    fn pair(_: ()) -> (u8, u8) {
        (1, 2)
    }

    fn length(s: String) -> usize {
        s.len()
    }

    /// A `Process<String>` for a child that returns `(1u8, 2u8)`.
    fn wrong_result(m: StartMethod) -> Process<String> {
        let who = Identity::for_child("wrong-type", false, m);
        let started = match m {
            StartMethod::Fork => fork_child(Box::new(who), |sink| {
                run_target::<(u8, u8), Returns>(sink, || pair(()))
            }),
            StartMethod::Spawn => {
                let args = codec::to_vec_typed(&()).unwrap();
                let entry = spawn::Entry::of::<(), (u8, u8), Returns>(pair);
                spawn::exec_child(entry, &args, Vec::new(), who)
            }
        }
        .unwrap();
        Process::new(
            started,
            "wrong-type".into(),
            false,
            m,
            outcome::decoder::<String, Returns>(),
        )
    }

    #[test]
    fn a_result_of_another_type_is_a_codec_error() {
        for m in [StartMethod::Fork, StartMethod::Spawn] {
            let p = wrong_result(m);
            let e = p.join().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Codec, "{m:?}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("expected a `alloc::string::String`"),
                "{text}"
            );
            // The process is still there to ask: it exited normally.
            assert_eq!(p.exitcode(), Some(0), "{m:?}");
            assert!(p.join().is_err(), "joined once");
            // The right type, through the public API, works.
            let ok = match m {
                StartMethod::Fork => Process::fork(|| "fine".len()),
                StartMethod::Spawn => Process::spawn(length, "fine".to_string()),
            };
            assert_eq!(ok.unwrap().join().unwrap(), 4);
        }
    }

    #[test]
    fn spawn_arguments_of_another_type_are_a_codec_error() {
        let who = Identity::for_child("wrong-args", false, StartMethod::Spawn);
        let args = codec::to_vec_typed(&(1u8, 2u8)).unwrap();
        let entry = spawn::Entry::of::<String, usize, Returns>(length);
        let started = spawn::exec_child(entry, &args, Vec::new(), who).unwrap();
        let p: Process<usize> = Process::new(
            started,
            "wrong-args".into(),
            false,
            StartMethod::Spawn,
            outcome::decoder::<usize, Returns>(),
        );
        let e = p.join().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
        let text = e.to_string();
        assert!(text.contains("cannot decode the arguments"), "{text}");
        assert!(text.contains("alloc::string::String"), "{text}");
        assert_eq!(p.exitcode(), Some(1));
        // The same call with the right type.
        assert_eq!(
            Process::spawn(length, "four".to_string())
                .unwrap()
                .join()
                .unwrap(),
            4
        );
    }
}
