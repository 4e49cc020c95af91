//! The `holdfast` command: a thin layer over the `holdfast` library.
//! Flags are parsed in `cli`, each subcommand in `cmd/` turns them into
//! library calls, and `exit` maps outcomes to exit codes.

mod cli;
mod cmd;
mod duration;
mod exit;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
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
        cli::Command::Status(a) => cmd::status::run(a),
    })
}
