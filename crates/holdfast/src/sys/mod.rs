//! The only place in holdfast that talks to the operating system.
//!
//! Every backend exports the same item names, so the rest of the crate is
//! platform-neutral safe Rust. `unix.rs` covers every Unix (with Linux-only
//! refinements under `linux.rs`); `unsupported.rs` answers every call with
//! [`std::io::ErrorKind::Unsupported`] so the crate still builds elsewhere.
//! A Windows backend (`LockFileEx` on one byte at offset 0, the range
//! phaselock, filelock and fd-lock use) slots in beside them.

#[cfg_attr(unix, path = "unix/mod.rs")]
#[cfg_attr(not(unix), path = "unsupported.rs")]
mod imp;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) mod mapped;
#[cfg(unix)]
pub(crate) mod spawn;
#[cfg(all(feature = "fast-start", target_os = "linux", target_env = "gnu"))]
mod start;

pub(crate) use imp::*;

/// Identity of a file: device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// What [`open_lock_file`] opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file opened for reading and writing: a holder record can
    /// be written into it.
    Writable,
    /// A regular file we may only read (no write permission, read-only
    /// filesystem): lockable with `flock`, but no record.
    ReadOnly,
    /// A regular file opened for reading and writing that holdfast did not
    /// create and does not own: reached through a symbolic link, owned by
    /// another user, or with other hard links. Lockable, but no record is
    /// ever written into it (someone could have planted it to make a
    /// privileged holdfast write into a file of theirs or of a victim's).
    Foreign,
    /// A directory (or another non-regular file): lockable, no record.
    Other,
}

/// How to open a lock file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenSpec {
    /// Permission bits for a newly created file (the umask applies).
    pub mode: u32,
    /// Create the file when it is missing.
    pub create: bool,
    /// Follow a symbolic link in the last path component.
    pub follow_symlinks: bool,
}

/// One lock on a file as the kernel reports it (Linux: `/proc/locks`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KernelLock {
    /// Which family of lock.
    pub kind: KernelLockKind,
    /// Exclusive (write) or shared (read).
    pub exclusive: bool,
    /// The pid the kernel names; `None` for OFD locks, whose owner the
    /// kernel does not record (found by scanning `fdinfo` instead).
    pub pid: Option<u32>,
}

/// Lock families the kernel distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelLockKind {
    /// BSD `flock(2)`.
    Flock,
    /// Open-file-description `fcntl` lock.
    Ofd,
    /// Classic process-associated POSIX `fcntl`/`lockf` lock.
    Posix,
}

/// A byte range of a file for an open-file-description `fcntl` lock
/// (Linux): `[start, start + len)`, or `[start, ∞)` when `len` is 0. The
/// fair queue and the semaphore keep their tickets and slots as such
/// ranges of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// First byte.
    pub start: u64,
    /// Number of bytes; 0 means "to the end of all possible offsets".
    pub len: u64,
    /// A write (exclusive) rather than a read (shared) lock.
    pub exclusive: bool,
}

impl Range {
    /// One byte at `start`.
    pub const fn byte(start: u64, exclusive: bool) -> Range {
        Range {
            start,
            len: 1,
            exclusive,
        }
    }
}

/// A lock request a killable waiter can block on (see `linux.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockReq {
    /// The whole file, with the lock family of a [`crate::Lock`].
    Whole {
        /// `flock` or OFD `fcntl`.
        backend: crate::mode::Backend,
        /// Exclusive or shared.
        mode: crate::mode::Mode,
    },
    /// A byte range, always an OFD `fcntl` lock.
    Range(Range),
}
