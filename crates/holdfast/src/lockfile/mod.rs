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
//! # Protocols and formats
//!
//! [`Protocol`] says how the lock object is made; [`Compat`] says whose
//! conventions it follows on disk. The default compat of each protocol is
//! shown first.
//!
//! | protocol | compat | lock path | what is written | lease (mtime) |
//! |---|---|---|---|---|
//! | `Soft` | `Holdfast` | as given | the lock file holds a holdfast record | expiry |
//! | `Soft` | `Filelock` | as given | `<pid>\n<host>\n<start token>\n` (filelock `SoftFileLock`) | last refresh |
//! | `Link` | `Flufl` (= `Holdfast`) | as given | claim `<path>\|<fqdn>\|<pid>\|hf1.<start>.<boot>.<pidns>.<lifetime ms>.<nonce>` whose content is its own name, linked to the lock path | expiry |
//! | `Link` | `Lockfile` | `<abspath>.lock` | claim `<lock name>.<host>.<pid>.<nonce>.holdfast` holding a holdfast record, linked to the lock path | expiry |
//! | `Mkdir` | `Holdfast` | as given | directory holding `<host>.<pid>.<nonce>.holdfast` (a holdfast record) | expiry |
//! | `Mkdir` | `Lockfile` | `<abspath>.lock` | the same | expiry |
//!
//! A **holdfast record** is a few lines of text:
//!
//! ```text
//! holdfast-lockfile 1
//! pid 4242
//! start 1234567
//! boot 0b1c9a2e6d0f4f5e9a573c2d7e1f0a11
//! pidns 4026531836
//! host web-1
//! uid 1000
//! since 1764331384.123456789
//! lifetime 15.000000000
//! nonce 9f2c1a2b3c4d5e6f
//! claim app.lock.web-1.4242.9f2c1a2b3c4d5e6f.holdfast
//! cmd python3 migrate.py
//! end
//! ```
//!
//! `start` is the holder's start time in clock ticks since boot
//! (`/proc/PID/stat` field 22), `boot` the kernel's boot id, `pidns` the
//! inode of its pid namespace; `lifetime` is `none` when there is no lease.
//! `host` is `HOLDFAST_HOSTNAME` if set, else the kernel's node name.
//! Unknown keys are ignored; a record without its `end` line is damaged.
//!
//! **Link locks are flufl.lock's.** The claim name, its content (the claim's
//! own path, spelled as the lock path was given), the lease (the claim's
//! mtime is set to `now + lifetime`, and the lock file is the same inode)
//! and the release order (lock name, then claim) are flufl.lock 10.0.0's.
//! flufl.lock only needs the claim name to split into four `|` fields with
//! an integer pid; holdfast puts its start time, boot id, pid namespace,
//! lifetime and a nonce into the fourth (random) field, where flufl.lock
//! never looks. The host part is what Python's `socket.getfqdn()` returns
//! (resolver lookup of the host name, cached per process; on this kind of
//! machine often `localhost`). flufl.lock breaks a lock when
//! `now > mtime + 10 s`, and so does holdfast with the default
//! [`clock_skew`](LockFileOptions::clock_skew).
//!
//! **lockfile** (`LinkLockFile`, `MkdirLockFile`) names the lock
//! `os.path.abspath(path) + ".lock"`, never reads what is in it, and never
//! breaks a lock. holdfast writes its record into the object lockfile would
//! leave empty, with names lockfile can never generate (its unique names end
//! in a digit), so a lockfile process never mistakes a holdfast lock for its
//! own. A lock lockfile made carries no owner: holdfast reports what its
//! unique name suggests (host, and the pid where the name is unambiguous)
//! and never breaks it automatically.
//!
//! **filelock**'s `SoftFileLock` record is `<pid>\n<host>\n<token>\n`, with
//! the host escaped as its `host_name()` does (printable ASCII verbatim,
//! other bytes as `?<hex>`, `?pidns-<hex>` outside the initial pid
//! namespace) and the token `(boot id << 64) | start time`. The file is
//! created `O_WRONLY|O_CREAT|O_EXCL|O_TRUNC|O_NOFOLLOW` without group or
//! other write permission, as filelock does; a holder refreshes by touching
//! its mtime.
//!
//! Versions checked, by reading their installed sources: **flufl.lock
//! 10.0.0** (`flufl/lock/_lockfile.py`), **lockfile 0.12.2**
//! (`lockfile/__init__.py`, `linklockfile.py`, `mkdirlockfile.py`),
//! **filelock 4.2.12** (`filelock/_soft.py`, `_identity.py`, `_util.py`).
//! The integration tests run each of them against holdfast on one path.
//!
//! # When is a lock stale
//!
//! A waiter that finds the lock taken reads it and decides:
//!
//! 1. **Same host** (the record's host is the one this process would write
//!    in that format, and the pid namespaces agree where recorded): stale
//!    when the boot id differs (the machine rebooted), when the pid is gone
//!    (or a zombie), or when the pid now belongs to a process whose start
//!    time differs from the recorded one (a **recycled pid** does not keep
//!    a lock alive). A holder proven alive keeps its lock however old its
//!    lease: here a precise answer exists.
//! 2. **Another host**, or a same-host holder whose life cannot be proven
//!    (flufl.lock's own claims carry no start time): stale only when its
//!    **lease** ran out more than [`clock_skew`](LockFileOptions::clock_skew)
//!    ago (default 10 s, flufl.lock's `CLOCK_SLOP`): `now > expiry + skew`.
//!    Clocks of any two hosts may disagree by up to that much. A lock without
//!    a lifetime has no lease and is never stale from another host.
//! 3. **Implausible leases**: the kernel (or file server) stamps a lock's
//!    ctime when it is created or refreshed. An expiry further past the
//!    ctime than the recorded lifetime (flufl.lock's own claims:
//!    [`max_lifetime`](LockFileOptions::max_lifetime), default 24 h) plus
//!    the skew allowance is read as `ctime + lifetime` instead: a clock far
//!    ahead, or a planted mtime, cannot make a lock immortal.
//! 4. **No usable record yet** (an empty lock file or lock directory, a
//!    damaged holdfast record, a record filelock cannot parse, filelock's
//!    empty marker, which a holder killed between creating and filling it
//!    leaves, as do filelock versions before 3.22): a writer
//!    may be between creating and filling it, so it is stale only once it
//!    stayed unchanged for [`grace`](LockFileOptions::grace) (2 s,
//!    filelock's `MALFORMED_LOCK_AGE_THRESHOLD`), as this waiter observed it,
//!    or its ctime is older than grace plus skew.
//! 5. **No owner at all** (lockfile's empty locks, a bare pid from libvcs or
//!    lockfile's `PIDLockFile`, someone's data, filelock's strict
//!    sentinel): never stale automatically; such peers never break
//!    each other's either. [`break_lock`](LockFile::break_lock) removes it.
//! 6. **Age policy** (off by default): with
//!    [`stale_after`](LockFileOptions::stale_after), any lock not created or
//!    refreshed (ctime) for that long plus the skew allowance is stale,
//!    whoever holds it: libvcs's rule (5 minutes there). It is never the
//!    default, because for same-host locks the precise answer above exists.
//!
//! [`LockFile::status`] shows the verdict without acting on it;
//! [`LockFile::break_lock_if`] acts on it for exactly the lock it judged
//! (what `holdfast break` does); [`LockFile::detect`] tells which protocol
//! and format a path holds, for tools that were not told.
//!
//! # Race-free breaking
//!
//! The classic failure (libvcs, flufl.lock): A and B both judge a lock
//! stale; A removes it and creates its own; B, acting on its earlier look,
//! removes A's new lock. holdfast never removes by name what it judged
//! earlier. A take-over goes like this (filelock 4.x does the same for its
//! soft locks, and holdfast uses its names, so the two cooperate):
//!
//! 1. **Judge**: open the lock object O at path L with `O_NOFOLLOW`. The
//!    open descriptor keeps O's inode allocated, so while it is open no
//!    other object can carry O's (device, inode) number.
//! 2. **Build**: make a complete lock object of our own (our record in it)
//!    under a private name P = `L.break.<our pid>.<32 random hex>`.
//! 3. **Swap**: exchange the names P and L in one step
//!    (`renameat2(RENAME_EXCHANGE)`). L is never empty, so no plain
//!    acquirer can get in, and nothing is deleted.
//! 4. **Verify**: if P now names O (same device, inode and mtime), we took
//!    exactly the object we judged: L names our object, we hold the lock,
//!    and we delete O. Otherwise O had already been replaced before our
//!    swap, and we took someone's live lock: we exchange back until P names
//!    our object again, and delete it.
//!
//! *Exactly one wins*: O stays at L until the first exchange that takes it,
//! which moves it to that breaker's private name, from where only that
//! breaker moves it (to delete it). Every later exchange takes something
//! else, so its breaker finds a mismatch and puts it back. *No newer lock
//! is lost*: a mistaken exchange never empties L; for the microseconds it
//! lasts, L names the mistaken breaker's record, whose writer is alive, so
//! nobody judges it stale, and the displaced holder's object comes back
//! (breakers that raced unwind in reverse order: whoever finds its own
//! object at L goes first). *A breaker killed half-way* leaves its own
//! record at L (naming a dead pid) and a live lock under
//! `L.break.<pid>.<hex>`. Before breaking an object, a breaker looks for
//! such names left by the object's writer, claims one by renaming it to
//! `L.restore.<own pid>.<hex>` (only one rename wins), and if it holds a
//! live lock, exchanges that back in instead of taking over. *Release*: a
//! holder removes L only while L names its own object (by inode, and for
//! link locks by their unique content); if a mistaken exchange has its
//! object parked at that moment, it marks the object released instead, and
//! whoever finds the mark at L removes it at once.
//!
//! *Without an exchange* (NFS, most FUSE filesystems, kernels before 3.15,
//! other systems, or with [`atomic_exchange(false)`](LockFileOptions::atomic_exchange)),
//! link locks use an **election** on a name nobody creates twice: the stale
//! lock's claim file. Breakers rename it to `<claim>.break.<pid>.<hex>`;
//! that succeeds for exactly one. The winner removes L if it still names O,
//! deletes the claim, and all contenders race on `link()` again (exactly
//! one wins). Among holdfast processes nothing else can change L between
//! the winner's check and its removal; the one window left is against a
//! foreign breaker (flufl.lock reads, then unlinks) or a holder that outlived
//! its lease releasing at that very moment. Soft and mkdir locks are not
//! taken over there (as in filelock): errors name the stale holder, and
//! [`break_lock`](LockFile::break_lock) removes it after the same check.
//!
//! What no protocol can make safe is a **lease**: a holder on another host
//! that outlives its lifetime without refreshing is presumed dead; if it is
//! only slow, two holders overlap. Use the [heartbeat](LockFileOptions::heartbeat)
//! and size lifetimes generously.
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
//! while held ([`Error::Lost`]).
//!
//! # Bad input
//!
//! | situation | result |
//! |---|---|
//! | the directory is missing | [`Error::Io`] (`NotFound`), unless [`create_parents`](LockFileOptions::create_parents) |
//! | the directory is read-only | [`Error::Io`] (`PermissionDenied` / `ReadOnlyFilesystem`) |
//! | the lock path is a directory (soft, link) or a file (mkdir) | [`Error::InvalidInput`] naming the likely mix-up |
//! | the lock path is a symlink | [`Error::Symlink`]; never followed |
//! | the lock path is a FIFO, device or socket | [`Error::InvalidInput`]; opened only with `O_NONBLOCK`, never judged or removed |
//! | mkdir: an existing directory holding anything the protocol does not make (a subdirectory, a symlink, a file other than a `*.holdfast` record or Python lockfile's unique name) | not a lock: [`Error::InvalidInput`] at once from acquire, status and break alike; never waited for, never removed |
//! | mkdir: an existing empty directory | a lock whose holder has not written its record yet (or crashed doing so): stale once unchanged for the [grace](LockFileOptions::grace) period, then taken over (and removed on release) like any stale lock |
//! | a claim file name is taken (planted file or symlink) | never opened; another random name is tried, 8 times, then [`Error::Io`] (`AlreadyExists`) |
//! | a lease far in the future | read as ctime + lifetime (rule 3 above) |
//! | garbage in the lock | rules 4 and 5 above; never a panic |
//! | a `\|` in a flufl-format lock path, a lifetime of 0 or above `max_lifetime`, a heartbeat without a lifetime | [`Error::InvalidInput`] |
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
mod link;
mod mkdir;
mod record;
mod soft;
mod stale;
mod takeover;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant, SystemTime};

pub use self::stale::StaleReason;

use self::core::{Ctx, Held, Me};
use self::stale::Verdict;
use self::takeover::TakeOver;
use crate::acquire::{self, Unobserved, WaitObserver, Waiting, Watch};
use crate::error::{Error, IoOp, Result};
use crate::holder::{Holder, Holders};
use crate::mode::{Mode, Wait};

/// How the lock object is made. See the [module docs](self#protocols-and-formats).
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

/// Options for a [`LockFile`], in the style of [`std::fs::OpenOptions`].
///
/// ```
/// use std::time::Duration;
/// use holdfast::lockfile::{LockFileOptions, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFileOptions::new(Protocol::Link)
///     .lifetime(Duration::from_secs(30))
///     .heartbeat(true)
///     .poll_interval(Duration::from_millis(50))
///     .open(dir.path().join("job.lock"))?;
/// let _guard = lock.lock()?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LockFileOptions {
    protocol: Protocol,
    compat: Option<Compat>,
    lifetime_set: Option<Option<Duration>>,
    pub(crate) lifetime: Option<Duration>,
    heartbeat: bool,
    pub(crate) clock_skew: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) stale_after: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) permissions: u32,
    create_parents: bool,
    watch: bool,
    pub(crate) exchange: bool,
}

/// Default lease of link locks: flufl.lock's `DEFAULT_LOCK_LIFETIME`.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(15);
/// Default clock-skew allowance: flufl.lock's `CLOCK_SLOP`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(10);
/// Default re-check interval of a waiter, on top of notifications.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default grace for locks without a usable record: filelock's
/// `MALFORMED_LOCK_AGE_THRESHOLD`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// Default upper bound on a plausible lease.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl LockFileOptions {
    /// Defaults for `protocol`: its default [`Compat`], the default lease
    /// (15 s for link locks, none otherwise), no heartbeat, 10 s clock skew,
    /// 24 h max lifetime, no age policy, 2 s grace, 100 ms poll interval,
    /// permissions `0o644`, inotify on, atomic exchange on.
    pub fn new(protocol: Protocol) -> Self {
        LockFileOptions {
            protocol,
            compat: None,
            lifetime_set: None,
            lifetime: None,
            heartbeat: false,
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            stale_after: None,
            grace: DEFAULT_GRACE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            permissions: 0o644,
            create_parents: false,
            watch: true,
            exchange: true,
        }
    }
    /// Whose format to follow (default: [`Compat::Holdfast`] for soft and
    /// mkdir, [`Compat::Flufl`] for link).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.compat(holdfast::Compat::Flufl);
    /// ```
    pub fn compat(&mut self, compat: Compat) -> &mut Self {
        self.compat = Some(compat);
        self
    }
    /// The lease: how long a holder expects to hold between refreshes.
    /// `None` for no lease (not allowed for flufl-format link locks).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.lifetime(std::time::Duration::from_secs(30));
    /// ```
    pub fn lifetime(&mut self, lifetime: impl Into<Option<Duration>>) -> &mut Self {
        self.lifetime_set = Some(lifetime.into());
        self
    }
    /// The lease a lock opened with these options gets: the one set with
    /// [`lifetime`](Self::lifetime), else the protocol's default (15 s for
    /// link locks in flufl.lock's format, none otherwise). Tells a caller
    /// whether a [`heartbeat`](Self::heartbeat) has anything to renew
    /// before it opens the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFileOptions, Protocol};
    /// assert_eq!(LockFileOptions::new(Protocol::Soft).lease(), None);
    /// assert_eq!(LockFileOptions::new(Protocol::Link).lease(), Some(Duration::from_secs(15)));
    /// ```
    pub fn lease(&self) -> Option<Duration> {
        match self.lifetime_set {
            Some(l) => l,
            None if self.protocol == Protocol::Link && self.resolved_compat() == Compat::Flufl => {
                Some(DEFAULT_LINK_LIFETIME)
            }
            None => None,
        }
    }

    /// The format, with the protocol's default filled in.
    fn resolved_compat(&self) -> Compat {
        match self.compat.unwrap_or_else(|| default_compat(self.protocol)) {
            Compat::Holdfast if self.protocol == Protocol::Link => Compat::Flufl,
            c => c,
        }
    }

    /// Refresh the lease from a background thread every `lifetime / 3`
    /// while a guard lives (default `false`).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.heartbeat(true);
    /// ```
    pub fn heartbeat(&mut self, yes: bool) -> &mut Self {
        self.heartbeat = yes;
        self
    }
    /// How far apart two hosts' clocks may be (default 10 s). A lease is
    /// over only when it expired this long ago.
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.clock_skew(std::time::Duration::from_secs(30));
    /// ```
    pub fn clock_skew(&mut self, skew: Duration) -> &mut Self {
        self.clock_skew = skew;
        self
    }
    /// The longest lease holdfast believes (default 24 h); see rule 3 in the
    /// [module docs](self#when-is-a-lock-stale).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.max_lifetime(std::time::Duration::from_secs(30));
    /// ```
    pub fn max_lifetime(&mut self, max: Duration) -> &mut Self {
        self.max_lifetime = max;
        self
    }
    /// Also treat any lock not created or refreshed for this long (plus the
    /// clock skew) as stale, whoever holds it: libvcs's policy. Default
    /// `None`.
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.stale_after(std::time::Duration::from_secs(30));
    /// ```
    pub fn stale_after(&mut self, age: impl Into<Option<Duration>>) -> &mut Self {
        self.stale_after = age.into();
        self
    }
    /// How long a lock without a usable record must stay unchanged before
    /// it is stale (default 2 s).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.grace(std::time::Duration::from_secs(30));
    /// ```
    pub fn grace(&mut self, grace: Duration) -> &mut Self {
        self.grace = grace;
        self
    }
    /// How often a waiter looks again when no notification arrives
    /// (default 100 ms; 1 ms to 60 s).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.poll_interval(std::time::Duration::from_secs(30));
    /// ```
    pub fn poll_interval(&mut self, every: Duration) -> &mut Self {
        self.poll_interval = every;
        self
    }
    /// Permission bits for the files holdfast creates (default `0o644`;
    /// directories get search permission where there is read permission;
    /// the umask applies).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.permissions(0o664);
    /// ```
    pub fn permissions(&mut self, mode: u32) -> &mut Self {
        self.permissions = mode & 0o7777;
        self
    }
    /// Create missing parent directories when opening (default `false`).
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.create_parents(true);
    /// ```
    pub fn create_parents(&mut self, yes: bool) -> &mut Self {
        self.create_parents = yes;
        self
    }
    /// Watch the directory for changes while waiting (Linux inotify;
    /// default `true`). With `false` a waiter only polls.
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.watch_directory(true);
    /// ```
    pub fn watch_directory(&mut self, yes: bool) -> &mut Self {
        self.watch = yes;
        self
    }
    /// Take over stale locks with an atomic exchange of names where the
    /// filesystem supports it (default `true`). With `false`, holdfast acts
    /// as on NFS: link locks are taken over by the claim-rename election,
    /// soft and mkdir locks not automatically.
    ///
    /// ```
    /// let mut options = holdfast::LockFileOptions::new(holdfast::Protocol::Link);
    /// options.atomic_exchange(true);
    /// ```
    pub fn atomic_exchange(&mut self, yes: bool) -> &mut Self {
        self.exchange = yes;
        self
    }
    /// Opens the lock file description. Nothing is created or locked yet
    /// (except parent directories with [`create_parents`](Self::create_parents)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty path, a compat the protocol does
    /// not support, a `|` in a flufl-format path or host name, a lifetime of
    /// zero or above `max_lifetime`, a flufl-format link lock without a
    /// lifetime, a heartbeat without a lifetime, or a zero or over-long poll
    /// interval; [`Error::Io`] if the parents cannot be created or (lockfile
    /// format) the working directory cannot be read.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<LockFile> {
        LockFile::with_options(path.as_ref(), self.clone())
    }
}

fn default_compat(p: Protocol) -> Compat {
    match p {
        Protocol::Link => Compat::Flufl,
        _ => Compat::Holdfast,
    }
}

/// A lock file: a path, a protocol and a format. Cheap to keep; each
/// acquisition creates the lock object anew and returns a
/// [`LockFileGuard`] that removes it on drop.
///
/// `LockFile` is `Send + Sync`. Threads sharing one `LockFile` (or holding
/// separate ones on the same path) exclude each other like processes do.
/// Waiting for it from the thread that holds it is [`Error::AlreadyHeld`],
/// not a deadlock; a try from that thread is [`Error::WouldBlock`] naming
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

/// What [`LockFile::status`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockFileStatus {
    /// The lock path.
    pub path: PathBuf,
    /// Whether a lock object exists there (held by anyone, possibly stale).
    pub locked: bool,
    /// Who it names, as far as can be told.
    pub holder: Option<Holder>,
    /// Why holdfast would take it over, if it would.
    pub stale: Option<StaleReason>,
    /// When its lease ends (before the clock-skew allowance), if it has one.
    pub expires: Option<SystemTime>,
    /// Held through a guard of this `LockFile`.
    pub mine: bool,
    /// For a lock that names no holder yet (empty, or a record being
    /// written or damaged): when a one-off look will call it stale by its
    /// age (its ctime plus the grace period and the clock-skew allowance),
    /// unless it changes meanwhile. A waiter that watches it stay
    /// unchanged for the grace period takes it sooner. `None` otherwise,
    /// also for content that names no owner at all (never stale by itself).
    pub unsettled_until: Option<SystemTime>,
}

/// What [`LockFile::break_lock_if`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broken {
    /// There was no lock at the path.
    NoLock,
    /// The decision was not to break it; it is left as it was.
    Kept(LockFileStatus),
    /// This lock was removed (or went away while it was being broken).
    Removed(LockFileStatus),
}

/// The lock objects this process holds (nonce, identity) and the thread
/// that took each: a thread waiting for a lock it holds itself would wait
/// forever. The identity covers records without a nonce (filelock's).
static HELD: Mutex<Vec<(String, crate::sys::FileId, ThreadId)>> = Mutex::new(Vec::new());
/// Heartbeat threads alive in this process (for tests).
static HEARTBEATS: AtomicUsize = AtomicUsize::new(0);

fn held_by_this_thread(nonce: Option<&str>, id: crate::sys::FileId) -> bool {
    let me = thread::current().id();
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(n, i, t)| *t == me && (Some(n.as_str()) == nonce || *i == id))
}

impl LockFile {
    /// A lock file at `path` with the default options of `protocol`.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("db.lock"), Protocol::Mkdir)?;
    /// let g = lock.lock()?;
    /// assert!(dir.path().join("db.lock").is_dir());
    /// g.unlock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`LockFileOptions::open`].
    pub fn open(path: impl AsRef<Path>, protocol: Protocol) -> Result<LockFile> {
        LockFileOptions::new(protocol).open(path)
    }

    /// The allowance for other hosts' clocks this lock judges leases with.
    pub(crate) fn clock_skew(&self) -> Duration {
        self.ctx.opts.clock_skew
    }

    /// How long a lock naming no holder must stay unchanged to be stale.
    pub(crate) fn grace(&self) -> Duration {
        self.ctx.opts.grace
    }

    /// Options for `protocol`: `LockFile::options(Protocol::Link).lifetime(d).open(p)`.
    pub fn options(protocol: Protocol) -> LockFileOptions {
        LockFileOptions::new(protocol)
    }

    fn with_options(path: &Path, opts: LockFileOptions) -> Result<LockFile> {
        Self::build(path, opts, false)
    }

    /// `exact`: `path` is the lock path itself, also for
    /// [`Compat::Lockfile`] (which otherwise appends `.lock`).
    pub(crate) fn build(path: &Path, mut opts: LockFileOptions, exact: bool) -> Result<LockFile> {
        let invalid = |reason: String| Error::InvalidInput {
            path: path.to_owned(),
            reason,
        };
        if path.as_os_str().is_empty() {
            return Err(invalid("the lock path is empty".into()));
        }
        let protocol = opts.protocol;
        let compat = opts.resolved_compat();
        match (protocol, compat) {
            (Protocol::Soft, Compat::Holdfast | Compat::Filelock)
            | (Protocol::Link, Compat::Flufl | Compat::Lockfile)
            | (Protocol::Mkdir, Compat::Holdfast | Compat::Lockfile) => {}
            (p, c) => {
                return Err(invalid(format!(
                    "Protocol::{p:?} has no Compat::{c:?} format (Protocol::Soft takes \
                     Compat::Holdfast or Compat::Filelock; Protocol::Link, Compat::Flufl or \
                     Compat::Lockfile; Protocol::Mkdir, Compat::Holdfast or Compat::Lockfile)"
                )));
            }
        }
        opts.lifetime = opts.lease();
        if let Some(l) = opts.lifetime {
            if l.is_zero() {
                return Err(invalid("a lifetime of zero".into()));
            }
            if l > opts.max_lifetime {
                return Err(invalid(format!(
                    "lifetime {:?} is above max_lifetime {:?}; waiters would cut it short",
                    l, opts.max_lifetime
                )));
            }
        } else if compat == Compat::Flufl {
            return Err(invalid(
                "flufl.lock reads a link lock's mtime as its expiry; it needs a lifetime".into(),
            ));
        }
        if opts.heartbeat && opts.lifetime.is_none() {
            return Err(invalid("a heartbeat needs a lifetime to refresh".into()));
        }
        if opts.poll_interval.is_zero() || opts.poll_interval > Duration::from_secs(60) {
            return Err(invalid(
                "the poll interval must be between 1 ms and 60 s".into(),
            ));
        }
        opts.poll_interval = opts.poll_interval.max(Duration::from_millis(1));
        let lock_path = match compat {
            Compat::Lockfile if !exact => {
                let cwd = std::env::current_dir()
                    .map_err(|e| Error::io(IoOp::ReadWorkingDirectory, path, e))?;
                record::lockfile_lock_path(path, &cwd)
            }
            _ => path.to_owned(),
        };
        let Some(name) = lock_path.file_name().map(|n| n.to_owned()) else {
            return Err(invalid("the lock path has no file name".into()));
        };
        let dir = match lock_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let me = Me::current(compat == Compat::Flufl);
        if compat == Compat::Flufl {
            use std::os::unix::ffi::OsStrExt;
            if lock_path.as_os_str().as_bytes().contains(&b'|') {
                return Err(invalid(
                    "flufl.lock splits claim names on '|'; the lock path must not contain one"
                        .into(),
                ));
            }
            if me.local.fqdn.contains(['|', '/']) {
                return Err(invalid(format!(
                    "the host name {:?} cannot be part of a claim file name",
                    me.local.fqdn
                )));
            }
        }
        if opts.create_parents {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(IoOp::CreateParents, &lock_path, e))?;
        }
        Ok(LockFile {
            ctx: Arc::new(Ctx {
                path: lock_path,
                dir,
                name,
                protocol,
                compat,
                opts,
                me,
            }),
            current: Mutex::new(None),
            watches: Mutex::new(Vec::new()),
        })
    }

    /// The lock's path on disk (for [`Compat::Lockfile`],
    /// `<absolute path>.lock`).
    pub fn path(&self) -> &Path {
        &self.ctx.path
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.ctx.protocol
    }

    /// The format followed (link locks report [`Compat::Flufl`] for
    /// [`Compat::Holdfast`]).
    pub fn compat(&self) -> Compat {
        self.ctx.compat
    }

    /// The lease each acquisition gets, if any.
    pub fn lifetime(&self) -> Option<Duration> {
        self.ctx.opts.lifetime
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`] if this thread holds it; [`Error::Io`],
    /// [`Error::InvalidInput`], [`Error::Symlink`] or [`Error::Unsupported`]
    /// for the conditions in the [module docs](self#bad-input).
    pub fn lock(&self) -> Result<LockFileGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock if it is free or stale.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder; otherwise as [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<LockFileGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holder; otherwise as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockFileGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Takes the lock, waiting as `wait` says; the other methods are
    /// shorthands for this one.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use holdfast::{Mode, Wait};
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("a.lock"), Protocol::Soft)?;
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// let g = lock.acquire(Mode::Exclusive, Wait::Deadline(deadline))?;
    /// # drop(g);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] (with [`Wait::NoWait`]) or [`Error::Timeout`]
    /// naming the holder; [`Error::Unsupported`] for [`Mode::Shared`] (a
    /// lock file has one holder); otherwise as [`lock`](Self::lock).
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<LockFileGuard<'_>> {
        self.acquire_observed(mode, wait, &Unobserved)
    }

    fn exclusive_only(&self, mode: Mode) -> Result<()> {
        if mode != Mode::Exclusive {
            return Err(Error::Unsupported {
                path: self.ctx.path.clone(),
                what: "shared holds of a lock file",
                reason: "a lock file has exactly one holder; ask for Mode::Exclusive".into(),
            });
        }
        Ok(())
    }

    /// [`acquire`](Self::acquire), telling `observer` when the first
    /// attempt found the lock taken and the call starts to wait, and when
    /// the wait is over (see [`crate::acquire`]).
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// struct Say;
    /// impl WaitObserver for Say {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for {}: {}", w.path().display(), w.holders());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("a.lock"), Protocol::Soft)?;
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
    ) -> Result<LockFileGuard<'_>> {
        self.exclusive_only(mode)?;
        let held = self.acquire_held(wait, observer)?;
        self.guard(held)
    }

    /// Takes the lock, waiting as `wait` says, and returns a guard that
    /// owns what it needs ([`OwnedLockFileGuard`]: `Send`, `'static`,
    /// releasable from any thread). A lock file has one holder: `mode` must
    /// be [`Mode::Exclusive`].
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("a.lock"), Protocol::Mkdir)?;
    /// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// assert!(lock.try_lock().is_err());
    /// drop(g);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for [`Mode::Shared`]; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_owned(&self, mode: Mode, wait: Wait) -> Result<OwnedLockFileGuard> {
        self.exclusive_only(mode)?;
        let held = self.acquire_held(wait, &Unobserved)?;
        self.owned_guard(held, false)
    }

    fn acquire_held(&self, wait: Wait, observer: &dyn WaitObserver) -> Result<Held> {
        let ctx = &*self.ctx;
        let started = Instant::now();
        let deadline = match wait {
            Wait::Timeout(d) => Some(started.checked_add(d).unwrap_or_else(far_future)),
            Wait::Deadline(d) => Some(d),
            _ => None,
        };
        let mut prep = dispatch::prepare(ctx)?;
        let mut watcher = WatchSlot {
            lock: self,
            watch: None,
        };
        let mut watch_tried = !ctx.opts.watch;
        let mut pid_watch: Option<((u32, Option<u64>), crate::sys::PidWatch)> = None;
        let mut seen: Option<(core::ObsKey, Instant)> = None;
        let mut warned = false;
        let mut churn = 0u32;
        let mut watch = Watch::new(observer);
        loop {
            if let Some(held) = dispatch::attempt(ctx, &mut prep)? {
                return Ok(held);
            }
            let Some(obs) = dispatch::observe(ctx, &ctx.path)? else {
                churn += 1;
                if churn < 100 || !matches!(wait, Wait::NoWait) {
                    continue;
                }
                return Err(acquire::contention(
                    &ctx.path,
                    Mode::Exclusive,
                    wait,
                    started,
                    Holders::new,
                ));
            };
            if prep.owns(&obs)
                && let Some(h) = prep.claim.take()
            {
                return Ok(h);
            }
            if held_by_this_thread(obs.claimant().and_then(|c| c.nonce.as_deref()), obs.id) {
                // Ours: never judged, never taken over. A try is told "would
                // block" (naming this process), a wait is refused.
                if wait == Wait::NoWait {
                    let j = ctx.judge(&obs, Duration::ZERO);
                    return Err(acquire::contention(
                        &ctx.path,
                        Mode::Exclusive,
                        wait,
                        started,
                        || ctx.holder(&obs, &j).into_iter().collect::<Vec<_>>().into(),
                    ));
                }
                return Err(Error::AlreadyHeld {
                    path: ctx.path.clone(),
                });
            }
            let now = Instant::now();
            let unchanged_for = match &seen {
                Some((k, since)) if *k == obs.key() => now - *since,
                _ => {
                    seen = Some((obs.key(), now));
                    Duration::ZERO
                }
            };
            let j = ctx.judge(&obs, unchanged_for);
            let mut quick = false;
            if let Verdict::Stale(reason) = &j.verdict {
                tracing::debug!(path = %ctx.path.display(), %reason, "lock is stale");
                match takeover::take_over(ctx, &obs, &mut prep)? {
                    TakeOver::Won(held) => return Ok(held),
                    TakeOver::Freed => continue,
                    TakeOver::Lost => {
                        churn += 1;
                        if churn < 3 {
                            continue;
                        }
                        quick = true;
                    }
                    TakeOver::CannotBreak => {
                        if !warned {
                            warned = true;
                            tracing::warn!(path = %ctx.path.display(), %reason,
                                "the lock is stale, but it cannot be taken over safely here (no \
                                 atomic exchange on this filesystem); waiting \
                                 (LockFile::break_lock removes it)");
                        }
                    }
                }
            } else {
                churn = 0;
            }
            let holders =
                || -> Holders { ctx.holder(&obs, &j).into_iter().collect::<Vec<_>>().into() };
            let now = Instant::now();
            if matches!(wait, Wait::NoWait) || deadline.is_some_and(|d| now >= d) {
                return Err(acquire::contention(
                    &ctx.path,
                    Mode::Exclusive,
                    wait,
                    started,
                    holders,
                ));
            }
            watch.start(|| {
                let c = self.ctx.clone();
                Waiting::new(
                    &ctx.path,
                    Mode::Exclusive,
                    started,
                    deadline,
                    Arc::new(move || holders_now(&c)),
                )
            });
            if !watch_tried {
                // Watch first, then look again: a release between our last
                // look and the watch would otherwise go unnoticed.
                watch_tried = true;
                let pooled = self.watches.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let w = match pooled {
                    Some(w) => {
                        w.clear();
                        Ok(w)
                    }
                    None => crate::sys::DirWatch::new(&ctx.dir, &ctx.name),
                };
                match w {
                    Ok(w) => {
                        watcher.watch = Some(w);
                        continue;
                    }
                    Err(e) => tracing::debug!(error = %e, "no directory notification; polling"),
                }
            }
            if pid_watch.as_ref().map(|(k, _)| *k) != j.watch_pid {
                pid_watch = j.watch_pid.and_then(|(pid, start)| {
                    let w = crate::sys::PidWatch::open(pid).ok()?;
                    // The pidfd must be the holder's, not a successor's.
                    (start.is_none() || crate::sys::process_start_time(pid) == start)
                        .then_some(((pid, start), w))
                });
            }
            let mut nap = ctx.opts.poll_interval;
            if let Some(r) = j.recheck_in {
                nap = nap.min(r);
            }
            if quick {
                nap = nap.min(Duration::from_millis(1));
            }
            if let Some(d) = deadline {
                nap = nap.min(d.saturating_duration_since(now));
            }
            let pw = pid_watch.as_ref().map(|(_, w)| w);
            if crate::sys::wait_for_change(watcher.watch.as_ref(), pw, nap).is_err() {
                thread::sleep(nap);
            }
            drop(obs);
        }
    }

    fn guard(&self, held: Held) -> Result<LockFileGuard<'_>> {
        Ok(LockFileGuard {
            lock: self,
            owned: self.owned_guard(held, true)?,
        })
    }

    fn owned_guard(&self, held: Held, register: bool) -> Result<OwnedLockFileGuard> {
        if self.ctx.protocol == Protocol::Link {
            // The claim's lease was stamped when the wait began; the lock
            // starts now (flufl.lock touches it again after its link, too).
            if let Err(e) = self.ctx.stamp(&held.file) {
                let _ = dispatch::release(&self.ctx, &held);
                return Err(self.ctx.io(IoOp::SetLease, e));
            }
        }
        let nonce = held.nonce.clone();
        let id = held.id;
        let core = Arc::new(GuardCore {
            ctx: self.ctx.clone(),
            state: Mutex::new(CoreState {
                held: Some(held),
                lost: None,
            }),
        });
        let beat = match (self.ctx.opts.heartbeat, self.ctx.opts.lifetime) {
            (true, Some(l)) => {
                match Heartbeat::start(core.clone(), (l / 3).max(Duration::from_millis(1))) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        if let Some(h) = core.take() {
                            let _ = dispatch::release(&self.ctx, &h);
                        }
                        return Err(self.ctx.io(IoOp::StartHeartbeat, e));
                    }
                }
            }
            _ => None,
        };
        if register {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push((
                nonce.clone(),
                id,
                thread::current().id(),
            ));
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&core));
        Ok(OwnedLockFileGuard {
            ctx: self.ctx.clone(),
            core,
            beat,
            nonce,
            pid: crate::sys::current_pid(),
            released: false,
            registered: register,
        })
    }

    fn current_core(&self) -> Option<Arc<GuardCore>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
    }

    /// Whether a lock object exists at the path (held by anyone, possibly
    /// stale: [`status`](Self::status) tells).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the path cannot be inspected; [`Error::InvalidInput`]
    /// if it holds the wrong kind of object for the protocol.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(dispatch::observe(&self.ctx, &self.ctx.path)?.is_some())
    }

    /// Whether this `LockFile` holds the lock through a live guard, and the
    /// lock at the path is still that guard's.
    pub fn i_am_locking(&self) -> bool {
        self.current_core().is_some_and(|c| c.is_ours())
    }

    /// Who holds the lock, if anyone (possibly a stale holder: see
    /// [`status`](Self::status)).
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("h.lock"), Protocol::Soft)?;
    /// assert!(lock.holder()?.is_none());
    /// let _g = lock.lock()?;
    /// let h = lock.holder()?.unwrap();
    /// assert!(h.this_process);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_locked`](Self::is_locked).
    pub fn holder(&self) -> Result<Option<Holder>> {
        Ok(self.status()?.holder)
    }

    /// Looks at the lock without acting on it: who holds it, whether
    /// holdfast would take it over and why, when its lease ends.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("s.lock"), Protocol::Link)?;
    /// let g = lock.lock()?;
    /// let st = lock.status()?;
    /// assert!(st.locked && st.mine && st.stale.is_none());
    /// assert!(st.expires.is_some()); // link locks have a 15 s lease
    /// # drop(g);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_locked`](Self::is_locked).
    pub fn status(&self) -> Result<LockFileStatus> {
        let ctx = &*self.ctx;
        Ok(match dispatch::observe(ctx, &ctx.path)? {
            Some(obs) => self.status_of(&obs),
            None => LockFileStatus {
                path: ctx.path.clone(),
                locked: false,
                holder: None,
                stale: None,
                expires: None,
                mine: false,
                unsettled_until: None,
            },
        })
    }

    /// The status one observation shows.
    fn status_of(&self, obs: &core::Observed) -> LockFileStatus {
        let ctx = &*self.ctx;
        let j = ctx.judge(obs, Duration::ZERO);
        let mine = self.current_core().is_some_and(|c| {
            c.nonce().is_some_and(|n| {
                obs.claimant().and_then(|cl| cl.nonce.as_deref()) == Some(n.as_str())
            }) || c.is_ours()
        });
        LockFileStatus {
            path: ctx.path.clone(),
            locked: true,
            holder: ctx.holder(obs, &j),
            stale: match &j.verdict {
                Verdict::Stale(r) => Some(r.clone()),
                _ => None,
            },
            expires: j.expires,
            mine,
            unsettled_until: match &j.verdict {
                Verdict::Unsettled => obs
                    .times
                    .ctime
                    .checked_add(ctx.opts.grace + ctx.opts.clock_skew),
                _ => None,
            },
        }
    }

    /// Removes the lock that is there now, whoever holds it, and only that
    /// one: if another process replaces it meanwhile, the new lock is left
    /// alone. Uses the same take-over as a waiter (see
    /// [race-free breaking](self#race-free-breaking)). `Ok(false)` if there
    /// was no lock.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("b.lock"), Protocol::Soft)?;
    /// let g = lock.lock()?;
    /// assert!(lock.break_lock()?);
    /// assert!(!lock.is_locked()?);
    /// assert!(matches!(g.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the lock cannot be removed; as [`is_locked`](Self::is_locked).
    pub fn break_lock(&self) -> Result<bool> {
        Ok(!matches!(self.break_lock_if(|_| true)?, Broken::NoLock))
    }

    /// Removes the lock that is there now if `decide` says so, looking at
    /// the very lock object that would be removed: the status `decide`
    /// sees is judged from the same observation the take-over acts on, so
    /// a lock that a new holder took meanwhile is never removed on the
    /// strength of its predecessor's status (`decide` is asked again about
    /// the new one). This is how to break a lock only if it is stale:
    ///
    /// ```
    /// use holdfast::lockfile::{Broken, LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("b.lock"), Protocol::Soft)?;
    /// assert_eq!(lock.break_lock_if(|st| st.stale.is_some())?, Broken::NoLock);
    /// let g = lock.lock()?;
    /// // Held by a live process (this one): not stale, left alone.
    /// let Broken::Kept(st) = lock.break_lock_if(|st| st.stale.is_some())? else { panic!() };
    /// assert!(st.holder.unwrap().this_process);
    /// // Removed whatever its state, naming who held it.
    /// let Broken::Removed(st) = lock.break_lock_if(|_| true)? else { panic!() };
    /// assert_eq!(st.holder.unwrap().pid, Some(std::process::id()));
    /// assert!(g.check().is_err());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`break_lock`](Self::break_lock).
    pub fn break_lock_if(&self, mut decide: impl FnMut(&LockFileStatus) -> bool) -> Result<Broken> {
        let ctx = &*self.ctx;
        let mut judged: Option<LockFileStatus> = None;
        for _ in 0..16 {
            let Some(obs) = dispatch::observe(ctx, &ctx.path)? else {
                // Gone: either there was none, or the one we were breaking
                // went away while we were at it.
                return Ok(judged.map_or(Broken::NoLock, Broken::Removed));
            };
            let st = self.status_of(&obs);
            if !decide(&st) {
                return Ok(Broken::Kept(st));
            }
            let mut prep = dispatch::prepare(ctx)?;
            match takeover::take_over(ctx, &obs, &mut prep)? {
                TakeOver::Won(held) => {
                    dispatch::release(ctx, &held)?;
                    return Ok(Broken::Removed(st));
                }
                TakeOver::Freed => return Ok(Broken::Removed(st)),
                TakeOver::Lost => {
                    // Changed under us. If the object we saw is gone, it is
                    // broken; if it is still there (a stranded lock was put
                    // back, or a recoverer is at work), look again.
                    if !takeover::still_there(ctx, &obs)? {
                        return Ok(Broken::Removed(st));
                    }
                    judged = Some(st);
                    thread::sleep(Duration::from_millis(1));
                }
                TakeOver::CannotBreak => {
                    if takeover::still_there(ctx, &obs)? {
                        dispatch::remove_object(ctx, &ctx.path)
                            .map_err(|e| ctx.io(IoOp::RemoveLock, e))?;
                    }
                    return Ok(Broken::Removed(st));
                }
            }
        }
        Ok(judged.map_or(Broken::NoLock, Broken::Removed))
    }

    /// Renews the lease of the lock this `LockFile` holds (see
    /// [`LockFileGuard::refresh`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if this `LockFile` holds no lock; as
    /// [`LockFileGuard::refresh`].
    pub fn refresh(&self) -> Result<()> {
        match self.current_core() {
            Some(c) => c.refresh(),
            None => Err(Error::InvalidInput {
                path: self.ctx.path.clone(),
                reason: "this LockFile does not hold the lock".into(),
            }),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Who the lock at the path names now (for a waiting line).
fn holders_now(ctx: &Ctx) -> Holders {
    match dispatch::observe(ctx, &ctx.path) {
        Ok(Some(obs)) => ctx
            .holder(&obs, &ctx.judge(&obs, Duration::ZERO))
            .into_iter()
            .collect::<Vec<_>>()
            .into(),
        _ => Holders::new(),
    }
}

/// What a guard shares with its heartbeat thread.
#[derive(Debug)]
struct GuardCore {
    ctx: Arc<Ctx>,
    state: Mutex<CoreState>,
}

#[derive(Debug)]
struct CoreState {
    held: Option<Held>,
    lost: Option<String>,
}

impl GuardCore {
    fn state(&self) -> std::sync::MutexGuard<'_, CoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Held> {
        self.state().held.take()
    }

    fn nonce(&self) -> Option<String> {
        self.state().held.as_ref().map(|h| h.nonce.clone())
    }

    fn is_ours(&self) -> bool {
        let st = self.state();
        st.lost.is_none()
            && st
                .held
                .as_ref()
                .is_some_and(|h| dispatch::is_ours(&self.ctx, h).unwrap_or(false))
    }

    /// Verifies the lock is still ours; records and reports a loss.
    fn check(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(r) = &st.lost {
            return Err(core::lost(&self.ctx, r.clone()));
        }
        let Some(h) = st.held.as_ref() else {
            return Err(core::lost(&self.ctx, "already released"));
        };
        match dispatch::is_ours(&self.ctx, h) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let reason = "the lock object at the path is no longer this guard's \
                              (broken as stale or expired, or removed by hand)"
                    .to_owned();
                st.lost = Some(reason.clone());
                Err(core::lost(&self.ctx, reason))
            }
            Err(e) => Err(self.ctx.io(IoOp::Inspect, e)),
        }
    }

    fn refresh(&self) -> Result<()> {
        self.check()?;
        let st = self.state();
        let Some(h) = st.held.as_ref() else {
            return Err(core::lost(&self.ctx, "already released"));
        };
        self.ctx
            .refresh_times(&h.file)
            .map_err(|e| self.ctx.io(IoOp::RefreshLease, e))
    }
}

/// The background thread of [`LockFileOptions::heartbeat`].
struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(core: Arc<GuardCore>, every: Duration) -> std::io::Result<Heartbeat> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name("holdfast-heartbeat".into())
            .spawn(move || {
                HEARTBEATS.fetch_add(1, Ordering::SeqCst);
                let (m, cv) = &*s;
                let mut next = Instant::now() + every;
                let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if *stopped {
                        break;
                    }
                    let now = Instant::now();
                    if now < next {
                        stopped = cv
                            .wait_timeout(stopped, next - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        continue;
                    }
                    drop(stopped);
                    if let Err(e) = core.refresh() {
                        tracing::warn!(path = %core.ctx.path.display(), error = %e,
                            "heartbeat stopped: could not refresh the lease");
                        if !matches!(e, Error::Lost { .. }) {
                            core.state().lost =
                                Some(format!("the heartbeat could not refresh it: {e}"));
                        }
                        HEARTBEATS.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    next = Instant::now() + every;
                    stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                }
                HEARTBEATS.fetch_sub(1, Ordering::SeqCst);
            })?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Proof that a [`LockFile`] is held; removes the lock object when dropped.
///
/// Unlike a kernel lock's guard, this one is `Send`: a lock file does not
/// belong to a thread, so it may be released from any thread. Dropped in a
/// forked child, it releases nothing (the parent still holds the lock).
/// [`OwnedLockFileGuard`] is the same without the borrow.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockFileGuard<'a> {
    lock: &'a LockFile,
    owned: OwnedLockFileGuard,
}

impl fmt::Debug for LockFileGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFileGuard")
            .field("path", &self.lock.ctx.path)
            .field("heartbeat", &self.owned.beat.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> LockFileGuard<'a> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &'a LockFile {
        self.lock
    }

    /// The lock path.
    pub fn path(&self) -> &Path {
        &self.lock.ctx.path
    }

    /// Renews the lease to `now + lifetime` (filelock format: touches the
    /// mtime to now), after checking that the lock is still this guard's.
    /// Without a lifetime it only checks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::options(Protocol::Link).lifetime(Duration::from_secs(60))
    ///     .open(dir.path().join("r.lock"))?;
    /// let g = lock.lock()?;
    /// g.refresh()?;
    /// assert!(lock.status()?.expires.unwrap() > std::time::SystemTime::now());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the lock was broken or removed; [`Error::Io`] if
    /// the times cannot be set.
    pub fn refresh(&self) -> Result<()> {
        self.owned.refresh()
    }

    /// Checks that the lock at the path is still this guard's (and that the
    /// heartbeat, if any, has not failed).
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if it was broken or removed; [`Error::Io`] if the
    /// path cannot be inspected.
    pub fn check(&self) -> Result<()> {
        self.owned.check()
    }

    /// Releases the lock now, reporting failure (a dropped guard logs it
    /// through `tracing` instead).
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the lock had been taken away meanwhile (work done
    /// under it may have overlapped another holder's); [`Error::Io`] if it
    /// cannot be removed.
    pub fn unlock(self) -> Result<()> {
        self.owned.unlock()
    }

    /// Turns this guard into one that does not borrow the [`LockFile`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("x.lock"), Protocol::Soft)?;
    /// let owned = lock.lock()?.into_owned();
    /// drop(lock);
    /// owned.unlock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn into_owned(self) -> OwnedLockFileGuard {
        self.owned
    }
}

/// A held [`LockFile`] that owns what it needs: `Send`, `'static`; removes
/// the lock object when dropped or [`unlock`](Self::unlock)ed, from any
/// thread. Made by [`LockFile::acquire_owned`] or
/// [`LockFileGuard::into_owned`].
///
/// ```
/// use holdfast::{Mode, Wait};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFile::open(dir.path().join("x.lock"), Protocol::Link)?;
/// let g = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// std::thread::spawn(move || g.unlock()).join().unwrap()?;
/// assert!(!lock.is_locked()?);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct OwnedLockFileGuard {
    ctx: Arc<Ctx>,
    core: Arc<GuardCore>,
    beat: Option<Heartbeat>,
    nonce: String,
    pid: u32,
    released: bool,
    /// Registered in `HELD` (borrowed guards only: an owned guard is not
    /// tied to the thread that took it).
    registered: bool,
}

impl fmt::Debug for OwnedLockFileGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLockFileGuard")
            .field("path", &self.ctx.path)
            .field("heartbeat", &self.beat.is_some())
            .finish_non_exhaustive()
    }
}

impl OwnedLockFileGuard {
    /// The lock path.
    pub fn path(&self) -> &Path {
        &self.ctx.path
    }

    /// As [`LockFileGuard::refresh`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("r.lock"), Protocol::Link)?;
    /// lock.lock()?.into_owned().refresh()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::refresh`].
    pub fn refresh(&self) -> Result<()> {
        self.core.refresh()
    }

    /// As [`LockFileGuard::check`].
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("r.lock");
    /// let lock = LockFile::open(&path, Protocol::Soft)?;
    /// let g = lock.lock()?.into_owned();
    /// g.check()?;
    /// std::fs::remove_file(&path)?;
    /// assert!(matches!(g.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::check`].
    pub fn check(&self) -> Result<()> {
        self.core.check()
    }

    /// As [`LockFileGuard::unlock`].
    ///
    /// # Errors
    ///
    /// As [`LockFileGuard::unlock`].
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        if crate::sys::current_pid() != self.pid {
            // A forked child: the parent holds the lock; its heartbeat
            // thread does not exist here.
            if let Some(b) = self.beat.take() {
                std::mem::forget(b);
            }
            return Ok(());
        }
        if let Some(mut b) = self.beat.take() {
            b.stop();
        }
        if self.registered {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = held.iter().position(|(n, _, _)| *n == self.nonce) {
                held.swap_remove(i);
            }
        }
        let lost = self.core.state().lost.clone();
        let result = match self.core.take() {
            Some(h) => dispatch::release(&self.ctx, &h),
            None => Ok(()),
        };
        match (result, lost) {
            (Ok(()), Some(r)) => Err(core::lost(&self.ctx, r)),
            (r, _) => r,
        }
    }
}

impl Drop for OwnedLockFileGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.ctx.path.display(), error = %e, "failed to release lock file");
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
pub(crate) fn heartbeats_running() -> usize {
    HEARTBEATS.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests;

/// The one place that dispatches on the [`Protocol`]: `core` (shared
/// plumbing) sits below `soft`, `link` and `mkdir`, and this sits above all
/// four, so none of them imports another in a circle.
mod dispatch {
    use std::io;
    use std::path::Path;

    use super::Protocol;
    use super::core::{Ctx, Held, Observed, Prepared, identity_at};
    use super::{link, mkdir, record, soft};
    use crate::error::{IoOp, Result};

    /// Prepares one acquisition: the nonce, and for the link protocol the
    /// claim file.
    pub(crate) fn prepare(ctx: &Ctx) -> Result<Prepared> {
        let nonce = record::nonce();
        let claim = match ctx.protocol {
            Protocol::Link => Some(link::write_claim(
                ctx,
                &mut std::iter::once(nonce.clone()).chain(std::iter::repeat_with(record::nonce)),
            )?),
            _ => None,
        };
        let nonce = claim.as_ref().map(|c| c.nonce.clone()).unwrap_or(nonce);
        Ok(Prepared { nonce, claim })
    }

    /// One acquisition attempt.
    pub(crate) fn attempt(ctx: &Ctx, prep: &mut Prepared) -> Result<Option<Held>> {
        match ctx.protocol {
            Protocol::Soft => soft::attempt(ctx, &prep.nonce),
            Protocol::Link => link::attempt(ctx, prep),
            Protocol::Mkdir => mkdir::attempt(ctx, &prep.nonce),
        }
    }

    /// Looks at the lock object at `at` (the lock path, or a parked name).
    /// `Ok(None)`: nothing there.
    pub(crate) fn observe(ctx: &Ctx, at: &Path) -> Result<Option<Observed>> {
        match ctx.protocol {
            Protocol::Soft => soft::observe(ctx, at),
            Protocol::Link => link::observe(ctx, at),
            Protocol::Mkdir => mkdir::observe(ctx, at),
        }
    }

    /// Whether the lock object at the lock path is still `held`.
    pub(crate) fn is_ours(ctx: &Ctx, held: &Held) -> io::Result<bool> {
        match ctx.protocol {
            Protocol::Link => link::is_ours(ctx, held),
            _ => match identity_at(&ctx.path) {
                Ok((id, _)) => Ok(id == held.id),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Lets go of a held lock.
    pub(crate) fn release(ctx: &Ctx, held: &Held) -> Result<()> {
        match ctx.protocol {
            Protocol::Soft => soft::release(ctx, held),
            Protocol::Link => link::release(ctx, held),
            Protocol::Mkdir => mkdir::release(ctx, held),
        }
    }

    /// Builds this process's complete lock object at `at` (a parked name, for a
    /// take-over by exchange). For the link protocol that is one more name for
    /// the prepared claim, so `None` is returned: the claim is the held object.
    pub(crate) fn build_at(ctx: &Ctx, prep: &Prepared, at: &Path) -> Result<Option<Held>> {
        match ctx.protocol {
            Protocol::Soft => soft::build_at(ctx, &prep.nonce, at).map(Some),
            Protocol::Link => {
                let claim = prep
                    .claim
                    .as_ref()
                    .and_then(|c| c.claim.as_ref())
                    .ok_or_else(|| {
                        ctx.io(IoOp::Link, io::Error::other("no claim file prepared"))
                    })?;
                std::fs::hard_link(claim, at).map_err(|e| ctx.io(IoOp::LinkTakeoverClaim, e))?;
                Ok(None)
            }
            Protocol::Mkdir => mkdir::build_at(ctx, &prep.nonce, at).map(Some),
        }
    }

    /// Removes a lock object that is not ours (a judged stale one) from `at`.
    pub(crate) fn remove_object(ctx: &Ctx, at: &Path) -> io::Result<()> {
        let r = match ctx.protocol {
            Protocol::Soft | Protocol::Link => std::fs::remove_file(at),
            Protocol::Mkdir => mkdir::remove_tree(at),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
