//! The fallback marker store: phaselock's `<target>.status` file.
//!
//! # Format (phaselock 1.1.0, byte for byte)
//!
//! UTF-8 text, one completed phase **name** per line (the name, never the
//! xattr `attr_name`), each line ending in `\n`, no duplicates, in the
//! order the phases completed. At most 64 KiB ([`MAX_STATUS_BYTES`]).
//!
//! Python reads the file with `str.splitlines()`, so besides `\n` and
//! `\r\n` it also breaks lines at `\r`, `\v`, `\f`, `\x1c`, `\x1d`, `\x1e`,
//! U+0085, U+2028 and U+2029; empty lines are skipped; a line containing
//! NUL makes the whole file invalid. [`parse`] does exactly the same, so
//! both sides always agree on what a file says. Phase names containing
//! any of those separators are refused up front (see
//! [`validate_name`](super::validate_name)) because they could not
//! round-trip through this file.
//!
//! # What is "corrupt"
//!
//! A file larger than 64 KiB, a file that is not UTF-8, or a line with a
//! NUL byte. phaselock silently treats such a file as empty (and so reruns
//! every phase, then overwrites it); holdfast refuses with
//! [`Error::Corrupt`] naming the file, because "nothing was done" is a
//! guess that re-runs migrations. See the [phase module docs](super) for
//! how to recover.
//!
//! # Writing
//!
//! Always while holding the target's lock (as phaselock does), as a
//! read-modify-write of the whole list: the new content goes to a fresh
//! temporary file `<status>.tmp.<pid>.<time_ns>` in the same directory
//! (created with `O_CREAT|O_EXCL`, mode `0o666` minus the umask), which is
//! written, `fsync`ed, renamed over the status file, and then the
//! directory is `fsync`ed. A crash leaves either the old or the new list,
//! never a torn one; a crash before the rename can leave a temporary file
//! behind, which the next writer (holding the lock, so no one else can be
//! writing one) removes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoOp, Result};
use crate::sys;

/// The largest status file phaselock reads (`_MAX_STATUS_BYTES`); a larger
/// one is corrupt.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;

/// Whether `c` ends a line for Python's `str.splitlines()`.
pub(crate) fn is_line_break(c: char) -> bool {
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

/// Parses status-file content the way phaselock 1.1.0 does, except that
/// invalid content is an error (with the reason) rather than "empty".
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    if bytes.len() > MAX_STATUS_BYTES {
        return Err(format!(
            "it is {} bytes long, more than the {MAX_STATUS_BYTES} bytes phaselock reads",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text
        .split(is_line_break)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if line.contains('\0') {
            return Err(format!("entry {} contains a NUL byte", i + 1));
        }
        if seen.insert(line) {
            out.push(line.to_owned());
        }
    }
    Ok(out)
}

/// The file content for `names`, de-duplicated, order kept.
pub(crate) fn serialize<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in names {
        if seen.insert(n) {
            out.extend_from_slice(n.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Reads and parses the status file. `Ok(None)` if it does not exist.
///
/// # Errors
///
/// [`Error::Corrupt`] for invalid content, [`Error::Symlink`] if it is a
/// symbolic link, [`Error::Io`] if it cannot be read.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<String>>> {
    let file = match sys::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if sys::is_symlink_error(&e) => {
            return Err(Error::Symlink {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(Error::io(IoOp::OpenStatusFile, path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(IoOp::InspectStatusFile, path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "it is not a regular file".into()));
    }
    if meta.len() > MAX_STATUS_BYTES as u64 {
        return Err(corrupt(
            path,
            format!(
                "it is {} bytes long, more than the {MAX_STATUS_BYTES} bytes phaselock reads",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(MAX_STATUS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(IoOp::ReadStatusFile, path, e))?;
    parse(&bytes)
        .map(Some)
        .map_err(|reason| corrupt(path, reason))
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: format!(
            "{reason}; holdfast will not guess which phases it recorded (phaselock would \
             treat it as empty and re-run every phase). Check which phases really ran, then \
             fix or delete the file (PhaseRunner::discard_status_markers deletes it)"
        ),
    }
}

/// `<dest>.tmp.<pid>.<time_ns>`: phaselock's temporary-file name.
pub(crate) fn temp_path(dest: &Path) -> PathBuf {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut name = OsString::from(dest.as_os_str());
    name.push(format!(".tmp.{}.{ns}", sys::current_pid()));
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `dest` with `data` durably: temp file (`O_EXCL`), write,
/// `fsync`, rename, `fsync` of the directory. See the module docs.
///
/// # Errors
///
/// [`Error::Io`] naming the file that failed; the temporary file is
/// removed on failure.
pub(crate) fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    let (tmp, mut file) = {
        let mut attempt = 0;
        loop {
            let tmp = temp_path(dest);
            match sys::create_new_file(&tmp, 0o666) {
                Ok(f) => break (tmp, f),
                // Same pid and the same nanosecond: take the next one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(e) => return Err(Error::io(IoOp::CreateTemporary, &tmp, e)),
            }
        }
    };
    let written = file
        .write_all(data)
        .map_err(|e| Error::io(IoOp::Write, &tmp, e))
        .and_then(|()| file.sync_all().map_err(|e| Error::io(IoOp::Fsync, &tmp, e)));
    drop(file);
    if let Err(e) = written.and_then(|()| {
        std::fs::rename(&tmp, dest).map_err(|e| Error::io(IoOp::RenameTemporary, dest, e))
    }) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = parent_dir(dest);
    match sys::sync_dir(dir) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::debug!(dir = %dir.display(),
                "filesystem cannot fsync directories; the rename may not survive a power loss");
            Ok(())
        }
        Err(e) => Err(Error::io(IoOp::FsyncDirectory, dir, e)),
    }
}

/// Removes temporary files `<dest>.tmp.*` left by writers that crashed.
/// Call only while holding the lock that all writers take.
pub(crate) fn remove_stale_temps(dest: &Path) -> Vec<PathBuf> {
    let Some(base) = dest.file_name() else {
        return Vec::new();
    };
    let mut prefix = OsString::from(base);
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(&prefix) {
            let p = entry.path();
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(p),
                Err(e) => tracing::debug!(path = %p.display(), error = %e,
                    "could not remove a stale temporary file"),
            }
        }
    }
    removed
}

/// Lists leftover temporary files without removing them.
pub(crate) fn stale_temps(dest: &Path) -> Vec<PathBuf> {
    let Some(base) = dest.file_name() else {
        return Vec::new();
    };
    let mut prefix = OsString::from(base);
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_python_splitlines() {
        assert_eq!(parse(b"").unwrap(), Vec::<String>::new());
        assert_eq!(parse(b"a\nb\n").unwrap(), ["a", "b"]);
        assert_eq!(parse(b"a\r\nb").unwrap(), ["a", "b"]);
        assert_eq!(parse(b"a\n\n\nb\n").unwrap(), ["a", "b"]);
        assert_eq!(parse(b"a\nb\na\n").unwrap(), ["a", "b"], "de-duplicated");
        assert_eq!(
            parse("a\u{b}b\u{c}c\u{1c}d\u{1d}e\u{1e}f\u{85}g\u{2028}h\u{2029}i\rj".as_bytes())
                .unwrap(),
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        );
        // Characters Python does NOT split on stay inside a name.
        assert_eq!(
            parse("a\tb c\u{1f}d\n".as_bytes()).unwrap(),
            ["a\tb c\u{1f}d"]
        );
        assert_eq!(
            parse("\u{feff}a\n".as_bytes()).unwrap(),
            ["\u{feff}a"],
            "no BOM magic"
        );
    }

    #[test]
    fn invalid_content_is_an_error_with_a_reason() {
        assert!(parse(b"a\nb\0c\n").unwrap_err().contains("NUL"));
        assert!(parse(b"a\n\xff\n").unwrap_err().contains("UTF-8"));
        let big = vec![b'a'; MAX_STATUS_BYTES + 1];
        assert!(parse(&big).unwrap_err().contains("65536"));
        let exactly = [b"x".repeat(MAX_STATUS_BYTES - 1), b"\n".to_vec()].concat();
        assert_eq!(parse(&exactly).unwrap().len(), 1, "64 KiB exactly is fine");
    }

    #[test]
    fn serialize_round_trips() {
        let names = ["connection-v1", "schema v3", "ünïcode", "connection-v1"];
        let bytes = serialize(names);
        assert_eq!(bytes, "connection-v1\nschema v3\nünïcode\n".as_bytes());
        assert_eq!(
            parse(&bytes).unwrap(),
            ["connection-v1", "schema v3", "ünïcode"]
        );
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.db.status");
        write_atomic(&p, b"a\n").unwrap();
        write_atomic(&p, b"a\nb\n").unwrap();
        assert_eq!(read(&p).unwrap().unwrap(), ["a", "b"]);
        assert!(stale_temps(&p).is_empty());
        let name = temp_path(&p);
        let name = name.file_name().unwrap().to_str().unwrap();
        let rest = name.strip_prefix("app.db.status.tmp.").unwrap();
        let (pid, ns) = rest.split_once('.').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        assert!(ns.parse::<u128>().unwrap() > 0);
    }

    #[test]
    fn stale_temps_are_found_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.status");
        std::fs::write(d.path().join("t.status.tmp.1.2"), b"x").unwrap();
        std::fs::write(d.path().join("t.statusX.tmp.1.2"), b"x").unwrap();
        assert_eq!(stale_temps(&p).len(), 1);
        assert_eq!(remove_stale_temps(&p).len(), 1);
        assert!(stale_temps(&p).is_empty());
        assert!(d.path().join("t.statusX.tmp.1.2").exists());
    }

    #[test]
    fn reading_reports_corruption_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.status");
        assert_eq!(read(&p).unwrap(), None);
        std::fs::write(&p, b"a\0\n").unwrap();
        match read(&p) {
            Err(Error::Corrupt { path, reason }) => {
                assert_eq!(path, p);
                assert!(reason.contains("NUL"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        std::fs::write(&p, vec![b'a'; MAX_STATUS_BYTES + 10]).unwrap();
        assert!(matches!(read(&p), Err(Error::Corrupt { .. })));
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &p).unwrap();
        assert!(matches!(read(&p), Err(Error::Symlink { .. })));
    }
}
