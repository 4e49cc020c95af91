//! The one place that dispatches on the [`Protocol`]: `core` (shared
//! plumbing) sits below `soft`, `link` and `mkdir`, and this sits above all
//! four, so none of them imports another in a circle.

use std::io;
use std::path::Path;

use super::Protocol;
use super::core::{Ctx, Held, Observed, Prepared, identity_at};
use super::{link, mkdir, record, soft};
use crate::error::{IoOp, Result};

/// Prepares one acquisition: the nonce, and for the link protocol the
/// claim file.
pub(crate) fn prepare(ctx: &Ctx) -> Result<Prepared> {
    let nonce = record::nonce();
    let claim = match ctx.protocol {
        Protocol::Link => Some(link::write_claim(
            ctx,
            &mut std::iter::once(nonce.clone()).chain(std::iter::repeat_with(record::nonce)),
        )?),
        _ => None,
    };
    let nonce = claim.as_ref().map(|c| c.nonce.clone()).unwrap_or(nonce);
    Ok(Prepared { nonce, claim })
}

/// Makes sure a won lock shows a full lease: link locks whose claim was
/// stamped a while ago (see `link::fresh_lease`); nothing for the others,
/// whose record was written when the lock was taken.
pub(crate) fn fresh_lease(ctx: &Ctx, held: &Held) -> io::Result<()> {
    match ctx.protocol {
        Protocol::Link => link::fresh_lease(ctx, held),
        _ => Ok(()),
    }
}

/// One acquisition attempt.
pub(crate) fn attempt(ctx: &Ctx, prep: &mut Prepared) -> Result<Option<Held>> {
    match ctx.protocol {
        Protocol::Soft => soft::attempt(ctx, &prep.nonce),
        Protocol::Link => link::attempt(ctx, prep),
        Protocol::Mkdir => mkdir::attempt(ctx, &prep.nonce),
    }
}

/// Looks at the lock object at `at` (the lock path, or a parked name).
/// `Ok(None)`: nothing there.
pub(crate) fn observe(ctx: &Ctx, at: &Path) -> Result<Option<Observed>> {
    match ctx.protocol {
        Protocol::Soft => soft::observe(ctx, at),
        Protocol::Link => link::observe(ctx, at),
        Protocol::Mkdir => mkdir::observe(ctx, at),
    }
}

/// Whether the lock object at the lock path is still `held`.
pub(crate) fn is_ours(ctx: &Ctx, held: &Held) -> io::Result<bool> {
    match ctx.protocol {
        Protocol::Link => link::is_ours(ctx, held),
        _ => match identity_at(&ctx.path) {
            Ok((id, _)) => Ok(id == held.id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
    }
}

/// Lets go of a held lock.
pub(crate) fn release(ctx: &Ctx, held: &Held) -> Result<()> {
    match ctx.protocol {
        Protocol::Soft => soft::release(ctx, held),
        Protocol::Link => link::release(ctx, held),
        Protocol::Mkdir => mkdir::release(ctx, held),
    }
}

/// Builds this process's complete lock object at `at` (a parked name, for a
/// take-over by exchange). For the link protocol that is one more name for
/// the prepared claim, so `None` is returned: the claim is the held object.
pub(crate) fn build_at(ctx: &Ctx, prep: &Prepared, at: &Path) -> Result<Option<Held>> {
    match ctx.protocol {
        Protocol::Soft => soft::build_at(ctx, &prep.nonce, at).map(Some),
        Protocol::Link => {
            let Some((held, claim)) = prep
                .claim
                .as_ref()
                .and_then(|c| c.claim.as_ref().map(|p| (c, p)))
            else {
                return Err(ctx.io(IoOp::Link, io::Error::other("no claim file prepared")));
            };
            link::fresh_lease(ctx, held).map_err(|e| ctx.io(IoOp::SetLease, e))?;
            std::fs::hard_link(claim, at).map_err(|e| ctx.io(IoOp::LinkTakeoverClaim, e))?;
            Ok(None)
        }
        Protocol::Mkdir => mkdir::build_at(ctx, &prep.nonce, at).map(Some),
    }
}

/// Removes a lock object that is not ours (a judged stale one) from `at`.
pub(crate) fn remove_object(ctx: &Ctx, at: &Path) -> io::Result<()> {
    let r = match ctx.protocol {
        Protocol::Soft | Protocol::Link => std::fs::remove_file(at),
        Protocol::Mkdir => mkdir::remove_tree(at),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
