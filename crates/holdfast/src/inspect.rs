//! What guards a path, and whether it still does: one look that tells a
//! kernel lock from each lock-file protocol and format, names the holder,
//! its lease, whether it is alive or stale and why, and what a break would
//! remove. `holdfast status`, `list` and `break` print what this module
//! decides; a binding or another tool gets the same verdicts.
//!
//! ```
//! use holdfast::inspect::{Found, inspect};
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("app.lock");
//! assert_eq!(inspect(&path)?.found, Found::Nothing);
//! let lock = holdfast::Lock::open(&path)?;
//! let _held = lock.lock()?;
//! let seen = inspect(&path)?;
//! assert!(seen.held());
//! assert_eq!(seen.kernel.holders.first().unwrap().pid, Some(std::process::id()));
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # What is recognised
//!
//! - **Kernel locks** (`flock`, OFD): held or free, by whom, the last
//!   holder record and fencing token ([`crate::status`]).
//! - **Lock files** of every protocol and format holdfast speaks, from
//!   what is on disk ([`LockFile::detect`]): at the path itself, or at
//!   `PATH.lock`, where Python's lockfile puts the lock for `PATH`.
//! - **Phase markers** in `PATH.status` (phaselock's status file).
//! - Anything else is named ([`Found`]) so a tool can say what it is
//!   instead of "free": an empty file (what flock(1) leaves), a directory
//!   that is not a lock, data, a FIFO or device (never opened: opening one
//!   could block).

use std::ffi::OsString;
use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::holder::{Holder, HolderSource, Holders, RecordContent};
use crate::lockfile::{
    Broken, Compat, LockFile, LockFileOptions, LockFileStatus, Protocol, StaleReason,
};
use crate::status::{LockStatus, status};

/// Everything one look at a path found.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// let lock = holdfast::Lock::open(&path)?;
/// let _guard = lock.lock()?;
/// let seen = holdfast::inspect::inspect(&path)?;
/// assert!(seen.held() && seen.lock_file.is_none());
/// println!("{}: {:?}, {}", seen.path.display(), seen.found, seen.kernel);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// The path as named.
    pub path: PathBuf,
    /// The kernel's view of the path as named: held or free, by whom, the
    /// last holder record. (Not looked at for a FIFO or device.)
    pub kernel: LockStatus,
    /// The lock-file lock guarding the path, at the path itself or at
    /// `PATH.lock`, if there is one.
    pub lock_file: Option<LockFileVerdict>,
    /// What the path itself is.
    pub found: Found,
    /// Phase markers recorded for the path (in `PATH.status`), if any.
    pub phases: Option<PhaseMarkers>,
}

/// What is at the path itself.
///
/// ```
/// use holdfast::inspect::{Found, inspect};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// std::fs::write(&path, b"")?; // what flock(1) leaves behind
/// assert_eq!(inspect(&path)?.found, Found::EmptyFile);
/// assert_eq!(inspect(dir.path())?.found, Found::Directory);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// Nothing: no such file.
    Nothing,
    /// A lock-file lock (see [`Inspection::lock_file`]).
    LockFile,
    /// A file holding a holdfast holder record: a kernel lock file.
    KernelLockFile,
    /// An empty file: what flock(1) and other kernel-lock users leave
    /// behind (and filelock before 3.22).
    EmptyFile,
    /// A regular file holding something that is not a lock record (a pid
    /// file, data).
    Data,
    /// A directory that is not a mkdir lock.
    Directory,
    /// A FIFO, device or socket. holdfast never opens one to look at it
    /// (opening could block).
    Special(&'static str),
}

/// The verdict on one lock-file lock.
///
/// ```
/// use holdfast::inspect::inspect;
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let lock = LockFile::open(&path, Protocol::Mkdir)?;
/// let _g = lock.lock()?;
/// let verdict = inspect(&path)?.lock_file.expect("a mkdir lock");
/// assert_eq!(verdict.protocol, Protocol::Mkdir);
/// println!("{:?}; a break would remove {:?}", verdict.liveness, verdict.removes);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockFileVerdict {
    /// How it is made.
    pub protocol: Protocol,
    /// Whose format it is in.
    pub compat: Compat,
    /// What [`LockFile::status`] shows: its path, holder, lease, whether
    /// it is stale.
    pub status: LockFileStatus,
    /// Whether its holder still holds it, and why holdfast thinks so.
    pub liveness: Liveness,
    /// What breaking it would remove.
    pub removes: Removal,
}

/// Whether the holder of a lock file still holds it, and why holdfast
/// thinks so. A lock is broken without `--force` only when
/// [`Liveness::Stale`].
///
/// ```
/// use holdfast::inspect::{Liveness, inspect};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let _g = LockFile::open(&path, Protocol::Soft)?.lock()?;
/// match inspect(&path)?.lock_file.unwrap().liveness {
///     Liveness::Stale(why) => println!("stale: {why:?}"),
///     other => println!("not stale: {other:?}"),
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Liveness {
    /// There is no lock object at the path.
    Free,
    /// Its holder is gone (or its lease is over): it may be broken.
    Stale(StaleReason),
    /// Its holder runs on this host and was checked (pid, start time and
    /// boot id).
    Alive {
        /// When its lease ends, if it has one.
        expires: Option<SystemTime>,
    },
    /// Its holder cannot be checked from here (another host, or no start
    /// time recorded); its lease has not ended.
    LeaseRunning {
        /// When the lease ends.
        expires: SystemTime,
    },
    /// Its lease has ended, but within the allowance for other hosts'
    /// clocks, so it is not yet stale.
    LeaseInSkew {
        /// When the lease ended.
        expired: SystemTime,
        /// The clock-skew allowance.
        skew: Duration,
    },
    /// The lock names no holder yet: empty, or a record being written (or
    /// damaged, or left half-written by a killed holder). It counts as
    /// stale once a waiter saw it unchanged for the grace period, or once
    /// it is older than `stale_at` for a one-off look.
    NoHolder {
        /// The grace period.
        grace: Duration,
        /// When a one-off look (status, break) calls it stale by its age.
        stale_at: SystemTime,
    },
    /// A holder that cannot be checked, without a lease, or content that
    /// names no owner at all (a pid file, a strict sentinel, another
    /// program's lock): never stale by itself.
    Unverifiable,
}

impl Liveness {
    /// Whether the holder is alive: `Some(true)` when checked on this host,
    /// `Some(false)` when known gone, `None` when it cannot be told.
    ///
    /// ```
    /// use holdfast::inspect::Liveness;
    /// assert_eq!(Liveness::Alive { expires: None }.holder_alive(), Some(true));
    /// assert_eq!(Liveness::Unverifiable.holder_alive(), None);
    /// ```
    pub fn holder_alive(&self) -> Option<bool> {
        match self {
            Liveness::Alive { .. } => Some(true),
            Liveness::Stale(
                StaleReason::Exited { .. }
                | StaleReason::PidReused { .. }
                | StaleReason::Rebooted
                | StaleReason::Released,
            ) => Some(false),
            _ => None,
        }
    }
}

/// What breaking a lock file would remove: only what its protocol creates.
///
/// ```
/// use holdfast::inspect::{Removal, inspect};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let _g = LockFile::open(&path, Protocol::Mkdir)?.lock()?;
/// let removes = inspect(&path)?.lock_file.unwrap().removes;
/// assert!(matches!(removes, Removal::Directory { .. }), "{removes:?}");
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// The lock file (soft and link locks).
    File(PathBuf),
    /// The lock directory and the records in it (mkdir locks); never a
    /// subdirectory or a file the protocol does not make.
    Directory {
        /// The lock directory.
        path: PathBuf,
        /// The names in it that go with it.
        entries: Vec<OsString>,
    },
}

/// The phase markers of a path (phaselock's `PATH.status` file).
///
/// ```
/// use holdfast::phase::{Phase, PhaseRunner, XattrMode};
/// # let dir = tempfile::tempdir().unwrap();
/// let db = dir.path().join("app.db");
/// PhaseRunner::new(&db).xattrs(XattrMode::Off).run([Phase::new("schema-v1", |_| Ok(()))])?;
/// let markers = holdfast::inspect::inspect(&db)?.phases.expect("a status file");
/// assert_eq!(markers.done, ["schema-v1"]);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhaseMarkers {
    /// The status file.
    pub status_path: PathBuf,
    /// The phases it records as done, in order.
    pub done: Vec<String>,
}

impl Inspection {
    /// Whether anyone holds the path: a kernel lock, or a lock file whose
    /// holder is not known to be gone.
    ///
    /// ```
    /// use holdfast::inspect::inspect;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.lock");
    /// let lock = holdfast::Lock::open(&path)?;
    /// let guard = lock.lock()?;
    /// assert!(inspect(&path)?.held());
    /// drop(guard);
    /// assert!(!inspect(&path)?.held());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn held(&self) -> bool {
        self.kernel.held.is_some() || self.lock_file.as_ref().is_some_and(LockFileVerdict::held)
    }

    /// Whether there is a lock to show: held, a lock file (even a stale
    /// one), or a kernel lock file with an earlier holder's record.
    ///
    /// ```
    /// use holdfast::inspect::inspect;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.lock");
    /// assert!(!inspect(&path)?.is_lock(), "nothing there");
    /// drop(holdfast::Lock::open(&path)?.lock()?);
    /// let seen = inspect(&path)?;
    /// assert!(seen.is_lock() && !seen.held(), "free, with the last holder's record");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn is_lock(&self) -> bool {
        self.kernel.held.is_some()
            || self.kernel.last_record.is_some()
            || self.lock_file.as_ref().is_some_and(|l| l.status.locked)
    }
}

impl LockFileVerdict {
    /// Held by a holder that is not known to be gone.
    ///
    /// ```
    /// use holdfast::inspect::inspect;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("job.lock");
    /// let _g = LockFile::open(&path, Protocol::Link)?.lock()?;
    /// let verdict = inspect(&path)?.lock_file.expect("a link lock");
    /// assert!(verdict.held(), "held by this process, alive");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn held(&self) -> bool {
        self.status.locked && self.status.stale.is_none()
    }

    fn of(lock: &LockFile) -> Result<LockFileVerdict> {
        let status = lock.status()?;
        let liveness = liveness(&status, lock.clock_skew(), lock.grace());
        let removes = match lock.protocol() {
            Protocol::Mkdir => Removal::Directory {
                path: status.path.clone(),
                entries: std::fs::read_dir(&status.path)
                    .map(|it| it.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default(),
            },
            _ => Removal::File(status.path.clone()),
        };
        Ok(LockFileVerdict {
            protocol: lock.protocol(),
            compat: lock.compat(),
            status,
            liveness,
            removes,
        })
    }
}

/// The verdict one status shows.
fn liveness(st: &LockFileStatus, skew: Duration, grace: Duration) -> Liveness {
    if !st.locked {
        return Liveness::Free;
    }
    if let Some(r) = &st.stale {
        return Liveness::Stale(r.clone());
    }
    if let Some(stale_at) = st.unsettled_until {
        return Liveness::NoHolder { grace, stale_at };
    }
    let Some(h) = &st.holder else {
        return Liveness::Unverifiable;
    };
    if h.source == HolderSource::Record {
        return Liveness::Alive {
            expires: st.expires,
        };
    }
    match st.expires {
        Some(t) if t >= SystemTime::now() => Liveness::LeaseRunning { expires: t },
        Some(t) => Liveness::LeaseInSkew { expired: t, skew },
        None => Liveness::Unverifiable,
    }
}

/// Looks at `path` without taking or changing anything: the kernel lock
/// on it, the lock-file lock guarding it (at the path, or at `PATH.lock`),
/// what the path itself is, and its phase markers.
///
/// ```
/// use holdfast::inspect::{Liveness, inspect};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let lock = LockFile::open(&path, Protocol::Soft)?;
/// let _g = lock.lock()?;
/// let seen = inspect(&path)?;
/// let lf = seen.lock_file.expect("a soft lock");
/// assert_eq!(lf.protocol, Protocol::Soft);
/// assert_eq!(lf.liveness, Liveness::Alive { expires: None });
/// # Ok::<(), holdfast::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Symlink`] if `path` is a symbolic link; [`Error::Io`] if it
/// exists but cannot be read.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let path = path.as_ref();
    let ty = file_type(path)?;
    if let Some(kind) = ty.as_ref().and_then(special) {
        return Ok(Inspection {
            path: path.to_owned(),
            kernel: free(path, true),
            lock_file: None,
            found: Found::Special(kind),
            phases: None,
        });
    }
    let kernel = status(path)?;
    let lock_file = match find(path)? {
        Some(lock) => Some(LockFileVerdict::of(&lock)?),
        None => None,
    };
    let here = lock_file.as_ref().is_some_and(|l| l.status.path == path);
    let found = match ty {
        None => Found::Nothing,
        Some(_) if here => Found::LockFile,
        Some(_) if kernel.last_record.is_some() => Found::KernelLockFile,
        Some(t) if t.is_dir() => Found::Directory,
        Some(_) => match head(path) {
            Some(RecordContent::Empty) => Found::EmptyFile,
            Some(RecordContent::Record(_) | RecordContent::Corrupt(_)) => Found::KernelLockFile,
            _ => Found::Data,
        },
    };
    Ok(Inspection {
        path: path.to_owned(),
        kernel,
        lock_file,
        found,
        phases: phases(path),
    })
}

/// How to break: see [`break_lock`].
///
/// ```
/// use holdfast::inspect::BreakOptions;
/// use holdfast::lockfile::Protocol;
/// let how = BreakOptions::new().protocol(Protocol::Mkdir).force(true);
/// # let _ = how;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BreakOptions {
    protocol: Option<Protocol>,
    compat: Option<Compat>,
    force: bool,
}

impl BreakOptions {
    /// Break only stale locks, of the protocol found on disk.
    ///
    /// ```
    /// use holdfast::inspect::{BreakOptions, BreakOutcome, break_lock};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("job.lock");
    /// let _g = holdfast::LockFile::open(&path, holdfast::Protocol::Soft)?.lock()?;
    /// // Stale locks only: this one's holder (us) is alive, so it stays.
    /// assert!(matches!(break_lock(&path, BreakOptions::new())?, BreakOutcome::Kept(_)));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// The protocol the lock is made with, instead of detecting it (for
    /// locks whose content holdfast does not recognise, such as an empty
    /// filelock marker). What is at the path must still be an object that
    /// protocol makes.
    ///
    /// ```
    /// use holdfast::inspect::{BreakOptions, break_lock};
    /// use holdfast::lockfile::Protocol;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("job.lock");
    /// std::fs::write(&path, b"")?; // an empty filelock marker: nothing to detect
    /// let outcome = break_lock(&path, BreakOptions::new().protocol(Protocol::Soft).force(true))?;
    /// assert!(!path.exists(), "{outcome:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }
    /// The format, with [`protocol`](Self::protocol).
    ///
    /// ```
    /// use holdfast::inspect::BreakOptions;
    /// use holdfast::lockfile::{Compat, Protocol};
    /// let how = BreakOptions::new().protocol(Protocol::Soft).compat(Compat::Filelock);
    /// # let _ = how;
    /// ```
    pub fn compat(mut self, compat: Compat) -> Self {
        self.compat = Some(compat);
        self
    }
    /// Break it even if its holder is alive or cannot be checked.
    /// Overrides liveness, never identity: what is not a lock of the
    /// protocol is never removed.
    ///
    /// ```
    /// use holdfast::inspect::{BreakOptions, BreakOutcome, break_lock};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("job.lock");
    /// let lock = holdfast::LockFile::open(&path, holdfast::Protocol::Mkdir)?;
    /// let g = lock.lock()?;
    /// let outcome = break_lock(&path, BreakOptions::new().force(true))?;
    /// assert!(matches!(outcome, BreakOutcome::Removed { still_running: Some(_), .. }));
    /// assert!(g.check().is_err(), "the holder has lost it");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// What [`break_lock`] did.
///
/// ```
/// use holdfast::inspect::{BreakOptions, BreakOutcome, break_lock};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// let lock = holdfast::Lock::open(&path)?;
/// let _k = lock.lock()?;
/// // Kernel locks end with their holder; they are never broken:
/// assert!(matches!(break_lock(&path, BreakOptions::new())?, BreakOutcome::KernelLock(_)));
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BreakOutcome {
    /// The lock was removed (or went away while it was being broken).
    Removed {
        /// The lock as it was judged when it was removed.
        verdict: LockFileVerdict,
        /// The holder, when it was still running (a `force`d break): it
        /// may believe it still holds the lock.
        still_running: Option<Holder>,
    },
    /// Not stale and not forced: left as it was.
    Kept(LockFileVerdict),
    /// The lock went away before it could be judged.
    Vanished(PathBuf),
    /// A kernel lock is held on the path: kernel locks are never broken
    /// (they end with their holder).
    KernelLock(LockStatus),
    /// There is no lock-file lock at the path: what is there instead.
    NotALock(Inspection),
}

/// Removes the lock-file lock guarding `path` if it is stale (or, with
/// [`BreakOptions::force`], whatever its holder's state), deciding on the
/// very lock object the removal acts on (see
/// [`LockFile::break_lock_if`]). Never breaks a kernel lock, and never
/// removes anything the lock's protocol does not create: a directory that
/// is not a mkdir lock, a FIFO, a data file found where a link or mkdir
/// lock was named.
///
/// ```
/// use holdfast::inspect::{BreakOptions, BreakOutcome, break_lock};
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("job.lock");
/// let lock = LockFile::open(&path, Protocol::Soft)?;
/// let g = lock.lock()?;
/// // Alive (this process): kept, unless forced.
/// assert!(matches!(break_lock(&path, BreakOptions::new())?, BreakOutcome::Kept(_)));
/// assert!(matches!(
///     break_lock(&path, BreakOptions::new().force(true))?,
///     BreakOutcome::Removed { .. }
/// ));
/// assert!(g.check().is_err());
/// # Ok::<(), holdfast::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Symlink`] for a symbolic link; [`Error::InvalidInput`] when
/// what is at the path is not an object of the named protocol;
/// [`Error::Io`] if it cannot be read or removed.
pub fn break_lock(path: impl AsRef<Path>, how: BreakOptions) -> Result<BreakOutcome> {
    let path = path.as_ref();
    let seen = inspect(path)?;
    if seen.kernel.held.is_some() {
        return Ok(BreakOutcome::KernelLock(seen.kernel));
    }
    if let Found::Special(what) = seen.found {
        if how.protocol.is_none() {
            return Ok(BreakOutcome::NotALock(seen));
        }
        return Err(not_of_protocol(path, how.protocol, what));
    }
    let lock = match how.protocol {
        Some(p) => {
            let mut opts = LockFileOptions::new(p);
            if let Some(c) = how.compat {
                opts.compat(c);
            }
            opts.open(path)?
        }
        None => match find(path)? {
            Some(l) => l,
            None => return Ok(BreakOutcome::NotALock(seen)),
        },
    };
    if lock.path() != path {
        let st = status(lock.path())?;
        if st.held.is_some() {
            return Ok(BreakOutcome::KernelLock(st));
        }
    }
    // Identity: only an object the protocol makes is ever removed.
    if let Some(t) = file_type(lock.path())? {
        let fits = match lock.protocol() {
            Protocol::Mkdir => t.is_dir(),
            _ => t.is_file(),
        };
        if !fits {
            let what = special(&t).unwrap_or(if t.is_dir() {
                "a directory"
            } else {
                "a regular file"
            });
            return Err(not_of_protocol(lock.path(), Some(lock.protocol()), what));
        }
    }
    let (skew, grace) = (lock.clock_skew(), lock.grace());
    let verdict_of = |st: LockFileStatus| {
        let removes = match lock.protocol() {
            Protocol::Mkdir => Removal::Directory {
                path: st.path.clone(),
                entries: Vec::new(),
            },
            _ => Removal::File(st.path.clone()),
        };
        LockFileVerdict {
            protocol: lock.protocol(),
            compat: lock.compat(),
            liveness: liveness(&st, skew, grace),
            status: st,
            removes,
        }
    };
    let mut entries = Vec::new();
    let broken = lock.break_lock_if(|st| {
        if lock.protocol() == Protocol::Mkdir {
            entries = std::fs::read_dir(&st.path)
                .map(|it| it.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
        }
        how.force || st.stale.is_some()
    })?;
    Ok(match broken {
        Broken::Removed(st) => {
            let still_running = st
                .holder
                .clone()
                .filter(|h| st.stale.is_none() && h.source == HolderSource::Record);
            let mut verdict = verdict_of(st);
            if let Removal::Directory { entries: e, .. } = &mut verdict.removes {
                *e = entries;
            }
            BreakOutcome::Removed {
                verdict,
                still_running,
            }
        }
        Broken::Kept(st) => BreakOutcome::Kept(verdict_of(st)),
        _ => BreakOutcome::Vanished(lock.path().to_owned()),
    })
}

fn not_of_protocol(path: &Path, protocol: Option<Protocol>, what: &str) -> Error {
    Error::InvalidInput {
        path: path.to_owned(),
        reason: format!(
            "it is {what}, not a {} lock; nothing was removed",
            protocol.map_or("lock-file".to_owned(), |p| p.to_string())
        ),
    }
}

/// The lock-file lock at `path` as its content shows, or else at
/// `PATH.lock` (where Python's lockfile puts the lock for `PATH`).
fn find(path: &Path) -> Result<Option<LockFile>> {
    if let Some(l) = LockFile::detect(path)? {
        return Ok(Some(l));
    }
    let dot = dot_lock(path);
    if file_type(&dot)
        .ok()
        .flatten()
        .as_ref()
        .and_then(special)
        .is_some()
    {
        return Ok(None);
    }
    match LockFile::detect(&dot) {
        Ok(Some(l)) if matches!(l.protocol(), Protocol::Link | Protocol::Mkdir) => Ok(Some(l)),
        // Errors about a path the user did not name are not worth failing for.
        _ => Ok(None),
    }
}

/// `path` with `.lock` appended: where Python's lockfile puts the lock for
/// `path`.
///
/// ```
/// use std::path::Path;
/// assert_eq!(holdfast::inspect::dot_lock(Path::new("db")), Path::new("db.lock"));
/// ```
pub fn dot_lock(path: &Path) -> PathBuf {
    let mut p: OsString = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The type of what is at `path`, without following a symlink: `None` if
/// nothing is there.
fn file_type(path: &Path) -> Result<Option<FileType>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink {
            path: path.to_owned(),
        }),
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(crate::error::IoOp::Inspect, path, e)),
    }
}

/// What a file type is, if it is one holdfast never opens to look at.
fn special(t: &FileType) -> Option<&'static str> {
    if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

fn free(path: &Path, exists: bool) -> LockStatus {
    LockStatus {
        path: path.to_owned(),
        exists,
        held: None,
        holders: Holders::new(),
        last_record: None,
    }
}

/// The head of a regular file, classified as a holder record would be.
fn head(path: &Path) -> Option<RecordContent> {
    let f = crate::sys::open_nofollow(path).ok()?;
    let mut b = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut b).ok()?;
    Some(RecordContent::classify(&b))
}

/// The phases `PATH.status` records as done, if it exists and reads.
fn phases(path: &Path) -> Option<PhaseMarkers> {
    let runner = crate::phase::PhaseRunner::new(path);
    let status_path = runner.status_path();
    if !std::fs::symlink_metadata(&status_path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let markers = runner.markers().ok()?;
    Some(PhaseMarkers {
        status_path,
        done: markers.status,
    })
}
