//! Lock files across processes: holdfast against itself and against the
//! real Python libraries (flufl.lock, lockfile, filelock), crashes, hosts,
//! recycled pids, the stale-break race, bad input, and waiting.
//!
//! Interop tests need `HOLDFAST_TEST_PYTHON` (a Python with flufl.lock,
//! lockfile and filelock installed); without it they print
//! `skipping: HOLDFAST_TEST_PYTHON not set`, unless
//! `HOLDFAST_REQUIRE_INTEROP=1`, which makes them fail instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast_testkit::{Child, Dir, is_root, path_str as s};

use crate::common::HELPER;

const T: Duration = Duration::from_secs(30);

fn helper(args: &[&str]) -> Command {
    let mut c = crate::common::helper(args);
    c.env_remove("HOLDFAST_HOSTNAME");
    c
}

fn spawn(args: &[&str]) -> Child {
    Child::spawn(helper(args))
}

fn python(test: &str) -> Option<PathBuf> {
    holdfast_testkit::peer_python(test)
}

fn peer(py: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(py);
    c.arg(holdfast_testkit::peer_script("lockfile_peers.py"))
        .args(args);
    c
}

fn read_counter(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

fn expect_done(c: &mut Child) {
    let line = c.expect_line("done", Duration::from_secs(180));
    assert_eq!(line, "done violations=0", "{line}");
    assert!(c.wait(T).success());
}

/// A pid that is certainly not running: a child that has been reaped.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Field 22 of /proc/PID/stat.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "")
}

fn pid_ns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").unwrap().ino()
}

fn uname_host() -> String {
    let out = Command::new("uname").arg("-n").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The flavours: (protocol, compat) as the helper takes them.
const FLAVOURS: &[(&str, &str)] = &[
    ("soft", "holdfast"),
    ("soft", "filelock"),
    ("link", "flufl"),
    ("link", "lockfile"),
    ("mkdir", "holdfast"),
    ("mkdir", "lockfile"),
];

// ---------------------------------------------------------------------------
// holdfast against itself
// ---------------------------------------------------------------------------

#[test]
fn holdfast_processes_exclude_each_other_in_every_flavour() {
    for &(proto, compat) in FLAVOURS {
        let d = Dir::new();
        let lock = d.join("app");
        let counter = d.join("count.txt");
        let mut kids: Vec<Child> = (0..4)
            .map(|_| {
                spawn(&[
                    "lf-count",
                    proto,
                    s(&lock),
                    s(&counter),
                    "40",
                    "--compat",
                    compat,
                ])
            })
            .collect();
        for k in &mut kids {
            expect_done(k);
        }
        assert_eq!(read_counter(&counter), 160, "{proto}/{compat}");
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "count.txt")
            .collect();
        assert!(left.is_empty(), "{proto}/{compat} left {left:?}");
    }
}

// ---------------------------------------------------------------------------
// holdfast against the Python libraries
// ---------------------------------------------------------------------------

/// Two holdfast and two Python processes count on one path.
fn mixed_count(py: &Path, lib: &str, proto: &str, compat: &str, n: u32) {
    let d = Dir::new();
    let lock = d.join("shared");
    let counter = d.join("count.txt");
    let n_s = n.to_string();
    let mut kids = vec![
        spawn(&[
            "lf-count",
            proto,
            s(&lock),
            s(&counter),
            &n_s,
            "--compat",
            compat,
        ]),
        Child::spawn(peer(py, &[lib, "count", s(&lock), s(&counter), &n_s])),
        spawn(&[
            "lf-count",
            proto,
            s(&lock),
            s(&counter),
            &n_s,
            "--compat",
            compat,
        ]),
        Child::spawn(peer(py, &[lib, "count", s(&lock), s(&counter), &n_s])),
    ];
    for k in &mut kids {
        expect_done(k);
    }
    assert_eq!(read_counter(&counter), 4 * u64::from(n), "{lib}");
}

#[test]
fn flufl_lock_and_holdfast_exclude_each_other() {
    let Some(py) = python("flufl_lock_and_holdfast_exclude_each_other") else {
        return;
    };
    mixed_count(&py, "flufl", "link", "flufl", 25);
}

#[test]
fn lockfile_link_and_holdfast_exclude_each_other() {
    let Some(py) = python("lockfile_link_and_holdfast_exclude_each_other") else {
        return;
    };
    mixed_count(&py, "lockfile-link", "link", "lockfile", 25);
}

#[test]
fn lockfile_mkdir_and_holdfast_exclude_each_other() {
    let Some(py) = python("lockfile_mkdir_and_holdfast_exclude_each_other") else {
        return;
    };
    mixed_count(&py, "lockfile-mkdir", "mkdir", "lockfile", 25);
}

#[test]
fn filelock_soft_and_holdfast_exclude_each_other() {
    let Some(py) = python("filelock_soft_and_holdfast_exclude_each_other") else {
        return;
    };
    mixed_count(&py, "filelock", "soft", "filelock", 25);
}

/// Python holds; holdfast names it. holdfast holds; Python names it.
fn holders_seen_both_ways(
    py: &Path,
    lib: &str,
    proto: &str,
    compat: &str,
    python_view: impl Fn(&str, u32),
) {
    let d = Dir::new();
    let lock = d.join("seen");
    let mut p = Child::spawn(peer(py, &[lib, "hold", s(&lock)]));
    let line = p.expect_line("locked", T);
    let ppid: u32 = line.trim_start_matches("locked pid=").parse().unwrap();
    let st = status(proto, compat, &lock);
    assert!(st.contains("locked=true"), "{lib}: {st}");
    if lib != "lockfile-link" && lib != "lockfile-mkdir" {
        assert!(st.contains(&format!(" pid={ppid} ")), "{lib}: {st}");
    } else {
        // lockfile records no owner; holdfast reports what the unique
        // name says (host, and the pid where it can be recovered).
        assert!(st.contains(&format!(" pid={ppid} ")), "{lib}: {st}");
        assert!(
            st.contains(&format!(" host={} ", uname_host())),
            "{lib}: {st}"
        );
    }
    assert!(st.contains("stale=-"), "{lib}: {st}");
    p.send("release");
    p.expect_line("released", T);
    p.wait(T);

    let mut h = spawn(&["lf-hold", proto, s(&lock), "--compat", compat]);
    let line = h.expect_line("locked", T);
    let hpid: u32 = line.trim_start_matches("locked pid=").parse().unwrap();
    let out = peer(py, &[lib, "status", s(&lock)]).output().unwrap();
    let view = String::from_utf8_lossy(&out.stdout).into_owned();
    python_view(view.trim(), hpid);
    h.close_stdin();
    h.expect_line("released", T);
}

fn status(proto: &str, compat: &str, lock: &Path) -> String {
    let out = helper(&["lf-status", proto, s(lock), "--compat", compat])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn each_side_sees_the_others_holder() {
    let Some(py) = python("each_side_sees_the_others_holder") else {
        return;
    };
    holders_seen_both_ways(&py, "flufl", "link", "flufl", |v, pid| {
        // flufl.lock's `details`: (hostname, pid, lockfile); its `state`
        // says "unknown" for a live holder that is not itself.
        assert!(v.starts_with("details host="), "{v}");
        assert!(v.contains(&format!(" pid={pid} ")), "{v}");
        assert!(v.ends_with("state=unknown"), "{v}");
    });
    holders_seen_both_ways(&py, "filelock", "soft", "filelock", |v, pid| {
        assert_eq!(v, format!("pid={pid} held_by_us=False locked=True"));
    });
    for (lib, proto) in [("lockfile-link", "link"), ("lockfile-mkdir", "mkdir")] {
        holders_seen_both_ways(&py, lib, proto, "lockfile", |v, _| {
            assert_eq!(v, "is_locked=True i_am_locking=False");
        });
    }
}

// ---------------------------------------------------------------------------
// Crashes
// ---------------------------------------------------------------------------

/// kill -9 a holdfast holder with a long lease; a holdfast waiter already
/// waiting takes over well before the lease could have run out.
#[test]
fn a_killed_holder_on_this_host_is_taken_over_at_once() {
    for &(proto, compat) in FLAVOURS {
        let d = Dir::new();
        let lock = d.join("crash");
        let mut holder = spawn(&[
            "lf-hold",
            proto,
            s(&lock),
            "--compat",
            compat,
            "--lifetime-ms",
            "120000",
        ]);
        holder.expect_line("locked", T);
        let mut waiter = spawn(&[
            "lf-try",
            proto,
            s(&lock),
            "--compat",
            compat,
            "--lifetime-ms",
            "120000",
            "--timeout-ms",
            "60000",
        ]);
        // The waiter is waiting (it cannot have it yet).
        assert!(
            waiter.try_line(Duration::from_millis(300)).is_none(),
            "{proto}/{compat}"
        );
        holder.kill9();
        let line = waiter.expect_line("acquired", T);
        let ms: u64 = line
            .trim_start_matches("acquired elapsed_ms=")
            .parse()
            .unwrap();
        assert!(ms < 60_000, "{proto}/{compat}: {line}");
        assert!(waiter.wait(T).success());
    }
}

/// A Python filelock holder killed: holdfast takes over at once (its record
/// proves death); a holdfast holder killed: filelock takes over at once.
#[test]
fn filelock_and_holdfast_recover_each_others_crashes() {
    let Some(py) = python("filelock_and_holdfast_recover_each_others_crashes") else {
        return;
    };
    let d = Dir::new();
    let lock = d.join("fl");
    let mut p = Child::spawn(peer(&py, &["filelock", "hold", s(&lock)]));
    p.expect_line("locked", T);
    p.kill9();
    let out = helper(&["lf-try", "soft", s(&lock), "--compat", "filelock"])
        .output()
        .unwrap();
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(o.starts_with("acquired"), "{o}");

    let mut h = spawn(&["lf-hold", "soft", s(&lock), "--compat", "filelock"]);
    h.expect_line("locked", T);
    // While it lives, filelock does not break it.
    let mut w = Child::spawn(peer(&py, &["filelock", "try", s(&lock), "0.5"]));
    assert_eq!(w.line(T), "timeout");
    h.kill9();
    let mut w = Child::spawn(peer(&py, &["filelock", "try", s(&lock), "5"]));
    assert_eq!(w.line(T), "acquired");
    w.close_stdin();
}

/// A flufl.lock holder killed: holdfast takes over at once (same host, pid
/// gone). A holdfast link holder killed: flufl.lock breaks it when the
/// lease (1 s) plus its 10 s slop have passed, reading the mtime holdfast
/// set.
#[test]
fn flufl_lock_and_holdfast_recover_each_others_crashes() {
    let Some(py) = python("flufl_lock_and_holdfast_recover_each_others_crashes") else {
        return;
    };
    let d = Dir::new();
    let lock = d.join("fx");
    let mut p = Child::spawn(peer(&py, &["flufl", "hold", s(&lock)]));
    p.expect_line("locked", T);
    p.kill9();
    let out = helper(&["lf-try", "link", s(&lock)]).output().unwrap();
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(o.starts_with("acquired"), "{o}");

    let mut h = spawn(&["lf-hold", "link", s(&lock), "--lifetime-ms", "1000"]);
    h.expect_line("locked", T);
    let killed = Instant::now();
    h.kill9();
    let mut w = Child::spawn(peer(&py, &["flufl", "try", s(&lock), "30"]));
    assert_eq!(w.line(Duration::from_secs(40)), "acquired");
    assert!(
        killed.elapsed() >= Duration::from_secs(10),
        "flufl waited for lease + slop"
    );
    w.close_stdin();
}

/// The lease a holdfast lock carries: the mtime of the inode that holds
/// the record (the lock file, or the record file inside a lock directory).
fn lease_of(lock: &Path) -> SystemTime {
    let m = std::fs::symlink_metadata(lock).unwrap();
    if m.is_dir() {
        let rec = std::fs::read_dir(lock)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".holdfast"))
            .unwrap();
        return rec.metadata().unwrap().modified().unwrap();
    }
    m.modified().unwrap()
}

/// The path a flavour locks for `base`.
fn on_disk(base: &Path, compat: &str) -> PathBuf {
    if compat == "lockfile" {
        PathBuf::from(format!("{}.lock", s(base)))
    } else {
        base.to_owned()
    }
}

/// A holder on "another host" (HOLDFAST_HOSTNAME) is not judged by pid:
/// after kill -9 the waiter takes over only once the lease (plus skew) ran
/// out. The bound is checked against the lease written on disk, so a
/// loaded machine cannot make it fail.
#[test]
fn a_killed_holder_on_another_host_is_taken_over_after_its_lease() {
    for &(proto, compat) in FLAVOURS {
        if compat == "filelock" {
            continue; // filelock records carry no lease of their own
        }
        let d = Dir::new();
        let lock = d.join("remote");
        let mut cmd = helper(&[
            "lf-hold",
            proto,
            s(&lock),
            "--compat",
            compat,
            "--lifetime-ms",
            "1500",
        ]);
        cmd.env("HOLDFAST_HOSTNAME", "elsewhere.example");
        let mut holder = Child::spawn(cmd);
        holder.expect_line("locked", T);
        let expiry = lease_of(&on_disk(&lock, compat));
        holder.kill9();
        let (_, o) = try_out(&[
            "lf-try",
            proto,
            s(&lock),
            "--compat",
            compat,
            "--skew-ms",
            "500",
        ]);
        assert!(o.starts_with("wouldblock"), "{proto}/{compat}: {o}");
        assert!(o.contains("elsewhere.example"), "{proto}/{compat}: {o}");
        let mut w = spawn(&[
            "lf-try",
            proto,
            s(&lock),
            "--compat",
            compat,
            "--skew-ms",
            "500",
            "--timeout-ms",
            "20000",
        ]);
        w.expect_line("acquired", T);
        assert!(
            SystemTime::now() >= expiry + Duration::from_millis(500),
            "{proto}/{compat}: taken over before the lease + skew ran out"
        );
    }
}

/// The same with a real UTS namespace (another host name from the kernel).
#[test]
fn a_holder_in_another_uts_namespace_is_another_host() {
    if !is_root() || !have("unshare") {
        eprintln!("skipping: needs root and unshare");
        return;
    }
    let d = Dir::new();
    let lock = d.join("uts");
    let script = format!(
        "hostname uts-other && exec {HELPER} lf-hold link {} --lifetime-ms 1500",
        s(&lock)
    );
    let mut c = Command::new("unshare");
    c.args(["--uts", "sh", "-c", &script])
        .env_remove("HOLDFAST_HOSTNAME");
    let mut holder = Child::spawn(c);
    holder.expect_line("locked", T);
    let expiry = lease_of(&lock);
    let st = status("link", "flufl", &lock);
    assert!(st.contains("host=uts-other"), "{st}");
    holder.kill9();
    let (_, o) = try_out(&["lf-try", "link", s(&lock), "--skew-ms", "500"]);
    assert!(o.starts_with("wouldblock"), "{o}");
    let mut w = spawn(&[
        "lf-try",
        "link",
        s(&lock),
        "--skew-ms",
        "500",
        "--timeout-ms",
        "20000",
    ]);
    w.expect_line("acquired", T);
    assert!(SystemTime::now() >= expiry + Duration::from_millis(500));
}

/// The heartbeat keeps a lease alive as long as the guard lives; without
/// it, the lease of a live holder on another host runs out and the holder
/// learns that it lost the lock. Lease 1.5 s, skew 0.5 s: without a
/// heartbeat the waiter gets it after about 2 s; with one (every 0.5 s)
/// it must not within 4 s.
#[test]
fn heartbeat_keeps_a_lease_alive_and_without_it_the_lease_runs_out() {
    for heartbeat in [true, false] {
        let d = Dir::new();
        let lock = d.join("hb");
        let mut args = vec!["lf-hold", "link", s(&lock), "--lifetime-ms", "1500"];
        if heartbeat {
            args.push("--heartbeat");
        }
        let mut cmd = helper(&args);
        cmd.env("HOLDFAST_HOSTNAME", "elsewhere.example");
        let mut holder = Child::spawn(cmd);
        holder.expect_line("locked", T);
        let (_, o) = try_out(&[
            "lf-try",
            "link",
            s(&lock),
            "--skew-ms",
            "500",
            "--timeout-ms",
            "4000",
        ]);
        holder.send("check");
        let check = holder.line(T);
        if heartbeat {
            assert!(o.starts_with("timeout"), "with heartbeat: {o}");
            assert_eq!(check, "ok");
            holder.kill9();
            // Now nobody refreshes it: it runs out.
            let mut w = spawn(&[
                "lf-try",
                "link",
                s(&lock),
                "--skew-ms",
                "500",
                "--timeout-ms",
                "10000",
            ]);
            w.expect_line("acquired", T);
        } else {
            assert!(o.starts_with("acquired"), "without heartbeat: {o}");
            assert!(check.starts_with("lost: "), "{check}");
            holder.close_stdin();
        }
    }
}

// ---------------------------------------------------------------------------
// Recycled pids
// ---------------------------------------------------------------------------

/// Writes, by hand, a lock naming the live process `pid` with start time
/// `start`, in each format; returns the lock path to pass to the helper.
fn plant(d: &Dir, proto: &str, compat: &str, pid: u32, start: u64) -> PathBuf {
    let host = uname_host();
    let boot = boot_id();
    let ns = pid_ns();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = |claim: Option<&str>| {
        let mut r = format!(
            "holdfast-lockfile 1\npid {pid}\nstart {start}\nboot {boot}\npidns {ns}\nhost {host}\n\
             since {now}.0\nlifetime none\nnonce 00000000000000aa\n"
        );
        if let Some(c) = claim {
            r.push_str(&format!("claim {c}\n"));
        }
        r.push_str("cmd sleep\nend\n");
        r
    };
    let base = d.join("planted");
    match (proto, compat) {
        ("soft", "holdfast") => std::fs::write(&base, record(None)).unwrap(),
        ("soft", "filelock") => {
            let b = u128::from_str_radix(&boot, 16).unwrap();
            let token = num_token(b, start);
            std::fs::write(&base, format!("{pid}\n{host}\n{token}\n")).unwrap();
        }
        ("link", "flufl") => {
            // The host part is what the helper itself writes (getfqdn).
            let fqdn = fqdn_of_helper(d);
            let claim = format!(
                "{}|{fqdn}|{pid}|hf1.{start}.{boot}.{ns:x}.60000.00000000000000aa",
                s(&base)
            );
            std::fs::write(&claim, &claim).unwrap();
            std::fs::hard_link(&claim, &base).unwrap();
            let f = std::fs::File::options().write(true).open(&claim).unwrap();
            f.set_modified(SystemTime::now() + Duration::from_secs(60))
                .unwrap();
        }
        ("mkdir", "holdfast") => {
            std::fs::create_dir(&base).unwrap();
            std::fs::write(
                base.join(format!("{host}.{pid}.00000000000000aa.holdfast")),
                record(None),
            )
            .unwrap();
        }
        other => panic!("no planter for {other:?}"),
    }
    base
}

/// `(boot << 64) | start` in decimal, as filelock writes it.
fn num_token(boot: u128, start: u64) -> String {
    let mut limbs = [start, boot as u64, (boot >> 64) as u64];
    let mut digits = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u128;
        for l in limbs.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*l);
            *l = (cur / 10) as u64;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    digits.reverse();
    String::from_utf8(digits).unwrap()
}

fn fqdn_of_helper(d: &Dir) -> String {
    let probe = d.join("fqdn-probe");
    let mut h = spawn(&["lf-hold", "link", s(&probe)]);
    h.expect_line("locked", T);
    let st = status("link", "flufl", &probe);
    h.close_stdin();
    h.expect_line("released", T);
    st.split_whitespace()
        .find_map(|f| f.strip_prefix("host="))
        .unwrap()
        .to_owned()
}

#[test]
fn a_recycled_pid_does_not_keep_a_lock_alive() {
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = sleeper.id();
    let real = start_time(pid);
    for (proto, compat) in [
        ("soft", "holdfast"),
        ("soft", "filelock"),
        ("link", "flufl"),
        ("mkdir", "holdfast"),
    ] {
        // Control: the live process with its own start time holds it.
        let d = Dir::new();
        let lock = plant(&d, proto, compat, pid, real);
        let out = helper(&["lf-try", proto, s(&lock), "--compat", compat])
            .output()
            .unwrap();
        let o = String::from_utf8_lossy(&out.stdout);
        assert!(o.starts_with("wouldblock"), "{proto}/{compat} control: {o}");
        assert!(o.contains(&format!("pid {pid}")), "{proto}/{compat}: {o}");
        // The same pid with another start time: an unrelated process now
        // has that pid; the lock is stale at once.
        let d = Dir::new();
        let lock = plant(&d, proto, compat, pid, real + 1);
        let st = status(proto, compat, &lock);
        assert!(st.contains("stale=PidReused"), "{proto}/{compat}: {st}");
        let out = helper(&["lf-try", proto, s(&lock), "--compat", compat])
            .output()
            .unwrap();
        let o = String::from_utf8_lossy(&out.stdout);
        assert!(o.starts_with("acquired"), "{proto}/{compat}: {o}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

// ---------------------------------------------------------------------------
// The stale-break race
// ---------------------------------------------------------------------------

/// Makes `lock` a stale lock of `dead` in the given flavour, the way a
/// holder killed with kill -9 leaves it.
fn make_stale(d: &Dir, proto: &str, compat: &str, lock: &Path, dead: u32) {
    let host = uname_host();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = format!(
        "holdfast-lockfile 1\npid {dead}\nboot {}\nhost {host}\nsince {now}.0\nlifetime none\n\
         nonce 00000000000000bb\ncmd dead\nend\n",
        boot_id()
    );
    match (proto, compat) {
        ("soft", "holdfast") => std::fs::write(lock, record).unwrap(),
        ("soft", "filelock") => std::fs::write(lock, format!("{dead}\n{host}\n")).unwrap(),
        ("link", "flufl") => {
            let fqdn = FQDN.with(|f| f.clone());
            let claim = format!("{}|{fqdn}|{dead}|12345", s(lock));
            std::fs::write(&claim, &claim).unwrap();
            std::fs::hard_link(&claim, lock).unwrap();
        }
        ("mkdir", "holdfast") => {
            std::fs::create_dir(lock).unwrap();
            std::fs::write(
                lock.join(format!("{host}.{dead}.00000000000000bb.holdfast")),
                record,
            )
            .unwrap();
        }
        other => panic!("{other:?}"),
    }
    let _ = d;
}

thread_local! {
    static FQDN: String = {
        let d = Dir::new();
        fqdn_of_helper(&d)
    };
}

/// Many processes find the same stale lock at once; exactly one of them
/// wins, in each of 200 rounds, for each protocol.
fn stale_race(proto: &str, compat: &str, extra: &[&str]) {
    const RACERS: usize = 6;
    const ROUNDS: usize = 200;
    let d = Dir::new();
    let lock = d.join("race");
    let dead = dead_pid();
    let mut args = vec!["lf-race", proto, s(&lock), "--compat", compat];
    args.extend_from_slice(extra);
    let mut racers: Vec<Child> = (0..RACERS).map(|_| spawn(&args)).collect();
    for r in &mut racers {
        r.expect_line("ready", T);
    }
    for round in 0..ROUNDS {
        make_stale(&d, proto, compat, &lock, dead);
        for r in &mut racers {
            r.send("try");
        }
        let answers: Vec<String> = racers.iter_mut().map(|r| r.line(T)).collect();
        let winners: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == "won")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{proto}/{compat} round {round}: {answers:?}"
        );
        assert!(
            answers.iter().all(|a| a == "won" || a == "busy"),
            "{proto}/{compat} round {round}: {answers:?}"
        );
        let w = &mut racers[winners[0]];
        w.send("release");
        assert_eq!(w.line(T), "released");
        assert!(
            !lock.exists(),
            "{proto}/{compat} round {round}: the lock outlived its release"
        );
        let junk: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".break.") || n.contains(".restore."))
            .collect();
        assert!(junk.is_empty(), "{proto}/{compat} round {round}: {junk:?}");
    }
    for r in &mut racers {
        r.close_stdin();
        assert!(r.wait(T).success());
    }
}

#[test]
fn stale_break_race_soft() {
    stale_race("soft", "holdfast", &[]);
}

#[test]
fn stale_break_race_soft_filelock_format() {
    stale_race("soft", "filelock", &[]);
}

#[test]
fn stale_break_race_link() {
    stale_race("link", "flufl", &[]);
}

#[test]
fn stale_break_race_link_by_election() {
    stale_race("link", "flufl", &["--no-exchange"]);
}

#[test]
fn stale_break_race_mkdir() {
    stale_race("mkdir", "holdfast", &[]);
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

fn try_out(args: &[&str]) -> (i32, String) {
    let out = helper(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn a_missing_directory_is_an_io_error_naming_the_path() {
    let d = Dir::new();
    let lock = d.join("no/such/dir/x.lock");
    for &(proto, compat) in FLAVOURS {
        let (code, o) = try_out(&["lf-try", proto, s(&lock), "--compat", compat]);
        assert_eq!(code, 1, "{proto}/{compat}: {o}");
        assert!(
            o.starts_with("error: cannot create"),
            "{proto}/{compat}: {o}"
        );
        assert!(o.contains("no/such/dir"), "{o}");
        assert!(o.contains("No such file or directory"), "{o}");
    }
}

#[test]
fn a_read_only_directory_is_an_io_error() {
    if !is_root() || !have("unshare") || !have("mount") {
        eprintln!("skipping: needs root, unshare and mount");
        return;
    }
    let d = Dir::new();
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    for &(proto, compat) in FLAVOURS {
        let script = format!(
            "mount --bind {0} {0} && mount -o remount,bind,ro {0} && exec {HELPER} lf-try {proto} {0}/x --compat {compat}",
            s(&ro)
        );
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        let o = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{proto}/{compat}: {o}");
        assert!(o.contains("Read-only file system"), "{proto}/{compat}: {o}");
    }
}

#[test]
fn the_wrong_kind_of_object_at_the_lock_path_is_invalid_input() {
    let d = Dir::new();
    let dir = d.join("adir");
    std::fs::create_dir(&dir).unwrap();
    for (proto, compat) in [
        ("soft", "holdfast"),
        ("soft", "filelock"),
        ("link", "flufl"),
    ] {
        let (code, o) = try_out(&["lf-try", proto, s(&dir), "--compat", compat]);
        assert_eq!(code, 1, "{o}");
        assert!(o.contains("is a directory"), "{proto}: {o}");
    }
    let file = d.join("afile");
    std::fs::write(&file, b"data").unwrap();
    let (code, o) = try_out(&["lf-try", "mkdir", s(&file)]);
    assert_eq!(code, 1, "{o}");
    assert!(o.contains("is not a directory"), "{o}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    let link = d.join("alink");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let (code, o) = try_out(&["lf-try", "soft", s(&link)]);
    assert_eq!(code, 1, "{o}");
    assert!(o.contains("symbolic link"), "{o}");
}

#[test]
fn garbage_in_the_lock_is_read_as_documented() {
    let d = Dir::new();
    // Another program's content: never broken automatically.
    let foreign = d.join("foreign");
    std::fs::write(&foreign, b"precious data\n").unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "soft",
        s(&foreign),
        "--grace-ms",
        "100",
        "--timeout-ms",
        "700",
    ]);
    assert_eq!(code, 11, "{o}");
    assert!(o.contains("names no holder"), "{o}");
    assert_eq!(std::fs::read(&foreign).unwrap(), b"precious data\n");
    let (code, o) = try_out(&[
        "lf-try",
        "link",
        s(&foreign),
        "--grace-ms",
        "100",
        "--timeout-ms",
        "700",
    ]);
    assert_eq!(code, 11, "{o}");
    // A damaged holdfast record, an unparsable filelock record, an empty
    // lock directory: removed once unchanged for the grace period.
    let damaged = d.join("damaged");
    std::fs::write(&damaged, b"holdfast-lockfile 1\npid 12\x00garbage").unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "soft",
        s(&damaged),
        "--grace-ms",
        "200",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(code, 0, "{o}");
    let flg = d.join("flg");
    std::fs::write(&flg, b"not a filelock record").unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "soft",
        s(&flg),
        "--compat",
        "filelock",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(code, 0, "{o}");
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "mkdir",
        s(&empty),
        "--grace-ms",
        "200",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(code, 0, "{o}");
    // filelock's empty marker (a holder killed between creating and
    // filling it): stale once unchanged for the grace period, as any
    // record that names no holder (issue 10 item 5; it used to block
    // forever).
    let recordless = d.join("recordless");
    std::fs::write(&recordless, b"").unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "soft",
        s(&recordless),
        "--compat",
        "filelock",
        "--grace-ms",
        "100",
        "--timeout-ms",
        "700",
    ]);
    assert_eq!(code, 0, "{o}");
}

#[test]
fn a_lease_far_in_the_future_does_not_make_a_lock_immortal() {
    let d = Dir::new();
    let lock = d.join("future");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        &lock,
        format!(
            "holdfast-lockfile 1\npid 4242\nhost far-away\nsince {now}.0\nlifetime 0.300\n\
             nonce 00000000000000cc\ncmd x\nend\n"
        ),
    )
    .unwrap();
    let f = std::fs::File::options().write(true).open(&lock).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(10 * 365 * 86_400))
        .unwrap();
    let (code, o) = try_out(&[
        "lf-try",
        "soft",
        s(&lock),
        "--skew-ms",
        "200",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(code, 0, "{o}");
}

#[test]
fn a_pipe_in_a_flufl_lock_path_is_invalid_input() {
    let d = Dir::new();
    let (code, o) = try_out(&["lf-try", "link", s(&d.join("a|b"))]);
    assert_eq!(code, 1, "{o}");
    assert!(o.contains("invalid input") && o.contains('|'), "{o}");
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// With the poll interval at 60 s, a waiter still runs as soon as the
/// holder lets go: the directory notification woke it. The control without
/// notification sees the release only at its deadline (its last attempt);
/// with a short poll it gets there by polling.
#[test]
fn waiters_wake_on_release_by_notification_or_by_the_fallback_poll() {
    for &(proto, compat) in &[
        ("soft", "holdfast"),
        ("link", "flufl"),
        ("mkdir", "holdfast"),
    ] {
        for (mode, poll, timeout, woken) in [
            ("watch", "60000", "20000", true),
            ("no-watch", "60000", "2000", false),
            ("no-watch", "20", "20000", true),
        ] {
            let d = Dir::new();
            let lock = d.join("w");
            let mut holder = spawn(&["lf-hold", proto, s(&lock), "--compat", compat]);
            holder.expect_line("locked", T);
            let mut args = vec![
                "lf-try",
                proto,
                s(&lock),
                "--compat",
                compat,
                "--poll-ms",
                poll,
                "--timeout-ms",
                timeout,
            ];
            if mode == "no-watch" {
                args.push("--no-watch");
            }
            let mut w = spawn(&args);
            assert!(w.try_line(Duration::from_millis(300)).is_none());
            holder.send("release");
            holder.expect_line("released", T);
            let line = w.line(T);
            let what = format!("{proto} {mode} poll {poll}: {line}");
            assert!(line.starts_with("acquired elapsed_ms="), "{what}");
            let ms: u64 = line
                .trim_start_matches("acquired elapsed_ms=")
                .parse()
                .unwrap();
            if woken {
                assert!(ms < 15_000, "not woken before its deadline: {what}");
            } else {
                assert!(
                    ms >= 1_990,
                    "saw the release without notification or poll: {what}"
                );
            }
        }
    }
}

#[test]
fn break_lock_removes_a_live_lock_and_the_holder_learns_it() {
    for &(proto, compat) in FLAVOURS {
        let d = Dir::new();
        let lock = d.join("b");
        let mut holder = spawn(&["lf-hold", proto, s(&lock), "--compat", compat]);
        holder.expect_line("locked", T);
        let (code, o) = try_out(&["lf-break", proto, s(&lock), "--compat", compat]);
        assert_eq!((code, o.as_str()), (0, "broke=true"), "{proto}/{compat}");
        holder.send("check");
        let c = holder.line(T);
        assert!(c.starts_with("lost: "), "{proto}/{compat}: {c}");
        let (code, o) = try_out(&["lf-break", proto, s(&lock), "--compat", compat]);
        assert_eq!((code, o.as_str()), (0, "broke=false"));
    }
}
