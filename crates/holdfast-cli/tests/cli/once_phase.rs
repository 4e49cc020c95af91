//! `holdfast once`, `holdfast phase` and `holdfast phases` with real
//! processes: exactly-once under concurrent callers, failures that leave
//! the step undone, SIGKILLed leaders, the lock handed to the command,
//! markers shared with Python phaselock 1.1.0, status and reset.
//!
//! Concurrent callers are lined up behind a barrier: the test holds the
//! lock itself (`holdfast flock LOCK sh -c 'read x'`), waits until the
//! kernel's lock table (`/proc/locks`) shows every caller blocked on it,
//! then lets go. Nothing here waits on a bare sleep.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use holdfast::phase::{MarkerStore, PhaseRunner, XattrMode};
use holdfast_testkit::{
    Child, Collector, Dir, Output as Out, kernel_holders, kernel_waiters, peer_python, peer_script,
    wait_for,
};
use serde_json::Value;

use crate::common::{HOLDFAST, T, run};

fn holdfast() -> Command {
    let mut c = crate::common::holdfast();
    // The tests choose the marker store themselves.
    c.env_remove("PHASELOCK_ENABLE_XATTRS");
    c
}

/// `holdfast ARGS`, with `$X` and `$X/rest` words replaced by the paths
/// in `vars`.
fn cmd(args: &[&str], vars: &[(&str, &Path)]) -> Command {
    let mut c = holdfast();
    for a in args {
        let path = vars.iter().find_map(|(k, p)| {
            if a == k {
                Some(p.to_path_buf())
            } else {
                a.strip_prefix(k)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| p.join(rest))
            }
        });
        match path {
            Some(p) => c.arg(p),
            None => c.arg(a),
        };
    }
    c
}

/// The lines of a file (none if it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Holds the exclusive lock on `lock` (through `holdfast flock`) until
/// [`Barrier::release`]: callers started meanwhile all block on it.
struct Barrier {
    holder: Child,
    lock: PathBuf,
}

impl Barrier {
    fn hold(lock: &Path) -> Barrier {
        let mut c = holdfast();
        c.arg("flock")
            .arg(lock)
            .args(["sh", "-c", "echo locked; read x || true"]);
        let mut holder = Child::spawn(c);
        holder.expect_line("locked", T);
        Barrier {
            holder,
            lock: lock.to_owned(),
        }
    }

    /// Waits until `n` processes are blocked in the kernel on the lock.
    fn wait_for_waiters(&self, n: usize) {
        wait_for(
            &format!("{n} callers blocked on {}", self.lock.display()),
            T,
            || (kernel_waiters(&self.lock).len() >= n).then_some(()),
        );
    }

    fn release(mut self) {
        self.holder.close_stdin();
        assert!(self.holder.wait(T).success());
    }
}

/// `sh -c SCRIPT` as words after `--`.
fn sh(script: &str) -> [&str; 4] {
    ["--", "sh", "-c", script]
}

// ---------------------------------------------------------------------------
// holdfast once
// ---------------------------------------------------------------------------

/// Eight callers started together (all blocked in the kernel behind a
/// barrier) run the command exactly once, and all exit 0; a later caller
/// does not run it either.
#[test]
fn once_runs_the_command_exactly_once_under_8_concurrent_callers() {
    let d = Dir::new();
    let key = d.join("initialized");
    let count = d.join("count");
    let lock = d.join("initialized.lock");
    std::fs::write(&lock, b"").unwrap();
    let barrier = Barrier::hold(&lock);
    let script = format!("echo ran >> '{}'; echo ran", count.display());
    let mut callers: Vec<Child> = (0..8)
        .map(|_| {
            let mut c = holdfast();
            c.arg("once").arg(&key).args(sh(&script));
            Child::spawn(c)
        })
        .collect();
    barrier.wait_for_waiters(8);
    assert!(!key.exists());
    barrier.release();
    for c in &mut callers {
        let st = c.wait(T);
        assert!(st.success(), "a caller exited with {st}");
    }
    assert_eq!(lines(&count), ["ran"], "the command ran exactly once");
    assert!(key.exists(), "the key marks it done");
    let later = run(holdfast().arg("once").arg(&key).args(sh(&script)));
    assert_eq!(later.code(), 0, "{later:?}");
    assert_eq!(later.stdout, "", "a later caller does not run it");
    assert_eq!(lines(&count), ["ran"]);
    let st = run(holdfast().args(["once", "--status"]).arg(&key));
    assert_eq!(st.code(), 0, "{st:?}");
    assert!(st.stdout.contains(": done (by pid "), "{}", st.stdout);
}

/// A failing command is not marked done; its status (or 128+signal) is
/// the exit code; the next caller runs it again. Spawn failures are
/// 127/126 and leave it undone too.
#[test]
fn once_failed_command_is_not_marked_and_passes_its_status_through() {
    let d = Dir::new();
    let key = d.join("k");
    let count = d.join("count");
    let c = count.display();
    let out = run(holdfast()
        .arg("once")
        .arg(&key)
        .args(sh(&format!("echo try >> '{c}'; exit 3"))));
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stderr.contains("exited with status 3") && out.stderr.contains("not marked done"),
        "{}",
        out.stderr
    );
    assert!(!key.exists());
    let out = run(holdfast().arg("once").arg(&key).args(sh("kill -9 $$")));
    assert_eq!(out.code(), 128 + 9, "{out:?}");
    assert!(out.stderr.contains("killed by signal 9"), "{}", out.stderr);
    let out = run(holdfast()
        .arg("once")
        .arg(&key)
        .args(["--", "/no/such/cmd"]));
    assert_eq!(out.code(), 127, "{out:?}");
    assert!(!key.exists());
    let st = run(holdfast().args(["once", "--status"]).arg(&key));
    assert_eq!(
        (st.code(), st.stdout.trim_end()),
        (1, &*format!("{}: not done", key.display()))
    );
    let out = run(holdfast()
        .arg("once")
        .arg(&key)
        .args(sh(&format!("echo try >> '{c}'"))));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        lines(&count),
        ["try", "try"],
        "the next caller ran it again"
    );
    assert!(key.exists());
}

/// Callers waiting while the leader's command fails: with the default
/// policy (retry) exactly one of them runs it and all exit 0; with
/// `--on-leader-failure propagate` none runs it and all exit 75.
#[test]
fn once_leader_failure_policy_retry_and_propagate() {
    for propagate in [false, true] {
        let d = Dir::new();
        let key = d.join("k");
        let lock = d.join("k.lock");
        let count = d.join("count");
        let mut leader = {
            let mut c = holdfast();
            c.arg("once")
                .arg(&key)
                .args(sh("echo started; read x; exit 5"));
            Child::spawn(c)
        };
        leader.expect_line("started", T);
        let mut waiters: Vec<Child> = (0..3)
            .map(|_| {
                let mut c = holdfast();
                c.arg("once");
                if propagate {
                    c.args(["--on-leader-failure", "propagate"]);
                }
                c.arg(&key)
                    .args(sh(&format!("echo ran >> '{}'", count.display())));
                Child::spawn(c)
            })
            .collect();
        wait_for("3 waiters blocked on the lock", T, || {
            (kernel_waiters(&lock).len() >= 3).then_some(())
        });
        leader.send("go");
        assert_eq!(leader.wait(T).code(), Some(5), "the leader gets its status");
        let codes: Vec<Option<i32>> = waiters.iter_mut().map(|w| w.wait(T).code()).collect();
        if propagate {
            assert_eq!(codes, [Some(75); 3]);
            assert!(lines(&count).is_empty(), "nobody ran it");
            assert!(!key.exists());
        } else {
            assert_eq!(codes, [Some(0); 3]);
            assert_eq!(lines(&count), ["ran"], "exactly one waiter took over");
            assert!(key.exists());
        }
    }
}

/// A leader SIGKILLed with its command (the whole process group, as when
/// a container is killed) lets the next waiter take over and finish.
#[test]
fn once_sigkilled_leader_lets_the_next_caller_take_over() {
    let d = Dir::new();
    let key = d.join("k");
    let lock = d.join("k.lock");
    let count = d.join("count");
    let c = count.display();
    let mut leader = {
        let mut cmd = holdfast();
        cmd.arg("once")
            .arg(&key)
            .args(sh(&format!("echo run >> '{c}'; echo started; read x")))
            .process_group(0);
        Child::spawn(cmd)
    };
    leader.expect_line("started", T);
    let mut waiter = {
        let mut cmd = holdfast();
        cmd.arg("once")
            .arg(&key)
            .args(sh(&format!("echo run >> '{c}'; echo took-over")));
        Child::spawn(cmd)
    };
    wait_for("the waiter to block on the lock", T, || {
        kernel_waiters(&lock)
            .contains(&i64::from(waiter.pid()))
            .then_some(())
    });
    // SAFETY-free: kill(2) through the shell's kill, on the leader's group.
    let pgid = format!("-{}", leader.pid());
    assert!(
        run(Command::new("kill").args(["-9", "--", &pgid]))
            .status
            .success()
    );
    let st = leader.wait(T);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    waiter.expect_line("took-over", T);
    assert!(waiter.wait(T).success());
    assert_eq!(lines(&count), ["run", "run"], "the waiter ran it again");
    assert!(key.exists(), "and marked it done");
}

/// The command inherits the lock (as under flock(1)): when only holdfast
/// is killed, its command keeps the lock, waiters stay blocked, and take
/// over once the orphaned command is gone. With --close they take over
/// at once.
#[test]
fn once_killed_holdfast_leaves_the_lock_with_its_command() {
    for close in [false, true] {
        let d = Dir::new();
        let key = d.join("k");
        let lock = d.join("k.lock");
        let count = d.join("count");
        let c = count.display();
        let mut leader = {
            let mut cmd = holdfast();
            cmd.arg("once");
            if close {
                cmd.arg("--close");
            }
            cmd.arg(&key).args(sh(&format!(
                "echo run >> '{c}'; echo started; read x || true"
            )));
            Child::spawn(cmd)
        };
        leader.expect_line("started", T);
        let mut waiter = {
            let mut cmd = holdfast();
            cmd.arg("once")
                .arg(&key)
                .args(sh(&format!("echo run >> '{c}'")));
            Child::spawn(cmd)
        };
        wait_for("the waiter to block", T, || {
            kernel_waiters(&lock)
                .contains(&i64::from(waiter.pid()))
                .then_some(())
        });
        // Not Child::kill9: reaping through std closes the stdin pipe the
        // orphaned command reads from, and it would exit.
        assert!(
            run(Command::new("kill").args(["-9", &leader.pid().to_string()]))
                .status
                .success()
        );
        wait_for("holdfast to die", T, || leader.has_exited().then_some(()));
        if close {
            assert!(waiter.wait(T).success());
            assert_eq!(lines(&count), ["run", "run"]);
            leader.close_stdin();
        } else {
            // holdfast is gone, its command still holds the lock: the
            // waiter is still blocked in the kernel and has not run.
            // (Polled: one read of /proc/locks can miss a line while
            // other processes lock and unlock.)
            wait_for("the orphan to be seen holding the lock", T, || {
                (!kernel_holders(&lock).is_empty()).then_some(())
            });
            wait_for("the waiter to be seen still blocked", T, || {
                kernel_waiters(&lock)
                    .contains(&i64::from(waiter.pid()))
                    .then_some(())
            });
            assert!(!waiter.has_exited());
            assert_eq!(lines(&count), ["run"]);
            leader.close_stdin(); // the orphaned sh reads EOF and exits
            assert!(waiter.wait(T).success());
            assert_eq!(lines(&count), ["run", "run"], "then the waiter took over");
        }
        assert!(key.exists());
    }
}

/// --no-wait and --timeout while another caller runs it; --reset waits for
/// the lock and removes the key; --status says who is running it.
#[test]
fn once_no_wait_timeout_status_and_reset() {
    let d = Dir::new();
    let key = d.join("k");
    let mut leader = {
        let mut c = holdfast();
        c.arg("once").arg(&key).args(sh("echo started; read x"));
        Child::spawn(c)
    };
    leader.expect_line("started", T);
    let leader_pid = leader.pid().to_string();
    let out = run(holdfast()
        .args(["once", "--no-wait"])
        .arg(&key)
        .args(["--", "true"]));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("another caller is running it")
            && out.stderr.contains(&format!("pid {leader_pid}")),
        "{}",
        out.stderr
    );
    let out = run(holdfast()
        .args(["once", "--timeout", "100ms"])
        .arg(&key)
        .args(["--", "true"]));
    assert_eq!(out.code(), 124, "{out:?}");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    let st = run(holdfast().args(["once", "--status"]).arg(&key));
    assert_eq!(st.code(), 1);
    assert!(
        st.stdout.contains("not done; running now")
            && st.stdout.contains(&format!("pid {leader_pid}")),
        "{}",
        st.stdout
    );
    let out = run(holdfast().args(["once", "--reset", "--no-wait"]).arg(&key));
    assert_eq!(out.code(), 1, "reset takes the lock: {out:?}");
    leader.send("go");
    assert!(leader.wait(T).success());
    assert!(key.exists());
    let out = run(holdfast().args(["once", "--reset"]).arg(&key));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("reset"), "{}", out.stdout);
    assert!(!key.exists());
    let out = run(holdfast().args(["once", "--reset"]).arg(&key));
    assert!(out.stdout.contains("was not done"), "{}", out.stdout);
    // touch KEY marks it done by hand.
    std::fs::write(&key, b"").unwrap();
    let out = run(holdfast().arg("once").arg(&key).args(sh("echo ran")));
    assert_eq!((out.code(), out.stdout.as_str()), (0, ""));
    let st = run(holdfast().args(["once", "--status"]).arg(&key));
    assert_eq!(st.stdout.trim_end(), format!("{}: done", key.display()));
}

/// While a caller waits for the one running the command, --verbose shows
/// who that is (in a pipe, as plain lines); without it, nothing appears
/// in a pipe.
#[test]
fn once_waiting_line_names_the_caller_running_it() {
    let d = Dir::new();
    let key = d.join("k");
    let mut leader = {
        let mut c = holdfast();
        c.arg("once").arg(&key).args(sh("echo started; read x"));
        Child::spawn(c)
    };
    leader.expect_line("started", T);
    let spawn = |verbose: bool| {
        let mut c = holdfast();
        c.arg("once");
        if verbose {
            c.arg("--verbose");
        }
        let mut child = c
            .arg(&key)
            .args(["--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = Collector::new(child.stderr.take().expect("piped stderr"));
        (child, err)
    };
    let (mut quiet, quiet_err) = spawn(false);
    let (mut verbose, verbose_err) = spawn(true);
    let want = format!(
        "holdfast: waiting for an exclusive lock on {}.lock — held by pid {}",
        key.display(),
        leader.pid()
    );
    wait_for("the waiting line of the --verbose caller", T, || {
        verbose_err.text().contains(&want).then_some(())
    });
    leader.send("go");
    assert!(leader.wait(T).success());
    for c in [&mut quiet, &mut verbose] {
        let st = wait_for("a waiter to exit", T, || c.try_wait().unwrap());
        assert!(st.success());
    }
    let text = verbose_err.finish();
    assert!(
        text.contains("another caller ran true while this one waited"),
        "{text}"
    );
    assert_eq!(
        quiet_err.finish(),
        "",
        "nothing in a pipe without --verbose"
    );
}

/// The command sees the fencing token and holds the lock's descriptor
/// (none with --close); --verbose says what happened.
#[test]
fn once_hands_the_token_and_the_lock_to_the_command() {
    let d = Dir::new();
    let script = "echo token=$HOLDFAST_FENCING_TOKEN; ls -l /proc/$$/fd";
    let mut tokens = Vec::new();
    for (i, close) in [false, true].into_iter().enumerate() {
        let key = d.join(&format!("k{i}"));
        let mut c = holdfast();
        c.args(["once", "-v"]);
        if close {
            c.arg("--close");
        }
        let out = run(c.arg(&key).args(sh(script)));
        assert_eq!(out.code(), 0, "{out:?}");
        let lock = format!("{}.lock", key.display());
        assert_eq!(
            out.stdout.contains(&lock),
            !close,
            "close={close}: the command's descriptors:\n{}",
            out.stdout
        );
        let token: u64 = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("token="))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no token in {}", out.stdout));
        tokens.push(token);
        assert!(
            out.stderr.contains("is done (fencing token"),
            "{}",
            out.stderr
        );
        let again = run(holdfast().args(["once", "-v"]).arg(&key).args(sh(script)));
        assert!(again.stderr.contains("already done"), "{}", again.stderr);
    }
    assert!(tokens.iter().all(|&t| t >= 1), "{tokens:?}");
}

// ---------------------------------------------------------------------------
// holdfast phase
// ---------------------------------------------------------------------------

/// Which store the marker tests use (through the variable phaselock and
/// `--xattrs auto` both read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Xattr,
    Status,
}

impl Store {
    fn env(self) -> &'static str {
        match self {
            Store::Xattr => "1",
            Store::Status => "0",
        }
    }
}

/// The stores this filesystem can test (xattrs may be missing).
fn stores(d: &Dir) -> Vec<Store> {
    let probe = d.join("xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let mut r = PhaseRunner::new(&probe);
    r.xattrs(XattrMode::On);
    if r.selected_store().unwrap() == MarkerStore::Xattr {
        vec![Store::Xattr, Store::Status]
    } else {
        eprintln!("no user xattrs here: testing the status file only");
        vec![Store::Status]
    }
}

fn phase(target: &Path, name: &str, store: Store, script: &str) -> Out {
    run(holdfast()
        .args(["phase", name, "--target"])
        .arg(target)
        .env("PHASELOCK_ENABLE_XATTRS", store.env())
        .args(sh(script)))
}

/// Where the library finds the marker of `name` (union of both stores).
fn marked(target: &Path, name: &str) -> Option<MarkerStore> {
    PhaseRunner::new(target).is_marked(name, None).unwrap()
}

/// First run: the command fails (exit 1), nothing is marked; second run:
/// it runs again and is marked (in the store the environment selects);
/// third run: skipped.
#[test]
fn phase_resumes_after_a_failed_command() {
    let d = Dir::new();
    for store in stores(&d) {
        let target = d.join(&format!("app-{store:?}.db"));
        std::fs::write(&target, b"").unwrap();
        let log = d.join(&format!("log-{store:?}"));
        let l = log.display();
        let out = phase(
            &target,
            "schema",
            store,
            &format!("echo run >> '{l}'; exit 1"),
        );
        assert_eq!(out.code(), 1, "{out:?}");
        assert!(
            out.stderr
                .contains("not marked done (the next run starts again at this phase)"),
            "{}",
            out.stderr
        );
        assert_eq!(marked(&target, "schema"), None);
        let st = run(holdfast()
            .args(["phases", "status"])
            .arg(&target)
            .arg("schema"));
        assert_eq!(st.code(), 1, "{st:?}");
        let out = phase(&target, "schema", store, &format!("echo run >> '{l}'"));
        assert_eq!(out.code(), 0, "{out:?}");
        let want = match store {
            Store::Xattr => MarkerStore::Xattr,
            Store::Status => MarkerStore::StatusFile,
        };
        assert_eq!(marked(&target, "schema"), Some(want));
        let out = phase(&target, "schema", store, &format!("echo run >> '{l}'"));
        assert_eq!(out.code(), 0, "{out:?}");
        assert_eq!(lines(&log), ["run", "run"], "the third run skipped it");
        let st = run(holdfast()
            .args(["phases", "status"])
            .arg(&target)
            .arg("schema"));
        assert_eq!(st.code(), 0, "{st:?}");
        if store == Store::Status {
            assert_eq!(
                std::fs::read_to_string(format!("{}.status", target.display())).unwrap(),
                "schema\n"
            );
        }
    }
}

/// Phases run in order from a script; concurrent scripts (blocked behind a
/// barrier on the target's lock) run each phase exactly once, and a phase
/// is never run before the one before it is marked.
#[test]
fn phase_concurrent_scripts_run_each_phase_once_in_order() {
    let d = Dir::new();
    let target = d.join("app.db");
    let lock = d.join("app.db.lock");
    let log = d.join("log");
    std::fs::write(&lock, b"").unwrap();
    let barrier = Barrier::hold(&lock);
    let script = format!(
        "set -e; for p in a b c; do '{HOLDFAST}' phase $p --target '{t}' -- sh -c \"echo $p >> '{l}'\"; done; echo finished",
        t = target.display(),
        l = log.display()
    );
    let mut scripts: Vec<Child> = (0..4)
        .map(|_| {
            let mut c = Command::new("sh");
            c.args(["-c", &script])
                .env_remove("PHASELOCK_ENABLE_XATTRS");
            Child::spawn(c)
        })
        .collect();
    barrier.wait_for_waiters(4);
    barrier.release();
    for s in &mut scripts {
        s.expect_line("finished", T);
        assert!(s.wait(T).success());
    }
    assert_eq!(lines(&log), ["a", "b", "c"]);
}

/// Markers written by `holdfast phase` are seen by Python phaselock and
/// the reverse, in both stores; attr_name/attr_value are shared; the two
/// exclude each other on TARGET.lock.
#[test]
fn phase_markers_are_shared_with_python_phaselock() {
    let Some(py) = peer_python("phase_markers_are_shared_with_python_phaselock") else {
        return;
    };
    let d = Dir::new();
    for store in stores(&d) {
        let target = d.join(&format!("shared-{store:?}.db"));
        std::fs::write(&target, b"").unwrap();
        let log = d.join(&format!("log-{store:?}"));
        let l = log.display().to_string();
        let py_run = |phases: &str, extra: &[&str]| {
            let mut c = Command::new(&py);
            c.arg(peer_script("phaselock_peer.py"))
                .arg("run")
                .arg(&target)
                .args(["--phases", phases, "--log", &l])
                .args(extra)
                .env("PHASELOCK_ENABLE_XATTRS", store.env());
            let out = run(&mut c);
            assert_eq!(out.code(), 0, "{out:?}");
            out.stdout
        };
        // holdfast first, then Python.
        let out = phase(&target, "a", store, &format!("echo 'a rust' >> '{l}'"));
        assert_eq!(out.code(), 0, "{out:?}");
        let report = py_run("a,b", &[]);
        assert!(
            report.contains("completed=b skipped=a"),
            "Python skips holdfast's marker: {report}"
        );
        // Python first, then holdfast.
        let out = phase(&target, "b", store, &format!("echo 'b rust' >> '{l}'"));
        assert_eq!(out.code(), 0, "{out:?}");
        let who: Vec<String> = lines(&log)
            .into_iter()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(who, ["a rust", "b py"], "holdfast skipped Python's marker");
        // The marker is where phaselock writes it.
        let st = run(holdfast()
            .args(["phases", "status", "--json"])
            .arg(&target)
            .env("PHASELOCK_ENABLE_XATTRS", store.env()));
        let v: Value = serde_json::from_str(&st.stdout).unwrap();
        let want = match store {
            Store::Xattr => "xattr",
            Store::Status => "status-file",
        };
        assert_eq!(v["store"], want, "{v}");
        for p in v["phases"].as_array().unwrap() {
            assert_eq!(p["stores"], serde_json::json!([want]), "{v}");
        }
        if store == Store::Xattr {
            // attr_name / attr_value, both ways.
            let out = run(holdfast()
                .args(["phase", "c", "--attr-name", "schema", "--attr-value", "v3"])
                .arg("--target")
                .arg(&target)
                .env("PHASELOCK_ENABLE_XATTRS", "1")
                .args(sh(&format!("echo 'c rust' >> '{l}'"))));
            assert_eq!(out.code(), 0, "{out:?}");
            let value = run(Command::new(&py)
                .arg(peer_script("phaselock_peer.py"))
                .args(["value"])
                .arg(&target)
                .arg("schema"));
            assert_eq!(value.stdout.trim(), "v3", "{value:?}");
            let report = py_run("c", &["--attr", "c=schema:v3"]);
            assert!(report.contains("skipped=c"), "{report}");
        }
        // Python holding the lock excludes holdfast, and --no-wait says so.
        let mut hold = {
            let mut c = Command::new(&py);
            c.arg(peer_script("phaselock_peer.py"))
                .arg("hold")
                .arg(&target)
                .env("PHASELOCK_ENABLE_XATTRS", store.env());
            Child::spawn(c)
        };
        let line = hold.expect_line("locked pid=", T);
        let out = run(holdfast()
            .args(["phase", "d", "--no-wait", "--target"])
            .arg(&target)
            .env("PHASELOCK_ENABLE_XATTRS", store.env())
            .args(["--", "true"]));
        assert_eq!(out.code(), 1, "{out:?}");
        let pid = line.trim_start_matches("locked pid=");
        assert!(out.stderr.contains(&format!("pid {pid}")), "{}", out.stderr);
        hold.close_stdin();
        assert!(hold.wait(T).success());
    }
}

/// `phases status --json` lists markers with their stores, the lock and
/// status paths and the lock's holder; `phases reset NAME` removes one
/// marker, `phases reset` all, both under the lock.
#[test]
fn phases_status_json_and_reset() {
    let d = Dir::new();
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let xattrs = stores(&d).contains(&Store::Xattr);
    for (name, store) in [("a", Store::Status), ("b", Store::Xattr)] {
        let store = if xattrs { store } else { Store::Status };
        assert_eq!(phase(&target, name, store, "true").code(), 0);
    }
    let vars = [("$T", target.as_path())];
    let st = run(&mut cmd(
        &["phases", "status", "--json", "$T", "a", "b", "z"],
        &vars,
    ));
    assert_eq!(st.code(), 1, "z is not done: {st:?}");
    let v: Value = serde_json::from_str(&st.stdout).expect("JSON");
    assert_eq!(v["target"], target.display().to_string());
    assert_eq!(v["lock_path"], format!("{}.lock", target.display()));
    assert_eq!(v["status_path"], format!("{}.status", target.display()));
    assert_eq!(v["status_file_exists"], true);
    assert_eq!(v["target_exists"], true);
    assert_eq!(v["namespace"], "user.phaselock");
    assert_eq!(v["lock"]["held"], false);
    assert!(v["lock"]["last_record"]["token"].as_u64().unwrap() >= 2);
    let phases = v["phases"].as_array().unwrap();
    let find = |n: &str| phases.iter().find(|p| p["name"] == n).cloned().unwrap();
    assert_eq!(find("a")["stores"], serde_json::json!(["status-file"]));
    assert_eq!(find("a")["done"], true);
    if xattrs {
        assert_eq!(find("b")["stores"], serde_json::json!(["xattr"]));
        assert_eq!(find("b")["xattr_value"], "1");
        assert_eq!(v["store"], "xattr");
    }
    assert_eq!(find("z")["done"], false);
    let text = run(&mut cmd(&["phases", "status", "$T"], &vars));
    assert_eq!(text.code(), 0);
    assert!(
        text.stdout.contains("done:        a [status file], b ["),
        "{}",
        text.stdout
    );
    // The store follows PHASELOCK_ENABLE_XATTRS and --xattrs.
    let off =
        run(cmd(&["phases", "status", "--json", "$T"], &vars).env("PHASELOCK_ENABLE_XATTRS", "0"));
    let v: Value = serde_json::from_str(&off.stdout).unwrap();
    assert_eq!(v["store"], "status-file");
    let text = run(&mut cmd(
        &["phases", "status", "--xattrs", "off", "$T"],
        &vars,
    ));
    assert!(
        text.stdout.contains("status file (--xattrs off)"),
        "{}",
        text.stdout
    );

    // A holder of the lock keeps reset from touching markers.
    let barrier = Barrier::hold(&d.join("app.db.lock"));
    let out = run(&mut cmd(
        &["phases", "reset", "--no-wait", "$T", "a"],
        &vars,
    ));
    assert_eq!(out.code(), 1, "{out:?}");
    let out = run(&mut cmd(
        &["phases", "reset", "--timeout", "100ms", "$T"],
        &vars,
    ));
    assert_eq!(out.code(), 124, "{out:?}");
    assert!(marked(&target, "a").is_some() && marked(&target, "b").is_some());
    barrier.release();

    let out = run(&mut cmd(&["phases", "reset", "$T", "a", "nope"], &vars));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("removed a"), "{}", out.stdout);
    assert!(out.stdout.contains("nope was not marked"), "{}", out.stdout);
    assert_eq!(marked(&target, "a"), None);
    assert!(marked(&target, "b").is_some());
    let out = run(&mut cmd(&["phases", "reset", "$T"], &vars));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("removed b"), "{}", out.stdout);
    assert_eq!(marked(&target, "b"), None);
    let out = run(&mut cmd(&["phases", "reset", "$T"], &vars));
    assert!(out.stdout.contains("no phase markers"), "{}", out.stdout);
    assert!(
        d.join("app.db.lock").exists(),
        "the lock file is never deleted"
    );
}

/// The command sees the fencing token and the lock's descriptor; tokens
/// grow from one phase to the next.
#[test]
fn phase_hands_the_token_and_the_lock_to_the_command() {
    let d = Dir::new();
    let target = d.join("app.db");
    let script = "echo token=$HOLDFAST_FENCING_TOKEN; ls -l /proc/$$/fd";
    let mut tokens = Vec::new();
    for (name, close) in [("a", false), ("b", true), ("c", false)] {
        let mut c = holdfast();
        c.args(["phase", "-v", name, "--target"]).arg(&target);
        if close {
            c.arg("--close");
        }
        let out = run(c.args(sh(script)));
        assert_eq!(out.code(), 0, "{out:?}");
        assert_eq!(
            out.stdout.contains(&format!("{}.lock", target.display())),
            !close,
            "{name}: {}",
            out.stdout
        );
        assert!(out.stderr.contains("marked done in the"), "{}", out.stderr);
        tokens.push(
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix("token="))
                .and_then(|t| t.parse::<u64>().ok())
                .expect("a token"),
        );
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    let out = run(holdfast()
        .args(["phase", "-v", "a", "--target"])
        .arg(&target)
        .args(sh("echo ran")));
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("already done; skipped"),
        "{}",
        out.stderr
    );
}

/// Bad input: 64 with a message naming the problem; a corrupt status file
/// is 65 and is left alone.
#[test]
fn once_and_phase_bad_input() {
    let d = Dir::new();
    let target = d.join("app.db");
    let link = d.join("link.db");
    std::fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let missing = d.join("no/such/dir/x");
    let vars = [
        ("$T", target.as_path()),
        ("$LINK", link.as_path()),
        ("$MISSING", missing.as_path()),
        ("$D", d.path()),
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["once", "$D/k"], "<COMMAND>"),
        (
            &["once", "--status", "$T", "--", "true"],
            "cannot be used with",
        ),
        (
            &["once", "--timeout", "5x", "$D/k", "--", "true"],
            "unknown unit",
        ),
        (
            &["once", "--timeout", "-1", "$D/k", "--", "true"],
            "negative",
        ),
        (
            &["once", "-n", "-w", "1", "$D/k", "--", "true"],
            "cannot be used with",
        ),
        (
            &["once", "--on-leader-failure", "maybe", "$D/k", "--", "true"],
            "possible values: retry, propagate",
        ),
        (
            &["once", "$MISSING", "--", "true"],
            "does not exist (create it, or pass --create-parents)",
        ),
        (&["once", "$D", "--", "true"], "is a directory"),
        (&["phase", "a", "--", "true"], "--target <FILE>"),
        (&["phase", "a", "--target", "$T"], "<COMMAND>"),
        (
            &["phase", "a\nb", "--target", "$T", "--", "true"],
            "line break",
        ),
        (&["phase", "", "--target", "$T", "--", "true"], "is empty"),
        (
            &["phase", "a", "--target", "$MISSING", "--", "true"],
            "does not exist (create it, or pass --create-parents)",
        ),
        (
            &["phase", "a", "--target", "$LINK", "--", "true"],
            "is a symbolic link",
        ),
        (
            &[
                "phase", "a", "--xattrs", "maybe", "--target", "$T", "--", "true",
            ],
            "possible values",
        ),
        (&["phases", "reset", "--attr-name", "x", "$T"], "<NAME>"),
        (
            &["phases", "reset", "--attr-name", "x", "$T", "a", "b"],
            "exactly one",
        ),
        (&["phases", "status", "$LINK"], "is a symbolic link"),
        (&["phases", "bogus"], "unrecognized subcommand"),
    ];
    for (args, msg) in cases {
        let out = run(&mut cmd(args, &vars));
        assert_eq!(out.code(), 64, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(msg),
            "{args:?}: want {msg:?} in {}",
            out.stderr
        );
    }
    assert!(!missing.exists());
    assert!(!d.join("k").exists() && !d.join("k.lock").exists());
    // --create-parents makes the directory.
    let out = run(&mut cmd(
        &["once", "--create-parents", "$MISSING", "--", "true"],
        &vars,
    ));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(missing.exists());
    // A corrupt status file: 65, and never overwritten.
    let status = d.join("app.db.status");
    std::fs::write(&status, b"a\n\xff\n").unwrap();
    let out = run(cmd(
        &[
            "phase", "a", "--xattrs", "off", "--target", "$T", "--", "true",
        ],
        &vars,
    )
    .env("PHASELOCK_ENABLE_XATTRS", "0"));
    assert_eq!(out.code(), 65, "{out:?}");
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
    assert_eq!(std::fs::read(&status).unwrap(), b"a\n\xff\n");
    let out = run(&mut cmd(&["phases", "status", "$T"], &vars));
    assert_eq!(out.code(), 65, "{out:?}");
    let out = run(&mut cmd(&["phases", "reset", "$T"], &vars));
    assert_eq!(out.code(), 0, "reset clears a corrupt status file: {out:?}");
    assert!(!status.exists());
}

/// The help, man pages and completions know the new commands.
#[test]
fn help_man_and_completions_cover_once_and_phase() {
    let help = run(holdfast().arg("--help"));
    assert_eq!(help.code(), 0);
    let recipe = help
        .stdout
        .split("Migration at container start")
        .nth(1)
        .expect("the migration recipe");
    assert!(
        recipe.contains("holdfast phase migrate-v42 --target"),
        "{recipe}"
    );
    assert!(recipe.contains("holdfast once "), "{recipe}");
    let once = run(holdfast().args(["once", "--help"]));
    for want in ["--on-leader-failure", "propagate", "75", "[ -e KEY ]"] {
        assert!(once.stdout.contains(want), "once --help lacks {want:?}");
    }
    let phase = run(holdfast().args(["phase", "--help"]));
    for want in ["phaselock", "PHASELOCK_ENABLE_XATTRS", "--strict", "set -e"] {
        assert!(phase.stdout.contains(want), "phase --help lacks {want:?}");
    }
    for page in ["once", "phase", "phases"] {
        let man = holdfast().args(["man", page]).output().unwrap();
        assert!(man.status.success(), "{page}");
        let text = String::from_utf8(man.stdout).unwrap();
        assert!(text.contains(&format!("holdfast\\-{page}")), "{page}");
    }
    let bash = holdfast().args(["completions", "bash"]).output().unwrap();
    let text = String::from_utf8(bash.stdout).unwrap();
    for want in ["once", "phases", "on-leader-failure", "attr-name"] {
        assert!(text.contains(want), "bash completions lack {want:?}");
    }
}
