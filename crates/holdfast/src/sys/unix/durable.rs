//! Durable writes for the phase-marker stores: `O_EXCL` creation, `fsync`
//! of files and directories, opening without following a symlink.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::{Mode as PermMode, OFlags};
use rustix::io::Errno;

/// Creates a new file for writing with `O_EXCL` (never an existing file,
/// never through a symlink), permission bits `mode` minus the umask.
pub(crate) fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY,
        PermMode::from_raw_mode(mode as _),
    )?;
    Ok(File::from(fd))
}

/// Flushes a directory's entries (a rename or create in it) to stable
/// storage. `Ok(false)` when the filesystem cannot sync directories
/// (`EINVAL`/`ENOTSUP`, some FUSE and network filesystems).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        PermMode::empty(),
    )?;
    match rustix::fs::fsync(&fd) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL) | Err(Errno::NOTSUP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Flushes a file's data and metadata (including extended attributes) to
/// stable storage, opening it read-only and without following a symlink
/// unless `follow`.
pub(crate) fn sync_path(path: &Path, follow: bool) -> io::Result<()> {
    let nofollow = if follow {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK | nofollow,
        PermMode::empty(),
    )?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Opens an existing file for reading without following a symlink in the
/// last component (`ELOOP` then).
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::NOFOLLOW,
        PermMode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Whether an I/O error is "too many symbolic links" (what `O_NOFOLLOW`
/// gives for a symlink).
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}
