//! The system calls on a lock's hot path (`flock`, the OFD `fcntl`, the
//! path check's `statx`), each followed on x86-64 by a refill of the CPU's
//! return-stack buffer.
//!
//! Why: after a system call the return-stack buffer, which predicts where
//! each `ret` goes, holds entries the kernel (or the hypervisor under it)
//! left there, so the first `ret` after the call is mispredicted. Usually
//! that costs a few nanoseconds. On the AMD EPYC VM holdfast is benchmarked
//! on (`spec_rstack_overflow: Safe RET`) it costs about 0.2 µs per system
//! call, as much as a cheap system call itself: `flock` + `flock(UN)`
//! called from a function that returns are ~1.5× the same calls made
//! inline in a loop, and std's `File::lock` + `unlock` pay exactly that.
//! Sixteen `call`s right after the system call push return addresses into
//! our own code (a speculation trap that never runs); the `ret`s that
//! follow are then mispredicted to a harmless, cached address, and the
//! penalty is gone (`examples/lockcmp.rs` measures both, interleaved).
//!
//! Where the kernel leaves the buffer alone (bare metal, most VMs), the
//! refill would cost instead: the `ret`s after the call would have been
//! predicted right. So each process decides by measuring: its first 64 hot
//! calls go without the refill (a process that locks once never pays for
//! anything), then one calibration (`flock` lock + unlock on a private
//! memfd, 96 pairs, ~0.1 ms) times a function that returns after the call
//! with and without the refill, and the refill is kept only if it makes
//! that at least 10 % faster.
//!
//! The calls push onto the stack below the red zone and the stack pointer
//! is put back at once. They would upset a CET shadow stack, whose entries
//! `add rsp` does not pop: when one is active (`rdsspq` reads a non-zero
//! shadow-stack pointer; on a CPU without CET it is a no-op and reads 0),
//! the refill is skipped.

use std::os::fd::{AsRawFd, BorrowedFd};
#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use rustix::io::Errno;

/// 0: not decided yet; 1: refill; 2: do not.
#[cfg(target_arch = "x86_64")]
static REFILL: AtomicU8 = AtomicU8::new(0);
/// Hot calls made before the decision.
#[cfg(target_arch = "x86_64")]
static UNDECIDED_CALLS: AtomicU32 = AtomicU32::new(0);

/// Whether to refill after the next hot call.
#[cfg(target_arch = "x86_64")]
#[inline]
fn refill() -> bool {
    match REFILL.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => undecided(),
    }
}

#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn undecided() -> bool {
    // Racy counting is fine: it only delays the decision a little.
    let n = UNDECIDED_CALLS.load(Ordering::Relaxed) + 1;
    UNDECIDED_CALLS.store(n, Ordering::Relaxed);
    if n < 64 {
        return false;
    }
    let decided = if calibrate() { 1 } else { 2 };
    REFILL.store(decided, Ordering::Relaxed);
    decided == 1
}

/// Whether a function that returns right after a system call is at least
/// 10 % faster with the refill than without (where the kernel leaves the
/// buffer alone it is slower): the best of 6 interleaved rounds of 8
/// `flock` lock + unlock pairs each way, on a private memfd (the penalty
/// grows with the depth of the kernel's path, so the probe is the call
/// the refill is for; `getppid` shows a fraction of it).
#[cfg(target_arch = "x86_64")]
fn calibrate() -> bool {
    #[inline(never)]
    fn probe(fd: usize, op: libc::c_int, refill: bool) {
        // SAFETY: flock(2) on our own memfd.
        let _ = std::hint::black_box(unsafe {
            call(libc::SYS_flock, [fd, op as usize, 0, 0, 0], refill)
        });
    }
    let Ok(memfd) =
        rustix::fs::memfd_create(c"holdfast-calibrate", rustix::fs::MemfdFlags::CLOEXEC)
    else {
        return false;
    };
    let fd = memfd.as_raw_fd() as usize;
    let mut best = [u128::MAX; 2];
    for _ in 0..6 {
        for (i, refill) in [(0, false), (1, true)] {
            let refill = std::hint::black_box(refill);
            let t = std::time::Instant::now();
            for _ in 0..8 {
                probe(fd, libc::LOCK_EX | libc::LOCK_NB, refill);
                probe(fd, libc::LOCK_UN, refill);
            }
            best[i] = best[i].min(t.elapsed().as_nanos());
        }
    }
    if std::env::var_os("HOLDFAST_DEBUG_CALIBRATE").is_some() {
        eprintln!(
            "calibrate: plain {} ns, refill {} ns per 8 pairs",
            best[0], best[1]
        );
    }
    best[1] * 10 < best[0] * 9
}

/// The decision, made now if not yet (for tests).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn refill_decided() -> bool {
    while REFILL.load(Ordering::Relaxed) == 0 {
        refill();
    }
    REFILL.load(Ordering::Relaxed) == 1
}

/// `syscall(n, a0..a4)`, with the refill above where this process chose
/// it: `Err(errno)` for results in `-4095..0`.
///
/// # Safety
///
/// As the system call `n` with these arguments.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn hot(n: libc::c_long, a: [usize; 5]) -> Result<usize, Errno> {
    // SAFETY: the caller's promise.
    unsafe { call(n, a, refill()) }
}

/// `syscall(n, a0..a4)`, followed by the refill if `refill`.
///
/// # Safety
///
/// As the system call `n` with these arguments.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn call(n: libc::c_long, a: [usize; 5], refill: bool) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: the caller vouches for the system call. After it, rcx and r11
    // (clobbered by `syscall` anyway) are scratch. The refill moves the
    // stack pointer below the red zone, pushes 16 return addresses with
    // `call` (none is ever returned to: each target is the next label) and
    // restores the stack pointer; no memory of ours is touched. Not
    // `nostack`: it uses the stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test r9d, r9d",
            "jz 5f",
            "xor ecx, ecx",
            // rdsspq rcx (a no-op without an active shadow stack)
            ".byte 0xf3, 0x48, 0x0f, 0x1e, 0xc9",
            "test rcx, rcx",
            "jnz 5f",
            "sub rsp, 128",
            ".rept 16",
            "call 2f",
            "3: pause",
            "lfence",
            "jmp 3b",
            "2:",
            ".endr",
            "add rsp, 256",
            "5:",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            // r9 is the unused sixth argument; the kernel preserves it.
            in("r9") u32::from(refill),
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw_os_error(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// `flock(fd, op)`.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn flock(fd: BorrowedFd<'_>, op: rustix::fs::FlockOperation) -> Result<(), Errno> {
    // SAFETY: flock(2) on a descriptor borrowed for the call.
    unsafe {
        hot(
            libc::SYS_flock,
            [fd.as_raw_fd() as usize, op as u32 as usize, 0, 0, 0],
        )
    }
    .map(drop)
}

/// `flock(fd, op)`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn flock(fd: BorrowedFd<'_>, op: rustix::fs::FlockOperation) -> Result<(), Errno> {
    rustix::fs::flock(fd, op)
}

/// `fcntl(fd, cmd, lock)` for the OFD lock commands.
#[inline]
pub(crate) fn fcntl_lock(fd: i32, cmd: libc::c_int, lock: &libc::flock) -> Result<(), Errno> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `lock` is a fully initialised `struct flock` that outlives
        // the call; `fd` is open for the call (the caller's promise).
        unsafe {
            hot(
                libc::SYS_fcntl,
                [
                    fd as usize,
                    cmd as usize,
                    lock as *const libc::flock as usize,
                    0,
                    0,
                ],
            )
        }
        .map(drop)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, lock as *const libc::flock) };
        if r == -1 {
            Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
        } else {
            Ok(())
        }
    }
}

/// The link count of the open file, from `statx(fd, "", AT_EMPTY_PATH,
/// STATX_NLINK)`.
#[inline]
pub(crate) fn nlink(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    #[cfg(target_arch = "x86_64")]
    {
        // struct statx is 256 bytes; stx_nlink is the u32 at offset 16.
        let mut buf = [0u64; 32];
        // SAFETY: statx(2) writes at most 256 bytes into `buf`, which lives
        // across the call; the path is a NUL-terminated empty string.
        unsafe {
            hot(
                libc::SYS_statx,
                [
                    fd.as_raw_fd() as usize,
                    c"".as_ptr() as usize,
                    libc::AT_EMPTY_PATH as usize,
                    libc::STATX_NLINK as usize,
                    buf.as_mut_ptr() as usize,
                ],
            )
        }?;
        Ok(buf[2] as u32)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use rustix::fs::{AtFlags, StatxFlags};
        Ok(rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::NLINK)?.stx_nlink)
    }
}

/// How many of `ep`'s descriptors are ready, without waiting:
/// `epoll_wait(ep, &ev, 1, 0)`.
#[inline]
pub(crate) fn epoll_ready(ep: BorrowedFd<'_>) -> Result<usize, Errno> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: epoll_wait(2) writes at most one event into `ev`, which
        // lives across the call; timeout 0 never blocks.
        unsafe {
            hot(
                libc::SYS_epoll_wait,
                [
                    ep.as_raw_fd() as usize,
                    &mut ev as *mut libc::epoll_event as usize,
                    1,
                    0,
                    0,
                ],
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as above.
        let r = unsafe { libc::epoll_wait(ep.as_raw_fd(), &mut ev, 1, 0) };
        if r < 0 {
            Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
        } else {
            Ok(r as usize)
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Both ways of making a hot call work, whichever the calibration
    /// chose (which one it chooses depends on the machine).
    #[test]
    fn hot_calls_work_with_and_without_the_refill() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("l")).unwrap();
        let fd = file.as_raw_fd() as usize;
        for refill in [false, true] {
            // SAFETY: flock(2) and statx(2) on our own open file.
            unsafe {
                call(
                    libc::SYS_flock,
                    [fd, libc::LOCK_EX as usize, 0, 0, 0],
                    refill,
                )
                .unwrap();
                call(
                    libc::SYS_flock,
                    [fd, libc::LOCK_UN as usize, 0, 0, 0],
                    refill,
                )
                .unwrap();
                let e = call(
                    libc::SYS_flock,
                    [usize::MAX >> 33, libc::LOCK_UN as usize, 0, 0, 0],
                    refill,
                );
                assert_eq!(e, Err(Errno::BADF));
            }
        }
        let decided = refill_decided();
        eprintln!("refill chosen here: {decided}");
        assert_eq!(nlink(file.as_fd()).unwrap(), 1);
        flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        flock(file.as_fd(), rustix::fs::FlockOperation::Unlock).unwrap();
    }
}
