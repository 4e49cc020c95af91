//! How etcd failures become [`holdfast::Error`]s.

use std::io;
use std::path::Path;

use holdfast::Error;

/// A failure of etcd itself (unreachable, refusing, timing out) while
/// doing `op` ("grant a lease for", "write a marker of") to `path`:
/// [`Error::Backend`](holdfast::Error::Backend) whose source is an [`io::Error`] with the kind of
/// failure (`TimedOut` and `ConnectionRefused`: unreachable;
/// `PermissionDenied`: credentials or permissions; `NotFound`: a lease
/// etcd no longer has).
pub(crate) fn failure(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Backend {
        path: path.to_owned(),
        op,
        source: Box::new(source),
    }
}

/// The kind of an etcd failure made by this crate, if `e` is one.
pub(crate) fn kind(e: &Error) -> Option<io::ErrorKind> {
    match e {
        Error::Backend { source, .. } => source.downcast_ref::<io::Error>().map(io::Error::kind),
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

/// Whether `e` says etcd could not be reached (as opposed to refusing).
///
/// ```
/// use std::io;
/// let e = holdfast::Error::Backend {
///     op: "grant a lease for",
///     path: "etcd://127.0.0.1:1/x".into(),
///     source: Box::new(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
/// };
/// assert!(holdfast_etcd::is_unreachable(&e));
/// ```
pub fn is_unreachable(e: &Error) -> bool {
    matches!(
        kind(e),
        Some(io::ErrorKind::TimedOut | io::ErrorKind::ConnectionRefused)
    )
}
