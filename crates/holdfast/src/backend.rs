//! What a backend is: the public traits that the kernel [`Lock`], lock
//! files ([`LockFile`]), the fair [`FifoLock`] and the [`Semaphore`]
//! implement here, and that other crates implement for locks that do not
//! live in files (etcd, PostgreSQL).
//!
//! - [`LockBackend`]: a lock you acquire in a [`Mode`] with a [`Wait`]
//!   policy, returning an owned guard.
//! - [`HeldLock`]: that guard: `Send`, released on drop, with a fencing
//!   [`token`](HeldLock::token) where the backend has one and a
//!   [`check`](HeldLock::check) that reports a lost lock.
//! - [`CompletionStore`]: where setup phases and run-once record
//!   completion; [`mark_done`](CompletionStore::mark_done) takes the held
//!   guard, so a backend that can fence the write does it in the same
//!   atomic step as the check that the lock is still held.
//!
//! Setup phases and run-once run over these traits too
//! ([`PhaseRunner::run_with`](crate::PhaseRunner::run_with),
//! [`RunOnce::run_with`](crate::RunOnce::run_with)), so a new backend is a
//! new implementation, not an edit of the core; the file stores are
//! [`phase::StatusFileStore`](crate::phase::StatusFileStore) and
//! [`phase::XattrStore`](crate::phase::XattrStore). The integration tests
//! (`crates/holdfast-testkit/tests/testkit/backend.rs`) hold an in-memory backend
//! that runs phases and run-once through the same tests as the files.
//!
//! ```
//! use holdfast::{HeldLock, LockBackend, Mode, Wait};
//!
//! /// Works with any backend: kernel locks, lock files, FIFO, etcd, ...
//! fn exclusively<B: LockBackend>(lock: &B, work: impl FnOnce(Option<u64>)) -> holdfast::Result<()> {
//!     let held = lock.acquire(Mode::Exclusive, Wait::Forever)?;
//!     work(held.token());
//!     held.check()?; // still ours?
//!     held.release()
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let kernel = holdfast::Lock::open(dir.path().join("a.lock"))?;
//! exclusively(&kernel, |token| assert!(token.is_some()))?;
//! let file = holdfast::LockFile::open(dir.path().join("b.lock"), holdfast::Protocol::Link)?;
//! exclusively(&file, |token| assert_eq!(token, None))?;
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Implementing a backend
//!
//! - `location()` names the lock for messages and errors, as a path or a
//!   URL-like path (`etcd://10.0.0.5:2379/locks/jobs/x`): every
//!   [`Error`] variant carries it.
//! - Contention is [`Error::WouldBlock`] (with [`Wait::NoWait`]) or
//!   [`Error::Timeout`], naming the holders where the backend knows them;
//!   a failure of the backend itself (connection, lease, transaction) is
//!   [`Error::Backend`]; a lock that was held and is no longer is
//!   [`Error::Lost`].
//! - A guard released from another thread must work (`HeldLock: Send`);
//!   `Drop` releases and logs a failure, never panics.
//! - Tokens, where there are any, only grow across the acquisitions of
//!   one lock.

use std::path::Path;

#[allow(unused_imports)] // for the docs
use crate::error::Error;
use crate::error::Result;
use crate::fifo::{FifoLock, OwnedFifoGuard};
use crate::lock::{Lock, OwnedLockGuard};
#[cfg(unix)]
use crate::lockfile::{LockFile, OwnedLockFileGuard};
use crate::mode::{Mode, Wait};
use crate::semaphore::{OwnedSemaphorePermit, Semaphore};

/// A lock a backend provides: the kernel [`Lock`], [`LockFile`],
/// [`FifoLock`], [`Semaphore`], and in other crates etcd or PostgreSQL.
///
/// ```
/// use holdfast::{HeldLock, LockBackend, Mode, Wait};
/// # let dir = tempfile::tempdir().unwrap();
/// let fifo = holdfast::FifoLock::open(dir.path().join("q.lock"))?;
/// let held = LockBackend::acquire(&fifo, Mode::Shared, Wait::NoWait)?;
/// assert_eq!(held.mode(), Mode::Shared);
/// assert_eq!(fifo.location(), dir.path().join("q.lock"));
/// # Ok::<(), holdfast::Error>(())
/// ```
pub trait LockBackend: Send + Sync {
    /// The owned guard: `Send` and `'static` (it owns what it needs, for
    /// example through an `Arc`), releases on drop.
    type Guard: HeldLock + 'static;

    /// Where the lock lives, for messages and errors: a path, or a
    /// backend's URL-like name such as `etcd://h:2379/jobs/x`.
    ///
    /// ```
    /// use holdfast::LockBackend;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// eprintln!("locking {}", lock.location().display());
    /// assert_eq!(lock.location(), dir.path().join("app.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    fn location(&self) -> &Path;

    /// Acquires in `mode`, waiting as `wait` says.
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::{LockBackend, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("slots"), 1)?;
    /// let permit = LockBackend::acquire(&sem, Mode::Shared, Wait::Timeout(Duration::from_secs(5)))?;
    /// let busy = LockBackend::acquire(&sem, Mode::Shared, Wait::NoWait).unwrap_err();
    /// assert!(busy.is_contention());
    /// drop(permit);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (with [`Wait::NoWait`]) or [`Error::Timeout`]
    /// naming the holders; [`Error::AlreadyHeld`] where waiting would
    /// deadlock the calling thread; [`Error::Unsupported`] for a mode the
    /// backend does not have (a shared lock file); [`Error::Io`] or
    /// [`Error::Backend`] when the backend fails.
    fn acquire(&self, mode: Mode, wait: Wait) -> Result<Self::Guard>;
}

/// A held lock, owned: what [`LockBackend::acquire`] returns.
///
/// ```
/// use holdfast::{HeldLock, LockBackend, Mode, Wait};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("a.lock"))?;
/// let held = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
/// let token = held.token().expect("kernel locks with a record have tokens");
/// held.check()?;
/// std::thread::spawn(move || held.release()).join().unwrap()?;
/// let next = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
/// assert!(next.token().unwrap() > token);
/// # Ok::<(), holdfast::Error>(())
/// ```
pub trait HeldLock: Send {
    /// The mode held.
    ///
    /// ```
    /// use holdfast::{HeldLock, LockBackend, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let held = LockBackend::acquire(&lock, Mode::Shared, Wait::NoWait)?;
    /// assert_eq!(HeldLock::mode(&held), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    fn mode(&self) -> Mode;

    /// The fencing token of this acquisition, when the backend has one:
    /// larger than the token of every earlier acquisition of the lock.
    ///
    /// ```
    /// use holdfast::{HeldLock, LockBackend, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let first = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
    /// let t1 = HeldLock::token(&first).unwrap();
    /// drop(first);
    /// let second = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
    /// assert!(HeldLock::token(&second).unwrap() > t1, "tokens only grow");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    fn token(&self) -> Option<u64>;

    /// `Ok(())` while the lock is held.
    ///
    /// ```
    /// use holdfast::{HeldLock, LockBackend, Mode, Protocol, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.lock");
    /// let lock = holdfast::LockFile::open(&path, Protocol::Mkdir)?;
    /// let held = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
    /// held.check()?;
    /// std::fs::remove_dir_all(&path).unwrap(); // someone broke the lock
    /// assert!(matches!(held.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] once the backend knows the lock was lost (lease
    /// expired, session dropped, lock file broken or deleted);
    /// [`Error::Io`] / [`Error::Backend`] if it cannot tell.
    fn check(&self) -> Result<()>;

    /// Releases now, reporting failure (dropping releases too, logging a
    /// failure through `tracing`).
    ///
    /// ```
    /// use holdfast::{HeldLock, LockBackend, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let held = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait)?;
    /// held.release()?; // a failure is reported here instead of logged by drop
    /// assert!(LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait).is_ok());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the lock had been lost meanwhile; [`Error::Io`] /
    /// [`Error::Backend`] if the release failed.
    fn release(self) -> Result<()>
    where
        Self: Sized;
}

/// Where setup phases and run-once record completion, by key.
///
/// `mark_done` is **fenced**: a backend that can verifies, in the same
/// atomic step as the write, that `held` still holds the lock (an etcd
/// transaction comparing the lock key's revision, SQL in the lock's
/// transaction), so a holder that lost its lock can never mark anything
/// done. File stores check `held` just before the write (the kernel lock
/// cannot be lost while its file is open; a lock file can, and is
/// checked).
///
/// ```
/// use holdfast::{CompletionStore, LockBackend, Mode, Wait};
/// use holdfast::phase::StatusFileStore;
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("db.lock"))?;
/// let store = StatusFileStore::new(dir.path().join("db.status"));
/// let held = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
/// let store: &dyn CompletionStore<holdfast::OwnedLockGuard> = &store;
/// assert!(!store.is_done("migrate")?);
/// store.mark_done("migrate", &held)?;
/// assert_eq!(store.done_keys()?, ["migrate"]);
/// assert!(store.clear("migrate")?);
/// # Ok::<(), holdfast::Error>(())
/// ```
pub trait CompletionStore<G: HeldLock>: Send + Sync {
    /// Whether `key` is recorded as done.
    ///
    /// ```
    /// use holdfast::{CompletionStore, OwnedLockGuard};
    /// use holdfast::phase::StatusFileStore;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = StatusFileStore::new(dir.path().join("db.status"));
    /// let store: &dyn CompletionStore<OwnedLockGuard> = &store;
    /// if !store.is_done("migrate")? {
    ///     eprintln!("migrate has not run yet");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] / [`Error::Backend`] if the store cannot be read;
    /// [`Error::Corrupt`] if what it holds cannot be trusted.
    fn is_done(&self, key: &str) -> Result<bool>;

    /// Every key recorded as done, in the order they were recorded where
    /// the store keeps one.
    ///
    /// ```
    /// use holdfast::{CompletionStore, Mode, OwnedLockGuard, Wait};
    /// use holdfast::phase::StatusFileStore;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("db.lock"))?;
    /// let store = StatusFileStore::new(dir.path().join("db.status"));
    /// let held = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
    /// store.mark_done("create", &held)?;
    /// store.mark_done("migrate", &held)?;
    /// let store: &dyn CompletionStore<OwnedLockGuard> = &store;
    /// assert_eq!(store.done_keys()?, ["create", "migrate"]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_done`](Self::is_done).
    fn done_keys(&self) -> Result<Vec<String>>;

    /// Records `key` as done, durably, while `held` still holds the lock.
    ///
    /// ```
    /// use holdfast::{CompletionStore, Mode, Wait};
    /// use holdfast::phase::StatusFileStore;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("db.lock"))?;
    /// let store = StatusFileStore::new(dir.path().join("db.status"));
    /// let held = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
    /// // ... run the step while holding the lock, then:
    /// store.mark_done("migrate", &held)?;
    /// assert!(store.is_done("migrate")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if `held` no longer holds the lock (nothing is
    /// written); [`Error::Io`] / [`Error::Backend`] if the write fails.
    fn mark_done(&self, key: &str, held: &G) -> Result<()>;

    /// Forgets `key`; `Ok(true)` if it was recorded.
    ///
    /// ```
    /// use holdfast::{CompletionStore, Mode, Wait};
    /// use holdfast::phase::StatusFileStore;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("db.lock"))?;
    /// let store = StatusFileStore::new(dir.path().join("db.status"));
    /// let held = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
    /// store.mark_done("migrate", &held)?;
    /// assert!(store.clear("migrate")?, "was recorded");
    /// assert!(!store.clear("migrate")?, "already forgotten");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] / [`Error::Backend`] if the store cannot be written.
    fn clear(&self, key: &str) -> Result<bool>;
}

impl LockBackend for Lock {
    type Guard = OwnedLockGuard;
    fn location(&self) -> &Path {
        self.path()
    }
    fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedLockGuard> {
        self.acquire_owned(mode, wait)
    }
}

impl HeldLock for OwnedLockGuard {
    fn mode(&self) -> Mode {
        OwnedLockGuard::mode(self)
    }
    fn token(&self) -> Option<u64> {
        OwnedLockGuard::token(self)
    }
    fn check(&self) -> Result<()> {
        OwnedLockGuard::check(self)
    }
    fn release(self) -> Result<()> {
        self.unlock()
    }
}

#[cfg(unix)]
impl LockBackend for LockFile {
    type Guard = OwnedLockFileGuard;
    fn location(&self) -> &Path {
        self.path()
    }
    fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedLockFileGuard> {
        self.acquire_owned(mode, wait)
    }
}

#[cfg(unix)]
impl HeldLock for OwnedLockFileGuard {
    fn mode(&self) -> Mode {
        Mode::Exclusive
    }
    fn token(&self) -> Option<u64> {
        None
    }
    fn check(&self) -> Result<()> {
        OwnedLockFileGuard::check(self)
    }
    fn release(self) -> Result<()> {
        self.unlock()
    }
}

impl LockBackend for FifoLock {
    type Guard = OwnedFifoGuard;
    fn location(&self) -> &Path {
        self.path()
    }
    fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedFifoGuard> {
        self.acquire_owned(mode, wait)
    }
}

impl HeldLock for OwnedFifoGuard {
    fn mode(&self) -> Mode {
        OwnedFifoGuard::mode(self)
    }
    fn token(&self) -> Option<u64> {
        OwnedFifoGuard::token(self)
    }
    fn check(&self) -> Result<()> {
        Ok(())
    }
    fn release(self) -> Result<()> {
        self.unlock()
    }
}

impl LockBackend for Semaphore {
    type Guard = OwnedSemaphorePermit;
    fn location(&self) -> &Path {
        self.path()
    }
    fn acquire(&self, mode: Mode, wait: Wait) -> Result<OwnedSemaphorePermit> {
        self.acquire_owned(mode, wait)
    }
}

impl HeldLock for OwnedSemaphorePermit {
    fn mode(&self) -> Mode {
        OwnedSemaphorePermit::mode(self)
    }
    fn token(&self) -> Option<u64> {
        None
    }
    fn check(&self) -> Result<()> {
        Ok(())
    }
    fn release(self) -> Result<()> {
        self.unlock()
    }
}
