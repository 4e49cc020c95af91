//! Takes and releases one primitive in a loop, uncontended:
//! `cargo run --release --example cycles -- KIND PATH N`. Run it under
//! `strace -c` to count the system calls of one cycle (`bench/syscalls`
//! does that for every KIND and prints the table BENCHMARKS.md shows).
//!
//! KIND: `flock` (raw `flock(2)`, the anchor), `lock` (defaults: holder
//! record and path check), `lock-norecord`, `lock-bare` (no record, no path
//! check), `lock-shared`, `fifo`, `semaphore`, and the lock files `soft`,
//! `soft-filelock`, `link` (flufl format), `link-lockfile`, `mkdir`,
//! `mkdir-lockfile`.
use std::time::{Duration, Instant};

use holdfast::lockfile::{Compat, LockFileOptions, Protocol};
use holdfast::{FifoLock, Lock, Semaphore};

type Res = Result<(), Box<dyn std::error::Error>>;

fn main() -> Res {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "lock".into());
    let path = args.next().unwrap_or_else(|| "/tmp/cycles.lock".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let cycle: Box<dyn Fn() -> Res> = match kind.as_str() {
        "flock" => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            // std's File::lock is flock(2) on Linux.
            Box::new(move || {
                f.lock()?;
                f.unlock()?;
                Ok(())
            })
        }
        "lock" | "lock-norecord" | "lock-bare" | "lock-shared" => {
            let l = Lock::options()
                .holder_record(kind == "lock" || kind == "lock-shared")
                .verify_path(kind != "lock-bare")
                .open(&path)?;
            let shared = kind == "lock-shared";
            Box::new(move || {
                if shared {
                    drop(l.lock_shared()?);
                } else {
                    drop(l.lock()?);
                }
                Ok(())
            })
        }
        "fifo" => {
            let l = FifoLock::open(&path)?;
            Box::new(move || {
                drop(l.lock()?);
                Ok(())
            })
        }
        "semaphore" => {
            let s = Semaphore::open(&path, 2)?;
            Box::new(move || {
                drop(s.lock()?);
                Ok(())
            })
        }
        other => {
            let (protocol, compat) = match other {
                "soft" => (Protocol::Soft, Compat::Holdfast),
                "soft-filelock" => (Protocol::Soft, Compat::Filelock),
                "link" => (Protocol::Link, Compat::Flufl),
                "link-lockfile" => (Protocol::Link, Compat::Lockfile),
                "mkdir" => (Protocol::Mkdir, Compat::Holdfast),
                "mkdir-lockfile" => (Protocol::Mkdir, Compat::Lockfile),
                _ => panic!("unknown KIND {other}"),
            };
            let mut o = LockFileOptions::new(protocol);
            o.compat(compat);
            if protocol == Protocol::Link {
                o.lifetime(Duration::from_secs(60));
            }
            let l = o.open(&path)?;
            Box::new(move || {
                drop(l.lock()?);
                Ok(())
            })
        }
    };
    // Twice first, so that one-time set-up (the first record, a mapping,
    // caches) stays out of the loop.
    cycle()?;
    cycle()?;
    let start = Instant::now();
    for _ in 0..n {
        cycle()?;
    }
    println!(
        "{:.0} ns per cycle",
        start.elapsed().as_nanos() as f64 / n as f64
    );
    Ok(())
}
