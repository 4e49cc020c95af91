//! `holdfast-helper`: the child process of holdfast's multi-process tests.
//!
//! Each area of the library has its own module of subcommands; `main`
//! dispatches on the first argument. Helpers report on stdout, one line per
//! event, and take orders on stdin (EOF means "release and exit"), so tests
//! synchronise on pipes rather than sleeps.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 10 would block, 11 timed out.

mod args;
mod fifo;
mod lock;
mod lockfile;
mod phase;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: holdfast-helper SUBCOMMAND ARGS...");
        std::process::exit(2);
    };
    let code = match lock::dispatch(cmd, rest)
        .or_else(|| phase::dispatch(cmd, rest))
        .or_else(|| lockfile::dispatch(cmd, rest))
        .or_else(|| fifo::dispatch(cmd, rest))
    {
        Some(code) => code,
        None => {
            eprintln!("holdfast-helper: unknown subcommand {cmd:?}");
            2
        }
    };
    std::process::exit(code);
}
