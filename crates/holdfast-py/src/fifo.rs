//! `holdfast.FifoLock`: waiters served in arrival order across processes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use holdfast::tokio::{AsyncFifoLock, OwnedFifoGuard};
use holdfast::{Error, FifoLock, Wait};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::{convert, errors, runtime};

/// The native half of `holdfast.FifoLock`. Every acquisition has its own
/// ticket and open file descriptions (threads and tasks queue like
/// processes); waits run on the runtime thread (see `runtime`), so a
/// waiter keeps its place in the queue however the caller waits.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct NativeFifoLock {
    lock: Arc<AsyncFifoLock>,
    /// The blocking lock, for `queue_len()`.
    plain: FifoLock,
    path: PathBuf,
}

#[pymethods]
impl NativeFifoLock {
    #[new]
    #[pyo3(signature = (path, *, backend, record, create_parents, follow_symlinks, mode, queue_path, remove_queue_when_idle))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: &[u8],
        backend: &str,
        record: bool,
        create_parents: bool,
        follow_symlinks: bool,
        mode: u32,
        queue_path: Option<&[u8]>,
        remove_queue_when_idle: bool,
    ) -> PyResult<Self> {
        let path = convert::path(path)?;
        let mut opts = FifoLock::options();
        opts.backend(convert::backend(backend)?)
            .holder_record(record)
            .create_parents(create_parents)
            .follow_symlinks(follow_symlinks)
            .permissions(convert::permissions(mode)?)
            .remove_queue_when_idle(remove_queue_when_idle);
        if let Some(q) = queue_path {
            opts.queue_path(convert::path(q)?);
        }
        let (lock, plain) = py
            .detach(|| {
                Ok::<_, Error>((
                    AsyncFifoLock::with_options(&opts, &path)?,
                    opts.open(&path)?,
                ))
            })
            .map_err(errors::err(py))?;
        Ok(NativeFifoLock {
            lock: Arc::new(lock),
            plain,
            path,
        })
    }

    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        convert::path_out(py, &self.path)
    }

    #[pyo3(signature = (shared, timeout, blocking))]
    fn acquire(
        &self,
        py: Python<'_>,
        shared: bool,
        timeout: Option<f64>,
        blocking: bool,
    ) -> PyResult<FifoHandle> {
        let mode = convert::mode(shared);
        let wait = convert::wait(timeout, blocking)?;
        let a = Arc::clone(&self.lock);
        let g = runtime::wait(py, async move { a.acquire(mode, wait).await })?;
        Ok(FifoHandle::new(g))
    }

    #[pyo3(signature = (shared, timeout, blocking, callback))]
    fn acquire_async(
        &self,
        py: Python<'_>,
        shared: bool,
        timeout: Option<f64>,
        blocking: bool,
        callback: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let mode = convert::mode(shared);
        let wait = convert::wait(timeout, blocking)?;
        let a = Arc::clone(&self.lock);
        if wait == Wait::NoWait {
            let r = runtime::handle()?.block_on(async move { a.acquire(mode, Wait::NoWait).await });
            return match r {
                Ok(g) => Ok(Py::new(py, FifoHandle::new(g))?.into_any()),
                Err(e) => Err(errors::to_py(py, e)),
            };
        }
        let pending = runtime::spawn_async(
            async move { a.acquire(mode, wait).await },
            callback,
            |py, g| Ok(Py::new(py, FifoHandle::new(g))?.into_any()),
        )?;
        Ok(Py::new(py, pending)?.into_any())
    }

    /// Live tickets in the queue: the holder plus the waiters.
    fn queue_len(&self, py: Python<'_>) -> PyResult<usize> {
        let plain = &self.plain;
        py.detach(|| plain.queue_len()).map_err(errors::err(py))
    }

    fn holders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let path = self.path.clone();
        let st = py
            .detach(|| holdfast::status(&path))
            .map_err(errors::err(py))?;
        convert::holders(py, &st.holders)
    }
}

/// One held FIFO acquisition.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct FifoHandle {
    guard: Mutex<Option<OwnedFifoGuard>>,
}

impl FifoHandle {
    fn new(g: OwnedFifoGuard) -> Self {
        FifoHandle {
            guard: Mutex::new(Some(g)),
        }
    }
    fn with<R>(&self, f: impl FnOnce(&OwnedFifoGuard) -> R) -> PyResult<R> {
        let g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(f)
            .ok_or_else(|| PyRuntimeError::new_err("this acquisition was already released"))
    }
}

#[pymethods]
impl FifoHandle {
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let g = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        match g {
            Some(g) => g.unlock().map_err(|e: Error| errors::to_py(py, e)),
            None => Ok(()),
        }
    }
    #[getter]
    fn held(&self) -> bool {
        self.guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
    #[getter]
    fn token(&self) -> PyResult<Option<u64>> {
        self.with(|g| g.token())
    }
    #[getter]
    fn ticket(&self) -> PyResult<u64> {
        self.with(|g| g.ticket())
    }
    #[getter]
    fn mode(&self) -> PyResult<&'static str> {
        self.with(|g| convert::mode_name(g.mode()))
    }
}
