use super::*;

#[test]
fn tickets_increase_and_the_queue_empties() {
    let d = tempfile::tempdir().unwrap();
    let lock = FifoLock::open(d.path().join("l")).unwrap();
    let a = lock.lock().unwrap().ticket();
    let b = lock.lock().unwrap().ticket();
    assert!(b > a);
    assert_eq!(lock.queue_len().unwrap(), 0);
}

#[test]
fn same_thread_twice_is_an_error_not_a_deadlock() {
    let d = tempfile::tempdir().unwrap();
    let lock = FifoLock::open(d.path().join("l")).unwrap();
    let other = FifoLock::open(d.path().join("l")).unwrap();
    let g = lock.lock().unwrap();
    assert!(matches!(lock.lock(), Err(Error::AlreadyHeld { .. })));
    assert!(matches!(
        other.lock_shared(),
        Err(Error::AlreadyHeld { .. })
    ));
    drop(g);
    drop(other.lock().unwrap());
}

#[test]
fn try_lock_fails_while_a_writer_waits_and_leaves_no_ticket() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoLock::open(&p).unwrap();
    let g = lock.lock_shared().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let l = FifoLock::open(&p).unwrap();
            l.lock().map(|g| g.ticket())
        });
        while lock.queue_len().unwrap() < 2 {
            std::thread::yield_now();
        }
        // A reader would be compatible with the holder, but a writer
        // is queued ahead: no barging.
        // (From another thread: this one holds it, which would be
        // AlreadyHeld.)
        s.spawn(|| {
            let other = FifoLock::open(&p).unwrap();
            assert!(matches!(
                other.try_lock_shared(),
                Err(Error::WouldBlock { .. })
            ));
            assert!(matches!(
                other.lock_shared_timeout(Duration::from_millis(30)),
                Err(Error::Timeout { .. })
            ));
        })
        .join()
        .unwrap();
        assert_eq!(lock.queue_len().unwrap(), 2, "the failed attempts left");
        drop(g);
        assert!(waiter.join().unwrap().is_ok());
    });
}

#[test]
fn the_queue_file_is_removed_when_idle_and_recreated() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let a = FifoLock::open(&p).unwrap();
    let q = a.queue_path().to_owned();
    let b = FifoLock::open(&p).unwrap();
    let g = b.lock().unwrap();
    drop(a);
    assert!(q.exists(), "b holds a ticket");
    drop(g);
    let a = FifoLock::open(&p).unwrap();
    drop(b);
    assert!(!q.exists(), "idle: removed when b left");
    // `a` still has the old file open: it notices and starts a new one.
    let g = a.lock().unwrap();
    assert!(q.exists());
    drop(g);
    drop(a);
    assert!(!q.exists());
    assert!(p.exists(), "the lock file itself stays");
}

#[test]
fn a_foreign_queue_file_is_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    std::fs::write(d.path().join("l.fifo"), b"mine").unwrap();
    assert!(matches!(
        FifoLock::open(&p),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(std::fs::read(d.path().join("l.fifo")).unwrap(), b"mine");
}

/// The queue header is read and patched through a mapping from a
/// description's second ticket on: a peer that cuts the queue file under
/// it must cost a fall back to `pread`/`pwrite`, not a crash, and the
/// header is written whole again.
#[test]
fn a_queue_file_truncated_under_the_mapping_is_rewritten_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoOptions::new()
        .remove_queue_when_idle(false)
        .open(&p)
        .unwrap();
    let q = lock.queue_path().to_owned();
    let first = lock.lock().unwrap().ticket();
    let second = lock.lock().unwrap().ticket(); // mapped from here on
    assert!(second > first);
    for _ in 0..3 {
        std::fs::File::options()
            .write(true)
            .truncate(true)
            .open(&q)
            .unwrap();
        let g = lock.lock().unwrap();
        drop(g);
        let text = std::fs::read_to_string(&q).unwrap();
        assert!(
            text.starts_with("holdfast-queue 1\nkind fifo\n"),
            "{text:?}"
        );
    }
    assert_eq!(lock.queue_len().unwrap(), 0);
}
