//! `holdfast completions SHELL` and `holdfast man [COMMAND]`: generated
//! from the clap definitions in `cli.rs`, so they always match the flags.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};
use crate::exit;

pub fn completions(args: CompletionsArgs) -> u8 {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "holdfast", &mut out);
    if out.flush().is_err() {
        return exit::OS_ERR;
    }
    exit::OK
}

pub fn man(args: ManArgs) -> u8 {
    let root = Cli::command();
    let cmd = match &args.command {
        None => root,
        Some(name) => match root.find_subcommand(name) {
            Some(sub) => {
                // Titled holdfast-run(1), as git's pages are; the synopsis
                // says what is typed: `holdfast run`.
                let full: &'static str = Box::leak(format!("holdfast-{}", sub.get_name()).into());
                let typed: &'static str = Box::leak(format!("holdfast {}", sub.get_name()).into());
                sub.clone()
                    .name(full)
                    .bin_name(typed)
                    .version(env!("CARGO_PKG_VERSION"))
            }
            None => {
                let names: Vec<_> = root
                    .get_subcommands()
                    .map(|s| s.get_name().to_owned())
                    .collect();
                eprintln!(
                    "holdfast: no command {name:?}; the commands are {}",
                    names.join(", ")
                );
                return exit::USAGE;
            }
        },
    };
    let Ok(buf) = crate::man::render(cmd, args.command.is_none()) else {
        return exit::OS_ERR;
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
        return exit::OS_ERR;
    }
    exit::OK
}
