//! The bytes on disk: holdfast's lock record, flufl.lock claim names,
//! lockfile's unique names, filelock's SoftFileLock record, and the host
//! name each of them writes. Pure functions, unit-tested here; the
//! [module docs](super) describe the formats for users.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First word of a holdfast lock record.
pub(crate) const MAGIC: &str = "holdfast-lockfile";
/// Record format version written by this build.
pub(crate) const VERSION: u32 = 1;
/// Largest record read; ours are a few hundred bytes.
pub(crate) const MAX_RECORD: usize = 4096;
/// What a holder writes over its own record when it finds, at release, that
/// its lock object is not at the lock path (a mistaken take-over parked it
/// under another name and will put it back): whoever finds it at the lock
/// path may remove it at once.
pub(crate) const RELEASED: &[u8] = b"holdfast-lockfile released\n";
/// filelock's equivalent of [`RELEASED`] (`_soft.py`, `_unlink_open_marker`).
pub(crate) const FILELOCK_RELEASED: &[u8] = b"filelock/released\n";
/// The placeholder a filelock breaker parks at the lock path while it works
/// (`_util.py`, `break_lock_file`): `filelock/break\n<pid>\n`.
pub(crate) const FILELOCK_BREAK: &str = "filelock/break\n";
/// filelock's StrictSoftFileLock sentinel: never broken by filelock.
pub(crate) const FILELOCK_STRICT: &[u8] = b"1\nfilelock-strict-v1\x00\n0\n";
/// filelock reads at most this much of a marker (`_MAX_LOCK_FILE_SIZE`).
pub(crate) const FILELOCK_MAX: usize = 1024;
/// flufl.lock's separator on POSIX (`SEP`).
pub(crate) const FLUFL_SEP: u8 = b'|';
/// Suffix of the claim and record files holdfast creates for the lockfile
/// formats: no name lockfile 0.12.2 generates ends in a letter (its unique
/// names end in the pid or `hash(path)` digits), so they never collide.
pub(crate) const CLAIM_SUFFIX: &str = ".holdfast";
/// The initial pid namespace's inode number (`PID_NS_INIT_INO`).
pub(crate) const INITIAL_PID_NS: u64 = 0xEFFF_FFFC;

/// A holdfast lock record: who holds the lock, for how long, and which
/// acquisition this is (the nonce).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockRecord {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
    pub host: String,
    pub uid: Option<u32>,
    pub since: SystemTime,
    pub lifetime: Option<Duration>,
    pub nonce: String,
    pub claim: Option<String>,
    pub command: String,
}

impl LockRecord {
    /// The record as bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(320);
        let since = self.since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let _ = writeln!(s, "{MAGIC} {VERSION}");
        let _ = writeln!(s, "pid {}", self.pid);
        if let Some(t) = self.start_time {
            let _ = writeln!(s, "start {t}");
        }
        if let Some(b) = &self.boot_id {
            let _ = writeln!(s, "boot {}", escape(b));
        }
        if let Some(ns) = self.pid_ns {
            let _ = writeln!(s, "pidns {ns}");
        }
        let _ = writeln!(s, "host {}", escape(&self.host));
        if let Some(u) = self.uid {
            let _ = writeln!(s, "uid {u}");
        }
        let _ = writeln!(s, "since {}.{:09}", since.as_secs(), since.subsec_nanos());
        match self.lifetime {
            Some(l) => {
                let _ = writeln!(s, "lifetime {}.{:09}", l.as_secs(), l.subsec_nanos());
            }
            None => s.push_str("lifetime none\n"),
        }
        let _ = writeln!(s, "nonce {}", escape(&self.nonce));
        if let Some(c) = &self.claim {
            let _ = writeln!(s, "claim {}", escape(c));
        }
        let _ = writeln!(s, "cmd {}", escape(&self.command));
        s.push_str("end\n");
        s.into_bytes()
    }

    /// Parses a record. `Err` says what is wrong with bytes that start like
    /// one.
    pub(crate) fn parse(bytes: &[u8]) -> Result<LockRecord, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
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
        let mut pid = None;
        let mut rec = LockRecord {
            pid: 0,
            start_time: None,
            boot_id: None,
            pid_ns: None,
            host: String::new(),
            uid: None,
            since: UNIX_EPOCH,
            lifetime: None,
            nonce: String::new(),
            claim: None,
            command: String::new(),
        };
        let (mut since, mut nonce, mut lifetime_seen) = (None, None, false);
        let mut ended = false;
        while let Some(line) = lines.next() {
            if line == "end" {
                ended = lines.peek().is_some();
                break;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad {key} value {v:?}"))
            };
            match key {
                "pid" => {
                    let p = u32::try_from(num(value)?)
                        .ok()
                        .filter(|&p| (1..=i32::MAX as u32).contains(&p))
                        .ok_or_else(|| format!("pid out of range: {value}"))?;
                    pid = Some(p);
                }
                "start" => rec.start_time = Some(num(value)?),
                "boot" => rec.boot_id = Some(unescape(value)),
                "pidns" => rec.pid_ns = Some(num(value)?),
                "host" => rec.host = unescape(value),
                "uid" => rec.uid = u32::try_from(num(value)?).ok(),
                "since" => since = Some(parse_time(value).ok_or(format!("bad since {value:?}"))?),
                "lifetime" => {
                    lifetime_seen = true;
                    rec.lifetime = match value {
                        "none" => None,
                        v => Some(
                            parse_duration(v)
                                .filter(|d| !d.is_zero())
                                .ok_or(format!("bad lifetime {v:?}"))?,
                        ),
                    }
                }
                "nonce" => nonce = Some(unescape(value)),
                "claim" => rec.claim = Some(unescape(value)),
                "cmd" => rec.command = unescape(value),
                _ => {} // a later version's field
            }
        }
        if !ended {
            return Err("cut short (no end line)".into());
        }
        rec.pid = pid.ok_or("no pid")?;
        rec.since = since.ok_or("no since")?;
        rec.nonce = nonce.filter(|n| !n.is_empty()).ok_or("no nonce")?;
        if !lifetime_seen {
            return Err("no lifetime".into());
        }
        Ok(rec)
    }
}

fn parse_time(v: &str) -> Option<SystemTime> {
    parse_duration(v).map(|d| UNIX_EPOCH + d)
}

fn parse_duration(v: &str) -> Option<Duration> {
    let (s, ns) = v.split_once('.').unwrap_or((v, "0"));
    let secs: u64 = s.parse().ok()?;
    if ns.is_empty() || ns.len() > 9 || !ns.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{ns:0<9}").parse().ok()?;
    Some(Duration::new(secs, nanos))
}

pub(crate) use crate::holder::{escape, unescape};

/// Random bytes drawn from the kernel's generator ahead of need, so that a
/// nonce costs no system call most of the time (one read refills 32
/// nonces' worth; it used to be an open, a read and a close of
/// `/dev/urandom` per acquisition). The pool belongs to one process: a
/// forked child never hands out bytes its parent (or a sibling forked from
/// the same state) may also hand out, because the pool is dropped when the
/// pid changes.
struct NoncePool {
    pid: u32,
    buf: [u8; NONCE_POOL],
    used: usize,
}

const NONCE_POOL: usize = 256;

static NONCE_POOL_SLOT: std::sync::Mutex<Option<NoncePool>> = std::sync::Mutex::new(None);

/// Fills `buf` from `/dev/urandom`; on failure, from time and pid mixing.
fn fill_random(buf: &mut [u8]) {
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, buf))
        .is_ok();
    if !ok {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in buf.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            h.write_u32(std::process::id());
            h.write_usize(i);
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A random 64-bit value as 16 hex digits, from the kernel's generator
/// (falling back to time and pid mixing if `/dev/urandom` is unreadable).
/// Every byte is handed out once, by one process.
pub(crate) fn nonce() -> String {
    nonce_as(crate::sys::current_pid())
}

/// [`nonce`] for the process `pid` (tests pretend to be a forked child).
fn nonce_as(pid: u32) -> String {
    let mut slot = NONCE_POOL_SLOT.lock().unwrap_or_else(|e| e.into_inner());
    let pool = match slot.as_mut() {
        Some(p) if p.pid == pid && p.used + 8 <= NONCE_POOL => p,
        _ => {
            let mut fresh = NoncePool {
                pid,
                buf: [0u8; NONCE_POOL],
                used: 0,
            };
            fill_random(&mut fresh.buf);
            slot.insert(fresh)
        }
    };
    let bytes = &pool.buf[pool.used..pool.used + 8];
    pool.used += 8;
    let mut out = String::with_capacity(16);
    for b in bytes {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    // Used bytes are not kept where a later reader of the pool could see them.
    pool.buf[pool.used - 8..pool.used].fill(0);
    out
}

/// 32 random hex digits, the token filelock puts in its break names.
pub(crate) fn token32() -> String {
    format!("{}{}", nonce(), nonce())
}

/// A boot id in the form holdfast compares: lower-case hex, no dashes.
pub(crate) fn norm_boot(b: &str) -> String {
    b.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------
// flufl.lock 10.0.0
// ---------------------------------------------------------------------------

/// What holdfast adds to the random field of a flufl.lock claim name, which
/// flufl.lock never interprets (it only needs the name to split into four
/// `|`-separated fields with an integer pid). Written as
/// `hf1.<start>.<boot>.<pidns>.<lifetime ms>.<nonce>`, `-` for unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FluflExt {
    pub start_time: Option<u64>,
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
    pub lifetime: Option<Duration>,
    pub nonce: String,
}

impl FluflExt {
    pub(crate) fn encode(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        format!(
            "hf1.{}.{}.{}.{}.{}",
            opt(self.start_time.map(|s| s.to_string())),
            opt(self.boot_id.as_deref().map(norm_boot)),
            opt(self.pid_ns.map(|n| format!("{n:x}"))),
            opt(self.lifetime.map(|l| l.as_millis().to_string())),
            self.nonce
        )
    }

    pub(crate) fn parse(field: &str) -> Option<FluflExt> {
        let rest = field.strip_prefix("hf1.")?;
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 5 || parts[4].is_empty() {
            return None;
        }
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        Some(FluflExt {
            start_time: match opt(parts[0]) {
                Some(s) => Some(s.parse().ok()?),
                None => None,
            },
            boot_id: opt(parts[1]).filter(|b| b.bytes().all(|c| c.is_ascii_hexdigit())),
            pid_ns: match opt(parts[2]) {
                Some(s) => Some(u64::from_str_radix(&s, 16).ok()?),
                None => None,
            },
            lifetime: match opt(parts[3]) {
                Some(s) => Some(Duration::from_millis(s.parse().ok()?)),
                None => None,
            },
            nonce: parts[4].to_owned(),
        })
    }
}

/// A parsed flufl.lock claim (the lock file's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FluflClaim {
    /// The claim file path exactly as written (the whole content, stripped).
    pub claim: OsString,
    pub host: String,
    pub pid: u32,
    /// holdfast's extension, when holdfast wrote the claim.
    pub ext: Option<FluflExt>,
}

/// The claim file name flufl.lock's `_set_claimfile` builds:
/// `<lockfile>|<hostname>|<pid>|<random>`, `lockfile` spelled as given.
pub(crate) fn flufl_claim_path(lock: &Path, host: &str, pid: u32, random: &str) -> PathBuf {
    let mut b = lock.as_os_str().as_bytes().to_vec();
    for part in [
        host.as_bytes(),
        pid.to_string().as_bytes(),
        random.as_bytes(),
    ] {
        b.push(FLUFL_SEP);
        b.extend_from_slice(part);
    }
    PathBuf::from(OsString::from_vec(b))
}

/// Parses lock file content the way flufl.lock's `details` does: strip
/// whitespace, split on `|` into exactly four fields, integer pid.
pub(crate) fn parse_flufl(content: &[u8]) -> Option<FluflClaim> {
    let trimmed = trim_ascii(content);
    let fields: Vec<&[u8]> = trimmed.split(|&b| b == FLUFL_SEP).collect();
    if fields.len() != 4 {
        return None;
    }
    let pid_text = std::str::from_utf8(fields[2]).ok()?.trim();
    let pid: u32 = pid_text
        .strip_prefix('+')
        .unwrap_or(pid_text)
        .parse()
        .ok()
        .filter(|&p| p > 0 && p <= i32::MAX as u32)?;
    let random = String::from_utf8_lossy(fields[3]);
    Some(FluflClaim {
        claim: OsStr::from_bytes(trimmed).to_owned(),
        host: String::from_utf8_lossy(fields[1]).into_owned(),
        pid,
        ext: FluflExt::parse(&random),
    })
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

// ---------------------------------------------------------------------------
// lockfile 0.12.2
// ---------------------------------------------------------------------------

/// `os.path.abspath(path) + ".lock"`, the lock name of lockfile's
/// `LinkLockFile` and `MkdirLockFile` (`LockBase.__init__`).
pub(crate) fn lockfile_lock_path(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(path)
    };
    let mut b = normpath(joined.as_os_str().as_bytes());
    b.extend_from_slice(b".lock");
    PathBuf::from(OsString::from_vec(b))
}

/// Python's `posixpath.normpath` on an absolute path: collapse repeated
/// slashes (keeping exactly two leading ones), drop `.`, resolve `..`
/// lexically.
pub(crate) fn normpath(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let initial = if p.starts_with(b"/") {
        if p.starts_with(b"//") && !p.starts_with(b"///") {
            2
        } else {
            1
        }
    } else {
        0
    };
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in p.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if initial == 0 && (out.is_empty() || out.last() == Some(&&b".."[..])) {
                    out.push(comp);
                } else {
                    out.pop();
                }
            }
            c => out.push(c),
        }
    }
    let mut res = vec![b'/'; initial];
    res.extend_from_slice(&out.join(&b'/'));
    if res.is_empty() {
        res.push(b'.');
    }
    res
}

/// What can be told from a lockfile 0.12.2 unique name such as
/// `vm-7f3a1b2c.4242-8161616` (`LinkLockFile`, in the lock's directory:
/// `<hostname><tname>.<pid><hash(path)>`) or `vm.-7f3a1b2c4242`
/// (`MkdirLockFile`, inside the lock directory: `<hostname>.<tname><pid>`).
/// `tname` is `-<hex thread id>` or empty. The pid runs into the digits
/// after it, so it is recovered only when the split is unambiguous or one
/// candidate is a live process (`alive`).
pub(crate) fn parse_lockfile_unique(
    name: &str,
    mkdir: bool,
    alive: &dyn Fn(u32) -> bool,
) -> (Option<String>, Option<u32>) {
    let Some((left, right)) = name.rsplit_once('.') else {
        return (None, None);
    };
    let candidates = |digits: &str| -> Option<u32> {
        // Try the longest plausible pid first; pids have at most 7 digits.
        (1..=digits.len().min(7))
            .rev()
            .filter_map(|n| digits[..n].parse::<u32>().ok())
            .find(|&p| p > 0 && alive(p))
    };
    if mkdir {
        // right = [-<hex>]<pid>
        let host = Some(left.to_owned());
        if right.bytes().all(|b| b.is_ascii_digit()) && !right.is_empty() {
            return (host, right.parse().ok());
        }
        let Some(rest) = right.strip_prefix('-') else {
            return (host, None);
        };
        // The thread id is hex; the pid is the decimal tail after it.
        for hex_len in (1..=8.min(rest.len().saturating_sub(1))).rev() {
            let (hex, pid) = rest.split_at(hex_len);
            if hex.bytes().all(|b| b.is_ascii_hexdigit())
                && pid.bytes().all(|b| b.is_ascii_digit())
                && let Ok(p) = pid.parse::<u32>()
                && p > 0
                && alive(p)
            {
                return (host, Some(p));
            }
        }
        (host, None)
    } else {
        // left = <hostname>[-<hex>], right = <pid><hash>, hash maybe negative.
        let host = match left.rsplit_once('-') {
            Some((h, hex)) if !h.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_owned()
            }
            _ => left.to_owned(),
        };
        let pid = match right.split_once('-') {
            Some((p, hash)) if hash.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            _ => candidates(right),
        };
        (Some(host), pid)
    }
}

// ---------------------------------------------------------------------------
// filelock 4.x SoftFileLock
// ---------------------------------------------------------------------------

/// A parsed filelock record `<pid>\n<hostname>\n[<start token>\n]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilelockRecord {
    pub pid: u32,
    pub host: String,
    /// `(boot id as a 128-bit number, starttime)`: filelock folds the boot id
    /// into the bits above 64 (`_identity.py`, `_read_boot_id`).
    pub token: Option<(u128, u64)>,
}

/// Python's `str.isspace` characters that `strip()` removes and
/// `splitlines()` splits at (the ASCII and Latin-1 subset).
fn py_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\x1f' | '\u{85}'
    ) || c.is_whitespace()
}

fn py_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Parses a marker the way filelock 4.2's `parse_lock_holder` does: UTF-8,
/// ending in `\n`, 2 or 3 lines after `strip()`, ASCII-decimal pid in
/// `1..=2^31-1`, ASCII-decimal token.
pub(crate) fn parse_filelock(content: &[u8]) -> Option<FilelockRecord> {
    if content.len() > FILELOCK_MAX {
        return None;
    }
    let text = std::str::from_utf8(content).ok()?;
    if text.is_empty() || !text.ends_with('\n') {
        return None;
    }
    let stripped = text.trim_matches(py_space);
    // splitlines: "\r\n" is one break.
    let mut lines: Vec<&str> = Vec::new();
    let mut rest = stripped;
    while !rest.is_empty() {
        match rest.find(py_line_break) {
            Some(i) => {
                lines.push(&rest[..i]);
                let c = rest[i..].chars().next().unwrap_or('\n');
                let mut skip = c.len_utf8();
                if c == '\r' && rest[i + 1..].starts_with('\n') {
                    skip += 1;
                }
                rest = &rest[i + skip..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    if lines.len() != 2 && lines.len() != 3 {
        return None;
    }
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !decimal(lines[0]) {
        return None;
    }
    let pid: u64 = lines[0].parse().ok()?;
    if !(1..=(i32::MAX as u64)).contains(&pid) {
        return None;
    }
    let token = match lines.get(2) {
        Some(t) if decimal(t) => Some(decimal_to_token(t)?),
        Some(_) => return None,
        None => None,
    };
    Some(FilelockRecord {
        pid: pid as u32,
        host: lines[1].to_owned(),
        token,
    })
}

/// Splits a decimal number of up to 192 bits into (bits above 64, low 64).
fn decimal_to_token(s: &str) -> Option<(u128, u64)> {
    // Little-endian 64-bit limbs.
    let mut limbs = [0u64; 4];
    for b in s.bytes() {
        let mut carry = u128::from(b - b'0');
        for l in limbs.iter_mut() {
            let v = u128::from(*l) * 10 + carry;
            *l = v as u64;
            carry = v >> 64;
        }
        if carry != 0 {
            return None;
        }
    }
    if limbs[3] != 0 {
        // More than 192 bits: no filelock writes that; keep the low part
        // and a boot part that can never match.
        return Some((u128::MAX, limbs[0]));
    }
    Some((
        (u128::from(limbs[2]) << 64) | u128::from(limbs[1]),
        limbs[0],
    ))
}

/// The decimal token filelock writes: `(boot << 64) | starttime`.
pub(crate) fn token_to_decimal(boot: u128, start: u64) -> String {
    let mut limbs = [start, boot as u64, (boot >> 64) as u64];
    if limbs.iter().all(|&l| l == 0) {
        return "0".into();
    }
    let mut digits = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u128;
        for l in limbs.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*l);
            *l = (cur / 10) as u64;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The boot id as filelock folds it: the 32 hex digits as one number, 0 if
/// unknown.
pub(crate) fn boot_as_u128(boot: Option<&str>) -> u128 {
    boot.and_then(|b| u128::from_str_radix(&norm_boot(b), 16).ok())
        .unwrap_or(0)
}

/// filelock's `host_name()` for a given `gethostname()` and pid namespace
/// inode: printable non-space ASCII other than `?` verbatim, every other
/// byte as `?<hex>`, then `?pidns-<hex inode>` outside the initial pid
/// namespace; `?` for an empty name.
pub(crate) fn filelock_host(hostname: &str, pid_ns: Option<u64>) -> String {
    let mut name = String::with_capacity(hostname.len());
    for &b in hostname.as_bytes() {
        if (0x21..0x7f).contains(&b) && b != b'?' {
            name.push(b as char);
        } else {
            name.push_str(&format!("?{b:02x}"));
        }
    }
    if let Some(ns) = pid_ns
        && ns != INITIAL_PID_NS
    {
        name.push_str(&format!("?pidns-{ns:x}"));
    }
    if name.is_empty() {
        name.push('?');
    }
    name
}

/// The filelock record for a process.
pub(crate) fn encode_filelock(pid: u32, host: &str, token: Option<(u128, u64)>) -> Vec<u8> {
    let mut s = format!("{pid}\n{host}\n");
    if let Some((boot, start)) = token {
        s.push_str(&token_to_decimal(boot, start));
        s.push('\n');
    }
    s.into_bytes()
}

/// The pid a filelock breaker placeholder names, if `content` is one.
pub(crate) fn filelock_placeholder_pid(content: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(content).ok()?;
    let rest = text.strip_prefix(FILELOCK_BREAK)?.strip_suffix('\n')?;
    if !rest.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    rest.parse().ok()
}

// ---------------------------------------------------------------------------
// Names holdfast gives its own files.
// ---------------------------------------------------------------------------

/// A host name made safe as one file-name component.
pub(crate) fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect()
}

/// `<lock name>.break.<pid>.<32 hex>` and `<lock name>.restore.<pid>.<32 hex>`:
/// the names filelock 4.x gives a breaker's parked marker and a recoverer's
/// claim on it (`_soft.py`), used by holdfast for every protocol, so a
/// breaker killed half-way is recovered by filelock and holdfast alike.
pub(crate) fn side_name(lock_name: &OsStr, kind: &str, pid: u32) -> OsString {
    let mut b = lock_name.as_bytes().to_vec();
    b.extend_from_slice(format!(".{kind}.{pid}.{}", token32()).as_bytes());
    OsString::from_vec(b)
}

/// Parses `<lock name>.<kind>.<pid>.<32 hex>`, returning the pid.
pub(crate) fn parse_side_name(lock_name: &OsStr, kind: &str, name: &OsStr) -> Option<u32> {
    let rest = name.as_bytes().strip_prefix(lock_name.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let rest = rest
        .strip_prefix('.')?
        .strip_prefix(kind)?
        .strip_prefix('.')?;
    let (pid, tok) = rest.split_once('.')?;
    if tok.len() != 32 || !tok.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse()
        .ok()
        .filter(|&p: &u32| p >= 1 && p <= i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_unique_hex_across_pool_refills() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..(3 * NONCE_POOL / 8 + 5) {
            let n = nonce();
            assert_eq!(n.len(), 16, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(n.clone()), "{n} handed out twice");
        }
    }

    /// The failure mode of the pool: a forked child (another pid) handing
    /// out the bytes its parent would hand out next. A pid change refills.
    #[test]
    fn another_pid_never_gets_the_bytes_left_in_the_pool() {
        let parent = crate::sys::current_pid();
        let _ = nonce_as(parent);
        let next: Vec<u8> = {
            let slot = NONCE_POOL_SLOT.lock().unwrap();
            let p = slot.as_ref().unwrap();
            if p.used + 8 <= NONCE_POOL {
                p.buf[p.used..p.used + 8].to_vec()
            } else {
                Vec::new()
            }
        };
        let child = nonce_as(parent.wrapping_add(1));
        let hex: String = next.iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(child, hex, "the child drew the parent's next bytes");
        let slot = NONCE_POOL_SLOT.lock().unwrap();
        assert_eq!(slot.as_ref().unwrap().pid, parent.wrapping_add(1));
        drop(slot);
        // Back to this process: refilled again, unique as ever.
        assert_ne!(nonce(), child);
    }

    fn sample() -> LockRecord {
        LockRecord {
            pid: 4242,
            start_time: Some(987),
            boot_id: Some("0b1c9a2e-6d0f-4f5e-9a57-3c2d7e1f0a11".into()),
            pid_ns: Some(4026531836),
            host: "web-1".into(),
            uid: Some(1000),
            since: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            lifetime: Some(Duration::from_millis(15_500)),
            nonce: "9f2c1a2b3c4d5e6f".into(),
            claim: Some("app.lock.web-1.4242.9f2c1a2b3c4d5e6f.holdfast".into()),
            command: "python3 x.py --a \"b\\c\"\nnext".into(),
        }
    }

    #[test]
    fn record_round_trip() {
        let r = sample();
        assert_eq!(LockRecord::parse(&r.encode()), Ok(r.clone()));
        let mut r2 = r;
        r2.lifetime = None;
        r2.claim = None;
        r2.start_time = None;
        assert_eq!(LockRecord::parse(&r2.encode()), Ok(r2));
    }

    #[test]
    fn record_truncations_and_garbage_are_errors_not_panics() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(LockRecord::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(LockRecord::parse(b"holdfast-lockfile 1\npid 0\nend\n").is_err());
        assert!(LockRecord::parse(b"holdfast-lockfile 1\npid 99999999999\nend\n").is_err());
        assert!(LockRecord::parse(b"holdfast-lockfile 1\xff\n").is_err());
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let mut buf = b"holdfast-lockfile 1\n".to_vec();
            for _ in 0..80 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let alphabet = b"pidstartnoncelifetimesinceend \n0123456789.\\u{-";
                buf.push(alphabet[(x >> 16) as usize % alphabet.len()]);
            }
            let _ = LockRecord::parse(&buf);
        }
    }

    #[test]
    fn flufl_claim_names_and_parsing() {
        let ext = FluflExt {
            start_time: Some(123),
            boot_id: Some("0B1C-9A2E".into()),
            pid_ns: Some(0xeffffffc),
            lifetime: Some(Duration::from_secs(15)),
            nonce: "abcdef0123456789".into(),
        };
        let p = flufl_claim_path(
            Path::new("/tmp/x/app.lck"),
            "localhost",
            4242,
            &ext.encode(),
        );
        assert_eq!(
            p.to_str().unwrap(),
            "/tmp/x/app.lck|localhost|4242|hf1.123.0b1c9a2e.effffffc.15000.abcdef0123456789"
        );
        let c = parse_flufl(p.as_os_str().as_bytes()).unwrap();
        assert_eq!((c.host.as_str(), c.pid), ("localhost", 4242));
        let mut want = ext.clone();
        want.boot_id = Some("0b1c9a2e".into());
        assert_eq!(c.ext, Some(want));
        // flufl's own claims: random digits, no extension.
        let c = parse_flufl(b"rel.lck|vm.example|77|1234567890").unwrap();
        assert_eq!((c.pid, c.ext), (77, None));
        assert_eq!(c.claim, OsStr::new("rel.lck|vm.example|77|1234567890"));
        // flufl's `details` refuses anything but four fields and an int pid.
        assert!(parse_flufl(b"a|b|c").is_none());
        assert!(parse_flufl(b"a|b|x|d").is_none());
        assert!(parse_flufl(b"a|b|1|d|e").is_none());
        assert!(parse_flufl(b"").is_none());
        assert!(parse_flufl(b"holdfast-lockfile 1\npid 3\n").is_none());
    }

    #[test]
    fn lockfile_paths_follow_abspath() {
        let cwd = Path::new("/srv/app");
        assert_eq!(
            lockfile_lock_path(Path::new("db"), cwd),
            Path::new("/srv/app/db.lock")
        );
        assert_eq!(
            lockfile_lock_path(Path::new("../x/./y//z"), cwd),
            Path::new("/srv/x/y/z.lock")
        );
        assert_eq!(
            lockfile_lock_path(Path::new("/a/../../b"), cwd),
            Path::new("/b.lock")
        );
        assert_eq!(normpath(b"//a//b/"), b"//a/b");
        assert_eq!(normpath(b"///a"), b"/a");
    }

    #[test]
    fn lockfile_unique_names() {
        let alive = |p: u32| p == 4242;
        // MkdirLockFile, threaded=False and threaded=True.
        assert_eq!(
            parse_lockfile_unique("vm.4242", true, &alive),
            (Some("vm".into()), Some(4242))
        );
        assert_eq!(
            parse_lockfile_unique("vm.-7f3a1b2c4242", true, &alive),
            (Some("vm".into()), Some(4242))
        );
        assert_eq!(
            parse_lockfile_unique("vm.-7f3a1b2c99", true, &alive).1,
            None
        );
        // LinkLockFile: negative and positive hash(path).
        assert_eq!(
            parse_lockfile_unique("vm-7f3a1b2c.4242-81616", false, &alive),
            (Some("vm".into()), Some(4242))
        );
        assert_eq!(
            parse_lockfile_unique("my-host.424281616", false, &alive),
            (Some("my-host".into()), Some(4242))
        );
        // Ours never look like theirs: theirs end in a digit.
        assert!(!"x.lock.vm.1.abc.holdfast".ends_with(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn filelock_records_match_parse_lock_holder() {
        let boot = boot_as_u128(Some("0b1c9a2e-6d0f-4f5e-9a57-3c2d7e1f0a11"));
        let rec = encode_filelock(4242, "vm", Some((boot, 987_654)));
        let text = String::from_utf8(rec.clone()).unwrap();
        // Python: (0x0b1c9a2e6d0f4f5e9a573c2d7e1f0a11 << 64) | 987654
        assert_eq!(
            text,
            "4242\nvm\n272458768481158614571439312358996878526506181299218092550\n"
        );
        let p = parse_filelock(&rec).unwrap();
        assert_eq!(
            (p.pid, p.host.as_str(), p.token),
            (4242, "vm", Some((boot, 987_654)))
        );
        assert_eq!(parse_filelock(b"4242\nvm\n").unwrap().token, None);
        assert_eq!(parse_filelock(b"  4242\r\nvm\n\n").unwrap().pid, 4242);
        for bad in [
            &b""[..],
            b"4242",
            b"4242\n",
            b"4242\nvm",
            b"0\nvm\n",
            b"-1\nvm\n",
            b"2147483648\nvm\n",
            b"+5\nvm\n",
            b"4242\nvm\nx\n",
            b"4242\nvm\n1\n2\n",
            b"filelock/released\n",
            b"\xff\nvm\n",
        ] {
            assert!(parse_filelock(bad).is_none(), "{bad:?}");
        }
        assert_eq!(filelock_placeholder_pid(b"filelock/break\n77\n"), Some(77));
        assert_eq!(filelock_placeholder_pid(b"filelock/break\n\n"), None);
        assert_eq!(token_to_decimal(0, 0), "0");
        assert_eq!(token_to_decimal(1, 0), "18446744073709551616");
    }

    #[test]
    fn filelock_host_names_escape_like_python() {
        assert_eq!(filelock_host("vm", Some(INITIAL_PID_NS)), "vm");
        assert_eq!(filelock_host("vm", None), "vm");
        assert_eq!(filelock_host("a b?c", Some(INITIAL_PID_NS)), "a?20b?3fc");
        assert_eq!(filelock_host("vm", Some(0xf0000123)), "vm?pidns-f0000123");
        assert_eq!(filelock_host("", None), "?");
        assert_eq!(filelock_host("é", None), "?c3?a9");
    }

    #[test]
    fn side_names_are_filelocks() {
        let n = side_name(OsStr::new("app.lock"), "break", 77);
        let s = n.to_str().unwrap();
        assert!(s.starts_with("app.lock.break.77."), "{s}");
        assert_eq!(s.len(), "app.lock.break.77.".len() + 32);
        assert_eq!(
            parse_side_name(OsStr::new("app.lock"), "break", &n),
            Some(77)
        );
        assert_eq!(parse_side_name(OsStr::new("app.lock"), "restore", &n), None);
        assert_eq!(parse_side_name(OsStr::new("app"), "break", &n), None);
    }
}
