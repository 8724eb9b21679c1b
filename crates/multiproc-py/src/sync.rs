//! Lock, RLock, Semaphore/BoundedSemaphore, Event, Barrier and Condition with Python's calls.
//!
//! A Python `acquire()` has no guard to hold, so the library's guard is leaked
//! (`mem::forget`, or `SemaphoreGuard::forget`) and `release()` uses the library's bare
//! release (`Lock::release`, `RLock::release`, `Semaphore::release`).

use std::os::fd::RawFd;

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{
    check_timeout, deadline, died, export, import, not_owner, signals, to_py, wait_sliced,
    BrokenBarrierError, Died,
};

type Handle = Option<(Vec<u8>, Vec<RawFd>)>;

/// `multiprocessing.Lock`, robust to its holder's death: the next acquirer takes it over
/// and `owner_died` tells it so.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Lock {
    lock: multiproc::Lock,
    died: Died,
}

#[pymethods]
impl Lock {
    #[new]
    #[pyo3(signature = (*, _handle=None))]
    fn py_new(_handle: Handle) -> PyResult<Self> {
        let lock = match _handle {
            Some(h) => import(h)?,
            None => multiproc::Lock::new().map_err(to_py)?,
        };
        Ok(Lock {
            lock,
            died: Died::default(),
        })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.lock)
    }

    /// `acquire(block=True, timeout=None)`: True when taken.
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        check_timeout(timeout)?;
        // Fast path, GIL held: a free lock costs one CAS.
        match self.lock.try_lock() {
            Ok(g) => {
                std::mem::forget(g);
                self.died.set(false);
                return Ok(true);
            }
            Err(multiproc::sync::TryLockError::OwnerDied(e)) => {
                std::mem::forget(e.into_inner());
                self.died.set(true);
                return Ok(true);
            }
            Err(_) if !block => return Ok(false),
            Err(_) => {}
        }
        let d = deadline(block, timeout)?;
        let got = wait_sliced(py, d, |slice| match self.lock.lock_timeout(slice) {
            Ok(g) => Some(died(Ok(g))),
            Err(multiproc::sync::LockTimeoutError::OwnerDied(e)) => {
                Some(died(Err::<multiproc::sync::LockGuard<'_>, _>(e)))
            }
            Err(_) => None,
        })?;
        Ok(match got {
            Some(d) => {
                self.died.set(d);
                true
            }
            None => false,
        })
    }

    /// Releases, whoever holds it (a CPython Lock is a binary semaphore).
    fn release(&self) -> PyResult<()> {
        self.lock
            .release()
            .map_err(|_| PyValueError::new_err("semaphore or lock released too many times"))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Whether somebody holds the lock now (a snapshot).
    fn locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// True when this process's last acquisition took the lock over from a holder that
    /// died holding it (what it protected may be inconsistent).
    #[getter]
    fn owner_died(&self) -> bool {
        self.died.get()
    }

    // The `SemLock` internals that CPython's Condition and Queue read (as `_semlock`).
    fn _is_mine(&self) -> bool {
        self.lock.is_owned()
    }
    fn _count(&self) -> u32 {
        u32::from(self.lock.is_owned())
    }
    fn _get_value(&self) -> u32 {
        u32::from(!self.lock.is_locked())
    }
    fn _is_zero(&self) -> bool {
        self.lock.is_locked()
    }
    /// Nothing to do: ownership is by thread identity, and a forked child's thread is new.
    fn _after_fork(&self) {}
}

/// `multiprocessing.RLock`: re-entrant per thread; release by a non-owner raises.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct RLock {
    lock: multiproc::RLock,
    died: Died,
}

#[pymethods]
impl RLock {
    #[new]
    #[pyo3(signature = (*, _handle=None))]
    fn py_new(_handle: Handle) -> PyResult<Self> {
        let lock = match _handle {
            Some(h) => import(h)?,
            None => multiproc::RLock::new().map_err(to_py)?,
        };
        Ok(RLock {
            lock,
            died: Died::default(),
        })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.lock)
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        check_timeout(timeout)?;
        match self.lock.try_lock() {
            Ok(g) => {
                std::mem::forget(g);
                return Ok(true);
            }
            Err(multiproc::sync::TryLockError::OwnerDied(e)) => {
                std::mem::forget(e.into_inner());
                self.died.set(true);
                return Ok(true);
            }
            Err(_) if !block => return Ok(false),
            Err(_) => {}
        }
        let d = deadline(block, timeout)?;
        let got = wait_sliced(py, d, |slice| match self.lock.lock_timeout(slice) {
            Ok(g) => Some(died(Ok(g))),
            Err(multiproc::sync::LockTimeoutError::OwnerDied(e)) => {
                Some(died(Err::<multiproc::sync::RLockGuard<'_>, _>(e)))
            }
            Err(_) => None,
        })?;
        Ok(match got {
            Some(d) => {
                self.died.set(d);
                true
            }
            None => false,
        })
    }

    fn release(&self) -> PyResult<()> {
        self.lock.release().map_err(|_| not_owner())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.release()
    }

    #[getter]
    fn owner_died(&self) -> bool {
        self.died.get()
    }

    fn _is_mine(&self) -> bool {
        self.lock.is_owned()
    }
    /// This thread's recursion depth.
    fn _count(&self) -> u32 {
        self.lock.depth()
    }
    fn _get_value(&self) -> u32 {
        u32::from(self.lock.depth() == 0 && !self.lock.is_owned())
    }
    fn _is_zero(&self) -> bool {
        self._get_value() == 0
    }
    fn _after_fork(&self) {}
}

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
                    multiproc::Condition::with_lock(l.get().lock.clone()).map_err(to_py)?
                } else if let Ok(l) = l.cast::<RLock>() {
                    multiproc::Condition::with_rlock(l.get().lock.clone()).map_err(to_py)?
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
