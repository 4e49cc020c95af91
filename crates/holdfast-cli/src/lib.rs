//! The `holdfast` command as a library: [`run`] is everything the binary
//! does after start-up, so other front ends (the Python wheel's `holdfast`
//! script) run the very same command instead of re-implementing it.
//!
//! Flags are parsed in two stages: `cli` describes them (clap, which also
//! generates help, man pages and completions), and each subcommand in
//! `cmd/` validates them into library options, calls the library, and maps
//! the outcome to an exit code (`exit`).
//!
//! No `unsafe` here: system calls are the library's (`holdfast::process`
//! starts, signals and waits for commands). The compiler enforces it
//! (`forbid(unsafe_code)`, in `main.rs` too), and `no_unsafe` below fails
//! if the word appears in code under `src/` at all.

#![forbid(unsafe_code)]

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
mod quick;
mod remote;
mod report;
mod waiting;

use std::ffi::OsString;

use clap::Parser;

/// Runs the `holdfast` command with these arguments (`argv[0]` first: a
/// name ending in `flock` selects the flock(1) drop-in, as a symlink named
/// `flock` does) and returns its exit code. It may spawn and wait for
/// commands; it never calls `exit` itself. The caller flushes stdout.
/// Lock services (`--backend`) are served in this process.
///
/// ```no_run
/// let code = holdfast_cli::run(vec!["holdfast".into(), "status".into(), "app.lock".into()]);
/// std::process::exit(code.into());
/// ```
pub fn run(argv: Vec<OsString>) -> u8 {
    run_with::<remote::InProcess>(argv)
}

/// As [`run`], for the `holdfast` binary: a command with a lock service
/// (`--backend` or `HOLDFAST_BACKEND`) replaces this process with the
/// `holdfast-remote` binary installed beside it (same arguments; it runs
/// [`run`]), so that the `holdfast` binary carries none of the etcd and
/// PostgreSQL clients' code, imports and libraries, which every local
/// call would otherwise pay for at start-up (BENCHMARKS.md, CLI section).
///
/// ```no_run
/// let code = holdfast_cli::run_local(vec!["holdfast".into(), "status".into(), "app.lock".into()]);
/// std::process::exit(code.into());
/// ```
pub fn run_local(argv: Vec<OsString>) -> u8 {
    run_with::<remote::Helper>(argv)
}

fn run_with<B: remote::Backends>(mut argv: Vec<OsString>) -> u8 {
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
    if let Some(command) = quick::command(&argv) {
        return dispatch::<B>(&argv, command);
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
    dispatch::<B>(&argv, cli.command)
}

/// Runs one parsed subcommand (from clap, or from `quick` for the common
/// forms of `run`, `once` and `phase`): locally, or through `B` when it
/// names a lock service.
fn dispatch<B: remote::Backends>(argv: &[OsString], command: cli::Command) -> u8 {
    use cli::{Command as C, PhasesCommand as P};
    let remote = match &command {
        C::Run(a) => &a.remote,
        C::Status(a) => &a.remote,
        C::List(a) => &a.remote,
        C::Once(a) => &a.remote,
        C::Phase(a) => &a.remote,
        C::Phases(a) => match &a.command {
            P::Status(a) => &a.remote,
            P::Reset(a) => &a.remote,
        },
        C::Flock(_) | C::Break(_) | C::Completions(_) | C::Man(_) => {
            return local(command);
        }
    };
    match B::service(remote, argv) {
        Ok(Some(service)) => B::serve(service, command),
        Ok(None) => local(command),
        Err(code) => code,
    }
}

/// Runs one subcommand on local files.
fn local(command: cli::Command) -> u8 {
    match command {
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

/// The CLI has no `unsafe` code (issue 9): a test that reads every file
/// under `src/` and fails naming each line with the keyword outside a
/// comment (`forbid(unsafe_code)` catches code; this also catches what a
/// `cfg` hides from this build, such as another platform's code).
#[cfg(test)]
mod no_unsafe {
    use std::path::Path;

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Whether `line` (its code, comments cut) has the keyword as a word.
    fn has_keyword(line: &str) -> bool {
        let word = concat!("un", "safe");
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        code.match_indices(word).any(|(i, _)| {
            !code[..i].chars().next_back().is_some_and(ident)
                && !code[i + word.len()..].chars().next().is_some_and(ident)
        })
    }

    #[test]
    fn none_in_the_cli() {
        let mut all = Vec::new();
        files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
        all.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs"));
        assert!(all.len() > 10, "found the sources: {all:?}");
        let word = concat!("un", "safe");
        let mut found = Vec::new();
        for p in &all {
            let text = std::fs::read_to_string(p).unwrap();
            for (n, line) in text.lines().enumerate() {
                if has_keyword(line) {
                    found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "{word} code in the CLI:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_check_sees_the_keyword() {
        let word = concat!("un", "safe");
        assert!(has_keyword(&format!("    {word} {{ libc::close(3) }}")));
        assert!(has_keyword(&format!("#[{word}(no_mangle)]")));
        assert!(!has_keyword(&format!("// {word} in a comment")));
        assert!(!has_keyword(&format!("let x = is_{word}(c);")));
        assert!(!has_keyword(&format!("#![forbid({word}_code)]")));
    }
}
