//! The guards of a held [`FifoLock`]: [`FifoGuard`] (borrowed, per thread)
//! and [`OwnedFifoGuard`] (`Send`, `'static`).

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use super::acquire::FifoHeld;
use super::{FifoLock, HELD_BY_THIS_THREAD};
use crate::error::Result;
use crate::mode::Mode;

/// Proof that a [`FifoLock`] is held; releases it (and hands it to the
/// next in line) when dropped.
///
/// Like [`crate::LockGuard`] it belongs to the thread that acquired it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
/// {
///     let guard = lock.lock()?;
///     println!("served as ticket {}", guard.ticket());
/// } // handed to the next in line here
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct FifoGuard<'a> {
    pub(super) lock: &'a FifoLock,
    pub(super) held: FifoHeld,
    pub(super) _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for FifoGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoGuard")
            .field("path", &self.held.path())
            .field("mode", &self.held.mode)
            .field("ticket", &self.held.ticket)
            .field("token", &self.held.token)
            .finish()
    }
}

impl<'a> FifoGuard<'a> {
    /// The mode held.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.lock_shared()?.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.held.mode()
    }
    /// The ticket this acquisition was served under: tickets are issued in
    /// arrival order, so a later arrival has a larger ticket (until the
    /// queue file is removed while idle and the count restarts).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::options().remove_queue_when_idle(false).open(dir.path().join("app.lock"))?;
    /// let first = lock.lock()?.ticket();
    /// let second = lock.lock()?.ticket();
    /// assert!(second > first, "later arrivals get larger tickets");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ticket(&self) -> u64 {
        self.held.ticket()
    }
    /// The fencing token written into the lock file's holder record, as
    /// [`crate::LockGuard::token`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// if let Some(token) = guard.token() {
    ///     println!("writes under this hold carry fencing token {token}");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> Option<u64> {
        self.held.token()
    }
    /// The lock this guard holds.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// assert_eq!(guard.lock().path(), lock.path());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock(&self) -> &'a FifoLock {
        self.lock
    }
    /// Releases now, reporting failure.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// guard.unlock()?; // a failure is reported here instead of logged by drop
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the kernel refuses an unlock (the files are closed
    /// anyway, which releases everything).
    pub fn unlock(mut self) -> Result<()> {
        self.forget_thread();
        self.held.release()
    }

    fn forget_thread(&mut self) {
        let id = self.held.main_id;
        HELD_BY_THIS_THREAD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().position(|x| *x == id) {
                h.swap_remove(i);
            }
        });
    }
}

impl Drop for FifoGuard<'_> {
    fn drop(&mut self) {
        self.forget_thread();
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for FifoGuard<'_> {
    /// The open file description that holds the lock file's kernel lock,
    /// for handing to a child process as `flock(1)` does. (The place in
    /// the queue stays with this process: if it exits first, the next in
    /// line waits on the kernel lock, which the child still holds.)
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.held.main_fd()
    }
}

/// A held [`FifoLock`] that owns what it needs: `Send`, `'static`; hands
/// the lock to the next in line when dropped or [`unlock`](Self::unlock)ed,
/// from any thread.
///
/// Made by [`FifoLock::acquire_owned`] (and by the async
/// `holdfast::tokio::AsyncFifoLock`). Every acquisition has its own open
/// file descriptions, so owned guards queue and exclude each other and
/// the borrowed [`FifoGuard`]s as separate processes do.
///
/// ```
/// use holdfast::{Mode, Wait};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
/// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// std::thread::spawn(move || g.unlock()).join().unwrap()?;
/// assert_eq!(lock.queue_len()?, 0);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct OwnedFifoGuard {
    pub(crate) held: FifoHeld,
}

impl fmt::Debug for OwnedFifoGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedFifoGuard")
            .field("path", &self.held.path())
            .field("ticket", &self.held.ticket())
            .finish()
    }
}

impl OwnedFifoGuard {
    /// The mode held.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Shared, Wait::NoWait)?;
    /// assert_eq!(g.mode(), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.held.mode()
    }
    /// The ticket it was served under (see [`crate::FifoGuard::ticket`]).
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// println!("served as ticket {}", g.ticket());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ticket(&self) -> u64 {
        self.held.ticket()
    }
    /// The fencing token.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// let token = g.token();
    /// std::thread::spawn(move || drop(g)).join().unwrap();
    /// println!("held with fencing token {token:?}");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> Option<u64> {
        self.held.token()
    }
    /// The lock file.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// assert_eq!(g.path(), dir.path().join("app.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        self.held.path()
    }
    /// Releases now, reporting failure.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// std::thread::spawn(move || g.unlock()).join().unwrap()?; // from another thread
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io).
    pub fn unlock(mut self) -> Result<()> {
        self.held.release()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for OwnedFifoGuard {
    /// The open file description holding the lock file's kernel lock (see
    /// [`crate::FifoGuard`]'s `AsFd`).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.held.main_fd()
    }
}
