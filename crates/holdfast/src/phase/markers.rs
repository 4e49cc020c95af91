//! Read-only questions about a target's markers, without the lock:
//! [`PhaseRunner::is_marked`], [`PhaseRunner::selected_store`] and
//! [`PhaseRunner::markers`].

#[cfg(doc)]
use super::XattrMode;
use super::view::View;
use super::{MarkerStore, Markers, Phase, PhaseRunner, status_file, xattr};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::sys;

impl PhaseRunner {
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

    fn strip_namespace<'n>(&self, key: &'n str) -> Option<&'n str> {
        if self.namespace.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.namespace.as_str())?.strip_prefix('.')
    }
}
