//! PostgreSQL: `holdfast_postgres::PgLock` and `holdfast run --backend
//! postgres://` beside raw `pg_advisory_lock` (a bare client loop on one
//! session, and `psql` per iteration), on one throwaway server started
//! here (`holdfast_testkit::postgres`).
//!
//! - Handoff: a holder releases while a waiter is blocked in the server;
//!   time from just before the release to the waiter's acquisition
//!   returning. Both sides are threads of this process with their own
//!   sessions (to the server they are as separate as processes).
//! - Contended: 8 clients loop acquire + release on one name for a fixed
//!   time. The library opens a session per acquisition (the lock *is* the
//!   session); the raw loop keeps one session per client.
//! - Per invocation: `holdfast run --backend URL NAME -- true` vs `psql -c
//!   'select pg_advisory_lock(K); select pg_advisory_unlock(K)'`, 8 shell
//!   loops at once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use holdfast::{Mode, Wait};
use holdfast_postgres::Postgres;
use holdfast_testkit::postgres::PgServer;

use crate::proc::Env;
use crate::stats::{fmt_ns, percentile, ratio};

const NAME: &str = "bench";

fn raw_client(url: &str) -> postgres::Client {
    postgres::Client::connect(
        &url.replace("postgres://", "postgresql://"),
        postgres::NoTls,
    )
    .expect("connect")
}

fn waiting(monitor: &mut postgres::Client, key: i64) -> bool {
    monitor
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::int8 << 32) | objid::int8) = $1",
            &[&key],
        )
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

/// Handoff latencies (ns): `hold` takes the lock on the holder side,
/// `release` drops it, `acquire` is the waiter's blocking acquisition.
fn handoff<H: Send + 'static>(
    url: &str,
    rounds: usize,
    hold: impl Fn() -> H + Send + Sync + 'static,
    release: impl Fn(H) + Send + Sync + 'static,
    acquire: impl Fn() -> H + Send + Sync + 'static,
) -> Vec<f64> {
    let key = holdfast_postgres::lock_key(NAME);
    let mut monitor = raw_client(url);
    let mut out = Vec::with_capacity(rounds);
    let acquire = Arc::new(acquire);
    for _ in 0..rounds {
        let held = hold();
        let t0 = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let waiter = {
            let acquire = acquire.clone();
            let t0 = t0.clone();
            std::thread::spawn(move || {
                let h = acquire();
                let got = start.elapsed().as_nanos() as u64;
                (h, got.saturating_sub(t0.load(Ordering::Acquire)))
            })
        };
        while !waiting(&mut monitor, key) {
            std::thread::sleep(Duration::from_micros(200));
        }
        t0.store(start.elapsed().as_nanos() as u64, Ordering::Release);
        release(held);
        let (h, ns) = waiter.join().unwrap();
        release(h);
        out.push(ns as f64);
    }
    out
}

/// Acquisitions per second of 8 clients looping for `secs`.
fn contended(secs: f64, make: impl Fn() -> Box<dyn FnMut() + Send> + Sync) -> f64 {
    const P: usize = 8;
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let barrier = Barrier::new(P + 1);
    let elapsed = std::thread::scope(|s| {
        for _ in 0..P {
            let mut op = make();
            let (stop, count, barrier) = (&stop, &count, &barrier);
            s.spawn(move || {
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    op();
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

/// Invocations per second of 8 shell loops each running `argv` `n` times.
fn per_invocation(n: usize, argv: &[String]) -> f64 {
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do {} >/dev/null || exit 1; i=$((i+1)); done",
        quoted.join(" ")
    );
    let t = Instant::now();
    let kids: Vec<_> = (0..8)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
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

pub fn run(env: &Env, _dir: &Path) {
    println!("\n## PostgreSQL: handoff and contention beside raw pg_advisory_lock\n");
    let Some(server) = PgServer::start() else {
        println!("(skipped: no PostgreSQL server binaries)");
        return;
    };
    server.psql("postgres", "CREATE DATABASE bench");
    let url = server.url("bench");
    let pg = Postgres::new(&url).expect("url");
    let key = holdfast_postgres::lock_key(NAME);
    // Create holdfast's tables before timing anything.
    drop(pg.lock(NAME).unwrap().lock().unwrap());
    let rounds = if env.quick { 50 } else { 500 };
    let secs = if env.quick { 1.0 } else { 3.0 };
    let invocations = if env.quick { 10 } else { 50 };

    let raw = handoff(
        &url,
        rounds,
        {
            let url = url.clone();
            move || {
                let mut c = raw_client(&url);
                c.batch_execute(&format!("SELECT pg_advisory_lock({key})"))
                    .unwrap();
                c
            }
        },
        move |mut c: postgres::Client| {
            c.batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
                .unwrap();
        },
        {
            let url = url.clone();
            // The waiter's session is opened outside the timed span in the
            // holdfast case too (the library connects before it waits).
            move || {
                let mut c = raw_client(&url);
                c.batch_execute(&format!("SELECT pg_advisory_lock({key})"))
                    .unwrap();
                c
            }
        },
    );
    let lib = {
        let l1 = pg.lock(NAME).unwrap();
        let l2 = l1.clone();
        handoff(
            &url,
            rounds,
            move || l1.acquire(Mode::Exclusive, Wait::Forever).unwrap(),
            |g| g.release().unwrap(),
            move || l2.acquire(Mode::Exclusive, Wait::Forever).unwrap(),
        )
    };
    let lib_timeout = {
        let l1 = pg.lock(NAME).unwrap();
        let l2 = l1.clone();
        handoff(
            &url,
            rounds,
            move || l1.acquire(Mode::Exclusive, Wait::Forever).unwrap(),
            |g| g.release().unwrap(),
            move || {
                l2.acquire(Mode::Exclusive, Wait::Timeout(Duration::from_secs(60)))
                    .unwrap()
            },
        )
    };
    println!("### Handoff latency (release → waiter's acquisition returns)\n");
    println!("| implementation | rounds | p50 | p99 | p50 vs raw |");
    println!("|---|---|---|---|---|");
    let mut raw_v = raw.clone();
    let raw_p50 = percentile(&mut raw_v, 50.0);
    for (label, v) in [
        ("raw pg_advisory_lock, bare client (anchor)", raw),
        ("holdfast PgLock::lock", lib),
        ("holdfast PgLock, Wait::Timeout (lock_timeout)", lib_timeout),
    ] {
        let mut v = v;
        let p50 = percentile(&mut v, 50.0);
        let p99 = percentile(&mut v, 99.0);
        println!(
            "| {label} | {} | {} | {} | {} |",
            v.len(),
            fmt_ns(p50),
            fmt_ns(p99),
            ratio(p50, raw_p50)
        );
    }

    let raw_loop = contended(secs, || {
        let mut c = raw_client(&url);
        Box::new(move || {
            c.batch_execute(&format!(
                "SELECT pg_advisory_lock({key}); SELECT pg_advisory_unlock({key})"
            ))
            .unwrap();
        })
    });
    let raw_connect = contended(secs, || {
        let url = url.clone();
        Box::new(move || {
            let mut c = raw_client(&url);
            c.batch_execute(&format!("SELECT pg_advisory_lock({key})"))
                .unwrap();
            c.batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
                .unwrap();
        })
    });
    let lib_loop = contended(secs, || {
        let l = pg.lock(NAME).unwrap();
        Box::new(move || l.lock().unwrap().release().unwrap())
    });
    println!("\n### Contended throughput (8 clients, one name, {secs} s)\n");
    println!("| implementation | acquisitions/s | vs raw loop | vs raw, session per acquisition |");
    println!("|---|---|---|---|");
    for (label, v) in [
        (
            "raw pg_advisory_lock + unlock, one session per client (anchor)",
            raw_loop,
        ),
        ("raw, a new session per acquisition (anchor)", raw_connect),
        (
            "holdfast PgLock::lock + release (session per acquisition)",
            lib_loop,
        ),
    ] {
        println!(
            "| {label} | {v:.0}/s | {} | {} |",
            ratio(v, raw_loop),
            ratio(v, raw_connect)
        );
    }

    let holdfast_bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("holdfast");
    let psql = server.bindir().join("psql");
    let psql_rate = per_invocation(
        invocations,
        &[
            psql.display().to_string(),
            "-X".into(),
            "-q".into(),
            "-d".into(),
            url.clone(),
            "-c".into(),
            format!("SELECT pg_advisory_lock({key}); SELECT pg_advisory_unlock({key})"),
        ],
    );
    let cli_rate = if holdfast_bin.is_file() {
        per_invocation(
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
        )
    } else {
        f64::NAN
    };
    println!("\n### One invocation per acquisition (8 shell loops, {invocations} each)\n");
    println!("| implementation | invocations/s | vs psql |");
    println!("|---|---|---|");
    println!(
        "| psql -c 'select pg_advisory_lock(K); select pg_advisory_unlock(K)' (anchor) | {psql_rate:.0}/s | 1.00× |"
    );
    println!(
        "| holdfast run --backend postgres://… NAME -- true | {cli_rate:.0}/s | {} |",
        ratio(cli_rate, psql_rate)
    );
}
