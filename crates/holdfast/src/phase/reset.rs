//! Removing markers under the lock: [`PhaseRunner::unmark`],
//! [`PhaseRunner::reset`] and [`PhaseRunner::discard_status_markers`].

use super::runner::release;
use super::{Markers, Phase, PhaseRunner, status_file};
use crate::error::{Error, IoOp, Result};
use crate::mode::Mode;
use crate::sys;

impl PhaseRunner {
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
}
