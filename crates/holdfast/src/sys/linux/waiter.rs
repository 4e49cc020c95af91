//! The killable waiter: a `CLONE_VM` child task blocked in one lock request
//! on our behalf, so a timed wait blocks in the kernel and a timeout is a
//! kill. [`wait_any`] and [`settle`] drive one or several of them.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::sys::LockReq;

use super::ofd::{range_unlock, raw_request};

/// What the waiter child needs; lives on the parent's heap until reaped.
struct WaiterRequest {
    fd: i32,
    /// An eventfd the child writes to once its request is granted, before
    /// it exits, so the parent wakes at once instead of after the child's
    /// exit (`-1`: none, the parent waits for the exit).
    signal: i32,
    req: LockReq,
    /// Our pid, to notice being orphaned before the death signal was set.
    parent: i32,
    /// Descriptors to close one by one where `close_range` is missing.
    max_fd: u32,
}

extern "C" fn waiter_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to a `WaiterRequest` the parent keeps alive until
    // it has reaped this child (or leaks it if it cannot).
    let req = unsafe { &*(arg as *const WaiterRequest) };
    // Everything below goes through `child::*`: raw system calls that
    // return the error instead of storing it in `errno`. The child runs on
    // the parent thread's TLS (there is no CLONE_SETTLS), so a libc
    // wrapper that failed here would overwrite the parent's `errno` at an
    // arbitrary moment.
    //
    // The child holds a copy of the parent's descriptor table, so it keeps
    // every open file description of the parent, and every lock on them,
    // alive. If the parent dies (SIGKILL) while we wait, we must die too,
    // at once: otherwise the dead parent's locks would outlive it until our
    // request is granted. The death signal fires when the thread that
    // cloned us ends; the parent check covers a parent that died before
    // the signal was armed.
    if child::set_death_signal_kill().is_err() || child::getppid() != req.parent {
        return libc::ESRCH;
    }
    // The copied descriptor table also holds every other file, pipe and
    // socket of the parent: a pipe the parent closes while we wait would
    // stay open (its reader never sees EOF), a socket would stay
    // connected. Keep only the descriptor we lock.
    close_all_but(req.fd, req.signal, req.max_fd);
    loop {
        match child::lock(req.fd, &req.req) {
            Ok(()) => break,
            Err(libc::EINTR) => continue,
            Err(e) => return e,
        }
    }
    // Granted: the lock belongs to the parent's open file description.
    // Drop our copy of the descriptor first (the description stays open in
    // the parent, so nothing is released), so that from the signal on this
    // task holds nothing of the parent's but the eventfd, then wake the
    // parent, then exit.
    child::close(req.fd as u32);
    if req.signal >= 0 {
        child::signal(req.signal);
    }
    0
}

/// Closes every descriptor except `keep` and `also` (`-1`: none), without
/// allocating.
fn close_all_but(keep: i32, also: i32, max_fd: u32) {
    let (a, b) = if also < 0 {
        (keep as u32, keep as u32)
    } else {
        (keep.min(also) as u32, keep.max(also) as u32)
    };
    let mut ok = true;
    if a > 0 {
        ok &= child::close_range(0, a - 1).is_ok();
    }
    if b > a + 1 {
        ok &= child::close_range(a + 1, b - 1).is_ok();
    }
    ok &= child::close_range(b + 1, u32::MAX).is_ok();
    if !ok {
        // Linux < 5.9: one by one up to the descriptor limit.
        for fd in (0..max_fd).filter(|&fd| fd != a && fd != b) {
            child::close(fd);
        }
    }
}

/// The system calls of the waiter child, made with the `syscall`
/// instruction itself: the result (or `-errno`) comes back in a register
/// and nothing is written to memory, so the parent thread's `errno`, which
/// the child shares, is never touched. Where there is no such code for the
/// architecture, `SUPPORTED` is false and no child is ever started (waits
/// fall back to polling).
mod child {
    use super::super::raw::syscall3 as syscall;
    use crate::sys::LockReq;

    pub(super) const SUPPORTED: bool = super::super::raw::SUPPORTED;

    pub(super) fn set_death_signal_kill() -> Result<(), i32> {
        // SAFETY: prctl(PR_SET_PDEATHSIG, SIGKILL) takes no pointers.
        unsafe {
            syscall(
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize, 0],
            )
        }
        .map(drop)
    }

    pub(super) fn getppid() -> i32 {
        // SAFETY: getppid takes no arguments and cannot fail.
        unsafe { syscall(libc::SYS_getppid, [0; 3]) }.map_or(0, |p| p as i32)
    }

    pub(super) fn close_range(first: u32, last: u32) -> Result<(), i32> {
        // SAFETY: close_range(2) on our own (copied) descriptor table; no
        // pointers involved.
        unsafe { syscall(libc::SYS_close_range, [first as usize, last as usize, 0]) }.map(drop)
    }

    pub(super) fn close(fd: u32) {
        // SAFETY: closing a descriptor of our own copied table.
        let _ = unsafe { syscall(libc::SYS_close, [fd as usize, 0, 0]) };
    }

    /// Adds one to the eventfd `fd` (the parent's wake-up).
    pub(super) fn signal(fd: i32) {
        let one: u64 = 1;
        // SAFETY: write(2) of 8 bytes from a `u64` on our stack that
        // outlives the call, to an eventfd of our copied table.
        let _ = unsafe {
            syscall(
                libc::SYS_write,
                [fd as usize, &one as *const u64 as usize, 8],
            )
        };
    }

    /// The blocking lock request on `fd`.
    pub(super) fn lock(fd: i32, req: &LockReq) -> Result<(), i32> {
        // SAFETY: an all-zero struct flock is valid plain data.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        let (n, args) = super::super::timed::lock_call(fd, req, &mut lock)?;
        // SAFETY: flock(2) or fcntl(F_OFD_SETLKW) on a descriptor the
        // parent keeps open until it has reaped us; an fcntl points to
        // `lock`, a `struct flock` on our stack that outlives the call.
        unsafe { syscall(n, args) }.map(drop)
    }
}

const WAITER_STACK: usize = 64 * 1024;

/// How a waiter child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// Its request was granted: our open file description holds the lock.
    Granted,
    /// Its request failed with this errno.
    Failed(i32),
    /// It was killed; the request may or may not have been granted just
    /// before (see [`settle`]).
    Killed,
}

/// A killable child task blocked in one lock request on our behalf.
///
/// The child is created with `CLONE_VM` (no page-table copy, so this costs
/// microseconds even in a large process) and a copy of our descriptor
/// table, so its lock call acts on *our* open file description: when it is
/// granted, we hold the lock. Its exit signal is none, so `waitpid(-1)` in
/// the application never reaps it; all signals are blocked in it, and it
/// dies with the thread that created it. Once granted it writes its
/// eventfd (before exiting), which the blocking waits here poll beside its
/// pidfd, so they return without waiting for the exit; its pidfd becomes
/// readable when it exits, which is what the async futures of the `tokio`
/// feature wait on (and how a failure or a kill is seen). Dropping a
/// `Waiter` kills and reaps the child before its stack and request are
/// freed, except a granted one that signalled: it is left to exit and
/// reaped later (see `EXITING`).
pub(crate) struct Waiter {
    task: std::mem::ManuallyDrop<Task>,
    status: Option<WaitStatus>,
    /// The child wrote its eventfd: granted, and exiting.
    signalled: bool,
}

/// What a waiter child runs on and is watched through: freed only once the
/// child is reaped (or known not to be ours).
struct Task {
    pidfd: OwnedFd,
    signal: Option<OwnedFd>,
    req: Box<WaiterRequest>,
    /// The child's stack: only kept alive (the child runs on it).
    _stack: Vec<u8>,
}

/// Children that signalled a grant and were left to finish exiting, so the
/// granted caller did not wait for their exit: reaped without blocking by
/// the next waiter started (or freed, in a forked copy of this process,
/// where they are not our children). Their stacks stay allocated until
/// then; they hold no descriptor of ours but their eventfd.
static EXITING: std::sync::Mutex<Vec<Task>> = std::sync::Mutex::new(Vec::new());

/// Whether [`EXITING`] may hold anything (read without its lock).
static EXITING_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reaps (without blocking) and frees what [`EXITING`] holds.
fn sweep_exiting() {
    let mut exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    exiting.retain(|t| match reap(&t.pidfd, false) {
        Ok(Some(_)) => false,
        Ok(None) => true,
        // ECHILD: reaped by someone else (a `waitid(P_ALL, __WALL)` in the
        // application), or not our child (a forked copy of this process,
        // where no task runs on this stack): either way, gone.
        Err(e) => e.raw_os_error() != Some(libc::ECHILD),
    });
    EXITING_PENDING.store(!exiting.is_empty(), std::sync::atomic::Ordering::Relaxed);
}

/// Reaps the waiter children left to exit after a grant, if any (an
/// atomic load otherwise). Called when a lock is released, by which time
/// they are long gone, so that no exited child lingers while the process
/// runs on (as a zombie, with its stack and two descriptors).
pub(crate) fn reap_exited_waiters() {
    if EXITING_PENDING.load(std::sync::atomic::Ordering::Relaxed) {
        sweep_exiting();
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("req", &self.task.req.req)
            .field("status", &self.status)
            .field("signalled", &self.signalled)
            .finish()
    }
}

impl Waiter {
    /// Starts a child blocked in `req` on `file`'s open file description.
    pub(crate) fn spawn(file: &File, req: LockReq) -> io::Result<Waiter> {
        if !child::SUPPORTED {
            // No errno-free system calls for this architecture: callers
            // fall back to polling.
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        reap_exited_waiters();
        let max_fd = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024)
            .min(1 << 20) as u32;
        // Without an eventfd (descriptors exhausted?) the wait still works:
        // the parent notices the grant when the child exits.
        let signal = if no_signal_for_tests() {
            None
        } else {
            rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .ok()
        };
        let req = Box::new(WaiterRequest {
            fd: file.as_raw_fd(),
            signal: signal.as_ref().map_or(-1, |s| s.as_raw_fd()),
            req,
            parent: rustix::process::getpid().as_raw_nonzero().get(),
            max_fd,
        });
        let mut stack = vec![0u8; WAITER_STACK];
        let pidfd = spawn_child(&req, &mut stack)?;
        Ok(Waiter {
            task: std::mem::ManuallyDrop::new(Task {
                pidfd,
                signal,
                req,
                _stack: stack,
            }),
            status: None,
            signalled: false,
        })
    }

    /// The eventfd that becomes readable when the request is granted (the
    /// child writes it before exiting), if there is one.
    pub(crate) fn signal(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.task.signal.as_ref().map(|s| s.as_fd())
    }

    /// The eventfd was seen readable: the request is granted (the child
    /// exits by itself; it is reaped later without blocking anyone).
    pub(crate) fn set_signalled(&mut self) {
        self.signalled = true;
    }

    /// The request this waiter makes.
    pub(crate) fn request(&self) -> LockReq {
        self.task.req.req
    }

    /// The child's pidfd: readable once it has exited.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.task.pidfd.as_fd()
    }

    /// How the child ended, if it has (never blocks).
    pub(crate) fn try_status(&mut self) -> io::Result<Option<WaitStatus>> {
        if self.status.is_none() {
            self.status = reap(&self.task.pidfd, false)?;
        }
        Ok(self.status)
    }

    /// Kills the child (if still running) and reaps it.
    pub(crate) fn kill(&mut self) -> io::Result<WaitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        if self.signalled {
            // Granted and exiting by itself: reap it when it is done, not
            // by a kill (which would only make the caller wait the same).
            let s = reap(&self.task.pidfd, true)?.unwrap_or(WaitStatus::Granted);
            self.status = Some(s);
            return Ok(WaitStatus::Granted);
        }
        let _ = rustix::process::pidfd_send_signal(&self.task.pidfd, rustix::process::Signal::KILL);
        let s = reap(&self.task.pidfd, true)?.unwrap_or(WaitStatus::Killed);
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.status.is_none() {
            if self.signalled {
                // Granted: the child only has its exit left. Leave it to
                // finish (the caller already runs: no system call here)
                // and reap it when the next waiter starts.
                // SAFETY: taken once, here; the drop ends without touching
                // `self.task` again.
                let task = unsafe { std::mem::ManuallyDrop::take(&mut self.task) };
                EXITING.lock().unwrap_or_else(|e| e.into_inner()).push(task);
                EXITING_PENDING.store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            } else if self.kill().is_err() {
                // The child may still run on this stack and read the
                // request: never free them (the task is leaked, not
                // dropped). Unreachable in practice: a pidfd of our own
                // child can always be signalled and reaped.
                return;
            }
        }
        // SAFETY: the child is reaped: nothing runs on the stack or reads
        // the request any more; dropped once, here.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.task) };
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: waiters started on this thread get no eventfd (as when
    /// descriptors run out), so the grant is seen at the child's exit.
    pub(crate) static NO_SIGNAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test asks for waiters without an eventfd on this thread.
fn no_signal_for_tests() -> bool {
    #[cfg(test)]
    {
        NO_SIGNAL.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        false
    }
}

fn spawn_child(req: &WaiterRequest, stack: &mut [u8]) -> io::Result<OwnedFd> {
    let mut pidfd: libc::c_int = -1;
    // Stack grows down; the top must be 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_PIDFD;
    // Block every signal while cloning so the child starts (and stays) with
    // all signals blocked: it must never run one of our handlers on its
    // small stack. SIGKILL cannot be blocked, which is what we rely on.
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to initialised sigsets owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `waiter_main` only reads `req` (alive until reaped) and makes
    // raw syscalls (the `child` module: the `syscall` instruction, which
    // never writes `errno`) on its private stack `stack` (alive until
    // reaped); it touches no allocator, lock or thread-local state, so
    // sharing the parent's memory and TLS is sound. CLONE_PIDFD stores
    // the pidfd through the parent_tid argument. The exit signal is 0, so
    // only an explicit __WCLONE wait reaps the child.
    let pid = unsafe {
        libc::clone(
            waiter_main,
            top as *mut libc::c_void,
            flags,
            req as *const WaiterRequest as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    if pid == -1 {
        return Err(err);
    }
    // SAFETY: the kernel returned a fresh pidfd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd) })
}

/// Reaps the child behind `pidfd`: `None` if it is still running (only
/// when not `block`ing).
fn reap(pidfd: &OwnedFd, block: bool) -> io::Result<Option<WaitStatus>> {
    let flags = libc::WEXITED | libc::__WCLONE | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: siginfo_t is plain data, filled in by waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a pidfd we own; `info` is a valid out pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a CLD_* record, or left it zeroed when
        // WNOHANG found nothing to reap (si_pid 0).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(if code == libc::CLD_EXITED {
            if status == 0 {
                WaitStatus::Granted
            } else {
                WaitStatus::Failed(status)
            }
        } else {
            WaitStatus::Killed
        }));
    }
}

/// Releases what a settled-away request may hold on `file`.
fn give_back(file: &File, req: &LockReq) -> io::Result<()> {
    match req {
        LockReq::Whole { backend, .. } => crate::sys::imp::unlock(file, *backend),
        LockReq::Range(r) => range_unlock(file, r.start, r.len),
    }
}

/// Ends a wait on several waiters: kills and reaps all of them, then makes
/// sure that exactly one request is held on `file` (returning its index)
/// or none. A child killed right after its request was granted is told
/// apart by a non-blocking retry on our own description, which succeeds at
/// once if we already hold the lock. The first granted request wins; any
/// other that was granted too is released. With several requests, each
/// must be a range this description did not hold before the wait.
pub(crate) fn settle(
    file: &File,
    waiters: &mut [Waiter],
    winner: Option<usize>,
) -> io::Result<Option<usize>> {
    let mut winner = winner;
    let mut failure = None;
    for (i, w) in waiters.iter_mut().enumerate() {
        if Some(i) == winner {
            continue;
        }
        let req = w.request();
        let granted = match w.kill() {
            Ok(WaitStatus::Granted) => true,
            Ok(WaitStatus::Killed) => match raw_request(file.as_raw_fd(), &req, false) {
                Ok(()) => true,
                Err(Errno::AGAIN) | Err(Errno::ACCESS) => false,
                Err(e) => {
                    failure.get_or_insert(io::Error::from(e));
                    false
                }
            },
            Ok(WaitStatus::Failed(_)) => false,
            Err(e) => {
                failure.get_or_insert(e);
                false
            }
        };
        if granted {
            if winner.is_none() {
                winner = Some(i);
            } else {
                give_back(file, &req)?;
            }
        }
    }
    match failure {
        Some(e) => {
            if let Some(i) = winner {
                let _ = give_back(file, &waiters[i].request());
            }
            Err(e)
        }
        None => Ok(winner),
    }
}

/// Waits until one of `reqs` on `file` is granted (`Some(index)`, that
/// request now held) or `deadline` passes (`None`, nothing held). Blocks in
/// the kernel: one plain blocking call for a single request without a
/// deadline, otherwise one killable waiter per request and a `poll` on
/// their pidfds with the remaining time.
pub(crate) fn wait_any(
    file: &File,
    reqs: &[LockReq],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    if reqs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to wait for",
        ));
    }
    if let (None, [req]) = (deadline, reqs) {
        loop {
            match raw_request(file.as_raw_fd(), req, true) {
                Ok(()) => return Ok(Some(0)),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    if crate::sys::imp::waiter_tasks_forbidden() {
        return crate::sys::imp::poll_any(file, reqs, deadline);
    }
    // One request with a deadline: block in the lock call itself, a timer
    // signal interrupting it at the deadline (one wake-up on a grant, no
    // task), where that is available.
    if let (Some(d), [req]) = (deadline, reqs)
        && let Some(got) = super::timed::wait_one(file, req, d)
    {
        return got.map(|held| held.then_some(0));
    }
    let mut waiters = Vec::with_capacity(reqs.len());
    for req in reqs {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match Waiter::spawn(file, *req) {
            Ok(w) => waiters.push(w),
            Err(e) => {
                let won = settle(file, &mut waiters, None);
                // Kernel older than 5.2 (no CLONE_PIDFD) or a seccomp
                // sandbox that forbids the waiter: bounded polling, for
                // every kind of request.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)
                ) {
                    tracing::debug!(error = %e, "no killable lock waiter; polling instead");
                    return match won? {
                        Some(i) => Ok(Some(i)),
                        None => crate::sys::imp::poll_any(file, reqs, deadline),
                    };
                }
                let _ = won.map(|won| won.map(|i| give_back(file, &reqs[i])));
                return Err(e);
            }
        }
    }
    loop {
        if waiters.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return settle(file, &mut waiters, None);
        }
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::event::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        // Per waiter its pidfd (readable once the child exited) and, first,
        // its eventfd (readable once its request was granted, before the
        // child exits: the grant is seen without waiting for the exit).
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 * waiters.len());
        let mut signal_at = Vec::with_capacity(waiters.len());
        for w in &waiters {
            signal_at.push(w.signal().map(|s| {
                fds.push(PollFd::from_borrowed_fd(s, PollFlags::IN));
                fds.len() - 1
            }));
            fds.push(PollFd::new(&w.task.pidfd, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                drop(fds);
                let _ = settle(file, &mut waiters, None)
                    .map(|won| won.map(|i| give_back(file, &reqs[i])));
                return Err(e.into());
            }
        }
        let signalled = signal_at
            .iter()
            .position(|at| at.is_some_and(|k| !fds[k].revents().is_empty()));
        drop(fds);
        if let Some(i) = signalled {
            waiters[i].set_signalled();
            return settle(file, &mut waiters, Some(i));
        }
        let mut respawn = Vec::new();
        for i in 0..waiters.len() {
            match waiters[i].try_status()? {
                Some(WaitStatus::Granted) => return settle(file, &mut waiters, Some(i)),
                Some(WaitStatus::Failed(errno)) => {
                    let _ = settle(file, &mut waiters, None)
                        .map(|won| won.map(|j| give_back(file, &reqs[j])));
                    return Err(io::Error::from_raw_os_error(errno));
                }
                // A stray kill (the death signal of a thread that is not
                // us cannot happen here, but be robust): decide with a
                // non-blocking attempt, else wait again.
                Some(WaitStatus::Killed) => {
                    match raw_request(file.as_raw_fd(), &waiters[i].request(), false) {
                        Ok(()) => return settle(file, &mut waiters, Some(i)),
                        Err(Errno::AGAIN) | Err(Errno::ACCESS) => respawn.push(i),
                        Err(e) => {
                            let _ = settle(file, &mut waiters, None)
                                .map(|won| won.map(|j| give_back(file, &reqs[j])));
                            return Err(e.into());
                        }
                    }
                }
                None => {}
            }
        }
        for i in respawn {
            let req = waiters[i].request();
            waiters[i] = Waiter::spawn(file, req)?;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sys::Range;

    /// Issue 9 item 8: the waiter child shares our memory and, without
    /// CLONE_SETTLS, our thread's TLS, so a libc wrapper that failed in it
    /// would write `errno` into *this* thread. Make every call the child
    /// can make fail (a write lock on a read-only description: EBADF) and
    /// check that this thread's errno is untouched.
    #[test]
    fn the_waiter_child_never_writes_our_errno() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ro");
        std::fs::write(&p, b"").unwrap();
        let ro = File::open(&p).unwrap();
        const SENTINEL: i32 = 4242;
        for req in [
            LockReq::Range(Range::byte(5, true)),
            LockReq::Whole {
                backend: crate::mode::Backend::OfdFcntl,
                mode: crate::mode::Mode::Exclusive,
            },
        ] {
            // SAFETY: errno is this thread's; writing it is what libc does.
            unsafe { *libc::__errno_location() = SENTINEL };
            let mut w = Waiter::spawn(&ro, req).unwrap();
            let status = loop {
                if let Some(s) = w.try_status().unwrap() {
                    break s;
                }
                std::thread::yield_now();
            };
            assert_eq!(status, WaitStatus::Failed(libc::EBADF), "{req:?}");
            // SAFETY: as above.
            let now = unsafe { *libc::__errno_location() };
            assert_eq!(
                now, SENTINEL,
                "the child wrote errno {now} into this thread ({req:?})"
            );
        }
    }

    /// Whether a lock request waits on `p` (a `->` line of /proc/locks);
    /// the timed waits' tests use it too.
    pub(in crate::sys::linux) fn blocked_on(p: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        let (major, minor) = crate::sys::imp::dev_major_minor(m.dev());
        let want = format!("{major:02x}:{minor:02x}:{}", m.ino());
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|f| f == want))
    }

    fn held_elsewhere(p: &std::path::Path) -> File {
        let other = File::options().read(true).write(true).open(p).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        other
    }

    /// A timed wait ends when its request is granted, whether the grant is
    /// seen on the eventfd (the child writes it before exiting) or, where
    /// there is no eventfd (descriptors exhausted: forced here), at the
    /// child's exit; and a released lock is really ours afterwards.
    #[test]
    fn a_timed_wait_sees_the_grant_with_and_without_the_eventfd() {
        use crate::mode::{Backend, Mode};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        std::fs::write(&p, b"").unwrap();
        let req = LockReq::Whole {
            backend: Backend::Flock,
            mode: Mode::Exclusive,
        };
        for no_signal in [false, true] {
            NO_SIGNAL.with(|n| n.set(no_signal));
            let mine = File::options().read(true).write(true).open(&p).unwrap();
            let other = held_elsewhere(&p);
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            let got = std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    NO_SIGNAL.with(|n| n.set(no_signal));
                    // The waiter task's way, not the timer signal's.
                    super::super::timed::FORCE_TASK.with(|f| f.set(true));
                    wait_any(&mine, &[req], Some(deadline)).unwrap()
                });
                // Let go only once the waiter child is blocked on it.
                let t = Instant::now();
                while !blocked_on(&p) {
                    assert!(t.elapsed().as_secs() < 30, "the waiter never blocked");
                    std::thread::yield_now();
                }
                drop(other);
                waiter.join().unwrap()
            });
            assert_eq!(got, Some(0), "no_signal={no_signal}");
            // Ours: another description cannot take it.
            let probe = File::options().read(true).write(true).open(&p).unwrap();
            assert!(
                rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                    .is_err(),
                "no_signal={no_signal}: granted but not held"
            );
        }
        NO_SIGNAL.with(|n| n.set(false));
    }

    /// The child writes its eventfd once granted, and a granted waiter
    /// dropped before its child exited is left to exit and then reaped
    /// (its stack freed) by a later sweep, never blocking the caller.
    #[test]
    fn a_granted_child_signals_and_is_reaped_later() {
        use crate::mode::{Backend, Mode};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("free");
        std::fs::write(&p, b"").unwrap();
        let f = File::options().read(true).write(true).open(&p).unwrap();
        let mut w = Waiter::spawn(
            &f,
            LockReq::Whole {
                backend: Backend::Flock,
                mode: Mode::Exclusive,
            },
        )
        .unwrap();
        let signal = w.signal().expect("an eventfd");
        let mut fds = [PollFd::from_borrowed_fd(signal, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&ts)).unwrap(), 1);
        w.set_signalled();
        drop(w);
        // Swept by the next waiter (or here): gone within a bounded time.
        let t = Instant::now();
        loop {
            sweep_exiting();
            if EXITING.lock().unwrap().is_empty() {
                break;
            }
            assert!(
                t.elapsed().as_secs() < 30,
                "an exited waiter was never reaped"
            );
            std::thread::yield_now();
        }
    }
}
