//! Subcommands exercising `holdfast::Lock`.
//!
//! - `count LOCK COUNTER N [--ofd]`: N times: lock, check-and-mark an
//!   overlap file (`COUNTER.inside`, created with O_EXCL: if it exists,
//!   someone else is inside), read the counter, write counter+1, unmark,
//!   unlock. Prints `done violations=V`.
//! - `hold LOCK [--shared] [--ofd] [--timeout-ms N]`: acquire, print
//!   `locked pid=P token=T`, wait for stdin EOF or `release`, release,
//!   print `released`.
//! - `try LOCK [--shared] [--timeout-ms N]`: one attempt; prints
//!   `acquired token=T`, `wouldblock: MESSAGE` (exit 10) or
//!   `timeout elapsed_ms=E: MESSAGE` (exit 11).
//! - `fork-drop LOCK`: lock, fork a child that drops its copy of the guard
//!   and exits, print `child-dropped`, wait for release.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use holdfast::{Backend, Error, Lock, Mode, Wait};

use crate::args::{Args, wait_for_release};
use crate::say;

pub fn dispatch(cmd: &str, rest: &[String]) -> Option<i32> {
    let a = Args::parse(rest, &["timeout-ms"]);
    Some(match cmd {
        "count" => count(&a),
        "hold" => hold(&a),
        "try" => attempt(&a),
        "fork-drop" => fork_drop(&a),
        _ => return None,
    })
}

fn open(a: &Args) -> Lock {
    let mut o = Lock::options();
    if a.has("ofd") {
        o.backend(Backend::OfdFcntl);
    }
    o.open(a.pos(0, "LOCK")).unwrap_or_else(|e| {
        eprintln!("holdfast-helper: {e}");
        std::process::exit(1)
    })
}

fn mode(a: &Args) -> Mode {
    if a.has("shared") {
        Mode::Shared
    } else {
        Mode::Exclusive
    }
}

fn wait(a: &Args) -> Wait {
    match a.millis("timeout-ms") {
        Some(d) => Wait::Timeout(d),
        None => Wait::Forever,
    }
}

fn exit_code(e: &Error) -> i32 {
    match e {
        Error::WouldBlock { .. } => 10,
        Error::Timeout { .. } => 11,
        _ => 1,
    }
}

/// Increments a counter file under the lock, checking for overlap.
pub fn count(a: &Args) -> i32 {
    let lock = open(a);
    let counter = Path::new(a.pos(1, "COUNTER"));
    let n: u64 = a.pos(2, "N").parse().expect("N");
    let inside = counter.with_extension("inside");
    let mut violations = 0u64;
    for _ in 0..n {
        let g = lock.lock().expect("lock");
        let v = critical_section(counter, &inside);
        drop(g);
        if v > 0 {
            // Say so at once: crash tests kill helpers before they finish.
            say!("violation");
            violations += v;
        }
    }
    say!("done violations={violations}");
    if violations == 0 { 0 } else { 1 }
}

/// The body every counting helper runs while holding a lock: returns 1 if
/// it found someone else inside.
///
/// The overlap marker holds the pid of whoever is inside, so a holder that
/// was SIGKILLed inside the critical section (crash tests) is recognised:
/// its marker names a dead pid and is cleared, not counted as an overlap.
pub fn critical_section(counter: &Path, inside: &Path) -> u64 {
    let mut violations = 0;
    // The marker appears with its pid already in it (written to a private
    // file, then hard-linked into place, which fails if it exists), so a
    // kill can never leave an anonymous marker behind.
    let mine = inside.with_extension(format!("inside.{}", std::process::id()));
    std::fs::write(&mine, std::process::id().to_string()).expect("write marker");
    loop {
        match std::fs::hard_link(&mine, inside) {
            Ok(()) => break,
            Err(_) => {
                let other: i32 = std::fs::read_to_string(inside)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                if other > 0 && is_running(other) && !dies_inside(other, inside) {
                    // A live process is inside with us: exclusion is broken.
                    violations += 1;
                    break;
                }
                let _ = std::fs::remove_file(inside);
            }
        }
    }
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(counter) {
        f.read_to_string(&mut s).expect("read counter");
    }
    let v: u64 = s.trim().parse().unwrap_or(0);
    let mut f = std::fs::File::create(counter).expect("write counter");
    write!(f, "{}", v + 1).expect("write counter");
    drop(f);
    let _ = std::fs::remove_file(inside);
    let _ = std::fs::remove_file(&mine);
    violations
}

/// Whether `pid` is a live process (a zombie, killed but not yet reaped by
/// the test, counts as dead).
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A SIGKILLed holder loses its flock while its files are closed on exit,
/// a moment before /proc shows it as a zombie. Tell that apart from a real
/// overlap: a live holder leaves the critical section (removes its marker)
/// and runs on, a dying one disappears with its marker still in place.
/// Waits at most 5 s.
fn dies_inside(pid: i32, inside: &Path) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while Instant::now() < deadline {
        let marker: Option<i32> = std::fs::read_to_string(inside)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if marker != Some(pid) {
            return false; // it left the critical section: it was alive inside
        }
        if !is_running(pid) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

fn hold(a: &Args) -> i32 {
    let lock = open(a);
    match lock.acquire(mode(a), wait(a)) {
        Ok(g) => {
            say!(
                "locked pid={} token={}",
                std::process::id(),
                g.token()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            wait_for_release();
            drop(g);
            say!("released");
            0
        }
        Err(e) => {
            say!("error: {e}");
            exit_code(&e)
        }
    }
}

fn attempt(a: &Args) -> i32 {
    let lock = open(a);
    let w = match a.millis("timeout-ms") {
        Some(d) => Wait::Timeout(d),
        None => Wait::NoWait,
    };
    let started = Instant::now();
    match lock.acquire(mode(a), w) {
        Ok(g) => {
            say!(
                "acquired token={}",
                g.token()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            0
        }
        Err(e @ Error::WouldBlock { .. }) => {
            say!("wouldblock: {e}");
            10
        }
        Err(e @ Error::Timeout { .. }) => {
            say!("timeout elapsed_ms={}: {e}", started.elapsed().as_millis());
            11
        }
        Err(e) => {
            say!("error: {e}");
            1
        }
    }
}

fn fork_drop(a: &Args) -> i32 {
    let lock = open(a);
    let g = lock.lock().expect("lock");
    // SAFETY: the child only drops a guard (which must not unlock because
    // its pid differs) and exits with _exit; this process is single-threaded
    // here apart from nothing.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(g);
        // SAFETY: terminate the child without running parent atexit hooks.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    say!("child-dropped status={status}");
    wait_for_release();
    drop(g);
    say!("released");
    0
}
