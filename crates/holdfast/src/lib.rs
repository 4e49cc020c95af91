//! holdfast: processes coordinating around files.
//!
//! # Use cases
//!
//! - **Don't run twice**: a cron job, a migration, a build step that must not
//!   overlap with itself, across processes and threads alike.
//! - **Find out who is in the way**: every "would block" and "timed out"
//!   error names the holder (pid, command, host, since when), even when the
//!   holder is another program such as util-linux `flock(1)` or a Python
//!   process using `filelock`.
//! - **Readers and writers**: shared and exclusive modes on one file.
//! - **Fence stale writers**: each exclusive acquisition gets a fencing token
//!   that only grows, stored in the lock file.
//! - **Where kernel locks do not reach** (NFS, other hosts, paths that
//!   Python's flufl.lock, lockfile or filelock guard with lock files):
//!   [lock files](lockfile) with the peers' exact on-disk formats, stale
//!   detection a recycled pid cannot fool, leases, and race-free breaking.
//! - **Set up once, resume after a crash**: ordered [setup phases](phase)
//!   with durable completion markers, shared on disk with Python
//!   `phaselock`, and [`once()`] for the one-step case.
//! - **Fairness and bounded concurrency**: a [`FifoLock`] that serves
//!   waiters across processes in arrival order, and a counting
//!   [`Semaphore`] whose slots a crash can never leak; both wait in the
//!   kernel.
//! - **Async**: with the `tokio` feature, the `holdfast::tokio` module offers
//!   lock, FIFO and semaphore acquisitions as futures that never block the
//!   executor and are cancellation-safe.
//!
//! ```
//! use std::time::Duration;
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("app.lock");
//! let lock = holdfast::Lock::open(&path)?;
//! let guard = lock.lock_timeout(Duration::from_secs(5))?;
//! println!("holding {} with fencing token {:?}", path.display(), guard.token());
//! drop(guard); // released
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Design
//!
//! - [`Lock`] ([`lock`] module) is a kernel advisory lock: it dies with its
//!   process, so a crash never leaves a stale lock. `flock(2)` by default,
//!   which interoperates with util-linux `flock(1)` and the Python libraries;
//!   open-file-description `fcntl` locks on request. Threads are excluded
//!   too (see the module docs for how).
//! - Waiting blocks in the kernel, including waits with a timeout: a waiter
//!   runs microseconds after the release, never after a sleep interval.
//! - The [holder record](holder) is diagnostics written into the lock file;
//!   exclusion never depends on it, and a corrupt record only means "holder
//!   unknown".
//! - [`status`] looks at a lock without taking it.
//! - [`LockFile`] ([`lockfile`] module, Unix) is a lock that *is* a file
//!   (soft `O_EXCL`, link, mkdir): it outlives a crash, so a waiter judges
//!   the holder (same host: pid, start time and boot id; another host: its
//!   lease) and takes over a stale one with an atomic exchange of names.
//! - [`FifoLock`] ([`fifo`] module, Linux) queues waiters with tickets and
//!   byte-range locks in a side file, each blocked on its predecessor;
//!   exclusion itself stays the lock file's `flock`, so the queue can only
//!   cost fairness, never exclusion. [`Semaphore`] keeps N slot locks in
//!   one file.
//! - All system calls live in one private `sys` module.
//!
//! # Security
//!
//! Lock files are opened with `O_NOFOLLOW` (a symlink as the last component
//! is refused with [`Error::Symlink`] unless you opt in), `O_CLOEXEC`, and
//! never `O_TRUNC`. Content that is not a holdfast record is never
//! overwritten, so locking a data file in place does not damage it. A
//! holder record is written only into a regular file the process's user
//! owns, opened without a symlink in the last component and with no other
//! hard link: a link planted in a shared directory (where
//! `fs.protected_symlinks` is off) can make a followed lock land on a
//! victim's file, but never makes holdfast write into it, and a dangling
//! link never makes it create one.
//!
//! # Platforms
//!
//! - **Linux**: everything described here. Timed waits block in the kernel.
//!   A wait for one lock blocks the calling thread in the lock call itself
//!   (x86-64): a per-wait POSIX timer interrupts it at the deadline with
//!   the real-time signal `SIGRTMAX - 7`, whose handler holdfast installs
//!   the first time, only if nobody handles that signal (a thread that
//!   blocks it has it unblocked for the wait). If the application handles
//!   or ignores that signal, on other architectures, for several locks at
//!   once (a semaphore's slots), in async code, or with
//!   `HOLDFAST_WAITER=task`, a killable waiter task blocks in the lock call
//!   instead (Linux ≥ 5.3, pidfds). On older kernels, or in a sandbox that
//!   forbids the waiter task, waits fall back to polling with a bounded
//!   back-off (1 ms doubling to 25 ms); that fallback covers every
//!   primitive (kernel locks, FIFO, semaphore), and `HOLDFAST_WAITER=poll`
//!   in the environment forces it (for sandboxes that kill a process
//!   instead of refusing the task). Holder discovery reads `/proc/locks`
//!   and `/proc/PID/*`.
//! - **macOS, BSDs**: `flock` locks, threads, records and fencing tokens
//!   work; there are no OFD locks, no kernel lock table (holders come from
//!   the record alone, marked unverified), and timed waits poll with a
//!   bounded back-off (1 ms doubling to 25 ms) because there is no pidfd.
//! - **Windows and others**: not implemented yet; every call returns
//!   [`Error::Io`] with `ErrorKind::Unsupported`, nothing panics.
//!
//! # Pitfalls
//!
//! - Kernel locks are advisory: they exclude only programs that lock too.
//! - `flock` and `fcntl` locks do not see each other on Linux. Pick the
//!   [`Backend`] the other programs on the path use.
//! - On NFS, `flock` is emulated with `fcntl` locks by the client and may
//!   hang when the server's lock manager is gone: use lock files there.
//! - Never delete a lock file that others may be waiting on; holdfast
//!   re-checks the path after each acquisition (see
//!   [`LockOptions::verify_path`]) so it does not lock an orphan, but other
//!   programs may not.

#![warn(missing_docs)]
// Every fallible public function says how it fails (CI denies warnings).
#![warn(clippy::missing_errors_doc)]

pub mod acquire;
pub mod backend;
#[cfg(test)]
mod doc_coverage;
pub mod error;
pub mod holder;
#[cfg(unix)]
pub mod inspect;
#[cfg(test)]
mod layering;
pub mod lock;
#[cfg(unix)]
pub mod lockfile;
pub mod mode;
pub mod once;
pub mod phase;
#[cfg(unix)]
pub mod process;
mod queue;
pub use self::queue::{fifo, semaphore};
mod status;
mod sys;
pub mod text;
#[cfg(all(feature = "tokio", target_os = "linux"))]
pub mod tokio;

pub use backend::{CompletionStore, HeldLock, LockBackend};
pub use error::{Error, IoOp, Result};
pub use fifo::{FifoGuard, FifoLock, FifoOptions, OwnedFifoGuard};
pub use holder::{Holder, HolderRecord, HolderSource, Holders, RecordContent};
pub use lock::{Lock, LockGuard, LockOptions, OwnedLockGuard};
#[cfg(unix)]
pub use lockfile::{
    Compat, LockFile, LockFileGuard, LockFileOptions, OwnedLockFileGuard, Protocol,
};
pub use mode::{Backend, Mode, Wait};
pub use once::{LeaderFailure, OnceOutcome, RunOnce, once};
pub use phase::{ActionContext, ActionError, Phase, PhaseRunner, RunReport, XattrMode};
pub use semaphore::{OwnedSemaphorePermit, Semaphore, SemaphoreOptions, SemaphorePermit};
pub use status::{LockStatus, status};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The crate's own README (its registry page), compiled and run too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
