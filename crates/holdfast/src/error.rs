//! The one error type of the library.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::holder::Holders;
use crate::mode::Mode;

/// Everything that can go wrong in holdfast.
///
/// Every variant names the path it is about, and contention errors name who
/// is in the way:
///
/// ```text
/// timed out after 5s waiting for an exclusive lock on /srv/app.lock: held by pid 4242 (python3 migrate.py) on web-1 since 12:03:04 UTC (31s)
/// ```
///
/// Contention converts to [`io::ErrorKind::WouldBlock`] /
/// [`io::ErrorKind::TimedOut`] through `From<Error> for io::Error`, so code
/// that only speaks `io::Result` keeps working.
///
/// # Example
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.lock");
/// let a = holdfast::Lock::open(&path)?;
/// let b = holdfast::Lock::open(&path)?;
/// let _held = a.lock()?;
/// match b.try_lock() {
///     Err(holdfast::Error::WouldBlock { holders, .. }) => {
///         assert_eq!(holders.first().and_then(|h| h.pid), Some(std::process::id()));
///     }
///     other => panic!("expected WouldBlock, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A non-blocking attempt found the lock held in a conflicting mode.
    #[error("{} lock on {} is not available: {holders}", mode.with_article(), path.display())]
    WouldBlock {
        /// The lock file.
        path: PathBuf,
        /// The mode that was asked for.
        mode: Mode,
        /// Who holds it, as far as can be told.
        holders: Holders,
    },
    /// The wait for the lock ran out of time.
    #[error(
        "timed out after {} waiting for {} lock on {}: {holders}",
        crate::holder::fmt_duration(*waited),
        mode.with_article(),
        path.display()
    )]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// The mode that was asked for.
        mode: Mode,
        /// How long we waited.
        waited: Duration,
        /// Who holds it, as far as can be told.
        holders: Holders,
    },
    /// The calling thread already holds this lock and the lock is not
    /// re-entrant: waiting would deadlock, so holdfast refuses instead.
    #[error(
        "{} is already locked by this thread; waiting for it again would deadlock \
         (drop the first guard, use LockOptions::reentrant(true), or upgrade the guard)",
        path.display()
    )]
    AlreadyHeld {
        /// The lock file.
        path: PathBuf,
    },
    /// The last component of the lock path (or of a phase target, status
    /// file or run-once key) is a symbolic link and the caller did not opt
    /// in to following it.
    #[error(
        "refusing to use {}: it is a symbolic link (a planted link could redirect the lock \
         or its markers; set follow_symlinks(true) in the options if the link is yours)",
        path.display()
    )]
    Symlink {
        /// The lock path.
        path: PathBuf,
    },
    /// An operating-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What we were doing, as a verb phrase ("open", "lock", "write the holder record of").
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file holdfast reads has content it cannot trust.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The request is not possible on this platform or file.
    #[error("{what} is not supported for {}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The feature asked for.
        what: &'static str,
        /// Why not.
        reason: String,
    },
    /// A phase action or run-once action returned an error. Its completion
    /// marker was not written, so the next run starts again at it; markers
    /// of the phases before it stay.
    #[error(
        "action {name:?} for {} failed: {source} (no completion marker was written; \
         the next run starts again at this step)",
        path.display()
    )]
    ActionFailed {
        /// The phase target or run-once key.
        path: PathBuf,
        /// The phase name (for run-once, the key's file name).
        name: String,
        /// What the action returned.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Run-once with [`LeaderFailure::Propagate`](crate::once::LeaderFailure):
    /// the process that was running the action released the lock without
    /// recording completion (it failed or died), and this caller was told
    /// not to take over.
    #[error(
        "the run-once action for {} was not completed: the process running it (lock {leader} \
         when this caller began waiting) stopped without recording completion, and the \
         leader-failure policy is to propagate rather than retry",
        path.display()
    )]
    LeaderFailed {
        /// The run-once key.
        path: PathBuf,
        /// Who was running it when this caller started waiting.
        leader: Holders,
    },
    /// A lock file this process held was taken away: broken as stale (its
    /// lease ran out, or it was judged abandoned) or removed by hand. Work
    /// done under it since then may have overlapped with another holder's.
    #[error("lost the lock on {}: {reason}", path.display())]
    Lost {
        /// The lock path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The caller passed something holdfast cannot act on.
    #[error("invalid input for {}: {reason}", path.display())]
    InvalidInput {
        /// The path concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with holdfast's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// The path this error is about.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let missing = dir.path().join("no/such/dir/app.lock");
    /// let err = holdfast::Lock::open(&missing).unwrap_err();
    /// assert_eq!(err.path(), missing);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            Error::WouldBlock { path, .. }
            | Error::Timeout { path, .. }
            | Error::AlreadyHeld { path }
            | Error::Symlink { path }
            | Error::Io { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::InvalidInput { path, .. }
            | Error::ActionFailed { path, .. }
            | Error::LeaderFailed { path, .. }
            | Error::Lost { path, .. } => path,
        }
    }

    /// Who held the lock, for contention errors; empty otherwise.
    pub fn holders(&self) -> &Holders {
        static NONE: Holders = Holders::new();
        match self {
            Error::WouldBlock { holders, .. } | Error::Timeout { holders, .. } => holders,
            _ => &NONE,
        }
    }

    /// Whether this error means "someone else has it" (would block or
    /// timed out), as opposed to a failure.
    pub fn is_contention(&self) -> bool {
        matches!(self, Error::WouldBlock { .. } | Error::Timeout { .. })
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::WouldBlock { .. } => io::ErrorKind::WouldBlock,
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::AlreadyHeld { .. } => io::ErrorKind::Deadlock,
            Error::Symlink { .. } | Error::InvalidInput { .. } => io::ErrorKind::InvalidInput,
            Error::Io { source, .. } => source.kind(),
            Error::Corrupt { .. } => io::ErrorKind::InvalidData,
            Error::Unsupported { .. } => io::ErrorKind::Unsupported,
            Error::ActionFailed { .. } | Error::LeaderFailed { .. } => io::ErrorKind::Other,
            Error::Lost { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
