//! The public backend traits (`holdfast::backend`) over every primitive:
//! owned guards that exclude other processes, move between threads and
//! are released from another thread than the one that took them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use holdfast::lockfile::{LockFile, Protocol};
use holdfast::{Error, FifoLock, HeldLock, Lock, LockBackend, Mode, Semaphore, Wait};
use holdfast_testkit::{Dir, run_to_end};

const HELPER: &str = env!("CARGO_BIN_EXE_holdfast-helper");
const LONG: Duration = Duration::from_secs(30);

fn helper(args: &[&str]) -> Command {
    let mut c = Command::new(HELPER);
    c.args(args);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Holds `lock` through the trait, checks that a child process cannot
/// have it (`probe` exits non-zero), releases the guard from another
/// thread, and checks that the child then gets it (`probe` exits 0).
fn owned_guard_excludes_a_process_and_is_released_elsewhere<B: LockBackend>(
    lock: &B,
    mode: Mode,
    probe: impl Fn() -> Command,
) {
    let held = lock.acquire(mode, Wait::NoWait).unwrap();
    assert_eq!(held.mode(), mode);
    held.check().unwrap();
    let busy = run_to_end(&mut probe(), LONG);
    assert_ne!(busy.code(), 0, "the child got a held lock: {busy:?}");
    std::thread::spawn(move || held.release())
        .join()
        .unwrap()
        .unwrap();
    let free = run_to_end(&mut probe(), LONG);
    assert_eq!(
        free.code(),
        0,
        "the child could not lock after release: {free:?}"
    );
}

#[test]
fn kernel_lock_owned_guard() {
    let d = Dir::new();
    let p = d.join("k.lock");
    let lock = Lock::open(&p).unwrap();
    owned_guard_excludes_a_process_and_is_released_elsewhere(&lock, Mode::Exclusive, || {
        helper(&["try", s(&p)])
    });
}

#[test]
fn kernel_lock_owned_tokens_grow_and_exclude_borrowed_guards() {
    let d = Dir::new();
    let lock = Lock::open(d.join("k.lock")).unwrap();
    let a = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait).unwrap();
    let t = a.token().unwrap();
    // The same Lock's borrowed guards are excluded too, by the kernel.
    assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
    drop(a);
    let g = lock.try_lock().unwrap();
    assert_eq!(g.token(), Some(t + 1));
    // Waiting for an owned guard while this thread holds a borrowed one
    // would wait for itself.
    assert!(matches!(
        lock.acquire_owned(Mode::Exclusive, Wait::Forever),
        Err(Error::AlreadyHeld { .. })
    ));
    assert!(matches!(
        lock.acquire_owned(Mode::Exclusive, Wait::NoWait),
        Err(Error::WouldBlock { .. })
    ));
    drop(g);
    let b = lock.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap();
    assert_eq!(b.token(), Some(t + 2));
}

#[test]
fn kernel_lock_owned_guard_waits_in_the_kernel_for_another_thread() {
    let d = Dir::new();
    let lock = std::sync::Arc::new(Lock::open(d.join("k.lock")).unwrap());
    let held = lock.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap();
    let l2 = lock.clone();
    let waiter = std::thread::spawn(move || l2.acquire_owned(Mode::Exclusive, Wait::Timeout(LONG)));
    holdfast_testkit::wait_for("the waiter to block in the kernel", LONG, || {
        (!holdfast_testkit::kernel_waiters(&d.join("k.lock")).is_empty()).then_some(())
    });
    held.unlock().unwrap();
    let got = waiter.join().unwrap().unwrap();
    assert_eq!(got.mode(), Mode::Exclusive);
}

#[test]
fn lock_file_owned_guard() {
    for (proto, name) in [
        (Protocol::Soft, "soft"),
        (Protocol::Link, "link"),
        (Protocol::Mkdir, "mkdir"),
    ] {
        let d = Dir::new();
        let p = d.join("f.lock");
        let lock = LockFile::open(&p, proto).unwrap();
        owned_guard_excludes_a_process_and_is_released_elsewhere(&lock, Mode::Exclusive, || {
            helper(&["lf-try", name, s(&p)])
        });
        assert!(matches!(
            LockBackend::acquire(&lock, Mode::Shared, Wait::NoWait),
            Err(Error::Unsupported { .. })
        ));
    }
}

#[test]
fn lock_file_owned_guard_reports_a_broken_lock() {
    let d = Dir::new();
    let p = d.join("f.lock");
    let lock = LockFile::open(&p, Protocol::Soft).unwrap();
    let held = LockBackend::acquire(&lock, Mode::Exclusive, Wait::NoWait).unwrap();
    assert_eq!(held.token(), None);
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(held.check(), Err(Error::Lost { .. })));
    assert!(matches!(held.release(), Err(Error::Lost { .. })));
}

#[test]
fn fifo_owned_guard() {
    let d = Dir::new();
    let p = d.join("q.lock");
    let lock = FifoLock::open(&p).unwrap();
    owned_guard_excludes_a_process_and_is_released_elsewhere(&lock, Mode::Exclusive, || {
        helper(&["fifo-hold", s(&p), "--timeout-ms", "0", "--release-now"])
    });
    let a = LockBackend::acquire(&lock, Mode::Shared, Wait::NoWait).unwrap();
    let b = LockBackend::acquire(&lock, Mode::Shared, Wait::NoWait).unwrap();
    assert_eq!((a.mode(), b.mode()), (Mode::Shared, Mode::Shared));
}

#[test]
fn semaphore_owned_permit() {
    let d = Dir::new();
    let p = d.join("s.sem");
    let one = Semaphore::open(&p, 1).unwrap();
    owned_guard_excludes_a_process_and_is_released_elsewhere(&one, Mode::Exclusive, || {
        helper(&["sem-hold", s(&p), "1", "--timeout-ms", "0"])
    });
    let p3 = d.join("three.sem");
    let three = Semaphore::open(&p3, 3).unwrap();
    assert!(matches!(
        LockBackend::acquire(&three, Mode::Exclusive, Wait::NoWait),
        Err(Error::InvalidInput { .. })
    ));
    let held: Vec<_> = (0..3)
        .map(|_| LockBackend::acquire(&three, Mode::Shared, Wait::NoWait).unwrap())
        .collect();
    assert!(matches!(
        LockBackend::acquire(&three, Mode::Shared, Wait::NoWait),
        Err(Error::WouldBlock { .. })
    ));
    let mut slots: Vec<_> = held.iter().map(|p| p.slot()).collect();
    slots.sort();
    assert_eq!(slots, [0, 1, 2]);
}

#[test]
fn guards_are_send_and_static() {
    fn owned<T: Send + 'static>() {}
    owned::<<Lock as LockBackend>::Guard>();
    owned::<<LockFile as LockBackend>::Guard>();
    owned::<<FifoLock as LockBackend>::Guard>();
    owned::<<Semaphore as LockBackend>::Guard>();
    fn backend<T: LockBackend>() {}
    backend::<Lock>();
    backend::<LockFile>();
    backend::<FifoLock>();
    backend::<Semaphore>();
}
