//! Run-once: the first caller runs an action, everyone else (concurrent or
//! later, in any process) finds it done.
//!
//! # Use cases
//!
//! Initialise a cache directory, download a model, create a database: once
//! per machine, however many processes start at the same time, and without
//! the classic bug of hand-rolled versions, where every waiter hangs
//! forever because the first process died half-way.
//!
//! ```
//! use holdfast::once::OnceOutcome;
//! # let dir = tempfile::tempdir().unwrap();
//! let key = dir.path().join("cache.initialized");
//! let first = holdfast::once(&key, |_| {
//!     // expensive, idempotent initialisation
//!     Ok(())
//! })?;
//! assert!(matches!(first, OnceOutcome::Ran { took_over: false, .. }));
//! let later = holdfast::once(&key, |_| unreachable!())?;
//! assert_eq!(later, OnceOutcome::AlreadyDone { waited: false });
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Semantics
//!
//! - **Later callers** find the key file and return
//!   [`OnceOutcome::AlreadyDone`] after one `lstat`, without locking.
//! - **The first caller** takes the exclusive kernel lock on
//!   `<key>.lock`, checks again, runs the action, and only after it
//!   returned `Ok` records completion durably (below); it gets
//!   [`OnceOutcome::Ran`].
//! - **Concurrent callers** block in the kernel on the same lock (no
//!   polling) and, once they have it, find the key and return
//!   `AlreadyDone { waited: true }`.
//! - **If the leader fails** (its action returns `Err`, it panics, or its
//!   process dies: the kernel then releases its lock), the leader itself
//!   gets [`Error::ActionFailed`] (or the panic), and the next waiter gets
//!   the lock and finds no key. What it does then is the
//!   [`LeaderFailure`] policy: [`LeaderFailure::Retry`] (the default) runs
//!   the action itself and returns `Ran { took_over: true }`;
//!   [`LeaderFailure::Propagate`] returns [`Error::LeaderFailed`] naming
//!   the process that was running it, and so does every other waiter of
//!   that round. A caller that arrives after the failure (finding the
//!   lock free) simply becomes the new leader.
//!
//! A waiter cannot tell a failed leader from a concurrent
//! [`RunOnce::reset`] that held the lock while it waited: either way it
//! finds the lock free and no marker, and applies the policy.
//!
//! The action gets an [`ActionContext`] whose
//! [`token`](ActionContext::token) is the fencing token of the lock
//! acquisition it runs under.
//!
//! # On disk
//!
//! Two files, chosen so that a shell can read them:
//!
//! | path | what |
//! |---|---|
//! | `<key>` | the completion marker: **its existence means done**. holdfast writes a small text record into it (`holdfast-once 1`, then `pid`, `host`, `token` and `finished` lines, for humans); readers never look inside, so `touch KEY` marks it done by hand and `rm KEY` (or [`RunOnce::reset`]) makes it run again. |
//! | `<key>.lock` | the lock: `flock(2)`, holdfast's [holder record](crate::holder) inside, never deleted. |
//!
//! Run-once does not reuse the phase machinery's xattrs or status file:
//! one marker file is a single `lstat` to check, needs no xattr support
//! (it works on every filesystem), and `[ -e KEY ]` answers "is it done?"
//! from a shell. A symbolic link at `<key>` is refused with
//! [`Error::Symlink`], whether or not it points anywhere, as holdfast
//! refuses one at any lock path: a planted (even dangling) link would
//! otherwise make the step look done without it ever running. Python code that must share a run-once step with
//! holdfast can use phaselock with one phase and holdfast's
//! [`PhaseRunner`](crate::phase::PhaseRunner) on the same target instead.
//!
//! # Durability
//!
//! The record is written to `<key>.tmp.<pid>.<time_ns>` (created with
//! `O_EXCL`), `fsync`ed, renamed onto `<key>`, and the directory is
//! `fsync`ed before `Ran` is returned: once a caller has seen `Ran` or
//! `AlreadyDone`, the marker survives a crash and a power loss (on
//! filesystems that honour `fsync`). A crash before the rename leaves no
//! marker, so the action runs again: it must be idempotent, and it must
//! make its own effects durable before returning. Temporary files left by
//! a crash are removed by the next leader.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoOp, Result};
use crate::lock::Lock;
use crate::mode::{Mode, Wait};
use crate::phase::status_file;
use crate::phase::{ActionContext, ActionError};
use crate::sys;

/// What a waiter does when the leader released the lock without
/// recording completion.
///
/// ```
/// use holdfast::once::{LeaderFailure, RunOnce};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut once = RunOnce::new(dir.path().join("migrated"));
/// once.on_leader_failure(LeaderFailure::Propagate); // a failed leader needs a human
/// assert!(once.run(|_| Ok(()))?.ran());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LeaderFailure {
    /// Run the action (take over). The default: the waiters make progress
    /// whatever happened to the leader.
    #[default]
    Retry,
    /// Do not run it; return [`Error::LeaderFailed`]. For actions where a
    /// failure needs a human, or where the caller wants to back off.
    Propagate,
}

/// What a run-once call found or did.
///
/// ```
/// use holdfast::OnceOutcome;
/// # let dir = tempfile::tempdir().unwrap();
/// let key = dir.path().join("migrated");
/// assert!(matches!(holdfast::once(&key, |_| Ok(()))?, OnceOutcome::Ran { took_over: false, .. }));
/// assert!(matches!(holdfast::once(&key, |_| Ok(()))?, OnceOutcome::AlreadyDone { waited: false }));
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the outcome says whether this call ran the action"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnceOutcome {
    /// This call ran the action and recorded completion.
    Ran {
        /// The fencing token of the lock acquisition the action ran under.
        token: Option<u64>,
        /// This caller had been waiting for another process that stopped
        /// without completing, and took over ([`LeaderFailure::Retry`]).
        took_over: bool,
    },
    /// Completion was already recorded.
    AlreadyDone {
        /// This caller waited for the lock first (another process was
        /// running the action, and finished it).
        waited: bool,
    },
}

impl OnceOutcome {
    /// Whether this call ran the action.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let key = dir.path().join("done");
    /// assert!(holdfast::once(&key, |_| Ok(()))?.ran());
    /// assert!(!holdfast::once(&key, |_| Ok(()))?.ran());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ran(&self) -> bool {
        matches!(self, OnceOutcome::Ran { .. })
    }
}

/// Runs `action` once for `key`, across threads and processes, with the
/// default options ([`RunOnce::new`]): wait as long as it takes, and take
/// over if the leader fails.
///
/// See the [module docs](mod@crate::once) for the semantics and the files.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let key = dir.path().join("cache.initialized");
/// let outcome = holdfast::once(&key, |ctx| {
///     println!("filling the cache (phase {})", ctx.name());
///     Ok(())
/// })?;
/// assert!(outcome.ran());
/// assert!(!holdfast::once(&key, |_| unreachable!("recorded as done"))?.ran());
/// # Ok::<(), holdfast::Error>(())
/// ```
///
/// # Errors
///
/// As [`RunOnce::run`].
pub fn once(
    key: impl AsRef<Path>,
    action: impl FnOnce(&ActionContext<'_>) -> std::result::Result<(), ActionError>,
) -> Result<OnceOutcome> {
    RunOnce::new(key).run(action)
}

/// Run-once with options, in the style of [`std::fs::OpenOptions`].
///
/// ```
/// use std::time::Duration;
/// use holdfast::once::{LeaderFailure, RunOnce};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut once = RunOnce::new(dir.path().join("migrated"));
/// once.on_leader_failure(LeaderFailure::Propagate)
///     .timeout(Duration::from_secs(600));
/// let outcome = once.run(|ctx| {
///     println!("migrating under fencing token {:?}", ctx.token());
///     Ok(())
/// })?;
/// assert!(outcome.ran());
/// assert!(once.is_done()?);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RunOnce {
    key: PathBuf,
    lock_suffix: OsString,
    wait: Wait,
    on_leader_failure: LeaderFailure,
    lock_permissions: u32,
}

impl RunOnce {
    /// Run-once for `key` (the marker file): lock `<key>.lock`, wait as
    /// long as it takes, take over when the leader fails, lock file mode
    /// `0o666` minus the umask.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let once = holdfast::RunOnce::new(dir.path().join("migrated"));
    /// assert_eq!(once.lock_path(), dir.path().join("migrated.lock"));
    /// assert!(once.run(|_| Ok(()))?.ran());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn new(key: impl AsRef<Path>) -> Self {
        RunOnce {
            key: key.as_ref().components().collect(),
            lock_suffix: ".lock".into(),
            wait: Wait::Forever,
            on_leader_failure: LeaderFailure::Retry,
            lock_permissions: 0o666,
        }
    }
    /// The lock file suffix (default `.lock`).
    ///
    /// ```
    /// let mut options = holdfast::RunOnce::new("cache.initialized");
    /// options.lock_suffix(".lk");
    /// ```
    pub fn lock_suffix(&mut self, suffix: impl Into<OsString>) -> &mut Self {
        self.lock_suffix = suffix.into();
        self
    }
    /// How long to wait for a running leader (default [`Wait::Forever`]).
    /// Running out of time is [`Error::Timeout`] naming the leader.
    ///
    /// ```
    /// let mut options = holdfast::RunOnce::new("cache.initialized");
    /// options.wait(holdfast::Wait::Forever);
    /// ```
    pub fn wait(&mut self, wait: Wait) -> &mut Self {
        self.wait = wait;
        self
    }
    /// Shorthand for `wait(Wait::Timeout(timeout))`.
    ///
    /// ```
    /// let mut options = holdfast::RunOnce::new("cache.initialized");
    /// options.timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.wait = Wait::Timeout(timeout);
        self
    }
    /// What to do when the leader fails (default [`LeaderFailure::Retry`]).
    ///
    /// ```
    /// let mut options = holdfast::RunOnce::new("cache.initialized");
    /// options.on_leader_failure(holdfast::LeaderFailure::Propagate);
    /// ```
    pub fn on_leader_failure(&mut self, policy: LeaderFailure) -> &mut Self {
        self.on_leader_failure = policy;
        self
    }
    /// Permission bits for a newly created lock file (default `0o666`; the
    /// umask applies).
    ///
    /// ```
    /// let mut options = holdfast::RunOnce::new("cache.initialized");
    /// options.lock_permissions(0o664);
    /// ```
    pub fn lock_permissions(&mut self, mode: u32) -> &mut Self {
        self.lock_permissions = mode & 0o7777;
        self
    }
    /// The key (marker file).
    ///
    /// ```
    /// let once = holdfast::RunOnce::new("/var/lib/app/migrated");
    /// assert_eq!(once.key(), std::path::Path::new("/var/lib/app/migrated"));
    /// ```
    pub fn key(&self) -> &Path {
        &self.key
    }
    /// `<key><lock_suffix>`.
    ///
    /// ```
    /// let mut once = holdfast::RunOnce::new("/var/lib/app/migrated");
    /// once.lock_suffix(".lk");
    /// assert_eq!(once.lock_path(), std::path::Path::new("/var/lib/app/migrated.lk"));
    /// ```
    pub fn lock_path(&self) -> PathBuf {
        let mut s = OsString::from(self.key.as_os_str());
        s.push(&self.lock_suffix);
        PathBuf::from(s)
    }

    /// Runs `action` unless completion is recorded; see the
    /// [module docs](mod@crate::once).
    ///
    /// ```
    /// use holdfast::once::{LeaderFailure, OnceOutcome, RunOnce};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let once = RunOnce::new(dir.path().join("k"));
    /// let err = once.run(|_| Err("network down".into())).unwrap_err();
    /// assert!(matches!(err, holdfast::Error::ActionFailed { .. }));
    /// assert!(!once.is_done()?);
    /// assert!(once.run(|_| Ok(()))?.ran(), "the next caller tries again");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidInput`]: empty key, bad lock suffix, or the key is
    ///   a directory;
    /// - [`Error::Io`]: the key's directory is missing (`NotFound`) or not
    ///   writable, or the marker could not be written durably;
    /// - [`Error::ActionFailed`]: the action returned an error (nothing
    ///   was recorded);
    /// - [`Error::LeaderFailed`]: with [`LeaderFailure::Propagate`], the
    ///   process this caller waited for stopped without completing;
    /// - [`Error::Timeout`] / [`Error::WouldBlock`]: the leader ran longer
    ///   than [`RunOnce::wait`] allows (it is named);
    /// - [`Error::AlreadyHeld`]: this thread is itself running this key's
    ///   action (a nested call would deadlock).
    pub fn run(
        &self,
        action: impl FnOnce(&ActionContext<'_>) -> std::result::Result<(), ActionError>,
    ) -> Result<OnceOutcome> {
        if self.check()? {
            return Ok(OnceOutcome::AlreadyDone { waited: false });
        }
        let lock_path = self.lock_path();
        let lock = Lock::options()
            .permissions(self.lock_permissions)
            .open(&lock_path)?;
        let (guard, leader) = match lock.try_lock() {
            Ok(g) => (g, None),
            Err(Error::WouldBlock { holders, .. }) if self.wait != Wait::NoWait => {
                (lock.acquire(Mode::Exclusive, self.wait)?, Some(holders))
            }
            Err(e) => return Err(e),
        };
        if self.is_done()? {
            return Ok(OnceOutcome::AlreadyDone {
                waited: leader.is_some(),
            });
        }
        if let Some(leader) = &leader
            && self.on_leader_failure == LeaderFailure::Propagate
        {
            return Err(Error::LeaderFailed {
                path: self.key.clone(),
                leader: leader.clone(),
            });
        }
        let token = guard.token();
        let name = self
            .key
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ctx = ActionContext {
            name: &name,
            target: &self.key,
            lock_path: &lock_path,
            token,
            #[cfg(unix)]
            lock_fd: Some(std::os::fd::AsFd::as_fd(&guard)),
        };
        if let Err(source) = action(&ctx) {
            return Err(Error::ActionFailed {
                path: self.key.clone(),
                name,
                source,
            });
        }
        status_file::remove_stale_temps(&self.key);
        status_file::write_atomic(&self.key, &record(token))?;
        if let Err(e) = guard.unlock() {
            tracing::warn!(path = %lock_path.display(), error = %e, "unlock failed");
        }
        Ok(OnceOutcome::Ran {
            token,
            took_over: leader.is_some(),
        })
    }

    /// Whether completion is recorded (the key exists). Does not lock.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let once = holdfast::RunOnce::new(dir.path().join("migrated"));
    /// assert!(!once.is_done()?);
    /// once.run(|_| Ok(()))?;
    /// assert!(once.is_done()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if the key is a directory, a FIFO, a device
    /// or a socket, [`Error::Symlink`] if it is a symbolic link (dangling or
    /// not), [`Error::Io`] if it cannot be inspected.
    pub fn is_done(&self) -> Result<bool> {
        match std::fs::symlink_metadata(&self.key) {
            Ok(m) if m.is_dir() => Err(Error::InvalidInput {
                path: self.key.clone(),
                reason: "the run-once key is a directory; run-once records completion by \
                         creating the key as a file, so name a file inside it instead"
                    .into(),
            }),
            // Dangling or not: a planted link would make the step look
            // done without it ever running.
            Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink {
                path: self.key.clone(),
            }),
            // A device or FIFO (`once /dev/null ...`) is not a marker
            // anyone made; it would make the step look done forever.
            Ok(m) if !m.is_file() => Err(Error::InvalidInput {
                path: self.key.clone(),
                reason: format!(
                    "the run-once key is {}; run-once records completion by creating the \
                     key as a regular file, so name one",
                    sys::file_type_name(m.file_type())
                ),
            }),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(IoOp::InspectKey, &self.key, e)),
        }
    }

    /// Forgets completion (removes the key, durably) under the lock, so the
    /// next caller runs the action again. Returns whether it was done.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let once = holdfast::once::RunOnce::new(dir.path().join("k"));
    /// assert!(once.run(|_| Ok(()))?.ran());
    /// assert!(once.reset()?);
    /// assert!(once.run(|_| Ok(()))?.ran());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RunOnce::run`] for the lock; [`Error::Io`] if the key cannot be
    /// removed.
    pub fn reset(&self) -> Result<bool> {
        self.check()?;
        let lock_path = self.lock_path();
        let lock = Lock::options()
            .permissions(self.lock_permissions)
            .open(&lock_path)?;
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        let was = match std::fs::remove_file(&self.key) {
            Ok(()) => {
                let dir = status_file::parent_dir(&self.key);
                sys::sync_dir(dir).map_err(|e| Error::io(IoOp::FsyncDirectory, dir, e))?;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(IoOp::RemoveKey, &self.key, e)),
        };
        drop(guard);
        Ok(was)
    }

    /// Validates the options and the key; `Ok(true)` if already done.
    fn check(&self) -> Result<bool> {
        let invalid = |reason: String| Error::InvalidInput {
            path: self.key.clone(),
            reason,
        };
        if self.key.as_os_str().is_empty() {
            return Err(invalid("the run-once key is empty".into()));
        }
        let b = self.lock_suffix.as_encoded_bytes();
        if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
            return Err(invalid(format!(
                "the lock suffix {:?} must be non-empty, without '/' or NUL",
                self.lock_suffix
            )));
        }
        if self.is_done()? {
            return Ok(true);
        }
        let dir = status_file::parent_dir(&self.key);
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(false),
            Ok(_) => Err(Error::io(
                IoOp::FindDirectory,
                &self.key,
                std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ),
            )),
            Err(e) => Err(Error::io(IoOp::FindDirectory, &self.key, e)),
        }
    }
}

impl RunOnce {
    /// Runs `action` unless `store` records the key as done, under an
    /// exclusive hold of `lock`: [`run`](Self::run) over any backend
    /// (etcd, PostgreSQL, a lock file, a test double), with the same
    /// outcomes and the same [`LeaderFailure`] policy.
    ///
    /// The store key is the run-once key as text. The runner's
    /// [`wait`](Self::wait) applies; the lock suffix and permissions do
    /// not. The mark is [fenced](crate::CompletionStore::mark_done): a
    /// caller whose lock was lost during the action gets
    /// [`Error::Lost`] and records nothing.
    ///
    /// ```
    /// use holdfast::once::{OnceOutcome, RunOnce};
    /// use holdfast::phase::StatusFileStore;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::FifoLock::open(dir.path().join("init.lock"))?;
    /// let store = StatusFileStore::new(dir.path().join("init.status"));
    /// let once = RunOnce::new("cache-v2");
    /// assert!(once.run_with(&lock, &store, |_| Ok(()))?.ran());
    /// assert_eq!(
    ///     once.run_with(&lock, &store, |_| unreachable!())?,
    ///     OnceOutcome::AlreadyDone { waited: false }
    /// );
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty key; the errors of
    /// [`LockBackend::acquire`](crate::LockBackend::acquire) and of the
    /// store; [`Error::ActionFailed`]; [`Error::LeaderFailed`] with
    /// [`LeaderFailure::Propagate`]; [`Error::Lost`].
    pub fn run_with<B, S>(
        &self,
        lock: &B,
        store: &S,
        action: impl FnOnce(&ActionContext<'_>) -> std::result::Result<(), ActionError>,
    ) -> Result<OnceOutcome>
    where
        B: crate::LockBackend,
        S: crate::CompletionStore<B::Guard>,
    {
        use crate::HeldLock as _;
        let key = self.key.to_string_lossy().into_owned();
        if key.is_empty() {
            return Err(Error::InvalidInput {
                path: self.key.clone(),
                reason: "the run-once key is empty".into(),
            });
        }
        if store.is_done(&key)? {
            return Ok(OnceOutcome::AlreadyDone { waited: false });
        }
        let (guard, leader) = match lock.acquire(Mode::Exclusive, Wait::NoWait) {
            Ok(g) => (g, None),
            Err(Error::WouldBlock { holders, .. }) if self.wait != Wait::NoWait => {
                (lock.acquire(Mode::Exclusive, self.wait)?, Some(holders))
            }
            Err(e) => return Err(e),
        };
        if store.is_done(&key)? {
            return Ok(OnceOutcome::AlreadyDone {
                waited: leader.is_some(),
            });
        }
        if let Some(leader) = &leader
            && self.on_leader_failure == LeaderFailure::Propagate
        {
            return Err(Error::LeaderFailed {
                path: self.key.clone(),
                leader: leader.clone(),
            });
        }
        let token = guard.token();
        let name = self
            .key
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| key.clone());
        let ctx = ActionContext {
            name: &name,
            target: &self.key,
            lock_path: lock.location(),
            token,
            #[cfg(unix)]
            lock_fd: None,
        };
        if let Err(source) = action(&ctx) {
            return Err(Error::ActionFailed {
                path: self.key.clone(),
                name,
                source,
            });
        }
        store.mark_done(&key, &guard)?;
        if let Err(e) = guard.release() {
            tracing::warn!(path = %lock.location().display(), error = %e, "unlock failed");
        }
        Ok(OnceOutcome::Ran {
            token,
            took_over: leader.is_some(),
        })
    }
}

/// The human-readable content of the marker file.
fn record(token: Option<u64>) -> Vec<u8> {
    let finished = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = Vec::new();
    let _ = writeln!(out, "holdfast-once 1");
    let _ = writeln!(out, "pid {}", sys::current_pid());
    let _ = writeln!(out, "host {}", sys::hostname());
    if let Some(t) = token {
        let _ = writeln!(out, "token {t}");
    }
    let _ = writeln!(
        out,
        "finished {}.{:09}",
        finished.as_secs(),
        finished.subsec_nanos()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_once_then_reports_done() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        let mut n = 0;
        let out = once(&key, |ctx| {
            n += 1;
            assert_eq!(ctx.name(), "k");
            assert!(ctx.token().is_some());
            Ok(())
        })
        .unwrap();
        assert!(matches!(
            out,
            OnceOutcome::Ran {
                token: Some(_),
                took_over: false
            }
        ));
        assert_eq!(n, 1);
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(text.starts_with("holdfast-once 1\npid "), "{text}");
        assert_eq!(
            once(&key, |_| unreachable!()).unwrap(),
            OnceOutcome::AlreadyDone { waited: false }
        );
        assert!(status_file::stale_temps(&key).is_empty());
    }

    #[test]
    fn touching_the_key_marks_it_done() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, b"").unwrap();
        assert!(!once(&key, |_| unreachable!()).unwrap().ran());
    }

    #[test]
    fn bad_keys_are_typed_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            once("", |_| Ok(())),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            once(d.path(), |_| Ok(())),
            Err(Error::InvalidInput { .. })
        ));
        match once(d.path().join("missing/k"), |_| Ok(())) {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
        let mut o = RunOnce::new(d.path().join("k"));
        o.lock_suffix("");
        assert!(matches!(o.run(|_| Ok(())), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn stale_temp_files_are_cleaned_by_the_next_leader() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(d.path().join("k.tmp.1.2"), b"half").unwrap();
        assert!(once(&key, |_| Ok(())).unwrap().ran());
        assert!(!d.path().join("k.tmp.1.2").exists());
    }

    #[test]
    fn a_waiting_thread_sees_it_done_or_takes_over() {
        use std::sync::mpsc;
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        for (fail, policy) in [
            (false, LeaderFailure::Retry),
            (true, LeaderFailure::Retry),
            (true, LeaderFailure::Propagate),
        ] {
            let _ = std::fs::remove_file(&key);
            let (started_tx, started_rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let lock_path = RunOnce::new(&key).lock_path();
            std::thread::scope(|s| {
                let key = &key;
                let leader = s.spawn(move || {
                    once(key, |_| {
                        started_tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                        if fail { Err("boom".into()) } else { Ok(()) }
                    })
                });
                started_rx.recv().unwrap();
                let waiter = s.spawn(move || {
                    let mut o = RunOnce::new(key);
                    o.on_leader_failure(policy);
                    o.run(|_| Ok(()))
                });
                // Release the leader only once the waiter is blocked on
                // the lock (the other thread's lock request is in the
                // kernel's table, or its in-process wait began).
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !waiter_blocked(&lock_path) {
                    assert!(std::time::Instant::now() < deadline, "waiter never blocked");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                go_tx.send(()).unwrap();
                let l = leader.join().unwrap();
                let w = waiter.join().unwrap();
                match (fail, policy) {
                    (false, _) => {
                        assert!(l.unwrap().ran());
                        assert_eq!(w.unwrap(), OnceOutcome::AlreadyDone { waited: true });
                    }
                    (true, LeaderFailure::Retry) => {
                        assert!(matches!(l, Err(Error::ActionFailed { .. })));
                        assert!(matches!(
                            w.unwrap(),
                            OnceOutcome::Ran {
                                took_over: true,
                                ..
                            }
                        ));
                    }
                    (true, LeaderFailure::Propagate) => {
                        assert!(matches!(l, Err(Error::ActionFailed { .. })));
                        let e = w.unwrap_err();
                        assert!(matches!(e, Error::LeaderFailed { .. }), "{e}");
                    }
                }
            });
        }
    }

    /// Whether some process has a blocked `flock` request on the file.
    fn waiter_blocked(path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::metadata(path) else {
            return false;
        };
        let ino = format!(":{} ", m.ino());
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.contains(&ino))
    }
}
