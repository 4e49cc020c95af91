//! The record at the head of a lock file: written cheaply on every
//! exclusive acquisition ([`RecordTemplate`], with the next fencing token),
//! and read back ([`read_record`]).

use std::fs::File;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use super::record::{HolderRecord, MAGIC, MAX_RECORD, RecordContent, encode_head, encode_tail};
use crate::mode::Mode;
use crate::sys;

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
    /// (Boxed: it is used from the second acquisition on, and every
    /// `Lock` carries a template.)
    #[cfg(target_os = "linux")]
    mapped: Option<Box<Mapped>>,
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
            t.mapped = Some(Box::new(Mapped {
                file: file.clone(),
                map: None,
                faults: 0,
                head: Box::new([0; sys::mapped::LEN]),
            }));
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
        // A buffer kept with the mapping: zeroing 4 KiB on the stack at
        // every acquisition was a tenth of the record's cost.
        let head = &mut *m.head;
        let Some(n) = map.read(head) else {
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
pub(super) struct Mapped {
    file: std::sync::Arc<File>,
    map: Option<sys::mapped::HeadMap>,
    faults: u8,
    /// Where the mapped head is copied to be read.
    head: Box<[u8; sys::mapped::LEN]>,
}

#[cfg(target_os = "linux")]
impl Mapped {
    /// A file that keeps being truncated (a filelock peer opens it with
    /// `O_TRUNC` at every attempt) stops being mapped after this many
    /// faults: each costs a signal and a new mapping.
    pub(super) const MAX_FAULTS: u8 = 8;
}

/// The token the next exclusive holder gets, from the current head of the
/// file; `None` for foreign content (never overwritten).
pub(super) fn next_token(head: &[u8], overflow: bool) -> Option<u64> {
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
