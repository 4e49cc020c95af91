//! The link protocol (flufl.lock's NFS-safe one, and lockfile's
//! `LinkLockFile`): write a claim file with a unique name in the lock's
//! directory, then `link()` it to the lock name. The lock is held when the
//! link is made; on NFS, where a lost reply can turn a made link into an
//! error, the lock's content (the claim's own, unique) settles it.

use std::cell::Cell;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Compat;
use super::core::{self, Ctx, Held, Observed, Prepared};
use super::record::{self, CLAIM_SUFFIX, FluflExt, MAX_RECORD};
use super::stale::Content;
use crate::error::{Error, IoOp, Result};
use crate::sys;

/// How many claim names to try when one is taken.
const CLAIM_TRIES: usize = 8;

/// The claim path and content for one nonce.
pub(crate) fn claim_for(ctx: &Ctx, nonce: &str) -> (PathBuf, Vec<u8>) {
    let me = &ctx.me;
    match ctx.compat {
        Compat::Lockfile => {
            let mut name = ctx.name.as_bytes().to_vec();
            name.extend_from_slice(
                format!(
                    ".{}.{}.{nonce}{CLAIM_SUFFIX}",
                    record::name_safe(&me.local.host),
                    me.local.pid
                )
                .as_bytes(),
            );
            let name = OsString::from_vec(name);
            let content = ctx
                .record(nonce, Some(name.to_string_lossy().into_owned()))
                .encode();
            (core::in_dir(ctx, &name), content)
        }
        _ => {
            let ext = FluflExt {
                start_time: me.start_time,
                boot_id: me.local.boot_id.clone(),
                pid_ns: me.local.pid_ns,
                lifetime: ctx.opts.lifetime,
                nonce: nonce.to_owned(),
            };
            let p =
                record::flufl_claim_path(&ctx.path, &me.local.fqdn, me.local.pid, &ext.encode());
            let content = p.as_os_str().as_bytes().to_vec();
            (p, content)
        }
    }
}

/// Writes a claim file under the first free name the nonces give.
///
/// A taken name (a planted file, a symlink, a leftover) is never opened or
/// overwritten: `O_EXCL|O_NOFOLLOW` refuses it and the next nonce is tried.
pub(crate) fn write_claim(ctx: &Ctx, nonces: &mut dyn Iterator<Item = String>) -> Result<Held> {
    for nonce in nonces.take(CLAIM_TRIES) {
        let (path, content) = claim_for(ctx, &nonce);
        let f = match sys::create_new_file(&path, ctx.file_mode()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(claim = %path.display(), "claim file name already taken; trying another");
                continue;
            }
            Err(e) => return Err(ctx.io(IoOp::CreateClaim, e)),
        };
        let id = sys::file_id(&f).map_err(|e| ctx.io(IoOp::InspectClaim, e))?;
        let stamped = Instant::now();
        if let Err(e) = core::write_all(&f, &content).and_then(|()| ctx.stamp(&f)) {
            let _ = std::fs::remove_file(&path);
            return Err(ctx.io(IoOp::WriteClaim, e));
        }
        return Ok(Held {
            nonce,
            file: f,
            id,
            dir: None,
            claim: Some(path),
            content,
            stamped: Cell::new(Some(stamped)),
        });
    }
    Err(Error::Io {
        op: IoOp::CreateClaim,
        path: ctx.path.clone(),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{CLAIM_TRIES} claim file names in a row already existed (planted files?)"),
        ),
    })
}

/// Sets the claim's lease again unless it was set a moment ago (a
/// thousandth of the lifetime, at most 10 ms), so that the lock shows a
/// full lease from the moment its name is linked: a claim written just
/// before an uncontended link keeps its stamp (no second `utimensat`); one
/// that waited is stamped again before it becomes the lock (flufl.lock
/// touches after its link instead, which leaves a moment in which a
/// long-waited claim is the lock with an old lease).
pub(crate) fn fresh_lease(ctx: &Ctx, claim: &Held) -> io::Result<()> {
    let Some(lifetime) = ctx.opts.lifetime else {
        return Ok(());
    };
    let slack = (lifetime / 1000).min(Duration::from_millis(10));
    if claim.stamped.get().is_some_and(|t| t.elapsed() <= slack) {
        return Ok(());
    }
    let t = Instant::now();
    ctx.stamp(&claim.file)?;
    claim.stamped.set(Some(t));
    Ok(())
}

/// One attempt: link the prepared claim to the lock name.
pub(crate) fn attempt(ctx: &Ctx, prep: &mut Prepared) -> Result<Option<Held>> {
    for _ in 0..3 {
        if prep.claim.is_none() {
            let fresh = write_claim(ctx, &mut std::iter::repeat_with(record::nonce))?;
            prep.nonce = fresh.nonce.clone();
            prep.claim = Some(fresh);
        }
        let Some(claim) = prep.claim.as_ref() else {
            continue;
        };
        let cpath = claim.claim.clone().unwrap_or_default();
        fresh_lease(ctx, claim).map_err(|e| ctx.io(IoOp::SetLease, e))?;
        match std::fs::hard_link(&cpath, &ctx.path) {
            Ok(()) => return Ok(prep.claim.take()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::StaleNetworkFileHandle
                ) =>
            {
                // flufl.lock retries these. If our claim itself is gone
                // (removed by hand, or by a breaker of a lock that named it),
                // write a fresh one.
                let gone = claim
                    .file
                    .metadata()
                    .map(|m| m.nlink() == 0)
                    .unwrap_or(true);
                if gone {
                    let fresh = write_claim(ctx, &mut std::iter::repeat_with(record::nonce))?;
                    prep.nonce = fresh.nonce.clone();
                    prep.claim = Some(fresh);
                    continue;
                }
                return Ok(None);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
                ) =>
            {
                return Err(Error::Unsupported {
                    path: ctx.path.clone(),
                    what: "the link protocol",
                    reason: format!(
                        "this filesystem refuses hard links ({e}); use Protocol::Soft or Protocol::Mkdir"
                    ),
                });
            }
            Err(e) => {
                // NFS: the link may exist though its reply was lost.
                if is_ours(ctx, claim).unwrap_or(false) {
                    return Ok(prep.claim.take());
                }
                return Err(ctx.io(IoOp::LinkClaim, e));
            }
        }
    }
    Ok(None)
}

/// Whether the lock name holds our claim.
///
/// First by identity: one `lstat` of the lock name; the same inode as our
/// claim (which we keep open, so its number names nothing else) is our
/// claim. Otherwise by content, which is unique: that also recognises our
/// claim where hard links get synthetic inode numbers (sshfs), or where an
/// NFS link reply was lost.
pub(crate) fn is_ours(ctx: &Ctx, held: &Held) -> io::Result<bool> {
    match core::identity_at(&ctx.path) {
        Ok((id, _)) if id == held.id => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let f = match sys::open_nofollow(&ctx.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let bytes = core::read_head(&f, held.content.len() + 1)?;
    Ok(bytes == held.content)
}

/// Looks at the lock at `at`.
pub(crate) fn observe(ctx: &Ctx, at: &Path) -> Result<Option<Observed>> {
    let Some((pin, meta)) = core::pin(ctx, at)? else {
        return Ok(None);
    };
    if meta.is_dir() {
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "the lock path is a directory, not a link lock (a mkdir-protocol lock? \
                     use Protocol::Mkdir, or another path)"
                .into(),
        });
    }
    if !meta.is_file() {
        return Err(Error::InvalidInput {
            path: at.to_owned(),
            reason: "the lock path is not a regular file".into(),
        });
    }
    let bytes = core::read_head(&pin, MAX_RECORD + 1).map_err(|e| Error::io(IoOp::Read, at, e))?;
    let mut content = core::classify(&bytes, ctx.format(), false);
    if let Content::Holder(c) = &content
        && let Some(claim) = &c.claim
    {
        // The claim always sits in the lock's directory; a relative name
        // was relative to the writer's working directory, so go by its
        // last component.
        let name = core::base_name(claim);
        let cpath = core::in_dir(ctx, name);
        if matches!(std::fs::symlink_metadata(&cpath), Err(e) if e.kind() == io::ErrorKind::NotFound)
        {
            content = match election_in_progress(ctx, name) {
                Some(pid) => Content::Unsettled {
                    what: format!("being broken by pid {pid}"),
                    breaker: Some(pid),
                },
                // Its holder removed its claim: it let go while its lock
                // object was parked by a mistaken take-over.
                None => Content::Released,
            };
        }
    }
    Ok(Some(Observed {
        id: core::id_of(&meta),
        mtime: core::mtime_of(&meta),
        times: core::times_of(&meta),
        content,
        _pin: pin,
    }))
}

/// A breaker that won the claim-rename election (see the module docs) has
/// renamed the claim to `<claim name>.break.<pid>.<32 hex>`.
fn election_in_progress(ctx: &Ctx, claim_name: &std::ffi::OsStr) -> Option<u32> {
    let entries = std::fs::read_dir(&ctx.dir).ok()?;
    entries
        .flatten()
        .find_map(|e| record::parse_side_name(claim_name, "break", &e.file_name()))
}

/// Removes the lock name (if ours) and our claim.
pub(crate) fn release(ctx: &Ctx, held: &Held) -> Result<()> {
    let ours = is_ours(ctx, held).map_err(|e| ctx.io(IoOp::Read, e))?;
    if ours {
        match std::fs::remove_file(&ctx.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx.io(IoOp::RemoveLockFile, e)),
        }
    }
    // Only asked when the lock name is not ours: whether the claim is
    // still linked under another name (parked by a take-over).
    let parked = !ours && held.file.metadata().map(|m| m.nlink()).unwrap_or(0) >= 2;
    if let Some(c) = &held.claim {
        match std::fs::remove_file(c) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(IoOp::RemoveClaim, c, e)),
        }
    }
    if ours || parked {
        // Not at the lock name but still linked elsewhere: parked by a
        // mistaken take-over, which puts it back; without its claim it
        // then reads as released.
        return Ok(());
    }
    Err(core::lost(
        ctx,
        "the lock file no longer names this claim (broken as stale or expired, or removed by hand)",
    ))
}
