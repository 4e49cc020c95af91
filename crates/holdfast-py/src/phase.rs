//! `holdfast.PhaseRunner` and `holdfast.once`: actions are Python
//! callables, called with the GIL while the runner holds the lock.

use std::path::PathBuf;

use holdfast::Wait;
use holdfast::once::{LeaderFailure, OnceOutcome, RunOnce};
use holdfast::phase::{ActionContext, ActionError, Phase, PhaseRunner, XattrMode};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::{convert, errors, wait};

/// Calls a Python action with a dict describing the run (the Python layer
/// wraps it into a `PhaseContext`). Its exception travels back through
/// the library as the error's source and is re-raised unchanged.
fn call(action: &Py<PyAny>, ctx: &ActionContext<'_>) -> Result<(), ActionError> {
    Python::attach(|py| {
        let d = PyDict::new(py);
        d.set_item("name", ctx.name())?;
        d.set_item("target", convert::path_out(py, ctx.target()))?;
        d.set_item("lock_path", convert::path_out(py, ctx.lock_path()))?;
        d.set_item("token", ctx.token())?;
        {
            use std::os::fd::AsRawFd;
            d.set_item("lock_fd", ctx.lock_fd().as_raw_fd())?;
        }
        action.call1(py, (d,)).map(|_| ())
    })
    .map_err(|e: PyErr| Box::new(e) as ActionError)
}

/// One phase as the Python layer hands it over.
type PhaseSpec = (String, Py<PyAny>, Option<String>, Vec<u8>);

fn xattr_mode(name: &str) -> PyResult<XattrMode> {
    match name {
        "auto" => Ok(XattrMode::Auto),
        "on" => Ok(XattrMode::On),
        "off" => Ok(XattrMode::Off),
        other => Err(PyValueError::new_err(format!(
            "unknown xattrs mode {other:?}: use \"auto\", \"on\" or \"off\""
        ))),
    }
}

/// The native half of `holdfast.PhaseRunner`.
#[pyclass(module = "holdfast._native", frozen)]
pub(crate) struct NativePhaseRunner {
    runner: PhaseRunner,
    wait: Wait,
}

#[pymethods]
impl NativePhaseRunner {
    #[new]
    #[pyo3(signature = (target, *, namespace, lock_suffix, status_suffix, timeout, blocking, xattrs, strict, follow_symlinks, lock_mode))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        target: &[u8],
        namespace: Option<&str>,
        lock_suffix: Option<&[u8]>,
        status_suffix: Option<&[u8]>,
        timeout: Option<f64>,
        blocking: bool,
        xattrs: &str,
        strict: bool,
        follow_symlinks: bool,
        lock_mode: u32,
    ) -> PyResult<Self> {
        use std::os::unix::ffi::OsStrExt;
        let target: PathBuf = convert::path(target)?;
        let mut runner = PhaseRunner::new(&target);
        if let Some(ns) = namespace {
            runner.namespace(ns);
        }
        if let Some(s) = lock_suffix {
            runner.lock_suffix(std::ffi::OsStr::from_bytes(s));
        }
        if let Some(s) = status_suffix {
            runner.status_suffix(std::ffi::OsStr::from_bytes(s));
        }
        let wait = convert::wait(timeout, blocking)?;
        runner
            .xattrs(xattr_mode(xattrs)?)
            .strict_marker_locking(strict)
            .follow_symlinks(follow_symlinks)
            .lock_permissions(convert::permissions(lock_mode)?);
        Ok(NativePhaseRunner { runner, wait })
    }

    #[getter]
    fn lock_path<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        convert::path_out(py, &self.runner.lock_path())
    }

    #[getter]
    fn status_path<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        convert::path_out(py, &self.runner.status_path())
    }

    fn attr_key(&self, name: &str) -> String {
        self.runner.attr_key(name)
    }

    /// Runs the phases in order; returns the report as a dict.
    #[pyo3(signature = (phases, interruptible))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        phases: Vec<PhaseSpec>,
        interruptible: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let attempt = |w: Wait| {
            let mut runner = self.runner.clone();
            runner.wait(w);
            let list: Vec<Phase<'_>> = phases
                .iter()
                .map(|(name, action, attr_name, attr_value)| {
                    let mut p = Phase::new(name.clone(), move |ctx| call(action, ctx))
                        .attr_value(attr_value.clone());
                    if let Some(a) = attr_name {
                        p = p.attr_name(a.clone());
                    }
                    p
                })
                .collect();
            runner.run(list)
        };
        let report = if interruptible && self.wait != Wait::NoWait {
            wait::in_slices(py, self.wait, attempt)?
        } else {
            py.detach(|| attempt(self.wait)).map_err(errors::err(py))?
        };
        let d = PyDict::new(py);
        d.set_item("completed", &report.completed)?;
        d.set_item("skipped", &report.skipped)?;
        d.set_item("xattrs_available", report.xattrs_available)?;
        d.set_item("lock_path", convert::path_out(py, &report.lock_path))?;
        let sp = PyList::empty(py);
        for p in &report.status_paths {
            sp.append(convert::path_out(py, p))?;
        }
        d.set_item("status_paths", sp)?;
        d.set_item("locked", report.locked)?;
        d.set_item("token", report.token)?;
        Ok(d)
    }

    /// Whether `name` is marked done: "xattr", "status_file" or None.
    #[pyo3(signature = (name, attr_name=None))]
    fn is_marked(
        &self,
        py: Python<'_>,
        name: &str,
        attr_name: Option<&str>,
    ) -> PyResult<Option<&'static str>> {
        let r = py
            .detach(|| self.runner.is_marked(name, attr_name))
            .map_err(errors::err(py))?;
        Ok(r.map(|s| match s {
            holdfast::phase::MarkerStore::Xattr => "xattr",
            holdfast::phase::MarkerStore::StatusFile => "status_file",
        }))
    }

    /// Removes the marker of one phase; True if there was one.
    #[pyo3(signature = (name, attr_name=None))]
    fn unmark(&self, py: Python<'_>, name: &str, attr_name: Option<&str>) -> PyResult<bool> {
        py.detach(|| self.runner.unmark(name, attr_name))
            .map_err(errors::err(py))
    }

    /// Removes every marker (the lock is taken); returns the names that
    /// were marked.
    fn reset(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let m = py.detach(|| self.runner.reset()).map_err(errors::err(py))?;
        let mut names: Vec<String> = m.xattrs.into_iter().map(|(n, _)| n).collect();
        for s in m.status {
            if !names.contains(&s) {
                names.push(s);
            }
        }
        Ok(names)
    }

    /// The names marked done, from both stores.
    fn markers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let m = py
            .detach(|| self.runner.markers())
            .map_err(errors::err(py))?;
        let mut names: Vec<String> = m.xattrs.into_iter().map(|(n, _)| n).collect();
        for s in m.status {
            if !names.contains(&s) {
                names.push(s);
            }
        }
        Ok(names)
    }
}

/// Run-once: `action(ctx_dict)` runs once for `key` across processes.
#[pyfunction]
#[pyo3(signature = (key, action, *, timeout, blocking, on_leader_failure, interruptible))]
pub(crate) fn once<'py>(
    py: Python<'py>,
    key: &[u8],
    action: Py<PyAny>,
    timeout: Option<f64>,
    blocking: bool,
    on_leader_failure: &str,
    interruptible: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let key = convert::path(key)?;
    let policy = match on_leader_failure {
        "retry" => LeaderFailure::Retry,
        "propagate" => LeaderFailure::Propagate,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown on_leader_failure {other:?}: use \"retry\" or \"propagate\""
            )));
        }
    };
    let w = convert::wait(timeout, blocking)?;
    let attempt = |w: Wait| {
        let mut once = RunOnce::new(&key);
        once.wait(w).on_leader_failure(policy);
        once.run(|ctx| call(&action, ctx))
    };
    let outcome = if interruptible && w != Wait::NoWait {
        wait::in_slices(py, w, attempt)?
    } else {
        py.detach(|| attempt(w)).map_err(errors::err(py))?
    };
    let d = PyDict::new(py);
    match outcome {
        OnceOutcome::Ran { token, took_over } => {
            d.set_item("ran", true)?;
            d.set_item("token", token)?;
            d.set_item("took_over", took_over)?;
            d.set_item("waited", took_over)?;
        }
        OnceOutcome::AlreadyDone { waited } => {
            d.set_item("ran", false)?;
            d.set_item("token", py.None())?;
            d.set_item("took_over", false)?;
            d.set_item("waited", waited)?;
        }
        _ => {
            d.set_item("ran", false)?;
        }
    }
    Ok(d)
}
