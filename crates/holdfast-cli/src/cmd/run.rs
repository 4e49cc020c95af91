//! `holdfast run`: run a command while holding a lock.

use std::os::fd::AsFd;
use std::time::Instant;

use holdfast::{Backend, Lock, Mode, Wait};

use crate::cli::RunArgs;
use crate::exec::{Launch, Program};
use crate::waiting::{self, Show};
use crate::{duration, exit};

/// `RunArgs` validated into what the library needs.
#[derive(Debug)]
struct Options {
    mode: Mode,
    wait: Wait,
    show: Show,
}

fn validate(args: &RunArgs) -> Result<Options, String> {
    let wait = if args.no_wait {
        Wait::NoWait
    } else if let Some(t) = &args.timeout {
        match duration::parse(t) {
            Ok(d) if d.is_zero() => Wait::NoWait,
            Ok(d) => Wait::Timeout(d),
            Err(e) => return Err(format!("--timeout: {e}")),
        }
    } else {
        Wait::Forever
    };
    Ok(Options {
        mode: if args.shared {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        wait,
        show: if args.quiet {
            Show::Never
        } else if args.verbose {
            Show::Always
        } else {
            Show::OnTerminal
        },
    })
}

pub fn run(args: RunArgs) -> u8 {
    let opts = match validate(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("holdfast: {msg}");
            return exit::USAGE;
        }
    };
    let fail = |e: &holdfast::Error| {
        let (code, msg) = exit::for_error(e);
        eprintln!("holdfast: {msg}");
        code
    };
    let lock = match Lock::options()
        .create_parents(args.create_parents)
        .backend(if args.fcntl {
            Backend::OfdFcntl
        } else {
            Backend::Flock
        })
        .open(&args.lockfile)
    {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let started = Instant::now();
    let guard = match waiting::acquire(&lock, opts.mode, opts.wait, opts.show) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    if args.verbose {
        eprintln!(
            "holdfast: got {} lock on {} after {:.3}s{}",
            opts.mode,
            args.lockfile.display(),
            started.elapsed().as_secs_f64(),
            guard
                .token()
                .map(|t| format!(" (fencing token {t})"))
                .unwrap_or_default()
        );
    }
    let program = Program::Argv(args.command);
    let launch = Launch {
        lock_fd: (!args.close).then(|| guard.as_fd()),
        token: guard.token(),
    };
    let status = match launch.run(&program) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holdfast: cannot run {}: {e}", program.name());
            return if e.kind() == std::io::ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_EXEC
            };
        }
    };
    drop(guard);
    exit::for_child(status)
}
