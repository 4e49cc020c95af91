//! The public backend traits (`holdfast::backend`) over every primitive:
//! owned guards that exclude other processes, move between threads and
//! are released from another thread than the one that took them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use holdfast::lockfile::{LockFile, Protocol};
use holdfast::{Error, FifoLock, HeldLock, Lock, LockBackend, Mode, Semaphore, Wait};
use holdfast_testkit::{Dir, path_str as s, run_to_end};

use crate::common::{LONG, helper};

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

// ---------------------------------------------------------------------
// PhaseRunner::run_with and RunOnce::run_with: the same tests over the
// file backends and an in-memory backend that implements the traits.
// ---------------------------------------------------------------------

mod mem {
    //! An in-memory lock and completion store: the test double a backend
    //! crate would write, and the proof that the traits are all a backend
    //! needs. The store fences `mark_done` under the lock's own mutex, as
    //! etcd or SQL would in one transaction.

    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Instant;

    use holdfast::{CompletionStore, Error, HeldLock, Holders, LockBackend, Mode, Result, Wait};

    #[derive(Default)]
    struct State {
        holder: Option<u64>,
        last_token: u64,
    }

    #[derive(Default)]
    struct Shared {
        state: Mutex<State>,
        changed: Condvar,
    }

    pub struct MemLock {
        name: PathBuf,
        shared: Arc<Shared>,
    }

    impl MemLock {
        pub fn new(name: &str) -> MemLock {
            MemLock {
                name: PathBuf::from(format!("mem://{name}")),
                shared: Arc::default(),
            }
        }
        /// The lease ran out: whoever held it no longer does.
        pub fn revoke(&self) {
            self.shared.state.lock().unwrap().holder = None;
            self.shared.changed.notify_all();
        }
    }

    pub struct MemGuard {
        name: PathBuf,
        shared: Arc<Shared>,
        token: u64,
        released: bool,
    }

    impl LockBackend for MemLock {
        type Guard = MemGuard;
        fn location(&self) -> &Path {
            &self.name
        }
        fn acquire(&self, mode: Mode, wait: Wait) -> Result<MemGuard> {
            if mode != Mode::Exclusive {
                return Err(Error::Unsupported {
                    path: self.name.clone(),
                    what: "shared holds",
                    reason: "the test backend is exclusive only".into(),
                });
            }
            let started = Instant::now();
            let deadline = match wait {
                Wait::Timeout(d) => Some(started + d),
                Wait::Deadline(d) => Some(d),
                _ => None,
            };
            let mut st = self.shared.state.lock().unwrap();
            loop {
                if st.holder.is_none() {
                    st.last_token += 1;
                    st.holder = Some(st.last_token);
                    return Ok(MemGuard {
                        name: self.name.clone(),
                        shared: self.shared.clone(),
                        token: st.last_token,
                        released: false,
                    });
                }
                let timed_out = |waited| Error::Timeout {
                    path: self.name.clone(),
                    mode,
                    waited,
                    holders: Holders::new(),
                };
                st = match (wait, deadline) {
                    (Wait::NoWait, _) => {
                        return Err(Error::WouldBlock {
                            path: self.name.clone(),
                            mode,
                            holders: Holders::new(),
                        });
                    }
                    (_, Some(d)) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(timed_out(started.elapsed()));
                        }
                        self.shared.changed.wait_timeout(st, d - now).unwrap().0
                    }
                    (_, None) => self.shared.changed.wait(st).unwrap(),
                };
            }
        }
    }

    impl MemGuard {
        fn lost(&self) -> Error {
            Error::Lost {
                path: self.name.clone(),
                reason: format!("token {} was revoked", self.token),
            }
        }
        fn still_held(&self, st: &State) -> Result<()> {
            if st.holder == Some(self.token) {
                Ok(())
            } else {
                Err(self.lost())
            }
        }
    }

    impl HeldLock for MemGuard {
        fn mode(&self) -> Mode {
            Mode::Exclusive
        }
        fn token(&self) -> Option<u64> {
            Some(self.token)
        }
        fn check(&self) -> Result<()> {
            self.still_held(&self.shared.state.lock().unwrap())
        }
        fn release(mut self) -> Result<()> {
            self.released = true;
            let mut st = self.shared.state.lock().unwrap();
            self.still_held(&st)?;
            st.holder = None;
            self.shared.changed.notify_all();
            Ok(())
        }
    }

    impl Drop for MemGuard {
        fn drop(&mut self) {
            if !self.released {
                let mut st = self.shared.state.lock().unwrap();
                if st.holder == Some(self.token) {
                    st.holder = None;
                    self.shared.changed.notify_all();
                }
            }
        }
    }

    pub struct MemStore {
        lock: Arc<Shared>,
        done: Mutex<Vec<String>>,
    }

    impl MemStore {
        pub fn new(lock: &MemLock) -> MemStore {
            MemStore {
                lock: lock.shared.clone(),
                done: Mutex::default(),
            }
        }
    }

    impl CompletionStore<MemGuard> for MemStore {
        fn is_done(&self, key: &str) -> Result<bool> {
            Ok(self.done.lock().unwrap().iter().any(|k| k == key))
        }
        fn done_keys(&self) -> Result<Vec<String>> {
            Ok(self.done.lock().unwrap().clone())
        }
        fn mark_done(&self, key: &str, held: &MemGuard) -> Result<()> {
            // The fence: checked and written under the lock's own mutex.
            let st = self.lock.state.lock().unwrap();
            held.still_held(&st)?;
            let mut done = self.done.lock().unwrap();
            if !done.iter().any(|k| k == key) {
                done.push(key.to_owned());
            }
            Ok(())
        }
        fn clear(&self, key: &str) -> Result<bool> {
            let mut done = self.done.lock().unwrap();
            let n = done.len();
            done.retain(|k| k != key);
            Ok(done.len() != n)
        }
    }
}

/// A backend and a store to run phases and run-once over, and a way to
/// make a held lock lost (where the backend can lose one).
trait Fixture: Sync {
    type L: LockBackend;
    type S: holdfast::CompletionStore<<Self::L as LockBackend>::Guard>;
    fn lock(&self) -> &Self::L;
    fn store(&self) -> &Self::S;
    /// Makes the current holder lose the lock; false if this backend
    /// cannot lose a held lock.
    fn lose(&self) -> bool;
}

struct Files<L> {
    _dir: Dir,
    lock_path: std::path::PathBuf,
    lock: L,
    store: holdfast::phase::StatusFileStore,
    losable: bool,
}

impl<L: LockBackend> Fixture for Files<L>
where
    holdfast::phase::StatusFileStore: holdfast::CompletionStore<L::Guard>,
{
    type L = L;
    type S = holdfast::phase::StatusFileStore;
    fn lock(&self) -> &L {
        &self.lock
    }
    fn store(&self) -> &Self::S {
        &self.store
    }
    fn lose(&self) -> bool {
        if self.losable {
            let _ = std::fs::remove_file(&self.lock_path);
            let _ = std::fs::remove_dir_all(&self.lock_path);
        }
        self.losable
    }
}

fn files<L>(open: impl FnOnce(&Path) -> L, losable: bool) -> Files<L> {
    let dir = Dir::new();
    let lock_path = dir.join("target.lock");
    let lock = open(&lock_path);
    let store = holdfast::phase::StatusFileStore::new(dir.join("target.status"));
    Files {
        _dir: dir,
        lock_path,
        lock,
        store,
        losable,
    }
}

struct Xattrs {
    _dir: Dir,
    lock_path: std::path::PathBuf,
    lock: Lock,
    store: holdfast::phase::XattrStore,
}

impl Fixture for Xattrs {
    type L = Lock;
    type S = holdfast::phase::XattrStore;
    fn lock(&self) -> &Lock {
        &self.lock
    }
    fn store(&self) -> &Self::S {
        &self.store
    }
    fn lose(&self) -> bool {
        std::fs::remove_file(&self.lock_path).unwrap();
        true
    }
}

/// `None` where the filesystem has no user xattrs.
fn xattrs() -> Option<Xattrs> {
    let dir = Dir::new();
    let target = dir.join("target");
    std::fs::write(&target, b"").unwrap();
    let probe = Command::new("setfattr")
        .args(["-n", "user.probe", "-v", "1", s(&target)])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping the xattr store: no setfattr or no user xattrs here");
        return None;
    }
    let lock_path = dir.join("target.lock");
    let lock = Lock::open(&lock_path).unwrap();
    Some(Xattrs {
        _dir: dir,
        lock_path,
        lock,
        store: holdfast::phase::XattrStore::new(target),
    })
}

struct Mem {
    lock: mem::MemLock,
    store: mem::MemStore,
}

impl Fixture for Mem {
    type L = mem::MemLock;
    type S = mem::MemStore;
    fn lock(&self) -> &mem::MemLock {
        &self.lock
    }
    fn store(&self) -> &mem::MemStore {
        &self.store
    }
    fn lose(&self) -> bool {
        self.lock.revoke();
        true
    }
}

fn in_memory() -> Mem {
    let lock = mem::MemLock::new("phases");
    let store = mem::MemStore::new(&lock);
    Mem { lock, store }
}

mod generic {
    //! The tests every fixture runs.

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use holdfast::once::{OnceOutcome, RunOnce};
    use holdfast::phase::{Phase, PhaseRunner};
    use holdfast::{CompletionStore, Error, LockBackend, Wait};

    use super::{Fixture, LONG};

    fn runner() -> PhaseRunner {
        let mut r = PhaseRunner::new("target");
        r.wait(Wait::Timeout(LONG));
        r
    }

    pub fn phases_run_in_order_then_are_skipped<F: Fixture>(f: &F) {
        let log = Mutex::new(Vec::new());
        let r = runner();
        let report = r
            .run_with(
                f.lock(),
                f.store(),
                ["a", "b", "c"].map(|n| {
                    let log = &log;
                    Phase::new(n, move |ctx| {
                        log.lock().unwrap().push(ctx.name().to_owned());
                        Ok(())
                    })
                }),
            )
            .unwrap();
        assert_eq!(report.completed, ["a", "b", "c"]);
        assert!(report.locked);
        assert_eq!(report.lock_path, f.lock().location());
        assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(f.store().done_keys().unwrap(), ["a", "b", "c"]);
        let again = r
            .run_with(
                f.lock(),
                f.store(),
                ["a", "b", "c"].map(|n| Phase::new(n, |_| panic!("ran a done phase"))),
            )
            .unwrap();
        assert_eq!(again.skipped, ["a", "b", "c"]);
        assert!(!again.locked, "all done: the lock is not even taken");
    }

    pub fn a_failed_phase_is_not_marked_and_the_next_run_resumes_there<F: Fixture>(f: &F) {
        let r = runner();
        let err = r
            .run_with(
                f.lock(),
                f.store(),
                [
                    Phase::new("a", |_| Ok(())),
                    Phase::new("b", |_| Err("disk full".into())),
                    Phase::new("c", |_| panic!("ran after a failure")),
                ],
            )
            .unwrap_err();
        assert!(
            matches!(&err, Error::ActionFailed { name, .. } if name == "b"),
            "{err}"
        );
        assert_eq!(f.store().done_keys().unwrap(), ["a"]);
        let r2 = r
            .run_with(
                f.lock(),
                f.store(),
                [
                    Phase::new("a", |_| panic!("a is done")),
                    Phase::new("b", |_| Ok(())),
                    Phase::new("c", |_| Ok(())),
                ],
            )
            .unwrap();
        assert_eq!(
            (r2.skipped, r2.completed),
            (vec!["a".into()], vec!["b".into(), "c".into()])
        );
    }

    pub fn concurrent_runners_run_each_phase_exactly_once<F: Fixture>(f: &F) {
        let inside = AtomicBool::new(false);
        let runs = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    runner()
                        .run_with(
                            f.lock(),
                            f.store(),
                            ["x", "y"].map(|n| {
                                let (inside, runs) = (&inside, &runs);
                                Phase::new(n, move |_| {
                                    assert!(!inside.swap(true, Ordering::SeqCst), "overlap");
                                    runs.fetch_add(1, Ordering::SeqCst);
                                    std::thread::sleep(std::time::Duration::from_millis(5));
                                    inside.store(false, Ordering::SeqCst);
                                    Ok(())
                                })
                            }),
                        )
                        .unwrap();
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    pub fn a_runner_that_lost_its_lock_marks_nothing<F: Fixture>(f: &F) {
        let mut losable = true;
        let err = runner()
            .run_with(
                f.lock(),
                f.store(),
                [Phase::new("a", |_| {
                    losable = f.lose();
                    Ok(())
                })],
            )
            .map(|_| ());
        if !losable {
            return;
        }
        assert!(matches!(err, Err(Error::Lost { .. })), "{err:?}");
        assert!(f.store().done_keys().unwrap().is_empty());
    }

    pub fn once_runs_once_across_threads<F: Fixture>(f: &F) {
        let runs = AtomicU32::new(0);
        let outcomes: Vec<OnceOutcome> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        RunOnce::new("init")
                            .run_with(f.lock(), f.store(), |ctx| {
                                assert_eq!(ctx.target(), std::path::Path::new("init"));
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(5));
                                Ok(())
                            })
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(outcomes.iter().filter(|o| o.ran()).count(), 1);
        assert!(f.store().is_done("init").unwrap());
        assert_eq!(
            RunOnce::new("init")
                .run_with(f.lock(), f.store(), |_| panic!("ran twice"))
                .unwrap(),
            OnceOutcome::AlreadyDone { waited: false }
        );
    }

    pub fn once_failure_records_nothing<F: Fixture>(f: &F) {
        let once = RunOnce::new("k");
        let err = once
            .run_with(f.lock(), f.store(), |_| Err("network down".into()))
            .unwrap_err();
        assert!(matches!(err, Error::ActionFailed { .. }), "{err}");
        assert!(!f.store().is_done("k").unwrap());
        assert!(
            once.run_with(f.lock(), f.store(), |_| Ok(()))
                .unwrap()
                .ran()
        );
    }

    pub fn once_that_lost_its_lock_records_nothing<F: Fixture>(f: &F) {
        let mut losable = true;
        let r = RunOnce::new("k").run_with(f.lock(), f.store(), |_| {
            losable = f.lose();
            Ok(())
        });
        if !losable {
            return;
        }
        assert!(matches!(r, Err(Error::Lost { .. })), "{r:?}");
        assert!(!f.store().is_done("k").unwrap());
    }
}

macro_rules! generic_tests {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn phases_run_in_order_then_are_skipped() {
                if let Some(f) = $make {
                    generic::phases_run_in_order_then_are_skipped(&f);
                }
            }
            #[test]
            fn a_failed_phase_is_not_marked_and_the_next_run_resumes_there() {
                if let Some(f) = $make {
                    generic::a_failed_phase_is_not_marked_and_the_next_run_resumes_there(&f);
                }
            }
            #[test]
            fn concurrent_runners_run_each_phase_exactly_once() {
                if let Some(f) = $make {
                    generic::concurrent_runners_run_each_phase_exactly_once(&f);
                }
            }
            #[test]
            fn a_runner_that_lost_its_lock_marks_nothing() {
                if let Some(f) = $make {
                    generic::a_runner_that_lost_its_lock_marks_nothing(&f);
                }
            }
            #[test]
            fn once_runs_once_across_threads() {
                if let Some(f) = $make {
                    generic::once_runs_once_across_threads(&f);
                }
            }
            #[test]
            fn once_failure_records_nothing() {
                if let Some(f) = $make {
                    generic::once_failure_records_nothing(&f);
                }
            }
            #[test]
            fn once_that_lost_its_lock_records_nothing() {
                if let Some(f) = $make {
                    generic::once_that_lost_its_lock_records_nothing(&f);
                }
            }
        }
    };
}

generic_tests!(
    kernel_lock_and_status_file,
    Some(files(|p| Lock::open(p).unwrap(), true))
);
generic_tests!(kernel_lock_and_xattrs, xattrs());
generic_tests!(
    link_lock_file_and_status_file,
    Some(files(|p| LockFile::open(p, Protocol::Link).unwrap(), true))
);
generic_tests!(
    mkdir_lock_file_and_status_file,
    Some(files(|p| LockFile::open(p, Protocol::Mkdir).unwrap(), true))
);
generic_tests!(
    fifo_and_status_file,
    Some(files(|p| FifoLock::open(p).unwrap(), false))
);
generic_tests!(
    one_permit_semaphore_and_status_file,
    Some(files(|p| Semaphore::open(p, 1).unwrap(), false))
);
generic_tests!(in_memory_backend, Some(in_memory()));

#[test]
fn run_with_over_the_target_files_is_what_phase_runner_run_reads() {
    use holdfast::phase::{Phase, PhaseRunner, StatusFileStore, XattrMode};
    let d = Dir::new();
    let target = d.join("app.db");
    let lock = Lock::open(d.join("app.db.lock")).unwrap();
    let store = StatusFileStore::new(d.join("app.db.status"));
    let mut runner = PhaseRunner::new(&target);
    runner.xattrs(XattrMode::Off);
    runner
        .run_with(&lock, &store, [Phase::new("schema-v1", |_| Ok(()))])
        .unwrap();
    let r = runner
        .run([
            Phase::new("schema-v1", |_| panic!("marked by run_with")),
            Phase::new("optimize-v1", |_| Ok(())),
        ])
        .unwrap();
    assert_eq!(
        (r.skipped, r.completed),
        (vec!["schema-v1".into()], vec!["optimize-v1".into()])
    );
    assert!(store.is_done("optimize-v1").unwrap());
}

/// The bounded-poll fallback of the one kernel wait (`HOLDFAST_WAITER=poll`
/// forces it, as a kernel without pidfds or a sandbox that forbids the
/// waiter task would): every primitive still times out on time, and a
/// waiter still gets the lock once it is released.
#[test]
fn every_primitive_waits_through_the_polling_fallback() {
    let d = Dir::new();
    let k = d.join("k.lock");
    let q = d.join("q.lock");
    let s3 = d.join("s.sem");
    let f = d.join("f.lock");
    let polling = |args: &[&str]| {
        let mut c = helper(args);
        c.env("HOLDFAST_WAITER", "poll");
        c
    };
    let kernel = Lock::open(&k).unwrap();
    let fifo = FifoLock::open(&q).unwrap();
    let sem = Semaphore::open(&s3, 1).unwrap();
    let file = LockFile::open(&f, Protocol::Soft).unwrap();
    let held = (
        kernel.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap(),
        fifo.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap(),
        sem.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap(),
        file.acquire_owned(Mode::Exclusive, Wait::NoWait).unwrap(),
    );
    let probes: [&[&str]; 4] = [
        &["try", s(&k), "--timeout-ms", "150"],
        &["fifo-hold", s(&q), "--timeout-ms", "150", "--release-now"],
        &["sem-hold", s(&s3), "1", "--timeout-ms", "150"],
        &["lf-try", "soft", s(&f), "--timeout-ms", "150"],
    ];
    for p in probes {
        let out = run_to_end(&mut polling(p), LONG);
        assert_eq!(out.code(), 11, "{p:?} should time out: {out:?}");
    }
    let mut waiters: Vec<holdfast_testkit::Child> = [
        &["hold", s(&k), "--timeout-ms", "30000"][..],
        &["fifo-hold", s(&q), "--timeout-ms", "30000"],
        &["sem-hold", s(&s3), "1", "--timeout-ms", "30000"],
    ]
    .iter()
    .map(|a| holdfast_testkit::Child::spawn(polling(a)))
    .collect();
    drop(held);
    for w in &mut waiters {
        let line = w.line(LONG);
        assert!(
            line.starts_with("locked") || line.starts_with("acquired"),
            "{line}"
        );
        w.close_stdin();
    }
}

/// Issue 10 item 15: one vocabulary across primitives. `acquire(mode,
/// wait)` and `lock`/`try_lock`/`lock_timeout` everywhere, `unlock` on
/// every guard; a *try* by the thread that holds the lock is WouldBlock
/// (as std's `try_lock`), a *wait* by it is AlreadyHeld; `LockStatus`
/// prints; `Protocol` and `Compat` at the root.
#[test]
fn one_vocabulary_for_every_primitive() {
    use holdfast::{Compat, Protocol as RootProtocol};
    let d = Dir::new();
    let short = Duration::from_millis(20);

    let lock = Lock::open(d.join("k")).unwrap();
    let g = lock.acquire(Mode::Exclusive, Wait::NoWait).unwrap();
    assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(
        lock.lock_timeout(short),
        Err(Error::AlreadyHeld { .. })
    ));
    let other = Lock::open(d.join("k")).unwrap();
    assert!(matches!(other.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(
        other.lock_timeout(short),
        Err(Error::AlreadyHeld { .. })
    ));
    g.unlock().unwrap();

    let fifo = FifoLock::open(d.join("q")).unwrap();
    let g = fifo.acquire(Mode::Exclusive, Wait::NoWait).unwrap();
    assert!(matches!(fifo.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(
        fifo.lock_timeout(short),
        Err(Error::AlreadyHeld { .. })
    ));
    g.unlock().unwrap();

    let file = LockFile::open(d.join("f.lock"), RootProtocol::Soft).unwrap();
    let g = file.acquire(Mode::Exclusive, Wait::NoWait).unwrap();
    assert!(matches!(file.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(
        file.lock_timeout(short),
        Err(Error::AlreadyHeld { .. })
    ));
    assert!(matches!(
        file.acquire(Mode::Shared, Wait::NoWait),
        Err(Error::Unsupported { .. })
    ));
    g.unlock().unwrap();
    let flufl = LockFile::options(RootProtocol::Link)
        .compat(Compat::Flufl)
        .open(d.join("l.lock"))
        .unwrap();
    flufl.lock().unwrap().unlock().unwrap();

    let sem = Semaphore::open(d.join("s"), 1).unwrap();
    let p = sem.acquire(Mode::Shared, Wait::NoWait).unwrap();
    assert!(matches!(sem.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(
        sem.lock_timeout(short),
        Err(Error::Timeout { .. })
    ));
    p.unlock().unwrap();
    sem.lock().unwrap().unlock().unwrap();

    let path = d.join("k");
    assert!(
        holdfast::status(&path)
            .unwrap()
            .to_string()
            .ends_with("k: free")
    );
    let _g = lock.lock().unwrap();
    let line = holdfast::status(&path).unwrap().to_string();
    assert!(line.contains("k: exclusive, held by"), "{line}");
}
