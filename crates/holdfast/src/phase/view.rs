//! Marker merging: how one check or one locked run sees a target's two
//! stores (xattrs and the status file), reads them as a union, promotes
//! markers into the store phaselock reads and writes new ones.

use std::path::PathBuf;

use super::{MAX_STATUS_BYTES, MarkerStore, Phase, PhaseRunner, status_file, xattr};
use crate::error::{Error, IoOp, Result};
use crate::sys;

/// The markers of one target as seen during one check or one locked run:
/// which store is primary, and the status file's entries, read once.
pub(super) struct View<'r> {
    runner: &'r PhaseRunner,
    /// Markers are written to xattrs (not switched off, not refused by the filesystem, no
    /// write failure yet).
    pub(super) xattr_primary: bool,
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
    pub(super) fn new(runner: &'r PhaseRunner) -> Self {
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
    pub(super) fn status_paths(&mut self) -> Vec<PathBuf> {
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
    pub(super) fn find(&mut self, phase: &Phase<'_>) -> Result<Option<MarkerStore>> {
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

    pub(super) fn all_marked(&mut self, phases: &[Phase<'_>]) -> Result<bool> {
        for p in phases {
            if self.find(p)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Under the lock: a marker found only in the store phaselock would not
    /// read is copied into the one it would. Best effort.
    pub(super) fn promote(&mut self, phase: &Phase<'_>, found: MarkerStore) {
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
    pub(super) fn mark(&mut self, name: &str, key: &str, value: &[u8]) -> Result<MarkerStore> {
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
