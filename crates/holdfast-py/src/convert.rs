//! Arguments in (paths, waits, modes) and results out (holders, times).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use holdfast::{Backend, Holder, HolderSource, Holders, Mode, Wait};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// The longest timeout accepted: ten years. Longer ones are almost surely
/// a unit mistake; `None` waits forever.
pub(crate) const MAX_TIMEOUT_SECS: f64 = 315_576_000.0;

/// A path the Python layer passed as `bytes` (`os.fsencode(os.fspath(p))`),
/// so that str, bytes, `PathLike` and non-UTF-8 names all arrive intact.
pub(crate) fn path(raw: &[u8]) -> PyResult<PathBuf> {
    if raw.is_empty() {
        return Err(PyValueError::new_err("the lock path is empty"));
    }
    if raw.contains(&0) {
        return Err(PyValueError::new_err("the lock path contains a NUL byte"));
    }
    Ok(PathBuf::from(OsString::from_vec(raw.to_vec())))
}

/// A path back to Python, as bytes (the Python layer decodes it with
/// `os.fsdecode`, which round-trips any name).
pub(crate) fn path_out<'py>(py: Python<'py>, p: &Path) -> Bound<'py, PyBytes> {
    PyBytes::new(py, p.as_os_str().as_bytes())
}

/// A timeout in seconds, checked: finite, not negative, not absurd.
pub(crate) fn duration(secs: f64, what: &str) -> PyResult<Duration> {
    if secs.is_nan() {
        return Err(PyValueError::new_err(format!("{what} is NaN")));
    }
    if secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must not be negative (got {secs}); use None to wait forever"
        )));
    }
    if secs > MAX_TIMEOUT_SECS {
        return Err(PyValueError::new_err(format!(
            "{what} of {secs} seconds is too large (at most ten years); use None to wait forever"
        )));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// `acquire(timeout=None, blocking=True)` in the library's words.
pub(crate) fn wait(timeout: Option<f64>, blocking: bool) -> PyResult<Wait> {
    if !blocking {
        return Ok(Wait::NoWait);
    }
    Ok(match timeout {
        None => Wait::Forever,
        Some(t) => Wait::Timeout(duration(t, "timeout")?),
    })
}

pub(crate) fn mode(shared: bool) -> Mode {
    if shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    }
}

pub(crate) fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

pub(crate) fn backend(name: &str) -> PyResult<Backend> {
    match name {
        "flock" => Ok(Backend::Flock),
        "ofd" | "fcntl" => Ok(Backend::OfdFcntl),
        other => Err(PyValueError::new_err(format!(
            "unknown backend {other:?}: use \"flock\" or \"ofd\""
        ))),
    }
}

/// File permission bits, checked.
pub(crate) fn permissions(mode: u32) -> PyResult<u32> {
    if mode > 0o7777 {
        return Err(PyValueError::new_err(format!(
            "mode {mode:#o} is not a permission mask (at most 0o7777)"
        )));
    }
    Ok(mode)
}

pub(crate) fn epoch(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// One holder as a dict; `holdfast.Holder` is built from it.
pub(crate) fn holder<'py>(py: Python<'py>, h: &Holder) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("pid", h.pid)?;
    d.set_item("command", h.command.as_deref())?;
    d.set_item("host", h.host.as_deref())?;
    d.set_item("uid", h.uid)?;
    d.set_item("since", h.since.map(epoch))?;
    d.set_item("mode", h.mode.map(mode_name))?;
    d.set_item("token", h.token)?;
    d.set_item("this_process", h.this_process)?;
    d.set_item(
        "source",
        match h.source {
            HolderSource::Record => "record",
            HolderSource::Kernel => "kernel",
            HolderSource::Unverified => "unverified",
            _ => "unknown",
        },
    )?;
    d.set_item("description", h.to_string())?;
    Ok(d)
}

pub(crate) fn holders<'py>(py: Python<'py>, hs: &Holders) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for h in hs.iter() {
        list.append(holder(py, h)?)?;
    }
    Ok(list)
}

/// A `TypeError` for an argument of the wrong kind.
#[allow(dead_code)]
pub(crate) fn type_error(what: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let name = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!("{what}, not {name}"))
}
