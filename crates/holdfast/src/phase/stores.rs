//! The two marker stores phaselock uses, as [`CompletionStore`]s: what the
//! generic runs ([`PhaseRunner::run_with`](super::PhaseRunner::run_with),
//! [`RunOnce::run_with`](crate::once::RunOnce::run_with)) record completion
//! in when the markers live beside a file.
//!
//! Same formats as [`PhaseRunner::run`](super::PhaseRunner::run): a
//! status file of one name per line, replaced atomically and durably, and
//! `user.phaselock.<name>` extended attributes on a target. Both check the
//! held lock just before they write, so a guard that reports itself lost
//! (a broken lock file, a deleted kernel lock file) marks nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{status_file, validate_name, xattr};
use crate::backend::{CompletionStore, HeldLock};
use crate::error::{Error, IoOp, Result};
use crate::sys;

/// Markers in a phaselock status file (`<target>.status`): one completed
/// key per line.
///
/// ```
/// use holdfast::{CompletionStore, Mode, Wait};
/// use holdfast::phase::StatusFileStore;
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.db.lock"))?;
/// let store = StatusFileStore::new(dir.path().join("app.db.status"));
/// let held = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// store.mark_done("schema-v1", &held)?;
/// assert!(store.is_done("schema-v1")?);
/// assert_eq!(std::fs::read_to_string(store.path())?, "schema-v1\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StatusFileStore {
    path: PathBuf,
    /// Serialises this process's read-modify-write cycles (other processes
    /// are excluded by the lock the caller holds).
    write: Mutex<()>,
}

impl StatusFileStore {
    /// A store in the status file at `path` (created on the first mark).
    ///
    /// ```
    /// let store = holdfast::phase::StatusFileStore::new("/srv/app.db.status");
    /// assert_eq!(store.path(), std::path::Path::new("/srv/app.db.status"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StatusFileStore {
            path: path.into(),
            write: Mutex::new(()),
        }
    }

    /// The status file.
    ///
    /// ```
    /// let store = holdfast::phase::StatusFileStore::new("/srv/app.db.status");
    /// println!("markers live in {}", store.path().display());
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> Result<Vec<String>> {
        Ok(status_file::read(&self.path)?.unwrap_or_default())
    }

    fn check_key(&self, key: &str) -> Result<()> {
        validate_name("phase name", key).map_err(|reason| Error::InvalidInput {
            path: self.path.clone(),
            reason,
        })
    }
}

impl StatusFileStore {
    /// Whether `key` is recorded ([`CompletionStore::is_done`], callable
    /// without naming a guard type).
    ///
    /// ```
    /// let store = holdfast::phase::StatusFileStore::new("/nonexistent/app.db.status");
    /// assert!(!store.is_done("schema-v1")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad key, [`Error::Corrupt`],
    /// [`Error::Symlink`], [`Error::Io`] if the file cannot be read.
    pub fn is_done(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        Ok(self.names()?.iter().any(|n| n == key))
    }

    /// Every key recorded, in order ([`CompletionStore::done_keys`]).
    ///
    /// ```
    /// let store = holdfast::phase::StatusFileStore::new("/nonexistent/app.db.status");
    /// assert!(store.done_keys()?.is_empty());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_done`](Self::is_done).
    pub fn done_keys(&self) -> Result<Vec<String>> {
        self.names()
    }

    /// Forgets `key` ([`CompletionStore::clear`]); call it under the lock
    /// the writers take.
    ///
    /// ```
    /// let store = holdfast::phase::StatusFileStore::new("/nonexistent/app.db.status");
    /// assert!(!store.clear("schema-v1")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_done`](Self::is_done), and [`Error::Io`] if the file cannot
    /// be replaced.
    pub fn clear(&self, key: &str) -> Result<bool> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = self.names()?;
        let before = names.len();
        names.retain(|n| n != key);
        if names.len() == before {
            return Ok(false);
        }
        let data = status_file::serialize(names.iter().map(String::as_str));
        status_file::write_atomic(&self.path, &data)?;
        Ok(true)
    }
}

impl<G: HeldLock> CompletionStore<G> for StatusFileStore {
    fn is_done(&self, key: &str) -> Result<bool> {
        StatusFileStore::is_done(self, key)
    }
    fn done_keys(&self) -> Result<Vec<String>> {
        StatusFileStore::done_keys(self)
    }
    fn mark_done(&self, key: &str, held: &G) -> Result<()> {
        self.check_key(key)?;
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = self.names()?;
        if names.iter().any(|n| n == key) {
            return Ok(());
        }
        names.push(key.to_owned());
        let data = status_file::serialize(names.iter().map(String::as_str));
        if data.len() > super::MAX_STATUS_BYTES {
            return Err(Error::InvalidInput {
                path: self.path.clone(),
                reason: format!(
                    "the markers would need {} bytes, more than the {} bytes phaselock reads",
                    data.len(),
                    super::MAX_STATUS_BYTES
                ),
            });
        }
        held.check()?;
        status_file::remove_stale_temps(&self.path);
        status_file::write_atomic(&self.path, &data)
    }
    fn clear(&self, key: &str) -> Result<bool> {
        StatusFileStore::clear(self, key)
    }
}

/// Markers as extended attributes on a target (phaselock's preferred
/// store): `<namespace>.<key>` with the value `1`, namespace
/// `user.phaselock` by default. Linux and other systems with user xattrs;
/// elsewhere every call is [`Error::Io`] with `Unsupported`.
///
/// ```
/// use holdfast::{CompletionStore, Mode, Wait};
/// use holdfast::phase::XattrStore;
/// # let dir = tempfile::tempdir().unwrap();
/// let target = dir.path().join("app.db");
/// std::fs::write(&target, b"")?;
/// let store = XattrStore::new(&target);
/// let lock = holdfast::Lock::open(dir.path().join("app.db.lock"))?;
/// let held = lock.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// match store.mark_done("schema-v1", &held) {
///     Ok(()) => assert!(store.is_done("schema-v1")?),
///     Err(e) => println!("no user xattrs here: {e}"), // tmpfs without xattrs, ...
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct XattrStore {
    target: PathBuf,
    namespace: String,
}

impl XattrStore {
    /// A store on `target`, namespace `user.phaselock`.
    ///
    /// ```
    /// let s = holdfast::phase::XattrStore::new("/srv/app.db");
    /// assert_eq!(s.target(), std::path::Path::new("/srv/app.db"));
    /// ```
    pub fn new(target: impl Into<PathBuf>) -> Self {
        XattrStore {
            target: target.into(),
            namespace: "user.phaselock".into(),
        }
    }

    /// Uses another attribute namespace (as
    /// [`PhaseRunner::namespace`](super::PhaseRunner::namespace)).
    ///
    /// ```
    /// let mut s = holdfast::phase::XattrStore::new("/srv/app.db");
    /// s.namespace("user.myapp");
    /// ```
    pub fn namespace(&mut self, namespace: &str) -> &mut Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// The file the attributes are on.
    ///
    /// ```
    /// let store = holdfast::phase::XattrStore::new("/srv/app.db");
    /// assert_eq!(store.target(), std::path::Path::new("/srv/app.db"));
    /// ```
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn io(&self, op: IoOp, e: std::io::Error) -> Error {
        Error::io(op, &self.target, e)
    }

    fn key(&self, key: &str) -> Result<String> {
        validate_name("phase name", key).map_err(|reason| Error::InvalidInput {
            path: self.target.clone(),
            reason,
        })?;
        Ok(xattr::key(&self.namespace, key))
    }
}

impl XattrStore {
    /// Whether `key` is marked ([`CompletionStore::is_done`], callable
    /// without naming a guard type). A missing target has no markers.
    ///
    /// ```
    /// let store = holdfast::phase::XattrStore::new("/nonexistent/app.db");
    /// assert!(!store.is_done("schema-v1")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad key; [`Error::Io`] when the
    /// filesystem refuses (no user xattrs).
    pub fn is_done(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        xattr::is_marked(&self.target, &k, false).map_err(|e| self.io(IoOp::Read, e))
    }
    /// Every marked key ([`CompletionStore::done_keys`]).
    ///
    /// ```
    /// let store = holdfast::phase::XattrStore::new("/nonexistent/app.db");
    /// assert!(store.done_keys()?.is_empty());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_done`](Self::is_done).
    pub fn done_keys(&self) -> Result<Vec<String>> {
        let names = match sys::xattr_list(&self.target, false) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(IoOp::List, e)),
        };
        let prefix = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}.", self.namespace)
        };
        Ok(names
            .into_iter()
            .filter_map(|n| String::from_utf8(n).ok())
            .filter_map(|n| n.strip_prefix(prefix.as_str()).map(str::to_owned))
            .filter(|n| n != xattr::PROBE_NAME)
            .collect())
    }
    /// Removes the marker of `key` ([`CompletionStore::clear`]).
    ///
    /// ```
    /// let store = holdfast::phase::XattrStore::new("/nonexistent/app.db");
    /// assert!(!store.clear("schema-v1")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_done`](Self::is_done).
    pub fn clear(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        match sys::xattr_remove(&self.target, &k, false) {
            Ok(was) => Ok(was),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(IoOp::RemoveMarkerXattr, e)),
        }
    }
}

impl<G: HeldLock> CompletionStore<G> for XattrStore {
    fn is_done(&self, key: &str) -> Result<bool> {
        XattrStore::is_done(self, key)
    }
    fn done_keys(&self) -> Result<Vec<String>> {
        XattrStore::done_keys(self)
    }
    fn mark_done(&self, key: &str, held: &G) -> Result<()> {
        let k = self.key(key)?;
        held.check()?;
        sys::xattr_set(&self.target, &k, b"1", false).map_err(|e| self.io(IoOp::Write, e))?;
        sys::sync_path(&self.target, false).map_err(|e| self.io(IoOp::FsyncMarkers, e))
    }
    fn clear(&self, key: &str) -> Result<bool> {
        XattrStore::clear(self, key)
    }
}
