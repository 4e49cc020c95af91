//! `holdfast ... --backend etcd://...` against a real etcd that each test
//! starts on free 127.0.0.1 ports (Debian's etcd-server; skipped with a
//! message only when it is not installed and `HOLDFAST_REQUIRE_ETCD` is
//! unset, as `scripts/test` sets it).
//!
//! Holders are `holdfast run ... -- sh -c 'echo locked; read x'`: they say
//! when they hold the lock and let go when their stdin closes. Waiters are
//! started one at a time, each once `holdfast status` shows it queued.
//! Nothing waits on a bare sleep.

#![cfg(feature = "etcd")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_testkit::{Child, Dir, Etcd, run_to_end, wait_for};
use serde_json::Value;

use crate::common::HOLDFAST;

const T: Duration = Duration::from_secs(60);
/// Bound for the long multi-process runs (only reached when something hangs).
const LONG: Duration = Duration::from_secs(600);

/// The two heavy tests (1600 runs; a 3-member cluster) take turns, so that
/// on a small machine neither starves the other into a timeout.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn holdfast(url: &str) -> Command {
    let mut c = crate::common::holdfast();
    c.env("HOLDFAST_BACKEND", url);
    for v in [
        "ETCDCTL_USER",
        "ETCDCTL_PASSWORD",
        "ETCDCTL_CACERT",
        "ETCDCTL_CERT",
        "ETCDCTL_KEY",
    ] {
        c.env_remove(v);
    }
    c
}

fn status(url: &str, name: &str) -> Value {
    let out = run_to_end(holdfast(url).args(["status", "--json", name]), T);
    assert!(out.code() == 0 || out.code() == 1, "{out:?}");
    serde_json::from_str::<Value>(&out.stdout).expect("status JSON")[0].clone()
}

fn waiting(url: &str, name: &str) -> usize {
    status(url, name)["waiters"].as_array().map_or(0, Vec::len)
}

/// The critical section: an overlap detector (a directory only one may
/// create), a read-increment-write counter, and the fencing token logged.
fn critical_section(dir: &Path) -> String {
    format!(
        "cd '{}' && {{ mkdir inside 2>/dev/null || echo overlap >> violations; }} && \
         n=$(cat counter 2>/dev/null || echo 0) && echo $((n + 1)) > counter && \
         echo \"$HOLDFAST_FENCING_TOKEN\" >> tokens && rmdir inside",
        dir.display()
    )
}

fn tokens(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("tokens"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a token"))
        .collect()
}

fn counter(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("counter"))
        .map(|s| s.trim().parse().expect("a complete counter"))
        .unwrap_or(0)
}

/// The counter while workers may be writing it (a half-written file reads as 0).
fn counter_now(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Worker shells, killed if the test ends early.
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for k in &mut self.0 {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

fn assert_increasing(tokens: &[u64]) {
    for w in tokens.windows(2) {
        assert!(w[0] < w[1], "tokens must only grow: {w:?} in {tokens:?}");
    }
}

/// Workers each running `holdfast run` ROUNDS times around the critical
/// section; `retry` lets an attempt that failed before its command ran be
/// made again (for the cluster test, where a member dies).
fn workers(url: &str, name: &str, cs: &Path, n: usize, rounds: usize, retry: bool) -> Workers {
    let attempt = format!("'{HOLDFAST}' run --ttl 3s {name} -- sh -c \"$CS\"");
    let script = if retry {
        format!(
            "for i in $(seq {rounds}); do tries=0; until {attempt}; do tries=$((tries+1)); \
             [ $tries -lt 20 ] || exit 1; done; done"
        )
    } else {
        format!("for i in $(seq {rounds}); do {attempt} || exit 1; done")
    };
    Workers(
        (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", &script])
                    .env("CS", critical_section(cs))
                    .env("HOLDFAST_BACKEND", url)
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    )
}

/// 8 processes × 200 `holdfast run --backend etcd://` around a
/// read-increment-write: exactly 1600, no overlap, and the holders came in
/// arrival order (each one's fencing token, the revision at which it
/// joined the queue, is larger than the one before it).
#[test]
fn eight_processes_count_to_1600_in_arrival_order() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let d = Dir::new();
    let mut kids = workers(&url, "counter", d.path(), 8, 200, false);
    for k in &mut kids.0 {
        let st = wait_for("the workers", LONG, || k.try_wait().unwrap());
        assert!(st.success(), "{st}");
    }
    assert!(!d.join("violations").exists(), "overlapping holders");
    assert_eq!(counter(d.path()), 1600);
    let t = tokens(d.path());
    assert_eq!(t.len(), 1600);
    assert_increasing(&t);
    assert_eq!(status(&url, "counter")["held"], false);
}

/// Waiters started one after another (each once it is visibly queued)
/// get the lock in that order.
#[test]
fn waiters_are_served_in_arrival_order() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let d = Dir::new();
    let log = d.join("order");
    let mut holder = Child::spawn({
        let mut c = holdfast(&url);
        c.args(["run", "q", "--", "sh", "-c", "echo locked; read x"]);
        c
    });
    holder.expect_line("locked", T);
    let mut waiters = Vec::new();
    for i in 0..5 {
        let mut c = holdfast(&url);
        c.args(["run", "q", "--", "sh", "-c"])
            .arg(format!("echo {i} >> '{}'", log.display()))
            .stdin(Stdio::null());
        waiters.push(c.spawn().unwrap());
        wait_for(&format!("waiter {i} to queue"), T, || {
            (waiting(&url, "q") == i + 1).then_some(())
        });
    }
    holder.close_stdin();
    for w in &mut waiters {
        let st = wait_for("the waiters", T, || w.try_wait().unwrap());
        assert!(st.success());
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "0\n1\n2\n3\n4\n");
}

/// SIGKILL of the holder (holdfast; its command dies with it): the next
/// waiter gets the lock within TTL + 1 s.
#[test]
fn sigkilled_holder_hands_over_within_the_ttl() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let mut a = Child::spawn({
        let mut c = holdfast(&url);
        c.args([
            "run",
            "--ttl",
            "2s",
            "k",
            "--",
            "sh",
            "-c",
            "echo locked; read x",
        ]);
        c
    });
    a.expect_line("locked", T);
    let mut b = Child::spawn({
        let mut c = holdfast(&url);
        c.args([
            "run",
            "--ttl",
            "2s",
            "k",
            "--",
            "sh",
            "-c",
            "echo got; read x",
        ]);
        c
    });
    wait_for("B to queue", T, || (waiting(&url, "k") == 1).then_some(()));
    let killed = Instant::now();
    a.kill9();
    b.expect_line("got", Duration::from_secs(10));
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(3), "took {took:?} (TTL 2s)");
    let st = status(&url, "k");
    assert_eq!(st["holders"][0]["pid"], b.pid());
}

/// SIGSTOP of a phase runner past its TTL: another runner gets the lock,
/// runs the phase and marks it; the stopped one, resumed, learns it lost
/// the lock, stops its command, exits 75 and marks nothing.
#[test]
fn sigstopped_holder_loses_the_lock_and_marks_nothing() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let d = Dir::new();
    let log = d.join("log");
    let mut a = Child::spawn({
        let mut c = holdfast(&url);
        c.args([
            "phase", "--ttl", "2s", "p1", "--target", "app", "--", "sh", "-c",
        ])
        .arg(format!(
            "echo A >> '{}'; echo started; read x; echo A-finished >> '{}'",
            log.display(),
            log.display()
        ));
        c
    });
    a.expect_line("started", T);
    let stopped = Command::new("kill")
        .args(["-STOP", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let b = run_to_end(
        holdfast(&url)
            .args([
                "phase", "-v", "--ttl", "2s", "p1", "--target", "app", "--", "sh", "-c",
            ])
            .arg(format!("echo B >> '{}'", log.display())),
        T,
    );
    assert_eq!(b.code(), 0, "{b:?}");
    assert!(b.stderr.contains("is done"), "{}", b.stderr);
    Command::new("kill")
        .args(["-CONT", &a.pid().to_string()])
        .status()
        .unwrap();
    let st = a.wait(T);
    assert_eq!(st.code(), Some(75), "A must exit 75 (lock lost)");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.starts_with("A\nB\n"), "{log}");
    assert!(
        !log.contains("A-finished"),
        "A's command was stopped: {log}"
    );
    // The phase is marked once, by B.
    let again = run_to_end(
        holdfast(&url).args(["phase", "-v", "p1", "--target", "app", "--", "false"]),
        T,
    );
    assert_eq!(again.code(), 0, "{again:?}");
    assert!(again.stderr.contains("already done"), "{}", again.stderr);
}

/// Phases over etcd: 8 concurrent scripts of three phases; each phase runs
/// once, in order. A runner killed in a phase leaves it unmarked, and the
/// next runner runs it.
#[test]
fn phases_run_once_in_order_under_8_concurrent_runners() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let d = Dir::new();
    let log = d.join("log");
    let script = format!(
        "set -e; for p in p1 p2 p3; do '{HOLDFAST}' phase $p --target app -- sh -c \
         \"echo $p >> '{}'\"; done",
        log.display()
    );
    let mut kids: Vec<_> = (0..8)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .env("HOLDFAST_BACKEND", &url)
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in &mut kids {
        let st = wait_for("the runners", T, || k.try_wait().unwrap());
        assert!(st.success(), "{st}");
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "p1\np2\np3\n");

    // A runner killed inside p4: not marked; the next one runs it.
    let mut a = Child::spawn({
        let mut c = holdfast(&url);
        c.args([
            "phase", "--ttl", "2s", "p4", "--target", "app", "--", "sh", "-c",
        ])
        .arg(format!(
            "echo p4-killed >> '{}'; echo started; read x",
            log.display()
        ));
        c
    });
    a.expect_line("started", T);
    a.kill9();
    let b = run_to_end(
        holdfast(&url)
            .args(["phase", "p4", "--target", "app", "--", "sh", "-c"])
            .arg(format!("echo p4 >> '{}'", log.display())),
        T,
    );
    assert_eq!(b.code(), 0, "{b:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "p1\np2\np3\np4-killed\np4\n"
    );
}

/// `once` over etcd: runs once, `--status`, `--reset`.
#[test]
fn once_status_and_reset() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let d = Dir::new();
    let log = d.join("log");
    let cmd = format!("echo ran >> '{}'", log.display());
    for _ in 0..2 {
        let o = run_to_end(
            holdfast(&url).args(["once", "init", "--", "sh", "-c", &cmd]),
            T,
        );
        assert_eq!(o.code(), 0, "{o:?}");
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ran\n");
    let s = run_to_end(holdfast(&url).args(["once", "--status", "init"]), T);
    assert_eq!(s.code(), 0, "{s:?}");
    let r = run_to_end(holdfast(&url).args(["once", "--reset", "init"]), T);
    assert_eq!(r.code(), 0, "{r:?}");
    let s = run_to_end(holdfast(&url).args(["once", "--status", "init"]), T);
    assert_eq!(s.code(), 1, "{s:?}");
    let f = run_to_end(
        holdfast(&url).args(["once", "init", "--", "sh", "-c", "exit 3"]),
        T,
    );
    assert_eq!(f.code(), 3, "{f:?}");
    assert!(f.stderr.contains("not marked done"), "{}", f.stderr);
}

/// `once --on-leader-failure` over etcd, as for local locks: callers
/// queued while the leader's command fails (or while the leader is
/// SIGKILLed) all run it themselves one after the other with `retry` (the
/// first one marks it done, the others skip), and none runs it with
/// `propagate`: every waiter of that round exits 75 naming the leader,
/// nothing is marked, and the next caller (who did not wait) runs it.
#[test]
fn once_leader_failure_retry_and_propagate() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    for (round, (propagate, kill)) in [(false, false), (true, false), (true, true)]
        .into_iter()
        .enumerate()
    {
        let d = Dir::new();
        let count = d.join("count");
        let key = format!("init{round}");
        let mut leader = Child::spawn({
            let mut c = holdfast(&url);
            c.args(["once", "--ttl", "2s", &key, "--", "sh", "-c"])
                .arg("echo started; read x; exit 5");
            c
        });
        leader.expect_line("started", T);
        let waiters: Vec<std::process::Child> = (0..3)
            .map(|i| {
                let mut c = holdfast(&url);
                c.arg("once");
                if propagate {
                    c.args(["--on-leader-failure", "propagate"]);
                }
                let w = c
                    .args([&key, "--", "sh", "-c"])
                    .arg(format!("echo ran >> '{}'", count.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                // Queued one at a time: arrival order is service order.
                wait_for("the waiter queued", T, || {
                    (waiting(&url, &key) > i).then_some(())
                });
                w
            })
            .collect();
        if kill {
            leader.kill9();
        } else {
            leader.send("go");
            assert_eq!(leader.wait(T).code(), Some(5), "the leader gets its status");
        }
        let outs: Vec<(Option<i32>, String)> = waiters
            .into_iter()
            .map(|mut w| {
                wait_for("a waiter to finish", T, || w.try_wait().unwrap());
                let o = w.wait_with_output().unwrap();
                (
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .collect();
        let ran = std::fs::read_to_string(&count).unwrap_or_default();
        let st = run_to_end(holdfast(&url).args(["once", "--status", &key]), T);
        if propagate {
            for (code, err) in &outs {
                assert_eq!(*code, Some(75), "{outs:?}");
                assert!(
                    err.contains("stopped without recording completion"),
                    "{err}"
                );
                assert!(err.contains(&format!("pid {}", leader.pid())), "{err}");
            }
            assert_eq!(ran, "", "nobody ran it");
            assert_eq!(st.code(), 1, "not marked: {st:?}");
            // A caller that did not wait is a new leader, and runs it.
            let next = run_to_end(
                holdfast(&url)
                    .args(["once", "--on-leader-failure", "propagate", &key, "--"])
                    .args(["sh", "-c", &format!("echo ran >> '{}'", count.display())]),
                T,
            );
            assert_eq!(next.code(), 0, "{next:?}");
            assert_eq!(std::fs::read_to_string(&count).unwrap(), "ran\n");
        } else {
            assert!(outs.iter().all(|(c, _)| *c == Some(0)), "{outs:?}");
            assert_eq!(ran, "ran\n", "exactly one waiter took over");
            assert_eq!(st.code(), 0, "marked: {st:?}");
        }
    }
}

/// `phases status|reset --backend etcd://...` (see `remote_phases`).
#[test]
fn phases_status_and_reset() {
    let Some(etcd) = Etcd::start() else { return };
    super::remote_phases::phases_status_and_reset(&etcd.url());
}

/// `status` and `list` name the holder (pid, host, command, token) and the
/// waiters; `--no-wait` and `--timeout` say who is in the way.
#[test]
fn status_list_and_contention_name_the_holder() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let mut a = Child::spawn({
        let mut c = holdfast(&url);
        c.args([
            "run",
            "deploy",
            "--",
            "sh",
            "-c",
            "echo locked $HOLDFAST_FENCING_TOKEN; read x",
        ]);
        c
    });
    let line = a.expect_line("locked", T);
    let token: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let st = status(&url, "deploy");
    assert_eq!(st["held"], true);
    assert_eq!(st["holders"][0]["pid"], a.pid());
    assert_eq!(st["holders"][0]["token"], token);
    assert!(
        st["holders"][0]["command"]
            .as_str()
            .unwrap()
            .contains("deploy")
    );
    let text = run_to_end(holdfast(&url).args(["status", "deploy"]), T);
    assert_eq!(text.code(), 1);
    assert!(
        text.stdout.contains(&format!("pid {}", a.pid())),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!("fencing token {token}")),
        "{}",
        text.stdout
    );
    let nw = run_to_end(
        holdfast(&url).args(["run", "--no-wait", "deploy", "--", "true"]),
        T,
    );
    assert_eq!(nw.code(), 1, "{nw:?}");
    assert!(
        nw.stderr.contains(&format!("pid {}", a.pid())),
        "{}",
        nw.stderr
    );
    let to = run_to_end(
        holdfast(&url).args(["run", "--timeout", "300ms", "deploy", "--", "true"]),
        T,
    );
    assert_eq!(to.code(), 124, "{to:?}");
    let list = run_to_end(holdfast(&url).args(["list", "--json"]), T);
    let v: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], "deploy");
    let none = run_to_end(holdfast(&url).args(["list", "nomatch"]), T);
    assert_eq!(none.stdout, "");
    a.close_stdin();
    a.wait(T);
    let free = run_to_end(holdfast(&url).args(["status", "deploy"]), T);
    assert_eq!(free.code(), 0, "{free:?}");
    assert!(free.stdout.ends_with(": free\n"), "{}", free.stdout);
}

/// Bad input: unreachable endpoint (named, within the timeout), a name
/// with '/', a TTL out of range, an unknown scheme, local-only flags.
#[test]
fn bad_input_is_refused_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("etcd://127.0.0.1:{port}");
    let started = Instant::now();
    let o = run_to_end(
        holdfast(&dead).args(["run", "--connect-timeout", "1s", "x", "--", "true"]),
        T,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(o.code(), 69, "{o:?}");
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        o.stderr
    );
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    for (args, want) in [
        (vec!["run", "a/b", "--", "true"], "contains '/'"),
        (vec!["run", "--ttl", "0", "x", "--", "true"], "TTL"),
        (vec!["run", "--ttl", "2000h", "x", "--", "true"], "TTL"),
        (
            vec!["run", "--ttl", "1.5s", "x", "--", "true"],
            "whole number",
        ),
        (vec!["run", "--fifo", "x", "--", "true"], "--fifo"),
        (
            vec!["run", "--lockfile", "link", "x", "--", "true"],
            "--lockfile",
        ),
        (
            vec!["phase", "p/1", "--target", "app", "--", "true"],
            "contains '/'",
        ),
    ] {
        let o = run_to_end(holdfast(&url).args(&args), T);
        assert_eq!(o.code(), 64, "{args:?}: {o:?}");
        assert!(o.stderr.contains(want), "{args:?}: {}", o.stderr);
    }
    let o = run_to_end(holdfast("redis://x").args(["run", "x", "--", "true"]), T);
    assert_eq!(o.code(), 64, "{o:?}");
    assert!(o.stderr.contains("unknown lock service"), "{}", o.stderr);
    let o = run_to_end(
        Command::new(HOLDFAST)
            .env_remove("HOLDFAST_BACKEND")
            .args(["run", "--ttl", "5s", "x.lock", "--", "true"]),
        T,
    );
    assert_eq!(o.code(), 64, "{o:?}");
    assert!(o.stderr.contains("--ttl needs --backend"), "{}", o.stderr);
}

/// With authentication on: the right user works, a wrong password is
/// refused naming the user, no password at all is bad input.
#[test]
fn credentials_are_checked() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    for args in [vec!["user", "add", "root:rootpw"], vec!["auth", "enable"]] {
        let o = etcd.etcdctl().args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    let ok = run_to_end(
        holdfast(&url).args(["run", "--user", "root:rootpw", "x", "--", "true"]),
        T,
    );
    assert_eq!(ok.code(), 0, "{ok:?}");
    let env_ok = run_to_end(
        holdfast(&url)
            .env("ETCDCTL_USER", "root")
            .env("ETCDCTL_PASSWORD", "rootpw")
            .args(["run", "x", "--", "true"]),
        T,
    );
    assert_eq!(env_ok.code(), 0, "{env_ok:?}");
    let bad = run_to_end(
        holdfast(&url).args(["run", "--user", "root:wrong", "x", "--", "true"]),
        T,
    );
    assert_ne!(bad.code(), 0, "{bad:?}");
    assert!(bad.stderr.contains("root"), "{}", bad.stderr);
    assert!(bad.stderr.contains("authenticat"), "{}", bad.stderr);
    let anon = run_to_end(holdfast(&url).args(["run", "x", "--", "true"]), T);
    assert_ne!(anon.code(), 0, "{anon:?}");
    let nopw = run_to_end(
        holdfast(&url).args(["run", "--user", "root", "x", "--", "true"]),
        T,
    );
    assert_eq!(nopw.code(), 64, "{nopw:?}");
}

/// TLS: an etcd serving clients over TLS only and asking for a client
/// certificate (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`; certificates made with openssl). `run` works
/// with `--cacert/--cert/--key` and with the `ETCDCTL_*` variables; a
/// wrong CA, no client certificate, or plain text to the TLS port fail
/// within the timeout with an error naming the endpoint and the cause.
#[test]
fn tls_with_client_certificates() {
    let d = Dir::new();
    let Some(tls) = holdfast_testkit::etcd::TlsFiles::generate(d.path()) else {
        return;
    };
    let Some(etcd) = Etcd::start_tls(&tls) else {
        return;
    };
    let url = etcd.url();
    let endpoint = etcd.endpoints()[0].clone();
    let plain = format!("etcd://{endpoint}");
    let run = |url: &str, tls_args: &[&std::ffi::OsStr]| {
        run_to_end(
            holdfast(url)
                .args(["run", "--connect-timeout", "5s"])
                .args(tls_args)
                .args(["x", "--", "sh", "-c", "echo token=$HOLDFAST_FENCING_TOKEN"]),
            T,
        )
    };
    let ok = run(
        &url,
        &[
            "--cacert".as_ref(),
            tls.ca.as_os_str(),
            "--cert".as_ref(),
            tls.client_cert.as_os_str(),
            "--key".as_ref(),
            tls.client_key.as_os_str(),
        ],
    );
    assert_eq!(ok.code(), 0, "{ok:?}");
    assert!(ok.stdout.starts_with("token="), "{}", ok.stdout);
    // etcd:// with a CA turns TLS on, as etcdctl does; the variables work.
    let env = run_to_end(
        holdfast(&plain)
            .env("ETCDCTL_CACERT", &tls.ca)
            .env("ETCDCTL_CERT", &tls.client_cert)
            .env("ETCDCTL_KEY", &tls.client_key)
            .args(["status", "x"]),
        T,
    );
    assert_eq!(env.code(), 0, "{env:?}");
    assert!(env.stdout.ends_with(": free\n"), "{}", env.stdout);

    for (what, url, args, want) in [
        (
            "a wrong CA",
            &url,
            vec![
                "--cacert".as_ref(),
                tls.other_ca.as_os_str(),
                "--cert".as_ref(),
                tls.client_cert.as_os_str(),
                "--key".as_ref(),
                tls.client_key.as_os_str(),
            ],
            "certificate",
        ),
        (
            "no client certificate",
            &url,
            vec!["--cacert".as_ref(), tls.ca.as_os_str()],
            "certificate",
        ),
        ("plain text to the TLS port", &plain, vec![], "etcds://"),
    ] {
        let started = Instant::now();
        let o = run(url, &args);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_ne!(o.code(), 0, "{what}: {o:?}");
        assert!(o.stdout.is_empty(), "{what}: the command ran: {o:?}");
        assert!(o.stderr.contains(&endpoint), "{what}: {o:?}");
        assert!(o.stderr.contains(want), "{what}: {}", o.stderr);
        eprintln!("{what}: exit {}: {}", o.code(), o.stderr.trim());
    }
}

/// A 3-member cluster: the leader is SIGKILLed while the lock is held and
/// waiters queue. Tokens never repeat or go down, no two holders overlap,
/// and the workers all finish after the re-election.
#[test]
fn cluster_survives_the_leader_being_killed() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut etcd) = Etcd::cluster(3) else {
        return;
    };
    let url = etcd.url();
    let d = Dir::new();
    let mut kids = workers(&url, "c", d.path(), 4, 15, true);
    wait_for("some rounds before the kill", LONG, || {
        (counter_now(d.path()) >= 8).then_some(())
    });
    let leader = wait_for("etcdctl to name the leader", LONG, || etcd.leader());
    etcd.kill(leader);
    for k in &mut kids.0 {
        let st = wait_for("the workers", LONG, || k.try_wait().unwrap());
        assert!(st.success(), "{st}: {}", etcd.logs());
    }
    assert!(!d.join("violations").exists(), "overlapping holders");
    assert_eq!(counter(d.path()), 60);
    let t = tokens(d.path());
    assert_eq!(t.len(), 60);
    assert_increasing(&t);
    let new_leader = wait_for("the survivors to name a leader", LONG, || etcd.leader());
    assert_ne!(new_leader, leader, "a new leader was elected");
}
