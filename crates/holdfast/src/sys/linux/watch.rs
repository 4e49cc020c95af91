//! Waiting for a change without polling: inotify on a directory entry
//! ([`DirWatch`]) and a pidfd on a process ([`PidWatch`]).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

/// Notification about one name in a directory (inotify), for lock-file
/// waiters: it fires when the lock name is removed, renamed or replaced, or
/// when a file there is closed after writing.
#[derive(Debug)]
pub(crate) struct DirWatch {
    fd: OwnedFd,
    name: std::ffi::OsString,
}

impl DirWatch {
    /// Watches `dir` for changes to the entry `name`.
    pub(crate) fn new(dir: &std::path::Path, name: &std::ffi::OsStr) -> io::Result<DirWatch> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        inotify::add_watch(
            &fd,
            dir,
            WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR,
        )?;
        Ok(DirWatch {
            fd,
            name: name.to_owned(),
        })
    }

    /// Forgets pending events (before reusing the watch for another wait).
    pub(crate) fn clear(&self) {
        let _ = self.drain();
    }

    /// Reads every pending event; `true` if one concerned our name (or the
    /// queue overflowed, or the directory itself went away).
    fn drain(&self) -> io::Result<bool> {
        use rustix::fs::inotify::{ReadFlags, Reader};
        use std::os::unix::ffi::OsStrExt;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = Reader::new(&self.fd, &mut buf);
        let mut relevant = false;
        loop {
            match reader.next() {
                Ok(ev) => {
                    let flags = ev.events();
                    if flags.intersects(
                        ReadFlags::QUEUE_OVERFLOW
                            | ReadFlags::IGNORED
                            | ReadFlags::DELETE_SELF
                            | ReadFlags::MOVE_SELF,
                    ) {
                        relevant = true;
                    }
                    if let Some(n) = ev.file_name()
                        && n.to_bytes() == self.name.as_bytes()
                    {
                        relevant = true;
                    }
                }
                Err(Errno::AGAIN) => return Ok(relevant),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A process to wait for (pidfd): readable when it exits.
#[derive(Debug)]
pub(crate) struct PidWatch {
    fd: OwnedFd,
}

impl PidWatch {
    /// Opens a pidfd for `pid`. The caller re-checks that `pid` is still the
    /// process it means (start time) after opening, so a recycled pid is not
    /// mistaken for it.
    pub(crate) fn open(pid: u32) -> io::Result<PidWatch> {
        let p = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?;
        Ok(PidWatch { fd })
    }
}

/// Blocks until the watched name changes, the watched process exits, or
/// `timeout` passes. `Ok(true)` if something happened.
pub(crate) fn wait_for_change(
    dir: Option<&DirWatch>,
    pid: Option<&PidWatch>,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    if let Some(d) = dir
        && d.drain()?
    {
        return Ok(true);
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let left = deadline - now;
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = Vec::with_capacity(2);
        if let Some(d) = dir {
            fds.push(PollFd::new(&d.fd, PollFlags::IN));
        }
        if let Some(p) = pid {
            fds.push(PollFd::new(&p.fd, PollFlags::IN));
        }
        if fds.is_empty() {
            std::thread::sleep(left);
            return Ok(false);
        }
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => {
                let dir_ready = dir.is_some() && !fds[0].revents().is_empty();
                let pid_ready = match (dir, pid) {
                    (Some(_), Some(_)) => !fds[1].revents().is_empty(),
                    (None, Some(_)) => !fds[0].revents().is_empty(),
                    _ => false,
                };
                drop(fds);
                if pid_ready {
                    return Ok(true);
                }
                if dir_ready && dir.map(DirWatch::drain).transpose()? == Some(true) {
                    return Ok(true);
                }
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
