//! Exit codes of the `holdfast` command, in one place.
//!
//! | code | meaning |
//! |---|---|
//! | the command's own | `run`: the command ran; its status is passed through |
//! | 128 + N | `run`: the command was killed by signal N |
//! | 0 | `status`: every lock is free |
//! | 1 | the lock is held and `--no-wait` was given (util-linux `flock -n` uses 1 too); `status`: some lock is held |
//! | 64 | usage error (bad flag, bad duration, missing command) |
//! | 66 | the lock file cannot be opened (missing directory, permissions, symlink) |
//! | 71 | the kernel refused the lock |
//! | 124 | timed out waiting for the lock (as timeout(1)) |
//! | 126 | the command was found but could not be executed |
//! | 127 | the command was not found |

/// The command ran (or the status query succeeded) and all is well.
pub const OK: u8 = 0;
/// The lock is held by someone else (no waiting asked for).
pub const WOULD_BLOCK: u8 = 1;
/// Usage error (sysexits `EX_USAGE`).
pub const USAGE: u8 = 64;
/// The lock file cannot be opened (sysexits `EX_NOINPUT`).
pub const NO_INPUT: u8 = 66;
/// The lock operation failed (sysexits `EX_OSERR`).
pub const OS_ERR: u8 = 71;
/// Timed out waiting for the lock.
pub const TIMED_OUT: u8 = 124;
/// The command could not be executed.
pub const CANNOT_EXEC: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;

/// The exit code for a library error.
pub fn for_error(e: &holdfast::Error) -> u8 {
    match e {
        holdfast::Error::WouldBlock { .. } => WOULD_BLOCK,
        holdfast::Error::Timeout { .. } => TIMED_OUT,
        holdfast::Error::Symlink { .. } | holdfast::Error::InvalidInput { .. } => NO_INPUT,
        holdfast::Error::Io { op: "open", .. }
        | holdfast::Error::Io {
            op: "create the parent directories of",
            ..
        } => NO_INPUT,
        _ => OS_ERR,
    }
}

/// `128 + signal` for a child killed by a signal, else its exit code.
pub fn for_child(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code as u8;
    }
    match status.signal() {
        Some(sig) => (128 + sig) as u8,
        None => OS_ERR,
    }
}
