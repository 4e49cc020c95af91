//! Kernel advisory locks on a path, and their guards.
//!
//! A [`Lock`] is an open lock file plus the bookkeeping that makes one lock
//! exclude threads as well as processes:
//!
//! - **Processes** are excluded by the kernel: `flock(2)` by default (what
//!   util-linux `flock(1)`, Python `filelock`, `phaselock`, `portalocker` and
//!   stouputils use, so all of them exclude holdfast and the reverse), or
//!   open-file-description `fcntl` locks with [`Backend::OfdFcntl`].
//! - **Threads sharing one `Lock`** are excluded in-process: the kernel lock
//!   belongs to the open file description, which all of them share, so a
//!   mutex-and-condvar state machine decides which thread may use it.
//!   Threads with *separate* `Lock` values on the same path are excluded by
//!   the kernel, as processes are.
//! - **Waiting** happens in the kernel: a blocked waiter is woken by the
//!   release itself. A wait with a timeout blocks in the kernel too (on
//!   Linux in a killable helper task; see `sys/linux.rs`), so a timeout
//!   fires on time and a release is noticed in microseconds.
//!
//! # Guarantees by backend
//!
//! | | [`Backend::Flock`] (default) | [`Backend::OfdFcntl`] (Linux) |
//! |---|---|---|
//! | interoperates with | flock(1), filelock, phaselock, portalocker, stouputils | `fcntl`/`lockf` users: fasteners, lckpwdf, portalocker `LockfLocker`, flock(1) `--fcntl` |
//! | [`LockGuard::upgrade`] / [`LockGuard::downgrade`] | **not atomic**: the kernel drops the old lock before taking the new one, so another process can get in between | atomic |
//! | failed [`LockGuard::try_upgrade`] | the shared lock is lost in the kernel; holdfast takes it back (blocking) before returning | the shared lock is kept |
//! | directories, read-only files | yes | shared locks only on read-only files; no directories |
//! | NFS | emulated by the client as a whole-file `fcntl` lock | yes (NLM / NFSv4) |
//!
//! # Fork
//!
//! A child created by `fork` shares the parent's open file descriptions. A
//! guard dropped in the child does **not** release the lock (that would
//! release the parent's); the child simply lets go of its copy. Lock files
//! are opened with `O_CLOEXEC`, so programs the child `exec`s do not keep the
//! lock alive.

mod admission;
mod guard;
mod options;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::acquire::Unobserved;
use crate::error::{Error, IoOp, Result};
use crate::holder::{self, Holders};
pub use crate::mode::{Backend, Mode, Wait};
use crate::queue;
use crate::sys::{self, FileId, FileKind};
use std::fs::File;

pub(crate) use admission::WholeAcquire;
pub use guard::{LockGuard, OwnedLockGuard};
pub use options::LockOptions;
pub(crate) use options::open_file;

/// A lock on a file path: exclusive or shared, blocking, non-blocking or
/// with a deadline, excluding threads and processes alike.
///
/// `Lock` is `Send + Sync`: share one between threads by reference or in an
/// `Arc`; each acquisition returns a [`LockGuard`] that releases on drop.
///
/// ```
/// use std::time::{Duration, Instant};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.lock");
/// let lock = holdfast::Lock::open(&path)?;
/// {
///     let guard = lock.lock()?;              // blocks in the kernel
///     assert!(guard.token().is_some());      // fencing token from the record
/// }
/// let _r1 = lock.lock_shared()?;
/// let other = holdfast::Lock::open(&path)?;  // another open = another "process"
/// let _r2 = other.try_lock_shared()?;        // shared holders coexist
/// let err = std::thread::spawn(move || {
///     let writer = holdfast::Lock::open(&path).unwrap();
///     writer.lock_timeout(Duration::from_millis(20)).unwrap_err()
/// }).join().unwrap();
/// assert!(matches!(err, holdfast::Error::Timeout { .. }));
/// assert!(err.to_string().contains("waiting for an exclusive lock on"));
/// # Ok::<(), holdfast::Error>(())
/// ```
pub struct Lock {
    path: PathBuf,
    opts: LockOptions,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    file: Arc<File>,
    id: FileId,
    kind: FileKind,
    held: Held,
    /// Threads of this process waiting on `changed`.
    waiters: u32,
    /// This process's holder record, pre-encoded.
    template: Option<holder::RecordTemplate>,
    /// The file's registration with the process's path watch (see
    /// `sys/linux/pathwatch.rs`), used by the fast path's path check.
    watch: Option<sys::PathWatch>,
    /// 0: the first path check is to come; 1: register the watch at the
    /// next; 2: registered, or not possible for this file.
    watch_step: u8,
}

#[derive(Debug)]
enum Held {
    Free,
    /// A thread of this process is in the kernel acquiring the lock.
    Acquiring,
    Exclusive {
        thread: ThreadKey,
        depth: u32,
    },
    Shared {
        holders: Vec<(ThreadKey, u32)>,
    },
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.path)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

/// A cheap per-thread identity (`std::thread::current()` clones and drops
/// an `Arc`, two atomic operations on every call).
type ThreadKey = u64;

fn current_thread() -> ThreadKey {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static KEY: ThreadKey = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    KEY.with(|k| *k)
}

thread_local! {
    /// Inodes this thread holds through any `Lock`: (file id, lock address).
    static HELD_BY_THIS_THREAD: RefCell<Vec<(FileId, usize)>> = const { RefCell::new(Vec::new()) };
}

fn lock_poisoned<T>(r: std::sync::LockResult<T>) -> T {
    // The state is updated in small steps that leave it consistent, so a
    // panic elsewhere never leaves it half-written.
    r.unwrap_or_else(|e| e.into_inner())
}

impl Lock {
    /// Opens (creating if needed) a lock file with the default
    /// [`LockOptions`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let _guard = lock.lock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`LockOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Lock> {
        LockOptions::new().open(path)
    }

    /// A new set of options; `Lock::options().reentrant(true).open(p)`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::options().reentrant(true).open(dir.path().join("app.lock"))?;
    /// let outer = lock.lock()?;
    /// let inner = lock.lock()?; // the same thread again: nested, not a deadlock
    /// drop((inner, outer));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn options() -> LockOptions {
        LockOptions::new()
    }

    /// Wraps an already-open descriptor with the default options; see
    /// [`LockOptions::open_fd`] for what differs from [`Lock::open`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let file = std::fs::File::create(dir.path().join("app.lock"))?;
    /// let lock = holdfast::Lock::from_fd(file.into())?;
    /// let _guard = lock.lock()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`LockOptions::open_fd`].
    #[cfg(unix)]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Lock> {
        LockOptions::new().open_fd(fd)
    }

    /// Releases whatever kernel lock this lock's open file description
    /// holds, whoever took it: the counterpart of [`open_fd`](LockOptions::open_fd)
    /// for `flock -u 9`, where the lock was taken through another copy of
    /// the descriptor (by a shell, or an earlier process). A no-op if the
    /// description holds no lock.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let file = std::fs::File::create(&path)?;
    /// let copy = file.try_clone()?;
    /// std::mem::forget(holdfast::Lock::from_fd(file.into())?.lock()?);
    /// assert!(holdfast::Lock::open(&path)?.try_lock().is_err());
    /// holdfast::Lock::from_fd(copy.into())?.force_unlock()?;
    /// assert!(holdfast::Lock::open(&path)?.try_lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] while a guard of this `Lock` is alive in
    /// this process (drop or unlock the guard instead); [`Error::Io`] if
    /// the kernel refuses.
    pub fn force_unlock(&self) -> Result<()> {
        let st = lock_poisoned(self.state.lock());
        if !matches!(st.held, Held::Free) {
            return Err(Error::InvalidInput {
                path: self.path.clone(),
                reason: "a guard of this lock is alive in this process; drop it to unlock".into(),
            });
        }
        sys::unlock(&st.file, self.opts.backend).map_err(|e| Error::io(IoOp::Unlock, &self.path, e))
    }

    /// A lock on a file just opened, free in this process.
    fn from_open(path: PathBuf, opts: LockOptions, file: File, id: FileId, kind: FileKind) -> Lock {
        Lock {
            path,
            opts,
            state: Mutex::new(State {
                file: Arc::new(file),
                id,
                kind,
                held: Held::Free,
                waiters: 0,
                template: None,
                watch: None,
                watch_step: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn with_options(path: &Path, opts: LockOptions) -> Result<Lock> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidInput {
                path: path.to_owned(),
                reason: "the lock path is empty".into(),
            });
        }
        if opts.backend == Backend::OfdFcntl && !sys::HAS_OFD {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                what: "open-file-description fcntl locks",
                reason: "they exist only on Linux; use Backend::Flock".into(),
            });
        }
        let (file, kind, id) = open_file(path, &opts)?;
        Ok(Lock::from_open(path.to_owned(), opts, file, id, kind))
    }

    /// The lock file's path.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.path(), dir.path().join("app.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options this lock was opened with.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::options().backend(holdfast::Backend::Flock).open(dir.path().join("app.lock"))?;
    /// println!("{:?}", lock.lock_options());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock_options(&self) -> &LockOptions {
        &self.opts
    }

    /// Takes the lock exclusively, waiting as long as it takes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// // ... only one process (and thread) at a time runs this ...
    /// drop(guard);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`] if this thread already holds it and the lock
    /// is not re-entrant (waiting would never end; a *try* is told
    /// [`Error::WouldBlock`] instead, as std's `try_lock`); [`Error::Io`]
    /// if the kernel refuses (for example `ENOLCK`).
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock shared, waiting as long as it takes.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let r1 = lock.lock_shared()?;
    /// let r2 = lock.lock_shared()?; // readers share
    /// assert!(lock.try_lock().is_err(), "a writer waits for both");
    /// drop((r1, r2));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`].
    #[inline]
    pub fn lock_shared(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the lock exclusively if nobody holds it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let first = holdfast::Lock::open(&path)?;
    /// let _held = first.try_lock()?;
    /// match holdfast::Lock::open(&path)?.try_lock() {
    ///     Err(holdfast::Error::WouldBlock { holders, .. }) => println!("busy: held by {holders}"),
    ///     other => panic!("expected WouldBlock, got {other:?}"),
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder if it is taken; otherwise as
    /// [`Lock::lock`].
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock shared if no exclusive holder has it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let writer = lock.try_lock()?;
    /// assert!(lock.try_lock_shared().is_err());
    /// drop(writer);
    /// let _reader = lock.try_lock_shared()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Takes the lock exclusively, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let held = lock.lock_timeout(Duration::from_secs(5))?;
    /// // Another thread gives up after 20 ms:
    /// let late = std::thread::scope(|s| {
    ///     s.spawn(|| lock.lock_timeout(Duration::from_millis(20)).map(drop)).join().unwrap()
    /// });
    /// assert!(matches!(late, Err(holdfast::Error::Timeout { .. })));
    /// drop(held);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holder when the time runs out;
    /// otherwise as [`Lock::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Takes the lock shared, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let reader = lock.lock_shared_timeout(Duration::from_secs(5))?;
    /// assert_eq!(reader.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_shared_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Timeout(timeout))
    }

    /// Takes the lock in `mode`, waiting as `wait` says. The other methods
    /// are shorthands for this one.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// use std::time::{Duration, Instant};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// let g = lock.acquire(Mode::Shared, Wait::Deadline(deadline))?;
    /// assert_eq!(g.mode(), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (with [`Wait::NoWait`]) or [`Error::Timeout`]
    /// naming the holder; [`Error::AlreadyHeld`]; [`Error::Io`].
    #[inline]
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<LockGuard<'_>> {
        self.acquire_observed(mode, wait, &Unobserved)
    }

    /// Takes the lock in `mode`, waiting as `wait` says, and returns a
    /// guard that owns what it needs: [`OwnedLockGuard`] is `Send` and
    /// `'static`, so it can be kept in a long-lived object, moved into a
    /// thread or task, and released from another thread.
    ///
    /// The acquisition opens its own file description (one `open` more
    /// than [`acquire`](Self::acquire)), so it is excluded by the kernel from
    /// every other holder, including guards of this same `Lock`.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let held = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// assert!(lock.try_lock().is_err());
    /// let t = std::thread::spawn(move || drop(held));
    /// t.join().unwrap();
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (with [`Wait::NoWait`]) or [`Error::Timeout`]
    /// naming the holder; [`Error::AlreadyHeld`] if this thread holds the
    /// lock through a [`LockGuard`] and would wait for itself;
    /// [`Error::Io`] and the errors of [`LockOptions::open`] when the file
    /// is opened again; [`Error::Unsupported`] for a lock made with
    /// [`LockOptions::open_fd`].
    pub fn acquire_owned(&self, mode: Mode, wait: Wait) -> Result<OwnedLockGuard> {
        if self.opts.inherited {
            return Err(Error::Unsupported {
                path: self.path.clone(),
                what: "owned guards of an inherited descriptor",
                reason: "the lock belongs to the inherited open file description; \
                         use the borrowed guards of Lock::acquire"
                    .into(),
            });
        }
        let started = Instant::now();
        let mut m = WholeAcquire::open(&self.path, &self.opts, mode)?;
        if wait != Wait::NoWait {
            let id = m.id();
            if HELD_BY_THIS_THREAD.with(|h| h.borrow().iter().any(|(held, _)| *held == id)) {
                return Err(Error::AlreadyHeld {
                    path: self.path.clone(),
                });
            }
        }
        queue::drive(&mut m, wait, started, &Unobserved)?;
        let mut st = lock_poisoned(self.state.lock());
        Ok(m.finish(
            &Arc::from(self.path.as_path()),
            &self.opts,
            &mut st.template,
        ))
    }

    /// Who holds this lock right now, as far as can be told (kernel lock
    /// table plus holder record). Empty when it is free.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// assert!(lock.holders().is_empty());
    /// let _g = lock.lock()?;
    /// assert_eq!(lock.holders().first().unwrap().pid, Some(std::process::id()));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> Holders {
        let (file, id) = {
            let st = lock_poisoned(self.state.lock());
            (st.file.clone(), st.id)
        };
        holder::describe(Some(&file), id)
    }
}
