//! The children this process started and has not reaped yet, and what happens to them when
//! the process exits (Python's `_exit_function`): daemon children are terminated, the others
//! are waited for, and every one is reaped — no zombies, no orphans left running by accident.

use std::sync::{Mutex, MutexGuard, Once};

use super::results::Ticket;
use crate::shm::Pins;
use crate::sys::proc::{self, Waited};

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) pid: i32,
    pub(crate) daemon: bool,
    /// The `Process` handle was dropped without joining: the registry reaps it.
    pub(crate) detached: bool,
    /// The result slot of a forked child (given back when a detached child is reaped).
    pub(crate) ticket: Option<Ticket>,
    /// The arena slots kept alive for a forked child until it is reaped. Dropping them takes
    /// another lock, so an entry is never dropped while `CHILDREN` is held (see [`Reaped`]).
    pub(crate) pins: Pins,
}

/// Entries taken out of the registry, to be dropped (their pins given back) once its lock is
/// released — and, in a fork, only in the parent.
#[must_use]
pub(crate) struct Reaped(Vec<Entry>);

impl Reaped {
    /// In a forked child: the parent's entries are the parent's to drop.
    pub(crate) fn forget_in_child(self) {
        for e in self.0 {
            e.pins.forget_in_child();
        }
    }
}

static CHILDREN: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

pub(crate) fn lock() -> MutexGuard<'static, Vec<Entry>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn at_exit() {
    finish_children();
}

/// Registers a new child (and, the first time, the exit hook).
pub(crate) fn add(
    guard: &mut MutexGuard<'static, Vec<Entry>>,
    pid: i32,
    daemon: bool,
    ticket: Option<Ticket>,
    pins: Pins,
) {
    // `at_exit` only locks, signals and waits: it does not unwind.
    AT_EXIT.call_once(|| proc::at_exit(at_exit));
    guard.push(Entry {
        pid,
        daemon,
        detached: false,
        ticket,
        pins,
    });
}

/// Forgets `pid` (it was reaped by its `Process`).
pub(crate) fn remove(pid: i32) {
    let removed = {
        let mut g = lock();
        g.iter()
            .position(|e| e.pid == pid)
            .map(|i| g.swap_remove(i))
    };
    drop(removed); // (the lock is released: see `Entry::pins`)
}

/// Hands `pid` over to the registry: it will be reaped when it ends.
pub(crate) fn detach(pid: i32) {
    let reaped = {
        let mut g = lock();
        if let Some(e) = g.iter_mut().find(|e| e.pid == pid) {
            e.detached = true;
        }
        reap_detached(&mut g)
    };
    drop(reaped);
}

/// Reaps detached children that have ended (without blocking); returns their entries, to
/// drop after the lock is released.
pub(crate) fn reap_detached(g: &mut MutexGuard<'static, Vec<Entry>>) -> Reaped {
    let mut out = Vec::new();
    let mut i = 0;
    while i < g.len() {
        if g[i].detached && reap_entry(&g[i], false) {
            out.push(g.swap_remove(i));
        } else {
            i += 1;
        }
    }
    Reaped(out)
}

/// Reaps `e` if it has ended (or waits for that with `block`); true once reaped. A child seen
/// stopped because it waits for its result socket to be drained is served and continued.
fn reap_entry(e: &Entry, block: bool) -> bool {
    loop {
        match proc::wait_child(e.pid, block) {
            Ok(Waited::Running) => return false,
            Ok(Waited::Stopped) => {
                if let Some(t) = e.ticket {
                    t.results.service_stop(t, e.pid);
                }
            }
            Ok(Waited::Exited(_)) | Err(_) => {
                if let (true, Some(t)) = (e.detached, e.ticket) {
                    t.results.release(t);
                }
                if e.detached {
                    log::debug!("reaped process {} (its Process was dropped)", e.pid);
                }
                return true;
            }
        }
    }
}

/// Pids of children started by this process that have not been reaped (Python's
/// `active_children`, which also reaps the finished ones).
pub(crate) fn active() -> Vec<i32> {
    let mut g = lock();
    let reaped = reap_detached(&mut g);
    let pids = g.iter().map(|e| e.pid).collect();
    drop(g);
    drop(reaped);
    pids
}

/// In a freshly forked child: the parent's children are not ours.
/// Their pins are the parent's too: forgotten, not given back.
pub(crate) fn clear_in_child(g: &mut MutexGuard<'static, Vec<Entry>>) {
    for e in g.drain(..) {
        e.pins.forget_in_child();
    }
}

/// Terminates daemon children, then waits for every child. Runs at exit (also at the end of
/// a child process, for its own children).
pub(crate) fn finish_children() {
    let entries: Vec<Entry> = {
        let mut g = lock();
        if g.is_empty() {
            return; // (the common case in a child: free nothing, touch nothing)
        }
        std::mem::take(&mut *g)
    };
    for e in entries.iter().filter(|e| e.daemon) {
        log::debug!("at exit: terminating daemon process {}", e.pid);
        let _ = proc::kill(e.pid, libc::SIGTERM);
    }
    for e in &entries {
        log::debug!("at exit: waiting for process {}", e.pid);
        reap_entry(e, true);
    }
}
