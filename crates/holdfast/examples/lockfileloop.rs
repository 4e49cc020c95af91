//! Takes and releases a lock file in a loop:
//! `cargo run --release --example lockfileloop -- PROTOCOL[-COMPAT] PATH N`,
//! PROTOCOL one of `soft`, `soft-filelock`, `link` (flufl format),
//! `link-lockfile`, `mkdir`, `mkdir-lockfile`.
//! Handy under `strace -c` to count the system calls of one cycle.
use std::time::Duration;

use holdfast::lockfile::{Compat, LockFileOptions, Protocol};

fn main() -> Result<(), holdfast::Error> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "soft".into());
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/lockfileloop.lock".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let (protocol, compat) = match kind.as_str() {
        "soft" => (Protocol::Soft, Compat::Holdfast),
        "soft-filelock" => (Protocol::Soft, Compat::Filelock),
        "link" => (Protocol::Link, Compat::Flufl),
        "link-lockfile" => (Protocol::Link, Compat::Lockfile),
        "mkdir" => (Protocol::Mkdir, Compat::Holdfast),
        "mkdir-lockfile" => (Protocol::Mkdir, Compat::Lockfile),
        other => panic!("unknown lock-file kind {other}"),
    };
    let mut o = LockFileOptions::new(protocol);
    o.compat(compat);
    if protocol == Protocol::Link {
        o.lifetime(Duration::from_secs(60));
    }
    let lock = o.open(&path)?;
    // One cycle first, so that one-time set-up stays out of the loop.
    drop(lock.lock()?);
    let start = std::time::Instant::now();
    for _ in 0..n {
        drop(lock.lock()?);
    }
    println!(
        "{:.0} ns per lock+unlock",
        start.elapsed().as_nanos() as f64 / n as f64
    );
    Ok(())
}
