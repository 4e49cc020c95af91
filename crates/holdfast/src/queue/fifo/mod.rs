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
//!   OFD `fcntl` with [`Backend::OfdFcntl`](crate::Backend::OfdFcntl)) exactly as a [`crate::Lock`]
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
//!    or rewound counter is repaired from the live locks); write-lock the
//!    ticket byte `t = n` (a *waiting* ticket, whatever the mode), write
//!    `n + 1`, release the counter lock. (The counter is read and patched
//!    through a shared mapping of the header, not `pread`/`pwrite`, once a
//!    description has seen it whole.) If one `F_OFD_GETLK` over all
//!    tickets shows the queue empty, the kernel lock is tried right there,
//!    under the counter lock (nobody can join meanwhile): got, the ticket
//!    is taken read-locked, in the *holding* state, and the acquisition is
//!    done (an uncontended cycle makes 9 system calls).
//! 2. **Wait until everyone ahead holds.** Find the nearest predecessor
//!    `p` below `t` in a conflicting state (`F_OFD_GETLK` on byte `t - 1`,
//!    else a binary search): for a writer any ticket, for a reader only
//!    waiting (write-locked) ones. If there is none, or `p`'s ticket is
//!    read-locked (it holds), we are next: go to 3. Otherwise ask for a
//!    *read* lock on byte `p`, blocking (`F_OFD_SETLKW`): the kernel grants
//!    it once `p` holds (its ticket turns into a read lock) or left (gave
//!    up, or died). Then go to 3 if nobody was waiting ahead of `p` when we
//!    started (holders never wait again, and no ticket is ever issued below
//!    a live one), else repeat 2. (We let go of that read lock before we
//!    wait again or on the kernel lock; it lies below our own live ticket,
//!    so no probe takes it for the nearest predecessor meanwhile.)
//! 3. **Take the lock file's kernel lock**, blocking, in the mode asked
//!    for: only the next in line waits here; everyone behind it waits in
//!    the queue file. Check the file was not deleted meanwhile (else
//!    reopen, retry). Then turn the ticket into a read lock, in place (one
//!    `F_OFD_SETLK`): the successor blocked in 2 wakes and becomes the next
//!    in line, while we hold.
//! 4. **Release**: unlock the lock file, then the ticket byte. The next in
//!    line, blocked on the kernel lock, is woken by the first of those, as
//!    a plain kernel lock hands over.
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
//!   lock table, so "nobody waiting below `t`" means every earlier arrival
//!   holds the kernel lock or has left: that is first-come-first-served.
//! - **Holders come first in the queue.** A ticket turns into the holding
//!   state only once its owner holds the kernel lock, which it asks for
//!   only when everyone ahead holds: so holding tickets are a prefix of
//!   the queue, waiting ones the rest, and only the first waiting one (the
//!   next in line) ever blocks on the kernel lock, where no other queue
//!   member competes with it.
//! - **Tickets are unique and increase.** They are issued under the counter
//!   lock, and step 1 issues a number above every live ticket even if the
//!   stored counter is wrong.
//! - **A killed process never wedges the queue.** Every queue lock is an
//!   open-file-description lock, released by the kernel when the process
//!   dies (and the helper task dies with it). A dead waiter's byte unlocks,
//!   which wakes its successor, who re-probes (step 2) and waits on the next
//!   waiting predecessor, not assuming it is next. A dead holder's lock
//!   file lock and ticket are both released: the next in line gets the
//!   kernel lock. A process killed while holding the counter lock loses it
//!   too, possibly leaving the counter written without its ticket: a gap,
//!   which step 2 skips over.
//! - **No deadlock inside the queue.** A waiter only ever blocks on a lower
//!   ticket (or on the counter lock, whose holder never blocks), so the
//!   waits form a chain ending at the next in line, which only waits for
//!   the lock file's holders.
//! - **One wake-up per hand-off, and nothing in between.** The next in line
//!   is blocked on the kernel lock itself, so a release wakes it directly,
//!   as a plain kernel lock does; the queue's own wake-up (its successor,
//!   when it turns its ticket) happens while it holds, off the hand-off.
//!
//! Processes of an older holdfast (where a holder kept its ticket
//! write-locked and every waiter waited in the queue until its predecessor
//! left) can share the queue: exclusion is the kernel lock's either way,
//! and order holds, except that a writer of this version may be served
//! before an older version's reader that waits ahead of it (an older
//! reader's ticket is read-locked while it waits, which reads as holding).
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
//! returns [`Error::Unsupported`](crate::Error::Unsupported). Not for NFS: byte-range locks there go
//! through the server's lock manager, and the fairness argument assumes
//! one kernel's lock table.

mod acquire;
mod guard;
mod options;
mod shared;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acquire::{Unobserved, WaitObserver};
use crate::error::{Error, IoOp, Result};
use crate::holder::Holders;
use crate::mode::{Mode, Wait};
use crate::queue;
use crate::sys::FileId;

pub(crate) use self::acquire::FifoAcquire;
pub use self::guard::{FifoGuard, OwnedFifoGuard};
pub use self::options::FifoOptions;
pub(crate) use self::shared::FifoShared;

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
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?; // served in arrival order across processes
    /// drop(guard);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`FifoOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<FifoLock> {
        FifoOptions::new().open(path)
    }

    /// A new set of options.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::options()
    ///     .permissions(0o666) // waiters of other users write the queue too
    ///     .open(dir.path().join("app.lock"))?;
    /// # drop(lock);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.path(), dir.path().join("app.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The queue file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// assert_eq!(lock.queue_path(), dir.path().join("app.lock.fifo"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn queue_path(&self) -> &Path {
        &self.shared.queue_path
    }

    /// Takes the lock exclusively, after everyone who asked before.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let guard = lock.lock()?;
    /// // ... exclusive work; the next waiter in line gets it on drop ...
    /// drop(guard);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`](crate::Error::AlreadyHeld) if this thread holds it already (it would
    /// wait for itself; the `try_` variants are allowed); [`Error::Io`](crate::Error::Io).
    pub fn lock(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock shared, after every writer who asked before.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let r1 = lock.lock_shared()?;
    /// let r2 = lock.try_lock_shared()?; // readers in a row share (a blocking call
    ///                                  // from the same thread would be AlreadyHeld)
    /// assert!(lock.try_lock().is_err());
    /// drop((r1, r2));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FifoLock::lock`].
    pub fn lock_shared(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the lock exclusively if nobody holds it or waits for it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.try_lock()?;
    /// assert!(matches!(lock.try_lock(), Err(holdfast::Error::WouldBlock { .. })));
    /// drop(held);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) naming the holder; otherwise as
    /// [`FifoLock::lock`].
    pub fn try_lock(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock shared if no writer holds it or waits for it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let writer = lock.try_lock()?;
    /// assert!(lock.try_lock_shared().is_err());
    /// drop(writer);
    /// let _reader = lock.try_lock_shared()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FifoLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Takes the lock exclusively, waiting in line at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let held = lock.lock_timeout(Duration::from_secs(5))?;
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
    /// [`Error::Timeout`](crate::Error::Timeout) naming the holder (the place in line is given
    /// up); otherwise as [`FifoLock::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<FifoGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Takes the lock shared, waiting in line at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("app.lock"))?;
    /// let reader = lock.lock_shared_timeout(Duration::from_secs(5))?;
    /// assert_eq!(reader.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) or [`Error::Timeout`](crate::Error::Timeout) naming the holder;
    /// [`Error::AlreadyHeld`](crate::Error::AlreadyHeld); [`Error::Io`](crate::Error::Io).
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
    /// [`Error::Io`](crate::Error::Io) if the queue file cannot be read.
    pub fn queue_len(&self) -> Result<usize> {
        let q = &self.shared.queue_path;
        let file = queue::open_queue(q, self.shared.opts.permissions)?;
        queue::live_tickets(&file).map_err(|e| Error::io(IoOp::ReadQueue, q, e))
    }
}
