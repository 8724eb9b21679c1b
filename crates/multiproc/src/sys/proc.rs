//! Process system calls: fork, exit, wait, pidfd, signals, parent-death signal.
//!
//! # Safety
//!
//! [`fork`] is the one dangerous call: the child of a multi-threaded parent may only rely on
//! state that no other thread could have been changing at the instant of the fork. Its
//! caller (`process::fork`) documents how that is ensured.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, WaitStatus};

/// Which side of a fork this is.
pub(crate) enum Forked {
    /// In the parent; the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork()`.
///
/// # Safety
///
/// In the child only the calling thread exists. The caller must make sure the child touches no
/// lock another thread of the parent could have held at the moment of the fork (or takes such
/// locks across the fork itself, as `process::fork` does with stdout and stderr).
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: forwarded to the caller (see the function's contract).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the calling process at once, without running atexit handlers or destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// `waitpid(pid, flags)`, retried on `EINTR`: `Ok(None)` when `WNOHANG` found nothing, else
/// the status.
fn waitpid(pid: i32, flags: WaitOptions) -> io::Result<Option<WaitStatus>> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
    loop {
        match rustix::process::waitpid(Some(pid), flags) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(found) => return Ok(found.map(|(_, status)| status)),
        }
    }
}

/// How a child that ended (not a stop) ended.
fn exit_status(status: WaitStatus) -> ExitStatus {
    match status.terminating_signal() {
        Some(sig) => ExitStatus::Signal(sig),
        None => ExitStatus::Code(status.exit_status().unwrap_or(0)),
    }
}

/// Reaps `pid` if it has ended (`block == false`) or waits for it to end. `Ok(None)`: still
/// running. `ECHILD` means someone else reaped it.
pub(crate) fn reap(pid: i32, block: bool) -> io::Result<Option<ExitStatus>> {
    let flags = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    Ok(waitpid(pid, flags)?.map(exit_status))
}

/// What [`wait_child`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Still running (only without `block`).
    Running,
    /// Stopped by a signal (`SIGSTOP`, `SIGTSTP`...); not reaped.
    Stopped,
    /// Ended and reaped.
    Exited(ExitStatus),
}

/// Like [`reap`], but also reports a child that has stopped (`WUNTRACED`).
pub(crate) fn wait_child(pid: i32, block: bool) -> io::Result<Waited> {
    let flags = WaitOptions::UNTRACED
        | if block {
            WaitOptions::empty()
        } else {
            WaitOptions::NOHANG
        };
    Ok(match waitpid(pid, flags)? {
        None => Waited::Running,
        Some(s) if s.stopped() => Waited::Stopped,
        Some(s) => Waited::Exited(exit_status(s)),
    })
}

/// Stops the calling process (`SIGSTOP` to itself) until someone sends it `SIGCONT`.
pub(crate) fn stop_self() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::STOP);
}

/// A pidfd for `pid`: readable once the process has ended (before it is reaped).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends `signal` to `pid` (a process, never a group: `pid` must be positive).
pub(crate) fn kill(pid: i32, signal: i32) -> io::Result<()> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let sig =
        Signal::from_named_raw(signal).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::kill_process(pid, sig)?)
}

/// Sends `signal` through a pidfd (never hits a recycled pid).
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let sig =
        Signal::from_named_raw(signal).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

/// Asks the kernel to send `SIGKILL` to this process when the thread that created it ends
/// (`prctl(PR_SET_PDEATHSIG)`), then returns false if the parent is already gone (re-checked
/// against `expected_parent` as the man page advises).
/// Async-signal-safe: two raw system calls (rustix makes them directly).
pub(crate) fn die_with_parent(expected_parent: i32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    getppid() == expected_parent
}

/// This process's id.
pub(crate) fn getpid() -> i32 {
    std::process::id() as i32
}

/// The parent's process id (that of init or a subreaper once the parent has ended).
pub(crate) fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// The calling thread's kernel id.
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Clears `FD_CLOEXEC` on `fd` so it survives `exec`. Async-signal-safe (one `fcntl`).
pub(crate) fn clear_cloexec_raw(fd: i32) -> io::Result<()> {
    // SAFETY: the caller owns `fd` (it is open for the whole call); the borrow ends with it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?)
}

/// The name of signal `s` (for messages), or "signal" for an unusual one.
pub(crate) fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGFPE => "SIGFPE",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGALRM => "SIGALRM",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGCONT => "SIGCONT",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

/// Registers `f` to run at normal process exit (`atexit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain `extern "C" fn()` with no arguments; registering it has no other
    // precondition. (Callers make sure it does not unwind.)
    unsafe { libc::atexit(f) };
}

/// Ignores `SIGPIPE`, as Rust's runtime does before `main` (a write to a closed pipe then
/// fails with `EPIPE` instead of killing the process).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
