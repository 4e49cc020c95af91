//! Kernel-lock scenarios: contended throughput at P = 2, 4, 8 and handoff
//! latency (release → waiter running), for holdfast, raw flock(2) and
//! Python filelock, in one run.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::proc::{Env, Runner, Worker};
use crate::stats::{fmt_ns, now_ns, percentile, ratio};

/// One implementation under test.
pub struct Subject {
    /// Row label.
    pub label: &'static str,
    /// How to run it.
    pub runner: Runner,
    /// Whether its waiter blocks in the kernel (visible in /proc/locks);
    /// pollers are released at a random point of their poll cycle instead.
    pub kernel_wait: bool,
}

fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            label: "raw flock(2) (anchor)",
            runner: Runner::Rust("flock"),
            kernel_wait: true,
        },
        Subject {
            label: "holdfast Lock",
            runner: Runner::Rust("holdfast"),
            kernel_wait: true,
        },
        Subject {
            label: "holdfast Lock, no record",
            runner: Runner::Rust("holdfast-norecord"),
            kernel_wait: true,
        },
        Subject {
            label: "holdfast lock_timeout",
            runner: Runner::Rust("holdfast-timeout"),
            kernel_wait: true,
        },
        Subject {
            label: "Python filelock.FileLock",
            runner: Runner::Python {
                script: "filelock_worker.py",
                imp: "filelock",
            },
            kernel_wait: false,
        },
    ]
}

/// Contended throughput of `subject` with `procs` processes for `millis`:
/// (total acquisitions per second, per-process counts).
pub fn contended(
    subject: &Subject,
    env: &Env,
    lock: &Path,
    procs: usize,
    millis: u64,
) -> (f64, Vec<u64>) {
    let ms = millis.to_string();
    let mut ws: Vec<Worker> = (0..procs)
        .map(|_| Worker::spawn(&subject.runner, env, &["loop", lock.to_str().unwrap(), &ms]))
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

/// Handoff latencies in ns: the harness holds the lock (raw flock), lets
/// the worker block on it, stamps the clock and releases; the worker
/// stamps the clock when its acquisition returns.
pub fn handoff(subject: &Subject, env: &Env, lock: &Path, rounds: usize) -> Vec<f64> {
    let mut rig = Rig::new(subject, subject.runner.command(env, &[]), lock);
    let lats = (0..rounds).map(|_| rig.round()).collect();
    rig.worker.finish();
    lats
}

/// One handoff worker and the harness's side of its lock.
struct Rig {
    holder: File,
    t0file: File,
    worker: Worker,
    lock: std::path::PathBuf,
    kernel_wait: bool,
    rng: u64,
}

impl Rig {
    /// `cmd`: the worker's command without its handoff arguments.
    fn new(subject: &Subject, mut cmd: std::process::Command, lock: &Path) -> Rig {
        let t0path = lock.with_extension("t0");
        let t0file = File::create(&t0path).unwrap();
        t0file.write_all_at(&0u64.to_le_bytes(), 0).unwrap();
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock)
            .unwrap();
        cmd.args(["handoff", lock.to_str().unwrap(), t0path.to_str().unwrap()]);
        Rig {
            holder,
            t0file,
            worker: Worker::spawn_command(cmd),
            lock: lock.to_path_buf(),
            kernel_wait: subject.kernel_wait,
            rng: 0x9e3779b97f4a7c15u64,
        }
    }

    /// One handoff, in ns.
    fn round(&mut self) -> f64 {
        let w = &mut self.worker;
        rustix::fs::flock(&self.holder, FlockOperation::LockExclusive).unwrap();
        w.send("go");
        assert_eq!(w.recv(), "trying");
        if self.kernel_wait {
            wait_until_blocked(&self.lock);
        } else {
            // A poller: release at a uniformly random point of two poll
            // intervals (filelock polls every 50 ms).
            let rng = &mut self.rng;
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            std::thread::sleep(Duration::from_micros(*rng % 100_000));
        }
        self.t0file
            .write_all_at(&now_ns().to_le_bytes(), 0)
            .unwrap();
        rustix::fs::flock(&self.holder, FlockOperation::Unlock).unwrap();
        w.recv_value("lat ") as f64
    }
}

/// `holdfast-bench lock-handoff-ab`: the kernel-waiting rows of the
/// handoff table plus the timed wait forced onto its waiter task
/// (`HOLDFAST_WAITER=task`, the design before the timer signal), measured
/// round by round in turn (A, B, C, ..., A, B, C, ...), so that load from
/// elsewhere falls on every row alike. `HOLDFAST_BENCH_WORKER_CPU=1` with
/// the harness under `taskset -c 0` makes every handoff cross CPUs.
pub fn run_handoff_interleaved(env: &Env, dir: &Path) {
    let mut subjects: Vec<(Subject, Option<(&str, &str)>)> = subjects()
        .into_iter()
        .filter(|s| s.kernel_wait && s.runner.available(env))
        .map(|s| (s, None))
        .collect();
    subjects.push((
        Subject {
            label: "holdfast lock_timeout, waiter task (HOLDFAST_WAITER=task)",
            runner: Runner::Rust("holdfast-timeout"),
            kernel_wait: true,
        },
        Some(("HOLDFAST_WAITER", "task")),
    ));
    let rounds = if env.quick { 500 } else { 3000 };
    let mut rigs: Vec<Rig> = subjects
        .iter()
        .enumerate()
        .map(|(i, (s, var))| {
            let mut cmd = s.runner.command(env, &[]);
            // HOLDFAST_BENCH_WORKER_CPU=N: every worker on CPU N (with the
            // harness under `taskset -c M`, every handoff crosses CPUs).
            if let Some(cpu) = std::env::var_os("HOLDFAST_BENCH_WORKER_CPU") {
                let mut pinned = std::process::Command::new("taskset");
                pinned.arg("-c").arg(cpu).arg(cmd.get_program());
                pinned.args(cmd.get_args());
                cmd = pinned;
            }
            if let Some((k, v)) = var {
                cmd.env(k, v);
            }
            Rig::new(s, cmd, &dir.join(format!("handoff-ab-{i}.lock")))
        })
        .collect();
    let mut lats = vec![Vec::with_capacity(rounds); rigs.len()];
    for _ in 0..rounds {
        for (rig, l) in rigs.iter_mut().zip(&mut lats) {
            l.push(rig.round());
        }
    }
    for rig in rigs {
        rig.worker.finish();
    }
    println!("\n## Kernel locks: handoff latency, interleaved\n");
    println!("As the handoff table, but one round of each row in turn, {rounds} rounds each.\n");
    let mut table = HandoffTable::start();
    for ((s, _), l) in subjects.iter().zip(&mut lats) {
        table.row(s.label, rounds, l);
    }
}

/// The rows of a handoff table: p50 and p99, the p50 against the first
/// row's (the anchor) and against the untimed `holdfast Lock` row's.
struct HandoffTable {
    anchor_p50: Option<f64>,
    untimed_p50: f64,
}

impl HandoffTable {
    /// Prints the header.
    fn start() -> HandoffTable {
        println!(
            "| implementation | rounds | p50 | p99 | p50 vs raw flock | p50 vs holdfast Lock |"
        );
        println!("|---|---|---|---|---|---|");
        HandoffTable {
            anchor_p50: None,
            untimed_p50: f64::NAN,
        }
    }

    /// Prints the row of `label` (the first row is the anchor).
    fn row(&mut self, label: &str, rounds: usize, lats: &mut [f64]) {
        let p50 = percentile(lats, 50.0);
        let p99 = percentile(lats, 99.0);
        let anchor_p50 = *self.anchor_p50.get_or_insert(p50);
        if label == "holdfast Lock" {
            self.untimed_p50 = p50;
        }
        println!(
            "| {label} | {rounds} | {} | {} | {} | {} |",
            fmt_ns(p50),
            fmt_ns(p99),
            ratio(p50, anchor_p50),
            ratio(p50, self.untimed_p50)
        );
    }
}

/// Spins on /proc/locks until some process waits for `lock` (bounded).
fn wait_until_blocked(lock: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(lock).unwrap();
    let want = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(m.dev()),
        rustix::fs::minor(m.dev()),
        m.ino()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|f| f == want))
        {
            return;
        }
        assert!(Instant::now() < deadline, "waiter never blocked on {want}");
        std::hint::spin_loop();
    }
}

/// Runs every kernel-lock scenario and prints Markdown tables.
pub fn run(env: &Env, dir: &Path) {
    let subjects: Vec<Subject> = subjects()
        .into_iter()
        .filter(|s| s.runner.available(env))
        .collect();
    let millis = if env.quick { 300 } else { 1500 };
    let procs = [2usize, 4, 8];

    println!("\n## Kernel locks: contended throughput\n");
    println!(
        "{} processes each lock and unlock one exclusive lock in a loop for {millis} ms. Acquisitions per second, all processes together; ratio against raw flock(2) at the same P; min/max = fewest/most acquisitions by one process.\n",
        procs
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| implementation | P=2 | P=4 | P=8 | ratio vs raw flock (P=2 / 4 / 8) | min/max per process at P=8 |"
    );
    println!("|---|---|---|---|---|---|");
    let mut anchor = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let mut cells = Vec::new();
        let mut ratios = Vec::new();
        let mut spread = String::new();
        for (j, &p) in procs.iter().enumerate() {
            let lock = dir.join(format!("contended-{i}-{p}.lock"));
            let (rate, counts) = contended(s, env, &lock, p, millis);
            if i == 0 {
                anchor.push(rate);
            }
            cells.push(format!("{rate:.0}/s"));
            ratios.push(ratio(rate, anchor[j]));
            if p == 8 {
                let (mn, mx) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                spread = format!("{mn} / {mx}");
            }
        }
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.label,
            cells[0],
            cells[1],
            cells[2],
            ratios.join(" / "),
            spread
        );
    }

    run_handoff(env, dir);
}

/// The handoff table alone (`holdfast-bench lock-handoff`): the timed
/// wait's p50 also beside the untimed `Lock`'s (issue 11: ≤ 1.3×).
pub fn run_handoff(env: &Env, dir: &Path) {
    let subjects: Vec<Subject> = subjects()
        .into_iter()
        .filter(|s| s.runner.available(env))
        .collect();
    println!("\n## Kernel locks: handoff latency\n");
    println!(
        "The harness holds the lock with raw flock(2), waits until the worker is blocked on it (seen in /proc/locks; a polling worker is released at a random point of its poll cycle), stamps CLOCK_MONOTONIC and unlocks; the worker stamps the clock when its acquisition returns.\n"
    );
    let mut table = HandoffTable::start();
    for (i, s) in subjects.iter().enumerate() {
        let rounds = match (s.kernel_wait, env.quick) {
            (true, false) => 3000,
            (true, true) => 500,
            (false, false) => 100,
            (false, true) => 20,
        };
        let lock = dir.join(format!("handoff-{i}.lock"));
        let mut lats = handoff(s, env, &lock, rounds);
        table.row(s.label, rounds, &mut lats);
    }
}
