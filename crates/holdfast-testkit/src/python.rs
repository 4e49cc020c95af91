//! Finding the Python interpreter that has the peer libraries installed.

use std::path::PathBuf;

/// The interpreter from `HOLDFAST_TEST_PYTHON` (set by `scripts/test`, which
/// creates the venv). `None` means "skip this interop test", unless
/// `HOLDFAST_REQUIRE_INTEROP=1`, in which case a missing interpreter fails
/// the test: CI must never silently skip interop.
pub fn peer_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("HOLDFAST_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("HOLDFAST_REQUIRE_INTEROP").as_deref() == Ok("1") {
                panic!("{test}: HOLDFAST_TEST_PYTHON is not set but HOLDFAST_REQUIRE_INTEROP=1");
            }
            eprintln!("skipping {test}: HOLDFAST_TEST_PYTHON not set (scripts/test sets it)");
            None
        }
    }
}

/// `tests/peers/NAME` of this crate.
pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}
