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
//!    [`Lock`](crate::lock::Lock): `flock(2)`, so it excludes phaselock and every
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

mod markers;
mod reset;
mod run_with;
mod runner;
pub(crate) mod status_file;
mod stores;
#[cfg(test)]
mod tests;
mod validate;
mod view;
pub(crate) mod xattr;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoOp, Result};
use crate::mode::Wait;
use crate::sys;

pub use status_file::MAX_STATUS_BYTES;
pub use stores::{StatusFileStore, XattrStore};
pub(crate) use validate::validate_name;
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
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("schema-v1", |ctx| {
    ///     println!("running {}", ctx.name());
    ///     assert_eq!(ctx.name(), "schema-v1");
    ///     Ok(())
    /// })])?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.name
    }
    /// The target the phases are about (for `once`, the key path).
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = dir.path().join("app.db");
    /// PhaseRunner::new(&db).run([Phase::new("create", |ctx| {
    ///     std::fs::write(ctx.target(), b"")?;
    ///     Ok(())
    /// })])?;
    /// assert!(db.exists());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn target(&self) -> &Path {
        self.target
    }
    /// The lock file held while the action runs.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("create", |ctx| {
    ///     assert!(ctx.lock_path().ends_with("app.db.lock"));
    ///     Ok(())
    /// })])?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock_path(&self) -> &Path {
        self.lock_path
    }
    /// The fencing token of the lock acquisition this action runs under:
    /// larger than the token of every earlier exclusive acquisition of the
    /// lock file. `None` when the lock file cannot carry a holder record
    /// (read-only lock file, foreign content in it).
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// PhaseRunner::new(dir.path().join("app.db")).run([Phase::new("migrate", |ctx| {
    ///     let token = ctx.token().expect("a fresh lock file carries a token");
    ///     println!("migrating; writes carry fencing token {token}");
    ///     Ok(())
    /// })])?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let schema = Phase::new("schema-v1", |_ctx| {
    ///     // create tables ...
    ///     Ok(())
    /// });
    /// let report = PhaseRunner::new(dir.path().join("app.db")).run([schema])?;
    /// assert_eq!(report.completed, ["schema-v1"]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// let phase = Phase::new("schema-v3", |_| Ok(())).attr_name("schema");
    /// // marks the xattr user.phaselock.schema (where xattrs work) and the
    /// // status-file line "schema-v3"
    /// assert_eq!(runner.run([phase])?.completed, ["schema-v3"]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn attr_name(mut self, attr_name: impl Into<String>) -> Self {
        self.attr_name = Some(attr_name.into());
        self
    }
    /// The value of the marker xattr (default `b"1"`). Only presence
    /// counts as "done"; the value is for humans and other tools.
    ///
    /// ```
    /// use holdfast::phase::Phase;
    /// let phase = Phase::new("schema-v3", |_| Ok(())).attr_name("schema").attr_value(&b"v3"[..]);
    /// assert_eq!(phase.name(), "schema-v3");
    /// ```
    pub fn attr_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.attr_value = value.into();
        self
    }
    /// The phase name.
    ///
    /// ```
    /// let phase = holdfast::phase::Phase::new("schema-v1", |_| Ok(()));
    /// assert_eq!(phase.name(), "schema-v1");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
    fn key_name(&self) -> &str {
        self.attr_name.as_deref().unwrap_or(&self.name)
    }
}

/// Whether to keep markers in extended attributes (phaselock's
/// `use_xattrs`).
///
/// ```
/// use holdfast::phase::{PhaseRunner, XattrMode};
/// let mut runner = PhaseRunner::new("app.db");
/// runner.xattrs(XattrMode::Off); // status file only, as phaselock's use_xattrs=False
/// ```
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
///
/// ```
/// use holdfast::phase::MarkerStore;
/// let stores = [MarkerStore::Xattr, MarkerStore::StatusFile];
/// assert_ne!(stores[0], stores[1]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerStore {
    /// An extended attribute on the target.
    Xattr,
    /// A line in the status file.
    StatusFile,
}

/// What [`PhaseRunner::run`] did (phaselock's `PhaseRunResult`, plus the
/// token and whether the lock was taken).
///
/// ```
/// use holdfast::phase::{Phase, PhaseRunner};
/// # let dir = tempfile::tempdir().unwrap();
/// let runner = PhaseRunner::new(dir.path().join("app.db"));
/// let report = runner.run([Phase::new("a", |_| Ok(())), Phase::new("b", |_| Ok(()))])?;
/// assert_eq!(report.completed, ["a", "b"]);
/// assert!(report.locked);
/// let again = runner.run([Phase::new("a", |_| Ok(())), Phase::new("b", |_| Ok(()))])?;
/// assert_eq!(again.skipped, ["a", "b"]);
/// # Ok::<(), holdfast::Error>(())
/// ```
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
///
/// ```
/// use holdfast::phase::{Phase, PhaseRunner, XattrMode};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
/// runner.xattrs(XattrMode::Off).run([Phase::new("schema-v1", |_| Ok(()))])?;
/// let markers = runner.markers()?;
/// assert_eq!(markers.status, ["schema-v1"]);
/// assert!(markers.stale_temp_files.is_empty());
/// # Ok::<(), holdfast::Error>(())
/// ```
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
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner, XattrMode};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut runner = PhaseRunner::new(dir.path().join("app.db"));
    /// runner.xattrs(XattrMode::Off);
    /// runner.run([Phase::new("schema-v1", |_| Ok(()))])?;
    /// let markers = runner.markers()?;
    /// assert!(markers.contains("schema-v1"));
    /// assert!(!markers.contains("schema-v2"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// assert_eq!(runner.lock_path(), dir.path().join("app.db.lock"));
    /// let report = runner.run([Phase::new("schema-v1", |_| Ok(()))])?;
    /// assert_eq!(report.completed, ["schema-v1"]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
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
    ///
    /// ```
    /// let runner = holdfast::PhaseRunner::new("/srv/app.db/");
    /// assert_eq!(runner.target(), std::path::Path::new("/srv/app.db")); // as Python's Path()
    /// ```
    pub fn target(&self) -> &Path {
        &self.target
    }
    /// `<target><lock_suffix>`.
    ///
    /// ```
    /// let mut runner = holdfast::PhaseRunner::new("/srv/app.db");
    /// assert_eq!(runner.lock_path(), std::path::Path::new("/srv/app.db.lock"));
    /// runner.lock_suffix(".lk");
    /// assert_eq!(runner.lock_path(), std::path::Path::new("/srv/app.db.lk"));
    /// ```
    pub fn lock_path(&self) -> PathBuf {
        suffixed(&self.target, &self.lock_suffix)
    }
    /// `<target><status_suffix>`.
    ///
    /// ```
    /// let runner = holdfast::PhaseRunner::new("/srv/app.db");
    /// assert_eq!(runner.status_path(), std::path::Path::new("/srv/app.db.status"));
    /// ```
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
}

/// Helpers on the runner's options that every operation shares.
impl PhaseRunner {
    pub(super) fn sync_target(&self) -> Result<()> {
        sys::sync_path(&self.target, self.follow_symlinks)
            .map_err(|e| Error::io(IoOp::FsyncMarkers, &self.target, e))
    }
    pub(super) fn xattrs_enabled(&self) -> bool {
        match self.xattrs {
            XattrMode::On => true,
            XattrMode::Off => false,
            XattrMode::Auto => xattr::env_allows_xattrs(),
        }
    }
}

fn suffixed(target: &Path, suffix: &OsString) -> PathBuf {
    let mut s = OsString::from(target.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}
