//! No extended attributes on this platform: every call is `Unsupported`.

use std::io;
use std::path::Path;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "extended attributes are not implemented for this platform",
    )
}
pub(crate) fn xattr_exists(_p: &Path, _n: &str, _f: bool) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn xattr_get(_p: &Path, _n: &str, _f: bool) -> io::Result<Option<Vec<u8>>> {
    Err(unsupported())
}
pub(crate) fn xattr_set(_p: &Path, _n: &str, _v: &[u8], _f: bool) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn xattr_remove(_p: &Path, _n: &str, _f: bool) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn xattr_list(_p: &Path, _f: bool) -> io::Result<Vec<Vec<u8>>> {
    Err(unsupported())
}
