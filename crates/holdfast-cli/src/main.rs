//! The `holdfast` command: a thin layer over the `holdfast` library. All
//! of it is in this package's library ([`holdfast_cli::run`]), which the
//! Python wheel's `holdfast` script runs too; this file is start-up only.
//! Commands with a lock service (`--backend`) are served by the
//! `holdfast-remote` binary (`src/remote_main.rs`), which this one
//! `exec`s ([`holdfast_cli::run_local`]): this binary then carries none of
//! the etcd and PostgreSQL clients, whose code, libc imports and `libm`
//! every local call paid for at start-up.
//!
//! # Start-up cost
//!
//! `holdfast flock LOCK CMD` competes with util-linux flock(1), a small C
//! program, on the cost of one invocation, so `main` stays lean: the flock
//! form (`holdfast flock ...`, or a symlink named `flock`) builds only its
//! own parser, and nothing reads `/proc` or the clock before it is needed.
//!
//! std's runtime start-up (Rust 1.95, still) asks glibc for the main
//! thread's stack to label stack overflows, and glibc reads and parses
//! `/proc/self/maps` (plus `sched_getaffinity`) to answer: measured on
//! this project's 2-core VM, a hello world with std's start-up made 62
//! system calls against 41 for a C-style `#![no_main]` entry, and took
//! about 0.05-0.1 ms more per run (most of it the `/proc` read).
//! holdfast used to provide the C `main` itself to skip it; that needs
//! `#[unsafe(no_mangle)]` here, and the CLI has no `unsafe` (issue 9).
//! The decision: keep std's `fn main`, and let the library own the one
//! unsafe piece: `build.rs` links this binary with
//! `-Wl,--wrap=pthread_getattr_np`, and the library's `fast-start`
//! feature answers that call for the main thread with "not available"
//! (std then skips the overflow label: an overflow of the main thread is
//! a plain `SIGSEGV`, as it was with the C `main`); other threads get
//! glibc's answer. That leaves 55 system calls for the hello world, and
//! no `/proc` read.
//!
//! What std's start-up does and still matters: descriptors 0-2 are opened
//! on `/dev/null` if closed (a lock file can never become stdout), a panic
//! exits 101, stdout is flushed at exit. std also sets `SIGPIPE` to
//! ignored; it is set back to the default at once, so that a closed pipe
//! ends holdfast quietly (as flock(1)) and commands start with the
//! default (a caller's ignored `SIGPIPE` is not passed on, as it was with
//! the C `main`: std's start-up has already replaced it).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    holdfast::process::default_sigpipe();
    std::process::ExitCode::from(holdfast_cli::run_local(std::env::args_os().collect()))
}
