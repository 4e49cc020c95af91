//! Setup phases and run-once with real processes: exactly-once ordering,
//! crash resumption under SIGKILL, interop with Python phaselock 1.1.0 in
//! both marker stores, fallback without xattrs, bad input, run-once.
//!
//! Children are `holdfast-helper` (see `src/bin/holdfast-helper/phase.rs`)
//! and `tests/peers/phaselock_peer.py`. They are started together through
//! a pipe barrier (each prints `ready`, then waits for a line on stdin) and
//! report on stdout; nothing here waits on a bare sleep, except the random
//! delay that chooses the moment of a SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast::phase::{Phase, PhaseRunner, XattrMode};
use holdfast::{Error, Lock};
use holdfast_testkit::{Child, Dir, is_root, kernel_waiters, peer_python, peer_script, wait_for};

use crate::common::HELPER;

const T: Duration = Duration::from_secs(30);
const PHASES: [&str; 3] = ["a", "b", "c"];

/// Which marker store the children are told to use, through the
/// environment variable both holdfast (in `XattrMode::Auto`) and
/// phaselock read.
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

fn helper() -> Command {
    Command::new(HELPER)
}

fn phase_cmd(target: &Path, store: Store, extra: &[&str]) -> Command {
    let mut c = helper();
    c.arg("phase-run")
        .arg(target)
        .args(extra)
        .env("PHASELOCK_ENABLE_XATTRS", store.env());
    c
}

fn py_cmd(py: &Path, sub: &str, target: &Path, store: Store, extra: &[&str]) -> Command {
    let mut c = Command::new(py);
    c.arg(peer_script("phaselock_peer.py"))
        .arg(sub)
        .arg(target)
        .args(extra)
        .env("PHASELOCK_ENABLE_XATTRS", store.env());
    c
}

/// Runs a command to completion and returns (exit code, stdout lines).
fn run(mut cmd: Command) -> (i32, Vec<String>) {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text.lines().map(str::to_owned).collect(),
    )
}

/// The `report ...` line of a phase run, as a map.
fn report(lines: &[String]) -> BTreeMap<String, String> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("report "))
        .unwrap_or_else(|| panic!("no report line in {lines:?}"));
    fields(line)
}

fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One line of an action log: `<name> <rust|py> pid=P [round=R ...]`.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    who: String,
    pid: u32,
    round: Option<usize>,
}

fn read_log(log: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().expect("name").to_owned();
            let who = parts.next().expect("who").to_owned();
            let f = fields(l);
            Entry {
                name,
                who,
                pid: f["pid"].parse().expect("pid"),
                round: f.get("round").and_then(|r| r.parse().ok()),
            }
        })
        .collect()
}

fn names(log: &[Entry]) -> Vec<&str> {
    log.iter().map(|e| e.name.as_str()).collect()
}

/// The phases marked on `target`, from either store.
fn marked(target: &Path) -> BTreeSet<String> {
    let m = PhaseRunner::new(target).markers().expect("read markers");
    m.xattrs
        .iter()
        .map(|(n, _)| n.clone())
        .chain(m.status.iter().cloned())
        .collect()
}

/// Whether user xattrs work in `dir` (they do on ext4, tmpfs, xfs, btrfs).
fn xattrs_work(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let mut r = PhaseRunner::new(&probe);
    r.xattrs(XattrMode::On);
    let rep = r.run([Phase::new("p", |_| Ok(()))]).unwrap();
    rep.xattrs_available && !r.markers().unwrap().xattrs.is_empty()
}

fn stores(dir: &Dir) -> Vec<Store> {
    if xattrs_work(dir.path()) {
        vec![Store::Xattr, Store::Status]
    } else {
        eprintln!(
            "no user xattrs in {}: testing the status file only",
            dir.path().display()
        );
        vec![Store::Status]
    }
}

/// Checks where the markers of `phases` live for `store`.
fn assert_store(target: &Path, store: Store, phases: &[&str]) {
    let m = PhaseRunner::new(target).markers().unwrap();
    let x: Vec<&str> = m.xattrs.iter().map(|(n, _)| n.as_str()).collect();
    match store {
        Store::Xattr => {
            assert_eq!(x, phases, "xattr markers");
            assert!(m.status.is_empty(), "no status file: {:?}", m.status);
        }
        Store::Status => {
            assert!(x.is_empty(), "no xattrs: {x:?}");
            assert_eq!(m.status, phases, "status file");
        }
    }
}

/// Starts `children`, waits until each says `ready`, then lets them all
/// go at once.
fn start_together(children: &mut [Child]) {
    for c in children.iter_mut() {
        c.expect_line("ready", T);
    }
    for c in children.iter_mut() {
        c.send("go");
    }
}

// ---------------------------------------------------------------------------
// Ordering and exactly-once
// ---------------------------------------------------------------------------

#[test]
fn eight_processes_run_each_phase_once_in_order() {
    let d = Dir::new();
    for store in stores(&d) {
        let target = d.join(&format!("app-{store:?}.db"));
        std::fs::write(&target, b"").unwrap();
        let log = d.join(&format!("log-{store:?}"));
        let log_s = log.to_str().unwrap();
        let mut kids: Vec<Child> = (0..8)
            .map(|_| {
                Child::spawn(phase_cmd(
                    &target,
                    store,
                    &[
                        "--phases",
                        "a,b,c",
                        "--log",
                        log_s,
                        "--barrier",
                        "--work-ms",
                        "5",
                    ],
                ))
            })
            .collect();
        start_together(&mut kids);
        let mut ran = Vec::new();
        for k in &mut kids {
            let r = fields(&k.expect_line("report ", T));
            assert!(k.wait(T).success());
            let completed = list(&r["completed"]);
            let skipped = list(&r["skipped"]);
            assert_eq!(completed.len() + skipped.len(), 3, "{r:?}");
            assert_eq!(r["xattrs"], if store == Store::Xattr { "1" } else { "0" });
            ran.extend(completed);
        }
        let entries = read_log(&log);
        assert_eq!(
            names(&entries),
            PHASES,
            "{store:?}: each action once, in order"
        );
        assert_eq!(ran, PHASES, "{store:?}: the reports agree with the log");
        let pids: BTreeSet<u32> = entries.iter().map(|e| e.pid).collect();
        assert_eq!(pids.len(), 1, "one process ran them all under one lock");
        assert_store(&target, store, &PHASES);
    }
}

#[test]
fn a_failed_phase_stops_the_run_and_the_next_process_resumes_there() {
    let d = Dir::new();
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let log = d.join("log");
    let log_s = log.to_str().unwrap();
    let (code, out) = run(phase_cmd(
        &target,
        Store::Status,
        &["--phases", "a,b,c", "--log", log_s, "--fail", "b"],
    ));
    assert_eq!(code, 1);
    let err = out.iter().find(|l| l.starts_with("error ")).unwrap();
    assert!(
        err.contains("kind=ActionFailed") && err.contains("\"b\""),
        "{err}"
    );
    assert_eq!(names(&read_log(&log)), ["a"]);
    let (code, out) = run(phase_cmd(
        &target,
        Store::Status,
        &["--phases", "a,b,c", "--log", log_s],
    ));
    assert_eq!(code, 0);
    let r = report(&out);
    assert_eq!(
        (r["skipped"].as_str(), r["completed"].as_str()),
        ("a", "b,c")
    );
    assert_eq!(names(&read_log(&log)), PHASES);
}

// ---------------------------------------------------------------------------
// Crash resumption
// ---------------------------------------------------------------------------

/// xorshift64*: a dependency-free source of crash moments.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// One target of the crash test, from its first round to completion.
struct Epoch {
    target: PathBuf,
    log: PathBuf,
    rounds: Vec<usize>,
    /// The phases marked after each round.
    after: BTreeMap<usize, BTreeSet<String>>,
}

#[derive(Default, Debug)]
struct CrashStats {
    rounds: usize,
    interrupted: usize,
    between_end_and_marker: usize,
    reruns: usize,
}

/// SIGKILLs a phase runner at random moments, `rounds` times, restarting
/// it each time. A new target starts whenever one is complete, so kills
/// keep landing inside runs. Checks after every kill, and at the end.
fn crash_rounds(store: Store, rounds: usize) -> CrashStats {
    let d = Dir::new();
    let args = |target: &Path, log: &Path, round: usize| {
        phase_cmd(
            target,
            store,
            &[
                "--phases",
                "a,b,c",
                "--log",
                log.to_str().unwrap(),
                "--round",
                &round.to_string(),
                "--work-ms",
                "2",
            ],
        )
    };
    // How long one full run takes here (the median of five), to spread
    // the kills over it.
    let mut runs: Vec<Duration> = (0..5)
        .map(|i| {
            let t = d.join(&format!("calibrate{i}.db"));
            std::fs::write(&t, b"").unwrap();
            let started = Instant::now();
            let (code, _) = run(args(&t, &d.join("calibrate.log"), 0));
            assert_eq!(code, 0);
            started.elapsed()
        })
        .collect();
    runs.sort();
    let full = runs[2];
    let span = (full.as_micros() as u64) * 13 / 10;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("{store:?}: full run {full:?}, kills within {span} µs, seed {seed}");
    let mut rng = Rng(seed);

    let mut stats = CrashStats::default();
    let mut epoch = 0;
    // Per epoch: markers seen after each round (by round number).
    let mut after: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut epoch_rounds: Vec<usize> = Vec::new();
    let mut epochs: Vec<Epoch> = Vec::new();
    let paths = |e: usize| {
        let t = d.join(&format!("app{e}.db"));
        (t, d.join(&format!("log{e}")))
    };
    std::fs::write(paths(0).0, b"").unwrap();
    for round in 1..=rounds {
        let (target, log) = paths(epoch);
        let mut child = Child::spawn(args(&target, &log, round));
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        child.kill9();
        let m = marked(&target);
        stats.rounds += 1;
        if m.len() < 3 {
            stats.interrupted += 1;
        }
        after.insert(round, m.clone());
        epoch_rounds.push(round);
        if m.len() == 3 {
            epochs.push(Epoch {
                target,
                log,
                rounds: std::mem::take(&mut epoch_rounds),
                after: std::mem::take(&mut after),
            });
            epoch += 1;
            std::fs::write(paths(epoch).0, b"").unwrap();
        }
    }
    // Finish the last target without a kill.
    let (target, log) = paths(epoch);
    let final_round = rounds + 1;
    let (code, out) = run(args(&target, &log, final_round));
    assert_eq!(code, 0, "{out:?}");
    after.insert(final_round, marked(&target));
    epoch_rounds.push(final_round);
    epochs.push(Epoch {
        target,
        log,
        rounds: epoch_rounds,
        after,
    });

    for Epoch {
        target,
        log,
        rounds: rounds_here,
        after,
    } in &epochs
    {
        let entries = read_log(log);
        let final_marks = &after[rounds_here.last().unwrap()];
        assert_eq!(
            final_marks.len(),
            3,
            "{}: every phase marked",
            target.display()
        );
        // done[X] = rounds in which X's action finished.
        let mut done: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for e in &entries {
            let r = e.round.expect("round");
            let v = done.entry(e.name.as_str()).or_default();
            assert!(!v.contains(&r), "{} finished twice in round {r}", e.name);
            v.push(r);
        }
        let before = |r: usize| -> BTreeSet<String> {
            rounds_here
                .iter()
                .take_while(|&&x| x < r)
                .last()
                .map(|x| after[x].clone())
                .unwrap_or_default()
        };
        for &r in rounds_here {
            let m = &after[&r];
            // Markers appear in phase order.
            let prefix: BTreeSet<String> =
                PHASES[..m.len()].iter().map(|s| s.to_string()).collect();
            assert_eq!(m, &prefix, "round {r}: markers out of order");
            // No marker without a finished action.
            for x in m {
                assert!(
                    done.get(x.as_str())
                        .is_some_and(|v| v.iter().any(|&dr| dr <= r)),
                    "round {r}: {x} is marked but its action never finished"
                );
            }
        }
        for (x, rs) in &done {
            let i = PHASES.iter().position(|p| p == x).unwrap();
            for (k, &r) in rs.iter().enumerate() {
                // It ran only because it was not marked when the round began,
                let start = before(r);
                assert!(
                    !start.contains(*x),
                    "{x} re-ran in round {r} although marked"
                );
                // and only after every earlier phase was marked.
                for p in &PHASES[..i] {
                    assert!(
                        after[&r].contains(*p),
                        "{x} ran in round {r} before {p} was marked"
                    );
                }
                if !after[&r].contains(*x) {
                    stats.between_end_and_marker += 1;
                }
                if k > 0 {
                    stats.reruns += 1;
                    // A re-run is justified only by a kill that fell between
                    // the end of the previous run of the action and its marker.
                    let prev = rs[k - 1];
                    assert!(
                        !after[&prev].contains(*x),
                        "{x} re-ran in round {r} although round {prev} marked it"
                    );
                }
            }
        }
    }
    eprintln!("{store:?}: {stats:?} over {} targets", epochs.len());
    stats
}

#[test]
fn sigkill_at_random_moments_then_restart_resumes_correctly() {
    let d = Dir::new();
    for store in stores(&d) {
        let stats = crash_rounds(store, 110);
        assert!(stats.rounds >= 100);
        // The kills must land inside runs for the checks to mean anything.
        assert!(
            stats.interrupted >= 10,
            "{store:?}: only {} of {} kills interrupted a run",
            stats.interrupted,
            stats.rounds
        );
        // Each re-run was checked above to follow a kill that fell between
        // the end of that action and its marker; and each such kill led to
        // exactly one re-run (the marker was missing, so the action ran
        // again until it was marked).
        assert_eq!(stats.reruns, stats.between_end_and_marker, "{stats:?}");
    }
}

// ---------------------------------------------------------------------------
// Interop with Python phaselock 1.1.0
// ---------------------------------------------------------------------------

#[test]
fn python_markers_are_skipped_by_holdfast_and_the_reverse() {
    let Some(py) = peer_python("python_markers_are_skipped_by_holdfast_and_the_reverse") else {
        return;
    };
    let d = Dir::new();
    for store in stores(&d) {
        // Python first, then holdfast, then Python again.
        let target = d.join(&format!("py-first-{store:?}.db"));
        std::fs::write(&target, b"").unwrap();
        let log = d.join(&format!("py-first-{store:?}.log"));
        let log_s = log.to_str().unwrap();
        let (code, out) = run(py_cmd(
            &py,
            "run",
            &target,
            store,
            &["--phases", "a,b", "--log", log_s],
        ));
        assert_eq!(code, 0, "{out:?}");
        assert_store(&target, store, &["a", "b"]);
        let (code, out) = run(phase_cmd(
            &target,
            store,
            &["--phases", "a,b,c", "--log", log_s],
        ));
        assert_eq!(code, 0, "{out:?}");
        let r = report(&out);
        assert_eq!(
            (r["skipped"].as_str(), r["completed"].as_str()),
            ("a,b", "c")
        );
        let (code, out) = run(py_cmd(
            &py,
            "run",
            &target,
            store,
            &["--phases", "a,b,c", "--log", log_s],
        ));
        assert_eq!(code, 0);
        assert_eq!(
            report(&out)["skipped"],
            "a,b,c",
            "Python skips holdfast's marker"
        );
        let who: Vec<(String, String)> = read_log(&log)
            .into_iter()
            .map(|e| (e.name, e.who))
            .collect();
        assert_eq!(
            who,
            [("a", "py"), ("b", "py"), ("c", "rust")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_store(&target, store, &PHASES);
        if store == Store::Status {
            assert_eq!(
                std::fs::read(format!("{}.status", target.display())).unwrap(),
                b"a\nb\nc\n",
                "byte-identical status file"
            );
        }

        // holdfast first, then Python, then holdfast again.
        let target = d.join(&format!("rust-first-{store:?}.db"));
        std::fs::write(&target, b"").unwrap();
        let log = d.join(&format!("rust-first-{store:?}.log"));
        let log_s = log.to_str().unwrap();
        let (code, _) = run(phase_cmd(
            &target,
            store,
            &["--phases", "a,b", "--log", log_s],
        ));
        assert_eq!(code, 0);
        let (code, out) = run(py_cmd(
            &py,
            "run",
            &target,
            store,
            &["--phases", "a,b,c", "--log", log_s],
        ));
        assert_eq!(code, 0, "{out:?}");
        let r = report(&out);
        assert_eq!(
            (r["skipped"].as_str(), r["completed"].as_str()),
            ("a,b", "c")
        );
        let (code, out) = run(phase_cmd(
            &target,
            store,
            &["--phases", "a,b,c", "--log", log_s],
        ));
        assert_eq!(code, 0);
        assert_eq!(report(&out)["skipped"], "a,b,c");
        assert_eq!(names(&read_log(&log)), PHASES);
    }
}

#[test]
fn attr_name_and_value_are_shared_with_python() {
    let Some(py) = peer_python("attr_name_and_value_are_shared_with_python") else {
        return;
    };
    let d = Dir::new();
    if !xattrs_work(d.path()) {
        eprintln!("skipping: no user xattrs here");
        return;
    }
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let (code, _) = run(py_cmd(
        &py,
        "run",
        &target,
        Store::Xattr,
        &["--phases", "schema-v3", "--attr", "schema-v3=schema:v3"],
    ));
    assert_eq!(code, 0);
    let m = PhaseRunner::new(&target).markers().unwrap();
    assert_eq!(m.xattrs, [("schema".to_owned(), b"v3".to_vec())]);
    // holdfast finds it by attr_name, and only by attr_name.
    let (_, out) = run(phase_cmd(
        &target,
        Store::Xattr,
        &["--phases", "schema-v3", "--attr", "schema-v3=schema:v3"],
    ));
    assert_eq!(report(&out)["skipped"], "schema-v3");
    // The reverse: a value written by holdfast, read by phaselock.
    let (_, out) = run(phase_cmd(
        &target,
        Store::Xattr,
        &["--phases", "pragmas", "--attr", "pragmas=opt:wal-v2"],
    ));
    assert_eq!(report(&out)["completed"], "pragmas");
    let (_, out) = run(py_cmd(&py, "value", &target, Store::Xattr, &["opt"]));
    assert_eq!(out, ["wal-v2"]);
}

#[test]
fn python_and_rust_started_together_run_each_phase_once() {
    let Some(py) = peer_python("python_and_rust_started_together_run_each_phase_once") else {
        return;
    };
    let d = Dir::new();
    for store in stores(&d) {
        for i in 0..6 {
            let target = d.join(&format!("together-{store:?}-{i}.db"));
            std::fs::write(&target, b"").unwrap();
            let log = d.join(&format!("together-{store:?}-{i}.log"));
            let log_s = log.to_str().unwrap();
            let common = [
                "--phases",
                "a,b,c",
                "--log",
                log_s,
                "--barrier",
                "--work-ms",
                "3",
            ];
            let mut kids = vec![
                Child::spawn(py_cmd(&py, "run", &target, store, &common)),
                Child::spawn(phase_cmd(&target, store, &common)),
                Child::spawn(py_cmd(&py, "run", &target, store, &common)),
                Child::spawn(phase_cmd(&target, store, &common)),
            ];
            start_together(&mut kids);
            let mut ran = Vec::new();
            for k in &mut kids {
                let r = fields(&k.expect_line("report ", T));
                assert!(k.wait(T).success());
                ran.extend(list(&r["completed"]));
            }
            let entries = read_log(&log);
            assert_eq!(
                names(&entries),
                PHASES,
                "{store:?} #{i}: each phase once, in order"
            );
            assert_eq!(ran, PHASES);
            assert_store(&target, store, &PHASES);
        }
    }
}

#[test]
fn python_and_holdfast_exclude_each_other_on_the_lock() {
    let Some(py) = peer_python("python_and_holdfast_exclude_each_other_on_the_lock") else {
        return;
    };
    let d = Dir::new();
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    // Python holds the phase lock: holdfast waits, times out, names it.
    let mut holder = Child::spawn(py_cmd(&py, "hold", &target, Store::Xattr, &[]));
    let pid = fields(&holder.expect_line("locked ", T))["pid"].clone();
    let (code, out) = run(phase_cmd(
        &target,
        Store::Xattr,
        &["--phases", "a", "--timeout-ms", "300"],
    ));
    assert_eq!(code, 11, "{out:?}");
    let err = out.iter().find(|l| l.starts_with("error ")).unwrap();
    assert!(err.contains("kind=Timeout"), "{err}");
    assert!(
        err.contains(&format!("pid {pid}")),
        "names the Python holder: {err}"
    );
    holder.close_stdin();
    assert!(holder.wait(T).success());
    // holdfast holds it: phaselock times out.
    let lock = Lock::open(format!("{}.lock", target.display())).unwrap();
    let guard = lock.lock().unwrap();
    let (code, out) = run(py_cmd(
        &py,
        "run",
        &target,
        Store::Xattr,
        &["--phases", "a", "--timeout", "0.3"],
    ));
    assert_eq!(code, 11, "{out:?}");
    assert!(out[0].starts_with("timeout: "), "{out:?}");
    drop(guard);
}

#[test]
fn mixed_modes_share_markers_through_the_union_read() {
    let Some(py) = peer_python("mixed_modes_share_markers_through_the_union_read") else {
        return;
    };
    let d = Dir::new();
    if !xattrs_work(d.path()) {
        eprintln!("skipping: no user xattrs here");
        return;
    }
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let log = d.join("log");
    let log_s = log.to_str().unwrap();
    // Python with xattrs off writes the status file...
    let (code, _) = run(py_cmd(
        &py,
        "run",
        &target,
        Store::Status,
        &["--phases", "a", "--log", log_s],
    ));
    assert_eq!(code, 0);
    // ...which phaselock in xattr mode never reads (it would rerun "a"),
    // but holdfast in xattr mode does, and copies the marker into the xattr
    // (strict marker locking makes it take the lock, where it copies).
    let (code, out) = run(phase_cmd(
        &target,
        Store::Xattr,
        &["--phases", "a,b", "--log", log_s, "--strict"],
    ));
    assert_eq!(code, 0);
    let r = report(&out);
    assert_eq!((r["skipped"].as_str(), r["completed"].as_str()), ("a", "b"));
    // Now Python in xattr mode skips both.
    let (_, out) = run(py_cmd(
        &py,
        "run",
        &target,
        Store::Xattr,
        &["--phases", "a,b", "--log", log_s],
    ));
    assert_eq!(report(&out)["skipped"], "a,b");
    assert_eq!(names(&read_log(&log)), ["a", "b"]);
}

#[test]
fn a_corrupt_status_file_is_an_error_where_python_would_rerun_everything() {
    let d = Dir::new();
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let status = d.join("app.db.status");
    let corrupt: &[u8] = b"a\nb\0\n";
    std::fs::write(&status, corrupt).unwrap();
    let log = d.join("log");
    let log_s = log.to_str().unwrap();
    let (code, out) = run(phase_cmd(
        &target,
        Store::Status,
        &["--phases", "a,b", "--log", log_s],
    ));
    assert_eq!(code, 1);
    let err = out.iter().find(|l| l.starts_with("error ")).unwrap();
    assert!(err.contains("kind=Corrupt"), "{err}");
    assert!(
        err.contains(&status.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("NUL"), "says what is wrong: {err}");
    assert!(!log.exists(), "nothing ran");
    assert_eq!(std::fs::read(&status).unwrap(), corrupt, "left untouched");
    // Too large is corrupt too.
    std::fs::write(&status, vec![b'x'; 64 * 1024 + 1]).unwrap();
    let (code, out) = run(phase_cmd(&target, Store::Status, &["--phases", "a"]));
    assert_eq!(code, 1);
    assert!(
        out.iter()
            .any(|l| l.contains("kind=Corrupt") && l.contains("65537")),
        "{out:?}"
    );
    // phaselock, for contrast, treats the file as empty and reruns.
    if let Some(py) =
        peer_python("a_corrupt_status_file_is_an_error_where_python_would_rerun_everything")
    {
        std::fs::write(&status, corrupt).unwrap();
        let (code, out) = run(py_cmd(
            &py,
            "run",
            &target,
            Store::Status,
            &["--phases", "a,b", "--log", log_s],
        ));
        assert_eq!(code, 0);
        assert_eq!(report(&out)["completed"], "a,b", "phaselock reran both");
    }
}

// ---------------------------------------------------------------------------
// Fallback
// ---------------------------------------------------------------------------

#[test]
fn markers_that_overflow_the_xattr_space_land_in_the_status_file_and_still_count() {
    let d = Dir::new();
    if !xattrs_work(d.path()) {
        eprintln!("skipping: no user xattrs here");
        return;
    }
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    // ext4 keeps all of a file's xattrs in one 4 KiB block: 150 markers
    // with long names do not fit, so setxattr fails (ENOSPC) part-way and
    // the rest go to the status file, as phaselock does too.
    let names: Vec<String> = (0..150)
        .map(|i| format!("migration-2024-06-01-create-table-number-{i:03}"))
        .collect();
    let all = names.join(",");
    let (code, out) = run(phase_cmd(&target, Store::Xattr, &["--phases", &all]));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(list(&report(&out)["completed"]), names);
    let m = PhaseRunner::new(&target).markers().unwrap();
    let in_status: BTreeSet<String> = m.status.iter().cloned().collect();
    eprintln!(
        "{} markers in xattrs, {} in the status file",
        m.xattrs.len(),
        in_status.len()
    );
    assert_eq!(m.xattrs.len() + in_status.len(), names.len());
    // holdfast reads both stores: the next run skips everything.
    let (code, out) = run(phase_cmd(&target, Store::Xattr, &["--phases", &all]));
    assert_eq!(code, 0);
    assert_eq!(list(&report(&out)["skipped"]), names);
    // phaselock in xattr mode never reads the status file, so it reruns
    // every phase that overflowed (a weakness holdfast does not share).
    if !in_status.is_empty()
        && let Some(py) = peer_python(
            "markers_that_overflow_the_xattr_space_land_in_the_status_file_and_still_count",
        )
    {
        let (code, out) = run(py_cmd(
            &py,
            "run",
            &target,
            Store::Xattr,
            &["--phases", &all],
        ));
        assert_eq!(code, 0);
        let reran: BTreeSet<String> = list(&report(&out)["completed"]).into_iter().collect();
        assert_eq!(reran, in_status);
    }
}

#[test]
fn phaselock_enable_xattrs_values_choose_the_store() {
    let d = Dir::new();
    if !xattrs_work(d.path()) {
        eprintln!("skipping: no user xattrs here, so every value means the status file");
        return;
    }
    let cases = [
        ("0", false),
        ("false", false),
        ("no", false),
        ("off", false),
        ("fallback", false),
        ("status", false),
        ("none", false),
        (" Off ", false),
        ("", true),
        ("auto", true),
        ("1", true),
        ("yes", true),
        ("xattrs", true),
        ("garbage", true),
    ];
    for (i, (value, xattrs)) in cases.into_iter().enumerate() {
        let target = d.join(&format!("env{i}.db"));
        std::fs::write(&target, b"").unwrap();
        let mut c = helper();
        c.arg("phase-run")
            .arg(&target)
            .args(["--phases", "a,b"])
            .env("PHASELOCK_ENABLE_XATTRS", value);
        let (code, out) = run(c);
        assert_eq!(code, 0);
        assert_eq!(
            report(&out)["xattrs"],
            if xattrs { "1" } else { "0" },
            "{value:?}"
        );
        assert_store(
            &target,
            if xattrs { Store::Xattr } else { Store::Status },
            &["a", "b"],
        );
    }
}

/// Runs `script` in a private mount namespace (root only); `None` if that
/// is not possible here.
fn in_mount_namespace(script: &str) -> Option<(i32, Vec<String>)> {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and unshare(1) for a private mount");
        return None;
    }
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-ec", script]);
    Some(run(c))
}

#[test]
fn a_filesystem_without_user_xattrs_uses_the_status_file() {
    // ramfs has no xattr handlers at all: getxattr/setxattr give ENOTSUP.
    let d = Dir::new();
    let mnt = d.join("ramfs");
    std::fs::create_dir(&mnt).unwrap();
    let h = HELPER;
    let m = mnt.display();
    let script = format!(
        "mount -t ramfs none {m}
         touch {m}/app.db
         export PHASELOCK_ENABLE_XATTRS=1
         {h} phase-run {m}/app.db --phases a,b
         {h} phase-run {m}/app.db --phases a,b,c
         printf 'status:'; tr '\\n' ' ' < {m}/app.db.status; echo"
    );
    let Some((code, out)) = in_mount_namespace(&script) else {
        return;
    };
    assert_eq!(code, 0, "{out:?}");
    let reports: Vec<&String> = out.iter().filter(|l| l.starts_with("report ")).collect();
    assert_eq!(reports.len(), 2, "{out:?}");
    let first = fields(reports[0]);
    assert_eq!(
        (first["completed"].as_str(), first["xattrs"].as_str()),
        ("a,b", "0")
    );
    let second = fields(reports[1]);
    assert_eq!(
        (second["skipped"].as_str(), second["completed"].as_str()),
        ("a,b", "c")
    );
    assert!(out.contains(&"status:a b c ".to_owned()), "{out:?}");
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_input_is_a_typed_error_and_runs_nothing() {
    let d = Dir::new();
    let target = d.join("app.db");
    let runner = PhaseRunner::new(&target);
    let ran = std::cell::Cell::new(0);
    let p = |n: &str| {
        let ran = &ran;
        Phase::new(n.to_owned(), move |_| {
            ran.set(ran.get() + 1);
            Ok(())
        })
    };
    let cases: Vec<(&str, Vec<Phase<'_>>)> = vec![
        ("empty name", vec![p("a"), p("")]),
        ("NUL", vec![p("a\0b")]),
        ("newline", vec![p("a\nb")]),
        ("carriage return", vec![p("a\rb")]),
        ("a separator phaselock splits on", vec![p("a\u{2028}b")]),
        ("duplicate name", vec![p("a"), p("b"), p("a")]),
        (
            "duplicate marker",
            vec![p("a").attr_name("m"), p("b").attr_name("m")],
        ),
    ];
    for (what, phases) in cases {
        match runner.run(phases) {
            Err(Error::InvalidInput { path, reason }) => {
                assert_eq!(path, target, "{what}");
                eprintln!("{what}: {reason}");
            }
            other => panic!("{what}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(ran.get(), 0);

    let missing = PhaseRunner::new(d.join("no/such/dir/app.db"));
    match missing.run([p("a")]) {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("missing directory: {other:?}"),
    }

    std::fs::write(&target, b"").unwrap();
    let link = d.join("link.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    match PhaseRunner::new(&link).run([p("a")]) {
        Err(e @ Error::Symlink { .. }) => assert_eq!(e.path(), link),
        other => panic!("symlink target: {other:?}"),
    }
    assert_eq!(ran.get(), 0);
    assert!(!d.join("link.db.lock").exists());
}

#[test]
fn a_target_in_a_read_only_directory_is_a_typed_error() {
    let d = Dir::new();
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let h = HELPER;
    let r = ro.display();
    let (code, out, expect) = if is_root() {
        // Root ignores permission bits: make it a read-only mount instead.
        let script = format!(
            "mount --bind {r} {r}
             mount -o remount,bind,ro {r}
             {h} phase-run {r}/app.db --phases a || echo exit=$?"
        );
        let Some((code, out)) = in_mount_namespace(&script) else {
            return;
        };
        (code, out, "ReadOnlyFilesystem")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let (code, out) = run({
            let mut c = helper();
            c.arg("phase-run")
                .arg(ro.join("app.db"))
                .args(["--phases", "a"]);
            c
        });
        (code, out, "PermissionDenied")
    };
    let err = out
        .iter()
        .find(|l| l.starts_with("error "))
        .unwrap_or_else(|| panic!("{code} {out:?}"));
    assert!(err.contains("kind=Io"), "{err}");
    assert!(err.contains(&format!("io={expect}")), "{err}");
    assert!(
        err.contains(&format!("path={r}/app.db.lock")),
        "names the lock file: {err}"
    );
}

// ---------------------------------------------------------------------------
// Durability: the system calls, in order
// ---------------------------------------------------------------------------

#[test]
fn markers_are_fsynced_renamed_and_the_directory_synced() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipping: strace not installed");
        return;
    }
    let d = Dir::new();
    let target = d.join("app.db");
    std::fs::write(&target, b"").unwrap();
    let trace = d.join("trace");
    let mut c = Command::new("strace");
    c.arg("-o")
        .arg(&trace)
        .args([
            "-e",
            "trace=open,openat,fsync,rename,renameat,renameat2,setxattr,lsetxattr",
        ])
        .arg(HELPER)
        .arg("phase-run")
        .arg(&target)
        .args(["--phases", "a"])
        .env("PHASELOCK_ENABLE_XATTRS", "0");
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let find = |from: usize, pred: &dyn Fn(&str) -> bool, what: &str| -> usize {
        from + lines[from..]
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("no {what} after line {from} in:\n{text}"))
    };
    let status = format!("{}.status", target.display());
    let tmp = find(
        0,
        &|l| l.contains(&format!("{status}.tmp.")) && l.contains("O_EXCL"),
        "O_EXCL temp file",
    );
    let fd = lines[tmp].rsplit('=').next().unwrap().trim().to_owned();
    let sync = find(
        tmp,
        &|l| l.starts_with(&format!("fsync({fd})")),
        "fsync of the temp",
    );
    let ren = find(
        sync,
        &|l| l.starts_with("rename") && l.contains(&format!("\"{status}\"")),
        "rename",
    );
    let dir = find(
        ren,
        &|l| l.contains(&format!("\"{}\"", d.path().display())) && l.contains("O_DIRECTORY"),
        "open of the directory",
    );
    let dfd = lines[dir].rsplit('=').next().unwrap().trim().to_owned();
    find(
        dir,
        &|l| l.starts_with(&format!("fsync({dfd})")),
        "fsync of the directory",
    );

    if xattrs_work(d.path()) {
        let target = d.join("x.db");
        std::fs::write(&target, b"").unwrap();
        let mut c = Command::new("strace");
        c.arg("-o")
            .arg(&trace)
            .args(["-e", "trace=open,openat,fsync,setxattr,lsetxattr"])
            .arg(HELPER)
            .arg("phase-run")
            .arg(&target)
            .args(["--phases", "a"])
            .env("PHASELOCK_ENABLE_XATTRS", "1");
        assert_eq!(run(c).0, 0);
        let text = std::fs::read_to_string(&trace).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let set = lines
            .iter()
            .position(|l| l.contains("setxattr(") && l.contains("user.phaselock.a"))
            .unwrap_or_else(|| panic!("no setxattr in:\n{text}"));
        let t = format!("\"{}\"", target.display());
        let open = set
            + lines[set..]
                .iter()
                .position(|l| l.starts_with("open") && l.contains(&t))
                .unwrap();
        let fd = lines[open].rsplit('=').next().unwrap().trim();
        assert!(
            lines[open..]
                .iter()
                .any(|l| l.starts_with(&format!("fsync({fd})"))),
            "the target is fsynced after its marker xattr:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// Run-once
// ---------------------------------------------------------------------------

fn once_cmd(key: &Path, extra: &[&str]) -> Command {
    let mut c = helper();
    c.arg("once-run").arg(key).args(extra);
    c
}

#[test]
fn once_under_eight_processes_runs_the_action_exactly_once() {
    let d = Dir::new();
    let key = d.join("initialized");
    let log = d.join("log");
    let log_s = log.to_str().unwrap();
    let mut kids: Vec<Child> = (0..8)
        .map(|_| {
            Child::spawn(once_cmd(
                &key,
                &["--log", log_s, "--barrier", "--work-ms", "20"],
            ))
        })
        .collect();
    start_together(&mut kids);
    let mut ran = 0;
    let mut done = 0;
    for k in &mut kids {
        let line = k.expect_line("outcome ", T);
        assert!(k.wait(T).success());
        if line.starts_with("outcome ran took_over=0") {
            ran += 1;
        } else if line.starts_with("outcome done") {
            done += 1;
        } else {
            panic!("unexpected {line}");
        }
    }
    assert_eq!((ran, done), (1, 7));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(key.exists());
}

fn leader_crash(policy: &str) -> (Vec<String>, String, PathBuf, Dir) {
    let d = Dir::new();
    let key = d.join("initialized");
    let log = d.join("log");
    let log_s = log.to_str().unwrap().to_owned();
    let mut leader = Child::spawn(once_cmd(&key, &["--log", &log_s, "--block"]));
    let leader_pid = fields(&leader.expect_line("in-action ", T))["pid"].clone();
    let mut waiters: Vec<Child> = (0..3)
        .map(|_| Child::spawn(once_cmd(&key, &["--log", &log_s, "--policy", policy])))
        .collect();
    let lock_path = d.join("initialized.lock");
    wait_for("three waiters blocked on the lock in the kernel", T, || {
        (kernel_waiters(&lock_path).len() == 3).then_some(())
    });
    leader.kill9();
    let outs = waiters
        .iter_mut()
        .map(|w| {
            let l = loop {
                let l = w.line(T);
                if l.starts_with("outcome ") || l.starts_with("error ") {
                    break l;
                }
            };
            w.wait(T);
            l
        })
        .collect();
    (outs, leader_pid, key, d)
}

#[test]
fn once_leader_killed_mid_action_the_next_waiter_takes_over() {
    let (outs, _, key, d) = leader_crash("retry");
    let took: Vec<&String> = outs
        .iter()
        .filter(|l| l.starts_with("outcome ran took_over=1"))
        .collect();
    let done: Vec<&String> = outs
        .iter()
        .filter(|l| l.starts_with("outcome done waited=1"))
        .collect();
    assert_eq!((took.len(), done.len()), (1, 2), "{outs:?}");
    let text = std::fs::read_to_string(d.join("log")).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "ran once, by the waiter that took over: {text}"
    );
    assert!(key.exists());
}

#[test]
fn once_leader_killed_with_propagate_every_waiter_learns_it() {
    let (outs, leader_pid, key, d) = leader_crash("propagate");
    for l in &outs {
        assert!(l.starts_with("error kind=LeaderFailed"), "{outs:?}");
        assert!(
            l.contains(&format!("pid {leader_pid}")),
            "names the dead leader: {l}"
        );
    }
    assert!(!key.exists() && !d.join("log").exists());
    // A caller arriving afterwards is simply the new leader.
    let (code, out) = run(once_cmd(&key, &["--policy", "propagate"]));
    assert_eq!(code, 0);
    assert!(
        out.iter().any(|l| l.starts_with("outcome ran took_over=0")),
        "{out:?}"
    );
}
