//! holdfast's locks, setup phases and run-once over PostgreSQL.
//!
//! Many teams already run PostgreSQL and have one job that must run once
//! across a fleet: the schema migration at deploy. This crate gives them
//! holdfast's primitives without another service:
//!
//! - **Locks on a name** ([`Postgres::lock`]): exclusive and shared
//!   session-level advisory locks (`pg_advisory_lock`,
//!   `pg_advisory_lock_shared`) on a 64-bit key derived from the name
//!   ([`lock_key`]), waited for in the server (no polling), with timeouts
//!   that leave nothing held, a fencing token per acquisition, a holder
//!   record naming host, pid, command and backend, and lost-lock detection.
//! - **Transactional phases** ([`Postgres::phases`], [`Postgres::once`]):
//!   the action runs inside the transaction that holds
//!   `pg_advisory_xact_lock` and inserts the completion marker, so a
//!   migration's SQL and its "done" marker commit together or not at all.
//!
//! ```no_run
//! use holdfast_postgres::Postgres;
//!
//! let pg = Postgres::new("postgres://app@db.internal/app")?;
//! let outcome = pg.phases("app-schema")?.run("create-users-v1", |tx, _ctx| {
//!     tx.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
//! })?;
//! println!("{outcome:?}"); // Ran { token: 7 } here, AlreadyDone elsewhere
//!
//! let lock = pg.lock("jobs/nightly")?;
//! let guard = lock.lock()?;          // exclusive; waits in the server
//! println!("fencing token {}", guard.token());
//! guard.check()?;                    // Err(Lost) if the session died
//! guard.release()?;
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! The public traits of `holdfast` are implemented too: [`PgLock`] is a
//! [`holdfast::LockBackend`] (guard [`PgGuard`], a [`holdfast::HeldLock`]
//! with a fencing token) and [`PgStore`] a [`holdfast::CompletionStore`],
//! so `PhaseRunner::run_with` and `RunOnce::run_with` work over PostgreSQL.
//!
//! # Guarantees, per form
//!
//! **Transaction lock (phases, run-once).** `pg_advisory_xact_lock`, the
//! action's statements and the marker `INSERT` are one transaction. The
//! lock ends only at `COMMIT`/`ROLLBACK` or when the backend dies, and a
//! backend that lost its client can never commit: either the work and its
//! marker are both committed, or neither is. A killed or failed action
//! leaves no marker and none of its transactional work (DDL included); the
//! next runner does it again, exactly once. This is the strongest form: no
//! lease, no clock, no fencing needed for work inside this database.
//! Statements that cannot run in a transaction (`CREATE INDEX
//! CONCURRENTLY`, `VACUUM`, some `ALTER TYPE`) need the session form.
//!
//! **Session lock ([`PgLock`], and the CLI's `run`, `once` and `phase`
//! with a shell command).** The lock lives as long as the database session
//! that took it. Work done *outside* that session (a shell command, writes
//! to another system) is not covered by a transaction: if the session
//! ends while the work goes on (`pg_terminate_backend`, a server restart,
//! a network partition once TCP gives up), another process gets the lock
//! and both work at once. [`PgGuard::check`] then reports
//! [`Error::Lost`], markers are written only through
//! the session that still holds the lock ([`PgGuard::mark_done`] fails
//! otherwise), and the fencing token ([`PgGuard::token`],
//! `HOLDFAST_FENCING_TOKEN`) lets the resource itself refuse a stale
//! holder. The CLI's shell-command phases commit their marker after the
//! command exits 0, in a statement that first checks the lock is still
//! held by that session.
//!
//! # Connection loss
//!
//! A holder that dies (even `kill -9`) closes its socket; the server ends
//! the session and frees its locks within milliseconds. A holder cut off
//! by the network is noticed only when TCP gives up: set
//! `tcp_keepalives_idle`/`tcp_user_timeout` on the server (or
//! `keepalives_idle` in the URL). holdfast sets
//! `client_connection_check_interval` (PostgreSQL 14+) on its sessions so
//! that a waiter whose client died is noticed while it still waits, rather
//! than when it is granted the lock.
//!
//! # PgBouncer and other poolers
//!
//! Session advisory locks do **not** survive transaction pooling
//! (PgBouncer `pool_mode = transaction` or `statement`): the lock is taken
//! by one server connection and the next statement may run on another.
//! holdfast notices a backend pid that changes between the lock and the
//! holder record and refuses with an error saying so; connect to
//! PostgreSQL directly (or through session pooling) for locks. Transaction
//! phases work through any pooler, since everything happens in one
//! transaction.
//!
//! # Locks and names
//!
//! Advisory locks belong to one database: the same name in two databases
//! of one server is two locks. Names are 1 to [`MAX_NAME_LEN`] bytes of
//! UTF-8 without NUL; see [`lock_key`] for the key and collisions. The
//! tables are [`SCHEMA_SQL`], created on first use.

mod backend;
mod config;
/// The library's documentation check, run on this crate's sources: every
/// public function has an example, every fallible one `# Errors`.
#[cfg(test)]
#[path = "../../holdfast/src/doc_coverage.rs"]
mod doc_coverage;
mod key;
mod lock;
mod phase;
mod schema;
#[cfg(feature = "tls")]
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use holdfast::{Error, Result};

pub use backend::PgStore;
pub use config::{DEFAULT_CONNECT_TIMEOUT, ENV_VARS};
pub use key::{MAX_NAME_LEN, lock_key};
pub use lock::{PgGuard, PgHolder, PgLock};
pub use phase::{PgPhases, PhaseContext, PhaseMarker, PhaseOutcome};
pub use postgres::{Client, Transaction};
pub use schema::SCHEMA_SQL;

/// A PostgreSQL server (one database on it) to take locks and record
/// phases in. Cheap to clone; each lock acquisition and phase opens its
/// own session.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgresql://deploy@db:5432/app?sslmode=require")?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Postgres {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: config::Target,
}

impl Postgres {
    /// The server at `url` (`postgres://USER:PASSWORD@HOST:PORT/DB?...`,
    /// `postgresql://...`, or libpq's `host=... user=...`), with what it
    /// leaves out taken from the `PG*` environment variables ([`ENV_VARS`])
    /// and libpq's defaults (the Unix socket in `/var/run/postgresql` or
    /// `/tmp`, the login name as user and database). `sslmode` takes
    /// libpq's values; `prefer` and `require` encrypt without checking the
    /// certificate (as libpq), `verify-ca`/`verify-full` check it against
    /// the system's roots or `sslrootcert`. Nothing is connected yet.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy:secret@db.internal/app")?;
    /// assert!(!pg.server().contains("secret"), "messages never show the password");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a URL that does not parse or a bad `PG*`
    /// value.
    pub fn new(url: &str) -> Result<Postgres> {
        Self::with_env(url, &|k| std::env::var(k).ok())
    }

    /// As [`Postgres::new`], reading the `PG*` variables from `env`
    /// instead of the process environment.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::with_env("postgres://", &|k: &str| match k {
    ///     "PGHOST" => Some("db.internal".into()),
    ///     "PGUSER" => Some("deploy".into()),
    ///     "PGDATABASE" => Some("app".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(pg.server(), "postgres://deploy@db.internal:5432/app");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Postgres::new`].
    pub fn with_env(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Postgres> {
        Ok(Postgres {
            inner: Arc::new(Inner {
                target: config::Target::parse(url, env)?,
            }),
        })
    }

    /// This server, giving up on a connection attempt after `timeout`
    /// (instead of the URL's `connect_timeout`, `PGCONNECT_TIMEOUT` or
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let pg = holdfast_postgres::Postgres::new("postgres://app@db/app")?
    ///     .with_connect_timeout(Duration::from_secs(2));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn with_connect_timeout(&self, timeout: std::time::Duration) -> Postgres {
        Postgres {
            inner: Arc::new(Inner {
                target: self.inner.target.with_connect_timeout(timeout),
            }),
        }
    }

    /// `postgres://USER@HOST:PORT/DB` (never the password), as messages
    /// name the server.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal:5433/app")?;
    /// assert_eq!(pg.server(), "postgres://deploy@db.internal:5433/app");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn server(&self) -> &str {
        &self.inner.target.display
    }

    /// The lock called `name` (nothing is taken yet).
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let lock = pg.lock("jobs/nightly")?; // nothing is connected or taken yet
    /// assert_eq!(lock.name(), "jobs/nightly");
    /// assert!(pg.lock("").is_err());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `name` is empty, longer than
    /// [`MAX_NAME_LEN`] bytes or contains NUL.
    pub fn lock(&self, name: &str) -> Result<PgLock> {
        PgLock::new(self.clone(), name)
    }

    /// The phases of `target` (its lock is the lock called `target`).
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let phases = pg.phases("app-schema")?;
    /// phases.run("create-users-v1", |tx, _ctx| {
    ///     tx.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
    /// })?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Postgres::lock`], for `target`.
    pub fn phases(&self, target: &str) -> Result<PgPhases> {
        PgPhases::new(self.clone(), target)
    }

    /// Runs `action` once across all concurrent and later callers: the
    /// transactional phase with the empty name of target `key` (see
    /// [`PgPhases::run`]).
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let outcome = pg.once("backfill-2024", |tx, ctx| {
    ///     tx.execute("UPDATE orders SET fenced_by = $1", &[&(ctx.token() as i64)]).map(drop)
    /// })?;
    /// println!("ran here: {}", outcome.ran());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgPhases::run`].
    pub fn once<F, E>(&self, key: &str, action: F) -> Result<PhaseOutcome>
    where
        F: FnOnce(&mut Transaction<'_>, &PhaseContext) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.phases(key)?.run_marker("", action)
    }

    /// Every advisory lock held in this database (through holdfast or not:
    /// `pg_locks` joined with the holder records), by name, then key.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// for h in pg.holders()? {
    ///     println!("{:?} held by backend {} ({:?})", h.name, h.backend_pid, h.command);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server cannot be asked.
    pub fn holders(&self) -> Result<Vec<PgHolder>> {
        let (mut client, _) = self.session()?;
        lock::holders_where(&mut client, self.server(), None)
    }

    /// The run-once keys marked done ([`Postgres::once`], `holdfast once`).
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// for key in pg.once_keys()? {
    ///     println!("done once: {key}");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server cannot be asked.
    pub fn once_keys(&self) -> Result<Vec<String>> {
        let (mut client, _) = self.session()?;
        let rows = client
            .query(
                "SELECT target FROM holdfast_phases WHERE phase = '' ORDER BY done_at, target",
                &[],
            )
            .map_err(|e| sql_error("read the run-once markers at", self.server(), &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Opens a session, with holdfast's tables in place; returns it and
    /// its server process id. One round trip after the login.
    pub(crate) fn session(&self) -> Result<(Client, i32)> {
        let mut client = self.inner.target.connect()?;
        // PostgreSQL 14+: notice a dead client while its backend waits for
        // a lock (rather than when it is granted one). Servers that cannot
        // (older, or Windows) refuse the SET; then it is left out.
        const PROBE: &str = "SELECT pg_backend_pid(), to_regclass('holdfast_holders') IS NOT NULL \
             AND to_regclass('holdfast_phases') IS NOT NULL \
             AND to_regclass('holdfast_fence') IS NOT NULL";
        let msgs = match client.simple_query(&format!(
            "SET client_connection_check_interval = '1s'; {PROBE}"
        )) {
            Ok(m) => m,
            Err(e) if e.as_db_error().is_some() => client
                .simple_query(PROBE)
                .map_err(|e| sql_error("start a session at", self.server(), &e))?,
            Err(e) => return Err(sql_error("start a session at", self.server(), &e)),
        };
        let (pid, ready) = lock::last_row(&msgs).unwrap_or_default();
        if ready != "t" {
            schema::ensure(&mut client, self.server())?;
        }
        Ok((client, pid.parse().unwrap_or(0)))
    }

    /// `postgres://USER@HOST:PORT/DB/NAME`: the "path" of a lock in errors.
    pub(crate) fn location(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.server()))
    }
}

/// An error of the server or the connection while doing `op` at `server`.
pub(crate) fn backend_error(op: &'static str, server: &str, why: impl Into<String>) -> Error {
    Error::Backend {
        path: PathBuf::from(server),
        op,
        source: why.into().into(),
    }
}

/// A failed statement as an error naming the server and what PostgreSQL said.
pub(crate) fn sql_error(op: &'static str, server: &str, e: &postgres::Error) -> Error {
    let why = match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_owned();
            if let Some(d) = db.detail() {
                s = format!("{s} ({d})");
            }
            if let Some(h) = db.hint() {
                s = format!("{s}; hint: {h}");
            }
            s
        }
        None if e.is_closed() => format!("the connection was closed ({e})"),
        None => e.to_string(),
    };
    backend_error(op, server, why)
}

/// Whether `e` says the session is gone (rather than a statement failed).
pub(crate) fn is_connection_loss(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|d| {
            let c = d.code().code();
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // connection exceptions (08...)
            c == "57P01" || c == "57P02" || c == "57P03" || c.starts_with("08")
        })
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Validates a name, as an [`Error::InvalidInput`] naming `location`.
pub(crate) fn check_name(what: &str, name: &str, location: &Path) -> Result<()> {
    key::check_name(what, name).map_err(|reason| Error::InvalidInput {
        path: location.to_owned(),
        reason,
    })
}
