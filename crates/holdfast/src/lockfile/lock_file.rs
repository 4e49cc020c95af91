//! [`LockFile`]: opening one, and acquiring it (try, judge the holder,
//! take over a stale lock, wait for a change).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::core::{self, Ctx, Held, Me};
use super::dispatch;
use super::guard::{HELD, LockFileGuard, OwnedLockFileGuard, held_by_this_thread};
use super::heartbeat::{CoreState, GuardCore, Heartbeat};
use super::options::LockFileOptions;
use super::record;
use super::stale::Verdict;
use super::takeover::{self, TakeOver};
use super::{Compat, LockFile, Protocol, WatchSlot};
use crate::acquire::{self, Unobserved, WaitObserver, Waiting, Watch};
use crate::error::{Error, IoOp, Result};
use crate::holder::Holders;
use crate::mode::{Mode, Wait};

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
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::options(Protocol::Link)
    ///     .lifetime(Duration::from_secs(60))
    ///     .open(dir.path().join("nfs.lock"))?;
    /// assert_eq!(lock.lifetime(), Some(Duration::from_secs(60)));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn options(protocol: Protocol) -> LockFileOptions {
        LockFileOptions::new(protocol)
    }

    pub(super) fn with_options(path: &Path, opts: LockFileOptions) -> Result<LockFile> {
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
    ///
    /// ```
    /// use holdfast::lockfile::{Compat, LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let plain = LockFile::open(dir.path().join("a.lock"), Protocol::Soft)?;
    /// assert_eq!(plain.path(), dir.path().join("a.lock"));
    /// // Python's lockfile puts the lock for PATH at PATH.lock:
    /// let py = LockFile::options(Protocol::Link).compat(Compat::Lockfile).open(dir.path().join("data"))?;
    /// assert!(py.path().ends_with("data.lock"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.ctx.path
    }

    /// The protocol.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("a.lock"), Protocol::Mkdir)?;
    /// assert_eq!(lock.protocol(), Protocol::Mkdir);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn protocol(&self) -> Protocol {
        self.ctx.protocol
    }

    /// The format followed (link locks report [`Compat::Flufl`] for
    /// [`Compat::Holdfast`]).
    ///
    /// ```
    /// use holdfast::lockfile::{Compat, LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::options(Protocol::Soft).compat(Compat::Filelock).open(dir.path().join("a.lock"))?;
    /// assert_eq!(lock.compat(), Compat::Filelock);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn compat(&self) -> Compat {
        self.ctx.compat
    }

    /// The lease each acquisition gets, if any.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let soft = LockFile::open(dir.path().join("a.lock"), Protocol::Soft)?;
    /// assert_eq!(soft.lifetime(), None);
    /// let link = LockFile::open(dir.path().join("b.lock"), Protocol::Link)?;
    /// assert_eq!(link.lifetime(), Some(std::time::Duration::from_secs(15)), "link locks lease 15 s by default");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lifetime(&self) -> Option<Duration> {
        self.ctx.opts.lifetime
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
    /// let guard = lock.lock()?;
    /// assert!(lock.i_am_locking());
    /// drop(guard); // removes the lock file
    /// assert!(!dir.path().join("job.lock").exists());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyHeld`] if this thread holds it; [`Error::Io`],
    /// [`Error::InvalidInput`], [`Error::Symlink`] or [`Error::Unsupported`]
    /// for the conditions in the [module docs](super#bad-input).
    pub fn lock(&self) -> Result<LockFileGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock if it is free or stale.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("job.lock");
    /// let held = LockFile::open(&path, Protocol::Link)?;
    /// let _g = held.try_lock()?;
    /// let other = LockFile::open(&path, Protocol::Link)?;
    /// assert!(matches!(other.try_lock(), Err(holdfast::Error::WouldBlock { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holder; otherwise as [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<LockFileGuard<'_>> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("job.lock");
    /// let held = LockFile::open(&path, Protocol::Mkdir)?;
    /// let _g = held.lock_timeout(Duration::from_secs(5))?;
    /// let late = std::thread::scope(|s| {
    ///     s.spawn(|| LockFile::open(&path, Protocol::Mkdir)?.lock_timeout(Duration::from_millis(50)).map(drop))
    ///         .join()
    ///         .unwrap()
    /// });
    /// assert!(matches!(late, Err(holdfast::Error::Timeout { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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

    pub(super) fn exclusive_only(&self, mode: Mode) -> Result<()> {
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

    pub(super) fn acquire_held(&self, wait: Wait, observer: &dyn WaitObserver) -> Result<Held> {
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

    pub(super) fn guard(&self, held: Held) -> Result<LockFileGuard<'_>> {
        Ok(LockFileGuard {
            lock: self,
            owned: self.owned_guard(held, true)?,
        })
    }

    pub(super) fn owned_guard(&self, held: Held, register: bool) -> Result<OwnedLockFileGuard> {
        // The lock starts now: a link claim stamped when the wait began
        // gets a fresh lease (already done before the link, unless won by
        // a take-over; nothing to do after an uncontended link).
        if let Err(e) = dispatch::fresh_lease(&self.ctx, &held) {
            let _ = dispatch::release(&self.ctx, &held);
            return Err(self.ctx.io(IoOp::SetLease, e));
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

    pub(super) fn current_core(&self) -> Option<Arc<GuardCore>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
    }

    /// Renews the lease of the lock this `LockFile` holds (see
    /// [`LockFileGuard::refresh`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::options(Protocol::Link).lifetime(Duration::from_secs(60))
    ///     .open(dir.path().join("job.lock"))?;
    /// let _g = lock.lock()?;
    /// // ... a long step; renew before the lease runs out:
    /// lock.refresh()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
