//! Hardening (issue 10): the library never writes a holder record into a
//! file it did not create or own, whatever path leads to it.

use holdfast::Lock;
use holdfast_testkit::{Dir, is_root};

/// Issue 10 item 2, library side: following a symlink (opted in) locks
/// what it names without writing into it; a dangling link creates nothing;
/// a second hard link and another user's file are never written into.
#[test]
fn no_holder_record_through_a_symlink_a_hard_link_or_into_a_foreign_file() {
    let d = Dir::new();
    let victim = d.join("victim");
    std::fs::write(&victim, b"").unwrap();

    let link = d.join("sym.lock");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let l = Lock::options().follow_symlinks(true).open(&link).unwrap();
    let g = l.lock().unwrap();
    assert_eq!(g.token(), None, "no record, no token");
    assert!(
        Lock::open(&victim).unwrap().try_lock().is_err(),
        "the link was followed for locking"
    );
    drop(g);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"",
        "written through a symlink"
    );

    let dangling = d.join("dangling.lock");
    std::os::unix::fs::symlink(d.join("planted"), &dangling).unwrap();
    match Lock::options().follow_symlinks(true).open(&dangling) {
        Err(e) => assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::NotFound),
        Ok(_) => panic!("opened a dangling link"),
    }
    assert!(
        !d.join("planted").exists(),
        "created through a dangling link"
    );

    let hard = d.join("hard.lock");
    std::fs::hard_link(&victim, &hard).unwrap();
    drop(Lock::open(&hard).unwrap().lock().unwrap());
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"",
        "written through a hard link"
    );

    if is_root() {
        let theirs = d.join("theirs.lock");
        std::fs::write(&theirs, b"").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        drop(Lock::open(&theirs).unwrap().lock().unwrap());
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            b"",
            "wrote into nobody's file"
        );
    } else {
        eprintln!("another user's file: skipped (needs root to chown)");
    }

    // Control: our own file gets the record.
    let mine = d.join("mine.lock");
    let l = Lock::open(&mine).unwrap();
    assert!(l.lock().unwrap().token().is_some());
    assert!(
        std::fs::read(&mine)
            .unwrap()
            .starts_with(b"holdfast-holder")
    );
}

/// Issue 10 item 9, library side: `PhaseRunner` refuses a FIFO target and
/// a directory where its lock file goes, before opening anything.
#[test]
fn phase_runner_refuses_a_fifo_target_and_a_directory_lock_path() {
    use holdfast::Error;
    use holdfast::phase::{Phase, PhaseRunner};
    let d = Dir::new();
    let fifo = d.join("fifo");
    let out = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(out.success());
    match PhaseRunner::new(&fifo).run([Phase::new("p", |_| unreachable!())]) {
        Err(Error::InvalidInput { path, reason }) => {
            assert_eq!(path, fifo);
            assert!(reason.contains("the target is a FIFO"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!d.join("fifo.lock").exists());

    let db = d.join("app.db");
    std::fs::create_dir(d.join("app.db.lock")).unwrap();
    match PhaseRunner::new(&db).run([Phase::new("p", |_| unreachable!())]) {
        Err(Error::InvalidInput { path, reason }) => {
            assert_eq!(path, d.join("app.db.lock"));
            assert!(reason.contains("is a directory"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 10 item 10, library side: `RunOnce` refuses a dangling symlink at
/// the key instead of reporting the step done.
#[test]
fn run_once_refuses_a_dangling_symlink_key() {
    use holdfast::Error;
    use holdfast::once::RunOnce;
    let d = Dir::new();
    let key = d.join("k");
    std::os::unix::fs::symlink(d.join("nowhere"), &key).unwrap();
    let once = RunOnce::new(&key);
    assert!(matches!(once.is_done(), Err(Error::Symlink { .. })));
    match once.run(|_| unreachable!()) {
        Err(Error::Symlink { path }) => assert_eq!(path, key),
        other => panic!("{other:?}"),
    }
}

/// Issue 10 item 14, library side: a full semaphore speaks of permits, not
/// of "an exclusive lock"; `AlreadyHeld` does not offer a `LockFile` an
/// option it does not have.
#[test]
fn messages_name_what_the_primitive_is() {
    use std::time::Duration;
    let d = Dir::new();
    let sem = holdfast::Semaphore::open(d.join("gpu.sem"), 1).unwrap();
    let _permit = sem.lock().unwrap();
    let other = holdfast::Semaphore::open(d.join("gpu.sem"), 1).unwrap();
    let e = other.try_lock().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "no permit of {} is free: all 1 permit taken, by this process",
            d.join("gpu.sem").display()
        )),
        "{e}"
    );
    assert!(!e.contains("exclusive lock"), "{e}");
    let e = other
        .lock_timeout(Duration::from_millis(20))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("timed out after "), "{e}");
    assert!(e.contains(" waiting for a permit of "), "{e}");

    let lf =
        holdfast::lockfile::LockFile::open(d.join("x.lock"), holdfast::lockfile::Protocol::Soft)
            .unwrap();
    let _g = lf.lock().unwrap();
    let e = lf.lock().unwrap_err().to_string();
    assert!(e.contains("already locked by this thread"), "{e}");
    assert!(!e.contains("use LockOptions::reentrant"), "{e}");
}

/// Property (issue 10): the library's readers never panic on what they
/// find on disk, and the text they produce from it (holder descriptions,
/// error messages) holds no control character. Mutations of real holder
/// records, lock-file records and `.status` files (the seeded generator of
/// `holdfast_testkit::fuzz`; HOLDFAST_FUZZ_SEED / HOLDFAST_FUZZ_CASES).
#[test]
fn library_readers_survive_any_record() {
    use holdfast::lockfile::{LockFile, Protocol};
    use holdfast::phase::{Phase, PhaseRunner, XattrMode};
    use holdfast_testkit::fuzz::{Rng, mutate, unsafe_char};

    let seed: u64 = std::env::var("HOLDFAST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    let cases: usize = std::env::var("HOLDFAST_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(400, |n: usize| n * 10);
    let d = Dir::new();
    // Seeds, written by holdfast itself.
    let k = d.join("k.lock");
    drop(Lock::open(&k).unwrap().lock().unwrap());
    let mut seeds = vec![std::fs::read(&k).unwrap()];
    for p in [Protocol::Soft, Protocol::Link] {
        let path = d.join(&format!("{p}.lock"));
        let lf = LockFile::open(&path, p).unwrap();
        let g = lf.lock().unwrap();
        seeds.push(std::fs::read(&path).unwrap());
        drop(g);
    }
    let target = d.join("app.db");
    let mut runner = PhaseRunner::new(&target);
    runner.xattrs(XattrMode::Off);
    runner.run([Phase::new("one", |_| Ok(()))]).unwrap();
    seeds.push(std::fs::read(d.join("app.db.status")).unwrap());

    let text_ok = |what: &str, case: usize, text: &str| {
        if let Some((i, c)) = unsafe_char(text) {
            panic!("seed {seed} case {case}: {what} has {c:?} at {i}: {text:?}");
        }
    };
    let mut rng = Rng::new(seed);
    let p = d.join("fuzz.lock");
    let t = d.join("fuzz.db");
    for case in 0..cases {
        let i = rng.below(seeds.len());
        let bytes = mutate(&mut rng, &seeds[i]);
        std::fs::write(&p, &bytes).unwrap();
        std::fs::write(d.join("fuzz.db.status"), &bytes).unwrap();
        match holdfast::status(&p) {
            Ok(st) => text_ok("status holders", case, &st.holders.to_string()),
            Err(e) => text_ok("status error", case, &e.to_string()),
        }
        match holdfast::inspect::inspect(&p) {
            Ok(seen) => {
                text_ok("inspect holders", case, &seen.kernel.holders.to_string());
                if let Some(v) = &seen.lock_file
                    && let Some(h) = &v.status.holder
                {
                    text_ok("lock-file holder", case, &h.to_string());
                }
            }
            Err(e) => text_ok("inspect error", case, &e.to_string()),
        }
        for protocol in [Protocol::Soft, Protocol::Link] {
            if let Ok(lf) = LockFile::open(&p, protocol) {
                match lf.status() {
                    Ok(st) => {
                        if let Some(h) = &st.holder {
                            text_ok("lock-file status holder", case, &h.to_string());
                        }
                    }
                    Err(e) => text_ok("lock-file status error", case, &e.to_string()),
                }
            }
        }
        let mut r = PhaseRunner::new(&t);
        r.xattrs(XattrMode::Off);
        if let Err(e) = r.markers() {
            text_ok("markers error", case, &e.to_string());
        }
    }
}
