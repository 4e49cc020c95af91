//! Running a command while holding a lock (Unix): what `holdfast run`
//! and `holdfast flock` do, as a safe API.
//!
//! - [`Command`] starts a program with an inherited lock descriptor (the
//!   command keeps the lock even if this process is killed, as with
//!   util-linux flock(1)), environment additions such as the fencing token
//!   (given to the command only: this process's environment is never
//!   changed), an optional `SIGKILL` when this process dies, and
//!   forwarding of `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGQUIT` to it.
//! - [`Child::run_until_lost`] waits for it while checking that the lock
//!   is still held ([`HeldLock::check`](crate::HeldLock::check), or any
//!   check of your own); when it is lost, the command gets `SIGTERM`, and
//!   `SIGKILL` after a grace period.
//!
//! On Linux (x86_64, aarch64) a command starts with
//! `clone(CLONE_VM | CLONE_VFORK)` and `execve`; the child resets only
//! the signal handlers this module installed, so signals inherited as
//! ignored stay ignored in the command, as with flock(1)'s fork + exec.
//! Elsewhere, or where the kernel refuses that clone, or with
//! `HOLDFAST_SPAWN=std` in the environment (for comparison), std's
//! [`std::process::Command`] starts it, with the same visible result
//! except one: a file without `#!` is not run under `/bin/sh` there.
//!
//! ```
//! use holdfast::process::{Command, Ran, LossPolicy};
//! use holdfast::{HeldLock, Mode, Wait};
//! use std::os::fd::AsFd;
//! # let dir = tempfile::tempdir().unwrap();
//! let lock = holdfast::Lock::open(dir.path().join("job.lock"))?;
//! let guard = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
//! let mut cmd = Command::new("sh");
//! cmd.arg("-c").arg(r#"test -n "$HOLDFAST_FENCING_TOKEN""#);
//! cmd.env("HOLDFAST_FENCING_TOKEN", guard.token().unwrap().to_string());
//! cmd.inherit_fd(guard.as_fd());
//! let child = cmd.spawn()?;
//! match child.run_until_lost(LossPolicy::default(), || guard.check(), |_| {})? {
//!     Ran::Exited(status) => assert!(status.success()),
//!     Ran::Lost { error, .. } => panic!("{error}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::process::ExitStatus;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::spawn as sys;

/// A command to start: program, arguments, environment changes, an
/// inherited descriptor, and how it relates to this process.
///
/// ```
/// let status = holdfast::process::Command::new("true").status()?;
/// assert!(status.success());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Command<'fd> {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    inherit: Option<BorrowedFd<'fd>>,
    kill_on_parent_death: bool,
    forward_signals: bool,
}

impl<'fd> Command<'fd> {
    /// A command running `program` (looked up in `PATH` unless it contains
    /// a `/`), with this process's environment, no inherited descriptor.
    ///
    /// ```
    /// let cmd = holdfast::process::Command::new("/bin/echo");
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            inherit: None,
            kill_on_parent_death: false,
            forward_signals: false,
        }
    }

    /// Adds an argument.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("sh");
    /// cmd.arg("-c").arg("exit 3");
    /// assert_eq!(cmd.status()?.code(), Some(3));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("test");
    /// cmd.args(["a", "=", "a"]);
    /// assert!(cmd.status()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `key` to `value` in the command's environment (this process's
    /// own environment is left alone, so other threads may run).
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("sh");
    /// cmd.args(["-c", r#"test "$TOKEN" = 7"#]).env("TOKEN", "7");
    /// assert!(cmd.status()?.success());
    /// assert!(std::env::var_os("TOKEN").is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Leaves `key` out of the command's environment.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("sh");
    /// cmd.args(["-c", r#"test -z "${HOME+set}""#]).env_remove("HOME");
    /// assert!(cmd.status()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Gives the command a copy of `fd` (the same open file description,
    /// so a lock on it is shared, and lives as long as either keeps it),
    /// although it is close-on-exec here. Its number in the command is not
    /// specified (`/proc/self/fd` shows it).
    ///
    /// ```
    /// use holdfast::{Mode, Wait};
    /// use std::os::fd::AsFd;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("a.lock"))?;
    /// let guard = lock.acquire_owned(Mode::Exclusive, Wait::Forever)?;
    /// let mut cmd = holdfast::process::Command::new("true");
    /// cmd.inherit_fd(guard.as_fd());
    /// assert!(cmd.status()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inherit_fd(&mut self, fd: BorrowedFd<'fd>) -> &mut Self {
        self.inherit = Some(fd);
        self
    }

    /// Linux: the kernel sends the command `SIGKILL` when the thread that
    /// spawned it ends (for a lock this process keeps on the command's
    /// behalf, such as a lock file or a lease, which would otherwise be
    /// released while the command runs on). The spawning thread must
    /// live as long as the command. Elsewhere: nothing.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("true");
    /// cmd.kill_on_parent_death(true);
    /// assert!(cmd.status()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.kill_on_parent_death = yes;
        self
    }

    /// Passes `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGQUIT` sent to this
    /// process on to the command while it runs, instead of dying and
    /// leaving it running (signals sent by the kernel to the terminal's
    /// foreground group, such as `^C`, reached the command already and are
    /// not sent twice). This installs process-wide handlers for those
    /// signals that stay installed; one command at a time receives them.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("true");
    /// cmd.forward_signals(true);
    /// assert!(cmd.status()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn forward_signals(&mut self, yes: bool) -> &mut Self {
        self.forward_signals = yes;
        self
    }

    fn spec(&self) -> sys::Spec<'_> {
        sys::Spec {
            program: &self.program,
            args: &self.args,
            env: &self.env,
            inherit: self.inherit,
            kill_on_parent_death: self.kill_on_parent_death,
        }
    }

    /// Starts the command.
    ///
    /// ```
    /// let child = holdfast::process::Command::new("true").spawn()?;
    /// assert!(child.id() > 0);
    /// assert!(child.wait()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The reason the program could not be started: not found
    /// (`NotFound`), not executable (`PermissionDenied`), out of memory
    /// or processes.
    pub fn spawn(&self) -> io::Result<Child> {
        if self.forward_signals {
            sys::forward::install();
        }
        let child = sys::spawn(&self.spec())?;
        if self.forward_signals {
            sys::forward::to(child.id());
        }
        Ok(Child {
            inner: child,
            forwarding: self.forward_signals,
        })
    }

    /// Starts the command and waits for it.
    ///
    /// ```
    /// assert!(!holdfast::process::Command::new("false").status()?.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn), or if waiting fails.
    pub fn status(&self) -> io::Result<ExitStatus> {
        self.spawn()?.wait()
    }

    /// Replaces this process with the command (flock(1)'s `--no-fork`):
    /// an inherited descriptor stays open in it. Returns only on failure.
    ///
    /// ```no_run
    /// let err = holdfast::process::Command::new("/no/such/program").exec();
    /// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn exec(&self) -> io::Error {
        sys::exec(&self.spec())
    }
}

/// Sets `SIGCHLD` back to its default disposition in this process, as
/// util-linux flock(1) does before it forks: a parent that ignores it
/// would make the command's exit status unobtainable, and the command
/// would inherit the setting.
///
/// ```
/// holdfast::process::default_sigchld();
/// assert!(holdfast::process::Command::new("true").status()?.success());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn default_sigchld() {
    sys::default_sigchld();
}

/// Sets `SIGPIPE` back to its default disposition in this process: Rust's
/// runtime start-up ignores it (so writes to a closed pipe fail with
/// `EPIPE`); a command-line tool that wants a closed pipe to end it
/// quietly, like a C program, and its commands to start with the default,
/// calls this first thing in `main`.
///
/// ```
/// holdfast::process::default_sigpipe();
/// ```
pub fn default_sigpipe() {
    sys::default_sigpipe();
}

/// A command started by [`Command::spawn`].
///
/// Dropping it without waiting leaves the command running (and a zombie
/// once it exits, until this process exits).
///
/// ```
/// let child = holdfast::process::Command::new("sh").args(["-c", "exit 3"]).spawn()?;
/// println!("started pid {}", child.id());
/// assert_eq!(child.wait()?.code(), Some(3));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Child {
    inner: sys::Child,
    forwarding: bool,
}

/// How [`Child::run_until_lost`] watches the lock.
///
/// ```
/// use std::time::Duration;
/// let policy = holdfast::process::LossPolicy {
///     check_every: Duration::from_millis(20),
///     ..Default::default()
/// };
/// assert_eq!(policy.grace, Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossPolicy {
    /// How often the check runs while the command runs (default 100 ms).
    pub check_every: Duration,
    /// How long the command has between `SIGTERM` and `SIGKILL` once the
    /// lock is lost (default 10 s).
    pub grace: Duration,
}

impl Default for LossPolicy {
    fn default() -> Self {
        LossPolicy {
            check_every: Duration::from_millis(100),
            grace: Duration::from_secs(10),
        }
    }
}

/// How a command run by [`Child::run_until_lost`] ended.
///
/// ```
/// use holdfast::process::{Command, LossPolicy, Ran};
/// let child = Command::new("true").spawn()?;
/// let held = || Ok(()); // the lock is still ours
/// match child.run_until_lost(LossPolicy::default(), held, |_| {})? {
///     Ran::Exited(status) => assert!(status.success()),
///     Ran::Lost { error, .. } => panic!("not lost: {error}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum Ran {
    /// It exited (or was killed by someone else) with the lock held.
    Exited(ExitStatus),
    /// The lock was lost while it ran; it was sent `SIGTERM` (and
    /// `SIGKILL` after the grace period) and has exited with `status`.
    Lost {
        /// What the check said ([`Error::Lost`]).
        error: Error,
        /// How the command ended.
        status: ExitStatus,
    },
}

impl Child {
    /// The command's process id.
    ///
    /// ```
    /// let child = holdfast::process::Command::new("true").spawn()?;
    /// assert_ne!(child.id(), std::process::id());
    /// child.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Waits for the command to exit.
    ///
    /// ```
    /// let mut cmd = holdfast::process::Command::new("sh");
    /// let status = cmd.args(["-c", "exit 4"]).spawn()?.wait()?;
    /// assert_eq!(status.code(), Some(4));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If `waitpid` fails (the command was reaped elsewhere: `SIGCHLD`
    /// ignored, see [`default_sigchld`]).
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        let status = self.inner.wait();
        self.reaped();
        status
    }

    fn reaped(&self) {
        if self.forwarding {
            sys::forward::done();
        }
    }

    /// Waits for the command while `check` says the lock is held, calling
    /// it every [`LossPolicy::check_every`]. When it returns
    /// [`Error::Lost`], `on_lost` is called with it (to tell the user at
    /// once), the command gets `SIGTERM`, then `SIGKILL` if it is still
    /// running after [`LossPolicy::grace`], and the result is
    /// [`Ran::Lost`]. Other errors from `check` (it could not tell) are
    /// ignored, and it is asked again next time.
    ///
    /// ```
    /// use holdfast::process::{Command, LossPolicy, Ran};
    /// use std::time::Duration;
    /// let policy = LossPolicy { check_every: Duration::from_millis(10), grace: Duration::from_secs(5) };
    /// let child = Command::new("sleep").arg("30").spawn()?;
    /// let lost = || Err(holdfast::Error::Lost {
    ///     path: "job.lock".into(),
    ///     reason: "the test says so".into(),
    /// });
    /// match child.run_until_lost(policy, lost, |e| eprintln!("{e}"))? {
    ///     Ran::Lost { status, .. } => assert!(!status.success()),
    ///     Ran::Exited(_) => unreachable!(),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn run_until_lost(
        mut self,
        policy: LossPolicy,
        mut check: impl FnMut() -> Result<()>,
        on_lost: impl FnOnce(&Error),
    ) -> io::Result<Ran> {
        let result = loop {
            match self.inner.wait_timeout(policy.check_every) {
                Ok(Some(status)) => break Ok(Ran::Exited(status)),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let error = match check() {
                Err(e @ Error::Lost { .. }) => e,
                _ => continue,
            };
            on_lost(&error);
            self.inner.signal(sys::Sig::Term);
            let status = match self.inner.wait_timeout(policy.grace) {
                Ok(Some(status)) => Ok(status),
                Ok(None) => {
                    self.inner.signal(sys::Sig::Kill);
                    self.inner.wait()
                }
                Err(e) => Err(e),
            };
            break status.map(|status| Ran::Lost { error, status });
        };
        self.reaped();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn output_of(cmd: &mut std::process::Command) -> String {
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// flock(1) semantics: a signal this process inherited as ignored is
    /// still ignored in the command (only holdfast's own handlers are
    /// reset). The test re-runs itself under `sh -c "trap '' USR1; exec
    /// ..."` and the inner run starts `cat /proc/self/status`.
    #[test]
    fn inherited_ignored_signals_stay_ignored_and_handlers_do_not() {
        const INNER: &str = "HOLDFAST_TEST_SPAWN_INNER";
        if std::env::var_os(INNER).is_some() {
            let mut cmd = Command::new("cat");
            cmd.arg("/proc/self/status")
                .forward_signals(true)
                .env_remove(INNER);
            assert!(cmd.status().unwrap().success());
            return;
        }
        let me = std::env::current_exe().unwrap();
        let text = output_of(
            std::process::Command::new("sh")
                .arg("-c")
                .arg("trap '' USR1; exec \"$0\" --exact --nocapture --test-threads=1 \"$1\"")
                .arg(&me)
                .arg("process::tests::inherited_ignored_signals_stay_ignored_and_handlers_do_not")
                .env(INNER, "1"),
        );
        let mask = |field: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(field))
                .unwrap_or_else(|| panic!("no {field} in {text:?}"));
            u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
        };
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        assert_ne!(mask("SigIgn:") & bit(libc::SIGUSR1), 0, "{text}");
        // The forwarding handlers were not inherited as handlers.
        assert_eq!(mask("SigCgt:") & bit(libc::SIGTERM), 0, "{text}");
    }

    #[test]
    fn spawn_errors_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Command::new(dir.path().join("missing")).spawn();
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
        let not_exec = dir.path().join("data");
        std::fs::write(&not_exec, "x").unwrap();
        let e = Command::new(&not_exec).spawn().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            Command::new("holdfast-no-such-program-on-path")
                .spawn()
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    /// A file without `#!` runs under /bin/sh, as with execvp(3) and
    /// flock(1).
    #[test]
    fn a_script_without_interpreter_line_runs_under_sh() {
        // std's posix_spawn path (HOLDFAST_SPAWN=std) does not fall back.
        if std::env::var_os("HOLDFAST_SPAWN").is_some_and(|v| v == "std") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "exit 7\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(Command::new(&script).status().unwrap().code(), Some(7));
    }

    /// The last change of a variable wins; this process's environment is
    /// untouched.
    #[test]
    fn environment_changes_apply_to_the_command_only() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"test "$HF_A" = 2 && test -z "${HF_B+set}""#])
            .env("HF_A", "1")
            .env("HF_B", "x")
            .env("HF_A", "2")
            .env_remove("HF_B");
        assert!(cmd.status().unwrap().success());
        assert!(std::env::var_os("HF_A").is_none());
    }

    /// The inherited descriptor reaches the command as one more copy of
    /// the same file; without `inherit_fd` it does not (close-on-exec).
    #[test]
    fn the_inherited_descriptor_reaches_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let file = std::fs::File::create(&path).unwrap();
        let count = format!(
            "n=0; for f in /proc/$$/fd/*; do [ \"$(readlink $f)\" = '{}' ] && n=$((n+1)); done; exit $n",
            path.display()
        );
        let mut with = Command::new("sh");
        with.args(["-c", &count]);
        with.inherit_fd(std::os::fd::AsFd::as_fd(&file));
        assert_eq!(with.status().unwrap().code(), Some(1));
        let mut without = Command::new("sh");
        without.args(["-c", &count]);
        assert_eq!(without.status().unwrap().code(), Some(0));
    }

    /// A command that ignores SIGTERM gets SIGKILL after the grace.
    #[test]
    fn a_lost_lock_ends_a_stubborn_command_with_sigkill() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("trap '' TERM; : > \"$0\"; while :; do sleep 1; done")
            .arg(&ready);
        let child = cmd.spawn().unwrap();
        let mut told = false;
        let policy = LossPolicy {
            check_every: Duration::from_millis(5),
            grace: Duration::from_millis(300),
        };
        let ran = child
            .run_until_lost(
                policy,
                || {
                    if ready.exists() {
                        Err(Error::Lost {
                            path: "x".into(),
                            reason: "test".into(),
                        })
                    } else {
                        Ok(())
                    }
                },
                |_| told = true,
            )
            .unwrap();
        assert!(told);
        match ran {
            Ran::Lost { status, .. } => assert_eq!(status.signal(), Some(libc::SIGKILL)),
            Ran::Exited(s) => panic!("not stopped: {s:?}"),
        }
    }
}
