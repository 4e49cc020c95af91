//! Internals shared by the three protocols: the per-lock context, what a
//! holder keeps, what a waiter sees, and dispatch to the protocol modules.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::options::LockFileOptions;
use super::record::{self, LockRecord};
use super::stale::{self, Claimant, Content, Format, Local, Probe, Rules, Times};
use super::{Compat, Protocol};
use crate::error::{Error, IoOp, Result};
use crate::holder::{Holder, HolderSource, Identity};
use crate::mode::Mode;
use crate::sys::{self, FileId};

/// Everything fixed about one lock file.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The lock name on disk.
    pub path: PathBuf,
    /// Its directory (`.` for a bare name).
    pub dir: PathBuf,
    /// Its last component.
    pub name: OsString,
    pub protocol: Protocol,
    pub compat: Compat,
    pub opts: LockFileOptions,
    pub me: Arc<Me>,
}

/// This process, in every form a record names it.
#[derive(Debug)]
pub(crate) struct Me {
    pub local: Local,
    pub start_time: Option<u64>,
    pub uid: u32,
    pub command: String,
}

static ME: Mutex<Option<Arc<Me>>> = Mutex::new(None);
static FQDN: OnceLock<Mutex<Option<(String, String)>>> = OnceLock::new();

impl Me {
    /// This process (recomputed in a forked child). `fqdn` asks the
    /// resolver, so only flufl-format locks request it.
    pub(crate) fn current(need_fqdn: bool) -> Arc<Me> {
        let id = Identity::current();
        let mut slot = ME.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(me) = slot.as_ref()
            && me.local.pid == id.pid
            && me.local.host == id.host
            && (!need_fqdn || !me.local.fqdn.is_empty())
        {
            return me.clone();
        }
        let pid_ns = sys::pid_namespace();
        let raw_host = crate::holder::hostname_override().unwrap_or_else(sys::hostname);
        let fqdn = if need_fqdn {
            fqdn_of(&raw_host)
        } else {
            String::new()
        };
        let me = Arc::new(Me {
            local: Local {
                pid: id.pid,
                host: id.host.clone(),
                fqdn,
                filelock_host: record::filelock_host(&raw_host, pid_ns),
                boot_id: id.boot_id.as_deref().map(record::norm_boot),
                pid_ns,
            },
            start_time: id.start_time,
            uid: id.uid,
            command: id.command.clone(),
        });
        *slot = Some(me.clone());
        me
    }
}

/// `socket.getfqdn()` for a host name, cached per name. `HOLDFAST_HOSTNAME`
/// is used as given (it simulates another host in tests).
fn fqdn_of(host: &str) -> String {
    if crate::holder::hostname_override().is_some() {
        return host.to_owned();
    }
    let cell = FQDN.get_or_init(|| Mutex::new(None));
    let mut g = cell.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((h, f)) = g.as_ref()
        && h == host
    {
        return f.clone();
    }
    let f = sys::fqdn(host);
    *g = Some((host.to_owned(), f.clone()));
    f
}

/// What a holder keeps for as long as it holds.
#[derive(Debug)]
pub(crate) struct Held {
    pub nonce: String,
    /// soft: the lock file; link: the claim file; mkdir: the record file
    /// inside the lock directory. Its inode carries the lease (mtime).
    pub file: File,
    /// Identity of the object at the lock path: soft: the lock file; link:
    /// the claim's inode; mkdir: the directory.
    pub id: FileId,
    /// mkdir: the lock directory.
    pub dir: Option<File>,
    /// mkdir: the record's name inside it; link: the claim's path.
    pub claim: Option<PathBuf>,
    /// The bytes written (link: identity by content, which also works where
    /// hard links get synthetic inode numbers, as on sshfs).
    pub content: Vec<u8>,
    /// link: when this process last set the claim's lease (taken before
    /// the call, so the lease runs at least until then + lifetime).
    pub stamped: Cell<Option<Instant>>,
}

/// Per acquisition, before the lock is had: the nonce, and for the link
/// protocol the claim file (written once, reused by every attempt).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub nonce: String,
    pub claim: Option<Held>,
}

impl Prepared {
    /// Whether the observed lock is this acquisition's own (an earlier
    /// attempt succeeded but reported failure, as NFS can).
    pub(crate) fn owns(&self, obs: &Observed) -> bool {
        matches!(&obs.content, Content::Holder(c) if c.nonce.as_deref() == Some(self.nonce.as_str()))
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(c) = self.claim.take()
            && let Some(p) = &c.claim
            && let Err(e) = std::fs::remove_file(p)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %p.display(), error = %e, "could not remove a claim file");
        }
    }
}

/// One look at the lock path.
#[derive(Debug)]
pub(crate) struct Observed {
    /// Keeps the inode allocated, so its number names nothing else while we
    /// decide: see "Race-free breaking" in the module docs.
    pub _pin: File,
    pub id: FileId,
    /// mtime of the object at the path (part of its identity).
    pub mtime: SystemTime,
    /// Times of the inode that carries the lease.
    pub times: Times,
    pub content: Content,
}

/// What identifies one state of a lock object: (device, inode, mtime, lease
/// mtime, lease ctime).
pub(crate) type ObsKey = (u64, u64, SystemTime, SystemTime, SystemTime);

impl Observed {
    /// A key that changes whenever the lock object is replaced or touched.
    pub(crate) fn key(&self) -> ObsKey {
        (
            self.id.dev,
            self.id.ino,
            self.mtime,
            self.times.mtime,
            self.times.ctime,
        )
    }

    pub(crate) fn claimant(&self) -> Option<&Claimant> {
        match &self.content {
            Content::Holder(c) => Some(c),
            _ => None,
        }
    }

    /// The pid whose parked break names may hold a live holder's object:
    /// the judged record's writer, or the breaker a filelock placeholder
    /// names.
    pub(crate) fn breaker(&self) -> Option<u32> {
        match &self.content {
            Content::Holder(c) => Some(c.pid),
            Content::Unsettled { breaker, .. } => *breaker,
            _ => None,
        }
    }
}

pub(crate) fn ctime_of(m: &Metadata) -> SystemTime {
    if m.ctime() < 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH
        + Duration::new(
            m.ctime() as u64,
            m.ctime_nsec().clamp(0, 999_999_999) as u32,
        )
}

pub(crate) fn mtime_of(m: &Metadata) -> SystemTime {
    m.modified().unwrap_or(UNIX_EPOCH)
}

pub(crate) fn times_of(m: &Metadata) -> Times {
    Times {
        mtime: mtime_of(m),
        ctime: ctime_of(m),
    }
}

pub(crate) fn id_of(m: &Metadata) -> FileId {
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// `lstat` identity of whatever is at `path` now.
pub(crate) fn identity_at(path: &Path) -> io::Result<(FileId, SystemTime)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((id_of(&m), mtime_of(&m)))
}

/// Reads up to `max` bytes from the start of a file.
pub(crate) fn read_head(f: &File, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        match f.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Overwrites a file with `data` (a tombstone), cutting it to length.
pub(crate) fn overwrite(f: &File, data: &[u8]) -> io::Result<()> {
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)
}

pub(crate) fn write_all(f: &File, data: &[u8]) -> io::Result<()> {
    f.write_all_at(data, 0)
}

impl Ctx {
    /// The record format this lock writes.
    pub(crate) fn format(&self) -> Format {
        match (self.protocol, self.compat) {
            (Protocol::Soft, Compat::Filelock) => Format::Filelock,
            (Protocol::Link, Compat::Flufl) => Format::Flufl,
            _ => Format::Holdfast,
        }
    }

    pub(crate) fn rules(&self) -> Rules {
        Rules {
            skew: self.opts.clock_skew,
            max_lifetime: self.opts.max_lifetime,
            stale_after: self.opts.stale_after,
            grace: self.opts.grace,
            assumed_lifetime: self.opts.lifetime,
        }
    }

    /// A holdfast record for this process.
    pub(crate) fn record(&self, nonce: &str, claim: Option<String>) -> LockRecord {
        let me = &self.me;
        LockRecord {
            pid: me.local.pid,
            start_time: me.start_time,
            boot_id: me.local.boot_id.clone(),
            pid_ns: me.local.pid_ns,
            host: me.local.host.clone(),
            uid: Some(me.uid),
            since: SystemTime::now(),
            lifetime: self.opts.lifetime,
            nonce: nonce.to_owned(),
            claim,
            command: me.command.clone(),
        }
    }

    /// The filelock record for this process.
    pub(crate) fn filelock_record(&self) -> Vec<u8> {
        let me = &self.me;
        let token = me
            .start_time
            .map(|s| (record::boot_as_u128(me.local.boot_id.as_deref()), s));
        record::encode_filelock(me.local.pid, &me.local.filelock_host, token)
    }

    /// Permission bits for the files holdfast creates.
    pub(crate) fn file_mode(&self) -> u32 {
        let m = self.opts.permissions;
        if self.compat == Compat::Filelock {
            m & !0o022 // as filelock: no other account may write the record
        } else {
            m
        }
    }

    /// Permission bits for a lock directory: the file bits plus search
    /// permission wherever there is read permission.
    pub(crate) fn dir_mode(&self) -> u32 {
        let m = self.opts.permissions;
        m | ((m & 0o444) >> 2)
    }

    /// Sets a newly written object's times as its format reads the lease:
    /// holdfast and flufl.lock put the expiry in the mtime; filelock keeps
    /// the mtime at the last refresh.
    pub(crate) fn stamp(&self, f: &File) -> io::Result<()> {
        match (self.format(), self.opts.lifetime) {
            (Format::Filelock, _) => Ok(()),
            (_, Some(l)) => sys::set_times(f, SystemTime::now() + l),
            (_, None) => Ok(()),
        }
    }

    /// Refreshes a held object's lease.
    pub(crate) fn refresh_times(&self, f: &File) -> io::Result<()> {
        match (self.format(), self.opts.lifetime) {
            (Format::Filelock, _) => sys::set_times(f, SystemTime::now()),
            (_, Some(l)) => sys::set_times(f, SystemTime::now() + l),
            (_, None) => Ok(()),
        }
    }

    /// `<dir>/<lock name>.<kind>.<pid>.<32 hex>`.
    pub(crate) fn side_path(&self, kind: &str, pid: u32) -> PathBuf {
        self.dir.join(record::side_name(&self.name, kind, pid))
    }

    /// An I/O error about this lock.
    pub(crate) fn io(&self, op: IoOp, e: io::Error) -> Error {
        Error::io(op, &self.path, e)
    }

    /// Judges an observation with the system's process table.
    pub(crate) fn judge(&self, obs: &Observed, unchanged_for: Duration) -> stale::Judgement {
        stale::judge(
            &obs.content,
            obs.times,
            &self.me.local,
            &self.rules(),
            &SysProbe::default(),
            SystemTime::now(),
            unchanged_for,
        )
    }

    /// The holder an observation names, in the form errors report.
    pub(crate) fn holder(&self, obs: &Observed, j: &stale::Judgement) -> Option<Holder> {
        let local = &self.me.local;
        match &obs.content {
            Content::Holder(c) => {
                let here = stale::same_host(c, local);
                let command = c.command.clone().filter(|s| !s.is_empty()).or_else(|| {
                    (here && SysProbe::default().alive(c.pid))
                        .then(|| sys::process_cmdline(c.pid))
                        .flatten()
                });
                Some(Holder {
                    pid: Some(c.pid),
                    command,
                    host: Some(c.host.clone()),
                    uid: c.uid,
                    since: c.since.or(Some(obs.times.ctime)),
                    mode: Some(Mode::Exclusive),
                    token: None,
                    this_process: here && c.pid == local.pid,
                    source: if j.confirmed {
                        HolderSource::Record
                    } else {
                        HolderSource::Unverified
                    },
                })
            }
            Content::Unknown { what, host, pid } => {
                let (host, pid) = match (host, pid, self.protocol) {
                    (None, None, Protocol::Link) => foreign_owner(self, obs),
                    _ => (host.clone(), *pid),
                };
                let here = host.as_deref().is_none_or(|h| h == local.host);
                let command = pid
                    .filter(|_| here)
                    .and_then(sys::process_cmdline)
                    .map(|c| format!("{c}; {what}"))
                    .or_else(|| Some(what.clone()));
                Some(Holder {
                    pid,
                    command,
                    host,
                    uid: None,
                    since: Some(obs.times.ctime),
                    mode: Some(Mode::Exclusive),
                    token: None,
                    this_process: false,
                    source: HolderSource::Unverified,
                })
            }
            Content::Unsettled { what, .. } => Some(Holder {
                command: Some(what.clone()),
                since: Some(obs.times.ctime),
                mode: Some(Mode::Exclusive),
                source: HolderSource::Unverified,
                ..Holder::default()
            }),
            Content::Released => None,
        }
    }
}

/// Process liveness from the system. Each probe reads `/proc/PID/stat`
/// once and remembers it, so one judgement costs one read.
#[derive(Default)]
pub(crate) struct SysProbe {
    /// The last pid asked about, with its (state, start time) if it exists.
    seen: std::cell::Cell<Option<(u32, ProcStat)>>,
}

/// `(state letter, start time)` of a process; `None` if unreadable.
type ProcStat = Option<(char, u64)>;

impl SysProbe {
    fn stat(&self, pid: u32) -> ProcStat {
        if let Some((p, s)) = self.seen.get()
            && p == pid
        {
            return s;
        }
        let s = sys::process_state_start(pid);
        self.seen.set(Some((pid, s)));
        s
    }
}

impl Probe for SysProbe {
    fn alive(&self, pid: u32) -> bool {
        match self.stat(pid) {
            Some((state, _)) => state != 'Z' && state != 'X',
            // Gone, or not readable (no /proc, another platform, or
            // /proc mounted hidepid=2): ask the kernel, which answers EPERM
            // for a live process of another user.
            None => sys::process_exists(pid),
        }
    }
    fn start_time(&self, pid: u32) -> Option<u64> {
        self.stat(pid).map(|(_, s)| s)
    }
    fn runs_in_child_ns(&self, pid: u32, start: u64) -> bool {
        sys::owner_runs_in_child_pidns(pid, start)
    }
}

/// A claimant from a holdfast record.
pub(crate) fn claimant_of(rec: &LockRecord) -> Claimant {
    Claimant {
        format: Format::Holdfast,
        pid: rec.pid,
        host: rec.host.clone(),
        start_time: rec.start_time,
        boot_id: rec.boot_id.as_deref().map(record::norm_boot),
        pid_ns: rec.pid_ns,
        lifetime: rec.lifetime,
        since: Some(rec.since),
        uid: rec.uid,
        command: Some(rec.command.clone()).filter(|c| !c.is_empty()),
        nonce: Some(rec.nonce.clone()),
        claim: rec.claim.as_ref().map(OsString::from),
    }
}

/// A claimant from a filelock record.
pub(crate) fn claimant_of_filelock(r: &record::FilelockRecord) -> Claimant {
    let (boot, start) = match r.token {
        Some((b, s)) => ((b != 0).then(|| format!("{b:032x}")), Some(s)),
        None => (None, None),
    };
    Claimant {
        format: Format::Filelock,
        pid: r.pid,
        host: r.host.clone(),
        start_time: start,
        boot_id: boot,
        pid_ns: None,
        lifetime: None,
        since: None,
        uid: None,
        command: None,
        nonce: None,
        claim: None,
    }
}

/// A claimant from a flufl.lock claim.
pub(crate) fn claimant_of_flufl(c: &record::FluflClaim) -> Claimant {
    let ext = c.ext.as_ref();
    Claimant {
        format: Format::Flufl,
        pid: c.pid,
        host: c.host.clone(),
        start_time: ext.and_then(|e| e.start_time),
        boot_id: ext.and_then(|e| e.boot_id.clone()),
        pid_ns: ext.and_then(|e| e.pid_ns),
        lifetime: ext.and_then(|e| e.lifetime),
        since: None,
        uid: None,
        command: None,
        nonce: ext.map(|e| e.nonce.clone()),
        claim: Some(c.claim.clone()),
    }
}

/// Classifies the bytes of a lock record (soft lock file, link claim, mkdir
/// record file) as the given format reads them. Every protocol recognises
/// every format it may meet on a shared path. `empty_is_ours`: an empty
/// record can only be a holdfast writer between creating and filling it
/// (soft lock files, mkdir record files); otherwise (link locks, which
/// lockfile leaves empty) it names no owner.
pub(crate) fn classify(bytes: &[u8], format: Format, empty_is_ours: bool) -> Content {
    if bytes == record::RELEASED || bytes == record::FILELOCK_RELEASED {
        return Content::Released;
    }
    if bytes.starts_with(record::MAGIC.as_bytes()) {
        return match LockRecord::parse(bytes) {
            Ok(r) => Content::Holder(claimant_of(&r)),
            Err(why) => Content::Unsettled {
                what: format!("a damaged holdfast record ({why})"),
                breaker: None,
            },
        };
    }
    if let Some(r) = record::parse_filelock(bytes) {
        return Content::Holder(claimant_of_filelock(&r));
    }
    if let Some(c) = record::parse_flufl(bytes) {
        return Content::Holder(claimant_of_flufl(&c));
    }
    if let Some(pid) = record::filelock_placeholder_pid(bytes) {
        return Content::Unsettled {
            what: format!("a filelock break placeholder of pid {pid}"),
            breaker: Some(pid),
        };
    }
    match format {
        Format::Filelock => {
            if bytes.is_empty() {
                // As any record that names no holder: a writer between
                // creating and filling it, or one killed there (filelock
                // fills in place). Stale once unchanged for the grace
                // period, so an old empty marker never blocks anyone.
                Content::Unsettled {
                    what: "an empty marker (a holder killed before writing its record, or a \
                           filelock before 3.22)"
                        .into(),
                    breaker: None,
                }
            } else if bytes == record::FILELOCK_STRICT {
                Content::Unknown {
                    what: "a filelock StrictSoftFileLock sentinel".into(),
                    host: None,
                    pid: None,
                }
            } else {
                Content::Unsettled {
                    what: "a record filelock cannot parse".into(),
                    breaker: None,
                }
            }
        }
        Format::Holdfast if bytes.is_empty() && empty_is_ours => Content::Unsettled {
            what: "an empty lock file".into(),
            breaker: None,
        },
        _ => {
            let pid = std::str::from_utf8(bytes)
                .ok()
                .map(str::trim)
                .and_then(|s| s.parse::<u32>().ok());
            Content::Unknown {
                what: if bytes.is_empty() {
                    "an empty lock file (lockfile's LinkLockFile?)".into()
                } else if pid.is_some() {
                    "a bare pid (a libvcs or lockfile PIDLockFile lock?)".into()
                } else {
                    "content that names no holder holdfast can check".into()
                },
                host: None,
                pid,
            }
        }
    }
}

/// Opens `at` for observation, mapping the errors every protocol shares.
pub(crate) fn pin(ctx: &Ctx, at: &Path) -> Result<Option<(File, Metadata)>> {
    let f = match sys::open_nofollow(at) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            if std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Symlink {
                    path: at.to_owned(),
                });
            }
            return Err(Error::io(IoOp::Open, at, e));
        }
    };
    let m = f.metadata().map_err(|e| ctx.io(IoOp::Inspect, e))?;
    if !m.is_file() && !m.is_dir() {
        // A FIFO, device or socket: no protocol makes one, so it is never
        // judged (or removed) as a lock. (It was opened O_NONBLOCK.)
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "it is not a regular file or a directory (a FIFO, device or socket?), so \
                     it is not a lock file; use another path"
                .into(),
        });
    }
    Ok(Some((f, m)))
}

/// `Error::Lost`.
pub(crate) fn lost(ctx: &Ctx, reason: impl Into<String>) -> Error {
    Error::Lost {
        path: ctx.path.clone(),
        reason: reason.into(),
    }
}

/// A name in the lock's directory.
pub(crate) fn in_dir(ctx: &Ctx, name: &OsStr) -> PathBuf {
    ctx.dir.join(name)
}

/// The last component of a path given as bytes (a claim named in a record).
pub(crate) fn base_name(p: &OsStr) -> &OsStr {
    let b = p.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(i) => OsStr::from_bytes(&b[i + 1..]),
        None => p,
    }
}

/// For a lock lockfile's `LinkLockFile` made (empty content): the host and
/// pid its unique name suggests, found as the other name of the lock's
/// inode.
pub(crate) fn foreign_owner(ctx: &Ctx, obs: &Observed) -> (Option<String>, Option<u32>) {
    let Ok(entries) = std::fs::read_dir(&ctx.dir) else {
        return (None, None);
    };
    for e in entries.flatten() {
        if e.file_name() == ctx.name {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        if m.dev() == obs.id.dev && m.ino() == obs.id.ino {
            let name = e.file_name().to_string_lossy().into_owned();
            let alive = |p: u32| sys::process_exists(p);
            return record::parse_lockfile_unique(&name, false, &alive);
        }
    }
    (None, None)
}
