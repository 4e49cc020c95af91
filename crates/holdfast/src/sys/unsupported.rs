//! Fallback backend for platforms holdfast has no lock implementation for
//! yet: every operation fails with `ErrorKind::Unsupported`, nothing panics.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Instant;

use super::{FileId, FileKind, KernelLock, LockReq, OpenSpec, Range};
use crate::mode::{Backend, Mode};

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "holdfast has no file-lock backend for this platform yet",
    )
}

pub(crate) fn open_lock_file(_path: &Path, _spec: &OpenSpec) -> io::Result<(File, FileKind)> {
    Err(unsupported())
}
pub(crate) fn file_id(_file: &File) -> io::Result<FileId> {
    Err(unsupported())
}
pub(crate) fn is_unlinked(_file: &File) -> io::Result<bool> {
    Ok(false)
}
/// No path watch here.
#[derive(Debug)]
pub(crate) struct PathWatch;
impl PathWatch {
    pub(crate) fn new(_file: &File) -> Option<PathWatch> {
        None
    }
    pub(crate) fn unchanged(&mut self) -> Option<bool> {
        Some(false)
    }
}
pub(crate) fn try_lock(_file: &File, _b: Backend, _m: Mode) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn lock_blocking(_file: &File, _b: Backend, _m: Mode) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn lock_until(_file: &File, _b: Backend, _m: Mode, _d: Instant) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn unlock(_file: &File, _b: Backend) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) const HAS_OFD: bool = false;
pub(crate) fn read_head(_file: &File, _buf: &mut [u8]) -> io::Result<usize> {
    Err(unsupported())
}
pub(crate) fn write_head(_file: &File, _data: &[u8], _old_len: usize) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}
pub(crate) fn hostname() -> String {
    String::from("localhost")
}
pub(crate) fn current_uid() -> u32 {
    0
}
pub(crate) fn process_exists(_pid: u32) -> bool {
    false
}
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
pub(crate) fn xattr_exists(_path: &Path, _name: &str, _follow: bool) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn xattr_get(_path: &Path, _name: &str, _follow: bool) -> io::Result<Option<Vec<u8>>> {
    Err(unsupported())
}
pub(crate) fn xattr_set(_path: &Path, _name: &str, _value: &[u8], _follow: bool) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn xattr_remove(_path: &Path, _name: &str, _follow: bool) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn xattr_list(_path: &Path, _follow: bool) -> io::Result<Vec<Vec<u8>>> {
    Err(unsupported())
}
pub(crate) fn create_new_file(_path: &Path, _mode: u32) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn sync_path(_path: &Path, _follow: bool) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn open_nofollow(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn is_symlink_error(_e: &io::Error) -> bool {
    false
}
/// What a file type is, in words for a message.
pub(crate) fn file_type_name(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[allow(dead_code)] // used by the Unix-only `LockOptions::open_inherited`
pub(crate) fn dup_inherited(_fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    Err(io::ErrorKind::Unsupported.into())
}

#[allow(dead_code)] // used by the Unix-only `LockOptions::open_fd`
pub(crate) fn inherited_kind(_file: &File) -> io::Result<FileKind> {
    Err(unsupported())
}
#[allow(dead_code)] // used by the Unix-only `LockOptions::open_fd`
pub(crate) fn fd_path(_file: &File) -> Option<std::path::PathBuf> {
    None
}

// Lock files (`crate::lockfile`).
pub(crate) fn open_dir(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn create_dir(_path: &Path, _mode: u32) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn create_new_file_in(
    _dir: &File,
    _name: &std::ffi::OsStr,
    _mode: u32,
) -> io::Result<File> {
    Err(unsupported())
}
pub(crate) fn remove_file_in(_dir: &File, _name: &std::ffi::OsStr) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn publish_noclobber(_from: &Path, _to: &Path) -> io::Result<Option<bool>> {
    Ok(None)
}

pub(crate) fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Err(unsupported())
}
pub(crate) fn set_times(_file: &File, _t: std::time::SystemTime) -> io::Result<()> {
    Err(unsupported())
}
pub(crate) fn pid_namespace() -> Option<u64> {
    None
}
pub(crate) fn fqdn(name: &str) -> String {
    name.to_owned()
}
/// No directory notification on this platform.
#[derive(Debug)]
pub(crate) struct DirWatch;
impl DirWatch {
    pub(crate) fn new(_dir: &Path, _name: &std::ffi::OsStr) -> io::Result<DirWatch> {
        Err(unsupported())
    }
    pub(crate) fn clear(&self) {}
}
/// No process handles on this platform.
#[derive(Debug)]
pub(crate) struct PidWatch;
impl PidWatch {
    pub(crate) fn open(_pid: u32) -> io::Result<PidWatch> {
        Err(unsupported())
    }
}
pub(crate) fn wait_for_change(
    _dir: Option<&DirWatch>,
    _pid: Option<&PidWatch>,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    std::thread::sleep(timeout);
    Ok(false)
}
pub(crate) fn owner_runs_in_child_pidns(_pid: u32, _start: u64) -> bool {
    false
}
pub(crate) fn path_id(_path: &Path) -> io::Result<FileId> {
    Err(unsupported())
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
pub(crate) fn wait_any(
    _file: &File,
    _reqs: &[LockReq],
    _deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    Err(unsupported())
}
pub(crate) fn ofd_lock_pids(_id: FileId, _start: u64, _end: u64) -> Vec<u32> {
    Vec::new()
}
