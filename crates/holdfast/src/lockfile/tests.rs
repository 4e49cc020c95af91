//! Unit tests that need the module's internals: they set up, by hand, the
//! on-disk states that races and crashes produce, and check what a waiter
//! makes of them.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::core::{self, Ctx};
use super::record::{self, LockRecord};
use super::*;
use crate::error::Error;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A pid that is certainly not running: a child that has been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A holdfast record naming `pid` (this process's identity otherwise).
fn record_for(ctx: &Ctx, pid: u32, nonce: &str) -> Vec<u8> {
    let mut r: LockRecord = ctx.record(nonce, None);
    r.pid = pid;
    if pid != std::process::id() {
        r.start_time = None;
    }
    r.encode()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".break.") || n.contains(".restore."))
        .collect()
}

#[test]
fn claim_name_collisions_pick_another_name() {
    let d = tmp();
    let lock = LockFile::open(d.path().join("app.lck"), Protocol::Link).unwrap();
    let ctx = &*lock.ctx;
    let (a, _) = link::claim_for(ctx, "aaaaaaaaaaaaaaaa");
    let (b, _) = link::claim_for(ctx, "bbbbbbbbbbbbbbbb");
    std::fs::write(&a, b"precious").unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"victim data").unwrap();
    std::os::unix::fs::symlink(&victim, &b).unwrap();
    let held = link::write_claim(
        ctx,
        &mut ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"]
            .into_iter()
            .map(String::from),
    )
    .unwrap();
    assert_eq!(held.nonce, "cccccccccccccccc");
    assert_eq!(std::fs::read(&a).unwrap(), b"precious");
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim data");
    // Eight taken names in a row: a typed error, nothing overwritten.
    let names: Vec<String> = (0..8).map(|i| format!("{i:016x}")).collect();
    for n in &names {
        std::fs::write(link::claim_for(ctx, n).0, b"x").unwrap();
    }
    let err = link::write_claim(ctx, &mut names.clone().into_iter()).unwrap_err();
    match err {
        Error::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeat_refreshes_while_the_guard_lives_and_stops_with_it() {
    let d = tmp();
    let lock = LockFile::options(Protocol::Link)
        .lifetime(Duration::from_millis(300))
        .heartbeat(true)
        .open(d.path().join("hb.lck"))
        .unwrap();
    let g = lock.lock().unwrap();
    let first = std::fs::metadata(lock.path()).unwrap().modified().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(lock.path()).unwrap().modified().unwrap();
        if now > first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the heartbeat never moved the lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(heartbeats_running() >= 1);
    g.check().unwrap();
    drop(g);
    assert_eq!(
        heartbeats_running(),
        0,
        "the heartbeat thread outlived its guard"
    );
    assert!(!lock.is_locked().unwrap());
}

#[test]
fn mistaken_take_over_puts_the_live_lock_back() {
    for protocol in [Protocol::Soft, Protocol::Link, Protocol::Mkdir] {
        let d = tmp();
        let path = d.path().join("m.lock");
        let lock = LockFile::open(&path, protocol).unwrap();
        let ctx = lock.ctx.clone();
        // A stale lock: its holder is dead.
        let other = LockFile::open(&path, protocol).unwrap();
        let stale = other.lock().unwrap();
        let held = stale.owned.core.take().unwrap();
        drop(stale);
        let dead = dead_pid();
        rewrite_pid(&ctx, &held, dead);
        drop(held);
        // In the window a racing breaker would use, another process takes
        // the stale lock over: the path now names a live lock.
        let live_owner = LockFile::open(&path, protocol).unwrap();
        let p2 = path.clone();
        let proto = protocol;
        let mut fired = false;
        *takeover::TEST_HOOK.lock().unwrap() = Some((
            path.clone(),
            Box::new(move || {
                if fired {
                    return;
                }
                fired = true;
                replace_with_live(&p2, proto);
            }),
        ));
        let r = lock.try_lock();
        *takeover::TEST_HOOK.lock().unwrap() = None;
        match r {
            Err(Error::WouldBlock { holders, .. }) => {
                assert_eq!(
                    holders.first().unwrap().pid,
                    Some(std::process::id()),
                    "{protocol}"
                );
            }
            other => panic!("{protocol}: expected WouldBlock, got {other:?}"),
        }
        let st = live_owner.status().unwrap();
        assert!(st.locked && st.stale.is_none(), "{protocol}: {st:?}");
        assert_eq!(leftovers(d.path()), Vec::<String>::new(), "{protocol}");
    }
}

/// Rewrites the holder record of a lock we took apart so it names `pid`.
fn rewrite_pid(ctx: &Ctx, held: &core::Held, pid: u32) {
    match ctx.protocol {
        Protocol::Soft | Protocol::Mkdir => {
            let bytes = record_for(ctx, pid, &held.nonce);
            core::overwrite(&held.file, &bytes).unwrap();
        }
        Protocol::Link => {
            // flufl claim: rename the claim to one naming the dead pid and
            // rewrite the content (the lock name is the same inode).
            let old = held.claim.clone().unwrap();
            let name = old.file_name().unwrap().to_string_lossy().into_owned();
            let mut parts: Vec<&str> = name.split('|').collect();
            let pid_s = pid.to_string();
            parts[2] = &pid_s;
            let new_name = parts.join("|");
            let new = old.with_file_name(&new_name);
            std::fs::rename(&old, &new).unwrap();
            core::overwrite(&held.file, new.as_os_str().as_bytes()).unwrap();
        }
    }
}

/// Puts a live lock of this process (another nonce) at `path`, replacing
/// what is there, as a take-over by another process would.
fn replace_with_live(path: &Path, protocol: Protocol) {
    let lf = LockFile::open(path.with_file_name("scratch.lock"), protocol).unwrap();
    let g = lf.lock().unwrap();
    let h = g.owned.core.take().unwrap();
    drop(g);
    match protocol {
        Protocol::Soft | Protocol::Link => {
            // Rename the scratch lock over the path (for link, the claim
            // stays, so the object reads as held).
            std::fs::rename(lf.path(), path).unwrap();
            // (link: its content names the scratch lock's claim, which
            // still exists, so it reads as held.)
        }
        Protocol::Mkdir => {
            let aside = path.with_file_name("old-stale-dir");
            std::fs::rename(path, &aside).unwrap();
            std::fs::rename(lf.path(), path).unwrap();
            std::fs::remove_dir_all(&aside).unwrap();
        }
    }
    drop(h);
}

#[test]
fn a_killed_breaker_is_recovered_not_trusted() {
    let d = tmp();
    let path = d.path().join("k.lock");
    let lock = LockFile::open(&path, Protocol::Soft).unwrap();
    let ctx = lock.ctx.clone();
    let dead = dead_pid();
    // The live holder's marker, parked by a breaker that was killed after
    // its exchange; the breaker's own record (dead pid) at the path.
    let live = record_for(&ctx, std::process::id(), "1111111111111111");
    let parked = d.path().join(record::side_name(&ctx.name, "break", dead));
    std::fs::write(&parked, &live).unwrap();
    std::fs::write(&path, record_for(&ctx, dead, "2222222222222222")).unwrap();
    match lock.try_lock() {
        Err(Error::WouldBlock { .. }) => {}
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), live, "the live lock is back");
    assert_eq!(leftovers(d.path()), Vec::<String>::new());
    // Control: the same stale record without a parked lock is taken over.
    std::fs::write(&path, record_for(&ctx, dead, "3333333333333333")).unwrap();
    let g = lock.try_lock().expect("a dead holder's lock is taken over");
    drop(g);
    assert!(!path.exists());
}

#[test]
fn release_of_a_parked_lock_leaves_a_released_mark() {
    for protocol in [Protocol::Soft, Protocol::Link, Protocol::Mkdir] {
        let d = tmp();
        let path = d.path().join("p.lock");
        let lock = LockFile::open(&path, protocol).unwrap();
        let g = lock.lock().unwrap();
        // A mistaken breaker parks our lock and puts its own at the path.
        let theirs = LockFile::open(d.path().join("theirs.lock"), protocol).unwrap();
        let tg = theirs.lock().unwrap();
        let th = tg.owned.core.take().unwrap();
        drop(tg);
        let parked = d.path().join("parked");
        std::fs::rename(theirs.path(), &parked).unwrap();
        assert!(crate::sys::exchange(&parked, &path).unwrap());
        // We let go meanwhile: the path (theirs) must be left alone.
        drop(g);
        assert!(path.exists(), "{protocol}: released someone else's lock");
        // The breaker puts ours back: it reads as released and goes at once.
        assert!(crate::sys::exchange(&parked, &path).unwrap());
        let st = lock.status().unwrap();
        assert_eq!(st.stale, Some(StaleReason::Released), "{protocol}: {st:?}");
        let g2 = lock
            .try_lock()
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        drop(g2);
        drop(th);
    }
}

#[test]
fn link_locks_break_by_election_without_an_exchange() {
    let d = tmp();
    let path = d.path().join("e.lck");
    let lock = LockFile::options(Protocol::Link)
        .atomic_exchange(false)
        .open(&path)
        .unwrap();
    let ctx = lock.ctx.clone();
    let g = LockFile::open(&path, Protocol::Link).unwrap();
    let sg = g.lock().unwrap();
    let held = sg.owned.core.take().unwrap();
    drop(sg);
    rewrite_pid(&ctx, &held, dead_pid());
    drop(held);
    let got = lock
        .try_lock()
        .expect("the stale link lock is broken by election");
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "lock and our claim only: {names:?}");
    drop(got);
    // An election in progress by a live breaker: wait, do not break.
    let sg = g.lock().unwrap();
    let held = sg.owned.core.take().unwrap();
    drop(sg);
    let claim = held.claim.clone().unwrap();
    let cname = claim.file_name().unwrap().to_owned();
    let parked = d
        .path()
        .join(record::side_name(&cname, "break", std::process::id()));
    std::fs::rename(&claim, &parked).unwrap();
    match lock.try_lock() {
        Err(Error::WouldBlock { holders, .. }) => {
            let h = holders.first().unwrap();
            assert!(
                h.command.as_deref().unwrap().contains("being broken"),
                "{h:?}"
            );
        }
        other => panic!("expected WouldBlock, got {other:?}"),
    }
}

#[test]
fn soft_and_mkdir_wait_without_an_exchange_and_break_lock_removes() {
    for protocol in [Protocol::Soft, Protocol::Mkdir] {
        let d = tmp();
        let path = d.path().join("n.lock");
        let lock = LockFile::options(protocol)
            .atomic_exchange(false)
            .open(&path)
            .unwrap();
        let other = LockFile::open(&path, protocol).unwrap();
        let sg = other.lock().unwrap();
        let held = sg.owned.core.take().unwrap();
        drop(sg);
        rewrite_pid(&lock.ctx, &held, dead_pid());
        drop(held);
        assert!(matches!(
            lock.status().unwrap().stale,
            Some(StaleReason::Exited { .. })
        ));
        assert!(
            matches!(lock.try_lock(), Err(Error::WouldBlock { .. })),
            "{protocol}"
        );
        assert!(lock.break_lock().unwrap());
        assert!(!lock.is_locked().unwrap());
        drop(lock.try_lock().unwrap());
        assert!(!lock.break_lock().unwrap(), "nothing left to break");
    }
}

/// `break_lock_if` decides on the object it acts on: a stale lock that a
/// live holder replaces between the look and the break is left alone (the
/// stale one is gone all the same), and a live one is kept when asked.
#[test]
fn break_lock_if_never_removes_a_lock_it_did_not_judge() {
    for protocol in [Protocol::Soft, Protocol::Link, Protocol::Mkdir] {
        let d = tmp();
        let path = d.path().join("b.lock");
        let lock = LockFile::open(&path, protocol).unwrap();
        let other = LockFile::open(&path, protocol).unwrap();
        let sg = other.lock().unwrap();
        let held = sg.owned.core.take().unwrap();
        drop(sg);
        let dead = dead_pid();
        rewrite_pid(&lock.ctx, &held, dead);
        drop(held);
        let newcomer = LockFile::open(&path, protocol).unwrap();
        let mut live = None;
        let mut asked = 0;
        let out = lock
            .break_lock_if(|st| {
                asked += 1;
                if asked == 1 {
                    // Between the look and the break, the stale lock goes
                    // and a live holder takes the path.
                    assert!(matches!(st.stale, Some(StaleReason::Exited { pid }) if pid == dead));
                    dispatch::remove_object(&lock.ctx, &path).unwrap();
                    live = Some(newcomer.lock().unwrap());
                }
                st.stale.is_some()
            })
            .unwrap();
        match out {
            Broken::Removed(st) => {
                assert_eq!(st.holder.unwrap().pid, Some(dead), "{protocol}")
            }
            other => panic!("{protocol}: {other:?}"),
        }
        let live = live.unwrap();
        live.check().expect("the live lock is untouched");
        match lock.break_lock_if(|st| st.stale.is_some()).unwrap() {
            Broken::Kept(st) => assert!(st.holder.unwrap().this_process && st.stale.is_none()),
            other => panic!("{protocol}: {other:?}"),
        }
        live.check().expect("kept means kept");
        drop(live);
        assert_eq!(lock.break_lock_if(|_| true).unwrap(), Broken::NoLock);
    }
}

#[test]
fn the_holding_thread_gets_already_held_not_a_deadlock() {
    let d = tmp();
    let path = d.path().join("t.lock");
    for (protocol, compat) in [
        (Protocol::Soft, Compat::Holdfast),
        (Protocol::Soft, Compat::Filelock),
        (Protocol::Link, Compat::Flufl),
        (Protocol::Link, Compat::Lockfile),
        (Protocol::Mkdir, Compat::Holdfast),
    ] {
        let open = || {
            LockFile::options(protocol)
                .compat(compat)
                .open(&path)
                .unwrap()
        };
        let (a, b) = (open(), open());
        let g = a.lock().unwrap();
        assert!(
            matches!(a.lock(), Err(Error::AlreadyHeld { .. })),
            "{protocol}"
        );
        assert!(
            matches!(b.lock(), Err(Error::AlreadyHeld { .. })),
            "{protocol}"
        );
        let e = std::thread::scope(|s| {
            s.spawn(|| b.lock_timeout(Duration::from_millis(50)).unwrap_err())
                .join()
                .unwrap()
        });
        assert!(matches!(e, Error::Timeout { .. }), "{protocol}: {e:?}");
        drop(g);
        drop(b.try_lock().unwrap());
    }
}

#[test]
fn guards_move_between_threads() {
    let d = tmp();
    let lock = LockFile::open(d.path().join("s.lock"), Protocol::Soft).unwrap();
    let g = lock.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || g.unlock().unwrap()).join().unwrap();
    });
    assert!(!lock.is_locked().unwrap());
}

#[test]
fn a_lease_in_the_far_future_is_read_from_the_ctime() {
    let d = tmp();
    let path = d.path().join("f.lock");
    let lock = LockFile::options(Protocol::Soft)
        .clock_skew(Duration::ZERO)
        .open(&path)
        .unwrap();
    let mut r = lock.ctx.record("4444444444444444", None);
    r.host = "elsewhere".into();
    r.lifetime = Some(Duration::from_millis(200));
    std::fs::write(&path, r.encode()).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    crate::sys::set_times(
        &f,
        SystemTime::now() + Duration::from_secs(10 * 365 * 86_400),
    )
    .unwrap();
    let st = lock.status().unwrap();
    let exp = st.expires.unwrap();
    assert!(
        exp < SystemTime::now() + Duration::from_secs(1),
        "clamped: {exp:?}"
    );
    let g = lock
        .lock_timeout(Duration::from_secs(10))
        .expect("taken once the clamped lease ends");
    drop(g);
}

#[test]
fn a_link_lock_won_after_a_long_wait_gets_a_fresh_lease() {
    let d = tmp();
    let path = d.path().join("w.lck");
    let opts = || {
        let mut o = LockFile::options(Protocol::Link);
        o.lifetime(Duration::from_millis(400));
        o
    };
    let holder = opts().open(&path).unwrap();
    let waiter = opts().open(&path).unwrap();
    let g = holder.lock().unwrap();
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            let g2 = waiter.lock_timeout(Duration::from_secs(30)).unwrap();
            let exp = waiter.status().unwrap().expires.unwrap();
            assert!(
                exp > SystemTime::now(),
                "won with an expired lease: {exp:?}"
            );
            drop(g2);
        });
        // Hold past the waiter's claim lifetime, then let go.
        std::thread::sleep(Duration::from_millis(900));
        drop(g);
        w.join().unwrap();
    });
}

/// The link release first recognises its lock by inode (one `lstat`); where
/// the lock name holds our claim's bytes under another inode (hard links
/// with synthetic inode numbers, as on sshfs, or an NFS link whose reply
/// was lost and retried), it still recognises it by content and removes
/// it, and a lock name holding someone else's claim is never removed.
#[test]
fn a_link_lock_is_recognised_by_content_where_inodes_differ() {
    let d = tmp();
    let path = d.path().join("c.lck");
    let lock = LockFile::open(&path, Protocol::Link).unwrap();
    let ctx = &*lock.ctx;

    // Same bytes, another inode: still ours, released, claim removed.
    let prep = dispatch::prepare(ctx).unwrap();
    let held = prep_claim(prep);
    let copy = d.path().join("copy");
    std::fs::write(&copy, &held.content).unwrap();
    std::fs::rename(&copy, &path).unwrap();
    assert!(link::is_ours(ctx, &held).unwrap());
    dispatch::release(ctx, &held).unwrap();
    assert!(!path.exists(), "the lock name was left");
    assert!(!held.claim.as_ref().unwrap().exists(), "the claim was left");

    // Other bytes under the name: not ours, never removed.
    let prep = dispatch::prepare(ctx).unwrap();
    let held = prep_claim(prep);
    std::fs::write(&path, b"someone else's claim").unwrap();
    assert!(!link::is_ours(ctx, &held).unwrap());
    assert!(matches!(
        dispatch::release(ctx, &held),
        Err(Error::Lost { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's claim");

    assert!(!held.claim.as_ref().unwrap().exists(), "the claim was left");

    // By inode: a real link, released and removed.
    std::fs::remove_file(&path).unwrap();
    let prep = dispatch::prepare(ctx).unwrap();
    let held = prep_claim(prep);
    std::fs::hard_link(held.claim.as_ref().unwrap(), &path).unwrap();
    assert!(link::is_ours(ctx, &held).unwrap());
    dispatch::release(ctx, &held).unwrap();
    assert!(!path.exists() && !held.claim.as_ref().unwrap().exists());
}

/// Takes the claim out of a prepared link acquisition (so that dropping
/// the preparation does not remove it).
fn prep_claim(mut prep: core::Prepared) -> core::Held {
    prep.claim.take().unwrap()
}
