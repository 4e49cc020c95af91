//! Subcommands exercising `holdfast::phase` and `holdfast::once`.
//!
//! - `phase-run TARGET --phases a,b,c [--log LOG] [--mode auto|on|off]
//!   [--strict] [--work-ms N] [--barrier] [--round R] [--fail NAME]
//!   [--timeout-ms N] [--attr NAME=ATTR:VALUE]`: runs the phases. Each
//!   action sleeps `--work-ms` (its "work"), then appends
//!   `<name> rust pid=<pid> round=<R> token=<T>` to LOG with `fsync`: the
//!   action's own durable record of having finished. `--fail NAME` makes
//!   that action return an error instead. With `--barrier` it prints
//!   `ready` and waits for a line on stdin first. Prints
//!   `report completed=a,b skipped=c xattrs=0|1 locked=0|1 token=T`, or an
//!   error line (see [`error_line`]).
//! - `phase-reset TARGET [--mode ...]`: removes every marker, prints
//!   `reset`.
//! - `once-run KEY [--log LOG] [--barrier] [--work-ms N] [--policy
//!   retry|propagate] [--fail] [--block] [--timeout-ms N]`: run-once. The
//!   action prints `in-action pid=<pid>`; with `--block` it then waits for
//!   stdin to close (tests kill it there); it appends `ran pid=<pid>` to LOG
//!   with `fsync`. Prints `outcome ran took_over=0|1 token=T`, `outcome
//!   done waited=0|1`, or an error line.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use holdfast::once::{LeaderFailure, OnceOutcome, RunOnce};
use holdfast::phase::{Phase, PhaseRunner, XattrMode};
use holdfast::{Error, Wait};

use crate::args::{Args, wait_for_release};
use crate::say;

pub fn dispatch(cmd: &str, rest: &[String]) -> Option<i32> {
    let a = Args::parse(
        rest,
        &[
            "phases",
            "log",
            "mode",
            "work-ms",
            "round",
            "fail",
            "timeout-ms",
            "attr",
            "policy",
        ],
    );
    Some(match cmd {
        "phase-run" => phase_run(&a),
        "phase-reset" => phase_reset(&a),
        "once-run" => once_run(&a),
        _ => return None,
    })
}

/// One line describing an error: `error kind=<Variant> [io=<ErrorKind>]
/// path=<path>: <message>`. Exit code 10 would block, 11 timeout, 1 else.
fn error_line(e: &Error) -> i32 {
    let kind = match e {
        Error::WouldBlock { .. } => "WouldBlock",
        Error::Timeout { .. } => "Timeout",
        Error::AlreadyHeld { .. } => "AlreadyHeld",
        Error::Symlink { .. } => "Symlink",
        Error::Io { .. } => "Io",
        Error::Corrupt { .. } => "Corrupt",
        Error::Unsupported { .. } => "Unsupported",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::ActionFailed { .. } => "ActionFailed",
        Error::LeaderFailed { .. } => "LeaderFailed",
        _ => "Other",
    };
    let io = match e {
        Error::Io { source, .. } => format!(" io={:?}", source.kind()),
        _ => String::new(),
    };
    say!("error kind={kind}{io} path={}: {e}", e.path().display());
    match e {
        Error::WouldBlock { .. } => 10,
        Error::Timeout { .. } => 11,
        _ => 1,
    }
}

/// Appends a line to `log` and makes it durable before returning.
fn append_durably(log: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}

fn wait_for_go() {
    say!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn runner(a: &Args) -> PhaseRunner {
    let mut r = PhaseRunner::new(a.pos(0, "TARGET"));
    r.xattrs(match a.value("mode").unwrap_or("auto") {
        "on" => XattrMode::On,
        "off" => XattrMode::Off,
        _ => XattrMode::Auto,
    });
    if a.has("strict") {
        r.strict_marker_locking(true);
    }
    if let Some(t) = a.millis("timeout-ms") {
        r.wait(Wait::Timeout(t));
    }
    r
}

fn phase_run(a: &Args) -> i32 {
    let r = runner(a);
    let names: Vec<String> = a
        .value("phases")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let log = a.value("log").map(Path::new);
    let work = a.millis("work-ms").unwrap_or(Duration::ZERO);
    let round = a.value("round").unwrap_or("-");
    let fail = a.value("fail");
    let attrs: Vec<(String, String, String)> = a
        .flags
        .iter()
        .filter(|(n, _)| n == "attr")
        .filter_map(|(_, v)| {
            let (name, rest) = v.as_deref()?.split_once('=')?;
            let (attr, value) = rest.split_once(':')?;
            Some((name.to_owned(), attr.to_owned(), value.to_owned()))
        })
        .collect();
    let pid = std::process::id();
    let phases = names.iter().map(|name| {
        let mut p = Phase::new(name.clone(), move |ctx| {
            if !work.is_zero() {
                std::thread::sleep(work);
            }
            if fail == Some(ctx.name()) {
                return Err(format!("{} was told to fail", ctx.name()).into());
            }
            if let Some(log) = log {
                let token = ctx.token().map_or("-".into(), |t| t.to_string());
                append_durably(
                    log,
                    &format!("{} rust pid={pid} round={round} token={token}", ctx.name()),
                )?;
            }
            Ok(())
        });
        if let Some((_, attr, value)) = attrs.iter().find(|(n, _, _)| n == name) {
            p = p.attr_name(attr.clone()).attr_value(value.as_bytes());
        }
        p
    });
    let phases: Vec<Phase<'_>> = phases.collect();
    if a.has("barrier") {
        wait_for_go();
    }
    match r.run(phases) {
        Ok(rep) => {
            say!(
                "report completed={} skipped={} xattrs={} locked={} token={}",
                rep.completed.join(","),
                rep.skipped.join(","),
                u8::from(rep.xattrs_available),
                u8::from(rep.locked),
                rep.token.map_or("-".into(), |t| t.to_string())
            );
            0
        }
        Err(e) => error_line(&e),
    }
}

fn phase_reset(a: &Args) -> i32 {
    match runner(a).reset() {
        Ok(_) => {
            say!("reset");
            0
        }
        Err(e) => error_line(&e),
    }
}

fn once_run(a: &Args) -> i32 {
    let mut o = RunOnce::new(a.pos(0, "KEY"));
    if a.value("policy") == Some("propagate") {
        o.on_leader_failure(LeaderFailure::Propagate);
    }
    if let Some(t) = a.millis("timeout-ms") {
        o.wait(Wait::Timeout(t));
    }
    let log = a.value("log").map(Path::new);
    let work = a.millis("work-ms").unwrap_or(Duration::ZERO);
    let (fail, block) = (a.has("fail"), a.has("block"));
    if a.has("barrier") {
        wait_for_go();
    }
    let pid = std::process::id();
    let outcome = o.run(|_| {
        say!("in-action pid={pid}");
        if block {
            wait_for_release();
        }
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        if fail {
            return Err("the action was told to fail".into());
        }
        if let Some(log) = log {
            append_durably(log, &format!("ran pid={pid}"))?;
        }
        Ok(())
    });
    match outcome {
        Ok(OnceOutcome::Ran { token, took_over }) => {
            say!(
                "outcome ran took_over={} token={}",
                u8::from(took_over),
                token.map_or("-".into(), |t| t.to_string())
            );
            0
        }
        Ok(OnceOutcome::AlreadyDone { waited }) => {
            say!("outcome done waited={}", u8::from(waited));
            0
        }
        Ok(other) => {
            say!("outcome other {other:?}");
            0
        }
        Err(e) => error_line(&e),
    }
}
