//! The soft protocol: the lock is a regular file created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, holding the holder's record.

use std::io;
use std::path::Path;

use super::core::{self, Ctx, Held, Observed};
use super::record::{self, MAX_RECORD};
use super::stale::Format;
use crate::error::{Error, IoOp, Result};
use crate::sys;

/// The record this lock writes.
fn record_bytes(ctx: &Ctx, nonce: &str) -> Vec<u8> {
    match ctx.format() {
        Format::Filelock => ctx.filelock_record(),
        _ => ctx.record(nonce, None).encode(),
    }
}

/// One attempt: create the lock file, or `None` if it exists.
///
/// The complete record is written under a private name first and then
/// published under the lock name in one step that never replaces anything
/// (see `sys::publish_noclobber`), so the lock name never holds an empty
/// or partial record, even if this process is killed half-way (a private
/// file is left behind then, never a lock). Where the filesystem can
/// neither rename without replacing nor hard-link, the lock file is
/// created in place with `O_EXCL` and filled, as filelock does.
pub(crate) fn attempt(ctx: &Ctx, nonce: &str) -> Result<Option<Held>> {
    // `<lock name>.new.<pid>.<nonce>`: the acquisition's random nonce
    // makes it private without another read of the kernel's generator.
    let mut name = ctx.name.clone();
    name.push(format!(".new.{}.{nonce}", ctx.me.local.pid));
    let private = core::in_dir(ctx, &name);
    let held = build_at(ctx, nonce, &private)?;
    let published = sys::publish_noclobber(&private, &ctx.path);
    if !matches!(published, Ok(Some(true))) {
        // Linked, refused or failed: the private name goes.
        if let Err(e) = std::fs::remove_file(&private) {
            tracing::warn!(path = %private.display(), error = %e, "could not remove a private lock file");
        }
    }
    match published {
        Ok(Some(_)) => Ok(Some(held)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(ctx.io(IoOp::CreateLockFile, e)),
        Ok(None) => attempt_in_place(ctx, nonce),
    }
}

/// [`attempt`] where names cannot be published atomically.
fn attempt_in_place(ctx: &Ctx, nonce: &str) -> Result<Option<Held>> {
    match sys::create_new_file(&ctx.path, ctx.file_mode()) {
        Ok(f) => finish(ctx, f, &ctx.path, nonce).map(Some),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(ctx.io(IoOp::CreateLockFile, e)),
    }
}

/// Builds a complete lock file at a parked name, for a take-over.
pub(crate) fn build_at(ctx: &Ctx, nonce: &str, at: &Path) -> Result<Held> {
    let f = sys::create_new_file(at, ctx.file_mode())
        .map_err(|e| Error::io(IoOp::CreateTakeoverFile, at, e))?;
    finish(ctx, f, at, nonce)
}

fn finish(ctx: &Ctx, f: std::fs::File, at: &Path, nonce: &str) -> Result<Held> {
    let bytes = record_bytes(ctx, nonce);
    let id = sys::file_id(&f).map_err(|e| ctx.io(IoOp::Inspect, e))?;
    if let Err(e) = core::write_all(&f, &bytes).and_then(|()| ctx.stamp(&f)) {
        // Remove what we created, and only that.
        if core::identity_at(at).is_ok_and(|(i, _)| i == id) {
            let _ = std::fs::remove_file(at);
        }
        return Err(Error::io(IoOp::WriteRecord, at, e));
    }
    Ok(Held {
        nonce: nonce.to_owned(),
        file: f,
        id,
        dir: None,
        claim: None,
        content: bytes,
        stamped: Default::default(),
    })
}

/// Looks at the lock file at `at`.
pub(crate) fn observe(ctx: &Ctx, at: &Path) -> Result<Option<Observed>> {
    let Some((pin, meta)) = core::pin(ctx, at)? else {
        return Ok(None);
    };
    if meta.is_dir() {
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "the lock path is a directory, not a soft lock file (a mkdir-protocol \
                     lock? open it with Protocol::Mkdir, or use another path)"
                .into(),
        });
    }
    if !meta.is_file() {
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "the lock path is not a regular file".into(),
        });
    }
    let max = if ctx.format() == Format::Filelock {
        record::FILELOCK_MAX + 1
    } else {
        MAX_RECORD + 1
    };
    let bytes = core::read_head(&pin, max).map_err(|e| Error::io(IoOp::Read, at, e))?;
    let content = core::classify(&bytes, ctx.format(), true);
    Ok(Some(Observed {
        id: core::id_of(&meta),
        mtime: core::mtime_of(&meta),
        times: core::times_of(&meta),
        content,
        _pin: pin,
    }))
}

/// Removes the lock file if it is still ours.
pub(crate) fn release(ctx: &Ctx, held: &Held) -> Result<()> {
    match core::identity_at(&ctx.path) {
        Ok((id, _)) if id == held.id => match std::fs::remove_file(&ctx.path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx.io(IoOp::RemoveLockFile, e)),
        },
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx.io(IoOp::Inspect, e)),
    }
    parked_or_lost(ctx, held)
}

/// Our object is not at the lock path. If it still exists under another
/// name, a mistaken take-over parked it and will put it back: turn it into
/// a tombstone that whoever finds it removes at once. If it is gone, the
/// lock was broken while we held it.
pub(crate) fn parked_or_lost(ctx: &Ctx, held: &Held) -> Result<()> {
    let nlink = held
        .file
        .metadata()
        .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
        .unwrap_or(0);
    if nlink > 0 {
        let tomb = if ctx.format() == Format::Filelock {
            record::FILELOCK_RELEASED
        } else {
            record::RELEASED
        };
        core::overwrite(&held.file, tomb).map_err(|e| ctx.io(IoOp::MarkReleased, e))?;
        tracing::debug!(path = %ctx.path.display(), "lock object parked by a take-over; left a released mark");
        return Ok(());
    }
    Err(core::lost(
        ctx,
        "the lock file was removed while held (broken as stale or expired, or deleted by hand)",
    ))
}
