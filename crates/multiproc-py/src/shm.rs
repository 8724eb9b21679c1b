//! `SharedBuffer`: the memory behind `Value`, `Array`, `RawValue` and `RawArray`.

use std::os::fd::RawFd;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{export, import, to_py};

/// A block of zeroed shared memory (the library's anonymous `SharedMemory`, a sealed memfd)
/// that the Python side lays a ctypes object over (`from_address`, kept alive by the object's
/// `_wrapper`): CPython's `sharedctypes` classes over our memory.
#[pyclass(module = "multiproc._native", frozen, subclass)]
pub struct SharedBuffer {
    shm: multiproc::SharedMemory,
}

#[pymethods]
impl SharedBuffer {
    /// `size` zero bytes (at least 1), or another process's `_export()` (`_handle`).
    #[new]
    #[pyo3(signature = (size=1, *, _handle=None))]
    fn py_new(size: i64, _handle: Option<(Vec<u8>, Vec<RawFd>)>) -> PyResult<Self> {
        let shm = match _handle {
            Some(h) => import(h)?,
            None => {
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| PyValueError::new_err("size must be a positive integer"))?;
                multiproc::SharedMemory::create(size).map_err(to_py)?
            }
        };
        Ok(SharedBuffer { shm })
    }

    fn _export<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Vec<RawFd>)> {
        export(py, &self.shm)
    }

    /// Where the block starts in this process (valid while this object lives).
    #[getter]
    fn address(&self) -> usize {
        self.shm.as_ptr() as usize
    }

    /// Its size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.shm.size()
    }
}
