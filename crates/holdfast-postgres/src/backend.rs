//! holdfast's public traits over PostgreSQL: [`PgLock`] is a
//! [`LockBackend`], [`PgGuard`] a [`HeldLock`], and [`PgStore`] a
//! [`CompletionStore`], so `holdfast::PhaseRunner::run_with` and
//! `holdfast::once::RunOnce::run_with` run over PostgreSQL too.

use std::path::Path;

use holdfast::{CompletionStore, HeldLock, LockBackend, Mode, Result, Wait};

use crate::{PgGuard, PgLock, PgPhases, Postgres};

impl LockBackend for PgLock {
    type Guard = PgGuard;

    fn location(&self) -> &Path {
        PgLock::location(self)
    }

    fn acquire(&self, mode: Mode, wait: Wait) -> Result<PgGuard> {
        PgLock::acquire(self, mode, wait)
    }
}

impl HeldLock for PgGuard {
    fn mode(&self) -> Mode {
        PgGuard::mode(self)
    }

    fn token(&self) -> Option<u64> {
        Some(PgGuard::token(self))
    }

    fn check(&self) -> Result<()> {
        PgGuard::check(self)
    }

    fn release(self) -> Result<()> {
        PgGuard::release(self)
    }
}

/// Completion markers in `holdfast_phases`, as a [`CompletionStore`] for
/// holdfast's generic phase runner and run-once.
///
/// [`mark_done`](CompletionStore::mark_done) goes through the guard's own
/// session, in one statement that first checks that the session still
/// holds the lock ([`PgGuard::mark_done`]): a runner whose lock was lost
/// marks nothing. (The phase's work itself is not in that transaction; for
/// SQL work use [`PgPhases::run`], where it is.)
///
/// ```no_run
/// use holdfast::phase::{Phase, PhaseRunner};
/// use holdfast_postgres::{PgStore, Postgres};
///
/// let pg = Postgres::new("postgres://deploy@db/app")?;
/// let lock = pg.lock("app")?;
/// let store = PgStore::phases(&pg, "app")?;
/// PhaseRunner::new("app").run_with(&lock, &store, [Phase::new("seed", |ctx| {
///     println!("fencing token {:?}", ctx.token());
///     Ok(())
/// })])?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PgStore {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Keys are phase names of one target.
    Phases(PgPhases),
    /// Keys are run-once keys: the row (KEY, '').
    Once(Postgres),
}

impl PgStore {
    /// The phases of `target`: a key is a phase name.
    ///
    /// ```no_run
    /// use holdfast::{CompletionStore, LockBackend, Mode, Wait};
    /// use holdfast_postgres::{PgStore, Postgres};
    /// let pg = Postgres::new("postgres://deploy@db.internal/app")?;
    /// let store = PgStore::phases(&pg, "app-schema")?;
    /// let lock = pg.lock("app-schema")?;
    /// let held = LockBackend::acquire(&lock, Mode::Exclusive, Wait::Forever)?;
    /// if !store.is_done("seed-v1")? {
    ///     // ... seed, then mark through the session that holds the lock:
    ///     store.mark_done("seed-v1", &held)?;
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`holdfast::Error::InvalidInput`] for a bad target name.
    pub fn phases(pg: &Postgres, target: &str) -> Result<PgStore> {
        Ok(PgStore {
            kind: Kind::Phases(pg.phases(target)?),
        })
    }

    /// Run-once keys: a key `K` is done when the row `(K, '')` is there,
    /// as [`Postgres::once`] and `holdfast once --backend postgres://`
    /// record it. Use it with the lock named `K`.
    ///
    /// ```no_run
    /// use holdfast::CompletionStore;
    /// use holdfast_postgres::{PgGuard, PgStore, Postgres};
    /// let pg = Postgres::new("postgres://deploy@db.internal/app")?;
    /// let store = PgStore::once(&pg);
    /// let store: &dyn CompletionStore<PgGuard> = &store;
    /// println!("backfill done: {}", store.is_done("backfill-2024")?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn once(pg: &Postgres) -> PgStore {
        PgStore {
            kind: Kind::Once(pg.clone()),
        }
    }

    /// (target, phase) of `key`.
    fn row<'a>(&'a self, key: &'a str) -> Result<(PgPhases, &'a str)> {
        match &self.kind {
            Kind::Phases(p) => Ok((p.clone(), key)),
            Kind::Once(pg) => Ok((pg.phases(key)?, "")),
        }
    }
}

impl CompletionStore<PgGuard> for PgStore {
    fn is_done(&self, key: &str) -> Result<bool> {
        let (phases, phase) = self.row(key)?;
        phases.is_done(phase)
    }

    fn done_keys(&self) -> Result<Vec<String>> {
        match &self.kind {
            Kind::Phases(p) => Ok(p
                .markers()?
                .into_iter()
                .filter(|m| !m.phase.is_empty())
                .map(|m| m.phase)
                .collect()),
            Kind::Once(pg) => pg.once_keys(),
        }
    }

    fn mark_done(&self, key: &str, held: &PgGuard) -> Result<()> {
        let (phases, phase) = self.row(key)?;
        held.mark_done(phases.target(), phase)
    }

    fn clear(&self, key: &str) -> Result<bool> {
        let (phases, phase) = self.row(key)?;
        phases.reset(phase)
    }
}
