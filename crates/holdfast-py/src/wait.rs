//! Waiting for lock files, which have no kernel wait to hand over: the
//! library waits by inotify and pidfd between attempts; here that wait is
//! cut into slices so that Python can run signal handlers (main thread)
//! or see a cancellation (asyncio) between them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holdfast::{Error, Wait};
use pyo3::prelude::*;

use crate::errors;
use crate::runtime::{AsyncAcquisition, Exited, deliver_outcome};

/// How long one slice of an interruptible lock-file wait lasts: the
/// longest a Ctrl-C or a cancellation waits to be noticed.
pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The overall deadline of `wait` (None: forever).
fn deadline(wait: Wait, started: Instant) -> Option<Instant> {
    match wait {
        Wait::NoWait => Some(started),
        Wait::Forever => None,
        Wait::Timeout(d) => Some(
            started
                .checked_add(d)
                .unwrap_or(started + Duration::from_secs(315_576_000)),
        ),
        Wait::Deadline(d) => Some(d),
    }
}

/// Runs `attempt` with `Wait::Deadline`s of at most one slice each until
/// it succeeds, fails otherwise, or `wait` runs out. Between slices,
/// `between()` may stop the wait (returning its error).
fn slices<G, E>(
    wait: Wait,
    mut attempt: impl FnMut(Wait) -> holdfast::Result<G>,
    mut between: impl FnMut() -> Result<(), E>,
) -> Result<holdfast::Result<G>, E> {
    let started = Instant::now();
    let end = deadline(wait, started);
    loop {
        let slice_end = Instant::now() + SIGNAL_SLICE;
        let (until, last) = match end {
            Some(e) if e <= slice_end => (e, true),
            _ => (slice_end, false),
        };
        match attempt(Wait::Deadline(until)) {
            Err(Error::Timeout { .. }) if !last => between()?,
            Err(Error::Timeout {
                path,
                mode,
                holders,
                ..
            }) => {
                return Ok(Err(Error::Timeout {
                    path,
                    mode,
                    waited: started.elapsed(),
                    holders,
                }));
            }
            other => return Ok(other),
        }
    }
}

/// A blocking wait in the main thread: slices with the GIL released,
/// Python's signal handlers run between them.
pub(crate) fn in_slices<G: Send>(
    py: Python<'_>,
    wait: Wait,
    mut attempt: impl FnMut(Wait) -> holdfast::Result<G> + Send,
) -> PyResult<G> {
    let r = slices(wait, |w| py.detach(|| attempt(w)), || py.check_signals())?;
    r.map_err(errors::err(py))
}

/// An asyncio wait on a helper thread; see `runtime::spawn_async` for the
/// callback protocol.
pub(crate) fn on_thread<G: Send + 'static>(
    mut attempt: impl FnMut(Wait) -> holdfast::Result<G> + Send + 'static,
    wait: Wait,
    callback: Py<PyAny>,
    deliver: fn(Python<'_>, G) -> PyResult<Py<PyAny>>,
) -> PyResult<AsyncAcquisition> {
    let state = Arc::new(Mutex::new(false));
    let thread_state = Arc::clone(&state);
    let cancelled = move || {
        if *thread_state.lock().unwrap_or_else(|e| e.into_inner()) {
            Err(())
        } else {
            Ok(())
        }
    };
    let finish_state = Arc::clone(&state);
    let exited = Exited(Some(Python::attach(|py| callback.clone_ref(py))));
    std::thread::Builder::new()
        .name("holdfast-lockfile-wait".into())
        .spawn(move || {
            let _exited = exited;
            let Ok(r) = slices(wait, &mut attempt, cancelled) else {
                return; // cancelled between slices
            };
            deliver_outcome(&finish_state, r, &callback, deliver);
        })
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot start a thread: {e}")))?;
    Ok(AsyncAcquisition::from_state(None, state))
}
