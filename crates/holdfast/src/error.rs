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
    #[error("{}", contention(None, *mode, path, holders))]
    WouldBlock {
        /// The lock file.
        path: PathBuf,
        /// The mode that was asked for.
        mode: Mode,
        /// Who holds it, as far as can be told.
        holders: Holders,
    },
    /// The wait for the lock ran out of time.
    #[error("{}", contention(Some(*waited), *mode, path, holders))]
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
         (drop the first guard first; for a Lock, LockOptions::reentrant(true) allows \
         nesting and LockGuard::upgrade turns a shared guard exclusive)",
        crate::text::path(path)
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
        crate::text::path(path)
    )]
    Symlink {
        /// The lock path.
        path: PathBuf,
    },
    /// An operating-system call failed.
    #[error("cannot {op} {}: {source}", crate::text::path(path))]
    Io {
        /// What holdfast was doing; its `Display` is the verb phrase of the
        /// message ("open", "lock", "write the holder record to").
        op: IoOp,
        /// The file it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A backend that is not a file (etcd, PostgreSQL, ...; see
    /// [`crate::backend`]) failed: a connection, a lease, a transaction.
    /// `path` is the backend's [`location`](crate::LockBackend::location),
    /// such as `etcd://10.0.0.5:2379/locks/jobs/x`.
    ///
    /// ```
    /// let e = holdfast::Error::Backend {
    ///     path: "etcd://127.0.0.1:2379/locks/job".into(),
    ///     op: "grant a lease for",
    ///     source: "connection refused".into(),
    /// };
    /// assert_eq!(
    ///     e.to_string(),
    ///     "cannot grant a lease for etcd://127.0.0.1:2379/locks/job: connection refused"
    /// );
    /// ```
    #[error("cannot {op} {}: {source}", crate::text::path(path))]
    Backend {
        /// Where the lock lives, as the backend names it.
        path: PathBuf,
        /// What we were doing, as a verb phrase ("connect to", "grant a
        /// lease for", "mark a phase done in").
        op: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A file holdfast reads has content it cannot trust.
    #[error("{} is corrupt: {reason}", crate::text::path(path))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The request is not possible on this platform or file.
    #[error("{what} is not supported for {}: {reason}", crate::text::path(path))]
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
        crate::text::path(path)
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
        crate::text::path(path)
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
    #[error("lost the lock on {}: {reason}", crate::text::path(path))]
    Lost {
        /// The lock path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The caller passed something holdfast cannot act on.
    #[error("invalid input for {}: {reason}", crate::text::path(path))]
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
    pub(crate) fn io(op: IoOp, path: &Path, source: io::Error) -> Self {
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
            | Error::Backend { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::InvalidInput { path, .. }
            | Error::ActionFailed { path, .. }
            | Error::LeaderFailed { path, .. }
            | Error::Lost { path, .. } => path,
        }
    }

    /// Who held the lock, for contention errors; empty otherwise.
    ///
    /// ```
    /// use holdfast::{Lock, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// let err = Lock::open(&path)?.try_lock().unwrap_err();
    /// let holder = err.holders().first().expect("the kernel names the holder");
    /// assert_eq!(holder.pid, Some(std::process::id()));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> &Holders {
        static NONE: Holders = Holders::new();
        match self {
            Error::WouldBlock { holders, .. } | Error::Timeout { holders, .. } => holders,
            _ => &NONE,
        }
    }

    /// Whether this error means "someone else has it" (would block or
    /// timed out), as opposed to a failure.
    ///
    /// ```
    /// use holdfast::{Lock, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// match Lock::open(&path)?.try_lock() {
    ///     Err(e) if e.is_contention() => eprintln!("busy, try later: {e}"),
    ///     Err(e) => return Err(e),
    ///     Ok(_guard) => unreachable!("held above"),
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
            Error::Lost { .. } | Error::Backend { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

macro_rules! io_ops {
    ($( $(#[$doc:meta])* $name:ident => $phrase:literal, )*) => {
        /// What holdfast was doing when a system call failed: the `op` of
        /// [`Error::Io`].
        ///
        /// Its `Display` is the verb phrase the error message is built from
        /// (`cannot {op} {path}: {source}`); match on the variant, not on
        /// the words.
        ///
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// let missing = dir.path().join("no/such/dir/app.lock");
        /// match holdfast::Lock::open(&missing) {
        ///     Err(holdfast::Error::Io { op, .. }) => {
        ///         assert_eq!(op, holdfast::IoOp::Open);
        ///         assert!(op.touches_path());
        ///         assert_eq!(op.to_string(), "open");
        ///     }
        ///     other => panic!("expected Error::Io, got {other:?}"),
        /// }
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum IoOp {
            $( $(#[$doc])* $name, )*
        }

        impl IoOp {
            /// The verb phrase, as in the error message.
            ///
            /// ```
            /// assert_eq!(holdfast::IoOp::Open.as_str(), "open");
            /// assert_eq!(holdfast::IoOp::FsyncDirectory.as_str(), "fsync the directory");
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $( IoOp::$name => $phrase, )*
                }
            }
        }
    };
}

io_ops! {
    // Any file.
    /// Opening (or creating) the named path.
    Open => "open",
    /// Creating the directories above the path (`create_parents`).
    CreateParents => "create the parent directories of",
    /// Finding the directory a run-once key or phase target lives in.
    FindDirectory => "find the directory of",
    /// `fstat` or `lstat` of the path.
    Inspect => "inspect",
    /// Reading the path.
    Read => "read",
    /// Writing the path.
    Write => "write",
    /// `fsync` of the path.
    Fsync => "fsync",
    /// `fsync` of a marker file, to make phase markers durable.
    FsyncMarkers => "fsync (to make its markers durable)",
    /// `fsync` of the directory holding the path.
    FsyncDirectory => "fsync the directory",
    /// Listing the directory.
    List => "list",
    // Kernel locks.
    /// Taking a kernel lock.
    Lock => "lock",
    /// Releasing a kernel lock.
    Unlock => "unlock",
    /// Converting a shared lock into an exclusive one.
    Upgrade => "upgrade the lock on",
    /// Converting an exclusive lock into a shared one.
    Downgrade => "downgrade the lock on",
    /// Testing a lock without a kernel lock table.
    Probe => "probe",
    /// Reading `/proc/locks`.
    ReadLockTable => "read the kernel lock table for",
    /// Waiting in the kernel for a lock.
    WaitFor => "wait for",
    // FIFO queue and semaphore.
    /// Opening a FIFO queue's side file.
    OpenQueue => "open the queue file",
    /// Locking a FIFO queue's side file.
    LockQueue => "lock the queue file",
    /// Reading a FIFO queue's side file.
    ReadQueueFile => "read the queue file",
    /// Reading the queue of a FIFO lock.
    ReadQueue => "read the queue of",
    /// Writing a FIFO queue's side file.
    WriteQueue => "write the queue file",
    /// Taking a ticket in a FIFO queue.
    TakeTicket => "take a ticket in the queue file",
    /// Waiting in a FIFO queue's side file.
    WaitInQueueFile => "wait in the queue file",
    /// Waiting in the queue of a FIFO lock.
    WaitInQueue => "wait in the queue of",
    /// Leaving the queue of a FIFO lock.
    LeaveQueue => "leave the queue of",
    /// Locking one slot of a semaphore.
    LockSlot => "lock a slot of",
    /// Releasing a semaphore permit.
    ReleasePermit => "release a permit of",
    // Lock files.
    /// Creating a soft lock file (`O_EXCL`).
    CreateLockFile => "create the lock file",
    /// Creating a mkdir lock's directory.
    CreateLockDirectory => "create the lock directory",
    /// Creating the file a soft lock's take-over publishes.
    CreateTakeoverFile => "create a take-over file",
    /// Creating the directory a mkdir lock's take-over publishes.
    CreateTakeoverDirectory => "create a take-over directory",
    /// Creating a link lock's claim file.
    CreateClaim => "create the claim file for",
    /// `fstat` of a link lock's claim file.
    InspectClaim => "inspect the claim file for",
    /// Writing a link lock's claim file.
    WriteClaim => "write the claim file for",
    /// Linking a claim file to the lock name.
    LinkClaim => "link the claim file to",
    /// Linking a claim for a take-over.
    LinkTakeoverClaim => "link a claim for a take-over of",
    /// Removing a link lock's claim file.
    RemoveClaim => "remove the claim file",
    /// Writing a lock file's holder record.
    WriteRecord => "write the holder record to",
    /// Writing the holder record inside a mkdir lock.
    WriteRecordInto => "write the holder record into",
    /// Removing the holder record from a mkdir lock.
    RemoveRecord => "remove the holder record from",
    /// Removing a soft or link lock file.
    RemoveLockFile => "remove the lock file",
    /// Removing a mkdir lock's directory.
    RemoveLockDirectory => "remove the lock directory",
    /// Removing a lock (break).
    RemoveLock => "remove the lock",
    /// Removing a stale lock (take-over).
    RemoveStale => "remove the stale lock",
    /// Claiming the right to break a stale lock.
    ClaimBreak => "claim the right to break",
    /// Exchanging names with a stale lock (`renameat2(RENAME_EXCHANGE)`).
    ExchangeNames => "exchange names with",
    /// Leaving the released mark in a lock parked by a take-over.
    MarkReleased => "mark released",
    /// Releasing a lock file.
    Release => "release",
    /// Setting a lock file's lease.
    SetLease => "set the lease of",
    /// Refreshing a lock file's lease (heartbeat).
    RefreshLease => "refresh the lease of",
    /// Starting the heartbeat thread.
    StartHeartbeat => "start the heartbeat thread for",
    /// Reading the working directory to make a path absolute.
    ReadWorkingDirectory => "read the working directory for",
    /// Linking (link protocol).
    Link => "link",
    // Phases and run-once.
    /// Opening a phase status file.
    OpenStatusFile => "open the phase status file",
    /// Reading a phase status file.
    ReadStatusFile => "read the phase status file",
    /// `lstat` of a phase status file.
    InspectStatusFile => "inspect the phase status file",
    /// Removing a phase status file.
    RemoveStatusFile => "remove the phase status file",
    /// Creating the temporary file a marker file is written to.
    CreateTemporary => "create the temporary file",
    /// Renaming a temporary file into place.
    RenameTemporary => "rename a temporary file onto",
    /// Copying a marker into an extended attribute.
    CopyMarkerToXattr => "copy a marker into an xattr on",
    /// Removing a marker extended attribute.
    RemoveMarkerXattr => "remove a marker xattr from",
    /// `lstat` of a run-once key.
    InspectKey => "inspect the run-once key",
    /// Removing a run-once key.
    RemoveKey => "remove the run-once key",
}

impl IoOp {
    /// Whether the operation opens or creates the named path itself (or the
    /// directories above it): a failure then says something about the path
    /// or its directory (missing, not writable, read-only), not about a
    /// lock held on it.
    ///
    /// ```
    /// assert!(holdfast::IoOp::Open.touches_path());
    /// assert!(!holdfast::IoOp::Lock.touches_path());
    /// ```
    pub fn touches_path(self) -> bool {
        matches!(
            self,
            IoOp::Open
                | IoOp::CreateParents
                | IoOp::OpenQueue
                | IoOp::OpenStatusFile
                | IoOp::CreateLockFile
                | IoOp::CreateLockDirectory
                | IoOp::CreateTakeoverFile
                | IoOp::CreateTakeoverDirectory
                | IoOp::CreateClaim
                | IoOp::CreateTemporary
        )
    }
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message of [`Error::WouldBlock`] (`waited` `None`) and
/// [`Error::Timeout`]: of a lock, or of a semaphore's permits.
fn contention(waited: Option<Duration>, mode: Mode, path: &Path, holders: &Holders) -> String {
    let what = match holders.permits() {
        Some(_) => format!("a permit of {}", crate::text::path(path)),
        None => format!(
            "{} lock on {}",
            mode.with_article(),
            crate::text::path(path)
        ),
    };
    match waited {
        None if holders.permits().is_some() => {
            format!(
                "no permit of {} is free: {holders}",
                crate::text::path(path)
            )
        }
        None => format!("{what} is not available: {holders}"),
        Some(w) => format!(
            "timed out after {} waiting for {what}: {holders}",
            crate::holder::fmt_duration(w)
        ),
    }
}
