//! A fair lock: processes (and threads) get it in the order they asked.
//!
//! Kernel locks give no ordering: under contention the releasing process
//! usually takes the lock straight back, and with 8 processes the luckiest
//! can get it a hundred times more often than the unluckiest. A
//! [`FifoLock`] adds a queue in front of the same kernel lock: waiters are
//! served in arrival order, every wait blocks in the kernel (no polling),
//! and a process killed at any moment never wedges the queue.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("app.lock");
//! let lock = holdfast::FifoLock::open(&path)?;
//! let guard = lock.lock()?;            // waits its turn, in the kernel
//! println!("ticket {} holds {}", guard.ticket(), path.display());
//! drop(guard);                         // the next in line runs now
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Files
//!
//! - The **lock file** (the path you give) is locked with `flock(2)` (or
//!   OFD `fcntl` with [`Backend::OfdFcntl`]) exactly as a [`crate::Lock`]
//!   locks it, holder record and fencing token included. This kernel lock
//!   *is* the mutual exclusion: it excludes plain [`crate::Lock`] users,
//!   util-linux `flock(1)`, and the Python libraries too.
//! - The **queue file**, `<path>.fifo` by default, holds a small text
//!   header with the ticket counter, and the queue itself as open-file-
//!   description byte-range locks (Linux ≥ 3.15): byte 0 is the *counter
//!   lock*; ticket `t` is the byte `2^32 + t`. It is removed when the queue
//!   is idle (see *Cleanup*).
//!
//! # Protocol
//!
//! Every acquisition uses its own open file descriptions of both files.
//!
//! 1. **Take a ticket.** Lock the counter byte (write lock, blocking; it is
//!    held for a handful of system calls). Check that the open queue file
//!    is still the one at the path (else reopen and repeat). Read the
//!    counter `n`; make sure no ticket at or above `n` is live (a damaged
//!    or rewound counter is repaired from the live locks); write-lock
//!    (read-lock, for [`Mode::Shared`]) the ticket byte `t = n`, write
//!    `n + 1`, release the counter lock.
//! 2. **Wait for your turn.** Ask the kernel (`F_OFD_GETLK`) whether any
//!    ticket below `t` is held in a conflicting mode: for a writer any
//!    ticket, for a reader only writers' tickets. If none, go to 3.
//!    Otherwise find the *nearest* such predecessor `p` (first byte `t - 1`,
//!    else a binary search with `F_OFD_GETLK`) and block on it:
//!    `F_OFD_SETLKW` on byte `p`. When that is granted, `p` is gone
//!    (released, gave up, or died) and we hold its byte; repeat 2, unless
//!    `p` had nobody ahead of it when we started waiting (then we are the
//!    head now: no ticket is ever issued below a live one). (We let
//!    go of that byte when we wait again or when we release, off the
//!    hand-off path; a probe that sees it meanwhile waits on it, is woken
//!    when we let go, and probes again.)
//! 3. **Take the lock file's kernel lock**, blocking, in the mode asked
//!    for; check the file was not deleted meanwhile (else reopen, retry).
//! 4. **Release**: unlock the lock file, then the ticket byte. The
//!    successor blocked on that byte wakes and goes to 2.
//!
//! A non-blocking attempt or a timeout leaves the queue by unlocking its
//! ticket byte; waits with a deadline and the async futures block in a
//! killable helper task (see [`crate::lock`]) instead of the calling thread.
//!
//! # Why it is correct
//!
//! - **Mutual exclusion does not depend on the queue.** Step 3 is the
//!   kernel lock a plain [`crate::Lock`] takes. A bug in the queue, a
//!   deleted queue file, or a counter set to garbage can cost fairness,
//!   never exclusion.
//! - **A live ticket is always visible to its successors.** Ticket `s` is
//!   locked before the counter lock is released, and every later ticket is
//!   issued under that lock, so from the moment `t > s` exists until `s`
//!   leaves, byte `s` is locked. The kernel answers `F_OFD_GETLK` from its
//!   lock table, so "no conflicting ticket below `t`" means every earlier
//!   conflicting ticket has left: that is first-come-first-served.
//! - **Tickets are unique and increase.** They are issued under the counter
//!   lock, and step 1 issues a number above every live ticket even if the
//!   stored counter is wrong.
//! - **A killed process never wedges the queue.** Every queue lock is an
//!   open-file-description lock, released by the kernel when the process
//!   dies (and the helper task dies with it). A dead waiter's byte unlocks,
//!   which wakes its successor, who re-probes (step 2) and waits on the next
//!   live predecessor, not assuming it is first. A dead holder's lock file
//!   lock and ticket are both released. A process killed while holding the
//!   counter lock loses it too, possibly leaving the counter written
//!   without its ticket: a gap, which step 2 skips over.
//! - **No deadlock inside the queue.** A waiter only ever blocks on a lower
//!   ticket (or on the counter lock, whose holder never blocks), so the
//!   waits form a chain ending at the head, which only waits for the lock
//!   file's holder.
//! - **One wake-up per hand-off.** Each waiter blocks on its nearest
//!   predecessor only, so a release wakes one process, not the whole queue.
//!
//! Ordering is among `FifoLock` users: a plain [`crate::Lock`] or
//! `flock(1)` on the same file is still excluded but may get the lock
//! ahead of the queue, as kernel locks do.
//!
//! # Cleanup
//!
//! When a [`FifoLock`] is dropped it removes the queue file if nobody uses
//! it: it takes the counter lock *without waiting* (someone taking a ticket
//! holds it), checks that no ticket is held, unlinks the file, and only
//! then releases the counter lock. A newcomer that opened the old file just
//! before takes the counter lock after that, sees (step 1) that its file
//! was unlinked, and reopens the path, creating a fresh queue. A newcomer
//! that got the counter lock first holds a ticket by the time the cleaner
//! looks, so the file stays. So cleanup never splits the queue in two. The
//! lock file itself is never deleted: other programs may be blocked on it,
//! and deleting a lock file that others lock is how split brains happen.
//!
//! # stouputils `LockFifo`
//!
//! stouputils' `LockFifo` (Python) takes `flock(LOCK_EX)` on the same path,
//! so it and a `FifoLock` exclude each other in both directions. They do
//! not share a queue: `LockFifo` keeps ticket *files* in `<path>.queue/`,
//! and its waiters poll the directory every 50 ms. Joining that queue would
//! mean polling too, and inheriting its failure modes: a `LockFifo` holder
//! killed with SIGKILL leaves its ticket at the head and, with the default
//! `timeout=None`, every later `LockFifo` waits forever; and its counter
//! reset when the directory looks empty can hand out one number twice. A
//! `FifoLock` therefore queues only with other `FifoLock`s and meets
//! `LockFifo` users at the kernel lock, where neither can starve the other
//! for long. `LockFifo.close()` deletes the lock file when it finds it
//! unlocked; step 3 notices that (the file is unlinked) and relocks the new
//! file at the path, so a `FifoLock` never holds an orphaned inode.
//!
//! # Platforms
//!
//! Linux only (open-file-description locks); elsewhere [`FifoLock::open`]
//! returns [`Error::Unsupported`]. Not for NFS: byte-range locks there go
//! through the server's lock manager, and the fairness argument assumes
//! one kernel's lock table.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acquire::{self, Unobserved, WaitObserver, Waiting};
use crate::error::{Error, IoOp, Result};
use crate::holder::{self, Holders};
use crate::mode::{Backend, Mode, Wait};
use crate::queue::{self, Enqueue, Kind, Machine, Step, Target};
use crate::sys::{self, FileId, FileKind, LockReq, OpenSpec};

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
    permissions: u32,
    create_parents: bool,
    follow_symlinks: bool,
    backend: Backend,
    record: bool,
    verify_path: bool,
    queue_path: Option<PathBuf>,
    remove_when_idle: bool,
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
    /// The kernel lock family of the lock file (default [`Backend::Flock`]).
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
    /// queued (default `true`; see the [module docs](self)).
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
    /// # Errors
    ///
    /// [`Error::Unsupported`] off Linux; [`Error::Symlink`];
    /// [`Error::InvalidInput`] if the queue file exists with content that
    /// is not a FIFO queue (it is never overwritten); [`Error::Io`] if a
    /// file cannot be opened or created.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<FifoLock> {
        FifoLock::with_options(path.as_ref(), self.clone())
    }
}

/// A lock whose waiters are served first come, first served, across
/// processes and threads. See the [module docs](self) for the protocol.
///
/// `FifoLock` is `Send + Sync`. Every acquisition takes its own place in
/// the queue, so threads sharing one `FifoLock` are ordered too.
///
/// ```
/// use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.lock");
/// let lock = holdfast::FifoLock::open(&path)?;
/// let g = lock.lock()?;
/// let other = holdfast::FifoLock::open(&path)?;
/// let err = std::thread::scope(|s| {
///     s.spawn(|| other.lock_timeout(Duration::from_millis(20)).unwrap_err()).join().unwrap()
/// });
/// assert!(matches!(err, holdfast::Error::Timeout { .. }));
/// drop(g);
/// let _r1 = lock.lock_shared()?;
/// let _r2 = other.try_lock_shared()?; // readers share
/// # Ok::<(), holdfast::Error>(())
/// ```
pub struct FifoLock {
    shared: Arc<FifoShared>,
}

pub(crate) struct FifoShared {
    pub(crate) path: PathBuf,
    pub(crate) queue_path: PathBuf,
    opts: FifoOptions,
    /// Unlocked (lock file, queue file) descriptions for the next
    /// acquisitions.
    idle: Mutex<Vec<(File, File)>>,
    /// Set once the queue file was checked: only then may drop remove it.
    opened: bool,
    /// This process's holder record, pre-encoded.
    template: Mutex<Option<holder::RecordTemplate>>,
    /// Whether the lock file is a regular file we may write (a record).
    writable: std::sync::atomic::AtomicBool,
}

const MAX_IDLE: usize = 4;

impl fmt::Debug for FifoLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoLock")
            .field("path", &self.shared.path)
            .field("queue_path", &self.shared.queue_path)
            .field("options", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Lock files this thread holds through a blocking `FifoLock`
    /// acquisition: asking again would wait for itself.
    static HELD_BY_THIS_THREAD: RefCell<Vec<FileId>> = const { RefCell::new(Vec::new()) };
}

impl FifoLock {
    /// Opens (creating) the lock file and its queue with the default
    /// [`FifoOptions`].
    ///
    /// # Errors
    ///
    /// See [`FifoOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<FifoLock> {
        FifoOptions::new().open(path)
    }

    /// A new set of options.
    pub fn options() -> FifoOptions {
        FifoOptions::new()
    }

    fn with_options(path: &Path, opts: FifoOptions) -> Result<FifoLock> {
        Ok(FifoLock {
            shared: FifoShared::open(path, opts)?,
        })
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared(&self) -> &Arc<FifoShared> {
        &self.shared
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The queue file.
    pub fn queue_path(&self) -> &Path {
        &self.shared.queue_path
    }

    /// Takes the lock exclusively, after everyone who asked before.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`] if this thread holds it already (it would
    /// wait for itself; the `try_` variants are allowed); [`Error::Io`].
    pub fn lock(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock shared, after every writer who asked before.
    ///
    /// # Errors
    ///
    /// As [`FifoLock::lock`].
    pub fn lock_shared(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the lock exclusively if nobody holds it or waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder; otherwise as
    /// [`FifoLock::lock`].
    pub fn try_lock(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock shared if no writer holds it or waits for it.
    ///
    /// # Errors
    ///
    /// As [`FifoLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Takes the lock exclusively, waiting in line at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holder (the place in line is given
    /// up); otherwise as [`FifoLock::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Takes the lock shared, waiting in line at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`FifoLock::lock_timeout`].
    pub fn lock_shared_timeout(&self, timeout: Duration) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Timeout(timeout))
    }

    /// Takes the lock in `mode`, waiting as `wait` says.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire(Mode::Exclusive, Wait::Timeout(std::time::Duration::from_secs(1)))?;
    /// assert!(g.token().is_some());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] or [`Error::Timeout`] naming the holder;
    /// [`Error::AlreadyHeld`]; [`Error::Io`].
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<FifoGuard<'_>> {
        self.acquire_observed(mode, wait, &Unobserved)
    }

    /// [`acquire`](Self::acquire), telling `observer` when the call starts
    /// to wait in line and when the wait is over (see [`crate::acquire`]).
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    /// struct Say;
    /// impl WaitObserver for Say {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("in line for {}", w.path().display());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
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
    ) -> Result<FifoGuard<'_>> {
        let started = Instant::now();
        let mut m = FifoAcquire::new(&self.shared, mode)?;
        // Waiting behind our own place in line would never end (a try
        // never waits, so it is allowed: two shared holds, for instance).
        if wait != Wait::NoWait && HELD_BY_THIS_THREAD.with(|h| h.borrow().contains(&m.main_id)) {
            return Err(Error::AlreadyHeld {
                path: self.shared.path.clone(),
            });
        }
        queue::drive(&mut m, wait, started, observer)?;
        let held = m.finish();
        HELD_BY_THIS_THREAD.with(|h| h.borrow_mut().push(held.main_id));
        Ok(FifoGuard {
            lock: self,
            held,
            _not_send: PhantomData,
        })
    }

    /// Takes the lock in `mode`, waiting in line as `wait` says, and
    /// returns a guard that owns what it needs ([`OwnedFifoGuard`]: `Send`,
    /// `'static`, releasable from any thread).
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let g = lock.acquire_owned(Mode::Shared, Wait::Forever)?;
    /// assert_eq!(g.mode(), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_owned(&self, mode: Mode, wait: Wait) -> Result<OwnedFifoGuard> {
        let started = Instant::now();
        let mut m = FifoAcquire::new(&self.shared, mode)?;
        if wait != Wait::NoWait && HELD_BY_THIS_THREAD.with(|h| h.borrow().contains(&m.main_id)) {
            return Err(Error::AlreadyHeld {
                path: self.shared.path.clone(),
            });
        }
        queue::drive(&mut m, wait, started, &Unobserved)?;
        Ok(OwnedFifoGuard { held: m.finish() })
    }

    /// Who holds the lock file now (kernel lock table plus holder record).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let _g = lock.lock()?;
    /// assert!(lock.holders().first().unwrap().this_process);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> Holders {
        self.shared.holders()
    }

    /// How many acquisitions hold a place in the queue right now (holders
    /// and waiters, this process's included), as the kernel's lock table
    /// shows it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.queue_len()?, 0);
    /// let _g = lock.lock()?;
    /// assert_eq!(lock.queue_len()?, 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the queue file cannot be read.
    pub fn queue_len(&self) -> Result<usize> {
        let q = &self.shared.queue_path;
        let file = queue::open_queue(q, self.shared.opts.permissions)?;
        queue::live_tickets(&file).map_err(|e| Error::io(IoOp::ReadQueue, q, e))
    }
}

impl FifoShared {
    pub(crate) fn open(path: &Path, opts: FifoOptions) -> Result<Arc<FifoShared>> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidInput {
                path: path.to_owned(),
                reason: "the lock path is empty".into(),
            });
        }
        if !sys::HAS_OFD {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                what: "FIFO locks",
                reason:
                    "they need open-file-description byte-range locks, which exist only on Linux"
                        .into(),
            });
        }
        let queue_path = opts.queue_path.clone().unwrap_or_else(|| {
            let mut s = path.as_os_str().to_owned();
            s.push(".fifo");
            PathBuf::from(s)
        });
        let mut shared = FifoShared {
            path: path.to_owned(),
            queue_path,
            opts,
            idle: Mutex::new(Vec::new()),
            opened: false,
            template: Mutex::new(None),
            writable: std::sync::atomic::AtomicBool::new(false),
        };
        let (main, _, kind) = shared.open_main_kind()?;
        shared.writable.store(
            kind == FileKind::Writable,
            std::sync::atomic::Ordering::Relaxed,
        );
        if shared.opts.create_parents
            && let Some(parent) = shared
                .queue_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(IoOp::CreateParents, &shared.queue_path, e))?;
        }
        let q = queue::open_queue(&shared.queue_path, shared.opts.permissions)?;
        queue::check_on_open(&q, &shared.queue_path, Kind::Fifo)?;
        shared.put_idle(main, q);
        shared.opened = true;
        Ok(Arc::new(shared))
    }

    fn open_main(&self) -> Result<(File, FileId)> {
        self.open_main_kind().map(|(f, id, _)| (f, id))
    }

    fn open_main_kind(&self) -> Result<(File, FileId, FileKind)> {
        let spec = OpenSpec {
            mode: self.opts.permissions,
            create: true,
            follow_symlinks: self.opts.follow_symlinks,
        };
        let path = &self.path;
        let opened = match sys::open_lock_file(path, &spec) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.opts.create_parents => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(IoOp::CreateParents, path, e))?;
                }
                sys::open_lock_file(path, &spec)
            }
            other => other,
        };
        let (file, kind) = opened.map_err(|e| {
            if !self.opts.follow_symlinks
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                Error::Symlink { path: path.clone() }
            } else {
                Error::io(IoOp::Open, path, e)
            }
        })?;
        if self.opts.backend == Backend::OfdFcntl && kind == FileKind::Other {
            return Err(Error::Unsupported {
                path: path.clone(),
                what: "fcntl locks on a directory",
                reason: "they need a file opened for writing; use Backend::Flock".into(),
            });
        }
        let id = sys::file_id(&file).map_err(|e| Error::io(IoOp::Inspect, path, e))?;
        Ok((file, id, kind))
    }

    fn take_idle(&self) -> Option<(File, File)> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_idle(&self, main: File, q: File) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((main, q));
        }
    }

    pub(crate) fn holders(&self) -> Holders {
        match self.open_main() {
            Ok((f, id)) => holder::describe(Some(&f), id),
            Err(_) => Holders::new(),
        }
    }
}

impl Drop for FifoShared {
    fn drop(&mut self) {
        if !self.opts.remove_when_idle || !self.opened {
            return;
        }
        let q = match self.take_idle() {
            Some((_, q)) => Ok(q),
            None => queue::open_queue(&self.queue_path, self.opts.permissions),
        };
        if let Ok(q) = q
            && let Err(e) = queue::remove_if_idle(&q, &self.queue_path)
        {
            tracing::debug!(path = %self.queue_path.display(), error = %e, "could not remove the idle queue file");
        }
    }
}

/// One acquisition of a [`FifoLock`], as a step machine.
pub(crate) struct FifoAcquire {
    shared: Arc<FifoShared>,
    main: File,
    main_id: FileId,
    q: Enqueue,
    mode: Mode,
    phase: Phase,
    main_held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Taking a ticket, then waiting for our turn (`queue::Enqueue`).
    Queue,
    Main,
}

impl FifoAcquire {
    pub(crate) fn new(shared: &Arc<FifoShared>, mode: Mode) -> Result<FifoAcquire> {
        let (main, q) = match shared.take_idle() {
            Some(pair) => pair,
            None => (
                shared.open_main()?.0,
                queue::open_queue(&shared.queue_path, shared.opts.permissions)?,
            ),
        };
        let main_id = sys::file_id(&main).map_err(|e| Error::io(IoOp::Inspect, &shared.path, e))?;
        Ok(FifoAcquire {
            shared: shared.clone(),
            main,
            main_id,
            q: Enqueue::new(
                q,
                shared.queue_path.clone(),
                shared.opts.permissions,
                Kind::Fifo,
                mode == Mode::Exclusive,
            ),
            mode,
            phase: Phase::Queue,
            main_held: false,
        })
    }

    /// Turns a finished acquisition into what a guard holds.
    pub(crate) fn finish(self) -> FifoHeld {
        let writable = self
            .shared
            .writable
            .load(std::sync::atomic::Ordering::Relaxed);
        let token = if self.mode == Mode::Exclusive && self.shared.opts.record && writable {
            let mut template = self
                .shared
                .template
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match holder::RecordTemplate::write(&mut template, &self.main) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.shared.path.display(), error = %e,
                        "could not write the holder record");
                    None
                }
            }
        } else {
            None
        };
        let FifoAcquire {
            shared,
            main,
            main_id,
            q,
            mode,
            ..
        } = self;
        let Enqueue {
            queue,
            ticket,
            stale,
            ..
        } = q;
        FifoHeld {
            shared,
            files: Some((main, queue)),
            main_id,
            ticket: ticket.expect("a finished acquisition holds a ticket"),
            stale,
            mode,
            token,
            pid: sys::current_pid(),
        }
    }
}

impl Machine for FifoAcquire {
    fn advance(&mut self) -> Result<Step> {
        loop {
            match self.phase {
                Phase::Queue => {
                    if let Some(step) = self.q.advance()? {
                        return Ok(step);
                    }
                    self.phase = Phase::Main;
                }
                Phase::Main => {
                    let backend = self.shared.opts.backend;
                    let lock_err = |e| Error::io(IoOp::Lock, &self.shared.path, e);
                    if !self.main_held {
                        if sys::try_lock(&self.main, backend, self.mode).map_err(lock_err)? {
                            self.main_held = true;
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
                    if self.shared.opts.verify_path
                        && sys::is_unlinked(&self.main).map_err(lock_err)?
                    {
                        tracing::debug!(path = %self.shared.path.display(), "lock file was unlinked; reopening");
                        let _ = sys::unlock(&self.main, backend);
                        self.main_held = false;
                        let (f, id) = self.shared.open_main()?;
                        self.main = f;
                        self.main_id = id;
                        continue;
                    }
                    return Ok(Step::Ready);
                }
            }
        }
    }

    fn granted(&mut self, _index: usize) -> Result<()> {
        match self.phase {
            Phase::Queue => self.q.granted(),
            Phase::Main => {
                self.main_held = true;
                Ok(())
            }
        }
    }

    fn file(&self, target: Target) -> &File {
        match target {
            Target::Queue => &self.q.queue,
            Target::Main => &self.main,
        }
    }

    fn path(&self, target: Target) -> &Path {
        match target {
            Target::Queue => &self.shared.queue_path,
            Target::Main => &self.shared.path,
        }
    }

    fn contention(&mut self, wait: Wait, started: Instant) -> Error {
        let _ = self.q.leave();
        if self.main_held {
            let _ = sys::unlock(&self.main, self.shared.opts.backend);
            self.main_held = false;
        }
        acquire::contention(&self.shared.path, self.mode, wait, started, || {
            holder::describe(Some(&self.main), self.main_id)
        })
    }
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting {
        let shared = self.shared.clone();
        Waiting::new(
            &self.shared.path,
            self.mode,
            started,
            deadline,
            Arc::new(move || shared.holders()),
        )
    }
}

/// What a held FIFO lock owns: its two open file descriptions (lock and
/// ticket). Releases on drop. Shared by the blocking and async guards.
pub(crate) struct FifoHeld {
    shared: Arc<FifoShared>,
    files: Option<(File, File)>,
    main_id: FileId,
    ticket: u64,
    /// A departed predecessor's byte still locked (see `Enqueue::granted`).
    stale: Option<u64>,
    mode: Mode,
    token: Option<u64>,
    pid: u32,
}

impl FifoHeld {
    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }
    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }
    pub(crate) fn token(&self) -> Option<u64> {
        self.token
    }

    pub(crate) fn release(&mut self) -> Result<()> {
        let Some((main, q)) = self.files.take() else {
            return Ok(());
        };
        if sys::current_pid() != self.pid {
            // A forked child: the descriptions are shared with the parent,
            // whose lock this is. Just close our copies.
            return Ok(());
        }
        let unlocked = sys::unlock(&main, self.shared.opts.backend)
            .map_err(|e| Error::io(IoOp::Unlock, &self.shared.path, e));
        let left = sys::range_unlock(&q, queue::TICKET_BASE + self.ticket, 1)
            .map_err(|e| Error::io(IoOp::LeaveQueue, &self.shared.queue_path, e));
        let left = match self.stale.take() {
            Some(b) => left.and(
                sys::range_unlock(&q, queue::TICKET_BASE + b, 1)
                    .map_err(|e| Error::io(IoOp::LeaveQueue, &self.shared.queue_path, e)),
            ),
            None => left,
        };
        if unlocked.is_ok() && left.is_ok() {
            self.shared.put_idle(main, q);
        }
        // On failure the files are closed, which releases both locks.
        unlocked.and(left)
    }
}

impl Drop for FifoHeld {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.shared.path.display(), error = %e, "failed to release FIFO lock");
        }
    }
}

/// Proof that a [`FifoLock`] is held; releases it (and hands it to the
/// next in line) when dropped.
///
/// Like [`crate::LockGuard`] it belongs to the thread that acquired it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct FifoGuard<'a> {
    lock: &'a FifoLock,
    held: FifoHeld,
    _not_send: PhantomData<*const ()>,
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
    pub fn mode(&self) -> Mode {
        self.held.mode()
    }
    /// The ticket this acquisition was served under: tickets are issued in
    /// arrival order, so a later arrival has a larger ticket (until the
    /// queue file is removed while idle and the count restarts).
    pub fn ticket(&self) -> u64 {
        self.held.ticket()
    }
    /// The fencing token written into the lock file's holder record, as
    /// [`crate::LockGuard::token`].
    pub fn token(&self) -> Option<u64> {
        self.held.token()
    }
    /// The lock this guard holds.
    pub fn lock(&self) -> &'a FifoLock {
        self.lock
    }
    /// Releases now, reporting failure.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the kernel refuses an unlock (the files are closed
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

impl FifoHeld {
    #[cfg(unix)]
    pub(crate) fn main_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.files
            .as_ref()
            .expect("a held lock has its files until released")
            .0
            .as_fd()
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
    pub fn mode(&self) -> Mode {
        self.held.mode()
    }
    /// The ticket it was served under (see [`crate::FifoGuard::ticket`]).
    pub fn ticket(&self) -> u64 {
        self.held.ticket()
    }
    /// The fencing token.
    pub fn token(&self) -> Option<u64> {
        self.held.token()
    }
    /// The lock file.
    pub fn path(&self) -> &Path {
        self.held.path()
    }
    /// Releases now, reporting failure.
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_increase_and_the_queue_empties() {
        let d = tempfile::tempdir().unwrap();
        let lock = FifoLock::open(d.path().join("l")).unwrap();
        let a = lock.lock().unwrap().ticket();
        let b = lock.lock().unwrap().ticket();
        assert!(b > a);
        assert_eq!(lock.queue_len().unwrap(), 0);
    }

    #[test]
    fn same_thread_twice_is_an_error_not_a_deadlock() {
        let d = tempfile::tempdir().unwrap();
        let lock = FifoLock::open(d.path().join("l")).unwrap();
        let other = FifoLock::open(d.path().join("l")).unwrap();
        let g = lock.lock().unwrap();
        assert!(matches!(lock.lock(), Err(Error::AlreadyHeld { .. })));
        assert!(matches!(
            other.lock_shared(),
            Err(Error::AlreadyHeld { .. })
        ));
        drop(g);
        drop(other.lock().unwrap());
    }

    #[test]
    fn try_lock_fails_while_a_writer_waits_and_leaves_no_ticket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = FifoLock::open(&p).unwrap();
        let g = lock.lock_shared().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let l = FifoLock::open(&p).unwrap();
                l.lock().map(|g| g.ticket())
            });
            while lock.queue_len().unwrap() < 2 {
                std::thread::yield_now();
            }
            // A reader would be compatible with the holder, but a writer
            // is queued ahead: no barging.
            // (From another thread: this one holds it, which would be
            // AlreadyHeld.)
            s.spawn(|| {
                let other = FifoLock::open(&p).unwrap();
                assert!(matches!(
                    other.try_lock_shared(),
                    Err(Error::WouldBlock { .. })
                ));
                assert!(matches!(
                    other.lock_shared_timeout(Duration::from_millis(30)),
                    Err(Error::Timeout { .. })
                ));
            })
            .join()
            .unwrap();
            assert_eq!(lock.queue_len().unwrap(), 2, "the failed attempts left");
            drop(g);
            assert!(waiter.join().unwrap().is_ok());
        });
    }

    #[test]
    fn the_queue_file_is_removed_when_idle_and_recreated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let a = FifoLock::open(&p).unwrap();
        let q = a.queue_path().to_owned();
        let b = FifoLock::open(&p).unwrap();
        let g = b.lock().unwrap();
        drop(a);
        assert!(q.exists(), "b holds a ticket");
        drop(g);
        let a = FifoLock::open(&p).unwrap();
        drop(b);
        assert!(!q.exists(), "idle: removed when b left");
        // `a` still has the old file open: it notices and starts a new one.
        let g = a.lock().unwrap();
        assert!(q.exists());
        drop(g);
        drop(a);
        assert!(!q.exists());
        assert!(p.exists(), "the lock file itself stays");
    }

    #[test]
    fn a_foreign_queue_file_is_refused_untouched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        std::fs::write(d.path().join("l.fifo"), b"mine").unwrap();
        assert!(matches!(
            FifoLock::open(&p),
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(std::fs::read(d.path().join("l.fifo")).unwrap(), b"mine");
    }
}
