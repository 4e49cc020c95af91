//! `holdfast once KEY -- COMMAND`: the library's run-once
//! ([`holdfast::once`]) from the shell.
//!
//! The command is the action: it succeeds when it exits 0, and only then is
//! KEY created. The command inherits the lock (as under `holdfast run`),
//! so a leader killed while its command still works does not let a waiter
//! start the command beside it; the waiter takes over when both are gone.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holdfast::once::{LeaderFailure, OnceOutcome, RunOnce};
use holdfast::text::escape;
use holdfast::{Error, Wait};

use crate::cli::{LeaderFailureArg, OnceArgs};
use crate::exec::{Launch, Program};
use crate::waiting::{self, Show};
use crate::{exit, report};

pub fn run(args: OnceArgs) -> u8 {
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    let show = args.show.show();
    let mut once = RunOnce::new(&args.key);
    once.wait(wait)
        .on_leader_failure(match args.on_leader_failure {
            LeaderFailureArg::Retry => LeaderFailure::Retry,
            LeaderFailureArg::Propagate => LeaderFailure::Propagate,
        });
    if args.status {
        return status(&once);
    }
    if args.reset {
        return reset(&once, show);
    }
    if args.create_parents
        && let Err(msg) = super::create_parents(&args.key)
    {
        return usage(&msg);
    }
    let program = Program::Argv(args.command);
    let key = report::shown(&args.key);
    // Set by the action when the command could not run or failed.
    let mut failed: Option<u8> = None;
    let result = waiting::around(&once.lock_path(), show, |painter| {
        once.run(|ctx| {
            painter.stop();
            let launch = Launch {
                lock_fd: (!args.close.close).then(|| ctx.lock_fd()),
                token: ctx.token(),
                keeps_lock_file: false,
                forward_signals: false,
            };
            match launch.run(&program) {
                Ok(st) if st.success() => Ok(()),
                Ok(st) => {
                    failed = Some(exit::for_child(st));
                    Err(exited(&program, st).into())
                }
                Err(e) => {
                    failed = Some(exit::for_spawn_error(&e));
                    Err(format!("cannot run {}: {e}", program.name()).into())
                }
            }
        })
    });
    match result {
        Ok(outcome) => {
            if args.show.verbose {
                eprintln!("holdfast: {}", describe(&outcome, &key, &program));
            }
            exit::OK
        }
        Err(Error::ActionFailed { source, .. }) => {
            eprintln!(
                "holdfast: {source}; {key} is not marked done (the next caller runs it again)"
            );
            failed.unwrap_or(exit::OS_ERR)
        }
        Err(e @ Error::LeaderFailed { .. }) => {
            eprintln!("holdfast: {e}");
            exit::LEADER_FAILED
        }
        Err(e) => fail(&e, wait),
    }
}

fn usage(msg: &str) -> u8 {
    eprintln!("holdfast: {msg}");
    exit::USAGE
}

/// The message and code of a library error; contention errors say that
/// it is the run-once step that is busy.
fn fail(e: &Error, wait: Wait) -> u8 {
    let (code, msg) = exit::for_error(e);
    match e {
        Error::WouldBlock { .. } if wait == Wait::NoWait => {
            eprintln!("holdfast: another caller is running it: {msg}");
        }
        _ => eprintln!("holdfast: {msg}"),
    }
    code
}

/// "CMD exited with status 3" / "CMD was killed by signal 9".
pub fn exited(program: &Program, st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("{} exited with status {code}", program.name()),
        (None, Some(sig)) => format!("{} was killed by signal {sig}", program.name()),
        _ => format!("{} failed ({st})", program.name()),
    }
}

fn describe(outcome: &OnceOutcome, key: &str, program: &Program) -> String {
    let token = |t: &Option<u64>| {
        t.map(|t| format!(" (fencing token {t})"))
            .unwrap_or_default()
    };
    match outcome {
        OnceOutcome::Ran {
            token: t,
            took_over: false,
        } => format!("ran {}; {key} is done{}", program.name(), token(t)),
        OnceOutcome::Ran {
            token: t,
            took_over: true,
        } => format!(
            "the caller running {} stopped without finishing; ran it here; {key} is done{}",
            program.name(),
            token(t)
        ),
        OnceOutcome::AlreadyDone { waited: false } => {
            format!("{key} is already done; {} not run", program.name())
        }
        OnceOutcome::AlreadyDone { waited: true } => format!(
            "another caller ran {} while this one waited; {key} is done",
            program.name()
        ),
        _ => format!("{key}: {outcome:?}"),
    }
}

/// `--status`: 0 if done, 1 if not, with one line saying which.
fn status(once: &RunOnce) -> u8 {
    let key = report::shown(once.key());
    match once.is_done() {
        Ok(true) => {
            println!("{key}: done{}", marker_details(once.key()));
            exit::OK
        }
        Ok(false) => {
            let running = match holdfast::status(once.lock_path()) {
                Ok(st) if st.held.is_some() => format!("; running now: {}", st.holders),
                _ => String::new(),
            };
            println!("{key}: not done{running}");
            exit::NOT_DONE
        }
        Err(e) => {
            let (code, msg) = exit::for_error(&e);
            eprintln!("holdfast: {msg}");
            code
        }
    }
}

/// ` (by pid 42 on web-1, fencing token 7, 3m2s ago)` from the record
/// holdfast writes into the key; nothing for a key made by hand.
fn marker_details(key: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(key) else {
        return String::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some("holdfast-once 1") {
        return String::new();
    }
    let mut parts = Vec::new();
    let (mut pid, mut host) = (None, None);
    for line in lines {
        // Anyone can write the key: its text is escaped, its numbers
        // checked (a huge "finished" must not overflow the clock).
        match line.split_once(' ') {
            Some(("pid", v)) => pid = Some(escape(v).into_owned()),
            Some(("host", v)) => host = Some(escape(v).into_owned()),
            Some(("token", v)) => parts.push(format!("fencing token {}", escape(v))),
            Some(("finished", v)) => {
                if let Ok(secs) = v.parse::<f64>()
                    && let Ok(d) = Duration::try_from_secs_f64(secs)
                    && let Some(at) = UNIX_EPOCH.checked_add(d)
                    && let Ok(ago) = SystemTime::now().duration_since(at)
                {
                    parts.push(format!("{} ago", holdfast::holder::fmt_duration(ago)));
                }
            }
            _ => {}
        }
    }
    if let Some(pid) = pid {
        let on = host.map(|h| format!(" on {h}")).unwrap_or_default();
        parts.insert(0, format!("by pid {pid}{on}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `--reset`: removes the key under the lock.
fn reset(once: &RunOnce, show: Show) -> u8 {
    let key = report::shown(once.key());
    match waiting::around(&once.lock_path(), show, |_| once.reset()) {
        Ok(true) => {
            println!("{key}: reset (the next caller runs the command again)");
            exit::OK
        }
        Ok(false) => {
            println!("{key}: was not done");
            exit::OK
        }
        Err(e) => {
            let (code, msg) = exit::for_error(&e);
            eprintln!("holdfast: {msg}");
            code
        }
    }
}
