use super::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn non_reentrant_same_thread_is_an_error_not_a_deadlock() {
    let d = tmp();
    let lock = Lock::open(d.path().join("l")).unwrap();
    let _g = lock.lock().unwrap();
    assert!(matches!(lock.lock(), Err(Error::AlreadyHeld { .. })));
    // A try never waits, so it is told "would block" (issue 10 item
    // 15: one rule for every primitive, as std's try_lock).
    assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
    // Through a second Lock value on the same file: the kernel would
    // block forever; holdfast refuses.
    let other = Lock::open(d.path().join("l")).unwrap();
    assert!(matches!(other.lock(), Err(Error::AlreadyHeld { .. })));
    assert!(matches!(
        other.lock_timeout(Duration::from_secs(5)),
        Err(Error::AlreadyHeld { .. })
    ));
    assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
}

#[test]
fn reentrant_counts_nesting() {
    let d = tmp();
    let lock = Lock::options()
        .reentrant(true)
        .open(d.path().join("l"))
        .unwrap();
    let other = Lock::open(d.path().join("l")).unwrap();
    let g1 = lock.lock().unwrap();
    let g2 = lock.lock().unwrap();
    assert!(g1.token().is_some());
    assert!(g2.token().is_none());
    drop(g1);
    assert!(other.try_lock().is_err(), "still held by the nested guard");
    drop(g2);
    drop(other.try_lock().unwrap());
}

#[test]
fn tokens_grow_by_one() {
    let d = tmp();
    let lock = Lock::open(d.path().join("l")).unwrap();
    let a = lock.lock().unwrap().token().unwrap();
    let b = lock.lock().unwrap().token().unwrap();
    let again = Lock::open(d.path().join("l")).unwrap();
    let c = again.lock().unwrap().token().unwrap();
    assert_eq!((b, c), (a + 1, a + 2));
}

#[test]
fn foreign_content_is_never_overwritten() {
    let d = tmp();
    let p = d.path().join("data");
    std::fs::write(&p, b"precious user data").unwrap();
    let lock = Lock::open(&p).unwrap();
    let g = lock.lock().unwrap();
    assert_eq!(g.token(), None);
    drop(g);
    assert_eq!(std::fs::read(&p).unwrap(), b"precious user data");
}

#[test]
fn corrupt_record_means_unknown_holder_and_a_larger_token() {
    let d = tmp();
    let p = d.path().join("l");
    std::fs::write(&p, b"holdfast-holder 1\ntoken 5\npid 1\n").unwrap();
    let lock = Lock::open(&p).unwrap();
    let t = lock.lock().unwrap().token().unwrap();
    assert!(t > 1_000_000, "jumped to the clock: {t}");
}

#[test]
fn a_replaced_file_is_reopened() {
    let d = tmp();
    let p = d.path().join("l");
    let lock = Lock::open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let _g = lock.lock().unwrap();
    // The lock we hold is on the file now at the path.
    let other = Lock::open(&p).unwrap();
    assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
}

#[test]
fn directories_lock_like_flock1() {
    let d = tmp();
    let a = Lock::open(d.path()).unwrap();
    let b = Lock::open(d.path()).unwrap();
    let g = a.lock().unwrap();
    assert_eq!(g.token(), None);
    assert!(b.try_lock().is_err());
}

#[test]
fn from_fd_shares_the_description_and_force_unlock_releases_it() {
    let d = tmp();
    let p = d.path().join("l");
    let file = File::create(&p).unwrap();
    let copy = file.try_clone().unwrap();
    let lock = Lock::from_fd(file.into()).unwrap();
    assert_eq!(lock.path(), std::fs::canonicalize(&p).unwrap());
    let g = lock.try_lock().unwrap();
    assert_eq!(g.token(), None, "no record through a borrowed descriptor");
    assert!(matches!(
        lock.force_unlock(),
        Err(Error::InvalidInput { .. })
    ));
    std::mem::forget(g);
    drop(lock);
    let other = Lock::open(&p).unwrap();
    assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
    assert_eq!(std::fs::read(&p).unwrap(), b"", "nothing written");
    Lock::from_fd(copy.into()).unwrap().force_unlock().unwrap();
    let _g = other.try_lock().unwrap();
}

#[test]
fn empty_path_is_invalid_input() {
    assert!(matches!(Lock::open(""), Err(Error::InvalidInput { .. })));
}

#[test]
fn flock_upgrade_and_downgrade() {
    let d = tmp();
    let lock = Lock::open(d.path().join("l")).unwrap();
    let other = Lock::open(d.path().join("l")).unwrap();
    let mut g = lock.lock_shared().unwrap();
    let r = other.lock_shared().unwrap();
    assert!(g.try_upgrade().is_err());
    assert_eq!(g.mode(), Mode::Shared);
    drop(r);
    // Still shared-held after the failed upgrade.
    assert!(other.try_lock().is_err());
    g.upgrade(Wait::Timeout(Duration::from_secs(5))).unwrap();
    assert!(other.try_lock_shared().is_err());
    g.downgrade().unwrap();
    let _r = other.try_lock_shared().unwrap();
}
