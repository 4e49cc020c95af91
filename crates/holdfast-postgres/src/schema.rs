//! The tables holdfast keeps in the database, created on first use.

use holdfast::Result;
use postgres::Client;

use crate::key::lock_key;

/// The tables and the sequence holdfast uses, as run on first use (in the
/// first schema of the `search_path`, usually `public`). A role without the
/// right to create them can have an owner run this once, then be granted
/// `SELECT, INSERT, UPDATE, DELETE` on both tables and `USAGE, UPDATE` on
/// the sequence.
///
/// - `holdfast_holders`: one row per session holding a lock through
///   holdfast (removed at release; a row whose session no longer holds the
///   lock is ignored by `status` and removed by the next acquirer).
/// - `holdfast_phases`: one row per completed phase (`phase` empty for a
///   run-once key), committed in the transaction that did the work.
/// - `holdfast_fence`: the fencing tokens, taken under the lock.
///
/// ```
/// assert!(holdfast_postgres::SCHEMA_SQL.contains("holdfast_phases"));
/// ```
pub const SCHEMA_SQL: &str = "\
CREATE TABLE IF NOT EXISTS holdfast_holders (
    lock_key bigint NOT NULL,
    backend_pid integer NOT NULL,
    name text NOT NULL,
    mode text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    command text NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    token bigint NOT NULL,
    PRIMARY KEY (lock_key, backend_pid)
);
CREATE TABLE IF NOT EXISTS holdfast_phases (
    target text NOT NULL,
    phase text NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    token bigint NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    command text NOT NULL,
    PRIMARY KEY (target, phase)
);
CREATE SEQUENCE IF NOT EXISTS holdfast_fence;
";

/// The advisory lock the schema is created under (`CREATE ... IF NOT
/// EXISTS` races with itself).
fn bootstrap_key() -> i64 {
    lock_key("holdfast:schema")
}

/// Creates the tables unless they exist.
///
/// # Errors
///
/// [`holdfast::Error::Unsupported`]-free: a role that may not create them
/// gets an error naming the table, schema, database and role, and what to
/// grant.
pub(crate) fn ensure(client: &mut Client, server: &str) -> Result<()> {
    let row = client
        .query_one(
            "SELECT to_regclass('holdfast_holders') IS NOT NULL \
                AND to_regclass('holdfast_phases') IS NOT NULL \
                AND to_regclass('holdfast_fence') IS NOT NULL, \
             coalesce(current_schema(), '(none)'), current_database(), current_user",
            &[],
        )
        .map_err(|e| crate::sql_error("look for holdfast's tables in", server, &e))?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    let (schema, db, user): (String, String, String) = (row.get(1), row.get(2), row.get(3));
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({}); {SCHEMA_SQL} COMMIT;",
        bootstrap_key()
    );
    match client.batch_execute(&sql) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            let denied = e
                .as_db_error()
                .is_some_and(|d| d.code() == &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            let detail = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            if denied {
                Err(crate::backend_error(
                    "create holdfast's tables in",
                    server,
                    format!(
                        "{detail}: role {user:?} may not create holdfast_holders, \
                         holdfast_phases and the sequence holdfast_fence in schema {schema:?} of \
                         database {db:?}; have an owner run holdfast_postgres::SCHEMA_SQL there \
                         (or GRANT CREATE ON SCHEMA {schema} TO {user}), then grant {user} \
                         SELECT, INSERT, UPDATE, DELETE on the tables and USAGE, UPDATE on the \
                         sequence"
                    ),
                ))
            } else {
                Err(crate::sql_error("create holdfast's tables in", server, &e))
            }
        }
    }
}
