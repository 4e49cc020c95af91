//! The holder record's format: [`HolderRecord`], its encoding and parsing,
//! and what a lock file's head holds ([`RecordContent`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::identity::Identity;
use crate::mode::Mode;

/// First line of a version-1 record.
pub(super) const MAGIC: &str = "holdfast-holder";
/// Record format version written by this build.
pub const RECORD_VERSION: u32 = 1;
/// Largest record holdfast reads; ours are a few hundred bytes.
pub(crate) const MAX_RECORD: usize = 4096;

/// The holder record holdfast writes into a lock file on exclusive
/// acquisition. See the [module docs](super) for the format.
///
/// ```
/// use holdfast::HolderRecord;
/// let rec = HolderRecord::for_this_process(holdfast::Mode::Exclusive, 7);
/// let bytes = rec.encode();
/// let back = HolderRecord::parse(&bytes).unwrap();
/// assert_eq!(back.token, 7);
/// assert_eq!(back.pid, std::process::id());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRecord {
    /// Fencing token: +1 per exclusive acquisition of this file.
    pub token: u64,
    /// Process id of the holder.
    pub pid: u32,
    /// Start time of that process in clock ticks since boot, if known.
    pub start_time: Option<u64>,
    /// Boot id of the holder's machine, if known.
    pub boot_id: Option<String>,
    /// Host name of the holder's machine.
    pub host: String,
    /// Real uid of the holder.
    pub uid: Option<u32>,
    /// Mode the lock was taken in.
    pub mode: Mode,
    /// Wall-clock time of the acquisition.
    pub since: SystemTime,
    /// Command line of the holder (arguments joined by spaces, cut at 1 KiB).
    pub command: String,
}

/// What the head of a lock file turned out to hold.
///
/// ```
/// use holdfast::{HolderRecord, Mode, RecordContent};
/// assert!(matches!(RecordContent::classify(b""), RecordContent::Empty));
/// let bytes = HolderRecord::for_this_process(Mode::Exclusive, 1).encode();
/// assert!(matches!(RecordContent::classify(&bytes), RecordContent::Record(_)));
/// assert!(matches!(RecordContent::classify(b"my data"), RecordContent::Foreign));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordContent {
    /// Nothing (or phaselock's single NUL byte): free to write a record.
    Empty,
    /// A valid holdfast record.
    Record(HolderRecord),
    /// A holdfast record that is cut short or garbled (the reason says how).
    Corrupt(String),
    /// Something that is not a holdfast record: never overwritten.
    Foreign,
}

impl HolderRecord {
    /// A record describing the calling process, holding in `mode`, with
    /// fencing token `token`, acquired now.
    ///
    /// ```
    /// use holdfast::{HolderRecord, Mode};
    /// let rec = HolderRecord::for_this_process(Mode::Shared, 3);
    /// assert_eq!(rec.pid, std::process::id());
    /// assert_eq!(rec.mode, Mode::Shared);
    /// assert_eq!(rec.token, 3);
    /// ```
    pub fn for_this_process(mode: Mode, token: u64) -> Self {
        let me = Identity::current();
        HolderRecord {
            token,
            pid: me.pid,
            start_time: me.start_time,
            boot_id: me.boot_id.clone(),
            host: me.host.clone(),
            uid: Some(me.uid),
            mode,
            since: SystemTime::now(),
            command: me.command.clone(),
        }
    }

    /// The record as bytes, ready to be written at offset 0.
    ///
    /// ```
    /// use holdfast::{HolderRecord, Mode};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let bytes = HolderRecord::for_this_process(Mode::Exclusive, 1).encode();
    /// std::fs::write(dir.path().join("record"), &bytes)?; // what a lock file's head holds
    /// assert_eq!(HolderRecord::parse(&bytes).unwrap().token, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode_head(&mut out, self.token, self.since);
        out.extend_from_slice(&encode_tail(self));
        out
    }

    /// Parses a record; `Err` says why the bytes are not a valid record
    /// (use [`RecordContent::classify`] to also tell empty and foreign
    /// content apart).
    ///
    /// ```
    /// assert!(holdfast::HolderRecord::parse(b"not a record").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// Why the bytes are not a record: empty, foreign content, or a
    /// damaged holdfast record.
    pub fn parse(bytes: &[u8]) -> Result<HolderRecord, String> {
        match RecordContent::classify(bytes) {
            RecordContent::Record(r) => Ok(r),
            RecordContent::Corrupt(why) => Err(why),
            RecordContent::Empty => Err("empty".into()),
            RecordContent::Foreign => Err("not a holdfast holder record".into()),
        }
    }
}

impl RecordContent {
    /// Classifies the head of a lock file.
    ///
    /// ```
    /// use holdfast::RecordContent;
    /// assert_eq!(RecordContent::classify(b""), RecordContent::Empty);
    /// assert_eq!(RecordContent::classify(b"\0"), RecordContent::Empty);
    /// assert_eq!(RecordContent::classify(b"4242\n"), RecordContent::Foreign);
    /// assert!(matches!(RecordContent::classify(b"holdfast-holder 1\ntoken 3\n"), RecordContent::Corrupt(_)));
    /// ```
    pub fn classify(bytes: &[u8]) -> RecordContent {
        if bytes.is_empty() || bytes == b"\0" {
            return RecordContent::Empty;
        }
        if !bytes.starts_with(MAGIC.as_bytes()) {
            return RecordContent::Foreign;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return RecordContent::Corrupt("not UTF-8".into());
        };
        match parse_v1(text) {
            Ok(r) => RecordContent::Record(r),
            Err(why) => RecordContent::Corrupt(why),
        }
    }
}

fn parse_v1(text: &str) -> Result<HolderRecord, String> {
    let mut lines = text.split('\n').peekable();
    let head = lines.next().unwrap_or_default();
    let version = head
        .strip_prefix(MAGIC)
        .map(str::trim)
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| format!("bad first line {head:?}"))?;
    if version == 0 {
        return Err("version 0".into());
    }
    let (mut token, mut pid, mut mode, mut since) = (None, None, None, None);
    let (mut start_time, mut boot_id, mut host, mut uid, mut command) =
        (None, None, None, None, None);
    let mut ended = false;
    while let Some(line) = lines.next() {
        if line == "end" {
            // "end" must be a whole line, newline included.
            ended = lines.peek().is_some();
            break;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("bad {key} value {v:?}"))
        };
        match key {
            "token" => token = Some(num(value)?),
            "pid" => {
                pid = Some(
                    u32::try_from(num(value)?).map_err(|_| format!("pid out of range: {value}"))?,
                )
            }
            "start" => start_time = Some(num(value)?),
            "boot" => boot_id = Some(unescape(value)),
            "host" => host = Some(unescape(value)),
            "uid" => uid = u32::try_from(num(value)?).ok(),
            "mode" => {
                mode = Some(match value {
                    "exclusive" => Mode::Exclusive,
                    "shared" => Mode::Shared,
                    other => return Err(format!("bad mode {other:?}")),
                })
            }
            "since" => {
                let (s, ns) = value.split_once('.').unwrap_or((value, "0"));
                let secs = num(s)?;
                let nanos: u32 = ns.parse().map_err(|_| format!("bad since {value:?}"))?;
                if nanos >= 1_000_000_000 {
                    return Err(format!("bad since {value:?}"));
                }
                since = Some(UNIX_EPOCH + Duration::new(secs, nanos));
            }
            "cmd" => command = Some(unescape(value)),
            _ => {} // a later version's field
        }
    }
    if !ended {
        return Err("cut short (no end line)".into());
    }
    Ok(HolderRecord {
        token: token.ok_or("no token")?,
        pid: pid.ok_or("no pid")?,
        start_time,
        boot_id,
        host: host.unwrap_or_default(),
        uid,
        mode: mode.ok_or("no mode")?,
        since: since.ok_or("no since")?,
        command: command.unwrap_or_default(),
    })
}

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let rest: String = it.by_ref().take_while(|&c| c != '}').collect();
                let code = u32::from_str_radix(rest.trim_start_matches('{'), 16)
                    .ok()
                    .and_then(char::from_u32);
                out.push(code.unwrap_or('\u{fffd}'));
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The lines that change with every acquisition: magic, token, since.
/// Hand-formatted: this runs on every exclusive acquisition, and
/// `core::fmt` machinery cost about as much as a system call there.
pub(super) fn encode_head(out: &mut Vec<u8>, token: u64, since: SystemTime) {
    let since = since.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b' ');
    push_decimal(out, u64::from(RECORD_VERSION), 1);
    out.extend_from_slice(b"\ntoken ");
    push_decimal(out, token, 1);
    out.extend_from_slice(b"\nsince ");
    push_decimal(out, since.as_secs(), 1);
    out.push(b'.');
    push_decimal(out, u64::from(since.subsec_nanos()), 9);
    out.push(b'\n');
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width.max(1) {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[i..]);
}

/// The lines that stay the same for one holder process, `end` included.
pub(super) fn encode_tail(r: &HolderRecord) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256);
    let _ = writeln!(s, "pid {}", r.pid);
    if let Some(t) = r.start_time {
        let _ = writeln!(s, "start {t}");
    }
    if let Some(b) = &r.boot_id {
        let _ = writeln!(s, "boot {}", escape(b));
    }
    let _ = writeln!(s, "host {}", escape(&r.host));
    if let Some(u) = r.uid {
        let _ = writeln!(s, "uid {u}");
    }
    let _ = writeln!(s, "mode {}", r.mode);
    let _ = writeln!(s, "cmd {}", escape(&r.command));
    s.push_str("end\n");
    s.into_bytes()
}
