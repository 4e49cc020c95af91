//! The mkdir protocol (lockfile's `MkdirLockFile`): the lock is a directory;
//! its holder's record is a file inside it.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::core::{self, Ctx, Held, Observed};
use super::record::{self, CLAIM_SUFFIX, MAX_RECORD};
use super::stale::{Content, Format};
use crate::error::{Error, IoOp, Result};
use crate::sys;

/// The record file's name inside the lock directory:
/// `<host>.<pid>.<nonce>.holdfast`. lockfile's names there are
/// `<hostname>.<tname><pid>` and end in a digit, so a lockfile process never
/// mistakes ours for its own ("already locked by me").
fn record_name(ctx: &Ctx, nonce: &str) -> OsString {
    OsString::from(format!(
        "{}.{}.{nonce}{CLAIM_SUFFIX}",
        record::name_safe(&ctx.me.local.host),
        ctx.me.local.pid
    ))
}

/// One attempt: make the directory, then the record inside it.
pub(crate) fn attempt(ctx: &Ctx, nonce: &str) -> Result<Option<Held>> {
    match sys::create_dir(&ctx.path, ctx.dir_mode()) {
        Ok(()) => fill(ctx, &ctx.path, nonce).map(Some),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(ctx.io(IoOp::CreateLockDirectory, e)),
    }
}

/// Builds a complete lock directory at a parked name, for a take-over.
pub(crate) fn build_at(ctx: &Ctx, nonce: &str, at: &Path) -> Result<Held> {
    sys::create_dir(at, ctx.dir_mode())
        .map_err(|e| Error::io(IoOp::CreateTakeoverDirectory, at, e))?;
    fill(ctx, at, nonce)
}

fn fill(ctx: &Ctx, at: &Path, nonce: &str) -> Result<Held> {
    let r = (|| {
        let dir = sys::open_dir(at)?;
        let id = sys::file_id(&dir)?;
        let name = record_name(ctx, nonce);
        let f = sys::create_new_file_in(&dir, &name, ctx.file_mode())?;
        let bytes = ctx
            .record(nonce, Some(name.to_string_lossy().into_owned()))
            .encode();
        core::write_all(&f, &bytes)?;
        ctx.stamp(&f)?;
        Ok::<_, io::Error>(Held {
            nonce: nonce.to_owned(),
            file: f,
            id,
            dir: Some(dir),
            claim: Some(PathBuf::from(name)),
            content: bytes,
            stamped: Default::default(),
        })
    })();
    r.map_err(|e| {
        // Take back the directory we made; rmdir cannot remove anyone
        // else's (theirs holds their record).
        let _ = remove_tree_if_ours(at);
        Error::io(IoOp::WriteRecordInto, at, e)
    })
}

fn remove_tree_if_ours(at: &Path) -> io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(at) {
        for e in entries.flatten() {
            let n = e.file_name();
            if n.to_string_lossy().ends_with(CLAIM_SUFFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    std::fs::remove_dir(at)
}

/// Looks at the lock directory at `at`.
pub(crate) fn observe(ctx: &Ctx, at: &Path) -> Result<Option<Observed>> {
    let Some((pin, meta)) = core::pin(ctx, at)? else {
        return Ok(None);
    };
    if !meta.is_dir() {
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "the lock path is not a directory (a soft or link lock? use that protocol, \
                     or another path)"
                .into(),
        });
    }
    let mut names: Vec<OsString> = match std::fs::read_dir(at) {
        Ok(it) => it.flatten().map(|e| e.file_name()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(IoOp::List, at, e)),
    };
    names.sort();
    if let Some(bad) = foreign_entry(at, &names) {
        return Err(not_a_mkdir_lock(at, &bad));
    }
    let ours = names
        .iter()
        .find(|n| n.to_string_lossy().ends_with(CLAIM_SUFFIX));
    let (content, times) = match ours {
        Some(n) => {
            let rec_path = at.join(n);
            match sys::open_nofollow(&rec_path) {
                Ok(f) => {
                    let m = f
                        .metadata()
                        .map_err(|e| Error::io(IoOp::Inspect, &rec_path, e))?;
                    let bytes = core::read_head(&f, MAX_RECORD + 1)
                        .map_err(|e| Error::io(IoOp::Read, &rec_path, e))?;
                    (
                        core::classify(&bytes, Format::Holdfast, true),
                        core::times_of(&m),
                    )
                }
                // Removed between listing and opening: a release in progress.
                Err(_) => (
                    Content::Unsettled {
                        what: "a lock directory being emptied".into(),
                        breaker: None,
                    },
                    core::times_of(&meta),
                ),
            }
        }
        None if names.is_empty() => (
            Content::Unsettled {
                what: "an empty lock directory".into(),
                breaker: None,
            },
            core::times_of(&meta),
        ),
        None => {
            let first = names[0].to_string_lossy().into_owned();
            let alive = |p: u32| sys::process_exists(p);
            let (host, pid) = record::parse_lockfile_unique(&first, true, &alive);
            (
                Content::Unknown {
                    what: format!("a lock directory holding {first:?} (lockfile's MkdirLockFile?)"),
                    host,
                    pid,
                },
                core::times_of(&meta),
            )
        }
    };
    Ok(Some(Observed {
        id: core::id_of(&meta),
        mtime: core::mtime_of(&meta),
        times,
        content,
        _pin: pin,
    }))
}

/// Removes our record and the directory, if the directory at the lock path
/// is still ours.
pub(crate) fn release(ctx: &Ctx, held: &Held) -> Result<()> {
    let at_path = match core::identity_at(&ctx.path) {
        Ok((id, _)) => id == held.id,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(ctx.io(IoOp::Inspect, e)),
    };
    let (Some(dir), Some(name)) = (&held.dir, &held.claim) else {
        return Err(ctx.io(IoOp::Release, io::Error::other("no lock directory held")));
    };
    if at_path {
        match sys::remove_file_in(dir, name.as_os_str()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx.io(IoOp::RemoveRecord, e)),
        }
        return match std::fs::remove_dir(&ctx.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ctx.io(IoOp::RemoveLockDirectory, e)),
        };
    }
    let linked = dir.metadata().map(|m| m.nlink() > 0).unwrap_or(false);
    if linked {
        core::overwrite(&held.file, record::RELEASED).map_err(|e| ctx.io(IoOp::MarkReleased, e))?;
        tracing::debug!(path = %ctx.path.display(), "lock directory parked by a take-over; left a released mark");
        return Ok(());
    }
    Err(core::lost(
        ctx,
        "the lock directory was removed while held (broken as stale or expired, or deleted by hand)",
    ))
}

/// Whether `name` is one the mkdir protocol makes inside a lock
/// directory: a holdfast record (`*.holdfast`) or Python lockfile's unique
/// name (`<host>.<thread><pid>`: a dot, and a digit at the end).
pub(crate) fn protocol_name(name: &str) -> bool {
    name.ends_with(CLAIM_SUFFIX)
        || (name.contains('.') && name.ends_with(|c: char| c.is_ascii_digit()))
}

/// The first entry of the directory `at` that the mkdir protocol never
/// makes (a subdirectory, a symlink, any other name), if there is one.
///
/// The rule, the same for acquire, status and break: a directory counts as
/// a mkdir lock only if everything in it is a regular file the protocol
/// makes. An empty directory is a lock whose record is not written yet
/// (stale once unchanged for the grace period); any other directory is not
/// a lock at all, and holdfast neither waits for it nor removes it.
pub(crate) fn foreign_entry(at: &Path, names: &[OsString]) -> Option<OsString> {
    names
        .iter()
        .find(|n| {
            !protocol_name(&n.to_string_lossy())
                || match std::fs::symlink_metadata(at.join(n)) {
                    Ok(m) => !m.is_file(),
                    // Gone since the listing: a release in progress.
                    Err(e) => e.kind() != io::ErrorKind::NotFound,
                }
        })
        .cloned()
}

fn not_a_mkdir_lock(at: &Path, bad: &OsString) -> Error {
    Error::InvalidInput {
        path: at.to_owned(),
        reason: format!(
            "it is a directory that is not a mkdir lock: it holds {}, which the mkdir protocol \
             never creates (a mkdir lock directory holds only its holder's record); holdfast \
             neither waits for it nor removes it: use another path",
            crate::text::os_str(bad)
        ),
    }
}

/// Removes a lock directory that is not ours: unlinks the records in it,
/// then the directory, as Python lockfile's own break does. Anything the
/// protocol does not make (a subdirectory, another file) is never removed:
/// the removal fails instead, naming it.
pub(crate) fn remove_tree(at: &Path) -> io::Result<()> {
    let names: Vec<OsString> = std::fs::read_dir(at)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if let Some(bad) = foreign_entry(at, &names) {
        return Err(io::Error::other(not_a_mkdir_lock(at, &bad).to_string()));
    }
    for n in &names {
        match std::fs::remove_file(at.join(n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_dir(at)
}
