//! Showing untrusted text safely: holder commands, host names, paths.
//!
//! What holdfast prints about a lock comes from files other processes wrote
//! and from `/proc`: a holder record's host field, another process's
//! arguments, a file name. Printed raw, an escape sequence in any of them
//! could recolour or retitle the terminal, or a newline could forge a
//! line of output. Every text printer in holdfast (error messages, `status`,
//! `list`, `break`, the waiting line) passes such text through [`escape`]
//! or [`path`]; JSON output keeps the exact text instead (JSON escapes
//! control characters itself).
//!
//! The escapes are those of Rust string literals: `\n`, `\r`, `\t`, `\\`
//! only where a backslash could be mistaken for one, `\x1b` for other C0
//! controls and DEL, `\u{9b}` for C1 controls and other characters Unicode
//! calls control or format characters that reorder or hide text (bidi
//! overrides, zero-width marks). Bytes of a path that are not UTF-8 are
//! shown as `\xff`.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;

/// Whether `c` must not reach a terminal as it is: a control character
/// (C0, DEL, C1), or an invisible formatting one that reorders or hides
/// text. [`escape`] escapes exactly these.
///
/// ```
/// assert!(holdfast::text::is_unsafe('\u{9b}'));
/// assert!(!holdfast::text::is_unsafe('é'));
/// ```
pub fn is_unsafe(c: char) -> bool {
    dangerous(c)
}

fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM/RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206f}' // word joiner, bidi isolates, invisible operators
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with control and invisible formatting characters escaped, so it
/// prints as one line that shows what is there. Text without any is
/// returned as it is (no allocation).
///
/// ```
/// use holdfast::text::escape;
/// assert_eq!(escape("sleep 100"), "sleep 100");
/// assert_eq!(escape("h\x1b[31mX\n"), "h\\x1b[31mX\\n");
/// assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
/// ```
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if dangerous(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path for text output: UTF-8 as it is, control characters escaped as
/// [`escape`] does, and bytes that are not UTF-8 as `\xNN`. Never panics,
/// whatever the path holds. (JSON output, which must be lossless, uses
/// [`path_json`] instead.)
///
/// ```
/// use std::os::unix::ffi::OsStrExt;
/// use std::path::Path;
/// let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff\n.lock"));
/// assert_eq!(holdfast::text::path(p), "/tmp/\\xff\\n.lock");
/// ```
pub fn path(p: &Path) -> Cow<'_, str> {
    os_str(p.as_os_str())
}

/// [`path`] for any OS string.
///
/// ```
/// use std::ffi::OsStr;
/// use std::os::unix::ffi::OsStrExt;
/// assert_eq!(holdfast::text::os_str(OsStr::new("plain")), "plain");
/// assert_eq!(holdfast::text::os_str(OsStr::from_bytes(b"a\x1b[31m\xfe")), "a\\x1b[31m\\xfe");
/// ```
pub fn os_str(s: &OsStr) -> Cow<'_, str> {
    if let Some(u) = s.to_str() {
        return escape(u);
    }
    let mut out = String::new();
    for chunk in s.as_encoded_bytes().utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// A path for JSON output, lossless: a UTF-8 path is its string; any
/// other is `{"bytes": [..]}`, the raw bytes of the name, with `"lossy"`
/// beside them for reading (bytes that are not UTF-8 replaced by U+FFFD).
///
/// ```
/// use std::os::unix::ffi::OsStrExt;
/// use std::path::Path;
/// use holdfast::text::{JsonPath, path_json};
/// assert_eq!(path_json(Path::new("/tmp/a.lock")), JsonPath::Utf8("/tmp/a.lock"));
/// let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
/// assert!(matches!(path_json(p), JsonPath::Bytes { bytes, .. } if bytes == b"/tmp/\xff"));
/// ```
pub fn path_json(p: &Path) -> JsonPath<'_> {
    match p.to_str() {
        Some(s) => JsonPath::Utf8(s),
        None => JsonPath::Bytes {
            bytes: p.as_os_str().as_encoded_bytes(),
            lossy: p.to_string_lossy().into_owned(),
        },
    }
}

/// A path as JSON holds it: see [`path_json`].
///
/// ```
/// use holdfast::text::{JsonPath, path_json};
/// match path_json(std::path::Path::new("/tmp/a.lock")) {
///     JsonPath::Utf8(s) => assert_eq!(s, "/tmp/a.lock"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonPath<'a> {
    /// The path is UTF-8: a JSON string.
    Utf8(&'a str),
    /// The path is not UTF-8: its bytes, and a lossy rendering to read.
    Bytes {
        /// The raw bytes of the path.
        bytes: &'a [u8],
        /// The path with bytes that are not UTF-8 replaced by U+FFFD.
        lossy: String,
    },
}

/// One argument quoted as a POSIX shell would need it: bare when it is
/// made only of characters no shell treats specially, else in single
/// quotes (`'` itself as `'\''`).
///
/// ```
/// use holdfast::text::quote_arg;
/// assert_eq!(quote_arg("sleep"), "sleep");
/// assert_eq!(quote_arg("sleep 5"), "'sleep 5'");
/// assert_eq!(quote_arg("it's"), "'it'\\''s'");
/// assert_eq!(quote_arg(""), "''");
/// ```
pub fn quote_arg(arg: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_alphanumeric() || "-_./=:,+@%^".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        return Cow::Borrowed(arg);
    }
    Cow::Owned(format!("'{}'", arg.replace('\'', "'\\''")))
}

/// A command line from its arguments, each quoted by [`quote_arg`], so
/// that `bash -c 'sleep 5'` reads back as it was typed, not as
/// `bash -c sleep 5`.
///
/// ```
/// assert_eq!(holdfast::text::shell_join(["bash", "-c", "sleep 5"]), "bash -c 'sleep 5'");
/// ```
pub fn shell_join<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote_arg(a.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever goes in, nothing that comes out is a control character,
    /// and text without any comes out unchanged.
    #[test]
    fn escape_leaves_no_control_characters() {
        let mut samples: Vec<String> = (0u32..0x110000)
            .step_by(7)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples.extend((0u8..=0x7f).map(|b| format!("{}", b as char)));
        samples.push("\u{9b}31m".into());
        for s in &samples {
            let e = escape(s);
            assert!(!e.chars().any(dangerous), "{s:?} -> {e:?}");
        }
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn paths_never_panic_and_escape_bytes() {
        use std::os::unix::ffi::OsStrExt;
        for bytes in [&b"\xff\xfe"[..], b"a\x1b]0;PWNED\x07", b"\xe2\x80", b"ok"] {
            let p = Path::new(OsStr::from_bytes(bytes));
            let shown = path(p);
            assert!(!shown.chars().any(dangerous), "{shown:?}");
            match path_json(p) {
                JsonPath::Utf8(s) => assert_eq!(s.as_bytes(), bytes),
                JsonPath::Bytes { bytes: b, .. } => assert_eq!(b, bytes),
            }
        }
    }

    #[test]
    fn quoting_reads_back() {
        assert_eq!(shell_join(["a", "b c", "", "$x"]), "a 'b c' '' '$x'");
    }
}
