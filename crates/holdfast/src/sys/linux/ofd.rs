//! Open-file-description (`F_OFD_*`) `fcntl` locks on byte ranges, and the
//! one raw lock request every caller (the waiter child included) makes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use rustix::io::Errno;

use crate::sys::{LockReq, Range};

/// Performs an OFD `fcntl` lock command on a byte range of a raw
/// descriptor. Used by the waiter child too, so it must not allocate.
fn ofd_range(
    fd: i32,
    cmd: libc::c_int,
    l_type: libc::c_int,
    start: u64,
    len: u64,
) -> Result<libc::flock, Errno> {
    let (Ok(l_start), Ok(l_len)) = (i64::try_from(start), i64::try_from(len)) else {
        return Err(Errno::INVAL);
    };
    let mut lock = libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: l_start as libc::off_t,
        l_len: l_len as libc::off_t,
        l_pid: 0,
    };
    // SAFETY: `fd` is an open descriptor the caller keeps open for this
    // call, and `lock` is a fully initialised `struct flock` that outlives
    // it (F_OFD_GETLK writes the answer back into it). `syscall` rather
    // than the `fcntl` wrapper, as in `unix::ofd_op`.
    let r = unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, &mut lock as *mut libc::flock) };
    if r == -1 {
        Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(lock)
    }
}

fn range_type(r: &Range) -> libc::c_int {
    if r.exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    }
}

/// One lock request on a raw descriptor; blocking if `wait`.
pub(super) fn raw_request(fd: i32, req: &LockReq, wait: bool) -> Result<(), Errno> {
    match req {
        LockReq::Whole { backend, mode } => crate::sys::imp::raw_lock(fd, *backend, *mode, wait),
        LockReq::Range(r) => {
            let cmd = if wait {
                libc::F_OFD_SETLKW
            } else {
                libc::F_OFD_SETLK
            };
            ofd_range(fd, cmd, range_type(r), r.start, r.len).map(drop)
        }
    }
}

/// One non-blocking attempt at `req` on `file`: `Ok(false)` if taken by
/// someone else.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn raw_try(file: &File, req: &LockReq) -> io::Result<bool> {
    loop {
        match raw_request(file.as_raw_fd(), req, false) {
            Ok(()) => return Ok(true),
            Err(Errno::AGAIN) | Err(Errno::ACCESS) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes an OFD lock on a byte range: `Ok(false)` if another open file
/// description holds a conflicting lock (only when not waiting).
pub(crate) fn range_lock(file: &File, r: Range, wait: bool) -> io::Result<bool> {
    loop {
        match raw_request(file.as_raw_fd(), &LockReq::Range(r), wait) {
            Ok(()) => return Ok(true),
            Err(Errno::AGAIN) | Err(Errno::ACCESS) if !wait => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Releases whatever OFD lock this open file description holds on the
/// range (a range it does not hold is no error).
pub(crate) fn range_unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    super::reap_exited_waiters();
    ofd_range(
        file.as_raw_fd(),
        libc::F_OFD_SETLK,
        libc::F_UNLCK,
        start,
        len,
    )?;
    Ok(())
}

/// `F_OFD_GETLK`: a lock held by *another* open file description that
/// conflicts with `r` (its range, `len` 0: to the end, and whether it is a
/// write lock), or `None`. Which one, when several conflict, is the
/// kernel's choice.
pub(crate) fn range_conflict(file: &File, r: Range) -> io::Result<Option<Range>> {
    let got = ofd_range(
        file.as_raw_fd(),
        libc::F_OFD_GETLK,
        range_type(&r),
        r.start,
        r.len,
    )?;
    if got.l_type as libc::c_int == libc::F_UNLCK {
        return Ok(None);
    }
    Ok(Some(Range {
        start: got.l_start.max(0) as u64,
        len: got.l_len.max(0) as u64,
        exclusive: got.l_type as libc::c_int == libc::F_WRLCK,
    }))
}
