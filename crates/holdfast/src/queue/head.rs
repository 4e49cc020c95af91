//! An open queue file, and its header's ticket counter read and patched
//! through a shared mapping instead of `pread` + `pwrite`.
//!
//! Taking a ticket reads the counter and writes it back, under the counter
//! lock. Through `pread`/`pwrite` that is two system calls per acquisition,
//! and on ext4 each one dirties the inode (the write updates the
//! timestamps, and with `relatime` the read after a write updates the
//! access time): 40 % of an uncontended FIFO cycle. Patched in the page
//! cache through a `MAP_SHARED` mapping ([`crate::sys::mapped`], guarded
//! against `SIGBUS`) it costs no system call, and every other process,
//! `pread`ing older holdfast versions included, sees the same bytes at
//! once: the format on disk does not change.
//!
//! The mapping is only used while the header is exactly the one this
//! version writes (`holdfast-queue 1`, the kind, `next` as 20 digits,
//! `end`): anything else (an empty file, a damaged counter, foreign
//! content, a header of another length) takes the `pread` road, which
//! repairs or refuses it as before. A description's first ticket always
//! takes that road; the mapping is made after it saw a complete header.
//! A peer that truncates the file under the mapping makes the access fault
//! into the guard: that ticket falls back to `pread`/`pwrite`, and after
//! [`MAX_FAULTS`] faults the description stops mapping.

use std::fs::File;

use super::{Kind, encode_header};
use crate::sys;

/// After this many faults of its mapping (a file cut under it again and
/// again), a queue file description stays on `pread`/`pwrite`.
#[cfg(target_os = "linux")]
const MAX_FAULTS: u8 = 8;

/// Width of the counter in the header (`next {:020}`).
const DIGITS: usize = 20;
/// What follows the counter.
const TAIL: &[u8] = b"\nend\n";

/// An open queue file (one open file description: its locks are this
/// acquisition's), with the mapping of its header once it is known.
#[derive(Debug)]
pub(crate) struct QueueFile {
    /// The open file.
    pub(crate) file: File,
    /// The mapped header (Linux), `None` until a complete header was seen
    /// through `pread`, where mapping is not possible, or after a fault.
    #[cfg(target_os = "linux")]
    map: Option<crate::sys::mapped::HeadMap>,
    /// The buffer the mapped header is copied into (kept: zeroing 4 KiB
    /// per ticket costs more than the copy).
    #[cfg(target_os = "linux")]
    buf: Option<Box<[u8; crate::sys::mapped::LEN]>>,
    /// The header may be mapped now: the `pread` road saw it complete.
    seen: bool,
    /// How often the mapping faulted (`u8::MAX`: never map).
    faults: u8,
    /// The header this version writes for `header.0` (a kind), with the
    /// counter patched in before each mapped write (built once).
    header: Option<(Kind, Vec<u8>)>,
    /// Whether the file is still the one at the path (the idle queue file
    /// may have been removed since the last ticket).
    pub(crate) linked: LinkCheck,
}

/// The counter as read through the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedNext {
    /// The next ticket to issue.
    pub next: u64,
    /// The header's length (the file is at least this long).
    pub len: usize,
}

impl QueueFile {
    pub(crate) fn new(file: File) -> QueueFile {
        QueueFile {
            file,
            #[cfg(target_os = "linux")]
            map: None,
            #[cfg(target_os = "linux")]
            buf: None,
            seen: false,
            faults: 0,
            header: None,
            linked: LinkCheck::default(),
        }
    }

    /// The header's counter read through the mapping, if the header there
    /// is exactly one of ours for `kind`. `None`: take the `pread` road
    /// ([`super::check_header`]), then call [`QueueFile::header_seen`].
    /// Call with the counter lock held.
    pub(crate) fn mapped_next(&mut self, kind: Kind) -> Option<MappedNext> {
        #[cfg(target_os = "linux")]
        {
            use crate::sys::mapped::{HeadMap, LEN};
            if self.map.is_none() {
                if !self.seen || self.faults >= MAX_FAULTS {
                    return None;
                }
                self.map = HeadMap::new(&self.file);
                if self.map.is_none() {
                    self.faults = u8::MAX; // not mappable here: never again
                    return None;
                }
            }
            let map = self.map.as_mut()?;
            let head = &mut **self.buf.get_or_insert_with(|| Box::new([0u8; LEN]));
            let Some(n) = map.read(head) else {
                self.fault();
                return None;
            };
            let template = match &self.header {
                Some((k, t)) if *k == kind => t,
                _ => &self.header.insert((kind, encode_header(kind, 0))).1,
            };
            let next = parse_own_as(&head[..n], template)?;
            Some(MappedNext { next, len: n })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = kind;
            None
        }
    }

    /// Writes the header with counter `next` through the mapping; `false`
    /// if that faulted (write it with `pwrite` then). Only after
    /// [`mapped_next`](Self::mapped_next) returned a header of the same
    /// length, under the same counter lock.
    pub(crate) fn patch_next(&mut self, kind: Kind, next: u64) -> bool {
        #[cfg(target_os = "linux")]
        {
            if self.map.is_none() {
                return false;
            }
            let header = self.template(kind);
            let at = header.len() - TAIL.len() - DIGITS;
            let mut n = next;
            for d in header[at..at + DIGITS].iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            // (20 digits hold every u64.)
            let header = &self.header.as_ref().expect("just built").1;
            if let Some(map) = self.map.as_mut()
                && map.write(header)
            {
                return true;
            }
            self.fault();
            false
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (kind, next);
            false
        }
    }

    /// The header this version writes for `kind` (its counter is whatever
    /// was patched in last).
    #[cfg(target_os = "linux")]
    fn template(&mut self, kind: Kind) -> &mut Vec<u8> {
        if self.header.as_ref().is_none_or(|(k, _)| *k != kind) {
            self.header = Some((kind, encode_header(kind, 0)));
        }
        &mut self.header.as_mut().expect("just set").1
    }

    /// The `pread` road read (or wrote) a complete header of ours: the next
    /// ticket may go through the mapping.
    pub(crate) fn header_seen(&mut self) {
        self.seen = true;
    }

    #[cfg(target_os = "linux")]
    fn fault(&mut self) {
        self.map = None;
        self.faults = self.faults.saturating_add(1);
    }
}

/// The counter of a header that is exactly what this version writes for
/// `kind` (what [`encode_header`] makes); `None` for anything else.
#[cfg(test)]
fn parse_own(head: &[u8], kind: Kind) -> Option<u64> {
    parse_own_as(head, &encode_header(kind, 0))
}

/// As [`parse_own`], against the header `template` (any counter).
fn parse_own_as(head: &[u8], template: &[u8]) -> Option<u64> {
    if head.len() != template.len() {
        return None;
    }
    let at = template.len() - TAIL.len() - DIGITS;
    if head[..at] != template[..at] || head[at + DIGITS..] != template[at + DIGITS..] {
        return None;
    }
    head[at..at + DIGITS].iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// "Is this open file still linked?" for a file checked at every
/// acquisition (the queue file before a ticket, the FIFO's lock file after
/// its kernel lock): through the process's inotify watch
/// ([`sys::PathWatch`], one `epoll_wait` that answers for every watched
/// file) from the second check on, with a full `statx` only after an event
/// (or where no watch can be had), as [`crate::Lock`]'s path check does.
/// Keep one per open file description; a reopened file gets a new one.
#[derive(Debug, Default)]
pub(crate) struct LinkCheck {
    watch: Option<sys::PathWatch>,
    /// 0: never checked; 1: checked once (a process that locks once never
    /// pays for a watch); 2: the watch was set up.
    step: u8,
}

impl LinkCheck {
    /// Whether `file` (always the same description) has been unlinked.
    pub(crate) fn is_unlinked(&mut self, file: &File) -> std::io::Result<bool> {
        if let Some(w) = self.watch.as_mut() {
            match w.unchanged() {
                Some(true) => return Ok(false),
                Some(false) => return sys::is_unlinked(file),
                // Made before a fork: this process registers anew.
                None => {
                    self.watch = None;
                    self.step = 1;
                }
            }
        }
        match self.step {
            0 => self.step = 1,
            1 => {
                // Watch first, then check in full: a change after this
                // raises an event, one before it is seen by the check.
                self.watch = sys::PathWatch::new(file);
                self.step = 2;
            }
            _ => {}
        }
        sys::is_unlinked(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_own_accepts_only_our_exact_header() {
        let h = encode_header(Kind::Fifo, 42);
        assert_eq!(parse_own(&h, Kind::Fifo), Some(42));
        assert_eq!(parse_own(&h, Kind::Semaphore(2)), None, "other kind");
        let s = encode_header(Kind::Semaphore(3), u64::MAX);
        assert_eq!(parse_own(&s, Kind::Semaphore(3)), Some(u64::MAX));
        assert_eq!(parse_own(&s, Kind::Semaphore(4)), None);
        assert_eq!(parse_own(b"", Kind::Fifo), None);
        let mut damaged = h.clone();
        damaged[40] = b'x';
        assert_eq!(parse_own(&damaged, Kind::Fifo), None);
        assert_eq!(parse_own(&h[..h.len() - 1], Kind::Fifo), None);
        let too_big = b"holdfast-queue 1\nkind fifo\nnext 99999999999999999999\nend\n";
        assert_eq!(parse_own(too_big, Kind::Fifo), None, "overflow");
    }

    /// The counter goes through the mapping once the header was seen, the
    /// file sees the same bytes (older versions `pread` them), and a file
    /// cut under the mapping is a fault and a fall back, not a crash.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_mapped_counter_is_the_files_and_survives_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q");
        std::fs::write(&p, encode_header(Kind::Fifo, 7)).unwrap();
        let f = File::options().read(true).write(true).open(&p).unwrap();
        let mut q = QueueFile::new(f);
        assert_eq!(
            q.mapped_next(Kind::Fifo),
            None,
            "not seen through pread yet"
        );
        q.header_seen();
        let Some(got) = q.mapped_next(Kind::Fifo) else {
            return; // not mappable on this filesystem
        };
        assert_eq!(got.next, 7);
        assert!(q.patch_next(Kind::Fifo, 8));
        assert_eq!(std::fs::read(&p).unwrap(), encode_header(Kind::Fifo, 8));
        // Another process writes it (an older version's pwrite).
        std::fs::write(&p, encode_header(Kind::Fifo, 30)).unwrap();
        assert_eq!(q.mapped_next(Kind::Fifo).map(|m| m.next), Some(30));
        // Damaged or foreign: not ours to patch, the pread road decides.
        std::fs::write(
            &p,
            b"holdfast-queue 1\nkind fifo\nnext 0000000000000000000x\nend\n",
        )
        .unwrap();
        assert_eq!(q.mapped_next(Kind::Fifo), None);
        // Cut under the mapping (truncated to nothing).
        File::options().write(true).truncate(true).open(&p).unwrap();
        assert_eq!(q.mapped_next(Kind::Fifo), None, "a fault, not a crash");
        assert!(!q.patch_next(Kind::Fifo, 9), "the faulted mapping is gone");
        assert_eq!(std::fs::read(&p).unwrap(), b"", "nothing written");
        // Written whole again: mapped again.
        std::fs::write(&p, encode_header(Kind::Fifo, 31)).unwrap();
        assert_eq!(q.mapped_next(Kind::Fifo).map(|m| m.next), Some(31));
    }
}
