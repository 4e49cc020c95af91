//! `holdfast break`, `holdfast run --fifo`, `holdfast run --lockfile`, and
//! lock files in `status`/`list`, with real processes.
//!
//! Holders are `holdfast run ... -- sh -c 'echo locked $$; read x'`: they
//! say when they hold the lock (and the command's pid), and let go when
//! their stdin closes. A crashed holder is a `kill -9` of holdfast. The
//! FIFO test starts each waiter only once the previous one is visibly in
//! the queue (the queue file's lock table, `/proc/locks`). Nothing waits
//! on a bare sleep.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use holdfast::FifoLock;
use holdfast_testkit::{
    Child, Collector, Dir, kernel_waiters, peer_python, peer_script, read_to_string_in_background,
    wait_for,
};
use serde_json::Value;

use crate::common::{HOLDFAST, T, holdfast, json, run};

const PROTOCOLS: [&str; 3] = ["soft", "link", "mkdir"];

/// A `holdfast run` holding a lock until its stdin closes.
struct Holder {
    child: Child,
    /// The pid of the command holdfast runs (`sh`).
    command_pid: u32,
}

impl Holder {
    /// `holdfast run FLAGS LOCK -- sh -c 'echo locked $$; read x'`.
    fn start(flags: &[&str], lock: &Path) -> Holder {
        let mut c = holdfast();
        c.arg("run").args(flags).arg(lock).args([
            "--",
            "sh",
            "-c",
            "echo locked $$; read x || true",
        ]);
        let mut child = Child::spawn(c);
        let line = child.expect_line("locked", T);
        let command_pid = line["locked ".len()..].trim().parse().unwrap();
        Holder { child, command_pid }
    }

    fn lockfile(protocol: &str, lock: &Path) -> Holder {
        Holder::start(&["--lockfile", protocol], lock)
    }

    /// holdfast's pid (the lock file's holder).
    fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Lets the command finish; returns holdfast's exit status.
    fn release(mut self) -> ExitStatus {
        self.child.close_stdin();
        self.child.wait(T)
    }
}

fn gone(pid: u32) -> bool {
    // A zombie has no command line left (and a reaped process no entry).
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
}

// ---------------------------------------------------------------------------
// holdfast break
// ---------------------------------------------------------------------------

/// A live holder is refused (exit 1, named, "alive"); once holdfast is
/// killed with SIGKILL (its command dies with it), the lock is stale and
/// `break` removes it, naming the dead pid and why; then there is nothing
/// left (exit 66).
#[test]
fn break_refuses_a_live_lock_file_and_breaks_a_crashed_holders() {
    for protocol in PROTOCOLS {
        let d = Dir::new();
        let lock = d.join("app.lock");
        let mut h = Holder::lockfile(protocol, &lock);
        let pid = h.pid();
        let out = run(holdfast().arg("break").arg(&lock));
        assert_eq!(out.code(), 1, "{protocol}: {out:?}");
        assert!(
            out.stderr.contains(&format!("held by pid {pid} (")) && out.stderr.contains("alive"),
            "{protocol}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("{protocol} lock")),
            "{}",
            out.stderr
        );
        assert!(lock.exists(), "{protocol}: a live lock stays");

        h.child.kill9();
        wait_for(
            &format!(
                "{protocol}: the command (pid {}) to die with holdfast",
                h.command_pid
            ),
            T,
            || gone(h.command_pid).then_some(()),
        );
        assert!(
            lock.exists(),
            "{protocol}: a crashed holder leaves its lock"
        );
        let st = json(&run(holdfast().args(["status", "--json"]).arg(&lock)));
        assert_eq!(st[0]["lockfile"]["stale"], true, "{st}");
        assert_eq!(st[0]["held"], false, "a stale lock file counts as free");

        let out = run(holdfast().arg("break").arg(&lock));
        assert_eq!(out.code(), 0, "{protocol}: {out:?}");
        // (A flufl.lock claim records no command line, and the process is
        // gone: only the pid is known then.)
        assert!(
            out.stdout.contains(&format!("held by pid {pid}"))
                && out
                    .stdout
                    .contains(&format!("stale: holder pid {pid} has exited")),
            "{protocol}: {}",
            out.stdout
        );
        assert!(!lock.exists(), "{protocol}: broken");
        let out = run(holdfast().arg("break").arg(&lock));
        assert_eq!(out.code(), 66, "{protocol}: nothing left: {out:?}");
    }
}

/// `--force` breaks a live lock and names its holder; that holder's
/// `holdfast run` then finds its lock lost when the command ends, and
/// says so with exit 75 although the command succeeded.
#[test]
fn break_force_breaks_a_live_lock_and_its_holder_learns_it() {
    for protocol in PROTOCOLS {
        let d = Dir::new();
        let lock = d.join("app.lock");
        let h = Holder::lockfile(protocol, &lock);
        let pid = h.pid();
        let out = run(holdfast().args(["break", "--force"]).arg(&lock));
        assert_eq!(out.code(), 0, "{protocol}: {out:?}");
        assert!(
            out.stdout.contains(&format!("held by pid {pid} (")),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr
                .contains(&format!("warning: pid {pid} is still running")),
            "{}",
            out.stderr
        );
        assert!(!lock.exists());
        let st = h.release();
        assert_eq!(st.code(), Some(75), "{protocol}: the lock was lost");
    }
}

/// A lock file found lost while the command runs (here removed by
/// `break --force`) stops the command at once: holdfast checks it every
/// second, sends SIGTERM and exits 75, while the command would otherwise
/// wait on its stdin for ever (which is never closed here).
#[test]
fn a_lock_file_lost_while_the_command_runs_stops_it() {
    for protocol in PROTOCOLS {
        let d = Dir::new();
        let lock = d.join("app.lock");
        let mut h = Holder::lockfile(protocol, &lock);
        let out = run(holdfast().args(["break", "--force"]).arg(&lock));
        assert_eq!(out.code(), 0, "{protocol}: {out:?}");
        let st = h.child.wait(T);
        assert_eq!(st.code(), Some(75), "{protocol}: the lock was lost");
        assert!(gone(h.command_pid), "{protocol}: the command was stopped");
    }
}

/// A kernel lock (util-linux flock(1), or `holdfast run`) is never broken:
/// exit 1, naming the holder and saying why; once free, a kernel lock file
/// is "no lock-file lock" (66), and is left in place.
#[test]
fn break_refuses_a_live_kernel_lock_naming_its_holder() {
    let d = Dir::new();
    let lock = d.join("k.lock");
    let mut flock = Child::spawn({
        let mut c = Command::new("flock");
        c.arg(&lock)
            .args(["sh", "-c", "echo locked; read x || true"]);
        c
    });
    flock.expect_line("locked", T);
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("held by pid {} (flock", flock.pid()))
            && out.stderr.contains("Kernel locks cannot be broken"),
        "{}",
        out.stderr
    );
    // Even when told it is a lock file of some protocol.
    let out = run(holdfast()
        .args(["break", "--force", "--protocol", "soft"])
        .arg(&lock));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(lock.exists());
    flock.close_stdin();
    assert!(flock.wait(T).success());
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 66, "{out:?}");
    assert!(out.stderr.contains("empty file"), "{}", out.stderr);

    let h = Holder::start(&[], &lock);
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("held by pid {} (", h.pid())),
        "{}",
        out.stderr
    );
    assert!(h.release().success());
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 66, "{out:?}");
    assert!(
        out.stderr.contains("a kernel lock file, free now"),
        "{}",
        out.stderr
    );
    assert!(lock.exists(), "a kernel lock file is never removed");
}

/// What break does with paths that hold no lock file.
#[test]
fn break_leaves_what_is_not_a_lock_alone() {
    let d = Dir::new();
    std::fs::write(d.join("data.txt"), b"precious\n").unwrap();
    std::fs::write(d.join("app.pid"), b"1\n").unwrap();
    std::fs::create_dir(d.join("src")).unwrap();
    std::os::unix::fs::symlink(d.join("data.txt"), d.join("link.lock")).unwrap();
    for (name, code) in [
        ("data.txt", 66),
        ("app.pid", 66),
        ("src", 66),
        ("missing", 66),
        ("link.lock", 64),
    ] {
        let out = run(holdfast().arg("break").arg(d.join(name)));
        assert_eq!(out.code(), code, "{name}: {out:?}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(std::fs::read(d.join("data.txt")).unwrap(), b"precious\n");
    assert!(d.join("src").is_dir());
    // The wrong protocol for what is there is bad input.
    let out = run(holdfast()
        .args(["break", "--protocol", "mkdir"])
        .arg(d.join("data.txt")));
    assert_eq!(out.code(), 64, "{out:?}");
    // Content that names no holder is never judged stale.
    let out = run(holdfast()
        .args(["break", "--protocol", "soft"])
        .arg(d.join("app.pid")));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(d.join("app.pid").exists());
    let out = run(holdfast()
        .args(["break", "--protocol", "soft", "--force"])
        .arg(d.join("app.pid")));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(!d.join("app.pid").exists());
}

/// Python lockfile names its lock `PATH.lock`: `break PATH` finds it there
/// (as `run --lockfile mkdir --compat lockfile PATH` makes it).
#[test]
fn break_finds_a_lockfile_format_lock_next_to_the_path() {
    let d = Dir::new();
    let data = d.join("db");
    std::fs::write(&data, b"data").unwrap();
    let mut h = Holder::start(&["--lockfile", "mkdir", "--compat", "lockfile"], &data);
    let lock = d.join("db.lock");
    assert!(lock.is_dir());
    let st = run(holdfast().arg("status").arg(&data));
    assert_eq!(st.code(), 1);
    assert!(st.stdout.contains("mkdir lock"), "{}", st.stdout);
    assert_eq!(run(holdfast().arg("break").arg(&data)).code(), 1);
    let pid = h.pid();
    h.child.kill9();
    let out = run(holdfast().arg("break").arg(&data));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("stale: holder pid {pid} has exited")),
        "{}",
        out.stdout
    );
    assert!(!lock.exists());
    assert_eq!(
        std::fs::read(&data).unwrap(),
        b"data",
        "the data is untouched"
    );
}

// ---------------------------------------------------------------------------
// holdfast run --fifo
// ---------------------------------------------------------------------------

/// Waiters of `holdfast run --fifo` get the lock in the order they asked.
/// Each waiter is started only once the one before it holds its ticket
/// and is blocked in the kernel (the next in line on the lock file, the
/// others on the queue file), so arrival order is
/// known; the log of who ran when must follow it exactly.
#[test]
fn run_fifo_serves_waiters_in_arrival_order() {
    const WAITERS: usize = 6;
    let d = Dir::new();
    let lock = d.join("app.lock");
    let mut queue = lock.as_os_str().to_owned();
    queue.push(".fifo");
    let queue = PathBuf::from(queue);
    let log = d.join("order");
    let probe = FifoLock::open(&lock).unwrap();
    let first = Holder::start(&["--fifo"], &lock);
    // The FIFO lock is the kernel lock flock(1) takes.
    assert_eq!(
        run(Command::new("flock").arg("-n").arg(&lock).arg("true")).code(),
        1
    );
    let mut waiters = Vec::new();
    for i in 1..=WAITERS {
        let mut c = holdfast();
        c.args(["run", "--fifo"]).arg(&lock).args([
            "--",
            "sh",
            "-c",
            &format!("echo {i} >> '{}'", log.display()),
        ]);
        waiters.push(
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(&format!("waiter {i} to queue up"), T, || {
            // The first waiter is next in line and waits on the lock file
            // itself; every later one on its predecessor's queue byte.
            (probe.queue_len().unwrap() == i + 1
                && kernel_waiters(&lock).len() == 1
                && kernel_waiters(&queue).len() == i - 1)
                .then_some(())
        });
    }
    assert!(!log.exists(), "nobody got in while the first held it");
    assert!(first.release().success());
    for (i, w) in waiters.iter_mut().enumerate() {
        let st = wait_for(&format!("waiter {} to finish", i + 1), T, || {
            w.try_wait().unwrap()
        });
        assert!(st.success());
    }
    let order: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = (1..=WAITERS).map(|i| i.to_string()).collect();
    assert_eq!(order, expected, "acquisition order = arrival order");
}

/// `--fifo` still shows who is in the way while it waits (--verbose: a
/// plain line, as stderr is a pipe), and hands the command the fencing
/// token as the plain kernel lock does.
#[test]
fn run_fifo_shows_the_waiting_line_and_exports_the_token() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let h = Holder::start(&["--fifo"], &lock);
    let mut c = holdfast();
    c.args(["run", "--fifo", "--verbose"]).arg(&lock).args([
        "--",
        "sh",
        "-c",
        "echo token=$HOLDFAST_FENCING_TOKEN",
    ]);
    let mut w = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = read_to_string_in_background(w.stdout.take().unwrap());
    let err = Collector::new(w.stderr.take().unwrap());
    let want = format!(
        "holdfast: waiting for an exclusive lock on {} — held by pid {} (",
        lock.display(),
        h.pid()
    );
    wait_for("the waiting line", T, || {
        err.text().contains(&want).then_some(())
    });
    assert!(h.release().success());
    let st = wait_for("the waiter", T, || w.try_wait().unwrap());
    assert!(st.success());
    let out = out.join().unwrap();
    let token: u64 = out.trim().strip_prefix("token=").unwrap().parse().unwrap();
    assert!(token >= 2, "{out}");
}

// ---------------------------------------------------------------------------
// holdfast run --lockfile
// ---------------------------------------------------------------------------

/// The critical section of the exclusion tests: an overlap detector (a
/// directory only one may create) and a counter, as a shell script.
fn critical_section(dir: &Path) -> String {
    format!(
        "cd '{}' && {{ mkdir inside 2>/dev/null || echo overlap >> violations; }} && \
         n=$(cat counter 2>/dev/null || echo 0) && echo $((n + 1)) > counter && rmdir inside",
        dir.display()
    )
}

fn counter(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("counter"))
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Four processes, each running `holdfast run --lockfile PROTO` ten times
/// around a read-increment-write of a shared counter: no overlap, no lost
/// update, for every protocol; the lock is gone afterwards.
#[test]
fn run_lockfile_excludes_across_processes() {
    const WORKERS: usize = 4;
    const ROUNDS: usize = 10;
    for protocol in PROTOCOLS {
        let d = Dir::new();
        let lock = d.join("app.lock");
        let cs = d.join("cs");
        std::fs::create_dir(&cs).unwrap();
        let script = format!(
            "for i in $(seq {ROUNDS}); do '{HOLDFAST}' run --lockfile {protocol} '{}' -- sh -c \
             \"$CS\" || exit 1; done",
            lock.display()
        );
        let mut kids: Vec<_> = (0..WORKERS)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", &script])
                    .env("CS", critical_section(&cs))
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in &mut kids {
            let st = wait_for(&format!("{protocol} workers"), T, || k.try_wait().unwrap());
            assert!(st.success(), "{protocol}: {st}");
        }
        assert!(
            !cs.join("violations").exists(),
            "{protocol}: overlapping holders"
        );
        assert_eq!(counter(&cs), (WORKERS * ROUNDS) as u64, "{protocol}");
        assert!(!lock.exists(), "{protocol}: released");
    }
}

/// SIGTERM to `holdfast run --lockfile` reaches the command; holdfast
/// waits for it, passes its status through, and removes the lock (no
/// stale lock left behind). Without --lifetime, --heartbeat is bad input.
#[test]
fn run_lockfile_passes_sigterm_on_and_releases() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let mut c = holdfast();
    c.args(["run", "--lockfile", "link"]).arg(&lock).args([
        "--",
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo locked; while :; do sleep 0.01; done",
    ]);
    let mut h = Child::spawn(c);
    h.expect_line("locked", T);
    // SAFETY-free: kill(1) does it.
    assert!(
        Command::new("kill")
            .args(["-TERM", &h.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    h.expect_line("got-term", T);
    assert_eq!(h.wait(T).code(), Some(3), "the command's status");
    assert!(!lock.exists(), "released, not left stale");

    for bad in [
        &["--lockfile", "soft", "--heartbeat"][..],
        &["--lockfile", "soft", "--shared"],
        &["--lockfile", "link", "--fifo"],
        &["--lockfile", "link", "--lifetime", "5x"],
        &["--lockfile", "link", "--lifetime", "0"],
        &["--compat", "flufl"],
        &["--lockfile", "soft", "--compat", "flufl"],
    ] {
        let out = run(holdfast()
            .arg("run")
            .args(bad)
            .arg(&lock)
            .args(["--", "true"]));
        assert_eq!(out.code(), 64, "{bad:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// --no-wait and --timeout keep their codes with lock files (1 and 124),
/// and name the holder.
#[test]
fn run_lockfile_would_block_and_timeout() {
    let d = Dir::new();
    let lock = d.join("app.lock");
    let h = Holder::lockfile("soft", &lock);
    let out = run(holdfast()
        .args(["run", "--no-wait", "--lockfile", "soft"])
        .arg(&lock)
        .args(["--", "true"]));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("held by pid {}", h.pid())),
        "{}",
        out.stderr
    );
    let out = run(holdfast()
        .args(["run", "--timeout", "200ms", "--lockfile", "soft"])
        .arg(&lock)
        .args(["--", "true"]));
    assert_eq!(out.code(), 124, "{out:?}");
    assert!(h.release().success());
}

// ---------------------------------------------------------------------------
// status and list
// ---------------------------------------------------------------------------

/// `status` and `list` recognise lock files of every protocol and show the
/// holder, its lease and whether it is stale, in text and JSON.
#[test]
fn status_and_list_show_lock_file_holders() {
    let d = Dir::new();
    let soft = d.join("soft.lock");
    let link = d.join("link.lock");
    let mkdir = d.join("mkdir.lock");
    let hs = Holder::lockfile("soft", &soft);
    let hl = Holder::start(&["--lockfile", "link", "--lifetime", "1m"], &link);
    let mut hm = Holder::lockfile("mkdir", &mkdir);
    std::fs::write(d.join("notes.txt"), b"not a lock").unwrap();

    let out = run(holdfast().args(["status", "--json"]).arg(&soft).arg(&link));
    assert_eq!(out.code(), 1, "held: {out:?}");
    let v = json(&out);
    for (i, (h, protocol, format)) in [(&hs, "soft", "holdfast"), (&hl, "link", "flufl")]
        .into_iter()
        .enumerate()
    {
        let o = &v[i];
        assert_eq!(o["held"], true);
        assert_eq!(o["mode"], "exclusive");
        assert_eq!(o["holders"], Value::Array(vec![]), "no kernel holder");
        let lf = &o["lockfile"];
        assert_eq!(lf["protocol"], protocol);
        assert_eq!(lf["format"], format);
        assert_eq!(lf["stale"], false);
        assert_eq!(lf["holder_alive"], true);
        assert_eq!(lf["holder"]["pid"], h.pid());
        assert!(
            lf["holder"]["command"]
                .as_str()
                .unwrap()
                .contains("--lockfile"),
            "{lf}"
        );
    }
    assert_eq!(v[0]["lockfile"]["expires"], Value::Null, "soft: no lease");
    let left = v[1]["lockfile"]["expires_in"].as_f64().unwrap();
    assert!(left > 30.0 && left <= 60.0, "the 1m lease: {left}");

    let text = run(holdfast().arg("status").arg(&link)).stdout;
    assert!(
        text.contains(&format!(
            "link lock (flufl.lock format), held by pid {} (",
            hl.pid()
        )) && text.contains("holder alive, lease ends in"),
        "{text}"
    );

    // A crashed holder: stale, and says how to clear it.
    let dead = hm.pid();
    hm.child.kill9();
    let out = run(holdfast().args(["list", "--json"]).arg(d.path()));
    assert_eq!(out.code(), 0, "{out:?}");
    let v = json(&out);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["link.lock", "mkdir.lock", "soft.lock"],
        "locks only, not their claim files or other files"
    );
    let m = &v[1];
    assert_eq!(m["held"], false);
    assert_eq!(m["lockfile"]["stale"], true);
    assert_eq!(m["lockfile"]["holder_alive"], false);
    assert_eq!(m["lockfile"]["holder"]["pid"], dead);
    assert!(
        m["lockfile"]["stale_reason"]
            .as_str()
            .unwrap()
            .contains("has exited")
    );
    let text = run(holdfast().arg("list").arg(d.path())).stdout;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains(&format!(
            "mkdir.lock: mkdir lock (holdfast format), stale (holder pid {dead} has exited): last held by pid {dead} ("
        )) && text.contains("'holdfast break' removes it"),
        "{text}"
    );
    assert_eq!(
        run(holdfast().arg("status").arg(&mkdir)).code(),
        0,
        "stale counts as free"
    );
    assert!(hs.release().success());
    assert!(hl.release().success());
    let v = json(&run(holdfast().args(["list", "--json"]).arg(d.path())));
    assert_eq!(v.as_array().unwrap().len(), 1, "only the stale one: {v}");
}

// ---------------------------------------------------------------------------
// Python flufl.lock
// ---------------------------------------------------------------------------

fn flufl_peer(py: &Path, cmd: &str, lock: &Path, rest: &[&str]) -> Command {
    let mut c = Command::new(py);
    c.arg(peer_script("lockfile_peers.py"))
        .args(["flufl", cmd])
        .arg(lock)
        .args(rest);
    c
}

/// A lock held by Python flufl.lock 10.0.0 shows in `status` with its
/// holder and lease; `break` refuses it while that process lives and
/// removes it, naming it, once it is killed.
#[test]
fn status_and_break_see_a_flufl_lock_holder() {
    let Some(py) = peer_python("status_and_break_see_a_flufl_lock_holder") else {
        return;
    };
    let d = Dir::new();
    let lock = d.join("py.lock");
    let mut p = Child::spawn(flufl_peer(&py, "hold", &lock, &[]));
    let line = p.expect_line("locked pid=", T);
    let pid: u32 = line["locked pid=".len()..].trim().parse().unwrap();
    assert_eq!(pid, p.pid());
    let out = run(holdfast().args(["status", "--json"]).arg(&lock));
    assert_eq!(out.code(), 1, "{out:?}");
    let lf = &json(&out)[0]["lockfile"];
    assert_eq!(lf["protocol"], "link");
    assert_eq!(lf["format"], "flufl");
    assert_eq!(lf["holder"]["pid"], pid);
    assert_eq!(lf["stale"], false);
    assert!(lf["expires_in"].as_f64().unwrap() > 0.0, "{lf}");
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("held by pid {pid}")),
        "{}",
        out.stderr
    );
    p.kill9();
    let out = run(holdfast().arg("break").arg(&lock));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("stale: holder pid {pid} has exited")),
        "{}",
        out.stdout
    );
    assert!(!lock.exists());
}

/// `holdfast run --lockfile link` and flufl.lock processes exclude each
/// other on one path (the CLI writes flufl.lock's format).
#[test]
fn run_lockfile_link_and_flufl_lock_exclude_each_other() {
    let Some(py) = peer_python("run_lockfile_link_and_flufl_lock_exclude_each_other") else {
        return;
    };
    const ROUNDS: usize = 10;
    let d = Dir::new();
    let lock = d.join("shared.lock");
    let cs = d.join("cs");
    std::fs::create_dir(&cs).unwrap();
    // The Python peer's critical section uses COUNTER and COUNTER's
    // ".inside" sibling: give both sides the same files.
    let py_counter = cs.join("counter");
    let script = format!(
        "for i in $(seq {ROUNDS}); do '{HOLDFAST}' run --lockfile link '{}' -- sh -c \"$CS\" \
         || exit 1; done",
        lock.display()
    );
    let cs_script = format!(
        "cd '{}' && {{ ( set -C; : > counter.inside ) 2>/dev/null || echo overlap >> violations; \
         }} && n=$(cat counter 2>/dev/null || echo 0) && echo $((n + 1)) > counter && \
         rm -f counter.inside",
        cs.display()
    );
    let mut rust_side = Command::new("sh")
        .args(["-c", &script])
        .env("CS", cs_script)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let n = ROUNDS.to_string();
    let mut py_side = Child::spawn(flufl_peer(
        &py,
        "count",
        &lock,
        &[py_counter.to_str().unwrap(), &n],
    ));
    let line = py_side.expect_line("done", T);
    assert_eq!(line, "done violations=0");
    let st = wait_for("the holdfast side", T, || rust_side.try_wait().unwrap());
    assert!(st.success());
    assert!(
        !cs.join("violations").exists(),
        "overlap seen by holdfast's side"
    );
    assert_eq!(counter(&cs), (2 * ROUNDS) as u64);
}

// ---------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------

#[test]
fn help_documents_break_fifo_and_lockfile() {
    let top = run(holdfast().arg("--help")).stdout;
    assert!(top.contains("break"), "{top}");
    let b = run(holdfast().args(["break", "--help"]));
    assert_eq!(b.code(), 0);
    for want in [
        "Kernel locks (flock(1)",
        "Without --protocol",
        "PATH.lock",
        "66     no lock-file lock",
    ] {
        assert!(b.stdout.contains(want), "break --help lacks {want:?}");
    }
    let r = run(holdfast().args(["run", "--help"])).stdout;
    for want in [
        "--fifo",
        "--lockfile <PROTOCOL>",
        "--lifetime",
        "--no-heartbeat",
        "75 ",
    ] {
        assert!(r.contains(want), "run --help lacks {want:?}");
    }
}
