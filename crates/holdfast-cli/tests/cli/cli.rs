//! Integration tests of the `holdfast` command, with real processes.
//!
//! The flock(1) compatibility table runs every scenario against the real
//! util-linux `flock` and against `holdfast flock`, with the lock held (or
//! not) by either of them, and asserts the same exit code, the same
//! blocking behaviour and, where it matters, the same output. Tests
//! synchronise on pipes, exit statuses and the kernel's lock table
//! (`/proc/locks`), with bounded waits; none asserts a speed.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use holdfast_testkit::{
    Child, Collector, Dir, kernel_holders, kernel_waiters, util_linux_flock, wait_for,
};

use crate::common::{HOLDFAST, holdfast, json, run};

const SHORT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Util,
    Holdfast,
}

const IMPLS: [Impl; 2] = [Impl::Util, Impl::Holdfast];

/// `flock` or `holdfast flock`, ready for arguments.
fn flock(i: Impl) -> Command {
    match i {
        Impl::Util => Command::new(util_linux_flock()),
        Impl::Holdfast => {
            let mut c = Command::new(HOLDFAST);
            c.arg("flock");
            c
        }
    }
}

/// The same, as words for a shell script (`$FLOCK -n 9`).
fn flock_words(i: Impl) -> String {
    match i {
        Impl::Util => util_linux_flock().to_owned(),
        Impl::Holdfast => format!("{HOLDFAST} flock"),
    }
}

/// A process holding the lock on `path` until its stdin closes.
struct Holder {
    child: Child,
}

impl Holder {
    /// `flock [-s] PATH sh -c 'echo locked; read x'` with either flock.
    fn flock(i: Impl, shared: bool, path: &Path) -> Holder {
        let mut c = flock(i);
        if shared {
            c.arg("-s");
        }
        c.arg(path)
            .args(["sh", "-c", "echo locked; read x || true"]);
        Holder::start(c)
    }

    /// `holdfast run [--shared] PATH -- sh -c ...`.
    fn run(shared: bool, path: &Path) -> Holder {
        let mut c = holdfast();
        c.arg("run");
        if shared {
            c.arg("--shared");
        }
        c.arg(path)
            .args(["--", "sh", "-c", "echo locked; read x || true"]);
        Holder::start(c)
    }

    fn start(c: Command) -> Holder {
        let mut child = Child::spawn(c);
        child.expect_line("locked", SHORT);
        Holder { child }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn release(mut self) {
        self.child.close_stdin();
        let st = self.child.wait(SHORT);
        assert!(st.success(), "holder exited with {st}");
    }
}

// ---------------------------------------------------------------------------
// flock(1) compatibility
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Free,
    Exclusive,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocks {
    /// Finishes without waiting for anyone.
    No,
    /// Waits in the kernel until the holder lets go.
    UntilRelease,
    /// Waits in the kernel, then gives up while the holder still holds.
    UntilTimeout,
}

struct Case {
    name: &'static str,
    held: Held,
    /// `$L` is the lock path, `$D` a directory that does not exist.
    args: &'static [&'static str],
    code: i32,
    blocks: Blocks,
    /// Expected stdout, when it is part of the behaviour.
    stdout: Option<&'static str>,
}

const fn case(name: &'static str, held: Held, args: &'static [&'static str], code: i32) -> Case {
    Case {
        name,
        held,
        args,
        code,
        blocks: Blocks::No,
        stdout: None,
    }
}

const fn blocking(
    name: &'static str,
    held: Held,
    args: &'static [&'static str],
    code: i32,
    blocks: Blocks,
) -> Case {
    Case {
        name,
        held,
        args,
        code,
        blocks,
        stdout: None,
    }
}

const fn output(
    name: &'static str,
    args: &'static [&'static str],
    code: i32,
    stdout: &'static str,
) -> Case {
    Case {
        name,
        held: Held::Free,
        args,
        code,
        blocks: Blocks::No,
        stdout: Some(stdout),
    }
}

/// Lists the descriptors of the shell that point at the lock file.
const COUNT_LOCK_FDS: &str =
    "for f in /proc/$$/fd/*; do readlink \"$f\"; done | grep -cxF \"$L\"; true";

use Blocks::{UntilRelease, UntilTimeout};
use Held::{Exclusive, Free, Shared};

const CASES: &[Case] = &[
    // The lock is free.
    case("exclusive, free", Free, &["$L", "true"], 0),
    case("shared, free", Free, &["-s", "$L", "true"], 0),
    case("nonblock, free", Free, &["-n", "$L", "true"], 0),
    case(
        "long nonblock, free",
        Free,
        &["--nonblock", "$L", "true"],
        0,
    ),
    case("command's status", Free, &["$L", "sh", "-c", "exit 7"], 7),
    case(
        "killed by SIGTERM: 128+15",
        Free,
        &["$L", "sh", "-c", "kill -TERM $$"],
        143,
    ),
    case(
        "killed by SIGKILL: 128+9",
        Free,
        &["$L", "sh", "-c", "kill -KILL $$"],
        137,
    ),
    output("-c string", &["$L", "-c", "echo hi; exit 3"], 3, "hi\n"),
    output(
        "--command string",
        &["$L", "--command", "echo hi"],
        0,
        "hi\n",
    ),
    output(
        "options stop at the first non-option",
        &["$L", "echo", "-n", "-x", "--verbose", "-w", "1"],
        0,
        "-x --verbose -w 1",
    ),
    output(
        "-- ends the options",
        &["--", "$L", "echo", "ok"],
        0,
        "ok\n",
    ),
    case(
        "-F runs without forking",
        Free,
        &["-F", "$L", "sh", "-c", "exit 5"],
        5,
    ),
    output(
        "the command inherits the lock",
        &["$L", "sh", "-c", COUNT_LOCK_FDS],
        0,
        "1\n",
    ),
    output(
        "-o: it does not",
        &["-o", "$L", "sh", "-c", COUNT_LOCK_FDS],
        0,
        "0\n",
    ),
    output(
        "-F: the program keeps it",
        &["-F", "$L", "sh", "-c", COUNT_LOCK_FDS],
        0,
        "1\n",
    ),
    case("-u on a fresh descriptor", Free, &["-u", "$L", "true"], 0),
    case(
        "-w 0x1 (strtold reads hex)",
        Free,
        &["-w", "0x1", "$L", "true"],
        0,
    ),
    case(
        "command not found: 69",
        Free,
        &["$L", "/nonexistent/command"],
        69,
    ),
    case("command not executable: 69", Free, &["$L", "$L"], 69),
    case(
        "-- passed to the command: 69",
        Free,
        &["$L", "--", "true"],
        69,
    ),
    case(
        "lock file in a missing directory: 66",
        Free,
        &["$D/x.lock", "true"],
        66,
    ),
    case("closed descriptor: 65", Free, &["99"], 65),
    case(
        "negative timeout: 71",
        Free,
        &["-w", "-1", "$L", "true"],
        71,
    ),
    case(
        "infinite timeout: 71",
        Free,
        &["-w", "inf", "$L", "true"],
        71,
    ),
    // Usage errors: 64.
    case("no arguments", Free, &[], 64),
    case("options only", Free, &["-n"], 64),
    case("a file without a command", Free, &["$L"], 64),
    case("unknown option", Free, &["-z", "$L", "true"], 64),
    case("ambiguous long option", Free, &["--n", "$L", "true"], 64),
    case("-c without its string", Free, &["$L", "-c"], 64),
    case("-c with two strings", Free, &["$L", "-c", "a", "b"], 64),
    case("unparsable timeout", Free, &["-w", "abc", "$L", "true"], 64),
    case("timeout with a unit", Free, &["-w", "1x", "$L", "true"], 64),
    case(
        "exit code too large",
        Free,
        &["-E", "300", "$L", "true"],
        64,
    ),
    case("negative exit code", Free, &["-E", "-1", "$L", "true"], 64),
    case("unparsable exit code", Free, &["-E", "x", "$L", "true"], 64),
    case(
        "--no-fork with --close",
        Free,
        &["-F", "-o", "$L", "true"],
        64,
    ),
    // Held exclusively by the other program.
    case("nonblock, held", Exclusive, &["-n", "$L", "true"], 1),
    case("--nb, held", Exclusive, &["--nb", "$L", "true"], 1),
    case(
        "--nonblocking, held",
        Exclusive,
        &["--nonblocking", "$L", "true"],
        1,
    ),
    case(
        "-E 42, held",
        Exclusive,
        &["-n", "-E", "42", "$L", "true"],
        42,
    ),
    case(
        "--conflict-exit-code",
        Exclusive,
        &["--conflict-exit-code", "9", "-n", "$L", "true"],
        9,
    ),
    case("-w 0 means -n", Exclusive, &["-w", "0", "$L", "true"], 1),
    case(
        "-n wins over -w",
        Exclusive,
        &["-w", "5", "-n", "$L", "true"],
        1,
    ),
    case(
        "shared nonblock, held",
        Exclusive,
        &["-s", "-n", "$L", "true"],
        1,
    ),
    case("-u does not wait", Exclusive, &["-u", "$L", "true"], 0),
    blocking(
        "-w times out",
        Exclusive,
        &["-w", "0.3", "$L", "true"],
        1,
        UntilTimeout,
    ),
    blocking(
        "--wait times out",
        Exclusive,
        &["--wait", "0.3", "-E", "5", "$L", "true"],
        5,
        UntilTimeout,
    ),
    blocking(
        "--timeout times out",
        Exclusive,
        &["--timeout", "0.2", "$L", "true"],
        1,
        UntilTimeout,
    ),
    blocking(
        "waits for the holder",
        Exclusive,
        &["$L", "true"],
        0,
        UntilRelease,
    ),
    blocking(
        "shared waits for the holder",
        Exclusive,
        &["-s", "$L", "true"],
        0,
        UntilRelease,
    ),
    blocking(
        "-w long enough",
        Exclusive,
        &["-w", "60", "$L", "true"],
        0,
        UntilRelease,
    ),
    // Held shared by the other program.
    case("shared with shared", Shared, &["-s", "-n", "$L", "true"], 0),
    case("shared, no wait", Shared, &["-s", "$L", "true"], 0),
    case("exclusive vs shared", Shared, &["-n", "$L", "true"], 1),
    case("-x vs shared", Shared, &["-x", "-n", "$L", "true"], 1),
    case("-e vs shared", Shared, &["-e", "-n", "$L", "true"], 1),
    case(
        "last mode flag wins",
        Shared,
        &["-x", "-s", "-n", "$L", "true"],
        0,
    ),
    blocking(
        "exclusive waits for shared",
        Shared,
        &["$L", "true"],
        0,
        UntilRelease,
    ),
];

fn expand(args: &[&str], lock: &Path, missing: &Path) -> Vec<OsString> {
    args.iter()
        .map(|a| {
            if let Some(rest) = a.strip_prefix("$D") {
                OsString::from(format!("{}{rest}", missing.display()))
            } else if *a == "$L" {
                lock.as_os_str().to_owned()
            } else {
                OsString::from(a)
            }
        })
        .collect()
}

/// Runs one case with `contender` while `holder` (if any) holds the lock,
/// checking the blocking behaviour on the way; returns the exit code and
/// stdout.
fn run_case(c: &Case, contender: Impl, holder: Impl) -> (i32, String) {
    let dir = Dir::new();
    let lock = dir.join("compat.lock");
    let missing = dir.join("missing");
    let label = format!("{} [{contender:?} vs {holder:?} holder]", c.name);
    let h = match c.held {
        Free => None,
        Exclusive => Some(Holder::flock(holder, false, &lock)),
        Shared => Some(Holder::flock(holder, true, &lock)),
    };
    let mut cmd = flock(contender);
    cmd.args(expand(c.args, &lock, &missing)).env("L", &lock);
    let result = if c.blocks == Blocks::No {
        let out = run(&mut cmd);
        (out.code(), out.stdout)
    } else {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(
            &format!("{label}: a kernel waiter on the lock"),
            SHORT,
            || (!kernel_waiters(&lock).is_empty()).then_some(()),
        );
        assert!(child.try_wait().unwrap().is_none(), "{label}: did not wait");
        let h = h.expect("blocking cases have a holder");
        let status = match c.blocks {
            Blocks::UntilTimeout => {
                let st = wait_for(&format!("{label}: timeout"), SHORT, || {
                    child.try_wait().unwrap()
                });
                assert!(
                    kernel_holders(&lock).contains(&(h.pid() as i64)),
                    "{label}: the holder let go before the timeout"
                );
                h.release();
                st
            }
            _ => {
                h.release();
                wait_for(&format!("{label}: exit after release"), SHORT, || {
                    child.try_wait().unwrap()
                })
            }
        };
        return (status.code().unwrap_or(-1), String::new());
    };
    if let Some(h) = h {
        h.release();
    }
    result
}

#[test]
fn flock_compatibility_table() {
    let mut failures = Vec::new();
    for c in CASES {
        let holders: &[Impl] = if c.held == Free {
            &[Impl::Util]
        } else {
            &IMPLS
        };
        for &holder in holders {
            for contender in IMPLS {
                let (code, stdout) = run_case(c, contender, holder);
                if code != c.code {
                    failures.push(format!(
                        "{} [{contender:?} vs {holder:?} holder]: exit {code}, expected {}",
                        c.name, c.code
                    ));
                }
                if let Some(want) = c.stdout
                    && stdout != want
                {
                    failures.push(format!(
                        "{} [{contender:?}]: stdout {stdout:?}, expected {want:?}",
                        c.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `exec 9>L; flock -n 9` in one program excludes the other program, both
/// ways; `flock -u 9` releases it; a closed descriptor exits 65.
#[test]
fn fd_form_excludes_both_ways() {
    for holder in IMPLS {
        for other in IMPLS {
            let dir = Dir::new();
            let lock = dir.join("fd.lock");
            // The shell keeps fd 9 (and the lock) until its stdin closes.
            let mut sh = Command::new("bash");
            sh.args([
                "-c",
                "exec 9>\"$L\"; $FLOCK -n 9; echo \"locked $?\"; read x || true",
            ])
            .env("L", &lock)
            .env("FLOCK", flock_words(holder));
            let mut child = Child::spawn(sh);
            assert_eq!(child.line(SHORT), "locked 0", "{holder:?} fd form");
            let label = format!("{holder:?} fd holder, {other:?} contender");
            assert_eq!(
                run(flock(other).args(["-n"]).arg(&lock).arg("true")).code(),
                1,
                "{label}"
            );
            assert_eq!(
                run(flock(other).args(["-n", "-E", "7"]).arg(&lock).arg("true")).code(),
                7,
                "{label}"
            );
            // The fd form of the other program conflicts as well.
            let probe = run(Command::new("bash")
                .args(["-c", "exec 9>>\"$L\"; $FLOCK -n 9; echo $?"])
                .env("L", &lock)
                .env("FLOCK", flock_words(other)));
            assert_eq!(probe.stdout, "1\n", "{label}: fd form vs fd form");
            // One read of /proc/locks can miss a line while other tests
            // lock and unlock; look again (bounded) before failing.
            wait_for(
                &format!("{label}: held by the dead flock's pid"),
                SHORT,
                || (!kernel_holders(&lock).is_empty()).then_some(()),
            );
            child.close_stdin();
            assert!(child.wait(SHORT).success());
            assert_eq!(
                run(flock(other).args(["-n"]).arg(&lock).arg("true")).code(),
                0,
                "{label}"
            );
        }
    }
}

#[test]
fn fd_form_unlock_and_shared() {
    for i in IMPLS {
        for other in IMPLS {
            let dir = Dir::new();
            let lock = dir.join("fd.lock");
            let script = "exec 9>\"$L\"
                $FLOCK 9
                $OTHER -n \"$L\" true; echo \"held $?\"
                $FLOCK -u 9
                $OTHER -n \"$L\" true; echo \"unlocked $?\"
                $FLOCK -s 9
                $OTHER -s -n \"$L\" true; echo \"shared-shared $?\"
                $OTHER -n \"$L\" true; echo \"shared-exclusive $?\"";
            let out = run(Command::new("bash")
                .args(["-c", script])
                .env("L", &lock)
                .env("FLOCK", flock_words(i))
                .env("OTHER", flock_words(other)));
            assert_eq!(
                out.stdout, "held 1\nunlocked 0\nshared-shared 0\nshared-exclusive 1\n",
                "{i:?} fd form with {other:?}: {}",
                out.stderr
            );
        }
    }
}

/// The fd form waits, like the file form, until the holder lets go.
#[test]
fn fd_form_blocks_until_release() {
    for holder in IMPLS {
        for waiter in IMPLS {
            let dir = Dir::new();
            let lock = dir.join("fd.lock");
            let h = Holder::flock(holder, false, &lock);
            let mut sh = Command::new("bash");
            sh.args(["-c", "exec 9>\"$L\"; $FLOCK 9; echo \"got $?\""])
                .env("L", &lock)
                .env("FLOCK", flock_words(waiter));
            let mut child = Child::spawn(sh);
            wait_for("the fd-form waiter to block in the kernel", SHORT, || {
                (!kernel_waiters(&lock).is_empty()).then_some(())
            });
            assert!(child.try_line(Duration::ZERO).is_none());
            h.release();
            assert_eq!(child.line(SHORT), "got 0", "{waiter:?} after {holder:?}");
        }
    }
}

/// `--fcntl` takes OFD locks: they exclude each other, and (on Linux) do
/// not see flock(2) locks. util-linux 2.38 has no --fcntl; where the
/// installed flock has it, it must agree.
#[test]
fn fcntl_backend() {
    let dir = Dir::new();
    let lock = dir.join("ofd.lock");
    let mut h = Child::spawn({
        let mut c = holdfast();
        c.args(["flock", "--fcntl"])
            .arg(&lock)
            .args(["sh", "-c", "echo locked; read x || true"]);
        c
    });
    h.expect_line("locked", SHORT);
    let holders = holdfast_testkit::proc_locks(&lock);
    assert!(
        holders.iter().any(|l| l.pid == -1 && l.exclusive),
        "an OFD lock: {holders:?}"
    );
    assert_eq!(
        run(holdfast()
            .args(["flock", "--fcntl", "-n"])
            .arg(&lock)
            .arg("true"))
        .code(),
        1
    );
    assert_eq!(
        run(holdfast()
            .args(["run", "--fcntl", "-n"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        1
    );
    assert_eq!(
        run(holdfast().args(["flock", "-n"]).arg(&lock).arg("true")).code(),
        0,
        "flock(2) and OFD locks do not see each other"
    );
    let util_has_fcntl = run(flock(Impl::Util).arg("--help"))
        .stdout
        .contains("--fcntl");
    if util_has_fcntl {
        assert_eq!(
            run(flock(Impl::Util)
                .args(["--fcntl", "-n"])
                .arg(&lock)
                .arg("true"))
            .code(),
            1
        );
    }
    h.close_stdin();
    assert!(h.wait(SHORT).success());
    assert_eq!(
        run(holdfast()
            .args(["flock", "--fcntl", "-n"])
            .arg(&lock)
            .arg("true"))
        .code(),
        0
    );
}

/// A symlink named `flock` makes holdfast behave as flock(1).
#[test]
fn invoked_as_flock() {
    let dir = Dir::new();
    let bin = dir.join("flock");
    std::os::unix::fs::symlink(HOLDFAST, &bin).unwrap();
    let lock = dir.join("argv0.lock");
    let h = Holder::flock(Impl::Util, false, &lock);
    assert_eq!(
        run(Command::new(&bin).arg("-n").arg(&lock).arg("true")).code(),
        1
    );
    let out = run(Command::new(&bin)
        .args(["-w", "nope"])
        .arg(&lock)
        .arg("true"));
    assert_eq!(out.code(), 64);
    assert!(
        out.stderr
            .starts_with("flock: invalid timeout value: 'nope'"),
        "{}",
        out.stderr
    );
    let v = run(Command::new(&bin).arg("-V"));
    assert_eq!(v.code(), 0);
    assert!(
        v.stdout.contains("flock") && v.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        v.stdout
    );
    h.release();
    let out = run(Command::new(&bin)
        .arg("--verbose")
        .arg(&lock)
        .args(["echo", "ran"]));
    assert_eq!(out.code(), 0);
    assert!(
        out.stdout.starts_with("flock: getting lock took "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("flock: executing echo\nran\n"),
        "{}",
        out.stdout
    );
}

/// flock(1) keeps the lock held by the command even when flock itself is
/// killed; so does holdfast (the command inherits the descriptor), unless
/// --close.
#[test]
fn the_command_keeps_the_lock_when_holdfast_dies() {
    for close in [false, true] {
        let dir = Dir::new();
        let lock = dir.join("inherit.lock");
        let mut c = holdfast();
        c.arg("run");
        if close {
            c.arg("--close");
        }
        c.arg(&lock)
            .args(["--", "sh", "-c", "echo started; read x || true"]);
        let mut child = Child::spawn(c);
        child.expect_line("started", SHORT);
        // Not Child::kill9: reaping through std closes the stdin pipe the
        // orphaned command reads from, and it would exit.
        assert!(
            run(Command::new("kill").args(["-9", &child.pid().to_string()]))
                .status
                .success()
        );
        wait_for("holdfast to die", SHORT, || {
            child.has_exited().then_some(())
        });
        let free = run(flock(Impl::Util).arg("-n").arg(&lock).arg("true")).code() == 0;
        assert_eq!(free, close, "close={close}: lock free after holdfast died");
        child.close_stdin(); // the orphaned sh reads EOF and exits
        wait_for("the orphaned command to release the lock", SHORT, || {
            kernel_holders(&lock).is_empty().then_some(())
        });
    }
}

// ---------------------------------------------------------------------------
// holdfast run
// ---------------------------------------------------------------------------

#[test]
fn run_passes_the_command_status_through() {
    let dir = Dir::new();
    let lock = dir.join("run.lock");
    let code = |script: &str| {
        run(holdfast()
            .arg("run")
            .arg(&lock)
            .args(["--", "sh", "-c", script]))
        .code()
    };
    assert_eq!(code("exit 0"), 0);
    assert_eq!(code("exit 7"), 7);
    assert_eq!(code("kill -TERM $$"), 143);
    assert_eq!(code("kill -KILL $$"), 137);
    assert_eq!(
        run(holdfast()
            .arg("run")
            .arg(&lock)
            .args(["--", "/nonexistent/x"]))
        .code(),
        127
    );
    assert_eq!(
        run(holdfast().arg("run").arg(&lock).arg("--").arg(&lock)).code(),
        126
    );
}

#[test]
fn run_tells_would_block_from_timed_out() {
    let dir = Dir::new();
    let lock = dir.join("run.lock");
    let h = Holder::flock(Impl::Util, false, &lock);
    let nb = run(holdfast()
        .args(["run", "--no-wait"])
        .arg(&lock)
        .args(["--", "true"]));
    assert_eq!(nb.code(), 1);
    assert!(
        nb.stderr.contains("is not available: held by pid"),
        "{}",
        nb.stderr
    );
    assert!(
        nb.stderr.contains(&format!("pid {}", h.pid())),
        "{}",
        nb.stderr
    );
    assert_eq!(
        run(holdfast()
            .args(["run", "-w", "0"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        1
    );
    for t in ["300ms", "0.3", "0.3s"] {
        let to = run(holdfast()
            .args(["run", "--timeout", t])
            .arg(&lock)
            .args(["--", "true"]));
        assert_eq!(to.code(), 124, "--timeout {t}: {}", to.stderr);
        assert!(to.stderr.contains("timed out after"), "{}", to.stderr);
        assert!(
            to.stderr
                .contains(&format!("held by pid {} (/usr/bin/flock ", h.pid()))
                || to
                    .stderr
                    .contains(&format!("held by pid {} (flock ", h.pid())),
            "names the flock(1) holder: {}",
            to.stderr
        );
    }
    h.release();
    assert_eq!(
        run(holdfast()
            .args(["run", "-w", "2m"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        0
    );
}

#[test]
fn run_waits_in_the_kernel_until_release() {
    let dir = Dir::new();
    let lock = dir.join("run.lock");
    for holder_kind in IMPLS {
        let h = Holder::flock(holder_kind, false, &lock);
        let mut waiter = Child::spawn({
            let mut c = holdfast();
            c.arg("run").arg(&lock).args(["--", "echo", "ran"]);
            c
        });
        let pid = waiter.pid() as i64;
        wait_for("holdfast run blocked in the kernel", SHORT, || {
            kernel_waiters(&lock).contains(&pid).then_some(())
        });
        assert!(waiter.try_line(Duration::ZERO).is_none(), "ran while held");
        h.release();
        assert_eq!(waiter.line(SHORT), "ran");
        assert!(waiter.wait(SHORT).success());
    }
}

#[test]
fn run_shared_locks_coexist() {
    let dir = Dir::new();
    let lock = dir.join("shared.lock");
    let h = Holder::flock(Impl::Util, true, &lock);
    let h2 = Holder::run(true, &lock);
    assert_eq!(
        run(holdfast()
            .args(["run", "--shared", "-n"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        0
    );
    assert_eq!(
        run(holdfast()
            .args(["run", "-n"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        1
    );
    h.release();
    h2.release();
    assert_eq!(
        run(holdfast()
            .args(["run", "-n"])
            .arg(&lock)
            .args(["--", "true"]))
        .code(),
        0
    );
}

#[test]
fn run_exports_a_growing_fencing_token() {
    let dir = Dir::new();
    let lock = dir.join("token.lock");
    let token = || {
        let out = run(holdfast().arg("run").arg(&lock).args([
            "--",
            "sh",
            "-c",
            "echo $HOLDFAST_FENCING_TOKEN",
        ]));
        assert_eq!(out.code(), 0);
        out.stdout.trim().parse::<u64>().expect("a token")
    };
    let a = token();
    let b = token();
    assert_eq!(b, a + 1);
}

/// The command gets holdfast's environment as it is (passed by pointer,
/// not copied), with exactly one fencing token: an inherited token is
/// replaced, a variable whose name merely starts with the token's is
/// kept, and so are the rest (`run` and `flock`).
#[test]
fn the_command_gets_our_environment_with_one_token() {
    let dir = Dir::new();
    let lock = dir.join("env.lock");
    let script = "printf '%s|%s|%s|' \"$HOLDFAST_FENCING_TOKEN_X\" \"$HF_KEPT\" \"${HOLDFAST_FENCING_TOKEN-unset}\"; \
                  env | grep -c '^HOLDFAST_FENCING_TOKEN='";
    let with_env = |c: &mut std::process::Command| {
        c.env("HOLDFAST_FENCING_TOKEN", "999999")
            .env("HOLDFAST_FENCING_TOKEN_X", "prefix")
            .env("HF_KEPT", "a=b c");
    };
    let check = |mut cmd: std::process::Command| {
        with_env(&mut cmd);
        let out = run(&mut cmd);
        assert_eq!(out.code(), 0, "{out:?}");
        let parts: Vec<&str> = out.stdout.trim().split('|').collect();
        assert_eq!(&parts[..2], ["prefix", "a=b c"], "{out:?}");
        assert_ne!(parts[2], "999999", "{out:?}");
        parts[2].parse::<u64>().expect("a fresh token");
        assert_eq!(parts[3], "1", "{out:?}");
    };
    let mut r = holdfast();
    r.arg("run").arg(&lock).args(["--", "sh", "-c", script]);
    check(r);
    let mut f = holdfast();
    f.arg("flock").arg(&lock).args(["sh", "-c", script]);
    check(f);
}

/// Bad input: exit 64 and a message that names the problem.
#[test]
fn run_bad_input_is_a_usage_error_that_names_the_problem() {
    let dir = Dir::new();
    let lock = dir.join("bad.lock");
    std::os::unix::fs::symlink(dir.join("target"), dir.join("link.lock")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "$L"], "<COMMAND>"),
        (&["run", "$L", "--"], "<COMMAND>"),
        (
            &["run", "--timeout", "5x", "$L", "--", "true"],
            "unknown unit \"x\" in \"5x\"",
        ),
        (
            &["run", "--timeout", "soon", "$L", "--", "true"],
            "cannot read \"soon\" as a duration",
        ),
        (
            &["run", "-w", "-1", "$L", "--", "true"],
            "negative duration",
        ),
        (
            &["run", "--timeout=-2s", "$L", "--", "true"],
            "negative duration",
        ),
        (
            &["run", "-n", "-w", "1", "$L", "--", "true"],
            "cannot be used with",
        ),
        (
            &["run", "$D/x.lock", "--", "true"],
            "does not exist (create it, or pass --create-parents)",
        ),
        (&["run", "$LINK", "--", "true"], "is a symbolic link to "),
        (
            &["status", "$LINK"],
            "holdfast does not follow links to lock files",
        ),
        (&["run", "$L/x", "--", "true"], "not a directory"),
        (&["status"], "<PATHS>"),
        (&["list", "$D"], "no such directory"),
        (&["bogus"], "unrecognized subcommand"),
    ];
    std::fs::write(&lock, b"").unwrap();
    for (args, msg) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("$LINK", &dir.join("link.lock").display().to_string())
                    .replace("$L", &lock.display().to_string())
                    .replace("$D", &dir.join("missing").display().to_string())
            })
            .collect();
        let out = run(holdfast().args(&args));
        assert_eq!(out.code(), 64, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(msg),
            "{args:?}: {:?} lacks {msg:?}",
            out.stderr
        );
    }
    // --create-parents fixes the missing directory.
    let deep = dir.join("a/b/c.lock");
    assert_eq!(
        run(holdfast()
            .args(["run", "--create-parents"])
            .arg(&deep)
            .args(["--", "true"]))
        .code(),
        0
    );
    assert!(deep.exists());
}

/// A lock path in a directory the caller cannot write: 64, naming the
/// directory. Root can write anywhere, so as root this runs holdfast as
/// `nobody` through setpriv(1).
#[test]
fn run_in_an_unwritable_directory() {
    let dir = Dir::new();
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let is_root = run(Command::new("id").arg("-u")).stdout.trim() == "0";
    let mut cmd = if is_root {
        // Let nobody into the test directory, but not write in `ro`.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", HOLDFAST]);
        c
    } else {
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        holdfast()
    };
    let out = run(cmd.arg("run").arg(ro.join("x.lock")).args(["--", "true"]));
    assert_eq!(out.code(), 64, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("directory {} is not writable", ro.display())),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// status and list
// ---------------------------------------------------------------------------

#[test]
fn status_json_names_a_util_linux_flock_holder() {
    let dir = Dir::new();
    let lock = dir.join("status.lock");
    let h = Holder::flock(Impl::Util, false, &lock);
    let out = run(holdfast().args(["status", "--json"]).arg(&lock));
    assert_eq!(out.code(), 1, "held: exit 1");
    let v = json(&out);
    let st = &v[0];
    assert_eq!(st["held"], true);
    assert_eq!(st["mode"], "exclusive");
    let holder = &st["holders"][0];
    assert_eq!(holder["pid"], h.pid());
    assert_eq!(holder["source"], "kernel");
    let cmd = holder["command"].as_str().unwrap();
    assert!(
        cmd.contains("flock") && cmd.contains("status.lock"),
        "{cmd}"
    );
    let text = run(holdfast().arg("status").arg(&lock));
    assert!(
        text.stdout
            .contains(&format!("exclusive, held by pid {} (", h.pid())),
        "{}",
        text.stdout
    );
    h.release();
    let out = run(holdfast().args(["status", "--json"]).arg(&lock));
    assert_eq!(out.code(), 0);
    assert_eq!(json(&out)[0]["held"], false);
}

#[test]
fn status_json_names_a_holdfast_holder_from_its_record() {
    let dir = Dir::new();
    let lock = dir.join("status.lock");
    for run_form in [true, false] {
        let holder = if run_form {
            Holder::run(false, &lock)
        } else {
            Holder::flock(Impl::Holdfast, false, &lock)
        };
        let v = json(&run(holdfast().args(["status", "--json"]).arg(&lock)));
        let h = &v[0]["holders"][0];
        assert_eq!(h["pid"], holder.pid());
        assert_eq!(h["source"], "record");
        assert!(h["token"].as_u64().is_some(), "{h}");
        assert!(
            h["since"].as_f64().is_some() && h["held_for"].as_f64().is_some(),
            "{h}"
        );
        assert!(h["command"].as_str().unwrap().contains("holdfast"), "{h}");
        holder.release();
    }
    let v = json(&run(holdfast().args(["status", "--json"]).arg(&lock)));
    assert_eq!(v[0]["held"], false);
    assert_eq!(
        v[0]["last_record"]["token"], 2,
        "the last holder's token stays in the file"
    );
    let missing = run(holdfast().arg("status").arg(dir.join("nope.lock")));
    assert_eq!(
        (missing.code(), missing.stdout.trim_end()),
        (
            0,
            &*format!("{}: free (no such file)", dir.join("nope.lock").display())
        )
    );
}

#[test]
fn list_shows_held_locks_and_records() {
    let dir = Dir::new();
    let a = dir.join("a.lock");
    let b = dir.join("b.lock");
    let c = dir.join("c.lock");
    std::fs::write(dir.join("d.txt"), b"just data").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&a, dir.join("e.link")).unwrap();
    assert_eq!(
        run(holdfast().arg("run").arg(&c).args(["--", "true"])).code(),
        0
    );
    let ha = Holder::flock(Impl::Util, false, &a);
    let hb = Holder::run(false, &b);
    let out = run(holdfast().args(["list", "--json"]).arg(dir.path()));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v = json(&out);
    let names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            Path::new(e["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["a.lock", "b.lock", "c.lock"]);
    assert_eq!(v[0]["holders"][0]["pid"], ha.pid());
    assert_eq!(v[0]["holders"][0]["source"], "kernel");
    assert_eq!(v[1]["holders"][0]["pid"], hb.pid());
    assert_eq!(v[1]["holders"][0]["source"], "record");
    assert_eq!(v[2]["held"], false);
    assert!(v[2]["last_record"]["token"].as_u64().is_some());
    let text = run(holdfast().arg("list").arg(dir.path())).stdout;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .contains("c.lock: free (last held by pid"),
        "{text}"
    );
    ha.release();
    hb.release();
    // The directory itself, locked by flock(1), is listed too.
    let hs = Holder::flock(Impl::Util, false, &dir.join("sub"));
    let v = json(&run(holdfast().args(["list", "--json"]).arg(dir.path())));
    let sub = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with("sub"))
        .expect("sub listed");
    assert_eq!(sub["holders"][0]["pid"], hs.pid());
    hs.release();
}

// ---------------------------------------------------------------------------
// The waiting line
// ---------------------------------------------------------------------------

const WAITING: &str = "waiting for an exclusive lock on ";

/// Under a pseudo-terminal (script(1)), the waiting line names the holder,
/// is redrawn, and is erased before the command's output; all the while
/// holdfast is blocked in the kernel, not polling.
#[test]
fn waiting_line_on_a_terminal() {
    for form in ["run", "flock"] {
        let dir = Dir::new();
        let lock = dir.join("tty.lock");
        let h = Holder::flock(Impl::Util, false, &lock);
        let inner = match form {
            "run" => format!("{HOLDFAST} run {} -- echo ran", lock.display()),
            _ => format!("{HOLDFAST} flock {} echo ran", lock.display()),
        };
        let mut child = Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .env("COLUMNS", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script(1) from util-linux");
        let out = Collector::new(child.stdout.take().unwrap());
        let want = format!("{WAITING}{} — held by pid {} (", lock.display(), h.pid());
        wait_for(&format!("{form}: the waiting line {want:?}"), SHORT, || {
            out.text().contains(&want).then_some(())
        });
        // The line is drawn by a second thread a moment after the first
        // attempt failed, while the main thread goes on into the kernel's
        // wait: under load the line can come first, so wait (bounded) for
        // the one request blocked in the kernel while the line shows.
        wait_for(
            &format!("{form}: blocked in the kernel while the line shows"),
            SHORT,
            || (kernel_waiters(&lock).len() == 1).then_some(()),
        );
        // Redrawn about once a second.
        wait_for(&format!("{form}: a redraw"), SHORT, || {
            (out.text().matches(WAITING).count() >= 2).then_some(())
        });
        h.release();
        let st = wait_for("script to exit", SHORT, || child.try_wait().unwrap());
        assert!(st.success());
        let text = out.text();
        let last_line = text.rfind(WAITING).unwrap();
        let erased = text[last_line..]
            .find("\r\x1b[K")
            .map(|i| last_line + i)
            .expect("erased");
        let ran = text.find("ran").expect("the command ran");
        assert!(
            erased < ran,
            "the line is erased before the command's output: {text:?}"
        );
        assert!(!text[ran..].contains(WAITING));
    }
}

/// In a pipe the waiting line never appears; with --verbose it does, as a
/// plain line (which also shows the other one had the time to appear).
#[test]
fn waiting_line_not_in_a_pipe() {
    let dir = Dir::new();
    let lock = dir.join("pipe.lock");
    let h = Holder::flock(Impl::Util, false, &lock);
    let spawn = |extra: &[&str]| {
        let mut c = holdfast();
        c.arg("run")
            .args(extra)
            .arg(&lock)
            .args(["--", "echo", "ran"]);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Collector::new(child.stdout.take().unwrap());
        let err = Collector::new(child.stderr.take().unwrap());
        (child, out, err)
    };
    let (mut quiet, quiet_out, quiet_err) = spawn(&[]);
    let (mut verbose, _verbose_out, verbose_err) = spawn(&["--verbose"]);
    let (mut flock_mode, flock_err) = {
        let mut c = holdfast();
        let mut child = c
            .arg("flock")
            .arg(&lock)
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = Collector::new(child.stderr.take().unwrap());
        (child, err)
    };
    wait_for("three kernel waiters", SHORT, || {
        (kernel_waiters(&lock).len() == 3).then_some(())
    });
    wait_for("the verbose waiting line", SHORT, || {
        verbose_err
            .text()
            .contains(&format!("holdfast: {WAITING}"))
            .then_some(())
    });
    assert!(
        verbose_err
            .text()
            .contains(&format!("held by pid {} (", h.pid()))
    );
    h.release();
    for c in [&mut quiet, &mut verbose, &mut flock_mode] {
        let st = wait_for("waiters to finish", SHORT, || c.try_wait().unwrap());
        assert!(st.success());
    }
    assert_eq!(quiet_err.text(), "", "nothing on stderr in a pipe");
    assert_eq!(
        flock_err.text(),
        "",
        "flock mode is silent in a pipe, as flock(1)"
    );
    assert_eq!(
        quiet_out.text(),
        "ran\n",
        "nothing but the command's output on stdout"
    );
    assert!(
        verbose_err
            .text()
            .contains("holdfast: got exclusive lock on")
    );
}

// ---------------------------------------------------------------------------
// Help, man pages, completions
// ---------------------------------------------------------------------------

#[test]
fn help_teaches_the_recipes() {
    let help = run(holdfast().arg("--help"));
    assert_eq!(help.code(), 0);
    for want in [
        "cron job",
        "Migration at container start",
        "single-instance script",
        "holdfast flock",
        "Exit codes",
    ] {
        assert!(help.stdout.contains(want), "--help lacks {want:?}");
    }
    let run_help = run(holdfast().args(["run", "--help"]));
    assert!(
        run_help.stdout.contains("124    --timeout ran out"),
        "{}",
        run_help.stdout
    );
    let flock_help = run(holdfast().args(["flock", "--help"]));
    assert_eq!(flock_help.code(), 0);
    assert!(flock_help.stdout.contains("--conflict-exit-code"));
    assert!(
        flock_help
            .stdout
            .contains("identical to util-linux flock(1)")
    );
    assert_eq!(run(holdfast().args(["flock", "-h"])).code(), 0);
}

#[test]
fn man_pages_and_completions_come_from_the_definitions() {
    let man = holdfast().arg("man").output().unwrap();
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH holdfast"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("flock"));
    let flock_man =
        String::from_utf8(holdfast().args(["man", "flock"]).output().unwrap().stdout).unwrap();
    assert!(
        flock_man.contains(".TH holdfast\\-flock") || flock_man.contains(".TH holdfast-flock"),
        "{}",
        &flock_man[..300.min(flock_man.len())]
    );
    assert!(flock_man.contains("conflict\\-exit\\-code"));
    assert_eq!(run(holdfast().args(["man", "nosuch"])).code(), 64);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = holdfast().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("holdfast") && text.contains("timeout") && text.contains("flock"),
            "{shell}"
        );
    }
    assert_eq!(run(holdfast().args(["completions", "tcsh"])).code(), 64);
}

/// The seconds in "timed out after X" (`850ms`, `1s`, `1.1s`).
fn waited_secs(stderr: &str) -> f64 {
    let rest = stderr
        .split("timed out after ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'timed out after' in {stderr}"));
    let word = rest.split_whitespace().next().unwrap();
    match word.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
        None => word.trim_end_matches('s').parse().unwrap(),
    }
}

/// issue 10 item 11: a timeout counts from the start of the command's
/// wait (there is one attempt, the library's), and is rounded: `--timeout
/// 1s` never reports `994ms` or `0.9s`.
#[test]
fn run_timeouts_count_from_the_start_and_are_rounded() {
    let dir = Dir::new();
    let lock = dir.join("t.lock");
    let _h = Holder::flock(Impl::Util, false, &lock);
    for (t, at_least) in [("1s", 1.0), ("300ms", 0.3)] {
        let to = run(holdfast()
            .args(["run", "--timeout", t])
            .arg(&lock)
            .args(["--", "true"]));
        assert_eq!(to.code(), 124, "{}", to.stderr);
        let w = waited_secs(&to.stderr);
        assert!(w >= at_least, "--timeout {t} reported {w}s: {}", to.stderr);
    }
}

/// issue 10 item 12: on an 80-column terminal with a long path, the
/// waiting line keeps the holder (pid and command) and shortens the path.
#[test]
fn waiting_line_on_a_narrow_terminal_keeps_the_holder() {
    let dir = Dir::new();
    let deep = dir.join("a-rather-long-directory-name/with/several/levels/of/nesting");
    std::fs::create_dir_all(&deep).unwrap();
    let lock = deep.join("narrow.lock");
    let h = Holder::flock(Impl::Util, false, &lock);
    let inner = format!("{HOLDFAST} run {} -- echo ran", lock.display());
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("COLUMNS", "80")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("script(1) from util-linux");
    let out = Collector::new(child.stdout.take().unwrap());
    let want = format!("— held by pid {} (", h.pid());
    wait_for(&format!("the waiting line naming {want:?}"), SHORT, || {
        out.text().contains(&want).then_some(())
    });
    h.release();
    let st = wait_for("script to exit", SHORT, || child.try_wait().unwrap());
    assert!(st.success());
    let text = out.text();
    let line = text
        .split("\r\x1b[K")
        .find(|l| l.contains(&want))
        .unwrap()
        .to_owned();
    assert!(line.chars().count() < 80, "{line:?}");
    assert!(
        line.contains('…') && line.contains(".lock — held by pid"),
        "{line:?}"
    );
}

/// A command naming a lock service is served by `holdfast-remote`, which
/// `holdfast` execs from its own directory: there it runs (a bad URL gets
/// the service layer's usage error, exit 64); a `holdfast` installed
/// without it says so, naming the path it looked for (exit 69), and local
/// locks still work.
#[test]
fn a_lock_service_is_served_by_the_helper_beside_the_binary() {
    let out = run(holdfast().args(["status", "--backend", "bogus://x", "name"]));
    assert_eq!(out.code(), 64, "{out:?}");
    assert!(out.stderr.contains("unknown lock service"), "{out:?}");
    let dir = Dir::new();
    let lonely = dir.join("holdfast");
    std::fs::copy(HOLDFAST, &lonely).unwrap();
    let out = run(Command::new(&lonely).args(["status", "--backend", "etcd://127.0.0.1:1", "n"]));
    assert_eq!(out.code(), 69, "{out:?}");
    assert!(
        out.stderr
            .contains(&dir.join("holdfast-remote").display().to_string()),
        "{out:?}"
    );
    let out = run(Command::new(&lonely)
        .env("HOLDFAST_BACKEND", "postgres://x/db")
        .args(["once", "--status", "key"]));
    assert_eq!(out.code(), 69, "{out:?}");
    let out = run(Command::new(&lonely)
        .arg("run")
        .arg(dir.join("local.lock"))
        .args(["--", "true"]));
    assert_eq!(out.code(), 0, "{out:?}");
}
