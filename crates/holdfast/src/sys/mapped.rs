//! A shared mapping of the first page of a lock file, guarded against
//! `SIGBUS`: the holder record read and rewritten without a system call.
//!
//! # Why
//!
//! Writing the holder record took a `pread` (the previous token) and a
//! `pwrite` per exclusive acquisition, two of the five system calls of a
//! lock + unlock. Through a `MAP_SHARED` mapping of the file's first page the
//! same bytes are read and patched in the page cache directly: the kernel's
//! view is the same as after `pwrite` (one page cache, written back alike),
//! and other processes' `pread`s see the new record at once.
//!
//! # The failure mode: a file truncated under the mapping
//!
//! Touching a mapped page that lies wholly beyond the end of the file
//! raises `SIGBUS`, and other programs may truncate a lock file at any time
//! (Python's filelock opens it with `O_TRUNC` before it even tries the
//! lock). So every access runs under a guard: a process-wide `SIGBUS`
//! handler, installed once, recognises a fault inside the page this thread
//! is copying, maps an anonymous zero page over it and returns, so the copy
//! completes harmlessly (on zeros, or into the anonymous page) instead of
//! killing the process. The guard then reports the fault, the mapping is
//! dropped, and the caller falls back to `pread`/`pwrite`, which see the
//! truncated file as it is. A `SIGBUS` anywhere else goes to the handler
//! that was installed before (or the default action, which kills the
//! process as it would have without holdfast).
//!
//! The mapping is only made when holdfast's handler is the one installed
//! (a program that installs its own `SIGBUS` handler before the lock file is
//! opened keeps pread/pwrite), and only on local filesystems whose mappings
//! are coherent with `pread`/`pwrite` of other processes (ext4, xfs, btrfs,
//! tmpfs, overlayfs): never on NFS or FUSE.

use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{Ordering, compiler_fence};

/// Bytes mapped: the record's maximum size.
pub(crate) const LEN: usize = 4096;

thread_local! {
    /// The mapped range this thread is copying from or to (base, length);
    /// `(0, 0)` outside a guarded copy.
    static ACTIVE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when the guarded copy faulted.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

/// The `SIGBUS` disposition in force before ours, and the page size.
struct Installed {
    prev: libc::sigaction,
    page: usize,
}

// SAFETY: `sigaction` is plain data (a function address, flags, a mask);
// it is written once before the handler is installed and only read after.
unsafe impl Send for Installed {}
// SAFETY: as above, never mutated after initialisation.
unsafe impl Sync for Installed {}

static INSTALLED: OnceLock<Option<Installed>> = OnceLock::new();

/// Installs the handler once per process; `None` if that failed.
fn install() -> Option<&'static Installed> {
    INSTALLED
        .get_or_init(|| {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
            // SAFETY: an all-zero sigaction is a valid value to be filled in.
            let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: reading the current disposition into a valid struct.
            if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &mut prev) } != 0 {
                return None;
            }
            let installed = Installed { prev, page };
            // SAFETY: as above.
            let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            // SAFETY: a valid sigaction; the handler only calls
            // async-signal-safe functions (mmap, sigaction, raise) and
            // touches const-initialised thread-locals.
            unsafe {
                libc::sigemptyset(&mut ours.sa_mask);
                if libc::sigaction(libc::SIGBUS, &ours, ptr::null_mut()) != 0 {
                    return None;
                }
            }
            Some(installed)
        })
        .as_ref()
}

/// Whether the `SIGBUS` handler in force is still ours.
fn handler_is_ours() -> bool {
    // SAFETY: as in `install`.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the current disposition into a valid struct.
    (unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &mut cur) }) == 0
        && cur.sa_sigaction == on_sigbus as *const () as usize
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (base, len) = ACTIVE.with(Cell::get);
    if let Some(Some(inst)) = INSTALLED.get()
        && base != 0
        && (base..base + len).contains(&addr)
    {
        let page = addr & !(inst.page - 1);
        // SAFETY: replaces one page of our own mapping, which the guarded
        // copy is using, with anonymous memory; the mapping is dropped
        // right after the copy.
        let r = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                inst.page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            FAULTED.with(|f| f.set(true));
            return;
        }
    }
    // Not ours: what would have happened without holdfast.
    let prev = match INSTALLED.get() {
        Some(Some(inst)) => inst.prev.sa_sigaction,
        _ => libc::SIG_DFL,
    };
    if prev != libc::SIG_DFL && prev != libc::SIG_IGN {
        let Some(Some(inst)) = INSTALLED.get() else {
            return;
        };
        if inst.prev.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO,
            // so it has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(prev) };
            f(sig, info, ctx);
        } else {
            // SAFETY: a plain handler has this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev) };
            f(sig);
        }
        return;
    }
    // SAFETY: restoring the default action, then re-raising a signal that
    // was sent (a fault re-executes the instruction and now kills).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, ptr::null_mut());
        if (*info).si_code <= 0 {
            libc::raise(sig);
        }
    }
}

/// The first [`LEN`] bytes of a lock file, mapped shared.
#[derive(Debug)]
pub(crate) struct HeadMap {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self`.
unsafe impl Send for HeadMap {}

impl HeadMap {
    /// Maps the head of `file` (opened for reading and writing), or `None`
    /// where a mapping is not safe or not possible (see the module docs).
    pub(crate) fn new(file: &File) -> Option<HeadMap> {
        if !local_filesystem(file) {
            return None;
        }
        let inst = install()?;
        if !handler_is_ours() {
            return None;
        }
        let len = LEN.div_ceil(inst.page) * inst.page;
        // SAFETY: a fresh shared mapping of an open descriptor; failure is
        // reported as MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        (p != libc::MAP_FAILED).then(|| HeadMap {
            base: p.cast(),
            len,
        })
    }

    /// Runs `f` with the guard up; `false` if a `SIGBUS` hit the mapping
    /// (then it is no longer the file's and must be dropped).
    fn guarded(&mut self, f: impl FnOnce(*mut u8)) -> bool {
        FAULTED.with(|c| c.set(false));
        ACTIVE.with(|c| c.set((self.base as usize, self.len)));
        compiler_fence(Ordering::SeqCst);
        f(self.base);
        compiler_fence(Ordering::SeqCst);
        ACTIVE.with(|c| c.set((0, 0)));
        !FAULTED.with(|c| c.replace(false))
    }

    /// Copies the head of the file into `buf` up to the first NUL byte
    /// (bytes past the end of the file read as NUL); returns how many bytes
    /// precede it, or `None` if the mapping faulted.
    pub(crate) fn read(&mut self, buf: &mut [u8; LEN]) -> Option<usize> {
        const CHUNK: usize = 256;
        let mut n = 0;
        let ok = self.guarded(|base| {
            while n < LEN {
                // SAFETY: `base..base + LEN` is mapped (a fault is caught by
                // the guard) and `buf` has room for LEN bytes.
                unsafe { ptr::copy_nonoverlapping(base.add(n), buf.as_mut_ptr().add(n), CHUNK) };
                compiler_fence(Ordering::SeqCst);
                if let Some(z) = buf[n..n + CHUNK].iter().position(|&b| b == 0) {
                    n += z;
                    return;
                }
                n += CHUNK;
            }
        });
        ok.then_some(n)
    }

    /// Writes `data` at offset 0; `false` if the mapping faulted (the write
    /// may then be partial: the caller writes again with `pwrite`). The
    /// caller must know the file is at least `data.len()` bytes long: bytes
    /// mapped past its end are not written back.
    pub(crate) fn write(&mut self, data: &[u8]) -> bool {
        let len = data.len().min(LEN);
        self.guarded(|base| {
            // SAFETY: `base..base + LEN` is mapped; faults are caught.
            unsafe { ptr::copy_nonoverlapping(data.as_ptr(), base, len) }
        })
    }
}

impl Drop for HeadMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped (parts of it may have
        // been replaced by anonymous pages, which are unmapped alike).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Whether mappings of `file` are coherent with `pread`/`pwrite` of other
/// processes: local filesystems sharing one page cache.
fn local_filesystem(file: &File) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const OVERLAYFS: i64 = 0x794C_7630;
    match rustix::fs::fstatfs(file) {
        #[allow(clippy::unnecessary_cast)] // i64 on x86_64, not everywhere
        Ok(st) => matches!(st.f_type as i64, EXT4 | XFS | BTRFS | TMPFS | OVERLAYFS),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.lock");
        std::fs::write(&path, b"hello\n").unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let Some(mut m) = HeadMap::new(&file) else {
            return; // not a local filesystem here: nothing to test
        };
        let mut buf = [0u8; LEN];
        assert_eq!(m.read(&mut buf), Some(6));
        assert_eq!(&buf[..6], b"hello\n");
        assert!(m.write(b"HELLO\n"));
        assert_eq!(std::fs::read(&path).unwrap(), b"HELLO\n");
    }

    /// The failure mode of the mechanism: the file truncated under the
    /// mapping. The access must fault into the guard, not kill us.
    #[test]
    fn a_file_truncated_under_the_mapping_is_a_fault_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lock");
        std::fs::write(&path, b"holdfast-holder 1\n").unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let Some(mut m) = HeadMap::new(&file) else {
            return;
        };
        // A peer truncates (as filelock's O_TRUNC open does).
        File::options()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut buf = [0u8; LEN];
        assert_eq!(m.read(&mut buf), None, "the read must fault into the guard");
        let mut m = HeadMap::new(&file).unwrap();
        assert!(!m.write(b"x"), "the write must fault into the guard");
        assert_eq!(std::fs::read(&path).unwrap(), b"", "nothing written");
        // The mapping's pages were replaced, not the process killed; and a
        // SIGBUS elsewhere still reaches the previous disposition (not
        // tested here: it kills the process).
    }
}
