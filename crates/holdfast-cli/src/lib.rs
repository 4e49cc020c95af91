//! The `holdfast` command as a library: [`run`] is everything the binary
//! does after start-up, so other front ends (the Python wheel's `holdfast`
//! script) run the very same command instead of re-implementing it.
//!
//! Flags are parsed in two stages: `cli` describes them (clap, which also
//! generates help, man pages and completions), and each subcommand in
//! `cmd/` validates them into library options, calls the library, and maps
//! the outcome to an exit code (`exit`).

mod cli;
mod cmd;
mod duration;
#[cfg(feature = "etcd")]
mod etcd;
mod exec;
mod exit;
mod getopt;
mod hint;
mod man;
#[cfg(feature = "postgres")]
mod postgres;
mod remote;
mod report;
mod waiting;

use std::ffi::OsString;

use clap::Parser;

/// Runs the `holdfast` command with these arguments (`argv[0]` first: a
/// name ending in `flock` selects the flock(1) drop-in, as a symlink named
/// `flock` does) and returns its exit code. It may spawn and wait for
/// commands; it never calls `exit` itself. The caller flushes stdout.
///
/// ```no_run
/// let code = holdfast_cli::run(vec!["holdfast".into(), "status".into(), "app.lock".into()]);
/// std::process::exit(code.into());
/// ```
pub fn run(mut argv: Vec<OsString>) -> u8 {
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
    let cli = match cli::Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            if let Some(hint) = hint::missing_separator(&argv, &e) {
                eprintln!("holdfast: {hint}");
                return exit::USAGE;
            }
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
        cli::Command::Run(a) => match a.remote.service() {
            Ok(Some(service)) => remote::run(service, a),
            Ok(None) => cmd::run::run(a),
            Err(code) => code,
        },
        cli::Command::Flock(a) => cmd::flock::run("holdfast", a),
        cli::Command::Status(a) => match a.remote.service() {
            Ok(Some(service)) => remote::status(service, a),
            Ok(None) => cmd::status::run(a),
            Err(code) => code,
        },
        cli::Command::List(a) => match a.remote.service() {
            Ok(Some(service)) => remote::list(service, a),
            Ok(None) => cmd::list::run(a),
            Err(code) => code,
        },
        cli::Command::Break(a) => cmd::break_lock::run(a),
        cli::Command::Once(a) => match a.remote.service() {
            Ok(Some(service)) => remote::once(service, a),
            Ok(None) => cmd::once::run(a),
            Err(code) => code,
        },
        cli::Command::Phase(a) => match a.remote.service() {
            Ok(Some(service)) => remote::phase(service, a),
            Ok(None) => cmd::phase::run(a),
            Err(code) => code,
        },
        cli::Command::Phases(a) => match a.command {
            cli::PhasesCommand::Status(a) => match a.remote.service() {
                Ok(Some(service)) => remote::phases_status(service, a),
                Ok(None) => cmd::phase::status(a),
                Err(code) => code,
            },
            cli::PhasesCommand::Reset(a) => match a.remote.service() {
                Ok(Some(service)) => remote::phases_reset(service, a),
                Ok(None) => cmd::phase::reset(a),
                Err(code) => code,
            },
        },
        cli::Command::Completions(a) => cmd::docs::completions(a),
        cli::Command::Man(a) => cmd::docs::man(a),
    }
}
