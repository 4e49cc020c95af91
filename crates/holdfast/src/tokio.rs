//! Async acquisitions for tokio (feature `tokio`, Linux): futures that
//! never block the executor thread, honour a timeout, and are
//! cancellation-safe.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), holdfast::Error> {
//! use std::time::Duration;
//! # let dir = tempfile::tempdir().unwrap();
//! let lock = holdfast::tokio::AsyncLock::open(dir.path().join("app.lock"))?;
//! let guard = lock.lock_timeout(Duration::from_secs(5)).await?;
//! tokio::spawn(async move {
//!     // Guards are owned and `Send`: move them into tasks.
//!     drop(guard);
//! }).await.unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # How waiting works
//!
//! An acquisition first tries without waiting. When it must wait, it
//! starts a killable helper task blocked in the kernel lock call on the
//! acquisition's own open file description (the mechanism timed waits use,
//! see `sys/linux.rs`), and registers the helper's **pidfd** with tokio's
//! reactor ([`::tokio::io::unix::AsyncFd`]): the pidfd becomes readable when
//! the helper exits, i.e. when the lock was granted. The executor thread
//! only ever makes non-blocking system calls (and opens the lock files).
//!
//! # Cancellation
//!
//! Every acquisition opens its own file descriptions; everything it has
//! taken so far (a ticket, a predecessor's byte, a slot, the lock itself)
//! is a lock on those descriptions. Dropping the future at any `.await`
//! kills and reaps the helper task, then closes the descriptions, which
//! releases every lock the kernel gave them, including one granted in the
//! instant before the kill. So `tokio::time::timeout(d, lock.lock())` and
//! `select!` are safe, and so is aborting the task.
//!
//! # Differences from the blocking API
//!
//! - Tasks are excluded from each other by the kernel, like processes: a
//!   task that awaits a lock it already holds waits for itself (use a
//!   timeout).
//! - The timeout variants need tokio's timer (`enable_time` on the
//!   runtime).
//! - Linux only (pidfds).

use std::fmt;
use std::fs::File;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ::tokio::io::Interest;
use ::tokio::io::unix::AsyncFd;

use crate::error::{Error, IoOp, Result};
pub use crate::fifo::OwnedFifoGuard;
use crate::fifo::{FifoAcquire, FifoLock, FifoOptions, FifoShared};
use crate::holder;
pub use crate::lock::OwnedLockGuard;
use crate::lock::{LockOptions, WholeAcquire};
use crate::mode::{Mode, Wait};
use crate::queue::{self, Machine, Step};
pub use crate::semaphore::OwnedSemaphorePermit;
use crate::semaphore::{SemAcquire, SemShared, Semaphore, SemaphoreOptions};
use crate::sys::{self, LockReq, WaitStatus, Waiter};

mod poll;
#[cfg(test)]
mod tests;

use self::poll::{no_waiter_task, poll_any, poll_forced};

/// A waiter whose pidfd tokio watches.
struct Watched(Waiter);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0.pidfd().as_raw_fd()
    }
}

/// Kills (on drop) every waiter still registered; see [`wait_any`].
struct WaiterSet<'f> {
    file: &'f File,
    fds: Vec<AsyncFd<Watched>>,
}

impl WaiterSet<'_> {
    fn into_waiters(self) -> Vec<Waiter> {
        let mut me = std::mem::ManuallyDrop::new(self);
        std::mem::take(&mut me.fds)
            .into_iter()
            .map(|fd| fd.into_inner().0)
            .collect()
    }

    /// Ends the wait: see `sys::settle`.
    fn settle(self, winner: Option<usize>) -> io::Result<Option<usize>> {
        let file = self.file;
        let mut waiters = self.into_waiters();
        sys::settle(file, &mut waiters, winner)
    }
}

impl Drop for WaiterSet<'_> {
    fn drop(&mut self) {
        // Cancelled: deregister, kill and reap every helper (Waiter's own
        // drop). A lock one of them got is released when the owner of
        // `file` closes it, which a cancelled acquisition does next.
        self.fds.clear();
    }
}

fn watch(file: &File, req: LockReq) -> io::Result<AsyncFd<Watched>> {
    let w = Watched(Waiter::spawn(file, req)?);
    // SAFETY: the pidfd is owned by the `Waiter` inside, which stays in the
    // `AsyncFd` (only `try_status` is called through `get_mut`) until it is
    // taken out with `into_inner` or dropped with it; it is never closed
    // or replaced before.
    unsafe { AsyncFd::register_with_interest(w, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// The async `sys::wait_any`: one helper per request, their pidfds in
/// tokio's reactor, plus a timer for the deadline. Where the helper cannot
/// be created (an old kernel, a sandbox that forbids it, or
/// `HOLDFAST_WAITER=poll`), bounded polling ([`poll_any`]), as on the
/// blocking road.
async fn wait_any(
    file: &File,
    reqs: &[LockReq],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(None);
    }
    if sys::waiter_tasks_forbidden() || poll_forced() {
        return poll_any(file, reqs, deadline).await;
    }
    let mut set = WaiterSet {
        file,
        fds: Vec::with_capacity(reqs.len()),
    };
    for req in reqs {
        match watch(file, *req) {
            Ok(fd) => set.fds.push(fd),
            Err(e) if no_waiter_task(&e) => {
                tracing::debug!(error = %e, "no killable lock waiter; polling instead");
                return match set.settle(None)? {
                    Some(i) => Ok(Some(i)),
                    None => poll_any(file, reqs, deadline).await,
                };
            }
            Err(e) => return Err(e),
        }
    }
    let mut sleep = deadline.map(|d| Box::pin(::tokio::time::sleep_until(d.into())));
    loop {
        let ready = poll_fn(|cx| {
            for (i, fd) in set.fds.iter().enumerate() {
                if let Poll::Ready(r) = fd.poll_read_ready(cx) {
                    return Poll::Ready(r.map(|mut g| {
                        g.clear_ready();
                        Some(i)
                    }));
                }
            }
            if let Some(s) = sleep.as_mut()
                && Pin::new(s).poll(cx).is_ready()
            {
                return Poll::Ready(Ok(None));
            }
            Poll::Pending
        })
        .await?;
        let Some(i) = ready else {
            return set.settle(None);
        };
        match set.fds[i].get_mut().0.try_status()? {
            None => continue, // spurious readiness
            Some(WaitStatus::Granted) => return set.settle(Some(i)),
            Some(WaitStatus::Failed(errno)) => {
                if let Some(w) = set.settle(None)? {
                    let _ = release_req(file, &reqs[w]);
                }
                return Err(io::Error::from_raw_os_error(errno));
            }
            Some(WaitStatus::Killed) => {
                // Its creating thread ended (the death signal follows the
                // thread, and tokio may retire worker threads): decide with
                // a non-blocking attempt, else start a new helper.
                if sys::raw_try(file, &reqs[i])? {
                    return set.settle(Some(i));
                }
                match watch(file, reqs[i]) {
                    Ok(fd) => set.fds[i] = fd,
                    Err(e) if no_waiter_task(&e) => {
                        // The killed helper stays in the set: settling
                        // retries its request once more without waiting.
                        return match set.settle(None)? {
                            Some(w) => Ok(Some(w)),
                            None => poll_any(file, reqs, deadline).await,
                        };
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn release_req(file: &File, req: &LockReq) -> io::Result<()> {
    match req {
        LockReq::Whole { backend, .. } => sys::unlock(file, *backend),
        LockReq::Range(r) => sys::range_unlock(file, r.start, r.len),
    }
}

/// Runs a machine to completion without blocking the executor.
async fn drive<M: Machine>(m: &mut M, wait: Wait) -> Result<()> {
    let started = Instant::now();
    loop {
        match m.advance()? {
            Step::Ready => return Ok(()),
            Step::Wait {
                target,
                reqs,
                short,
            } => {
                let Ok(deadline) = queue::wait_deadline(wait, started, short) else {
                    return Err(m.contention(Wait::NoWait, started));
                };
                let got = wait_any(m.file(target), &reqs, deadline)
                    .await
                    .map_err(|e| Error::io(IoOp::WaitFor, m.path(target), e))?;
                match got {
                    Some(i) => m.granted(i)?,
                    None => return Err(m.contention(wait, started)),
                }
            }
        }
    }
}

/// An async kernel lock on a path: the async counterpart of
/// [`crate::Lock`], with the same [`LockOptions`].
///
/// Cheap to clone; every acquisition opens its own file description, so
/// tasks exclude each other (and the blocking API's holders) through the
/// kernel.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), holdfast::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use holdfast::tokio::AsyncLock;
/// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
/// let r1 = lock.lock_shared().await?;
/// let r2 = lock.try_lock_shared().await?;
/// assert!(lock.try_lock().await.is_err());
/// drop((r1, r2));
/// let w = lock.lock().await?;
/// assert!(w.token().is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncLock {
    path: Arc<Path>,
    opts: LockOptions,
    template: Arc<std::sync::Mutex<Option<holder::RecordTemplate>>>,
}

impl AsyncLock {
    /// Opens (creating) the lock file with default options. Nothing is
    /// locked yet.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock().await?;
    /// assert!(guard.token().is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<AsyncLock> {
        AsyncLock::with_options(&LockOptions::new(), path)
    }

    /// Opens with the given options (`reentrant` does not apply: tasks
    /// always exclude each other).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let mut opts = holdfast::LockOptions::new();
    /// opts.permissions(0o600);
    /// let lock = AsyncLock::with_options(&opts, dir.path().join("app.lock"))?;
    /// drop(lock.lock().await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockOptions::open`].
    pub fn with_options(opts: &LockOptions, path: impl AsRef<Path>) -> Result<AsyncLock> {
        let path = path.as_ref();
        // Validates the options and creates the file once.
        drop(opts.open(path)?);
        Ok(AsyncLock {
            path: path.into(),
            opts: opts.clone(),
            template: Arc::default(),
        })
    }

    /// The lock file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.path(), dir.path().join("app.lock"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock exclusively.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock().await?;
    /// // Owned and `Send`: the guard can move into another task.
    /// tokio::spawn(async move { drop(guard) }).await.unwrap();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn lock(&self) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Exclusive, Wait::Forever).await
    }
    /// Takes the lock shared.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let reader = lock.lock_shared().await?;
    /// let another = lock.lock_shared().await?; // readers share
    /// assert_eq!(reader.mode(), holdfast::Mode::Shared);
    /// drop((reader, another));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn lock_shared(&self) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Shared, Wait::Forever).await
    }
    /// Takes the lock exclusively if it is free.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.try_lock().await?;
    /// let busy = lock.try_lock().await.unwrap_err();
    /// assert!(matches!(busy, holdfast::Error::WouldBlock { .. }));
    /// drop(held);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder; [`Error::Io`].
    pub async fn try_lock(&self) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Exclusive, Wait::NoWait).await
    }
    /// Takes the lock shared if no writer holds it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let r1 = lock.try_lock_shared().await?;
    /// let r2 = lock.try_lock_shared().await?;
    /// assert!(lock.try_lock().await.is_err(), "a writer is excluded");
    /// drop((r1, r2));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`AsyncLock::try_lock`].
    pub async fn try_lock_shared(&self) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Shared, Wait::NoWait).await
    }
    /// Takes the lock exclusively, waiting at most `timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// use std::time::Duration;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.lock_timeout(Duration::from_secs(5)).await?;
    /// let late = lock.lock_timeout(Duration::from_millis(20)).await;
    /// assert!(matches!(late, Err(holdfast::Error::Timeout { .. })));
    /// drop(held);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holder; [`Error::Io`].
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout)).await
    }
    /// Takes the lock shared, waiting at most `timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// use std::time::Duration;
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let writer = lock.lock().await?;
    /// let reader = lock.lock_shared_timeout(Duration::from_millis(20)).await;
    /// assert!(matches!(reader, Err(holdfast::Error::Timeout { .. })));
    /// drop(writer);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`AsyncLock::lock_timeout`].
    pub async fn lock_shared_timeout(&self, timeout: Duration) -> Result<OwnedLockGuard> {
        self.acquire(Mode::Shared, Wait::Timeout(timeout)).await
    }

    /// Takes the lock in `mode`, waiting as `wait` says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncLock;
    /// use holdfast::{Mode, Wait};
    /// let lock = AsyncLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.acquire(Mode::Exclusive, Wait::Timeout(std::time::Duration::from_secs(5))).await?;
    /// assert_eq!(guard.mode(), Mode::Exclusive);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::Timeout`] naming the holder;
    /// [`Error::Io`].
    pub async fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedLockGuard> {
        let mut m = WholeAcquire::open(&self.path, &self.opts, mode)?;
        drive(&mut m, wait).await?;
        let mut template = self.template.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.finish(&self.path, &self.opts, &mut template))
    }
}

/// The async counterpart of [`FifoLock`]: waiters are served first come,
/// first served, across processes, threads and tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), holdfast::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::tokio::AsyncFifoLock::open(dir.path().join("app.lock"))?;
/// let first = lock.lock().await?;
/// let second = lock.lock_timeout(std::time::Duration::from_millis(20)).await;
/// assert!(matches!(second, Err(holdfast::Error::Timeout { .. })));
/// drop(first);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncFifoLock {
    shared: Arc<FifoShared>,
}

impl fmt::Debug for AsyncFifoLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFifoLock")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl From<FifoLock> for AsyncFifoLock {
    fn from(lock: FifoLock) -> Self {
        AsyncFifoLock {
            shared: lock.shared().clone(),
        }
    }
}

impl AsyncFifoLock {
    /// Opens (creating) the lock and queue files with default options.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// drop(lock.lock().await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FifoOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<AsyncFifoLock> {
        AsyncFifoLock::with_options(&FifoOptions::new(), path)
    }
    /// Opens with the given options.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let mut opts = holdfast::FifoOptions::new();
    /// opts.queue_path(dir.path().join("app.queue"));
    /// let lock = AsyncFifoLock::with_options(&opts, dir.path().join("app.lock"))?;
    /// drop(lock.lock().await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FifoOptions::open`].
    pub fn with_options(opts: &FifoOptions, path: impl AsRef<Path>) -> Result<AsyncFifoLock> {
        Ok(opts.open(path)?.into())
    }
    /// The lock file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.path(), dir.path().join("app.lock"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
    /// Takes the lock exclusively, after everyone who asked before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock().await?;
    /// println!("served as ticket {}", guard.ticket());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn lock(&self) -> Result<OwnedFifoGuard> {
        self.acquire(Mode::Exclusive, Wait::Forever).await
    }
    /// Takes the lock shared, after every writer who asked before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// let r1 = lock.lock_shared().await?;
    /// let r2 = lock.lock_shared().await?; // readers in a row share
    /// assert!(lock.try_lock().await.is_err());
    /// drop((r1, r2));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn lock_shared(&self) -> Result<OwnedFifoGuard> {
        self.acquire(Mode::Shared, Wait::Forever).await
    }
    /// Takes the lock exclusively if nobody holds it or waits for it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.try_lock().await?;
    /// assert!(matches!(lock.try_lock().await, Err(holdfast::Error::WouldBlock { .. })));
    /// drop(held);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; [`Error::Io`].
    pub async fn try_lock(&self) -> Result<OwnedFifoGuard> {
        self.acquire(Mode::Exclusive, Wait::NoWait).await
    }
    /// Takes the lock exclusively, waiting in line at most `timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// use std::time::Duration;
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.lock_timeout(Duration::from_secs(5)).await?;
    /// assert!(lock.lock_timeout(Duration::from_millis(20)).await.is_err());
    /// drop(held);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; [`Error::Io`].
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<OwnedFifoGuard> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout)).await
    }
    /// Takes the lock in `mode`, waiting as `wait` says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncFifoLock;
    /// use holdfast::{Mode, Wait};
    /// let lock = AsyncFifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.acquire(Mode::Shared, Wait::Forever).await?;
    /// assert_eq!(guard.mode(), Mode::Shared);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::Timeout`] naming the holder;
    /// [`Error::Io`].
    pub async fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedFifoGuard> {
        let mut m = FifoAcquire::new(&self.shared, mode)?;
        drive(&mut m, wait).await?;
        Ok(OwnedFifoGuard { held: m.finish() })
    }
}

/// The async counterpart of [`Semaphore`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), holdfast::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let sem = holdfast::tokio::AsyncSemaphore::open(dir.path().join("s"), 2)?;
/// let a = sem.lock().await?;
/// let b = sem.lock().await?;
/// assert!(sem.try_lock().await.is_err());
/// drop(a);
/// let c = sem.lock().await?;
/// assert_ne!(b.slot(), c.slot());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncSemaphore {
    shared: Arc<SemShared>,
}

impl fmt::Debug for AsyncSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSemaphore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl From<Semaphore> for AsyncSemaphore {
    fn from(s: Semaphore) -> Self {
        AsyncSemaphore {
            shared: s.shared().clone(),
        }
    }
}

impl AsyncSemaphore {
    /// Opens (creating) a semaphore with `permits` permits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 4)?;
    /// let permit = sem.lock().await?;
    /// assert!(permit.slot() < 4);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SemaphoreOptions::open`].
    pub fn open(path: impl AsRef<Path>, permits: usize) -> Result<AsyncSemaphore> {
        AsyncSemaphore::with_options(&SemaphoreOptions::new(), path, permits)
    }
    /// Opens with the given options.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let mut opts = holdfast::SemaphoreOptions::new();
    /// opts.permissions(0o666); // shared between users
    /// let sem = AsyncSemaphore::with_options(&opts, dir.path().join("downloads"), 4)?;
    /// drop(sem.lock().await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SemaphoreOptions::open`].
    pub fn with_options(
        opts: &SemaphoreOptions,
        path: impl AsRef<Path>,
        permits: usize,
    ) -> Result<AsyncSemaphore> {
        Ok(opts.open(path, permits)?.into())
    }
    /// Takes a permit, waiting in line.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 2)?;
    /// let a = sem.lock().await?;
    /// let b = sem.lock().await?;
    /// assert_ne!(a.slot(), b.slot());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn lock(&self) -> Result<OwnedSemaphorePermit> {
        self.acquire(Mode::Shared, Wait::Forever).await
    }
    /// Takes a permit if one is free and nobody waits ahead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// let only = sem.try_lock().await?;
    /// assert!(matches!(sem.try_lock().await, Err(holdfast::Error::WouldBlock { .. })));
    /// drop(only);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; [`Error::Io`].
    pub async fn try_lock(&self) -> Result<OwnedSemaphorePermit> {
        self.acquire(Mode::Shared, Wait::NoWait).await
    }
    /// Takes a permit, waiting at most `timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// use std::time::Duration;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// let only = sem.lock_timeout(Duration::from_secs(5)).await?;
    /// assert!(sem.lock_timeout(Duration::from_millis(20)).await.is_err());
    /// drop(only);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; [`Error::Io`].
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<OwnedSemaphorePermit> {
        self.acquire(Mode::Shared, Wait::Timeout(timeout)).await
    }
    /// Takes a permit, waiting as `wait` says (a permit is a shared hold;
    /// [`Mode::Exclusive`] only on a semaphore of one permit).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// use holdfast::{Mode, Wait};
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// // One permit: the exclusive mode is allowed.
    /// let permit = sem.acquire(Mode::Exclusive, Wait::NoWait).await?;
    /// assert_eq!(permit.mode(), Mode::Exclusive);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::Timeout`] naming the holders;
    /// [`Error::InvalidInput`] for [`Mode::Exclusive`] on more than one
    /// permit; [`Error::Io`].
    pub async fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedSemaphorePermit> {
        self.shared.check_mode(mode)?;
        let mut m = SemAcquire::new(&self.shared)?;
        drive(&mut m, wait).await?;
        Ok(OwnedSemaphorePermit {
            held: m.finish(),
            mode,
        })
    }
    /// The former name of [`try_lock`](Self::try_lock).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.try_acquire().await?; // now: sem.try_lock()
    /// drop(permit);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Self::try_lock).
    #[deprecated(note = "use try_lock(), the word every holdfast primitive uses")]
    pub async fn try_acquire(&self) -> Result<OwnedSemaphorePermit> {
        self.try_lock().await
    }
    /// The former name of [`lock_timeout`](Self::lock_timeout).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.acquire_timeout(std::time::Duration::from_secs(5)).await?; // now: lock_timeout
    /// drop(permit);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    #[deprecated(note = "use lock_timeout(), the word every holdfast primitive uses")]
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<OwnedSemaphorePermit> {
        self.lock_timeout(timeout).await
    }
    /// The former form of [`acquire`](Self::acquire)`(Mode::Shared, wait)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), holdfast::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use holdfast::tokio::AsyncSemaphore;
    /// let sem = AsyncSemaphore::open(dir.path().join("downloads"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.acquire_with(holdfast::Wait::NoWait).await?; // now: acquire(Mode::Shared, wait)
    /// drop(permit);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    #[deprecated(note = "use acquire(Mode::Shared, wait), the form every holdfast primitive uses")]
    pub async fn acquire_with(&self, wait: Wait) -> Result<OwnedSemaphorePermit> {
        self.acquire(Mode::Shared, wait).await
    }
}
