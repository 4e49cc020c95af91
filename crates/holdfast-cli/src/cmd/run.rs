//! `holdfast run`: run a command while holding a lock.
//!
//! Three kinds of lock, one flow (acquire with the waiting line, run the
//! command, release): a kernel lock (`holdfast::Lock`, the default), a fair
//! queue in front of the same kernel lock (`--fifo`, `holdfast::FifoLock`),
//! or a lock file (`--lockfile PROTOCOL`, `holdfast::lockfile::LockFile`).
//! The first two are one path (`KernelLock`): the command gets the lock's
//! descriptor and fencing token either way.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use holdfast::lockfile::LockFile;
use holdfast::{Backend, FifoLock, Lock, Mode, Wait};

use crate::cli::{ProtocolArg, RunArgs};
use crate::exec::{self, Launch, Outcome, Program};
use crate::waiting::{self, Show};
use crate::{duration, exit, report};

/// `RunArgs` validated into what the library needs.
#[derive(Debug)]
struct Options {
    mode: Mode,
    wait: Wait,
    show: Show,
    kind: Kind,
}

/// Which lock `run` takes.
#[derive(Debug)]
enum Kind {
    Kernel,
    Fifo,
    LockFile(LockFile),
}

fn validate(args: &RunArgs) -> Result<Options, String> {
    let kind = match args.protocol {
        None if args.fifo => Kind::Fifo,
        None => Kind::Kernel,
        Some(p) => Kind::LockFile(lock_file(args, p)?),
    };
    Ok(Options {
        mode: if args.shared {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        wait: args.wait.wait()?,
        show: args.show.show(),
        kind,
    })
}

/// The lock file of `--lockfile`: its lease and heartbeat (on by default
/// whenever there is a lease: the command runs for as long as it takes,
/// and other hosts must keep seeing a live lease meanwhile).
fn lock_file(args: &RunArgs, protocol: ProtocolArg) -> Result<LockFile, String> {
    super::check_compat("--lockfile", protocol, args.compat)?;
    // The lock file is PATH itself (but PATH.lock with --compat lockfile).
    if protocol != ProtocolArg::Mkdir
        && args.compat != Some(crate::cli::CompatArg::Lockfile)
        && args.lockfile.is_dir()
    {
        return Err(format!(
            "{} is a directory, not a lock file; if it is a lock of the mkdir protocol, \
             use --lockfile mkdir, else name another path",
            crate::report::shown(&args.lockfile)
        ));
    }
    let mut opts = super::lockfile_options(protocol, args.compat);
    if let Some(l) = &args.lifetime {
        let d = duration::parse(l).map_err(|e| format!("--lifetime: {e}"))?;
        if d < Duration::from_millis(1) {
            return Err(format!("--lifetime: {l:?} is too short for a lease"));
        }
        opts.lifetime(d);
    }
    opts.create_parents(args.create_parents);
    // A heartbeat by default whenever there is a lease to renew.
    let heartbeat = match (opts.lease(), args.heartbeat, args.no_heartbeat) {
        (None, true, _) => {
            return Err(
                "--heartbeat needs a lease to renew: give --lifetime (soft and mkdir locks \
                 have none by default)"
                    .into(),
            );
        }
        (None, _, _) | (_, _, true) => false,
        (Some(_), _, false) => true,
    };
    opts.heartbeat(heartbeat);
    opts.open(&args.lockfile).map_err(|e| e.to_string())
}

/// A kernel lock held for the command, plain or queued (`--fifo`): both
/// hand the command their descriptor and fencing token.
trait Held: AsFd {
    fn token(&self) -> Option<u64>;
}

impl Held for holdfast::LockGuard<'_> {
    fn token(&self) -> Option<u64> {
        holdfast::LockGuard::token(self)
    }
}

impl Held for holdfast::FifoGuard<'_> {
    fn token(&self) -> Option<u64> {
        holdfast::FifoGuard::token(self)
    }
}

/// The kernel lock `run` opened: plain, or behind the fair queue.
enum KernelLock {
    Plain(Lock),
    Fifo(FifoLock),
}

impl KernelLock {
    fn open(args: &RunArgs, fifo: bool) -> holdfast::Result<KernelLock> {
        let backend = if args.fcntl {
            Backend::OfdFcntl
        } else {
            Backend::Flock
        };
        let path = args.lockfile.as_path();
        Ok(if fifo {
            KernelLock::Fifo(
                FifoLock::options()
                    .create_parents(args.create_parents)
                    .backend(backend)
                    .open(path)?,
            )
        } else {
            KernelLock::Plain(
                Lock::options()
                    .create_parents(args.create_parents)
                    .backend(backend)
                    .open(path)?,
            )
        })
    }

    fn acquire(&self, opts: &Options) -> holdfast::Result<Box<dyn Held + '_>> {
        Ok(match self {
            KernelLock::Plain(l) => Box::new(waiting::acquire(l, opts.mode, opts.wait, opts.show)?),
            KernelLock::Fifo(l) => {
                Box::new(waiting::acquire_fifo(l, opts.mode, opts.wait, opts.show)?)
            }
        })
    }
}

pub fn run(mut args: RunArgs) -> u8 {
    let opts = match validate(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("holdfast: {msg}");
            return exit::USAGE;
        }
    };
    let program = Program::Argv(std::mem::take(&mut args.command));
    let path = args.lockfile.as_path();
    let verbose = args.show.verbose;
    let started = Instant::now();
    let got = |token: Option<u64>| {
        if verbose {
            eprintln!(
                "holdfast: got {} lock on {} after {:.3}s{}",
                opts.mode,
                report::shown(path),
                started.elapsed().as_secs_f64(),
                token
                    .map(|t| format!(" (fencing token {t})"))
                    .unwrap_or_default()
            );
        }
    };
    let fifo = match &opts.kind {
        Kind::LockFile(lock) => return run_lock_file(lock, &opts, &program, path, got),
        Kind::Kernel => false,
        Kind::Fifo => true,
    };
    let lock = match KernelLock::open(&args, fifo) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let guard = match lock.acquire(&opts) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    got(guard.token());
    let launch = Launch {
        lock_fd: (!args.close.close).then(|| guard.as_fd()),
        token: guard.token(),
        keeps_lock_file: false,
        forward_signals: true,
    };
    let status = match launch.run(&program) {
        Ok(s) => s,
        Err(e) => return spawn_failed(&program, &e),
    };
    drop(guard);
    exit::for_child(status)
}

/// How often a lock file is checked (a `stat` and a read of the path)
/// while its command runs.
const LOCK_FILE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `--lockfile`: holdfast holds the lock file for the command and removes
/// it when the command has exited; a lock lost meanwhile (broken, removed)
/// stops the command (SIGTERM) and is exit 75.
fn run_lock_file(
    lock: &LockFile,
    opts: &Options,
    program: &Program,
    path: &Path,
    got: impl Fn(Option<u64>),
) -> u8 {
    let guard = match waiting::acquire_lockfile(lock, opts.wait, opts.show) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    got(None);
    let ran = exec::run_holding(
        program,
        None,
        LOCK_FILE_CHECK_EVERY,
        || guard.check(),
        |e| {
            format!(
                "holdfast: {e}; stopping the command (SIGTERM) — its work may overlap \
                 another holder's"
            )
        },
    );
    let status = match ran {
        Ok(Outcome::Exited(status)) => status,
        Ok(Outcome::Lost) => {
            drop(guard);
            return exit::LOCK_LOST;
        }
        Err(code) => {
            drop(guard);
            return code;
        }
    };
    let code = exit::for_child(status);
    match guard.unlock() {
        Ok(()) => code,
        Err(e) => {
            eprintln!(
                "holdfast: {e}; the command's work under {} may have overlapped another \
                 holder's",
                report::shown(path)
            );
            if code == exit::OK {
                exit::LOCK_LOST
            } else {
                code
            }
        }
    }
}

fn fail(e: &holdfast::Error) -> u8 {
    let (code, msg) = exit::for_error(e);
    eprintln!("holdfast: {msg}");
    code
}

fn spawn_failed(program: &Program, e: &std::io::Error) -> u8 {
    eprintln!("holdfast: cannot run {}: {e}", program.name());
    exit::for_spawn_error(e)
}
