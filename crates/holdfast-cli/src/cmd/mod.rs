//! One module per subcommand: validated flags in, library calls, exit code
//! out. A new subcommand is one more module here plus its `*Args` in
//! `cli.rs` and one arm in `main`.

pub mod break_lock;
pub mod docs;
pub mod flock;
pub mod list;
pub mod once;
pub mod phase;
pub mod run;
pub mod status;

use std::path::Path;

use holdfast::Wait;
use holdfast::lockfile::{Compat, LockFileOptions, Protocol};

use crate::cli::{CompatArg, ProtocolArg};
use crate::duration;
use crate::waiting::Show;

impl crate::cli::WaitArgs {
    /// `--no-wait` / `--timeout DURATION` as a library [`Wait`];
    /// `--timeout 0` means `--no-wait`.
    pub fn wait(&self) -> Result<Wait, String> {
        if self.no_wait {
            return Ok(Wait::NoWait);
        }
        match self.timeout.as_deref() {
            None => Ok(Wait::Forever),
            Some(t) => match duration::parse(t) {
                Ok(d) if d.is_zero() => Ok(Wait::NoWait),
                Ok(d) => Ok(Wait::Timeout(d)),
                Err(e) => Err(format!("--timeout: {e}")),
            },
        }
    }
}

impl crate::cli::ShowArgs {
    /// `--quiet` / `--verbose` as a waiting-line policy.
    pub fn show(&self) -> Show {
        if self.quiet {
            Show::Never
        } else if self.verbose {
            Show::Always
        } else {
            Show::OnTerminal
        }
    }
}

/// `--create-parents`: creates the directories above `path`, or says why
/// it could not.
pub fn create_parents(path: &Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", holdfast::text::path(dir))),
        None => Ok(()),
    }
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Soft => Protocol::Soft,
            ProtocolArg::Link => Protocol::Link,
            ProtocolArg::Mkdir => Protocol::Mkdir,
        }
    }
}

impl From<CompatArg> for Compat {
    fn from(c: CompatArg) -> Compat {
        match c {
            CompatArg::Holdfast => Compat::Holdfast,
            CompatArg::Flufl => Compat::Flufl,
            CompatArg::Lockfile => Compat::Lockfile,
            CompatArg::Filelock => Compat::Filelock,
        }
    }
}

/// The `--compat` formats each protocol has (link's `holdfast` format is
/// flufl.lock's), as the library's table.
const COMPATS: [(ProtocolArg, &[CompatArg]); 3] = [
    (
        ProtocolArg::Soft,
        &[CompatArg::Holdfast, CompatArg::Filelock],
    ),
    (
        ProtocolArg::Link,
        &[CompatArg::Holdfast, CompatArg::Flufl, CompatArg::Lockfile],
    ),
    (
        ProtocolArg::Mkdir,
        &[CompatArg::Holdfast, CompatArg::Lockfile],
    ),
];

/// Refuses a `--compat` the protocol (given as `flag`, `--lockfile` or
/// `--protocol`) has no format for, naming the ones it has.
pub fn check_compat(
    flag: &str,
    protocol: ProtocolArg,
    compat: Option<CompatArg>,
) -> Result<(), String> {
    use clap::ValueEnum;
    let name = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        v().map(|p| p.get_name().to_owned()).unwrap_or_default()
    };
    let Some(c) = compat else { return Ok(()) };
    let table: Vec<String> = COMPATS
        .iter()
        .map(|(p, cs)| {
            let cs: Vec<String> = cs.iter().map(|c| name(&|| c.to_possible_value())).collect();
            format!(
                "{} takes {}",
                name(&|| p.to_possible_value()),
                cs.join(" or ")
            )
        })
        .collect();
    match COMPATS.iter().find(|(p, _)| *p == protocol) {
        Some((_, cs)) if !cs.contains(&c) => Err(format!(
            "{flag} {} does not take --compat {} ({})",
            name(&|| protocol.to_possible_value()),
            name(&|| c.to_possible_value()),
            table.join("; ")
        )),
        _ => Ok(()),
    }
}

/// Options for a lock-file lock of `protocol`, in `compat`'s format.
pub fn lockfile_options(protocol: ProtocolArg, compat: Option<CompatArg>) -> LockFileOptions {
    let mut opts = LockFileOptions::new(protocol.into());
    if let Some(c) = compat {
        opts.compat(c.into());
    }
    opts
}
#[cfg(test)]
mod compat_tests {
    use super::*;
    use clap::ValueEnum;

    /// The CLI's table of formats says yes exactly where the library does.
    #[test]
    fn the_compat_table_matches_the_library() {
        let dir = std::env::temp_dir();
        for &p in ProtocolArg::value_variants() {
            for &c in CompatArg::value_variants() {
                let cli = check_compat("--lockfile", p, Some(c)).is_ok();
                let lib = lockfile_options(p, Some(c))
                    .open(dir.join("holdfast-compat-table-probe.lock"))
                    .is_ok();
                assert_eq!(cli, lib, "{p:?} with {c:?}");
            }
        }
    }
}
