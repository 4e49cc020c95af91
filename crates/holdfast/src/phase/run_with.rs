//! Phases over any backend: [`PhaseRunner::run_with`] takes a
//! [`LockBackend`] and a [`CompletionStore`] instead of the target's
//! `<target>.lock` and markers, with the semantics of
//! [`PhaseRunner::run`].

use super::{ActionContext, Phase, PhaseRunner, RunReport};
use crate::backend::{CompletionStore, HeldLock, LockBackend};
use crate::error::{Error, Result};
use crate::mode::Mode;

impl PhaseRunner {
    /// Runs the phases that `store` does not record as done, in order,
    /// under an exclusive hold of `lock`, and records each in `store`
    /// right after its action succeeds: [`run`](Self::run) over any
    /// backend (etcd, PostgreSQL, a lock file, a test double).
    ///
    /// The runner's [`wait`](Self::wait) and
    /// [`strict_marker_locking`](Self::strict_marker_locking) apply; its
    /// target names the run in errors and in [`ActionContext::target`];
    /// the file options (suffixes, xattrs, permissions) do not apply. The
    /// store keys are the phase names. Each mark is
    /// [fenced](CompletionStore::mark_done): a runner whose lock was lost
    /// meanwhile gets [`Error::Lost`] and marks nothing.
    ///
    /// ```
    /// use holdfast::phase::{Phase, PhaseRunner, StatusFileStore};
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// // Phases guarded by an NFS-safe lock file instead of a kernel lock:
    /// let lock = LockFile::open(dir.path().join("app.db.lock"), Protocol::Link)?;
    /// let store = StatusFileStore::new(dir.path().join("app.db.status"));
    /// let runner = PhaseRunner::new(dir.path().join("app.db"));
    /// let r = runner.run_with(&lock, &store, [Phase::new("schema-v1", |_| Ok(()))])?;
    /// assert_eq!(r.completed, ["schema-v1"]);
    /// let again = runner.run_with(&lock, &store, [Phase::new("schema-v1", |_| unreachable!())])?;
    /// assert_eq!((again.skipped.len(), again.locked), (1, false));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for bad or duplicate phase names (nothing
    /// was run); the errors of [`LockBackend::acquire`] (contention named,
    /// [`Error::Backend`], ...); the errors of the store;
    /// [`Error::ActionFailed`] when an action fails (earlier phases keep
    /// their marks); [`Error::Lost`] when the lock was lost before a mark.
    pub fn run_with<'a, B, S>(
        &self,
        lock: &B,
        store: &S,
        phases: impl IntoIterator<Item = Phase<'a>>,
    ) -> Result<RunReport>
    where
        B: LockBackend,
        S: CompletionStore<B::Guard>,
    {
        let phases: Vec<Phase<'a>> = phases.into_iter().collect();
        self.validate(&phases)?;
        let report = |completed, skipped, locked, token| RunReport {
            completed,
            skipped,
            xattrs_available: false,
            lock_path: lock.location().to_path_buf(),
            status_paths: Vec::new(),
            locked,
            token,
        };
        if phases.is_empty() {
            return Ok(report(Vec::new(), Vec::new(), false, None));
        }
        if !self.strict {
            let mut all = true;
            for p in &phases {
                if !store.is_done(&p.name)? {
                    all = false;
                    break;
                }
            }
            if all {
                let names = phases.into_iter().map(|p| p.name).collect();
                return Ok(report(Vec::new(), names, false, None));
            }
        }
        let guard = lock.acquire(Mode::Exclusive, self.wait)?;
        let token = guard.token();
        let mut completed = Vec::new();
        let mut skipped = Vec::new();
        for phase in phases {
            if store.is_done(&phase.name)? {
                skipped.push(phase.name);
                continue;
            }
            let ctx = ActionContext {
                name: &phase.name,
                target: &self.target,
                lock_path: lock.location(),
                token,
                #[cfg(unix)]
                lock_fd: None,
            };
            if let Err(source) = (phase.action)(&ctx) {
                return Err(Error::ActionFailed {
                    path: self.target.clone(),
                    name: phase.name,
                    source,
                });
            }
            store.mark_done(&phase.name, &guard)?;
            completed.push(phase.name);
        }
        if let Err(e) = guard.release() {
            // Every mark was fenced; nothing to undo.
            tracing::warn!(path = %lock.location().display(), error = %e,
                "could not release the phase lock cleanly");
        }
        Ok(report(completed, skipped, true, token))
    }
}
