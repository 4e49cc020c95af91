//! The `holdfast` command: a thin layer over the `holdfast` library. All
//! of it is in this package's library ([`holdfast_cli::run`]), which the
//! Python wheel's `holdfast` script runs too; this file is start-up only.
//!
//! # Startup cost
//!
//! `holdfast flock LOCK CMD` competes with util-linux flock(1), a small C
//! program, on the cost of one invocation, so `main` stays lean: the flock
//! form (`holdfast flock ...`, or a symlink named `flock`) builds only its
//! own parser, and nothing reads `/proc` or the clock before it is needed.
//!
//! For the same reason holdfast provides the C `main` itself
//! (`#![no_main]`) instead of going through std's runtime start-up, which
//! on Linux reads and parses `/proc/self/maps` to find the main thread's
//! stack for its stack-overflow handler: about 0.2 ms per run, as much as
//! the whole rest of what holdfast adds to a command. What that start-up
//! did and still matters is done here: descriptors 0-2 are opened on
//! `/dev/null` if they are closed (so a lock file can never become stdout),
//! a panic exits 101, and stdout is flushed before exit. Left at their
//! defaults, as in C programs such as flock(1): `SIGPIPE` (a closed pipe
//! ends holdfast quietly instead of an error) and the stack-overflow
//! message (an overflow is a plain `SIGSEGV`). `std::env::args_os` works
//! unchanged (glibc passes the arguments to std's initialiser).

// The unit tests keep the test harness's `main`.
#![cfg_attr(not(test), no_main)]

/// The process entry point (see "Startup cost" above).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    stdio_open();
    let code = std::panic::catch_unwind(holdfast).unwrap_or(101);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    libc::c_int::from(code)
}

/// Opens `/dev/null` on any of descriptors 0, 1 and 2 that is closed, as
/// std's start-up does: otherwise the lock file could be opened as fd 1
/// and `println!` would write into it.
#[cfg_attr(test, allow(dead_code))]
fn stdio_open() {
    use std::os::fd::AsRawFd;
    // open(2) returns the lowest free descriptor: while that is 0, 1 or 2,
    // one of them was closed, and /dev/null now fills it for the life of
    // the process. The first one above 2 is closed again. (One open and
    // one close when all three are open; no unsafe descriptor numbers.)
    for _ in 0..=2 {
        let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        else {
            return;
        };
        if null.as_raw_fd() > 2 {
            return;
        }
        std::mem::forget(null);
    }
}

#[cfg_attr(test, allow(dead_code))]
fn holdfast() -> u8 {
    holdfast_cli::run(std::env::args_os().collect())
}
