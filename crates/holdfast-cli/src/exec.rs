//! Running the command under the lock.
//!
//! The lock's descriptor is opened close-on-exec by the library. To let the
//! command inherit the lock (as flock(1)'s child does, so the lock lives as
//! long as the command even if holdfast is killed), it is duplicated once
//! without close-on-exec just before the spawn and that duplicate is closed
//! in holdfast right after: the command gets one copy of the same open file
//! description. This needs no code between fork and exec, so std can spawn
//! with `posix_spawn` (a vfork-style clone), the cheapest way to start a
//! process.

use std::ffi::OsString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};

/// What to run: a program and its arguments, or a `-c` string for the shell.
#[derive(Debug)]
pub enum Program {
    /// `argv[0]` (looked up in `PATH`) and the rest.
    Argv(Vec<OsString>),
    /// A command string for `$SHELL -c` (`/bin/sh` if `SHELL` is unset or
    /// empty), as flock(1)'s `-c`.
    Shell(OsString),
}

impl Program {
    /// The name to use in messages ("cannot run NAME").
    pub fn name(&self) -> String {
        match self {
            Program::Argv(argv) => argv
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Program::Shell(_) => shell().to_string_lossy().into_owned(),
        }
    }

    fn command(&self) -> Command {
        match self {
            Program::Argv(argv) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            Program::Shell(s) => {
                let mut c = Command::new(shell());
                c.arg("-c").arg(s);
                c
            }
        }
    }
}

fn shell() -> OsString {
    std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| OsString::from("/bin/sh"))
}

/// How to hand the lock to the command.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The lock's descriptor, inherited by the command (`None`: nothing to
    /// inherit, or `--close`).
    pub lock_fd: Option<BorrowedFd<'a>>,
    /// The fencing token, exported as `HOLDFAST_FENCING_TOKEN`.
    pub token: Option<u64>,
}

impl Launch<'_> {
    fn prepare(&self, program: &Program) -> io::Result<(Command, Option<OwnedFd>)> {
        let cmd = program.command();
        export_token(self.token);
        // A plain dup(2) has no close-on-exec flag: this copy is inherited.
        let inherited = self.lock_fd.map(rustix::io::dup).transpose()?;
        reset_sigchld();
        Ok((cmd, inherited))
    }

    /// Runs `program` to completion while the lock is held.
    ///
    /// # Errors
    ///
    /// The spawn error (not found, not executable, out of memory).
    pub fn run(&self, program: &Program) -> io::Result<ExitStatus> {
        let (mut cmd, inherited) = self.prepare(program)?;
        let child = cmd.spawn();
        drop(inherited);
        child?.wait()
    }

    /// Replaces this process with `program` (flock(1)'s `--no-fork`); the
    /// lock stays held by the new program. Returns only on failure.
    pub fn exec(&self, program: &Program) -> io::Error {
        match self.prepare(program) {
            Ok((mut cmd, _inherited)) => cmd.exec(),
            Err(e) => e,
        }
    }
}

/// Puts the fencing token into this process's environment, which the
/// command inherits (or removes a stale one inherited from an outer
/// holdfast when there is no token). Setting it here rather than with
/// `Command::env` keeps std from copying the whole environment into a map
/// and back for the spawn, about half of std's own cost of starting it.
fn export_token(token: Option<u64>) {
    const VAR: &str = "HOLDFAST_FENCING_TOKEN";
    match token {
        // SAFETY: holdfast has one thread when it starts the command (the
        // waiting-line thread is joined before the lock call returns), so
        // nothing reads or writes the environment concurrently.
        Some(t) => unsafe { std::env::set_var(VAR, t.to_string()) },
        None if std::env::var_os(VAR).is_some() => {
            // SAFETY: as above.
            unsafe { std::env::remove_var(VAR) }
        }
        None => {}
    }
}

/// Sets `SIGCHLD` back to its default disposition, as flock(1) does before
/// it forks: a parent that ignores it would otherwise make the command's
/// exit status unobtainable (`ECHILD`), and the command would inherit the
/// odd setting.
fn reset_sigchld() {
    // SAFETY: installing SIG_DFL for SIGCHLD runs no handler code and has no
    // memory-safety preconditions; holdfast installs no SIGCHLD handler of
    // its own that this could displace.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}
