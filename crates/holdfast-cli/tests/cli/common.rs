//! What every module of the CLI's tests uses: the binary under test, the
//! bound on a run, and running it. Generic helpers (temp dirs, children
//! synchronised over pipes, bounded waits, `/proc/locks`, servers) are in
//! `holdfast_testkit`.

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use holdfast_testkit::{Output, run_to_end};
use serde_json::Value;

/// The `holdfast` binary Cargo built for these tests (for shell scripts
/// that call it by path; [`holdfast`] also honours `HOLDFAST_TEST_BIN`).
pub const HOLDFAST: &str = env!("CARGO_BIN_EXE_holdfast");

/// How long one `holdfast` run may take before the test fails saying it
/// hung (only reached when something is wrong).
pub const T: Duration = Duration::from_secs(30);

/// The binary under test: `HOLDFAST_TEST_BIN` when set (to show a test
/// failing against another build), else [`HOLDFAST`].
pub fn holdfast_bin() -> OsString {
    std::env::var_os("HOLDFAST_TEST_BIN").unwrap_or_else(|| HOLDFAST.into())
}

/// A command running [`holdfast_bin`].
pub fn holdfast() -> Command {
    Command::new(holdfast_bin())
}

/// Runs `cmd` to its end (at most [`T`]) and collects its output.
pub fn run(cmd: &mut Command) -> Output {
    run_to_end(cmd, T)
}

/// The JSON a run printed on stdout.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out.stdout))
}
