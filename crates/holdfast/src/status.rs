//! Looking at a lock without taking it.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoOp, Result};
use crate::holder::{self, HolderRecord, Holders, RecordContent};
use crate::mode::Mode;
use crate::sys::{self, FileKind, OpenSpec};

/// What [`status`] found.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// let lock = holdfast::Lock::open(&path)?;
/// let _guard = lock.lock_shared()?;
/// let st = holdfast::status(&path)?;
/// assert_eq!(st.held, Some(holdfast::Mode::Shared));
/// println!("{st}");
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStatus {
    /// The lock file.
    pub path: PathBuf,
    /// Whether the file exists at all.
    pub exists: bool,
    /// `None` when free; otherwise the strongest mode held.
    pub held: Option<Mode>,
    /// Who holds it (empty when free or unknown).
    pub holders: Holders,
    /// The last holder record in the file, even if that holder is gone:
    /// it carries the last fencing token issued.
    pub last_record: Option<HolderRecord>,
}

/// One line for people: `app.lock: free`, `app.lock: exclusive, held by
/// pid 4242 (python3 migrate.py) ...`, `app.lock: does not exist`. Text
/// from the file or `/proc` is escaped, as everywhere holdfast prints it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// assert!(holdfast::status(&path)?.to_string().ends_with("app.lock: does not exist"));
/// let lock = holdfast::Lock::open(&path)?;
/// assert!(holdfast::status(&path)?.to_string().ends_with("app.lock: free"));
/// let _g = lock.lock()?;
/// let line = holdfast::status(&path)?.to_string();
/// assert!(line.contains("app.lock: exclusive, held by"), "{line}");
/// # Ok::<(), holdfast::Error>(())
/// ```
impl std::fmt::Display for LockStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = crate::text::path(&self.path);
        match (self.exists, self.held) {
            (false, _) => write!(f, "{path}: does not exist"),
            (true, None) => write!(f, "{path}: free"),
            (true, Some(mode)) => write!(f, "{path}: {mode}, {}", self.holders),
        }
    }
}

/// Reports whether a lock file is held and by whom, without locking it,
/// creating it, or following a symlink.
///
/// On Linux the answer comes from the kernel's lock table (`/proc/locks`),
/// so it disturbs nobody; elsewhere holdfast probes with a non-blocking
/// shared lock that it releases at once.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.lock");
/// assert!(!holdfast::status(&path)?.exists);
/// let lock = holdfast::Lock::open(&path)?;
/// let guard = lock.lock()?;
/// let st = holdfast::status(&path)?;
/// assert_eq!(st.held, Some(holdfast::Mode::Exclusive));
/// assert_eq!(st.holders.first().unwrap().token, guard.token());
/// # Ok::<(), holdfast::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Symlink`] for a symlink, [`Error::Io`] if the file exists but
/// cannot be opened.
pub fn status(path: impl AsRef<Path>) -> Result<LockStatus> {
    let path = path.as_ref();
    let spec = OpenSpec {
        mode: 0,
        create: false,
        follow_symlinks: false,
    };
    let (file, kind) = match sys::open_lock_file(path, &spec) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockStatus {
                path: path.to_owned(),
                exists: false,
                held: None,
                holders: Holders::new(),
                last_record: None,
            });
        }
        Err(e) => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Symlink {
                    path: path.to_owned(),
                });
            }
            return Err(Error::io(IoOp::Open, path, e));
        }
    };
    let id = sys::file_id(&file).map_err(|e| Error::io(IoOp::Inspect, path, e))?;
    let last_record = match kind {
        FileKind::Other => None,
        _ => match holder::read_record(&file) {
            Ok((RecordContent::Record(r), _)) => Some(r),
            _ => None,
        },
    };
    let held = match sys::kernel_locks(id).map_err(|e| Error::io(IoOp::ReadLockTable, path, e))? {
        Some(locks) if locks.is_empty() => None,
        Some(locks) => Some(if locks.iter().any(|l| l.exclusive) {
            Mode::Exclusive
        } else {
            Mode::Shared
        }),
        None => {
            // No lock table: probe.
            let backend = crate::mode::Backend::Flock;
            if sys::try_lock(&file, backend, Mode::Exclusive)
                .map_err(|e| Error::io(IoOp::Probe, path, e))?
            {
                let _ = sys::unlock(&file, backend);
                None
            } else if sys::try_lock(&file, backend, Mode::Shared)
                .map_err(|e| Error::io(IoOp::Probe, path, e))?
            {
                let _ = sys::unlock(&file, backend);
                Some(Mode::Shared)
            } else {
                Some(Mode::Exclusive)
            }
        }
    };
    let holders = if held.is_some() {
        holder::describe(Some(&file), id)
    } else {
        Holders::new()
    };
    Ok(LockStatus {
        path: path.to_owned(),
        exists: true,
        held,
        holders,
        last_record,
    })
}
