//! `holdfast run`: run a command while holding a lock.

use std::os::fd::AsFd;
use std::time::Instant;

use holdfast::{Backend, Lock, Mode, Wait};

use crate::cli::RunArgs;
use crate::exec::{Launch, Program};
use crate::exit;
use crate::waiting::{self, Show};

/// `RunArgs` validated into what the library needs.
#[derive(Debug)]
struct Options {
    mode: Mode,
    wait: Wait,
    show: Show,
}

fn validate(args: &RunArgs) -> Result<Options, String> {
    Ok(Options {
        mode: if args.shared {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        wait: super::wait(args.no_wait, args.timeout.as_deref())?,
        show: super::show(args.verbose, args.quiet),
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
            return exit::for_spawn_error(&e);
        }
    };
    drop(guard);
    exit::for_child(status)
}
