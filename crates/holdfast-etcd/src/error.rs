//! How etcd failures become [`holdfast::Error`]s.

use std::io;
use std::path::Path;

use holdfast::Error;
use holdfast::error::IoOp;

/// A failure of etcd itself (unreachable, refusing, timing out) while
/// doing `op` ("grant a lease for", "write a marker of") to `path`.
///
/// The library's error for backend failures is `Error::Io` for now, with
/// the closest file operation and `op` at the head of the message; the
/// `io::ErrorKind` says what kind of failure it is (`TimedOut` and
/// `ConnectionRefused`: unreachable; `PermissionDenied`: credentials).
pub(crate) fn failure(op: &'static str, path: &Path, source: io::Error) -> Error {
    let io_op = if op.starts_with("read") || op.starts_with("look") || op.starts_with("list") {
        IoOp::Read
    } else if op.starts_with("write") || op.starts_with("remove") {
        IoOp::Write
    } else if op.starts_with("release") {
        IoOp::Release
    } else {
        IoOp::Lock
    };
    Error::Io {
        op: io_op,
        path: path.to_owned(),
        source: io::Error::new(source.kind(), format!("{op} it: {source}")),
    }
}

/// Whether `e` says etcd could not be reached (as opposed to refusing).
///
/// ```
/// use std::io;
/// let e = holdfast::Error::Io {
///     op: holdfast::error::IoOp::Lock,
///     path: "etcd://127.0.0.1:1/x".into(),
///     source: io::Error::new(io::ErrorKind::TimedOut, "no answer"),
/// };
/// assert!(holdfast_etcd::is_unreachable(&e));
/// ```
pub fn is_unreachable(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => matches!(
            source.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::ConnectionRefused
        ),
        _ => false,
    }
}
