//! Linux-only pieces: `/proc` readers and the killable lock waiter.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use super::{FileId, KernelLock, KernelLockKind};
use crate::lock::{Backend, Mode};

/// The kernel's boot id: changes on every boot.
pub(crate) fn boot_id() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`
/// field 22). Together with the boot id it identifies a process for good:
/// a reused pid has a different start time.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_start_time(&stat)
}

pub(crate) fn parse_stat_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); field 22 is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A process's state letter and start time, from one read of
/// `/proc/PID/stat`; `None` if it does not exist.
pub(crate) fn process_state_start(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// A process's command line, arguments joined by spaces; the short command
/// name for processes without one (kernel threads, zombies).
pub(crate) fn process_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        return Some(format!("[{}]", comm.trim()));
    }
    Some(args.join(" "))
}

/// The path an open file was opened by, from `/proc/self/fd`, if it is
/// still a plain absolute path (not `pipe:[…]`, not ` (deleted)`).
pub(crate) fn fd_path(file: &File) -> Option<std::path::PathBuf> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let deleted = target
        .as_os_str()
        .as_encoded_bytes()
        .ends_with(b" (deleted)");
    (target.is_absolute() && !deleted).then_some(target)
}

/// A process's real uid.
pub(crate) fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The locks the kernel reports on this file, from `/proc/locks`. Waiting
/// requests (`->` lines) are not holders and are left out. OFD locks carry
/// no pid there; their owner is looked up in `/proc/*/fdinfo`.
pub(crate) fn kernel_locks(id: FileId) -> io::Result<Option<Vec<KernelLock>>> {
    let text = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (major, minor) = super::imp::dev_major_minor(id.dev);
    let mut found = parse_proc_locks(&text, major, minor, id.ino);
    if found.iter().any(|l| l.pid.is_none()) {
        let owners = ofd_owners(major, minor, id.ino);
        let mut owners = owners.into_iter();
        for l in found.iter_mut().filter(|l| l.pid.is_none()) {
            l.pid = owners.next();
        }
    }
    Ok(Some(found))
}

/// Parses `/proc/locks` text, keeping the held locks on one inode.
pub(crate) fn parse_proc_locks(text: &str, major: u32, minor: u32, ino: u64) -> Vec<KernelLock> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(l) = parse_lock_line(line, major, minor, ino) {
            out.push(l);
        }
    }
    out
}

fn parse_lock_line(line: &str, major: u32, minor: u32, ino: u64) -> Option<KernelLock> {
    let mut it = line.split_ascii_whitespace();
    let _id = it.next()?; // "1:"
    let kind = it.next()?;
    if kind == "->" {
        return None; // a waiter, not a holder
    }
    let kind = match kind {
        "FLOCK" => KernelLockKind::Flock,
        "OFDLCK" => KernelLockKind::Ofd,
        "POSIX" => KernelLockKind::Posix,
        _ => return None, // LEASE, DELEG, ...
    };
    let _advisory = it.next()?;
    let exclusive = match it.next()? {
        "WRITE" => true,
        "READ" => false,
        _ => return None,
    };
    let pid: i64 = it.next()?.parse().ok()?;
    let dev = it.next()?;
    let mut parts = dev.split(':');
    let maj = u32::from_str_radix(parts.next()?, 16).ok()?;
    let min = u32::from_str_radix(parts.next()?, 16).ok()?;
    let i: u64 = parts.next()?.parse().ok()?;
    if (maj, min, i) != (major, minor, ino) {
        return None;
    }
    Some(KernelLock {
        kind,
        exclusive,
        pid: (pid > 0).then_some(pid as u32),
    })
}

/// Finds processes whose `fdinfo` shows an OFD lock on the inode (the
/// lslocks technique). Only processes we may inspect are seen.
fn ofd_owners(major: u32, minor: u32, ino: u64) -> Vec<u32> {
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        'fds: for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in info.lines() {
                if let Some(rest) = line.strip_prefix("lock:")
                    && let Some(l) = parse_lock_line(rest.trim_start(), major, minor, ino)
                    && l.kind == KernelLockKind::Ofd
                {
                    owners.push(pid);
                    break 'fds;
                }
            }
        }
    }
    owners
}

/// What the waiter child needs; lives on the parent's heap until reaped.
struct WaiterRequest {
    fd: i32,
    backend: Backend,
    mode: Mode,
}

extern "C" fn waiter_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to a `WaiterRequest` the parent keeps alive until
    // it has reaped this child.
    let req = unsafe { &*(arg as *const WaiterRequest) };
    loop {
        match super::imp::raw_lock(req.fd, req.backend, req.mode, true) {
            Ok(()) => return 0,
            Err(Errno::INTR) => continue,
            Err(e) => return e.raw_os_error(),
        }
    }
}

const WAITER_STACK: usize = 64 * 1024;

/// Waits for the lock in a killable child (see `unix::lock_until`).
///
/// The child is created with `CLONE_VM` (no page-table copy, so this costs
/// microseconds even in a large process) and a copy of our descriptor
/// table, so its lock call acts on *our* open file description: when it is
/// granted, we hold the lock. Its exit signal is none, so `waitpid(-1)` in
/// the application never reaps it, and all signals are blocked in it. We
/// wait on its pidfd with the remaining time; at the deadline we SIGKILL it
/// (a blocked lock call is interruptible), reap it, and settle the one race
/// left (granted just before the kill) with a non-blocking retry on our
/// own description, which is a no-op if we already hold the lock.
pub(crate) fn wait_in_child(
    file: &File,
    backend: Backend,
    mode: Mode,
    deadline: Instant,
) -> io::Result<bool> {
    loop {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let req = Box::new(WaiterRequest {
            fd: file.as_raw_fd(),
            backend,
            mode,
        });
        let mut stack = vec![0u8; WAITER_STACK];
        let child = match spawn_waiter(&req, &mut stack) {
            Ok(c) => c,
            // Kernel older than 5.2 (no CLONE_PIDFD) or a seccomp sandbox
            // that forbids the waiter: fall back to bounded polling.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)
                ) =>
            {
                tracing::debug!(error = %e, "no killable lock waiter; polling instead");
                return super::imp::poll_until(file, backend, mode, deadline);
            }
            Err(e) => return Err(e),
        };
        let outcome = wait_child(&child, deadline);
        // Whatever happened, the child must be gone before `req` and
        // `stack` are freed.
        let (status, wait_error) = match outcome {
            Ok(Some(status)) => (status, None),
            Ok(None) | Err(_) => {
                let _ =
                    rustix::process::pidfd_send_signal(&child.pidfd, rustix::process::Signal::KILL);
                (reap(&child)?, outcome.err())
            }
        };
        drop(stack);
        drop(req);
        if let Some(e) = wait_error {
            // We could not wait; the child is gone. If it got the lock for
            // us, give it back before reporting the failure.
            if matches!(status, ChildStatus::Exited(0)) {
                let _ = super::imp::unlock(file, backend);
            }
            return Err(e);
        }
        match status {
            ChildStatus::Exited(0) => return Ok(true),
            ChildStatus::Exited(errno) => return Err(io::Error::from_raw_os_error(errno)),
            ChildStatus::Killed => {
                // Granted-then-killed race, or a stray signal: decide with
                // a non-blocking attempt on our own description.
                if super::imp::try_lock(file, backend, mode)? {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
            }
        }
    }
}

struct Child {
    pidfd: OwnedFd,
}

enum ChildStatus {
    Exited(i32),
    Killed,
}

fn spawn_waiter(req: &WaiterRequest, stack: &mut [u8]) -> io::Result<Child> {
    let mut pidfd: libc::c_int = -1;
    // Stack grows down; the top must be 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_PIDFD;
    // Block every signal while cloning so the child starts (and stays) with
    // all signals blocked: it must never run one of our handlers on its
    // small stack. SIGKILL cannot be blocked, which is what we rely on.
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to initialised sigsets owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `waiter_main` only reads `req` (alive until reaped) and makes
    // raw lock syscalls on its private stack `stack` (alive until reaped);
    // it touches no allocator, lock or thread-local state. CLONE_PIDFD
    // stores the pidfd through the parent_tid argument. The exit signal is
    // 0, so only an explicit __WCLONE wait reaps the child.
    let pid = unsafe {
        libc::clone(
            waiter_main,
            top as *mut libc::c_void,
            flags,
            req as *const WaiterRequest as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    if pid == -1 {
        return Err(err);
    }
    // SAFETY: the kernel returned a fresh pidfd that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Child { pidfd })
}

/// Waits for the child to exit until `deadline`: `Some(status)` if it did.
fn wait_child(child: &Child, deadline: Instant) -> io::Result<Option<ChildStatus>> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let left = deadline - now;
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&child.pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => return reap(child).map(Some),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn reap(child: &Child) -> io::Result<ChildStatus> {
    loop {
        // SAFETY: siginfo_t is plain data, filled in by waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a pidfd we own; `info` is a valid out pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                child.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WCLONE,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a CLD_* record for our child.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        return Ok(if code == libc::CLD_EXITED {
            ChildStatus::Exited(status)
        } else {
            ChildStatus::Killed
        });
    }
}

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

/// Whether a process other than `pid` runs in a nested pid namespace where
/// its own pid is `pid`, with the start time `start`: the writer of a record
/// that names `pid` from inside a container that shares this host name
/// (filelock's `_owner_runs_elsewhere`). Such a record is not proof of death.
pub(crate) fn owner_runs_in_child_pidns(pid: u32, start: u64) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let Some(task) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if task == pid || process_start_time(task) != Some(start) {
            continue;
        }
        let Ok(status) = std::fs::read(format!("/proc/{task}/status")) else {
            continue;
        };
        let innermost = status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"NSpid:"))
            .and_then(|rest| {
                rest.split(|b| b.is_ascii_whitespace())
                    .rev()
                    .find(|f| !f.is_empty())
            })
            .and_then(|f| std::str::from_utf8(f).ok()?.parse::<u32>().ok());
        if innermost == Some(pid) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_start_of_this_process() {
        let (state, start) = process_state_start(std::process::id()).unwrap();
        assert_eq!(Some(start), process_start_time(std::process::id()));
        assert!(state == 'R' || state == 'S', "{state}");
    }

    #[test]
    fn stat_start_time_survives_odd_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat_start_time(stat), Some(987654));
        assert_eq!(parse_stat_start_time("garbage"), None);
    }

    #[test]
    fn proc_locks_lines() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4243 fd:01:1234 0 EOF\n\
                    2: OFDLCK ADVISORY  READ  -1 fd:01:1234 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 99 fd:01:9999 0 EOF\n\
                    4: LEASE  ACTIVE    READ  12 fd:01:1234 0 EOF\n\
                    junk\n";
        let got = parse_proc_locks(text, 0xfd, 1, 1234);
        assert_eq!(
            got,
            vec![
                KernelLock {
                    kind: KernelLockKind::Flock,
                    exclusive: true,
                    pid: Some(4242)
                },
                KernelLock {
                    kind: KernelLockKind::Ofd,
                    exclusive: false,
                    pid: None
                },
            ]
        );
    }
}
