use super::*;

#[test]
fn n_permits_then_would_block_naming_holders() {
    let d = tempfile::tempdir().unwrap();
    let sem = Semaphore::open(d.path().join("s"), 3).unwrap();
    let ps: Vec<_> = (0..3).map(|_| sem.lock().unwrap()).collect();
    let mut slots: Vec<usize> = ps.iter().map(|p| p.slot()).collect();
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2]);
    match sem.try_lock() {
        Err(Error::WouldBlock { holders, .. }) => {
            assert!(holders.iter().any(|h| h.this_process), "{holders}");
        }
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    assert_eq!(sem.available().unwrap(), 0);
    drop(ps);
    assert_eq!(sem.available().unwrap(), 3);
}

#[test]
fn a_blocked_acquire_gets_the_first_released_slot() {
    let d = tempfile::tempdir().unwrap();
    let sem = Semaphore::open(d.path().join("s"), 3).unwrap();
    let mut ps: Vec<_> = (0..3).map(|_| Some(sem.lock().unwrap())).collect();
    std::thread::scope(|s| {
        let w = s.spawn(|| sem.lock_timeout(Duration::from_secs(30)).map(|p| p.slot()));
        // Wait until the waiter is queued (its ticket is live).
        let probe = queue::open_queue(sem.path(), 0o644).unwrap();
        while queue::live_tickets(&probe).unwrap() < 1 {
            std::thread::yield_now();
        }
        let freed = ps[1].take().unwrap().slot();
        assert_eq!(w.join().unwrap().unwrap(), freed);
    });
}

#[test]
fn permits_must_agree() {
    let d = tempfile::tempdir().unwrap();
    let _a = Semaphore::open(d.path().join("s"), 2).unwrap();
    assert!(matches!(
        Semaphore::open(d.path().join("s"), 3),
        Err(Error::InvalidInput { .. })
    ));
    assert!(
        d.path().join("s").exists(),
        "a refused open removes nothing"
    );
    assert!(matches!(
        Semaphore::open(d.path().join("t"), 0),
        Err(Error::InvalidInput { .. })
    ));
}
