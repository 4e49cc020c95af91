//! `holdfast --backend postgres://...` against a real PostgreSQL server
//! started by the test (`holdfast_testkit::postgres`): exclusion across
//! processes, shared holders, a killed or terminated holder, phases and
//! run-once with markers in the database, and bad input.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_testkit::postgres::{PgServer, advisory_waiters_sql, database};
use holdfast_testkit::{Child, Dir, Output, run_to_end, wait_for};
use serde_json::Value;

use crate::common::HOLDFAST;

const T: Duration = Duration::from_secs(120);

fn holdfast() -> Command {
    let mut c = crate::common::holdfast();
    c.env_remove("HOLDFAST_BACKEND");
    c
}

fn run(cmd: &mut Command) -> Output {
    run_to_end(cmd, T)
}

/// Sessions waiting for the advisory lock of `name`.
fn waiters(s: &PgServer, db: &str, name: &str) -> String {
    s.psql(db, &advisory_waiters_sql(holdfast_postgres_key(name)))
}

/// The documented key derivation, computed by the server itself.
fn holdfast_postgres_key(name: &str) -> String {
    format!(
        "('x' || left(encode(sha256(convert_to('{name}', 'UTF8')), 'hex'), 16))::bit(64)::bigint"
    )
}

/// The critical section: an overlap detector (a directory only one may
/// create) around a read-increment-write of a counter.
fn critical_section(dir: &Path) -> String {
    format!(
        "cd '{}' && {{ mkdir inside 2>/dev/null || echo overlap >> violations; }} && \
         read n < counter && echo $((n + 1)) > counter && rmdir inside",
        dir.display()
    )
}

/// Eight processes, each running `holdfast run --backend postgres://`
/// 200 times around the critical section: 1600 increments, no overlap.
#[test]
fn eight_processes_two_hundred_increments_each() {
    const WORKERS: usize = 8;
    const ROUNDS: usize = 200;
    let Some((_s, url)) = database("incr") else {
        return;
    };
    let d = Dir::new();
    std::fs::write(d.join("counter"), "0\n").unwrap();
    let script = format!(
        "for i in $(seq {ROUNDS}); do '{HOLDFAST}' run --backend '{url}' counter -- sh -c \"$CS\" \
         || exit 1; done"
    );
    let mut kids: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .env("CS", critical_section(d.path()))
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in &mut kids {
        let st = wait_for("the workers", Duration::from_secs(600), || {
            k.try_wait().unwrap()
        });
        assert!(st.success(), "{st}");
    }
    assert!(!d.join("violations").exists(), "overlapping holders");
    let n: usize = std::fs::read_to_string(d.join("counter"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, WORKERS * ROUNDS);
}

/// Two shared holders at once; an exclusive one is refused (naming both)
/// and waits for both; `status` names them.
#[test]
fn shared_holders_coexist_and_block_an_exclusive_one() {
    let Some((s, url)) = database("sharedcli") else {
        return;
    };
    let hold = |mode: &[&str]| {
        let mut c = holdfast();
        c.arg("run")
            .args(mode)
            .args(["--backend", &url, "report", "--", "sh", "-c"])
            .arg("echo in token=$HOLDFAST_FENCING_TOKEN; read x || true");
        Child::spawn(c)
    };
    let mut a = hold(&["--shared"]);
    let mut b = hold(&["--shared"]);
    a.expect_line("in token=", T);
    b.expect_line("in token=", T);
    let out = run(holdfast().args([
        "run",
        "--no-wait",
        "--backend",
        &url,
        "report",
        "--",
        "true",
    ]));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("held (shared) by"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("pid {}", a.pid())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("pid {}", b.pid())),
        "{}",
        out.stderr
    );

    let st = run(holdfast().args(["status", "--backend", &url, "report", "other"]));
    assert_eq!(st.code(), 1, "{st:?}");
    assert!(
        st.stdout.contains("/report: held (shared) by"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("/other: free"), "{}", st.stdout);
    let js = run(holdfast().args(["status", "--json", "--backend", &url, "report"]));
    let v: Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v[0]["holders"].as_array().unwrap().len(), 2, "{v}");
    assert!(v[0]["holders"][0]["token"].as_u64().is_some(), "{v}");
    assert!(v[0]["holders"][0]["backend_pid"].as_i64().is_some(), "{v}");
    let ls = run(holdfast().args(["list", "--backend", &url]));
    assert!(
        ls.stdout.starts_with("report: held (shared) by"),
        "{}",
        ls.stdout
    );

    let mut x = Child::spawn({
        let mut c = holdfast();
        c.args([
            "run",
            "--backend",
            &url,
            "report",
            "--",
            "echo",
            "exclusive",
        ]);
        c
    });
    wait_for("the exclusive run to wait", T, || {
        (waiters(s, "sharedcli", "report") == "1").then_some(())
    });
    a.close_stdin();
    assert!(a.wait(T).success());
    assert!(
        x.try_line(Duration::from_millis(200)).is_none(),
        "one shared holder is still in"
    );
    b.close_stdin();
    assert!(b.wait(T).success());
    assert_eq!(x.line(T), "exclusive");
    assert!(x.wait(T).success());
    let st = run(holdfast().args(["status", "--backend", &url, "report"]));
    assert_eq!(st.code(), 0, "{st:?}");
}

/// SIGKILL of holdfast while its command runs: the command dies with it,
/// the session ends, and the waiting holdfast runs its command promptly.
#[test]
fn killed_holder_hands_over_promptly() {
    let Some((s, url)) = database("killcli") else {
        return;
    };
    let d = Dir::new();
    let mut holder = Child::spawn({
        let mut c = holdfast();
        c.args(["run", "--backend", &url, "job", "--", "sh", "-c"])
            .arg(format!(
                "echo $$ > '{}'; echo in; exec sleep 1000",
                d.join("pid").display()
            ));
        c
    });
    holder.expect_line("in", T);
    let command_pid: i32 = std::fs::read_to_string(d.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut waiter = Child::spawn({
        let mut c = holdfast();
        c.args(["run", "--backend", &url, "job", "--", "echo", "second"]);
        c
    });
    wait_for("the second run to wait", T, || {
        (waiters(s, "killcli", "job") == "1").then_some(())
    });
    let killed = Instant::now();
    holder.kill9();
    assert_eq!(waiter.line(T), "second");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert!(waiter.wait(T).success());
    wait_for("the killed holder's command to die with it", T, || {
        (!Path::new(&format!("/proc/{command_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{command_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
}

/// pg_terminate_backend of the holding session: holdfast stops the
/// command, exits 75, and the waiter gets the lock.
#[test]
fn terminated_session_stops_the_command_and_exits_75() {
    let Some((s, url)) = database("termcli") else {
        return;
    };
    let mut holder = Child::spawn({
        let mut c = holdfast();
        c.args([
            "run",
            "--backend",
            &url,
            "job",
            "--",
            "sh",
            "-c",
            "echo in; exec sleep 1000",
        ]);
        c
    });
    holder.expect_line("in", T);
    let mut waiter = Child::spawn({
        let mut c = holdfast();
        c.args(["run", "--backend", &url, "job", "--", "echo", "second"]);
        c
    });
    wait_for("the second run to wait", T, || {
        (waiters(s, "termcli", "job") == "1").then_some(())
    });
    s.psql(
        "termcli",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND ((classid::int8 << 32) | objid::int8) = {}",
            holdfast_postgres_key("job")
        ),
    );
    assert_eq!(waiter.line(T), "second");
    let st = holder.wait(T);
    assert_eq!(st.code(), Some(75), "{st}");
    assert!(waiter.wait(T).success());
}

/// Eight deployers run the same shell-command phase at once: it runs once,
/// all eight exit 0, the marker is in holdfast_phases; later ones skip.
#[test]
fn phase_runs_once_across_eight_deployers() {
    let Some((s, url)) = database("phasecli") else {
        return;
    };
    let d = Dir::new();
    let log = d.join("ran");
    let mut kids: Vec<_> = (0..8)
        .map(|_| {
            holdfast()
                .args([
                    "phase",
                    "migrate-v1",
                    "--target",
                    "app",
                    "--backend",
                    &url,
                    "--",
                    "sh",
                    "-c",
                ])
                .arg(format!(
                    "echo $HOLDFAST_FENCING_TOKEN >> '{}'",
                    log.display()
                ))
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in &mut kids {
        let st = wait_for("the deployers", T, || k.try_wait().unwrap());
        assert!(st.success(), "{st}");
    }
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran.lines().count(), 1, "{ran}");
    assert_eq!(
        s.psql(
            "phasecli",
            "SELECT token FROM holdfast_phases WHERE target = 'app' AND phase = 'migrate-v1'"
        ),
        ran.trim()
    );
    let again = run(holdfast().args([
        "phase",
        "migrate-v1",
        "-t",
        "app",
        "-v",
        "--backend",
        &url,
        "--",
        "false",
    ]));
    assert_eq!(again.code(), 0, "{again:?}");
    assert!(again.stderr.contains("already done"), "{}", again.stderr);
}

/// once: a failed command is not marked and passes its status through;
/// the next one runs and marks; --status and --reset; HOLDFAST_BACKEND
/// and the PG* variables stand in for --backend URL.
#[test]
fn once_with_env_backend() {
    let Some((s, _url)) = database("oncecli") else {
        return;
    };
    let env = |c: &mut Command| {
        c.env("HOLDFAST_BACKEND", "postgres://")
            .env("PGHOST", s.socket_dir())
            .env("PGPORT", s.port().to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "oncecli");
    };
    let mut c = holdfast();
    env(&mut c);
    let failed = run(c.args(["once", "init", "--", "sh", "-c", "exit 3"]));
    assert_eq!(failed.code(), 3, "{failed:?}");
    assert!(
        failed.stderr.contains("not marked done"),
        "{}",
        failed.stderr
    );
    let mut c = holdfast();
    env(&mut c);
    assert_eq!(run(c.args(["once", "--status", "init"])).code(), 1);
    let mut c = holdfast();
    env(&mut c);
    let ok = run(c.args([
        "once",
        "init",
        "--",
        "sh",
        "-c",
        "echo token=$HOLDFAST_FENCING_TOKEN",
    ]));
    assert_eq!(ok.code(), 0, "{ok:?}");
    assert!(ok.stdout.starts_with("token="), "{}", ok.stdout);
    let mut c = holdfast();
    env(&mut c);
    let st = run(c.args(["once", "--status", "init"]));
    assert_eq!(st.code(), 0, "{st:?}");
    assert!(st.stdout.contains("init: done (by pid"), "{}", st.stdout);
    let mut c = holdfast();
    env(&mut c);
    assert_eq!(
        run(c.args(["once", "init", "--", "false"])).code(),
        0,
        "done: not run again"
    );
    let mut c = holdfast();
    env(&mut c);
    assert_eq!(run(c.args(["once", "--reset", "init"])).code(), 0);
    assert_eq!(
        s.psql("oncecli", "SELECT count(*) FROM holdfast_phases"),
        "0"
    );
}

/// `phases status|reset --backend postgres://...` (see `remote_phases`).
#[test]
fn phases_status_and_reset() {
    let Some((_s, url)) = database("phasescli") else {
        return;
    };
    super::remote_phases::phases_status_and_reset(&url);
}

/// Bad input is named: an unreachable server, a wrong password, a name too
/// long, local-only flags, a database where the role may not create
/// holdfast's tables.
#[test]
fn bad_input_is_named() {
    let Some((s, url)) = database("badcli") else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(holdfast().args([
        "run",
        "--backend",
        &format!("postgres://u@127.0.0.1:{port}/db?sslmode=disable"),
        "x",
        "--",
        "true",
    ]));
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr
            .contains(&format!("postgres://u@127.0.0.1:{port}/db")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("refused"), "{}", out.stderr);

    let out = run(holdfast().args([
        "run",
        "--backend",
        &s.tcp_url("postgres", "nope", "badcli"),
        "x",
        "--",
        "true",
    ]));
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("nope"), "{}", out.stderr);

    let long = "n".repeat(300);
    let out = run(holdfast().args(["run", "--backend", &url, &long, "--", "true"]));
    assert_eq!(out.code(), 64, "{out:?}");
    assert!(out.stderr.contains("300 bytes"), "{}", out.stderr);

    let out = run(holdfast().args(["run", "--fifo", "--backend", &url, "x", "--", "true"]));
    assert_eq!(out.code(), 64, "{out:?}");

    s.psql(
        "badcli",
        "DROP ROLE IF EXISTS weakcli; CREATE ROLE weakcli LOGIN PASSWORD 'pw'",
    );
    let out = run(holdfast().args([
        "phase",
        "p",
        "-t",
        "app",
        "--backend",
        &s.tcp_url("weakcli", "pw", "badcli"),
        "--",
        "true",
    ]));
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("permission denied for schema public"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("holdfast_phases"), "{}", out.stderr);
}
