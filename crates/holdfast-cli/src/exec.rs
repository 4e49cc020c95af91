//! Running the command under the lock, through the library's safe
//! [`holdfast::process`]: the command inherits the lock's descriptor (as
//! flock(1)'s child does, so the lock lives as long as the command even if
//! holdfast is killed) and gets the fencing token in its environment.
//! [`run_holding`] is the one "run while held" loop of `holdfast run` with
//! a lock file, etcd or PostgreSQL: the command is stopped when the lock
//! is lost, and the loss is exit 75.

use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::process::ExitStatus;
use std::time::Duration;

use holdfast::process::{Child, Command, LossPolicy, Ran};

use crate::exit;

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

    fn command(&self) -> Command<'static> {
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
    /// holdfast keeps a lock (a lock file, a lease) for the command: kill
    /// the command if holdfast dies.
    pub keeps_lock_file: bool,
    /// Pass TERM, INT, HUP and QUIT sent to holdfast on to the command (and
    /// wait for it), instead of dying and leaving the command running with
    /// the lock: `holdfast run` does; `holdfast flock` does not, as
    /// flock(1) does not.
    pub forward_signals: bool,
}

/// The command's environment variable for the fencing token. Without a
/// token, one inherited from an outer holdfast is removed.
const TOKEN_VAR: &str = "HOLDFAST_FENCING_TOKEN";

impl<'a> Launch<'a> {
    fn command(&self, program: &Program) -> Command<'a> {
        let mut cmd = program.command();
        match self.token {
            Some(t) => cmd.env(TOKEN_VAR, t.to_string()),
            None => cmd.env_remove(TOKEN_VAR),
        };
        if let Some(fd) = self.lock_fd {
            cmd.inherit_fd(fd);
        }
        cmd.kill_on_parent_death(self.keeps_lock_file)
            .forward_signals(self.forward_signals);
        // As flock(1) before it forks: an ignored SIGCHLD would make the
        // command's status unobtainable.
        holdfast::process::default_sigchld();
        cmd
    }

    /// Runs `program` to completion while the lock is held.
    ///
    /// # Errors
    ///
    /// The spawn error (not found, not executable, out of memory).
    pub fn run(&self, program: &Program) -> io::Result<ExitStatus> {
        self.spawn(program)?.wait()
    }

    /// Starts `program`.
    ///
    /// # Errors
    ///
    /// As [`Launch::run`].
    pub fn spawn(&self, program: &Program) -> io::Result<Child> {
        self.command(program).spawn()
    }

    /// Replaces this process with `program` (flock(1)'s `--no-fork`); the
    /// lock stays held by the new program. Returns only on failure.
    pub fn exec(&self, program: &Program) -> io::Error {
        self.command(program).exec()
    }
}

/// How [`run_holding`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The command exited with the lock held throughout.
    Exited(ExitStatus),
    /// The lock was lost while it ran; it was stopped (and the user told).
    Lost,
}

/// Runs `program` while holdfast keeps a lock for it (a lock file, an etcd
/// lease, a PostgreSQL session): with the lock's fencing `token`, killed
/// if holdfast dies, TERM/INT/HUP/QUIT passed on. `check` runs every
/// `check_every`; once it reports the lock lost, `lost_message` is printed
/// and the command gets SIGTERM (SIGKILL 10 s later if it is still there).
/// The one "run while held" loop of lock files, etcd and PostgreSQL.
///
/// # Errors
///
/// The exit code when the command could not be started or waited for
/// (already reported).
pub fn run_holding(
    program: &Program,
    token: Option<u64>,
    check_every: Duration,
    check: impl FnMut() -> holdfast::Result<()>,
    lost_message: impl FnOnce(&holdfast::Error) -> String,
) -> Result<Outcome, u8> {
    let launch = Launch {
        lock_fd: None,
        token,
        keeps_lock_file: true,
        forward_signals: true,
    };
    let child = match launch.spawn(program) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("holdfast: cannot run {}: {e}", program.name());
            return Err(exit::for_spawn_error(&e));
        }
    };
    let policy = LossPolicy {
        check_every,
        grace: Duration::from_secs(10),
    };
    match child.run_until_lost(policy, check, |e| eprintln!("{}", lost_message(e))) {
        Ok(Ran::Exited(status)) => Ok(Outcome::Exited(status)),
        Ok(Ran::Lost { .. }) => Ok(Outcome::Lost),
        Err(e) => {
            eprintln!("holdfast: waiting for {}: {e}", program.name());
            Err(exit::OS_ERR)
        }
    }
}
