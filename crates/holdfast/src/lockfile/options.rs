//! [`LockFileOptions`]: the protocol, format, lease and waiting knobs of a
//! [`LockFile`], and their defaults.

use std::path::Path;
use std::time::Duration;

use super::{Compat, LockFile, Protocol};
use crate::error::Result;

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
    pub(super) protocol: Protocol,
    pub(super) compat: Option<Compat>,
    pub(super) lifetime_set: Option<Option<Duration>>,
    pub(crate) lifetime: Option<Duration>,
    pub(super) heartbeat: bool,
    pub(crate) clock_skew: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) stale_after: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) permissions: u32,
    pub(super) create_parents: bool,
    pub(super) watch: bool,
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
    ///
    /// ```
    /// use holdfast::lockfile::{LockFileOptions, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut opts = LockFileOptions::new(Protocol::Mkdir);
    /// opts.permissions(0o664).create_parents(true);
    /// let lock = opts.open(dir.path().join("run/job.lock"))?;
    /// drop(lock.lock()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    pub(super) fn resolved_compat(&self) -> Compat {
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
    /// [module docs](super#when-is-a-lock-stale).
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
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFileOptions, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFileOptions::new(Protocol::Link)
    ///     .lifetime(Duration::from_secs(30))
    ///     .heartbeat(true)
    ///     .open(dir.path().join("job.lock"))?;
    /// let _guard = lock.lock()?; // the lease is renewed in the background while held
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty path, a compat the protocol does
    /// not support, a `|` in a flufl-format path or host name, a lifetime of
    /// zero or above `max_lifetime`, a flufl-format link lock without a
    /// lifetime, a heartbeat without a lifetime, or a zero or over-long poll
    /// interval; [`Error::Io`](crate::Error::Io) if the parents cannot be created or (lockfile
    /// format) the working directory cannot be read.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<LockFile> {
        LockFile::with_options(path.as_ref(), self.clone())
    }
}

pub(super) fn default_compat(p: Protocol) -> Compat {
    match p {
        Protocol::Link => Compat::Flufl,
        _ => Compat::Holdfast,
    }
}
