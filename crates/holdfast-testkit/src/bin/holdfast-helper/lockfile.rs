//! Subcommands exercising `holdfast::lockfile`.
//!
//! Every command takes `PROTO LOCK` (`soft`, `link` or `mkdir`, and the
//! path) and these options: `--compat holdfast|flufl|lockfile|filelock`,
//! `--lifetime-ms N`, `--no-lifetime`, `--heartbeat`, `--skew-ms N`,
//! `--grace-ms N`, `--poll-ms N`, `--stale-after-ms N`, `--max-lifetime-ms N`,
//! `--no-watch`, `--no-exchange`, `--timeout-ms N`.
//!
//! - `lf-hold PROTO LOCK`: acquire (waiting; `--timeout-ms` bounds it),
//!   print `locked pid=P`, then obey stdin lines: `refresh` (prints
//!   `refreshed` or `error: ...`), `check` (`ok` or `lost: ...`), `release`
//!   (release, print `released`, stay alive); EOF releases and exits.
//! - `lf-try PROTO LOCK [--hold]`: one `try_lock` (or `lock_timeout` with
//!   `--timeout-ms`); prints `acquired`, `wouldblock: MSG` (exit 10),
//!   `timeout elapsed_ms=E: MSG` (exit 11) or `error: MSG` (exit 1). With
//!   `--hold`, keeps the lock until stdin says `release` (or closes).
//! - `lf-count PROTO LOCK COUNTER N`: N times lock, run the shared critical
//!   section (counter + overlap detector), unlock; prints `done violations=V`.
//! - `lf-status PROTO LOCK`: prints
//!   `locked=B pid=P host=H stale=S mine=B cmd=C` (`-` for none).
//! - `lf-race PROTO LOCK`: prints `ready`, then per stdin line: `try`
//!   (prints `won` or `busy`, keeping a won lock), `release` (prints
//!   `released`); EOF exits.
//! - `lf-break PROTO LOCK`: prints `broke=B`.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use holdfast::Error;
use holdfast::lockfile::{Compat, LockFile, LockFileOptions, Protocol};

use crate::args::{Args, wait_for_release};
use crate::say;

const WITH_VALUE: &[&str] = &[
    "compat",
    "lifetime-ms",
    "skew-ms",
    "grace-ms",
    "poll-ms",
    "stale-after-ms",
    "max-lifetime-ms",
    "timeout-ms",
];

pub fn dispatch(cmd: &str, rest: &[String]) -> Option<i32> {
    let a = Args::parse(rest, WITH_VALUE);
    Some(match cmd {
        "lf-hold" => hold(&a),
        "lf-try" => attempt(&a),
        "lf-count" => count(&a),
        "lf-status" => status(&a),
        "lf-race" => race(&a),
        "lf-break" => brk(&a),
        _ => return None,
    })
}

fn options(a: &Args) -> LockFileOptions {
    let protocol = match a.pos(0, "PROTO") {
        "soft" => Protocol::Soft,
        "link" => Protocol::Link,
        "mkdir" => Protocol::Mkdir,
        other => {
            eprintln!("holdfast-helper: unknown protocol {other:?}");
            std::process::exit(2);
        }
    };
    let mut o = LockFileOptions::new(protocol);
    if let Some(c) = a.value("compat") {
        o.compat(match c {
            "holdfast" => Compat::Holdfast,
            "flufl" => Compat::Flufl,
            "lockfile" => Compat::Lockfile,
            "filelock" => Compat::Filelock,
            other => {
                eprintln!("holdfast-helper: unknown compat {other:?}");
                std::process::exit(2);
            }
        });
    }
    if let Some(d) = a.millis("lifetime-ms") {
        o.lifetime(d);
    }
    if a.has("no-lifetime") {
        o.lifetime(None);
    }
    if a.has("heartbeat") {
        o.heartbeat(true);
    }
    if let Some(d) = a.millis("skew-ms") {
        o.clock_skew(d);
    }
    if let Some(d) = a.millis("grace-ms") {
        o.grace(d);
    }
    if let Some(d) = a.millis("poll-ms") {
        o.poll_interval(d);
    }
    if let Some(d) = a.millis("stale-after-ms") {
        o.stale_after(d);
    }
    if let Some(d) = a.millis("max-lifetime-ms") {
        o.max_lifetime(d);
    }
    if a.has("no-watch") {
        o.watch_directory(false);
    }
    if a.has("no-exchange") {
        o.atomic_exchange(false);
    }
    o
}

fn open(a: &Args) -> LockFile {
    options(a).open(a.pos(1, "LOCK")).unwrap_or_else(|e| {
        say!("error: {e}");
        std::process::exit(1)
    })
}

fn report(e: &Error, started: Instant) -> i32 {
    match e {
        Error::WouldBlock { .. } => {
            say!("wouldblock: {e}");
            10
        }
        Error::Timeout { .. } => {
            say!("timeout elapsed_ms={}: {e}", started.elapsed().as_millis());
            11
        }
        _ => {
            say!("error: {e}");
            1
        }
    }
}

fn hold(a: &Args) -> i32 {
    let lock = open(a);
    let started = Instant::now();
    let r = match a.millis("timeout-ms") {
        Some(d) => lock.lock_timeout(d),
        None => lock.lock(),
    };
    let g = match r {
        Ok(g) => g,
        Err(e) => return report(&e, started),
    };
    say!("locked pid={}", std::process::id());
    let mut g = Some(g);
    let unlock = |g: &mut Option<holdfast::LockFileGuard<'_>>| {
        if let Some(g) = g.take() {
            match g.unlock() {
                Ok(()) => say!("released"),
                Err(e) => say!("released with error: {e}"),
            }
        }
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match (line.trim(), g.as_ref()) {
            ("release", _) => unlock(&mut g),
            ("refresh", Some(g)) => match g.refresh() {
                Ok(()) => say!("refreshed"),
                Err(e) => say!("error: {e}"),
            },
            ("check", Some(g)) => match g.check() {
                Ok(()) => say!("ok"),
                Err(e) => say!("lost: {e}"),
            },
            _ => {}
        }
    }
    unlock(&mut g);
    0
}

fn attempt(a: &Args) -> i32 {
    let lock = open(a);
    let started = Instant::now();
    let r = match a.millis("timeout-ms") {
        Some(d) => lock.lock_timeout(d),
        None => lock.try_lock(),
    };
    match r {
        Ok(g) => {
            say!("acquired elapsed_ms={}", started.elapsed().as_millis());
            if a.has("hold") {
                wait_for_release();
            }
            drop(g);
            0
        }
        Err(e) => report(&e, started),
    }
}

fn count(a: &Args) -> i32 {
    let lock = open(a);
    let counter = Path::new(a.pos(2, "COUNTER"));
    let n: u64 = a.pos(3, "N").parse().expect("N");
    let inside = counter.with_extension("inside");
    let mut violations = 0u64;
    for _ in 0..n {
        let g = lock.lock().unwrap_or_else(|e| {
            say!("error: {e}");
            std::process::exit(1)
        });
        violations += crate::lock::critical_section(counter, &inside);
        if let Err(e) = g.unlock() {
            say!("error: {e}");
            violations += 1;
        }
    }
    say!("done violations={violations}");
    if violations == 0 { 0 } else { 1 }
}

fn status(a: &Args) -> i32 {
    let lock = open(a);
    match lock.status() {
        Ok(st) => {
            let h = st.holder.as_ref();
            say!(
                "locked={} pid={} host={} stale={} mine={} cmd={}",
                st.locked,
                h.and_then(|h| h.pid)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.and_then(|h| h.host.clone()).unwrap_or_else(|| "-".into()),
                st.stale
                    .map(|s| format!("{s:?}").replace(' ', ""))
                    .unwrap_or_else(|| "-".into()),
                st.mine,
                h.and_then(|h| h.command.clone())
                    .unwrap_or_else(|| "-".into())
            );
            0
        }
        Err(e) => {
            say!("error: {e}");
            1
        }
    }
}

fn race(a: &Args) -> i32 {
    let lock = open(a);
    let mut held = None;
    say!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "try" => match lock.try_lock() {
                Ok(g) => {
                    held = Some(g);
                    say!("won");
                }
                Err(Error::WouldBlock { .. }) => say!("busy"),
                Err(e) => say!("error: {e}"),
            },
            "release" => {
                if let Some(g) = held.take()
                    && let Err(e) = g.unlock()
                {
                    say!("error: {e}");
                    continue;
                }
                say!("released");
            }
            _ => {}
        }
    }
    drop(held);
    0
}

fn brk(a: &Args) -> i32 {
    let lock = open(a);
    match lock.break_lock() {
        Ok(b) => {
            say!("broke={b}");
            0
        }
        Err(e) => {
            say!("error: {e}");
            1
        }
    }
}
