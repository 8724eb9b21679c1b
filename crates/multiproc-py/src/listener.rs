//! `Listener` and `client()`: connections between unrelated processes (the library's
//! `Listener`/`Client`, on CPython's wire format and authentication handshake).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use multiproc::pipe::Address;
use multiproc::ErrorKind;
use pyo3::exceptions::{PyConnectionRefusedError, PyFileNotFoundError, PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::{to_py, wait_sliced, Connection};

/// A Python address as the library's: a `str` is a Unix socket path (a leading NUL: a name in
/// the abstract namespace), a `(host, port)` tuple a TCP address.
fn to_address(obj: &Bound<'_, PyAny>) -> PyResult<Address> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Address::from(PathBuf::from(s.to_str()?)));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        if t.len() == 2 {
            let host: String = t.get_item(0)?.extract()?;
            let port: u16 = t.get_item(1)?.extract()?;
            return Ok(match host.parse() {
                Ok(ip) => Address::Tcp(std::net::SocketAddr::new(ip, port)),
                Err(_) => Address::Host(host, port),
            });
        }
    }
    Err(PyTypeError::new_err(format!(
        "address type of {} unrecognized (a str path or a (host, port) tuple)",
        obj.repr()?
    )))
}

/// The library's address as Python's (`str` or `(host, port)`).
fn py_address<'py>(py: Python<'py>, a: &Address) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        Address::Unix(p) => p.to_string_lossy().into_pyobject(py)?.into_any(),
        Address::Abstract(n) => format!("\0{}", String::from_utf8_lossy(n))
            .into_pyobject(py)?
            .into_any(),
        Address::Tcp(s) => (s.ip().to_string(), s.port()).into_pyobject(py)?.into_any(),
        Address::Host(h, p) => (h.clone(), *p).into_pyobject(py)?.into_any(),
        other => other.to_string().into_pyobject(py)?.into_any(),
    })
}

/// A connection error as CPython's: `AuthenticationError` for a failed handshake.
fn conn_err(e: multiproc::Error) -> PyErr {
    match e.kind() {
        ErrorKind::AuthenticationFailed => AuthenticationError::new_err(e.to_string()),
        _ => to_py(e),
    }
}

pyo3::import_exception!(multiprocessing, AuthenticationError);

/// `multiprocessing.connection.Listener`'s socket part: binds at construction, accepts
/// (authenticating with `authkey` when given) until closed.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct Listener {
    /// `None` once closed (a Unix socket path is removed then).
    l: Mutex<Option<Arc<multiproc::Listener>>>,
}

impl Listener {
    fn get(&self) -> PyResult<Arc<multiproc::Listener>> {
        self.l
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyOSError::new_err("listener is closed"))
    }
}

#[pymethods]
impl Listener {
    #[new]
    #[pyo3(signature = (address, authkey=None))]
    fn py_new(address: &Bound<'_, PyAny>, authkey: Option<Vec<u8>>) -> PyResult<Self> {
        let mut l = multiproc::Listener::bind(to_address(address)?).map_err(to_py)?;
        if let Some(k) = authkey {
            l = l.with_authkey(k);
        }
        Ok(Listener {
            l: Mutex::new(Some(Arc::new(l))),
        })
    }

    /// Where it listens (with the real port when bound to port 0).
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_address(py, self.get()?.address())
    }

    /// Waits for a client (Ctrl-C interrupts the wait) and authenticates it.
    fn _accept(&self, py: Python<'_>) -> PyResult<Connection> {
        let l = self.get()?;
        let r = wait_sliced(py, None, |slice| match l.accept_timeout(slice) {
            Err(e) if e.kind() == ErrorKind::Timeout => None,
            r => Some(r),
        })?
        .expect("an unbounded wait ended");
        Ok(Connection::wrap(r.map_err(conn_err)?))
    }

    /// Stops listening (a Unix socket's path is removed).
    fn close(&self) {
        self.l.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// `multiprocessing.connection.Client`: connects to `address`, authenticating with
/// `authkey` when given.
#[pyfunction]
#[pyo3(signature = (address, authkey=None))]
pub fn client(
    py: Python<'_>,
    address: &Bound<'_, PyAny>,
    authkey: Option<Vec<u8>>,
) -> PyResult<Connection> {
    let address = to_address(address)?;
    let unix = matches!(address, Address::Unix(_) | Address::Abstract(_));
    let mut c = multiproc::Client::new(address);
    if let Some(k) = authkey {
        c = c.authkey(k);
    }
    let conn = py.detach(|| c.connect()).map_err(|e| match e.kind() {
        // Nobody listens: CPython's exceptions.
        ErrorKind::NotFound if unix => PyFileNotFoundError::new_err(e.to_string()),
        ErrorKind::NotFound => PyConnectionRefusedError::new_err(e.to_string()),
        _ => conn_err(e),
    })?;
    Ok(Connection::wrap(conn))
}
