//! Looking at a lock file without taking it, and breaking it:
//! [`LockFile::status`], [`LockFile::break_lock_if`] and what they return.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, SystemTime};

use super::core;
use super::dispatch;
use super::stale::Verdict;
use super::takeover::{self, TakeOver};
use super::{LockFile, StaleReason};
use crate::error::{IoOp, Result};
use crate::holder::Holder;

/// What [`LockFile::status`] found.
///
/// ```
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Link)?;
/// let _g = lock.lock()?;
/// let st = lock.status()?;
/// assert!(st.locked && st.mine && st.stale.is_none());
/// println!("expires {:?}", st.expires);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockFileStatus {
    /// The lock path.
    pub path: PathBuf,
    /// Whether a lock object exists there (held by anyone, possibly stale).
    pub locked: bool,
    /// Who it names, as far as can be told.
    pub holder: Option<Holder>,
    /// Why holdfast would take it over, if it would.
    pub stale: Option<StaleReason>,
    /// When its lease ends (before the clock-skew allowance), if it has one.
    pub expires: Option<SystemTime>,
    /// Held through a guard of this `LockFile`.
    pub mine: bool,
    /// For a lock that names no holder yet (empty, or a record being
    /// written or damaged): when a one-off look will call it stale by its
    /// age (its ctime plus the grace period and the clock-skew allowance),
    /// unless it changes meanwhile. A waiter that watches it stay
    /// unchanged for the grace period takes it sooner. `None` otherwise,
    /// also for content that names no owner at all (never stale by itself).
    pub unsettled_until: Option<SystemTime>,
}

/// What [`LockFile::break_lock_if`] did.
///
/// ```
/// use holdfast::lockfile::{Broken, LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
/// assert!(matches!(lock.break_lock_if(|st| st.stale.is_some())?, Broken::NoLock));
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Broken {
    /// There was no lock at the path.
    NoLock,
    /// The decision was not to break it; it is left as it was.
    Kept(LockFileStatus),
    /// This lock was removed (or went away while it was being broken).
    Removed(LockFileStatus),
}

impl LockFile {
    /// Whether a lock object exists at the path (held by anyone, possibly
    /// stale: [`status`](Self::status) tells).
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
    /// assert!(!lock.is_locked()?);
    /// let _g = lock.lock()?;
    /// assert!(lock.is_locked()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the path cannot be inspected; [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// if it holds the wrong kind of object for the protocol.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(dispatch::observe(&self.ctx, &self.ctx.path)?.is_some())
    }

    /// Whether this `LockFile` holds the lock through a live guard, and the
    /// lock at the path is still that guard's.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("job.lock");
    /// let mine = LockFile::open(&path, Protocol::Link)?;
    /// let _g = mine.lock()?;
    /// assert!(mine.i_am_locking());
    /// assert!(!LockFile::open(&path, Protocol::Link)?.i_am_locking(), "another LockFile: not its guard");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn i_am_locking(&self) -> bool {
        self.current_core().is_some_and(|c| c.is_ours())
    }

    /// Who holds the lock, if anyone (possibly a stale holder: see
    /// [`status`](Self::status)).
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("h.lock"), Protocol::Soft)?;
    /// assert!(lock.holder()?.is_none());
    /// let _g = lock.lock()?;
    /// let h = lock.holder()?.unwrap();
    /// assert!(h.this_process);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_locked`](Self::is_locked).
    pub fn holder(&self) -> Result<Option<Holder>> {
        Ok(self.status()?.holder)
    }

    /// Looks at the lock without acting on it: who holds it, whether
    /// holdfast would take it over and why, when its lease ends.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("s.lock"), Protocol::Link)?;
    /// let g = lock.lock()?;
    /// let st = lock.status()?;
    /// assert!(st.locked && st.mine && st.stale.is_none());
    /// assert!(st.expires.is_some()); // link locks have a 15 s lease
    /// # drop(g);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`is_locked`](Self::is_locked).
    pub fn status(&self) -> Result<LockFileStatus> {
        let ctx = &*self.ctx;
        Ok(match dispatch::observe(ctx, &ctx.path)? {
            Some(obs) => self.status_of(&obs),
            None => LockFileStatus {
                path: ctx.path.clone(),
                locked: false,
                holder: None,
                stale: None,
                expires: None,
                mine: false,
                unsettled_until: None,
            },
        })
    }

    /// The status one observation shows.
    fn status_of(&self, obs: &core::Observed) -> LockFileStatus {
        let ctx = &*self.ctx;
        let j = ctx.judge(obs, Duration::ZERO);
        let mine = self.current_core().is_some_and(|c| {
            c.nonce().is_some_and(|n| {
                obs.claimant().and_then(|cl| cl.nonce.as_deref()) == Some(n.as_str())
            }) || c.is_ours()
        });
        LockFileStatus {
            path: ctx.path.clone(),
            locked: true,
            holder: ctx.holder(obs, &j),
            stale: match &j.verdict {
                Verdict::Stale(r) => Some(r.clone()),
                _ => None,
            },
            expires: j.expires,
            mine,
            unsettled_until: match &j.verdict {
                Verdict::Unsettled => obs
                    .times
                    .ctime
                    .checked_add(ctx.opts.grace + ctx.opts.clock_skew),
                _ => None,
            },
        }
    }

    /// Removes the lock that is there now, whoever holds it, and only that
    /// one: if another process replaces it meanwhile, the new lock is left
    /// alone. Uses the same take-over as a waiter (see
    /// [race-free breaking](super#race-free-breaking)). `Ok(false)` if there
    /// was no lock.
    ///
    /// ```
    /// use holdfast::lockfile::{LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("b.lock"), Protocol::Soft)?;
    /// let g = lock.lock()?;
    /// assert!(lock.break_lock()?);
    /// assert!(!lock.is_locked()?);
    /// assert!(matches!(g.check(), Err(holdfast::Error::Lost { .. })));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the lock cannot be removed; as [`is_locked`](Self::is_locked).
    pub fn break_lock(&self) -> Result<bool> {
        Ok(!matches!(self.break_lock_if(|_| true)?, Broken::NoLock))
    }

    /// Removes the lock that is there now if `decide` says so, looking at
    /// the very lock object that would be removed: the status `decide`
    /// sees is judged from the same observation the take-over acts on, so
    /// a lock that a new holder took meanwhile is never removed on the
    /// strength of its predecessor's status (`decide` is asked again about
    /// the new one). This is how to break a lock only if it is stale:
    ///
    /// ```
    /// use holdfast::lockfile::{Broken, LockFile, Protocol};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = LockFile::open(dir.path().join("b.lock"), Protocol::Soft)?;
    /// assert_eq!(lock.break_lock_if(|st| st.stale.is_some())?, Broken::NoLock);
    /// let g = lock.lock()?;
    /// // Held by a live process (this one): not stale, left alone.
    /// let Broken::Kept(st) = lock.break_lock_if(|st| st.stale.is_some())? else { panic!() };
    /// assert!(st.holder.unwrap().this_process);
    /// // Removed whatever its state, naming who held it.
    /// let Broken::Removed(st) = lock.break_lock_if(|_| true)? else { panic!() };
    /// assert_eq!(st.holder.unwrap().pid, Some(std::process::id()));
    /// assert!(g.check().is_err());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`break_lock`](Self::break_lock).
    pub fn break_lock_if(&self, mut decide: impl FnMut(&LockFileStatus) -> bool) -> Result<Broken> {
        let ctx = &*self.ctx;
        let mut judged: Option<LockFileStatus> = None;
        for _ in 0..16 {
            let Some(obs) = dispatch::observe(ctx, &ctx.path)? else {
                // Gone: either there was none, or the one we were breaking
                // went away while we were at it.
                return Ok(judged.map_or(Broken::NoLock, Broken::Removed));
            };
            let st = self.status_of(&obs);
            if !decide(&st) {
                return Ok(Broken::Kept(st));
            }
            let mut prep = dispatch::prepare(ctx)?;
            match takeover::take_over(ctx, &obs, &mut prep)? {
                TakeOver::Won(held) => {
                    dispatch::release(ctx, &held)?;
                    return Ok(Broken::Removed(st));
                }
                TakeOver::Freed => return Ok(Broken::Removed(st)),
                TakeOver::Lost => {
                    // Changed under us. If the object we saw is gone, it is
                    // broken; if it is still there (a stranded lock was put
                    // back, or a recoverer is at work), look again.
                    if !takeover::still_there(ctx, &obs)? {
                        return Ok(Broken::Removed(st));
                    }
                    judged = Some(st);
                    thread::sleep(Duration::from_millis(1));
                }
                TakeOver::CannotBreak => {
                    if takeover::still_there(ctx, &obs)? {
                        dispatch::remove_object(ctx, &ctx.path)
                            .map_err(|e| ctx.io(IoOp::RemoveLock, e))?;
                    }
                    return Ok(Broken::Removed(st));
                }
            }
        }
        Ok(judged.map_or(Broken::NoLock, Broken::Removed))
    }
}
