//! `holdfast phases status|reset --backend URL`, the same checks over every
//! lock service: the `etcd` and `postgres` modules start a server and call
//! [`phases_status_and_reset`] with its URL.

#![cfg(any(feature = "etcd", feature = "postgres"))]

use std::process::Command;
use std::time::Duration;

use holdfast_testkit::{Child, Dir, run_to_end};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn holdfast(url: &str) -> Command {
    let mut c = crate::common::holdfast();
    c.env("HOLDFAST_BACKEND", url);
    for v in [
        "ETCDCTL_USER",
        "ETCDCTL_PASSWORD",
        "ETCDCTL_CACERT",
        "ETCDCTL_CERT",
        "ETCDCTL_KEY",
    ] {
        c.env_remove(v);
    }
    c
}

/// Phases p1 and p2 of `app` run; `phases status` lists them (with the
/// fencing token), says which named ones are not done (exit 1) and who
/// holds the lock; `phases reset` waits for a running phase (`--no-wait`
/// refuses, naming it), removes one marker or all of them, and the next
/// `phase` runs the command again.
pub fn phases_status_and_reset(url: &str) {
    let d = Dir::new();
    let log = d.join("log");
    let phase = |p: &str| {
        run_to_end(
            holdfast(url)
                .args(["phase", p, "--target", "app", "--", "sh", "-c"])
                .arg(format!("echo {p} >> '{}'", log.display())),
            T,
        )
    };
    let status = |args: &[&str]| run_to_end(holdfast(url).args(["phases", "status"]).args(args), T);
    let reset = |args: &[&str]| run_to_end(holdfast(url).args(["phases", "reset"]).args(args), T);
    let none = status(&["app"]);
    assert_eq!(none.code(), 0, "{none:?}");
    assert!(
        none.stdout.contains("done:        (none)"),
        "{}",
        none.stdout
    );
    for p in ["p1", "p2"] {
        let o = phase(p);
        assert_eq!(o.code(), 0, "{o:?}");
    }

    let st = status(&["app"]);
    assert_eq!(st.code(), 0, "{st:?}");
    let done = st.stdout.lines().find(|l| l.starts_with("done:")).unwrap();
    assert!(
        done.contains("p1 (") && done.contains("p2 ("),
        "{}",
        st.stdout
    );
    assert_eq!(done.matches("fencing token").count(), 2, "{}", st.stdout);
    assert!(st.stdout.contains(": free"), "{}", st.stdout);
    let some = status(&["app", "p1", "p3"]);
    assert_eq!(some.code(), 1, "{some:?}");
    assert!(some.stdout.contains("not done:    p3"), "{}", some.stdout);
    let js = status(&["--json", "app", "p2", "p9"]);
    assert_eq!(js.code(), 1, "{js:?}");
    let v: Value = serde_json::from_str(&js.stdout).expect("JSON");
    let phases = v["phases"].as_array().unwrap();
    let names: Vec<(&str, bool)> = phases
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["done"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("p1", true), ("p2", true), ("p9", false)], "{v}");
    assert!(phases[0]["token"].as_u64().unwrap() < phases[1]["token"].as_u64().unwrap());
    assert_eq!(v["lock"]["held"], false, "{v}");

    // A phase running: status names its holder, reset --no-wait refuses.
    let mut running = Child::spawn({
        let mut c = holdfast(url);
        c.args(["phase", "p3", "--target", "app", "--", "sh", "-c"])
            .arg("echo started; read x");
        c
    });
    running.expect_line("started", T);
    let held = status(&["app"]);
    assert!(
        held.stdout.contains(&format!("pid {}", running.pid())),
        "{}",
        held.stdout
    );
    let busy = reset(&["--no-wait", "app", "p1"]);
    assert_eq!(busy.code(), 1, "{busy:?}");
    assert!(busy.stderr.contains("app"), "{}", busy.stderr);
    assert_eq!(status(&["app", "p1"]).code(), 0, "nothing removed");
    running.send("go");
    assert!(running.wait(T).success());

    let one = reset(&["app", "p1", "nope"]);
    assert_eq!(one.code(), 0, "{one:?}");
    assert!(one.stdout.contains("removed p1"), "{}", one.stdout);
    assert!(one.stdout.contains("nope was not marked"), "{}", one.stdout);
    assert_eq!(status(&["app", "p1"]).code(), 1);
    assert_eq!(status(&["app", "p2"]).code(), 0, "p2 untouched");
    let all = reset(&["app"]);
    assert_eq!(all.code(), 0, "{all:?}");
    assert!(all.stdout.contains("removed p2"), "{}", all.stdout);
    assert!(all.stdout.contains("removed p3"), "{}", all.stdout);
    assert!(!all.stdout.contains("removed p1"), "{}", all.stdout);
    let empty = reset(&["app"]);
    assert!(
        empty.stdout.contains("no phase markers"),
        "{}",
        empty.stdout
    );
    assert_eq!(status(&["app", "p2"]).code(), 1);
    assert_eq!(phase("p1").code(), 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "p1\np2\np1\n",
        "p1 ran again after its reset"
    );
}
