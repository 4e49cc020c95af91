//! Hints for the mistakes newcomers make most, in the CLI's own words.

use std::ffi::{OsStr, OsString};

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::cli::Cli;

/// `holdfast run a.lock true` (flock(1)'s habit, without `--`): clap only
/// says "unexpected argument"; this says to put `--` before the command,
/// and shows the corrected line. `None` when that is not the mistake: the
/// corrected line must parse.
pub fn missing_separator(argv: &[OsString], e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::UnknownArgument || argv.iter().any(|a| a == "--") {
        return None;
    }
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if bad.starts_with('-') {
        return None;
    }
    let sub = argv.get(1)?.to_str()?;
    if !matches!(sub, "run" | "once" | "phase") {
        return None;
    }
    (2..argv.len())
        .filter(|&i| argv[i] == OsStr::new(bad))
        .find_map(|i| {
            let mut fixed = argv.to_vec();
            fixed.insert(i, "--".into());
            Cli::try_parse_from(&fixed).ok()?;
            let line: Vec<String> = std::iter::once("holdfast".to_owned())
                .chain(fixed[1..].iter().map(|a| shell_word(a)))
                .collect();
            Some(format!(
                "put `--` before the command: {}\n(everything after `--` is the command and \
                 its arguments, passed on untouched)",
                line.join(" ")
            ))
        })
}

/// `a` as a shell would need it typed: bare when it is plain, else in
/// single quotes.
fn shell_word(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(args: &[&str]) -> Option<String> {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let e = Cli::try_parse_from(&argv).expect_err("a parse error");
        missing_separator(&argv, &e)
    }

    #[test]
    fn says_put_the_separator_before_the_command() {
        let h = hint(&["holdfast", "run", "a.lock", "true"]).unwrap();
        assert!(
            h.starts_with("put `--` before the command: holdfast run a.lock -- true\n"),
            "{h}"
        );
        let h = hint(&["holdfast", "run", "true", "true", "--x"]).unwrap();
        assert!(h.contains("holdfast run true -- true --x"), "{h}");
        let h = hint(&[
            "holdfast", "run", "-w", "5", "a.lock", "sh", "-c", "echo hi",
        ])
        .unwrap();
        assert!(
            h.contains("holdfast run -w 5 a.lock -- sh -c 'echo hi'"),
            "{h}"
        );
        let h = hint(&["holdfast", "once", "k", "touch", "x"]).unwrap();
        assert!(h.contains("holdfast once k -- touch x"), "{h}");
        let h = hint(&["holdfast", "phase", "p", "--target", "db", "./it's"]).unwrap();
        assert!(
            h.contains(r"holdfast phase p --target db -- './it'\''s'"),
            "{h}"
        );
    }

    #[test]
    fn stays_quiet_for_other_mistakes() {
        assert_eq!(
            hint(&["holdfast", "run", "--bogus", "a.lock", "--", "true"]),
            None
        );
        assert_eq!(hint(&["holdfast", "status", "a", "--nope"]), None);
        assert_eq!(hint(&["holdfast", "run", "a.lock"]), None);
    }
}
