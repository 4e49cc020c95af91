//! Starting, signalling and reaping child processes for
//! [`crate::process`]: the unsafe parts (signal handlers, the code that
//! runs in the child before `exec`) live here, behind safe functions.
//!
//! Two ways to start a command:
//!
//! - **Linux on x86_64 and aarch64**: `clone(CLONE_VM | CLONE_VFORK)`
//!   and `execve` in [`fast`]. The child shares our memory until it
//!   `exec`s (no page tables are copied, like `vfork`) and makes only raw
//!   system calls: it resets the signal handlers this module installed
//!   (not all 64 dispositions, as glibc's `posix_spawn` does), puts back
//!   the signal mask, optionally asks for `SIGKILL` when we die, marks
//!   the inherited lock descriptor as inheritable, and tries each
//!   `PATH` candidate prepared by the parent.
//! - **Elsewhere**: [`std::process::Command`] (a `pre_exec` hook for the
//!   parent-death signal), with the same visible result.
//!
//! Signals inherited as ignored stay ignored in the command, as with
//! util-linux flock(1)'s fork + exec: only what holdfast itself installed
//! is undone.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// What to start (built by [`crate::process::Command`]).
#[derive(Debug)]
pub(crate) struct Spec<'a> {
    /// The program: a path if it contains a `/`, else looked up in `PATH`.
    pub program: &'a OsStr,
    /// `argv[1..]`.
    pub args: &'a [OsString],
    /// Changes to our environment for the command: set (`Some`) or remove.
    pub env: &'a [(OsString, Option<OsString>)],
    /// A descriptor the command inherits (same open file description).
    pub inherit: Option<BorrowedFd<'a>>,
    /// `SIGKILL` the command when the spawning thread dies (Linux).
    pub kill_on_parent_death: bool,
}

/// A started command, not yet reaped.
#[derive(Debug)]
pub(crate) struct Child {
    inner: Inner,
    /// Readable once the child has exited (Linux ≥ 5.3), for timed waits.
    pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
enum Inner {
    Std(std::process::Child),
    #[cfg_attr(
        not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(dead_code)
    )]
    Raw(rustix::process::Pid),
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        match &self.inner {
            Inner::Std(c) => c.id(),
            Inner::Raw(pid) => pid.as_raw_nonzero().get() as u32,
        }
    }

    /// Sends `sig` (not yet reaped, so the pid is still this child's).
    pub(crate) fn signal(&self, sig: Sig) {
        use rustix::process::{Pid, Signal, kill_process};
        let sig = match sig {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
        };
        if let Some(fd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(fd, sig);
        } else if let Some(pid) = Pid::from_raw(self.id() as i32) {
            let _ = kill_process(pid, sig);
        }
    }

    /// Waits until the child exits.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.inner {
            Inner::Std(c) => c.wait(),
            Inner::Raw(pid) => loop {
                match rustix::process::waitpid(Some(*pid), rustix::process::WaitOptions::empty()) {
                    Ok(Some((_, st))) => return Ok(ExitStatus::from_raw(st.as_raw())),
                    Ok(None) => continue,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            },
        }
    }

    /// The exit status if the child has exited, without blocking.
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match &mut self.inner {
            Inner::Std(c) => c.try_wait(),
            Inner::Raw(pid) => {
                match rustix::process::waitpid(Some(*pid), rustix::process::WaitOptions::NOHANG) {
                    Ok(Some((_, st))) => Ok(Some(ExitStatus::from_raw(st.as_raw()))),
                    Ok(None) => Ok(None),
                    Err(rustix::io::Errno::INTR) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Waits up to `timeout` for the child to exit: `None` if it still
    /// runs. Blocks in `poll` on the pidfd where there is one, else polls
    /// with short sleeps.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match &self.pidfd {
                Some(fd) => {
                    use rustix::event::{PollFd, PollFlags, Timespec, poll};
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    let ts = Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    };
                    match poll(&mut fds, Some(&ts)) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => std::thread::sleep(left.min(Duration::from_millis(5))),
            }
        }
    }
}

/// The signals [`Child::signal`] sends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sig {
    Term,
    Kill,
}

/// Sets `SIGCHLD` back to its default disposition in this process, as
/// flock(1) does before it forks.
pub(crate) fn default_sigchld() {
    // SAFETY: installing SIG_DFL runs no code of ours and has no memory
    // preconditions.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Sets `SIGPIPE` back to its default disposition in this process.
pub(crate) fn default_sigpipe() {
    // SAFETY: as in `default_sigchld`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Starts `spec`.
pub(crate) fn spawn(spec: &Spec<'_>) -> io::Result<Child> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    if std::env::var_os("HOLDFAST_SPAWN").is_none_or(|v| v != "std")
        && let Some(child) = fast::spawn(spec)?
    {
        return Ok(child);
    }
    let mut cmd = std_command(spec);
    // A plain dup(2) has no close-on-exec flag: this copy is inherited,
    // and closed here once the command has it.
    let inherited = spec.inherit.map(rustix::io::dup).transpose()?;
    let child = cmd.spawn();
    drop(inherited);
    let child = child?;
    let pidfd = pidfd_of(child.id());
    Ok(Child {
        inner: Inner::Std(child),
        pidfd,
    })
}

/// Replaces this process with `spec`; returns only on failure.
pub(crate) fn exec(spec: &Spec<'_>) -> io::Error {
    let mut cmd = std_command(spec);
    match spec.inherit.map(rustix::io::dup).transpose() {
        Ok(_inherited) => cmd.exec(),
        Err(e) => e.into(),
    }
}

fn std_command(spec: &Spec<'_>) -> std::process::Command {
    let mut cmd = std::process::Command::new(spec.program);
    cmd.args(spec.args);
    for (k, v) in spec.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if spec.kill_on_parent_death {
        die_with_parent(&mut cmd);
    }
    cmd
}

#[cfg(target_os = "linux")]
fn pidfd_of(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(not(target_os = "linux"))]
fn pidfd_of(_pid: u32) -> Option<OwnedFd> {
    None
}

/// Has the kernel send SIGKILL to the command when the spawning thread
/// dies.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and
    // makes only raw system calls (rustix's prctl and getppid, which touch
    // no errno and no lock); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::process::{Signal, getppid, set_parent_process_death_signal};
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent died before the prctl took effect: the spawn
            // fails and the child exits without running the command.
            if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut std::process::Command) {}

/// Passing this process's termination signals on to the command.
pub(crate) mod forward {
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

    /// The command's pid, once it runs (0 before and after).
    static CHILD: AtomicI32 = AtomicI32::new(0);
    /// A signal that came before the command's pid was known.
    static PENDING: AtomicI32 = AtomicI32::new(0);
    /// The signals whose handler is [`handle`] (bit `n` for signal `n`):
    /// the only handlers a spawned child must reset before it unblocks
    /// signals.
    static INSTALLED: AtomicU64 = AtomicU64::new(0);

    pub(crate) const SIGNALS: [libc::c_int; 4] =
        [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

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
            kill(child, sig);
        } else {
            PENDING.store(sig, Ordering::SeqCst);
        }
    }

    /// Catches the signals (before the spawn, so none is lost in between).
    pub(crate) fn install() {
        let mut mask = 0u64;
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
            mask |= 1 << sig;
        }
        INSTALLED.fetch_or(mask, Ordering::SeqCst);
    }

    /// The signals whose handler this module installed (bit `n` for `n`).
    #[cfg_attr(
        not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(dead_code)
    )]
    pub(crate) fn installed() -> u64 {
        INSTALLED.load(Ordering::SeqCst)
    }

    /// Sends `sig` to `pid`: a raw system call (rustix), no errno, no
    /// allocation, so it may run in the signal handler.
    fn kill(pid: i32, sig: libc::c_int) {
        use rustix::process::{Pid, Signal, kill_process};
        if let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) {
            let _ = kill_process(pid, sig);
        }
    }

    /// The command has been reaped: its pid may be reused, send nothing
    /// more.
    pub(crate) fn done() {
        CHILD.store(0, Ordering::SeqCst);
    }

    /// From now on signals go to `pid`; one that came during the spawn is
    /// passed on now.
    pub(crate) fn to(pid: u32) {
        let pid = pid as i32;
        CHILD.store(pid, Ordering::SeqCst);
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 {
            kill(pid, pending);
        }
    }
}

/// `clone(CLONE_VM | CLONE_VFORK)` + `execve` (see the module docs).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod fast {
    use std::ffi::{CString, OsStr};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::{Child, Inner, Spec};

    /// Everything the child needs, prepared by the parent: the child
    /// shares our memory and must not allocate, lock or touch `errno`.
    struct Plan {
        /// The paths to try, in order (`PATH` already searched).
        candidates: Vec<CString>,
        /// `argv`, NULL-terminated.
        argv: Vec<*const libc::c_char>,
        /// For each candidate: `/bin/sh CANDIDATE ARGS...`, for a file
        /// without `#!` (`ENOEXEC`), as execvp(3) does.
        sh_argv: Vec<Vec<*const libc::c_char>>,
        /// `envp`, NULL-terminated.
        envp: Vec<*const libc::c_char>,
        /// Signals to set back to the default before unblocking (bit `n`
        /// for signal `n`): the handlers `forward` installed.
        reset: u64,
        /// The signal mask to restore (the kernel's 64 bits).
        mask: u64,
        /// A descriptor to clear close-on-exec on (-1: none).
        inherit: i32,
        /// Our pid when the command must get SIGKILL when we die (0: no).
        parent: i32,
        /// Set by the child when it fails: the errno.
        err: AtomicI32,
    }

    fn cstring(s: &OsStr) -> io::Result<CString> {
        CString::new(s.as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: contains a NUL byte", s.to_string_lossy()),
            )
        })
    }

    // glibc's (and std's) process environment: `NAME=value` strings,
    // NULL-terminated.
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }

    /// The environment for the command: ours with `spec.env` applied, as
    /// `envp` pointers (NULL-terminated). Our own entries are not copied:
    /// the pointers lead into `environ`, as execvp(3)'s do, and the new
    /// entries into `added` (which the caller keeps alive). Nothing may
    /// change the environment until the child has `exec`ed: we are
    /// suspended until then (vfork), and another thread changing it now
    /// would break `std::env::set_var`'s contract (no concurrent reads of
    /// the environment outside `std::env`, as this is: 70 k instructions
    /// less than copying through `std::env::vars_os` with ~40 variables).
    fn environment(
        spec: &Spec<'_>,
        added: &mut Vec<CString>,
    ) -> io::Result<Vec<*const libc::c_char>> {
        let changed = |entry: &[u8]| {
            spec.env.iter().any(|(key, _)| {
                let key = key.as_bytes();
                entry.len() > key.len() && entry.starts_with(key) && entry[key.len()] == b'='
            })
        };
        let mut out = Vec::with_capacity(64);
        // SAFETY: `environ` is NULL or a NULL-terminated array of
        // NUL-terminated strings, not changed while we read it (above).
        unsafe {
            let mut p = environ;
            while !p.is_null() && !(*p).is_null() {
                if !changed(std::ffi::CStr::from_ptr(*p).to_bytes()) {
                    out.push(*p);
                }
                p = p.add(1);
            }
        }
        for (i, (k, v)) in spec.env.iter().enumerate() {
            // The last change of a key wins.
            let later = spec.env[i + 1..].iter().any(|(key, _)| key == k);
            if let (Some(v), false) = (v, later) {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                added.push(cstring(OsStr::from_bytes(&kv))?);
            }
        }
        out.extend(added.iter().map(|e| e.as_ptr()));
        out.push(std::ptr::null());
        Ok(out)
    }

    /// Where execvp(3) would look for `program`.
    fn candidates(program: &OsStr, spec: &Spec<'_>) -> io::Result<Vec<CString>> {
        let bytes = program.as_bytes();
        if bytes.is_empty() {
            return Err(io::ErrorKind::NotFound.into());
        }
        if bytes.contains(&b'/') {
            return Ok(vec![cstring(program)?]);
        }
        let path = match spec.env.iter().rev().find(|(k, _)| k == "PATH") {
            Some((_, v)) => v.clone(),
            None => std::env::var_os("PATH"),
        };
        let path = path.unwrap_or_else(|| "/bin:/usr/bin".into());
        let mut out = Vec::new();
        for dir in path.as_bytes().split(|&b| b == b':') {
            let mut p = dir.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(bytes);
            out.push(cstring(OsStr::from_bytes(&p))?);
        }
        Ok(out)
    }

    /// Starts `spec`; `None` when this kernel refuses the clone (the
    /// caller falls back to std).
    pub(super) fn spawn(spec: &Spec<'_>) -> io::Result<Option<Child>> {
        let candidates = candidates(spec.program, spec)?;
        let arg0 = cstring(spec.program)?;
        let args = spec
            .args
            .iter()
            .map(|a| cstring(a))
            .collect::<io::Result<Vec<_>>>()?;
        let mut added = Vec::new();
        let envp = environment(spec, &mut added)?;
        let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
        argv.push(arg0.as_ptr());
        argv.extend(args.iter().map(|a| a.as_ptr()));
        argv.push(std::ptr::null());
        let sh_argv = candidates
            .iter()
            .map(|c| {
                let mut v = Vec::with_capacity(args.len() + 3);
                v.push(c"/bin/sh".as_ptr());
                v.push(c.as_ptr());
                v.extend(args.iter().map(|a| a.as_ptr()));
                v.push(std::ptr::null());
                v
            })
            .collect();
        let mut plan = Plan {
            candidates,
            argv,
            sh_argv,
            envp,
            reset: super::forward::installed(),
            mask: 0,
            inherit: spec.inherit.map_or(-1, |fd| fd.as_raw_fd()),
            parent: if spec.kill_on_parent_death {
                std::process::id() as i32
            } else {
                0
            },
            err: AtomicI32::new(0),
        };
        // The child runs on this buffer while we are suspended (vfork).
        // On the heap, not in this frame: a 32 KiB frame is probed page by
        // page (stack-clash protection), 8 fresh stack pages faulted in
        // for a child that uses the top few hundred bytes; untouched heap
        // pages stay unfaulted (6-7 page faults less per spawn).
        let mut stack = Box::<[u8]>::new_uninit_slice(32 * 1024);
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;

        // Block every signal around the clone: the child must not run one
        // of our handlers before it has reset them.
        // SAFETY: sigset_t is plain data, initialised by sigfillset.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to sigsets owned by this frame.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // The kernel's mask is the first 64 bits of glibc's sigset_t.
        // SAFETY: sigset_t is at least 8 bytes; read unaligned-safe.
        plan.mask = unsafe { std::ptr::read_unaligned(&old as *const _ as *const u64) };
        let mut pidfd: libc::c_int = -1;
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
        // SAFETY: `child_main` reads `plan` (alive: we are suspended
        // until the child execs or exits, CLONE_VFORK) and writes only its
        // atomic `err`; it makes raw system calls (no errno, no allocator,
        // no locks, no TLS) on `stack`, which outlives it for the same
        // reason. CLONE_PIDFD stores the pidfd through `pidfd`.
        let pid = unsafe {
            libc::clone(
                child_main,
                top as *mut libc::c_void,
                flags,
                &plan as *const Plan as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        };
        let clone_err = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        if pid == -1 {
            return match clone_err.raw_os_error() {
                // Old kernel (no CLONE_PIDFD) or a sandbox: std's way.
                Some(libc::EINVAL | libc::ENOSYS | libc::EPERM) => Ok(None),
                _ => Err(clone_err),
            };
        }
        // SAFETY: the kernel returned a fresh pidfd that we now own.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            return Err(io::Error::other("clone returned pid 0 in the parent"));
        };
        let mut child = Child {
            inner: Inner::Raw(pid),
            pidfd,
        };
        let err = plan.err.load(Ordering::SeqCst);
        if err != 0 {
            // The child has exited (127) without running the command.
            let _ = child.wait();
            return Err(io::Error::from_raw_os_error(err));
        }
        Ok(Some(child))
    }

    /// Tells the parent why, and ends the child.
    fn fail(plan: &Plan, e: i32) -> ! {
        plan.err.store(e, Ordering::SeqCst);
        raw::exit(127)
    }

    /// The child: reset, restore, exec. Raw system calls only.
    extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's `Plan`, alive while we run.
        let plan = unsafe { &*(arg as *const Plan) };
        let mut reset = plan.reset;
        while reset != 0 {
            let sig = reset.trailing_zeros();
            reset &= reset - 1;
            raw::default_disposition(sig as i32);
        }
        if let Err(e) = raw::set_mask(plan.mask) {
            fail(plan, e);
        }
        if plan.parent != 0 {
            if let Err(e) = raw::death_signal_kill() {
                fail(plan, e);
            }
            // The parent died before the prctl took effect.
            if raw::getppid() != plan.parent {
                fail(plan, libc::ESRCH);
            }
        }
        if plan.inherit >= 0
            && let Err(e) = raw::clear_cloexec(plan.inherit)
        {
            fail(plan, e);
        }
        // execvp(3)'s rules: skip what is not there, remember EACCES,
        // stop at any other error.
        let mut saw_eacces = false;
        let mut last = libc::ENOENT;
        for (i, path) in plan.candidates.iter().enumerate() {
            let e = raw::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            match e {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::ENOEXEC => {
                    let e = raw::execve(
                        c"/bin/sh".as_ptr(),
                        plan.sh_argv[i].as_ptr(),
                        plan.envp.as_ptr(),
                    );
                    fail(plan, e)
                }
                _ => fail(plan, e),
            }
            last = e;
        }
        fail(plan, if saw_eacces { libc::EACCES } else { last })
    }

    /// Raw system calls for the child: the result comes back in a
    /// register, `errno` (the parent's, shared) is never written.
    mod raw {
        use crate::sys::linux::raw::syscall;

        pub(super) fn default_disposition(sig: i32) {
            // The kernel's struct sigaction, all zero: SIG_DFL, no flags,
            // empty mask.
            let act = [0u64; 4];
            // SAFETY: a valid pointer to a zeroed kernel sigaction; the
            // kernel's sigset is 8 bytes.
            let _ = unsafe {
                syscall(
                    libc::SYS_rt_sigaction,
                    [sig as usize, act.as_ptr() as usize, 0, 8],
                )
            };
        }

        pub(super) fn set_mask(mask: u64) -> Result<(), i32> {
            // SAFETY: a valid pointer to 8 bytes of mask.
            unsafe {
                syscall(
                    libc::SYS_rt_sigprocmask,
                    [
                        libc::SIG_SETMASK as usize,
                        &mask as *const u64 as usize,
                        0,
                        8,
                    ],
                )
            }
            .map(drop)
        }

        pub(super) fn death_signal_kill() -> Result<(), i32> {
            // SAFETY: prctl(PR_SET_PDEATHSIG, SIGKILL) takes no pointers.
            unsafe {
                syscall(
                    libc::SYS_prctl,
                    [
                        libc::PR_SET_PDEATHSIG as usize,
                        libc::SIGKILL as usize,
                        0,
                        0,
                    ],
                )
            }
            .map(drop)
        }

        pub(super) fn getppid() -> i32 {
            // SAFETY: getppid takes no arguments.
            unsafe { syscall(libc::SYS_getppid, [0; 4]) }.map_or(0, |p| p as i32)
        }

        pub(super) fn clear_cloexec(fd: i32) -> Result<(), i32> {
            // SAFETY: fcntl(F_SETFD) on a descriptor number, no pointers.
            unsafe { syscall(libc::SYS_fcntl, [fd as usize, libc::F_SETFD as usize, 0, 0]) }
                .map(drop)
        }

        /// Returns only on failure, with the errno.
        pub(super) fn execve(
            path: *const libc::c_char,
            argv: *const *const libc::c_char,
            envp: *const *const libc::c_char,
        ) -> i32 {
            // SAFETY: NUL-terminated path, NULL-terminated arrays of
            // NUL-terminated strings, all alive in the parent's memory.
            match unsafe {
                syscall(
                    libc::SYS_execve,
                    [path as usize, argv as usize, envp as usize, 0],
                )
            } {
                Err(e) => e,
                Ok(_) => libc::EINVAL,
            }
        }

        pub(super) fn exit(code: i32) -> ! {
            loop {
                // SAFETY: exit_group ends this process (our child).
                let _ = unsafe { syscall(libc::SYS_exit_group, [code as usize, 0, 0, 0]) };
            }
        }
    }
}
