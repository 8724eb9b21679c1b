//! Fork hygiene: every process-global of the crate, and what becomes of it in a forked child.
//!
//! `fork` copies all of a process's memory but only the thread that called it. In the child:
//! - a lazily started thread (the launcher) is still named by the globals, but does not run:
//!   a job handed to it is never done;
//! - a lock that another thread held at the instant of the fork stays held forever;
//! - a `Once` / `OnceLock` that another thread was running stays "running" forever;
//! - other threads' thread-locals are gone; the forking thread's are copied as they were.
//!
//! So every global below is made right in the child in one of three ways:
//! - **Per process** ([`PerProcess`]): the value is stamped with the fork generation it was
//!   made in (`sys::thread::fork_generation`, counted by a `pthread_atfork` child handler
//!   that runs in the child of *every* `fork`, ours or not). A process that finds a value of
//!   another generation leaves it alone (leaks it: its locks may be held, its threads gone)
//!   and makes its own, lazily, on first use. Nothing happens at fork time.
//! - **Taken across the fork**: `process::fork_child` holds the lock across `fork`, so no
//!   other thread can hold it at that instant, releases it on both sides, and fixes the
//!   value in the child where needed.
//! - **Fine as inherited**: lock-free, or per thread, or valid in any process.
//!
//! `tests/it/fork.rs` uses these globals from a forked child's *second* thread (the forking
//! thread becomes the child's main thread, which takes other paths).
//!
//! | Global | Where | In a forked child |
//! |---|---|---|
//! | launcher thread and its channel (`LAUNCHER`) | `process/mod.rs` | **Per process**: the child starts its own launcher the first time one of its non-main threads starts a daemon (a `Pool` does). The inherited channel named a thread the child does not have (issue 17: a daemon or a `Pool` started from a forked child's second thread hung). |
//! | spare result tables (`SPARE`) | `process/results.rs` | **Per process**: the child's threads hand their tables to a list of the child's own; the inherited list (its lock possibly held) is never touched. |
//! | a thread's result table (`MINE`) | `process/results.rs` | Thread-local; stamped with the generation it was made in: a table inherited by the forking thread is not used (`fork_child` also forgets it in the child). Other threads start without one. |
//! | children registry (`CHILDREN`) | `process/registry.rs` | **Taken across the fork** and cleared in the child: the parent's children are not the child's. |
//! | exit hook registration (`AT_EXIT`, a `Once`) | `process/registry.rs` | Fine as inherited: it runs only under the `CHILDREN` lock, which every fork of the crate holds (`fork_child`, and `spawn::exec_child` around `Command::spawn`), so it is never mid-run at a fork. A forked child exits with `_exit` (after `finish_children`), never through the hook. |
//! | process name counter (`COUNTER`) | `process/mod.rs` | Fine as inherited: an atomic; children's default names go on from the parent's count (names are for humans). |
//! | "started by multiproc" flag (`IS_CHILD`) | `process/spawn.rs` | Set by the child (`mark_child`); an atomic. |
//! | who this process is (`IDENTITY`: name, daemon flag, start method, parent) | `process/current.rs` | Set by the child: a forked child stores a pointer to a record its parent made before the fork (one atomic store: no lock, no allocation); a spawned child sets it from its bootstrap frame. Records are never freed. A process forked by other means (a raw `fork`) inherits its parent's, as in Python. |
//! | spawn bootstrap (`BOOT`, `.init_array`) | `process/spawn.rs` | Runs before `main` only; not at fork. |
//! | current arena (`CURRENT`) | `shm/arena.rs` | **Taken across the fork**; the child goes on allocating from the parent's arena (shared memory, lock-free slot allocation), so objects it makes are mapped in the parent too. |
//! | arena slot holders (`REFS`) | `shm/arena.rs` | **Taken across the fork**: the parent pins every slot it holds for the child until it reaps it; the child's inherited `SlotRef`s are of an older fork generation, so dropping them gives back no count (issue 17.1). |
//! | segment registry (`REGISTRY`) | `shm/segment.rs` | **Taken across the fork**; its weak references name mappings the child inherited, still valid there. |
//! | handle fd tables and notes (`EXPORT`, `IMPORT`, `NOTE`, `NOTED`) | `handle.rs` | Thread-locals: set only while a message is encoded or decoded, never across a fork; new threads start empty. A stale note is cleared before each encode and decode. |
//! | encode / receive buffers (`SCRATCH`, `ENCODE`, `ASSEMBLY`) | `pipe/connection.rs`, `pipe/recv.rs`, `queue/mod.rs` | Thread-locals holding spare buffers; taken and put back within one call. |
//! | thread identity for lock owners (`IDENTITY`) | `sys/thread.rs` | Thread-local, cleared by the `pthread_atfork` child handler (the child's thread has a new tid). |
//! | fork generation (`FORK_GENERATION`) and the handler registration (`ATFORK`, `REGISTER_ATFORK`) | `sys/thread.rs` | Bumped by the handler in every child. The registration runs before `main` (`.init_array`), so the `Once` is complete before any thread exists. |
//! | lock turns and contended-call counts (`TURN`, `CONTENDED_CALLS`) | `sync/raw_mutex.rs` | Thread-local hints: when this thread's turn with a contended lock began, and how many contended lock calls it made since it last yielded its CPU; copied into the child's main thread, where they only decide when the first hand-over or yield comes. |
//! | a getter's long last sleep (`LONG_SLEPT`) | `ring/get.rs` | A thread-local hint (the queue on which this thread's last sleep as a getter was long); copied into the child's main thread, where it only decides whether its first wait on that queue spins before it sleeps. |
//! | learned spin budgets (`LEARNED`) | `sys/futex.rs` | Thread-local hints (how long recent waits on a word took); the forking thread's are copied into the child's main thread, where they are as good a first guess as any; they only decide how long a wait spins before it sleeps. |
//! | "more than one CPU" cache (`MULTI`) | `sys/mod.rs` | **Per process**, and for 250 ms: the answer is stamped with the fork generation and a coarse time, so a child (maybe forked while pinned to one CPU) asks again, as does a process after 250 ms. An atomic, never a `OnceLock`, which a fork during its initialization would leave "running" in the child. |
//! | type names by type tag (`NAMES`) | `codec/ident.rs` | Fine as inherited: a lock-free table (a tag claimed by compare-and-swap, its name an [`OnceBox`]); the names are `&'static str` of the same binary. |
//! | type tag cache (`CACHE`) | `codec/ident.rs` | Thread-local; keyed by the address of a `type_name` string, which is the same in the forked child. |
//! | `Vec<u8>` visitor type id (`ID`) | `codec/cast.rs` | A [`OnceBox`]: lock-free, valid in every process of the same binary. |
//! | pool worker counter (`WORKER_NO`) | `pool/dispatch.rs` | Fine as inherited: an atomic for names. |
//! | pool dispatcher threads | `pool/dispatch.rs` | Not global: each `Pool` starts its own when it is made, so a pool made in the child has one. A `Pool` made *before* the fork is stamped with its generation: in the child it refuses work (`InvalidState`) and its `close` / `terminate` / drop do nothing — its dispatcher thread is not there to join, its workers and sockets are the parent's. |
//! | the panic hook and std's backtrace lock | `fork.rs` (`panic_gate`) | **Taken across the fork** in effect: the first fork wraps the panic hook so that it runs only between forks; the child never inherits the backtrace lock held by a thread printing a panic. |
//! | pool callback threads | `pool/callback.rs` | Not global: one per `Pool`, like its dispatcher. In a child forked after the pool was made, the copy's `terminate` / `join` do nothing (see above), so the missing thread is never joined. |
//! | pool context ids (`NEXT_ID` in `Pool::with_context`) | `pool/mod.rs` | Fine as inherited: an atomic; ids only need to differ within one pool, and a child's pools are its own. |
//! | the pool's panic hook (std's hook, `HOOK_INSTALLED`) and its thread-locals (`CAPTURE`, `WHERE`) | `pool/worker.rs` | Fine as inherited, and that is the point: the hook is installed in the parent before it forks workers, so a forked worker never calls `set_hook` (std's hook lock may have been held at the fork by a panicking thread) and never prints through std's default hook (its backtrace and stderr locks likewise). A child that makes a pool when its parent never did installs the hook itself. |
//! | stdout / stderr locks (std) | `process/mod.rs` | **Taken across the fork** (and flushed before it, so nothing is printed twice). |
//!
//! A new global must be added here, with what happens to it in a forked child.
//!
//! # Safety
//!
//! [`PerProcess`] and [`OnceBox`] hand out `&'static T` from an `AtomicPtr`: every non-null
//! pointer ever stored there comes from `Box::into_raw` and is never freed (values of another
//! generation are leaked, not dropped), so a reference read from it stays valid for the rest
//! of the process, and the `Acquire` load pairs with the `Release` of the store that
//! published it (the value was fully written before).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, Ordering};

use crate::sys::thread::fork_generation;

/// A value made in this process: a forked child that finds its parent's makes its own. One
/// atomic load and a compare per use; lock-free, so nothing the parent held can block it.
pub(crate) struct PerProcess<T: 'static> {
    cur: AtomicPtr<Stamped<T>>,
}

struct Stamped<T> {
    generation: u64,
    value: T,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    /// Empty: every process makes its value on first use.
    pub(crate) const fn new() -> Self {
        PerProcess {
            cur: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, made by `init` on first use in each process (see
    /// [`get_or_try_init`](PerProcess::get_or_try_init)).
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &'static T {
        match self.get_or_try_init(|| Ok::<T, std::convert::Infallible>(init())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// This process's value, made by `init` on first use in each process. Two threads may
    /// both run `init`; the value of the one that publishes second is dropped unused.
    ///
    /// # Errors
    /// Whatever `init` returns (nothing is published then; the next call tries again).
    pub(crate) fn get_or_try_init<E>(
        &self,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<&'static T, E> {
        let generation = fork_generation();
        let mut seen = self.cur.load(Ordering::Acquire);
        if let Some(v) = Self::ours(seen, generation) {
            return Ok(v);
        }
        let fresh = Box::into_raw(Box::new(Stamped {
            generation,
            value: init()?,
        }));
        loop {
            match self
                .cur
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // (The one replaced, if any, was an ancestor's: leaked, never touched.)
                // SAFETY: `fresh` is published and never freed from now on (module docs).
                Ok(_) => return Ok(unsafe { &(*fresh).value }),
                Err(now) => {
                    if let Some(v) = Self::ours(now, generation) {
                        // SAFETY: `fresh` was never published: this thread owns it alone.
                        drop(unsafe { Box::from_raw(fresh) });
                        return Ok(v);
                    }
                    seen = now;
                }
            }
        }
    }

    /// The value behind `p`, if there is one and it was made in this generation.
    fn ours(p: *mut Stamped<T>, generation: u64) -> Option<&'static T> {
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer stored in `cur` was published by `get_or_try_init` and
        // is never freed (module docs); the Acquire load that read it saw it fully written.
        let s = unsafe { &*p };
        (s.generation == generation).then_some(&s.value)
    }
}

/// A value computed once and valid in every process of the program (Python's "constant
/// discovered at run time"): like a `OnceLock`, but lock-free, so a fork while another thread
/// computes it cannot leave the child waiting for a thread it does not have. Two threads may
/// both compute it; one value is kept.
pub(crate) struct OnceBox<T: 'static> {
    cur: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> OnceBox<T> {
    /// Not computed yet.
    pub(crate) const fn new() -> Self {
        OnceBox {
            cur: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The value, if somebody computed it.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.cur.load(Ordering::Acquire);
        // SAFETY: a non-null pointer was published by `get_or_init` and is never freed
        // (module docs); the Acquire load pairs with its publishing store.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The value, computing it with `init` if nobody has yet.
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &'static T {
        let p = self.cur.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: published by this function and never freed (module docs).
            return unsafe { &*p };
        }
        let fresh = Box::into_raw(Box::new(init()));
        match self.cur.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: `fresh` is published and never freed from now on (module docs).
            Ok(_) => unsafe { &*fresh },
            Err(now) => {
                // SAFETY: `fresh` was never published: this thread owns it alone.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: published by another thread and never freed (module docs).
                unsafe { &*now }
            }
        }
    }
}

/// Panic hooks and forks take turns (see [`panic_gate`]).
static PANIC_GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());
static GATE_HOOKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Held across a fork by the forking thread: no panic hook of this process is running then,
/// and none starts until the fork is done.
///
/// Why: std's default panic hook holds a process-wide lock (the backtrace lock) while it
/// prints. A thread forked while another thread was printing a panic inherits that lock
/// held by a thread it does not have, and the child's own first panic then waits for it
/// forever (seen in this crate's test suite: a forked child stuck in `default_hook`). So the
/// first fork wraps the current panic hook (the default one, or the user's) in one that
/// holds the gate's read side while it runs, and every fork takes the write side.
///
/// Take it before stdout/stderr (a running hook may be waiting for stderr) and drop it in
/// the child before the child can panic. A hook set by the user *after* the first fork
/// replaces the wrapper, and then forks no longer wait for it.
pub(crate) fn panic_gate() -> std::sync::RwLockWriteGuard<'static, ()> {
    if !std::thread::panicking()
        && GATE_HOOKED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _turn = PANIC_GATE
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            prev(info)
        }));
    }
    PANIC_GATE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_process_value_is_made_once_and_kept() {
        static V: PerProcess<u32> = PerProcess::new();
        let a = V.get_or_try_init(|| Ok::<_, ()>(7)).unwrap();
        let b = V.get_or_try_init(|| Ok::<_, ()>(8)).unwrap();
        assert_eq!((*a, *b), (7, 7));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn per_process_init_error_publishes_nothing() {
        static V: PerProcess<u32> = PerProcess::new();
        assert_eq!(V.get_or_try_init(|| Err("no")), Err("no"));
        assert_eq!(V.get_or_try_init(|| Ok::<_, ()>(3)), Ok(&3));
    }

    #[test]
    fn per_process_races_keep_one_value() {
        static V: PerProcess<usize> = PerProcess::new();
        let got: Vec<usize> = (0..8)
            .map(|i| std::thread::spawn(move || *V.get_or_try_init(|| Ok::<_, ()>(i)).unwrap()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(got.iter().all(|&v| v == got[0]), "{got:?}");
    }

    #[test]
    fn per_process_value_is_made_again_in_a_forked_child() {
        static V: PerProcess<u32> = PerProcess::new();
        static O: OnceBox<u32> = OnceBox::new();
        assert_eq!((*V.get_or_init(|| 1), *O.get_or_init(|| 1)), (1, 1));
        let in_child = crate::Process::fork(|| (*V.get_or_init(|| 2), *O.get_or_init(|| 2)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            in_child,
            (2, 1),
            "PerProcess is made again, OnceBox is inherited"
        );
        assert_eq!(*V.get_or_init(|| 3), 1);
    }

    #[test]
    fn once_box_keeps_the_first_value() {
        static V: OnceBox<String> = OnceBox::new();
        assert_eq!(V.get_or_init(|| "a".into()), "a");
        assert_eq!(V.get_or_init(|| "b".into()), "a");
    }
}
