//! The common forms of `holdfast run`, `holdfast once` and `holdfast
//! phase`, parsed by hand into the very structs clap would build
//! (`cli::RunArgs`, `cli::OnceArgs`, `cli::PhaseArgs`).
//!
//! Building clap's parser for all subcommands costs about 0.5 M
//! instructions and 50 page faults, more than the rest of a `holdfast run
//! LOCK -- true` together (BENCHMARKS.md, CLI section). This parser takes
//! only the forms scripts write,
//!
//! ```text
//! holdfast run   [FLAGS] LOCKFILE -- COMMAND [ARGS...]
//! holdfast once  [FLAGS] KEY -- COMMAND [ARGS...]
//! holdfast phase [FLAGS] NAME --target FILE -- COMMAND [ARGS...]   (flags and NAME in any order)
//! ```
//!
//! with the flags that are plain switches (each at most once) and
//! `--timeout`/`-w`/`--target`/`-t` with a separate or `=`-attached
//! value; anything else (help, other flags, clustered short flags,
//! conflicting or repeated flags, values starting with `-`, empty or
//! non-UTF-8 values where clap wants text, a missing command) returns
//! `None` and goes to clap, which then gives its usual result, help or
//! error. A unit test checks that every argument list this parser accepts
//! parses to the same struct through clap.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::cli::{
    CloseArgs, Command, LeaderFailureArg, MarkerArgs, OnceArgs, PhaseArgs, RunArgs, ShowArgs,
    WaitArgs, XattrsArg,
};
use crate::remote::RemoteArgs;

/// The switches and valued options of the fast forms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Shared,
    NoWait,
    Close,
    Fcntl,
    Fifo,
    Verbose,
    Quiet,
    CreateParents,
    Strict,
    Timeout,
    Target,
}

/// Which subcommand: the flags each takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Run,
    Once,
    Phase,
}

impl Flag {
    fn takes_value(self) -> bool {
        matches!(self, Flag::Timeout | Flag::Target)
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The flag spelled `arg` (without its value), if `sub` takes it here.
    fn parse(sub: Sub, arg: &str) -> Option<Flag> {
        let f = match arg {
            "--shared" | "-s" if sub == Sub::Run => Flag::Shared,
            "--no-wait" | "-n" => Flag::NoWait,
            "--close" | "-o" => Flag::Close,
            "--fcntl" if sub == Sub::Run => Flag::Fcntl,
            "--fifo" if sub == Sub::Run => Flag::Fifo,
            "--verbose" | "-v" => Flag::Verbose,
            "--quiet" | "-q" => Flag::Quiet,
            "--create-parents" => Flag::CreateParents,
            "--strict" if sub == Sub::Phase => Flag::Strict,
            "--timeout" | "-w" => Flag::Timeout,
            "--target" | "-t" if sub == Sub::Phase => Flag::Target,
            _ => return None,
        };
        Some(f)
    }
}

/// What the flags before `--` said.
struct Parsed {
    seen: u16,
    timeout: Option<String>,
    target: Option<PathBuf>,
    positional: Option<OsString>,
    command: Vec<OsString>,
}

impl Parsed {
    fn has(&self, f: Flag) -> bool {
        self.seen & f.bit() != 0
    }
}

/// A text value clap would take as given: UTF-8, not empty, not starting
/// with `-` (clap reads some of those as flags, or wants `=`).
fn text(v: &OsStr) -> Option<String> {
    let s = v.to_str()?;
    (!s.is_empty() && !s.starts_with('-')).then(|| s.to_owned())
}

fn parse(sub: Sub, args: &[OsString]) -> Option<Parsed> {
    let mut p = Parsed {
        seen: 0,
        timeout: None,
        target: None,
        positional: None,
        command: Vec::new(),
    };
    let mut i = 0;
    loop {
        let arg = args.get(i)?;
        i += 1;
        if arg == "--" {
            break;
        }
        let bytes = arg.as_encoded_bytes();
        if bytes.first() != Some(&b'-') {
            // The one positional (LOCKFILE, KEY, NAME); clap rejects an
            // empty path, and NAME is text.
            if p.positional.is_some() || bytes.is_empty() {
                return None;
            }
            if sub == Sub::Phase {
                text(arg)?;
            }
            p.positional = Some(arg.clone());
            continue;
        }
        let arg = arg.to_str()?;
        let (name, attached) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        let flag = Flag::parse(sub, name)?;
        if p.seen & flag.bit() != 0 {
            return None;
        }
        p.seen |= flag.bit();
        if !flag.takes_value() {
            if attached.is_some() {
                return None;
            }
            continue;
        }
        let value = match attached {
            Some(v) => text(OsStr::new(v))?,
            None => {
                let v = text(args.get(i)?)?;
                i += 1;
                v
            }
        };
        match flag {
            Flag::Timeout => p.timeout = Some(value),
            _ => p.target = Some(PathBuf::from(value)),
        }
    }
    // clap's conflicts: --timeout/--no-wait, --verbose/--quiet.
    if (p.has(Flag::Timeout) && p.has(Flag::NoWait)) || (p.has(Flag::Verbose) && p.has(Flag::Quiet))
    {
        return None;
    }
    p.command = args[i..].to_vec();
    if p.command.is_empty() || p.positional.is_none() {
        return None;
    }
    if sub == Sub::Phase && p.target.is_none() {
        return None;
    }
    Some(p)
}

fn wait(p: &mut Parsed) -> WaitArgs {
    WaitArgs {
        timeout: p.timeout.take(),
        no_wait: p.has(Flag::NoWait),
    }
}

fn show(p: &Parsed) -> ShowArgs {
    ShowArgs {
        verbose: p.has(Flag::Verbose),
        quiet: p.has(Flag::Quiet),
    }
}

fn close(p: &Parsed) -> CloseArgs {
    CloseArgs {
        close: p.has(Flag::Close),
    }
}

/// The subcommand `argv` (program name first) asks for, if it is one of
/// the fast forms; `None`: let clap parse it.
pub fn command(argv: &[OsString]) -> Option<Command> {
    let sub = match argv.get(1)?.to_str()? {
        "run" => Sub::Run,
        "once" => Sub::Once,
        "phase" => Sub::Phase,
        _ => return None,
    };
    let mut p = parse(sub, &argv[2..])?;
    let positional = p.positional.take()?;
    let command = std::mem::take(&mut p.command);
    Some(match sub {
        Sub::Run => Command::Run(RunArgs {
            shared: p.has(Flag::Shared),
            wait: wait(&mut p),
            close: close(&p),
            fcntl: p.has(Flag::Fcntl),
            fifo: p.has(Flag::Fifo),
            protocol: None,
            compat: None,
            lifetime: None,
            heartbeat: false,
            no_heartbeat: false,
            show: show(&p),
            create_parents: p.has(Flag::CreateParents),
            remote: RemoteArgs::default(),
            lockfile: PathBuf::from(positional),
            command,
        }),
        Sub::Once => Command::Once(OnceArgs {
            wait: wait(&mut p),
            on_leader_failure: LeaderFailureArg::Retry,
            status: false,
            reset: false,
            close: close(&p),
            show: show(&p),
            create_parents: p.has(Flag::CreateParents),
            remote: RemoteArgs::default(),
            key: PathBuf::from(positional),
            command,
        }),
        Sub::Phase => Command::Phase(PhaseArgs {
            name: positional.into_string().ok()?,
            target: p.target.take()?,
            wait: wait(&mut p),
            markers: MarkerArgs {
                xattrs: XattrsArg::Auto,
                namespace: "user.phaselock".to_owned(),
            },
            strict: p.has(Flag::Strict),
            attr_name: None,
            attr_value: None,
            close: close(&p),
            show: show(&p),
            create_parents: p.has(Flag::CreateParents),
            remote: RemoteArgs::default(),
            command,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    use clap::Parser;

    use crate::cli::Cli;

    /// Through clap, as `crate::run` parses what this parser declines.
    fn clap(argv: &[OsString]) -> Option<String> {
        Cli::try_parse_from(argv)
            .ok()
            .map(|c| format!("{:?}", c.command))
    }

    fn quick(argv: &[OsString]) -> Option<String> {
        super::command(argv).map(|c| format!("{c:?}"))
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("holdfast")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// Every argument list built from these pieces: the fast parser either
    /// declines or agrees with clap.
    #[test]
    fn agrees_with_clap_on_everything_it_takes() {
        let flags: &[&[&str]] = &[
            &["--shared"],
            &["-s"],
            &["--no-wait"],
            &["-n"],
            &["--close"],
            &["-o"],
            &["--fcntl"],
            &["--fifo"],
            &["--verbose"],
            &["-v"],
            &["--quiet"],
            &["-q"],
            &["--create-parents"],
            &["--strict"],
            &["--timeout", "5s"],
            &["--timeout=2m"],
            &["-w", "0"],
            &["-w", "-1"],
            &["--timeout="],
            &["-t", "/tmp/app.db"],
            &["--target", "t.db"],
            &["--target=t.db"],
            &["--shared=yes"],
            &["-sn"],
            &["--lockfile", "soft"],
            &["--backend", "etcd://x"],
            &["--help"],
            &["--status"],
            &["x.lock"],
            &[""],
            &["--"],
        ];
        let mut checked = 0;
        let mut taken = 0;
        for sub in ["run", "once", "phase"] {
            for a in flags {
                for b in flags {
                    for tail in [&["--", "true", "x"][..], &["--"], &[], &["true"]] {
                        for lead in [&["NAME"][..], &[]] {
                            let mut words = vec![sub];
                            words.extend_from_slice(lead);
                            words.extend_from_slice(a);
                            words.extend_from_slice(b);
                            if lead.is_empty() {
                                words.push("key.lock");
                            }
                            words.extend_from_slice(tail);
                            let v = argv(&words);
                            checked += 1;
                            if let Some(q) = quick(&v) {
                                taken += 1;
                                assert_eq!(Some(q), clap(&v), "{words:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 500, "the fast parser took {taken} of {checked}");
    }

    #[test]
    fn takes_the_common_forms() {
        for words in [
            &["run", "app.lock", "--", "true"][..],
            &["run", "-s", "-w", "5s", "--close", "app.lock", "--", "true"],
            &["once", "/var/lib/done", "--", "sh", "-c", "x -- y"],
            &["phase", "migrate-v1", "--target", "app.db", "--", "./m"],
            &[
                "phase",
                "--target",
                "app.db",
                "migrate-v1",
                "-q",
                "--",
                "./m",
                "--",
            ],
        ] {
            let v = argv(words);
            assert!(quick(&v).is_some(), "{words:?}");
            assert_eq!(quick(&v), clap(&v), "{words:?}");
        }
    }

    #[test]
    fn declines_what_only_clap_handles() {
        for words in [
            &["run", "--help"][..],
            &["run", "app.lock", "--"],
            &["run", "app.lock", "true"],
            &["run", "-s", "-s", "app.lock", "--", "true"],
            &["run", "-n", "-w", "1", "app.lock", "--", "true"],
            &["run", "-v", "-q", "app.lock", "--", "true"],
            &["once", "--status", "k"],
            &["phase", "name", "--", "true"],
            &["phase", "--strict", "--target", "t", "--", "true"],
            &["status", "x"],
        ] {
            assert_eq!(quick(&argv(words)), None, "{words:?}");
        }
        let bad = vec![
            OsString::from("holdfast"),
            "phase".into(),
            OsString::from_vec(vec![0xff]),
            "-t".into(),
            "t".into(),
            "--".into(),
            "true".into(),
        ];
        assert_eq!(quick(&bad), None);
    }
}
