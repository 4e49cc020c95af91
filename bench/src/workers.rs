//! Worker processes: `holdfast-bench worker IMPL ROLE LOCK ARG`.
//!
//! Roles, spoken over stdin/stdout one line at a time:
//! - `loop LOCK MILLIS`: print `ready`, wait for a line, then lock/unlock
//!   as fast as possible for MILLIS, print `count N`.
//! - `handoff LOCK T0FILE`: for every line on stdin: print `trying`, block
//!   for the lock, read the releaser's timestamp from T0FILE, print
//!   `lat NANOS` (release → this process running), unlock.
//!
//! IMPLs: `holdfast` (Lock, holder record on), `holdfast-norecord`,
//! `holdfast-timeout` (the timed-wait path, 60 s deadline), `flock`
//! (raw flock(2) on an open descriptor, the anchor).

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use holdfast::{Lock, Mode, Wait};
use rustix::fs::FlockOperation;

use crate::stats::now_ns;

// One per worker process, built once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Imp {
    Holdfast(Lock, Wait),
    Flock(File),
}

impl Imp {
    fn open(name: &str, path: &str) -> Imp {
        match name {
            "holdfast" => Imp::Holdfast(Lock::open(path).expect("open"), Wait::Forever),
            "holdfast-norecord" => Imp::Holdfast(
                Lock::options()
                    .holder_record(false)
                    .open(path)
                    .expect("open"),
                Wait::Forever,
            ),
            "holdfast-timeout" => Imp::Holdfast(
                Lock::open(path).expect("open"),
                Wait::Timeout(Duration::from_secs(60)),
            ),
            "flock" => Imp::Flock(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .expect("open"),
            ),
            other => panic!("unknown implementation {other}"),
        }
    }

    /// Runs `f` while holding the lock.
    fn with_lock(&self, f: impl FnOnce()) {
        match self {
            Imp::Holdfast(l, w) => {
                let g = l.acquire(Mode::Exclusive, *w).expect("lock");
                f();
                drop(g);
            }
            Imp::Flock(file) => {
                rustix::fs::flock(file, FlockOperation::LockExclusive).expect("flock");
                f();
                rustix::fs::flock(file, FlockOperation::Unlock).expect("unlock");
            }
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn main(args: &[String]) {
    let [imp, role, path, arg] = args else {
        eprintln!("usage: holdfast-bench worker IMPL loop|handoff LOCK ARG");
        std::process::exit(2);
    };
    let imp = Imp::open(imp, path);
    let stdin = std::io::stdin();
    match role.as_str() {
        "loop" => {
            let dur = Duration::from_millis(arg.parse().expect("millis"));
            say("ready");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).expect("go");
            let end = Instant::now() + dur;
            let mut n = 0u64;
            while Instant::now() < end {
                imp.with_lock(|| {});
                n += 1;
            }
            say(&format!("count {n}"));
        }
        "handoff" => {
            let t0file = File::open(arg).expect("t0 file");
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
                say("trying");
                imp.with_lock(|| {
                    let t1 = now_ns();
                    let mut buf = [0u8; 8];
                    t0file.read_exact_at(&mut buf, 0).expect("read t0");
                    let t0 = u64::from_le_bytes(buf);
                    say(&format!("lat {}", t1.saturating_sub(t0)));
                });
            }
        }
        other => panic!("unknown role {other}"),
    }
}
