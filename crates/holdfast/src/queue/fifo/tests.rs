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

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether ticket `t`'s byte is locked by someone, and in which state
/// (`Some(true)`: waiting, write-locked; `Some(false)`: holding).
fn ticket_state(lock: &FifoLock, t: u64) -> Option<bool> {
    let probe = crate::queue::open_queue(lock.queue_path(), 0o644).unwrap();
    crate::sys::range_conflict(
        &probe,
        crate::sys::Range::byte(crate::queue::TICKET_BASE + t, true),
    )
    .unwrap()
    .map(|r| r.exclusive)
}

/// The hand-off protocol's states: a holder's ticket is read-locked, the
/// next in line's write-locked (it waits on the kernel lock), and it turns
/// into the holding state as soon as it holds.
#[test]
fn a_ticket_turns_from_waiting_to_holding_when_its_owner_holds() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoLock::open(&p).unwrap();
    let g = lock.lock().unwrap();
    let t0 = g.ticket();
    assert_eq!(ticket_state(&lock, t0), Some(false), "the holder holds");
    std::thread::scope(|s| {
        let next = s.spawn(|| {
            let other = FifoLock::open(&p).unwrap();
            let g = other.lock().unwrap();
            let t = g.ticket();
            // Holding now: our own ticket reads as holding to others.
            (t, ticket_state(&other, t))
        });
        eventually("the next in line to queue", || {
            lock.queue_len().unwrap() == 2
        });
        assert_eq!(ticket_state(&lock, t0 + 1), Some(true), "it waits");
        drop(g);
        let (t1, state) = next.join().unwrap();
        assert_eq!(t1, t0 + 1);
        assert_eq!(state, Some(false), "it holds");
    });
    assert_eq!(lock.queue_len().unwrap(), 0);
}

/// The next in line gives up (its timeout) while another waits behind it
/// for it to hold: that one must become the next in line and get the lock
/// when the holder lets go.
#[test]
fn when_the_next_in_line_gives_up_the_one_behind_it_moves_up() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoLock::open(&p).unwrap();
    let g = lock.lock().unwrap();
    std::thread::scope(|s| {
        let quitter = s.spawn(|| {
            let l = FifoLock::open(&p).unwrap();
            l.lock_timeout(Duration::from_millis(300)).map(drop)
        });
        eventually("the quitter to queue", || lock.queue_len().unwrap() == 2);
        let patient = s.spawn(|| {
            let l = FifoLock::open(&p).unwrap();
            l.lock().map(|g| g.ticket())
        });
        eventually("the patient one to queue", || {
            lock.queue_len().unwrap() == 3
        });
        assert!(matches!(
            quitter.join().unwrap(),
            Err(Error::Timeout { .. })
        ));
        // Still held: the patient one waits, now as the next in line.
        eventually("the quitter to leave", || lock.queue_len().unwrap() == 2);
        assert!(!patient.is_finished());
        drop(g);
        assert!(patient.join().unwrap().is_ok());
    });
}

/// An older holdfast holds a ticket write-locked for the whole of its hold
/// (and waits until its predecessor leaves). A waiter of this version
/// behind such a holder takes its ticket for a waiting one, waits for it
/// to hold or leave, and gets the lock after it: no deadlock, no overlap.
#[test]
fn a_holder_of_the_older_protocol_is_waited_for() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoLock::open(&p).unwrap();
    // The older holder, by hand: ticket 0 write-locked, then the kernel
    // lock, on descriptions of its own.
    let q = crate::queue::open_queue(lock.queue_path(), 0o644).unwrap();
    let t0 = crate::sys::Range::byte(crate::queue::TICKET_BASE, true);
    assert!(crate::sys::range_lock(&q, t0, false).unwrap());
    let main = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    main.lock().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| lock.lock().map(|g| g.ticket()));
        eventually("the waiter to queue", || {
            ticket_state(&lock, 1) == Some(true)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "got in while the older holder held");
        // The older version releases: the kernel lock, then its ticket.
        main.unlock().unwrap();
        crate::sys::range_unlock(&q, crate::queue::TICKET_BASE, 1).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 1);
    });
}

/// From a description's second acquisition on, "is the queue file still
/// the one at the path?" and "is the lock file?" are answered by the
/// process's inotify watch instead of a `statx`: removing the idle queue
/// file, or renaming a new lock file over the old one, must still be
/// noticed at the next acquisition.
#[test]
fn removed_queue_and_replaced_lock_files_are_noticed_through_the_watch() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("l");
    let lock = FifoLock::open(&p).unwrap();
    for _ in 0..3 {
        drop(lock.lock().unwrap()); // the watches are set up by now
    }
    // Another FifoLock leaves and removes the idle queue file.
    drop(FifoLock::open(&p).unwrap());
    assert!(!lock.queue_path().exists());
    let g = lock.lock().unwrap();
    assert!(lock.queue_path().exists(), "a new queue file at the path");
    let other = FifoLock::open(&p).unwrap();
    assert_eq!(
        other.queue_len().unwrap(),
        1,
        "our ticket is in the new file"
    );
    assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
    drop(g);
    // The lock file replaced by a rename: the next hold is on the new one.
    let fresh = d.path().join("fresh");
    std::fs::write(&fresh, b"").unwrap();
    std::fs::rename(&fresh, &p).unwrap();
    let _g = lock.lock().unwrap();
    let plain = crate::Lock::open(&p).unwrap();
    assert!(
        matches!(plain.try_lock(), Err(Error::WouldBlock { .. })),
        "the file at the path is the one held"
    );
}
