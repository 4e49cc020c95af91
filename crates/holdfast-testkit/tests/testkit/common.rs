//! What every module of the library's multi-process tests uses: the
//! helper binary the children run and the bound on a wait. Generic helpers
//! (temp dirs, children synchronised over pipes, bounded waits,
//! `/proc/locks`) are in the `holdfast_testkit` library.

use std::process::Command;
use std::time::Duration;

/// The `holdfast-helper` binary Cargo built for these tests.
pub const HELPER: &str = env!("CARGO_BIN_EXE_holdfast-helper");

/// The bound on a wait for a child (only reached when something hangs).
pub const LONG: Duration = Duration::from_secs(30);

/// `holdfast-helper ARGS...`.
pub fn helper(args: &[&str]) -> Command {
    let mut c = Command::new(HELPER);
    c.args(args);
    c
}
