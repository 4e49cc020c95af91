//! `holdfast run`: run a command while holding a lock.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

use holdfast::{Lock, Mode, Wait};

use crate::cli::RunArgs;
use crate::{duration, exit};

pub fn run(args: RunArgs) -> u8 {
    let wait = if args.no_wait {
        Wait::NoWait
    } else if let Some(t) = &args.timeout {
        match duration::parse(t) {
            Ok(d) if d.is_zero() => Wait::NoWait,
            Ok(d) => Wait::Timeout(d),
            Err(e) => {
                eprintln!("holdfast: --timeout: {e}");
                return exit::USAGE;
            }
        }
    } else {
        Wait::Forever
    };
    let mode = if args.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let lock = match Lock::options()
        .create_parents(args.create_parents)
        .open(&args.lockfile)
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("holdfast: {e}");
            return exit::for_error(&e);
        }
    };
    let started = Instant::now();
    // Try first, so a wait can be announced with the holder's name.
    let guard = match lock.acquire(mode, Wait::NoWait) {
        Ok(g) => Ok(g),
        Err(holdfast::Error::WouldBlock { holders, .. }) if wait != Wait::NoWait => {
            if args.verbose {
                eprintln!(
                    "holdfast: waiting for {} lock on {}: {holders}",
                    mode.with_article(),
                    args.lockfile.display()
                );
            }
            lock.acquire(mode, wait)
        }
        Err(e) => Err(e),
    };
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            eprintln!("holdfast: {e}");
            return exit::for_error(&e);
        }
    };
    if args.verbose {
        eprintln!(
            "holdfast: got {} lock on {} after {:.3}s{}",
            mode,
            args.lockfile.display(),
            started.elapsed().as_secs_f64(),
            guard
                .token()
                .map(|t| format!(" (fencing token {t})"))
                .unwrap_or_default()
        );
    }
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if let Some(t) = guard.token() {
        cmd.env("HOLDFAST_FENCING_TOKEN", t.to_string());
    }
    if !args.close {
        let fd = guard.as_fd().as_raw_fd();
        // SAFETY: between fork and exec we only clear FD_CLOEXEC on a
        // descriptor that is open in the child, with an async-signal-safe
        // fcntl call.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holdfast: cannot run {}: {e}", program.to_string_lossy());
            return if e.kind() == std::io::ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_EXEC
            };
        }
    };
    drop(guard);
    exit::for_child(status)
}
