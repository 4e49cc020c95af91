//! Locks and unlocks in a loop: `cargo run --release --example lockloop -- PATH N [record]`.
//! Handy under `strace -c` or `perf stat` to see what one acquisition costs.
fn main() -> Result<(), holdfast::Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/lockloop.lock".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let record = args.next().as_deref() == Some("record");
    let lock = holdfast::Lock::options()
        .holder_record(record)
        .open(&path)?;
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
