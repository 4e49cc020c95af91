//! Multi-process behaviour of `holdfast::Lock`: exclusion, shared holders,
//! holder reports, timeouts, crashes, threads, fork, symlinks, and interop
//! with util-linux `flock(1)`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use holdfast::{Error, Lock, Mode};
use holdfast_testkit::{
    Child, Dir, kernel_holders, kernel_waiters, path_str, util_linux_flock, wait_for,
};

use crate::common::{HELPER, LONG, helper};

/// Starts `hold` on `lock` and waits until it reports the lock taken.
fn holder(lock: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["hold", path_str(lock)];
    args.extend_from_slice(extra);
    let mut c = Child::spawn(helper(&args));
    c.expect_line("locked", LONG);
    c
}

fn read_counter(p: &Path) -> u64 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

#[test]
fn eight_processes_times_1000_increments_end_at_8000() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let counter = d.join("counter");
    let mut kids: Vec<Child> = (0..8)
        .map(|_| {
            Child::spawn(helper(&[
                "count",
                path_str(&lock),
                path_str(&counter),
                "1000",
            ]))
        })
        .collect();
    for k in &mut kids {
        assert_eq!(
            k.expect_line("done", Duration::from_secs(120)),
            "done violations=0"
        );
        assert!(k.wait(LONG).success());
    }
    assert_eq!(read_counter(&counter), 8000);
    // The fencing token grew by exactly one per exclusive acquisition,
    // across processes (each re-acquisition patches its record through a
    // mapping; a peer's record must be read, never assumed).
    let record = holdfast::HolderRecord::parse(&std::fs::read(&lock).unwrap()).unwrap();
    assert_eq!(record.token, 8000);
}

#[test]
fn ofd_backend_excludes_processes_too() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let counter = d.join("counter");
    let mut kids: Vec<Child> = (0..4)
        .map(|_| {
            Child::spawn(helper(&[
                "count",
                path_str(&lock),
                path_str(&counter),
                "500",
                "--ofd",
            ]))
        })
        .collect();
    for k in &mut kids {
        assert_eq!(
            k.expect_line("done", Duration::from_secs(120)),
            "done violations=0"
        );
    }
    assert_eq!(read_counter(&counter), 2000);
}

#[test]
fn shared_holders_coexist_while_an_exclusive_waiter_waits() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let mut readers: Vec<Child> = (0..3).map(|_| holder(&lock, &["--shared"])).collect();
    let reader_pids: Vec<u32> = readers.iter().map(|r| r.pid()).collect();

    let mut writer = Child::spawn(helper(&["hold", path_str(&lock)]));
    let writer_pid = writer.pid() as i64;
    wait_for("the writer to block in the kernel", LONG, || {
        kernel_waiters(&lock).contains(&writer_pid).then_some(())
    });
    // A probe names all three shared holders.
    let out = Command::new(HELPER)
        .args(["try", path_str(&lock)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("held (shared) by"), "{msg}");
    for pid in &reader_pids {
        assert!(
            msg.contains(&format!("pid {pid}")),
            "{pid} missing in {msg}"
        );
    }
    // Releasing two readers is not enough. A release the writer was
    // blocked behind wakes it, and until it has run again, found the last
    // reader and blocked again, the kernel does not list it as waiting (a
    // window that lasts as long as the scheduler makes it under load): so
    // wait (bounded) for it to be blocked again, then see it got nothing.
    for r in readers.iter_mut().take(2) {
        r.close_stdin();
        r.expect_line("released", LONG);
    }
    wait_for(
        "the writer to block again behind the last reader",
        LONG,
        || kernel_waiters(&lock).contains(&writer_pid).then_some(()),
    );
    assert_eq!(writer.try_line(Duration::from_millis(50)), None);
    // The last one lets the writer in.
    readers[2].close_stdin();
    readers[2].expect_line("released", LONG);
    assert!(writer.expect_line("locked", LONG).starts_with("locked"));
}

#[test]
fn try_lock_fails_at_once_naming_the_holder() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let h = holder(&lock, &[]);
    let started = Instant::now();
    let out = Command::new(HELPER)
        .args(["try", path_str(&lock)])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(10));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains(&format!("held by pid {} (", h.pid())),
        "holder pid missing: {msg}"
    );
    assert!(
        msg.contains("holdfast-helper hold"),
        "command missing: {msg}"
    );
    assert!(msg.contains(" since "), "since missing: {msg}");
    // "At once": it did not wait for the holder (which holds until told).
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn a_timeout_fires_on_time_and_names_the_holder() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let h = holder(&lock, &[]);
    for ms in [50u64, 300] {
        let out = Command::new(HELPER)
            .args(["try", path_str(&lock), "--timeout-ms", &ms.to_string()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(11));
        let msg = String::from_utf8_lossy(&out.stdout);
        let elapsed: u64 = msg
            .trim_start_matches("timeout elapsed_ms=")
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(elapsed >= ms, "fired early: {elapsed} < {ms}");
        // Generous bound: catches a wait that ignores its deadline, not
        // scheduling noise.
        assert!(elapsed < ms + 2000, "fired late: {elapsed}");
        assert!(msg.contains(&format!("held by pid {}", h.pid())), "{msg}");
        assert!(msg.contains("timed out after"), "{msg}");
    }
}

#[test]
fn a_timed_waiter_gets_the_lock_when_it_is_released() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let mut h = holder(&lock, &[]);
    let mut w = Child::spawn(helper(&["hold", path_str(&lock), "--timeout-ms", "60000"]));
    wait_for("the timed waiter to block in the kernel", LONG, || {
        (!kernel_waiters(&lock).is_empty()).then_some(())
    });
    h.close_stdin();
    h.expect_line("released", LONG);
    w.expect_line("locked", LONG);
    // Its record names it, although the kernel saw its waiter task ask.
    let st = holdfast::status(&lock).unwrap();
    assert_eq!(st.holders.first().unwrap().pid, Some(w.pid()));
    assert_eq!(
        st.holders.first().unwrap().source,
        holdfast::HolderSource::Record
    );
}

#[test]
fn kill_9_of_the_holder_lets_the_waiter_in() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    for round in 0..5 {
        let mut h = holder(&lock, &[]);
        let mut w = Child::spawn(helper(&["hold", path_str(&lock)]));
        let wpid = w.pid() as i64;
        wait_for("the waiter to block", LONG, || {
            kernel_waiters(&lock).contains(&wpid).then_some(())
        });
        let killed_at = Instant::now();
        h.kill9();
        w.expect_line("locked", LONG);
        eprintln!(
            "round {round}: waiter ran {:?} after kill -9",
            killed_at.elapsed()
        );
        w.close_stdin();
        w.expect_line("released", LONG);
    }
}

#[test]
fn two_threads_exclude_each_other() {
    let d = Dir::new();
    let path = d.join("app.lock");
    // Threads sharing one Lock value, and threads with their own values.
    let shared = Arc::new(Lock::open(&path).unwrap());
    let inside = Arc::new(AtomicU32::new(0));
    let overlaps = Arc::new(AtomicU32::new(0));
    let mut handles = Vec::new();
    for t in 0..4 {
        let (shared, inside, overlaps, path) = (
            shared.clone(),
            inside.clone(),
            overlaps.clone(),
            path.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let own = Lock::open(&path).unwrap();
            for i in 0..2000 {
                let lock: &Lock = if (t + i) % 2 == 0 { &shared } else { &own };
                let g = lock.lock().unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                std::hint::spin_loop();
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(g);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

#[test]
fn a_thread_holding_one_value_blocks_another_threads_try() {
    let d = Dir::new();
    let lock = Arc::new(Lock::open(d.join("app.lock")).unwrap());
    let g = lock.lock().unwrap();
    let l2 = lock.clone();
    let err = std::thread::spawn(move || l2.try_lock().map(|_| ()).unwrap_err())
        .join()
        .unwrap();
    match err {
        Error::WouldBlock { holders, .. } => {
            assert!(holders.first().unwrap().this_process);
        }
        other => panic!("{other:?}"),
    }
    drop(g);
}

#[test]
fn a_forked_childs_drop_leaves_the_parents_lock_held() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let mut p = Child::spawn(helper(&["fork-drop", path_str(&lock)]));
    let line = p.expect_line("child-dropped", LONG);
    assert_eq!(line, "child-dropped status=0");
    let out = Command::new(HELPER)
        .args(["try", path_str(&lock)])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(10),
        "the parent's lock was released"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {}", p.pid())));
    p.close_stdin();
    p.expect_line("released", LONG);
}

#[test]
fn a_symlink_is_refused_unless_allowed() {
    let d = Dir::new();
    let victim = d.join("victim");
    std::fs::write(&victim, b"do not touch").unwrap();
    let link = d.join("app.lock");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    match Lock::open(&link) {
        Err(e @ Error::Symlink { .. }) => {
            assert_eq!(e.path(), link);
            assert!(e.to_string().contains("symbolic link"));
        }
        other => panic!("{other:?}"),
    }
    // Opting in follows it; foreign content is still not overwritten.
    let l = Lock::options().follow_symlinks(true).open(&link).unwrap();
    drop(l.lock().unwrap());
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    // status refuses it too.
    assert!(matches!(
        holdfast::status(&link),
        Err(Error::Symlink { .. })
    ));
}

#[test]
fn missing_directory_is_an_io_error_naming_the_path_unless_parents_are_created() {
    let d = Dir::new();
    let p = d.join("a/b/app.lock");
    let e = Lock::open(&p).unwrap_err();
    assert_eq!(e.path(), p);
    assert!(e.to_string().contains("cannot open"), "{e}");
    let l = Lock::options().create_parents(true).open(&p).unwrap();
    drop(l.lock().unwrap());
}

/// util-linux flock holding `lock` until its stdin closes.
fn flock1_holder(lock: &Path, extra: &[&str]) -> Child {
    let mut c = Command::new(util_linux_flock());
    c.args(extra)
        .arg(lock)
        .args(["sh", "-c", "echo locked; exec cat >/dev/null"]);
    let mut c = Child::spawn(c);
    c.expect_line("locked", LONG);
    c
}

#[test]
fn a_util_linux_flock_holder_is_named_by_pid_and_command() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let f = flock1_holder(&lock, &[]);
    let l = Lock::open(&lock).unwrap();
    match l.try_lock() {
        Err(Error::WouldBlock { holders, .. }) => {
            let h = holders.first().expect("a holder");
            assert_eq!(h.pid, Some(f.pid()));
            let cmd = h.command.as_deref().unwrap();
            assert!(cmd.contains("flock") && cmd.contains("app.lock"), "{cmd}");
            assert_eq!(h.source, holdfast::HolderSource::Kernel);
        }
        other => panic!("{other:?}"),
    }
    let st = holdfast::status(&lock).unwrap();
    assert_eq!(st.held, Some(Mode::Exclusive));
    assert_eq!(st.holders.first().unwrap().pid, Some(f.pid()));
}

#[test]
fn holdfast_and_util_linux_flock_exclude_each_other_both_ways() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    // flock(1) holds: holdfast cannot, in either mode.
    let mut f = flock1_holder(&lock, &[]);
    let l = Lock::open(&lock).unwrap();
    assert!(matches!(l.try_lock(), Err(Error::WouldBlock { .. })));
    assert!(matches!(l.try_lock_shared(), Err(Error::WouldBlock { .. })));
    f.close_stdin();
    f.wait(LONG);
    // holdfast holds: flock -n fails with its conflict code 1.
    let h = holder(&lock, &[]);
    let st = Command::new(util_linux_flock())
        .args(["-n", path_str(&lock), "true"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
    let st = Command::new(util_linux_flock())
        .args(["-s", "-n", path_str(&lock), "true"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
    drop(h);
    // Shared holders of both kinds coexist.
    let _f = flock1_holder(&lock, &["-s"]);
    let g = l.try_lock_shared().unwrap();
    drop(g);
    assert_eq!(kernel_holders(&lock).len(), 1);
}

#[test]
fn mixed_holdfast_and_util_linux_flock_counters_never_overlap() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let counter = d.join("counter");
    let inside = counter.with_extension("inside");
    let mut kids: Vec<Child> = (0..3)
        .map(|_| {
            Child::spawn(helper(&[
                "count",
                path_str(&lock),
                path_str(&counter),
                "300",
            ]))
        })
        .collect();
    // The shell side does the same critical section: O_EXCL marker
    // (noclobber), read, increment, write, unmark.
    let script = format!(
        "set -C; v=0; for i in $(seq 150); do {flock} {lock} sh -c '\
         set -C; : > {inside} 2>/dev/null || echo VIOLATION; \
         n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}.tmp && mv {counter}.tmp {counter}; \
         rm -f {inside}'; done; echo done",
        flock = util_linux_flock(),
        lock = path_str(&lock),
        inside = path_str(&inside),
        counter = path_str(&counter),
    );
    let mut shells: Vec<Child> = (0..2)
        .map(|_| {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            Child::spawn(c)
        })
        .collect();
    for k in &mut kids {
        assert_eq!(
            k.expect_line("done", Duration::from_secs(300)),
            "done violations=0"
        );
    }
    for s in &mut shells {
        assert_eq!(
            s.expect_line("", Duration::from_secs(300)),
            "done",
            "a shell saw an overlap"
        );
    }
    assert_eq!(read_counter(&counter), 3 * 300 + 2 * 150);
}

#[test]
fn kill_9_at_random_points_never_breaks_exclusion() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let counter = d.join("counter");
    let spawn = || {
        let mut c = helper(&["count", path_str(&lock), path_str(&counter), "1000000"]);
        c.stderr(std::process::Stdio::null());
        Child::spawn(c)
    };
    let mut kids: Vec<Child> = (0..4).map(|_| spawn()).collect();
    let mut rng = 0x2545f4914f6cdd1du64 ^ u64::from(std::process::id());
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    for _ in 0..40 {
        // The crash point is random; nothing waits on this sleep.
        std::thread::sleep(Duration::from_micros(next() % 20_000));
        let victim = (next() % kids.len() as u64) as usize;
        kids[victim].kill9();
        assert_no_violation(&mut kids[victim]);
        kills += 1;
        kids[victim] = spawn();
    }
    // Let the survivors prove the lock still works, then stop them: a
    // helper that saw an overlap exits 1 at once after printing.
    let before = std::fs::read_to_string(&counter).unwrap_or_default();
    wait_for("the counter to keep moving after the kills", LONG, || {
        (std::fs::read_to_string(&counter).unwrap_or_default() != before).then_some(())
    });
    for k in &mut kids {
        assert!(!k.has_exited(), "a helper died on its own");
        k.kill9();
        assert_no_violation(k);
    }
    assert_eq!(kills, 40);
}

/// Every line a (now dead) counting helper printed: none may be an overlap.
fn assert_no_violation(k: &mut Child) {
    while let Some(line) = k.try_line(Duration::from_millis(20)) {
        assert_ne!(line, "violation", "two processes were inside at once");
    }
}
