//! The vocabulary every layer shares: the [`Mode`] of a hold, the kernel
//! lock family ([`Backend`]) and how long an acquisition may [`Wait`].
//!
//! This module imports nothing of the crate, so the lowest layers (`sys`,
//! `holder`, `error`) can speak these words without depending on the
//! layers built on them. The types are re-exported at the crate root and
//! from [`holdfast::lock`](crate::lock).

use std::fmt;
use std::time::{Duration, Instant};

/// Exclusive (one holder) or shared (many readers).
///
/// ```
/// use holdfast::Mode;
/// assert_eq!(Mode::Shared.to_string(), "shared");
/// assert_eq!(Mode::Exclusive.with_article(), "an exclusive");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time; excludes shared holders too.
    Exclusive,
    /// Any number of shared holders; excludes an exclusive holder.
    Shared,
}

impl Mode {
    /// "an exclusive" / "a shared", for messages.
    ///
    /// ```
    /// use holdfast::Mode;
    /// assert_eq!(format!("holds {} lock", Mode::Shared.with_article()), "holds a shared lock");
    /// assert_eq!(Mode::Exclusive.with_article(), "an exclusive");
    /// ```
    pub fn with_article(self) -> &'static str {
        match self {
            Mode::Exclusive => "an exclusive",
            Mode::Shared => "a shared",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        })
    }
}

/// Which kernel lock family to use. See the [module docs](crate::lock) for what
/// each guarantees.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// // Exclude fasteners / lockf users instead of flock(1) users:
/// let lock = holdfast::Lock::options()
///     .backend(holdfast::Backend::OfdFcntl)
///     .open(dir.path().join("app.lock"))?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// BSD `flock(2)`: the family util-linux `flock(1)` and the Python
    /// libraries use on Linux.
    #[default]
    Flock,
    /// Open-file-description `fcntl` locks (`F_OFD_SETLK`, Linux ≥ 3.15):
    /// atomic upgrade and downgrade, and interoperation with classic
    /// `fcntl`/`lockf` users. They do **not** see `flock` locks.
    OfdFcntl,
}

/// How long an acquisition may wait.
///
/// ```
/// use holdfast::{Mode, Wait};
/// use std::time::Duration;
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
/// let _g = lock.acquire(Mode::Exclusive, Wait::Timeout(Duration::from_secs(1)))?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with [`Error::WouldBlock`](crate::Error::WouldBlock) if the lock is taken.
    NoWait,
    /// Wait as long as it takes.
    Forever,
    /// Wait at most this long, then fail with [`Error::Timeout`](crate::Error::Timeout).
    Timeout(Duration),
    /// Wait until this instant, then fail with [`Error::Timeout`](crate::Error::Timeout).
    Deadline(Instant),
}
