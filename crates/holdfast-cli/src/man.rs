//! Man pages that read like man pages, from the clap definitions.
//!
//! clap_mangen renders NAME, the options and the subcommands well, but puts
//! everything after the options (examples, exit codes) into one filled
//! "EXTRA" section, where a recipe wraps mid-command. Here the long help's
//! trailing text is sorted into the sections a man page has (DESCRIPTION,
//! EXIT STATUS, EXAMPLES, SEE ALSO, in that order), its indented lines are
//! set without filling (a command stays on its line and can be copied), and
//! `holdfast(1)` gets a SYNOPSIS of every form instead of
//! `holdfast <subcommands>`.

use std::io::{self, Write};

use clap_mangen::Man;

/// Every form of the command, as the README's synopsis lists them.
pub const SYNOPSIS: &[&str] = &[
    "holdfast run [--shared] [--fifo] [--timeout DUR | --no-wait] [--close] LOCKFILE -- COMMAND [ARGS...]",
    "holdfast run --lockfile soft|link|mkdir [--compat FORMAT] [--lifetime DUR] [--no-heartbeat] LOCKFILE -- COMMAND...",
    "holdfast flock [-s|-x|-u] [-n|-w SECS] [-E N] [-o] [-F] [--fcntl] FILE|DIR COMMAND... | FILE -c STRING | FD",
    "holdfast status [--json] LOCKFILE...",
    "holdfast list [--json] DIR",
    "holdfast break [--protocol soft|link|mkdir [--compat FORMAT]] [--force] PATH",
    "holdfast once [--timeout DUR | --no-wait] [--on-leader-failure retry|propagate] KEY -- COMMAND [ARGS...]",
    "holdfast once --status KEY | holdfast once --reset KEY",
    "holdfast phase NAME --target FILE [--xattrs auto|on|off] [--strict] [--timeout DUR | --no-wait] -- COMMAND [ARGS...]",
    "holdfast phases status [--json] TARGET [NAME...] | holdfast phases reset TARGET [NAME...]",
    "holdfast completions SHELL | holdfast man [COMMAND]",
];

/// The man page of `cmd` (`root`: holdfast(1) itself, else `holdfast-X`).
pub fn render(cmd: clap::Command, root: bool) -> io::Result<Vec<u8>> {
    let cmd = if root {
        cmd.about("run commands under file locks, and name who holds a lock")
            .disable_help_subcommand(true)
    } else {
        cmd
    };
    let mut cmd = cmd;
    // Generated flags (--help, --version) exist only once built.
    cmd.build();
    let page = Man::new(cmd.clone());
    let mut w = Vec::new();
    page.render_title(&mut w)?;
    // Left-aligned, never hyphenated: commands and paths stay whole.
    writeln!(w, ".nh\n.ad l")?;
    page.render_name_section(&mut w)?;
    if root {
        synopsis(&mut w)?;
    } else {
        page.render_synopsis_section(&mut w)?;
    }
    page.render_description_section(&mut w)?;
    let extra = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|t| sections(&t.to_string()))
        .unwrap_or_default();
    for block in &extra.description {
        w.extend_from_slice(block.as_bytes());
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut w)?;
    }
    if cmd.has_subcommands() {
        page.render_subcommands_section(&mut w)?;
    }
    for (title, blocks) in [("EXIT STATUS", &extra.exit), ("EXAMPLES", &extra.examples)] {
        if !blocks.is_empty() {
            writeln!(w, ".SH \"{title}\"")?;
            for block in blocks {
                w.extend_from_slice(block.as_bytes());
            }
        }
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    let see: Vec<String> = if root {
        cmd.get_subcommands()
            .map(|s| format!("\\fBholdfast\\-{}\\fR(1)", s.get_name()))
            .chain(["\\fBflock\\fR(1)".into(), "\\fBflock\\fR(2)".into()])
            .collect()
    } else {
        vec!["\\fBholdfast\\fR(1)".into(), "\\fBflock\\fR(1)".into()]
    };
    writeln!(w, "{}", see.join(",\n"))?;
    Ok(w)
}

fn synopsis(w: &mut Vec<u8>) -> io::Result<()> {
    writeln!(w, ".SH SYNOPSIS")?;
    for form in SYNOPSIS {
        // A hanging indent: a long form wraps under its own arguments.
        writeln!(w, ".PP\n.in +4n\n.ti -4n")?;
        let mut words = form.split(' ');
        let mut line = String::new();
        // `holdfast SUBCOMMAND` in bold, then the arguments.
        if let (Some(a), Some(b)) = (words.next(), words.next()) {
            line.push_str(&format!("\\fB{a} {b}\\fR"));
        }
        for word in words {
            line.push(' ');
            line.push_str(&synopsis_word(word));
        }
        writeln!(w, "{line}\n.in")?;
    }
    Ok(())
}

/// Flags in bold, placeholders (`LOCKFILE`, `DUR`) in italics, the rest
/// (brackets, bars, literal values) as is.
fn synopsis_word(word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while !rest.is_empty() {
        let end = rest.find(['[', ']', '|']).unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(if end == 0 { 1 } else { end });
        let (body, dots) = match piece.strip_suffix("...") {
            Some(b) => (b, "..."),
            None => (piece, ""),
        };
        let styled = if body.starts_with('-') && body.len() > 1 {
            format!("\\fB{}\\fR", escape(body))
        } else if body.len() > 1 && body.chars().all(|c| c.is_ascii_uppercase() || c == '-')
            || body == "N"
        {
            format!("\\fI{}\\fR", escape(body))
        } else {
            escape(body)
        };
        out.push_str(&styled);
        out.push_str(dots);
        rest = tail;
    }
    out
}

/// The long help's trailing text, sorted into man page sections (roff).
#[derive(Default)]
struct Sections {
    description: Vec<String>,
    exit: Vec<String>,
    examples: Vec<String>,
}

fn sections(text: &str) -> Sections {
    #[derive(Clone, Copy, PartialEq)]
    enum To {
        Description,
        Exit,
        Examples,
    }
    let mut s = Sections::default();
    let mut to = To::Description;
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().collect();
        let Some(first) = lines.first() else { continue };
        let indented = |l: &&str| l.starts_with(' ');
        let heading = !indented(first)
            && first.ends_with(':')
            && first.len() < 60
            && lines[1..].iter().all(indented);
        let lower = first.to_ascii_lowercase();
        if lower.starts_with("exit codes") || lower.starts_with("exit status") {
            to = To::Exit;
        } else if lower.starts_with("examples") || lower.starts_with("recipes") {
            to = To::Examples;
        } else if !indented(first) {
            // A new paragraph of prose after examples or codes: back to
            // the description, where prose belongs.
            to = To::Description;
        }
        let mut roff = String::new();
        let mut body = &lines[..];
        if heading {
            let title = first.trim_end_matches(':');
            if to == To::Description {
                roff.push_str(&format!(".SS \"{}\"\n", escape(title)));
            } else if !matches!(lower.as_str(), "examples:" | "recipes:" | "exit codes:") {
                // "Exit codes (identical to util-linux flock(1)):"
                roff.push_str(&format!(".PP\n{}:\n", escape(title)));
            }
            body = &lines[1..];
        }
        let mut i = 0;
        while i < body.len() {
            let n = body[i..]
                .iter()
                .take_while(|l| indented(l) == indented(&body[i]))
                .count();
            let run = &body[i..i + n];
            if indented(&run[0]) {
                roff.push_str(".PP\n.RS 4\n.nf\n");
                let margin = run
                    .iter()
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                for l in run {
                    roff.push_str(&escape(&l[margin.min(l.len())..]));
                    roff.push('\n');
                }
                roff.push_str(".fi\n.RE\n");
            } else {
                roff.push_str(".PP\n");
                for l in run {
                    roff.push_str(&escape(l));
                    roff.push('\n');
                }
            }
            i += n;
        }
        match to {
            To::Description => s.description.push(roff),
            To::Exit => s.exit.push(roff),
            To::Examples => s.examples.push(roff),
        }
    }
    s
}

/// Text safe to put on a roff line: backslashes and minus signs escaped
/// (`\-` prints as the ASCII hyphen a reader copies), and no line that
/// starts with a control character.
fn escape(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with(['.', '\'']) {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synopsis_is_the_readmes() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("## The command\n\n```sh\n")
            .nth(1)
            .and_then(|r| r.split("\n```").next())
            .expect("the README's synopsis block");
        assert_eq!(block.lines().collect::<Vec<_>>(), SYNOPSIS);
    }

    #[test]
    fn words_are_styled() {
        assert_eq!(synopsis_word("[--shared]"), "[\\fB\\-\\-shared\\fR]");
        assert_eq!(synopsis_word("LOCKFILE"), "\\fILOCKFILE\\fR");
        assert_eq!(synopsis_word("[ARGS...]"), "[\\fIARGS\\fR...]");
        assert_eq!(synopsis_word("soft|link|mkdir"), "soft|link|mkdir");
        assert_eq!(synopsis_word("FILE|DIR"), "\\fIFILE\\fR|\\fIDIR\\fR");
        assert_eq!(synopsis_word("--"), "\\fB\\-\\-\\fR");
    }

    #[test]
    fn examples_are_not_filled_and_prose_is() {
        let s = sections(
            "Examples:\n  holdfast run -n a.lock -- true\n  .hidden\n\nSome prose\nthat wraps.\n\n\
             Exit codes:\n  0  ok",
        );
        assert_eq!(s.examples.len(), 1);
        assert!(
            s.examples[0].contains(".nf\nholdfast run \\-n a.lock \\-\\- true\n\\&.hidden\n.fi")
        );
        assert_eq!(s.description, [".PP\nSome prose\nthat wraps.\n"]);
        assert!(s.exit[0].contains(".nf\n0  ok\n.fi"), "{}", s.exit[0]);
    }
}
