//! etcd: `holdfast run --backend etcd://` and the `holdfast_etcd` library
//! beside `etcdctl lock` (etcd's own Go client and lock recipe), on one
//! throwaway etcd started here (`holdfast_testkit::Etcd`, data in memory).
//!
//! - Handoff (processes): a holder process holds the lock and runs a
//!   command that waits on a FIFO (not on its stdin: `etcdctl lock` 3.4
//!   gives its command `/dev/null` as stdin, so `read` would return at
//!   once and the holder let go before the waiter queued); a waiter
//!   process is queued (its key is seen in etcd); the harness notes the
//!   time (after a pause for the waiter to finish parking, see [`SETTLE`])
//!   and writes a line into the FIFO; the waiter's command prints the
//!   time it started. The span
//!   covers the holder's command exiting, the release reaching etcd, the
//!   waiter's watch firing and its command starting: what a user of either
//!   tool waits. Both sides print the time with `date +%s%N`.
//! - Handoff (library): the same with two `EtcdLock`s in threads of this
//!   process, release → the waiter's `acquire` returning.
//! - Contended: 8 shell loops each running `etcdctl lock NAME true` or
//!   `holdfast run --backend URL NAME -- true` N times; and 8 threads
//!   looping acquire + release on the library.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast::{Mode, Wait};
use holdfast_testkit::Etcd;

use crate::proc::Env;
use crate::stats::{fmt_ns, percentile, ratio};

const NAME: &str = "bench";

/// How long a waiter whose queue key is visible gets to finish parking
/// (its watch set up) before the holder lets go. etcd serves a watch that
/// starts at an old revision from a loop that runs every 100 ms
/// (`etcdctl lock` 3.4 watches from the revision it read, holdfast from
/// the next one); without this pause the handoff would also measure
/// that, at random.
const SETTLE: Duration = Duration::from_millis(250);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How many keys etcd has under `prefix` (holders and waiters).
fn queued(etcd: &Etcd, prefix: &str) -> usize {
    // etcdctl 3.4 has no --count-only: count the keys it prints.
    etcd.etcdctl()
        .args(["get", "--prefix", "--keys-only", prefix])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .unwrap_or(0)
}

/// One process handoff: `cmd(script)` builds the command line of a tool
/// running `sh -c script` under the lock; keys of the lock live under
/// `prefix`.
fn process_handoff(
    etcd: &Etcd,
    prefix: &str,
    rounds: usize,
    dir: &Path,
    cmd: &dyn Fn(&str) -> Command,
) -> Vec<f64> {
    let fifo = dir.join("etcd-handoff.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo {}", fifo.display());
    let hold = format!("echo locked; read x < '{}'", fifo.display());
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut holder = cmd(&hold)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the holder");
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("locked") => break,
                Some(Ok(_)) => continue,
                _ => panic!("the holder did not take the lock"),
            }
        }
        let mut waiter = cmd("date +%s%N")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the waiter");
        let deadline = Instant::now() + Duration::from_secs(30);
        while queued(etcd, prefix) < 2 {
            if Instant::now() >= deadline {
                panic!(
                    "the waiter never queued under {prefix} (waiter: {:?}; holder: {:?})",
                    waiter.try_wait(),
                    holder.try_wait()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Its key is there; let it finish parking (set up its watch):
        // the span measured is the handoff, not the waiter's start-up.
        std::thread::sleep(SETTLE);
        let t0 = now_ns();
        // The holder's `read` has the FIFO open (or is opening it): this
        // open returns as soon as it has, and the line lets it go.
        let mut go = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the holder's FIFO");
        let _ = writeln!(go, "go");
        drop(go);
        let got = waiter.wait_with_output().expect("the waiter");
        let _ = holder.wait();
        let t1: u64 = String::from_utf8_lossy(&got.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .expect("the waiter's time");
        out.push(t1.saturating_sub(t0) as f64);
    }
    out
}

/// Library handoff in threads: release → the waiter's acquisition returns.
fn library_handoff(url: &str, rounds: usize) -> Vec<f64> {
    let a = holdfast_etcd::Client::connect(url).expect("connect");
    let b = holdfast_etcd::Client::connect(url).expect("connect");
    let la = a.lock(NAME).unwrap();
    let lb = b.lock(NAME).unwrap();
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let held = la.lock().unwrap();
        let t0 = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let waiter = {
            let (lb, t0) = (lb.clone(), t0.clone());
            std::thread::spawn(move || {
                let g = lb.acquire(Mode::Exclusive, Wait::Forever).unwrap();
                let got = start.elapsed().as_nanos() as u64;
                (g, got.saturating_sub(t0.load(Ordering::Acquire)))
            })
        };
        while a.status(NAME).map(|v| v.waiting()).unwrap_or(0) < 1 {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(SETTLE);
        t0.store(start.elapsed().as_nanos() as u64, Ordering::Release);
        held.release().unwrap();
        let (g, ns) = waiter.join().unwrap();
        g.release().unwrap();
        out.push(ns as f64);
    }
    out
}

/// Invocations per second of 8 shell loops each running `argv` `n` times.
fn per_invocation(n: usize, argv: &[String]) -> f64 {
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do {} >/dev/null 2>&1 || exit 1; i=$((i+1)); done",
        quoted.join(" ")
    );
    let t = Instant::now();
    let kids: Vec<_> = (0..8)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .env("ETCDCTL_API", "3")
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ok = true;
    for mut k in kids {
        ok &= k.wait().is_ok_and(|s| s.success());
    }
    if !ok {
        eprintln!("{argv:?} failed; no figure for it");
        return f64::NAN;
    }
    (8 * n) as f64 / t.elapsed().as_secs_f64()
}

/// Acquisitions per second of 8 library clients looping for `secs`.
fn library_contended(url: &str, secs: f64) -> f64 {
    const P: usize = 8;
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let barrier = Barrier::new(P + 1);
    let elapsed = std::thread::scope(|s| {
        for _ in 0..P {
            let lock = holdfast_etcd::Client::connect(url)
                .unwrap()
                .lock(NAME)
                .unwrap();
            let (stop, count, barrier) = (&stop, &count, &barrier);
            s.spawn(move || {
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    lock.lock().unwrap().release().unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        barrier.wait();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        t
    })
    .elapsed();
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

pub fn run(env: &Env, dir: &Path) {
    println!("\n## etcd: handoff and contention beside etcdctl lock\n");
    let Some(etcd) = Etcd::start() else {
        println!("(skipped: etcd/etcdctl not installed)");
        return;
    };
    let url = etcd.url();
    let endpoints = etcd.endpoints().join(",");
    let holdfast_bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("holdfast");
    if !holdfast_bin.is_file() {
        println!("(skipped: no holdfast binary beside holdfast-bench)");
        return;
    }
    let rounds = if env.quick { 20 } else { 100 };
    let invocations = if env.quick { 10 } else { 40 };
    let secs = if env.quick { 1.0 } else { 3.0 };

    let etcdctl = |script: &str| {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["lock", "etcdctl-bench", "--", "sh", "-c", script]);
        c
    };
    let hf = |script: &str| {
        let mut c = Command::new(&holdfast_bin);
        c.args(["run", "--backend", &url, NAME, "--", "sh", "-c", script]);
        c
    };
    let anchor = process_handoff(&etcd, "etcdctl-bench/", rounds, dir, &etcdctl);
    let cli = process_handoff(&etcd, &format!("holdfast/lock/{NAME}/"), rounds, dir, &hf);
    let lib = library_handoff(&url, rounds);
    println!("### Handoff latency\n");
    println!("| implementation | rounds | p50 | p99 | p50 vs etcdctl lock |");
    println!("|---|---|---|---|---|");
    let mut a = anchor.clone();
    let anchor_p50 = percentile(&mut a, 50.0);
    for (label, v) in [
        ("etcdctl lock NAME sh -c … (anchor; processes)", anchor),
        (
            "holdfast run --backend etcd://… NAME -- sh -c … (processes)",
            cli,
        ),
        (
            "holdfast_etcd::EtcdLock, two clients in threads (release → acquire returns)",
            lib,
        ),
    ] {
        let mut v = v;
        let p50 = percentile(&mut v, 50.0);
        let p99 = percentile(&mut v, 99.0);
        println!(
            "| {label} | {} | {} | {} | {} |",
            v.len(),
            fmt_ns(p50),
            fmt_ns(p99),
            ratio(p50, anchor_p50)
        );
    }

    let ctl_rate = per_invocation(
        invocations,
        &[
            "etcdctl".into(),
            format!("--endpoints={endpoints}"),
            "lock".into(),
            "etcdctl-bench".into(),
            "true".into(),
        ],
    );
    let cli_rate = per_invocation(
        invocations,
        &[
            holdfast_bin.display().to_string(),
            "run".into(),
            "--backend".into(),
            url.clone(),
            NAME.into(),
            "--".into(),
            "true".into(),
        ],
    );
    let lib_rate = library_contended(&url, secs);
    println!("\n### Contended: 8 at once on one lock\n");
    println!("| implementation | acquisitions/s | vs etcdctl lock |");
    println!("|---|---|---|");
    println!(
        "| etcdctl lock NAME true, 8 shell loops × {invocations} (anchor) | {ctl_rate:.0}/s | 1.00× |"
    );
    println!(
        "| holdfast run --backend etcd://… NAME -- true, 8 shell loops × {invocations} | {cli_rate:.0}/s | {} |",
        ratio(cli_rate, ctl_rate)
    );
    println!(
        "| holdfast_etcd::EtcdLock lock + release, 8 threads × own client, {secs} s | {lib_rate:.0}/s | {} |",
        ratio(lib_rate, ctl_rate)
    );
}
