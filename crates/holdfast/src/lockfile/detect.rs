//! Telling which lock-file protocol and format a path holds, from what is
//! there: for tools that look at (or break) a lock without being told how
//! it was made.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::options::LockFileOptions;
use super::record::{self, LockRecord};
use super::{Compat, LockFile, Protocol, core};
use crate::error::{Error, IoOp, Result};
use crate::sys;

impl LockFile {
    /// Opens the lock-file lock at `path` with the protocol and format its
    /// content shows, or `None` if `path` holds no lock-file lock. `path` is
    /// the lock object itself (for a lockfile-format lock, the `.lock`
    /// name). The options are the protocol's defaults.
    ///
    /// | at `path` | detected as |
    /// |---|---|
    /// | a file holding a holdfast record with a `claim` line | [`Protocol::Link`], [`Compat::Lockfile`] |
    /// | a file holding a holdfast record without one (or a damaged one, or holdfast's released mark) | [`Protocol::Soft`], [`Compat::Holdfast`] |
    /// | a file holding a flufl.lock claim (`<path>\|<host>\|<pid>\|<random>`) | [`Protocol::Link`], [`Compat::Flufl`] |
    /// | a file holding a filelock `SoftFileLock` record, break placeholder, released mark or strict sentinel | [`Protocol::Soft`], [`Compat::Filelock`] |
    /// | an empty file named `*.lock` with another hard link (lockfile's `LinkLockFile`) | [`Protocol::Link`], [`Compat::Lockfile`] |
    /// | a directory holding a `*.holdfast` record, or an empty directory named `*.lock` | [`Protocol::Mkdir`], [`Compat::Holdfast`] |
    /// | a directory named `*.lock` holding a lockfile unique name (`MkdirLockFile`) | [`Protocol::Mkdir`], [`Compat::Lockfile`] |
    ///
    /// Not detected (`None`): nothing at `path`; an empty file with one
    /// link (what flock(1) and kernel-lock users leave, and also filelock's
    /// markers before 3.22); a bare pid (a pid file); a holdfast *kernel*
    /// lock's holder record; a claim file (it names itself: its lock is the
    /// other name); anything else, such as data. Open those with
    /// [`LockFile::open`] if you know better.
    ///
    /// ```
    /// use holdfast::lockfile::{Compat, LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.lock");
    /// assert!(LockFile::detect(&path)?.is_none());
    /// let lock = LockFile::open(&path, Protocol::Soft)?;
    /// let _g = lock.lock()?;
    /// let seen = LockFile::detect(&path)?.expect("a soft lock");
    /// assert_eq!((seen.protocol(), seen.compat()), (Protocol::Soft, Compat::Holdfast));
    /// assert!(seen.status()?.holder.unwrap().this_process);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Symlink`] if `path` is a symbolic link; [`Error::Io`] if it
    /// exists but cannot be read.
    pub fn detect(path: impl AsRef<Path>) -> Result<Option<LockFile>> {
        let path = path.as_ref();
        let Some(kind) = sniff(path)? else {
            return Ok(None);
        };
        let (protocol, compat) = kind;
        let mut opts = LockFileOptions::new(protocol);
        opts.compat(compat);
        LockFile::build(path, opts, true).map(Some)
    }
}

/// The protocol and format of what is at `path`, from its type, name and
/// content.
fn sniff(path: &Path) -> Result<Option<(Protocol, Compat)>> {
    let file = match sys::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Symlink {
                    path: path.to_owned(),
                });
            }
            return Err(Error::io(IoOp::Open, path, e));
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(IoOp::Inspect, path, e))?;
    let name = path.file_name().unwrap_or_default();
    let named_lock = name.to_string_lossy().ends_with(".lock");
    if meta.is_dir() {
        return sniff_dir(path, named_lock);
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let bytes = core::read_head(&file, record::MAX_RECORD + 1)
        .map_err(|e| Error::io(IoOp::Read, path, e))?;
    Ok(sniff_file(&bytes, name, named_lock, meta.nlink()))
}

fn sniff_dir(path: &Path, named_lock: bool) -> Result<Option<(Protocol, Compat)>> {
    let mut names: Vec<String> = match std::fs::read_dir(path) {
        Ok(it) => it
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(IoOp::List, path, e)),
    };
    names.sort();
    let raw: Vec<std::ffi::OsString> = names.iter().map(Into::into).collect();
    if super::mkdir::foreign_entry(path, &raw).is_some() {
        // Not a lock by the mkdir rule (see mkdir::foreign_entry).
        return Ok(None);
    }
    if names.iter().any(|n| n.ends_with(record::CLAIM_SUFFIX)) {
        return Ok(Some((Protocol::Mkdir, Compat::Holdfast)));
    }
    if !named_lock {
        return Ok(None);
    }
    match names.as_slice() {
        [] => Ok(Some((Protocol::Mkdir, Compat::Holdfast))),
        // lockfile's unique names are `<host>.<tname><pid>`: a dot, and a
        // digit at the end.
        [one] if one.contains('.') && one.ends_with(|c: char| c.is_ascii_digit()) => {
            Ok(Some((Protocol::Mkdir, Compat::Lockfile)))
        }
        _ => Ok(None),
    }
}

fn sniff_file(
    bytes: &[u8],
    name: &OsStr,
    named_lock: bool,
    nlink: u64,
) -> Option<(Protocol, Compat)> {
    if bytes == record::RELEASED {
        return Some((Protocol::Soft, Compat::Holdfast));
    }
    if bytes == record::FILELOCK_RELEASED
        || bytes == record::FILELOCK_STRICT
        || record::filelock_placeholder_pid(bytes).is_some()
    {
        return Some((Protocol::Soft, Compat::Filelock));
    }
    if bytes.starts_with(record::MAGIC.as_bytes()) {
        return match LockRecord::parse(bytes) {
            Ok(r) => match r.claim {
                Some(claim) if core::base_name(OsStr::new(&claim)) == name => None,
                Some(_) => Some((Protocol::Link, Compat::Lockfile)),
                None => Some((Protocol::Soft, Compat::Holdfast)),
            },
            Err(_) => Some((Protocol::Soft, Compat::Holdfast)),
        };
    }
    if record::parse_filelock(bytes).is_some() {
        return Some((Protocol::Soft, Compat::Filelock));
    }
    if let Some(c) = record::parse_flufl(bytes) {
        return if core::base_name(&c.claim) == name {
            None
        } else {
            Some((Protocol::Link, Compat::Flufl))
        };
    }
    if bytes.is_empty() && nlink >= 2 && named_lock {
        return Some((Protocol::Link, Compat::Lockfile));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(bytes: &[u8], name: &str, nlink: u64) -> Option<(Protocol, Compat)> {
        sniff_file(bytes, OsStr::new(name), name.ends_with(".lock"), nlink)
    }

    #[test]
    fn files_by_content() {
        assert_eq!(sniffed(b"", "x.lock", 1), None, "flock(1)'s empty file");
        assert_eq!(
            sniffed(b"", "x.lock", 2),
            Some((Protocol::Link, Compat::Lockfile))
        );
        assert_eq!(sniffed(b"", "host-1.4242-123", 2), None, "a lockfile claim");
        assert_eq!(sniffed(b"4242\n", "x.pid", 1), None, "a pid file");
        assert_eq!(sniffed(b"just data", "x", 1), None);
        assert_eq!(
            sniffed(b"holdfast-holder 1\ntoken 3\n", "x.lock", 1),
            None,
            "a kernel lock's holder record"
        );
        assert_eq!(
            sniffed(b"4242\nweb-1\n12345\n", "x.lock", 1),
            Some((Protocol::Soft, Compat::Filelock))
        );
        assert_eq!(
            sniffed(record::FILELOCK_RELEASED, "x.lock", 1),
            Some((Protocol::Soft, Compat::Filelock))
        );
        assert_eq!(
            sniffed(b"/tmp/x.lock|web-1|4242|abc\n", "x.lock", 2),
            Some((Protocol::Link, Compat::Flufl))
        );
        assert_eq!(
            sniffed(b"/tmp/x.lock|web-1|4242|abc", "x.lock|web-1|4242|abc", 2),
            None,
            "the claim file itself"
        );
        assert_eq!(
            sniffed(b"holdfast-lockfile 1\npid 1\n", "x.lock", 1),
            Some((Protocol::Soft, Compat::Holdfast)),
            "a damaged record is still holdfast's"
        );
        assert_eq!(
            sniffed(record::RELEASED, "x.lock", 1),
            Some((Protocol::Soft, Compat::Holdfast))
        );
    }

    #[test]
    fn records_with_and_without_a_claim() {
        let d = tempfile::tempdir().unwrap();
        let soft = LockFile::open(d.path().join("s.lock"), Protocol::Soft).unwrap();
        let _gs = soft.lock().unwrap();
        let lf = LockFile::options(Protocol::Link)
            .compat(Compat::Lockfile)
            .open(d.path().join("data"))
            .unwrap();
        let _gl = lf.lock().unwrap();
        let m = LockFile::open(d.path().join("m.lock"), Protocol::Mkdir).unwrap();
        let _gm = m.lock().unwrap();
        let flufl = LockFile::open(d.path().join("f.lock"), Protocol::Link).unwrap();
        let _gf = flufl.lock().unwrap();
        let mut found = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            if let Some(l) = LockFile::detect(d.path().join(&n)).unwrap() {
                found.push((n.to_string_lossy().into_owned(), l.protocol(), l.compat()));
                assert!(l.status().unwrap().holder.unwrap().this_process);
                assert_eq!(l.path(), d.path().join(&n));
            }
        }
        assert_eq!(
            found,
            [
                ("data.lock".to_owned(), Protocol::Link, Compat::Lockfile),
                ("f.lock".to_owned(), Protocol::Link, Compat::Flufl),
                ("m.lock".to_owned(), Protocol::Mkdir, Compat::Holdfast),
                ("s.lock".to_owned(), Protocol::Soft, Compat::Holdfast),
            ],
            "claim files are not locks of their own"
        );
    }

    #[test]
    fn directories() {
        let d = tempfile::tempdir().unwrap();
        let empty_lock = d.path().join("e.lock");
        std::fs::create_dir(&empty_lock).unwrap();
        assert_eq!(
            sniff(&empty_lock).unwrap(),
            Some((Protocol::Mkdir, Compat::Holdfast))
        );
        let plain = d.path().join("src");
        std::fs::create_dir(&plain).unwrap();
        assert_eq!(sniff(&plain).unwrap(), None, "an empty directory");
        std::fs::write(plain.join("main.rs"), b"").unwrap();
        assert_eq!(sniff(&plain).unwrap(), None);
        let lf = d.path().join("db.lock");
        std::fs::create_dir(&lf).unwrap();
        std::fs::write(lf.join("web-1.-7f3a1b2c4242"), b"").unwrap();
        assert_eq!(
            sniff(&lf).unwrap(),
            Some((Protocol::Mkdir, Compat::Lockfile))
        );
        let link = d.path().join("l.lock");
        std::os::unix::fs::symlink(&lf, &link).unwrap();
        assert!(matches!(sniff(&link), Err(Error::Symlink { .. })));
        assert_eq!(sniff(&d.path().join("none")).unwrap(), None);
    }
}
