//! Subcommands exercising `holdfast::FifoLock` and `holdfast::Semaphore`.
//!
//! - `fifo-hold LOCK [--shared] [--timeout-ms N] [--log FILE --tag T]
//!   [--release-now]`: acquire in FIFO mode; with `--log`, append `T` to
//!   FILE while holding; print `locked pid=P ticket=T`; then release at
//!   once (`--release-now`) or on stdin EOF / `release`; print `released`.
//!   Errors print `wouldblock: …` (exit 10), `timeout: …` (11).
//! - `fifo-count LOCK DIR N`: N times (forever if N is 0): lock, run the
//!   kill-proof critical section on DIR, unlock. Prints `done`.
//! - `sem-hold SEM PERMITS [--timeout-ms N]`: take a permit, print
//!   `acquired slot=S pid=P`, hold until stdin EOF / `release`.
//! - `sem-count SEM PERMITS DIR N`: N times (forever if 0): take a permit,
//!   mark its slot in DIR (kill-proof, as below), give it back, append a
//!   byte to `DIR/progress`. Prints `done`.
//!
//! The critical sections are built to survive a SIGKILL at any point of
//! any participant, so that a crash test can still detect overlap:
//! - The marker `DIR/inside` is created atomically *with* the owner's pid
//!   in it (write a temp file, `link` it into place). Finding a marker of a
//!   live process is an overlap; a dead owner's marker is stale (it was
//!   killed inside) and is removed.
//! - The counter `DIR/counter` is replaced by `rename`, so a kill leaves the
//!   old or the new value, never a torn one; after writing, the holder
//!   reads it back: another value means someone else wrote meanwhile.
//! - Every violation is appended to `DIR/violations` at once (a killed
//!   process cannot report at exit).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use holdfast::{Error, FifoLock, Mode, Semaphore, Wait};

use crate::args::{Args, wait_for_release};
use crate::say;

pub fn dispatch(cmd: &str, rest: &[String]) -> Option<i32> {
    let a = Args::parse(rest, &["timeout-ms", "log", "tag"]);
    Some(match cmd {
        "fifo-hold" => fifo_hold(&a),
        "fifo-count" => fifo_count(&a),
        "sem-hold" => sem_hold(&a),
        "sem-count" => sem_count(&a),
        _ => return None,
    })
}

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("holdfast-helper: {e}");
    std::process::exit(1)
}

fn wait_arg(a: &Args) -> Wait {
    match a.millis("timeout-ms") {
        Some(d) => Wait::Timeout(d),
        None => Wait::Forever,
    }
}

fn report(e: &Error) -> i32 {
    match e {
        Error::WouldBlock { .. } => {
            say!("wouldblock: {e}");
            10
        }
        Error::Timeout { .. } => {
            say!("timeout: {e}");
            11
        }
        _ => {
            say!("error: {e}");
            1
        }
    }
}

fn fifo_hold(a: &Args) -> i32 {
    let lock = FifoLock::open(a.pos(0, "LOCK")).unwrap_or_else(|e| die(e));
    let mode = if a.has("shared") {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let g = match lock.acquire(mode, wait_arg(a)) {
        Ok(g) => g,
        Err(e) => return report(&e),
    };
    if let Some(log) = a.value("log") {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap_or_else(|e| die(e));
        writeln!(f, "{}", a.value("tag").unwrap_or("?")).unwrap_or_else(|e| die(e));
    }
    say!("locked pid={} ticket={}", std::process::id(), g.ticket());
    if !a.has("release-now") {
        wait_for_release();
    }
    drop(g);
    say!("released");
    0
}

fn rounds(a: &Args, i: usize) -> u64 {
    a.pos(i, "N").parse().unwrap_or_else(|e| die(e))
}

fn fifo_count(a: &Args) -> i32 {
    let lock = FifoLock::open(a.pos(0, "LOCK")).unwrap_or_else(|e| die(e));
    let dir = Path::new(a.pos(1, "DIR"));
    let n = rounds(a, 2);
    let mut i = 0;
    while n == 0 || i < n {
        let g = lock.lock().unwrap_or_else(|e| die(e));
        guarded_section(dir, "inside", true);
        drop(g);
        i += 1;
    }
    say!("done");
    0
}

fn sem_open(a: &Args) -> Semaphore {
    let permits: usize = a.pos(1, "PERMITS").parse().unwrap_or_else(|e| die(e));
    Semaphore::open(a.pos(0, "SEM"), permits).unwrap_or_else(|e| die(e))
}

fn sem_hold(a: &Args) -> i32 {
    let sem = sem_open(a);
    let p = match sem.acquire(Mode::Shared, wait_arg(a)) {
        Ok(p) => p,
        Err(e) => return report(&e),
    };
    say!("acquired slot={} pid={}", p.slot(), std::process::id());
    wait_for_release();
    drop(p);
    say!("released");
    0
}

fn sem_count(a: &Args) -> i32 {
    let sem = sem_open(a);
    let dir = Path::new(a.pos(2, "DIR"));
    let n = rounds(a, 3);
    let mut i = 0;
    while n == 0 || i < n {
        let p = sem.lock().unwrap_or_else(|e| die(e));
        // Two holders in one slot = N+1 holders somewhere (pigeonhole).
        guarded_section(dir, &format!("slot.{}", p.slot()), false);
        drop(p);
        // One byte per round, appended atomically: the progress meter.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("progress"))
            .unwrap_or_else(|e| die(e));
        let _ = f.write_all(b".");
        i += 1;
    }
    say!("done");
    0
}

fn violation(dir: &Path, what: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("violations"))
        .unwrap_or_else(|e| die(e));
    let _ = writeln!(f, "pid {}: {what}", std::process::id());
}

/// Whether `pid` is a running process that is not on its way out. A
/// holder killed inside its critical section releases its locks while it
/// exits (so the next holder gets in) before it turns into a zombie: its
/// `PF_EXITING` flag (`/proc/PID/stat` field 9, 0x4) is set from the start
/// of the exit, so a marker of such a process is stale, not an overlap.
fn alive(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let state = fields.first().copied();
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    !matches!(state, None | Some("Z") | Some("X") | Some("x")) && flags & PF_EXITING == 0
}

/// Enters the marker `name` in `dir`, optionally bumps the counter, leaves.
fn guarded_section(dir: &Path, name: &str, count: bool) {
    let me = std::process::id();
    let marker = dir.join(name);
    let tmp = dir.join(format!(".{name}.{me}"));
    std::fs::write(&tmp, me.to_string()).unwrap_or_else(|e| die(e));
    loop {
        match std::fs::hard_link(&tmp, &marker) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner: i32 = std::fs::read_to_string(&marker)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                if owner != 0 && alive(owner) {
                    violation(dir, &format!("{name} held by live pid {owner}"));
                    let _ = std::fs::remove_file(&tmp);
                    return;
                }
                // Left by a holder that was killed inside: stale.
                let _ = std::fs::remove_file(&marker);
            }
            Err(e) => die(e),
        }
    }
    let _ = std::fs::remove_file(&tmp);
    if count {
        let counter = dir.join("counter");
        let v: u64 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let next = dir.join(format!(".counter.{me}"));
        std::fs::write(&next, (v + 1).to_string()).unwrap_or_else(|e| die(e));
        std::fs::rename(&next, &counter).unwrap_or_else(|e| die(e));
        let back: u64 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if back != v + 1 {
            violation(dir, &format!("counter {v} -> {back}, expected {}", v + 1));
        }
    } else {
        // Give a would-be second holder time to collide.
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = std::fs::remove_file(&marker);
}
