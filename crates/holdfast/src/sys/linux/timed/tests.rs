//! Tests of the timer way: each failure mode of the mechanism.

use super::*;
use crate::sys::linux::waiter::tests::blocked_on;
use std::sync::mpsc;

fn whole() -> LockReq {
    LockReq::Whole {
        backend: Backend::Flock,
        mode: Mode::Exclusive,
    }
}

/// A lock file in `d` and another description holding it.
fn held(d: &std::path::Path) -> (std::path::PathBuf, File) {
    let p = d.join("l");
    std::fs::write(&p, b"").unwrap();
    let other = File::options().read(true).write(true).open(&p).unwrap();
    rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    (p, other)
}

fn open(p: &std::path::Path) -> File {
    File::options().read(true).write(true).open(p).unwrap()
}

/// Whether `file`'s description holds the lock: no other description
/// can take it.
fn holds(p: &std::path::Path) -> bool {
    rustix::fs::flock(
        open(p),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .is_err()
}

/// Whether our signal is pending for this thread or the process.
fn pending() -> bool {
    // SAFETY: sigset_t is plain data filled in by sigpending.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    unsafe { libc::sigpending(&mut set) };
    // SAFETY: `set` was filled in above.
    unsafe { libc::sigismember(&set, timer_signal()) == 1 }
}

/// The timer way is the one taken here (x86-64, nobody else's signal).
fn available() -> bool {
    SUPPORTED && our_signal().is_some()
}

/// A timed wait that is not granted returns at its deadline, never
/// before; it holds nothing, and neither its timer nor its signal
/// outlives it.
#[test]
fn a_wait_that_is_not_granted_ends_at_its_deadline_and_holds_nothing() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, other) = held(d.path());
    let mine = open(&p);
    let t = Instant::now();
    let deadline = t + Duration::from_millis(150);
    let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
    assert!(!got.unwrap(), "granted while held elsewhere");
    assert!(Instant::now() >= deadline, "returned early");
    assert!(t.elapsed() < Duration::from_secs(10), "far too late");
    assert!(available());
    assert!(!pending(), "a timer signal outlived the wait");
    drop(other);
    assert!(!holds(&p), "the timed-out wait holds the lock");
}

/// A grant ends the wait at once with the lock held, and no signal
/// comes after it: a sleep past the old deadline is not interrupted.
#[test]
fn a_grant_ends_the_wait_and_no_signal_follows() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, other) = held(d.path());
    let mine = open(&p);
    let deadline = Instant::now() + Duration::from_millis(300);
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
            // Sleep past the deadline: EINTR would mean a stray signal.
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 500_000_000,
            };
            // SAFETY: valid timespec; no remainder asked.
            let slept = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            (got.unwrap(), slept, Instant::now() >= deadline)
        });
        let t = Instant::now();
        while !blocked_on(&p) {
            assert!(t.elapsed().as_secs() < 30, "the wait never blocked");
            std::thread::yield_now();
        }
        drop(other);
        let (got, slept, past) = w.join().unwrap();
        assert!(got, "not granted");
        assert!(past);
        assert_eq!(slept, 0, "the sleep after the wait was interrupted");
    });
    assert!(holds(&p), "granted but not held");
}

/// A thread that blocks every signal still times out on time (the
/// signal is unblocked for the wait), and its mask is as it was after.
#[test]
fn a_thread_blocking_all_signals_times_out_and_keeps_its_mask() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, _other) = held(d.path());
    let mine = open(&p);
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: sigset_t is plain data; sigfillset initialises it.
            let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers; this thread's own mask.
            unsafe {
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
            assert!(!got.unwrap());
            assert!(Instant::now() >= deadline, "returned early");
            // SAFETY: as above.
            let mut now: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: reads this thread's mask into a valid set.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
            // SAFETY: `now` was filled in above.
            let blocked = unsafe { libc::sigismember(&now, timer_signal()) };
            assert_eq!(blocked, 1, "the signal was left unblocked");
        })
        .join()
        .unwrap();
    });
}

/// Signals of our number sent by someone else (here: every
/// millisecond) neither end a wait early nor lose a grant.
#[test]
fn stray_signals_neither_end_a_wait_early_nor_lose_a_grant() {
    if !SUPPORTED {
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicI32};
    let d = tempfile::tempdir().unwrap();
    for grant in [false, true] {
        let (p, other) = held(d.path());
        let mine = open(&p);
        let tid = AtomicI32::new(0);
        let done = AtomicBool::new(false);
        let stopped = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_millis(400);
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                tid.store(
                    rustix::thread::gettid().as_raw_nonzero().get(),
                    Ordering::SeqCst,
                );
                let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
                let at = Instant::now();
                done.store(true, Ordering::SeqCst);
                // Live until the last signal was sent (its id must not
                // be reused by another thread meanwhile).
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                (got.unwrap(), at)
            });
            s.spawn(|| {
                while tid.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                let t = tid.load(Ordering::SeqCst);
                let mut sent = 0;
                while !done.load(Ordering::SeqCst) {
                    // SAFETY: tgkill(2) to a live thread of this
                    // process (it waits for `stopped` before it ends)
                    // with a signal whose handler is ours.
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), t, timer_signal()) };
                    sent += 1;
                    if grant && sent == 100 {
                        // Release while the strays keep coming.
                        let _ = rustix::fs::flock(&other, rustix::fs::FlockOperation::Unlock);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                stopped.store(true, Ordering::SeqCst);
            });
            let (got, at) = w.join().unwrap();
            assert_eq!(got, grant, "grant={grant}");
            if !grant {
                assert!(at >= deadline, "ended early under stray signals");
            }
        });
        drop(other);
    }
}

/// Waits with deadlines of a few microseconds: the timer's signal
/// often comes before the thread has entered the lock call, which the
/// handler must turn into EINTR (otherwise the call blocks for good:
/// the watchdog then lets go of the lock, and the wait returns
/// "granted", which fails the test).
#[test]
fn a_signal_before_the_call_is_entered_still_ends_the_wait() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, other) = held(d.path());
    let mine = open(&p);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..2000u64 {
                let deadline = Instant::now() + Duration::from_nanos(i % 50 * 1000 + 1);
                let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
                let ok = matches!(got, Ok(false));
                tx.send(ok).unwrap();
                if !ok {
                    return;
                }
            }
        });
        for i in 0..2000 {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(ok) => assert!(ok, "wait {i} did not time out cleanly"),
                Err(_) => {
                    // Stuck in the lock call: free it so the test ends.
                    drop(other);
                    panic!("wait {i} overstayed its deadline by 20 s");
                }
            }
        }
    });
}

/// The state of timer `id`: `Some(it_value)` if it exists.
fn timer_left(id: libc::c_int) -> Option<libc::timespec> {
    // SAFETY: itimerspec is plain data, filled in by timer_gettime.
    let mut cur: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: timer_gettime(2) with a valid out pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_gettime,
            id,
            &mut cur as *mut libc::itimerspec,
        )
    };
    (r == 0).then_some(cur.it_value)
}

/// A thread keeps one timer from wait to wait, disarmed in between.
#[test]
fn the_timer_is_kept_disarmed_between_waits() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, _other) = held(d.path());
    let mine = open(&p);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut ids = Vec::new();
            for _ in 0..3 {
                let got = wait_one(&mine, &whole(), Instant::now() + Duration::from_millis(20));
                assert!(matches!(got, Some(Ok(false))));
                let Some(e) = epoch() else {
                    return; // no MADV_WIPEONFORK: nothing is kept
                };
                let (made, id) = KEPT.with(|k| k.0.get()).expect("a kept timer");
                assert_eq!(made, e);
                let left = timer_left(id).expect("the kept timer exists");
                assert_eq!((left.tv_sec, left.tv_nsec), (0, 0), "left armed");
                ids.push(id);
            }
            assert!(ids.windows(2).all(|w| w[0] == w[1]), "not kept: {ids:?}");
        })
        .join()
        .unwrap();
    });
}

/// Runs the test `name` (an ignored helper of this file) alone in a
/// process of its own, with `var` set to `value`; it must print "helper
/// done".
fn run_helper(name: &str, var: &str, value: &str) {
    let me = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&me)
        .args([
            "--exact",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
            &format!("sys::linux::timed::tests::{name}"),
        ])
        .env(var, value)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{var}={value}: {text}");
    if SUPPORTED {
        assert!(text.contains("helper done"), "{var}={value}: {text}");
    }
}

/// A kept timer deleted behind holdfast's back (by a buggy application):
/// the wait falls back to the waiter task, still on time, and the next
/// wait makes a new timer. In a process of its own: timer ids are per
/// process, and the deleted id must not be handed to another test's
/// thread meanwhile.
#[test]
fn a_kept_timer_deleted_by_someone_else_is_replaced() {
    run_helper(
        "helper_kept_timer_deleted",
        "HOLDFAST_TEST_TIMED_DELETED",
        "1",
    );
}

#[test]
#[ignore = "run by a_kept_timer_deleted_by_someone_else_is_replaced"]
fn helper_kept_timer_deleted() {
    if !SUPPORTED || std::env::var_os("HOLDFAST_TEST_TIMED_DELETED").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, _other) = held(d.path());
    let mine = open(&p);
    std::thread::scope(|s| {
        s.spawn(|| {
            let got = wait_one(&mine, &whole(), Instant::now() + Duration::from_millis(5));
            assert!(matches!(got, Some(Ok(false))));
            let Some((_, id)) = KEPT.with(|k| k.0.get()) else {
                return; // nothing kept here (no MADV_WIPEONFORK)
            };
            // SAFETY: deletes a timer of this process (the test's own).
            assert_eq!(unsafe { libc::syscall(libc::SYS_timer_delete, id) }, 0);
            let deadline = Instant::now() + Duration::from_millis(50);
            assert!(wait_one(&mine, &whole(), deadline).is_none());
            // The whole wait: still on time, by the waiter task.
            let deadline = Instant::now() + Duration::from_millis(50);
            let got = super::super::waiter::wait_any(&mine, &[whole()], Some(deadline));
            assert_eq!(got.unwrap(), None);
            assert!(Instant::now() >= deadline);
            let deadline = Instant::now() + Duration::from_millis(20);
            let got = wait_one(&mine, &whole(), deadline).expect("a new timer");
            assert!(!got.unwrap());
            assert!(Instant::now() >= deadline);
        })
        .join()
        .unwrap();
    });
    println!("helper done");
}

/// A forked child, whose copies of this thread's timer id and thread id
/// are stale (timer ids are per process: in the child that id may name a
/// timer the child made, here the application's, armed for 60 s), times
/// out on time by the timer way without touching that timer.
#[test]
fn a_forked_child_times_out_by_the_timer_way_and_leaves_its_timers_alone() {
    if !SUPPORTED {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (p, _other) = held(d.path());
    let mine = open(&p);
    // Keeps a timer and caches this thread's id.
    let got = wait_one(&mine, &whole(), Instant::now() + Duration::from_millis(1));
    assert!(matches!(got, Some(Ok(false))));
    assert_ne!(TID.with(Cell::get), 0);
    let stale = KEPT.with(|k| k.0.get()).map(|(_, id)| id);
    // SAFETY: the child only makes system calls and reads the clock
    // (the handler is installed, the thread id cached, the epoch page
    // mapped: no lock is taken) before `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The application's timer, with the id the parent's thread kept.
        let mut app = None;
        if let Some(stale) = stale {
            let ev = KernelSigevent {
                value: 0,
                signo: 0,
                notify: libc::SIGEV_NONE,
                tid: 0,
                _pad: [0; 11],
            };
            for _ in 0..=stale.max(0) + 1 {
                let Ok(id) = timer_create(&ev) else {
                    break;
                };
                if id == stale {
                    let spec = libc::itimerspec {
                        it_interval: libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        },
                        it_value: libc::timespec {
                            tv_sec: 60,
                            tv_nsec: 0,
                        },
                    };
                    // SAFETY: arms that timer with a valid spec.
                    unsafe {
                        libc::syscall(
                            libc::SYS_timer_settime,
                            id,
                            0,
                            &spec as *const libc::itimerspec,
                            std::ptr::null_mut::<libc::itimerspec>(),
                        )
                    };
                    app = Some(id);
                    break;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut code = match wait_one(&mine, &whole(), deadline) {
            Some(Ok(false)) if Instant::now() >= deadline => 0,
            None => 2,
            _ => 1,
        };
        if let Some(id) = app
            && timer_left(id).is_none_or(|l| l.tv_sec < 50)
        {
            code = 3;
        }
        // SAFETY: ends the forked child without running anything of
        // the parent's.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    let t = Instant::now();
    // SAFETY: waits for our own child with a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
        if t.elapsed() > Duration::from_secs(20) {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child's wait hung: it armed a timer that was not its own");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child: 1 = wrong result, 2 = no timer way, 3 = the application's timer was touched"
    );
}

/// The helper of the next test, in a process of its own (it installs
/// a `SIGUSR2` handler).
#[test]
#[ignore = "run by an_application_handler_across_the_deadline_does_not_keep_the_wait"]
fn helper_application_handler_across_the_deadline() {
    if std::env::var_os("HOLDFAST_TEST_TIMED_RESTART").is_none() {
        return;
    }
    fn now_ns() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
    /// Runs 300 ms: across the deadline.
    extern "C" fn slow(_: libc::c_int) {
        let t = now_ns();
        while now_ns() - t < 300_000_000 {
            std::hint::spin_loop();
        }
    }
    // SAFETY: as in `install`.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = slow as *const () as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: a valid sigaction; the handler only reads the clock.
    let r = unsafe { libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()) };
    assert_eq!(r, 0);
    let d = tempfile::tempdir().unwrap();
    let (p, other) = held(d.path());
    let mine = open(&p);
    let (tx, rx) = mpsc::channel();
    let tid = std::sync::atomic::AtomicI32::new(0);
    let deadline = Instant::now() + Duration::from_millis(100);
    std::thread::scope(|s| {
        s.spawn(|| {
            tid.store(
                rustix::thread::gettid().as_raw_nonzero().get(),
                Ordering::SeqCst,
            );
            let got = wait_one(&mine, &whole(), deadline).expect("the timer way");
            tx.send((got.unwrap(), Instant::now())).unwrap();
        });
        let t = Instant::now();
        while !blocked_on(&p) {
            assert!(t.elapsed().as_secs() < 30, "the wait never blocked");
            std::thread::yield_now();
        }
        // In the lock call, before the deadline: the application's
        // handler interrupts it and runs across the deadline.
        // SAFETY: tgkill(2) to the waiting thread, alive until it has
        // sent its result, which we wait for below.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                tid.load(Ordering::SeqCst),
                libc::SIGUSR2,
            )
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((got, at)) => {
                assert!(!got, "granted while held elsewhere");
                assert!(at >= deadline, "returned early");
            }
            Err(_) => {
                drop(other);
                panic!("the wait overstayed by 20 s: the deadline's signal was lost");
            }
        }
    });
    println!("helper done");
}

/// An application's `SA_RESTART` handler that interrupts the lock call
/// and runs across the deadline swallows the deadline's signal (ours
/// runs on top of it and finds the thread in that handler); the timer
/// fires again every [`REFIRE`], so the restarted call still ends.
#[test]
fn an_application_handler_across_the_deadline_does_not_keep_the_wait() {
    run_helper(
        "helper_application_handler_across_the_deadline",
        "HOLDFAST_TEST_TIMED_RESTART",
        "1",
    );
}

/// The helper of the next test, in a process of its own (it changes the
/// process's signal dispositions): `HOLDFAST_TEST_TIMED_SIGNAL=before`
/// takes our signal before holdfast ever wanted it, `=after` replaces
/// holdfast's handler, with an `SA_RESTART` handler (which would let
/// the lock call sleep through the deadline) or `SIG_IGN`.
#[test]
#[ignore = "run by a_signal_taken_by_the_application_sends_waits_to_the_task"]
fn helper_signal_taken_by_the_application() {
    let Some(when) = std::env::var_os("HOLDFAST_TEST_TIMED_SIGNAL") else {
        return;
    };
    extern "C" fn theirs(_: libc::c_int) {}
    let d = tempfile::tempdir().unwrap();
    let (p, _other) = held(d.path());
    let mine = open(&p);
    let req = whole();
    let sig = timer_signal();
    let take = |ignore: bool| {
        // SAFETY: as in `install`.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = if ignore {
            libc::SIG_IGN
        } else {
            theirs as *const () as usize
        };
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: a valid sigaction; the handler does nothing.
        let r = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
        assert_eq!(r, 0);
    };
    let cases: &[bool] = if when == "before" {
        take(false);
        &[false]
    } else {
        assert!(our_signal().is_some(), "not installed in a fresh process");
        &[false, true]
    };
    for &ignore in cases {
        if when != "before" {
            take(ignore);
        }
        assert!(our_signal().is_none(), "a handler not ours taken as ours");
        assert!(wait_one(&mine, &req, Instant::now() + Duration::from_secs(1)).is_none());
        // The whole timed wait: the waiter task's way, still on time.
        let deadline = Instant::now() + Duration::from_millis(100);
        let got = super::super::waiter::wait_any(&mine, &[req], Some(deadline)).unwrap();
        assert_eq!(got, None);
        assert!(Instant::now() >= deadline);
        assert!(Instant::now() < deadline + Duration::from_secs(10));
    }
    println!("helper done");
}

/// A signal the application took (before holdfast wanted it, or by
/// replacing holdfast's handler, even with `SIG_IGN` or `SA_RESTART`)
/// never costs a timeout: the waits use the waiter task.
#[test]
fn a_signal_taken_by_the_application_sends_waits_to_the_task() {
    for when in ["before", "after"] {
        run_helper(
            "helper_signal_taken_by_the_application",
            "HOLDFAST_TEST_TIMED_SIGNAL",
            when,
        );
    }
}
