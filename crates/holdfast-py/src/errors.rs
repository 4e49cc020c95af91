//! The library's `Error` as the exceptions of `holdfast._errors`.

use holdfast::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::convert;

static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Converts a library error into the matching Python exception:
/// `Timeout` (a `TimeoutError`), `WouldBlock` (a `BlockingIOError`),
/// `LockIOError` (an `OSError` with `errno` and `filename`), and so on.
/// An action's own Python exception comes back unchanged.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::ActionFailed { source, .. } if source.is::<PyErr>() => {
            let original = source
                .downcast::<PyErr>()
                .expect("checked with is::<PyErr>");
            *original
        }
        err => build(py, &err).unwrap_or_else(|e| e),
    }
}

/// `map_err` helper: `r.map_err(err(py))`.
pub(crate) fn err(py: Python<'_>) -> impl Fn(Error) -> PyErr + '_ {
    move |e| to_py(py, e)
}

fn kind(err: &Error) -> &'static str {
    match err {
        Error::WouldBlock { .. } => "WouldBlock",
        Error::Timeout { .. } => "Timeout",
        Error::AlreadyHeld { .. } => "AlreadyHeld",
        Error::Symlink { .. } => "SymlinkError",
        Error::Io { .. } => "LockIOError",
        Error::Corrupt { .. } => "CorruptError",
        Error::Unsupported { .. } => "UnsupportedError",
        Error::ActionFailed { .. } => "ActionFailed",
        Error::LeaderFailed { .. } => "LeaderFailed",
        Error::Lost { .. } => "LockLost",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::Backend { .. } => "BackendError",
        _ => "Error",
    }
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let factory = FACTORY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("holdfast._errors")?
            .getattr("_from_native")?
            .unbind())
    })?;
    let extra = PyDict::new(py);
    let mut errno = None;
    match err {
        Error::Io { op, source, .. } => {
            errno = source.raw_os_error();
            extra.set_item("op", op.to_string())?;
            extra.set_item("strerror", source.to_string())?;
        }
        Error::WouldBlock { mode, .. } => {
            extra.set_item("mode", convert::mode_name(*mode))?;
        }
        Error::Timeout { mode, waited, .. } => {
            extra.set_item("mode", convert::mode_name(*mode))?;
            extra.set_item("waited", waited.as_secs_f64())?;
        }
        Error::Symlink { .. } => errno = Some(rustix::io::Errno::LOOP.raw_os_error()),
        Error::ActionFailed { name, .. } => extra.set_item("name", name)?,
        Error::Backend { op, .. } => extra.set_item("op", *op)?,
        Error::LeaderFailed { leader, .. } => {
            extra.set_item("leader", convert::holders(py, leader)?)?;
        }
        _ => {}
    }
    let holders = match err {
        Error::LeaderFailed { leader, .. } => leader,
        other => other.holders(),
    };
    let exc = factory.call1(
        py,
        (
            kind(err),
            err.to_string(),
            convert::path_out(py, err.path()),
            convert::holders(py, holders)?,
            errno,
            extra,
        ),
    )?;
    Ok(PyErr::from_value(exc.into_bound(py)))
}
