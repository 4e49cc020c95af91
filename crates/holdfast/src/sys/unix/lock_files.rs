//! System calls of the lock-file protocols (`crate::lockfile`): creation
//! in a pinned directory, atomic exchange and no-clobber publishing,
//! times, pid namespaces, host names.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::{Mode as PermMode, OFlags};
use rustix::io::Errno;

use crate::sys::FileId;

/// Opens a directory (not following a symlink).
pub(crate) fn open_dir(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, PermMode::empty())?;
    Ok(File::from(fd))
}

/// Creates a directory with `mode` (the umask applies).
pub(crate) fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::mkdir(path, PermMode::from_raw_mode(mode as _))?;
    Ok(())
}

/// Creates a regular file named `name` inside the open directory `dir`,
/// as [`create_new_file`] does.
pub(crate) fn create_new_file_in(
    dir: &File,
    name: &std::ffi::OsStr,
    mode: u32,
) -> io::Result<File> {
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, name, flags, PermMode::from_raw_mode(mode as _))?;
    Ok(File::from(fd))
}

/// Removes the file `name` from the open directory `dir`, wherever that
/// directory has been renamed to meanwhile.
pub(crate) fn remove_file_in(dir: &File, name: &std::ffi::OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty())?;
    Ok(())
}

/// Swaps the names `a` and `b` in one step (Linux `renameat2` with
/// `RENAME_EXCHANGE`). `Ok(false)` where the platform or filesystem cannot
/// (NFS, many FUSE filesystems, overlayfs across layers, non-Linux).
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags};
        match rustix::fs::renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(Errno::INVAL | Errno::NOSYS | Errno::XDEV | Errno::NOTSUP) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Gives the file at `from` the name `to` as well, in one step and only if
/// `to` does not exist: `renameat2(RENAME_NOREPLACE)` on Linux (`from` is
/// then gone), else a hard link (`from` stays; the caller removes it).
/// `Err` with `AlreadyExists` when `to` exists; `Ok(None)` when the
/// filesystem can do neither (the caller falls back to creating `to` in
/// place); `Ok(Some(gone))`, `gone` saying whether `from` went with it.
pub(crate) fn publish_noclobber(from: &Path, to: &Path) -> io::Result<Option<bool>> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags};
        match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Some(true)),
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match rustix::fs::link(from, to) {
        Ok(()) => Ok(Some(false)),
        Err(Errno::PERM | Errno::NOTSUP | Errno::MLINK | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets both the access and the modification time of an open file (or
/// directory) to `t`, with nanosecond precision where the filesystem keeps it.
pub(crate) fn set_times(file: &File, t: std::time::SystemTime) -> io::Result<()> {
    let ts = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => rustix::fs::Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        },
        Err(_) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    rustix::fs::futimens(
        file,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
    )?;
    Ok(())
}

/// The inode number of this process's pid namespace (`/proc/self/ns/pid`),
/// which tells containers that share a host name apart.
pub(crate) fn pid_namespace() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::stat("/proc/self/ns/pid").ok().map(|s| s.st_ino)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// What Python's `socket.getfqdn(name)` answers: the canonical name the
/// resolver gives for the first address of `name`, or `name` itself when
/// there is none. flufl.lock puts this in its claim file names. May consult
/// DNS; holdfast calls it once per process and caches it.
pub(crate) fn fqdn(name: &str) -> String {
    use std::ffi::{CStr, CString};
    let Ok(cname) = CString::new(name) else {
        return name.to_owned();
    };
    // SAFETY: addrinfo is plain data; zero is a valid "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, valid hints, `res` is an out pointer freed below.
    let rc = unsafe { libc::getaddrinfo(cname.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return name.to_owned();
    }
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `res` is a valid list returned by getaddrinfo; we read its
    // first entry's address and free the list exactly once.
    let rc = unsafe {
        let ai = &*res;
        let rc = libc::getnameinfo(
            ai.ai_addr,
            ai.ai_addrlen,
            host.as_mut_ptr(),
            host.len() as _,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        );
        libc::freeaddrinfo(res);
        rc
    };
    if rc != 0 {
        return name.to_owned();
    }
    // SAFETY: getnameinfo NUL-terminates `host` on success.
    let s = unsafe { CStr::from_ptr(host.as_ptr()) };
    s.to_string_lossy().into_owned()
}

/// Device and inode of the file at `path` (not following a final symlink).
pub(crate) fn path_id(path: &Path) -> io::Result<FileId> {
    let st = rustix::fs::lstat(path)?;
    Ok(FileId {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
    })
}
