//! Checks made before anything is locked or written: the runner's
//! options, the phase names and `attr_name`s, and what the target, lock
//! and status paths are.

use std::collections::BTreeMap;
use std::path::Path;

use super::{MAX_STATUS_BYTES, Phase, PhaseRunner, status_file, xattr};
use crate::error::{Error, IoOp, Result};
use crate::sys;

impl PhaseRunner {
    fn invalid(&self, reason: String) -> Error {
        Error::InvalidInput {
            path: self.target.clone(),
            reason,
        }
    }

    pub(super) fn check_options(&self) -> Result<()> {
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

    pub(super) fn validate(&self, phases: &[Phase<'_>]) -> Result<()> {
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
    pub(super) fn check_target(&self) -> Result<()> {
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
