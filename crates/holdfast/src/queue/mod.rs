//! The ticket queue shared by [`crate::fifo`] and [`crate::semaphore`]: a
//! counter and one byte-range lock per ticket in one file, plus the step
//! machine that both the blocking and the async acquisitions drive.
//!
//! The protocol and its correctness argument are written down in the
//! [`fifo`](crate::fifo) module docs; this module is the code.

mod enqueue;
pub mod fifo;
mod head;
pub mod semaphore;

pub(crate) use self::enqueue::{Enqueue, Served};
pub(crate) use self::head::{LinkCheck, QueueFile};

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::acquire::{WaitObserver, Waiting, Watch};
use crate::error::{Error, IoOp, Result};
use crate::mode::Wait;
use crate::sys::{self, FileKind, LockReq, OpenSpec, Range};

/// Byte 0: the counter lock, held for the few system calls of taking a
/// ticket (and while the idle queue file is removed).
pub(crate) const COUNTER: Range = Range::byte(0, true);
/// Semaphore slot `i` is the byte `SLOT_BASE + i`.
pub(crate) const SLOT_BASE: u64 = 1 << 20;
/// Most permits a semaphore may have.
pub(crate) const MAX_PERMITS: u64 = 1 << 20;
/// Ticket `t` is the byte `TICKET_BASE + t`.
pub(crate) const TICKET_BASE: u64 = 1 << 32;
/// Past this ticket number the counter restarts at 0 when the queue is
/// empty (never reached in practice: 2^61 acquisitions).
const RESTART_TICKET: u64 = 1 << 61;
/// Past this one it restarts even if the queue is not empty (FIFO order is
/// then lost for the tickets in the queue at that moment; exclusion is not
/// affected). Keeps every offset below 2^63.
const WRAP_TICKET: u64 = 1 << 62;
/// How long a non-blocking attempt waits for another process that is in
/// the middle of taking a ticket (a few system calls) before it reports
/// "would block". Only a stopped or frozen process can hold it that long.
pub(crate) const SHORT_WAIT: Duration = Duration::from_secs(1);

const MAGIC: &str = "holdfast-queue";
const MAX_HEADER: usize = 512;

/// What a queue file is for; stored in its header so that a FIFO lock and
/// a semaphore (or two semaphores with different sizes) never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The queue of a [`crate::FifoLock`].
    Fifo,
    /// A [`crate::Semaphore`] with this many permits.
    Semaphore(u64),
}

/// The parsed header of a queue file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    /// The next ticket to issue; `None` if that line was unreadable.
    pub next: Option<u64>,
}

/// The text header at the start of a queue file:
///
/// ```text
/// holdfast-queue 1
/// kind semaphore 4
/// next 00000000000000000042
/// end
/// ```
pub(crate) fn encode_header(kind: Kind, next: u64) -> Vec<u8> {
    let kind = match kind {
        Kind::Fifo => "fifo".to_owned(),
        Kind::Semaphore(n) => format!("semaphore {n}"),
    };
    format!("{MAGIC} 1\nkind {kind}\nnext {next:020}\nend\n").into_bytes()
}

/// `Ok(None)`: empty file. `Err(reason)`: not a queue file (never
/// overwritten). A holdfast header whose `next` line is damaged parses with
/// `next: None` (the ticket is then recovered from the live locks).
pub(crate) fn parse_header(bytes: &[u8]) -> std::result::Result<Option<Header>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.starts_with(MAGIC) => {}
        _ => return Err(format!("it does not start with {MAGIC:?}")),
    }
    let mut kind = None;
    let mut next = None;
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "kind" => {
                kind = match value.split_once(' ').unwrap_or((value, "")) {
                    ("fifo", _) => Some(Kind::Fifo),
                    ("semaphore", n) => n.parse().ok().map(Kind::Semaphore),
                    _ => None,
                }
            }
            "next" => next = value.parse().ok(),
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| "its kind line is missing or damaged".to_owned())?;
    Ok(Some(Header { kind, next }))
}

/// Opens (creating) a queue file for reading and writing.
pub(crate) fn open_queue(path: &Path, permissions: u32) -> Result<File> {
    let spec = OpenSpec {
        mode: permissions,
        create: true,
        follow_symlinks: false,
    };
    let (file, kind) = sys::open_lock_file(path, &spec).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::Symlink {
                path: path.to_owned(),
            }
        } else {
            Error::io(IoOp::OpenQueue, path, e)
        }
    })?;
    match kind {
        // A queue file shared between users is owned by one of them; it is
        // never reached through a symlink here (follow_symlinks: false) and
        // its content is checked before anything is written into it.
        FileKind::Writable | FileKind::Foreign => Ok(file),
        FileKind::ReadOnly => Err(Error::Unsupported {
            path: path.to_owned(),
            what: "a read-only queue file",
            reason: "taking a place in the queue needs write access; \
                     create it with permissions 0o666 (or 0o664 and a shared group) \
                     for users who share it"
                .into(),
        }),
        FileKind::Other => Err(Error::InvalidInput {
            path: path.to_owned(),
            reason: "the queue file is not a regular file".into(),
        }),
    }
}

/// Whether `file` is still the file at `path` (nobody removed the idle
/// queue file since we opened it). (The ticket path's cheap check is
/// [`QueueFile::linked`]: only our own protocol removes the queue file, and
/// it unlinks it, which the link count shows.)
pub(crate) fn still_linked(file: &File, path: &Path) -> std::io::Result<bool> {
    if sys::is_unlinked(file)? {
        return Ok(false);
    }
    match sys::path_id(path) {
        Ok(id) => Ok(id == sys::file_id(file)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn ticket_range(lo: u64, hi: Option<u64>, exclusive: bool) -> Range {
    Range {
        start: TICKET_BASE + lo,
        len: hi.map_or(0, |hi| hi - lo),
        exclusive,
    }
}

/// Whether another open file description holds a lock among tickets
/// `[lo, hi)` (`hi` `None`: all tickets from `lo` on) that conflicts with a
/// lock of the given kind: a write probe sees every ticket, a read probe
/// only writers.
fn conflict(file: &File, lo: u64, hi: Option<u64>, exclusive: bool) -> std::io::Result<bool> {
    if hi.is_some_and(|hi| hi <= lo) {
        return Ok(false);
    }
    Ok(sys::range_conflict(file, ticket_range(lo, hi, exclusive))?.is_some())
}

/// The highest ticket below `t` held by someone else in a way that
/// conflicts with a `exclusive` probe: the predecessor to wait for. `None`:
/// nobody is ahead of `t`. Costs two `F_OFD_GETLK` calls when the direct
/// predecessor is alive, O(log distance) otherwise.
pub(crate) fn highest_below(file: &File, t: u64, exclusive: bool) -> std::io::Result<Option<u64>> {
    if !conflict(file, 0, Some(t), exclusive)? {
        return Ok(None);
    }
    // Exponential search for a window [t - span, t) with a conflict.
    let mut span = 1u64;
    let lo = loop {
        let lo = t.saturating_sub(span);
        if conflict(file, lo, Some(t), exclusive)? {
            break lo;
        }
        if lo == 0 {
            // It left between the two probes.
            return Ok(None);
        }
        span = span.saturating_mul(2);
    };
    Ok(Some(bisect(file, lo, t - span / 2, Some(t), exclusive)?))
}

/// Largest `b` in `[lo, hi)` with a conflict in `[b, end)`, given one in
/// `[lo, end)` and none in `[hi, end)` (`lo` if they move meanwhile).
fn bisect(
    file: &File,
    mut lo: u64,
    mut hi: u64,
    end: Option<u64>,
    exclusive: bool,
) -> std::io::Result<u64> {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if conflict(file, mid, end, exclusive)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The highest ticket at or above `from` held by anyone else.
fn highest_from(file: &File, from: u64) -> std::io::Result<Option<u64>> {
    if !conflict(file, from, None, true)? {
        return Ok(None);
    }
    let mut hi = from.saturating_add(1).max(1);
    while hi < WRAP_TICKET * 2 && conflict(file, hi, None, true)? {
        hi = hi.saturating_mul(2);
    }
    Ok(Some(bisect(file, from, hi, None, true)?))
}

/// Number of tickets held by other open file descriptions (the waiters and
/// holders of the queue, seen from outside).
pub(crate) fn live_tickets(file: &File) -> std::io::Result<usize> {
    let mut n = 0;
    let mut below = None::<u64>;
    loop {
        let top = match below {
            None => highest_from(file, 0)?,
            Some(b) => highest_below(file, b, true)?,
        };
        match top {
            Some(t) => {
                n += 1;
                below = Some(t);
            }
            None => return Ok(n),
        }
    }
}

/// Whether any slot or ticket of the queue file is held by someone else.
pub(crate) fn in_use(file: &File) -> std::io::Result<bool> {
    Ok(sys::range_conflict(
        file,
        Range {
            start: SLOT_BASE,
            len: 0,
            exclusive: true,
        },
    )?
    .is_some())
}

/// Checks (and, on an empty file, writes) the header. Call with the
/// counter lock held.
fn check_header(file: &File, path: &Path, kind: Kind) -> Result<(Option<u64>, usize)> {
    let mut buf = [0u8; MAX_HEADER];
    let n = sys::read_head(file, &mut buf).map_err(|e| Error::io(IoOp::ReadQueueFile, path, e))?;
    match parse_header(&buf[..n]) {
        Ok(None) => {
            sys::write_head(file, &encode_header(kind, 0), n)
                .map_err(|e| Error::io(IoOp::WriteQueue, path, e))?;
            Ok((Some(0), MAX_HEADER.min(encode_header(kind, 0).len())))
        }
        Ok(Some(h)) if h.kind == kind => Ok((h.next, n)),
        Ok(Some(h)) => Err(Error::InvalidInput {
            path: path.to_owned(),
            reason: format!(
                "this queue file belongs to {}, not to {}",
                describe_kind(h.kind),
                describe_kind(kind)
            ),
        }),
        Err(why) => Err(Error::InvalidInput {
            path: path.to_owned(),
            reason: format!("not a holdfast queue file ({why}); refusing to overwrite it"),
        }),
    }
}

fn describe_kind(k: Kind) -> String {
    match k {
        Kind::Fifo => "a FIFO lock".into(),
        Kind::Semaphore(n) => format!("a semaphore with {n} permits"),
    }
}

/// Validates the header of a freshly opened queue file (taking the counter
/// lock briefly): a mismatch is reported at open time.
pub(crate) fn check_on_open(file: &File, path: &Path, kind: Kind) -> Result<()> {
    sys::range_lock(file, COUNTER, true).map_err(|e| Error::io(IoOp::LockQueue, path, e))?;
    let r = check_header(file, path, kind).map(drop);
    let _ = sys::range_unlock(file, COUNTER.start, COUNTER.len);
    r
}

/// A ticket just issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    /// Its number.
    pub ticket: u64,
    /// No other ticket was live when it was issued: it is the head of the
    /// queue (nothing is ever issued below a live ticket).
    pub head: bool,
}

/// What a ticket taker learns under the counter lock before it takes one:
/// the stored counter and whether anyone is in line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Draw {
    /// The stored counter (`None`: damaged, recovered from the live locks).
    next: Option<u64>,
    /// The header's length now.
    old_len: usize,
    /// Read through the mapping (written back the same way).
    mapped: bool,
    /// No ticket is live: the queue is empty.
    pub empty: bool,
}

impl Draw {
    /// The stored counter, or 0 where it was damaged.
    pub(crate) fn next(&self) -> u64 {
        self.next.unwrap_or(0)
    }
}

/// Reads the counter (through the queue file's mapping when it can,
/// [`QueueFile`]) and asks, with one `F_OFD_GETLK` over every ticket,
/// whether anyone is in line. Call with the counter lock held.
fn draw(q: &mut QueueFile, path: &Path, kind: Kind) -> Result<Draw> {
    let (next, old_len, mapped) = match q.mapped_next(kind) {
        Some(m) => (Some(m.next), m.len, true),
        None => {
            let (next, len) = check_header(&q.file, path, kind)?;
            (next, len, false)
        }
    };
    let empty =
        !conflict(&q.file, 0, None, true).map_err(|e| Error::io(IoOp::TakeTicket, path, e))?;
    Ok(Draw {
        next,
        old_len,
        mapped,
        empty,
    })
}

/// Stores `next` as the counter (after [`draw`], under the same counter
/// lock): through the mapping when the draw read it there, else `pwrite`.
fn store_next(q: &mut QueueFile, path: &Path, kind: Kind, d: &Draw, next: u64) -> Result<()> {
    if d.mapped && q.patch_next(kind, next) {
        return Ok(());
    }
    sys::write_head(&q.file, &encode_header(kind, next), d.old_len)
        .map_err(|e| Error::io(IoOp::WriteQueue, path, e))?;
    q.header_seen();
    Ok(())
}

/// Issues the next ticket and takes its byte lock. Call with the counter
/// lock held, after [`draw`]. The stored counter is only a hint: the ticket
/// issued is always above every live ticket, so a damaged or rewound
/// counter cannot put a newcomer ahead of a waiter. When the draw found
/// the queue empty (the uncontended case) that is already known, and so is
/// that the new ticket is the head: no more probes.
fn issue_ticket(
    q: &mut QueueFile,
    path: &Path,
    kind: Kind,
    exclusive: bool,
    d: &Draw,
) -> Result<Issued> {
    let io = |e| Error::io(IoOp::TakeTicket, path, e);
    let file = &q.file;
    let mut t = d.next();
    let mut head = d.empty;
    if !head && let Some(h) = highest_from(file, t).map_err(io)? {
        t = h + 1;
    }
    if t >= WRAP_TICKET || (t >= RESTART_TICKET && !in_use(file).map_err(io)?) {
        t = 0;
    }
    // Under the counter lock nobody else takes a ticket, and every live
    // ticket is below `t`: the byte is free. Be defensive all the same.
    let mut tries = 0;
    while !sys::range_lock(file, Range::byte(TICKET_BASE + t, exclusive), false).map_err(io)? {
        t += 1;
        tries += 1;
        head = false;
        if tries > 64 {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                reason: "no free ticket found above the live ones".into(),
            });
        }
    }
    if let Err(e) = store_next(q, path, kind, d, t + 1) {
        let _ = sys::range_unlock(&q.file, TICKET_BASE + t, 1);
        return Err(e);
    }
    Ok(Issued { ticket: t, head })
}

/// Removes the queue file if nobody uses it: no ticket, no slot, and the
/// counter lock free (someone taking a ticket holds it). Safe against a
/// newcomer who opened the file just before: it takes the counter lock
/// after us, sees the file unlinked, and reopens the path.
pub(crate) fn remove_if_idle(file: &File, path: &Path) -> std::io::Result<bool> {
    if !sys::range_lock(file, COUNTER, false)? {
        return Ok(false);
    }
    let removed = (|| {
        if !still_linked(file, path)? || in_use(file)? {
            return Ok(false);
        }
        // Never remove a file that is not ours.
        let mut buf = [0u8; MAX_HEADER];
        let n = sys::read_head(file, &mut buf)?;
        if parse_header(&buf[..n]).is_err() {
            return Ok(false);
        }
        std::fs::remove_file(path)?;
        Ok(true)
    })();
    let _ = sys::range_unlock(file, COUNTER.start, COUNTER.len);
    removed
}

/// Which file of an acquisition a wait is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The queue file (counter, tickets, slots).
    Queue,
    /// The main lock file of a FIFO lock.
    Main,
}

/// What an acquisition needs next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Acquired.
    Ready,
    /// Block until one of `reqs` on the `target` file is granted, then call
    /// [`Machine::granted`] with its index.
    Wait {
        target: Target,
        reqs: Vec<LockReq>,
        /// A brief wait on another process's bookkeeping (the counter
        /// lock), not on a holder: a non-blocking attempt waits for it up
        /// to [`SHORT_WAIT`].
        short: bool,
    },
}

/// An acquisition as a sequence of non-blocking steps, so that the
/// blocking and the async drivers share every decision.
pub(crate) trait Machine {
    /// Does all the work that needs no waiting.
    fn advance(&mut self) -> Result<Step>;
    /// The wait returned with request `index` granted (and held).
    fn granted(&mut self, index: usize) -> Result<()>;
    /// The open file for a target.
    fn file(&self, target: Target) -> &File;
    /// Its path, for errors.
    fn path(&self, target: Target) -> &Path;
    /// The contention error for `wait` ([`Wait::NoWait`]: would block;
    /// otherwise timed out) naming whoever is in the way, built with
    /// [`crate::acquire::contention`]. The machine is dropped afterwards,
    /// which releases whatever it held.
    fn contention(&mut self, wait: Wait, started: Instant) -> Error;
    /// What a [`WaitObserver`] is told when the acquisition starts to wait.
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting;
}

/// When a wait of this kind must give up, for this `wait` policy.
pub(crate) fn wait_deadline(
    wait: Wait,
    started: Instant,
    short: bool,
) -> Result<Option<Instant>, ()> {
    match wait {
        Wait::NoWait if short => Ok(Some(Instant::now() + SHORT_WAIT)),
        Wait::NoWait => Err(()),
        Wait::Forever => Ok(None),
        Wait::Timeout(d) => Ok(Some(started.checked_add(d).unwrap_or_else(far_future))),
        Wait::Deadline(d) => Ok(Some(d)),
    }
}

pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Runs a machine to completion, blocking the calling thread in the kernel
/// (`sys::wait_any`: the killable waiter task, or bounded polling where it
/// is forbidden). `started` is when the acquisition began: a timeout
/// counts from there. `observer` is told when a wait on a holder (not a
/// brief wait on another process's bookkeeping) begins and ends.
pub(crate) fn drive<M: Machine>(
    m: &mut M,
    wait: Wait,
    started: Instant,
    observer: &dyn WaitObserver,
) -> Result<()> {
    let mut watch = Watch::new(observer);
    loop {
        match m.advance()? {
            Step::Ready => return Ok(()),
            Step::Wait {
                target,
                reqs,
                short,
            } => {
                let Ok(deadline) = wait_deadline(wait, started, short) else {
                    return Err(m.contention(Wait::NoWait, started));
                };
                if !short {
                    watch.start(|| m.waiting(started, deadline));
                }
                let got = sys::wait_any(m.file(target), &reqs, deadline)
                    .map_err(|e| Error::io(IoOp::WaitInQueue, m.path(target), e))?;
                match got {
                    Some(i) => m.granted(i)?,
                    None => return Err(m.contention(wait, started)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(Kind::Semaphore(4), 42);
        assert_eq!(
            parse_header(&h).unwrap(),
            Some(Header {
                kind: Kind::Semaphore(4),
                next: Some(42)
            })
        );
        assert_eq!(parse_header(b"").unwrap(), None);
        assert!(parse_header(b"precious data").is_err());
        assert!(parse_header(b"holdfast-queue 1\n").is_err(), "no kind");
        assert_eq!(
            parse_header(b"holdfast-queue 1\nkind fifo\nnext 00x\n").unwrap(),
            Some(Header {
                kind: Kind::Fifo,
                next: None
            })
        );
        assert_eq!(
            encode_header(Kind::Fifo, 1).len(),
            encode_header(Kind::Fifo, 99).len()
        );
    }

    fn two(dir: &Path) -> (File, File) {
        let p = dir.join("q");
        (
            open_queue(&p, 0o644).unwrap(),
            open_queue(&p, 0o644).unwrap(),
        )
    }

    #[test]
    fn highest_below_finds_the_nearest_live_predecessor() {
        let d = tempfile::tempdir().unwrap();
        let (a, probe) = two(d.path());
        for t in [3u64, 17, 18, 1000, 5000] {
            assert!(sys::range_lock(&a, Range::byte(TICKET_BASE + t, true), false).unwrap());
        }
        assert_eq!(highest_below(&probe, 3, true).unwrap(), None);
        assert_eq!(highest_below(&probe, 4, true).unwrap(), Some(3));
        assert_eq!(highest_below(&probe, 17, true).unwrap(), Some(3));
        assert_eq!(highest_below(&probe, 19, true).unwrap(), Some(18));
        assert_eq!(highest_below(&probe, 4999, true).unwrap(), Some(1000));
        assert_eq!(highest_below(&probe, 1 << 40, true).unwrap(), Some(5000));
        assert_eq!(highest_from(&probe, 0).unwrap(), Some(5000));
        assert_eq!(highest_from(&probe, 5001).unwrap(), None);
        assert_eq!(live_tickets(&probe).unwrap(), 5);
    }

    #[test]
    fn readers_only_see_writers() {
        let d = tempfile::tempdir().unwrap();
        let (a, probe) = two(d.path());
        assert!(sys::range_lock(&a, Range::byte(TICKET_BASE + 5, true), false).unwrap());
        assert!(sys::range_lock(&a, Range::byte(TICKET_BASE + 9, false), false).unwrap());
        assert_eq!(highest_below(&probe, 12, true).unwrap(), Some(9));
        assert_eq!(highest_below(&probe, 12, false).unwrap(), Some(5));
    }

    #[test]
    fn a_rewound_counter_still_issues_a_ticket_above_the_live_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q");
        let (a, b) = two(d.path());
        let (mut a, mut b) = (QueueFile::new(a), QueueFile::new(b));
        let issued = |q: &mut QueueFile, kind| {
            let d = draw(q, &p, kind)?;
            issue_ticket(q, &p, kind, true, &d)
        };
        let issue = |q: &mut QueueFile, kind| issued(q, kind).map(|i| i.ticket);
        sys::range_lock(&a.file, COUNTER, true).unwrap();
        let i0 = issued(&mut a, Kind::Fifo).unwrap();
        let t1 = issue(&mut a, Kind::Fifo).unwrap();
        sys::range_unlock(&a.file, 0, 1).unwrap();
        assert_eq!((i0.ticket, t1), (0, 1));
        assert!(i0.head, "nobody was in line");
        // Rewind the stored counter to 0 and damage it.
        sys::write_head(&b.file, &encode_header(Kind::Fifo, 0), MAX_HEADER).unwrap();
        sys::range_lock(&b.file, COUNTER, true).unwrap();
        let i2 = issued(&mut b, Kind::Fifo).unwrap();
        assert_eq!(
            i2,
            Issued {
                ticket: 2,
                head: false
            }
        );
        // The same, with the counter read through b's mapping now (b's
        // first ticket saw the header whole): rewound again, repaired again.
        sys::range_unlock(&b.file, TICKET_BASE + 2, 1).unwrap();
        sys::write_head(&b.file, &encode_header(Kind::Fifo, 1), MAX_HEADER).unwrap();
        assert_eq!(issue(&mut b, Kind::Fifo).unwrap(), 2);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            encode_header(Kind::Fifo, 3),
            "the counter written back"
        );
        let mut c = QueueFile::new(open_queue(&p, 0o644).unwrap());
        // (Each ticket has its own open file description in real use: our
        // own locks are invisible to our probes.)
        std::fs::write(&p, b"holdfast-queue 1\nkind fifo\nnext garbage\n").unwrap();
        assert_eq!(issue(&mut c, Kind::Fifo).unwrap(), 3);
        // A different kind is refused, and foreign content is never touched.
        assert!(matches!(
            issue(&mut b, Kind::Semaphore(2)),
            Err(Error::InvalidInput { .. })
        ));
        std::fs::write(&p, b"user data").unwrap();
        assert!(issue(&mut b, Kind::Fifo).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"user data");
    }

    #[test]
    fn the_idle_file_is_removed_only_when_idle() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q");
        let (a, b) = two(d.path());
        assert!(sys::range_lock(&a, Range::byte(TICKET_BASE + 7, true), false).unwrap());
        assert!(!remove_if_idle(&b, &p).unwrap(), "a ticket is live");
        sys::range_unlock(&a, TICKET_BASE + 7, 1).unwrap();
        sys::range_lock(&a, COUNTER, true).unwrap();
        assert!(
            !remove_if_idle(&b, &p).unwrap(),
            "someone is taking a ticket"
        );
        sys::range_unlock(&a, 0, 1).unwrap();
        assert!(remove_if_idle(&b, &p).unwrap());
        assert!(!p.exists());
        assert!(!still_linked(&a, &p).unwrap());
    }
}
