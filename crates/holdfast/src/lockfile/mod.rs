//! Lock files: locks that are files, for where kernel locks do not reach.
//!
//! A kernel lock ([`Lock`](crate::Lock)) dies with its process, which is
//! exactly right on one machine. Across NFS clients, on filesystems without
//! working `flock`, and on paths other programs already guard with lock
//! files, the lock has to *be* a file: its existence is the lock, and a
//! crash leaves it behind. This module makes such locks safe to use:
//!
//! - **three protocols** behind one API: *soft* (`O_CREAT|O_EXCL`), *link*
//!   (flufl.lock's NFS-safe `link()` protocol) and *mkdir*;
//! - **the Python libraries' exact on-disk formats**, so holdfast and
//!   flufl.lock, lockfile and filelock exclude each other on one path;
//! - **stale detection a recycled pid cannot fool** (pid + process start
//!   time + boot id + host), and leases for holders on other hosts;
//! - **race-free breaking**: of many waiters that find the same stale lock,
//!   exactly one gets it, and no waiter ever removes a newer lock;
//! - **waiting without sleep-polling** (inotify and pidfds on Linux) and a
//!   **heartbeat** that keeps a lease fresh while the guard lives.
//!
//! ```
//! use std::time::Duration;
//! use holdfast::lockfile::{LockFile, Protocol};
//! # let dir = tempfile::tempdir().unwrap();
//! let lock = LockFile::open(dir.path().join("app.lock"), Protocol::Link)?;
//! let guard = lock.lock_timeout(Duration::from_secs(5))?;
//! assert!(lock.i_am_locking());
//! let holder = lock.holder()?.expect("held");
//! assert_eq!(holder.pid, Some(std::process::id()));
//! drop(guard); // removes the lock file
//! assert!(!lock.is_locked()?);
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
#![doc = include_str!("FORMATS.md")]
//!
//! # Waiting
//!
//! A waiter does not sleep-poll where the system can tell it something
//! changed. On Linux it watches the lock's directory with inotify (removal,
//! rename, replacement or a finished write of the lock's name) and, when
//! the holder is a live process on this host, the holder's pidfd, so it
//! runs microseconds after a release or a crash. Notifications do not cross
//! NFS clients, so it also looks again every
//! [`poll_interval`](LockFileOptions::poll_interval) (**default 100 ms**,
//! configurable from 1 ms to 60 s), and exactly when a lease or grace
//! period it waits for runs out. Elsewhere it polls at that interval.
//!
//! # Leases, refresh, heartbeat
//!
//! [`lifetime`](LockFileOptions::lifetime) is how long a holder expects to
//! hold (default 15 s for link locks, which flufl.lock requires, none for
//! the others). Each acquisition sets the lease to `now + lifetime`;
//! [`LockFileGuard::refresh`] renews it; with
//! [`heartbeat(true)`](LockFileOptions::heartbeat) a background thread
//! renews it every `lifetime / 3` while the guard lives and stops when the
//! guard drops. [`LockFileGuard::check`] reports a lock that was broken
//! while held ([`Error::Lost`](crate::Error::Lost)).
//!
//! # Bad input
//!
//! | situation | result |
//! |---|---|
//! | the directory is missing | [`Error::Io`](crate::Error::Io) (`NotFound`), unless [`create_parents`](LockFileOptions::create_parents) |
//! | the directory is read-only | [`Error::Io`](crate::Error::Io) (`PermissionDenied` / `ReadOnlyFilesystem`) |
//! | the lock path is a directory (soft, link) or a file (mkdir) | [`Error::InvalidInput`](crate::Error::InvalidInput) naming the likely mix-up |
//! | the lock path is a symlink | [`Error::Symlink`](crate::Error::Symlink); never followed |
//! | the lock path is a FIFO, device or socket | [`Error::InvalidInput`](crate::Error::InvalidInput); opened only with `O_NONBLOCK`, never judged or removed |
//! | mkdir: an existing directory holding anything the protocol does not make (a subdirectory, a symlink, a file other than a `*.holdfast` record or Python lockfile's unique name) | not a lock: [`Error::InvalidInput`](crate::Error::InvalidInput) at once from acquire, status and break alike; never waited for, never removed |
//! | mkdir: an existing empty directory | a lock whose holder has not written its record yet (or crashed doing so): stale once unchanged for the [grace](LockFileOptions::grace) period, then taken over (and removed on release) like any stale lock |
//! | a claim file name is taken (planted file or symlink) | never opened; another random name is tried, 8 times, then [`Error::Io`](crate::Error::Io) (`AlreadyExists`) |
//! | a lease far in the future | read as ctime + lifetime (rule 3 above) |
//! | garbage in the lock | rules 4 and 5 above; never a panic |
//! | a `\|` in a flufl-format lock path, a lifetime of 0 or above `max_lifetime`, a heartbeat without a lifetime | [`Error::InvalidInput`](crate::Error::InvalidInput) |
//!
//! # Pitfalls
//!
//! - Existence locks are invisible to kernel locks and the reverse: every
//!   program on a path must speak the same protocol and format.
//! - Containers that share a host name but not a pid namespace: holdfast's
//!   records carry the pid namespace and are safe; records of other
//!   programs without one (flufl.lock's, older filelock's) are judged by
//!   pid as if written here. Give such containers distinct host names
//!   (or `HOLDFAST_HOSTNAME`).
//! - A holder in a time namespace with a boot-time offset reads shifted
//!   start times; such holders should use leases.
//! - Linux only for pid start times, boot ids and pidfds; on other Unixes
//!   same-host holders are judged by pid alone and leases.
//! - Not available on non-Unix systems yet.

mod core;
mod detect;
mod dispatch;
mod guard;
mod heartbeat;
mod link;
mod lock_file;
mod mkdir;
mod options;
mod record;
mod soft;
mod stale;
mod status;
mod takeover;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

pub use self::guard::{LockFileGuard, OwnedLockFileGuard};
#[cfg(test)]
pub(crate) use self::heartbeat::heartbeats_running;
pub use self::options::{
    DEFAULT_CLOCK_SKEW, DEFAULT_GRACE, DEFAULT_LINK_LIFETIME, DEFAULT_MAX_LIFETIME,
    DEFAULT_POLL_INTERVAL, LockFileOptions,
};
pub use self::stale::StaleReason;
pub use self::status::{Broken, LockFileStatus};

use self::core::Ctx;
use self::heartbeat::GuardCore;

/// How the lock object is made. See the [module docs](self#protocols-and-formats).
///
/// ```
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// for protocol in [Protocol::Soft, Protocol::Link, Protocol::Mkdir] {
///     let lock = LockFile::open(dir.path().join(format!("{protocol:?}.lock")), protocol)?;
///     drop(lock.lock()?);
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A regular file created with `O_CREAT|O_EXCL`, holding the record.
    /// Needs exclusive create to be atomic (local filesystems, NFSv3+).
    Soft,
    /// A claim file with a unique name, hard-linked to the lock name:
    /// flufl.lock's NFS-safe protocol, also lockfile's `LinkLockFile`.
    /// Needs hard links.
    Link,
    /// A directory created with `mkdir`, holding the record: lockfile's
    /// `MkdirLockFile`. Works where hard links do not.
    Mkdir,
}

/// Whose on-disk conventions a lock follows. See the
/// [module docs](self#protocols-and-formats) for the exact formats.
///
/// ```
/// use holdfast::lockfile::{Compat, LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// // A path that Python processes lock with lockfile.MkdirLockFile("data"):
/// let lock = LockFile::options(Protocol::Mkdir)
///     .compat(Compat::Lockfile)
///     .open(dir.path().join("data"))?;
/// assert_eq!(lock.path(), dir.path().join("data.lock"));
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compat {
    /// holdfast's own format for the protocol (for [`Protocol::Link`] that
    /// is flufl.lock's).
    Holdfast,
    /// flufl.lock 10.0.0 ([`Protocol::Link`] only).
    Flufl,
    /// lockfile 0.12.2 `LinkLockFile` / `MkdirLockFile`
    /// ([`Protocol::Link`], [`Protocol::Mkdir`]): the lock is
    /// `<absolute path>.lock`.
    Lockfile,
    /// filelock 4.x `SoftFileLock` ([`Protocol::Soft`] only).
    Filelock,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Soft => "soft",
            Protocol::Link => "link",
            Protocol::Mkdir => "mkdir",
        })
    }
}

impl Compat {
    /// The name of the format as the `--compat` flag spells it:
    /// `holdfast`, `flufl`, `lockfile`, `filelock`.
    ///
    /// ```
    /// assert_eq!(holdfast::lockfile::Compat::Flufl.name(), "flufl");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Compat::Holdfast => "holdfast",
            Compat::Flufl => "flufl",
            Compat::Lockfile => "lockfile",
            Compat::Filelock => "filelock",
        }
    }

    /// The name of the program whose format it is, for messages:
    /// `holdfast`, `flufl.lock`, `Python lockfile`, `filelock`.
    ///
    /// ```
    /// assert_eq!(holdfast::lockfile::Compat::Lockfile.program(), "Python lockfile");
    /// ```
    pub fn program(self) -> &'static str {
        match self {
            Compat::Holdfast => "holdfast",
            Compat::Flufl => "flufl.lock",
            Compat::Lockfile => "Python lockfile",
            Compat::Filelock => "filelock",
        }
    }
}

impl fmt::Display for Compat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A lock file: a path, a protocol and a format. Cheap to keep; each
/// acquisition creates the lock object anew and returns a
/// [`LockFileGuard`] that removes it on drop.
///
/// `LockFile` is `Send + Sync`. Threads sharing one `LockFile` (or holding
/// separate ones on the same path) exclude each other like processes do.
/// Waiting for it from the thread that holds it is [`Error::AlreadyHeld`](crate::Error::AlreadyHeld),
/// not a deadlock; a try from that thread is [`Error::WouldBlock`](crate::Error::WouldBlock) naming
/// this process (the rule of every holdfast primitive, as std's
/// `try_lock`).
///
/// ```
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let a = LockFile::open(dir.path().join("x.lock"), Protocol::Soft)?;
/// let b = LockFile::open(dir.path().join("x.lock"), Protocol::Soft)?;
/// let held = a.try_lock()?;
/// let err = std::thread::scope(|s| s.spawn(|| b.try_lock().unwrap_err()).join().unwrap());
/// assert!(matches!(err, holdfast::Error::WouldBlock { .. }));
/// assert!(err.to_string().contains("held by this process"));
/// drop(held);
/// # Ok::<(), holdfast::Error>(())
/// ```
pub struct LockFile {
    ctx: Arc<Ctx>,
    current: Mutex<Option<Weak<GuardCore>>>,
    /// Directory watches kept for the next wait: closing an inotify
    /// instance waits for an RCU grace period (milliseconds), which must
    /// not sit between a wake-up and the caller getting its lock.
    watches: Mutex<Vec<crate::sys::DirWatch>>,
}

/// A directory watch borrowed from a [`LockFile`]'s pool for one
/// acquisition, returned on drop.
struct WatchSlot<'a> {
    lock: &'a LockFile,
    watch: Option<crate::sys::DirWatch>,
}

impl Drop for WatchSlot<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            let mut pool = self.lock.watches.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 4 {
                pool.push(w);
            }
        }
    }
}

impl fmt::Debug for LockFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFile")
            .field("path", &self.ctx.path)
            .field("protocol", &self.ctx.protocol)
            .field("compat", &self.ctx.compat)
            .finish_non_exhaustive()
    }
}
