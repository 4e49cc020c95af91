//! Unix backend: `flock(2)` and open-file-description `fcntl` locks.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rustix::fs::{FlockOperation, Mode as PermMode, OFlags};
use rustix::io::Errno;

use super::{FileId, FileKind, LockReq, OpenSpec};
use crate::mode::{Backend, Mode};

#[cfg(target_os = "linux")]
pub(crate) use super::linux::PathWatch;
#[cfg(all(target_os = "linux", feature = "tokio"))]
pub(crate) use super::linux::{WaitStatus, Waiter, raw_try, settle};
#[cfg(target_os = "linux")]
pub(crate) use super::linux::{
    boot_id, fd_path, kernel_locks, process_cmdline, process_start_time, process_state_start,
    process_uid,
};
#[cfg(target_os = "linux")]
pub(crate) use super::linux::{ofd_lock_pids, range_conflict, range_lock, range_unlock, wait_any};

/// Where no event tells of a changed file, there is no path watch and
/// every acquisition checks with `fstat`.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct PathWatch;

#[cfg(not(target_os = "linux"))]
impl PathWatch {
    pub(crate) fn new(_file: &File) -> Option<PathWatch> {
        None
    }
    pub(crate) fn unchanged(&mut self) -> Option<bool> {
        Some(false)
    }
}

/// Opens (and by default creates) a lock file without truncating it and,
/// unless asked, without following a symlink in the last component.
///
/// When asked to follow one (flock(1)'s behaviour), a symlink in the last
/// component is followed to lock what it names, but never to create a file
/// where it points (a dangling link gives `ENOENT`), and what it names is
/// never [`FileKind::Writable`]. Nor is a file owned by another user or with
/// other hard links: holdfast writes only into files it created or owns.
pub(crate) fn open_lock_file(path: &Path, spec: &OpenSpec) -> io::Result<(File, FileKind)> {
    let create = if spec.create {
        OFlags::CREATE
    } else {
        OFlags::empty()
    };
    let perm = PermMode::from_raw_mode(spec.mode as _);
    let (file, kind) = match open_no_truncate(path, create | OFlags::NOFOLLOW, perm) {
        // With O_NOFOLLOW, ELOOP says the last component is a symbolic link.
        Err(Errno::LOOP) if spec.follow_symlinks => {
            let (file, kind) = open_no_truncate(path, OFlags::empty(), perm)?;
            let kind = match kind {
                FileKind::Writable => FileKind::Foreign,
                other => other,
            };
            return Ok((file, kind));
        }
        other => other?,
    };
    Ok((file, kind))
}

/// `open` for reading and writing, falling back to read-only for a
/// directory or a file we may not write; `extra` adds `O_CREAT` and
/// `O_NOFOLLOW` as asked.
///
/// Every open is `O_NONBLOCK`, so a FIFO (read-only: no writer yet) or a
/// device (a modem line waiting for carrier) can never hang it; the flag is
/// cleared again on anything but a regular file, where it has no effect,
/// so a command that inherits the descriptor sees it as `flock(1)` would
/// give it.
fn open_no_truncate(path: &Path, extra: OFlags, perm: PermMode) -> Result<(File, FileKind), Errno> {
    let (file, kind) = open_no_truncate_nonblock(path, extra, perm)?;
    if kind == FileKind::Other {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    }
    Ok((file, kind))
}

fn open_no_truncate_nonblock(
    path: &Path,
    extra: OFlags,
    perm: PermMode,
) -> Result<(File, FileKind), Errno> {
    let extra = extra | OFlags::NONBLOCK;
    let nofollow = extra & OFlags::NOFOLLOW;
    let rw = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY | extra;
    let fd = match rustix::fs::open(path, rw, perm) {
        Ok(fd) => fd,
        // A directory: flock(1) locks those too, read-only.
        Err(Errno::ISDIR) => {
            let fd = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | nofollow,
                PermMode::empty(),
            )?;
            return Ok((File::from(fd), FileKind::Other));
        }
        // No write permission, or a read-only filesystem: flock still works
        // on a read-only descriptor (this is what flock(1) does).
        Err(e @ (Errno::ACCESS | Errno::ROFS | Errno::PERM)) => {
            match rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK | nofollow,
                PermMode::empty(),
            ) {
                Ok(fd) => {
                    let file = File::from(fd);
                    let kind = kind_of(&file, FileKind::ReadOnly)?;
                    return Ok((file, kind));
                }
                Err(Errno::NOENT) => return Err(e),
                Err(other) => return Err(other),
            }
        }
        Err(e) => return Err(e),
    };
    let file = File::from(fd);
    let kind = kind_of(&file, FileKind::Writable)?;
    Ok((file, kind))
}

/// `regular` for a regular file, `Other` for anything else; a `Writable`
/// file another user owns, or with other hard links, is `Foreign` (one
/// `fstat` answers all three).
fn kind_of(file: &File, regular: FileKind) -> Result<FileKind, Errno> {
    let st = rustix::fs::fstat(file)?;
    Ok(
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            FileKind::Other
        } else if regular == FileKind::Writable
            && (st.st_uid != rustix::process::geteuid().as_raw() || st.st_nlink > 1)
        {
            FileKind::Foreign
        } else {
            regular
        },
    )
}

/// What a file type is, in words for a message: "a directory", "a FIFO".
pub(crate) fn file_type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// A close-on-exec duplicate of descriptor number `fd`, inherited from
/// the parent (a shell's `exec 9>lock`): it shares the open file
/// description, and with it any lock. `EBADF` if `fd` is not open.
pub(crate) fn dup_inherited(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table: on a number
    // that is not an open descriptor it fails with EBADF; on one that is,
    // the borrow lasts only for this call, which creates a new descriptor
    // nothing else in the process knows about and that we own.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(rustix::io::fcntl_dupfd_cloexec(borrowed, 3)?)
}

/// The kind of a descriptor holdfast did not open itself: a regular file
/// is `ReadOnly` (holdfast never writes a holder record through a borrowed
/// descriptor), anything else `Other`.
pub(crate) fn inherited_kind(file: &File) -> io::Result<FileKind> {
    Ok(kind_of(file, FileKind::ReadOnly)?)
}

/// Device and inode of an open file.
pub(crate) fn file_id(file: &File) -> io::Result<FileId> {
    let st = rustix::fs::fstat(file)?;
    Ok(FileId {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
    })
}

/// Whether an open file has been unlinked (or renamed over) since we
/// opened it: a lock on it would no longer guard the path.
///
/// On Linux this asks `statx` for the link count alone: a plain `fstat`
/// also reports the timestamps, which (with multigrain timestamps, Linux
/// 6.13+) makes the next write to the file update them at full precision
/// and dirty the inode, so every holder-record write would pay for a
/// journal update.
#[inline]
pub(crate) fn is_unlinked(file: &File) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        match super::linux::hot::nlink(file.as_fd()) {
            Ok(n) => return Ok(n == 0),
            Err(Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(rustix::fs::fstat(file)?.st_nlink == 0)
}

/// The `(major, minor)` pair of a device number, as `/proc/locks` prints it.
pub(crate) fn dev_major_minor(dev: u64) -> (u32, u32) {
    (
        rustix::fs::major(dev as _) as u32,
        rustix::fs::minor(dev as _) as u32,
    )
}

#[inline]
fn flock_op(mode: Mode, nonblocking: bool) -> FlockOperation {
    match (mode, nonblocking) {
        (Mode::Exclusive, false) => FlockOperation::LockExclusive,
        (Mode::Exclusive, true) => FlockOperation::NonBlockingLockExclusive,
        (Mode::Shared, false) => FlockOperation::LockShared,
        (Mode::Shared, true) => FlockOperation::NonBlockingLockShared,
    }
}

#[cfg(target_os = "linux")]
fn ofd_op(fd: i32, l_type: libc::c_short, wait: bool) -> Result<(), Errno> {
    let lock = libc::flock {
        l_type,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    // `fd` is an open descriptor owned by the caller for the duration of
    // the call. (The waiter child does not come here: it makes its own
    // calls on its own stack, see `linux/waiter.rs`.)
    super::linux::hot::fcntl_lock(fd, cmd, &lock)
}

/// Performs one lock operation on a raw descriptor (in the calling thread;
/// the Linux waiter child has its own errno-free version).
#[inline]
pub(crate) fn raw_lock(fd: i32, backend: Backend, mode: Mode, wait: bool) -> Result<(), Errno> {
    // SAFETY: callers pass a descriptor that stays open for this call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match backend {
        #[cfg(target_os = "linux")]
        Backend::Flock => super::linux::hot::flock(bfd, flock_op(mode, !wait)),
        #[cfg(not(target_os = "linux"))]
        Backend::Flock => rustix::fs::flock(bfd, flock_op(mode, !wait)),
        #[cfg(target_os = "linux")]
        Backend::OfdFcntl => {
            let t = match mode {
                Mode::Exclusive => libc::F_WRLCK,
                Mode::Shared => libc::F_RDLCK,
            };
            ofd_op(fd, t as libc::c_short, wait)
        }
        #[cfg(not(target_os = "linux"))]
        Backend::OfdFcntl => Err(Errno::NOSYS),
    }
}

/// Tries to take the lock without waiting: `Ok(true)` if taken,
/// `Ok(false)` if someone else holds a conflicting lock.
#[inline]
pub(crate) fn try_lock(file: &File, backend: Backend, mode: Mode) -> io::Result<bool> {
    loop {
        match raw_lock(file.as_raw_fd(), backend, mode, false) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) | Err(Errno::ACCESS) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Blocks in the kernel until the lock is granted.
pub(crate) fn lock_blocking(file: &File, backend: Backend, mode: Mode) -> io::Result<()> {
    loop {
        match raw_lock(file.as_raw_fd(), backend, mode, true) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits in the kernel until the lock is granted or `deadline` passes
/// (`Ok(false)`, nothing held): a try, then the one kernel wait,
/// `wait_any` (a killable waiter task on Linux, polling elsewhere).
#[cfg(test)]
pub(crate) fn lock_until(
    file: &File,
    backend: Backend,
    mode: Mode,
    deadline: Instant,
) -> io::Result<bool> {
    if try_lock(file, backend, mode)? {
        return Ok(true);
    }
    Ok(wait_any(file, &[LockReq::Whole { backend, mode }], Some(deadline))?.is_some())
}

/// Fallback timed wait where the kernel offers no way to bound a blocking
/// lock call (no pidfds, or a sandbox that forbids the waiter task):
/// bounded back-off polling, 1 ms doubling to 25 ms. Documented in lib.rs.
#[cfg_attr(all(target_os = "linux", not(test)), allow(dead_code))]
pub(crate) fn poll_until(
    file: &File,
    backend: Backend,
    mode: Mode,
    deadline: Instant,
) -> io::Result<bool> {
    Ok(poll_any(file, &[LockReq::Whole { backend, mode }], Some(deadline))?.is_some())
}

/// The fallback of every kernel wait (`wait_any`): one non-blocking
/// attempt per request, then a pause (1 ms doubling to 25 ms, never past
/// the deadline), until one is granted (`Some(index)`, held) or the
/// deadline passes (`None`).
pub(crate) fn poll_any(
    file: &File,
    reqs: &[LockReq],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        for (i, req) in reqs.iter().enumerate() {
            let got = match req {
                LockReq::Whole { backend, mode } => try_lock(file, *backend, *mode)?,
                #[cfg(target_os = "linux")]
                LockReq::Range(r) => range_lock(file, *r, false)?,
                #[cfg(not(target_os = "linux"))]
                LockReq::Range(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "open-file-description byte-range locks exist only on Linux",
                    ));
                }
            };
            if got {
                return Ok(Some(i));
            }
        }
        let now = Instant::now();
        let left = match deadline {
            Some(d) if now >= d => return Ok(None),
            Some(d) => d - now,
            None => pause,
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(std::time::Duration::from_millis(25));
    }
}

/// Whether waits must not start the waiter task: the environment
/// variable `HOLDFAST_WAITER=poll` asks for the polling fallback
/// everywhere (for sandboxes that kill instead of refusing, and for the
/// tests of the fallback). Read once.
pub(crate) fn waiter_tasks_forbidden() -> bool {
    static FORBIDDEN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORBIDDEN.get_or_init(|| std::env::var_os("HOLDFAST_WAITER").is_some_and(|v| v == "poll"))
}

/// Releases whatever lock this open file description holds.
#[inline]
pub(crate) fn unlock(file: &File, backend: Backend) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    super::linux::reap_exited_waiters();
    match backend {
        #[cfg(target_os = "linux")]
        Backend::Flock => super::linux::hot::flock(file.as_fd(), FlockOperation::Unlock)?,
        #[cfg(not(target_os = "linux"))]
        Backend::Flock => rustix::fs::flock(file.as_fd(), FlockOperation::Unlock)?,
        #[cfg(target_os = "linux")]
        Backend::OfdFcntl => ofd_op(file.as_raw_fd(), libc::F_UNLCK as libc::c_short, false)?,
        #[cfg(not(target_os = "linux"))]
        Backend::OfdFcntl => return Err(Errno::NOSYS.into()),
    }
    Ok(())
}

/// Whether open-file-description locks exist on this platform.
pub(crate) const HAS_OFD: bool = cfg!(target_os = "linux");

/// Reads the head of a regular file: one `pread` at offset 0 (a short read
/// of a regular file means end of file).
pub(crate) fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read_at(buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes `data` at offset 0 and cuts the file to its length if it was
/// longer (`old_len`).
pub(crate) fn write_head(file: &File, data: &[u8], old_len: usize) -> io::Result<()> {
    file.write_all_at(data, 0)?;
    if old_len > data.len() {
        file.set_len(data.len() as u64)?;
    }
    Ok(())
}

static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn reset_pid_after_fork() {
    PID.store(0, Ordering::Relaxed);
}

/// The current process id, cached; the cache is reset in a forked child.
#[inline]
pub(crate) fn current_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    ATFORK.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function that only stores
        // to an atomic is async-signal-safe and valid for the process's life.
        unsafe {
            libc::pthread_atfork(None, None, Some(reset_pid_after_fork));
        }
    });
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The real user id of this process.
pub(crate) fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether a process with this pid exists (it may be a zombie).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(Errno::PERM) => true,
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
mod no_proc {
    use super::super::{FileId, KernelLock};
    use std::io;
    pub(crate) fn boot_id() -> Option<String> {
        None
    }
    pub(crate) fn process_start_time(_pid: u32) -> Option<u64> {
        None
    }
    pub(crate) fn process_cmdline(_pid: u32) -> Option<String> {
        None
    }
    pub(crate) fn process_uid(_pid: u32) -> Option<u32> {
        None
    }
    pub(crate) fn process_state_start(_pid: u32) -> Option<(char, u64)> {
        None
    }
    pub(crate) fn kernel_locks(_id: FileId) -> io::Result<Option<Vec<KernelLock>>> {
        Ok(None)
    }
    pub(crate) fn fd_path(_file: &std::fs::File) -> Option<std::path::PathBuf> {
        None
    }
}
#[cfg(not(target_os = "linux"))]
pub(crate) use no_proc::*;

#[cfg_attr(
    any(target_os = "linux", target_os = "android", target_vendor = "apple"),
    path = "xattr.rs"
)]
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_vendor = "apple")),
    path = "xattr_unsupported.rs"
)]
mod xattr;

pub(crate) use xattr::{xattr_exists, xattr_get, xattr_list, xattr_remove, xattr_set};

mod durable;
pub(crate) use durable::{create_new_file, is_symlink_error, open_nofollow, sync_dir, sync_path};

mod lock_files;
pub(crate) use lock_files::*;

#[cfg(target_os = "linux")]
pub(crate) use super::linux::{DirWatch, PidWatch, owner_runs_in_child_pidns};

#[cfg(not(target_os = "linux"))]
mod no_watch {
    use std::io;
    use std::path::Path;
    use std::time::Duration;

    /// No directory notification on this platform: waits are plain sleeps.
    #[derive(Debug)]
    pub(crate) struct DirWatch;
    impl DirWatch {
        pub(crate) fn new(_dir: &Path, _name: &std::ffi::OsStr) -> io::Result<DirWatch> {
            Err(io::Error::new(io::ErrorKind::Unsupported, "no inotify"))
        }
        pub(crate) fn clear(&self) {}
    }
    /// No pidfds on this platform.
    #[derive(Debug)]
    pub(crate) struct PidWatch;
    impl PidWatch {
        pub(crate) fn open(_pid: u32) -> io::Result<PidWatch> {
            Err(io::Error::new(io::ErrorKind::Unsupported, "no pidfd"))
        }
    }
    /// Sleeps for `timeout`: nothing here can wake us earlier.
    pub(crate) fn wait_for_change(
        _dir: Option<&DirWatch>,
        _pid: Option<&PidWatch>,
        timeout: Duration,
    ) -> io::Result<bool> {
        std::thread::sleep(timeout);
        Ok(false)
    }
    pub(crate) fn owner_runs_in_child_pidns(_pid: u32, _start: u64) -> bool {
        false
    }
}
#[cfg(target_os = "linux")]
pub(crate) use super::linux::wait_for_change;
#[cfg(not(target_os = "linux"))]
pub(crate) use no_watch::*;

/// Byte-range OFD locks exist only on Linux; elsewhere the fair queue and
/// the semaphore report `Unsupported`.
#[cfg(not(target_os = "linux"))]
mod no_ranges {
    use super::super::{LockReq, Range};
    use std::fs::File;
    use std::io;
    use std::time::Instant;
    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "open-file-description byte-range locks exist only on Linux",
        )
    }
    pub(crate) fn range_lock(_file: &File, _r: Range, _wait: bool) -> io::Result<bool> {
        Err(unsupported())
    }
    pub(crate) fn range_unlock(_file: &File, _start: u64, _len: u64) -> io::Result<()> {
        Err(unsupported())
    }
    pub(crate) fn range_conflict(_file: &File, _r: Range) -> io::Result<Option<Range>> {
        Err(unsupported())
    }
    /// Without waiter tasks: a plain blocking call for one whole-file
    /// request without a deadline, bounded polling otherwise.
    pub(crate) fn wait_any(
        file: &File,
        reqs: &[LockReq],
        deadline: Option<Instant>,
    ) -> io::Result<Option<usize>> {
        if let (None, [LockReq::Whole { backend, mode }]) = (deadline, reqs) {
            super::lock_blocking(file, *backend, *mode)?;
            return Ok(Some(0));
        }
        super::poll_any(file, reqs, deadline)
    }
    pub(crate) fn ofd_lock_pids(_id: super::super::FileId, _start: u64, _end: u64) -> Vec<u32> {
        Vec::new()
    }
}
#[cfg(not(target_os = "linux"))]
pub(crate) use no_ranges::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(path: &Path) -> File {
        let spec = OpenSpec {
            mode: 0o644,
            create: true,
            follow_symlinks: false,
        };
        open_lock_file(path, &spec).unwrap().0
    }

    #[test]
    fn timed_waits_honour_the_deadline_and_take_a_free_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let (a, b) = (open(&p), open(&p));
        assert!(try_lock(&a, Backend::Flock, Mode::Exclusive).unwrap());
        for wait in [poll_until, lock_until] {
            let start = Instant::now();
            let deadline = start + Duration::from_millis(30);
            assert!(!wait(&b, Backend::Flock, Mode::Exclusive, deadline).unwrap());
            assert!(start.elapsed() >= Duration::from_millis(30));
        }
        unlock(&a, Backend::Flock).unwrap();
        for wait in [poll_until, lock_until] {
            let deadline = Instant::now() + Duration::from_secs(5);
            assert!(wait(&b, Backend::Flock, Mode::Exclusive, deadline).unwrap());
            assert!(!try_lock(&a, Backend::Flock, Mode::Shared).unwrap());
            unlock(&b, Backend::Flock).unwrap();
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_timed_wait_is_granted_when_the_holder_releases_mid_wait() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let (a, b) = (open(&p), open(&p));
        assert!(try_lock(&a, Backend::Flock, Mode::Exclusive).unwrap());
        let releaser = std::thread::spawn(move || {
            // Release once the waiter task is blocked in the kernel.
            let id = file_id(&a).unwrap();
            let (maj, min) = dev_major_minor(id.dev);
            let needle = format!("{maj:02x}:{min:02x}:{}", id.ino);
            while !std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|l| l.contains("->") && l.contains(&needle))
            {
                std::thread::yield_now();
            }
            unlock(&a, Backend::Flock).unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(lock_until(&b, Backend::Flock, Mode::Exclusive, deadline).unwrap());
        releaser.join().unwrap();
    }
}
