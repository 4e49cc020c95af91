//! The guards of a held [`LockFile`]: [`LockFileGuard`] (borrowed) and
//! [`OwnedLockFileGuard`], and the registry of lock objects this process
//! holds.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use super::LockFile;
use super::core::{self, Ctx};
use super::dispatch;
use super::heartbeat::{GuardCore, Heartbeat};
use crate::error::Result;

/// The lock objects this process holds (nonce, identity) and the thread
/// that took each: a thread waiting for a lock it holds itself would wait
/// forever. The identity covers records without a nonce (filelock's).
pub(super) static HELD: Mutex<Vec<(String, crate::sys::FileId, ThreadId)>> = Mutex::new(Vec::new());

pub(super) fn held_by_this_thread(nonce: Option<&str>, id: crate::sys::FileId) -> bool {
    let me = thread::current().id();
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(n, i, t)| *t == me && (Some(n.as_str()) == nonce || *i == id))
}

/// Proof that a [`LockFile`] is held; removes the lock object when dropped.
///
/// Unlike a kernel lock's guard, this one is `Send`: a lock file does not
/// belong to a thread, so it may be released from any thread. Dropped in a
/// forked child, it releases nothing (the parent still holds the lock).
/// [`OwnedLockFileGuard`] is the same without the borrow.
///
/// ```
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let lock = LockFile::open(&path, Protocol::Soft)?;
/// {
///     let _guard = lock.lock()?;
///     assert!(path.exists());
/// } // the lock file is removed here
/// assert!(!path.exists());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockFileGuard<'a> {
    pub(super) lock: &'a LockFile,
    pub(super) owned: OwnedLockFileGuard,
}

impl fmt::Debug for LockFileGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFileGuard")
            .field("path", &self.lock.ctx.path)
            .field("heartbeat", &self.owned.beat.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> LockFileGuard<'a> {
    /// The lock this guard holds.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
    /// let guard = lock.lock()?;
    /// assert_eq!(guard.lock().protocol(), Protocol::Soft);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock(&self) -> &'a LockFile {
        self.lock
    }

    /// The lock path.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
    /// let guard = lock.lock()?;
    /// assert!(guard.path().exists(), "a soft lock is a file at its path");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.lock.ctx.path
    }

    /// Renews the lease to `now + lifetime` (filelock format: touches the
    /// mtime to now), after checking that the lock is still this guard's.
    /// Without a lifetime it only checks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::options(Protocol::Link).lifetime(Duration::from_secs(60))
    ///     .open(dir.path().join("r.lock"))?;
    /// let g = lock.lock()?;
    /// g.refresh()?;
    /// assert!(lock.status()?.expires.unwrap() > std::time::SystemTime::now());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](crate::Error::Lost) if the lock was broken or removed; [`Error::Io`](crate::Error::Io) if
    /// the times cannot be set.
    pub fn refresh(&self) -> Result<()> {
        self.owned.refresh()
    }

    /// Checks that the lock at the path is still this guard's (and that the
    /// heartbeat, if any, has not failed).
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("job.lock");
    /// let lock = LockFile::open(&path, Protocol::Soft)?;
    /// let guard = lock.lock()?;
    /// guard.check()?; // before committing work done under the lock
    /// std::fs::remove_file(&path)?; // someone broke it
    /// assert!(matches!(guard.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](crate::Error::Lost) if it was broken or removed; [`Error::Io`](crate::Error::Io) if the
    /// path cannot be inspected.
    pub fn check(&self) -> Result<()> {
        self.owned.check()
    }

    /// Releases the lock now, reporting failure (a dropped guard logs it
    /// through `tracing` instead).
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Mkdir)?;
    /// let guard = lock.lock()?;
    /// guard.unlock()?; // a failure is reported here instead of logged by drop
    /// assert!(!lock.is_locked()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](crate::Error::Lost) if the lock had been taken away meanwhile (work done
    /// under it may have overlapped another holder's); [`Error::Io`](crate::Error::Io) if it
    /// cannot be removed.
    pub fn unlock(self) -> Result<()> {
        self.owned.unlock()
    }

    /// Turns this guard into one that does not borrow the [`LockFile`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("x.lock"), Protocol::Soft)?;
    /// let owned = lock.lock()?.into_owned();
    /// drop(lock);
    /// owned.unlock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn into_owned(self) -> OwnedLockFileGuard {
        self.owned
    }
}

/// A held [`LockFile`] that owns what it needs: `Send`, `'static`; removes
/// the lock object when dropped or [`unlock`](Self::unlock)ed, from any
/// thread. Made by [`LockFile::acquire_owned`] or
/// [`LockFileGuard::into_owned`].
///
/// ```
/// use holdfast::{Mode, Wait};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFile::open(dir.path().join("x.lock"), Protocol::Link)?;
/// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// std::thread::spawn(move || g.unlock()).join().unwrap()?;
/// assert!(!lock.is_locked()?);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct OwnedLockFileGuard {
    pub(super) ctx: Arc<Ctx>,
    pub(super) core: Arc<GuardCore>,
    pub(super) beat: Option<Heartbeat>,
    pub(super) nonce: String,
    pub(super) pid: u32,
    pub(super) released: bool,
    /// Registered in `HELD` (borrowed guards only: an owned guard is not
    /// tied to the thread that took it).
    pub(super) registered: bool,
}

impl fmt::Debug for OwnedLockFileGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLockFileGuard")
            .field("path", &self.ctx.path)
            .field("heartbeat", &self.beat.is_some())
            .finish_non_exhaustive()
    }
}

impl OwnedLockFileGuard {
    /// The lock path.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
    /// let owned = lock.lock()?.into_owned();
    /// assert_eq!(owned.path(), dir.path().join("job.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.ctx.path
    }

    /// As [`LockFileGuard::refresh`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("r.lock"), Protocol::Link)?;
    /// lock.lock()?.into_owned().refresh()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::refresh`].
    pub fn refresh(&self) -> Result<()> {
        self.core.refresh()
    }

    /// As [`LockFileGuard::check`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("r.lock");
    /// let lock = LockFile::open(&path, Protocol::Soft)?;
    /// let g = lock.lock()?.into_owned();
    /// g.check()?;
    /// std::fs::remove_file(&path)?;
    /// assert!(matches!(g.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::check`].
    pub fn check(&self) -> Result<()> {
        self.core.check()
    }

    /// As [`LockFileGuard::unlock`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Link)?;
    /// let owned = lock.lock()?.into_owned();
    /// std::thread::spawn(move || owned.unlock()).join().unwrap()?; // from another thread
    /// assert!(!lock.is_locked()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::unlock`].
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if crate::sys::current_pid() != self.pid {
            // A forked child: the parent holds the lock; its heartbeat
            // thread does not exist here.
            if let Some(b) = self.beat.take() {
                std::mem::forget(b);
            }
            return Ok(());
        }
        if let Some(mut b) = self.beat.take() {
            b.stop();
        }
        if self.registered {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = held.iter().position(|(n, _, _)| *n == self.nonce) {
                held.swap_remove(i);
            }
        }
        let lost = self.core.state().lost.clone();
        let result = match self.core.take() {
            Some(h) => dispatch::release(&self.ctx, &h),
            None => Ok(()),
        };
        match (result, lost) {
            (Ok(()), Some(r)) => Err(core::lost(&self.ctx, r)),
            (r, _) => r,
        }
    }
}

impl Drop for OwnedLockFileGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.ctx.path.display(), error = %e, "failed to release lock file");
        }
    }
}
