//! `holdfast-bench`: the multi-process benchmark harness.
//!
//! Every scenario runs holdfast beside its anchors (raw system calls,
//! util-linux tools, the Python libraries from a venv) in the same run and
//! prints Markdown tables with ratios. `bench/run` builds it in release mode,
//! creates the Python venv and runs everything; see BENCHMARKS.md.
//!
//! Usage: `holdfast-bench [--quick] [--python PATH] [SCENARIO...]`, where
//! SCENARIO is `lock`, `lockfile`, `phases`, `cli`, `fifo`, `postgres` or `etcd` (default:
//! all); `lockfile-uncontended` runs only the first table of `lockfile`,
//! `lock-handoff` only the handoff table of `lock`; `lock-handoff-ab` its
//! kernel-waiting rows and the timed wait on its waiter task, interleaved
//! round by round; `fifo-handoff-ab` the FIFO handoff rows (raw flock,
//! `Lock`, `FifoLock`), interleaved round by round.
//! `holdfast-bench worker ...` (and `lockfile-worker`, `phase-worker`,
//! `fifo-worker`) is the worker side, started by the harness itself.

mod cli;
mod etcd;
mod fifo;
mod lock;
mod lockfile;
mod phases;
mod postgres;
mod proc;
mod stats;
mod workers;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        workers::main(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("lockfile-worker") {
        lockfile::worker(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("fifo-worker") {
        fifo::worker(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("phase-worker") {
        phases::worker(&args[1..]);
        return;
    }
    let mut env = proc::Env {
        python: std::env::var_os("HOLDFAST_BENCH_PYTHON").map(PathBuf::from),
        quick: false,
    };
    let mut scenarios = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => env.quick = true,
            "--python" => env.python = it.next().map(PathBuf::from),
            s => scenarios.push(s.to_owned()),
        }
    }
    if scenarios.is_empty() {
        scenarios = vec![
            "lock".into(),
            "lockfile".into(),
            "phases".into(),
            "cli".into(),
            "fifo".into(),
            "postgres".into(),
            "etcd".into(),
        ];
    }
    let dir = tempfile_dir();
    println!("# holdfast-bench results\n");
    println!(
        "Machine: {} cores, kernel {}; python: {}; mode: {}.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        rustix::system::uname().release().to_string_lossy(),
        env.python
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none (Python peers skipped)".into()),
        if env.quick { "quick" } else { "full" }
    );
    for s in &scenarios {
        match s.as_str() {
            "lock" => lock::run(&env, &dir),
            "lock-handoff" => lock::run_handoff(&env, &dir),
            "lock-handoff-ab" => lock::run_handoff_interleaved(&env, &dir),
            "lockfile" => lockfile::run(&env, &dir),
            "lockfile-uncontended" => lockfile::run_uncontended(&env, &dir),
            "phases" => phases::run(&env, &dir),
            "cli" => cli::run(&env, &dir),
            "fifo" => fifo::run(&env, &dir),
            "fifo-handoff-ab" => fifo::run_handoff_interleaved(&env, &dir),
            "postgres" => postgres::run(&env, &dir),
            "etcd" => etcd::run(&env, &dir),
            other => {
                eprintln!("unknown scenario {other}");
                std::process::exit(2);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}
