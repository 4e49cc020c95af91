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

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::time::{Duration, Instant};

use crate::acquire::{self, Unobserved, WaitObserver, Waiting, Watch};
use crate::error::{Error, IoOp, Result};
use crate::holder::{self, Holders};
pub use crate::mode::{Backend, Mode, Wait};
use crate::queue::{self, Machine, Step, Target};
use crate::sys::{self, FileId, FileKind, LockReq, OpenSpec};

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
    reentrant: bool,
    pub(crate) backend: Backend,
    pub(crate) record: bool,
    pub(crate) verify_path: bool,
    /// Made from an inherited descriptor ([`LockOptions::open_fd`]).
    inherited: bool,
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
        Ok(Lock {
            path,
            opts,
            state: Mutex::new(State {
                file: Arc::new(file),
                id,
                kind,
                held: Held::Free,
                waiters: 0,
                template: None,
            }),
            changed: Condvar::new(),
        })
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

/// A lock on a file path: exclusive or shared, blocking, non-blocking or
/// with a deadline, excluding threads and processes alike.
///
/// `Lock` is `Send + Sync`: share one between threads by reference or in an
/// `Arc`; each acquisition returns a [`LockGuard`] that releases on drop.
///
/// ```
/// use std::time::Duration;
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
        Ok(Lock {
            path: path.to_owned(),
            opts,
            state: Mutex::new(State {
                file: Arc::new(file),
                id,
                kind,
                held: Held::Free,
                waiters: 0,
                template: None,
            }),
            changed: Condvar::new(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options this lock was opened with.
    pub fn lock_options(&self) -> &LockOptions {
        &self.opts
    }

    /// Takes the lock exclusively, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`] if this thread already holds it and the lock
    /// is not re-entrant (waiting would never end; a *try* is told
    /// [`Error::WouldBlock`] instead, as std's `try_lock`); [`Error::Io`]
    /// if the kernel refuses (for example `ENOLCK`).
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock shared, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`].
    pub fn lock_shared(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the lock exclusively if nobody holds it.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder if it is taken; otherwise as
    /// [`Lock::lock`].
    pub fn try_lock(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock shared if no exclusive holder has it.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<LockGuard<'_>> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Takes the lock exclusively, waiting at most `timeout`.
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
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<LockGuard<'_>> {
        self.acquire_observed(mode, wait, &Unobserved)
    }

    /// [`acquire`](Self::acquire), telling `observer` when the first
    /// attempt found the lock taken and the call starts to wait, and when
    /// the wait is over (see [`crate::acquire`]). The wait itself is the
    /// same: blocked in the kernel, a timeout counted from the start of
    /// this call.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    /// struct Say;
    /// impl WaitObserver for Say {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for {}: {}", w.path().display(), w.holders());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let _g = lock.acquire_observed(Mode::Exclusive, Wait::Forever, &Say)?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_observed(
        &self,
        mode: Mode,
        wait: Wait,
        observer: &dyn WaitObserver,
    ) -> Result<LockGuard<'_>> {
        // A timeout counts from here, before the first attempt.
        let timed_from = matches!(wait, Wait::Timeout(_) | Wait::Deadline(_)).then(Instant::now);
        let me = current_thread();
        let mut st = lock_poisoned(self.state.lock());
        // Whether our last kernel attempt just found the lock taken, so the
        // slow path need not ask again before it blocks.
        let mut known_busy = false;
        // Fast path: nobody in this process holds it; a non-blocking kernel
        // attempt is safe to make under the state mutex.
        if matches!(st.held, Held::Free) {
            let lock_err = |e| Error::io(IoOp::Lock, &self.path, e);
            if sys::try_lock(&st.file, self.opts.backend, mode).map_err(lock_err)? {
                if !self.opts.verify_path || !sys::is_unlinked(&st.file).map_err(lock_err)? {
                    return Ok(self.finish_acquire(&mut st, me, mode));
                }
                // Deleted behind our back: the slow path reopens.
                let _ = sys::unlock(&st.file, self.opts.backend);
            } else if wait == Wait::NoWait {
                let (file, id) = (st.file.clone(), st.id);
                drop(st);
                return Err(self.contention(mode, wait, Instant::now(), &file, id));
            } else {
                known_busy = true;
            }
        }
        // Slow path: somebody (possibly this process) is in the way.
        let started = timed_from.unwrap_or_else(Instant::now);
        let deadline = match wait {
            Wait::NoWait => None,
            other => acquire::deadline(other, started),
        };
        let mut watch = Watch::new(observer);
        // 1. In-process admission.
        loop {
            match &mut st.held {
                Held::Free => {
                    st.held = Held::Acquiring;
                    break;
                }
                Held::Exclusive { thread, depth } if *thread == me => {
                    if self.opts.reentrant {
                        *depth += 1;
                        return Ok(self.guard(&st, mode, None, true));
                    }
                    // As std's `try_lock`: a try is told "would block"
                    // (naming this process); only a wait, which would
                    // never end, is refused as AlreadyHeld.
                    if wait == Wait::NoWait {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, Instant::now(), &file, id));
                    }
                    return Err(Error::AlreadyHeld {
                        path: self.path.clone(),
                    });
                }
                Held::Shared { holders } if mode == Mode::Shared => {
                    match holders.iter_mut().find(|(t, _)| *t == me) {
                        Some((_, n)) => *n += 1,
                        None => holders.push((me, 1)),
                    }
                    return Ok(self.guard(&st, mode, None, false));
                }
                Held::Shared { holders } if holders.iter().any(|(t, _)| *t == me) => {
                    if wait == Wait::NoWait {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, Instant::now(), &file, id));
                    }
                    return Err(Error::AlreadyHeld {
                        path: self.path.clone(),
                    });
                }
                _ => {
                    let now = Instant::now();
                    let left = match (wait, deadline) {
                        (Wait::NoWait, _) => None,
                        (_, Some(d)) if now >= d => None,
                        (_, Some(d)) => Some(Some(d - now)),
                        (_, None) => Some(None),
                    };
                    let Some(left) = left else {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, started, &file, id));
                    };
                    watch.start(|| self.waiting(mode, started, deadline, &st));
                    st.waiters += 1;
                    st = match left {
                        None => lock_poisoned(self.changed.wait(st)),
                        Some(left) => lock_poisoned(self.changed.wait_timeout(st, left)).0,
                    };
                    st.waiters -= 1;
                    known_busy = false;
                }
            }
        }
        // 2. Kernel acquisition, outside the state mutex.
        if known_busy && wait != Wait::NoWait {
            watch.start(|| self.waiting(mode, started, deadline, &st));
        }
        let (file, id, kind) = (st.file.clone(), st.id, st.kind);
        drop(st);
        let outcome = self.kernel_acquire(
            file, id, kind, mode, wait, deadline, known_busy, &mut watch, started,
        );
        let mut st = lock_poisoned(self.state.lock());
        match outcome {
            Ok(Some((file, id, kind))) => {
                st.file = file;
                st.id = id;
                st.kind = kind;
                drop(watch);
                Ok(self.finish_acquire(&mut st, me, mode))
            }
            Ok(None) => {
                self.set_free(&mut st);
                let (file, id) = (st.file.clone(), st.id);
                drop(st);
                Err(self.contention(mode, wait, started, &file, id))
            }
            Err(e) => {
                self.set_free(&mut st);
                Err(e)
            }
        }
    }

    /// What an observer is told about this lock's wait.
    fn waiting(
        &self,
        mode: Mode,
        started: Instant,
        deadline: Option<Instant>,
        st: &State,
    ) -> Waiting {
        let (file, id) = (st.file.clone(), st.id);
        Waiting::new(
            &self.path,
            mode,
            started,
            deadline,
            Arc::new(move || holder::describe(Some(&file), id)),
        )
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

    /// Marks the in-process state free and wakes threads waiting for it.
    fn set_free(&self, st: &mut State) {
        st.held = Held::Free;
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Records a fresh kernel acquisition in the state and makes its guard.
    fn finish_acquire(&self, st: &mut State, me: ThreadKey, mode: Mode) -> LockGuard<'_> {
        st.held = match mode {
            Mode::Exclusive => Held::Exclusive {
                thread: me,
                depth: 1,
            },
            Mode::Shared => Held::Shared {
                holders: vec![(me, 1)],
            },
        };
        let token = if mode == Mode::Exclusive {
            self.write_record(st)
        } else {
            None
        };
        let id = st.id;
        HELD_BY_THIS_THREAD.with(|h| h.borrow_mut().push((id, self.addr())));
        if st.waiters > 0 {
            // Shared requests of other threads may now join.
            self.changed.notify_all();
        }
        self.guard(st, mode, token, false)
    }

    /// Acquires in the kernel. `Ok(None)`: would block / timed out.
    /// `known_busy`: a non-blocking attempt just failed, skip straight to
    /// waiting (in `sys::wait_any`, the one kernel wait).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn kernel_acquire(
        &self,
        mut file: Arc<File>,
        mut id: FileId,
        mut kind: FileKind,
        mode: Mode,
        wait: Wait,
        deadline: Option<Instant>,
        mut known_busy: bool,
        watch: &mut Watch<'_>,
        started: Instant,
    ) -> Result<Option<(Arc<File>, FileId, FileKind)>> {
        let backend = self.opts.backend;
        let lock_err = |e| Error::io(IoOp::Lock, &self.path, e);
        loop {
            let got = !std::mem::take(&mut known_busy)
                && sys::try_lock(&file, backend, mode).map_err(lock_err)?;
            let got = if got || wait == Wait::NoWait {
                got
            } else {
                self.refuse_self_deadlock(id)?;
                watch.start(|| {
                    let (f, i) = (file.clone(), id);
                    Waiting::new(
                        &self.path,
                        mode,
                        started,
                        deadline,
                        Arc::new(move || holder::describe(Some(&f), i)),
                    )
                });
                sys::wait_any(&file, &[LockReq::Whole { backend, mode }], deadline)
                    .map_err(lock_err)?
                    .is_some()
            };
            if !got {
                return Ok(None);
            }
            if !self.opts.verify_path || !sys::is_unlinked(&file).map_err(lock_err)? {
                return Ok(Some((file, id, kind)));
            }
            // Someone deleted or replaced the file while we waited: our lock
            // guards nothing. Let it go, reopen the path, try again.
            tracing::debug!(path = %self.path.display(), "lock file was unlinked; reopening");
            let _ = sys::unlock(&file, backend);
            let (f, k, i) = open_file(&self.path, &self.opts)?;
            file = Arc::new(f);
            id = i;
            kind = k;
        }
    }

    /// Waiting for a lock this very thread holds through another `Lock`
    /// value would never end.
    fn refuse_self_deadlock(&self, id: FileId) -> Result<()> {
        let me = self.addr();
        let held = HELD_BY_THIS_THREAD.with(|h| {
            h.borrow()
                .iter()
                .any(|(held, owner)| *held == id && *owner != me)
        });
        if held {
            return Err(Error::AlreadyHeld {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn write_record(&self, st: &mut State) -> Option<u64> {
        if !self.opts.record || st.kind != FileKind::Writable {
            return None;
        }
        match holder::RecordTemplate::write_shared(&mut st.template, &st.file) {
            Ok(token) => token,
            Err(e) => {
                // The lock is held; only the diagnostics are missing.
                tracing::warn!(path = %self.path.display(), error = %e,
                    "could not write the holder record");
                None
            }
        }
    }

    fn addr(&self) -> usize {
        self as *const Lock as usize
    }

    fn guard(&self, st: &State, mode: Mode, token: Option<u64>, nested: bool) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            file: st.file.clone(),
            mode,
            token,
            pid: sys::current_pid(),
            nested,
            released: false,
            _not_send: PhantomData,
        }
    }

    /// The contention error (built only when returned).
    fn contention(
        &self,
        mode: Mode,
        wait: Wait,
        started: Instant,
        file: &File,
        id: FileId,
    ) -> Error {
        acquire::contention(&self.path, mode, wait, started, || {
            holder::describe(Some(file), id)
        })
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

    /// Releases the kernel lock and marks the state free. Called with the
    /// state locked.
    fn release_kernel(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        let id = st.id;
        let me = self.addr();
        HELD_BY_THIS_THREAD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().position(|e| *e == (id, me)) {
                h.swap_remove(i);
            }
        });
        let result = sys::unlock(&st.file, self.opts.backend)
            .map_err(|e| Error::io(IoOp::Unlock, &self.path, e));
        self.set_free(st);
        result
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
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

/// An acquisition of a whole-file lock on its own open file description,
/// as steps (see [`crate::queue::Machine`]): what owned and async guards of
/// a [`Lock`] are made of.
pub(crate) struct WholeAcquire<'a> {
    path: &'a Path,
    opts: &'a LockOptions,
    file: File,
    kind: FileKind,
    id: FileId,
    mode: Mode,
    held: bool,
}

impl<'a> WholeAcquire<'a> {
    /// Opens the lock file anew (a description of its own).
    pub(crate) fn open(path: &'a Path, opts: &'a LockOptions, mode: Mode) -> Result<Self> {
        let (file, kind, id) = open_file(path, opts)?;
        Ok(WholeAcquire {
            path,
            opts,
            file,
            kind,
            id,
            mode,
            held: false,
        })
    }

    /// The identity of the file being locked.
    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// The guard of a finished acquisition, with its holder record written
    /// (exclusive, writable file, records on).
    pub(crate) fn finish(
        self,
        path: &Arc<Path>,
        opts: &LockOptions,
        template: &mut Option<holder::RecordTemplate>,
    ) -> OwnedLockGuard {
        let token =
            if self.mode == Mode::Exclusive && opts.record && self.kind == FileKind::Writable {
                holder::RecordTemplate::write(template, &self.file).unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %e,
                        "could not write the holder record");
                    None
                })
            } else {
                None
            };
        OwnedLockGuard {
            file: Some(self.file),
            path: path.clone(),
            backend: opts.backend,
            mode: self.mode,
            token,
            pid: sys::current_pid(),
        }
    }
}

impl Machine for WholeAcquire<'_> {
    fn advance(&mut self) -> Result<Step> {
        let path = self.path;
        let backend = self.opts.backend;
        loop {
            if !self.held {
                if sys::try_lock(&self.file, backend, self.mode)
                    .map_err(|e| Error::io(IoOp::Lock, path, e))?
                {
                    self.held = true;
                } else {
                    return Ok(Step::Wait {
                        target: Target::Main,
                        reqs: vec![LockReq::Whole {
                            backend,
                            mode: self.mode,
                        }],
                        short: false,
                    });
                }
            }
            if self.opts.verify_path
                && sys::is_unlinked(&self.file).map_err(|e| Error::io(IoOp::Lock, path, e))?
            {
                let _ = sys::unlock(&self.file, backend);
                self.held = false;
                let (f, k, i) = open_file(path, self.opts)?;
                (self.file, self.kind, self.id) = (f, k, i);
                continue;
            }
            return Ok(Step::Ready);
        }
    }
    fn granted(&mut self, _index: usize) -> Result<()> {
        self.held = true;
        Ok(())
    }
    fn file(&self, _target: Target) -> &File {
        &self.file
    }
    fn path(&self, _target: Target) -> &Path {
        self.path
    }
    fn contention(&mut self, wait: Wait, started: Instant) -> Error {
        acquire::contention(self.path, self.mode, wait, started, || {
            holder::describe(Some(&self.file), self.id)
        })
    }
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting {
        let (file, id) = (self.file.try_clone().ok(), self.id);
        Waiting::new(
            self.path,
            self.mode,
            started,
            deadline,
            Arc::new(move || holder::describe(file.as_ref(), id)),
        )
    }
}

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
    file: Option<File>,
    path: Arc<Path>,
    backend: Backend,
    mode: Mode,
    token: Option<u64>,
    pid: u32,
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
    pub fn token(&self) -> Option<u64> {
        self.token
    }
    /// The lock file.
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
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    file: Arc<File>,
    mode: Mode,
    token: Option<u64>,
    pid: u32,
    nested: bool,
    released: bool,
    _not_send: PhantomData<*const ()>,
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
        let me = current_thread();
        let mut st = lock_poisoned(self.lock.state.lock());
        let result = match &mut st.held {
            Held::Exclusive { depth, .. } if *depth > 1 => {
                *depth -= 1;
                return Ok(());
            }
            Held::Exclusive { .. } => self.lock.release_kernel(&mut st),
            Held::Shared { holders } => {
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
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.lock.path.display(), error = %e, "failed to release lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn non_reentrant_same_thread_is_an_error_not_a_deadlock() {
        let d = tmp();
        let lock = Lock::open(d.path().join("l")).unwrap();
        let _g = lock.lock().unwrap();
        assert!(matches!(lock.lock(), Err(Error::AlreadyHeld { .. })));
        // A try never waits, so it is told "would block" (issue 10 item
        // 15: one rule for every primitive, as std's try_lock).
        assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
        // Through a second Lock value on the same file: the kernel would
        // block forever; holdfast refuses.
        let other = Lock::open(d.path().join("l")).unwrap();
        assert!(matches!(other.lock(), Err(Error::AlreadyHeld { .. })));
        assert!(matches!(
            other.lock_timeout(Duration::from_secs(5)),
            Err(Error::AlreadyHeld { .. })
        ));
        assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
    }

    #[test]
    fn reentrant_counts_nesting() {
        let d = tmp();
        let lock = Lock::options()
            .reentrant(true)
            .open(d.path().join("l"))
            .unwrap();
        let other = Lock::open(d.path().join("l")).unwrap();
        let g1 = lock.lock().unwrap();
        let g2 = lock.lock().unwrap();
        assert!(g1.token().is_some());
        assert!(g2.token().is_none());
        drop(g1);
        assert!(other.try_lock().is_err(), "still held by the nested guard");
        drop(g2);
        drop(other.try_lock().unwrap());
    }

    #[test]
    fn tokens_grow_by_one() {
        let d = tmp();
        let lock = Lock::open(d.path().join("l")).unwrap();
        let a = lock.lock().unwrap().token().unwrap();
        let b = lock.lock().unwrap().token().unwrap();
        let again = Lock::open(d.path().join("l")).unwrap();
        let c = again.lock().unwrap().token().unwrap();
        assert_eq!((b, c), (a + 1, a + 2));
    }

    #[test]
    fn foreign_content_is_never_overwritten() {
        let d = tmp();
        let p = d.path().join("data");
        std::fs::write(&p, b"precious user data").unwrap();
        let lock = Lock::open(&p).unwrap();
        let g = lock.lock().unwrap();
        assert_eq!(g.token(), None);
        drop(g);
        assert_eq!(std::fs::read(&p).unwrap(), b"precious user data");
    }

    #[test]
    fn corrupt_record_means_unknown_holder_and_a_larger_token() {
        let d = tmp();
        let p = d.path().join("l");
        std::fs::write(&p, b"holdfast-holder 1\ntoken 5\npid 1\n").unwrap();
        let lock = Lock::open(&p).unwrap();
        let t = lock.lock().unwrap().token().unwrap();
        assert!(t > 1_000_000, "jumped to the clock: {t}");
    }

    #[test]
    fn a_replaced_file_is_reopened() {
        let d = tmp();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        let _g = lock.lock().unwrap();
        // The lock we hold is on the file now at the path.
        let other = Lock::open(&p).unwrap();
        assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
    }

    #[test]
    fn directories_lock_like_flock1() {
        let d = tmp();
        let a = Lock::open(d.path()).unwrap();
        let b = Lock::open(d.path()).unwrap();
        let g = a.lock().unwrap();
        assert_eq!(g.token(), None);
        assert!(b.try_lock().is_err());
    }

    #[test]
    fn from_fd_shares_the_description_and_force_unlock_releases_it() {
        let d = tmp();
        let p = d.path().join("l");
        let file = File::create(&p).unwrap();
        let copy = file.try_clone().unwrap();
        let lock = Lock::from_fd(file.into()).unwrap();
        assert_eq!(lock.path(), std::fs::canonicalize(&p).unwrap());
        let g = lock.try_lock().unwrap();
        assert_eq!(g.token(), None, "no record through a borrowed descriptor");
        assert!(matches!(
            lock.force_unlock(),
            Err(Error::InvalidInput { .. })
        ));
        std::mem::forget(g);
        drop(lock);
        let other = Lock::open(&p).unwrap();
        assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"", "nothing written");
        Lock::from_fd(copy.into()).unwrap().force_unlock().unwrap();
        let _g = other.try_lock().unwrap();
    }

    #[test]
    fn empty_path_is_invalid_input() {
        assert!(matches!(Lock::open(""), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn flock_upgrade_and_downgrade() {
        let d = tmp();
        let lock = Lock::open(d.path().join("l")).unwrap();
        let other = Lock::open(d.path().join("l")).unwrap();
        let mut g = lock.lock_shared().unwrap();
        let r = other.lock_shared().unwrap();
        assert!(g.try_upgrade().is_err());
        assert_eq!(g.mode(), Mode::Shared);
        drop(r);
        // Still shared-held after the failed upgrade.
        assert!(other.try_lock().is_err());
        g.upgrade(Wait::Timeout(Duration::from_secs(5))).unwrap();
        assert!(other.try_lock_shared().is_err());
        g.downgrade().unwrap();
        let _r = other.try_lock_shared().unwrap();
    }
}
