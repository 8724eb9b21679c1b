//! Queue, JoinableQueue and SimpleQueue over bytes (the Python side pickles).

use std::os::fd::RawFd;

use multiproc::queue::{GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{deadline, export, import, to_py, wait_sliced, Empty, Full, ShutDown};

type Bytes = Vec<u8>;

enum Kind {
    Plain(multiproc::Queue<Bytes>),
    Joinable(multiproc::JoinableQueue<Bytes>),
    Simple(multiproc::SimpleQueue<Bytes>),
}

/// The shared-memory ring queue behind `Queue`, `JoinableQueue` and `SimpleQueue`
/// (`kind`: "queue", "joinable" or "simple").
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Queue {
    kind: Kind,
}

impl Queue {
    fn q(&self) -> &multiproc::Queue<Bytes> {
        match &self.kind {
            Kind::Plain(q) => q,
            Kind::Joinable(q) => q.as_queue(),
            Kind::Simple(q) => q.as_queue(),
        }
    }

    fn joinable(&self) -> PyResult<&multiproc::JoinableQueue<Bytes>> {
        match &self.kind {
            Kind::Joinable(q) => Ok(q),
            _ => Err(PyValueError::new_err("not a JoinableQueue")),
        }
    }
}

fn shut_down() -> PyErr {
    ShutDown::new_err("the queue was shut down")
}

#[pymethods]
impl Queue {
    /// `maxsize` <= 0 means unbounded, as in CPython.
    #[new]
    #[pyo3(signature = (maxsize=0, *, kind="queue", _handle=None))]
    fn py_new(maxsize: i64, kind: &str, _handle: Option<(Vec<u8>, Vec<RawFd>)>) -> PyResult<Self> {
        let bound = (maxsize > 0).then(|| usize::try_from(maxsize).unwrap_or(usize::MAX));
        let kind = match (kind, _handle) {
            ("queue", Some(h)) => Kind::Plain(import(h)?),
            ("joinable", Some(h)) => Kind::Joinable(import(h)?),
            ("simple", Some(h)) => Kind::Simple(import(h)?),
            ("queue", None) => Kind::Plain(
                match bound {
                    Some(n) => multiproc::Queue::bounded(n),
                    None => multiproc::Queue::new(),
                }
                .map_err(to_py)?,
            ),
            ("joinable", None) => Kind::Joinable(
                match bound {
                    Some(n) => multiproc::JoinableQueue::bounded(n),
                    None => multiproc::JoinableQueue::new(),
                }
                .map_err(to_py)?,
            ),
            ("simple", None) => Kind::Simple(multiproc::SimpleQueue::new().map_err(to_py)?),
            (k, _) => {
                return Err(PyValueError::new_err(format!(
                    "unknown queue kind {k:?} (queue, joinable, simple)"
                )))
            }
        };
        Ok(Queue { kind })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        match &self.kind {
            Kind::Plain(q) => export(py, q),
            Kind::Joinable(q) => export(py, q),
            Kind::Simple(q) => export(py, q),
        }
    }

    /// Puts one message (already pickled). Raises `queue.Full` when it does not fit in
    /// time, `ShutDown` after `shutdown()`.
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn put_bytes(
        &self,
        py: Python<'_>,
        data: &[u8],
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        crate::check_timeout(timeout)?;
        let q = self.q();
        match q.try_put_bytes(data) {
            Ok(()) => return Ok(()),
            Err(TryPutError::Full(())) => {}
            Err(TryPutError::Closed(())) => return Err(shut_down()),
            Err(TryPutError::Failed((), e)) => return Err(to_py(e)),
        }
        if !block {
            return Err(Full::new_err(()));
        }
        let d = deadline(block, timeout)?;
        let r = wait_sliced(py, d, |slice| match q.put_bytes_timeout(data, slice) {
            Ok(()) => Some(Ok(())),
            Err(PutTimeoutError::Timeout(())) => None,
            Err(e) => Some(Err(e)),
        })?;
        match r {
            Some(Ok(())) => Ok(()),
            Some(Err(PutTimeoutError::Closed(()))) => Err(shut_down()),
            Some(Err(e)) => Err(to_py(e.into())),
            None => Err(Full::new_err(())),
        }
    }

    /// Takes one message's bytes. Raises `queue.Empty` when none comes in time, `ShutDown`
    /// once the queue was shut down and drained.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get_bytes<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        crate::check_timeout(timeout)?;
        let q = self.q();
        match q.try_get_bytes() {
            Ok(v) => return Ok(PyBytes::new(py, &v)),
            Err(TryGetError::Empty) => {}
            Err(TryGetError::Closed) => return Err(shut_down()),
            Err(e) => return Err(to_py(e.into())),
        }
        if !block {
            return Err(Empty::new_err(()));
        }
        let d = deadline(block, timeout)?;
        let r = wait_sliced(py, d, |slice| match q.get_bytes_timeout(slice) {
            Ok(v) => Some(Ok(v)),
            Err(GetTimeoutError::Timeout) => None,
            Err(e) => Some(Err(e)),
        })?;
        match r {
            Some(Ok(v)) => Ok(PyBytes::new(py, &v)),
            Some(Err(GetTimeoutError::Closed)) => Err(shut_down()),
            Some(Err(e)) => Err(to_py(e.into())),
            None => Err(Empty::new_err(())),
        }
    }

    /// The readiness fd (readable while a message is waiting or the queue is shut down),
    /// brought in step with the queue first: not readable over an empty queue even right
    /// after a get took the last message. The fd stays the queue's (do not close it).
    fn _settled_fd(&self) -> PyResult<RawFd> {
        self.q()
            .settled_fd()
            .map(|fd| std::os::fd::AsRawFd::as_raw_fd(&fd))
            .ok_or_else(|| pyo3::exceptions::PyOSError::new_err("this queue has no readiness fd"))
    }

    fn qsize(&self) -> usize {
        self.q().len()
    }
    fn empty(&self) -> bool {
        self.q().is_empty()
    }
    fn full(&self) -> bool {
        self.q().is_full()
    }
    #[getter]
    fn _maxsize(&self) -> Option<usize> {
        self.q().maxsize()
    }

    /// Ends the stream for everyone (Python 3.13's `shutdown()`): puts raise `ShutDown`,
    /// gets drain what is left and then raise `ShutDown`; blocked callers wake at once.
    fn shutdown(&self) {
        self.q().close()
    }

    #[getter]
    fn is_shutdown(&self) -> bool {
        self.q().is_closed()
    }

    /// JoinableQueue: one item taken earlier is done.
    fn task_done(&self) -> PyResult<()> {
        self.joinable()?
            .task_done()
            .map_err(|_| PyValueError::new_err("task_done() called too many times"))
    }

    /// JoinableQueue: waits until every item put has been marked done; `False` on timeout.
    #[pyo3(signature = (timeout=None))]
    fn _join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let q = self.joinable()?;
        if q.try_join().is_ok() {
            return Ok(true);
        }
        let d = deadline(true, timeout)?;
        Ok(wait_sliced(py, d, |slice| q.join_timeout(slice).ok())?.is_some())
    }
}
