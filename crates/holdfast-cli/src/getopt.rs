//! flock(1)'s option parser, as glibc `getopt_long` with optstring
//! `"+sexnoFuw:E:hV?"` parses it: short options clustered (`-nw5`), values
//! attached or separate (`-w5`, `-w 5`, `--timeout=5`, `--timeout 5`),
//! long options abbreviated to any unique prefix (`--nonb`), `--` ending
//! the options, and parsing stopping at the first argument that is not an
//! option (the `+`), so the command's own options pass through.
//!
//! This hand-written parser is the fast path of `holdfast flock` (and of a
//! symlink named `flock`): it costs a fraction of building clap's parser,
//! which matters when the whole invocation is compared with flock(1). The
//! clap definition (`cli::FlockArgs`) stays the single description of the
//! flags for `--help`, the man page and completions; a unit test checks
//! that the two name the same options.

use std::ffi::OsString;

use crate::cli::FlockArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id {
    Shared,
    Exclusive,
    Unlock,
    Nonblock,
    Timeout,
    ConflictExitCode,
    Close,
    NoFork,
    Fcntl,
    Verbose,
    Help,
    Version,
}

pub struct Opt {
    pub id: Id,
    pub long: &'static [&'static str],
    pub short: &'static [char],
    pub takes_value: bool,
}

const fn opt(
    id: Id,
    long: &'static [&'static str],
    short: &'static [char],
    takes_value: bool,
) -> Opt {
    Opt {
        id,
        long,
        short,
        takes_value,
    }
}

/// Every option `holdfast flock` knows, with all its spellings.
pub const OPTS: &[Opt] = &[
    opt(Id::Shared, &["shared"], &['s'], false),
    opt(Id::Exclusive, &["exclusive"], &['x', 'e'], false),
    opt(Id::Unlock, &["unlock"], &['u'], false),
    opt(
        Id::Nonblock,
        &["nonblock", "nb", "nonblocking"],
        &['n'],
        false,
    ),
    opt(Id::Timeout, &["timeout", "wait"], &['w'], true),
    opt(Id::ConflictExitCode, &["conflict-exit-code"], &['E'], true),
    opt(Id::Close, &["close"], &['o'], false),
    opt(Id::NoFork, &["no-fork"], &['F'], false),
    opt(Id::Fcntl, &["fcntl"], &[], false),
    opt(Id::Verbose, &["verbose"], &[], false),
    opt(Id::Help, &["help"], &['h'], false),
    opt(Id::Version, &["version"], &['V'], false),
];

/// What parsing produced.
#[derive(Debug)]
pub enum Parsed {
    Run(FlockArgs),
    Help,
    Version,
}

/// Parses `args` (without `argv[0]`); `Err` is getopt's message.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut a = FlockArgs {
        shared: false,
        exclusive: false,
        unlock: false,
        nonblock: false,
        timeout: None,
        conflict_exit_code: None,
        close: false,
        no_fork: false,
        fcntl: false,
        verbose: false,
        args: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_encoded_bytes();
        if bytes == b"--" {
            break;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            a.args.push(arg);
            break; // the first non-option ends the options ('+')
        }
        let text = arg.to_string_lossy().into_owned();
        if let Some(long) = text.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let o = find_long(name)?;
            let value = match (o.takes_value, attached) {
                (false, Some(_)) => {
                    return Err(format!(
                        "option '--{}' doesn't allow an argument",
                        o.long[0]
                    ));
                }
                (false, None) => None,
                (true, Some(v)) => Some(v),
                (true, None) => match it.next() {
                    Some(v) => Some(v.to_string_lossy().into_owned()),
                    None => return Err(format!("option '--{}' requires an argument", o.long[0])),
                },
            };
            if let Some(done) = apply(&mut a, o.id, value) {
                return Ok(done);
            }
            continue;
        }
        for (i, c) in text[1..].char_indices() {
            let Some(o) = OPTS.iter().find(|o| o.short.contains(&c)) else {
                return Err(format!("invalid option -- '{c}'"));
            };
            let value = if o.takes_value {
                let rest = &text[1 + i + c.len_utf8()..];
                let v = if rest.is_empty() {
                    match it.next() {
                        Some(v) => v.to_string_lossy().into_owned(),
                        None => return Err(format!("option requires an argument -- '{c}'")),
                    }
                } else {
                    rest.to_owned()
                };
                Some(v)
            } else {
                None
            };
            let takes_rest = value.is_some();
            if let Some(done) = apply(&mut a, o.id, value) {
                return Ok(done);
            }
            if takes_rest {
                break;
            }
        }
    }
    a.args.extend(it);
    Ok(Parsed::Run(a))
}

fn find_long(name: &str) -> Result<&'static Opt, String> {
    if let Some(o) = OPTS.iter().find(|o| o.long.contains(&name)) {
        return Ok(o);
    }
    let matches: Vec<&Opt> = OPTS
        .iter()
        .filter(|o| o.long.iter().any(|l| l.starts_with(name)))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("unrecognized option '--{name}'")),
        many => Err(format!(
            "option '--{name}' is ambiguous; possibilities: {}",
            many.iter()
                .map(|o| format!("'--{}'", o.long[0]))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

/// Records one option; `Some` for the options that end parsing at once.
fn apply(a: &mut FlockArgs, id: Id, value: Option<String>) -> Option<Parsed> {
    match id {
        Id::Shared | Id::Exclusive | Id::Unlock => {
            a.shared = id == Id::Shared;
            a.exclusive = id == Id::Exclusive;
            a.unlock = id == Id::Unlock;
        }
        Id::Nonblock => a.nonblock = true,
        Id::Timeout => a.timeout = value,
        Id::ConflictExitCode => a.conflict_exit_code = value,
        Id::Close => a.close = true,
        Id::NoFork => a.no_fork = true,
        Id::Fcntl => a.fcntl = true,
        Id::Verbose => a.verbose = true,
        Id::Help => return Some(Parsed::Help),
        Id::Version => return Some(Parsed::Version),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> FlockArgs {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().map(OsString::from).collect()) {
            Err(e) => e,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn getopt_long_semantics() {
        let a = run(&["-nw5", "-E", "3", "L", "cmd", "-x", "--verbose"]);
        assert!(a.nonblock && !a.verbose);
        assert_eq!(a.timeout.as_deref(), Some("5"));
        assert_eq!(a.conflict_exit_code.as_deref(), Some("3"));
        assert_eq!(a.args, ["L", "cmd", "-x", "--verbose"]);
        let a = run(&[
            "--timeout=1.5",
            "--nonb",
            "--conflict",
            "9",
            "--",
            "-L",
            "x",
        ]);
        assert_eq!(a.timeout.as_deref(), Some("1.5"));
        assert!(a.nonblock);
        assert_eq!(a.conflict_exit_code.as_deref(), Some("9"));
        assert_eq!(a.args, ["-L", "x"]);
        let a = run(&["-s", "-x", "-u", "-s", "-w", "-1", "L"]);
        assert!(a.shared && !a.exclusive && !a.unlock);
        assert_eq!(
            a.timeout.as_deref(),
            Some("-1"),
            "a value may start with '-'"
        );
        assert_eq!(
            run(&["-", "x"]).args,
            ["-", "x"],
            "a lone '-' is an argument"
        );
        assert!(run(&["--wait", "2", "--nb", "--nonblocking", "-e", "L"]).exclusive);
        assert!(matches!(
            parse(vec!["-nh".into(), "--bogus".into()]),
            Ok(Parsed::Help)
        ));
        assert!(matches!(parse(vec!["--vers".into()]), Ok(Parsed::Version)));
    }

    #[test]
    fn getopt_long_errors() {
        assert_eq!(err(&["-z"]), "invalid option -- 'z'");
        assert_eq!(err(&["--bogus"]), "unrecognized option '--bogus'");
        assert_eq!(err(&["-w"]), "option requires an argument -- 'w'");
        assert_eq!(
            err(&["--timeout"]),
            "option '--timeout' requires an argument"
        );
        assert_eq!(
            err(&["--shared=1"]),
            "option '--shared' doesn't allow an argument"
        );
        assert!(err(&["--n"]).starts_with("option '--n' is ambiguous"));
        assert!(err(&["--c"]).starts_with("option '--c' is ambiguous"));
    }

    /// The hand-written parser and the clap definition that generates the
    /// help, man page and completions know exactly the same options.
    #[test]
    fn same_options_as_the_clap_definition() {
        let mut cmd = crate::cmd::flock::command("flock");
        cmd.build(); // adds --help and --version
        let mut from_clap: Vec<(Vec<String>, Vec<char>)> = cmd
            .get_arguments()
            .filter(|a| !a.is_positional())
            .map(|a| {
                let mut longs: Vec<String> = a.get_long().into_iter().map(str::to_owned).collect();
                longs.extend(
                    a.get_all_aliases()
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_owned),
                );
                let mut shorts: Vec<char> = a.get_short().into_iter().collect();
                shorts.extend(a.get_all_short_aliases().unwrap_or_default());
                longs.sort();
                shorts.sort();
                (longs, shorts)
            })
            .collect();
        let mut ours: Vec<(Vec<String>, Vec<char>)> = OPTS
            .iter()
            .map(|o| {
                let mut longs: Vec<String> = o.long.iter().map(|s| s.to_string()).collect();
                let mut shorts = o.short.to_vec();
                longs.sort();
                shorts.sort();
                (longs, shorts)
            })
            .collect();
        from_clap.sort();
        ours.sort();
        assert_eq!(from_clap, ours);
    }
}
