//! `holdfast break PATH`: remove a stale lock file, never a kernel lock. A
//! printer of `holdfast::inspect::break_lock`, which decides (on the very
//! lock object it removes) and removes only what the lock's protocol makes.

use holdfast::LockStatus;
use holdfast::inspect::{BreakOptions, BreakOutcome, dot_lock};

use crate::cli::BreakArgs;
use crate::exit;
use crate::report::{self, shown};

pub fn run(args: BreakArgs) -> u8 {
    let mut how = BreakOptions::new().force(args.force);
    if let Some(p) = args.protocol
        && let Err(msg) = super::check_compat("--protocol", p, args.compat)
    {
        eprintln!("holdfast: {msg}");
        return exit::USAGE;
    }
    if let Some(p) = args.protocol {
        how = how.protocol(p.into());
    }
    if let Some(c) = args.compat {
        how = how.compat(c.into());
    }
    let outcome = match holdfast::inspect::break_lock(&args.path, how) {
        Ok(o) => o,
        Err(e) => {
            let (code, msg) = exit::for_error(&e);
            eprintln!("holdfast: {msg}");
            return code;
        }
    };
    match outcome {
        BreakOutcome::Removed {
            verdict,
            still_running,
        } => {
            println!(
                "broke {}: {}, {}",
                shown(&verdict.status.path),
                report::kind(&verdict),
                report::removed(&verdict)
            );
            if let Some(h) = still_running {
                eprintln!(
                    "holdfast: warning: {} is still running and may believe it holds the lock",
                    h.pid
                        .map_or("its holder".to_owned(), |p| format!("pid {p}"))
                );
            }
            exit::OK
        }
        BreakOutcome::Kept(verdict) => {
            eprintln!(
                "holdfast: not breaking {}: {}, {}; --force breaks it anyway",
                shown(&verdict.status.path),
                report::kind(&verdict),
                report::kept(&verdict)
            );
            exit::REFUSED
        }
        BreakOutcome::KernelLock(st) => refuse_kernel(&st),
        BreakOutcome::NotALock(seen) if !seen.kernel.exists => {
            eprintln!(
                "holdfast: no lock at {} (nor at {})",
                shown(&seen.path),
                shown(&dot_lock(&seen.path))
            );
            exit::NO_LOCK
        }
        BreakOutcome::NotALock(seen) => {
            eprintln!(
                "holdfast: no lock-file lock at {}: it is {}",
                shown(&seen.path),
                report::not_a_lock(&seen)
            );
            exit::NO_LOCK
        }
        BreakOutcome::Vanished(path) => {
            eprintln!("holdfast: no lock to break at {}", shown(&path));
            exit::NO_LOCK
        }
        // `BreakOutcome` may grow; whatever it says, nothing was removed.
        _ => exit::REFUSED,
    }
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
        shown(&st.path),
        st.holders
    );
    exit::REFUSED
}
