//! The `holdfast` command: a thin layer over the `holdfast` library.
//!
//! Flags are parsed in two stages: `cli` describes them (clap, which also
//! generates help, man pages and completions), and each subcommand in
//! `cmd/` validates them into library options, calls the library, and maps
//! the outcome to an exit code (`exit`).
//!
//! # Startup cost
//!
//! `holdfast flock LOCK CMD` competes with util-linux flock(1), a small C
//! program, on the cost of one invocation, so `main` stays lean: the flock
//! form (`holdfast flock ...`, or a symlink named `flock`) builds only its
//! own parser, and nothing reads `/proc` or the clock before it is needed.
//!
//! For the same reason holdfast provides the C `main` itself
//! (`#![no_main]`) instead of going through std's runtime start-up, which
//! on Linux reads and parses `/proc/self/maps` to find the main thread's
//! stack for its stack-overflow handler: about 0.2 ms per run, as much as
//! the whole rest of what holdfast adds to a command. What that start-up
//! did and still matters is done here: descriptors 0-2 are opened on
//! `/dev/null` if they are closed (so a lock file can never become stdout),
//! a panic exits 101, and stdout is flushed before exit. Left at their
//! defaults, as in C programs such as flock(1): `SIGPIPE` (a closed pipe
//! ends holdfast quietly instead of an error) and the stack-overflow
//! message (an overflow is a plain `SIGSEGV`). `std::env::args_os` works
//! unchanged (glibc passes the arguments to std's initialiser).

// The unit tests keep the test harness's `main`.
#![cfg_attr(not(test), no_main)]

mod cli;
mod cmd;
mod duration;
mod exec;
mod exit;
mod getopt;
mod report;
mod waiting;

use std::ffi::OsString;

use clap::Parser;

/// The process entry point (see "Startup cost" above).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    stdio_open();
    let code = std::panic::catch_unwind(holdfast).unwrap_or(101);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    libc::c_int::from(code)
}

/// Opens `/dev/null` on any of descriptors 0, 1 and 2 that is closed, as
/// std's start-up does: otherwise the lock file could be opened as fd 1
/// and `println!` would write into it.
#[cfg_attr(test, allow(dead_code))]
fn stdio_open() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor table; a number that
        // is not an open descriptor fails with EBADF and nothing happens.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1;
        if closed {
            // The lowest free descriptor is `fd` itself: keep it open for
            // the life of the process.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                std::mem::forget(null);
            }
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn holdfast() -> u8 {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv
        .first()
        .is_some_and(|a| cmd::flock::invoked_as_flock(a))
    {
        return cmd::flock::main("flock", argv);
    }
    if argv.get(1).is_some_and(|a| a == "flock") {
        argv.remove(0);
        return cmd::flock::main("holdfast", argv);
    }
    let cli = match cli::Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        cli::Command::Run(a) => cmd::run::run(a),
        cli::Command::Flock(a) => cmd::flock::run("holdfast", a),
        cli::Command::Status(a) => cmd::status::run(a),
        cli::Command::List(a) => cmd::list::run(a),
        cli::Command::Break(a) => cmd::break_lock::run(a),
        cli::Command::Once(a) => cmd::once::run(a),
        cli::Command::Phase(a) => cmd::phase::run(a),
        cli::Command::Phases(a) => match a.command {
            cli::PhasesCommand::Status(a) => cmd::phase::status(a),
            cli::PhasesCommand::Reset(a) => cmd::phase::reset(a),
        },
        cli::Command::Completions(a) => cmd::docs::completions(a),
        cli::Command::Man(a) => cmd::docs::man(a),
    }
}
