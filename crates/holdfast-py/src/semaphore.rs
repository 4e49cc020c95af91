//! `holdfast.Semaphore`: at most N holders across processes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use holdfast::tokio::{AsyncSemaphore, OwnedSemaphorePermit};
use holdfast::{Mode, Semaphore, Wait};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::{convert, errors, runtime};

/// The native half of `holdfast.Semaphore`; waits as `NativeFifoLock`.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct NativeSemaphore {
    sem: Arc<AsyncSemaphore>,
    /// The blocking semaphore, for `available()` and `holders()`.
    plain: Semaphore,
    path: PathBuf,
}

#[pymethods]
impl NativeSemaphore {
    #[new]
    #[pyo3(signature = (path, permits, *, create_parents, mode, remove_when_idle))]
    fn new(
        py: Python<'_>,
        path: &[u8],
        permits: usize,
        create_parents: bool,
        mode: u32,
        remove_when_idle: bool,
    ) -> PyResult<Self> {
        let path = convert::path(path)?;
        let mut opts = Semaphore::options();
        opts.create_parents(create_parents)
            .permissions(convert::permissions(mode)?)
            .remove_when_idle(remove_when_idle);
        let (sem, plain) = py
            .detach(|| {
                Ok::<_, holdfast::Error>((
                    AsyncSemaphore::with_options(&opts, &path, permits)?,
                    opts.open(&path, permits)?,
                ))
            })
            .map_err(errors::err(py))?;
        Ok(NativeSemaphore {
            sem: Arc::new(sem),
            plain,
            path,
        })
    }

    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        convert::path_out(py, &self.path)
    }

    #[getter]
    fn permits(&self) -> usize {
        self.plain.permits()
    }

    #[pyo3(signature = (timeout, blocking))]
    fn acquire(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        blocking: bool,
    ) -> PyResult<PermitHandle> {
        let wait = convert::wait(timeout, blocking)?;
        let s = Arc::clone(&self.sem);
        let p = runtime::wait(py, async move { s.acquire(Mode::Shared, wait).await })?;
        Ok(PermitHandle::new(p))
    }

    #[pyo3(signature = (timeout, blocking, callback))]
    fn acquire_async(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        blocking: bool,
        callback: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let wait = convert::wait(timeout, blocking)?;
        let s = Arc::clone(&self.sem);
        if wait == Wait::NoWait {
            let r = runtime::handle()?
                .block_on(async move { s.acquire(Mode::Shared, Wait::NoWait).await });
            return match r {
                Ok(p) => Ok(Py::new(py, PermitHandle::new(p))?.into_any()),
                Err(e) => Err(errors::to_py(py, e)),
            };
        }
        let pending = runtime::spawn_async(
            async move { s.acquire(Mode::Shared, wait).await },
            callback,
            |py, p| Ok(Py::new(py, PermitHandle::new(p))?.into_any()),
        )?;
        Ok(Py::new(py, pending)?.into_any())
    }

    /// Free slots now.
    fn available(&self, py: Python<'_>) -> PyResult<usize> {
        let plain = &self.plain;
        py.detach(|| plain.available()).map_err(errors::err(py))
    }

    fn holders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let plain = &self.plain;
        let hs = py.detach(|| plain.holders());
        convert::holders(py, &hs)
    }
}

/// One held permit.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct PermitHandle {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl PermitHandle {
    fn new(p: OwnedSemaphorePermit) -> Self {
        PermitHandle {
            permit: Mutex::new(Some(p)),
        }
    }
}

#[pymethods]
impl PermitHandle {
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let p = self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        match p {
            Some(p) => p.unlock().map_err(errors::err(py)),
            None => Ok(()),
        }
    }
    #[getter]
    fn held(&self) -> bool {
        self.permit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
    #[getter]
    fn slot(&self) -> PyResult<usize> {
        let p = self.permit.lock().unwrap_or_else(|e| e.into_inner());
        p.as_ref()
            .map(|p| p.slot())
            .ok_or_else(|| PyRuntimeError::new_err("this permit was already released"))
    }
}
