//! The etcd backend against a real etcd started by each test.

use std::time::{Duration, Instant};

use holdfast::{Error, Mode, Wait};
use holdfast_etcd::{Client, ClientOptions};
use holdfast_testkit::Etcd;

fn connect(etcd: &Etcd) -> Client {
    Client::connect(&etcd.url()).expect("connect")
}

#[test]
fn exclusive_lock_names_its_holder_and_tokens_increase() {
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    let lock = c.lock("job").unwrap();
    let g = lock.lock().unwrap();
    let t1 = g.token();
    assert!(t1 > 0);
    g.check().unwrap();
    match lock.try_lock() {
        Err(Error::WouldBlock { holders, path, .. }) => {
            assert_eq!(
                holders.first().and_then(|h| h.pid),
                Some(std::process::id())
            );
            assert_eq!(holders.first().and_then(|h| h.token), Some(t1));
            assert!(path.to_string_lossy().ends_with("/job"), "{path:?}");
        }
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    let err = lock.lock_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let view = c.status("job").unwrap();
    assert!(view.held());
    assert_eq!(view.waiting(), 0, "timed-out waiters leave the queue");
    g.release().unwrap();
    let g2 = lock.try_lock().unwrap();
    assert!(g2.token() > t1);
    drop(g2);
    assert!(!c.status("job").unwrap().held());
}

#[test]
fn shared_holders_coexist_and_a_writer_waits_for_older_readers() {
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    let lock = c.lock("data").unwrap();
    let r1 = lock.try_lock_shared().unwrap();
    let r2 = lock.try_lock_shared().unwrap();
    assert!(matches!(lock.try_lock(), Err(Error::WouldBlock { .. })));
    let view = c.status("data").unwrap();
    assert_eq!(view.holders().len(), 2);
    assert_eq!(view.mode(), Some(Mode::Shared));
    // A writer queues; a reader arriving after it waits behind it (FIFO).
    let l2 = lock.clone();
    let writer = std::thread::spawn(move || l2.lock().map(|g| g.token()));
    holdfast_testkit::wait_for("the writer to queue", Duration::from_secs(5), || {
        (c.status("data").unwrap().waiting() == 1).then_some(())
    });
    assert!(matches!(
        lock.try_lock_shared(),
        Err(Error::WouldBlock { .. })
    ));
    drop(r1);
    assert!(c.status("data").unwrap().waiting() == 1, "r2 still holds");
    drop(r2);
    let t = writer.join().unwrap().unwrap();
    assert!(t > 0);
}

#[test]
fn fenced_marker_is_refused_after_the_lease_is_revoked() {
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    let lock = c.lock("app-db").unwrap();
    let markers = c.markers("app-db").unwrap();
    let a = lock.lock().unwrap();
    markers.mark_done("schema", &a).unwrap();
    assert!(markers.is_done("schema").unwrap());
    // Someone revokes A's lease (as its expiry would): B gets the lock.
    let out = etcd
        .etcdctl()
        .args(["lease", "revoke", &format!("{:x}", a.lease_id())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let b = lock.lock_timeout(Duration::from_secs(5)).unwrap();
    assert!(b.token() > a.token());
    let err = markers.mark_done("seed", &a).unwrap_err();
    assert!(matches!(err, Error::Lost { .. }), "{err}");
    assert!(
        !markers.is_done("seed").unwrap(),
        "a stale holder wrote nothing"
    );
    assert!(matches!(a.check(), Err(Error::Lost { .. })));
    markers.mark_done("seed", &b).unwrap();
    assert_eq!(markers.done_keys().unwrap(), ["schema", "seed"]);
    assert!(matches!(a.release(), Err(Error::Lost { .. })));
    assert!(markers.clear("seed").unwrap());
    assert!(!markers.clear("seed").unwrap());
}

#[test]
fn revocation_is_noticed_without_any_call() {
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    let g = c.lock("watched").unwrap().lock().unwrap();
    let signal = g.lost_signal();
    let t = std::thread::spawn(move || signal.wait());
    etcd.etcdctl()
        .args(["lease", "revoke", &format!("{:x}", g.lease_id())])
        .output()
        .unwrap();
    let reason = t.join().unwrap().expect("lost");
    assert!(
        reason.contains("deleted") || reason.contains("revoked"),
        "{reason}"
    );
    assert!(g.check().is_err());
}

#[test]
fn bad_input_is_refused_with_the_name() {
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    for bad in ["a/b", "a\0b", "", ".."] {
        let e = c.lock(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{bad:?}: {e}");
    }
    let lock = c.lock("ok").unwrap();
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(86401),
    ] {
        let e = lock.clone().with_ttl(ttl).unwrap_err();
        assert!(e.to_string().contains("TTL"), "{e}");
    }
}

#[test]
fn unreachable_endpoint_fails_within_the_timeout_naming_it() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd://127.0.0.1:{port}");
    let started = Instant::now();
    let c = ClientOptions::new(&url)
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(1))
        .connect();
    let err = match c {
        Err(e) => e,
        Ok(c) => c
            .lock("x")
            .unwrap()
            .acquire(Mode::Exclusive, Wait::Forever)
            .unwrap_err(),
    };
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// Not a test by itself: the child process of
/// `paused_holder_cannot_mark_after_its_lease_ran_out` (this test binary
/// run again with `HOLDFAST_ETCD_CHILD_URL` set). It holds the lock,
/// waits for a line on stdin, then tries a fenced mark and a check.
#[test]
fn child_holder() {
    let Ok(url) = std::env::var("HOLDFAST_ETCD_CHILD_URL") else {
        return;
    };
    let c = Client::connect(&url).unwrap();
    let lock = c
        .lock("paused")
        .unwrap()
        .with_ttl(Duration::from_secs(2))
        .unwrap();
    let markers = c.markers("paused").unwrap();
    let g = lock.lock().unwrap();
    // On a line of its own (libtest has printed "test child_holder ... ").
    println!("\nlocked {}", g.token());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    match markers.mark_done("step", &g) {
        Ok(()) => println!("mark ok"),
        Err(e) => println!("mark refused: {e}"),
    }
    match g.check() {
        Ok(()) => println!("check held"),
        Err(e) => println!("check lost: {e}"),
    }
}

/// A holder SIGSTOPped past its TTL: another process gets the lock within
/// TTL + 1 s; the stopped one, resumed, has its fenced mark refused by etcd
/// and its guard reports the loss.
#[test]
fn paused_holder_cannot_mark_after_its_lease_ran_out() {
    let Some(etcd) = Etcd::start() else { return };
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_holder", "--nocapture", "--test-threads=1"])
        .env("HOLDFAST_ETCD_CHILD_URL", etcd.url());
    let mut child = holdfast_testkit::Child::spawn(cmd);
    let line = child.expect_line("locked ", Duration::from_secs(30));
    let t1: u64 = line["locked ".len()..].parse().unwrap();
    let signal = |sig: &str| {
        let st = std::process::Command::new("kill")
            .args([sig, &child.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    signal("-STOP");
    let c = connect(&etcd);
    let lock = c
        .lock("paused")
        .unwrap()
        .with_ttl(Duration::from_secs(2))
        .unwrap();
    let markers = c.markers("paused").unwrap();
    let started = Instant::now();
    let g = lock.lock_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(g.token() > t1);
    signal("-CONT");
    child.send("go");
    let mark = child.expect_line("mark ", Duration::from_secs(30));
    assert!(mark.starts_with("mark refused"), "{mark}");
    assert!(mark.contains("was not written"), "{mark}");
    let check = child.expect_line("check ", Duration::from_secs(30));
    assert!(check.starts_with("check lost"), "{check}");
    assert!(
        !markers.is_done("step").unwrap(),
        "the stale holder wrote nothing"
    );
    markers.mark_done("step", &g).unwrap();
    child.wait(Duration::from_secs(30));
}

/// The library's generic phase runner and run-once run unchanged over
/// etcd through the backend traits.
#[test]
fn phase_runner_and_run_once_over_the_traits() {
    use holdfast::once::RunOnce;
    use holdfast::{Phase, PhaseRunner};
    let Some(etcd) = Etcd::start() else { return };
    let c = connect(&etcd);
    let lock = c.lock("app").unwrap();
    let markers = c.markers("app").unwrap();
    let runner = PhaseRunner::new("app");
    let r = runner
        .run_with(
            &lock,
            &markers,
            [Phase::new("one", |_| Ok(())), Phase::new("two", |_| Ok(()))],
        )
        .unwrap();
    assert_eq!(r.completed, ["one", "two"]);
    let again = runner
        .run_with(
            &lock,
            &markers,
            [
                Phase::new("one", |_| unreachable!()),
                Phase::new("two", |_| unreachable!()),
            ],
        )
        .unwrap();
    assert_eq!(again.skipped.len(), 2);
    assert_eq!(markers.done_keys().unwrap(), ["one", "two"]);
    let once_lock = c.lock("init").unwrap();
    let once_store = c.markers("init").unwrap();
    let once = RunOnce::new("cache");
    assert!(
        once.run_with(&once_lock, &once_store, |_| Ok(()))
            .unwrap()
            .ran()
    );
    assert!(
        !once
            .run_with(&once_lock, &once_store, |_| unreachable!())
            .unwrap()
            .ran()
    );
}

/// The async API from a caller's own tokio runtime (current-thread).
#[test]
fn async_api_from_another_runtime() {
    let Some(etcd) = Etcd::start() else { return };
    let url = etcd.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let c = ClientOptions::new(&url)
            .unwrap()
            .connect_async()
            .await
            .unwrap();
        let lock = c.lock("async").unwrap();
        let g = lock
            .acquire_async(Mode::Exclusive, Wait::Forever)
            .await
            .unwrap();
        let err = lock
            .acquire_async(Mode::Exclusive, Wait::NoWait)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WouldBlock { .. }), "{err}");
        g.release_async().await.unwrap();
        let g2 = lock
            .acquire_async(Mode::Shared, Wait::NoWait)
            .await
            .unwrap();
        drop(g2); // dropped inside async code: released in the background
    });
}
