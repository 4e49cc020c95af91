//! [`PhaseRunner::run`]: the locked run over the target's own lock file
//! and markers, and the lock helpers the other operations share.

use std::path::Path;

use super::view::View;
use super::{ActionContext, Phase, PhaseRunner, RunReport};
use crate::error::{Error, Result};
use crate::lock::{Lock, LockGuard};
use crate::mode::Mode;

impl PhaseRunner {
    /// Runs the phases that are not marked done, in order, and marks each
    /// right after its action succeeds. See the [module docs](super) for
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

    pub(super) fn open_lock(&self, lock_path: &Path) -> Result<Lock> {
        Lock::options()
            .permissions(self.lock_permissions)
            .follow_symlinks(self.follow_symlinks)
            .open(lock_path)
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
}

pub(super) fn release(guard: LockGuard<'_>, lock_path: &Path) {
    if let Err(e) = guard.unlock() {
        // The kernel refusing an unlock leaves nothing to undo: the lock
        // goes when the file is closed, which happens right after.
        tracing::warn!(path = %lock_path.display(), error = %e, "unlock failed");
    }
}
