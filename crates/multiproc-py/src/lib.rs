//! `multiproc._native`: the Python extension over the `multiproc` library.
//!
//! Thin classes over the library's primitives, with Python's calling conventions
//! (`acquire(block, timeout)`, `put(obj, block, timeout)`), Python's exception classes, and
//! the raw-bytes paths only: pickling happens in the Python package (`python/multiproc/`),
//! which subclasses these classes, adds `__reduce__` for CPython's process-start machinery
//! and builds the `multiprocessing` context.
//!
//! # Blocking calls
//!
//! Every call that can wait first tries without waiting, with the GIL held (no system call
//! on the uncontended path), then waits in slices of at most `SLICE` (50 ms) with the GIL released
//! (`wait_sliced`), calling `PyErr_CheckSignals` between slices: Ctrl-C raises
//! `KeyboardInterrupt` within a slice even when the signal was handled by another thread,
//! and at once when it interrupts the wait itself (futex and poll return on `EINTR`).
//! `Condition.wait` and `Barrier.wait` cannot be cut into slices (a slice that ended would
//! lose the waiter's place, or break the barrier): they call the library's interruptible
//! waits, which ask `signals` after every sleep of at most 100 ms. No thread is ever
//! started here.
//!
//! # Handles across processes
//!
//! `_export()` returns a handle's bytes and duplicates of the fds it refers to (owned by the
//! caller from then on); a class's `_handle=(bytes, fds)` constructor argument rebuilds it
//! from those in another process (the fds are duplicated; the caller keeps its own).

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::ErrorKind;
use pyo3::exceptions::{PyAssertionError, PyEOFError, PyOSError, PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod listener;
mod queue;
mod shm;
mod sync;

pub(crate) use listener::Listener;
pub(crate) use queue::*;
pub(crate) use shm::*;
pub(crate) use sync::*;

/// The longest stretch a blocking call spends with the GIL released before it checks for
/// signals (`KeyboardInterrupt` from a signal handled by another thread).
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Messages up to this size always travel as one frame (the library's smallest frame
/// payload), so a timed send that runs out has sent nothing of them.
const ONE_FRAME: usize = 4096;

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);
pyo3::import_exception!(threading, BrokenBarrierError);
pyo3::create_exception!(
    _native,
    ShutDown,
    pyo3::exceptions::PyException,
    "Raised by put and get on a queue that was shut down (Python 3.13's queue.ShutDown)."
);

/// A deadline from Python's `block`/`timeout` pair: `None` is "forever"; a negative timeout
/// counts as 0 (as in CPython's `SemLock.acquire`); `block=False` ignores the timeout.
pub(crate) fn deadline(block: bool, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    if !block {
        return Ok(Some(Instant::now()));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must not be NaN")),
        Some(t) => {
            let t = Duration::try_from_secs_f64(t.max(0.0))
                .map_err(|_| PyOverflowError::new_err("timeout value is too large"))?;
            // A deadline past what Instant can hold is "forever".
            Ok(Instant::now().checked_add(t))
        }
    }
}

/// Rejects a NaN timeout before any fast path (which would otherwise ignore it).
pub(crate) fn check_timeout(timeout: Option<f64>) -> PyResult<()> {
    match timeout {
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must not be NaN")),
        _ => Ok(()),
    }
}

/// Runs `attempt(slice)` with the GIL released until it returns `Some`, in slices of at most
/// [`SLICE`], checking for signals between them. `Ok(None)` when `deadline` passed first
/// (`attempt` ran at least once, with a zero slice if the deadline had passed already).
///
/// # Errors
///
/// The exception a signal handler raised (`KeyboardInterrupt`, ...).
pub(crate) fn wait_sliced<R: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Duration) -> Option<R> + Sync,
) -> PyResult<Option<R>> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(r) = py.detach(|| attempt(slice)) {
            return Ok(Some(r));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// The `interrupted()` of the library's interruptible waits (`Condition::wait_held`,
/// `Barrier::wait_interruptible`), called with the GIL released: takes the GIL and runs
/// Python's signal handlers; an exception one raises (`KeyboardInterrupt`) is kept in
/// `raised` and ends the wait.
pub(crate) fn signals(raised: &mut Option<PyErr>) -> impl FnMut() -> bool + '_ {
    move || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                *raised = Some(e);
                true
            }
        })
    }
}

/// A library error as the Python exception a `multiprocessing` user expects.
pub(crate) fn to_py(e: multiproc::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::InvalidArgument | ErrorKind::TooLarge | ErrorKind::InvalidState => {
            PyValueError::new_err(msg)
        }
        ErrorKind::Closed => PyOSError::new_err(msg),
        ErrorKind::Disconnected => PyEOFError::new_err(msg),
        ErrorKind::BrokenBarrier => BrokenBarrierError::new_err(msg),
        ErrorKind::Timeout => PyOSError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// Serializes a handle for `_export()`: its bytes and fds the caller owns.
pub(crate) fn export<'py, T: serde::Serialize>(
    py: Python<'py>,
    handle: &T,
) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
    let (bytes, fds) = multiproc::to_bytes_with_fds(handle).map_err(to_py)?;
    let fds = fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
    Ok((PyBytes::new(py, &bytes), fds))
}

/// Rebuilds a handle from `_export()`'s output received in another process; the fds stay
/// the caller's (they are duplicated).
pub(crate) fn import<T: serde::de::DeserializeOwned>(
    (bytes, fds): (Vec<u8>, Vec<RawFd>),
) -> PyResult<T> {
    let owned = fds
        .iter()
        .map(|&fd| {
            if fd < 0 {
                return Err(PyValueError::new_err(format!("invalid fd {fd}")));
            }
            // SAFETY: the fd is only borrowed for the `dup` below, during which the caller
            // (the Python rebuild helper, which owns it) keeps it open; a number that is not
            // an open fd makes `dup` fail with EBADF, and whatever an open one refers to is
            // validated by the handle's deserializer (magic, version, kind, size).
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            b.try_clone_to_owned().map_err(PyErr::from)
        })
        .collect::<PyResult<Vec<OwnedFd>>>()?;
    multiproc::from_bytes_with_fds(&bytes, owned).map_err(to_py)
}

// ---------------------------------------------------------------------------------------
// Connection

/// One end of a pipe (`multiprocessing.connection.Connection`), raw bytes only; `send` and
/// `recv` with pickling are added by the Python subclass.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Connection {
    /// `None` once closed. An `Arc`, so that `close()` from one thread does not wait for
    /// another thread's blocked `recv_bytes` (the fd closes when the last user lets go).
    conn: Mutex<Option<Arc<multiproc::Connection>>>,
    readable: bool,
    writable: bool,
}

impl Connection {
    pub(crate) fn wrap(c: multiproc::Connection) -> Connection {
        Connection {
            readable: c.readable(),
            writable: c.writable(),
            conn: Mutex::new(Some(Arc::new(c))),
        }
    }

    fn get(&self) -> PyResult<Arc<multiproc::Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyOSError::new_err("handle is closed"))
    }

    fn check_readable(&self) -> PyResult<Arc<multiproc::Connection>> {
        let c = self.get()?;
        if !self.readable {
            return Err(PyOSError::new_err("connection is write-only"));
        }
        Ok(c)
    }
}

#[pymethods]
impl Connection {
    /// From another process's `_export()` (`_handle`), or taking over the end of a native
    /// `pipe()` (`_from`, which is closed by it).
    #[new]
    #[pyo3(signature = (*, _handle=None, _from=None))]
    fn py_new(
        _handle: Option<(Vec<u8>, Vec<RawFd>)>,
        _from: Option<PyRef<'_, Connection>>,
    ) -> PyResult<Self> {
        match (_handle, _from) {
            (Some(h), None) => Ok(Connection::wrap(import(h)?)),
            (None, Some(end)) => Ok(Connection {
                readable: end.readable,
                writable: end.writable,
                conn: Mutex::new(Some(end.get()?)),
            })
            .inspect(|_| end.close()),
            _ => Err(PyValueError::new_err(
                "Connection objects come from Pipe() (give _handle or _from, not both)",
            )),
        }
    }

    /// The bytes and fds of this end, for pickling.
    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &*self.get()?)
    }

    #[getter]
    fn readable(&self) -> bool {
        self.readable
    }

    #[getter]
    fn writable(&self) -> bool {
        self.writable
    }

    #[getter]
    fn closed(&self) -> bool {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Closes this end (in this process; other copies stay open).
    fn close(&self) {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn fileno(&self) -> PyResult<RawFd> {
        let c = self.get()?;
        // Not the readiness fd (`try_as_fd` arms it, and an armed receive drops what it finds
        // on the socket with the ring empty): CPython's `reduction.send_handle` writes a raw
        // message straight onto this socket, which must stay there for `recv_handle`.
        c.socket_fd()
            .map(|fd| fd.as_raw_fd())
            .ok_or_else(|| PyOSError::new_err("handle is closed"))
    }

    /// Sends `buf` (any bytes-like object's bytes) as one message.
    fn _send_bytes(&self, py: Python<'_>, buf: &[u8]) -> PyResult<()> {
        let c = self.get()?;
        if !self.writable {
            return Err(PyOSError::new_err("connection is read-only"));
        }
        // Fast path: room in the ring (pipes only: a Listener/Client socket is a byte
        // stream, where a try that found room for half a message would break it).
        if !c.is_socket() {
            match c.try_send_bytes(buf) {
                Ok(()) => return Ok(()),
                Err(multiproc::TrySendError::Full) => {}
                Err(e) => return Err(send_err(e.into())),
            }
        }
        if buf.len() > ONE_FRAME || c.is_socket() {
            // A timed send that runs out cuts a multi-frame message off (the receiver skips
            // it), so slices would start it over and over: one interruptible send instead,
            // with the GIL released; Ctrl-C abandons the message (none of it is delivered).
            // (On a Listener/Client socket it is a plain blocking send: Ctrl-C is seen when
            // it returns.)
            let mut raised = None;
            let r = py.detach(|| c.send_bytes_interruptible(buf, signals(&mut raised)));
            return match (r, raised) {
                (_, Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
                (Err(e), None) => Err(send_err(e.into())),
            };
        }
        let sent = wait_sliced(py, None, |slice| match c.send_bytes_timeout(buf, slice) {
            Ok(()) => Some(Ok(())),
            Err(multiproc::SendTimeoutError::Timeout) => None,
            Err(e) => Some(Err(e)),
        })?;
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(send_err(e.into())),
            None => unreachable!("an unbounded wait ended"),
        }
    }

    /// Receives one message as bytes, waiting as long as it takes. `maxlength`: a longer
    /// message raises `OSError` (it is consumed, as in CPython, which also closes the end).
    #[pyo3(signature = (maxlength=None))]
    fn _recv_bytes<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let c = self.check_readable()?;
        if let Some(m) = maxlength {
            if m < 0 {
                return Err(PyValueError::new_err("negative maxlength"));
            }
        }
        let r = match maxlength {
            // Running out of a slice consumes nothing (the timeout bounds the wait for a
            // message to begin; one that has begun is received whole).
            None => wait_sliced(py, None, |slice| match c.recv_bytes_timeout(slice) {
                Ok(v) => Some(Ok(v)),
                Err(multiproc::RecvTimeoutError::Timeout) => None,
                Err(multiproc::RecvTimeoutError::Eof) => Some(Err(multiproc::RecvError::Eof)),
                Err(e) => Some(Err(multiproc::RecvError::Failed(e.into()))),
            })?
            .expect("an unbounded wait ended"),
            Some(m) => {
                // No timed form of recv_bytes_max: wait for readiness in slices first.
                wait_sliced(py, None, |slice| match c.poll_timeout(slice) {
                    Err(e) if e.is_timeout() => None,
                    // Ready, or closed/failed: the receive says which.
                    _ => Some(()),
                })?;
                py.detach(|| c.recv_bytes_max(m as usize))
            }
        };
        match r {
            Ok(v) => Ok(PyBytes::new(py, &v)),
            Err(multiproc::RecvError::Eof) => Err(PyEOFError::new_err("")),
            Err(multiproc::RecvError::TooLong { len, max }) => Err(PyOSError::new_err(format!(
                "bad message length: {len} bytes is longer than maxlength {max}"
            ))),
            Err(multiproc::RecvError::Failed(e)) => Err(to_py(e)),
            Err(e) => Err(PyOSError::new_err(e.to_string())),
        }
    }

    /// Whether a message (or EOF) is ready, waiting at most `timeout` seconds (`None`:
    /// forever).
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let c = self.check_readable()?;
        match c.try_poll() {
            Ok(()) => return Ok(true),
            Err(e) if e.is_would_block() => {}
            Err(e) => return Err(to_py(e.into())),
        }
        let d = deadline(true, timeout)?;
        if d.is_some_and(|d| d <= Instant::now()) {
            return Ok(false);
        }
        let r = wait_sliced(py, d, |slice| match c.poll_timeout(slice) {
            Ok(()) => Some(Ok(())),
            Err(e) if e.is_timeout() => None,
            Err(e) => Some(Err(e)),
        })?;
        match r {
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(to_py(e.into())),
            None => Ok(false),
        }
    }
}

fn send_err(e: multiproc::Error) -> PyErr {
    match e.kind() {
        ErrorKind::Disconnected => pyo3::exceptions::PyBrokenPipeError::new_err(e.to_string()),
        _ => to_py(e),
    }
}

/// `Pipe(duplex)`: two native connection ends.
#[pyfunction]
#[pyo3(signature = (duplex=true))]
fn pipe(duplex: bool) -> PyResult<(Connection, Connection)> {
    let (a, b) = multiproc::pipe(duplex).map_err(to_py)?;
    Ok((Connection::wrap(a), Connection::wrap(b)))
}

/// Closes an fd handed out by `_export()` (for the Python side's fd owners).
#[pyfunction]
fn _close_fd(fd: RawFd) -> PyResult<()> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!("invalid fd {fd}")));
    }
    // SAFETY: the caller (the Python fd owner) owns `fd`, received from `_export()`, and
    // closes it exactly once (it forgets it afterwards).
    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

/// Signals to `RLock.release()` from a non-owner.
pub(crate) fn not_owner() -> PyErr {
    PyAssertionError::new_err("attempt to release recursive lock not owned by thread")
}

/// Flags kept by a lock object about its last acquisition in this process.
#[derive(Default)]
pub(crate) struct Died(AtomicBool);

impl Died {
    pub(crate) fn set(&self, v: bool) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lock>()?;
    m.add_class::<RLock>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<Event>()?;
    m.add_class::<Barrier>()?;
    m.add_class::<Condition>()?;
    m.add_class::<SharedBuffer>()?;
    m.add_class::<Listener>()?;
    m.add_function(wrap_pyfunction!(listener::client, m)?)?;
    m.add_class::<Queue>()?;
    m.add_class::<Connection>()?;
    m.add_function(wrap_pyfunction!(pipe, m)?)?;
    m.add_function(wrap_pyfunction!(_close_fd, m)?)?;
    m.add("ShutDown", m.py().get_type::<ShutDown>())?;
    Ok(())
}
