//! The async road's fallback where no waiter task can be created: bounded
//! polling, as the blocking road's `sys::poll_any`.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use crate::sys::{self, LockReq};

/// Whether starting a waiter task failed because this kernel or sandbox
/// cannot have one (as `sys::wait_any` decides: `EINVAL`/`ENOSYS` from a
/// kernel older than 5.2, `EPERM` from a seccomp filter), so that the wait
/// polls instead.
pub(super) fn no_waiter_task(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
thread_local! {
    /// Test hook: waits on this thread poll as if no waiter task could be
    /// created (tests run a current-thread runtime on their own thread).
    pub(super) static FORCE_POLL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Test hook: how many bounded-poll waits this thread started.
    pub(super) static POLL_WAITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether a test forces the polling fallback on this thread.
pub(super) fn poll_forced() -> bool {
    #[cfg(test)]
    {
        FORCE_POLL.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// The async fallback of `wait_any` where no waiter task can be created
/// (the blocking road's `sys::poll_any`): one non-blocking attempt per
/// request, then a pause of 1 ms doubling to 25 ms (never past the
/// deadline), until one is granted (`Some(index)`, held) or the deadline
/// passes (`None`). Each attempt is a non-blocking system call; the pause
/// sleeps on tokio's blocking pool, so an untimed wait needs no timer on
/// the runtime, and a cancelled future leaves nothing behind (the sleeping
/// thread holds no lock and only finishes its nap).
pub(super) async fn poll_any(
    file: &File,
    reqs: &[LockReq],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    #[cfg(test)]
    POLL_WAITS.with(|n| n.set(n.get() + 1));
    let mut pause = Duration::from_millis(1);
    loop {
        for (i, req) in reqs.iter().enumerate() {
            if sys::raw_try(file, req)? {
                return Ok(Some(i));
            }
        }
        let now = Instant::now();
        let nap = match deadline {
            Some(d) if now >= d => return Ok(None),
            Some(d) => pause.min(d - now),
            None => pause,
        };
        ::tokio::task::spawn_blocking(move || std::thread::sleep(nap))
            .await
            .map_err(io::Error::other)?;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}
