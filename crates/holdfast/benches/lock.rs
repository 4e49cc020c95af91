//! Uncontended lock + unlock, holdfast beside raw flock(2) and std's
//! `File::lock` in the same run. `cargo bench -p holdfast --bench lock`.

use std::fs::OpenOptions;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use holdfast::Lock;
use rustix::fs::FlockOperation;

fn uncontended(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.lock");
    let mut g = c.benchmark_group("uncontended lock+unlock");

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    g.bench_function("raw flock(2) EX+UN (anchor)", |b| {
        b.iter(|| {
            rustix::fs::flock(&file, FlockOperation::LockExclusive).unwrap();
            rustix::fs::flock(&file, FlockOperation::Unlock).unwrap();
        })
    });
    g.bench_function("std File::lock+unlock", |b| {
        b.iter(|| {
            file.lock().unwrap();
            file.unlock().unwrap();
        })
    });

    let plain = Lock::options().holder_record(false).open(&path).unwrap();
    g.bench_function("holdfast lock, no record", |b| {
        b.iter(|| black_box(plain.lock().unwrap()))
    });
    g.bench_function("holdfast try_lock, no record", |b| {
        b.iter(|| black_box(plain.try_lock().unwrap()))
    });
    g.bench_function("holdfast lock_shared", |b| {
        b.iter(|| black_box(plain.lock_shared().unwrap()))
    });
    let unverified = Lock::options()
        .holder_record(false)
        .verify_path(false)
        .open(&path)
        .unwrap();
    g.bench_function("holdfast lock, no record, no path check", |b| {
        b.iter(|| black_box(unverified.lock().unwrap()))
    });
    let recorded = Lock::open(&path).unwrap();
    g.bench_function("holdfast lock, with holder record", |b| {
        b.iter(|| black_box(recorded.lock().unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = uncontended
}
criterion_main!(benches);
