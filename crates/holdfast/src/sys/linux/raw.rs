//! Raw system calls that return their result in a register and never write
//! `errno`: for code that runs in a `clone(CLONE_VM)` child, which shares
//! the parent thread's memory (and so its thread-local `errno`) but has no
//! thread of its own (`libc::syscall` would write the parent's `errno`).
//! Used by the killable lock waiter (`waiter.rs`) and the spawn child
//! (`../spawn.rs`).

/// Whether this architecture has [`syscall`] (elsewhere it answers
/// `ENOSYS` and callers keep to their portable paths).
pub(crate) const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The raw system call `n` with up to four arguments: `Err(errno)` for
/// results in `-4095..0`.
///
/// # Safety
///
/// As the system call `n` with these arguments.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn syscall(n: libc::c_long, a: [usize; 4]) -> Result<usize, i32> {
    let ret: isize;
    // SAFETY: the caller vouches for the call; `syscall` clobbers rcx and
    // r11 only, and uses no stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
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

/// The raw system call `n` with up to four arguments: `Err(errno)` for
/// results in `-4095..0`.
///
/// # Safety
///
/// As the system call `n` with these arguments.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn syscall(n: libc::c_long, a: [usize; 4]) -> Result<usize, i32> {
    let ret: isize;
    // SAFETY: the caller vouches for the call; `svc 0` takes the number in
    // x8 and returns in x0, using no stack.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// Never called where [`SUPPORTED`] is false (no such child exists).
///
/// # Safety
///
/// Always safe; it makes no call.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) unsafe fn syscall(_n: libc::c_long, _a: [usize; 4]) -> Result<usize, i32> {
    Err(libc::ENOSYS)
}

/// [`syscall`] with three arguments.
///
/// # Safety
///
/// As the system call `n` with these arguments.
pub(crate) unsafe fn syscall3(n: libc::c_long, a: [usize; 3]) -> Result<usize, i32> {
    // SAFETY: as the caller vouches; the fourth register is passed as 0,
    // which calls of three arguments ignore.
    unsafe { syscall(n, [a[0], a[1], a[2], 0]) }
}
