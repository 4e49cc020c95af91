//! `holdfast.status(path)` and `holdfast.inspect(path)`: looking without
//! locking.

use holdfast::lockfile::{Compat, LockFile, Protocol};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{convert, errors};

/// The kernel lock at `path`: exists, held (mode), holders, last record.
#[pyfunction]
pub(crate) fn status<'py>(py: Python<'py>, path: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let path = convert::path(path)?;
    let st = py
        .detach(|| holdfast::status(&path))
        .map_err(errors::err(py))?;
    let d = PyDict::new(py);
    d.set_item("kind", "kernel")?;
    d.set_item("path", convert::path_out(py, &st.path))?;
    d.set_item("exists", st.exists)?;
    d.set_item("locked", st.held.is_some())?;
    d.set_item("mode", st.held.map(convert::mode_name))?;
    d.set_item("holders", convert::holders(py, &st.holders)?)?;
    let last = match &st.last_record {
        Some(r) => {
            let r_d = PyDict::new(py);
            r_d.set_item("token", r.token)?;
            r_d.set_item("pid", r.pid)?;
            r_d.set_item("host", &r.host)?;
            r_d.set_item("uid", r.uid)?;
            r_d.set_item("mode", convert::mode_name(r.mode))?;
            r_d.set_item("since", convert::epoch(r.since))?;
            r_d.set_item("command", &r.command)?;
            Some(r_d)
        }
        None => None,
    };
    d.set_item("last_record", last)?;
    Ok(d)
}

/// Whatever is at `path`: a lock file of any protocol and format (holder,
/// lease, stale verdict), else a kernel lock as [`status`].
#[pyfunction]
pub(crate) fn inspect<'py>(py: Python<'py>, path: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let p = convert::path(path)?;
    let found = py
        .detach(|| {
            let Some(lf) = LockFile::detect(&p)? else {
                return Ok(None);
            };
            let st = lf.status()?;
            Ok::<_, holdfast::Error>(Some((lf.protocol(), lf.compat(), lf.path().to_owned(), st)))
        })
        .map_err(errors::err(py))?;
    let Some((protocol, compat, lock_path, st)) = found else {
        return status(py, path);
    };
    let d = PyDict::new(py);
    d.set_item("kind", "lockfile")?;
    d.set_item(
        "protocol",
        match protocol {
            Protocol::Soft => "soft",
            Protocol::Link => "link",
            Protocol::Mkdir => "mkdir",
        },
    )?;
    d.set_item(
        "compat",
        match compat {
            Compat::Holdfast => "holdfast",
            Compat::Flufl => "flufl",
            Compat::Lockfile => "lockfile",
            Compat::Filelock => "filelock",
        },
    )?;
    d.set_item("path", convert::path_out(py, &lock_path))?;
    d.set_item("exists", true)?;
    d.set_item("locked", st.locked)?;
    d.set_item("mode", st.locked.then_some("exclusive"))?;
    let holders = pyo3::types::PyList::empty(py);
    if let Some(h) = &st.holder {
        holders.append(convert::holder(py, h)?)?;
    }
    d.set_item("holders", holders)?;
    d.set_item("stale", st.stale.as_ref().map(|s| s.to_string()))?;
    d.set_item("expires", st.expires.map(convert::epoch))?;
    d.set_item("mine", st.mine)?;
    d.set_item("last_record", py.None())?;
    Ok(d)
}
