//! The commands over PostgreSQL (`--backend postgres://...` or
//! `postgresql://...`), with [`holdfast_postgres`]: the lock is a session
//! advisory lock on the name, held by holdfast's own database session
//! while the command runs; libpq's `PG*` variables fill in what the URL
//! leaves out.
//!
//! `once` and `phase` run a shell command, which no database transaction
//! can cover: the marker commits after the command has exited 0, through
//! the session that holds the lock, in a statement that first checks that
//! the session still holds it. (The Rust API's phases run their SQL inside
//! the transaction that holds the lock and inserts the marker, which is
//! stronger: see the `holdfast_postgres` docs.) If the session ends while
//! the command runs (`pg_terminate_backend`, a server restart), holdfast
//! notices at once, stops the command (SIGTERM, SIGKILL 10 s later), marks
//! nothing, and exits 75.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use holdfast::text::escape;
use holdfast::{Error, Mode, Wait};
use holdfast_postgres::{PgGuard, PgHolder, PgLock, Postgres};
use serde_json::{Value, json};

use crate::cli::{
    LeaderFailureArg, ListArgs, OnceArgs, PhaseArgs, PhasesResetArgs, PhasesStatusArgs, RunArgs,
    StatusArgs,
};
use crate::exec::{self, Outcome as Ran, Program};
use crate::remote::{RemoteArgs, Service, name, refuse_local, usage};
use crate::waiting::Show;
use crate::{duration, exit, report};

/// The server of `--backend URL` (the `PG*` variables fill the gaps),
/// with `--connect-timeout`.
pub fn service(url: &str, r: &RemoteArgs) -> Result<Service, u8> {
    let mut pg = Postgres::new(url).map_err(|e| fail(&e))?;
    if let Some(t) = &r.connect_timeout {
        let d = duration::parse(t).map_err(|e| usage(&format!("--connect-timeout: {e}")))?;
        if d.is_zero() {
            return Err(usage("--connect-timeout: must be more than 0"));
        }
        pg = pg.with_connect_timeout(d);
    }
    Ok(Service::Postgres(pg))
}

fn fail(e: &Error) -> u8 {
    let (code, msg) = exit::for_error(e);
    eprintln!("holdfast: {msg}");
    code
}

fn lock(pg: &Postgres, name: &str) -> Result<PgLock, u8> {
    pg.lock(name).map_err(|e| fail(&e))
}

/// Takes the lock; says who is in the way first when it has to wait (on a
/// terminal, or with --verbose). Returns the guard and whether it waited.
fn acquire(lock: &PgLock, mode: Mode, wait: Wait, show: Show) -> Result<(PgGuard, bool), u8> {
    match lock.acquire(mode, Wait::NoWait) {
        Ok(g) => return Ok((g, false)),
        Err(Error::WouldBlock { holders, .. }) if wait != Wait::NoWait => {
            let tell = match show {
                Show::Never => false,
                Show::OnTerminal => std::io::stderr().is_terminal(),
                Show::Always => true,
            };
            if tell {
                eprintln!(
                    "holdfast: waiting for {} lock on {} — {holders}",
                    mode.with_article(),
                    lock.location().display()
                );
            }
        }
        Err(e) => return Err(fail(&e)),
    }
    lock.acquire(mode, wait)
        .map(|g| (g, true))
        .map_err(|e| fail(&e))
}

/// How often the guard's connection is looked at while the command runs
/// (a poll of the socket, no server round trip).
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Runs `program` while `guard` holds the lock. The guard's connection is
/// read every [`CHECK_EVERY`]; if the session ends, the command gets
/// SIGTERM (SIGKILL 10 s later if it is still there).
fn run_holding(guard: &PgGuard, program: &Program) -> Result<Ran, u8> {
    exec::run_holding(
        program,
        Some(guard.token()),
        CHECK_EVERY,
        || {
            guard
                .wait_lost(Duration::from_millis(1))
                .map_or(Ok(()), Err)
        },
        |e| {
            format!(
                "holdfast: {e}; stopping the command (SIGTERM) — its work may overlap \
                 another holder's"
            )
        },
    )
}

/// Releases, turning a loss found only now into exit 75.
fn release(guard: PgGuard, code: u8) -> u8 {
    match guard.release() {
        Ok(()) => code,
        Err(e) => {
            eprintln!("holdfast: {e}; the command's work may have overlapped another holder's");
            if code == exit::OK {
                exit::LOCK_LOST
            } else {
                code
            }
        }
    }
}

fn verbose_got(verbose: bool, guard: &PgGuard, started: Instant) {
    if verbose {
        eprintln!(
            "holdfast: got {} lock on {} after {:.3}s (fencing token {}, server process {})",
            guard.mode(),
            guard.lock().location().display(),
            started.elapsed().as_secs_f64(),
            guard.token(),
            guard.backend_pid()
        );
    }
}

/// `holdfast run --backend postgres://... NAME -- COMMAND`.
pub fn run(pg: Postgres, args: RunArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.fifo, "--fifo"),
        (args.fcntl, "--fcntl"),
        (args.protocol.is_some(), "--lockfile"),
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
    ]) {
        return code;
    }
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    let name = match name(&args.lockfile) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let lock = match lock(&pg, &name) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mode = if args.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let started = Instant::now();
    let guard = match acquire(&lock, mode, wait, args.show.show()) {
        Ok((g, _)) => g,
        Err(code) => return code,
    };
    verbose_got(args.show.verbose, &guard, started);
    let program = Program::Argv(args.command);
    match run_holding(&guard, &program) {
        Ok(Ran::Exited(st)) => release(guard, exit::for_child(st)),
        Ok(Ran::Lost) => {
            drop(guard);
            exit::LOCK_LOST
        }
        Err(code) => code,
    }
}

/// What `once` and `phase` share: the marker (`phase` of `target`) and
/// how to wait.
struct Step<'a> {
    pg: &'a Postgres,
    target: String,
    phase: String,
    wait: Wait,
    show: Show,
    verbose: bool,
    propagate: bool,
    what: String,
}

impl Step<'_> {
    /// Skips a done step, else runs `program` under the lock and marks
    /// the step done if it exits 0.
    fn run(&self, program: Program) -> u8 {
        let phases = match self.pg.phases(&self.target) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        };
        match phases.is_done(&self.phase) {
            Ok(true) => {
                if self.verbose {
                    eprintln!(
                        "holdfast: {} is already done; {} not run",
                        self.what,
                        program.name()
                    );
                }
                return exit::OK;
            }
            Ok(false) => {}
            Err(e) => return fail(&e),
        }
        let lock = match lock(self.pg, &self.target) {
            Ok(l) => l,
            Err(code) => return code,
        };
        let started = Instant::now();
        let (guard, waited) = match acquire(&lock, Mode::Exclusive, self.wait, self.show) {
            Ok(g) => g,
            Err(code) => return code,
        };
        verbose_got(self.verbose, &guard, started);
        // Always look again under the lock: another caller may have done
        // it between the first look and this acquisition, waited or not.
        {
            match phases.is_done(&self.phase) {
                Ok(true) => {
                    if self.verbose {
                        eprintln!("holdfast: another caller did {} meanwhile", self.what);
                    }
                    return release(guard, exit::OK);
                }
                Ok(false) if waited && self.propagate => {
                    eprintln!(
                        "holdfast: the caller running {} stopped without finishing it, and \
                         --on-leader-failure is propagate: not running it here",
                        self.what
                    );
                    drop(guard);
                    return exit::LEADER_FAILED;
                }
                Ok(false) => {}
                Err(e) => return fail(&e),
            }
        }
        let status = match run_holding(&guard, &program) {
            Ok(Ran::Exited(st)) => st,
            Ok(Ran::Lost) => {
                eprintln!("holdfast: {} is not marked done", self.what);
                drop(guard);
                return exit::LOCK_LOST;
            }
            Err(code) => return code,
        };
        if !status.success() {
            eprintln!(
                "holdfast: {}; {} is not marked done (the next caller runs it again)",
                crate::cmd::once::exited(&program, status),
                self.what
            );
            return release(guard, exit::for_child(status));
        }
        if let Err(e) = guard.mark_done(&self.target, &self.phase) {
            let (code, msg) = exit::for_error(&e);
            eprintln!("holdfast: {msg}");
            drop(guard);
            return if code == exit::OK { exit::OS_ERR } else { code };
        }
        if self.verbose {
            eprintln!(
                "holdfast: ran {}; {} is done (fencing token {})",
                program.name(),
                self.what,
                guard.token()
            );
        }
        release(guard, exit::OK)
    }
}

/// `holdfast once --backend postgres://... KEY -- COMMAND`: the marker is
/// the row (KEY, '') of `holdfast_phases`, the lock the one named KEY.
pub fn once(pg: Postgres, args: OnceArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
    ]) {
        return code;
    }
    let key = match name(&args.key) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let phases = match pg.phases(&key) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if args.status {
        return match phases.markers() {
            Ok(m) => match m.iter().find(|m| m.phase.is_empty()) {
                Some(m) => {
                    println!("{key}: done ({})", marker_details(m));
                    exit::OK
                }
                None => {
                    let running = match pg.lock(&key).and_then(|l| l.holders()) {
                        Ok(h) if !h.is_empty() => format!("; running now: {}", holders_text(&h)),
                        _ => String::new(),
                    };
                    println!("{key}: not done{running}");
                    exit::NOT_DONE
                }
            },
            Err(e) => fail(&e),
        };
    }
    if args.reset {
        return match phases.reset("") {
            Ok(true) => {
                println!("{key}: reset (the next caller runs the command again)");
                exit::OK
            }
            Ok(false) => {
                println!("{key}: was not done");
                exit::OK
            }
            Err(e) => fail(&e),
        };
    }
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    Step {
        pg: &pg,
        what: key.clone(),
        target: key,
        phase: String::new(),
        wait,
        show: args.show.show(),
        verbose: args.show.verbose,
        propagate: args.on_leader_failure == LeaderFailureArg::Propagate,
    }
    .run(Program::Argv(args.command))
}

/// `holdfast phase --backend postgres://... NAME --target TARGET -- COMMAND`:
/// the marker is the row (TARGET, NAME), the lock the one named TARGET.
pub fn phase(pg: Postgres, args: PhaseArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.close.close, "--close"),
        (args.create_parents, "--create-parents"),
        (
            args.strict,
            "--strict (markers in PostgreSQL are always read under the lock)",
        ),
        (args.attr_name.is_some(), "--attr-name"),
        (args.attr_value.is_some(), "--attr-value"),
        (
            args.markers.xattrs != crate::cli::XattrsArg::Auto,
            "--xattrs",
        ),
        (args.markers.namespace != "user.phaselock", "--namespace"),
    ]) {
        return code;
    }
    let target = match name(&args.target) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    Step {
        pg: &pg,
        what: format!("phase {} of {target}", args.name),
        target,
        phase: args.name,
        wait,
        show: args.show.show(),
        verbose: args.show.verbose,
        propagate: false,
    }
    .run(Program::Argv(args.command))
}

fn marker_details(m: &holdfast_postgres::PhaseMarker) -> String {
    let ago = SystemTime::now()
        .duration_since(m.done_at)
        .map(|d| format!(", {} ago", holdfast::holder::fmt_duration(d)))
        .unwrap_or_default();
    format!(
        "by pid {} on {}, fencing token {}{ago}",
        m.pid, m.host, m.token
    )
}

fn holders_text(h: &[PgHolder]) -> String {
    h.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| json!(d.as_secs_f64()))
        .unwrap_or(Value::Null)
}

fn holder_json(h: &PgHolder) -> Value {
    json!({
        "name": h.name,
        "key": h.key,
        "mode": h.mode.to_string(),
        "backend_pid": h.backend_pid,
        "pid": h.pid,
        "host": h.host,
        "command": h.command,
        "since": unix(h.since),
        "held_for": h.since.and_then(|s| SystemTime::now().duration_since(s).ok()).map(|d| d.as_secs_f64()),
        "token": h.token,
        "client_addr": h.client_addr,
    })
}

/// `holdfast status --backend postgres://... NAME...`: exit 1 if any is held.
pub fn status(pg: Postgres, args: StatusArgs) -> u8 {
    let mut any_held = false;
    let mut failed = None;
    let mut out = Vec::new();
    for path in &args.paths {
        let name = match name(path) {
            Ok(n) => n,
            Err(code) => return code,
        };
        match pg.lock(&name).and_then(|l| Ok((l.holders()?, l))) {
            Ok((holders, lock)) => {
                any_held |= !holders.is_empty();
                if args.json {
                    out.push(json!({
                        "name": name,
                        "location": lock.location().display().to_string(),
                        "key": lock.key(),
                        "held": !holders.is_empty(),
                        "mode": holders.first().map(|h| h.mode.to_string()),
                        "holders": holders.iter().map(holder_json).collect::<Vec<_>>(),
                    }));
                } else if holders.is_empty() {
                    println!("{}: free", lock.location().display());
                } else {
                    println!(
                        "{}: {} by {}",
                        lock.location().display(),
                        holders_mode(&holders),
                        holders_text(&holders)
                    );
                }
            }
            Err(e) => failed = Some(fail(&e)),
        }
    }
    if args.json {
        println!("{}", Value::Array(out));
    }
    match failed {
        Some(code) => code,
        None if any_held => exit::WOULD_BLOCK,
        None => exit::OK,
    }
}

fn holders_mode(h: &[PgHolder]) -> &'static str {
    match h.first().map(|h| h.mode) {
        Some(Mode::Shared) => "held (shared)",
        _ => "held (exclusive)",
    }
}

/// `holdfast list --backend postgres://... [PREFIX]`: every advisory lock
/// held in the database (holdfast's by name, others by key).
pub fn list(pg: Postgres, args: ListArgs) -> u8 {
    let prefix = match args.dir.as_deref().map(name).transpose() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let holders = match pg.holders() {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let prefix = prefix.unwrap_or_default();
    let mut groups: Vec<(i64, Option<String>, Vec<PgHolder>)> = Vec::new();
    for h in holders {
        if !h.name.as_deref().unwrap_or("").starts_with(&prefix) {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == h.key) {
            Some(g) => {
                if g.1.is_none() {
                    g.1.clone_from(&h.name);
                }
                g.2.push(h);
            }
            None => groups.push((h.key, h.name.clone(), vec![h])),
        }
    }
    if args.json {
        let v: Vec<Value> = groups
            .iter()
            .map(|(key, name, hs)| {
                json!({
                    "name": name,
                    "key": key,
                    "held": true,
                    "mode": hs.first().map(|h| h.mode.to_string()),
                    "holders": hs.iter().map(holder_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", Value::Array(v));
    } else {
        for (key, name, hs) in &groups {
            let label = match name {
                Some(n) => n.clone(),
                None => format!("key {key} (not taken through holdfast)"),
            };
            println!("{label}: {} by {}", holders_mode(hs), holders_text(hs));
        }
    }
    exit::OK
}

/// `holdfast phases status --backend postgres://... TARGET [NAME...]`: who
/// holds the lock TARGET and the phase markers of TARGET (rows of
/// `holdfast_phases`); with NAMEs, exit 1 unless all of them are done.
pub fn phases_status(pg: Postgres, args: PhasesStatusArgs) -> u8 {
    let target = match name(&args.target) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let lock = match lock(&pg, &target) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let done: Vec<holdfast_postgres::PhaseMarker> =
        match pg.phases(&target).and_then(|p| p.markers()) {
            Ok(m) => m.into_iter().filter(|m| !m.phase.is_empty()).collect(),
            Err(e) => return fail(&e),
        };
    let holders = match lock.holders() {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let missing: Vec<&String> = args
        .names
        .iter()
        .filter(|n| !done.iter().any(|m| &m.phase == *n))
        .collect();
    let location = lock.location().display().to_string();
    if args.json {
        let mut phases: Vec<Value> = done
            .iter()
            .map(|m| {
                json!({
                    "name": m.phase,
                    "done": true,
                    "token": m.token,
                    "host": m.host,
                    "pid": m.pid,
                    "command": m.command,
                    "done_at": unix(Some(m.done_at)),
                })
            })
            .collect();
        phases.extend(missing.iter().map(|n| json!({ "name": n, "done": false })));
        let out = json!({
            "target": target,
            "location": location,
            "backend": "postgres",
            "store": "holdfast_phases",
            "phases": phases,
            "lock": {
                "held": !holders.is_empty(),
                "mode": holders.first().map(|h| h.mode.to_string()),
                "holders": holders.iter().map(holder_json).collect::<Vec<_>>(),
            },
        });
        println!("{out}");
    } else {
        println!("target:      {location}");
        if holders.is_empty() {
            println!("lock:        {location}: free");
        } else {
            println!(
                "lock:        {location}: {} by {}",
                holders_mode(&holders),
                holders_text(&holders)
            );
        }
        println!("store:       PostgreSQL (table holdfast_phases)");
        let done: Vec<String> = done
            .iter()
            .map(|m| format!("{} ({})", escape(&m.phase), marker_details(m)))
            .collect();
        report::phase_lines(&done, &missing);
    }
    if missing.is_empty() {
        exit::OK
    } else {
        exit::NOT_DONE
    }
}

/// `holdfast phases reset --backend postgres://... TARGET [NAME...]`: under
/// the lock TARGET (never from under a running phase), removes the named
/// phase markers, or all of TARGET's (not its run-once marker).
pub fn phases_reset(pg: Postgres, args: PhasesResetArgs) -> u8 {
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    let target = match name(&args.target) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let mut phases = match pg.phases(&target) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    phases.wait(wait);
    let location = match lock(&pg, &target) {
        Ok(l) => l.location().display().to_string(),
        Err(code) => return code,
    };
    let busy = |e: &Error| {
        if wait == Wait::NoWait && matches!(e, Error::WouldBlock { .. }) {
            let (code, msg) = exit::for_error(e);
            eprintln!("holdfast: a phase is running: {msg}");
            code
        } else {
            fail(e)
        }
    };
    if args.names.is_empty() {
        return match phases.reset_all() {
            Ok(removed) => {
                if removed.is_empty() {
                    println!("{location}: no phase markers");
                }
                for p in removed {
                    println!("{location}: removed {}", escape(&p));
                }
                exit::OK
            }
            Err(e) => busy(&e),
        };
    }
    for n in &args.names {
        match phases.reset(n) {
            Ok(true) => println!("{location}: removed {}", escape(n)),
            Ok(false) => println!("{location}: {} was not marked", escape(n)),
            Err(e) => return busy(&e),
        }
    }
    exit::OK
}
