//! One module per subcommand: validated flags in, library calls, exit code
//! out. A new subcommand is one more module here plus its `*Args` in
//! `cli.rs` and one arm in `main`.

pub mod docs;
pub mod flock;
pub mod list;
pub mod once;
pub mod phase;
pub mod run;
pub mod status;

use std::path::Path;

use holdfast::Wait;

use crate::duration;
use crate::waiting::Show;

/// `--no-wait` / `--timeout DURATION` as a library [`Wait`]; `--timeout 0`
/// means `--no-wait`.
pub fn wait(no_wait: bool, timeout: Option<&str>) -> Result<Wait, String> {
    if no_wait {
        return Ok(Wait::NoWait);
    }
    match timeout {
        None => Ok(Wait::Forever),
        Some(t) => match duration::parse(t) {
            Ok(d) if d.is_zero() => Ok(Wait::NoWait),
            Ok(d) => Ok(Wait::Timeout(d)),
            Err(e) => Err(format!("--timeout: {e}")),
        },
    }
}

/// `--quiet` / `--verbose` as a waiting-line policy.
pub fn show(verbose: bool, quiet: bool) -> Show {
    if quiet {
        Show::Never
    } else if verbose {
        Show::Always
    } else {
        Show::OnTerminal
    }
}

/// `--create-parents`: creates the directories above `path`, or says why
/// it could not.
pub fn create_parents(path: &Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display())),
        None => Ok(()),
    }
}
