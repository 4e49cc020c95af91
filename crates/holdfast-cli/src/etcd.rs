//! The commands over etcd (`--backend etcd://...`), with
//! [`holdfast_etcd`]: connect with the etcdctl-style options, take the lock
//! with the waiting line, run the command while the lease is renewed, stop
//! it if the lock is lost, and write fenced markers for `once` and `phase`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast::text::escape;
use holdfast::{Error, Holders, Mode, Wait};
use holdfast_etcd::{Client, ClientOptions, EtcdGuard, EtcdLock, EtcdUrl, LockView};
use serde_json::{Value, json};

use crate::cli::{
    LeaderFailureArg, ListArgs, OnceArgs, PhaseArgs, PhasesResetArgs, PhasesStatusArgs, RunArgs,
    StatusArgs,
};
use crate::exec::{self, Outcome as Ran, Program};
use crate::remote::{RemoteArgs, name, refuse_local, usage};
use crate::waiting::{self, Show};
use crate::{duration, exit, report};

/// The marker key of `holdfast once`.
const ONCE_MARKER: &str = "once";

/// The message and exit code of an error; etcd unreachable is 69
/// (EX_UNAVAILABLE), as the service, not this host, is at fault.
fn fail(e: &Error) -> u8 {
    let (code, msg) = exit::for_error(e);
    eprintln!("holdfast: {msg}");
    if holdfast_etcd::is_unreachable(e) {
        exit::UNAVAILABLE
    } else {
        code
    }
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|s| !s.is_empty())
}

/// Connects as the flags (or etcdctl's `ETCDCTL_*` variables) say.
fn connect(url: EtcdUrl, r: &RemoteArgs) -> Result<Client, u8> {
    let mut opts = ClientOptions::from_url(url);
    if let Some(t) = &r.connect_timeout {
        let d = duration::parse(t).map_err(|e| usage(&format!("--connect-timeout: {e}")))?;
        if d.is_zero() {
            return Err(usage("--connect-timeout: must be more than 0"));
        }
        opts = opts.connect_timeout(d).request_timeout(d);
    }
    let path = |flag: &Option<PathBuf>, var| flag.clone().or_else(|| env(var).map(PathBuf::from));
    if let Some(ca) = path(&r.cacert, "ETCDCTL_CACERT") {
        opts = opts.ca_cert(ca);
    }
    match (path(&r.cert, "ETCDCTL_CERT"), path(&r.key, "ETCDCTL_KEY")) {
        (Some(c), Some(k)) => opts = opts.client_cert(c, k),
        (None, None) => {}
        _ => return Err(usage("--cert and --key go together")),
    }
    if let Some(user) = r.user.clone().or_else(|| env("ETCDCTL_USER")) {
        let (u, inline) = match user.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (user, None),
        };
        let Some(pw) = inline
            .or_else(|| r.password.clone())
            .or_else(|| env("ETCDCTL_PASSWORD"))
        else {
            return Err(usage(&format!(
                "--user {u}: no password (give USER:PASSWORD, --password or ETCDCTL_PASSWORD)"
            )));
        };
        opts = opts.user(u, pw);
    } else if r.password.is_some() {
        return Err(usage("--password needs --user"));
    }
    opts.connect().map_err(|e| fail(&e))
}

/// The name ARG gives, the client the flags ask for, and the lock of that
/// name on it: what `run`, `once`, `phase` and `phases reset` start with.
fn open(url: EtcdUrl, arg: &Path, r: &RemoteArgs) -> Result<(String, Client, EtcdLock), u8> {
    let name = name(arg)?;
    let client = connect(url, r)?;
    let lock = lock(&client, &name, r)?;
    Ok((name, client, lock))
}

/// The lock NAME with the `--ttl` asked for.
fn lock(client: &Client, name: &str, r: &RemoteArgs) -> Result<EtcdLock, u8> {
    let mut lock = client.lock(name).map_err(|e| fail(&e))?;
    if let Some(t) = &r.ttl {
        let d = duration::parse(t).map_err(|e| usage(&format!("--ttl: {e}")))?;
        lock = lock.with_ttl(d).map_err(|e| fail(&e))?;
    }
    Ok(lock)
}

/// Acquires with the waiting line (naming the holder on other hosts too).
fn acquire(lock: &EtcdLock, mode: Mode, wait: Wait, show: Show) -> Result<EtcdGuard, u8> {
    let client = lock.client().clone();
    let name = lock.name().to_owned();
    let holders = move || -> Holders {
        client
            .status(&name)
            .map(|v| v.holders())
            .unwrap_or_default()
    };
    waiting::around_with(lock.location(), mode, show, &holders, |painter| {
        let got = lock.acquire(mode, wait);
        painter.stop();
        got
    })
    .map_err(|e| fail(&e))
}

/// How often the lease's state is looked at while the command runs (a
/// memory read: the renewal task keeps it current).
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Runs `program` while `guard` holds; if the lock is lost meanwhile, the
/// command gets SIGTERM (SIGKILL 10 s later if it is still there).
fn run_holding(guard: &EtcdGuard, program: &Program) -> Result<Ran, u8> {
    let location = guard.location().display().to_string();
    exec::run_holding(
        program,
        Some(guard.token()),
        CHECK_EVERY,
        || guard.check(),
        |e| {
            let reason = match e {
                Error::Lost { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            format!(
                "holdfast: lost the lock on {location}: {reason}; stopping the command \
                 (SIGTERM) — its work may overlap another holder's"
            )
        },
    )
}

/// Releases, turning a loss found only now into exit 75.
fn release(guard: EtcdGuard, code: u8) -> u8 {
    match guard.release() {
        Ok(()) => code,
        Err(e @ Error::Lost { .. }) => {
            eprintln!("holdfast: {e}; the command's work may have overlapped another holder's");
            exit::LOCK_LOST
        }
        Err(e) => {
            // The lease runs out by itself; the command finished holding it.
            eprintln!("holdfast: {e} (the lease expires by itself)");
            code
        }
    }
}

fn verbose_got(verbose: bool, guard: &EtcdGuard, started: Instant) {
    if verbose {
        eprintln!(
            "holdfast: got {} lock on {} after {:.3}s (fencing token {}, lease TTL {}s)",
            guard.mode(),
            guard.location().display(),
            started.elapsed().as_secs_f64(),
            guard.token(),
            guard.ttl().as_secs()
        );
    }
}

pub fn run(url: EtcdUrl, args: RunArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (
            args.fifo,
            "--fifo (etcd locks are always first come, first served)",
        ),
        (args.fcntl, "--fcntl"),
        (args.protocol.is_some(), "--lockfile"),
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
        (args.lifetime.is_some(), "--lifetime (use --ttl)"),
    ]) {
        return code;
    }
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(m) => return usage(&m),
    };
    let show = args.show.show();
    let mode = if args.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let (_, _client, lock) = match open(url, &args.lockfile, &args.remote) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let started = Instant::now();
    let guard = match acquire(&lock, mode, wait, show) {
        Ok(g) => g,
        Err(c) => return c,
    };
    verbose_got(args.show.verbose, &guard, started);
    let program = Program::Argv(args.command);
    match run_holding(&guard, &program) {
        Ok(Ran::Exited(st)) => release(guard, exit::for_child(st)),
        Ok(Ran::Lost) => {
            drop(guard);
            exit::LOCK_LOST
        }
        Err(code) => release(guard, code),
    }
}

/// `once` and `phase`: run `program` unless `key` of `target` is marked
/// done, under the lock `target`, and mark it (fenced) if it exits 0.
struct Step<'a> {
    target: &'a str,
    key: &'a str,
    what: String,
    wait: Wait,
    show: Show,
    verbose: bool,
    /// Trust a marker only once the lock is held.
    strict: bool,
    /// `--on-leader-failure propagate`: a caller that waited for the lock
    /// and then finds no marker does not run the command (exit 75).
    propagate: bool,
}

fn run_step(client: &Client, lock: &EtcdLock, step: &Step<'_>, program: &Program) -> u8 {
    let markers = match client.markers(step.target) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let skip = |how: &str| {
        if step.verbose {
            eprintln!("holdfast: {} is already done{how}; skipped", step.what);
        }
        exit::OK
    };
    if !step.strict {
        match markers.is_done(step.key) {
            Ok(true) => return skip(""),
            Ok(false) => {}
            Err(e) => return fail(&e),
        }
    }
    let started = Instant::now();
    let guard = match acquire(lock, Mode::Exclusive, step.wait, step.show) {
        Ok(g) => g,
        Err(c) => return c,
    };
    match markers.is_done(step.key) {
        Ok(true) => return release(guard, skip(" (by the caller that held the lock)")),
        Ok(false) if step.propagate && guard.waited_for().is_some() => {
            // As for local locks: the leader this caller waited for let go
            // without marking it done (it failed, or was killed).
            let leader = guard.waited_for().cloned().unwrap_or_default();
            let code = fail(&Error::LeaderFailed {
                path: lock.location().to_owned(),
                leader,
            });
            return release(guard, code);
        }
        Ok(false) => {}
        Err(e) => {
            let code = fail(&e);
            return release(guard, code);
        }
    }
    verbose_got(step.verbose, &guard, started);
    match run_holding(&guard, program) {
        Ok(Ran::Exited(st)) if st.success() => match markers.mark_done(step.key, &guard) {
            Ok(()) => {
                if step.verbose {
                    eprintln!(
                        "holdfast: ran {}; {} is done (fencing token {})",
                        program.name(),
                        step.what,
                        guard.token()
                    );
                }
                release(guard, exit::OK)
            }
            Err(e) => {
                let code = fail(&e);
                eprintln!(
                    "holdfast: {} is not marked done (the next caller runs it again)",
                    step.what
                );
                drop(guard);
                code
            }
        },
        Ok(Ran::Exited(st)) => {
            eprintln!(
                "holdfast: {}; {} is not marked done (the next caller runs it again)",
                crate::cmd::once::exited(program, st),
                step.what
            );
            release(guard, exit::for_child(st))
        }
        Ok(Ran::Lost) => {
            eprintln!(
                "holdfast: {} is not marked done (the next caller runs it again)",
                step.what
            );
            drop(guard);
            exit::LOCK_LOST
        }
        Err(code) => release(guard, code),
    }
}

pub fn once(url: EtcdUrl, args: OnceArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
    ]) {
        return code;
    }
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(m) => return usage(&m),
    };
    let show = args.show.show();
    let (key, client, lock) = match open(url, &args.key, &args.remote) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let markers = match client.markers(&key) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    if args.status {
        return match markers.is_done(ONCE_MARKER) {
            Ok(true) => {
                println!("{}: done", lock.location().display());
                exit::OK
            }
            Ok(false) => {
                let running = client.status(&key).map(|v| v.held()).unwrap_or(false);
                println!(
                    "{}: not done{}",
                    lock.location().display(),
                    if running {
                        " (a caller is running it now)"
                    } else {
                        ""
                    }
                );
                exit::NOT_DONE
            }
            Err(e) => fail(&e),
        };
    }
    if args.reset {
        let guard = match acquire(&lock, Mode::Exclusive, wait, show) {
            Ok(g) => g,
            Err(c) => return c,
        };
        return match markers.clear(ONCE_MARKER) {
            Ok(was) => {
                if was {
                    println!("{}: reset", lock.location().display());
                }
                release(guard, exit::OK)
            }
            Err(e) => {
                let code = fail(&e);
                release(guard, code)
            }
        };
    }
    let step = Step {
        target: &key,
        key: ONCE_MARKER,
        what: lock.location().display().to_string(),
        wait,
        show,
        verbose: args.show.verbose,
        strict: false,
        propagate: args.on_leader_failure == LeaderFailureArg::Propagate,
    };
    run_step(&client, &lock, &step, &Program::Argv(args.command))
}

pub fn phase(url: EtcdUrl, args: PhaseArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
        (args.attr_name.is_some(), "--attr-name"),
        (args.attr_value.is_some(), "--attr-value"),
    ]) {
        return code;
    }
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(m) => return usage(&m),
    };
    let show = args.show.show();
    let (target, client, lock) = match open(url, &args.target, &args.remote) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let step = Step {
        target: &target,
        key: &args.name,
        what: format!("phase {:?} of {}", args.name, lock.location().display()),
        wait,
        show,
        verbose: args.show.verbose,
        strict: args.strict,
        propagate: false,
    };
    run_step(&client, &lock, &step, &Program::Argv(args.command))
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

fn view_json(v: &LockView) -> Value {
    let now = SystemTime::now();
    let entry = |e: &holdfast_etcd::QueueEntry| {
        json!({
            "pid": e.record.pid,
            "command": e.record.command,
            "host": e.record.host,
            "uid": e.record.uid,
            "since": unix(e.record.since),
            "held_for": e.record.since.and_then(|s| now.duration_since(s).ok()).map(|d| d.as_secs_f64()),
            "mode": e.record.mode.to_string(),
            "token": e.token,
            "lease": format!("{:x}", e.lease),
            "key": e.key,
        })
    };
    json!({
        "path": v.location.display().to_string(),
        "backend": "etcd",
        "name": v.name,
        "held": v.held(),
        "mode": v.mode().map(|m| m.to_string()),
        "holders": v.entries.iter().filter(|e| e.holding).map(entry).collect::<Vec<_>>(),
        "waiters": v.entries.iter().filter(|e| !e.holding).map(entry).collect::<Vec<_>>(),
    })
}

fn view_text(v: &LockView) -> String {
    let now = SystemTime::now();
    let loc = v.location.display();
    if !v.held() {
        return format!("{loc}: free");
    }
    let who: Vec<String> = v
        .entries
        .iter()
        .filter(|e| e.holding)
        .map(|e| {
            let r = &e.record;
            let mut s = match r.pid {
                Some(p) => format!("pid {p}"),
                None => "an unknown holder".to_owned(),
            };
            if let Some(c) = &r.command {
                s.push_str(&format!(" ({c})"));
            }
            if let Some(h) = &r.host {
                s.push_str(&format!(" on {h}"));
            }
            if let Some(d) = r.since.and_then(|t| now.duration_since(t).ok()) {
                s.push_str(&format!(" for {}", holdfast::holder::fmt_duration(d)));
            }
            s.push_str(&format!(", fencing token {}", e.token));
            s
        })
        .collect();
    let waiting = v.waiting();
    format!(
        "{loc}: held ({}) by {}{}",
        v.mode().unwrap_or(Mode::Exclusive),
        who.join("; "),
        if waiting > 0 {
            format!("; {waiting} waiting")
        } else {
            String::new()
        }
    )
}

pub fn status(url: EtcdUrl, args: StatusArgs) -> u8 {
    let client = match connect(url, &args.remote) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let mut out = Vec::new();
    let mut any_held = false;
    let mut failed = None;
    for p in &args.paths {
        let n = match name(p) {
            Ok(n) => n,
            Err(c) => return c,
        };
        match client.status(&n) {
            Ok(v) => {
                any_held |= v.held();
                if args.json {
                    out.push(view_json(&v));
                } else {
                    println!("{}", view_text(&v));
                }
            }
            Err(e) => failed = Some(fail(&e)),
        }
    }
    if args.json {
        println!("{}", Value::Array(out));
    }
    match failed {
        Some(c) => c,
        None if any_held => exit::WOULD_BLOCK,
        None => exit::OK,
    }
}

pub fn list(url: EtcdUrl, args: ListArgs) -> u8 {
    let client = match connect(url, &args.remote) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let prefix = match args.dir.as_deref().map(name) {
        Some(Ok(p)) => p,
        Some(Err(c)) => return c,
        None => String::new(),
    };
    match client.list(&prefix) {
        Ok(views) => {
            if args.json {
                println!("{}", Value::Array(views.iter().map(view_json).collect()));
            } else {
                for v in &views {
                    println!("{}", view_text(v));
                }
            }
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// `(fencing token 12, pid 345 on web-1, 3m2s ago)` of a marker.
fn marker_text(m: &holdfast_etcd::Marker) -> String {
    let mut parts = Vec::new();
    if let Some(t) = m.token {
        parts.push(format!("fencing token {t}"));
    }
    if let Some(p) = m.pid {
        let on = m
            .host
            .as_ref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        parts.push(format!("pid {p}{on}"));
    }
    if let Some(ago) = m.at.and_then(|t| SystemTime::now().duration_since(t).ok()) {
        parts.push(format!("{} ago", holdfast::holder::fmt_duration(ago)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `holdfast phases status --backend etcd://... TARGET [NAME...]`: the
/// lock TARGET (who holds it, who waits) and the markers of TARGET; with
/// NAMEs, exit 1 unless all of them are done.
pub fn phases_status(url: EtcdUrl, args: PhasesStatusArgs) -> u8 {
    let target = match name(&args.target) {
        Ok(n) => n,
        Err(c) => return c,
    };
    let client = match connect(url, &args.remote) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let markers = match client.markers(&target) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let view = match client.status(&target) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    let done = match markers.entries() {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let missing: Vec<&String> = args
        .names
        .iter()
        .filter(|n| !done.iter().any(|m| &m.key == *n))
        .collect();
    if args.json {
        let mut phases: Vec<Value> = done
            .iter()
            .map(|m| {
                json!({
                    "name": m.key,
                    "done": true,
                    "token": m.token,
                    "host": m.host,
                    "pid": m.pid,
                    "done_at": unix(m.at),
                })
            })
            .collect();
        phases.extend(missing.iter().map(|n| json!({ "name": n, "done": false })));
        let out = json!({
            "target": target,
            "location": markers.location().display().to_string(),
            "backend": "etcd",
            "store": "etcd",
            "prefix": markers.prefix(),
            "phases": phases,
            "lock": view_json(&view),
        });
        println!("{out}");
    } else {
        println!("target:      {}", markers.location().display());
        println!("lock:        {}", view_text(&view));
        println!("store:       etcd (keys {}NAME)", markers.prefix());
        let done: Vec<String> = done
            .iter()
            .map(|m| format!("{}{}", escape(&m.key), marker_text(m)))
            .collect();
        report::phase_lines(&done, &missing);
    }
    if missing.is_empty() {
        exit::OK
    } else {
        exit::NOT_DONE
    }
}

/// `holdfast phases reset --backend etcd://... TARGET [NAME...]`: under
/// the lock TARGET (never from under a running phase), removes the named
/// markers, or all of TARGET's.
pub fn phases_reset(url: EtcdUrl, args: PhasesResetArgs) -> u8 {
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(m) => return usage(&m),
    };
    let (target, client, lock) = match open(url, &args.target, &args.remote) {
        Ok(o) => o,
        Err(c) => return c,
    };
    let markers = match client.markers(&target) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    // Bad names are refused before anyone waits for the lock.
    for n in &args.names {
        if let Err(e) = markers.is_done(n) {
            return fail(&e);
        }
    }
    let guard = match acquire(&lock, Mode::Exclusive, wait, Show::OnTerminal) {
        Ok(g) => g,
        Err(c) => return c,
    };
    let shown = markers.location().display().to_string();
    if args.names.is_empty() {
        let before = match markers.entries() {
            Ok(d) => d,
            Err(e) => {
                let code = fail(&e);
                return release(guard, code);
            }
        };
        if let Err(e) = markers.clear_all() {
            let code = fail(&e);
            return release(guard, code);
        }
        if before.is_empty() {
            println!("{shown}: no phase markers");
        }
        for m in &before {
            println!("{shown}: removed {}", escape(&m.key));
        }
        return release(guard, exit::OK);
    }
    for n in &args.names {
        match markers.clear(n) {
            Ok(true) => println!("{shown}: removed {n}"),
            Ok(false) => println!("{shown}: {n} was not marked"),
            Err(e) => {
                let code = fail(&e);
                return release(guard, code);
            }
        }
    }
    release(guard, exit::OK)
}
