//! The `holdfast` command: a thin layer over the `holdfast` library.
//!
//! Flags are parsed in two stages: `cli` describes them (clap, which also
//! generates help, man pages and completions), and each subcommand in
//! `cmd/` validates them into library options, calls the library, and maps
//! the outcome to an exit code (`exit`). `main` stays lean: the flock form
//! (`holdfast flock ...`, or a symlink named `flock`) builds only its own
//! parser, and nothing reads `/proc` or the clock before it is needed.

mod cli;
mod cmd;
mod duration;
mod exec;
mod exit;
mod report;
mod waiting;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv
        .first()
        .is_some_and(|a| cmd::flock::invoked_as_flock(a))
    {
        return ExitCode::from(cmd::flock::main("flock", argv));
    }
    if argv.get(1).is_some_and(|a| a == "flock") {
        argv.remove(0);
        return ExitCode::from(cmd::flock::main("holdfast", argv));
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
            return ExitCode::from(code);
        }
    };
    ExitCode::from(match cli.command {
        cli::Command::Run(a) => cmd::run::run(a),
        cli::Command::Flock(a) => cmd::flock::run("holdfast", a),
        cli::Command::Status(a) => cmd::status::run(a),
        cli::Command::List(a) => cmd::list::run(a),
        cli::Command::Completions(a) => cmd::docs::completions(a),
        cli::Command::Man(a) => cmd::docs::man(a),
    })
}
