//! Setup-phase scenarios: the cost of a run in which all N phases are
//! already done (N = 1, 10, 100), holdfast `PhaseRunner` beside Python
//! phaselock 1.1.0 and a raw-syscall floor, in one run, on one target.
//!
//! This is the cost every process pays at every start once setup is done,
//! so it is the number that matters for phases. Both libraries are
//! measured in their own worker process, looping `run` on the same target
//! (whose markers one of them wrote: the two share them), in xattr mode
//! and in status-file mode, with the default POSIX fast path (no lock) and
//! with strict marker locking (lock taken every run).
//!
//! Worker protocol: `holdfast-bench phase-worker IMPL TARGET N MILLIS` (or
//! `PYTHON bench/peers/phaselock_worker.py IMPL TARGET N MILLIS`) prints
//! `ready`, waits for a line, loops for MILLIS, prints `ns N` (mean
//! nanoseconds per run). The store comes from `PHASELOCK_ENABLE_XATTRS` in
//! the worker's environment, which both libraries read.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast::phase::{Phase, PhaseRunner};

use crate::proc::{Env, Worker, peers_dir};
use crate::stats::{fmt_ns, ratio};

/// Short names: 100 markers `user.phaselock.sNNN` fit in one ext4 xattr
/// block (4 KiB); with long names the later markers overflow into the
/// status file (ENOSPC), which phaselock in xattr mode never reads.
fn phase_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:03}")).collect()
}

/// The worker side (`holdfast-bench phase-worker ...`).
pub fn worker(args: &[String]) {
    let [imp, target, n, millis] = args else {
        eprintln!("usage: holdfast-bench phase-worker IMPL TARGET N MILLIS");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let dur = Duration::from_millis(millis.parse().expect("millis"));
    let names = phase_names(n);
    let mut runner = PhaseRunner::new(target);
    let one: Box<dyn Fn()> = match imp.as_str() {
        "holdfast" | "holdfast-strict" => {
            runner.strict_marker_locking(imp == "holdfast-strict");
            Box::new(|| {
                let r = runner
                    .run(
                        names
                            .iter()
                            .map(|n| Phase::new(n.as_str(), |_| unreachable!())),
                    )
                    .expect("run");
                assert_eq!(r.skipped.len(), names.len());
            })
        }
        // The floor for xattr mode: one lgetxattr per phase, nothing else.
        "raw-xattr" => {
            let keys: Vec<String> = names.iter().map(|n| runner.attr_key(n)).collect();
            Box::new(move || {
                let mut buf = [0u8; 64];
                for k in &keys {
                    rustix::fs::lgetxattr(target.as_str(), k.as_str(), &mut buf[..])
                        .expect("marker present");
                }
            })
        }
        // The floor for status mode: read the status file once.
        "raw-status" => {
            let status = runner.status_path();
            Box::new(move || {
                let text = std::fs::read(&status).expect("status file");
                assert!(!text.is_empty());
            })
        }
        other => panic!("unknown implementation {other}"),
    };
    // Warm up (page cache, dentries, allocator).
    for _ in 0..20 {
        one();
    }
    say("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go");
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < dur || iters < 20 {
        one();
        iters += 1;
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    say(&format!("ns {}", ns.round() as u64));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Who runs a worker.
#[derive(Clone, Copy)]
enum Impl {
    /// `holdfast-bench phase-worker IMPL ...`.
    Rust(&'static str),
    /// `PYTHON bench/peers/phaselock_worker.py IMPL ...`.
    Python(&'static str),
}

/// Mean ns per run of one implementation: the median of several workers.
fn measure(imp: Impl, env: &Env, store: &str, target: &Path, n: usize, millis: u64) -> f64 {
    let reps = if env.quick { 1 } else { 3 };
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let mut cmd = match imp {
                Impl::Rust(name) => {
                    let mut c = Command::new(std::env::current_exe().expect("current exe"));
                    c.arg("phase-worker").arg(name);
                    c
                }
                Impl::Python(name) => {
                    let mut c = Command::new(env.python.as_ref().expect("python"));
                    c.arg(peers_dir().join("phaselock_worker.py")).arg(name);
                    c
                }
            };
            cmd.arg(target)
                .arg(n.to_string())
                .arg(millis.to_string())
                .env("PHASELOCK_ENABLE_XATTRS", store);
            let mut w = Worker::spawn_command(cmd);
            assert_eq!(w.recv(), "ready");
            w.send("go");
            let v = w.recv_value("ns ") as f64;
            w.finish();
            v
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs the all-phases-done scenario and prints a Markdown table.
pub fn run(env: &Env, dir: &Path) {
    let millis = if env.quick { 150 } else { 600 };
    let have_python = env.python.is_some();
    println!("\n## Setup phases: a run in which all N phases are already done\n");
    println!(
        "One process loops `run` over N phases that are all marked done (the cost every process pays at every start once setup is done), for {millis} ms; mean time per run, median of {} workers. Same target for everyone; its markers were written once beforehand. Fast path = phaselock's POSIX default (markers read without the lock); strict = strict marker locking (the lock is taken every run). The floor is the bare system calls: N `lgetxattr` (xattr mode) or one read of the status file.\n",
        if env.quick { 1 } else { 3 }
    );
    println!(
        "| store | N | floor (raw syscalls) | holdfast fast path | phaselock fast path | holdfast / phaselock | holdfast strict | phaselock strict | holdfast / phaselock |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (store, env_value, floor) in [
        ("xattr", "1", "raw-xattr"),
        ("status file", "0", "raw-status"),
    ] {
        for n in [1usize, 10, 100] {
            let target = dir.join(format!("phases-{env_value}-{n}.db"));
            std::fs::write(&target, b"").unwrap();
            // Mark everything once (through holdfast; phaselock reads it).
            let mut setup = PhaseRunner::new(&target);
            setup.xattrs(if env_value == "1" {
                holdfast::XattrMode::On
            } else {
                holdfast::XattrMode::Off
            });
            let names = phase_names(n);
            let rep = setup
                .run(names.iter().map(|n| Phase::new(n.as_str(), |_| Ok(()))))
                .expect("setup run");
            assert_eq!(rep.xattrs_available, env_value == "1", "store for {store}");
            let m = |imp| measure(imp, env, env_value, &target, n, millis);
            let raw = m(Impl::Rust(floor));
            let hf = m(Impl::Rust("holdfast"));
            let hfs = m(Impl::Rust("holdfast-strict"));
            let (py, pys) = if have_python {
                (
                    m(Impl::Python("phaselock")),
                    m(Impl::Python("phaselock-strict")),
                )
            } else {
                (f64::NAN, f64::NAN)
            };
            println!(
                "| {store} | {n} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_ns(raw),
                fmt_ns(hf),
                fmt_ns(py),
                ratio(hf, py),
                fmt_ns(hfs),
                fmt_ns(pys),
                ratio(hfs, pys)
            );
        }
    }
}
