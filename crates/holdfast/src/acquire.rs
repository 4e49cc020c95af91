//! The one acquisition road every primitive takes: **try once, then block
//! in the kernel** (a killable waiter task where a deadline needs one, a
//! bounded-poll fallback where the kernel or a sandbox forbids the task),
//! and build the contention error in one place, only when it will be
//! returned.
//!
//! What is public here is the hook a caller uses to *see* a wait without
//! re-implementing it: a [`WaitObserver`] passed to `acquire_observed`
//! ([`Lock::acquire_observed`](crate::Lock::acquire_observed),
//! [`FifoLock::acquire_observed`](crate::FifoLock::acquire_observed),
//! [`Semaphore::acquire_observed`](crate::Semaphore::acquire_observed),
//! [`LockFile::acquire_observed`](crate::LockFile::acquire_observed)) is
//! told when the first attempt found the lock taken and the acquisition
//! starts to wait, and when the wait is over. The `holdfast` CLI draws its
//! "waiting for ... held by pid 4242 ..." line this way.
//!
//! ```
//! use std::cell::Cell;
//! use holdfast::acquire::{WaitObserver, Waiting};
//! use holdfast::{Mode, Wait};
//!
//! #[derive(Default)]
//! struct Count(Cell<u32>);
//! impl WaitObserver for Count {
//!     fn wait_started(&self, w: &Waiting) {
//!         self.0.set(self.0.get() + 1);
//!         assert!(w.holders().first().is_some_and(|h| h.this_process));
//!     }
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("app.lock");
//! let lock = holdfast::Lock::open(&path)?;
//! let seen = Count::default();
//! drop(lock.acquire_observed(Mode::Exclusive, Wait::NoWait, &seen)?);
//! assert_eq!(seen.0.get(), 0, "free: no wait, nothing to observe");
//!
//! let held = holdfast::Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
//! let err = lock
//!     .acquire_observed(Mode::Exclusive, Wait::Timeout(std::time::Duration::from_millis(20)), &seen)
//!     .unwrap_err();
//! assert!(matches!(err, holdfast::Error::Timeout { .. }));
//! assert_eq!(seen.0.get(), 1);
//! # drop(held);
//! # Ok::<(), holdfast::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::holder::Holders;
use crate::mode::{Mode, Wait};

/// Told when an acquisition has to wait, and when the wait is over.
///
/// Both calls happen on the acquiring thread, in that order, at most once
/// per acquisition: [`wait_started`](Self::wait_started) after the first
/// attempt found the lock taken (never for [`Wait::NoWait`]), before the
/// acquisition blocks; [`wait_ended`](Self::wait_ended) when it got the
/// lock, ran out of time or failed, before it returns.
///
/// ```
/// use holdfast::acquire::{WaitObserver, Waiting};
/// struct Log;
/// impl WaitObserver for Log {
///     fn wait_started(&self, w: &Waiting) {
///         eprintln!("waiting for {} lock on {}", w.mode().with_article(), w.path().display());
///     }
///     fn wait_ended(&self) {
///         eprintln!("done waiting");
///     }
/// }
/// ```
pub trait WaitObserver {
    /// The acquisition starts to wait; `waiting` says for what, since
    /// when, until when, and can name the holders at any time (from any
    /// thread: clone it into a thread that redraws a line).
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    ///
    /// struct Last(Mutex<Option<Waiting>>);
    /// impl WaitObserver for Last {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         *self.0.lock().unwrap() = Some(w.clone());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = holdfast::Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// let last = Last(Mutex::new(None));
    /// let wait = Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(Mode::Shared, wait, &last);
    /// assert_eq!(last.0.lock().unwrap().as_ref().unwrap().mode(), Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    fn wait_started(&self, waiting: &Waiting);

    /// The wait is over. The default does nothing.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    ///
    /// #[derive(Default)]
    /// struct Waiters(Cell<i32>);
    /// impl WaitObserver for Waiters {
    ///     fn wait_started(&self, _: &Waiting) {
    ///         self.0.set(self.0.get() + 1);
    ///     }
    ///     fn wait_ended(&self) {
    ///         self.0.set(self.0.get() - 1); // called however the wait ended
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = holdfast::Lock::open(&path)?.acquire_owned(Mode::Exclusive, Wait::NoWait)?;
    /// let waiters = Waiters::default();
    /// let wait = Wait::Timeout(std::time::Duration::from_millis(10));
    /// assert!(holdfast::Lock::open(&path)?.acquire_observed(Mode::Exclusive, wait, &waiters).is_err());
    /// assert_eq!(waiters.0.get(), 0);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    fn wait_ended(&self) {}
}

/// The observer of acquisitions nobody watches.
pub(crate) struct Unobserved;

impl WaitObserver for Unobserved {
    fn wait_started(&self, _: &Waiting) {}
}

/// What an acquisition that has to wait is waiting for: cheap to clone,
/// `Send` and `'static`.
///
/// ```
/// # use holdfast::acquire::{WaitObserver, Waiting};
/// struct Show;
/// impl WaitObserver for Show {
///     fn wait_started(&self, w: &Waiting) {
///         let w = w.clone();
///         std::thread::spawn(move || println!("{} held by {}", w.path().display(), w.holders()));
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Waiting {
    path: PathBuf,
    mode: Mode,
    started: Instant,
    deadline: Option<Instant>,
    holders: Arc<dyn Fn() -> Holders + Send + Sync>,
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("started", &self.started)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Waiting {
    pub(crate) fn new(
        path: &Path,
        mode: Mode,
        started: Instant,
        deadline: Option<Instant>,
        holders: Arc<dyn Fn() -> Holders + Send + Sync>,
    ) -> Waiting {
        Waiting {
            path: path.to_owned(),
            mode,
            started,
            deadline,
            holders,
        }
    }

    /// The lock being waited for.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// struct Show;
    /// impl WaitObserver for Show {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for {}", w.path().display());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// # let _held = holdfast::Lock::open(&path)?.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let wait = holdfast::Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(holdfast::Mode::Exclusive, wait, &Show);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode asked for.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// struct Show;
    /// impl WaitObserver for Show {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         assert_eq!(w.mode(), holdfast::Mode::Shared);
    ///         eprintln!("waiting for {} lock", w.mode().with_article());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// # let _held = holdfast::Lock::open(&path)?.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let wait = holdfast::Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(holdfast::Mode::Shared, wait, &Show);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// When the acquisition began (before its first attempt): a timeout
    /// counts from here.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// struct Show;
    /// impl WaitObserver for Show {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for {:?} so far", w.started().elapsed());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// # let _held = holdfast::Lock::open(&path)?.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let wait = holdfast::Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(holdfast::Mode::Exclusive, wait, &Show);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the wait gives up, if it does.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// struct Show;
    /// impl WaitObserver for Show {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         let left = w.deadline().map(|d| d.saturating_duration_since(std::time::Instant::now()));
    ///         assert!(left.is_some(), "a timed wait has a deadline");
    ///         eprintln!("giving up in {left:?}");
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// # let _held = holdfast::Lock::open(&path)?.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let wait = holdfast::Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(holdfast::Mode::Exclusive, wait, &Show);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Who holds the lock now, as far as can be told (reads the kernel's
    /// lock table, `/proc` and the holder record: call it when you show
    /// it, not in a tight loop).
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// struct Show;
    /// impl WaitObserver for Show {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         let holders = w.holders();
    ///         assert!(holders.first().is_some_and(|h| h.this_process));
    ///         eprintln!("held by {holders}");
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app.lock");
    /// let _held = holdfast::Lock::open(&path)?.acquire_owned(holdfast::Mode::Exclusive, holdfast::Wait::NoWait)?;
    /// let wait = holdfast::Wait::Timeout(std::time::Duration::from_millis(10));
    /// let _ = holdfast::Lock::open(&path)?.acquire_observed(holdfast::Mode::Exclusive, wait, &Show);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> Holders {
        (self.holders)()
    }
}

/// Calls `wait_ended` when the wait ends, however it ends.
pub(crate) struct Watch<'o> {
    observer: &'o dyn WaitObserver,
    started: bool,
}

impl<'o> Watch<'o> {
    pub(crate) fn new(observer: &'o dyn WaitObserver) -> Self {
        Watch {
            observer,
            started: false,
        }
    }

    /// Reports the start of the wait (once; `make` runs only then).
    pub(crate) fn start(&mut self, make: impl FnOnce() -> Waiting) {
        if !self.started {
            self.started = true;
            self.observer.wait_started(&make());
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.started {
            self.observer.wait_ended();
        }
    }
}

/// The instant a wait gives up: `None` for [`Wait::Forever`]; for
/// [`Wait::NoWait`], `started` itself.
pub(crate) fn deadline(wait: Wait, started: Instant) -> Option<Instant> {
    match wait {
        Wait::NoWait => Some(started),
        Wait::Forever => None,
        Wait::Timeout(d) => Some(started.checked_add(d).unwrap_or_else(far_future)),
        Wait::Deadline(d) => Some(d),
    }
}

pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// The one place a contention error is built: [`Error::WouldBlock`] for
/// [`Wait::NoWait`], else [`Error::Timeout`] with the time since
/// `started`. `holders` runs only here, when the error is returned.
pub(crate) fn contention(
    path: &Path,
    mode: Mode,
    wait: Wait,
    started: Instant,
    holders: impl FnOnce() -> Holders,
) -> Error {
    if wait == Wait::NoWait {
        Error::WouldBlock {
            path: path.to_owned(),
            mode,
            holders: holders(),
        }
    } else {
        Error::Timeout {
            path: path.to_owned(),
            mode,
            waited: started.elapsed(),
            holders: holders(),
        }
    }
}
