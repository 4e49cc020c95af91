//! [`LockOptions`]: how a [`Lock`] is opened, and the opening of the lock
//! file itself.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::Lock;
use crate::error::{Error, IoOp, Result};
use crate::mode::Backend;
use crate::sys::{self, FileId, FileKind, OpenSpec};

/// Options for opening a [`Lock`], in the style of
/// [`std::fs::OpenOptions`].
///
/// ```
/// use holdfast::{Backend, LockOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockOptions::new()
///     .create_parents(true)
///     .permissions(0o664)
///     .reentrant(true)
///     .backend(Backend::Flock)
///     .open(dir.path().join("state/app.lock"))?;
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // re-entrant: same thread, nested
/// drop(inner);
/// drop(outer);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LockOptions {
    pub(crate) permissions: u32,
    pub(crate) create: bool,
    pub(crate) create_parents: bool,
    pub(crate) follow_symlinks: bool,
    pub(super) reentrant: bool,
    pub(crate) backend: Backend,
    pub(crate) record: bool,
    pub(crate) verify_path: bool,
    /// Made from an inherited descriptor ([`LockOptions::open_fd`]).
    pub(super) inherited: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            permissions: 0o644,
            create: true,
            create_parents: false,
            follow_symlinks: false,
            reentrant: false,
            backend: Backend::Flock,
            record: true,
            verify_path: true,
            inherited: false,
        }
    }
}

impl LockOptions {
    /// The defaults: create the file (mode `0o644` minus the umask), do not
    /// create parent directories, refuse a symlink, not re-entrant, `flock`,
    /// write a holder record, verify the path after each acquisition.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut opts = holdfast::LockOptions::new();
    /// opts.create_parents(true).permissions(0o664);
    /// let lock = opts.open(dir.path().join("run/app.lock"))?;
    /// # drop(lock);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Permission bits for a newly created lock file (the umask still
    /// applies). Default `0o644`; use `0o664` or `0o666` for a lock shared
    /// between users.
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.permissions(0o664);
    /// ```
    pub fn permissions(&mut self, mode: u32) -> &mut Self {
        self.permissions = mode & 0o7777;
        self
    }
    /// Create the lock file if it is missing (default `true`). With `false`
    /// a missing file is an [`Error::Io`] with `NotFound`.
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.create(true);
    /// ```
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.create = yes;
        self
    }
    /// Create missing parent directories (default `false`).
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.create_parents(true);
    /// ```
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.create_parents = yes;
        self
    }
    /// Follow a symbolic link in the last path component (default `false`:
    /// such a path is refused with [`Error::Symlink`], because a planted
    /// link in a shared directory could point the lock, and the holder
    /// record written into it, at a file of the victim's). With `true`,
    /// as flock(1) does, the link is followed for locking, but a file is
    /// never created where a dangling link points (that is a `NotFound`
    /// [`Error::Io`]) and no holder record is written into what it names.
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.follow_symlinks(true);
    /// ```
    pub fn follow_symlinks(&mut self, yes: bool) -> &mut Self {
        self.follow_symlinks = yes;
        self
    }
    /// Let the thread holding the lock take it again, counting nested
    /// acquisitions (default `false`: asking again is
    /// [`Error::AlreadyHeld`] rather than a deadlock).
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.reentrant(true);
    /// ```
    pub fn reentrant(&mut self, yes: bool) -> &mut Self {
        self.reentrant = yes;
        self
    }
    /// The kernel lock family (default [`Backend::Flock`]).
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.backend(holdfast::Backend::Flock);
    /// ```
    pub fn backend(&mut self, backend: Backend) -> &mut Self {
        self.backend = backend;
        self
    }
    /// Write a holder record into the lock file on exclusive acquisition
    /// (default `true`). Without it, holders are still named from the
    /// kernel's lock table, but there is no fencing token and no "since".
    ///
    /// A record is only ever written into a regular file this process's
    /// user owns, reached without a symbolic link and with no other hard
    /// link, and only over an empty file or an earlier holdfast record:
    /// a file someone else planted is locked but never written into.
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.holder_record(true);
    /// ```
    pub fn holder_record(&mut self, yes: bool) -> &mut Self {
        self.record = yes;
        self
    }
    /// After each acquisition, check that the locked file is still linked
    /// at its path, and reopen and retry if someone deleted or replaced it
    /// (default `true`; costs one `fstat`). Without the check, a lock taken
    /// after another program removed the file guards an orphan inode.
    ///
    /// ```
    /// let mut options = holdfast::LockOptions::new();
    /// options.verify_path(true);
    /// ```
    pub fn verify_path(&mut self, yes: bool) -> &mut Self {
        self.verify_path = yes;
        self
    }
    /// Opens the lock file. It is not locked yet.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::LockOptions::new()
    ///     .backend(holdfast::Backend::OfdFcntl)
    ///     .open(dir.path().join("app.lock"))?;
    /// let _guard = lock.lock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Symlink`] for a symlink (unless allowed), [`Error::Io`] if
    /// the file cannot be opened or created (missing directory, no
    /// permission), [`Error::Unsupported`] for [`Backend::OfdFcntl`] where
    /// it does not exist.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Lock> {
        Lock::with_options(path.as_ref(), self.clone())
    }

    /// Wraps a descriptor that is already open, such as one inherited from
    /// a shell (`exec 9>app.lock; holdfast flock -n 9`), so it can be
    /// locked and unlocked like any [`Lock`].
    ///
    /// The kernel lock belongs to the *open file description*, which the
    /// descriptor shares with every copy of it (the shell's fd 9, a
    /// parent's, a child's): a lock taken here is held by all of them, and
    /// outlives this process for as long as another copy stays open. To
    /// leave it held when this process exits, [`std::mem::forget`] the
    /// guard instead of dropping it: dropping unlocks, for every copy (and
    /// a forgotten guard keeps this process's copy open until it exits).
    ///
    /// Differences from [`open`](Self::open): there is no path to check
    /// or reopen, so [`verify_path`](Self::verify_path) does not apply; no
    /// holder record is written, because the descriptor may be write-only
    /// or append-only and its real holder is usually the process that
    /// opened it. Holders are still named from the kernel's lock table.
    /// The lock's [`path`](Lock::path) is the file the descriptor refers
    /// to where the platform can tell (Linux: `/proc/self/fd`), else
    /// `/dev/fd/N`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let file = std::fs::File::create(&path)?;
    /// let shared = file.try_clone()?; // the same open file description
    /// let lock = holdfast::Lock::from_fd(file.into())?;
    /// let guard = lock.try_lock()?;
    /// // A separate open of the path is a different description: excluded.
    /// assert!(holdfast::Lock::open(&path)?.try_lock().is_err());
    /// std::mem::forget(guard); // leave it held, as `flock -n 9` does
    /// drop(lock);
    /// // Whoever has a copy of the description can release it (`flock -u 9`).
    /// holdfast::Lock::from_fd(shared.into())?.force_unlock()?;
    /// assert!(holdfast::Lock::open(&path)?.try_lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the descriptor cannot be inspected (`fstat`),
    /// [`Error::Unsupported`] for [`Backend::OfdFcntl`] on a directory or
    /// where OFD locks do not exist.
    #[cfg(unix)]
    pub fn open_fd(&self, fd: std::os::fd::OwnedFd) -> Result<Lock> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        let file = File::from(fd);
        let path = sys::fd_path(&file).unwrap_or_else(|| PathBuf::from(format!("/dev/fd/{raw}")));
        if self.backend == Backend::OfdFcntl && !sys::HAS_OFD {
            return Err(Error::Unsupported {
                path,
                what: "open-file-description fcntl locks",
                reason: "they exist only on Linux; use Backend::Flock".into(),
            });
        }
        let kind = sys::inherited_kind(&file).map_err(|e| Error::io(IoOp::Inspect, &path, e))?;
        if self.backend == Backend::OfdFcntl && kind == FileKind::Other {
            return Err(Error::Unsupported {
                path,
                what: "fcntl locks on a directory",
                reason: "they need a file opened for writing; use Backend::Flock".into(),
            });
        }
        let id = sys::file_id(&file).map_err(|e| Error::io(IoOp::Inspect, &path, e))?;
        let mut opts = self.clone();
        opts.record = false;
        opts.verify_path = false;
        opts.inherited = true;
        Ok(Lock::from_open(path, opts, file, id, kind))
    }

    /// [`open_fd`](Self::open_fd) for a descriptor this process inherited
    /// by number (`flock 9` after a shell's `exec 9>app.lock`): it is
    /// duplicated (close-on-exec; the duplicate shares the lock), so the
    /// number itself is left as it was.
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let file = std::fs::File::create(dir.path().join("app.lock"))?;
    /// let lock = holdfast::Lock::options().open_inherited(file.as_raw_fd())?;
    /// drop(lock.try_lock()?);
    /// assert!(holdfast::Lock::options().open_inherited(-1).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (`EBADF`) if `fd` is not an open descriptor; as
    /// [`open_fd`](Self::open_fd).
    #[cfg(unix)]
    pub fn open_inherited(&self, fd: std::os::fd::RawFd) -> Result<Lock> {
        let owned = sys::dup_inherited(fd)
            .map_err(|e| Error::io(IoOp::Open, Path::new(&format!("/dev/fd/{fd}")), e))?;
        self.open_fd(owned)
    }
}

pub(crate) fn open_file(path: &Path, opts: &LockOptions) -> Result<(File, FileKind, FileId)> {
    let spec = OpenSpec {
        mode: opts.permissions,
        create: opts.create,
        follow_symlinks: opts.follow_symlinks,
    };
    let opened = match sys::open_lock_file(path, &spec) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.create_parents => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(IoOp::CreateParents, path, e))?;
            }
            sys::open_lock_file(path, &spec)
        }
        other => other,
    };
    let (file, kind) = opened.map_err(|e| {
        if !opts.follow_symlinks
            && (e.raw_os_error() == Some(libc_eloop())
                || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()))
        {
            Error::Symlink {
                path: path.to_owned(),
            }
        } else {
            Error::io(IoOp::Open, path, e)
        }
    })?;
    if opts.backend == Backend::OfdFcntl && kind == FileKind::Other {
        return Err(Error::Unsupported {
            path: path.to_owned(),
            what: "fcntl locks on a directory",
            reason: "they need a file opened for writing; use Backend::Flock".into(),
        });
    }
    let id = sys::file_id(&file).map_err(|e| Error::io(IoOp::Inspect, path, e))?;
    Ok((file, kind, id))
}

const fn libc_eloop() -> i32 {
    #[cfg(unix)]
    {
        libc::ELOOP
    }
    #[cfg(not(unix))]
    {
        -1
    }
}
