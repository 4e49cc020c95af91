//! Linux-only pieces: `/proc` readers and the killable lock waiter.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use super::{FileId, KernelLock, KernelLockKind, LockReq, Range};

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

/// A process's command line, arguments quoted as a shell would need them
/// and joined by spaces; the short command name for processes without one
/// (kernel threads, zombies).
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
    Some(crate::text::shell_join(&args))
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
fn raw_request(fd: i32, req: &LockReq, wait: bool) -> Result<(), Errno> {
    match req {
        LockReq::Whole { backend, mode } => super::imp::raw_lock(fd, *backend, *mode, wait),
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
/// conflicts with `r`, as `(start, len)` (`len` 0: to the end), or `None`.
/// Which one, when several conflict, is the kernel's choice.
pub(crate) fn range_conflict(file: &File, r: Range) -> io::Result<Option<(u64, u64)>> {
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
    Ok(Some((got.l_start.max(0) as u64, got.l_len.max(0) as u64)))
}

/// Pids of processes whose open file descriptions hold an OFD lock on the
/// inode overlapping bytes `[start, end)`, from `/proc/*/fdinfo` (only
/// processes we may inspect are seen).
pub(crate) fn ofd_lock_pids(id: FileId, start: u64, end: u64) -> Vec<u32> {
    let (major, minor) = super::imp::dev_major_minor(id.dev);
    let want = format!("{major:02x}:{minor:02x}:{}", id.ino);
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
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
                let Some(rest) = line.strip_prefix("lock:") else {
                    continue;
                };
                if let Some((s, e)) = parse_ofd_range(rest, &want)
                    && s < end
                    && e >= start
                {
                    pids.push(pid);
                    break 'fds;
                }
            }
        }
    }
    pids
}

/// `(first, last)` byte of an `OFDLCK` line on the inode `want`
/// (`maj:min:ino`), held (not waiting).
fn parse_ofd_range(line: &str, want: &str) -> Option<(u64, u64)> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    // "1:" "OFDLCK" "ADVISORY" "WRITE" "-1" "dev:ino" start end
    if f.len() < 8 || f[1] != "OFDLCK" || f[5] != want {
        return None;
    }
    let s = f[6].parse().ok()?;
    let e = if f[7] == "EOF" {
        u64::MAX
    } else {
        f[7].parse().ok()?
    };
    Some((s, e))
}

/// What the waiter child needs; lives on the parent's heap until reaped.
struct WaiterRequest {
    fd: i32,
    req: LockReq,
    /// Our pid, to notice being orphaned before the death signal was set.
    parent: i32,
    /// Descriptors to close one by one where `close_range` is missing.
    max_fd: u32,
}

extern "C" fn waiter_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to a `WaiterRequest` the parent keeps alive until
    // it has reaped this child (or leaks it if it cannot).
    let req = unsafe { &*(arg as *const WaiterRequest) };
    // Everything below goes through `child::*`: raw system calls that
    // return the error instead of storing it in `errno`. The child runs on
    // the parent thread's TLS (there is no CLONE_SETTLS), so a libc
    // wrapper that failed here would overwrite the parent's `errno` at an
    // arbitrary moment.
    //
    // The child holds a copy of the parent's descriptor table, so it keeps
    // every open file description of the parent, and every lock on them,
    // alive. If the parent dies (SIGKILL) while we wait, we must die too,
    // at once: otherwise the dead parent's locks would outlive it until our
    // request is granted. The death signal fires when the thread that
    // cloned us ends; the parent check covers a parent that died before
    // the signal was armed.
    if child::set_death_signal_kill().is_err() || child::getppid() != req.parent {
        return libc::ESRCH;
    }
    // The copied descriptor table also holds every other file, pipe and
    // socket of the parent: a pipe the parent closes while we wait would
    // stay open (its reader never sees EOF), a socket would stay
    // connected. Keep only the descriptor we lock.
    close_all_but(req.fd, req.max_fd);
    loop {
        match child::lock(req.fd, &req.req) {
            Ok(()) => return 0,
            Err(libc::EINTR) => continue,
            Err(e) => return e,
        }
    }
}

/// Closes every descriptor except `keep`, without allocating.
fn close_all_but(keep: i32, max_fd: u32) {
    let keep = keep as u32;
    let low = if keep > 0 {
        child::close_range(0, keep - 1)
    } else {
        Ok(())
    };
    let high = child::close_range(keep + 1, u32::MAX);
    if low.is_err() || high.is_err() {
        // Linux < 5.9: one by one up to the descriptor limit.
        for fd in (0..max_fd).filter(|&fd| fd != keep) {
            child::close(fd);
        }
    }
}

/// The system calls of the waiter child, made with the `syscall`
/// instruction itself: the result (or `-errno`) comes back in a register
/// and nothing is written to memory, so the parent thread's `errno`, which
/// the child shares, is never touched. Where there is no such code for the
/// architecture, `SUPPORTED` is false and no child is ever started (waits
/// fall back to polling).
mod child {
    use super::super::LockReq;
    use crate::mode::{Backend, Mode};

    pub(super) const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

    /// A raw system call: `Err(errno)` for results in `-4095..0`.
    ///
    /// # Safety
    ///
    /// As the system call `n` with these arguments.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall(n: libc::c_long, a: [usize; 3]) -> Result<usize, i32> {
        let ret: isize;
        // SAFETY: the caller vouches for the call; `syscall` clobbers rcx
        // and r11 only, and uses no stack.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        if (-4095..0).contains(&ret) {
            Err(-ret as i32)
        } else {
            Ok(ret as usize)
        }
    }

    /// A raw system call: `Err(errno)` for results in `-4095..0`.
    ///
    /// # Safety
    ///
    /// As the system call `n` with these arguments.
    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall(n: libc::c_long, a: [usize; 3]) -> Result<usize, i32> {
        let ret: isize;
        // SAFETY: the caller vouches for the call; `svc 0` takes the
        // number in x8 and returns in x0, using no stack.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                options(nostack),
            );
        }
        if (-4095..0).contains(&ret) {
            Err(-ret as i32)
        } else {
            Ok(ret as usize)
        }
    }

    /// Never called: `SUPPORTED` is false, so no child exists.
    ///
    /// # Safety
    ///
    /// Always safe; it makes no call.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    unsafe fn syscall(_n: libc::c_long, _a: [usize; 3]) -> Result<usize, i32> {
        Err(libc::ENOSYS)
    }

    pub(super) fn set_death_signal_kill() -> Result<(), i32> {
        // SAFETY: prctl(PR_SET_PDEATHSIG, SIGKILL) takes no pointers.
        unsafe {
            syscall(
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize, 0],
            )
        }
        .map(drop)
    }

    pub(super) fn getppid() -> i32 {
        // SAFETY: getppid takes no arguments and cannot fail.
        unsafe { syscall(libc::SYS_getppid, [0; 3]) }.map_or(0, |p| p as i32)
    }

    pub(super) fn close_range(first: u32, last: u32) -> Result<(), i32> {
        // SAFETY: close_range(2) on our own (copied) descriptor table; no
        // pointers involved.
        unsafe { syscall(libc::SYS_close_range, [first as usize, last as usize, 0]) }.map(drop)
    }

    pub(super) fn close(fd: u32) {
        // SAFETY: closing a descriptor of our own copied table.
        let _ = unsafe { syscall(libc::SYS_close, [fd as usize, 0, 0]) };
    }

    /// The blocking lock request on `fd`.
    pub(super) fn lock(fd: i32, req: &LockReq) -> Result<(), i32> {
        let (l_type, start, len) = match *req {
            LockReq::Whole {
                backend: Backend::Flock,
                mode,
            } => {
                let op = match mode {
                    Mode::Exclusive => libc::LOCK_EX,
                    Mode::Shared => libc::LOCK_SH,
                };
                // SAFETY: flock(2) on a descriptor the parent keeps open
                // until it has reaped us; no pointers.
                return unsafe { syscall(libc::SYS_flock, [fd as usize, op as usize, 0]) }
                    .map(drop);
            }
            LockReq::Whole {
                backend: Backend::OfdFcntl,
                mode,
            } => {
                let t = match mode {
                    Mode::Exclusive => libc::F_WRLCK,
                    Mode::Shared => libc::F_RDLCK,
                };
                (t, 0, 0)
            }
            LockReq::Range(r) => {
                let t = if r.exclusive {
                    libc::F_WRLCK
                } else {
                    libc::F_RDLCK
                };
                let (Ok(s), Ok(l)) = (i64::try_from(r.start), i64::try_from(r.len)) else {
                    return Err(libc::EINVAL);
                };
                (t, s, l)
            }
        };
        let lock = libc::flock {
            l_type: l_type as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: start as libc::off_t,
            l_len: len as libc::off_t,
            l_pid: 0,
        };
        // SAFETY: fcntl(F_OFD_SETLKW) on a descriptor the parent keeps
        // open; `lock` is a fully initialised `struct flock` on our stack
        // that outlives the call.
        unsafe {
            syscall(
                libc::SYS_fcntl,
                [
                    fd as usize,
                    libc::F_OFD_SETLKW as usize,
                    &lock as *const libc::flock as usize,
                ],
            )
        }
        .map(drop)
    }
}

const WAITER_STACK: usize = 64 * 1024;

/// How a waiter child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// Its request was granted: our open file description holds the lock.
    Granted,
    /// Its request failed with this errno.
    Failed(i32),
    /// It was killed; the request may or may not have been granted just
    /// before (see [`settle`]).
    Killed,
}

/// A killable child task blocked in one lock request on our behalf.
///
/// The child is created with `CLONE_VM` (no page-table copy, so this costs
/// microseconds even in a large process) and a copy of our descriptor
/// table, so its lock call acts on *our* open file description: when it is
/// granted, we hold the lock. Its exit signal is none, so `waitpid(-1)` in
/// the application never reaps it; all signals are blocked in it, and it
/// dies with the thread that created it. Its pidfd becomes readable when it
/// exits, which is what both the blocking waits here and the async futures
/// of the `tokio` feature wait on. Dropping a `Waiter` kills and reaps the
/// child before its stack and request are freed.
pub(crate) struct Waiter {
    pidfd: OwnedFd,
    req: Box<WaiterRequest>,
    stack: Vec<u8>,
    status: Option<WaitStatus>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("req", &self.req.req)
            .field("status", &self.status)
            .finish()
    }
}

impl Waiter {
    /// Starts a child blocked in `req` on `file`'s open file description.
    pub(crate) fn spawn(file: &File, req: LockReq) -> io::Result<Waiter> {
        if !child::SUPPORTED {
            // No errno-free system calls for this architecture: callers
            // fall back to polling.
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let max_fd = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024)
            .min(1 << 20) as u32;
        let req = Box::new(WaiterRequest {
            fd: file.as_raw_fd(),
            req,
            parent: rustix::process::getpid().as_raw_nonzero().get(),
            max_fd,
        });
        let mut stack = vec![0u8; WAITER_STACK];
        let pidfd = spawn_child(&req, &mut stack)?;
        Ok(Waiter {
            pidfd,
            req,
            stack,
            status: None,
        })
    }

    /// The request this waiter makes.
    pub(crate) fn request(&self) -> LockReq {
        self.req.req
    }

    /// The child's pidfd: readable once it has exited.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.pidfd.as_fd()
    }

    /// How the child ended, if it has (never blocks).
    pub(crate) fn try_status(&mut self) -> io::Result<Option<WaitStatus>> {
        if self.status.is_none() {
            self.status = reap(&self.pidfd, false)?;
        }
        Ok(self.status)
    }

    /// Kills the child (if still running) and reaps it.
    pub(crate) fn kill(&mut self) -> io::Result<WaitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let s = reap(&self.pidfd, true)?.unwrap_or(WaitStatus::Killed);
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.status.is_none() && self.kill().is_err() {
            // The child may still run on this stack and read the request:
            // never free them. (Unreachable in practice: a pidfd of our own
            // child can always be signalled and reaped.)
            std::mem::forget(std::mem::take(&mut self.stack));
            let placeholder = Box::new(WaiterRequest {
                fd: -1,
                req: self.req.req,
                parent: 0,
                max_fd: 0,
            });
            std::mem::forget(std::mem::replace(&mut self.req, placeholder));
        }
    }
}

fn spawn_child(req: &WaiterRequest, stack: &mut [u8]) -> io::Result<OwnedFd> {
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
    // raw syscalls (the `child` module: the `syscall` instruction, which
    // never writes `errno`) on its private stack `stack` (alive until
    // reaped); it touches no allocator, lock or thread-local state, so
    // sharing the parent's memory and TLS is sound. CLONE_PIDFD stores
    // the pidfd through the parent_tid argument. The exit signal is 0, so
    // only an explicit __WCLONE wait reaps the child.
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
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd) })
}

/// Reaps the child behind `pidfd`: `None` if it is still running (only
/// when not `block`ing).
fn reap(pidfd: &OwnedFd, block: bool) -> io::Result<Option<WaitStatus>> {
    let flags = libc::WEXITED | libc::__WCLONE | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: siginfo_t is plain data, filled in by waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a pidfd we own; `info` is a valid out pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a CLD_* record, or left it zeroed when
        // WNOHANG found nothing to reap (si_pid 0).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(if code == libc::CLD_EXITED {
            if status == 0 {
                WaitStatus::Granted
            } else {
                WaitStatus::Failed(status)
            }
        } else {
            WaitStatus::Killed
        }));
    }
}

/// Releases what a settled-away request may hold on `file`.
fn give_back(file: &File, req: &LockReq) -> io::Result<()> {
    match req {
        LockReq::Whole { backend, .. } => super::imp::unlock(file, *backend),
        LockReq::Range(r) => range_unlock(file, r.start, r.len),
    }
}

/// Ends a wait on several waiters: kills and reaps all of them, then makes
/// sure that exactly one request is held on `file` (returning its index)
/// or none. A child killed right after its request was granted is told
/// apart by a non-blocking retry on our own description, which succeeds at
/// once if we already hold the lock. The first granted request wins; any
/// other that was granted too is released. With several requests, each
/// must be a range this description did not hold before the wait.
pub(crate) fn settle(
    file: &File,
    waiters: &mut [Waiter],
    winner: Option<usize>,
) -> io::Result<Option<usize>> {
    let mut winner = winner;
    let mut failure = None;
    for (i, w) in waiters.iter_mut().enumerate() {
        if Some(i) == winner {
            continue;
        }
        let req = w.request();
        let granted = match w.kill() {
            Ok(WaitStatus::Granted) => true,
            Ok(WaitStatus::Killed) => match raw_request(file.as_raw_fd(), &req, false) {
                Ok(()) => true,
                Err(Errno::AGAIN) | Err(Errno::ACCESS) => false,
                Err(e) => {
                    failure.get_or_insert(io::Error::from(e));
                    false
                }
            },
            Ok(WaitStatus::Failed(_)) => false,
            Err(e) => {
                failure.get_or_insert(e);
                false
            }
        };
        if granted {
            if winner.is_none() {
                winner = Some(i);
            } else {
                give_back(file, &req)?;
            }
        }
    }
    match failure {
        Some(e) => {
            if let Some(i) = winner {
                let _ = give_back(file, &waiters[i].request());
            }
            Err(e)
        }
        None => Ok(winner),
    }
}

/// Waits until one of `reqs` on `file` is granted (`Some(index)`, that
/// request now held) or `deadline` passes (`None`, nothing held). Blocks in
/// the kernel: one plain blocking call for a single request without a
/// deadline, otherwise one killable waiter per request and a `poll` on
/// their pidfds with the remaining time.
pub(crate) fn wait_any(
    file: &File,
    reqs: &[LockReq],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    if reqs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to wait for",
        ));
    }
    if let (None, [req]) = (deadline, reqs) {
        loop {
            match raw_request(file.as_raw_fd(), req, true) {
                Ok(()) => return Ok(Some(0)),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    if super::imp::waiter_tasks_forbidden() {
        return super::imp::poll_any(file, reqs, deadline);
    }
    let mut waiters = Vec::with_capacity(reqs.len());
    for req in reqs {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match Waiter::spawn(file, *req) {
            Ok(w) => waiters.push(w),
            Err(e) => {
                let won = settle(file, &mut waiters, None);
                // Kernel older than 5.2 (no CLONE_PIDFD) or a seccomp
                // sandbox that forbids the waiter: bounded polling, for
                // every kind of request.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)
                ) {
                    tracing::debug!(error = %e, "no killable lock waiter; polling instead");
                    return match won? {
                        Some(i) => Ok(Some(i)),
                        None => super::imp::poll_any(file, reqs, deadline),
                    };
                }
                let _ = won.map(|won| won.map(|i| give_back(file, &reqs[i])));
                return Err(e);
            }
        }
    }
    loop {
        if waiters.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return settle(file, &mut waiters, None);
        }
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::event::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        let mut fds: Vec<PollFd<'_>> = waiters
            .iter()
            .map(|w| PollFd::new(&w.pidfd, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                let _ = settle(file, &mut waiters, None)
                    .map(|won| won.map(|i| give_back(file, &reqs[i])));
                return Err(e.into());
            }
        }
        drop(fds);
        let mut respawn = Vec::new();
        for i in 0..waiters.len() {
            match waiters[i].try_status()? {
                Some(WaitStatus::Granted) => return settle(file, &mut waiters, Some(i)),
                Some(WaitStatus::Failed(errno)) => {
                    let _ = settle(file, &mut waiters, None)
                        .map(|won| won.map(|j| give_back(file, &reqs[j])));
                    return Err(io::Error::from_raw_os_error(errno));
                }
                // A stray kill (the death signal of a thread that is not
                // us cannot happen here, but be robust): decide with a
                // non-blocking attempt, else wait again.
                Some(WaitStatus::Killed) => {
                    match raw_request(file.as_raw_fd(), &waiters[i].request(), false) {
                        Ok(()) => return settle(file, &mut waiters, Some(i)),
                        Err(Errno::AGAIN) | Err(Errno::ACCESS) => respawn.push(i),
                        Err(e) => {
                            let _ = settle(file, &mut waiters, None)
                                .map(|won| won.map(|j| give_back(file, &reqs[j])));
                            return Err(e.into());
                        }
                    }
                }
                None => {}
            }
        }
        for i in respawn {
            let req = waiters[i].request();
            waiters[i] = Waiter::spawn(file, req)?;
        }
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
    /// Issue 9 item 8: the waiter child shares our memory and, without
    /// CLONE_SETTLS, our thread's TLS, so a libc wrapper that failed in it
    /// would write `errno` into *this* thread. Make every call the child
    /// can make fail (a write lock on a read-only description: EBADF) and
    /// check that this thread's errno is untouched.
    #[test]
    fn the_waiter_child_never_writes_our_errno() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ro");
        std::fs::write(&p, b"").unwrap();
        let ro = File::open(&p).unwrap();
        const SENTINEL: i32 = 4242;
        for req in [
            LockReq::Range(Range::byte(5, true)),
            LockReq::Whole {
                backend: crate::mode::Backend::OfdFcntl,
                mode: crate::mode::Mode::Exclusive,
            },
        ] {
            // SAFETY: errno is this thread's; writing it is what libc does.
            unsafe { *libc::__errno_location() = SENTINEL };
            let mut w = Waiter::spawn(&ro, req).unwrap();
            let status = loop {
                if let Some(s) = w.try_status().unwrap() {
                    break s;
                }
                std::thread::yield_now();
            };
            assert_eq!(status, WaitStatus::Failed(libc::EBADF), "{req:?}");
            // SAFETY: as above.
            let now = unsafe { *libc::__errno_location() };
            assert_eq!(
                now, SENTINEL,
                "the child wrote errno {now} into this thread ({req:?})"
            );
        }
    }

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
    fn ofd_range_lines() {
        let l = "\t7: OFDLCK ADVISORY  WRITE -1 fd:01:1234 1048576 1048577";
        assert_eq!(parse_ofd_range(l, "fd:01:1234"), Some((1048576, 1048577)));
        assert_eq!(parse_ofd_range(l, "fd:01:9"), None);
        let e = "1: OFDLCK ADVISORY READ -1 fd:01:1234 0 EOF";
        assert_eq!(parse_ofd_range(e, "fd:01:1234"), Some((0, u64::MAX)));
        assert_eq!(
            parse_ofd_range("1: FLOCK ADVISORY WRITE 5 fd:01:1234 0 EOF", "fd:01:1234"),
            None
        );
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
