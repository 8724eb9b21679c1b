//! Lock, RLock, Semaphore/BoundedSemaphore, Event, Barrier and Condition with Python's calls.
//!
//! A Python `acquire()` has no guard to hold, so the library's guard is leaked
//! (`mem::forget`, or `SemaphoreGuard::forget`) and `release()` uses the library's bare
//! release (`Lock::release`, `RLock::release`, `Semaphore::release`).

use std::os::fd::RawFd;
use std::time::Duration;

use multiproc::sync::{LockTimeoutError, TryLockError};
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{
    check_timeout, deadline, export, import, not_owner, signals, to_py, wait_sliced,
    BrokenBarrierError, Died,
};

type Handle = Option<(Vec<u8>, Vec<RawFd>)>;

/// What `Lock` and `RLock` share: the library's robust locks (`multiproc::Lock`,
/// `multiproc::RLock`), for [`Robust`].
trait RobustLock: Sized + Sync + serde::Serialize + serde::de::DeserializeOwned {
    type Guard<'a>
    where
        Self: 'a;
    fn create() -> multiproc::Result<Self>;
    fn try_lock(&self) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;
    fn lock_timeout(
        &self,
        t: Duration,
    ) -> Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>>;
    /// Whether the calling thread holds it more than once (re-entered).
    fn reentered(&self) -> bool;
}

/// `RobustLock` for one of the library's locks: its own methods of the same names, and
/// `reentered` from `$l`, the lock.
macro_rules! robust_lock {
    ($t:ty, $guard:ident, |$l:ident| $reentered:expr) => {
        impl RobustLock for $t {
            type Guard<'a> = multiproc::sync::$guard<'a>;
            fn create() -> multiproc::Result<Self> {
                Self::new()
            }
            fn try_lock(&self) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>> {
                self.try_lock()
            }
            fn lock_timeout(
                &self,
                t: Duration,
            ) -> Result<Self::Guard<'_>, LockTimeoutError<Self::Guard<'_>>> {
                self.lock_timeout(t)
            }
            fn reentered(&self) -> bool {
                let $l = self;
                $reentered
            }
        }
    };
}

robust_lock!(multiproc::Lock, LockGuard, |_l| false);
robust_lock!(multiproc::RLock, RLockGuard, |l| l.depth() > 1);

/// A robust lock with what this process's last acquisition found (`owner_died`).
struct Robust<L> {
    lock: L,
    died: Died,
}

impl<L: RobustLock> Robust<L> {
    /// A new lock, or one from another process's `_export()`.
    fn new(handle: Handle) -> PyResult<Self> {
        let lock = match handle {
            Some(h) => import(h)?,
            None => L::create().map_err(to_py)?,
        };
        Ok(Robust {
            lock,
            died: Died::default(),
        })
    }

    fn export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.lock)
    }

    /// Python's `acquire(block, timeout)`: first a try with the GIL held (one CAS when
    /// free), then waits in slices. The guard is leaked (`release()` undoes it). Records
    /// whether it took the lock over from a holder that died (re-entering keeps what the
    /// first level found).
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        check_timeout(timeout)?;
        let kept = |g: L::Guard<'_>, died: bool| {
            std::mem::forget(g);
            died
        };
        let got = match self.lock.try_lock() {
            Ok(g) => Some(kept(g, false)),
            Err(e) => e.into_guard().map(|g| kept(g, true)),
        };
        let got = match got {
            Some(d) => Some(d),
            None if !block => None,
            None => wait_sliced(py, deadline(block, timeout)?, |slice| {
                match self.lock.lock_timeout(slice) {
                    Ok(g) => Some(kept(g, false)),
                    Err(e) => e.into_guard().map(|g| kept(g, true)),
                }
            })?,
        };
        if let Some(died) = got.filter(|&d| d || !self.lock.reentered()) {
            self.died.set(died);
        }
        Ok(got.is_some())
    }
}

/// The `#[pymethods]` of a robust lock class (`Lock`, `RLock`: a struct with `h: Robust<_>`):
/// the methods they share, then the class's own (`release` and the `SemLock` internals that
/// CPython's Condition and Queue read as `_semlock`).
macro_rules! robust_lock_methods {
    ($cls:ident { $($own:tt)* }) => {
        #[pymethods]
        impl $cls {
            #[new]
            #[pyo3(signature = (*, _handle=None))]
            fn py_new(_handle: Handle) -> PyResult<Self> {
                Robust::new(_handle).map(|h| $cls { h })
            }

            fn _export<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
                self.h.export(py)
            }

            /// `acquire(block=True, timeout=None)`: True when taken.
            #[pyo3(signature = (block=true, timeout=None))]
            fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
                self.h.acquire(py, block, timeout)
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
                self.release()
            }

            /// True when this process's last acquisition took the lock over from a holder
            /// that died holding it (what it protected may be inconsistent).
            #[getter]
            fn owner_died(&self) -> bool {
                self.h.died.get()
            }

            fn _is_mine(&self) -> bool {
                self.h.lock.is_owned()
            }

            /// Nothing to do: ownership is by thread identity, and a forked child's thread
            /// is new.
            fn _after_fork(&self) {}

            $($own)*
        }
    };
}

/// `multiprocessing.Lock`, robust to its holder's death: the next acquirer takes it over
/// and `owner_died` tells it so.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Lock {
    h: Robust<multiproc::Lock>,
}

robust_lock_methods!(Lock {
    /// Releases, whoever holds it (a CPython Lock is a binary semaphore).
    fn release(&self) -> PyResult<()> {
        self.h
            .lock
            .release()
            .map_err(|_| PyValueError::new_err("semaphore or lock released too many times"))
    }

    /// Whether somebody holds the lock now (a snapshot).
    fn locked(&self) -> bool {
        self.h.lock.is_locked()
    }

    fn _count(&self) -> u32 {
        u32::from(self.h.lock.is_owned())
    }
    fn _get_value(&self) -> u32 {
        u32::from(!self.h.lock.is_locked())
    }
    fn _is_zero(&self) -> bool {
        self.h.lock.is_locked()
    }
});

/// `multiprocessing.RLock`: re-entrant per thread; release by a non-owner raises.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct RLock {
    h: Robust<multiproc::RLock>,
}

robust_lock_methods!(RLock {
    fn release(&self) -> PyResult<()> {
        self.h.lock.release().map_err(|_| not_owner())
    }

    /// This thread's recursion depth.
    fn _count(&self) -> u32 {
        self.h.lock.depth()
    }
    fn _get_value(&self) -> u32 {
        u32::from(self.h.lock.depth() == 0 && !self.h.lock.is_owned())
    }
    fn _is_zero(&self) -> bool {
        self._get_value() == 0
    }
});

enum Sem {
    Plain(multiproc::Semaphore),
    Bounded(multiproc::BoundedSemaphore),
}

macro_rules! on_sem {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            Sem::Plain($v) => $e,
            Sem::Bounded($v) => $e,
        }
    };
}

/// `multiprocessing.Semaphore` and (with `bounded=True`) `BoundedSemaphore`.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Semaphore {
    sem: Sem,
}

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (value=1, *, bounded=false, _handle=None))]
    fn py_new(value: i64, bounded: bool, _handle: Handle) -> PyResult<Self> {
        if let Some(h) = _handle {
            let sem = if bounded {
                Sem::Bounded(import(h)?)
            } else {
                Sem::Plain(import(h)?)
            };
            return Ok(Semaphore { sem });
        }
        if value < 0 {
            return Err(PyValueError::new_err(
                "semaphore initial value must be >= 0",
            ));
        }
        let value = u32::try_from(value)
            .map_err(|_| PyValueError::new_err("semaphore initial value is too large"))?;
        let sem = if bounded {
            if value == 0 {
                return Err(PyValueError::new_err(
                    "a BoundedSemaphore needs an initial value of at least 1",
                ));
            }
            Sem::Bounded(multiproc::BoundedSemaphore::new(value).map_err(to_py)?)
        } else {
            Sem::Plain(multiproc::Semaphore::new(value).map_err(to_py)?)
        };
        Ok(Semaphore { sem })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        on_sem!(&self.sem, s => export(py, s))
    }

    #[getter]
    fn _bounded(&self) -> bool {
        matches!(self.sem, Sem::Bounded(_))
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        check_timeout(timeout)?;
        let fast = on_sem!(&self.sem, s => s.try_acquire().map(|g| g.forget()).is_ok());
        if fast {
            return Ok(true);
        }
        if !block {
            return Ok(false);
        }
        let d = deadline(block, timeout)?;
        let got = wait_sliced(
            py,
            d,
            |slice| on_sem!(&self.sem, s => s.acquire_timeout(slice).ok().map(|g| g.forget())),
        )?;
        Ok(got.is_some())
    }

    fn release(&self) -> PyResult<()> {
        on_sem!(&self.sem, s => s.release()).map_err(|e| match self.sem {
            Sem::Bounded(_) => PyValueError::new_err("semaphore or lock released too many times"),
            Sem::Plain(_) => to_py(e),
        })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    fn get_value(&self) -> u32 {
        on_sem!(&self.sem, s => s.value())
    }
    fn _get_value(&self) -> u32 {
        self.get_value()
    }
    fn _is_zero(&self) -> bool {
        self.get_value() == 0
    }
    /// A semaphore has no owner.
    fn _is_mine(&self) -> bool {
        false
    }
    fn _count(&self) -> u32 {
        0
    }
    fn _after_fork(&self) {}
}

/// `multiprocessing.Event`.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Event {
    ev: multiproc::Event,
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (*, _handle=None))]
    fn py_new(_handle: Handle) -> PyResult<Self> {
        let ev = match _handle {
            Some(h) => import(h)?,
            None => multiproc::Event::new().map_err(to_py)?,
        };
        Ok(Event { ev })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.ev)
    }

    fn is_set(&self) -> bool {
        self.ev.is_set()
    }
    fn set(&self) {
        self.ev.set()
    }
    fn clear(&self) {
        self.ev.clear()
    }

    /// `wait(timeout=None)`: True when set.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.ev.is_set() {
            return Ok(true);
        }
        let d = deadline(true, timeout)?;
        let got = wait_sliced(py, d, |slice| self.ev.wait_timeout(slice).ok())?;
        Ok(got.is_some())
    }
}

/// `multiprocessing.Barrier` without an action (the Python side falls back to CPython's
/// Barrier for one with an action).
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Barrier {
    b: multiproc::Barrier,
}

#[pymethods]
impl Barrier {
    #[new]
    #[pyo3(signature = (parties=1, *, _handle=None))]
    fn py_new(parties: i64, _handle: Handle) -> PyResult<Self> {
        let b = match _handle {
            Some(h) => import(h)?,
            None => {
                let n = u32::try_from(parties)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| PyValueError::new_err("parties must be > 0"))?;
                multiproc::Barrier::new(n).map_err(to_py)?
            }
        };
        Ok(Barrier { b })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.b)
    }

    /// Waits for the other parties, at most `timeout` seconds (`None`: forever); returns
    /// this party's index (0..parties). Running out breaks the barrier (as in Python).
    #[pyo3(signature = (timeout=None))]
    fn _wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
        let d = deadline(true, timeout)?;
        // One call, not slices: the library breaks the barrier when a party's wait runs
        // out (Python's rule), so a slice that ended would break it for everyone. Ctrl-C
        // ends the wait (and so breaks the barrier for the others, as a timeout does).
        let mut raised = None;
        let r = py.detach(|| self.b.wait_interruptible(d, signals(&mut raised)));
        match (r, raised) {
            (_, Some(e)) => Err(e),
            (Ok(i), None) => Ok(i),
            (Err(_), None) => Err(BrokenBarrierError::new_err("")),
        }
    }

    fn abort(&self) {
        self.b.abort()
    }
    fn reset(&self) {
        self.b.reset()
    }
    #[getter]
    fn parties(&self) -> u32 {
        self.b.parties()
    }
    #[getter]
    fn n_waiting(&self) -> u32 {
        self.b.n_waiting()
    }
    #[getter]
    fn broken(&self) -> bool {
        self.b.is_broken()
    }
}

/// `multiprocessing.Condition` over one of our `Lock`s or `RLock`s: the caller holds the lock
/// through the lock object itself (`acquire()`/`release()` are the Python side's, on that
/// object); this class waits and notifies.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Condition {
    cond: multiproc::Condition,
    died: Died,
}

#[pymethods]
impl Condition {
    /// A condition over `lock`, a native `Lock` or `RLock` (the same shared lock: holding
    /// one is holding the other); or from another process's `_export()` (`_handle`).
    #[new]
    #[pyo3(signature = (lock=None, *, _handle=None))]
    fn py_new(lock: Option<&Bound<'_, PyAny>>, _handle: Handle) -> PyResult<Self> {
        let cond = match (_handle, lock) {
            (Some(h), _) => import(h)?,
            (None, Some(l)) => {
                if let Ok(l) = l.cast::<Lock>() {
                    multiproc::Condition::with_lock(l.get().h.lock.clone()).map_err(to_py)?
                } else if let Ok(l) = l.cast::<RLock>() {
                    multiproc::Condition::with_rlock(l.get().h.lock.clone()).map_err(to_py)?
                } else {
                    return Err(PyTypeError::new_err(
                        "a Condition's lock must be a multiproc Lock or RLock",
                    ));
                }
            }
            (None, None) => multiproc::Condition::new().map_err(to_py)?,
        };
        Ok(Condition {
            cond,
            died: Died::default(),
        })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.cond)
    }

    /// Releases the lock (every level of an RLock), waits for a notification at most
    /// `timeout` seconds (`None`: forever), takes the lock back; True when notified. A
    /// signal's exception (`KeyboardInterrupt`) is raised with the lock held again.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let d = deadline(true, timeout)?;
        let mut raised = None;
        let r = py.detach(|| self.cond.wait_held(d, signals(&mut raised)));
        let (how, died) = r.map_err(|_| {
            PyAssertionError::new_err("must acquire() condition before using wait()")
        })?;
        self.died.set(died);
        match (how, raised) {
            (_, Some(e)) => Err(e),
            (multiproc::sync::HeldWait::Notified, None) => Ok(true),
            _ => Ok(false),
        }
    }

    /// Wakes up to `n` waiters (the oldest first).
    #[pyo3(signature = (n=1))]
    fn notify(&self, n: i64) -> PyResult<()> {
        let n = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        self.cond
            .notify_held(n)
            .map_err(|_| PyAssertionError::new_err("lock is not owned"))
    }

    /// Wakes every waiter.
    fn notify_all(&self) -> PyResult<()> {
        self.notify(i64::from(u32::MAX))
    }

    /// True when the last `wait` of this process took the lock back from a holder that died.
    #[getter]
    fn owner_died(&self) -> bool {
        self.died.get()
    }

    /// Waiters no notify chose yet.
    fn _waiting(&self) -> u32 {
        self.cond.waiters().0
    }

    /// Notifications sent and not yet taken by their waiters.
    fn _notified(&self) -> u32 {
        self.cond.waiters().1
    }
}
