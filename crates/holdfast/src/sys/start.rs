//! Start-up of the `holdfast` command without std's `/proc/self/maps`
//! read (the `fast-start` feature, linked in by the CLI's build script).
//!
//! Rust's runtime start-up asks glibc for the main thread's stack
//! (`pthread_getattr_np`) to label a stack overflow; glibc answers by
//! reading and parsing `/proc/self/maps` and the CPU affinity, the most
//! expensive part of a Rust program's start (see `crates/holdfast-cli/
//! src/main.rs` for the numbers). The CLI links with
//! `-Wl,--wrap=pthread_getattr_np`, which sends std's call here: for the
//! main thread asking about itself the answer is "not available"
//! (`ENOSYS`, which std handles: an overflow of the main thread's stack
//! is then a plain `SIGSEGV`, as in a C program); every other call goes
//! to glibc's function. Programs that do not link with the flag never
//! call this.

use std::sync::atomic::{AtomicUsize, Ordering};

type GetAttr = unsafe extern "C" fn(libc::pthread_t, *mut libc::pthread_attr_t) -> libc::c_int;

/// glibc's `pthread_getattr_np` (found with `dlsym(RTLD_NEXT)`, so that
/// nothing refers to `__real_pthread_getattr_np` and the library links
/// with or without the flag); 0 until looked up.
static REAL: AtomicUsize = AtomicUsize::new(0);

/// The target of std's `pthread_getattr_np` calls under
/// `-Wl,--wrap=pthread_getattr_np` (see the module docs).
///
/// # Safety
///
/// As glibc's `pthread_getattr_np`: `attr` points to a `pthread_attr_t`
/// the function may initialise.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_pthread_getattr_np(
    thread: libc::pthread_t,
    attr: *mut libc::pthread_attr_t,
) -> libc::c_int {
    // SAFETY: pthread_self has no preconditions.
    let own = unsafe { libc::pthread_self() } == thread;
    let main = rustix::process::getpid().as_raw_nonzero().get()
        == rustix::thread::gettid().as_raw_nonzero().get();
    if own && main {
        return libc::ENOSYS;
    }
    let mut f = REAL.load(Ordering::Relaxed);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the
        // next definition after this object's, glibc's.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_getattr_np".as_ptr()) } as usize;
        if f == 0 {
            return libc::ENOSYS;
        }
        REAL.store(f, Ordering::Relaxed);
    }
    // SAFETY: `f` is glibc's pthread_getattr_np, whose type is `GetAttr`;
    // the caller vouches for the arguments.
    unsafe {
        let real: GetAttr = std::mem::transmute::<usize, GetAttr>(f);
        real(thread, attr)
    }
}
