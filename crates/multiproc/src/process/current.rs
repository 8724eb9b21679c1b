//! Who this process is: [`current_process`], [`parent_process`], and [`cpu_count`].
//!
//! A child started by multiproc learns its identity from its parent: a forked child finds a
//! record the parent prepared before the fork and stores a pointer to it (one atomic store:
//! no allocation, no lock in the child); a spawned child reads it from its bootstrap frame.
//! The main process has none and is `MainProcess`, as in Python. A process forked by other
//! means (a raw `fork`) inherits its parent's record, as in Python; its pid is always its own.
//!
//! # Safety
//!
//! The process identity is published once through an atomic pointer from `Box::into_raw` and
//! never freed, so a loaded non-null pointer is valid for `'static`.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, Ordering};

use serde::{Deserialize, Serialize};

use super::StartMethod;
use crate::sys::proc;

/// What a child knows of itself and of its parent; set once, in the child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
}

impl Identity {
    /// The identity of a child about to be started by this process.
    pub(crate) fn for_child(name: &str, daemon: bool, method: StartMethod) -> Identity {
        Identity {
            name: name.to_owned(),
            daemon,
            method,
            parent_pid: std::process::id(),
            parent_name: with_name(str::to_owned),
        }
    }
}

// Never freed: every pointer stored here comes from `Box::into_raw` in `set`, and a later
// `set` (in a child of this process) leaks the earlier record rather than dropping it, so a
// reference read from it stays valid for the rest of the process.
static IDENTITY: AtomicPtr<Identity> = AtomicPtr::new(std::ptr::null_mut());

/// In a new child: records who it is (see the module docs). Lock-free; allocates nothing
/// (the record was made by the parent, before a fork).
pub(crate) fn set(identity: Box<Identity>) {
    IDENTITY.store(Box::into_raw(identity), Ordering::Release);
}

fn get() -> Option<&'static Identity> {
    let p = IDENTITY.load(Ordering::Acquire);
    // SAFETY: non-null pointers stored in `IDENTITY` come from `Box::into_raw` and are never
    // freed (see the static); the `Acquire` load pairs with the `Release` store that
    // published the fully written record.
    unsafe { p.as_ref() }
}

fn with_name<T>(f: impl FnOnce(&str) -> T) -> T {
    f(get().map_or(MAIN_NAME, |i| i.name.as_str()))
}

const MAIN_NAME: &str = "MainProcess";

/// The calling process as multiproc sees it (Python's `multiprocessing.current_process()`):
/// its name, pid, daemon flag and how it was started. In a child started by multiproc —
/// forked or spawned — these are what its parent's [`ProcessBuilder`](super::ProcessBuilder)
/// gave it; in the main process the name is `MainProcess`.
///
/// ```
/// use multiproc::{current_process, Process, StartMethod};
///
/// assert_eq!(current_process().name(), "MainProcess");
/// assert_eq!(current_process().start_method(), None);
/// let p = Process::builder().name("worker-1").fork(|| {
///     let me = multiproc::current_process();
///     (me.name().to_string(), me.pid(), me.start_method())
/// })?;
/// let (name, pid, method) = p.join()?;
/// assert_eq!((name.as_str(), pid, method), ("worker-1", p.pid(), Some(StartMethod::Fork)));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn current_process() -> CurrentProcess {
    let id = get();
    CurrentProcess {
        name: with_name(str::to_owned),
        pid: std::process::id(),
        daemon: id.is_some_and(|i| i.daemon),
        method: id.map(|i| i.method),
    }
}

/// What [`current_process`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
    method: Option<StartMethod>,
}

impl CurrentProcess {
    /// The name its parent gave it (`Process-N` by default), or `MainProcess`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id ([`std::process::id`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// How it was started; `None` in a process multiproc did not start.
    pub fn start_method(&self) -> Option<StartMethod> {
        self.method
    }
}

/// The parent of this process, if multiproc started it (Python's
/// `multiprocessing.parent_process()`): `None` in the main process.
///
/// ```
/// use multiproc::{parent_process, Process};
///
/// assert!(parent_process().is_none());
/// let p = Process::fork(|| {
///     let parent = multiproc::parent_process().expect("started by multiproc");
///     (parent.pid(), parent.name().to_string(), parent.is_alive())
/// })?;
/// assert_eq!(p.join()?, (std::process::id(), "MainProcess".to_string(), true));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    get().map(|i| ParentProcess {
        pid: i.parent_pid,
        name: i.parent_name.clone(),
    })
}

/// What [`parent_process`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentProcess {
    pid: u32,
    name: String,
}

impl ParentProcess {
    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's name (`MainProcess`, or the name its own parent gave it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the parent runs. (A process whose parent ends is given another parent by
    /// the kernel — init or a subreaper — so `getppid()` stops naming it; its pid can't be
    /// reused while this process is still its child, so the check is exact.)
    pub fn is_alive(&self) -> bool {
        proc::getppid() == self.pid as i32
    }
}

/// How many CPUs this process may run on: Python's `os.process_cpu_count()` (3.13), which is
/// what a pool should size itself by — it honours CPU affinity (`taskset`) and cgroup CPU
/// quotas, where `multiprocessing.cpu_count()` counts every CPU of the machine. At least 1.
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
