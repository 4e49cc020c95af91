//! The permits a [`Semaphore`] hands out: borrowed and owned.

use std::fmt;
use std::path::Path;

use super::{SemHeld, Semaphore};
use crate::error::Result;
use crate::mode::Mode;

/// A permit of a [`Semaphore`]; given back when dropped.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
/// {
///     let _permit = sem.lock()?;
///     assert_eq!(sem.available()?, 0);
/// } // given back here
/// assert_eq!(sem.available()?, 1);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the permit is released when it is dropped"]
pub struct SemaphorePermit<'a> {
    pub(super) sem: &'a Semaphore,
    pub(super) held: SemHeld,
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("path", &self.held.path())
            .field("slot", &self.held.slot)
            .finish()
    }
}

impl<'a> SemaphorePermit<'a> {
    /// Which of the N slots this permit occupies (`0..N`): handy to pick
    /// one of N resources, such as a GPU.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let gpus = ["cuda:0", "cuda:1"];
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), gpus.len())?;
    /// let permit = sem.lock()?;
    /// println!("running on {}", gpus[permit.slot()]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn slot(&self) -> usize {
        self.held.slot()
    }
    /// The semaphore.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let permit = sem.lock()?;
    /// assert_eq!(permit.semaphore().permits(), 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn semaphore(&self) -> &'a Semaphore {
        self.sem
    }
    /// Gives the permit back now, reporting failure.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("s"), 1)?;
    /// sem.lock()?.unlock()?;
    /// assert_eq!(sem.available()?, 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the unlock fails (the file is closed anyway, which
    /// releases the slot).
    pub fn unlock(mut self) -> Result<()> {
        self.held.release()
    }

    /// The former name of [`unlock`](Self::unlock).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// #[allow(deprecated)]
    /// sem.lock()?.release()?; // now: unlock()
    /// assert_eq!(sem.available()?, 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`unlock`](Self::unlock).
    #[deprecated(note = "use unlock(), the word every holdfast guard uses")]
    pub fn release(self) -> Result<()> {
        self.unlock()
    }
}

/// A permit of a [`Semaphore`] that owns what it needs: `Send`, `'static`,
/// given back when dropped or [`unlock`](Self::unlock)ed, from any thread.
///
/// Made by [`Semaphore::acquire_owned`] (and by the async
/// `holdfast::tokio::AsyncSemaphore`).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
/// let p = sem.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
/// std::thread::spawn(move || p.unlock()).join().unwrap()?;
/// assert_eq!(sem.available()?, 2);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the permit is released when it is dropped"]
pub struct OwnedSemaphorePermit {
    pub(crate) held: SemHeld,
    pub(crate) mode: Mode,
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .field("path", &self.held.path())
            .field("slot", &self.held.slot())
            .finish()
    }
}

impl OwnedSemaphorePermit {
    /// Which slot (`0..N`) the permit occupies.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let p = sem.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
    /// assert!(p.slot() < 2);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn slot(&self) -> usize {
        self.held.slot()
    }
    /// The mode it was asked for ([`Mode::Shared`], or
    /// [`Mode::Exclusive`] on a semaphore of one permit).
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("one.sem"), 1)?;
    /// let p = sem.acquire_owned(Mode::Exclusive, Wait::NoWait)?; // one permit: exclusive allowed
    /// assert_eq!(p.mode(), Mode::Exclusive);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The semaphore file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 2)?;
    /// let p = sem.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
    /// assert_eq!(p.path(), dir.path().join("gpu.sem"));
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        self.held.path()
    }
    /// Gives the permit back now, reporting failure.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// let p = sem.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
    /// std::thread::spawn(move || p.unlock()).join().unwrap()?; // from another thread
    /// assert_eq!(sem.available()?, 1);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) (the file is closed anyway, which releases the slot).
    pub fn unlock(mut self) -> Result<()> {
        self.held.release()
    }
    /// The former name of [`unlock`](Self::unlock).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let sem = holdfast::Semaphore::open(dir.path().join("gpu.sem"), 1)?;
    /// let p = sem.acquire_owned(holdfast::Mode::Shared, holdfast::Wait::NoWait)?;
    /// #[allow(deprecated)]
    /// p.release()?; // now: unlock()
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`unlock`](Self::unlock).
    #[deprecated(note = "use unlock(), the word every holdfast guard uses")]
    pub fn release(self) -> Result<()> {
        self.unlock()
    }
}
