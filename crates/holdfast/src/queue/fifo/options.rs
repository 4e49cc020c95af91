//! [`FifoOptions`]: how a [`FifoLock`](super::FifoLock) and its queue file are opened.

use std::path::{Path, PathBuf};

use super::FifoLock;
use crate::error::Result;
use crate::mode::Backend;

/// Options for opening a [`FifoLock`], in the style of
/// [`std::fs::OpenOptions`].
///
/// ```
/// use holdfast::FifoLock;
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = FifoLock::options()
///     .create_parents(true)
///     .permissions(0o666)
///     .queue_path(dir.path().join("queues/app.queue"))
///     .open(dir.path().join("state/app.lock"))?;
/// drop(lock.lock()?);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FifoOptions {
    pub(super) permissions: u32,
    pub(super) create_parents: bool,
    pub(super) follow_symlinks: bool,
    pub(super) backend: Backend,
    pub(super) record: bool,
    pub(super) verify_path: bool,
    pub(super) queue_path: Option<PathBuf>,
    pub(super) remove_when_idle: bool,
}

impl Default for FifoOptions {
    fn default() -> Self {
        FifoOptions {
            permissions: 0o644,
            create_parents: false,
            follow_symlinks: false,
            backend: Backend::Flock,
            record: true,
            verify_path: true,
            queue_path: None,
            remove_when_idle: true,
        }
    }
}

impl FifoOptions {
    /// The defaults: as [`crate::LockOptions::new`], with the queue file at
    /// `<path>.fifo`, removed when idle.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut opts = holdfast::FifoOptions::new();
    /// opts.permissions(0o666).remove_queue_when_idle(false);
    /// let lock = opts.open(dir.path().join("app.lock"))?;
    /// drop(lock.lock()?);
    /// assert!(lock.queue_path().exists(), "kept while idle");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Permission bits for newly created lock and queue files (the umask
    /// applies). Default `0o644`; processes of other users need write
    /// access to the queue file, so use `0o666` for a lock shared between
    /// users.
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.permissions(0o664);
    /// ```
    pub fn permissions(&mut self, mode: u32) -> &mut Self {
        self.permissions = mode & 0o7777;
        self
    }
    /// Create missing parent directories of the lock and queue files
    /// (default `false`).
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.create_parents(true);
    /// ```
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.create_parents = yes;
        self
    }
    /// Follow a symbolic link as the lock file's last component (default
    /// `false`; see [`crate::LockOptions::follow_symlinks`]). The queue file
    /// is never followed.
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.follow_symlinks(true);
    /// ```
    pub fn follow_symlinks(&mut self, yes: bool) -> &mut Self {
        self.follow_symlinks = yes;
        self
    }
    /// The kernel lock family of the lock file (default [`Backend::Flock`](crate::Backend::Flock)).
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.backend(holdfast::Backend::Flock);
    /// ```
    pub fn backend(&mut self, backend: Backend) -> &mut Self {
        self.backend = backend;
        self
    }
    /// Write a holder record into the lock file on exclusive acquisition
    /// (default `true`), as [`crate::LockOptions::holder_record`].
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.holder_record(true);
    /// ```
    pub fn holder_record(&mut self, yes: bool) -> &mut Self {
        self.record = yes;
        self
    }
    /// Check after each acquisition that the lock file is still at its
    /// path, and relock the new one if not (default `true`).
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.verify_path(true);
    /// ```
    pub fn verify_path(&mut self, yes: bool) -> &mut Self {
        self.verify_path = yes;
        self
    }
    /// Where the queue file lives (default: the lock path with `.fifo`
    /// appended). Every process must use the same one.
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.queue_path("app.queue");
    /// ```
    pub fn queue_path(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.queue_path = Some(path.into());
        self
    }
    /// Remove the queue file when a [`FifoLock`] is dropped and nobody is
    /// queued (default `true`; see the [module docs](super)).
    ///
    /// ```
    /// let mut options = holdfast::FifoOptions::new();
    /// options.remove_queue_when_idle(true);
    /// ```
    pub fn remove_queue_when_idle(&mut self, yes: bool) -> &mut Self {
        self.remove_when_idle = yes;
        self
    }
    /// Opens the lock and queue files (creating them). Nothing is locked
    /// yet.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoOptions::new()
    ///     .queue_path(dir.path().join("app.queue"))
    ///     .open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.queue_path(), dir.path().join("app.queue"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](crate::Error::Unsupported) off Linux; [`Error::Symlink`](crate::Error::Symlink);
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) if the queue file exists with content that
    /// is not a FIFO queue (it is never overwritten); [`Error::Io`](crate::Error::Io) if a
    /// file cannot be opened or created.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<FifoLock> {
        FifoLock::with_options(path.as_ref(), self.clone())
    }
}
