//! Taking over a stale lock without ever removing a newer one.
//!
//! The argument is in the [module docs](super#race-free-breaking); this file
//! follows it step by step. Names of parked objects are filelock's
//! (`<lock>.break.<pid>.<32 hex>`, `<lock>.restore.<pid>.<32 hex>`), so a
//! breaker killed half-way is recovered by holdfast and filelock alike.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::core::{self, Ctx, Held, Observed, Prepared, SysProbe};
use super::record;
use super::stale::{Content, Probe, Verdict};
use super::{Protocol, dispatch};
use crate::error::{IoOp, Result};
use crate::sys::{self, FileId};

/// How a take-over ended.
#[derive(Debug)]
pub(crate) enum TakeOver {
    /// Our object replaced the judged one: we hold the lock.
    Won(Held),
    /// The judged object is gone and the path is free: attempt again.
    Freed,
    /// Someone else acted first (the judged object is no longer at the path,
    /// or a stranded live holder was put back).
    Lost,
    /// No safe way here: the filesystem cannot exchange names and the
    /// protocol has no election (soft, mkdir), or nothing but the lock name
    /// links the object. The lock stays until its holder lets go or
    /// `break_lock` removes it.
    CannotBreak,
}

/// How long a breaker keeps trying to put back an object it took by
/// mistake, and how long it waits for peers in between (filelock's values).
const RESTORE_DEADLINE: Duration = Duration::from_secs(2);
const RESTORE_STALL: Duration = Duration::from_millis(10);

/// Restore claims this process is working on (threads must not adopt the
/// same one twice; filelock's `_CLAIMS_IN_PROGRESS`).
static CLAIMS: Mutex<Option<HashSet<OsString>>> = Mutex::new(None);

/// A test hook run just before the exchange of a take-over on one path:
/// it lets a unit test change the lock in the window a racing process would.
#[cfg(test)]
#[allow(clippy::type_complexity)]
pub(crate) static TEST_HOOK: Mutex<Option<(PathBuf, Box<dyn FnMut() + Send>)>> = Mutex::new(None);

#[cfg(test)]
fn run_test_hook(path: &Path) {
    let mut g = TEST_HOOK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, f)) = g.as_mut()
        && p == path
    {
        f();
    }
}

/// Takes over the judged lock `obs`, by exchange where the filesystem
/// allows, else (link protocol) by the claim-rename election.
pub(crate) fn take_over(ctx: &Ctx, obs: &Observed, prep: &mut Prepared) -> Result<TakeOver> {
    if ctx.opts.exchange {
        match by_exchange(ctx, obs, prep)? {
            TakeOver::CannotBreak => {}
            other => return Ok(other),
        }
    }
    if ctx.protocol == Protocol::Link {
        return by_election(ctx, obs);
    }
    Ok(TakeOver::CannotBreak)
}

/// Whether the lock path still names exactly the judged object.
pub(crate) fn still_there(ctx: &Ctx, obs: &Observed) -> Result<bool> {
    match core::identity_at(&ctx.path) {
        Ok((id, m)) => Ok(id == obs.id && m == obs.mtime),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ctx.io(IoOp::Inspect, e)),
    }
}

fn is_at(path: &Path, id: FileId) -> bool {
    core::identity_at(path).is_ok_and(|(i, _)| i == id)
}

/// Removes our own object from a parked name, only if it is ours.
fn discard(ctx: &Ctx, at: &Path, mine: FileId) {
    if !is_at(at, mine) {
        return;
    }
    let r = match ctx.protocol {
        Protocol::Mkdir => mkdir_discard(at),
        _ => std::fs::remove_file(at),
    };
    if let Err(e) = r {
        tracing::warn!(path = %at.display(), error = %e, "could not remove a parked take-over object");
    }
}

fn mkdir_discard(at: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(at)?.flatten() {
        if e.file_name()
            .to_string_lossy()
            .ends_with(record::CLAIM_SUFFIX)
        {
            std::fs::remove_file(e.path())?;
        }
    }
    std::fs::remove_dir(at)
}

fn by_exchange(ctx: &Ctx, obs: &Observed, prep: &mut Prepared) -> Result<TakeOver> {
    // 1. The judged object must still be at the path.
    if !still_there(ctx, obs)? {
        return Ok(TakeOver::Lost);
    }
    // 2. A breaker that died half-way may have parked a live holder's
    //    object; if so, put that back instead.
    if let Some(b) = obs.breaker()
        && recover_stranded(ctx, b, obs)?
    {
        return Ok(TakeOver::Lost);
    }
    // 3. Our complete lock object, under a parked name of our own.
    let aside = ctx.side_path("break", ctx.me.local.pid);
    let built = dispatch::build_at(ctx, prep, &aside)?;
    let mine = match (&built, &prep.claim) {
        (Some(h), _) => h.id,
        (None, Some(c)) => c.id,
        (None, None) => unreachable!("link take-overs always have a claim"),
    };
    // 4. Re-check, then swap names in one step.
    if !still_there(ctx, obs)? {
        discard(ctx, &aside, mine);
        return Ok(TakeOver::Lost);
    }
    #[cfg(test)]
    run_test_hook(&ctx.path);
    match sys::exchange(&aside, &ctx.path) {
        Ok(true) => {}
        Ok(false) => {
            discard(ctx, &aside, mine);
            return Ok(TakeOver::CannotBreak);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            discard(ctx, &aside, mine);
            return Ok(TakeOver::Lost);
        }
        Err(e) => {
            discard(ctx, &aside, mine);
            return Err(ctx.io(IoOp::ExchangeNames, e));
        }
    }
    // 5. Did we take the object we judged? The open descriptor in `obs`
    //    keeps its inode allocated, so equal numbers mean the same object.
    if core::identity_at(&aside).is_ok_and(|(id, m)| id == obs.id && m == obs.mtime) {
        if let Err(e) = dispatch::remove_object(ctx, &aside) {
            tracing::warn!(path = %aside.display(), error = %e, "could not remove the stale lock object");
        }
        if ctx.protocol == Protocol::Link {
            remove_stale_claim(ctx, obs);
        }
        tracing::info!(path = %ctx.path.display(), "took over a stale lock");
        let held = match built {
            Some(h) => h,
            None => prep.claim.take().expect("checked above"),
        };
        return Ok(TakeOver::Won(held));
    }
    // 6. We took a live object that replaced the judged one meanwhile:
    //    put it back.
    let settled = restore(ctx, &aside, mine);
    if settled {
        discard(ctx, &aside, mine);
    } else {
        // Our object may be anywhere now, even at the lock path: make it
        // something whoever finds it removes at once.
        match (built, ctx.protocol) {
            (Some(h), Protocol::Soft) => {
                let _ = super::soft::parked_or_lost(ctx, &h);
            }
            (Some(h), _) => {
                let _ = core::overwrite(&h.file, record::RELEASED);
            }
            (None, _) => {
                // A link claim: without its claim file it reads as released.
                // The next attempt writes a fresh claim.
                discard(ctx, &aside, mine);
                if let Some(c) = prep.claim.take()
                    && let Some(p) = &c.claim
                {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        tracing::warn!(path = %ctx.path.display(), "could not put back a lock object taken by mistake within 2s");
    }
    Ok(TakeOver::Lost)
}

/// filelock's `_exchange_until_aside`: exchange back until `aside` names
/// our own object again. Breakers that raced nest (each parked name holds
/// the object the previous one put at the path), so whoever finds its own
/// object at the path goes first; a stalled or dead peer is worked around
/// by exchanging anyway every 10 ms, for at most 2 s.
fn restore(ctx: &Ctx, aside: &Path, mine: FileId) -> bool {
    let deadline = Instant::now() + RESTORE_DEADLINE;
    let mut feed_at = Instant::now() + RESTORE_STALL;
    loop {
        match core::identity_at(aside) {
            Ok((id, _)) if id == mine => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            _ => {}
        }
        let now = Instant::now();
        let ours_at_path = is_at(&ctx.path, mine);
        if !ours_at_path && now >= deadline {
            return false;
        }
        if ours_at_path || now >= feed_at {
            if !matches!(sys::exchange(aside, &ctx.path), Ok(true)) {
                return false;
            }
            feed_at = now + RESTORE_STALL;
        } else {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// After a link take-over: the stale holder's claim file, if it still names
/// the object we removed.
fn remove_stale_claim(ctx: &Ctx, obs: &Observed) {
    let Some(claim) = obs.claimant().and_then(|c| c.claim.as_ref()) else {
        return;
    };
    let p = core::in_dir(ctx, core::base_name(claim));
    if is_at(&p, obs.id) {
        let _ = std::fs::remove_file(&p);
    }
}

/// filelock's `_restore_stranded_marker`: a breaker killed between its
/// exchange and its put-back leaves its own object at the lock path and the
/// live holder's under `<lock>.break.<breaker>.<hex>`. Before breaking an
/// object written by `breaker`, look for such names; claim one by renaming
/// it to `<lock>.restore.<us>.<hex>` (only one contender can), and if it
/// holds a live lock, exchange it back in. `true`: the lock is (again, or
/// still) someone's; do not take it over now.
fn recover_stranded(ctx: &Ctx, breaker: u32, obs: &Observed) -> Result<bool> {
    let me = ctx.me.local.pid;
    let Ok(entries) = std::fs::read_dir(&ctx.dir) else {
        return Ok(false);
    };
    let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if record::parse_side_name(&ctx.name, "break", &name) == Some(breaker) && breaker != me {
            candidates.push((e.path(), false));
        } else if let Some(r) = record::parse_side_name(&ctx.name, "restore", &name) {
            let ours = r == me;
            if !ours && SysProbe::default().alive(r) {
                return Ok(true); // a live recoverer is at work
            }
            candidates.push((e.path(), ours));
        }
    }
    candidates.sort();
    for (path, adopt) in candidates {
        let own = if adopt {
            path
        } else {
            let own = ctx.side_path("restore", me);
            if std::fs::rename(&path, &own).is_err() {
                return Ok(true); // a peer won the rename and holds the record
            }
            own
        };
        let key = own.as_os_str().to_owned();
        {
            let mut g = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
            if !g.get_or_insert_with(HashSet::new).insert(key.clone()) {
                return Ok(true);
            }
        }
        let r = restore_claimed(ctx, &own, breaker, obs);
        CLAIMS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .remove(&key);
        match r? {
            Some(done) => return Ok(done),
            None => continue,
        }
    }
    Ok(false)
}

/// `Some(true)`: a live object was put back (or may be: leave the lock
/// alone); `None`: `own` held nothing live and is removed.
fn restore_claimed(ctx: &Ctx, own: &Path, breaker: u32, obs: &Observed) -> Result<Option<bool>> {
    let seen = match dispatch::observe(ctx, own) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(None),
        Err(_) => {
            return_claim(ctx, own, breaker);
            return Ok(Some(true));
        }
    };
    let j = ctx.judge(&seen, Duration::ZERO);
    let breakers_own = matches!(&seen.content, Content::Holder(c)
        if c.pid == breaker && super::stale::same_host(c, &ctx.me.local));
    let live = !breakers_own && !matches!(j.verdict, Verdict::Stale(_));
    if !live {
        let _ = dispatch::remove_object(ctx, own);
        return Ok(None);
    }
    if still_there(ctx, obs)? && matches!(sys::exchange(own, &ctx.path), Ok(true)) {
        if core::identity_at(own).is_ok_and(|(id, m)| id == obs.id && m == obs.mtime) {
            let _ = dispatch::remove_object(ctx, own);
            tracing::warn!(path = %ctx.path.display(), "put back a lock a killed breaker had parked");
            return Ok(Some(true));
        }
        // A peer replaced the path after the check: swap straight back.
        let _ = sys::exchange(own, &ctx.path);
    }
    return_claim(ctx, own, breaker);
    Ok(Some(true))
}

fn return_claim(ctx: &Ctx, own: &Path, breaker: u32) {
    let _ = std::fs::rename(own, ctx.side_path("break", breaker));
}

/// The take-over for filesystems without an exchange (NFS): an election on
/// a name nobody creates twice. The judged link lock's claim file has a
/// unique name (random part); renaming it to
/// `<claim>.break.<us>.<hex>` succeeds for exactly one contender. The
/// winner removes the lock name if it still names the judged object, and
/// the path is free for an ordinary attempt.
fn by_election(ctx: &Ctx, obs: &Observed) -> Result<TakeOver> {
    let me = ctx.me.local.pid;
    let claim_name: Option<OsString> = obs
        .claimant()
        .and_then(|c| c.claim.as_ref())
        .map(|c| core::base_name(c).to_owned());
    let Some((token, base)) = election_token(ctx, obs, claim_name.as_deref()) else {
        // No name to elect on. With a claim named, another contender won
        // the election and is finishing (or, if it died, its parked name
        // becomes claimable after the grace period): stand back. Without
        // one, nothing but the lock name links the object, and removing it
        // by name would race with its holder's own release: leave it.
        return Ok(if claim_name.is_some() {
            TakeOver::Lost
        } else {
            TakeOver::CannotBreak
        });
    };
    let mine = core::in_dir(ctx, &record::side_name(&base, "break", me));
    match std::fs::rename(&token, &mine) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TakeOver::Lost),
        Err(e) => return Err(ctx.io(IoOp::ClaimBreak, e)),
    }
    if !is_at(&mine, obs.id) {
        // Cannot happen with unique names; undo and stand back.
        let _ = std::fs::rename(&mine, &token);
        return Ok(TakeOver::Lost);
    }
    if still_there(ctx, obs)? {
        match std::fs::remove_file(&ctx.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx.io(IoOp::RemoveStale, e)),
        }
    }
    let _ = std::fs::remove_file(&mine);
    tracing::info!(path = %ctx.path.display(), "broke a stale lock (claim-rename election)");
    Ok(TakeOver::Freed)
}

/// The name to elect on: the judged claim itself, or the parked name of an
/// election winner that died before finishing, or (for a lock lockfile
/// made) the other name of the lock's inode.
fn election_token(
    ctx: &Ctx,
    obs: &Observed,
    claim_name: Option<&std::ffi::OsStr>,
) -> Option<(PathBuf, OsString)> {
    if let Some(n) = claim_name {
        let p = core::in_dir(ctx, n);
        if is_at(&p, obs.id) {
            return Some((p, n.to_owned()));
        }
        let rules = ctx.rules();
        for e in std::fs::read_dir(&ctx.dir).ok()?.flatten() {
            let Some(pid) = record::parse_side_name(n, "break", &e.file_name()) else {
                continue;
            };
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let age = SystemTime::now()
                .duration_since(core::ctime_of(&m))
                .unwrap_or_default();
            let abandoned = !SysProbe::default().alive(pid) || age > rules.grace + rules.skew;
            if abandoned && m.dev() == obs.id.dev && m.ino() == obs.id.ino {
                return Some((e.path(), n.to_owned()));
            }
        }
        return None;
    }
    for e in std::fs::read_dir(&ctx.dir).ok()?.flatten() {
        if e.file_name() == ctx.name {
            continue;
        }
        if let Ok(m) = std::fs::symlink_metadata(e.path())
            && m.dev() == obs.id.dev
            && m.ino() == obs.id.ino
        {
            return Some((e.path(), e.file_name()));
        }
    }
    None
}
