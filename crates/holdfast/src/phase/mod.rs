//! Setup phases: ordered steps that run once per target, with durable
//! completion markers, resumable after a crash, and shared on disk with
//! Python's [`phaselock`](https://pypi.org/project/phaselock/) 1.1.0.
//!
//! # Use cases
//!
//! Many processes start at once around one file (typically a SQLite
//! database). One of them must run the setup steps (connection defaults,
//! schema, migrations, optimisation pragmas) while the others wait, and
//! anyone arriving later must skip what is already done. If the process
//! doing the work dies half-way, the next one resumes at the first step
//! that has no completion marker.
//!
//! ```
//! use holdfast::phase::{Phase, PhaseRunner};
//! # let dir = tempfile::tempdir().unwrap();
//! let db = dir.path().join("app.db");
//! let runner = PhaseRunner::new(&db);
//! let report = runner.run([
//!     Phase::new("schema-v1", |ctx| {
//!         // Runs with the target's lock held; the fencing token of this
//!         // acquisition is there for fencing your own writes.
//!         assert_eq!(ctx.name(), "schema-v1");
//!         std::fs::write(ctx.target(), b"tables")?;
//!         Ok(())
//!     }),
//!     Phase::new("optimize-v1", |_| Ok(())),
//! ])?;
//! assert_eq!(report.completed, ["schema-v1", "optimize-v1"]);
//!
//! // A later run (here, or in any other process) skips both.
//! let again = runner.run([
//!     Phase::new("schema-v1", |_| unreachable!()),
//!     Phase::new("optimize-v1", |_| unreachable!()),
//! ])?;
//! assert_eq!(again.skipped, ["schema-v1", "optimize-v1"]);
//! assert!(!again.locked, "all done: the lock was not even taken");
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! For the one-step case, see [`once`](crate::once()).
//!
//! # Semantics
//!
//! [`PhaseRunner::run`] takes the phases in order. Each phase is a name
//! plus an **idempotent** action. The run:
//!
//! 1. validates everything it was given (names, duplicates, the target's
//!    directory, symlinks) before touching anything;
//! 2. unless [strict marker locking](PhaseRunner::strict_marker_locking) is
//!    on, returns at once, without locking, if every phase already has a
//!    marker (phaselock's POSIX fast path);
//! 3. takes the exclusive kernel lock on `<target>.lock` (a
//!    [`Lock`]: `flock(2)`, so it excludes phaselock and every
//!    other `flock` user), waiting in the kernel as
//!    [`PhaseRunner::wait`] allows;
//! 4. under the lock, for each phase in order: skips it if it has a marker;
//!    otherwise runs its action and, **only after the action returned
//!    `Ok`**, writes its marker durably before going on to the next phase;
//! 5. releases the lock and returns a [`RunReport`].
//!
//! An action that returns `Err` stops the run with
//! [`Error::ActionFailed`] naming the phase; its marker is not written,
//! the phases before it keep theirs, and the next run resumes at it. An
//! action that panics unwinds through `run`; the lock is released and no
//! marker is written. A process that dies mid-action loses the kernel lock
//! with it, so a waiter takes over at once and reruns that phase.
//!
//! Actions must be idempotent: a crash between the end of an action and
//! its marker reruns it. Each action also gets an [`ActionContext`] with
//! its phase name and the **fencing token** of the lock acquisition it
//! runs under ([`ActionContext::token`]): a store that remembers the
//! largest token it has seen can reject writes from a runner that lost its
//! lock (for example one frozen by a debugger while another took over).
//!
//! # On disk (phaselock 1.1.0 compatible)
//!
//! For a target `app.db`, with the default options:
//!
//! | file | what | details |
//! |---|---|---|
//! | `app.db.lock` | the lock | `flock(LOCK_EX)`; created `0o666` minus the umask; never deleted. Holds holdfast's [holder record](crate::holder) (phaselock puts one NUL byte in an empty file; holdfast treats that as empty). |
//! | xattr `user.phaselock.<name>` on `app.db` | marker (preferred) | value `b"1"` unless the phase sets [`Phase::attr_value`]; the attribute name uses [`Phase::attr_name`] when set. |
//! | `app.db.status` | marker (fallback) | UTF-8, one phase name per line, ≤ 64 KiB, replaced atomically via `app.db.status.tmp.<pid>.<time_ns>`. See [`MAX_STATUS_BYTES`]. |
//!
//! The lock path is `<target><lock_suffix>`, the naming of **phaselock
//! 1.1.0** (`Path(str(target) + ".lock")`). phaselock 1.0 used
//! `target.with_suffix(".lock")` (`app.lock` for `app.db`), and its README
//! still says so: 1.0 and 1.1.0 do not exclude each other, and holdfast
//! excludes only 1.1.0. Pass [`PhaseRunner::lock_suffix`] if you must
//! share a target with something else.
//!
//! Markers go to extended attributes when the filesystem takes them and
//! to the status file otherwise, chosen the way phaselock chooses:
//! [`XattrMode::Auto`] (the default) reads `PHASELOCK_ENABLE_XATTRS`
//! (unset, `auto`, `1`, `true`, `yes`, `on`, `xattr`, `xattrs`: use
//! xattrs if they work; `0`, `false`, `no`, `off`, `fallback`, `status`,
//! `none`: status file only; anything else: like `auto`), then asks the
//! target: "no such attribute" or a value means xattrs work,
//! `ENOTSUP`/`EPERM`/`EACCES`/any other error means they do not, and a
//! missing target counts as "they work". (phaselock asks for the attribute
//! `user.phaselock.__phaselock_probe__` first; holdfast lets the first
//! marker lookup answer, which gives the same verdict with one system call
//! less.) If writing an xattr marker fails (for example because the target
//! does not exist yet, or its xattr space is full), that marker goes to the
//! status file, as in phaselock.
//!
//! ## Reading both stores
//!
//! phaselock consults only the store its mode selects, so a Python
//! process with xattrs and one without do not see each other's markers,
//! and neither does phaselock in xattr mode see a marker that went to the
//! status file because the target was missing or its xattr space was full
//! (ext4 keeps all of a file's xattrs in one 4 KiB block: roughly 50 to
//! 100 markers, depending on name length; phaselock then reruns the
//! overflowing phases on every start).
//! holdfast reads the **union**: a phase is done if its xattr is present
//! *or* its name is in the status file. It writes the store phaselock
//! would select, and when it finds a marker only in the other store while
//! holding the lock it copies it into the selected one (best effort), so
//! that phaselock processes see it too. The selected store is asked first
//! and the other only for phases not found there, so the usual case costs
//! what phaselock's lookup costs.
//!
//! ## A corrupt status file
//!
//! phaselock treats an oversized, non-UTF-8 or NUL-containing status file
//! as empty: it silently reruns every phase and then overwrites the file.
//! holdfast instead fails with [`Error::Corrupt`] naming the file whenever
//! it needs that file's answer (always in status-file mode; in xattr mode
//! only for a phase whose xattr is missing), and never overwrites it.
//! Interoperation still works for valid files, because both sides parse
//! them identically; to recover, look at what really ran, then fix the
//! file or remove it with [`PhaseRunner::discard_status_markers`].
//!
//! # Durability
//!
//! | event | what survives |
//! |---|---|
//! | the process crashes or is killed | every marker written so far; the lock is released by the kernel; a phase whose action finished but whose marker was not yet written reruns |
//! | power loss or kernel crash after `run` returned | all markers of that run: an xattr marker is followed by `fsync` of the target, a status-file marker by `fsync` of the temporary file, an atomic rename and `fsync` of the directory |
//! | power loss during a run | the markers whose writes completed; a status file is the old or the new list, never a torn one |
//!
//! The marker is made durable, but **the action's own effects are the
//! action's business**: make them durable before returning (a committed
//! SQLite transaction is), because other processes trust a marker without
//! taking the lock (unless strict marker locking is on), and after a power
//! loss a marker may otherwise outlive the work it stands for. phaselock
//! itself does not `fsync` after writing an xattr and ignores `fsync`
//! errors on the status file; markers it writes may be lost on power loss,
//! which only means a rerun.
//!
//! On filesystems that cannot `fsync` a directory (some FUSE and network
//! filesystems answer `EINVAL`), the rename may not survive a power loss.
//!
//! # Strict marker locking
//!
//! By default (on POSIX, as in phaselock) a run that finds every marker
//! present returns without taking the lock. The process that wrote the
//! last marker may still hold the lock at that moment, doing whatever it
//! does after setup. With [`PhaseRunner::strict_marker_locking`] on,
//! markers are trusted only after taking the lock, which makes "I saw the
//! marker" happen after "the writer released the lock": the right setting
//! for SQLite, where the writer may still have the database open in a
//! state others must not see.
//!
//! # Differences from phaselock, on purpose
//!
//! - Waiting blocks in the kernel, so there is no `retry_delay`: a waiter
//!   runs as soon as the holder releases. A waiter that gets the lock after
//!   another process finished everything skips every phase (phaselock's
//!   `should_stop_waiting` check, without polling).
//! - A corrupt status file is an error, not "nothing done" (above).
//! - Both stores are read (above).
//! - Names that phaselock's status-file reader would split in two
//!   (containing `\v`, `\f`, `\x1c`–`\x1e`, U+0085, U+2028, U+2029, besides
//!   NUL, `\n` and `\r`) are refused; so are duplicate names or marker
//!   attributes in one run, attribute names longer than 255 bytes, and an
//!   empty `attr_name` ([`Error::InvalidInput`]).
//! - A target whose directory does not exist is an error
//!   ([`Error::Io`] with `NotFound`); phaselock creates the directory.
//! - A target that is a device, a FIFO or a socket, or a lock or status
//!   file path that is anything but a regular file (a directory, say), is
//!   refused with [`Error::InvalidInput`] before anything is opened or
//!   created: `/dev/null` as a target would otherwise get
//!   `/dev/null.lock` and `/dev/null.status` beside it. A directory is a
//!   valid target (its markers are xattrs on it, or the status file beside
//!   it).
//! - A target (or status file) that is a symbolic link is refused with
//!   [`Error::Symlink`] unless [`PhaseRunner::follow_symlinks`] is set;
//!   markers are read and written with the `l*xattr` calls, which never
//!   follow a link.
//! - The same thread running phases on a target it already holds gets
//!   [`Error::AlreadyHeld`] instead of waiting for its own timeout.
//!
//! # Platforms
//!
//! xattr markers work on Linux and macOS; elsewhere the status file is
//! used. Windows is not implemented yet (every call fails with
//! `ErrorKind::Unsupported`).

mod run_with;
pub(crate) mod status_file;
mod stores;
pub(crate) mod xattr;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoOp, Result};
use crate::lock::{Lock, LockGuard};
use crate::mode::{Mode, Wait};
use crate::sys;

pub use status_file::MAX_STATUS_BYTES;
pub use stores::{StatusFileStore, XattrStore};
pub use xattr::PHASELOCK_ENABLE_XATTRS;

/// The error an action returns: anything that converts into a boxed error,
/// so `?` works on `io::Error`, `String` messages and your own types.
pub type ActionError = Box<dyn std::error::Error + Send + Sync + 'static>;

type Action<'a> = Box<dyn FnOnce(&ActionContext<'_>) -> std::result::Result<(), ActionError> + 'a>;

/// What an action is told about the run it is part of.
///
/// ```
/// use holdfast::phase::{Phase, PhaseRunner};
/// # let dir = tempfile::tempdir().unwrap();
/// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("schema-v1", |ctx| {
///     assert_eq!(ctx.name(), "schema-v1");
///     assert!(ctx.lock_path().ends_with("app.db.lock"));
///     let token = ctx.token().expect("a fresh lock file carries a token");
///     println!("writing schema with fencing token {token}");
///     Ok(())
/// })])?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Debug)]
pub struct ActionContext<'r> {
    pub(crate) name: &'r str,
    pub(crate) target: &'r Path,
    pub(crate) lock_path: &'r Path,
    pub(crate) token: Option<u64>,
    #[cfg(unix)]
    pub(crate) lock_fd: Option<std::os::fd::BorrowedFd<'r>>,
}

impl<'r> ActionContext<'r> {
    /// The phase name (for [`once`](crate::once()), the key's file name).
    pub fn name(&self) -> &str {
        self.name
    }
    /// The target the phases are about (for `once`, the key path).
    pub fn target(&self) -> &Path {
        self.target
    }
    /// The lock file held while the action runs.
    pub fn lock_path(&self) -> &Path {
        self.lock_path
    }
    /// The fencing token of the lock acquisition this action runs under:
    /// larger than the token of every earlier exclusive acquisition of the
    /// lock file. `None` when the lock file cannot carry a holder record
    /// (read-only lock file, foreign content in it).
    pub fn token(&self) -> Option<u64> {
        self.token
    }
    /// The descriptor of the lock held while the action runs (Unix), for
    /// an action that hands the lock on to a child process, as flock(1)
    /// does: a duplicate made without close-on-exec (`dup(2)`) and
    /// inherited by the child is the same open file description, so the
    /// lock then stays held until the child exits too, even if this
    /// process is killed first. Without that, a runner killed while its
    /// child still works would let the next process start the same step
    /// beside the orphan.
    ///
    /// Do not unlock or close it: that would release the lock under the
    /// runner, for every process.
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("a", |ctx| {
    ///     assert!(ctx.lock_fd().as_raw_fd() >= 0);
    ///     Ok(())
    /// })])?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// In a run over a [`LockBackend`](crate::LockBackend) that has no
    /// descriptor ([`PhaseRunner::run_with`],
    /// [`RunOnce::run_with`](crate::once::RunOnce::run_with)); use
    /// [`lock_descriptor`](Self::lock_descriptor) there. File runs
    /// ([`PhaseRunner::run`], [`once`](crate::once())) always have one.
    #[cfg(unix)]
    pub fn lock_fd(&self) -> std::os::fd::BorrowedFd<'r> {
        self.lock_fd.expect(
            "ActionContext::lock_fd in a run over a backend without a descriptor; \
             use lock_descriptor()",
        )
    }

    /// The descriptor of the lock held while the action runs, as
    /// [`lock_fd`](Self::lock_fd), or `None` in a run over a backend that
    /// has none (lock files, etcd, ...: see [`PhaseRunner::run_with`]).
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("a", |ctx| {
    ///     assert!(ctx.lock_descriptor().is_some());
    ///     Ok(())
    /// })])?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    #[cfg(unix)]
    pub fn lock_descriptor(&self) -> Option<std::os::fd::BorrowedFd<'r>> {
        self.lock_fd
    }
}

/// One named, idempotent setup step (phaselock's `Phase`).
///
/// ```
/// use holdfast::phase::Phase;
/// let p = Phase::new("schema-v3", |_| Ok(()))
///     .attr_name("schema")        // marker xattr user.phaselock.schema
///     .attr_value(&b"v3"[..]);    // with value "v3"
/// assert_eq!(p.name(), "schema-v3");
/// ```
pub struct Phase<'a> {
    name: String,
    attr_name: Option<String>,
    attr_value: Vec<u8>,
    action: Action<'a>,
}

impl fmt::Debug for Phase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phase")
            .field("name", &self.name)
            .field("attr_name", &self.attr_name)
            .field("attr_value", &String::from_utf8_lossy(&self.attr_value))
            .finish_non_exhaustive()
    }
}

impl<'a> Phase<'a> {
    /// A phase named `name` whose action is `action`. Names are checked
    /// when the phase is run (see [`PhaseRunner::run`]).
    pub fn new(
        name: impl Into<String>,
        action: impl FnOnce(&ActionContext<'_>) -> std::result::Result<(), ActionError> + 'a,
    ) -> Self {
        Phase {
            name: name.into(),
            attr_name: None,
            attr_value: b"1".to_vec(),
            action: Box::new(action),
        }
    }
    /// Use this name instead of the phase name for the marker xattr
    /// (`<namespace>.<attr_name>`). The status file always records the
    /// phase name, as in phaselock.
    pub fn attr_name(mut self, attr_name: impl Into<String>) -> Self {
        self.attr_name = Some(attr_name.into());
        self
    }
    /// The value of the marker xattr (default `b"1"`). Only presence
    /// counts as "done"; the value is for humans and other tools.
    pub fn attr_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.attr_value = value.into();
        self
    }
    /// The phase name.
    pub fn name(&self) -> &str {
        &self.name
    }
    fn key_name(&self) -> &str {
        self.attr_name.as_deref().unwrap_or(&self.name)
    }
}

/// Whether to keep markers in extended attributes (phaselock's
/// `use_xattrs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XattrMode {
    /// Decide from `PHASELOCK_ENABLE_XATTRS` (phaselock's `use_xattrs=None`):
    /// unset means [`XattrMode::On`].
    #[default]
    Auto,
    /// Use xattrs if the filesystem takes them, else the
    /// status file (phaselock's `use_xattrs=True`).
    On,
    /// Status file only (phaselock's `use_xattrs=False`). Existing xattr
    /// markers are still honoured when reading.
    Off,
}

/// Where a marker was found or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerStore {
    /// An extended attribute on the target.
    Xattr,
    /// A line in the status file.
    StatusFile,
}

/// What [`PhaseRunner::run`] did (phaselock's `PhaseRunResult`, plus the
/// token and whether the lock was taken).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Phases this run executed, in order.
    pub completed: Vec<String>,
    /// Phases already marked done, in order.
    pub skipped: Vec<String>,
    /// Whether markers were kept in xattrs (at the end of the run).
    pub xattrs_available: bool,
    /// The lock file.
    pub lock_path: PathBuf,
    /// The status file, when it is the store in use and exists (as in
    /// phaselock: empty in xattr mode, although holdfast reads the status
    /// file there too when a marker is missing).
    pub status_paths: Vec<PathBuf>,
    /// Whether the lock was taken (false on the all-done fast path).
    pub locked: bool,
    /// The fencing token of the lock acquisition, if the lock was taken
    /// and the lock file carries a holder record.
    pub token: Option<u64>,
}

/// Every marker on a target, from [`PhaseRunner::markers`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Markers {
    /// Marker xattrs in the runner's namespace: (name after the namespace
    /// prefix, value).
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Why xattrs could not be listed (filesystem without xattrs), if so.
    pub xattr_error: Option<String>,
    /// The phase names in the status file, in order.
    pub status: Vec<String>,
    /// The status file's path (it may not exist).
    pub status_path: PathBuf,
    /// Temporary status files left behind by crashed writers.
    pub stale_temp_files: Vec<PathBuf>,
}

impl Markers {
    /// Whether `name` is marked done in either store (by its xattr name or
    /// its status-file line).
    pub fn contains(&self, name: &str) -> bool {
        self.xattrs.iter().any(|(n, _)| n == name) || self.status.iter().any(|n| n == name)
    }
}

/// Runs [`Phase`]s in order around a target, at most once each
/// (phaselock's `PhaseLockService`).
///
/// Options are set in the style of [`std::fs::OpenOptions`]:
///
/// ```
/// use std::time::Duration;
/// use holdfast::phase::{Phase, PhaseRunner, XattrMode};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
/// runner
///     .strict_marker_locking(true)              // recommended for SQLite
///     .timeout(Duration::from_secs(60))
///     .xattrs(XattrMode::Off);                  // status file only
/// let report = runner.run([Phase::new("schema-v1", |_| Ok(()))])?;
/// assert!(!report.xattrs_available);
/// assert!(report.status_paths[0].ends_with("app.db.status"));
/// # Ok::<(), holdfast::Error>(())
/// ```
///
/// A runner is cheap, `Clone`, `Send` and `Sync`; it opens the lock anew
/// for each run. Threads running on the same target exclude each other
/// like processes do.
#[derive(Clone, Debug)]
pub struct PhaseRunner {
    target: PathBuf,
    namespace: String,
    lock_suffix: OsString,
    status_suffix: OsString,
    wait: Wait,
    xattrs: XattrMode,
    strict: bool,
    follow_symlinks: bool,
    lock_permissions: u32,
}

/// phaselock's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl PhaseRunner {
    /// A runner for `target` with phaselock's defaults: namespace
    /// `user.phaselock`, lock `<target>.lock`, status file
    /// `<target>.status`, wait at most 10 s ([`DEFAULT_TIMEOUT`]),
    /// [`XattrMode::Auto`], strict marker locking off (on Windows: on),
    /// symlinks refused, lock file mode `0o666` minus the umask.
    pub fn new(target: impl AsRef<Path>) -> Self {
        // Like Python's Path(): drop a trailing slash and inner "." parts,
        // so "db/" and "db" share a lock.
        let target: PathBuf = target.as_ref().components().collect();
        PhaseRunner {
            target,
            namespace: "user.phaselock".into(),
            lock_suffix: ".lock".into(),
            status_suffix: ".status".into(),
            wait: Wait::Timeout(DEFAULT_TIMEOUT),
            xattrs: XattrMode::Auto,
            strict: cfg!(windows),
            follow_symlinks: false,
            lock_permissions: 0o666,
        }
    }

    /// The xattr namespace (default `user.phaselock`); leading and
    /// trailing dots are dropped, as phaselock does. An empty namespace
    /// uses the bare phase (or attr) name as the attribute name.
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.namespace("user.myapp");
    /// ```
    pub fn namespace(&mut self, namespace: &str) -> &mut Self {
        self.namespace = namespace.trim_matches('.').to_owned();
        self
    }
    /// The lock file suffix (default `.lock`): the lock is
    /// `<target><suffix>`.
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.lock_suffix(".lk");
    /// ```
    pub fn lock_suffix(&mut self, suffix: impl Into<OsString>) -> &mut Self {
        self.lock_suffix = suffix.into();
        self
    }
    /// The status file suffix (default `.status`).
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.status_suffix(".lk");
    /// ```
    pub fn status_suffix(&mut self, suffix: impl Into<OsString>) -> &mut Self {
        self.status_suffix = suffix.into();
        self
    }
    /// How long to wait for the lock (default [`Wait::Timeout`] of 10 s,
    /// as phaselock). [`Wait::NoWait`] fails at once with
    /// [`Error::WouldBlock`] if another process is running phases.
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.wait(holdfast::Wait::Forever);
    /// ```
    pub fn wait(&mut self, wait: Wait) -> &mut Self {
        self.wait = wait;
        self
    }
    /// Shorthand for `wait(Wait::Timeout(timeout))`.
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.wait = Wait::Timeout(timeout);
        self
    }
    /// Where markers go (default [`XattrMode::Auto`]).
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.xattrs(holdfast::XattrMode::Off);
    /// ```
    pub fn xattrs(&mut self, mode: XattrMode) -> &mut Self {
        self.xattrs = mode;
        self
    }
    /// Trust markers only after taking the lock (default off on POSIX, as
    /// in phaselock). See the [module docs](self#strict-marker-locking).
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.strict_marker_locking(true);
    /// ```
    pub fn strict_marker_locking(&mut self, yes: bool) -> &mut Self {
        self.strict = yes;
        self
    }
    /// Accept a target (and lock file) that is a symbolic link, and put
    /// the markers on the file it points to (default `false`:
    /// [`Error::Symlink`]).
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.follow_symlinks(true);
    /// ```
    pub fn follow_symlinks(&mut self, yes: bool) -> &mut Self {
        self.follow_symlinks = yes;
        self
    }
    /// Permission bits for a newly created lock file (default `0o666`,
    /// phaselock's; the umask applies).
    ///
    /// ```
    /// let mut options = holdfast::PhaseRunner::new("app.db");
    /// options.lock_permissions(0o664);
    /// ```
    pub fn lock_permissions(&mut self, mode: u32) -> &mut Self {
        self.lock_permissions = mode & 0o7777;
        self
    }

    /// The target.
    pub fn target(&self) -> &Path {
        &self.target
    }
    /// `<target><lock_suffix>`.
    pub fn lock_path(&self) -> PathBuf {
        suffixed(&self.target, &self.lock_suffix)
    }
    /// `<target><status_suffix>`.
    pub fn status_path(&self) -> PathBuf {
        suffixed(&self.target, &self.status_suffix)
    }
    /// The marker xattr name for a phase name or `attr_name`:
    /// `<namespace>.<name>` (phaselock's `attr_key`).
    ///
    /// ```
    /// let r = holdfast::phase::PhaseRunner::new("app.db");
    /// assert_eq!(r.attr_key("schema-v1"), "user.phaselock.schema-v1");
    /// ```
    pub fn attr_key(&self, name: &str) -> String {
        xattr::key(&self.namespace, name)
    }

    /// Runs the phases that are not marked done, in order, and marks each
    /// right after its action succeeds. See the [module docs](self) for
    /// the whole story.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// let err = runner.run([
    ///     Phase::new("a", |_| Ok(())),
    ///     Phase::new("b", |_| Err("disk full".into())),
    ///     Phase::new("c", |_| Ok(())),
    /// ]).unwrap_err();
    /// assert!(matches!(&err, holdfast::Error::ActionFailed { name, .. } if name == "b"));
    /// // The next run resumes at "b".
    /// let r = runner.run([
    ///     Phase::new("a", |_| Ok(())),
    ///     Phase::new("b", |_| Ok(())),
    ///     Phase::new("c", |_| Ok(())),
    /// ])?;
    /// assert_eq!((r.skipped, r.completed), (vec!["a".into()], vec!["b".into(), "c".into()]));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidInput`]: a bad phase name or `attr_name`, a
    ///   duplicate, bad suffixes or namespace (nothing was run);
    /// - [`Error::Symlink`]: the target, lock or status file is a symlink;
    /// - [`Error::Io`]: the target's directory is missing (`NotFound`) or
    ///   read-only (the lock file cannot be created), or a marker could
    ///   not be written or made durable;
    /// - [`Error::Corrupt`]: the status file had to be consulted and is
    ///   invalid;
    /// - [`Error::Timeout`] / [`Error::WouldBlock`]: another process held
    ///   the lock for too long (it is named);
    /// - [`Error::AlreadyHeld`]: this thread already holds the target's
    ///   lock (an action running phases on its own target);
    /// - [`Error::ActionFailed`]: a phase's action failed; earlier phases
    ///   keep their markers.
    pub fn run<'a>(&self, phases: impl IntoIterator<Item = Phase<'a>>) -> Result<RunReport> {
        let phases: Vec<Phase<'a>> = phases.into_iter().collect();
        self.check_options()?;
        self.validate(&phases)?;
        self.check_target()?;
        let lock_path = self.lock_path();
        if phases.is_empty() {
            return Ok(self.report(Vec::new(), Vec::new(), None, false, None));
        }
        if !self.strict {
            let mut view = View::new(self);
            if view.all_marked(&phases)? {
                let names = phases.into_iter().map(|p| p.name).collect();
                return Ok(self.report(Vec::new(), names, Some(&mut view), false, None));
            }
        }
        let lock = self.open_lock(&lock_path)?;
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        let token = guard.token();
        let mut view = View::new(self);
        let mut completed = Vec::new();
        let mut skipped = Vec::new();
        for phase in phases {
            match view.find(&phase)? {
                Some(found) => {
                    view.promote(&phase, found);
                    skipped.push(phase.name);
                }
                None => {
                    let key = self.attr_key(phase.key_name());
                    let ctx = ActionContext {
                        name: &phase.name,
                        target: &self.target,
                        lock_path: &lock_path,
                        token,
                        #[cfg(unix)]
                        lock_fd: Some(std::os::fd::AsFd::as_fd(&guard)),
                    };
                    if let Err(source) = (phase.action)(&ctx) {
                        return Err(Error::ActionFailed {
                            path: self.target.clone(),
                            name: phase.name,
                            source,
                        });
                    }
                    view.mark(&phase.name, &key, &phase.attr_value)?;
                    completed.push(phase.name);
                }
            }
        }
        release(guard, &lock_path);
        Ok(self.report(completed, skipped, Some(&mut view), true, token))
    }

    /// Where the marker for a phase is, if it is done (phaselock's
    /// `has_phase`, over both stores). Does not lock.
    ///
    /// ```
    /// use holdfast::phase::{MarkerStore, Phase, PhaseRunner, XattrMode};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.xattrs(XattrMode::Off);
    /// assert_eq!(runner.is_marked("a", None)?, None);
    /// runner.run([Phase::new("a", |_| Ok(()))])?;
    /// assert_eq!(runner.is_marked("a", None)?, Some(MarkerStore::StatusFile));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad name, [`Error::Corrupt`] for a
    /// status file that had to be read and is invalid, [`Error::Symlink`],
    /// [`Error::Io`].
    pub fn is_marked(&self, name: &str, attr_name: Option<&str>) -> Result<Option<MarkerStore>> {
        self.check_options()?;
        let mut phase = Phase::new(name, |_| Ok(()));
        if let Some(a) = attr_name {
            phase = phase.attr_name(a);
        }
        self.validate(std::slice::from_ref(&phase))?;
        self.check_target()?;
        View::new(self).find(&phase)
    }

    /// The store a run would write a new marker to now, chosen as
    /// phaselock chooses it: [`MarkerStore::StatusFile`] when xattrs are
    /// switched off ([`XattrMode::Off`], or `PHASELOCK_ENABLE_XATTRS` in
    /// [`XattrMode::Auto`]) or the target's filesystem refuses them,
    /// [`MarkerStore::Xattr`] otherwise. A missing target counts as
    /// "xattrs work", as in phaselock, although a marker written while it
    /// is still missing goes to the status file. Does not lock.
    ///
    /// ```
    /// use holdfast::phase::{MarkerStore, PhaseRunner, XattrMode};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.xattrs(XattrMode::Off);
    /// assert_eq!(runner.selected_store()?, MarkerStore::StatusFile);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for bad options, [`Error::Symlink`],
    /// [`Error::Io`] if the target's directory is missing.
    pub fn selected_store(&self) -> Result<MarkerStore> {
        self.check_options()?;
        self.check_target()?;
        if !self.xattrs_enabled() {
            return Ok(MarkerStore::StatusFile);
        }
        let probe = self.attr_key(xattr::PROBE_NAME);
        Ok(
            match xattr::is_marked(&self.target, &probe, self.follow_symlinks) {
                Ok(_) => MarkerStore::Xattr,
                Err(_) => MarkerStore::StatusFile,
            },
        )
    }

    /// Lists every marker on the target in this runner's namespace (both
    /// stores), plus temporary files crashed writers left. Does not lock.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.run([Phase::new("a", |_| Ok(()))])?;
    /// assert!(runner.markers()?.contains("a"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the status file is invalid, [`Error::Symlink`],
    /// [`Error::Io`].
    pub fn markers(&self) -> Result<Markers> {
        self.check_options()?;
        self.check_target()?;
        let status_path = self.status_path();
        let mut xattr_error = None;
        let mut xattrs = Vec::new();
        match sys::xattr_list(&self.target, self.follow_symlinks) {
            Ok(names) => {
                for raw in names {
                    let Ok(name) = String::from_utf8(raw) else {
                        continue;
                    };
                    let Some(short) = self.strip_namespace(&name) else {
                        continue;
                    };
                    if short == xattr::PROBE_NAME {
                        continue;
                    }
                    if let Ok(Some(v)) = sys::xattr_get(&self.target, &name, self.follow_symlinks) {
                        xattrs.push((short.to_owned(), v));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => xattr_error = Some(e.to_string()),
        }
        let status = status_file::read(&status_path)?.unwrap_or_default();
        Ok(Markers {
            xattrs,
            xattr_error,
            status,
            stale_temp_files: status_file::stale_temps(&status_path),
            status_path,
        })
    }

    /// Removes the marker of one phase from both stores, under the lock,
    /// so that the next run reruns it. Returns whether there was one.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.run([Phase::new("a", |_| Ok(()))])?;
    /// assert!(runner.unmark("a", None)?);
    /// assert_eq!(runner.is_marked("a", None)?, None);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PhaseRunner::run`] (lock, validation, status file).
    pub fn unmark(&self, name: &str, attr_name: Option<&str>) -> Result<bool> {
        self.check_options()?;
        let mut phase = Phase::new(name, |_| Ok(()));
        if let Some(a) = attr_name {
            phase = phase.attr_name(a);
        }
        self.validate(std::slice::from_ref(&phase))?;
        self.check_target()?;
        let lock_path = self.lock_path();
        let lock = self.open_lock(&lock_path)?;
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        let key = self.attr_key(phase.key_name());
        let mut removed = match sys::xattr_remove(&self.target, &key, self.follow_symlinks) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::debug!(error = %e, "no xattrs to remove");
                false
            }
        };
        if removed {
            self.sync_target()?;
        }
        let status_path = self.status_path();
        if let Some(mut names) = status_file::read(&status_path)?
            && let Some(i) = names.iter().position(|n| *n == phase.name)
        {
            names.remove(i);
            status_file::remove_stale_temps(&status_path);
            status_file::write_atomic(
                &status_path,
                &status_file::serialize(names.iter().map(String::as_str)),
            )?;
            removed = true;
        }
        release(guard, &lock_path);
        Ok(removed)
    }

    /// Removes every marker in this runner's namespace from both stores
    /// (the xattrs, the status file and leftover temporary files), under
    /// the lock. The lock file stays: deleting a lock file others may be
    /// waiting on would split them across two files. Returns what was
    /// there.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.run([Phase::new("a", |_| Ok(())), Phase::new("b", |_| Ok(()))])?;
    /// let before = runner.reset()?;
    /// assert!(before.contains("a") && before.contains("b"));
    /// assert!(!runner.markers()?.contains("a"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PhaseRunner::run`]. A corrupt status file is removed too (that
    /// is what a reset is for), so it is no error here.
    pub fn reset(&self) -> Result<Markers> {
        self.check_options()?;
        self.check_target()?;
        let lock_path = self.lock_path();
        let lock = self.open_lock(&lock_path)?;
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        let before = match self.markers() {
            Ok(m) => m,
            Err(Error::Corrupt { .. }) => Markers {
                xattrs: Vec::new(),
                xattr_error: None,
                status: Vec::new(),
                status_path: self.status_path(),
                stale_temp_files: Vec::new(),
            },
            Err(e) => return Err(e),
        };
        let mut any_xattr = false;
        for (short, _) in &before.xattrs {
            let key = self.attr_key(short);
            match sys::xattr_remove(&self.target, &key, self.follow_symlinks) {
                Ok(r) => any_xattr |= r,
                Err(e) => return Err(Error::io(IoOp::RemoveMarkerXattr, &self.target, e)),
            }
        }
        if any_xattr {
            self.sync_target()?;
        }
        self.remove_status_files()?;
        release(guard, &lock_path);
        Ok(before)
    }

    /// Deletes the status file and leftover temporary status files, under
    /// the lock, leaving xattrs alone (phaselock's
    /// `discard_status_markers`, which does not lock). Use it to recover
    /// from a corrupt status file once you know what really ran.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner, XattrMode};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.xattrs(XattrMode::Off);
    /// std::fs::write(runner.status_path(), b"a\0\n")?; // corrupt
    /// assert!(matches!(runner.is_marked("a", None), Err(holdfast::Error::Corrupt { .. })));
    /// runner.discard_status_markers()?;
    /// assert_eq!(runner.is_marked("a", None)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Locking errors as in [`PhaseRunner::run`]; [`Error::Io`] if a file
    /// cannot be removed.
    pub fn discard_status_markers(&self) -> Result<()> {
        self.check_options()?;
        self.check_target()?;
        let lock_path = self.lock_path();
        let lock = self.open_lock(&lock_path)?;
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        self.remove_status_files()?;
        release(guard, &lock_path);
        Ok(())
    }

    fn remove_status_files(&self) -> Result<()> {
        let status_path = self.status_path();
        status_file::remove_stale_temps(&status_path);
        match std::fs::remove_file(&status_path) {
            Ok(()) => {
                let dir = status_file::parent_dir(&status_path);
                sys::sync_dir(dir).map_err(|e| Error::io(IoOp::FsyncDirectory, dir, e))?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(IoOp::RemoveStatusFile, &status_path, e)),
        }
    }

    fn strip_namespace<'n>(&self, key: &'n str) -> Option<&'n str> {
        if self.namespace.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.namespace.as_str())?.strip_prefix('.')
    }

    fn open_lock(&self, lock_path: &Path) -> Result<Lock> {
        Lock::options()
            .permissions(self.lock_permissions)
            .follow_symlinks(self.follow_symlinks)
            .open(lock_path)
    }

    fn sync_target(&self) -> Result<()> {
        sys::sync_path(&self.target, self.follow_symlinks)
            .map_err(|e| Error::io(IoOp::FsyncMarkers, &self.target, e))
    }

    fn xattrs_enabled(&self) -> bool {
        match self.xattrs {
            XattrMode::On => true,
            XattrMode::Off => false,
            XattrMode::Auto => xattr::env_allows_xattrs(),
        }
    }

    fn report(
        &self,
        completed: Vec<String>,
        skipped: Vec<String>,
        view: Option<&mut View<'_>>,
        locked: bool,
        token: Option<u64>,
    ) -> RunReport {
        let (xattrs_available, status_paths) = match view {
            Some(v) => (v.xattr_primary, v.status_paths()),
            None => (self.xattrs_enabled(), Vec::new()),
        };
        RunReport {
            completed,
            skipped,
            xattrs_available,
            lock_path: self.lock_path(),
            status_paths,
            locked,
            token,
        }
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidInput {
            path: self.target.clone(),
            reason,
        }
    }

    fn check_options(&self) -> Result<()> {
        if self.target.as_os_str().is_empty() {
            return Err(self.invalid("the target path is empty".into()));
        }
        for (what, s) in [
            ("lock suffix", &self.lock_suffix),
            ("status suffix", &self.status_suffix),
        ] {
            let b = s.as_encoded_bytes();
            if b.is_empty() {
                return Err(self.invalid(format!(
                    "the {what} is empty, which would make the target its own {}",
                    if what == "lock suffix" {
                        "lock file"
                    } else {
                        "status file"
                    }
                )));
            }
            if b.contains(&b'/') || b.contains(&0) {
                return Err(self.invalid(format!("the {what} {s:?} contains '/' or NUL")));
            }
        }
        if self.lock_suffix == self.status_suffix {
            return Err(self.invalid("the lock and status suffixes are the same".into()));
        }
        if self.namespace.contains('\0') {
            return Err(self.invalid("the xattr namespace contains NUL".into()));
        }
        Ok(())
    }

    fn validate(&self, phases: &[Phase<'_>]) -> Result<()> {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut status_bytes = 0usize;
        let prefix = if self.namespace.is_empty() {
            0
        } else {
            self.namespace.len() + 1
        };
        for (i, p) in phases.iter().enumerate() {
            validate_name("phase name", &p.name).map_err(|r| self.invalid(r))?;
            if let Some(a) = &p.attr_name {
                if a.is_empty() {
                    return Err(self.invalid(format!(
                        "the attr_name of phase {:?} is empty (leave it unset to use the phase name)",
                        p.name
                    )));
                }
                validate_name("attr_name", a).map_err(|r| self.invalid(r))?;
            }
            if let Some(first) = names.insert(&p.name, i) {
                return Err(self.invalid(format!(
                    "phase {:?} appears twice in one run (positions {} and {})",
                    p.name,
                    first + 1,
                    i + 1
                )));
            }
            let key_len = prefix + p.key_name().len();
            if key_len > xattr::MAX_KEY_BYTES {
                return Err(self.invalid(format!(
                    "the marker xattr name for phase {:?} is {key_len} bytes long; the limit is {}",
                    p.name,
                    xattr::MAX_KEY_BYTES
                )));
            }
            status_bytes += p.name.len() + 1;
        }
        // Names are unique, so marker xattrs can only collide through an
        // attr_name.
        if phases.iter().any(|p| p.attr_name.is_some()) {
            let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
            for p in phases {
                if let Some(other) = keys.insert(p.key_name(), &p.name) {
                    return Err(self.invalid(format!(
                        "phases {other:?} and {:?} would share the marker xattr {:?}",
                        p.name,
                        self.attr_key(p.key_name())
                    )));
                }
            }
        }
        if status_bytes > MAX_STATUS_BYTES {
            return Err(self.invalid(format!(
                "the phase names need {status_bytes} bytes in the status file, more than the \
                 {MAX_STATUS_BYTES} bytes phaselock reads"
            )));
        }
        Ok(())
    }

    /// The target must not be a symlink (unless allowed) and its directory
    /// must exist.
    fn check_target(&self) -> Result<()> {
        // The lock and status files must be files (or not exist yet): a
        // directory, a FIFO or a device there is refused, never opened.
        for (path, what) in [
            (self.lock_path(), "the lock file"),
            (self.status_path(), "the status file"),
        ] {
            if let Some(kind) = self.special_kind(&path, false) {
                return Err(Error::InvalidInput {
                    reason: format!(
                        "{what} of {} is {kind}; it must be a regular file or not exist yet",
                        self.target.display()
                    ),
                    path,
                });
            }
        }
        match std::fs::symlink_metadata(&self.target) {
            Ok(m) if m.file_type().is_symlink() && !self.follow_symlinks => Err(Error::Symlink {
                path: self.target.clone(),
            }),
            Ok(_) => match self.special_kind(&self.target, true) {
                Some(kind) => Err(Error::InvalidInput {
                    path: self.target.clone(),
                    reason: format!(
                        "the target is {kind}; phases are about a regular file or a \
                         directory (or a path that does not exist yet)"
                    ),
                }),
                None => Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = status_file::parent_dir(&self.target);
                match std::fs::metadata(dir) {
                    Ok(m) if m.is_dir() => Ok(()),
                    Ok(_) => Err(Error::io(
                        IoOp::FindDirectory,
                        &self.target,
                        std::io::Error::new(
                            std::io::ErrorKind::NotADirectory,
                            format!("{} is not a directory", dir.display()),
                        ),
                    )),
                    Err(e) => Err(Error::io(IoOp::FindDirectory, &self.target, e)),
                }
            }
            Err(e) => Err(Error::io(IoOp::Inspect, &self.target, e)),
        }
    }
}

impl PhaseRunner {
    /// What `path` is, when it exists and is neither a regular file (nor,
    /// with `dir_ok`, a directory): "a directory", "a FIFO", ...
    fn special_kind(&self, path: &Path, dir_ok: bool) -> Option<&'static str> {
        let m = if self.follow_symlinks {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        let t = m.ok()?.file_type();
        if t.is_file() || t.is_symlink() || (dir_ok && t.is_dir()) {
            return None;
        }
        Some(sys::file_type_name(t))
    }
}

/// Checks a phase name or attr_name: non-empty, no NUL, and no character
/// that phaselock's status-file reader (`str.splitlines`) would treat as a
/// line break.
pub(crate) fn validate_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if name.contains('\0') {
        return Err(format!("the {what} {name:?} contains a NUL character"));
    }
    if name.contains(['\n', '\r']) {
        return Err(format!("the {what} {name:?} contains a line break"));
    }
    if let Some(c) = name.chars().find(|&c| status_file::is_line_break(c)) {
        return Err(format!(
            "the {what} {name:?} contains {c:?}, which phaselock's status-file reader \
             (Python str.splitlines) treats as a line break, so the marker could not be read back"
        ));
    }
    Ok(())
}

fn suffixed(target: &Path, suffix: &OsString) -> PathBuf {
    let mut s = OsString::from(target.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn release(guard: LockGuard<'_>, lock_path: &Path) {
    if let Err(e) = guard.unlock() {
        // The kernel refusing an unlock leaves nothing to undo: the lock
        // goes when the file is closed, which happens right after.
        tracing::warn!(path = %lock_path.display(), error = %e, "unlock failed");
    }
}

/// The markers of one target as seen during one check or one locked run:
/// which store is primary, and the status file's entries, read once.
struct View<'r> {
    runner: &'r PhaseRunner,
    /// Markers are written to xattrs (not switched off, not refused by the filesystem, no
    /// write failure yet).
    xattr_primary: bool,
    /// Reading xattrs makes sense (not known to be unsupported).
    xattr_readable: bool,
    status: Option<StatusList>,
    temps_cleaned: bool,
}

/// The status file's entries in file order, with a sorted index for
/// lookups (a run over N phases asks N times).
struct StatusList {
    /// Whether the file exists.
    exists: bool,
    names: Vec<String>,
    sorted: Vec<usize>,
}

impl StatusList {
    fn new(exists: bool, names: Vec<String>) -> Self {
        let mut sorted: Vec<usize> = (0..names.len()).collect();
        sorted.sort_unstable_by(|&a, &b| names[a].cmp(&names[b]));
        StatusList {
            exists,
            names,
            sorted,
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.sorted
            .binary_search_by(|&i| self.names[i].as_str().cmp(name))
            .is_ok()
    }
}

impl<'r> View<'r> {
    fn new(runner: &'r PhaseRunner) -> Self {
        // phaselock first probes `<namespace>.__phaselock_probe__`; reading
        // the first marker attribute answers the same question (missing
        // attribute or a value: xattrs work; ENOTSUP, EPERM, ...: they do
        // not) one system call cheaper, so holdfast starts out assuming
        // they work and lets that first read decide (see `xattr_marked`).
        let enabled = runner.xattrs_enabled();
        View {
            runner,
            xattr_primary: enabled,
            xattr_readable: true,
            status: None,
            temps_cleaned: false,
        }
    }

    fn status(&mut self) -> Result<&StatusList> {
        if self.status.is_none() {
            let read = status_file::read(&self.runner.status_path())?;
            self.status = Some(StatusList::new(read.is_some(), read.unwrap_or_default()));
        }
        Ok(self
            .status
            .get_or_insert_with(|| StatusList::new(false, Vec::new())))
    }

    /// The status paths to report, as phaselock does: the status file if
    /// it is the store in use and exists; nothing in xattr mode.
    fn status_paths(&mut self) -> Vec<PathBuf> {
        if self.xattr_primary {
            return Vec::new();
        }
        match self.status() {
            Ok(s) if s.exists => vec![self.runner.status_path()],
            _ => Vec::new(),
        }
    }

    fn xattr_marked(&mut self, phase: &Phase<'_>) -> bool {
        if !self.xattr_readable {
            return false;
        }
        let key = self.runner.attr_key(phase.key_name());
        match xattr::is_marked(&self.runner.target, &key, self.runner.follow_symlinks) {
            Ok(b) => b,
            Err(e) => {
                // Unsupported, or refused: phaselock flips to the status
                // file on any such error, and so do we.
                tracing::debug!(target = %self.runner.target.display(), error = %e,
                    "xattrs unusable; using the status file");
                self.xattr_primary = false;
                self.xattr_readable = false;
                false
            }
        }
    }

    fn status_marked(&mut self, phase: &Phase<'_>) -> Result<bool> {
        Ok(self.status()?.contains(&phase.name))
    }

    /// Union read: the primary store first, the other only if needed.
    fn find(&mut self, phase: &Phase<'_>) -> Result<Option<MarkerStore>> {
        if self.xattr_primary {
            if self.xattr_marked(phase) {
                return Ok(Some(MarkerStore::Xattr));
            }
            if self.status_marked(phase)? {
                return Ok(Some(MarkerStore::StatusFile));
            }
        } else {
            if self.status_marked(phase)? {
                return Ok(Some(MarkerStore::StatusFile));
            }
            if self.xattr_marked(phase) {
                return Ok(Some(MarkerStore::Xattr));
            }
        }
        Ok(None)
    }

    fn all_marked(&mut self, phases: &[Phase<'_>]) -> Result<bool> {
        for p in phases {
            if self.find(p)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Under the lock: a marker found only in the store phaselock would not
    /// read is copied into the one it would. Best effort.
    fn promote(&mut self, phase: &Phase<'_>, found: MarkerStore) {
        let result = match (found, self.xattr_primary) {
            (MarkerStore::StatusFile, true) => {
                let key = self.runner.attr_key(phase.key_name());
                sys::xattr_set(
                    &self.runner.target,
                    &key,
                    &phase.attr_value,
                    self.runner.follow_symlinks,
                )
                .map_err(|e| Error::io(IoOp::CopyMarkerToXattr, &self.runner.target, e))
            }
            (MarkerStore::Xattr, false) => self.add_to_status(&phase.name),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(phase = %phase.name, error = %e,
                "could not copy a marker into the store phaselock reads");
        }
    }

    /// Writes the marker of a phase whose action just succeeded.
    fn mark(&mut self, name: &str, key: &str, value: &[u8]) -> Result<MarkerStore> {
        let r = self.runner;
        if self.xattr_primary {
            match sys::xattr_set(&r.target, key, value, r.follow_symlinks) {
                Ok(()) => {
                    r.sync_target()?;
                    return Ok(MarkerStore::Xattr);
                }
                Err(e) => {
                    // Missing target, ENOTSUP, ENOSPC, ...: phaselock then
                    // records the phase in the status file, and so do we.
                    tracing::debug!(phase = name, error = %e,
                        "cannot write the marker xattr; using the status file");
                    self.xattr_primary = false;
                }
            }
        }
        self.add_to_status(name)?;
        Ok(MarkerStore::StatusFile)
    }

    fn add_to_status(&mut self, name: &str) -> Result<()> {
        let path = self.runner.status_path();
        let entries = self.status()?;
        if entries.contains(name) {
            return Ok(());
        }
        let mut next = entries.names.clone();
        next.push(name.to_owned());
        let data = status_file::serialize(next.iter().map(String::as_str));
        if data.len() > MAX_STATUS_BYTES {
            return Err(Error::InvalidInput {
                path: path.clone(),
                reason: format!(
                    "recording phase {name:?} would make the status file {} bytes long, more \
                     than the {MAX_STATUS_BYTES} bytes phaselock reads; reset old markers",
                    data.len()
                ),
            });
        }
        if !self.temps_cleaned {
            // We hold the lock every writer takes: leftovers are from
            // writers that crashed.
            status_file::remove_stale_temps(&path);
            self.temps_cleaned = true;
        }
        status_file::write_atomic(&path, &data)?;
        self.status = Some(StatusList::new(true, next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn runner(d: &tempfile::TempDir, mode: XattrMode) -> PhaseRunner {
        let mut r = PhaseRunner::new(d.path().join("app.db"));
        r.xattrs(mode);
        r
    }

    fn xattrs_work(d: &tempfile::TempDir) -> bool {
        let p = d.path().join("probe");
        std::fs::write(&p, b"").unwrap();
        sys::xattr_set(&p, "user.holdfast.probe", b"1", false).is_ok()
    }

    #[test]
    fn names_are_validated_like_phaselock_and_stricter() {
        assert!(validate_name("phase name", "schema-v3").is_ok());
        assert!(validate_name("phase name", "with space and ünïcode\t").is_ok());
        for bad in [
            "",
            "a\0b",
            "a\nb",
            "a\rb",
            "a\u{b}b",
            "a\u{c}b",
            "a\u{85}b",
            "a\u{2028}",
        ] {
            assert!(validate_name("phase name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_input_is_invalid_input_and_runs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Auto);
        let ran = RefCell::new(0);
        let ph = |n: &str| {
            let ran = &ran;
            Phase::new(n.to_owned(), move |_| {
                *ran.borrow_mut() += 1;
                Ok(())
            })
        };
        for phases in [
            vec![ph("a"), ph("")],
            vec![ph("a"), ph("b\0")],
            vec![ph("a\n")],
            vec![ph("a\r")],
            vec![ph("a"), ph("b"), ph("a")],
            vec![ph("a").attr_name("x"), ph("b").attr_name("x")],
            vec![ph("a"), ph("b").attr_name("a")],
            vec![ph("a").attr_name("")],
            vec![ph(&"n".repeat(300))],
        ] {
            let err = r.run(phases).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        }
        assert_eq!(*ran.borrow(), 0);
        assert!(!r.lock_path().exists(), "nothing touched");
        let many: Vec<_> = (0..700).map(|i| ph(&format!("{i:0>100}"))).collect();
        assert!(matches!(r.run(many), Err(Error::InvalidInput { .. })));
        let mut bad = r.clone();
        bad.lock_suffix("");
        assert!(matches!(
            bad.run([ph("a")]),
            Err(Error::InvalidInput { .. })
        ));
        let mut bad = r.clone();
        bad.status_suffix(".lock");
        assert!(matches!(
            bad.run([ph("a")]),
            Err(Error::InvalidInput { .. })
        ));
        let mut bad = r.clone();
        bad.lock_suffix("/x");
        assert!(matches!(
            bad.run([ph("a")]),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            PhaseRunner::new("").run([ph("a")]),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn missing_directory_and_symlink_target() {
        let d = tempfile::tempdir().unwrap();
        let r = PhaseRunner::new(d.path().join("no/such/app.db"));
        match r.run([Phase::new("a", |_| Ok(()))]) {
            Err(Error::Io { source, path, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                assert_eq!(path, d.path().join("no/such/app.db"));
            }
            other => panic!("{other:?}"),
        }
        let real = d.path().join("real.db");
        std::fs::write(&real, b"").unwrap();
        let link = d.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let r = PhaseRunner::new(&link);
        assert!(matches!(
            r.run([Phase::new("a", |_| Ok(()))]),
            Err(Error::Symlink { .. })
        ));
        let mut r = PhaseRunner::new(&link);
        r.follow_symlinks(true).xattrs(XattrMode::Off);
        r.run([Phase::new("a", |_| Ok(()))]).unwrap();
    }

    #[test]
    fn paths_follow_phaselock_1_1_naming() {
        let r = PhaseRunner::new("data/app.db/");
        assert_eq!(r.target(), Path::new("data/app.db"));
        assert_eq!(r.lock_path(), Path::new("data/app.db.lock"));
        assert_eq!(r.status_path(), Path::new("data/app.db.status"));
        let mut r = PhaseRunner::new("x");
        r.namespace("..user.mine.");
        assert_eq!(r.attr_key("p"), "user.mine.p");
        r.namespace("");
        assert_eq!(r.attr_key("user.p"), "user.p");
    }

    #[test]
    fn status_mode_writes_the_file_and_resumes_after_failure() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Off);
        let log = RefCell::new(Vec::new());
        let ph = |n: &'static str, fail: bool| {
            let log = &log;
            Phase::new(n, move |ctx| {
                assert_eq!(ctx.name(), n);
                if fail {
                    return Err(format!("{n} broke").into());
                }
                log.borrow_mut().push(n);
                Ok(())
            })
        };
        let err = r
            .run([ph("a", false), ph("b", true), ph("c", false)])
            .unwrap_err();
        match &err {
            Error::ActionFailed { name, path, source } => {
                assert_eq!(name, "b");
                assert_eq!(path, r.target());
                assert_eq!(source.to_string(), "b broke");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("\"b\""), "{err}");
        assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\n");
        let rep = r
            .run([ph("a", false), ph("b", false), ph("c", false)])
            .unwrap();
        assert_eq!(rep.skipped, ["a"]);
        assert_eq!(rep.completed, ["b", "c"]);
        assert!(rep.locked && !rep.xattrs_available);
        assert_eq!(*log.borrow(), ["a", "b", "c"]);
        assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\nb\nc\n");
        assert!(
            status_file::stale_temps(&r.status_path()).is_empty(),
            "no temporary files left"
        );
    }

    #[test]
    fn xattr_mode_marks_the_target_and_fast_path_skips_the_lock() {
        let d = tempfile::tempdir().unwrap();
        if !xattrs_work(&d) {
            eprintln!("skipping: no user xattrs here");
            return;
        }
        let r = runner(&d, XattrMode::On);
        std::fs::write(r.target(), b"").unwrap();
        let rep = r
            .run([Phase::new("a", |_| Ok(())).attr_value(&b"v1"[..])])
            .unwrap();
        assert!(rep.xattrs_available && rep.locked);
        assert!(rep.token.is_some());
        assert!(rep.status_paths.is_empty());
        assert_eq!(
            sys::xattr_get(r.target(), "user.phaselock.a", false).unwrap(),
            Some(b"v1".to_vec())
        );
        // The lock is held by someone else: the fast path does not need it.
        let lock = Lock::open(r.lock_path()).unwrap();
        let held = lock.lock().unwrap();
        let rep = r.run([Phase::new("a", |_| unreachable!())]).unwrap();
        assert!(!rep.locked);
        assert_eq!(rep.skipped, ["a"]);
        // Strict marker locking waits for the lock first.
        let mut strict = r.clone();
        strict.strict_marker_locking(true).wait(Wait::NoWait);
        assert!(matches!(
            strict.run([Phase::new("a", |_| unreachable!())]),
            Err(Error::WouldBlock { .. })
        ));
        drop(held);
        let rep = strict.run([Phase::new("a", |_| unreachable!())]).unwrap();
        assert!(rep.locked);
    }

    #[test]
    fn missing_target_falls_back_to_the_status_file_and_is_read_back() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::On);
        // The action does not create the target: the xattr cannot be set.
        let rep = r.run([Phase::new("a", |_| Ok(()))]).unwrap();
        assert_eq!(rep.completed, ["a"]);
        assert!(!rep.xattrs_available);
        assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\n");
        // Union read: xattr mode still sees the status-file marker.
        let rep = r.run([Phase::new("a", |_| unreachable!())]).unwrap();
        assert_eq!(rep.skipped, ["a"]);
    }

    #[test]
    fn union_read_and_promotion_between_stores() {
        let d = tempfile::tempdir().unwrap();
        if !xattrs_work(&d) {
            return;
        }
        let r = runner(&d, XattrMode::On);
        std::fs::write(r.target(), b"").unwrap();
        // Marker only in the status file, xattrs usable: skipped, and
        // copied into the xattr under the lock (strict forces the lock).
        std::fs::write(r.status_path(), b"a\n").unwrap();
        let mut strict = r.clone();
        strict.strict_marker_locking(true);
        let rep = strict.run([Phase::new("a", |_| unreachable!())]).unwrap();
        assert_eq!(rep.skipped, ["a"]);
        assert!(sys::xattr_exists(r.target(), "user.phaselock.a", false).unwrap());
        // Marker only in an xattr, status mode: skipped and copied into the file.
        sys::xattr_set(r.target(), "user.phaselock.b", b"1", false).unwrap();
        let mut off = strict.clone();
        off.xattrs(XattrMode::Off);
        let rep = off
            .run([
                Phase::new("a", |_| unreachable!()),
                Phase::new("b", |_| unreachable!()),
            ])
            .unwrap();
        assert_eq!(rep.skipped, ["a", "b"]);
        assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\nb\n");
    }

    #[test]
    fn corrupt_status_file_is_an_error_when_consulted() {
        let d = tempfile::tempdir().unwrap();
        let off = runner(&d, XattrMode::Off);
        std::fs::write(off.status_path(), b"a\n\xff\xfe\n").unwrap();
        let ran = RefCell::new(false);
        let err = off
            .run([Phase::new("a", |_| {
                *ran.borrow_mut() = true;
                Ok(())
            })])
            .unwrap_err();
        match &err {
            Error::Corrupt { path, reason } => {
                assert_eq!(path, &off.status_path());
                assert!(reason.contains("UTF-8"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!*ran.borrow());
        assert_eq!(
            std::fs::read(off.status_path()).unwrap(),
            b"a\n\xff\xfe\n",
            "never overwritten"
        );
        if xattrs_work(&d) {
            let on = runner(&d, XattrMode::On);
            std::fs::write(on.target(), b"").unwrap();
            // xattr mode, marker missing: the status file must be asked.
            assert!(matches!(
                on.run([Phase::new("a", |_| Ok(()))]),
                Err(Error::Corrupt { .. })
            ));
            // xattr mode, xattr present: the file cannot change the answer.
            sys::xattr_set(on.target(), "user.phaselock.a", b"1", false).unwrap();
            assert_eq!(
                on.run([Phase::new("a", |_| unreachable!())])
                    .unwrap()
                    .skipped,
                ["a"]
            );
        }
        off.discard_status_markers().unwrap();
        assert!(!off.status_path().exists());
    }

    #[test]
    fn unmark_and_reset() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Auto);
        std::fs::write(r.target(), b"").unwrap();
        r.run([
            Phase::new("a", |_| Ok(())),
            Phase::new("b", |_| Ok(())).attr_name("bee"),
        ])
        .unwrap();
        assert!(r.is_marked("b", Some("bee")).unwrap().is_some());
        assert!(r.unmark("b", Some("bee")).unwrap());
        assert!(!r.unmark("b", Some("bee")).unwrap());
        assert_eq!(r.is_marked("b", Some("bee")).unwrap(), None);
        assert!(r.is_marked("a", None).unwrap().is_some());
        let before = r.reset().unwrap();
        assert!(before.contains("a"));
        let after = r.markers().unwrap();
        assert!(after.xattrs.is_empty() && after.status.is_empty());
        assert!(r.lock_path().exists(), "the lock file is never deleted");
    }

    #[test]
    fn selected_store_follows_the_mode_and_the_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let off = runner(&d, XattrMode::Off);
        assert_eq!(off.selected_store().unwrap(), MarkerStore::StatusFile);
        let on = runner(&d, XattrMode::On);
        std::fs::write(on.target(), b"").unwrap();
        let want = if xattrs_work(&d) {
            MarkerStore::Xattr
        } else {
            MarkerStore::StatusFile
        };
        assert_eq!(on.selected_store().unwrap(), want);
        assert!(matches!(
            PhaseRunner::new(d.path().join("no/such/x")).selected_store(),
            Err(Error::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_action_sees_the_descriptor_of_the_held_lock() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Off);
        let lock_path = r.lock_path();
        r.run([Phase::new("a", |ctx| {
            let dup = ctx.lock_fd().try_clone_to_owned()?;
            let held = std::fs::File::from(dup).metadata()?;
            assert_eq!(held.ino(), std::fs::metadata(&lock_path)?.ino());
            Ok(())
        })])
        .unwrap();
        let key = d.path().join("k");
        let ran = crate::once(&key, |ctx| {
            let dup = ctx.lock_fd().try_clone_to_owned()?;
            let held = std::fs::File::from(dup).metadata()?;
            assert_eq!(held.ino(), std::fs::metadata(ctx.lock_path())?.ino());
            Ok(())
        })
        .unwrap();
        assert!(ran.ran());
    }

    #[test]
    fn same_thread_nested_run_is_already_held() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Off);
        let inner = r.clone();
        let err = r
            .run([Phase::new("outer", move |_| {
                inner.run([Phase::new("inner", |_| Ok(()))])?;
                Ok(())
            })])
            .unwrap_err();
        match err {
            Error::ActionFailed { source, .. } => {
                let e = source.downcast_ref::<Error>().expect("a holdfast error");
                assert!(matches!(e, Error::AlreadyHeld { .. }), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn threads_run_each_phase_once() {
        let d = tempfile::tempdir().unwrap();
        let r = runner(&d, XattrMode::Auto);
        let count = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    r.run(["a", "b", "c"].map(|n| {
                        Phase::new(n, |_| {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok(())
                        })
                    }))
                    .unwrap()
                });
            }
        });
        assert_eq!(count.into_inner(), 3);
    }
}
