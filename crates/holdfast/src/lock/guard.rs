//! The guards of a held [`Lock`]: [`LockGuard`] (borrowed, per thread, with
//! upgrade and downgrade) and [`OwnedLockGuard`] (`Send`, `'static`).

use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Held, Lock, current_thread, lock_poisoned};
use crate::error::{Error, IoOp, Result};
use crate::mode::{Backend, Mode, Wait};
use crate::sys::{self, LockReq};

/// A held [`Lock`] that owns what it needs: `Send`, `'static`, released
/// on drop or by [`unlock`](Self::unlock), from any thread.
///
/// Made by [`Lock::acquire_owned`] (and by the async
/// `holdfast::tokio::AsyncLock`). Each owned acquisition has its own open
/// file description, so owned guards exclude each other, and the
/// [`LockGuard`]s of the same `Lock`, through the kernel, exactly as
/// separate processes do. There is no re-entrancy: a thread that waits
/// for a lock it holds through an owned guard waits until someone
/// releases that guard (use a timeout if that someone could be itself).
///
/// ```
/// use holdfast::{Mode, Wait};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
/// let guard = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
/// assert!(guard.token().is_some());
/// // Released by another thread:
/// std::thread::spawn(move || guard.unlock()).join().unwrap()?;
/// assert!(lock.holders().is_empty());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct OwnedLockGuard {
    pub(super) file: Option<File>,
    pub(super) path: Arc<Path>,
    pub(super) backend: Backend,
    pub(super) mode: Mode,
    pub(super) token: Option<u64>,
    pub(super) pid: u32,
}

impl fmt::Debug for OwnedLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLockGuard")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("token", &self.token)
            .finish()
    }
}

impl OwnedLockGuard {
    /// The mode held.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
    /// assert_eq!(g.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The fencing token, as [`crate::LockGuard::token`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let token = g.token().expect("an exclusive hold with a record");
    /// println!("writing with fencing token {token}");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> Option<u64> {
        self.token
    }
    /// The lock file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// assert_eq!(g.path(), dir.path().join("app.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Checks that the lock still guards the file at its path: `Err(Lost)`
    /// once the file was deleted or replaced (the kernel lock then guards
    /// an orphan, and a newcomer can lock the new file).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let lock = holdfast::Lock::open(&path)?;
    /// let g = lock.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// g.check()?;
    /// std::fs::remove_file(&path)?;
    /// assert!(matches!(g.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] as above, or after the guard was released;
    /// [`Error::Io`] if the file cannot be inspected.
    pub fn check(&self) -> Result<()> {
        let Some(file) = &self.file else {
            return Err(Error::Lost {
                path: self.path.to_path_buf(),
                reason: "already released".into(),
            });
        };
        if sys::is_unlinked(file).map_err(|e| Error::io(IoOp::Inspect, &self.path, e))? {
            return Err(Error::Lost {
                path: self.path.to_path_buf(),
                reason: "the lock file was deleted or replaced while held; the lock now \
                         guards nothing"
                    .into(),
            });
        }
        Ok(())
    }
    /// Releases now, reporting failure.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// std::thread::spawn(move || g.unlock()).join().unwrap()?; // released from another thread
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (the file is closed anyway, which releases the lock).
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }
    fn release(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        if sys::current_pid() != self.pid {
            return Ok(());
        }
        sys::unlock(&file, self.backend).map_err(|e| Error::io(IoOp::Unlock, &self.path, e))
    }
}

impl Drop for OwnedLockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.path.display(), error = %e, "failed to release lock");
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for OwnedLockGuard {
    /// The open file description that holds the lock.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file
            .as_ref()
            .expect("a held lock has its file until released")
            .as_fd()
    }
}

/// Proof that a [`Lock`] is held; releases it when dropped.
///
/// A guard belongs to the thread that acquired it (it is not `Send`): the
/// in-process bookkeeping that makes a `Lock` exclude threads is per thread.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
/// {
///     let guard = lock.lock()?;
///     println!("token {:?}", guard.token());
/// } // released here
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    pub(super) lock: &'a Lock,
    pub(super) file: Arc<File>,
    pub(super) mode: Mode,
    pub(super) token: Option<u64>,
    pub(super) pid: u32,
    pub(super) nested: bool,
    pub(super) released: bool,
    pub(super) _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.lock.path)
            .field("mode", &self.mode)
            .field("token", &self.token)
            .finish()
    }
}

impl<'a> LockGuard<'a> {
    /// The mode held.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.lock_shared()?.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The lock this guard holds.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// assert_eq!(guard.lock().path(), lock.path());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// The fencing token of this exclusive acquisition: larger than the
    /// token of every earlier exclusive acquisition of the same lock file.
    /// Pass it along with writes so a store can reject a stale holder.
    /// `None` for shared or nested acquisitions, or when no record could be
    /// written (read-only file, directory, foreign content, records off).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let first = lock.lock()?.token().unwrap();
    /// let second = lock.lock()?.token().unwrap();
    /// assert_eq!(second, first + 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// Releases the lock now, reporting failure (a guard that is dropped
    /// reports it through `tracing` instead).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// guard.unlock()?;
    /// assert!(lock.holders().is_empty());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the kernel refuses the unlock.
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    #[inline]
    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if sys::current_pid() != self.pid {
            // A forked child: the open file description is shared with the
            // parent, so unlocking it would release the parent's lock.
            return Ok(());
        }
        let mut st = lock_poisoned(self.lock.state.lock());
        let result = match &mut st.held {
            Held::Exclusive { depth, .. } if *depth > 1 => {
                *depth -= 1;
                return Ok(());
            }
            Held::Exclusive { .. } => self.lock.release_kernel(&mut st),
            Held::Shared { holders } => {
                let me = current_thread();
                if let Some(i) = holders.iter().position(|(t, _)| *t == me) {
                    holders[i].1 -= 1;
                    if holders[i].1 == 0 {
                        holders.swap_remove(i);
                    }
                }
                if !holders.is_empty() {
                    return Ok(());
                }
                self.lock.release_kernel(&mut st)
            }
            Held::Free | Held::Acquiring => Ok(()),
        };
        drop(st);
        result
    }

    /// Converts a shared hold into an exclusive one, waiting as `wait`
    /// says. With [`Backend::Flock`] this is **not atomic** (see the
    /// [module docs](crate::lock)); with [`Backend::OfdFcntl`] it is.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::options().backend(holdfast::Backend::OfdFcntl)
    ///     .open(dir.path().join("app.lock"))?;
    /// let mut g = lock.lock_shared()?;
    /// g.upgrade(Wait::Forever)?;
    /// assert_eq!(g.mode(), Mode::Exclusive);
    /// g.downgrade()?;
    /// assert_eq!(g.mode(), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if this is a nested guard or other threads of
    /// this process share the lock; [`Error::WouldBlock`] /
    /// [`Error::Timeout`] if it cannot be had (the guard then still holds
    /// the shared lock); [`Error::Io`].
    pub fn upgrade(&mut self, wait: Wait) -> Result<()> {
        if self.mode == Mode::Exclusive {
            return Ok(());
        }
        self.convert_check()?;
        let started = Instant::now();
        let deadline = match wait {
            Wait::Timeout(d) => Some(started.checked_add(d).unwrap_or_else(far_future)),
            Wait::Deadline(d) => Some(d),
            _ => None,
        };
        let lock = self.lock;
        let backend = lock.opts.backend;
        let st = lock_poisoned(lock.state.lock());
        let file = st.file.clone();
        let id = st.id;
        // Other threads of this process cannot join while we convert: the
        // state says Shared by us alone, and a new exclusive request waits
        // for Free. New shared requests would join; mark it Acquiring.
        let mut st = st;
        st.held = Held::Acquiring;
        drop(st);
        let io = |e| Error::io(IoOp::Upgrade, &lock.path, e);
        let got = match wait {
            Wait::NoWait => sys::try_lock(&file, backend, Mode::Exclusive).map_err(io),
            _ => sys::wait_any(
                &file,
                &[LockReq::Whole {
                    backend,
                    mode: Mode::Exclusive,
                }],
                deadline,
            )
            .map(|got| got.is_some())
            .map_err(io),
        };
        let me = current_thread();
        let mut st = lock_poisoned(lock.state.lock());
        let result = match got {
            Ok(true) => {
                st.held = Held::Exclusive {
                    thread: me,
                    depth: 1,
                };
                self.mode = Mode::Exclusive;
                self.token = lock.write_record(&mut st);
                Ok(())
            }
            Ok(false) | Err(_) => {
                // flock may have dropped our shared lock on the way: take
                // it back so the guard still means what it says.
                let restored = sys::lock_blocking(&file, backend, Mode::Shared).map_err(io);
                st.held = Held::Shared {
                    holders: vec![(me, 1)],
                };
                restored.and(match got {
                    Ok(_) => Err(lock.contention(Mode::Exclusive, wait, started, &file, id)),
                    Err(e) => Err(e),
                })
            }
        };
        drop(st);
        lock.changed.notify_all();
        result
    }

    /// Shorthand for [`upgrade`](Self::upgrade) with [`Wait::NoWait`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let mut guard = lock.lock_shared()?;
    /// // read, decide to write:
    /// guard.try_upgrade()?;
    /// assert_eq!(guard.mode(), holdfast::Mode::Exclusive);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`upgrade`](Self::upgrade).
    pub fn try_upgrade(&mut self) -> Result<()> {
        self.upgrade(Wait::NoWait)
    }

    /// Converts an exclusive hold into a shared one. Atomic with
    /// [`Backend::OfdFcntl`]; with [`Backend::Flock`] another process may
    /// take the lock in between, and this call then waits for it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let mut guard = lock.lock()?;
    /// // write, then let readers in while still reading:
    /// guard.downgrade()?;
    /// assert_eq!(guard.mode(), holdfast::Mode::Shared);
    /// let _reader = lock.try_lock_shared()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a nested guard; [`Error::Io`].
    pub fn downgrade(&mut self) -> Result<()> {
        if self.mode == Mode::Shared {
            return Ok(());
        }
        self.convert_check()?;
        let lock = self.lock;
        let mut st = lock_poisoned(lock.state.lock());
        sys::lock_blocking(&st.file, lock.opts.backend, Mode::Shared)
            .map_err(|e| Error::io(IoOp::Downgrade, &lock.path, e))?;
        st.held = Held::Shared {
            holders: vec![(current_thread(), 1)],
        };
        self.mode = Mode::Shared;
        self.token = None;
        drop(st);
        lock.changed.notify_all();
        Ok(())
    }

    fn convert_check(&self) -> Result<()> {
        let st = lock_poisoned(self.lock.state.lock());
        let sole = match &st.held {
            Held::Exclusive { depth, .. } => *depth == 1 && !self.nested,
            Held::Shared { holders } => holders.len() == 1 && holders[0].1 == 1,
            _ => false,
        };
        if sole {
            Ok(())
        } else {
            Err(Error::InvalidInput {
                path: self.lock.path.clone(),
                reason: "cannot convert a lock held more than once in this process \
                         (nested guards or other threads share it)"
                    .into(),
            })
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for LockGuard<'_> {
    /// The open file description that holds the lock, for handing to a
    /// child process (as `flock(1)` does) or to other system calls.
    /// Closing it does not release the lock while the [`Lock`] lives;
    /// unlocking through it behind holdfast's back is the caller's mistake.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.lock.path.display(), error = %e, "failed to release lock");
        }
    }
}

pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}
