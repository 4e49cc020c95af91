//! Session-level advisory locks on a name, with holder records.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use holdfast::{Error, Holder, HolderRecord, Holders, Mode, Result, Wait};
use postgres::Client;
use postgres::error::SqlState;

use crate::{Postgres, is_connection_loss, sql_error};

/// `pg_locks` rows of the advisory lock with key `$1` (the bigint form:
/// `classid` the high half, `objid` the low half, `objsubid` 1) in this
/// database.
const LOCKS_OF_KEY: &str = "l.locktype = 'advisory' AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND ((l.classid::int8 << 32) | l.objid::int8) = $1";

/// A lock called by a name, in one PostgreSQL database: a session-level
/// advisory lock on [`lock_key`](crate::lock_key)`(name)`.
///
/// Each acquisition opens its own session; the returned [`PgGuard`] owns
/// it, and the lock lives as long as that session does.
///
/// ```no_run
/// use std::time::Duration;
/// let pg = holdfast_postgres::Postgres::new("postgres://app@db/app")?;
/// let lock = pg.lock("reports/daily")?;
/// let reader = lock.lock_shared()?;                       // many at once
/// match lock.lock_timeout(Duration::from_secs(2)) {       // exclusive: waits for the reader
///     Err(e @ holdfast::Error::Timeout { .. }) => eprintln!("{e}"), // names the reader
///     other => { other?; }
/// }
/// drop(reader);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PgLock {
    pg: Postgres,
    name: String,
    key: i64,
    location: PathBuf,
}

/// Who holds a PostgreSQL lock: the holder record holdfast wrote, and what
/// the server knows of the session.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
/// for h in pg.holders()? {
///     println!("{:?} (key {}) held {:?} by backend {}", h.name, h.key, h.mode, h.backend_pid);
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgHolder {
    /// The lock name (from the holder record; `None` for a session that
    /// took the key without holdfast, e.g. from `psql`).
    pub name: Option<String>,
    /// The advisory-lock key.
    pub key: i64,
    /// The mode held.
    pub mode: Mode,
    /// The server process of the holding session.
    pub backend_pid: i32,
    /// The client's host, pid and command line (holder record).
    pub host: Option<String>,
    /// The client's process id (holder record).
    pub pid: Option<u32>,
    /// The client's command line (holder record), else the session's
    /// `application_name`.
    pub command: Option<String>,
    /// When it was acquired (holder record), else when the session's
    /// current transaction or statement began.
    pub since: Option<SystemTime>,
    /// The fencing token of that acquisition (holder record).
    pub token: Option<u64>,
    /// The client's address as the server sees it (`None` for a Unix socket
    /// or when the server does not show it to this role).
    pub client_addr: Option<String>,
}

impl PgHolder {
    /// As a [`holdfast::Holder`], for error messages; the backend pid goes
    /// into the command text.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// for h in pg.lock("jobs/nightly")?.holders()? {
    ///     println!("held by {}", holdfast::Holders::from(vec![h.to_holder()]));
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn to_holder(&self) -> Holder {
        let mut h = Holder::default();
        h.pid = self.pid;
        h.host = self.host.clone().or_else(|| self.client_addr.clone());
        h.since = self.since;
        h.mode = Some(self.mode);
        h.token = self.token;
        h.command = Some(match &self.command {
            Some(c) => format!("{c}; backend pid {}", self.backend_pid),
            None => format!("backend pid {}", self.backend_pid),
        });
        h.this_process = false;
        h
    }
}

impl std::fmt::Display for PgHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_holder().fmt(f)?;
        if let Some(t) = self.token {
            write!(f, ", fencing token {t}")?;
        }
        Ok(())
    }
}

impl PgLock {
    pub(crate) fn new(pg: Postgres, name: &str) -> Result<PgLock> {
        let location = pg.location(name);
        crate::check_name("lock name", name, &location)?;
        Ok(PgLock {
            key: crate::lock_key(name),
            name: name.to_owned(),
            pg,
            location,
        })
    }

    /// The lock's name.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// assert_eq!(pg.lock("jobs/nightly")?.name(), "jobs/nightly");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The advisory-lock key ([`lock_key`](crate::lock_key) of the name).
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let lock = pg.lock("jobs/nightly")?;
    /// // The key psql would use: SELECT pg_advisory_lock(<key>)
    /// assert_eq!(lock.key(), holdfast_postgres::lock_key("jobs/nightly"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn key(&self) -> i64 {
        self.key
    }

    /// `postgres://USER@HOST:PORT/DB/NAME`, as errors name the lock.
    ///
    /// ```
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let lock = pg.lock("jobs/nightly")?;
    /// println!("locking {}", lock.location().display()); // as errors name it
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// Waits for the exclusive lock.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let lock = pg.lock("jobs/nightly")?;
    /// let guard = lock.lock()?; // waits in the server, no polling
    /// // ... the nightly job ...
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgLock::acquire`].
    pub fn lock(&self) -> Result<PgGuard> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Waits for the lock in shared mode.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let reader = pg.lock("catalog")?.lock_shared()?; // with other readers, not with a writer
    /// assert_eq!(reader.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgLock::acquire`].
    pub fn lock_shared(&self) -> Result<PgGuard> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the exclusive lock if it is free.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// match pg.lock("jobs/nightly")?.try_lock() {
    ///     Ok(guard) => guard.release()?,
    ///     Err(e) if e.is_contention() => println!("already running: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] naming the holders; otherwise as
    /// [`PgLock::acquire`].
    pub fn try_lock(&self) -> Result<PgGuard> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes the lock in shared mode if no exclusive holder has it.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// if let Ok(reader) = pg.lock("catalog")?.try_lock_shared() {
    ///     println!("reading under token {}", reader.token());
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<PgGuard> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Waits at most `timeout` for the exclusive lock.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock_timeout(Duration::from_secs(30))?;
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holders; otherwise as
    /// [`PgLock::acquire`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<PgGuard> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Takes the lock in `mode`, waiting as `wait` says: in the server
    /// (`pg_advisory_lock`, bounded by `lock_timeout`), never by polling.
    /// A wait that runs out leaves nothing held. On success the session
    /// has taken a fencing token from the sequence `holdfast_fence` and
    /// written its holder record.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use holdfast::{Mode, Wait};
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("catalog")?.acquire(Mode::Shared, Wait::Timeout(Duration::from_secs(5)))?;
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::WouldBlock`] (`Wait::NoWait`) / [`Error::Timeout`]: held
    ///   by others, who are named.
    /// - [`Error::Backend`] naming the server: it cannot be reached, refused the
    ///   login, or holdfast's tables cannot be created (the message says
    ///   which right is missing), or a statement failed.
    /// - [`Error::Unsupported`]: the session is behind a transaction-pooling
    ///   proxy (PgBouncer), where session locks do not hold.
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<PgGuard> {
        let started = Instant::now();
        let (mut client, session_pid) = self.pg.session()?;
        let (try_fn, wait_fn) = match mode {
            Mode::Exclusive => ("pg_try_advisory_lock", "pg_advisory_lock"),
            Mode::Shared => ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared"),
        };
        let key = self.key;
        // lock_timeout (ms; 0 = forever) for the wait, or None to only try.
        let timeout_ms = match wait {
            Wait::NoWait => None,
            Wait::Forever => Some(Duration::ZERO),
            Wait::Timeout(d) => Some(d),
            Wait::Deadline(t) => Some(t.saturating_duration_since(Instant::now())),
        }
        .and_then(|d| {
            if matches!(wait, Wait::Forever) {
                Some(0)
            } else if d.is_zero() {
                None
            } else {
                Some(millis(d))
            }
        });
        // One round trip: the lock, then (only if granted) the fencing
        // token and the holder record, in statement order. A session lock
        // outlives the statement's transaction, even if it fails.
        let me = HolderRecord::for_this_process(mode, 0);
        let (prelude, take) = match timeout_ms {
            None => (String::new(), format!("{try_fn}({key})")),
            Some(ms) => (
                format!("SELECT set_config('lock_timeout', '{ms}ms', true); "),
                format!("{wait_fn}({key}) IS NOT NULL"),
            ),
        };
        let sql = format!(
            "{prelude}WITH l AS MATERIALIZED (SELECT {take} AS ok) \
             INSERT INTO holdfast_holders AS h \
                 (lock_key, backend_pid, name, mode, host, pid, command, since, token) \
             SELECT {key}, pg_backend_pid(), {name}, '{mode}', {host}, {pid}, {command}, \
                 clock_timestamp(), nextval('holdfast_fence') FROM l WHERE l.ok \
             ON CONFLICT (lock_key, backend_pid) DO UPDATE SET name = EXCLUDED.name, \
                 mode = EXCLUDED.mode, host = EXCLUDED.host, pid = EXCLUDED.pid, \
                 command = EXCLUDED.command, since = EXCLUDED.since, token = EXCLUDED.token \
             RETURNING h.token, pg_backend_pid()",
            name = literal(&self.name),
            mode = mode_text(mode),
            host = literal(&me.host),
            pid = me.pid,
            command = literal(&me.command),
        );
        let rows = match client.simple_query(&sql) {
            Ok(rows) => rows,
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| d.code() == &SqlState::LOCK_NOT_AVAILABLE) =>
            {
                return Err(Error::Timeout {
                    path: self.location.clone(),
                    mode,
                    waited: started.elapsed(),
                    holders: self.holders_via(&mut client).unwrap_or_default(),
                });
            }
            Err(e) => {
                // Granted before the record failed? Then it is still held.
                let _ = client.simple_query(&format!(
                    "SELECT pg_advisory_unlock{}({key})",
                    shared_suffix(mode)
                ));
                return Err(sql_error(
                    "take the lock and write its holder record (table holdfast_holders) at",
                    self.pg.server(),
                    &e,
                ));
            }
        };
        let Some((token, pid_now)) = last_row(&rows) else {
            return Err(Error::WouldBlock {
                path: self.location.clone(),
                mode,
                holders: self.holders_via(&mut client).unwrap_or_default(),
            });
        };
        let token: u64 = token.parse().unwrap_or(0);
        let backend_pid: i32 = pid_now.parse().unwrap_or(0);
        if backend_pid != session_pid {
            // The login's statement and this one ran on different server
            // connections: a pooler in transaction or statement mode. The
            // lock stays with a connection we no longer control.
            let _ = client.simple_query(&format!(
                "SELECT pg_advisory_unlock{}({key})",
                shared_suffix(mode)
            ));
            return Err(Error::Unsupported {
                path: self.location.clone(),
                what: "a session advisory lock",
                reason: format!(
                    "the session started in server process {session_pid} but the lock was taken \
                     in process {backend_pid}: the connection goes through a pooler in \
                     transaction or statement mode (PgBouncer?), where session locks do not \
                     hold; connect to PostgreSQL directly or use session pooling"
                ),
            });
        }
        Ok(PgGuard {
            lock: self.clone(),
            client: Mutex::new(Some(client)),
            mode,
            token,
            backend_pid,
        })
    }

    /// Who holds the lock now (empty if nobody), from `pg_locks` and the
    /// holder records; sessions that took the key without holdfast are
    /// listed by backend pid.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// for h in pg.lock("jobs/nightly")?.holders()? {
    ///     println!("backend {} on {:?} since {:?}", h.backend_pid, h.host, h.since);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgLock::acquire`], for connecting.
    pub fn holders(&self) -> Result<Vec<PgHolder>> {
        let (mut client, _) = self.pg.session()?;
        self.pg_holders(&mut client)
    }

    fn holders_via(&self, client: &mut Client) -> Result<Holders> {
        Ok(Holders::from(
            self.pg_holders(client)?
                .iter()
                .map(PgHolder::to_holder)
                .collect::<Vec<_>>(),
        ))
    }

    fn pg_holders(&self, client: &mut Client) -> Result<Vec<PgHolder>> {
        holders_where(client, self.pg.server(), Some(self.key))
    }
}

/// Holders of key `key`, or of every advisory lock of this database.
pub(crate) fn holders_where(
    client: &mut Client,
    server: &str,
    key: Option<i64>,
) -> Result<Vec<PgHolder>> {
    let filter = match key {
        Some(_) => LOCKS_OF_KEY.to_owned(),
        None => LOCKS_OF_KEY.replace(
            " AND ((l.classid::int8 << 32) | l.objid::int8) = $1",
            " AND $1::int8 IS NULL",
        ),
    };
    let sql = format!(
        "SELECT ((l.classid::int8 << 32) | l.objid::int8) AS key, l.mode, l.pid, \
             h.name, h.host, h.pid, h.command, \
             coalesce(h.since, a.xact_start, a.query_start), h.token, \
             a.application_name, host(a.client_addr) \
         FROM pg_locks l \
         LEFT JOIN holdfast_holders h \
             ON h.lock_key = ((l.classid::int8 << 32) | l.objid::int8) AND h.backend_pid = l.pid \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted AND {filter} \
         ORDER BY h.name NULLS LAST, 1, coalesce(h.since, a.xact_start, a.query_start), l.pid"
    );
    let rows = client
        .query(&sql, &[&key])
        .map_err(|e| sql_error("read the lock holders at", server, &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let app: Option<String> = r.get(9);
            let command: Option<String> = r.get(6);
            PgHolder {
                key: r.get(0),
                mode: if r.get::<_, String>(1) == "ShareLock" {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                },
                backend_pid: r.get(2),
                name: r.get(3),
                host: r.get(4),
                pid: r
                    .get::<_, Option<i64>>(5)
                    .and_then(|p| u32::try_from(p).ok()),
                command: command.or(app.filter(|a| !a.is_empty())),
                since: r.get(7),
                token: r.get::<_, Option<i64>>(8).map(|t| t as u64),
                client_addr: r.get(10),
            }
        })
        .collect())
}

fn mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

fn shared_suffix(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "",
        Mode::Shared => "_shared",
    }
}

fn millis(d: Duration) -> u128 {
    // Round up: a wait of 0.4 ms is a wait, not "forever".
    d.as_micros().div_ceil(1000).max(1)
}

/// `s` as an SQL string literal (an `E''` string, read the same whatever
/// `standard_conforming_strings` says; NUL, which text cannot hold, is
/// dropped).
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The first two columns of the last row of a simple query.
pub(crate) fn last_row(msgs: &[postgres::SimpleQueryMessage]) -> Option<(String, String)> {
    msgs.iter().rev().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => Some((
            r.get(0).unwrap_or("").to_owned(),
            r.get(1).unwrap_or("").to_owned(),
        )),
        _ => None,
    })
}

/// A held PostgreSQL lock: owns the session that holds it. `Send`; the
/// lock is released when the guard is dropped (or [`PgGuard::release`]d),
/// and in any case when the session ends.
///
/// ```no_run
/// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
/// {
///     let guard = pg.lock("jobs/nightly")?.lock()?;
///     println!("token {}", guard.token());
/// } // released here (the session ends)
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct PgGuard {
    lock: PgLock,
    client: Mutex<Option<Client>>,
    mode: Mode,
    token: u64,
    backend_pid: i32,
}

impl std::fmt::Debug for PgGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGuard")
            .field("lock", &self.lock.location)
            .field("mode", &self.mode)
            .field("token", &self.token)
            .field("backend_pid", &self.backend_pid)
            .finish_non_exhaustive()
    }
}

impl PgGuard {
    /// The mode held.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// assert_eq!(guard.mode(), holdfast::Mode::Exclusive);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fencing token of this acquisition: from the sequence
    /// `holdfast_fence`, taken after the lock was granted, so a later
    /// holder always has a larger one.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// // Hand it to the resource, which refuses anything older:
    /// std::process::Command::new("deploy")
    ///     .env("HOLDFAST_FENCING_TOKEN", guard.token().to_string())
    ///     .status()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The server process (`pg_backend_pid()`) of the session holding it.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// println!("held by backend {} (see pg_stat_activity)", guard.backend_pid());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// The lock this guard holds.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// assert_eq!(guard.lock().name(), "jobs/nightly");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lock(&self) -> &PgLock {
        &self.lock
    }

    /// Asks the server whether this session still holds the lock.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// // ... work outside the database ...
    /// guard.check()?; // Err(Lost) if the session ended meanwhile: do not commit
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the session has ended (terminated, server
    /// restarted, connection broken) or no longer holds the lock: another
    /// process may hold it now.
    pub fn check(&self) -> Result<()> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = slot.as_mut() else {
            return Err(self.lost("it was released"));
        };
        match still_held(client, self.lock.key, self.mode) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost(&format!(
                "session {} no longer holds it (unlocked behind holdfast's back)",
                self.backend_pid
            ))),
            Err(e) => Err(self.lost(&format!(
                "the session holding it (server process {}) is gone: {}",
                self.backend_pid,
                crate::sql_error("check the lock at", self.lock.pg.server(), &e)
            ))),
        }
    }

    /// Waits up to `timeout` for the session to end, without asking the
    /// server anything: it reads the connection, which the server closes
    /// (with a message) when the session is terminated or shuts down, and
    /// the kernel when the network says the peer is gone. Returns the
    /// [`Error::Lost`] if it ended, `None` if it is still open after
    /// `timeout` (or was released). A monitor thread calls this in a loop
    /// to stop work promptly when the lock is lost.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// // A monitor loop: stop the work as soon as the session is gone.
    /// loop {
    ///     if let Some(lost) = guard.wait_lost(Duration::from_secs(1)) {
    ///         eprintln!("stop the work: {lost}");
    ///         break;
    ///     }
    ///     // ... a slice of the work ...
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn wait_lost(&self, timeout: Duration) -> Option<Error> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client = slot.as_mut()?;
        use postgres::fallible_iterator::FallibleIterator;
        let read = client
            .notifications()
            .timeout_iter(timeout)
            .next()
            .map(drop);
        let ended = match read {
            Err(e) => Some(match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            }),
            Ok(()) if client.is_closed() => Some("the connection was closed".to_owned()),
            Ok(()) => None,
        };
        ended.map(|why| {
            self.lost(&format!(
                "the session holding it (server process {}) ended: {why}",
                self.backend_pid
            ))
        })
    }

    fn lost(&self, reason: &str) -> Error {
        Error::Lost {
            path: self.lock.location.clone(),
            reason: format!("{reason}; another process may hold the lock now"),
        }
    }

    /// Records `phase` of `target` done (a run-once key: `phase` empty),
    /// through this guard's session, in one statement that first checks
    /// that the session still holds the lock: a holder that lost its lock
    /// never marks anything done. Marking twice is not an error.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("app-schema")?.lock()?;
    /// // ... a step that cannot run in a transaction (CREATE INDEX CONCURRENTLY) ...
    /// guard.mark_done("app-schema", "index-users-v1")?; // only while still held
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the lock is no longer held; [`Error::Backend`] if the
    /// statement fails.
    pub fn mark_done(&self, target: &str, phase: &str) -> Result<()> {
        let location = self.lock.pg.location(target);
        crate::check_name("phase target", target, &location)?;
        if !phase.is_empty() {
            crate::check_name("phase name", phase, &location)?;
        }
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = slot.as_mut() else {
            return Err(self.lost("it was released"));
        };
        let me = HolderRecord::for_this_process(self.mode, self.token);
        let sql = format!(
            "WITH held AS (SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.granted \
                 AND l.pid = pg_backend_pid() AND l.mode = $7 AND {LOCKS_OF_KEY}) AS ok), \
             ins AS (INSERT INTO holdfast_phases (target, phase, token, host, pid, command) \
                 SELECT $2, $3, $4, $5, $6, $8 FROM held WHERE ok \
                 ON CONFLICT (target, phase) DO NOTHING RETURNING 1) \
             SELECT (SELECT ok FROM held), (SELECT count(*) FROM ins)"
        );
        let lock_mode = match self.mode {
            Mode::Exclusive => "ExclusiveLock",
            Mode::Shared => "ShareLock",
        };
        let r = client.query_one(
            &sql,
            &[
                &self.lock.key,
                &target,
                &phase,
                &(self.token as i64),
                &me.host,
                &i64::from(me.pid),
                &lock_mode,
                &me.command,
            ],
        );
        match r {
            Ok(row) if row.get::<_, bool>(0) => Ok(()),
            Ok(_) => Err(self.lost(&format!(
                "session {} no longer holds it, so {target}/{phase} was not marked done",
                self.backend_pid
            ))),
            Err(e) if is_connection_loss(&e) => Err(self.lost(&format!(
                "the session holding it is gone ({e}), so {target}/{phase} was not marked done"
            ))),
            Err(e) => Err(sql_error(
                "record the phase (table holdfast_phases) at",
                self.lock.pg.server(),
                &e,
            )),
        }
    }

    /// Releases the lock now and closes the session.
    ///
    /// ```no_run
    /// let pg = holdfast_postgres::Postgres::new("postgres://deploy@db.internal/app")?;
    /// let guard = pg.lock("jobs/nightly")?.lock()?;
    /// guard.release()?; // reports a failure instead of logging it, as drop would
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the session had already ended or no longer held
    /// the lock (whatever ran under it may have overlapped another holder).
    pub fn release(self) -> Result<()> {
        self.release_inner()
    }

    fn release_inner(&self) -> Result<()> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut client) = slot.take() else {
            return Ok(());
        };
        let key = self.lock.key;
        // The unlock first (the next holder goes on at once), then this
        // session's record and any left by sessions that died holding it.
        let sql = format!(
            "SELECT pg_advisory_unlock{}({key}), pg_backend_pid(); \
             DELETE FROM holdfast_holders h WHERE h.lock_key = {key} \
                 AND (h.backend_pid = pg_backend_pid() OR NOT EXISTS (SELECT 1 FROM pg_locks l \
                     WHERE l.granted AND l.pid = h.backend_pid AND {})); ",
            shared_suffix(self.mode),
            LOCKS_OF_KEY.replace("$1", &key.to_string())
        );
        let r = client.simple_query(&sql);
        drop(client);
        match r {
            Ok(rows) if last_row(&rows).is_some_and(|r| r.0 == "t") => Ok(()),
            Ok(_) => Err(self.lost(&format!(
                "session {} no longer held it at release",
                self.backend_pid
            ))),
            Err(e) => Err(self.lost(&format!(
                "the session holding it (server process {}) ended before the release: {e}",
                self.backend_pid
            ))),
        }
    }
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release_inner() {
            tracing::warn!("{e}");
        }
    }
}

fn still_held(
    client: &mut Client,
    key: i64,
    mode: Mode,
) -> std::result::Result<bool, postgres::Error> {
    let lock_mode = match mode {
        Mode::Exclusive => "ExclusiveLock",
        Mode::Shared => "ShareLock",
    };
    let row = client.query_one(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.granted AND l.pid = pg_backend_pid() \
             AND l.mode = $2 AND {LOCKS_OF_KEY})"
        ),
        &[&key, &lock_mode],
    )?;
    Ok(row.get(0))
}
