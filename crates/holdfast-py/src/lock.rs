//! `holdfast.Lock`: kernel locks.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use holdfast::tokio::{AsyncLock, OwnedLockGuard};
use holdfast::{Error, Lock, LockGuard, LockOptions, Mode, Wait};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::owned::{Owned, SameThread};
use crate::{convert, errors, runtime};

/// The native half of `holdfast.Lock`: one open lock file shared by the
/// threads of this process (they exclude each other through the library's
/// in-process state), plus, for asyncio and interruptible waits, an
/// `AsyncLock` whose acquisitions each have their own open file
/// description (excluded by the kernel, like processes).
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct NativeLock {
    lock: Arc<Lock>,
    opts: LockOptions,
    path: PathBuf,
    async_lock: OnceLock<Arc<AsyncLock>>,
}

pub(crate) enum Guard {
    Sync(Owned<Lock, LockGuard<'static>>),
    Async(OwnedLockGuard),
}

impl Guard {
    fn mode(&self) -> Mode {
        match self {
            Guard::Sync(g) => g.get().mode(),
            Guard::Async(g) => g.mode(),
        }
    }
    fn token(&self) -> Option<u64> {
        match self {
            Guard::Sync(g) => g.get().token(),
            Guard::Async(g) => g.token(),
        }
    }
    fn fileno(&self) -> i32 {
        match self {
            Guard::Sync(g) => g.get().as_fd().as_raw_fd(),
            Guard::Async(g) => g.as_fd().as_raw_fd(),
        }
    }
    fn unlock(self) -> holdfast::Result<()> {
        match self {
            Guard::Sync(g) => g.finish(|g| g.unlock()),
            Guard::Async(g) => g.unlock(),
        }
    }
}

impl NativeLock {
    fn async_lock(&self) -> PyResult<Arc<AsyncLock>> {
        if let Some(a) = self.async_lock.get() {
            return Ok(Arc::clone(a));
        }
        let a = AsyncLock::with_options(&self.opts, &self.path)
            .map_err(|e| Python::attach(|py| errors::to_py(py, e)))?;
        Ok(Arc::clone(self.async_lock.get_or_init(|| Arc::new(a))))
    }
}

#[pymethods]
impl NativeLock {
    #[new]
    #[pyo3(signature = (path, *, backend, record, create_parents, follow_symlinks, mode))]
    fn new(
        py: Python<'_>,
        path: &[u8],
        backend: &str,
        record: bool,
        create_parents: bool,
        follow_symlinks: bool,
        mode: u32,
    ) -> PyResult<Self> {
        let path = convert::path(path)?;
        let mut opts = Lock::options();
        opts.backend(convert::backend(backend)?)
            .holder_record(record)
            .create_parents(create_parents)
            .follow_symlinks(follow_symlinks)
            .permissions(convert::permissions(mode)?);
        let lock = py.detach(|| opts.open(&path)).map_err(errors::err(py))?;
        Ok(NativeLock {
            lock: Arc::new(lock),
            opts,
            path,
            async_lock: OnceLock::new(),
        })
    }

    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        convert::path_out(py, &self.path)
    }

    /// Acquires: first without waiting (GIL held), then waiting with the
    /// GIL released; `interruptible` (the main thread) waits so that
    /// signal handlers run (see `runtime::wait`).
    #[pyo3(signature = (shared, timeout, blocking, interruptible))]
    fn acquire(
        &self,
        py: Python<'_>,
        shared: bool,
        timeout: Option<f64>,
        blocking: bool,
        interruptible: bool,
    ) -> PyResult<LockHandle> {
        let mode = convert::mode(shared);
        let wait = convert::wait(timeout, blocking)?;
        match Owned::try_new(&self.lock, |l| l.acquire(mode, Wait::NoWait)) {
            Ok(g) => return Ok(LockHandle::new(Guard::Sync(g))),
            Err(Error::WouldBlock { .. }) if wait != Wait::NoWait => {}
            Err(e) => return Err(errors::to_py(py, e)),
        }
        let guard = if interruptible {
            let a = self.async_lock()?;
            Guard::Async(runtime::wait(
                py,
                async move { a.acquire(mode, wait).await },
            )?)
        } else {
            let lock = &self.lock;
            Guard::Sync(
                py.detach(|| Owned::try_new(lock, |l| l.acquire(mode, wait)))
                    .map_err(errors::err(py))?,
            )
        };
        Ok(LockHandle::new(guard))
    }

    /// Starts an asyncio acquisition: returns a `LockHandle` at once if the
    /// lock was free, else an `AsyncAcquisition` that will call
    /// `callback(ok, handle_or_exception)`.
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
        let a = self.async_lock()?;
        let first = {
            let a = Arc::clone(&a);
            runtime::handle()?.block_on(async move { a.acquire(mode, Wait::NoWait).await })
        };
        match first {
            Ok(g) => return Ok(Py::new(py, LockHandle::new(Guard::Async(g)))?.into_any()),
            Err(Error::WouldBlock { .. }) if wait != Wait::NoWait => {}
            Err(e) => return Err(errors::to_py(py, e)),
        }
        let pending = runtime::spawn_async(
            async move { a.acquire(mode, wait).await },
            callback,
            |py, g| Ok(Py::new(py, LockHandle::new(Guard::Async(g)))?.into_any()),
        )?;
        Ok(Py::new(py, pending)?.into_any())
    }

    /// Who holds the lock now (kernel lock table plus holder record).
    fn holders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let lock = &self.lock;
        let hs = py.detach(|| lock.holders());
        convert::holders(py, &hs)
    }
}

/// One acquisition of a `NativeLock`, held until `release()` (or until
/// the handle is garbage-collected).
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct LockHandle {
    guard: Mutex<Option<Guard>>,
}

impl LockHandle {
    fn new(g: Guard) -> Self {
        LockHandle {
            guard: Mutex::new(Some(g)),
        }
    }
    fn with<R>(&self, f: impl FnOnce(&mut Guard) -> R) -> PyResult<R> {
        let mut g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(g) => Ok(f(g)),
            None => Err(PyRuntimeError::new_err(
                "this acquisition was already released",
            )),
        }
    }
}

#[pymethods]
impl LockHandle {
    /// Releases; a second call does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let g = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        match g {
            Some(g) => g.unlock().map_err(errors::err(py)),
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
    fn mode(&self) -> PyResult<&'static str> {
        self.with(|g| convert::mode_name(g.mode()))
    }
    fn fileno(&self) -> PyResult<i32> {
        self.with(|g| g.fileno())
    }
    /// Shared to exclusive (atomic with the "ofd" backend only).
    #[pyo3(signature = (timeout, blocking))]
    fn upgrade(&self, py: Python<'_>, timeout: Option<f64>, blocking: bool) -> PyResult<()> {
        let wait = convert::wait(timeout, blocking)?;
        let mut slot = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(Guard::Sync(g)) => {
                let g = SameThread(g.get_mut());
                py.detach(move || {
                    let g = g;
                    g.0.upgrade(wait)
                })
                .map_err(errors::err(py))
            }
            Some(Guard::Async(_)) => Err(PyRuntimeError::new_err(
                "an acquisition made by acquire_async or in the main thread's interruptible \
                 wait cannot be upgraded; release it and acquire exclusively",
            )),
            None => Err(PyRuntimeError::new_err(
                "this acquisition was already released",
            )),
        }
    }
    /// Exclusive to shared.
    fn downgrade(&self, py: Python<'_>) -> PyResult<()> {
        let mut slot = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(Guard::Sync(g)) => {
                let g = SameThread(g.get_mut());
                py.detach(move || {
                    let g = g;
                    g.0.downgrade()
                })
                .map_err(errors::err(py))
            }
            Some(Guard::Async(_)) => Err(PyRuntimeError::new_err(
                "an acquisition made by acquire_async or in the main thread's interruptible \
                 wait cannot be downgraded",
            )),
            None => Err(PyRuntimeError::new_err(
                "this acquisition was already released",
            )),
        }
    }
}
