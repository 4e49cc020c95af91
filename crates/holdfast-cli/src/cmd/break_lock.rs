//! `holdfast break PATH`: remove a stale lock file, never a kernel lock.
//!
//! The protocol comes from `--protocol` or from what is at the path
//! (`LockFile::detect`, then `PATH.lock`, where Python's lockfile puts
//! its locks). The decision and the removal act on one observation of the
//! lock (`LockFile::break_lock_if`), so a lock taken by a new holder after
//! the look is judged afresh, never removed on its predecessor's record.

use std::path::Path;
use std::time::SystemTime;

use holdfast::holder::fmt_duration;
use holdfast::lockfile::{Broken, DEFAULT_CLOCK_SKEW, DEFAULT_GRACE, LockFileStatus};
use holdfast::{HolderSource, LockStatus, RecordContent};

use super::{find_lockfile, lockfile_kind, lockfile_options};
use crate::cli::BreakArgs;
use crate::exit;

pub fn run(args: BreakArgs) -> u8 {
    match break_it(&args) {
        Ok(code) => code,
        Err(e) => {
            let (code, msg) = exit::for_error(&e);
            eprintln!("holdfast: {msg}");
            code
        }
    }
}

fn break_it(args: &BreakArgs) -> holdfast::Result<u8> {
    let path = args.path.as_path();
    // A kernel lock on the path as named is never broken.
    let named = holdfast::status(path)?;
    if named.held.is_some() {
        return Ok(refuse_kernel(&named));
    }
    let lock = match args.protocol {
        Some(p) => lockfile_options(p, args.compat).open(path)?,
        None => match find_lockfile(path)? {
            Some(l) => l,
            None => return Ok(not_a_lock(path, &named)),
        },
    };
    if lock.path() != path {
        let st = holdfast::status(lock.path())?;
        if st.held.is_some() {
            return Ok(refuse_kernel(&st));
        }
    }
    let shown = lock.path().display().to_string();
    let kind = lockfile_kind(&lock);
    match lock.break_lock_if(|st| args.force || st.stale.is_some())? {
        Broken::Removed(st) => {
            println!("broke {shown}: {kind}, {}", removed(&st));
            if st.stale.is_none()
                && let Some(h) = &st.holder
                && h.source == HolderSource::Record
            {
                eprintln!(
                    "holdfast: warning: {} is still running and may believe it holds the lock",
                    h.pid
                        .map_or("its holder".to_owned(), |p| format!("pid {p}"))
                );
            }
            Ok(exit::OK)
        }
        Broken::Kept(st) => {
            eprintln!(
                "holdfast: not breaking {shown}: {kind}, {}; --force breaks it anyway",
                kept(&st)
            );
            Ok(exit::REFUSED)
        }
        Broken::NoLock => {
            eprintln!("holdfast: no lock to break at {shown}");
            Ok(exit::NO_LOCK)
        }
        // `Broken` may grow; whatever it says, nothing was removed.
        _ => Ok(exit::REFUSED),
    }
}

/// `held by pid 4242 (sleep 100) on web-1 since ...; stale: holder pid 4242 has exited`.
fn removed(st: &LockFileStatus) -> String {
    let who = match &st.holder {
        Some(h) => format!("held by {h}"),
        None => "holder unknown".to_owned(),
    };
    match &st.stale {
        Some(reason) => format!("{who}; stale: {reason}"),
        None => format!("{who}; not stale (--force)"),
    }
}

/// Why a lock was not broken.
fn kept(st: &LockFileStatus) -> String {
    let Some(h) = &st.holder else {
        return "holder unknown".to_owned();
    };
    let who = format!("held by {h}");
    let now = SystemTime::now();
    let why = if h.source == HolderSource::Record {
        "which is alive".to_owned()
    } else if let Some(t) = st.expires {
        match t.duration_since(now) {
            Ok(left) => format!(
                "whose lease runs for another {} (the holder cannot be verified from here)",
                fmt_duration(left)
            ),
            Err(e) => format!(
                "whose lease ended {} ago, within the {} allowed for other hosts' clocks",
                fmt_duration(e.duration()),
                fmt_duration(DEFAULT_CLOCK_SKEW)
            ),
        }
    } else if h.pid.is_none() {
        format!(
            "which names no holder holdfast can check (a record being written or damaged, \
             which counts as stale once unchanged for {}, or a lock made by a program that \
             records no holder)",
            fmt_duration(DEFAULT_GRACE)
        )
    } else {
        "which holdfast cannot check (another host without a lease, or a lock without its \
         holder's details)"
            .to_owned()
    };
    format!("{who}, {why}")
}

/// A kernel lock: name its holder, explain why there is nothing to break.
fn refuse_kernel(st: &LockStatus) -> u8 {
    let mode = st.held.map(|m| m.to_string()).unwrap_or_default();
    let stop = st
        .holders
        .first()
        .and_then(|h| h.pid)
        .map(|p| format!(" (stop pid {p} to free it)"))
        .unwrap_or_default();
    eprintln!(
        "holdfast: cannot break {}: it is a kernel lock ({mode}), {}. Kernel locks cannot be \
         broken and never go stale: the kernel releases them when the holder exits or closes \
         the file{stop}.",
        st.path.display(),
        st.holders
    );
    exit::REFUSED
}

/// Nothing that is a lock-file lock: say what is there.
fn not_a_lock(path: &Path, st: &LockStatus) -> u8 {
    let shown = path.display();
    if !st.exists {
        eprintln!(
            "holdfast: no lock at {shown} (nor at {})",
            super::dot_lock(path).display()
        );
        return exit::NO_LOCK;
    }
    let what = if let Some(r) = &st.last_record {
        format!(
            "a kernel lock file, free now (last held by pid {}, fencing token {}): there is \
             nothing to break, kernel locks end with their holder",
            r.pid, r.token
        )
    } else if path.is_dir() {
        "a directory that is not a mkdir lock (no *.holdfast record or Python lockfile \
         name in it)"
            .to_owned()
    } else {
        let head = std::fs::File::open(path).and_then(|f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut b).map(|_| b)
        });
        match head.map(|b| RecordContent::classify(&b)) {
            Ok(RecordContent::Empty) => "an empty file, which is what flock(1) and other \
                                         kernel-lock users leave behind, free now; if a \
                                         lock-file library made it, name its protocol \
                                         (--protocol soft --compat filelock)"
                .to_owned(),
            _ => "a file holding no lock-file record holdfast recognises (a pid file? data?); \
                  name the protocol to break it anyway"
                .to_owned(),
        }
    };
    eprintln!("holdfast: no lock-file lock at {shown}: it is {what}");
    exit::NO_LOCK
}
