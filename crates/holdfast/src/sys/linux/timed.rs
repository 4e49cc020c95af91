//! A timed wait without a helper task: the calling thread blocks in the
//! lock call itself, and a POSIX timer aimed at that thread interrupts the
//! call at the deadline with a signal whose handler does nothing (installed
//! without `SA_RESTART`, so the call fails with `EINTR`). A grant then
//! wakes the caller once, as in an untimed wait; the waiter task
//! (`waiter.rs`) costs two wake-ups (the kernel wakes the task, the task
//! wakes the caller), about 20 µs each on an idle VM.
//!
//! # The race, and how it is closed
//!
//! A signal that arrives after the timer was armed but before the thread
//! has entered the lock call would run the handler and be gone, and the
//! call would then block past the deadline. So the call is made from a
//! small assembly stub, and the handler, when it finds the thread anywhere
//! in that stub before its `syscall` instruction has completed, moves the
//! thread to the stub's other exit, which returns `EINTR` without making
//! the call (musl's technique for thread-cancellation points). A signal
//! during the call interrupts it (`EINTR`); one after it leaves the result
//! alone. A signal that is not our timer's (someone sent the same number)
//! is only an early `EINTR`: the wait re-arms and goes on. The timer is
//! armed for the deadline itself (`TIMER_ABSTIME`: a pause before arming
//! does not postpone it) and fires again every 200 µs after it, for the
//! one case where its signal can be lost: an application handler with
//! `SA_RESTART` that interrupted the lock call and is running when the
//! deadline comes (ours then finds the thread in that handler, and the
//! kernel restarts the call when it returns).
//!
//! # The signal, and where the waiter task is used instead
//!
//! The signal is `SIGRTMAX - 7` (57 with glibc). The handler is installed
//! the first time a timed wait needs it, and only if the signal's
//! disposition is then the default one (nobody else uses it; otherwise the
//! process keeps the waiter task for good). Before each wait the
//! disposition is read back (one `rt_sigaction`): if the application has
//! since installed its own handler, or ignores the signal, that wait uses
//! the waiter task, so no timeout is ever lost to a handler that is not
//! ours. A thread that blocks the signal has it unblocked for the
//! duration of the wait (only our timer aims it at that thread) and
//! blocked again after. Each thread keeps one timer from wait to wait,
//! disarmed before a wait returns (so no signal of it comes after), and
//! deleted when the thread ends; a forked child never uses the timer ids
//! its copy of the thread kept (timer ids are per process: they may name
//! the child's own timers), which it tells by a page that `fork` hands it
//! zeroed (`MADV_WIPEONFORK`; without it each wait creates and deletes its
//! timer). Where there is no stub (other
//! architectures than x86-64) or with `HOLDFAST_WAITER=task` in the
//! environment, timed waits use the waiter task.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::mode::{Backend, Mode};
use crate::sys::LockReq;

/// Whether this architecture has the stub (and the handler's view of the
/// interrupted program counter).
pub(super) const SUPPORTED: bool = cfg!(target_arch = "x86_64");

/// The system call number and arguments of the *blocking* lock request
/// `req` on `fd`; `lock` receives the `struct flock` an `fcntl` request
/// points to (it must outlive the call). Allocates nothing, touches no
/// `errno`: the waiter child uses it too.
pub(super) fn lock_call(
    fd: i32,
    req: &LockReq,
    lock: &mut libc::flock,
) -> Result<(libc::c_long, [usize; 3]), i32> {
    let (l_type, start, len) = match *req {
        LockReq::Whole {
            backend: Backend::Flock,
            mode,
        } => {
            let op = match mode {
                Mode::Exclusive => libc::LOCK_EX,
                Mode::Shared => libc::LOCK_SH,
            };
            return Ok((libc::SYS_flock, [fd as usize, op as usize, 0]));
        }
        LockReq::Whole {
            backend: Backend::OfdFcntl,
            mode,
        } => {
            let t = match mode {
                Mode::Exclusive => libc::F_WRLCK,
                Mode::Shared => libc::F_RDLCK,
            };
            (t, 0, 0)
        }
        LockReq::Range(r) => {
            let t = if r.exclusive {
                libc::F_WRLCK
            } else {
                libc::F_RDLCK
            };
            let (Ok(s), Ok(l)) = (i64::try_from(r.start), i64::try_from(r.len)) else {
                return Err(libc::EINVAL);
            };
            (t, s, l)
        }
    };
    *lock = libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        l_pid: 0,
    };
    Ok((
        libc::SYS_fcntl,
        [
            fd as usize,
            libc::F_OFD_SETLKW as usize,
            lock as *mut libc::flock as usize,
        ],
    ))
}

// The stub: `holdfast_sys_cp_arm_call_v1(timer, spec, call)` arms the timer
// (`timer_settime(timer, TIMER_ABSTIME, spec, NULL)`) and then, if that
// succeeded, makes the system call `call[0]` with the arguments `call[1..4]`,
// returning its raw result (`-errno` on failure; the timer's error if
// arming failed). Arming inside the stub is what closes the race: from
// the moment the timer can fire until the lock call is entered, the thread
// is inside the stub. The handler sends a thread interrupted anywhere from
// the stub's start up to (not including) `..._done_v1`, the address right
// after the lock call's `syscall` instruction, to `..._cancel_v1`, which
// returns `-EINTR`. A thread interrupted *in* the lock call resumes at
// `..._done_v1` with `-EINTR` (no `SA_RESTART`); one interrupted after it
// keeps the call's result. The stub pushes nothing, so either exit returns
// from the same stack. The symbols are hidden (each shared object that
// links holdfast has its own) and weak (two copies of holdfast in one
// binary share one stub instead of failing to link); `_v1` names this
// exact contract.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.holdfast_sys_cp_v1,\"ax\",@progbits",
    ".p2align 4",
    ".weak holdfast_sys_cp_arm_call_v1",
    ".hidden holdfast_sys_cp_arm_call_v1",
    ".type holdfast_sys_cp_arm_call_v1,@function",
    "holdfast_sys_cp_arm_call_v1:",
    // rdi = timer, rsi = spec, rdx = call; the kernel keeps r8 (and every
    // register but rax, rcx, r11) across a system call.
    "mov r8, rdx",
    "mov rdx, rsi",
    "mov esi, 1", // TIMER_ABSTIME
    "xor r10d, r10d",
    "mov eax, {settime}",
    "syscall",
    "test rax, rax",
    "jnz holdfast_sys_cp_done_v1",
    "mov rax, [r8]",
    "mov rdi, [r8 + 8]",
    "mov rsi, [r8 + 16]",
    "mov rdx, [r8 + 24]",
    "syscall",
    ".weak holdfast_sys_cp_done_v1",
    ".hidden holdfast_sys_cp_done_v1",
    "holdfast_sys_cp_done_v1:",
    "ret",
    ".weak holdfast_sys_cp_cancel_v1",
    ".hidden holdfast_sys_cp_cancel_v1",
    "holdfast_sys_cp_cancel_v1:",
    "mov rax, -4",
    "ret",
    ".size holdfast_sys_cp_arm_call_v1, .-holdfast_sys_cp_arm_call_v1",
    ".popsection",
    settime = const libc::SYS_timer_settime,
);

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    fn holdfast_sys_cp_arm_call_v1(
        timer: libc::c_int,
        spec: *const libc::itimerspec,
        call: *const [usize; 4],
    ) -> isize;
    // Labels inside the stub, declared as functions only to take their
    // addresses; never called.
    fn holdfast_sys_cp_done_v1();
    fn holdfast_sys_cp_cancel_v1();
}

/// Arms `timer` with `spec`, then makes the lock call `call` (number,
/// three arguments) through the stub: `Err(errno)`, `EINTR` also when the
/// signal came before the call was entered.
///
/// # Safety
///
/// As the system call `call` with these arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn arm_and_call(
    timer: libc::c_int,
    spec: &libc::itimerspec,
    call: &[usize; 4],
) -> Result<usize, i32> {
    // SAFETY: the stub arms our own timer with a valid spec and makes
    // exactly the call `call` (or none, returning -EINTR); both pointers
    // outlive it; the caller vouches for the call.
    let r = unsafe { holdfast_sys_cp_arm_call_v1(timer, spec, call) };
    if (-4095..0).contains(&r) {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn arm_and_call(
    _timer: libc::c_int,
    _spec: &libc::itimerspec,
    _call: &[usize; 4],
) -> Result<usize, i32> {
    Err(libc::ENOSYS)
}

/// The handler: moves a thread interrupted before (or at) the `syscall`
/// instruction of the stub to its `EINTR` exit; does nothing otherwise.
/// Async-signal-safe: it reads and writes only the interrupted context.
extern "C" fn on_timer(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    #[cfg(target_arch = "x86_64")]
    {
        if ctx.is_null() {
            return;
        }
        // SAFETY: the kernel passes an SA_SIGINFO handler the interrupted
        // thread's `ucontext_t`, which the handler may change.
        let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
        let pc = &mut uc.uc_mcontext.gregs[libc::REG_RIP as usize];
        let start = holdfast_sys_cp_arm_call_v1 as *const () as usize;
        let done = holdfast_sys_cp_done_v1 as *const () as usize;
        if (start..done).contains(&(*pc as usize)) {
            *pc = holdfast_sys_cp_cancel_v1 as *const () as usize as libc::greg_t;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ctx;
}

/// The signal our timers send.
fn timer_signal() -> libc::c_int {
    libc::SIGRTMAX() - 7
}

/// Whether the handler was installed: 0 not yet asked, 1 installed,
/// 2 refused (the signal was in use, or installing failed).
static INSTALL: AtomicU8 = AtomicU8::new(0);
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The signal, if our handler is the one in force now (installing it the
/// first time, when nobody else uses the signal).
fn our_signal() -> Option<libc::c_int> {
    let sig = timer_signal();
    if sig <= libc::SIGRTMIN() {
        return None;
    }
    if INSTALL.load(Ordering::Acquire) == 0 {
        let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        if INSTALL.load(Ordering::Acquire) == 0 {
            INSTALL.store(if install(sig) { 1 } else { 2 }, Ordering::Release);
        }
    }
    if INSTALL.load(Ordering::Acquire) != 1 {
        return None;
    }
    // SAFETY: an all-zero sigaction is a valid value to be filled in.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the disposition into a valid struct.
    let ok = unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } == 0;
    (ok && cur.sa_sigaction == on_timer as *const () as usize
        && cur.sa_flags & libc::SA_RESTART == 0)
        .then_some(sig)
}

/// Installs the handler if the signal's disposition is the default one.
fn install(sig: libc::c_int) -> bool {
    // SAFETY: an all-zero sigaction is a valid value to be filled in.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the disposition into a valid struct.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } != 0
        || cur.sa_sigaction != libc::SIG_DFL
    {
        tracing::debug!(
            sig,
            "the timed-wait signal is in use; timed waits use the waiter task"
        );
        return false;
    }
    // SAFETY: as above.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_timer as *const () as usize;
    // No SA_RESTART: the interrupted lock call must fail with EINTR.
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: a valid sigaction whose handler is async-signal-safe (it
    // only edits the interrupted context).
    unsafe {
        libc::sigemptyset(&mut ours.sa_mask);
        libc::sigaction(sig, &ours, std::ptr::null_mut()) == 0
    }
}

/// Whether `HOLDFAST_WAITER=task` (or a test of this thread) asks for the
/// waiter task. Read once.
fn task_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[cfg(test)]
    if FORCE_TASK.with(Cell::get) {
        return true;
    }
    *FORCED.get_or_init(|| std::env::var_os("HOLDFAST_WAITER").is_some_and(|v| v == "task"))
}

#[cfg(test)]
thread_local! {
    /// Test hook: timed waits of this thread use the waiter task.
    pub(crate) static FORCE_TASK: Cell<bool> = const { Cell::new(false) };
}

thread_local! {
    /// This thread's id, asked once (a forked child's copy is stale: then
    /// `timer_create` refuses it and it is asked again).
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// The kernel's `struct sigevent` (64 bytes) for `SIGEV_THREAD_ID`.
#[repr(C)]
struct KernelSigevent {
    value: usize,
    signo: libc::c_int,
    notify: libc::c_int,
    tid: libc::c_int,
    _pad: [libc::c_int; 11],
}

const SIGEV_THREAD_ID: libc::c_int = 4;

/// A `CLOCK_MONOTONIC` timer that sends our signal to this thread, for one
/// wait. Kept for the thread's next wait (disarmed, in [`KEPT`]) where the
/// process can tell a forked copy of itself ([`epoch`]: `kept` is the epoch
/// it was made in), deleted otherwise.
struct Timer {
    id: libc::c_int,
    kept: Option<u64>,
}

/// This thread's timer between waits, with the [`epoch`] it was made in;
/// deleted when the thread ends.
struct KeptTimer(Cell<Option<(u64, libc::c_int)>>);

impl Drop for KeptTimer {
    fn drop(&mut self) {
        if let Some((made, id)) = self.0.take()
            && epoch() == Some(made)
        {
            // SAFETY: deletes this thread's own timer, once.
            unsafe { libc::syscall(libc::SYS_timer_delete, id) };
        }
    }
}

thread_local! {
    static KEPT: KeptTimer = const { KeptTimer(Cell::new(None)) };
}

/// The memory of the process's epoch: one page that `fork` hands to the
/// child zeroed (`MADV_WIPEONFORK`, Linux ≥ 4.14), whatever way the child
/// was forked (`fork`, `_Fork`, a raw `clone`), where thread-local copies
/// of timer ids would otherwise be taken for the child's own (timer ids
/// are per process and start again at 0: a stale id may name a timer the
/// child's code made). `None` where that cannot be had: no timer is kept.
static EPOCH_PAGE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Epochs handed out: copied by `fork`, so a child's next one is new.
static NEXT_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This process's epoch: the same value for the life of the process, and
/// another one in a forked child (`None`: timers are not kept).
fn epoch() -> Option<u64> {
    use std::sync::atomic::AtomicU64;
    let page = (*EPOCH_PAGE.get_or_init(|| {
        // SAFETY: a fresh private anonymous page, ours alone.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: advice on the page just mapped.
        if unsafe { libc::madvise(p, 4096, libc::MADV_WIPEONFORK) } != 0 {
            // SAFETY: unmaps that page, which nothing else uses.
            unsafe { libc::munmap(p, 4096) };
            return None;
        }
        Some(p as usize)
    }))?;
    // SAFETY: the page is mapped for the life of the process (never
    // unmapped once advised), page-aligned, and only ever used as this one
    // atomic.
    let cell = unsafe { &*(page as *const AtomicU64) };
    let now = cell.load(Ordering::Acquire);
    if now != 0 {
        return Some(now);
    }
    // First use, or a forked child (the page came zeroed).
    let new = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed) + 1;
    Some(
        match cell.compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new,
            Err(set) => set,
        },
    )
}

/// `timer_create(CLOCK_MONOTONIC, ev)`: the kernel's timer id.
fn timer_create(ev: &KernelSigevent) -> io::Result<libc::c_int> {
    let mut id: libc::c_int = -1;
    // SAFETY: timer_create(2) with a valid sigevent and a valid out pointer
    // for the kernel's timer id, both borrowed for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC,
            ev as *const KernelSigevent,
            &mut id as *mut libc::c_int,
        )
    };
    if r == 0 {
        Ok(id)
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Timer {
    /// This thread's kept timer, or a new one.
    fn get(sig: libc::c_int) -> io::Result<Timer> {
        let epoch = epoch();
        if let Some(e) = epoch
            && let Ok(Some((made, id))) = KEPT.try_with(|k| k.0.take())
            && made == e
        {
            // (A timer kept in another epoch belongs to the process this
            // one was forked from: forgotten, never touched.)
            return Ok(Timer { id, kept: epoch });
        }
        let id = Timer::create(sig)?;
        Ok(Timer { id, kept: epoch })
    }

    fn create(sig: libc::c_int) -> io::Result<libc::c_int> {
        let mut fresh = false;
        loop {
            let mut tid = TID.with(Cell::get);
            if tid == 0 || fresh {
                tid = rustix::thread::gettid().as_raw_nonzero().get();
                TID.with(|t| t.set(tid));
                fresh = true;
            }
            let ev = KernelSigevent {
                value: 0,
                signo: sig,
                notify: SIGEV_THREAD_ID,
                tid,
                _pad: [0; 11],
            };
            let e = match timer_create(&ev) {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            // EINVAL with a cached id: a forked child's stale copy.
            if e.raw_os_error() != Some(libc::EINVAL) || fresh {
                return Err(e);
            }
            fresh = true;
        }
    }
}

/// After the deadline the timer fires again every `REFIRE` until the wait
/// has deleted it. The first signal ends the wait unless it is lost: it
/// can only be lost when it lands on a handler of the application's that
/// interrupted the lock call and asked for `SA_RESTART` (our handler then
/// finds the thread in that handler, not in the stub, and the kernel
/// restarts the lock call when that handler returns). The next one ends
/// the restarted call, so such a wait overstays by at most this much after
/// that handler returns.
const REFIRE: Duration = Duration::from_micros(200);

/// The timer value: first at `at` on `CLOCK_MONOTONIC` (absolute: a delay
/// before arming does not postpone it), then every [`REFIRE`].
fn deadline_spec(at: libc::timespec) -> libc::itimerspec {
    libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: REFIRE.as_nanos() as libc::c_long,
        },
        it_value: at,
    }
}

/// `deadline` as a `CLOCK_MONOTONIC` time (the clock of `Instant` on
/// Linux), from one reading of each: if a pause between the two readings
/// makes it early, the early `EINTR` only makes the wait arm again.
fn monotonic(deadline: Instant) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let left = deadline.saturating_duration_since(Instant::now());
    let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
    let secs = (now.tv_sec as u64)
        .saturating_add(left.as_secs())
        .saturating_add(nanos / 1_000_000_000)
        .min(i64::MAX as u64);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        // Never zero with tv_sec 0 (which would disarm): CLOCK_MONOTONIC
        // is far from its epoch.
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(e) = self.kept {
            let off: libc::itimerspec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
            };
            // SAFETY: disarms our own timer with a valid (zero) spec.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_timer_settime,
                    self.id,
                    0,
                    &off as *const libc::itimerspec,
                    std::ptr::null_mut::<libc::itimerspec>(),
                )
            };
            if r != 0 {
                // Not ours any more (someone deleted it): forget the id,
                // which may name someone else's timer by now.
                return;
            }
            if KEPT.try_with(|k| k.0.set(Some((e, self.id)))).is_ok() {
                return;
            }
        }
        // SAFETY: deletes (and so disarms) our own timer, once.
        unsafe { libc::syscall(libc::SYS_timer_delete, self.id) };
    }
}

/// The signal unblocked in this thread for a wait; blocked again on drop
/// if it was blocked before.
struct Unblocked {
    set: libc::sigset_t,
    was_blocked: bool,
}

impl Unblocked {
    fn new(sig: libc::c_int) -> io::Result<Unblocked> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to sigsets of this frame.
        let r = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old)
        };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: `old` was filled in by pthread_sigmask.
        let was_blocked = unsafe { libc::sigismember(&old, sig) } == 1;
        Ok(Unblocked { set, was_blocked })
    }
}

impl Drop for Unblocked {
    fn drop(&mut self) {
        if self.was_blocked {
            // SAFETY: blocks again the one signal we unblocked.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.set, std::ptr::null_mut()) };
        }
    }
}

/// Waits in the lock call itself until `req` on `file` is granted
/// (`Ok(true)`, held) or `deadline` passes (`Ok(false)`, nothing held).
/// `None`: this way is not available here (architecture, environment, the
/// signal taken by the application, no timer): use the waiter task.
pub(super) fn wait_one(file: &File, req: &LockReq, deadline: Instant) -> Option<io::Result<bool>> {
    if !SUPPORTED || task_forced() {
        return None;
    }
    let sig = our_signal()?;
    // SAFETY: an all-zero struct flock is valid plain data.
    let mut flock: libc::flock = unsafe { std::mem::zeroed() };
    let (n, args) = match lock_call(file.as_raw_fd(), req, &mut flock) {
        Ok(call) => call,
        Err(e) => return Some(Err(io::Error::from_raw_os_error(e))),
    };
    if Instant::now() >= deadline {
        return Some(Ok(false));
    }
    let _unblocked = match Unblocked::new(sig) {
        Ok(u) => u,
        Err(_) => return None,
    };
    // Dropped (disarmed) before the mask is restored.
    let timer = match Timer::get(sig) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "no timer for a timed wait; using the waiter task");
            return None;
        }
    };
    let call = [n as usize, args[0], args[1], args[2]];
    loop {
        // SAFETY: the lock call `lock_call` built, on a descriptor `file`
        // keeps open; `flock` outlives it.
        match unsafe { arm_and_call(timer.id, &deadline_spec(monotonic(deadline)), &call) } {
            Ok(_) => return Some(Ok(true)),
            // Interrupted, so not granted: nothing held.
            Err(libc::EINTR) if Instant::now() >= deadline => return Some(Ok(false)),
            // A signal that was not the deadline's: arm again, wait on.
            Err(libc::EINTR) => {}
            // The timer refused to be armed (someone deleted this thread's
            // timer?), or the lock call its arguments: nothing is held;
            // the waiter task answers (and a new timer is made next time:
            // the drop cannot disarm this one, so it is not kept).
            Err(libc::EINVAL) => return None,
            Err(e) => return Some(Err(io::Error::from_raw_os_error(e))),
        }
    }
}

#[cfg(test)]
mod tests;
