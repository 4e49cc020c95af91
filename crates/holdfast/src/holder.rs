//! Who holds a lock: the holder record, the kernel's view, and how both are
//! turned into one description.
//!
//! # The holder record
//!
//! On every exclusive acquisition holdfast writes a small text record at the
//! start of the lock file (only if the file is empty, holds phaselock's one
//! NUL byte, or already holds a holdfast record: foreign content, such as a
//! data file that doubles as its own lock, is never overwritten):
//!
//! ```text
//! holdfast-holder 1
//! token 17
//! since 1764331384.123456789
//! pid 4242
//! start 123456
//! boot 0b1c9a2e-6d0f-4f5e-9a57-3c2d7e1f0a11
//! host web-1
//! uid 1000
//! mode exclusive
//! cmd python3 migrate.py
//! end
//! ```
//!
//! `start` is the process start time in clock ticks since boot
//! (`/proc/PID/stat` field 22): with `boot` it tells a live holder from a
//! recycled pid. `token` is the **fencing token**: it grows by one with every
//! exclusive acquisition of the file and survives restarts because it lives in
//! the file. Unknown keys are ignored, so later versions may add lines. A
//! record without its `end` line was cut short and is treated as corrupt.
//!
//! The record is a diagnostic, never a source of truth for exclusion: the
//! kernel lock is. A record is only shown as the holder when the kernel
//! reports a lock on the file taken by the same pid, whose start time still
//! matches. A corrupt or foreign record means "holder unknown", and the
//! kernel's view (pid and command line from `/proc`) is reported instead.
//! Other programs that lock the same file (util-linux `flock`, Python
//! `filelock`, `phaselock`, `portalocker`) ignore its content.

use std::fmt;
use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mode::Mode;
use crate::sys;

/// First line of a version-1 record.
const MAGIC: &str = "holdfast-holder";
/// Record format version written by this build.
pub const RECORD_VERSION: u32 = 1;
/// Largest record holdfast reads; ours are a few hundred bytes.
pub(crate) const MAX_RECORD: usize = 4096;
/// Longest command line stored in a record.
const MAX_CMD: usize = 1024;

/// The holder record holdfast writes into a lock file on exclusive
/// acquisition. See the [module docs](self) for the format.
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

/// The calling process as a holder record describes it.
#[derive(Debug)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub boot_id: Option<String>,
    pub host: String,
    pub uid: u32,
    pub command: String,
}

static IDENTITY: Mutex<Option<std::sync::Arc<Identity>>> = Mutex::new(None);

impl Identity {
    /// This process's identity, computed once per process (a forked child
    /// recomputes it because its pid differs).
    pub(crate) fn current() -> std::sync::Arc<Identity> {
        let pid = sys::current_pid();
        let mut slot = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = slot.as_ref()
            && id.pid == pid
        {
            return id.clone();
        }
        // Our own arguments are in memory already: no read of
        // /proc/self/cmdline (the same words, empty ones left out alike).
        let mut command = own_command_line()
            .or_else(|| sys::process_cmdline(pid))
            .unwrap_or_default();
        truncate_utf8(&mut command, MAX_CMD);
        let id = std::sync::Arc::new(Identity {
            pid,
            start_time: sys::process_start_time(pid),
            boot_id: sys::boot_id(),
            host: hostname_override().unwrap_or_else(sys::hostname),
            uid: sys::current_uid(),
            command,
        });
        *slot = Some(id.clone());
        id
    }
}

/// This process's arguments as `/proc/self/cmdline` would give them
/// (quoted, joined by spaces, empty ones left out); `None` where the runtime
/// does not know them.
fn own_command_line() -> Option<String> {
    let args: Vec<String> = std::env::args_os()
        .filter(|a| !a.is_empty())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    (!args.is_empty()).then(|| crate::text::shell_join(&args))
}

/// `HOLDFAST_HOSTNAME` overrides the host name written into records, for
/// tests that simulate several hosts and for containers whose host name is
/// meaningless.
pub(crate) fn hostname_override() -> Option<String> {
    std::env::var("HOLDFAST_HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// The lines that change with every acquisition: magic, token, since.
/// Hand-formatted: this runs on every exclusive acquisition, and
/// `core::fmt` machinery cost about as much as a system call there.
fn encode_head(out: &mut Vec<u8>, token: u64, since: SystemTime) {
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
fn encode_tail(r: &HolderRecord) -> Vec<u8> {
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

/// What a [`crate::Lock`] keeps to write records cheaply: the unchanging
/// part of this process's record, built once (and again after a fork).
#[derive(Debug)]
pub(crate) struct RecordTemplate {
    pid: u32,
    tail: Vec<u8>,
    buf: Vec<u8>,
    /// The file the mapping was made for (kept open, so no other file can
    /// take its place at the same address), the mapping of its head
    /// (`None` where mapping is not possible, or after a fault), and how
    /// many times it faulted (an empty file, a peer that truncates it).
    #[cfg(target_os = "linux")]
    mapped: Option<Mapped>,
}

impl RecordTemplate {
    fn current() -> RecordTemplate {
        let rec = HolderRecord::for_this_process(Mode::Exclusive, 0);
        RecordTemplate {
            pid: rec.pid,
            tail: encode_tail(&rec),
            buf: Vec::with_capacity(MAX_RECORD),
            #[cfg(target_os = "linux")]
            mapped: None,
        }
    }

    /// As [`write`](Self::write), for a file a `Lock` keeps across
    /// acquisitions: on Linux the record is read and patched through a
    /// shared mapping of the file's head, without a system call, whenever
    /// the file holds a complete holdfast record of the same length as the
    /// new one (the same process acquiring again). Everything else (a new
    /// or empty file, another holder's longer or shorter record, foreign
    /// content, a mapping that faulted because a peer truncated the file)
    /// goes through [`write`](Self::write)'s `pread` + `pwrite`.
    pub(crate) fn write_shared(
        slot: &mut Option<RecordTemplate>,
        file: &std::sync::Arc<File>,
    ) -> io::Result<Option<u64>> {
        #[cfg(target_os = "linux")]
        if let Some(token) = Self::write_mapped(slot, file) {
            return Ok(Some(token));
        }
        Self::write(slot, file)
    }

    /// The mapped fast path; `None`: take the `pread` + `pwrite` road.
    #[cfg(target_os = "linux")]
    fn write_mapped(slot: &mut Option<RecordTemplate>, file: &std::sync::Arc<File>) -> Option<u64> {
        if slot.as_ref().is_none_or(|t| t.pid != sys::current_pid()) {
            *slot = Some(RecordTemplate::current());
        }
        let t = slot.as_mut()?;
        if !matches!(&t.mapped, Some(m) if std::sync::Arc::ptr_eq(&m.file, file)) {
            // The first acquisition of a file takes the pread/pwrite road:
            // a process that locks once (the CLI) never pays for a mapping,
            // and the file holds our record when it is mapped.
            t.mapped = None; // unmap the old file's head first
            t.mapped = Some(Mapped {
                file: file.clone(),
                map: None,
                faults: 0,
            });
            return None;
        }
        let m = t.mapped.as_mut()?;
        if m.map.is_none() {
            // Not mapped yet, or faulted before (the file was cut): the
            // pread/pwrite road has written a record since, so map it.
            if m.faults > Mapped::MAX_FAULTS {
                return None;
            }
            m.map = sys::mapped::HeadMap::new(file);
            if m.map.is_none() {
                m.faults = u8::MAX; // not mappable here: never again
                return None;
            }
        }
        let map = m.map.as_mut()?;
        let mut head = [0u8; sys::mapped::LEN];
        let Some(n) = map.read(&mut head) else {
            // Empty or truncated under us: this time pread/pwrite.
            m.map = None;
            m.faults = m.faults.saturating_add(1);
            return None;
        };
        if n >= sys::mapped::LEN {
            return None; // possibly longer than 4 KiB: the careful road decides
        }
        let token = own_record_token(&head[..n])?.saturating_add(1);
        t.buf.clear();
        encode_head(&mut t.buf, token, SystemTime::now());
        t.buf.extend_from_slice(&t.tail);
        // Same length: the bytes are inside the file (it is at least `n`
        // long), so the patch reaches it; and nothing is left to cut.
        if t.buf.len() != n {
            return None;
        }
        if !map.write(&t.buf) {
            m.map = None;
            m.faults = m.faults.saturating_add(1);
            return None;
        }
        Some(token)
    }

    /// Writes a fresh record after an exclusive acquisition, returning the
    /// new fencing token, or `None` if the file holds foreign content that
    /// must not be overwritten.
    pub(crate) fn write(slot: &mut Option<RecordTemplate>, file: &File) -> io::Result<Option<u64>> {
        if slot.as_ref().is_none_or(|t| t.pid != sys::current_pid()) {
            *slot = Some(RecordTemplate::current());
        }
        let t = slot.as_mut().expect("just set");
        // Read into a stack buffer: no allocation, no zeroing of a heap one.
        let mut head = [0u8; MAX_RECORD];
        let n = sys::read_head(file, &mut head)?;
        let token = match next_token(&head[..n], n == MAX_RECORD) {
            Some(token) => token,
            None => return Ok(None),
        };
        t.buf.clear();
        encode_head(&mut t.buf, token, SystemTime::now());
        t.buf.extend_from_slice(&t.tail);
        sys::write_head(file, &t.buf, n)?;
        Ok(Some(token))
    }
}

/// A [`RecordTemplate`]'s mapping of its lock file's head.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Mapped {
    file: std::sync::Arc<File>,
    map: Option<sys::mapped::HeadMap>,
    faults: u8,
}

#[cfg(target_os = "linux")]
impl Mapped {
    /// A file that keeps being truncated (a filelock peer opens it with
    /// `O_TRUNC` at every attempt) stops being mapped after this many
    /// faults: each costs a signal and a new mapping.
    const MAX_FAULTS: u8 = 8;
}

/// The token the next exclusive holder gets, from the current head of the
/// file; `None` for foreign content (never overwritten).
fn next_token(head: &[u8], overflow: bool) -> Option<u64> {
    // Fast path for our own complete records: only the token matters here.
    if !overflow && let Some(t) = own_record_token(head) {
        return Some(t.saturating_add(1));
    }
    let content = if overflow {
        if head.starts_with(MAGIC.as_bytes()) {
            RecordContent::Corrupt("larger than 4 KiB".into())
        } else {
            RecordContent::Foreign
        }
    } else {
        RecordContent::classify(head)
    };
    match content {
        RecordContent::Empty => Some(1),
        RecordContent::Record(r) => Some(r.token.saturating_add(1)),
        // We cannot read the old token. Jump to the wall clock in
        // microseconds: larger than any count reached by +1 steps that each
        // took more than a microsecond, so tokens never go backwards.
        RecordContent::Corrupt(_) => Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(1),
        ),
        RecordContent::Foreign => None,
    }
}

/// The token of a complete record in the form this version writes (token
/// on the second line, `end` last); `None` for anything else.
fn own_record_token(head: &[u8]) -> Option<u64> {
    const PREFIX: &[u8] = b"holdfast-holder 1\ntoken ";
    let rest = head.strip_prefix(PREFIX)?;
    if !head.ends_with(b"\nend\n") {
        return None;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || rest.get(digits) != Some(&b'\n') {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Reads and classifies the record at the head of an open lock file.
pub(crate) fn read_record(file: &File) -> io::Result<(RecordContent, usize)> {
    let mut buf = [0u8; MAX_RECORD];
    let n = sys::read_head(file, &mut buf)?;
    let content = if n == MAX_RECORD {
        if buf.starts_with(MAGIC.as_bytes()) {
            RecordContent::Corrupt("larger than 4 KiB".into())
        } else {
            RecordContent::Foreign
        }
    } else {
        RecordContent::classify(&buf[..n])
    };
    Ok((content, n))
}

/// One holder of a lock, as far as holdfast can tell.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
/// let guard = lock.lock()?;
/// let holders = lock.holders();
/// let me = holders.first().unwrap();
/// assert_eq!(me.pid, Some(std::process::id()));
/// assert_eq!(me.token, guard.token());
/// assert!(me.this_process);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Holder {
    /// Process id (in the holder's pid namespace).
    pub pid: Option<u32>,
    /// Command line of the holder.
    pub command: Option<String>,
    /// Host the holder runs on.
    pub host: Option<String>,
    /// Real uid of the holder.
    pub uid: Option<u32>,
    /// When it acquired the lock (known only from a holder record).
    pub since: Option<SystemTime>,
    /// The mode it holds.
    pub mode: Option<Mode>,
    /// The fencing token of its acquisition (from a holder record).
    pub token: Option<u64>,
    /// Whether the holder is the calling process itself.
    pub this_process: bool,
    /// Where the information comes from.
    pub source: HolderSource,
}

/// Where a [`Holder`] description comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HolderSource {
    /// A holder record confirmed by the kernel (same pid, same start time).
    #[default]
    Record,
    /// The kernel's lock table and `/proc` only (another program's lock).
    Kernel,
    /// A holder record the kernel could not confirm (no `/proc/locks`).
    Unverified,
}

impl Holder {
    fn from_record(r: &HolderRecord, source: HolderSource) -> Holder {
        Holder {
            pid: Some(r.pid),
            command: Some(r.command.clone()).filter(|c| !c.is_empty()),
            host: Some(r.host.clone()).filter(|h| !h.is_empty()),
            uid: r.uid,
            since: Some(r.since),
            mode: Some(r.mode),
            token: Some(r.token),
            this_process: r.pid == sys::current_pid(),
            source,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) if self.this_process => write!(f, "this process (pid {pid})")?,
            Some(pid) => write!(f, "pid {pid}")?,
            None => f.write_str("an unknown process")?,
        }
        if let Some(cmd) = &self.command
            && !self.this_process
        {
            write!(f, " ({})", crate::text::escape(cmd))?;
        }
        if let Some(host) = &self.host {
            write!(f, " on {}", crate::text::escape(host))?;
        }
        if let Some(since) = self.since {
            let age = SystemTime::now().duration_since(since).unwrap_or_default();
            write!(
                f,
                " since {} ({})",
                fmt_utc_time(since),
                match age.as_secs() {
                    0 => "0s".to_owned(),
                    s => fmt_duration(Duration::from_secs(s)),
                }
            )?;
        }
        Ok(())
    }
}

/// The holders of a lock: zero (unknown), one (exclusive), or several
/// (shared). Its `Display` is the "held by ..." part of error messages.
///
/// ```
/// let none = holdfast::Holders::new();
/// assert_eq!(none.to_string(), "holder unknown");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Holders(Vec<Holder>, Option<usize>);

impl Holders {
    /// No known holder.
    pub const fn new() -> Self {
        Holders(Vec::new(), None)
    }
    /// For the holders of a [`Semaphore`](crate::Semaphore), its number of
    /// permits (messages then speak of permits, not of a lock); `None`
    /// for any other lock.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// let _permit = sem.lock()?;
    /// let e = sem.try_lock().unwrap_err();
    /// assert_eq!(e.holders().permits(), Some(1));
    /// assert!(e.to_string().starts_with("no permit of "), "{e}");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn permits(&self) -> Option<usize> {
        self.1
    }
    pub(crate) fn with_permits(mut self, permits: usize) -> Self {
        self.1 = Some(permits);
        self
    }
    /// The first (for an exclusive lock, the only) holder.
    pub fn first(&self) -> Option<&Holder> {
        self.0.first()
    }
    /// All known holders.
    pub fn iter(&self) -> std::slice::Iter<'_, Holder> {
        self.0.iter()
    }
    /// Whether nothing is known about the holder.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// How many holders are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Vec<Holder>> for Holders {
    fn from(v: Vec<Holder>) -> Self {
        Holders(v, None)
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a Holder;
    type IntoIter = std::slice::Iter<'a, Holder>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.1 {
            let s = if n == 1 { "" } else { "s" };
            write!(f, "all {n} permit{s} taken")?;
            for (i, h) in self.0.iter().enumerate() {
                f.write_str(if i == 0 { ", by " } else { ", " })?;
                write!(f, "{h}")?;
            }
            return Ok(());
        }
        match self.0.as_slice() {
            [] => f.write_str("holder unknown"),
            [one] => write!(f, "held by {one}"),
            many => {
                f.write_str("held (shared) by ")?;
                for (i, h) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
        }
    }
}

/// Combines the kernel's lock table with the holder record into the list of
/// holders of a file. Never fails: what cannot be read is left out.
pub(crate) fn describe(file: Option<&File>, id: sys::FileId) -> Holders {
    let record = file
        .and_then(|f| read_record(f).ok())
        .and_then(|(c, _)| match c {
            RecordContent::Record(r) => Some(r),
            _ => None,
        });
    let kernel = sys::kernel_locks(id).ok().flatten();
    let Some(locks) = kernel else {
        // No kernel view on this platform: report the record, unverified,
        // if its process still exists.
        return record
            .filter(|r| sys::process_exists(r.pid))
            .map(|r| vec![Holder::from_record(&r, HolderSource::Unverified)])
            .unwrap_or_default()
            .into();
    };
    let my_boot = sys::boot_id();
    let mut out: Vec<Holder> = Vec::new();
    for l in locks {
        let mode = if l.exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        if let Some(pid) = l.pid
            && out.iter().any(|h| h.pid == Some(pid))
        {
            continue;
        }
        // The record names the holder when the kernel's pid is the
        // record's (same start time, so not a recycled pid), or when the
        // kernel's pid is gone: flock records the pid that *requested* the
        // lock, which for a timed wait is holdfast's short-lived waiter task
        // and for an inherited descriptor may be a parent that exited.
        let confirmed = record.as_ref().filter(|r| {
            let alive =
                |pid: u32| r.start_time.is_none() || r.start_time == sys::process_start_time(pid);
            l.exclusive
                && r.mode == Mode::Exclusive
                && (r.boot_id.is_none() || r.boot_id == my_boot)
                && match l.pid {
                    Some(kpid) if kpid == r.pid => alive(kpid),
                    Some(kpid) => {
                        !sys::process_exists(kpid) && sys::process_exists(r.pid) && alive(r.pid)
                    }
                    None => sys::process_exists(r.pid) && alive(r.pid),
                }
        });
        out.push(match confirmed {
            Some(r) => Holder::from_record(r, HolderSource::Record),
            None => Holder {
                pid: l.pid,
                command: l.pid.and_then(sys::process_cmdline),
                host: Some(hostname_override().unwrap_or_else(sys::hostname)),
                uid: l.pid.and_then(sys::process_uid),
                since: None,
                mode: Some(mode),
                token: None,
                this_process: l.pid == Some(sys::current_pid()),
                source: HolderSource::Kernel,
            },
        });
    }
    out.into()
}

/// Formats a duration the way people read it: `850ms`, `5s`, `1.5s`,
/// `2m3s`, `1h2m`, rounded to the unit shown (never truncated: a wait of
/// 4.96 s is `5s`, not `4.9s`).
pub fn fmt_duration(d: Duration) -> String {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        let (secs, tenths) = (tenths / 10, tenths % 10);
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    let secs = (ms + 500) / 1000;
    if secs < 3600 {
        let (m, s) = (secs / 60, secs % 60);
        return if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        };
    }
    let mins = (secs + 30) / 60;
    let (h, m) = (mins / 60, mins % 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m}m")
    }
}

/// `HH:MM:SS UTC` of a wall-clock time.
pub(crate) fn fmt_utc_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HolderRecord {
        HolderRecord {
            token: 42,
            pid: 4242,
            start_time: Some(987),
            boot_id: Some("b00t".into()),
            host: "web-1".into(),
            uid: Some(1000),
            mode: Mode::Exclusive,
            since: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            command: "python3 migrate.py --name \"a\\b\"\nnext\u{7}".into(),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(HolderRecord::parse(&bytes), Ok(r));
    }

    #[test]
    fn every_truncation_is_corrupt_not_a_panic() {
        let bytes = sample().encode();
        for cut in 1..bytes.len() {
            match RecordContent::classify(&bytes[..cut]) {
                RecordContent::Corrupt(_) | RecordContent::Foreign => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_and_foreign_content() {
        assert_eq!(RecordContent::classify(b"4242"), RecordContent::Foreign);
        assert_eq!(
            RecordContent::classify(b"4242\nvm\n123\n"),
            RecordContent::Foreign
        );
        assert_eq!(RecordContent::classify(b"\0"), RecordContent::Empty);
        assert!(matches!(
            RecordContent::classify(b"holdfast-holder 1\ntoken x\nend\n"),
            RecordContent::Corrupt(_)
        ));
        assert!(matches!(
            RecordContent::classify(b"holdfast-holder 1\xff\xfe"),
            RecordContent::Corrupt(_)
        ));
        assert!(matches!(
            RecordContent::classify(b"holdfast-holder one\n"),
            RecordContent::Corrupt(_)
        ));
        assert!(matches!(
            RecordContent::classify(b"holdfast-holder 1\ntoken 1\npid 99999999999\nend\n"),
            RecordContent::Corrupt(_)
        ));
        // Pseudo-random garbage after the magic never panics.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut buf = b"holdfast-holder 1\n".to_vec();
            for _ in 0..64 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push(b"tokenpidmodesinceend \n0123456789.\\u{"[(x >> 16) as usize % 36]);
            }
            let _ = RecordContent::classify(&buf);
        }
    }

    #[test]
    fn unknown_keys_are_ignored_and_later_versions_parse() {
        let mut text = String::from_utf8(sample().encode()).unwrap();
        text = text.replace("holdfast-holder 1", "holdfast-holder 2");
        text = text.replace("end\n", "lease 30\nend\n");
        assert_eq!(HolderRecord::parse(text.as_bytes()).unwrap().token, 42);
    }

    #[test]
    fn next_token_fast_path_agrees_with_the_parser() {
        let mut r = sample();
        for token in [0u64, 1, 9, 10, 99_999, u64::MAX - 1] {
            r.token = token;
            let bytes = r.encode();
            assert_eq!(next_token(&bytes, false), Some(token + 1));
            // Through the slow path too (a record with its lines reordered).
            let text = String::from_utf8(bytes).unwrap();
            let reordered = text
                .replacen(&format!("token {token}\n"), "", 1)
                .replace("end\n", &format!("token {token}\nend\n"));
            assert_eq!(next_token(reordered.as_bytes(), false), Some(token + 1));
        }
        assert_eq!(next_token(b"", false), Some(1));
        assert_eq!(next_token(b"\0", false), Some(1));
        assert_eq!(next_token(b"user data", false), None);
        assert_eq!(next_token(b"user data", true), None);
        assert!(next_token(b"holdfast-holder 1\ntoken 5\n", false).unwrap() > 1_000_000);
        assert!(next_token(b"holdfast-holder 1\ntoken 5\nend\n", true).unwrap() > 1_000_000);
    }

    #[test]
    fn hand_formatted_head_matches_fmt() {
        for (token, secs, nanos) in [
            (0u64, 0u64, 0u32),
            (1, 1_700_000_000, 5),
            (9, 9, 999_999_999),
            (10, 10, 100_000_000),
            (u64::MAX, 253_402_300_799, 1),
        ] {
            let mut out = Vec::new();
            encode_head(&mut out, token, UNIX_EPOCH + Duration::new(secs, nanos));
            let want =
                format!("{MAGIC} {RECORD_VERSION}\ntoken {token}\nsince {secs}.{nanos:09}\n");
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// The mapped record road (Linux): the same process acquiring again
    /// patches its record in place; a peer's record is read, not assumed;
    /// a peer truncating the file (filelock opens with `O_TRUNC`) makes the
    /// mapping fault into its guard, never kills us, and the token starts
    /// over from the file as it is now.
    #[test]
    #[cfg(target_os = "linux")]
    fn mapped_record_reads_peers_and_survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lock");
        let lock = crate::Lock::open(&path).unwrap();
        let token = || lock.lock().unwrap().token().unwrap();
        let t1 = token();
        let t2 = token();
        assert_eq!(t2, t1 + 1);
        let on_disk = || HolderRecord::parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk().token, t2);
        // A peer's record of the same length with a larger token.
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let peer = text.replacen(&format!("token {t2}\n"), &format!("token {}\n", t2 + 5), 1);
        assert_eq!(peer.len(), text.len());
        std::fs::write(&path, peer).unwrap();
        assert_eq!(token(), t2 + 6);
        assert_eq!(on_disk().token, t2 + 6);
        // Truncated by a peer, more times than the mapping is retried: no
        // crash, the file decides.
        for _ in 0..2 * Mapped::MAX_FAULTS {
            File::options()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            assert_eq!(token(), 1);
            assert_eq!(token(), 2);
            assert_eq!(on_disk().token, 2);
        }
        // Foreign content of any length is never touched.
        std::fs::write(&path, b"user data\n").unwrap();
        assert_eq!(lock.lock().unwrap().token(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"user data\n");
    }

    /// The command line in records comes from memory, and says what
    /// `/proc/self/cmdline` says (what other processes see for us).
    #[test]
    #[cfg(target_os = "linux")]
    fn own_command_line_matches_proc() {
        assert_eq!(own_command_line(), sys::process_cmdline(sys::current_pid()));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(123)), "2m3s");
        assert_eq!(fmt_duration(Duration::from_secs(3720)), "1h2m");
        // Rounded, not truncated (issue 10 item 11).
        assert_eq!(fmt_duration(Duration::from_millis(4960)), "5s");
        assert_eq!(fmt_duration(Duration::from_millis(4940)), "4.9s");
        assert_eq!(fmt_duration(Duration::from_micros(999_600)), "1s");
        assert_eq!(fmt_duration(Duration::from_micros(994_400)), "994ms");
        assert_eq!(fmt_duration(Duration::from_millis(59_970)), "1m");
        assert_eq!(fmt_duration(Duration::from_millis(119_600)), "2m");
        assert_eq!(fmt_duration(Duration::from_secs(3599)), "59m59s");
        assert_eq!(fmt_duration(Duration::from_secs(7170)), "2h");
    }

    #[test]
    fn holder_message_names_pid_command_host_and_age() {
        let mut r = sample();
        r.since = SystemTime::now() - Duration::from_secs(31);
        let h = Holder::from_record(&r, HolderSource::Record);
        let s = Holders::from(vec![h]).to_string();
        assert!(s.starts_with("held by pid 4242 (python3 migrate.py"), "{s}");
        assert!(s.contains(" on web-1 since "), "{s}");
        assert!(s.ends_with("UTC (31s)"), "{s}");
    }
}
