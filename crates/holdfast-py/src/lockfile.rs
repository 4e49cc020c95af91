//! `holdfast.LockFile`: lock files (soft, link, mkdir) in the Python
//! peers' formats.

use std::sync::{Arc, Mutex};

use holdfast::lockfile::{Compat, LockFile, OwnedLockFileGuard, Protocol};
use holdfast::{Error, Mode, Wait};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::{convert, errors, wait};

/// The native half of `holdfast.LockFile`.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct NativeLockFile {
    lock: Arc<LockFile>,
}

type Guard = OwnedLockFileGuard;

fn protocol(name: &str) -> PyResult<Protocol> {
    match name {
        "soft" => Ok(Protocol::Soft),
        "link" => Ok(Protocol::Link),
        "mkdir" => Ok(Protocol::Mkdir),
        other => Err(PyValueError::new_err(format!(
            "unknown protocol {other:?}: use \"soft\", \"link\" or \"mkdir\""
        ))),
    }
}

fn compat(name: &str) -> PyResult<Compat> {
    match name {
        "holdfast" => Ok(Compat::Holdfast),
        "flufl" | "flufl.lock" => Ok(Compat::Flufl),
        "lockfile" => Ok(Compat::Lockfile),
        "filelock" => Ok(Compat::Filelock),
        other => Err(PyValueError::new_err(format!(
            "unknown compat {other:?}: use \"holdfast\", \"flufl\", \"lockfile\" or \"filelock\""
        ))),
    }
}

#[pymethods]
impl NativeLockFile {
    #[new]
    #[pyo3(signature = (path, *, protocol, compat, lifetime, heartbeat, create_parents, mode))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: &[u8],
        protocol: &str,
        compat: Option<&str>,
        lifetime: Option<f64>,
        heartbeat: Option<bool>,
        create_parents: bool,
        mode: u32,
    ) -> PyResult<Self> {
        let path = convert::path(path)?;
        let mut opts = LockFile::options(self::protocol(protocol)?);
        if let Some(c) = compat {
            opts.compat(self::compat(c)?);
        }
        if let Some(l) = lifetime {
            let l = convert::duration(l, "lifetime")?;
            if l.is_zero() {
                return Err(PyValueError::new_err("lifetime must be positive"));
            }
            opts.lifetime(l);
        }
        if let Some(h) = heartbeat {
            opts.heartbeat(h);
        }
        opts.create_parents(create_parents)
            .permissions(convert::permissions(mode)?);
        let lock = py.detach(|| opts.open(&path)).map_err(errors::err(py))?;
        Ok(NativeLockFile {
            lock: Arc::new(lock),
        })
    }

    /// The lock's path on disk (for lockfile's format, `<path>.lock`).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        convert::path_out(py, self.lock.path())
    }

    #[getter]
    fn lifetime(&self) -> Option<f64> {
        self.lock.lifetime().map(|d| d.as_secs_f64())
    }

    #[pyo3(signature = (timeout, blocking, interruptible))]
    fn acquire(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        blocking: bool,
        interruptible: bool,
    ) -> PyResult<LockFileHandle> {
        let w = convert::wait(timeout, blocking)?;
        let lock = &self.lock;
        let g = if interruptible && w != Wait::NoWait {
            wait::in_slices(py, w, |w| lock.acquire_owned(Mode::Exclusive, w))?
        } else {
            py.detach(|| lock.acquire_owned(Mode::Exclusive, w))
                .map_err(errors::err(py))?
        };
        Ok(LockFileHandle::new(g))
    }

    /// asyncio: the wait runs on a helper thread in slices of
    /// `wait::SIGNAL_SLICE`, so that cancelling ends it within one slice
    /// (lock files have no kernel wait to hand to the event loop).
    #[pyo3(signature = (timeout, blocking, callback))]
    fn acquire_async(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        blocking: bool,
        callback: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let w = convert::wait(timeout, blocking)?;
        let lock = Arc::clone(&self.lock);
        let first = py.detach(|| lock.acquire_owned(Mode::Exclusive, Wait::NoWait));
        match first {
            Ok(g) => return Ok(Py::new(py, LockFileHandle::new(g))?.into_any()),
            Err(Error::WouldBlock { .. }) if w != Wait::NoWait => {}
            Err(e) => return Err(errors::to_py(py, e)),
        }
        let pending = wait::on_thread(
            move |w| lock.acquire_owned(Mode::Exclusive, w),
            w,
            callback,
            |py, g| Ok(Py::new(py, LockFileHandle::new(g))?.into_any()),
        )?;
        Ok(Py::new(py, pending)?.into_any())
    }

    fn is_locked(&self, py: Python<'_>) -> PyResult<bool> {
        let lock = &self.lock;
        py.detach(|| lock.is_locked()).map_err(errors::err(py))
    }

    fn i_am_locking(&self) -> bool {
        self.lock.i_am_locking()
    }

    /// Breaks the lock if its holder is gone (stale), or whoever holds it
    /// with `force`; True if something was removed.
    #[pyo3(signature = (force=false))]
    fn break_lock(&self, py: Python<'_>, force: bool) -> PyResult<bool> {
        let lock = &self.lock;
        py.detach(|| {
            if force {
                lock.break_lock()
            } else {
                lock.break_lock_if(|st| st.stale.is_some())
                    .map(|b| matches!(b, holdfast::lockfile::Broken::Removed(_)))
            }
        })
        .map_err(errors::err(py))
    }

    /// Renews the lease of the lock this object holds.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        let lock = &self.lock;
        py.detach(|| lock.refresh()).map_err(errors::err(py))
    }

    /// What is on disk: locked, holder, stale reason, lease end, mine.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let lock = &self.lock;
        let st = py.detach(|| lock.status()).map_err(errors::err(py))?;
        let d = PyDict::new(py);
        d.set_item("path", convert::path_out(py, &st.path))?;
        d.set_item("locked", st.locked)?;
        d.set_item(
            "holder",
            st.holder
                .as_ref()
                .map(|h| convert::holder(py, h))
                .transpose()?,
        )?;
        d.set_item("stale", st.stale.as_ref().map(|s| s.to_string()))?;
        d.set_item("expires", st.expires.map(convert::epoch))?;
        d.set_item("mine", st.mine)?;
        Ok(d)
    }
}

/// One held lock file.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct LockFileHandle {
    guard: Mutex<Option<Guard>>,
}

impl LockFileHandle {
    fn new(g: Guard) -> Self {
        LockFileHandle {
            guard: Mutex::new(Some(g)),
        }
    }
    fn with<R>(&self, f: impl FnOnce(&OwnedLockFileGuard) -> R) -> PyResult<R> {
        let g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(f)
            .ok_or_else(|| PyRuntimeError::new_err("this lock file was already released"))
    }
}

#[pymethods]
impl LockFileHandle {
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let g = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        match g {
            Some(g) => py.detach(|| g.unlock()).map_err(errors::err(py)),
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
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|g| g.refresh())?.map_err(errors::err(py))
    }
    /// Raises `LockLost` if the lock was broken or its lease ran out.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|g| g.check())?.map_err(errors::err(py))
    }
}
