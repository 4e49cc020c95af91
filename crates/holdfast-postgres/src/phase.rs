//! Transactional phases: the work, the lock and the marker in one
//! transaction.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use holdfast::{Error, HolderRecord, Holders, Mode, Result, Wait};
use postgres::Transaction;
use postgres::error::SqlState;

use crate::{Postgres, sql_error};

/// The setup phases of one target, recorded in `holdfast_phases`.
///
/// Each phase runs in its own transaction, which takes
/// `pg_advisory_xact_lock` on the target's key (the same key as the lock
/// [`Postgres::lock`]`(target)`), skips the phase if its marker is there,
/// else hands the transaction to the action and inserts the marker before
/// committing. Run phases in order by calling [`PgPhases::run`] for each.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db/app")?;
/// let phases = pg.phases("app")?;
/// phases.run("schema-v1", |tx, _| tx.batch_execute("CREATE TABLE t (id int)"))?;
/// phases.run("seed-v1", |tx, ctx| {
///     tx.execute("INSERT INTO t VALUES ($1)", &[&(ctx.token() as i32)]).map(drop)
/// })?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PgPhases {
    pg: Postgres,
    target: String,
    key: i64,
    wait: Wait,
    location: PathBuf,
}

/// What [`PgPhases::run`] did.
///
/// ```no_run
/// use holdfast_postgres::{PhaseOutcome, Postgres};
/// let pg = Postgres::new("postgres://deploy@db.internal/app")?;
/// match pg.once("backfill-2024", |tx, _| tx.batch_execute("UPDATE orders SET x = 1"))? {
///     PhaseOutcome::Ran { token } => println!("ran under token {token}"),
///     PhaseOutcome::AlreadyDone { waited } => println!("done elsewhere (waited: {waited})"),
///     _ => {}
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhaseOutcome {
    /// This caller ran the action and committed it with its marker.
    Ran {
        /// The fencing token taken in that transaction.
        token: u64,
    },
    /// The marker was there: another caller did it (`waited`: while this
    /// one waited for the lock).
    AlreadyDone {
        /// Whether this caller had to wait for the lock to find out.
        waited: bool,
    },
}

impl PhaseOutcome {
    /// Whether this caller ran the action.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let outcome = pg.once("backfill-2024", |tx, _| tx.batch_execute("UPDATE orders SET x = 1"))?;
    /// if !outcome.ran() {
    ///     println!("done before, elsewhere");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ran(&self) -> bool {
        matches!(self, PhaseOutcome::Ran { .. })
    }
}

/// What the action of a phase knows besides its transaction.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
/// pg.phases("app-schema")?.run("seed-v1", |tx, ctx| {
///     println!("{}/{} under token {}", ctx.target(), ctx.phase(), ctx.token());
///     tx.batch_execute("INSERT INTO settings VALUES ('seeded')")
/// })?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Debug)]
pub struct PhaseContext {
    target: String,
    phase: String,
    token: u64,
}

impl PhaseContext {
    /// The target.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// pg.phases("app-schema")?.run("seed-v1", |_tx, ctx| {
    ///     assert_eq!(ctx.target(), "app-schema");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn target(&self) -> &str {
        &self.target
    }
    /// The phase name (empty for run-once).
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// pg.phases("app-schema")?.run("seed-v1", |_tx, ctx| {
    ///     println!("running {}", ctx.phase());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn phase(&self) -> &str {
        &self.phase
    }
    /// The fencing token of this run: pass it to resources outside this
    /// database so they can refuse an older holder.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// pg.once("export-2024", |_tx, ctx| {
    ///     println!("export under fencing token {}", ctx.token()); // for the bucket to check
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// A completion marker: a row of `holdfast_phases`.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
/// for m in pg.phases("app-schema")?.markers()? {
///     println!("{} by pid {} on {} at {:?}", m.phase, m.pid, m.host, m.done_at);
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhaseMarker {
    /// The phase (empty: the run-once marker of the target).
    pub phase: String,
    /// When it committed.
    pub done_at: SystemTime,
    /// The fencing token of the run that did it.
    pub token: u64,
    /// Host, pid and command line of the process that did it.
    pub host: String,
    /// Its pid.
    pub pid: i64,
    /// Its command line.
    pub command: String,
}

impl PgPhases {
    pub(crate) fn new(pg: Postgres, target: &str) -> Result<PgPhases> {
        let location = pg.location(target);
        crate::check_name("phase target", target, &location)?;
        Ok(PgPhases {
            key: crate::lock_key(target),
            target: target.to_owned(),
            pg,
            wait: Wait::Forever,
            location,
        })
    }

    /// How long to wait for the lock (default: as long as it takes).
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let mut phases = pg.phases("app-schema")?;
    /// phases.wait(holdfast::Wait::Timeout(std::time::Duration::from_secs(60)));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn wait(&mut self, wait: Wait) -> &mut Self {
        self.wait = wait;
        self
    }

    /// The target.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// assert_eq!(pg.phases("app-schema")?.target(), "app-schema");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `action` as phase `phase` unless it is done: see the type's
    /// docs. The action gets the transaction (its statements commit with
    /// the marker, or roll back with it) and a [`PhaseContext`]; it must
    /// not end the transaction itself.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let phases = pg.phases("app-schema")?;
    /// for (name, sql) in [("users-v1", "CREATE TABLE users (id bigint)"), ("users-v2", "ALTER TABLE users ADD name text")] {
    ///     phases.run(name, |tx, _| tx.batch_execute(sql))?; // each commits with its marker
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::ActionFailed`]: the action returned an error; the
    ///   transaction was rolled back, no marker was written.
    /// - [`Error::WouldBlock`] / [`Error::Timeout`]: the lock was busy
    ///   (as [`PgPhases::wait`] says).
    /// - [`Error::Backend`]: the server, the tables, or the commit failed (a
    ///   failed commit leaves neither the work nor the marker).
    pub fn run<F, E>(&self, phase: &str, action: F) -> Result<PhaseOutcome>
    where
        F: FnOnce(&mut Transaction<'_>, &PhaseContext) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        crate::check_name("phase name", phase, &self.location)?;
        self.run_marker(phase, action)
    }

    pub(crate) fn run_marker<F, E>(&self, phase: &str, action: F) -> Result<PhaseOutcome>
    where
        F: FnOnce(&mut Transaction<'_>, &PhaseContext) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let server = self.pg.server().to_owned();
        let started = Instant::now();
        let (mut client, _) = self.pg.session()?;
        // Fast path: a committed marker is final, no lock needed to trust it.
        if is_done(&mut client, &server, &self.target, phase)? {
            return Ok(PhaseOutcome::AlreadyDone { waited: false });
        }
        let mut tx = client
            .transaction()
            .map_err(|e| sql_error("begin a transaction at", &server, &e))?;
        let key = self.key;
        let free = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
            .map_err(|e| sql_error("take the phase lock at", &server, &e))?
            .get::<_, bool>(0);
        let waited = !free;
        if !free {
            let Some(ms) = wait_millis(self.wait) else {
                drop(tx);
                return Err(Error::WouldBlock {
                    path: self.location.clone(),
                    mode: Mode::Exclusive,
                    holders: self.holders(&mut client),
                });
            };
            // lock_timeout for this wait only, then back to what it was
            // for the action's own statements.
            let wait_sql = format!(
                "SELECT set_config('holdfast.lock_timeout', current_setting('lock_timeout'), true); \
                 SELECT set_config('lock_timeout', '{ms}ms', true); \
                 SELECT pg_advisory_xact_lock({key}); \
                 SELECT set_config('lock_timeout', current_setting('holdfast.lock_timeout'), true)"
            );
            match tx.simple_query(&wait_sql) {
                Ok(_) => {}
                Err(e)
                    if e.as_db_error()
                        .is_some_and(|d| d.code() == &SqlState::LOCK_NOT_AVAILABLE) =>
                {
                    drop(tx);
                    return Err(Error::Timeout {
                        path: self.location.clone(),
                        mode: Mode::Exclusive,
                        waited: started.elapsed(),
                        holders: self.holders(&mut client),
                    });
                }
                Err(e) => return Err(sql_error("wait for the phase lock at", &server, &e)),
            }
        }
        let row = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM holdfast_phases WHERE target = $1 AND phase = $2), \
                 nextval('holdfast_fence')",
                &[&self.target, &phase],
            )
            .map_err(|e| sql_error("read the phase markers (holdfast_phases) at", &server, &e))?;
        if row.get::<_, bool>(0) {
            tx.commit()
                .map_err(|e| sql_error("end the transaction at", &server, &e))?;
            return Ok(PhaseOutcome::AlreadyDone { waited });
        }
        let token = row.get::<_, i64>(1) as u64;
        let ctx = PhaseContext {
            target: self.target.clone(),
            phase: phase.to_owned(),
            token,
        };
        if let Err(e) = action(&mut tx, &ctx) {
            // Dropping the transaction rolls it back: no work, no marker.
            drop(tx);
            return Err(Error::ActionFailed {
                path: self.location.clone(),
                name: phase.to_owned(),
                source: e.into(),
            });
        }
        let me = HolderRecord::for_this_process(Mode::Exclusive, token);
        tx.execute(
            "INSERT INTO holdfast_phases (target, phase, token, host, pid, command) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &self.target,
                &phase,
                &(token as i64),
                &me.host,
                &i64::from(me.pid),
                &me.command,
            ],
        )
        .map_err(|e| sql_error("insert the phase marker (holdfast_phases) at", &server, &e))?;
        tx.commit().map_err(|e| {
            sql_error(
                "commit the phase (its work and marker were rolled back) at",
                &server,
                &e,
            )
        })?;
        Ok(PhaseOutcome::Ran { token })
    }

    /// Whether `phase` is marked done (`""`: the run-once marker).
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// if !pg.phases("app-schema")?.is_done("users-v2")? {
    ///     println!("schema not migrated yet");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server cannot be asked.
    pub fn is_done(&self, phase: &str) -> Result<bool> {
        let (mut client, _) = self.pg.session()?;
        is_done(&mut client, self.pg.server(), &self.target, phase)
    }

    /// The markers of this target, oldest first.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// for m in pg.phases("app-schema")?.markers()? {
    ///     println!("{} done by {} (token {})", m.phase, m.host, m.token);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server cannot be asked.
    pub fn markers(&self) -> Result<Vec<PhaseMarker>> {
        let (mut client, _) = self.pg.session()?;
        let rows = client
            .query(
                "SELECT phase, done_at, token, host, pid, command FROM holdfast_phases \
                 WHERE target = $1 ORDER BY done_at, phase",
                &[&self.target],
            )
            .map_err(|e| sql_error("read the phase markers at", self.pg.server(), &e))?;
        Ok(rows
            .iter()
            .map(|r| PhaseMarker {
                phase: r.get(0),
                done_at: r.get(1),
                token: r.get::<_, i64>(2) as u64,
                host: r.get(3),
                pid: r.get(4),
                command: r.get(5),
            })
            .collect())
    }

    /// Removes the marker of `phase` (`""`: run-once) under the lock, so
    /// the next run does it again. Returns whether there was one.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// if pg.phases("app-schema")?.reset("seed-v1")? {
    ///     println!("seed-v1 will run again");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgPhases::run`] for the lock ([`PgPhases::wait`] applies);
    /// [`Error::Backend`] for the statement.
    pub fn reset(&self, phase: &str) -> Result<bool> {
        Ok(!self.remove(Some(phase))?.is_empty())
    }

    /// Removes every phase marker of this target (not its run-once marker,
    /// `""`) under the lock, in one transaction; returns the phases that
    /// were marked, oldest first.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://localhost/app")?;
    /// for phase in pg.phases("app-db")?.reset_all()? {
    ///     println!("removed {phase}");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgPhases::reset`].
    pub fn reset_all(&self) -> Result<Vec<String>> {
        self.remove(None)
    }

    /// Deletes the marker of `phase` (all phase markers for `None`) in a
    /// transaction holding the target's lock; the phases removed.
    fn remove(&self, phase: Option<&str>) -> Result<Vec<String>> {
        let server = self.pg.server().to_owned();
        let started = Instant::now();
        let (mut client, _) = self.pg.session()?;
        let mut tx = client
            .transaction()
            .map_err(|e| sql_error("begin a transaction at", &server, &e))?;
        if let Some(timed_out) = xact_lock(&mut tx, self.key, self.wait, &server)? {
            drop(tx);
            let holders = self.holders(&mut client);
            return Err(if timed_out {
                Error::Timeout {
                    path: self.location.clone(),
                    mode: Mode::Exclusive,
                    waited: started.elapsed(),
                    holders,
                }
            } else {
                Error::WouldBlock {
                    path: self.location.clone(),
                    mode: Mode::Exclusive,
                    holders,
                }
            });
        }
        let rows = match phase {
            Some(p) => tx.query(
                "DELETE FROM holdfast_phases WHERE target = $1 AND phase = $2 RETURNING phase",
                &[&self.target, &p],
            ),
            None => tx.query(
                "WITH gone AS (DELETE FROM holdfast_phases WHERE target = $1 AND phase <> '' \
                 RETURNING phase, done_at) SELECT phase FROM gone ORDER BY done_at, phase",
                &[&self.target],
            ),
        }
        .map_err(|e| sql_error("remove the phase markers at", &server, &e))?;
        tx.commit()
            .map_err(|e| sql_error("commit at", &server, &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn holders(&self, client: &mut postgres::Client) -> Holders {
        crate::lock::holders_where(client, self.pg.server(), Some(self.key))
            .map(|v| Holders::from(v.iter().map(crate::PgHolder::to_holder).collect::<Vec<_>>()))
            .unwrap_or_default()
    }
}

fn is_done(client: &mut postgres::Client, server: &str, target: &str, phase: &str) -> Result<bool> {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM holdfast_phases WHERE target = $1 AND phase = $2)",
            &[&target, &phase],
        )
        .map(|r| r.get(0))
        .map_err(|e| sql_error("read the phase markers (holdfast_phases) at", server, &e))
}

/// Takes the advisory lock `key` for the rest of `tx`, waiting as `wait`
/// says: `None` once held, `Some(timed_out)` if it is busy (`false`: not
/// waited for, `true`: the wait ran out).
fn xact_lock(tx: &mut Transaction<'_>, key: i64, wait: Wait, server: &str) -> Result<Option<bool>> {
    let free = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .map_err(|e| sql_error("take the phase lock at", server, &e))?
        .get::<_, bool>(0);
    if free {
        return Ok(None);
    }
    let Some(ms) = wait_millis(wait) else {
        return Ok(Some(false));
    };
    let sql = format!(
        "SELECT set_config('lock_timeout', '{ms}ms', true); SELECT pg_advisory_xact_lock({key})"
    );
    match tx.simple_query(&sql) {
        Ok(_) => Ok(None),
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| d.code() == &SqlState::LOCK_NOT_AVAILABLE) =>
        {
            Ok(Some(true))
        }
        Err(e) => Err(sql_error("wait for the phase lock at", server, &e)),
    }
}

/// `None`: try only; `Some(0)`: forever; else the lock_timeout in ms.
fn wait_millis(wait: Wait) -> Option<u128> {
    let d = match wait {
        Wait::NoWait => return None,
        Wait::Forever => return Some(0),
        Wait::Timeout(d) => d,
        Wait::Deadline(t) => t.saturating_duration_since(Instant::now()),
    };
    if d.is_zero() {
        None
    } else {
        Some(d.as_micros().div_ceil(1000).max(1))
    }
}
