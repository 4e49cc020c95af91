//! Exit codes of the `holdfast` command, in one place, and the mapping from
//! library errors to codes and messages.
//!
//! `holdfast run`, `once`, `phase`, `phases`, `status`, `list`, `break`:
//!
//! | code | meaning |
//! |---|---|
//! | the command's own | the command ran; its status is passed through (`once`, `phase`: a non-zero status leaves the step not done) |
//! | 128 + N | the command was killed by signal N |
//! | 0 | the command succeeded; `once`/`phase`: or it was already done (skipped); `status`: every lock is free (or a stale lock file); `once --status`, `phases status NAME...`: done; `break`: the lock was removed |
//! | 1 | the lock is held and `--no-wait` was given; `status`: some lock is held; `once --status`, `phases status NAME...`: not done; `break`: refused (a live or uncheckable holder without `--force`, or a kernel lock) |
//! | 64 | bad input: flags, durations, a missing command, a path in a missing or unwritable directory, a symlink, a bad phase name |
//! | 65 | a phase status file is corrupt (holdfast never overwrites it; see `phases reset`) |
//! | 66 | the lock file exists but cannot be opened; `break`: no lock-file lock at the path |
//! | 71 | the kernel refused the lock, or a system limit was hit |
//! | 73 | the lock file cannot be created (read-only filesystem, disk full) |
//! | 75 | `once --on-leader-failure propagate`: the caller running the command failed or died, and this caller did not run it; `run --lockfile`: the command succeeded but the lock was broken or lost while it ran |
//! | 124 | timed out waiting for the lock (as timeout(1)) |
//! | 126 | the command was found but could not be executed |
//! | 127 | the command was not found |
//!
//! `holdfast flock` uses util-linux flock(1)'s codes instead (see
//! [`flock`]): 1 (or `-E N`) for both conflict and timeout, 65 for a failed
//! lock call, 69 for a command that cannot be executed.

use std::io;
use std::path::Path;

use holdfast::{Error, IoOp, text};

/// The command ran (or the status query succeeded) and all is well.
pub const OK: u8 = 0;
/// The lock is held by someone else (no waiting asked for).
pub const WOULD_BLOCK: u8 = 1;
/// `break`: refused (the holder is alive or cannot be checked, or it is
/// a kernel lock).
pub const REFUSED: u8 = 1;
/// `once --status`, `phases status NAME...`: not done.
pub const NOT_DONE: u8 = 1;
/// Usage error (sysexits `EX_USAGE`).
pub const USAGE: u8 = 64;
/// The lock call failed (sysexits `EX_DATAERR`; flock(1) uses it).
pub const DATA_ERR: u8 = 65;
/// The lock file cannot be opened (sysexits `EX_NOINPUT`).
pub const NO_INPUT: u8 = 66;
/// `break`: there is no lock-file lock at the path (sysexits `EX_NOINPUT`).
pub const NO_LOCK: u8 = 66;
/// The command cannot be executed (sysexits `EX_UNAVAILABLE`; flock(1)).
pub const UNAVAILABLE: u8 = 69;
/// A system limit or system call failed (sysexits `EX_OSERR`).
pub const OS_ERR: u8 = 71;
/// The lock file cannot be created (sysexits `EX_CANTCREAT`).
pub const CANT_CREATE: u8 = 73;
/// Run-once with `--on-leader-failure propagate`: the leader stopped
/// without completing (sysexits `EX_TEMPFAIL`: try again later).
pub const LEADER_FAILED: u8 = 75;
/// `run --lockfile`: the command succeeded, but the lock was broken or lost
/// while it ran, so its work may have overlapped another holder's
/// (sysexits `EX_TEMPFAIL`).
pub const LOCK_LOST: u8 = 75;
/// Timed out waiting for the lock.
pub const TIMED_OUT: u8 = 124;
/// The command could not be executed.
pub const CANNOT_EXEC: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;

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

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The exit code and message for a failure of `holdfast run`, `status`,
/// `list`: bad paths are usage errors that say what is wrong with them.
pub fn for_error(e: &Error) -> (u8, String) {
    match e {
        Error::WouldBlock { path, .. } => (
            WOULD_BLOCK,
            format!(
                "{e}; to wait for it, give --timeout DURATION (or leave out --no-wait); \
                 to see who holds it: holdfast status {}",
                shell_path(path)
            ),
        ),
        Error::Timeout { path, .. } => (
            TIMED_OUT,
            format!(
                "{e}; to see who holds it now: holdfast status {}; a longer --timeout \
                 waits longer",
                shell_path(path)
            ),
        ),
        Error::Symlink { path } => (
            USAGE,
            format!(
                "{} is a symbolic link{}; holdfast does not follow links to lock files, run-once \
                 keys or phase targets (a planted link could redirect the lock or its markers): \
                 name the real file instead",
                text::path(path),
                std::fs::read_link(path)
                    .map(|t| format!(" to {}", text::path(&t)))
                    .unwrap_or_default()
            ),
        ),
        Error::Unsupported { path, what, .. } if what.starts_with("fcntl locks") => (
            USAGE,
            format!(
                "cannot use --fcntl on {}: {}; leave out --fcntl (flock locks work there)",
                text::path(path),
                if path.is_dir() {
                    "it is a directory, and fcntl locks need a file opened for writing"
                } else {
                    "fcntl (open file description) locks are not available here"
                }
            ),
        ),
        Error::Unsupported {
            what: "the link protocol",
            path,
            ..
        } => (
            USAGE,
            format!(
                "cannot use a link lock on {}: this filesystem refuses hard links; use \
                 --lockfile soft or --lockfile mkdir",
                crate::report::shown(path)
            ),
        ),
        Error::InvalidInput { .. } | Error::Unsupported { .. } => (USAGE, e.to_string()),
        Error::Corrupt { .. } => (DATA_ERR, e.to_string()),
        Error::LeaderFailed { .. } => (LEADER_FAILED, e.to_string()),
        Error::Lost { .. } => (LOCK_LOST, e.to_string()),
        Error::Io {
            op: IoOp::FindDirectory,
            path,
            source,
        } => missing_directory(path, source),
        Error::Io { op, path, source } if op.touches_path() => open_failure(path, source),
        _ => (OS_ERR, e.to_string()),
    }
}

/// A path as a shell user would type it: escaped, then quoted if needed.
fn shell_path(path: &Path) -> String {
    text::quote_arg(&text::path(path)).into_owned()
}

/// The directory of a run-once key or phase target is missing (or is not
/// a directory).
fn missing_directory(path: &Path, source: &io::Error) -> (u8, String) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match source.kind() {
        io::ErrorKind::NotFound => (
            USAGE,
            format!(
                "cannot use {}: directory {} does not exist (create it, or pass --create-parents)",
                text::path(path),
                text::path(parent)
            ),
        ),
        _ => (USAGE, format!("cannot use {}: {source}", text::path(path))),
    }
}

/// The code for a command that could not be started.
pub fn for_spawn_error(e: &io::Error) -> u8 {
    if e.kind() == io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_EXEC
    }
}

fn open_failure(path: &Path, source: &io::Error) -> (u8, String) {
    let shown = text::path(path);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let exists = std::fs::symlink_metadata(path).is_ok();
    match errno(source) {
        libc::ENOENT if !parent.is_dir() => (
            USAGE,
            format!(
                "cannot create lock file {shown}: directory {} does not exist \
                 (create it, or pass --create-parents)",
                text::path(parent)
            ),
        ),
        libc::EACCES | libc::EPERM if !exists => (
            USAGE,
            format!(
                "cannot create lock file {shown}: directory {} is not writable ({source}); \
                 pick a directory you can write to, or have the file created for you",
                text::path(parent)
            ),
        ),
        libc::ENOTDIR => (
            USAGE,
            format!("cannot open lock file {shown}: a component of the path is not a directory"),
        ),
        libc::ENAMETOOLONG | libc::ELOOP => {
            (USAGE, format!("cannot open lock file {shown}: {source}"))
        }
        libc::EROFS | libc::ENOSPC | libc::EDQUOT => (
            CANT_CREATE,
            format!("cannot create lock file {shown}: {source}"),
        ),
        libc::EMFILE | libc::ENFILE | libc::ENOMEM => {
            (OS_ERR, format!("cannot open lock file {shown}: {source}"))
        }
        _ => (NO_INPUT, format!("cannot open lock file {shown}: {source}")),
    }
}

/// flock(1)'s exit codes, for `holdfast flock`.
pub mod flock {
    use super::*;

    /// util-linux `open_file()`: 71 for resource limits, 73 when the file
    /// cannot be created, 66 otherwise.
    pub fn open_code(source: &io::Error) -> u8 {
        match errno(source) {
            libc::ENOMEM | libc::EMFILE | libc::ENFILE => OS_ERR,
            libc::EROFS | libc::ENOSPC => CANT_CREATE,
            _ => NO_INPUT,
        }
    }

    /// A failed lock call: 71 for `ENOLCK`/`ENOMEM`, 65 otherwise.
    pub fn lock_code(source: &io::Error) -> u8 {
        match errno(source) {
            libc::ENOLCK | libc::ENOMEM => OS_ERR,
            _ => DATA_ERR,
        }
    }

    /// An `execvp` failure: 71 for `ENOMEM`, 69 otherwise.
    pub fn exec_code(source: &io::Error) -> u8 {
        if errno(source) == libc::ENOMEM {
            OS_ERR
        } else {
            UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn io_err(op: IoOp, path: &str, errno: i32) -> Error {
        Error::Io {
            op,
            path: PathBuf::from(path),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The library's API words (`Protocol::Soft`, `Backend::Flock`) become
    /// the flags a shell user types.
    #[test]
    fn unsupported_speaks_flags() {
        for (what, reason, want) in [
            (
                "the link protocol",
                "this filesystem refuses hard links (EPERM); use Protocol::Soft or Protocol::Mkdir",
                "use --lockfile soft or --lockfile mkdir",
            ),
            (
                "fcntl locks on a directory",
                "they need a file opened for writing; use Backend::Flock",
                "leave out --fcntl",
            ),
        ] {
            let e = Error::Unsupported {
                path: PathBuf::from("/nfs/x.lock"),
                what,
                reason: reason.into(),
            };
            let (code, msg) = for_error(&e);
            assert_eq!(code, USAGE);
            assert!(msg.contains(want) && !msg.contains("::"), "{msg}");
        }
    }

    #[test]
    fn bad_paths_are_usage_errors_that_say_why() {
        let (code, msg) = for_error(&io_err(IoOp::Open, "/no/such/dir/x.lock", libc::ENOENT));
        assert_eq!(code, USAGE);
        assert!(
            msg.contains("directory /no/such/dir does not exist"),
            "{msg}"
        );
        let (code, msg) = for_error(&io_err(IoOp::Open, "/nonexistent-x.lock", libc::EACCES));
        assert_eq!(code, USAGE);
        assert!(msg.contains("directory / is not writable"), "{msg}");
        let (code, _) = for_error(&io_err(IoOp::Open, "/etc/passwd/x", libc::ENOTDIR));
        assert_eq!(code, USAGE);
        let (code, _) = for_error(&io_err(IoOp::Open, "/x", libc::EROFS));
        assert_eq!(code, CANT_CREATE);
        let (code, _) = for_error(&io_err(IoOp::Open, "/x", libc::EMFILE));
        assert_eq!(code, OS_ERR);
        let (code, _) = for_error(&io_err(IoOp::Lock, "/x", libc::ENOLCK));
        assert_eq!(code, OS_ERR);
    }

    #[test]
    fn once_and_phase_errors() {
        let (code, msg) = for_error(&io_err(
            IoOp::FindDirectory,
            "/no/such/dir/key",
            libc::ENOENT,
        ));
        assert_eq!(code, USAGE);
        assert!(
            msg.contains("directory /no/such/dir does not exist"),
            "{msg}"
        );
        let corrupt = Error::Corrupt {
            path: PathBuf::from("/x.status"),
            reason: "not UTF-8".into(),
        };
        assert_eq!(for_error(&corrupt).0, DATA_ERR);
        let failed = Error::LeaderFailed {
            path: PathBuf::from("/k"),
            leader: holdfast::Holders::new(),
        };
        assert_eq!(for_error(&failed).0, LEADER_FAILED);
        assert_eq!(
            for_spawn_error(&io::Error::from_raw_os_error(libc::ENOENT)),
            NOT_FOUND
        );
        assert_eq!(
            for_spawn_error(&io::Error::from_raw_os_error(libc::EACCES)),
            CANNOT_EXEC
        );
    }

    #[test]
    fn flock_codes_follow_util_linux() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(flock::open_code(&e(libc::ENOENT)), 66);
        assert_eq!(flock::open_code(&e(libc::EROFS)), 73);
        assert_eq!(flock::open_code(&e(libc::EMFILE)), 71);
        assert_eq!(flock::lock_code(&e(libc::EBADF)), 65);
        assert_eq!(flock::lock_code(&e(libc::ENOLCK)), 71);
        assert_eq!(flock::exec_code(&e(libc::ENOENT)), 69);
        assert_eq!(flock::exec_code(&e(libc::ENOMEM)), 71);
    }
}
