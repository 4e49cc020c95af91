//! Property test (issue 10): whatever holdfast finds on disk (holder
//! records, every lock-file format and claim name, `.status` files,
//! run-once markers), `status`, `list`, `phases status`, `once --status`
//! and `break` never panic, and what they print holds no control character
//! (text: nor an invisible formatting one) and is valid UTF-8 (JSON: valid
//! JSON).
//!
//! The inputs are real files holdfast wrote, mutated with the seeded
//! generator of `holdfast_testkit::fuzz`: HOLDFAST_FUZZ_SEED picks another
//! seed, HOLDFAST_FUZZ_CASES runs more cases (default 30); a failure names
//! the seed and case that replay it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use holdfast::lockfile::{Compat, LockFile, Protocol};
use holdfast::{Lock, Phase, PhaseRunner, XattrMode};
use holdfast_testkit::fuzz::{Rng, mutate, mutate_name, unsafe_char};
use holdfast_testkit::{Dir, run_to_end_raw};

use crate::common::T;

/// One file or directory of a seed, relative to the seed's lock path.
struct Entry {
    /// What follows the lock path's own name (`""`: the lock path itself;
    /// `"|localhost|42|..."`: a flufl.lock claim; `"/vm.42.n.holdfast"`: a
    /// file inside a mkdir lock).
    suffix: String,
    /// `None` for a directory.
    content: Option<Vec<u8>>,
}

/// What each protocol and format leaves on disk while a lock is held.
fn lock_file_seeds(d: &Dir) -> Vec<Vec<Entry>> {
    let formats = [
        (Protocol::Soft, Compat::Holdfast),
        (Protocol::Soft, Compat::Filelock),
        (Protocol::Link, Compat::Flufl),
        (Protocol::Link, Compat::Lockfile),
        (Protocol::Mkdir, Compat::Holdfast),
        (Protocol::Mkdir, Compat::Lockfile),
    ];
    let mut seeds = Vec::new();
    for (i, (p, c)) in formats.into_iter().enumerate() {
        let dir = d.join(&format!("seed{i}"));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("x.lock");
        let lock = LockFile::options(p).compat(c).open(&path).unwrap();
        let guard = lock.lock().unwrap();
        let mut entries = Vec::new();
        walk(&dir, &dir, &mut entries);
        drop(guard);
        assert!(!entries.is_empty(), "{p} {c}: nothing on disk");
        seeds.push(entries);
    }
    seeds
}

fn walk(root: &Path, at: &Path, out: &mut Vec<Entry>) {
    for e in std::fs::read_dir(at).unwrap() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let suffix = rel
            .strip_prefix("x.lock")
            .expect("under the lock path")
            .to_owned();
        if e.file_type().unwrap().is_dir() {
            out.push(Entry {
                suffix,
                content: None,
            });
            walk(root, &e.path(), out);
        } else {
            out.push(Entry {
                suffix,
                content: Some(std::fs::read(e.path()).unwrap()),
            });
        }
    }
}

/// The seeds: a kernel lock's holder record, every lock-file format, a
/// FIFO lock's queue and a semaphore's file, a
/// phase status file and a run-once marker, all written by holdfast.
struct Seeds {
    record: Vec<u8>,
    lock_files: Vec<Vec<Entry>>,
    status_file: Vec<u8>,
    /// A FIFO lock's queue file and a semaphore's file (their headers).
    queue: Vec<u8>,
    semaphore: Vec<u8>,
    once_key: Vec<u8>,
}

fn seeds(d: &Dir) -> Seeds {
    let k = d.join("k.lock");
    let lock = Lock::open(&k).unwrap();
    drop(lock.lock().unwrap());
    let record = std::fs::read(&k).unwrap();
    assert!(record.starts_with(b"holdfast-holder"), "{record:?}");

    let target = d.join("app.db");
    let mut runner = PhaseRunner::new(&target);
    runner.xattrs(XattrMode::Off);
    runner
        .run([
            Phase::new("schema-v1", |_| Ok(())),
            Phase::new("seed-v1", |_| Ok(())),
        ])
        .unwrap();
    let status_file = std::fs::read(d.join("app.db.status")).unwrap();

    let key = d.join("key");
    let _ = holdfast::once(&key, |_| Ok(())).unwrap();
    let once_key = std::fs::read(&key).unwrap();

    let q = d.join("q.lock");
    let fifo = holdfast::FifoLock::open(&q).unwrap();
    let g = fifo.lock().unwrap();
    let queue = std::fs::read(d.join("q.lock.fifo")).unwrap();
    drop(g);
    let sem = holdfast::Semaphore::open(d.join("gpu.sem"), 2).unwrap();
    let permit = sem.lock().unwrap();
    let semaphore = std::fs::read(d.join("gpu.sem")).unwrap();
    drop(permit);
    assert!(
        !queue.is_empty() && !semaphore.is_empty(),
        "no queue header"
    );

    Seeds {
        record,
        lock_files: lock_file_seeds(d),
        status_file,
        once_key,
        queue,
        semaphore,
    }
}

/// Lays out one case in `dir` and returns the lock paths it made.
fn lay_out(rng: &mut Rng, seeds: &Seeds, dir: &Path) -> Vec<PathBuf> {
    let content = |seed: &[u8], rng: &mut Rng| {
        if rng.below(4) == 0 {
            seed.to_vec()
        } else {
            mutate(rng, seed)
        }
    };
    std::fs::write(dir.join("k.lock"), content(&seeds.record, rng)).unwrap();
    std::fs::write(dir.join("app.db.status"), content(&seeds.status_file, rng)).unwrap();
    std::fs::write(dir.join("key"), content(&seeds.once_key, rng)).unwrap();
    std::fs::write(dir.join("q.lock"), content(&seeds.record, rng)).unwrap();
    std::fs::write(dir.join("q.lock.fifo"), content(&seeds.queue, rng)).unwrap();
    std::fs::write(dir.join("gpu.sem"), content(&seeds.semaphore, rng)).unwrap();
    let mut paths = vec![
        dir.join("k.lock"),
        dir.join("q.lock"),
        dir.join("q.lock.fifo"),
        dir.join("gpu.sem"),
    ];
    for (i, entries) in seeds.lock_files.iter().enumerate() {
        let base = format!("lf{i}.lock");
        let mut top: Option<PathBuf> = None;
        for e in entries {
            // Claim names (what follows the lock's name) are data too.
            let suffix = if !e.suffix.is_empty() && rng.below(3) == 0 {
                let (sep, rest) = e.suffix.split_at(1);
                let mut s = OsString::from(sep);
                s.push(mutate_name(rng, rest.trim_start_matches('/')));
                s
            } else {
                OsString::from(&e.suffix)
            };
            let mut name = OsString::from(&base);
            name.push(&suffix);
            let p = dir.join(&name);
            // A mutated name inside a directory must stay inside it.
            let top_name = Path::new(&name).components().next().unwrap();
            let first = dir.join(top_name);
            match &e.content {
                None => {
                    let _ = std::fs::create_dir_all(&p);
                }
                Some(bytes) => {
                    if let Some(parent) = p.parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let _ = std::fs::write(&p, content(bytes, rng));
                }
            }
            if top.is_none() || e.suffix.is_empty() {
                top = Some(first);
            }
        }
        paths.extend(top);
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Runs `holdfast ARGS` (bounded), returning its status and raw output.
fn holdfast(args: &[&std::ffi::OsStr]) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    run_to_end_raw(crate::common::holdfast().args(args), T)
}

/// The property, for one command's output.
fn check(what: &str, json: bool, status: ExitStatus, out: &[u8], err: &[u8]) {
    assert!(
        status.code().is_some_and(|c| c != 101),
        "{what}: panicked or killed ({status:?}): {}",
        String::from_utf8_lossy(err)
    );
    for (stream, bytes) in [("stdout", out), ("stderr", err)] {
        let text = std::str::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("{what}: {stream} is not UTF-8 ({e}): {bytes:?}"));
        let bad = if json && stream == "stdout" {
            text.char_indices()
                .find(|&(_, c)| c.is_control() && c != '\n')
        } else {
            unsafe_char(text)
        };
        if let Some((i, c)) = bad {
            panic!("{what}: {stream} has {c:?} at byte {i}:\n{text}");
        }
    }
    if json && status.success() {
        serde_json::from_slice::<serde_json::Value>(out)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(out)));
    }
}

#[test]
fn nothing_on_disk_makes_holdfast_panic_or_print_control_characters() {
    let seed: u64 = std::env::var("HOLDFAST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6f1d_2a8e);
    let cases: usize = std::env::var("HOLDFAST_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let d = Dir::new();
    let seeds = seeds(&d);
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let dir = d.join(&format!("case{case}"));
        std::fs::create_dir(&dir).unwrap();
        let paths = lay_out(&mut rng, &seeds, &dir);
        let what = |cmd: &str| format!("seed {seed} case {case}: holdfast {cmd}");
        let os = |p: &Path| p.as_os_str().to_owned();
        let paths_os: Vec<OsString> = paths.iter().map(|p| os(p)).collect();
        for json in [false, true] {
            let flag: &[&str] = if json { &["--json"] } else { &[] };
            let mut args: Vec<&std::ffi::OsStr> = vec!["status".as_ref()];
            args.extend(flag.iter().map(std::ffi::OsStr::new));
            args.extend(paths_os.iter().map(|p| p.as_os_str()));
            let (st, out, err) = holdfast(&args);
            check(&what("status"), json, st, &out, &err);

            let mut args: Vec<&std::ffi::OsStr> = vec!["list".as_ref()];
            args.extend(flag.iter().map(std::ffi::OsStr::new));
            args.push(dir.as_os_str());
            let (st, out, err) = holdfast(&args);
            check(&what("list"), json, st, &out, &err);

            let target = dir.join("app.db");
            let mut args: Vec<&std::ffi::OsStr> = vec!["phases".as_ref(), "status".as_ref()];
            args.extend(flag.iter().map(std::ffi::OsStr::new));
            args.push(target.as_os_str());
            let (st, out, err) = holdfast(&args);
            check(&what("phases status"), json, st, &out, &err);
        }
        let key = dir.join("key");
        let (st, out, err) = holdfast(&["once".as_ref(), "--status".as_ref(), key.as_os_str()]);
        check(&what("once --status"), false, st, &out, &err);
        for p in &paths {
            let (st, out, err) = holdfast(&["break".as_ref(), p.as_os_str()]);
            check(
                &what(&format!("break {:?}", p.file_name().unwrap().as_bytes())),
                false,
                st,
                &out,
                &err,
            );
        }
    }
}
