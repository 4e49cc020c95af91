//! `holdfast._native`: the private native module under the Python package
//! `holdfast` (`python/holdfast/`). The Python layer validates arguments,
//! keeps track of which thread or task holds what, and builds the public
//! classes; this module does the locking, releasing the GIL while it waits.
//!
//! - Blocking waits run with the GIL released. In the main thread they
//!   wake at most every `wait::SIGNAL_SLICE` (100 ms) to run Python's signal
//!   handlers, so Ctrl-C raises `KeyboardInterrupt` with nothing held.
//! - asyncio acquisitions run on one tokio runtime thread (the library's
//!   `tokio` feature: a killable helper blocked in the kernel, watched
//!   through its pidfd, nothing polls) and report back through a callback
//!   that the Python side turns into an `asyncio.Future`. Cancelling drops
//!   the acquisition, which releases whatever it got.
//! - Errors become the exceptions of `holdfast._errors`, built from the
//!   library's `Error` (message, path, holders, errno).

mod convert;
mod errors;
mod fifo;
mod lock;
mod lockfile;
mod owned;
mod phase;
mod runtime;
mod semaphore;
mod status;
mod wait;

use pyo3::prelude::*;

/// Runs the `holdfast` command (the Rust CLI, not a re-implementation)
/// with `argv` and returns its exit code. The Python entry point restores
/// default signal dispositions first.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> u8 {
    let code = py.detach(|| holdfast_cli::run(argv));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(status::status, m)?)?;
    m.add_function(wrap_pyfunction!(status::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(phase::once, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::after_fork_in_child, m)?)?;
    m.add_class::<lock::NativeLock>()?;
    m.add_class::<lock::LockHandle>()?;
    m.add_class::<lockfile::NativeLockFile>()?;
    m.add_class::<lockfile::LockFileHandle>()?;
    m.add_class::<fifo::NativeFifoLock>()?;
    m.add_class::<fifo::FifoHandle>()?;
    m.add_class::<semaphore::NativeSemaphore>()?;
    m.add_class::<semaphore::PermitHandle>()?;
    m.add_class::<phase::NativePhaseRunner>()?;
    m.add_class::<runtime::AsyncAcquisition>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
