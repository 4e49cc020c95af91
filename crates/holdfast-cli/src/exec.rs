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
    /// holdfast keeps a lock file for the command (see the module docs):
    /// kill the command if holdfast dies. Other threads (a lease
    /// heartbeat) may be running.
    pub keeps_lock_file: bool,
    /// Pass TERM, INT, HUP and QUIT sent to holdfast on to the command (and
    /// wait for it), instead of dying and leaving the command running with
    /// the lock: `holdfast run` does; `holdfast flock` does not, as
    /// flock(1) does not.
    pub forward_signals: bool,
}

impl Launch<'_> {
    fn prepare(&self, program: &Program) -> io::Result<(Command, Option<OwnedFd>)> {
        let mut cmd = program.command();
        if self.keeps_lock_file {
            // Other threads may run: leave this process's environment alone.
            match self.token {
                Some(t) => cmd.env(TOKEN_VAR, t.to_string()),
                None => cmd.env_remove(TOKEN_VAR),
            };
            die_with_parent(&mut cmd);
        } else {
            export_token(self.token);
        }
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
        self.spawn(program)?.wait()
    }

    /// Starts `program`; [`Running::wait`] waits for it. For callers that
    /// must act on the command while it runs (stop it when a lease is lost).
    ///
    /// # Errors
    ///
    /// As [`Launch::run`].
    pub fn spawn(&self, program: &Program) -> io::Result<Running> {
        let (mut cmd, inherited) = self.prepare(program)?;
        if self.forward_signals {
            forward::install();
        }
        let child = cmd.spawn();
        drop(inherited);
        let child = child?;
        if self.forward_signals {
            forward::to(child.id());
        }
        Ok(Running {
            child,
            forwarding: self.forward_signals,
        })
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

/// A command started by [`Launch::spawn`].
#[derive(Debug)]
pub struct Running {
    child: std::process::Child,
    forwarding: bool,
}

impl Running {
    /// The command's pid.
    #[cfg_attr(not(any(feature = "etcd", feature = "postgres")), allow(dead_code))]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit.
    ///
    /// # Errors
    ///
    /// As [`std::process::Child::wait`].
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait();
        if self.forwarding {
            forward::done();
        }
        status
    }
}

/// Puts the fencing token into this process's environment, which the
/// command inherits (or removes a stale one inherited from an outer
/// holdfast when there is no token). Setting it here rather than with
/// `Command::env` keeps std from copying the whole environment into a map
/// and back for the spawn, about half of std's own cost of starting it.
const TOKEN_VAR: &str = "HOLDFAST_FENCING_TOKEN";

fn export_token(token: Option<u64>) {
    const VAR: &str = TOKEN_VAR;
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

/// Has the kernel send SIGKILL to the command when holdfast (the thread
/// that spawns it, the main thread, which lives until holdfast exits) dies.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and
    // makes only raw system calls (rustix's prctl and getppid, which touch
    // no errno and no lock); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::process::{Signal, getppid, set_parent_process_death_signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // holdfast died before the prctl took effect: the spawn fails
            // and the child exits without running the command.
            if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Passing holdfast's termination signals on to the command.
mod forward {
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The command's pid, once it runs (0 before).
    static CHILD: AtomicI32 = AtomicI32::new(0);
    /// A signal that came before the command's pid was known.
    static PENDING: AtomicI32 = AtomicI32::new(0);

    const SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

    extern "C" fn handle(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
        // handler; only its si_code is read.
        let code = unsafe { (*info).si_code };
        // Sent by the kernel (the terminal's ^C, ^\, hang-up): it went to
        // the whole foreground process group, the command got it already.
        if code == libc::SI_KERNEL {
            return;
        }
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // rustix's kill is a raw system call: async-signal-safe.
            kill(child, sig);
        } else {
            PENDING.store(sig, Ordering::SeqCst);
        }
    }

    /// Catches the signals (before the spawn, so none is lost in between;
    /// the command starts with default dispositions, as exec resets caught
    /// signals).
    pub fn install() {
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is a valid starting value; the
            // handler only touches atomics and calls kill(2), both
            // async-signal-safe; SA_RESTART keeps waitpid from failing
            // with EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handle as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }

    /// Sends `sig` to `pid` (both as the handler got them); no errno, no
    /// allocation, so it may run in the signal handler.
    fn kill(pid: i32, sig: libc::c_int) {
        use rustix::process::{Pid, Signal, kill_process};
        if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
            let _ = kill_process(pid, sig);
        }
    }

    /// The command has been reaped: its pid may be reused, send nothing more.
    pub fn done() {
        CHILD.store(0, Ordering::SeqCst);
    }

    /// From now on signals go to `pid`; one that came during the spawn is
    /// passed on now.
    pub fn to(pid: u32) {
        let pid = pid as i32;
        CHILD.store(pid, Ordering::SeqCst);
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 {
            kill(pid, pending);
        }
    }
}
