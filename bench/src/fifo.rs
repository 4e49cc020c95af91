//! Fair queueing: `holdfast::FifoLock` beside raw flock(2), the plain
//! `holdfast::Lock` and stouputils' `LockFifo`, in one run.
//!
//! - **Fairness**: 8 processes lock and unlock in a loop; each counts its
//!   acquisitions during the first half of the run (before anyone stops,
//!   so the tail of early finishers does not skew it); max/min of those.
//! - **Throughput**: acquisitions per second over the whole run, all
//!   processes together, against the plain holdfast `Lock`.
//! - **Handoff**: the harness holds the lock, waits until the worker is
//!   blocked in the kernel (a FIFO waiter behind a holder: on the lock
//!   file, as the next in line; the queue file is watched too), stamps
//!   CLOCK_MONOTONIC and releases; the worker stamps when its acquisition
//!   returns. A polling worker is released at a random point of its cycle.
//!
//! Worker side: `holdfast-bench fifo-worker IMPL loop|handoff LOCK ARG`
//! with IMPL `flock`, `holdfast` or `fifo` (and the Python peer
//! `bench/peers/stouputils_worker.py lockfifo ...`).

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast::{FifoLock, Lock};
use rustix::fs::FlockOperation;

use crate::proc::{Env, Worker, peers_dir};
use crate::stats::{fmt_ns, now_ns, percentile, ratio};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Flock,
    Holdfast,
    Fifo,
    LockFifo,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Flock => "raw flock(2) (anchor)",
            Subject::Holdfast => "holdfast Lock",
            Subject::Fifo => "holdfast FifoLock",
            Subject::LockFifo => "stouputils LockFifo (Python)",
        }
    }
    fn command(self, env: &Env, args: &[&str]) -> Option<Command> {
        let imp = match self {
            Subject::Flock => "flock",
            Subject::Holdfast => "holdfast",
            Subject::Fifo => "fifo",
            Subject::LockFifo => {
                let mut c = Command::new(env.python.as_ref()?);
                c.arg(peers_dir().join("stouputils_worker.py"))
                    .arg("lockfifo")
                    .args(args);
                return Some(c);
            }
        };
        let mut c = Command::new(std::env::current_exe().expect("current exe"));
        c.arg("fifo-worker").arg(imp).args(args);
        Some(c)
    }
}

const ALL: [Subject; 4] = [
    Subject::Flock,
    Subject::Holdfast,
    Subject::Fifo,
    Subject::LockFifo,
];

/// (acquisitions per second, per-process counts over the whole run, per-
/// process counts over the first half).
fn contended(
    s: Subject,
    env: &Env,
    lock: &Path,
    procs: usize,
    millis: u64,
    work_us: u64,
) -> Option<(f64, Vec<u64>, Vec<u64>)> {
    let ms = format!("{millis}:{work_us}");
    let mut ws = Vec::new();
    for _ in 0..procs {
        ws.push(Worker::spawn_command(
            s.command(env, &["loop", lock.to_str().unwrap(), &ms])?,
        ));
    }
    for w in &mut ws {
        assert_eq!(w.recv(), "ready");
    }
    for w in &mut ws {
        w.send("go");
    }
    let mut counts = Vec::new();
    let mut halves = Vec::new();
    for w in &mut ws {
        let line = w.recv();
        let mut f = line.split_whitespace();
        assert_eq!(f.next(), Some("count"), "{line}");
        counts.push(f.next().unwrap().parse().unwrap());
        assert_eq!(f.next(), Some("half"), "{line}");
        halves.push(f.next().unwrap().parse().unwrap());
    }
    for w in ws {
        w.finish();
    }
    let total: u64 = counts.iter().sum();
    Some((total as f64 / (millis as f64 / 1000.0), counts, halves))
}

/// One handoff subject's worker and the harness's side of its lock.
struct Rig {
    s: Subject,
    w: Worker,
    t0file: File,
    raw: File,
    /// The /proc/locks keys of the files the worker may block on, found
    /// once: a `stat` per round would make the worker's next write to the
    /// lock file (its holder record) update the timestamps at full
    /// precision (multigrain timestamps), a cost no real holder pays.
    keys: Vec<String>,
    fifo: Option<FifoLock>,
    rng: u64,
}

impl Rig {
    fn new(s: Subject, env: &Env, lock: &Path) -> Option<Rig> {
        let t0path = lock.with_extension("t0");
        let t0file = File::create(&t0path).unwrap();
        t0file.write_all_at(&0u64.to_le_bytes(), 0).unwrap();
        let mut cmd = s.command(
            env,
            &["handoff", lock.to_str().unwrap(), t0path.to_str().unwrap()],
        )?;
        // HOLDFAST_BENCH_WORKER_CPU=N: the worker on CPU N (with the
        // harness under `taskset -c M`, every handoff crosses CPUs alike).
        if let Some(cpu) = std::env::var_os("HOLDFAST_BENCH_WORKER_CPU") {
            let mut pinned = Command::new("taskset");
            pinned.arg("-c").arg(cpu).arg(cmd.get_program());
            pinned.args(cmd.get_args());
            cmd = pinned;
        }
        let w = Worker::spawn_command(cmd);
        let raw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock)
            .unwrap();
        let fifo = (s == Subject::Fifo).then(|| FifoLock::open(lock).unwrap());
        // A FIFO waiter behind a holder waits on the lock file itself (it
        // is next in line); the queue file counts too.
        let queue = fifo.as_ref().map(|f| f.queue_path().to_owned());
        let keys = [Some(lock), queue.as_deref()]
            .into_iter()
            .flatten()
            .map(lock_key)
            .collect();
        Some(Rig {
            s,
            w,
            t0file,
            raw,
            keys,
            fifo,
            rng: 0x9e3779b97f4a7c15,
        })
    }

    /// One handoff: hold, let the worker block, stamp, release; its latency.
    fn round(&mut self) -> f64 {
        // A FIFO waiter queues behind a FIFO holder; the others block on
        // (or poll) the raw flock.
        let guard = self.fifo.as_ref().map(|f| f.lock().unwrap());
        if guard.is_none() {
            rustix::fs::flock(&self.raw, FlockOperation::LockExclusive).unwrap();
        }
        self.w.send("go");
        assert_eq!(self.w.recv(), "trying");
        if self.s == Subject::LockFifo {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            std::thread::sleep(Duration::from_micros(self.rng % 100_000));
        } else {
            wait_until_blocked(&self.keys);
        }
        self.t0file
            .write_all_at(&now_ns().to_le_bytes(), 0)
            .unwrap();
        match guard {
            Some(g) => drop(g),
            None => rustix::fs::flock(&self.raw, FlockOperation::Unlock).unwrap(),
        }
        self.w.recv_value("lat ") as f64
    }
}

fn handoff(s: Subject, env: &Env, lock: &Path, rounds: usize) -> Option<Vec<f64>> {
    let mut rig = Rig::new(s, env, lock)?;
    let lats = (0..rounds).map(|_| rig.round()).collect();
    rig.w.finish();
    Some(lats)
}

/// `holdfast-bench fifo-handoff-ab`: the handoff rows of raw flock, the
/// plain holdfast Lock and FifoLock, one round of each in turn, so that
/// load from elsewhere falls on every row alike (with
/// `HOLDFAST_BENCH_WORKER_CPU=1` and the harness under `taskset -c 0`,
/// every handoff crosses CPUs alike).
pub fn run_handoff_interleaved(env: &Env, dir: &Path) {
    let rounds = if env.quick { 1000 } else { 5000 };
    let mut rigs: Vec<Rig> = [Subject::Flock, Subject::Holdfast, Subject::Fifo]
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| Rig::new(s, env, &dir.join(format!("fifo-handoff-ab-{i}.lock"))))
        .collect();
    let mut lats = vec![Vec::with_capacity(rounds); rigs.len()];
    for _ in 0..rounds {
        for (rig, l) in rigs.iter_mut().zip(&mut lats) {
            l.push(rig.round());
        }
    }
    println!("\n## Fair queueing: handoff latency, interleaved\n");
    println!("As the handoff table, but one round of each row in turn, {rounds} rounds each.\n");
    println!("| implementation | rounds | p50 | p90 | p99 | p50 vs raw flock |");
    println!("|---|---|---|---|---|---|");
    let mut anchor = f64::NAN;
    for (rig, l) in rigs.iter().zip(&mut lats) {
        let (p50, p90, p99) = (
            percentile(l, 50.0),
            percentile(l, 90.0),
            percentile(l, 99.0),
        );
        if rig.s == Subject::Flock {
            anchor = p50;
        }
        println!(
            "| {} | {rounds} | {} | {} | {} | {} |",
            rig.s.label(),
            fmt_ns(p50),
            fmt_ns(p90),
            fmt_ns(p99),
            ratio(p50, anchor)
        );
    }
    for rig in rigs {
        rig.w.finish();
    }
}

/// How /proc/locks names a file (`major:minor:inode`).
fn lock_key(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(m.dev()),
        rustix::fs::minor(m.dev()),
        m.ino()
    )
}

/// Spins on /proc/locks until a request waits on one of the files named
/// by `want` ([`lock_key`]; bounded).
fn wait_until_blocked(want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|f| want.iter().any(|w| f == w)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiter never blocked on {want:?}"
        );
        std::hint::spin_loop();
    }
}

/// Runs the fair-queueing scenarios and prints Markdown tables.
pub fn run(env: &Env, dir: &Path) {
    let millis = if env.quick { 600 } else { 3000 };
    let procs = 8;
    // The handoffs first: a fair lock hands over on every release, so its
    // throughput is bounded by one wake-up per acquisition, 1 / (raw flock
    // handoff p50), which the throughput tables report against.
    let mut handoffs = Vec::new();
    for (i, s) in ALL.iter().enumerate() {
        let rounds = match (*s == Subject::LockFifo, env.quick) {
            (false, false) => 3000,
            (false, true) => 500,
            (true, false) => 100,
            (true, true) => 20,
        };
        let lock = dir.join(format!("fifo-handoff-{i}.lock"));
        let Some(mut lats) = handoff(*s, env, &lock, rounds) else {
            continue;
        };
        let p50 = percentile(&mut lats, 50.0);
        let p99 = percentile(&mut lats, 99.0);
        handoffs.push((*s, rounds, p50, p99));
    }
    let raw_p50 = handoffs
        .iter()
        .find(|h| h.0 == Subject::Flock)
        .map_or(f64::NAN, |h| h.2);
    let bound = 1e9 / raw_p50;
    println!("\n## Fair queueing: 8 processes, fairness and throughput\n");
    println!(
        "{procs} processes lock and unlock one exclusive lock in a loop for {millis} ms. Fairness = max/min acquisitions per process during the first half of the run; throughput = all acquisitions per second, against the plain holdfast Lock and against one handoff per acquisition: 1 / (raw flock handoff p50 of this run) = 1 / {} = {bound:.0}/s.\n",
        fmt_ns(raw_p50)
    );
    println!(
        "| implementation | acquisitions/s | vs holdfast Lock | vs 1/(raw flock handoff p50) | fairness max/min (first half) | per process, first half |"
    );
    println!("|---|---|---|---|---|---|");
    let mut plain = f64::NAN;
    for (i, s) in ALL.iter().enumerate() {
        let lock = dir.join(format!("fifo-contended-{i}.lock"));
        let Some((rate, _, halves)) = contended(*s, env, &lock, procs, millis, 0) else {
            continue;
        };
        if *s == Subject::Holdfast {
            plain = rate;
        }
        let (mn, mx) = (*halves.iter().min().unwrap(), *halves.iter().max().unwrap());
        let fairness = if mn == 0 {
            "∞ (one process starved)".to_owned()
        } else {
            format!("{:.2}×", mx as f64 / mn as f64)
        };
        let list = halves
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {} | {rate:.0}/s | {} | {} | {fairness} | {list} |",
            s.label(),
            ratio(rate, plain),
            ratio(rate, bound)
        );
    }

    println!("\n## Fair queueing: throughput when the lock guards some work\n");
    println!(
        "As above, but each holder spins for 20 µs of CPU work while it holds the lock (no work outside). Python LockFifo is left out (it polls every 50 ms).\n"
    );
    println!(
        "| implementation | acquisitions/s | vs holdfast Lock | vs 1/(raw flock handoff p50 + 20 µs) | fairness max/min (first half) |"
    );
    println!("|---|---|---|---|---|");
    let bound_work = 1e9 / (raw_p50 + 20_000.0);
    let mut plain = f64::NAN;
    for (i, s) in ALL
        .iter()
        .enumerate()
        .filter(|(_, s)| **s != Subject::LockFifo)
    {
        let lock = dir.join(format!("fifo-work-{i}.lock"));
        let Some((rate, _, halves)) = contended(*s, env, &lock, procs, millis, 20) else {
            continue;
        };
        if *s == Subject::Holdfast {
            plain = rate;
        }
        let (mn, mx) = (*halves.iter().min().unwrap(), *halves.iter().max().unwrap());
        println!(
            "| {} | {rate:.0}/s | {} | {} | {} |",
            s.label(),
            ratio(rate, plain),
            ratio(rate, bound_work),
            if mn == 0 {
                "∞".to_owned()
            } else {
                format!("{:.2}×", mx as f64 / mn as f64)
            }
        );
    }

    println!("\n## Fair queueing: handoff latency\n");
    println!(
        "The harness holds the lock (a FifoLock holder for the FIFO waiter, raw flock(2) otherwise), waits until the worker is blocked in the kernel (/proc/locks; the FIFO waiter, next in line, waits on the lock file itself), stamps CLOCK_MONOTONIC and releases; the worker stamps the clock when its acquisition returns. stouputils polls every 50 ms, so it is released at a random point of two poll cycles.\n"
    );
    println!("| implementation | rounds | p50 | p99 | p50 vs raw flock |");
    println!("|---|---|---|---|---|");
    for (s, rounds, p50, p99) in handoffs {
        println!(
            "| {} | {rounds} | {} | {} | {} |",
            s.label(),
            fmt_ns(p50),
            fmt_ns(p99),
            ratio(p50, raw_p50)
        );
    }
}

enum Imp {
    Flock(File),
    Holdfast(Lock),
    Fifo(FifoLock),
}

impl Imp {
    fn with_lock(&self, f: impl FnOnce()) {
        match self {
            Imp::Flock(file) => {
                rustix::fs::flock(file, FlockOperation::LockExclusive).expect("flock");
                f();
                rustix::fs::flock(file, FlockOperation::Unlock).expect("unlock");
            }
            Imp::Holdfast(l) => {
                let g = l.lock().expect("lock");
                f();
                drop(g);
            }
            Imp::Fifo(l) => {
                let g = l.lock().expect("lock");
                f();
                drop(g);
            }
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `holdfast-bench fifo-worker IMPL loop|handoff LOCK ARG`.
pub fn worker(args: &[String]) {
    let [imp, role, path, arg] = args else {
        eprintln!("usage: holdfast-bench fifo-worker IMPL loop|handoff LOCK ARG");
        std::process::exit(2);
    };
    let imp = match imp.as_str() {
        "flock" => Imp::Flock(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .expect("open"),
        ),
        "holdfast" => Imp::Holdfast(Lock::open(path).expect("open")),
        "fifo" => Imp::Fifo(FifoLock::open(path).expect("open")),
        other => panic!("unknown implementation {other}"),
    };
    let stdin = std::io::stdin();
    match role.as_str() {
        "loop" => {
            let (ms, work) = arg.split_once(':').unwrap_or((arg, "0"));
            let dur = Duration::from_millis(ms.parse().expect("millis"));
            let work = Duration::from_micros(work.parse().expect("work µs"));
            say("ready");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).expect("go");
            let start = Instant::now();
            let (half, end) = (start + dur / 2, start + dur);
            let (mut n, mut at_half) = (0u64, None);
            loop {
                let now = Instant::now();
                if at_half.is_none() && now >= half {
                    at_half = Some(n);
                }
                if now >= end {
                    break;
                }
                imp.with_lock(|| {
                    if !work.is_zero() {
                        let until = Instant::now() + work;
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                    }
                });
                n += 1;
            }
            say(&format!("count {n} half {}", at_half.unwrap_or(n)));
        }
        "handoff" => {
            let t0file = File::open(arg).expect("t0 file");
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
                say("trying");
                imp.with_lock(|| {
                    let t1 = now_ns();
                    let mut buf = [0u8; 8];
                    t0file.read_exact_at(&mut buf, 0).expect("read t0");
                    let t0 = u64::from_le_bytes(buf);
                    say(&format!("lat {}", t1.saturating_sub(t0)));
                });
            }
        }
        other => panic!("unknown role {other}"),
    }
}
