//! Lock-file scenarios: handoff latency and contended throughput of
//! holdfast's soft, link and mkdir lock files beside the Python originals
//! of each protocol (filelock `SoftFileLock`, flufl.lock, lockfile
//! `LinkLockFile` / `MkdirLockFile`), on one path, in one run.
//!
//! Handoff: the harness holds the lock with holdfast (in the format of the
//! family, so Python waiters wait on a holdfast lock: that is the interop
//! at work), tells the worker to take it, waits until the worker is
//! waiting (holdfast workers: 2 to 5 ms, enough to be parked on inotify;
//! pollers: a uniformly random point of two poll intervals, so their
//! number is what a user sees on average), stamps CLOCK_MONOTONIC and
//! releases; the worker stamps the clock when its acquisition returns.
//!
//! Uncontended: one process takes and releases the lock in a loop, on the
//! benchmark directory's filesystem and on tmpfs, beside the fastest Python
//! implementation of the protocol.
//!
//! Workers: `holdfast-bench lockfile-worker IMPL ROLE LOCK ARG` with the
//! roles of `workers.rs` (`loop LOCK MILLIS`, `handoff LOCK T0FILE`) and
//! `uncontended LOCK MILLIS`, or
//! `PYTHON bench/peers/filelock_worker.py IMPL ...` for the Python peers.
//! IMPLs here: `soft`, `soft-filelock`, `link`, `link-lockfile`, `mkdir`,
//! `mkdir-lockfile`. For the lockfile formats LOCK is `<base>.lock` (what
//! lockfile makes of `<base>`), and both sides strip the suffix.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use holdfast::lockfile::{Compat, LockFile, LockFileOptions, Protocol};

use crate::proc::{Env, Runner, Worker};
use crate::stats::{fmt_ns, now_ns, percentile, ratio};

/// The holdfast flavour a worker IMPL stands for.
fn flavour(imp: &str) -> (Protocol, Compat) {
    match imp {
        "soft" => (Protocol::Soft, Compat::Holdfast),
        "soft-filelock" => (Protocol::Soft, Compat::Filelock),
        "link" => (Protocol::Link, Compat::Flufl),
        "link-lockfile" => (Protocol::Link, Compat::Lockfile),
        "mkdir" => (Protocol::Mkdir, Compat::Holdfast),
        "mkdir-lockfile" => (Protocol::Mkdir, Compat::Lockfile),
        other => panic!("unknown lock-file implementation {other}"),
    }
}

/// Opens the holdfast lock for `imp` at `lock` (stripping `.lock` for the
/// lockfile formats, which add it back).
fn open(imp: &str, lock: &Path) -> LockFile {
    let (p, c) = flavour(imp);
    let path: PathBuf = if c == Compat::Lockfile {
        let s = lock.to_str().expect("utf-8 path");
        PathBuf::from(s.strip_suffix(".lock").unwrap_or(s))
    } else {
        lock.to_owned()
    };
    let mut o = LockFileOptions::new(p);
    o.compat(c);
    if p == Protocol::Link {
        o.lifetime(Duration::from_secs(60));
    }
    o.open(path).expect("open lock file")
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The worker side (`holdfast-bench lockfile-worker IMPL ROLE LOCK ARG`).
pub fn worker(args: &[String]) {
    let [imp, role, path, arg] = args else {
        eprintln!("usage: holdfast-bench lockfile-worker IMPL loop|handoff|uncontended LOCK ARG");
        std::process::exit(2);
    };
    let lock = open(imp, Path::new(path));
    let stdin = std::io::stdin();
    match role.as_str() {
        "loop" => {
            let dur = Duration::from_millis(arg.parse().expect("millis"));
            say("ready");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).expect("go");
            let end = Instant::now() + dur;
            let mut n = 0u64;
            while Instant::now() < end {
                let g = lock.lock().expect("lock");
                drop(g);
                n += 1;
            }
            say(&format!("count {n}"));
        }
        "handoff" => {
            let t0file = File::open(arg).expect("t0 file");
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
                say("trying");
                let g = lock.lock().expect("lock");
                let t1 = now_ns();
                let mut buf = [0u8; 8];
                t0file.read_exact_at(&mut buf, 0).expect("read t0");
                let t0 = u64::from_le_bytes(buf);
                say(&format!("lat {}", t1.saturating_sub(t0)));
                drop(g);
            }
        }
        "uncontended" => {
            // Five batches of ARG milliseconds each; the mean cycle of each.
            let dur = Duration::from_millis(arg.parse().expect("millis"));
            drop(lock.lock().expect("lock"));
            say("ready");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).expect("go");
            for _ in 0..5 {
                let t0 = Instant::now();
                let mut n = 0u64;
                loop {
                    drop(lock.lock().expect("lock"));
                    n += 1;
                    if n.is_multiple_of(16) && t0.elapsed() >= dur {
                        break;
                    }
                }
                say(&format!("mean {}", t0.elapsed().as_nanos() as u64 / n));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// One process takes and releases the lock in a loop: five batches, the
/// median of their mean cycle times.
fn uncontended(s: &Subject, env: &Env, lock: &Path, millis: u64) -> f64 {
    let ms = millis.to_string();
    let mut w = spawn(
        &s.runner,
        env,
        &["uncontended", lock.to_str().unwrap(), &ms],
    );
    assert_eq!(w.recv(), "ready");
    w.send("go");
    let mut means: Vec<f64> = (0..5).map(|_| w.recv_value("mean ") as f64).collect();
    w.finish();
    percentile(&mut means, 50.0)
}

/// Whether a subject is one of the Python originals.
fn is_python(s: &Subject) -> bool {
    matches!(s.runner, Runner::Python { .. })
}

/// Uncontended acquire + release per protocol, on the benchmark directory's
/// filesystem (ext4 on the development VM) and on tmpfs (`/dev/shm`), each
/// implementation beside the fastest Python implementation of its
/// protocol in the same run (issue 11's target: ≤ 0.5×).
pub fn run_uncontended(env: &Env, dir: &Path) {
    let millis = if env.quick { 60 } else { 300 };
    let shm = Path::new("/dev/shm");
    let mut places: Vec<(String, PathBuf)> = vec![(fs_name(dir), dir.join("uncontended"))];
    if shm.is_dir() && fs_name(shm) != fs_name(dir) {
        places.push((
            fs_name(shm),
            shm.join(format!("holdfast-bench-{}", std::process::id())),
        ));
    }
    println!("\n## Lock files: uncontended acquire + release\n");
    println!(
        "One process takes and releases the lock in a loop: five batches of {millis} ms, median of the batch means. Ratio against the fastest Python implementation of the same protocol on the same filesystem, in this run (issue 11 target: ≤ 0.5×).\n"
    );
    let heads: Vec<String> = places.iter().map(|(n, _)| n.clone()).collect();
    println!(
        "| protocol | implementation | {} | vs fastest Python ({}) |",
        heads.join(" | "),
        heads.join(" / ")
    );
    println!("|---|---|{}---|", "---|".repeat(places.len()));
    for f in families() {
        let mut rows: Vec<(&str, bool, Vec<f64>)> = Vec::new();
        for (i, s) in f.subjects.iter().enumerate() {
            if !s.runner.available(env) {
                continue;
            }
            let times = places
                .iter()
                .map(|(_, base)| {
                    let sub = base.join(format!("{}-{i}", f.file.trim_end_matches(".lock")));
                    std::fs::create_dir_all(&sub).unwrap();
                    let t = uncontended(s, env, &sub.join(f.file), millis);
                    let _ = std::fs::remove_dir_all(&sub);
                    t
                })
                .collect();
            rows.push((s.label.trim_end_matches(" (anchor)"), is_python(s), times));
        }
        let fastest: Vec<f64> = (0..places.len())
            .map(|k| {
                rows.iter()
                    .filter(|r| r.1)
                    .map(|r| r.2[k])
                    .fold(f64::NAN, f64::min)
            })
            .collect();
        for (label, _, times) in &rows {
            println!(
                "| {} | {} | {} | {} |",
                f.name,
                label,
                times
                    .iter()
                    .map(|t| fmt_ns(*t))
                    .collect::<Vec<_>>()
                    .join(" | "),
                times
                    .iter()
                    .zip(&fastest)
                    .map(|(t, a)| ratio(*t, *a))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
    }
    for (_, base) in &places {
        let _ = std::fs::remove_dir_all(base);
    }
}

/// The filesystem type of `p` (`ext4`, `tmpfs`, ...), from /proc/mounts.
fn fs_name(p: &Path) -> String {
    let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut it = line.split_whitespace();
        let (Some(_), Some(at), Some(kind)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if p.starts_with(at) && best.as_ref().is_none_or(|(n, _)| at.len() > *n) {
            best = Some((at.len(), kind.to_owned()));
        }
    }
    best.map(|(_, k)| k).unwrap_or_else(|| "?".into())
}

/// One implementation under test, in a protocol family.
struct Subject {
    label: &'static str,
    runner: Runner,
    /// How the harness holds the lock in the handoff (a holdfast flavour
    /// that speaks this subject's format).
    holder: &'static str,
    /// `None`: waits on notifications; `Some(ms)`: polls every `ms` on
    /// average (released at a random point of two intervals).
    poll_ms: Option<u64>,
}

struct Family {
    name: &'static str,
    /// The lock name used (lockfile's subjects need `.lock`).
    file: &'static str,
    subjects: Vec<Subject>,
    /// Index of the subject the ratios are taken against (the Python
    /// original of the protocol).
    anchor: usize,
}

fn rust(imp: &'static str) -> Runner {
    Runner::Rust(imp)
}

fn py(imp: &'static str) -> Runner {
    Runner::Python {
        script: "filelock_worker.py",
        imp,
    }
}

fn families() -> Vec<Family> {
    vec![
        Family {
            name: "soft (O_CREAT|O_EXCL)",
            file: "soft.lock",
            subjects: vec![
                Subject {
                    label: "Python filelock.SoftFileLock (anchor)",
                    runner: py("filelock-soft"),
                    holder: "soft-filelock",
                    poll_ms: Some(50),
                },
                Subject {
                    label: "holdfast soft",
                    runner: rust("soft"),
                    holder: "soft",
                    poll_ms: None,
                },
                Subject {
                    label: "holdfast soft, filelock format",
                    runner: rust("soft-filelock"),
                    holder: "soft-filelock",
                    poll_ms: None,
                },
            ],
            anchor: 0,
        },
        Family {
            name: "link (NFS-safe link())",
            file: "link.lock",
            subjects: vec![
                Subject {
                    label: "Python flufl.lock (anchor)",
                    runner: py("flufl"),
                    holder: "link",
                    // Sleeps random.random() * 2 + 0.01 s between tries.
                    poll_ms: Some(1010),
                },
                Subject {
                    label: "Python lockfile.LinkLockFile",
                    runner: py("lockfile-link"),
                    holder: "link-lockfile",
                    poll_ms: Some(100),
                },
                Subject {
                    label: "holdfast link (flufl format)",
                    runner: rust("link"),
                    holder: "link",
                    poll_ms: None,
                },
                Subject {
                    label: "holdfast link, lockfile format",
                    runner: rust("link-lockfile"),
                    holder: "link-lockfile",
                    poll_ms: None,
                },
            ],
            anchor: 0,
        },
        Family {
            name: "mkdir",
            file: "dir.lock",
            subjects: vec![
                Subject {
                    label: "Python lockfile.MkdirLockFile (anchor)",
                    runner: py("lockfile-mkdir"),
                    holder: "mkdir-lockfile",
                    poll_ms: Some(100),
                },
                Subject {
                    label: "holdfast mkdir, lockfile format",
                    runner: rust("mkdir-lockfile"),
                    holder: "mkdir-lockfile",
                    poll_ms: None,
                },
                Subject {
                    label: "holdfast mkdir",
                    runner: rust("mkdir"),
                    holder: "mkdir",
                    poll_ms: None,
                },
            ],
            anchor: 0,
        },
    ]
}

/// Spawns a worker: Rust IMPLs run as `lockfile-worker`.
fn spawn(runner: &Runner, env: &Env, args: &[&str]) -> Worker {
    match runner {
        Runner::Rust(imp) => {
            let mut c = std::process::Command::new(std::env::current_exe().expect("exe"));
            c.arg("lockfile-worker").arg(imp).args(args);
            Worker::spawn_command(c)
        }
        python => Worker::spawn(python, env, args),
    }
}

fn contended(s: &Subject, env: &Env, lock: &Path, procs: usize, millis: u64) -> (f64, Vec<u64>) {
    let ms = millis.to_string();
    let mut ws: Vec<Worker> = (0..procs)
        .map(|_| spawn(&s.runner, env, &["loop", lock.to_str().unwrap(), &ms]))
        .collect();
    for w in &mut ws {
        assert_eq!(w.recv(), "ready");
    }
    for w in &mut ws {
        w.send("go");
    }
    let counts: Vec<u64> = ws.iter_mut().map(|w| w.recv_value("count ")).collect();
    for w in ws {
        w.finish();
    }
    let total: u64 = counts.iter().sum();
    (total as f64 / (millis as f64 / 1000.0), counts)
}

fn handoff(s: &Subject, env: &Env, lock: &Path, rounds: usize) -> Vec<f64> {
    let t0path = lock.with_extension("t0");
    let t0file = File::create(&t0path).unwrap();
    t0file.write_all_at(&0u64.to_le_bytes(), 0).unwrap();
    let holder = open(s.holder, lock);
    let mut w = spawn(
        &s.runner,
        env,
        &["handoff", lock.to_str().unwrap(), t0path.to_str().unwrap()],
    );
    let mut lats = Vec::with_capacity(rounds);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..rounds {
        let g = holder.lock().expect("harness lock");
        w.send("go");
        assert_eq!(w.recv(), "trying");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pause = match s.poll_ms {
            None => Duration::from_micros(2_000 + rng % 3_000),
            Some(ms) => Duration::from_micros(rng % (2 * ms * 1000)),
        };
        std::thread::sleep(pause);
        t0file.write_all_at(&now_ns().to_le_bytes(), 0).unwrap();
        drop(g);
        lats.push(w.recv_value("lat ") as f64);
    }
    w.finish();
    lats
}

/// Runs every lock-file scenario and prints Markdown tables.
pub fn run(env: &Env, dir: &Path) {
    run_uncontended(env, dir);
    let millis = if env.quick { 300 } else { 1500 };
    let procs = [2usize, 4, 8];
    println!("\n## Lock files: handoff latency\n");
    println!(
        "The harness holds the lock with holdfast in the subject's format (so Python waiters wait on a holdfast lock), waits until the worker is waiting (holdfast: 2 to 5 ms, parked on inotify; Python pollers: a uniformly random point of two poll intervals, so their figure is what a user sees on average), stamps CLOCK_MONOTONIC and releases; the worker stamps the clock when its acquisition returns. Ratios against the Python original of the protocol.\n"
    );
    println!("| protocol | implementation | rounds | p50 | p99 | p50 vs anchor |");
    println!("|---|---|---|---|---|---|");
    for f in families() {
        let mut anchor = f64::NAN;
        for (i, s) in f.subjects.iter().enumerate() {
            if !s.runner.available(env) {
                continue;
            }
            let rounds = match (s.poll_ms, env.quick) {
                (None, false) => 2000,
                (None, true) => 300,
                (Some(ms), q) if ms > 500 => {
                    if q {
                        5
                    } else {
                        30
                    }
                }
                (Some(_), false) => 100,
                (Some(_), true) => 20,
            };
            let sub = dir.join(format!("handoff-{}-{i}", f.file.trim_end_matches(".lock")));
            std::fs::create_dir_all(&sub).unwrap();
            let mut lats = handoff(s, env, &sub.join(f.file), rounds);
            let p50 = percentile(&mut lats, 50.0);
            let p99 = percentile(&mut lats, 99.0);
            if i == f.anchor {
                anchor = p50;
            }
            println!(
                "| {} | {} | {rounds} | {} | {} | {} |",
                f.name,
                s.label,
                fmt_ns(p50),
                fmt_ns(p99),
                ratio(p50, anchor)
            );
        }
    }

    println!("\n## Lock files: contended throughput\n");
    println!(
        "{} processes each take and release one lock file in a loop for {millis} ms. Acquisitions per second, all processes together; ratio against the Python original at the same P; min/max = fewest/most acquisitions by one process at P=8.\n",
        procs
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| protocol | implementation | P=2 | P=4 | P=8 | ratio vs anchor (P=2 / 4 / 8) | min/max at P=8 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in families() {
        let mut anchor = Vec::new();
        for (i, s) in f.subjects.iter().enumerate() {
            if !s.runner.available(env) {
                continue;
            }
            let mut cells = Vec::new();
            let mut ratios = Vec::new();
            let mut spread = String::new();
            for (j, &p) in procs.iter().enumerate() {
                let sub = dir.join(format!("loop-{}-{i}-{p}", f.file.trim_end_matches(".lock")));
                std::fs::create_dir_all(&sub).unwrap();
                let (rate, counts) = contended(s, env, &sub.join(f.file), p, millis);
                if i == f.anchor {
                    anchor.push(rate);
                }
                cells.push(format!("{rate:.0}/s"));
                ratios.push(anchor.get(j).map_or("n/a".into(), |a| ratio(rate, *a)));
                if p == 8 {
                    let (mn, mx) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                    spread = format!("{mn} / {mx}");
                }
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                f.name,
                s.label,
                cells[0],
                cells[1],
                cells[2],
                ratios.join(" / "),
                spread
            );
        }
    }
}
