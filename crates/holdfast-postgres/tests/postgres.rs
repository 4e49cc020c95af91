//! holdfast-postgres against a real PostgreSQL server started by the test
//! (see `holdfast_testkit::postgres`). Child processes are this test binary
//! run again with `HOLDFAST_PG_CHILD` set (see [`child`]): they take locks
//! and run phases through the library, and are killed with SIGKILL.

use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast::{Error, Mode, Wait};
use holdfast_postgres::{PhaseOutcome, Postgres};
use holdfast_testkit::postgres::{advisory_waiters_sql, database};
use holdfast_testkit::{Child, wait_for};

const T: Duration = Duration::from_secs(60);

/// A child process running [`child`] with `args`.
fn spawn_child(args: &[&str]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env("HOLDFAST_PG_CHILD", args.join("\u{1f}"));
    Child::spawn(cmd)
}

/// Not a test: the body of the child processes, selected by
/// `HOLDFAST_PG_CHILD` (fields separated by U+001F). It prints what it did
/// on stdout, one line per step.
#[test]
fn child() {
    let Ok(spec) = std::env::var("HOLDFAST_PG_CHILD") else {
        return;
    };
    let args: Vec<&str> = spec.split('\u{1f}').collect();
    let pg = Postgres::new(args[1]).unwrap();
    match args[0] {
        // phase URL TARGET PHASE TABLE BLOCK: the migration phase; with
        // BLOCK=1 it waits for a line on stdin inside the transaction.
        "phase" => {
            let (target, phase, table, block) = (args[2], args[3], args[4], args[5] == "1");
            let outcome = pg.phases(target).unwrap().run(phase, |tx, ctx| {
                tx.batch_execute(&format!(
                    "SELECT nextval('attempts'); CREATE TABLE {table} (id int)"
                ))?;
                println!("inside token={}", ctx.token());
                if block {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).unwrap();
                }
                Ok::<(), postgres::Error>(())
            });
            match outcome {
                Ok(PhaseOutcome::Ran { token }) => println!("outcome ran token={token}"),
                Ok(PhaseOutcome::AlreadyDone { .. }) => println!("outcome done"),
                Ok(o) => println!("outcome {o:?}"),
                Err(e) => println!("outcome error {e}"),
            }
        }
        // hold URL NAME MODE: takes the lock, says so, holds it until stdin closes.
        "hold" => {
            let mode = if args[3] == "shared" {
                Mode::Shared
            } else {
                Mode::Exclusive
            };
            let g = pg
                .lock(args[2])
                .unwrap()
                .acquire(mode, Wait::Forever)
                .unwrap();
            println!("locked token={} backend={}", g.token(), g.backend_pid());
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            println!("released {:?}", g.release().map_err(|e| e.to_string()));
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn key_matches_the_documented_sql() {
    let Some((s, _)) = database("keysql") else {
        return;
    };
    for name in ["jobs/nightly", "a", "ünïcødé name", "x"] {
        let sql = s.psql(
            "keysql",
            &format!(
                "SELECT ('x' || left(encode(sha256(convert_to('{name}', 'UTF8')), 'hex'), 16))::bit(64)::bigint"
            ),
        );
        assert_eq!(sql, holdfast_postgres::lock_key(name).to_string(), "{name}");
    }
}

#[test]
fn shared_coexist_and_block_exclusive_timeout_leaves_nothing() {
    let Some((s, url)) = database("shared") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let lock = pg.lock("reports").unwrap();
    let a = lock.lock_shared().unwrap();
    let b = lock.try_lock_shared().unwrap();
    assert!(
        b.token() > a.token(),
        "tokens grow: {} then {}",
        a.token(),
        b.token()
    );
    match lock.try_lock() {
        Err(Error::WouldBlock { holders, .. }) => {
            assert_eq!(holders.len(), 2, "{holders}");
            let text = holders.to_string();
            assert!(
                text.contains(&format!("backend pid {}", a.backend_pid())),
                "{text}"
            );
            assert!(
                text.contains(&format!("pid {}", std::process::id())),
                "{text}"
            );
        }
        other => panic!("exclusive while shared held: {other:?}"),
    }
    let started = Instant::now();
    match lock.lock_timeout(Duration::from_millis(300)) {
        Err(Error::Timeout {
            waited, holders, ..
        }) => {
            assert!(waited >= Duration::from_millis(250), "{waited:?}");
            assert_eq!(holders.len(), 2);
        }
        other => panic!("expected a timeout: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing of the timed-out waiter is left: only the two shared holders.
    let key = lock.key();
    let locks = s.psql(
        "shared",
        &format!(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) \
             FROM pg_locks WHERE locktype = 'advisory' AND ((classid::int8 << 32) | objid::int8) = {key}"
        ),
    );
    assert_eq!(locks, "2|0");
    let holders = lock.holders().unwrap();
    assert_eq!(holders.len(), 2);
    assert!(
        holders
            .iter()
            .all(|h| h.mode == Mode::Shared && h.name.as_deref() == Some("reports"))
    );
    // A waiting exclusive acquirer gets it once both shared holders leave.
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            lock.acquire(Mode::Exclusive, Wait::Timeout(T))
                .map(|g| g.token())
        })
    };
    wait_for("the exclusive waiter to block in the server", T, || {
        (s.psql(
            "shared",
            &format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND ((classid::int8 << 32) | objid::int8) = {key}"),
        ) == "1")
            .then_some(())
    });
    a.release().unwrap();
    drop(b);
    let token = waiter.join().unwrap().unwrap();
    assert!(token > 0);
    assert!(lock.holders().unwrap().is_empty(), "released on drop");
}

#[test]
fn terminated_session_is_a_lost_lock_and_the_waiter_gets_it() {
    let Some((s, url)) = database("lost") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let lock = pg.lock("deploy").unwrap();
    let g = lock.lock().unwrap();
    g.check().unwrap();
    let mut waiter = spawn_child(&["hold", &url, "deploy", "exclusive"]);
    let key = lock.key();
    wait_for("the child to wait for the lock", T, || {
        (s.psql(
            "lost",
            &format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND ((classid::int8 << 32) | objid::int8) = {key}"),
        ) == "1")
            .then_some(())
    });
    assert!(
        g.wait_lost(Duration::from_millis(50)).is_none(),
        "still held"
    );
    s.psql(
        "lost",
        &format!("SELECT pg_terminate_backend({})", g.backend_pid()),
    );
    let noticed = Instant::now();
    match g.wait_lost(T) {
        Some(Error::Lost { reason, .. }) => assert!(reason.contains("ended"), "{reason}"),
        other => panic!("wait_lost after pg_terminate_backend: {other:?}"),
    }
    assert!(
        noticed.elapsed() < Duration::from_secs(5),
        "{:?}",
        noticed.elapsed()
    );
    let line = waiter.expect_line("locked", T);
    let token: u64 = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .strip_prefix("token=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(token > g.token(), "the next holder's token is larger");
    match g.check() {
        Err(Error::Lost { reason, .. }) => assert!(reason.contains("gone"), "{reason}"),
        other => panic!("check after pg_terminate_backend: {other:?}"),
    }
    match g.mark_done("deploy", "step") {
        Err(Error::Lost { .. }) => {}
        other => panic!("mark_done after losing the lock: {other:?}"),
    }
    assert!(!pg.phases("deploy").unwrap().is_done("step").unwrap());
    assert!(matches!(g.release(), Err(Error::Lost { .. })));
    waiter.close_stdin();
    waiter.expect_line("released Ok", T);
    waiter.wait(T);
}

#[test]
fn sigkill_of_holder_frees_the_lock_promptly() {
    let Some((s, url)) = database("killed") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let lock = pg.lock("job").unwrap();
    let mut holder = spawn_child(&["hold", &url, "job", "exclusive"]);
    holder.expect_line("locked", T);
    assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            lock.acquire(Mode::Exclusive, Wait::Timeout(T))
                .map(|_| Instant::now())
        })
    };
    wait_for("the waiter to block in the server", T, || {
        (s.psql("killed", &advisory_waiters_sql(lock.key())) == "1").then_some(())
    });
    let killed = Instant::now();
    holder.kill9();
    let got = waiter.join().unwrap().unwrap();
    let after = got.duration_since(killed);
    assert!(
        after < Duration::from_secs(5),
        "the lock came {after:?} after the kill"
    );
}

#[test]
fn mark_done_through_the_holding_session() {
    let Some((_s, url)) = database("markdone") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let g = pg.lock("app").unwrap().lock().unwrap();
    g.mark_done("app", "seed").unwrap();
    g.mark_done("app", "seed").unwrap();
    let phases = pg.phases("app").unwrap();
    assert!(phases.is_done("seed").unwrap());
    let m = phases.markers().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].token, g.token());
    drop(g);
    assert!(phases.reset("seed").unwrap());
    assert!(!phases.is_done("seed").unwrap());
}

/// Eight deployers start the migration phase at once: the table is created
/// once, and all eight report the phase done.
#[test]
fn migration_phase_runs_once_across_eight_deployers() {
    let Some((s, url)) = database("migrate8") else {
        return;
    };
    s.psql("migrate8", "CREATE SEQUENCE attempts");
    let mut kids: Vec<Child> = (0..8)
        .map(|_| spawn_child(&["phase", &url, "app", "create-users", "users", "0"]))
        .collect();
    let outcomes: Vec<String> = kids
        .iter_mut()
        .map(|k| k.expect_line("outcome", T))
        .collect();
    for k in &mut kids {
        assert!(k.wait(T).success());
    }
    let ran = outcomes
        .iter()
        .filter(|o| o.starts_with("outcome ran"))
        .count();
    let done = outcomes.iter().filter(|o| *o == "outcome done").count();
    assert_eq!((ran, done), (1, 7), "{outcomes:?}");
    assert_eq!(s.psql("migrate8", "SELECT last_value FROM attempts"), "1");
    assert_eq!(
        s.psql("migrate8", "SELECT to_regclass('users') IS NOT NULL"),
        "t"
    );
    assert_eq!(
        s.psql(
            "migrate8",
            "SELECT count(*) FROM holdfast_phases WHERE target = 'app' AND phase = 'create-users'"
        ),
        "1"
    );
}

/// A deployer killed (SIGKILL, or its session terminated) inside the
/// migration's transaction leaves neither the table nor the marker; the
/// deployer waiting behind it gets the lock at once and does the
/// migration, exactly once.
#[test]
fn killed_transactional_phase_is_redone_exactly_once() {
    let Some((s, url)) = database("killphase") else {
        return;
    };
    s.psql("killphase", "CREATE SEQUENCE attempts");
    for (round, how) in ["sigkill", "terminate"].into_iter().enumerate() {
        let target = format!("app{round}");
        let table = format!("users{round}");
        let mut first = spawn_child(&["phase", &url, &target, "create", &table, "1"]);
        first.expect_line("inside", T);
        let mut second = spawn_child(&["phase", &url, &target, "create", &table, "0"]);
        wait_for("the second deployer to wait for the phase lock", T, || {
            (s.psql(
                "killphase",
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            ) == "1")
                .then_some(())
        });
        match how {
            "sigkill" => first.kill9(),
            _ => {
                s.psql(
                    "killphase",
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                         AND granted AND ((classid::int8 << 32) | objid::int8) = {}",
                        holdfast_postgres::lock_key(&target)
                    ),
                );
            }
        }
        let killed = Instant::now();
        second.expect_line("inside", T);
        let after = killed.elapsed();
        assert!(
            after < Duration::from_secs(5),
            "{how}: the waiter got the lock {after:?} later"
        );
        let outcome = second.expect_line("outcome", T);
        assert!(outcome.starts_with("outcome ran"), "{how}: {outcome}");
        assert!(second.wait(T).success());
        if how == "terminate" {
            first.close_stdin();
            let o = first.expect_line("outcome", T);
            assert!(
                o.starts_with("outcome error"),
                "{how}: the terminated deployer reports {o}"
            );
        }
        let _ = first.wait(T);
        assert_eq!(
            s.psql(
                "killphase",
                &format!("SELECT count(*) FROM holdfast_phases WHERE target = '{target}'")
            ),
            "1",
            "{how}"
        );
        // Both ran the action; only the second's work committed.
        assert_eq!(
            s.psql("killphase", "SELECT last_value FROM attempts"),
            (2 * (round + 1)).to_string(),
            "{how}"
        );
        assert_eq!(
            s.psql(
                "killphase",
                &format!("SELECT to_regclass('{table}') IS NOT NULL")
            ),
            "t"
        );
        // A later deployer skips it.
        let mut third = spawn_child(&["phase", &url, &target, "create", &table, "0"]);
        assert_eq!(third.expect_line("outcome", T), "outcome done");
        third.wait(T);
    }
}

#[test]
fn once_runs_once_and_a_failed_action_rolls_back() {
    let Some((s, url)) = database("onceapi") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let failed = pg.once("init", |tx, _| {
        tx.batch_execute("CREATE TABLE half_done (id int)")?;
        Err::<(), Box<dyn std::error::Error + Send + Sync>>("step two failed".into())
    });
    match failed {
        Err(Error::ActionFailed { source, .. }) => {
            assert_eq!(source.to_string(), "step two failed")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.psql("onceapi", "SELECT to_regclass('half_done') IS NULL"),
        "t"
    );
    let ran = pg
        .once("init", |tx, _| {
            tx.batch_execute("CREATE TABLE half_done (id int)")
        })
        .unwrap();
    assert!(ran.ran());
    let again = pg
        .once("init", |_, _| -> Result<(), Error> {
            panic!("must not run")
        })
        .unwrap();
    assert_eq!(again, PhaseOutcome::AlreadyDone { waited: false });
}

#[test]
fn bad_input_is_named() {
    let Some((s, url)) = database("badinput") else {
        return;
    };
    // Unreachable: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pg = Postgres::new(&format!(
        "postgres://postgres@127.0.0.1:{port}/x?sslmode=disable"
    ))
    .unwrap();
    let e = pg.lock("a").unwrap().lock().unwrap_err().to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("refused"),
        "{e}"
    );

    // Wrong password (TCP uses scram-sha-256).
    let pg = Postgres::new(&s.tcp_url("postgres", "wrong", "badinput")).unwrap();
    let e = pg.lock("a").unwrap().lock().unwrap_err().to_string();
    assert!(
        e.contains("password authentication failed for user \"postgres\""),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the password never appears: {e}");

    // Names.
    let pg = Postgres::new(&url).unwrap();
    let long = "n".repeat(256);
    match pg.lock(&long) {
        Err(Error::InvalidInput { reason, .. }) => {
            assert!(reason.contains("256 bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match pg.lock("a\0b") {
        Err(Error::InvalidInput { reason, .. }) => assert!(reason.contains("NUL"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(pg.phases(""), Err(Error::InvalidInput { .. })));

    // A role that may not create the tables (PostgreSQL 15: no CREATE on
    // schema public for ordinary roles).
    s.psql(
        "badinput",
        "DROP ROLE IF EXISTS weak; CREATE ROLE weak LOGIN PASSWORD 'weakpw'",
    );
    let pg = Postgres::new(&s.tcp_url("weak", "weakpw", "badinput")).unwrap();
    let e = pg.lock("a").unwrap().lock().unwrap_err().to_string();
    for needle in [
        "permission denied for schema public",
        "role \"weak\"",
        "holdfast_holders",
        "database \"badinput\"",
        "SCHEMA_SQL",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in: {e}");
    }
    // Not a URL at all.
    assert!(matches!(
        Postgres::new("postgres://a b c:xx/"),
        Err(Error::InvalidInput { .. })
    ));
}

/// Names with quotes, backslashes and non-ASCII text reach the holder
/// record exactly as given.
#[test]
fn odd_names_are_recorded_exactly() {
    let Some((_s, url)) = database("oddnames") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    for name in [
        "it's",
        "back\\slash\\'",
        "é/ü — 名前",
        "$$ dollar $$",
        "E'x'",
    ] {
        let lock = pg.lock(name).unwrap();
        let g = lock.lock().unwrap();
        let h = lock.holders().unwrap();
        assert_eq!(h.len(), 1, "{name}");
        assert_eq!(h[0].name.as_deref(), Some(name));
        assert_eq!(h[0].token, Some(g.token()));
        g.release().unwrap();
    }
}

/// The public traits: generic code over `LockBackend` works with a
/// PostgreSQL lock, and holdfast's generic phase runner and run-once record
/// their markers in `holdfast_phases` through the holding session.
#[test]
fn generic_phase_runner_and_run_once_over_postgres() {
    use holdfast::once::{OnceOutcome, RunOnce};
    use holdfast::phase::{Phase, PhaseRunner};
    use holdfast::{CompletionStore, HeldLock, LockBackend};
    use holdfast_postgres::PgStore;

    fn exclusively<B: LockBackend>(lock: &B) -> holdfast::Result<Option<u64>> {
        let held = lock.acquire(Mode::Exclusive, Wait::NoWait)?;
        held.check()?;
        let t = held.token();
        held.release()?;
        Ok(t)
    }

    let Some((s, url)) = database("generic") else {
        return;
    };
    let pg = Postgres::new(&url).unwrap();
    let lock = pg.lock("app").unwrap();
    let t1 = exclusively(&lock).unwrap().unwrap();
    let t2 = exclusively(&lock).unwrap().unwrap();
    assert!(t2 > t1);
    assert!(
        LockBackend::location(&lock)
            .to_string_lossy()
            .ends_with("/generic/app")
    );

    let store = PgStore::phases(&pg, "app").unwrap();
    let runner = PhaseRunner::new("app");
    let r = runner
        .run_with(
            &lock,
            &store,
            [
                Phase::new("one", |ctx| {
                    assert!(ctx.token().is_some());
                    Ok(())
                }),
                Phase::new("two", |_| Ok(())),
            ],
        )
        .unwrap();
    assert_eq!(r.completed, ["one", "two"]);
    let again = runner
        .run_with(&lock, &store, [Phase::new("one", |_| unreachable!())])
        .unwrap();
    assert_eq!(again.skipped, ["one"]);
    assert_eq!(store.done_keys().unwrap(), ["one", "two"]);
    assert!(store.clear("two").unwrap());
    assert!(!store.is_done("two").unwrap());

    let once_store = PgStore::once(&pg);
    let once = RunOnce::new("cache-warm");
    let once_lock = pg.lock("cache-warm").unwrap();
    assert!(
        once.run_with(&once_lock, &once_store, |_| Ok(()))
            .unwrap()
            .ran()
    );
    assert_eq!(
        once.run_with(&once_lock, &once_store, |_| unreachable!())
            .unwrap(),
        OnceOutcome::AlreadyDone { waited: false }
    );
    assert_eq!(once_store.done_keys().unwrap(), ["cache-warm"]);
    assert_eq!(
        s.psql(
            "generic",
            "SELECT count(*) FROM holdfast_phases WHERE target = 'cache-warm' AND phase = ''"
        ),
        "1"
    );
    // A fenced mark from a guard whose session was terminated is refused.
    let g = once_lock.acquire(Mode::Exclusive, Wait::NoWait).unwrap();
    s.psql(
        "generic",
        &format!("SELECT pg_terminate_backend({})", g.backend_pid()),
    );
    assert!(g.wait_lost(T).is_some());
    assert!(matches!(
        once_store.mark_done("other", &g),
        Err(Error::Lost { .. })
    ));
    assert!(!once_store.is_done("other").unwrap());
}

/// TLS through rustls against a real server with `ssl=on`: `require`
/// encrypts (the server's `pg_stat_ssl` says so while the lock is held),
/// `verify-full` and `verify-ca` accept the server signed by the CA that
/// `sslrootcert` names and refuse it under another CA, naming the server;
/// `disable` stays plain text.
#[test]
fn tls_modes_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tls) = holdfast_testkit::etcd::TlsFiles::generate(dir.path()) else {
        return;
    };
    let Some(server) = holdfast_testkit::postgres::PgServer::start_tls(&tls) else {
        return;
    };
    let url = |mode: &str, root: Option<&std::path::Path>| {
        let mut u = format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres?sslmode={mode}",
            holdfast_testkit::postgres::PASSWORD,
            server.port()
        );
        if let Some(r) = root {
            u.push_str(&format!("&sslrootcert={}", r.display()));
        }
        u
    };
    let encrypted = || {
        server
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE s.ssl AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
            )
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    for (mode, root) in [
        ("require", None),
        ("prefer", None),
        ("verify-ca", Some(tls.ca.as_path())),
        ("verify-full", Some(tls.ca.as_path())),
    ] {
        let pg = Postgres::new(&url(mode, root)).unwrap();
        let guard = pg
            .lock("tls")
            .unwrap()
            .lock()
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(
            encrypted() >= 1,
            "sslmode={mode}: the session is not encrypted"
        );
        drop(guard);
    }
    let pg = Postgres::new(&url("disable", None)).unwrap();
    let guard = pg.lock("tls").unwrap().lock().unwrap();
    assert_eq!(encrypted(), 0, "sslmode=disable must stay plain text");
    drop(guard);

    for mode in ["verify-ca", "verify-full"] {
        let pg = Postgres::new(&url(mode, Some(&tls.other_ca))).unwrap();
        let e = pg.lock("tls").unwrap().lock().unwrap_err().to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{}", server.port())),
            "sslmode={mode}: the error names the server: {e}"
        );
        assert!(
            e.to_lowercase().contains("certificate"),
            "sslmode={mode}: the error says why: {e}"
        );
    }
    let missing = dir.path().join("no-such-ca.pem");
    let pg = Postgres::new(&url("verify-full", Some(&missing))).unwrap();
    let e = pg.lock("tls").unwrap().lock().unwrap_err().to_string();
    assert!(e.contains("no-such-ca.pem"), "{e}");
}
