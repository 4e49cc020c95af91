//! Extended attributes (the phase-marker store), where the platform has them.

use std::io;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// The errno a filesystem returns for "no such attribute".
#[cfg(target_vendor = "apple")]
const NO_ATTR: Errno = Errno::NOATTR;
#[cfg(not(target_vendor = "apple"))]
const NO_ATTR: Errno = Errno::NODATA;

/// Whether the attribute `name` exists on `path`. One system call with
/// a small buffer: `ERANGE` (value larger than the buffer) still means
/// it exists.
pub(crate) fn xattr_exists(path: &Path, name: &str, follow: bool) -> io::Result<bool> {
    let mut buf = [0u8; 64];
    let r = if follow {
        rustix::fs::getxattr(path, name, &mut buf)
    } else {
        rustix::fs::lgetxattr(path, name, &mut buf)
    };
    match r {
        Ok(_) | Err(Errno::RANGE) => Ok(true),
        Err(e) if e == NO_ATTR => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The value of attribute `name` on `path`, `None` if it is not set.
pub(crate) fn xattr_get(path: &Path, name: &str, follow: bool) -> io::Result<Option<Vec<u8>>> {
    loop {
        let size = if follow {
            rustix::fs::getxattr_query(path, name)
        } else {
            rustix::fs::lgetxattr_query(path, name)
        };
        let size = match size {
            Ok(n) => n,
            Err(e) if e == NO_ATTR => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut buf = vec![0u8; size];
        let r = if follow {
            rustix::fs::getxattr(path, name, &mut buf[..])
        } else {
            rustix::fs::lgetxattr(path, name, &mut buf[..])
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            // It grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) if e == NO_ATTR => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets attribute `name` on `path` (creating or replacing it).
pub(crate) fn xattr_set(path: &Path, name: &str, value: &[u8], follow: bool) -> io::Result<()> {
    if follow {
        rustix::fs::setxattr(path, name, value, XattrFlags::empty())?;
    } else {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())?;
    }
    Ok(())
}

/// Removes attribute `name` from `path`; `Ok(false)` if it was not set.
pub(crate) fn xattr_remove(path: &Path, name: &str, follow: bool) -> io::Result<bool> {
    let r = if follow {
        rustix::fs::removexattr(path, name)
    } else {
        rustix::fs::lremovexattr(path, name)
    };
    match r {
        Ok(()) => Ok(true),
        Err(e) if e == NO_ATTR => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names of all extended attributes of `path`, as raw bytes.
pub(crate) fn xattr_list(path: &Path, follow: bool) -> io::Result<Vec<Vec<u8>>> {
    loop {
        let size = if follow {
            rustix::fs::listxattr_query(path)
        } else {
            rustix::fs::llistxattr_query(path)
        }?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        let r = if follow {
            rustix::fs::listxattr(path, &mut buf[..])
        } else {
            rustix::fs::llistxattr(path, &mut buf[..])
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
