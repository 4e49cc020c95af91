//! Who holds a lock: the holder record, the kernel's view, and how both are
//! turned into one description.
//!
//! # The holder record
//!
//! On every exclusive acquisition holdfast writes a small text record at the
//! start of the lock file (only if the file is empty, holds phaselock's one
//! NUL byte, or already holds a holdfast record: foreign content, such as a
//! data file that doubles as its own lock, is never overwritten):
//!
//! ```text
//! holdfast-holder 1
//! token 17
//! since 1764331384.123456789
//! pid 4242
//! start 123456
//! boot 0b1c9a2e-6d0f-4f5e-9a57-3c2d7e1f0a11
//! host web-1
//! uid 1000
//! mode exclusive
//! cmd python3 migrate.py
//! end
//! ```
//!
//! `start` is the process start time in clock ticks since boot
//! (`/proc/PID/stat` field 22): with `boot` it tells a live holder from a
//! recycled pid. `token` is the **fencing token**: it grows by one with every
//! exclusive acquisition of the file and survives restarts because it lives in
//! the file. Unknown keys are ignored, so later versions may add lines. A
//! record without its `end` line was cut short and is treated as corrupt.
//!
//! The record is a diagnostic, never a source of truth for exclusion: the
//! kernel lock is. A record is only shown as the holder when the kernel
//! reports a lock on the file taken by the same pid, whose start time still
//! matches. A corrupt or foreign record means "holder unknown", and the
//! kernel's view (pid and command line from `/proc`) is reported instead.
//! Other programs that lock the same file (util-linux `flock`, Python
//! `filelock`, `phaselock`, `portalocker`) ignore its content.

mod describe;
mod head;
mod identity;
mod message;
mod record;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::mode::Mode;
use crate::sys;

pub(crate) use self::describe::describe;
pub(crate) use self::head::{RecordTemplate, read_record};
pub(crate) use self::identity::{Identity, hostname_override};
pub use self::message::fmt_duration;
pub(crate) use self::message::fmt_utc_time;
pub use self::record::{HolderRecord, RECORD_VERSION, RecordContent};
pub(crate) use self::record::{escape, unescape};

/// One holder of a lock, as far as holdfast can tell.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
/// let guard = lock.lock()?;
/// let holders = lock.holders();
/// let me = holders.first().unwrap();
/// assert_eq!(me.pid, Some(std::process::id()));
/// assert_eq!(me.token, guard.token());
/// assert!(me.this_process);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Holder {
    /// Process id (in the holder's pid namespace).
    pub pid: Option<u32>,
    /// Command line of the holder.
    pub command: Option<String>,
    /// Host the holder runs on.
    pub host: Option<String>,
    /// Real uid of the holder.
    pub uid: Option<u32>,
    /// When it acquired the lock (known only from a holder record).
    pub since: Option<SystemTime>,
    /// The mode it holds.
    pub mode: Option<Mode>,
    /// The fencing token of its acquisition (from a holder record).
    pub token: Option<u64>,
    /// Whether the holder is the calling process itself.
    pub this_process: bool,
    /// Where the information comes from.
    pub source: HolderSource,
}

/// Where a [`Holder`] description comes from.
///
/// ```
/// use holdfast::{HolderSource, Lock, Mode, Wait};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app.lock");
/// let _held = Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
/// let err = Lock::open(&path)?.try_lock().unwrap_err();
/// match err.holders().first().map(|h| h.source) {
///     Some(HolderSource::Record) => println!("confirmed by the kernel"),
///     Some(other) => println!("known from {other:?} only"),
///     None => println!("holder unknown"),
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HolderSource {
    /// A holder record confirmed by the kernel (same pid, same start time).
    #[default]
    Record,
    /// The kernel's lock table and `/proc` only (another program's lock).
    Kernel,
    /// A holder record the kernel could not confirm (no `/proc/locks`).
    Unverified,
}

impl Holder {
    fn from_record(r: &HolderRecord, source: HolderSource) -> Holder {
        Holder {
            pid: Some(r.pid),
            command: Some(r.command.clone()).filter(|c| !c.is_empty()),
            host: Some(r.host.clone()).filter(|h| !h.is_empty()),
            uid: r.uid,
            since: Some(r.since),
            mode: Some(r.mode),
            token: Some(r.token),
            this_process: r.pid == sys::current_pid(),
            source,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) if self.this_process => write!(f, "this process (pid {pid})")?,
            Some(pid) => write!(f, "pid {pid}")?,
            None => f.write_str("an unknown process")?,
        }
        if let Some(cmd) = &self.command
            && !self.this_process
        {
            write!(f, " ({})", crate::text::escape(cmd))?;
        }
        if let Some(host) = &self.host {
            write!(f, " on {}", crate::text::escape(host))?;
        }
        if let Some(since) = self.since {
            let age = SystemTime::now().duration_since(since).unwrap_or_default();
            write!(
                f,
                " since {} ({})",
                fmt_utc_time(since),
                match age.as_secs() {
                    0 => "0s".to_owned(),
                    s => fmt_duration(Duration::from_secs(s)),
                }
            )?;
        }
        Ok(())
    }
}

/// The holders of a lock: zero (unknown), one (exclusive), or several
/// (shared). Its `Display` is the "held by ..." part of error messages.
///
/// ```
/// let none = holdfast::Holders::new();
/// assert_eq!(none.to_string(), "holder unknown");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Holders(Vec<Holder>, Option<usize>);

impl Holders {
    /// No known holder.
    ///
    /// ```
    /// let none = holdfast::Holders::new();
    /// assert!(none.is_empty());
    /// assert_eq!(none.to_string(), "holder unknown");
    /// ```
    pub const fn new() -> Self {
        Holders(Vec::new(), None)
    }
    /// For the holders of a [`Semaphore`](crate::Semaphore), its number of
    /// permits (messages then speak of permits, not of a lock); `None`
    /// for any other lock.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// let _permit = sem.lock()?;
    /// let e = sem.try_lock().unwrap_err();
    /// assert_eq!(e.holders().permits(), Some(1));
    /// assert!(e.to_string().starts_with("no permit of "), "{e}");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn permits(&self) -> Option<usize> {
        self.1
    }
    pub(crate) fn with_permits(mut self, permits: usize) -> Self {
        self.1 = Some(permits);
        self
    }
    /// The first (for an exclusive lock, the only) holder.
    ///
    /// ```
    /// use holdfast::{Lock, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// let err = Lock::open(&path)?.try_lock().unwrap_err();
    /// let holder = err.holders().first().expect("the kernel names it");
    /// assert!(holder.this_process);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn first(&self) -> Option<&Holder> {
        self.0.first()
    }
    /// All known holders.
    ///
    /// ```
    /// use holdfast::{Lock, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _reader = Lock::open(&path)?.acquire_owned(Mode::Shared, Wait::NoWait)?;
    /// let err = Lock::open(&path)?.try_lock().unwrap_err();
    /// for h in err.holders().iter() {
    ///     println!("held by pid {:?} since {:?}", h.pid, h.since);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, Holder> {
        self.0.iter()
    }
    /// Whether nothing is known about the holder.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.lock");
    /// let seen = holdfast::inspect::inspect(&path)?;
    /// assert!(seen.kernel.holders.is_empty(), "nobody holds it");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// How many holders are known.
    ///
    /// ```
    /// use holdfast::{Lock, Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _r1 = Lock::open(&path)?.acquire_owned(Mode::Shared, Wait::NoWait)?;
    /// let err = Lock::open(&path)?.try_lock().unwrap_err();
    /// assert!(err.holders().len() >= 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Vec<Holder>> for Holders {
    fn from(v: Vec<Holder>) -> Self {
        Holders(v, None)
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a Holder;
    type IntoIter = std::slice::Iter<'a, Holder>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.1 {
            let s = if n == 1 { "" } else { "s" };
            write!(f, "all {n} permit{s} taken")?;
            for (i, h) in self.0.iter().enumerate() {
                f.write_str(if i == 0 { ", by " } else { ", " })?;
                write!(f, "{h}")?;
            }
            return Ok(());
        }
        match self.0.as_slice() {
            [] => f.write_str("holder unknown"),
            [one] => write!(f, "held by {one}"),
            many => {
                f.write_str("held (shared) by ")?;
                for (i, h) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
        }
    }
}
