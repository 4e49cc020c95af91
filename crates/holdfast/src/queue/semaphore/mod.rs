//! A counting semaphore across processes: at most N holders of a named
//! resource, released by the kernel when a holder dies.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("gpu.sem");
//! let gpus = holdfast::Semaphore::open(&path, 2)?;
//! let a = gpus.lock()?;
//! let b = gpus.lock()?;
//! assert!(gpus.try_lock().is_err()); // both permits taken
//! assert_ne!(a.slot(), b.slot());
//! drop(a);
//! let _c = gpus.try_lock()?;
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Protocol
//!
//! One file holds everything, as open-file-description byte-range locks
//! (Linux): a header naming the number of permits, byte 0 as the counter
//! lock, **slot** `i` (`0 ≤ i < N`) as byte `2^20 + i`, and a ticket
//! queue exactly like the [FIFO lock's](crate::fifo) at `2^32 + t`.
//!
//! 1. Take a ticket (as in [`crate::fifo`]) and wait until no earlier
//!    ticket is live: waiters are served in arrival order. When the queue
//!    is empty (seen under the counter lock, so nobody can join meanwhile),
//!    first try the slots right there, from `counter mod N`: a free one is
//!    taken without a ticket at all (6 system calls per uncontended cycle).
//! 2. Try the slots without waiting, starting at `ticket mod N`. A free one
//!    is taken with a write lock.
//! 3. If all are taken, block until *any* of them is released: one killable
//!    helper task per slot, each blocked in `F_OFD_SETLKW` on its slot, and
//!    a `poll` on their pidfds. The first granted slot is kept; the other
//!    tasks are killed, and a slot one of them got in the meantime is
//!    released at once.
//! 4. Holding a slot, give the ticket back: the next waiter becomes the
//!    head and goes to 2.
//! 5. Release = unlock the slot byte.
//!
//! **At most N holders** is the kernel's guarantee, not the queue's: a
//! holder holds a write lock on one of N bytes, and two open file
//! descriptions never both hold a write lock on one byte. **No leaked
//! permits**: a slot is a lock, not a file or a counter, so the kernel
//! releases it when its holder dies (portalocker's `BoundedSemaphore` and
//! counters in files or shared memory can leak a permit that way, or need
//! a stale-holder rule to win it back). A killed waiter's ticket is
//! released the same way; see the [FIFO lock's argument](crate::fifo) for
//! the queue.
//!
//! Every process must open the semaphore with the same number of permits:
//! the first one writes it into the header, and a different number is
//! refused with [`Error::InvalidInput`]. When a [`Semaphore`] is dropped
//! and nobody holds or waits for a permit, the file is removed, with the
//! same newcomer-safe check as the FIFO queue file.
//!
//! # Platforms
//!
//! Linux only; elsewhere [`Semaphore::open`] returns
//! [`Error::Unsupported`].

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acquire::{self, Unobserved, WaitObserver, Waiting};
use crate::error::{Error, IoOp, Result};
use crate::holder::{self, Holder, HolderSource, Holders};
use crate::mode::{Mode, Wait};
use crate::queue::{self, Enqueue, Kind, Machine, QueueFile, Served, Step, Target};
use crate::sys::{self, LockReq, Range};

/// Options for opening a [`Semaphore`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let sem = holdfast::Semaphore::options()
///     .permissions(0o666)
///     .create_parents(true)
///     .open(dir.path().join("sems/build.sem"), 4)?;
/// assert_eq!(sem.permits(), 4);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SemaphoreOptions {
    permissions: u32,
    create_parents: bool,
    remove_when_idle: bool,
}

impl Default for SemaphoreOptions {
    fn default() -> Self {
        SemaphoreOptions {
            permissions: 0o644,
            create_parents: false,
            remove_when_idle: true,
        }
    }
}

impl SemaphoreOptions {
    /// Defaults: mode `0o644` (use `0o666` to share between users: every
    /// participant needs write access), no parent creation, file removed
    /// when idle.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut opts = holdfast::SemaphoreOptions::new();
    /// opts.permissions(0o666).create_parents(true);
    /// let sem = opts.open(dir.path().join("run/gpu.sem"), 2)?;
    /// assert_eq!(sem.permits(), 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// Permission bits for a newly created semaphore file (umask applies).
    ///
    /// ```
    /// let mut options = holdfast::SemaphoreOptions::new();
    /// options.permissions(0o664);
    /// ```
    pub fn permissions(&mut self, mode: u32) -> &mut Self {
        self.permissions = mode & 0o7777;
        self
    }
    /// Create missing parent directories (default `false`).
    ///
    /// ```
    /// let mut options = holdfast::SemaphoreOptions::new();
    /// options.create_parents(true);
    /// ```
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.create_parents = yes;
        self
    }
    /// Remove the file when a [`Semaphore`] is dropped and nobody holds or
    /// waits for a permit (default `true`).
    ///
    /// ```
    /// let mut options = holdfast::SemaphoreOptions::new();
    /// options.remove_when_idle(true);
    /// ```
    pub fn remove_when_idle(&mut self, yes: bool) -> &mut Self {
        self.remove_when_idle = yes;
        self
    }
    /// Opens (creating) the semaphore file for `permits` permits.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::SemaphoreOptions::new()
    ///     .remove_when_idle(false)
    ///     .open(dir.path().join("downloads.sem"), 4)?;
    /// let _permit = sem.lock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `permits` is 0 or above 2^20, if the file
    /// was created for a different number of permits, or if it holds
    /// something else (never overwritten); [`Error::Symlink`];
    /// [`Error::Unsupported`] off Linux; [`Error::Io`].
    pub fn open(&self, path: impl AsRef<Path>, permits: usize) -> Result<Semaphore> {
        Ok(Semaphore {
            shared: SemShared::open(path.as_ref(), permits, self.clone())?,
        })
    }
}

/// At most N holders across processes and threads, served in arrival
/// order. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// let sem = holdfast::Semaphore::open(dir.path().join("db.sem"), 1)?;
/// let p = sem.lock()?;
/// let err = sem.lock_timeout(Duration::from_millis(20)).unwrap_err();
/// assert!(err.to_string().contains("timed out"));
/// p.unlock()?;
/// # Ok::<(), holdfast::Error>(())
/// ```
pub struct Semaphore {
    shared: Arc<SemShared>,
}

pub(crate) struct SemShared {
    pub(crate) path: PathBuf,
    permits: u64,
    opts: SemaphoreOptions,
    idle: Mutex<Vec<QueueFile>>,
    /// Set once the file was checked: only then may drop remove it.
    opened: bool,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("path", &self.shared.path)
            .field("permits", &self.shared.permits)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    /// Opens (creating) a semaphore with `permits` permits and the default
    /// [`SemaphoreOptions`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// // At most 2 jobs use the GPUs at once, across processes:
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let permit = sem.lock()?;
    /// println!("using GPU {}", permit.slot());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`SemaphoreOptions::open`].
    pub fn open(path: impl AsRef<Path>, permits: usize) -> Result<Semaphore> {
        SemaphoreOptions::new().open(path, permits)
    }

    /// A new set of options.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::options()
    ///     .permissions(0o666)
    ///     .open(dir.path().join("gpu.sem"), 2)?;
    /// # drop(sem);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn options() -> SemaphoreOptions {
        SemaphoreOptions::new()
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn shared(&self) -> &Arc<SemShared> {
        &self.shared
    }

    /// The semaphore file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// assert_eq!(sem.path(), dir.path().join("gpu.sem"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How many holders it admits.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// assert_eq!(sem.permits(), 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn permits(&self) -> usize {
        self.shared.permits as usize
    }

    /// Takes a permit, waiting in line as long as it takes: the words of
    /// every holdfast primitive (`lock`, `try_lock`, `lock_timeout`,
    /// `acquire(mode, wait)`, and `unlock` on what they return).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 2)?;
    /// let p = sem.lock()?;
    /// p.unlock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a lock call fails.
    pub fn lock(&self) -> Result<SemaphorePermit<'_>> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes a permit if one is free and nobody waits ahead.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 1)?;
    /// let _p = sem.try_lock()?;
    /// assert!(matches!(sem.try_lock(), Err(holdfast::Error::WouldBlock { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holders; [`Error::Io`].
    pub fn try_lock(&self) -> Result<SemaphorePermit<'_>> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 1)?;
    /// let _p = sem.lock_timeout(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holders; [`Error::Io`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>> {
        self.acquire(Mode::Shared, Wait::Timeout(timeout))
    }

    /// Takes a permit, waiting as `wait` says; the other methods are
    /// shorthands for this one. A permit is a shared hold: ask with
    /// [`Mode::Shared`] ([`Mode::Exclusive`] only on a semaphore of one
    /// permit).
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 3)?;
    /// let p = sem.acquire(Mode::Shared, Wait::NoWait)?;
    /// assert!(p.slot() < 3);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] / [`Error::Timeout`] naming the holders;
    /// [`Error::InvalidInput`] for [`Mode::Exclusive`] on more than one
    /// permit; [`Error::Io`].
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<SemaphorePermit<'_>> {
        self.acquire_observed(mode, wait, &Unobserved)
    }

    /// The former name of [`try_lock`](Self::try_lock).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.try_acquire()?; // now: sem.try_lock()
    /// # drop(permit);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Self::try_lock).
    #[deprecated(note = "use try_lock(), the word every holdfast primitive uses")]
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>> {
        self.try_lock()
    }

    /// The former name of [`lock_timeout`](Self::lock_timeout).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.acquire_timeout(std::time::Duration::from_secs(5))?; // now: lock_timeout
    /// # drop(permit);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    #[deprecated(note = "use lock_timeout(), the word every holdfast primitive uses")]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>> {
        self.lock_timeout(timeout)
    }

    /// The former form of [`acquire`](Self::acquire)`(Mode::Shared, wait)`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// #[allow(deprecated)]
    /// let permit = sem.acquire_with(holdfast::Wait::NoWait)?; // now: acquire(Mode::Shared, wait)
    /// # drop(permit);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    #[deprecated(note = "use acquire(Mode::Shared, wait), the form every holdfast primitive uses")]
    pub fn acquire_with(&self, wait: Wait) -> Result<SemaphorePermit<'_>> {
        self.acquire(Mode::Shared, wait)
    }

    /// Takes a permit as [`acquire`](Self::acquire), telling
    /// `observer` when the call starts to wait in line and when the wait is
    /// over (see [`crate::acquire`]). A permit is a shared hold (see
    /// [`acquire_owned`](Self::acquire_owned) for `mode`).
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    /// struct Say;
    /// impl WaitObserver for Say {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for a permit of {}", w.path().display());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let p = sem.acquire_observed(Mode::Shared, Wait::Forever, &Say)?;
    /// assert!(p.slot() < 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire_owned`](Self::acquire_owned).
    pub fn acquire_observed(
        &self,
        mode: Mode,
        wait: Wait,
        observer: &dyn WaitObserver,
    ) -> Result<SemaphorePermit<'_>> {
        let started = Instant::now();
        self.check_mode(mode)?;
        let mut m = SemAcquire::new(&self.shared)?;
        queue::drive(&mut m, wait, started, observer)?;
        Ok(SemaphorePermit {
            sem: self,
            held: m.finish(),
        })
    }

    /// Takes a permit, waiting in line as `wait` says, and returns one that
    /// owns what it needs ([`OwnedSemaphorePermit`]: `Send`, `'static`,
    /// releasable from any thread).
    ///
    /// A permit is a shared hold: ask with [`Mode::Shared`].
    /// [`Mode::Exclusive`] is accepted only for a semaphore of one permit,
    /// where a permit does exclude everyone else.
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 3)?;
    /// let p = sem.acquire_owned(Mode::Shared, Wait::Forever)?;
    /// assert!(p.slot() < 3);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for [`Mode::Exclusive`] on a semaphore of
    /// more than one permit; otherwise as [`acquire_with`](Self::acquire_with).
    pub fn acquire_owned(&self, mode: Mode, wait: Wait) -> Result<OwnedSemaphorePermit> {
        let started = Instant::now();
        self.check_mode(mode)?;
        let mut m = SemAcquire::new(&self.shared)?;
        queue::drive(&mut m, wait, started, &Unobserved)?;
        Ok(OwnedSemaphorePermit {
            held: m.finish(),
            mode,
        })
    }

    pub(crate) fn check_mode(&self, mode: Mode) -> Result<()> {
        self.shared.check_mode(mode)
    }

    /// How many permits are free right now (a snapshot).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 3)?;
    /// let _p = sem.lock()?;
    /// assert_eq!(sem.available()?, 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub fn available(&self) -> Result<usize> {
        let file = self.shared.fresh_file()?;
        let mut free = 0;
        for i in 0..self.shared.permits {
            let r = Range::byte(queue::SLOT_BASE + i, true);
            if sys::range_conflict(&file, r)
                .map_err(|e| Error::io(IoOp::Inspect, &self.shared.path, e))?
                .is_none()
            {
                free += 1;
            }
        }
        Ok(free)
    }

    /// The processes holding permits now (from `/proc`; empty where that
    /// cannot be read).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let _permit = sem.lock()?;
    /// for h in sem.holders().iter() {
    ///     println!("permit held by pid {:?} ({:?})", h.pid, h.command);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> Holders {
        self.shared.holders()
    }
}

impl SemShared {
    pub(crate) fn check_mode(&self, mode: Mode) -> Result<()> {
        if mode == Mode::Exclusive && self.permits > 1 {
            return Err(Error::InvalidInput {
                path: self.path.clone(),
                reason: format!(
                    "a permit of a semaphore of {} permits is not exclusive; ask for a \
                     shared hold (Mode::Shared)",
                    self.permits
                ),
            });
        }
        Ok(())
    }
    pub(crate) fn open(
        path: &Path,
        permits: usize,
        opts: SemaphoreOptions,
    ) -> Result<Arc<SemShared>> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidInput {
                path: path.to_owned(),
                reason: "the semaphore path is empty".into(),
            });
        }
        if permits == 0 || permits as u64 > queue::MAX_PERMITS {
            return Err(Error::InvalidInput {
                path: path.to_owned(),
                reason: format!(
                    "a semaphore needs between 1 and {} permits, not {permits}",
                    queue::MAX_PERMITS
                ),
            });
        }
        if !sys::HAS_OFD {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                what: "semaphores",
                reason:
                    "they need open-file-description byte-range locks, which exist only on Linux"
                        .into(),
            });
        }
        if opts.create_parents
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(IoOp::CreateParents, path, e))?;
        }
        let mut shared = SemShared {
            path: path.to_owned(),
            permits: permits as u64,
            opts,
            idle: Mutex::new(Vec::new()),
            opened: false,
        };
        let file = shared.fresh_file()?;
        queue::check_on_open(&file, path, shared.kind())?;
        shared.put_idle(QueueFile::new(file));
        shared.opened = true;
        Ok(Arc::new(shared))
    }

    fn kind(&self) -> Kind {
        Kind::Semaphore(self.permits)
    }

    fn fresh_file(&self) -> Result<File> {
        queue::open_queue(&self.path, self.opts.permissions)
    }

    fn take_idle(&self) -> Option<QueueFile> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put_idle(&self, file: QueueFile) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 4 {
            idle.push(file);
        }
    }

    pub(crate) fn holders(&self) -> Holders {
        let Ok(file) = self.fresh_file() else {
            return Holders::new();
        };
        let Ok(id) = sys::file_id(&file) else {
            return Holders::new();
        };
        let pids = sys::ofd_lock_pids(id, queue::SLOT_BASE, queue::SLOT_BASE + self.permits);
        let host = holder::hostname_override().unwrap_or_else(sys::hostname);
        let me = sys::current_pid();
        let list: Vec<Holder> = pids
            .into_iter()
            .map(|pid| Holder {
                pid: Some(pid),
                command: sys::process_cmdline(pid),
                host: Some(host.clone()),
                uid: sys::process_uid(pid),
                mode: Some(Mode::Exclusive),
                this_process: pid == me,
                source: HolderSource::Kernel,
                ..Holder::default()
            })
            .collect();
        Holders::from(list).with_permits(self.permits as usize)
    }
}

impl Drop for SemShared {
    fn drop(&mut self) {
        if !self.opts.remove_when_idle || !self.opened {
            return;
        }
        let file = match self.take_idle() {
            Some(q) => Ok(q.file),
            None => self.fresh_file(),
        };
        if let Ok(f) = file
            && let Err(e) = queue::remove_if_idle(&f, &self.path)
        {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove the idle semaphore file");
        }
    }
}

/// One acquisition of a permit, as a step machine.
pub(crate) struct SemAcquire {
    shared: Arc<SemShared>,
    q: Enqueue,
    phase: Phase,
    slot: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Taking a ticket, then waiting for our turn (`queue::Enqueue`).
    Queue,
    Slots,
}

impl SemAcquire {
    pub(crate) fn new(shared: &Arc<SemShared>) -> Result<SemAcquire> {
        let file = match shared.take_idle() {
            Some(q) => q,
            None => QueueFile::new(shared.fresh_file()?),
        };
        Ok(SemAcquire {
            shared: shared.clone(),
            q: Enqueue::new(
                file,
                shared.path.clone(),
                shared.opts.permissions,
                shared.kind(),
                true,
                false,
            ),
            phase: Phase::Queue,
            slot: None,
        })
    }

    fn slot_range(i: u64) -> Range {
        Range::byte(queue::SLOT_BASE + i, true)
    }

    /// Takes the first free slot from `start mod N` on, without waiting.
    fn free_slot(shared: &SemShared, file: &File, start: u64) -> Result<Option<u64>> {
        let n = shared.permits;
        for k in 0..n {
            let i = (start % n + k) % n;
            if sys::range_lock(file, Self::slot_range(i), false)
                .map_err(|e| Error::io(IoOp::LockSlot, &shared.path, e))?
            {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn got_slot(&mut self, i: u64) -> Result<()> {
        self.slot = Some(i);
        // Holding a permit, we are no longer waiting: let the next in.
        self.q
            .leave()
            .map_err(|e| Error::io(IoOp::LeaveQueue, &self.shared.path, e))
    }

    pub(crate) fn finish(self) -> SemHeld {
        let SemAcquire {
            shared, q, slot, ..
        } = self;
        let Enqueue { queue, .. } = q;
        SemHeld {
            shared,
            file: Some(queue),
            slot: slot.expect("a finished acquisition holds a slot"),
            pid: sys::current_pid(),
        }
    }
}

impl Machine for SemAcquire {
    fn advance(&mut self) -> Result<Step> {
        loop {
            match self.phase {
                Phase::Queue => {
                    // Nobody in line (found under the counter lock): take a
                    // free slot there and then, without a ticket.
                    let (shared, slot) = (&self.shared, &mut self.slot);
                    let mut first = |file: &File, next: u64| -> Result<Served> {
                        *slot = Self::free_slot(shared, file, next)?;
                        Ok(match slot {
                            Some(_) => Served::WithoutTicket,
                            None => Served::No,
                        })
                    };
                    if let Some(step) = self.q.advance_or(Some(&mut first))? {
                        return Ok(step);
                    }
                    self.phase = Phase::Slots;
                }
                Phase::Slots => {
                    if self.slot.is_some() {
                        return Ok(Step::Ready);
                    }
                    let start = self.q.ticket.unwrap_or(0);
                    if let Some(i) = Self::free_slot(&self.shared, &self.q.queue.file, start)? {
                        self.got_slot(i)?;
                        return Ok(Step::Ready);
                    }
                    let n = self.shared.permits;
                    return Ok(Step::Wait {
                        target: Target::Queue,
                        reqs: (0..n)
                            .map(|i| LockReq::Range(Self::slot_range(i)))
                            .collect(),
                        short: false,
                    });
                }
            }
        }
    }

    fn granted(&mut self, index: usize) -> Result<()> {
        match self.phase {
            Phase::Queue => self.q.granted(),
            Phase::Slots => self.got_slot(index as u64),
        }
    }

    fn file(&self, _target: Target) -> &File {
        &self.q.queue.file
    }

    fn path(&self, _target: Target) -> &Path {
        &self.shared.path
    }

    fn contention(&mut self, wait: Wait, started: Instant) -> Error {
        let _ = self.q.leave();
        if let Some(i) = self.slot.take() {
            let _ = sys::range_unlock(&self.q.queue.file, queue::SLOT_BASE + i, 1);
        }
        acquire::contention(&self.shared.path, Mode::Exclusive, wait, started, || {
            self.shared.holders()
        })
    }
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting {
        let shared = self.shared.clone();
        Waiting::new(
            &self.shared.path,
            Mode::Shared,
            started,
            deadline,
            Arc::new(move || shared.holders()),
        )
    }
}

/// What a permit owns: its open file description and slot.
pub(crate) struct SemHeld {
    shared: Arc<SemShared>,
    file: Option<QueueFile>,
    slot: u64,
    pid: u32,
}

impl SemHeld {
    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }
    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }
    pub(crate) fn release(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        if sys::current_pid() != self.pid {
            return Ok(()); // a forked child: the parent's permit
        }
        let r = sys::range_unlock(&file.file, queue::SLOT_BASE + self.slot, 1)
            .map_err(|e| Error::io(IoOp::ReleasePermit, &self.shared.path, e));
        if r.is_ok() {
            self.shared.put_idle(file);
        }
        r
    }
}

impl Drop for SemHeld {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.shared.path.display(), error = %e, "failed to release a permit");
        }
    }
}

mod guard;
#[cfg(test)]
mod tests;

pub use guard::{OwnedSemaphorePermit, SemaphorePermit};
