//! Unit tests of the file-based runner: validation, both marker stores,
//! promotion, reset, and runs from several threads.

use super::*;
use crate::error::Error;
use crate::lock::Lock;
use crate::sys;
use std::cell::RefCell;

fn runner(d: &tempfile::TempDir, mode: XattrMode) -> PhaseRunner {
    let mut r = PhaseRunner::new(d.path().join("app.db"));
    r.xattrs(mode);
    r
}

fn xattrs_work(d: &tempfile::TempDir) -> bool {
    let p = d.path().join("probe");
    std::fs::write(&p, b"").unwrap();
    sys::xattr_set(&p, "user.holdfast.probe", b"1", false).is_ok()
}

#[test]
fn names_are_validated_like_phaselock_and_stricter() {
    assert!(validate_name("phase name", "schema-v3").is_ok());
    assert!(validate_name("phase name", "with space and ünïcode\t").is_ok());
    for bad in [
        "",
        "a\0b",
        "a\nb",
        "a\rb",
        "a\u{b}b",
        "a\u{c}b",
        "a\u{85}b",
        "a\u{2028}",
    ] {
        assert!(validate_name("phase name", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn bad_input_is_invalid_input_and_runs_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Auto);
    let ran = RefCell::new(0);
    let ph = |n: &str| {
        let ran = &ran;
        Phase::new(n.to_owned(), move |_| {
            *ran.borrow_mut() += 1;
            Ok(())
        })
    };
    for phases in [
        vec![ph("a"), ph("")],
        vec![ph("a"), ph("b\0")],
        vec![ph("a\n")],
        vec![ph("a\r")],
        vec![ph("a"), ph("b"), ph("a")],
        vec![ph("a").attr_name("x"), ph("b").attr_name("x")],
        vec![ph("a"), ph("b").attr_name("a")],
        vec![ph("a").attr_name("")],
        vec![ph(&"n".repeat(300))],
    ] {
        let err = r.run(phases).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    }
    assert_eq!(*ran.borrow(), 0);
    assert!(!r.lock_path().exists(), "nothing touched");
    let many: Vec<_> = (0..700).map(|i| ph(&format!("{i:0>100}"))).collect();
    assert!(matches!(r.run(many), Err(Error::InvalidInput { .. })));
    let mut bad = r.clone();
    bad.lock_suffix("");
    assert!(matches!(
        bad.run([ph("a")]),
        Err(Error::InvalidInput { .. })
    ));
    let mut bad = r.clone();
    bad.status_suffix(".lock");
    assert!(matches!(
        bad.run([ph("a")]),
        Err(Error::InvalidInput { .. })
    ));
    let mut bad = r.clone();
    bad.lock_suffix("/x");
    assert!(matches!(
        bad.run([ph("a")]),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        PhaseRunner::new("").run([ph("a")]),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn missing_directory_and_symlink_target() {
    let d = tempfile::tempdir().unwrap();
    let r = PhaseRunner::new(d.path().join("no/such/app.db"));
    match r.run([Phase::new("a", |_| Ok(()))]) {
        Err(Error::Io { source, path, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(path, d.path().join("no/such/app.db"));
        }
        other => panic!("{other:?}"),
    }
    let real = d.path().join("real.db");
    std::fs::write(&real, b"").unwrap();
    let link = d.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let r = PhaseRunner::new(&link);
    assert!(matches!(
        r.run([Phase::new("a", |_| Ok(()))]),
        Err(Error::Symlink { .. })
    ));
    let mut r = PhaseRunner::new(&link);
    r.follow_symlinks(true).xattrs(XattrMode::Off);
    r.run([Phase::new("a", |_| Ok(()))]).unwrap();
}

#[test]
fn paths_follow_phaselock_1_1_naming() {
    let r = PhaseRunner::new("data/app.db/");
    assert_eq!(r.target(), Path::new("data/app.db"));
    assert_eq!(r.lock_path(), Path::new("data/app.db.lock"));
    assert_eq!(r.status_path(), Path::new("data/app.db.status"));
    let mut r = PhaseRunner::new("x");
    r.namespace("..user.mine.");
    assert_eq!(r.attr_key("p"), "user.mine.p");
    r.namespace("");
    assert_eq!(r.attr_key("user.p"), "user.p");
}

#[test]
fn status_mode_writes_the_file_and_resumes_after_failure() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Off);
    let log = RefCell::new(Vec::new());
    let ph = |n: &'static str, fail: bool| {
        let log = &log;
        Phase::new(n, move |ctx| {
            assert_eq!(ctx.name(), n);
            if fail {
                return Err(format!("{n} broke").into());
            }
            log.borrow_mut().push(n);
            Ok(())
        })
    };
    let err = r
        .run([ph("a", false), ph("b", true), ph("c", false)])
        .unwrap_err();
    match &err {
        Error::ActionFailed { name, path, source } => {
            assert_eq!(name, "b");
            assert_eq!(path, r.target());
            assert_eq!(source.to_string(), "b broke");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\n");
    let rep = r
        .run([ph("a", false), ph("b", false), ph("c", false)])
        .unwrap();
    assert_eq!(rep.skipped, ["a"]);
    assert_eq!(rep.completed, ["b", "c"]);
    assert!(rep.locked && !rep.xattrs_available);
    assert_eq!(*log.borrow(), ["a", "b", "c"]);
    assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\nb\nc\n");
    assert!(
        status_file::stale_temps(&r.status_path()).is_empty(),
        "no temporary files left"
    );
}

#[test]
fn xattr_mode_marks_the_target_and_fast_path_skips_the_lock() {
    let d = tempfile::tempdir().unwrap();
    if !xattrs_work(&d) {
        eprintln!("skipping: no user xattrs here");
        return;
    }
    let r = runner(&d, XattrMode::On);
    std::fs::write(r.target(), b"").unwrap();
    let rep = r
        .run([Phase::new("a", |_| Ok(())).attr_value(&b"v1"[..])])
        .unwrap();
    assert!(rep.xattrs_available && rep.locked);
    assert!(rep.token.is_some());
    assert!(rep.status_paths.is_empty());
    assert_eq!(
        sys::xattr_get(r.target(), "user.phaselock.a", false).unwrap(),
        Some(b"v1".to_vec())
    );
    // The lock is held by someone else: the fast path does not need it.
    let lock = Lock::open(r.lock_path()).unwrap();
    let held = lock.lock().unwrap();
    let rep = r.run([Phase::new("a", |_| unreachable!())]).unwrap();
    assert!(!rep.locked);
    assert_eq!(rep.skipped, ["a"]);
    // Strict marker locking waits for the lock first.
    let mut strict = r.clone();
    strict.strict_marker_locking(true).wait(Wait::NoWait);
    assert!(matches!(
        strict.run([Phase::new("a", |_| unreachable!())]),
        Err(Error::WouldBlock { .. })
    ));
    drop(held);
    let rep = strict.run([Phase::new("a", |_| unreachable!())]).unwrap();
    assert!(rep.locked);
}

#[test]
fn missing_target_falls_back_to_the_status_file_and_is_read_back() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::On);
    // The action does not create the target: the xattr cannot be set.
    let rep = r.run([Phase::new("a", |_| Ok(()))]).unwrap();
    assert_eq!(rep.completed, ["a"]);
    assert!(!rep.xattrs_available);
    assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\n");
    // Union read: xattr mode still sees the status-file marker.
    let rep = r.run([Phase::new("a", |_| unreachable!())]).unwrap();
    assert_eq!(rep.skipped, ["a"]);
}

#[test]
fn union_read_and_promotion_between_stores() {
    let d = tempfile::tempdir().unwrap();
    if !xattrs_work(&d) {
        return;
    }
    let r = runner(&d, XattrMode::On);
    std::fs::write(r.target(), b"").unwrap();
    // Marker only in the status file, xattrs usable: skipped, and
    // copied into the xattr under the lock (strict forces the lock).
    std::fs::write(r.status_path(), b"a\n").unwrap();
    let mut strict = r.clone();
    strict.strict_marker_locking(true);
    let rep = strict.run([Phase::new("a", |_| unreachable!())]).unwrap();
    assert_eq!(rep.skipped, ["a"]);
    assert!(sys::xattr_exists(r.target(), "user.phaselock.a", false).unwrap());
    // Marker only in an xattr, status mode: skipped and copied into the file.
    sys::xattr_set(r.target(), "user.phaselock.b", b"1", false).unwrap();
    let mut off = strict.clone();
    off.xattrs(XattrMode::Off);
    let rep = off
        .run([
            Phase::new("a", |_| unreachable!()),
            Phase::new("b", |_| unreachable!()),
        ])
        .unwrap();
    assert_eq!(rep.skipped, ["a", "b"]);
    assert_eq!(std::fs::read(r.status_path()).unwrap(), b"a\nb\n");
}

#[test]
fn corrupt_status_file_is_an_error_when_consulted() {
    let d = tempfile::tempdir().unwrap();
    let off = runner(&d, XattrMode::Off);
    std::fs::write(off.status_path(), b"a\n\xff\xfe\n").unwrap();
    let ran = RefCell::new(false);
    let err = off
        .run([Phase::new("a", |_| {
            *ran.borrow_mut() = true;
            Ok(())
        })])
        .unwrap_err();
    match &err {
        Error::Corrupt { path, reason } => {
            assert_eq!(path, &off.status_path());
            assert!(reason.contains("UTF-8"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!*ran.borrow());
    assert_eq!(
        std::fs::read(off.status_path()).unwrap(),
        b"a\n\xff\xfe\n",
        "never overwritten"
    );
    if xattrs_work(&d) {
        let on = runner(&d, XattrMode::On);
        std::fs::write(on.target(), b"").unwrap();
        // xattr mode, marker missing: the status file must be asked.
        assert!(matches!(
            on.run([Phase::new("a", |_| Ok(()))]),
            Err(Error::Corrupt { .. })
        ));
        // xattr mode, xattr present: the file cannot change the answer.
        sys::xattr_set(on.target(), "user.phaselock.a", b"1", false).unwrap();
        assert_eq!(
            on.run([Phase::new("a", |_| unreachable!())])
                .unwrap()
                .skipped,
            ["a"]
        );
    }
    off.discard_status_markers().unwrap();
    assert!(!off.status_path().exists());
}

#[test]
fn unmark_and_reset() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Auto);
    std::fs::write(r.target(), b"").unwrap();
    r.run([
        Phase::new("a", |_| Ok(())),
        Phase::new("b", |_| Ok(())).attr_name("bee"),
    ])
    .unwrap();
    assert!(r.is_marked("b", Some("bee")).unwrap().is_some());
    assert!(r.unmark("b", Some("bee")).unwrap());
    assert!(!r.unmark("b", Some("bee")).unwrap());
    assert_eq!(r.is_marked("b", Some("bee")).unwrap(), None);
    assert!(r.is_marked("a", None).unwrap().is_some());
    let before = r.reset().unwrap();
    assert!(before.contains("a"));
    let after = r.markers().unwrap();
    assert!(after.xattrs.is_empty() && after.status.is_empty());
    assert!(r.lock_path().exists(), "the lock file is never deleted");
}

#[test]
fn selected_store_follows_the_mode_and_the_filesystem() {
    let d = tempfile::tempdir().unwrap();
    let off = runner(&d, XattrMode::Off);
    assert_eq!(off.selected_store().unwrap(), MarkerStore::StatusFile);
    let on = runner(&d, XattrMode::On);
    std::fs::write(on.target(), b"").unwrap();
    let want = if xattrs_work(&d) {
        MarkerStore::Xattr
    } else {
        MarkerStore::StatusFile
    };
    assert_eq!(on.selected_store().unwrap(), want);
    assert!(matches!(
        PhaseRunner::new(d.path().join("no/such/x")).selected_store(),
        Err(Error::Io { .. })
    ));
}

#[cfg(unix)]
#[test]
fn the_action_sees_the_descriptor_of_the_held_lock() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Off);
    let lock_path = r.lock_path();
    r.run([Phase::new("a", |ctx| {
        let dup = ctx.lock_fd().try_clone_to_owned()?;
        let held = std::fs::File::from(dup).metadata()?;
        assert_eq!(held.ino(), std::fs::metadata(&lock_path)?.ino());
        Ok(())
    })])
    .unwrap();
    let key = d.path().join("k");
    let ran = crate::once(&key, |ctx| {
        let dup = ctx.lock_fd().try_clone_to_owned()?;
        let held = std::fs::File::from(dup).metadata()?;
        assert_eq!(held.ino(), std::fs::metadata(ctx.lock_path())?.ino());
        Ok(())
    })
    .unwrap();
    assert!(ran.ran());
}

#[test]
fn same_thread_nested_run_is_already_held() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Off);
    let inner = r.clone();
    let err = r
        .run([Phase::new("outer", move |_| {
            inner.run([Phase::new("inner", |_| Ok(()))])?;
            Ok(())
        })])
        .unwrap_err();
    match err {
        Error::ActionFailed { source, .. } => {
            let e = source.downcast_ref::<Error>().expect("a holdfast error");
            assert!(matches!(e, Error::AlreadyHeld { .. }), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn threads_run_each_phase_once() {
    let d = tempfile::tempdir().unwrap();
    let r = runner(&d, XattrMode::Auto);
    let count = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                r.run(["a", "b", "c"].map(|n| {
                    Phase::new(n, |_| {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(())
                    })
                }))
                .unwrap()
            });
        }
    });
    assert_eq!(count.into_inner(), 3);
}
