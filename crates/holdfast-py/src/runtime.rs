//! The tokio runtime behind asyncio acquisitions and interruptible waits.
//!
//! One current-thread runtime on a thread of its own runs every pending
//! acquisition of the process. An acquisition there waits the library's
//! way (a killable helper blocked in the kernel, its pidfd in the
//! reactor), so nothing polls. Two ways to wait for one:
//!
//! - [`wait`]: a blocking Python call (the main thread, where Ctrl-C must
//!   work). The caller sleeps in `poll(2)` on a pipe the acquisition writes
//!   when it ends, with the GIL released. Python's signal handlers are
//!   installed without `SA_RESTART`, so a signal interrupts the `poll`; the
//!   caller then runs the handlers and, if one raised (`KeyboardInterrupt`),
//!   cancels the acquisition and waits until it has let go of everything.
//! - [`AsyncAcquisition`]: asyncio. The result is handed to a Python
//!   callback (which sets an `asyncio.Future` through
//!   `call_soon_threadsafe`); `cancel()` drops the acquisition.
//!
//! After `fork`, the child has no runtime thread: the first use there
//! builds a new runtime (and leaks the parent's, whose thread is gone).

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::errors;

struct Rt {
    pid: u32,
    handle: Handle,
}

static RT: Mutex<Option<Rt>> = Mutex::new(None);

fn lock_rt() -> std::sync::MutexGuard<'static, Option<Rt>> {
    RT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime of this process, started on first use.
pub(crate) fn handle() -> PyResult<Handle> {
    let pid = std::process::id();
    let mut rt = lock_rt();
    if let Some(r) = rt.as_ref()
        && r.pid == pid
    {
        return Ok(r.handle.clone());
    }
    if let Some(old) = rt.take() {
        // Inherited through fork: its thread does not exist here. Dropping
        // it would wait for that thread; leak it instead.
        std::mem::forget(old.handle);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("holdfast-async")
        .build()
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot start the holdfast async runtime: {e}"
            ))
        })?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("holdfast-async".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot start the holdfast async thread: {e}"
            ))
        })?;
    *rt = Some(Rt {
        pid,
        handle: handle.clone(),
    });
    Ok(handle)
}

/// Called by `os.register_at_fork(after_in_child=...)`: forget the
/// parent's runtime (its thread is not in the child).
#[pyfunction]
pub(crate) fn after_fork_in_child() {
    if let Some(old) = lock_rt().take() {
        std::mem::forget(old.handle);
    }
}

/// Writes to the pipe when dropped: the acquisition ended, one way or
/// another (finished, or cancelled and everything it held let go).
struct Done(Option<OwnedFd>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let _ = rustix::io::write(&fd, b"x");
        }
    }
}

enum Slot<G> {
    Pending,
    Ready(holdfast::Result<G>),
    Abandoned,
}

/// Runs `fut` on the runtime and waits for it in the calling thread with
/// the GIL released, running Python's signal handlers whenever a signal
/// interrupts the wait. If a handler raises, the acquisition is cancelled
/// (and has released everything) before the exception propagates.
pub(crate) fn wait<G, F>(py: Python<'_>, fut: F) -> PyResult<G>
where
    G: Send + 'static,
    F: Future<Output = holdfast::Result<G>> + Send + 'static,
{
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot create a pipe: {e}")))?;
    let slot: Arc<Mutex<Slot<G>>> = Arc::new(Mutex::new(Slot::Pending));
    let task_slot = Arc::clone(&slot);
    let done = Done(Some(wr));
    let task = handle()?.spawn(async move {
        let _done = done;
        let r = fut.await;
        let mut s = task_slot.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*s, Slot::Pending) {
            *s = Slot::Ready(r);
        }
        // Abandoned: `r` (a guard) is dropped here, releasing it.
    });
    let abort = task.abort_handle();
    drop(task);
    loop {
        let ended = py.detach(|| wait_readable(&rd, Duration::from_secs(1)));
        if ended {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *s, Slot::Abandoned) {
                Slot::Ready(r) => return r.map_err(errors::err(py)),
                _ => {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "holdfast: an acquisition ended without a result",
                    ));
                }
            }
        }
        if let Err(e) = py.check_signals() {
            cancel(&slot, &abort);
            // Wait (bounded) until the task has dropped everything it held.
            py.detach(|| wait_readable(&rd, Duration::from_secs(5)));
            return Err(e);
        }
    }
}

fn cancel<G>(slot: &Mutex<Slot<G>>, abort: &AbortHandle) {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    // A result that arrived meanwhile is dropped here (released).
    *s = Slot::Abandoned;
    drop(s);
    abort.abort();
}

/// Sleeps in `poll(2)` until `fd` is readable (true) or a signal or the
/// timeout interrupts (false).
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// An asyncio acquisition in flight; `cancel()` drops it, releasing
/// whatever it got.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct AsyncAcquisition {
    abort: Option<AbortHandle>,
    state: Arc<Mutex<bool>>,
}

impl AsyncAcquisition {
    /// An acquisition whose `state` turns true when it has finished or
    /// was cancelled (whoever sets it first decides), with `abort` to stop
    /// a tokio task at once.
    pub(crate) fn from_state(abort: Option<AbortHandle>, state: Arc<Mutex<bool>>) -> Self {
        AsyncAcquisition { abort, state }
    }
}

#[pymethods]
impl AsyncAcquisition {
    /// Cancels the acquisition. Returns False if it had already finished
    /// (its result is then with the callback, which must release it).
    fn cancel(&self) -> bool {
        let mut finished = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *finished {
            return false;
        }
        *finished = true;
        if let Some(a) = &self.abort {
            a.abort();
        }
        true
    }
}

/// Calls `callback(None, None)` when dropped: the acquisition has ended
/// and let go of everything it did not deliver (the Python side waits for
/// this after cancelling, so a cancelled acquisition holds nothing by the
/// time `CancelledError` propagates).
pub(crate) struct Exited(pub(crate) Option<Py<PyAny>>);

impl Drop for Exited {
    fn drop(&mut self) {
        if let Some(cb) = self.0.take() {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (py.None(), py.None())) {
                    e.write_unraisable(py, None);
                }
            });
        }
    }
}

/// Hands the outcome of an acquisition to `callback(ok, value)` unless it
/// was cancelled first (then the outcome is dropped: released).
pub(crate) fn deliver_outcome<G>(
    state: &Mutex<bool>,
    r: holdfast::Result<G>,
    callback: &Py<PyAny>,
    deliver: fn(Python<'_>, G) -> PyResult<Py<PyAny>>,
) {
    let mut finished = state.lock().unwrap_or_else(|e| e.into_inner());
    if *finished {
        return; // cancelled meanwhile: `r` is dropped (released)
    }
    *finished = true;
    drop(finished);
    Python::attach(|py| {
        let outcome = match r {
            Ok(g) => deliver(py, g).map(|v| (true, v)),
            Err(e) => Ok((false, errors::to_py(py, e).into_value(py).into_any())),
        };
        let (ok, value) = outcome.unwrap_or_else(|e| (false, e.into_value(py).into_any()));
        if let Err(e) = callback.call1(py, (ok, value)) {
            e.write_unraisable(py, None);
        }
    });
}

/// Starts `fut` on the runtime; `deliver` turns its outcome into the
/// Python object handed to `callback(ok, value)` (under the GIL, from the
/// runtime thread) unless it was cancelled first. `callback(None, None)`
/// follows when the task is gone (finished, or aborted and dropped).
pub(crate) fn spawn_async<G, F>(
    fut: F,
    callback: Py<PyAny>,
    deliver: fn(Python<'_>, G) -> PyResult<Py<PyAny>>,
) -> PyResult<AsyncAcquisition>
where
    G: Send + 'static,
    F: Future<Output = holdfast::Result<G>> + Send + 'static,
{
    let state = Arc::new(Mutex::new(false));
    let task_state = Arc::clone(&state);
    let exited = Exited(Some(Python::attach(|py| callback.clone_ref(py))));
    let task = handle()?.spawn(async move {
        let _exited = exited;
        let r = fut.await;
        deliver_outcome(&task_state, r, &callback, deliver);
    });
    Ok(AsyncAcquisition::from_state(
        Some(task.abort_handle()),
        state,
    ))
}
