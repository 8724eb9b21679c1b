//! Thread identity for lock ownership, and "is that thread still alive?".
//!
//! A lock owner is recorded as a 63-bit identity: the kernel thread id (32 bits) plus the low
//! 31 bits of the thread's start time (`/proc/<tid>/task/<tid>/stat`, field 22, in clock
//! ticks). The start time makes a recycled thread id (pid_max is often 32768) look like a
//! different owner, so a dead owner whose tid was reused is still seen as dead.
//!
//! The identity is computed once per thread and cached in a thread-local. After `fork` the
//! child's only thread has a new tid, so a `pthread_atfork` child handler clears the cache.
//! The same handler counts forks ([`fork_generation`]), which is how per-process globals
//! tell an inherited value from their own (see `crate::fork`).
//!
//! # Safety
//!
//! `pthread_atfork` is given a plain `extern "C" fn` that only writes a thread-local `Cell`
//! and adds to an atomic counter (async-signal-safe in practice: no allocation, no locks).

#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Identity of "no owner"; never returned by [`current_id`] (a tid is never 0).
pub(crate) const NO_OWNER: u64 = 0;

thread_local! {
    static IDENTITY: Cell<u64> = const { Cell::new(NO_OWNER) };
}

/// Registers the fork-child handler before `main`, while the process has one thread.
///
/// Not lazily with a `Once`: `pthread_atfork` waits for a `fork` running in another thread,
/// so a lazy registration could be "in progress" at the instant of a fork, and the child's
/// copy of the `Once` would then stay "running" forever (seen as a hang of the first lock
/// taken in a fork child while tests forked in parallel).
#[used]
#[link_section = ".init_array"]
static REGISTER_ATFORK: extern "C" fn() = register_atfork;

extern "C" fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only clears a thread-local Cell and adds to an
        // atomic; the function pointer is valid for the life of the program.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

static ATFORK: Once = Once::new();

/// How many forks lie between the program's first process and this one (0 in a process
/// started by `exec`). Bumped in the child of every `fork` by the `pthread_atfork` handler,
/// so a value made in this process (stamped with the generation then) can be told from one
/// inherited from an ancestor: along a chain of forks the counter only grows.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    // `try_with`: never panic inside the fork child handler.
    let _ = IDENTITY.try_with(|c| c.set(NO_OWNER));
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation (see [`FORK_GENERATION`]): different from the generation
/// of every ancestor process, equal in all threads of this one. One atomic load.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    if !ATFORK.is_completed() {
        // Only if the constructor was not linked in (see `compute_id`).
        std::hint::black_box(&REGISTER_ATFORK);
        register_atfork();
    }
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// This thread's owner identity: `tid << 32 | (start_time & 0x7fff_ffff) << 1`. Bit 0 is always
/// clear (free for a lock's flag). No system call after the first use in a thread.
#[inline]
pub(crate) fn current_id() -> u64 {
    let id = IDENTITY.with(|c| c.get());
    if id != NO_OWNER {
        return id;
    }
    compute_id()
}

#[cold]
fn compute_id() -> u64 {
    // Keep the constructor linked in; it has run before `main` (a no-op call here then).
    std::hint::black_box(&REGISTER_ATFORK);
    if !ATFORK.is_completed() {
        register_atfork();
    }
    let tid = super::proc::gettid();
    let start = start_time(tid).unwrap_or(0);
    let id = make_id(tid, start);
    IDENTITY.with(|c| c.set(id));
    id
}

/// Packs a tid and start time into an owner identity.
pub(crate) fn make_id(tid: i32, start: u64) -> u64 {
    ((tid as u32 as u64) << 32) | ((start & 0x7fff_ffff) << 1)
}

/// The tid of an owner identity.
pub(crate) fn id_tid(id: u64) -> i32 {
    (id >> 32) as u32 as i32
}

/// Start time (clock ticks since boot) of thread `tid`, from `/proc`; `None` if it cannot be
/// read (gone, or /proc unavailable).
fn start_time(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// `(state, starttime)` from a `stat` line. The command name may hold spaces and ')', so
/// fields are counted after the last ')'.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    // Field 3 is the state; starttime is field 22, i.e. 19 fields further.
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the owner with identity `id` may still be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The thread exists (or we could not tell: treated as alive, never stolen from).
    Alive,
    /// The thread is gone, a zombie, or its tid now belongs to a different thread.
    Dead,
}

/// Checks whether the thread that recorded identity `id` is still alive. Costs a `/proc` read.
///
/// Processes sharing a lock must be in the same PID namespace (tids are compared as numbers).
pub(crate) fn liveness(id: u64) -> Liveness {
    let tid = id_tid(id);
    if tid <= 0 {
        // Not an identity any thread records: a corrupted word. Treat as dead so the lock
        // can be recovered.
        return Liveness::Dead;
    }
    match std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/stat")) {
        Ok(stat) => match parse_stat(&stat) {
            Some(('Z' | 'X' | 'x', _)) => Liveness::Dead,
            Some((_, start)) => {
                // An identity recorded without a start time (0: /proc was unreadable for
                // the owner) can only be compared by tid.
                let recorded = (id >> 1) & 0x7fff_ffff;
                if recorded != 0 && recorded != start & 0x7fff_ffff {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            }
            None => Liveness::Alive,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Either gone, or /proc is not mounted: ask the kernel directly.
            if std::path::Path::new("/proc/self/stat").exists() {
                Liveness::Dead
            } else {
                match super::proc::kill(tid, 0) {
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Liveness::Dead,
                    _ => Liveness::Alive,
                }
            }
        }
        Err(_) => Liveness::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_with_odd_comm() {
        let line = "1234 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
    }

    #[test]
    fn own_identity_is_alive_and_stable() {
        let id = current_id();
        assert_ne!(id, NO_OWNER);
        assert_eq!(id & 1, 0);
        assert_eq!(id_tid(id), super::super::proc::gettid());
        assert_eq!(current_id(), id);
        assert_eq!(liveness(id), Liveness::Alive);
    }

    #[test]
    fn exited_thread_is_dead() {
        let id = std::thread::spawn(current_id).join().unwrap();
        assert_eq!(liveness(id), Liveness::Dead);
    }

    #[test]
    fn recycled_tid_with_other_start_time_is_dead() {
        let id = current_id();
        let tid = id_tid(id);
        let start = (id >> 1) & 0x7fff_ffff;
        let other = make_id(tid, start.wrapping_add(1) & 0x7fff_ffff | 1);
        assert_eq!(liveness(other), Liveness::Dead);
    }
}
