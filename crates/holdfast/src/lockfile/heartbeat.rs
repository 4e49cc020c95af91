//! The heartbeat of [`LockFileOptions::heartbeat`](super::LockFileOptions::heartbeat):
//! a thread that renews the lease while a guard lives, and the state a
//! guard shares with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::core::{self, Ctx, Held};
use super::dispatch;
use crate::error::{Error, IoOp, Result};

/// Heartbeat threads alive in this process (for tests).
static HEARTBEATS: AtomicUsize = AtomicUsize::new(0);

/// What a guard shares with its heartbeat thread.
#[derive(Debug)]
pub(super) struct GuardCore {
    pub(super) ctx: Arc<Ctx>,
    pub(super) state: Mutex<CoreState>,
}

#[derive(Debug)]
pub(super) struct CoreState {
    pub(super) held: Option<Held>,
    pub(super) lost: Option<String>,
}

impl GuardCore {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, CoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn take(&self) -> Option<Held> {
        self.state().held.take()
    }

    pub(super) fn nonce(&self) -> Option<String> {
        self.state().held.as_ref().map(|h| h.nonce.clone())
    }

    pub(super) fn is_ours(&self) -> bool {
        let st = self.state();
        st.lost.is_none()
            && st
                .held
                .as_ref()
                .is_some_and(|h| dispatch::is_ours(&self.ctx, h).unwrap_or(false))
    }

    /// Verifies the lock is still ours; records and reports a loss.
    pub(super) fn check(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(r) = &st.lost {
            return Err(core::lost(&self.ctx, r.clone()));
        }
        let Some(h) = st.held.as_ref() else {
            return Err(core::lost(&self.ctx, "already released"));
        };
        match dispatch::is_ours(&self.ctx, h) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let reason = "the lock object at the path is no longer this guard's \
                              (broken as stale or expired, or removed by hand)"
                    .to_owned();
                st.lost = Some(reason.clone());
                Err(core::lost(&self.ctx, reason))
            }
            Err(e) => Err(self.ctx.io(IoOp::Inspect, e)),
        }
    }

    pub(super) fn refresh(&self) -> Result<()> {
        self.check()?;
        let st = self.state();
        let Some(h) = st.held.as_ref() else {
            return Err(core::lost(&self.ctx, "already released"));
        };
        self.ctx
            .refresh_times(&h.file)
            .map_err(|e| self.ctx.io(IoOp::RefreshLease, e))
    }
}

/// The background thread of [`LockFileOptions::heartbeat`].
pub(super) struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub(super) fn start(core: Arc<GuardCore>, every: Duration) -> std::io::Result<Heartbeat> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name("holdfast-heartbeat".into())
            .spawn(move || {
                HEARTBEATS.fetch_add(1, Ordering::SeqCst);
                let (m, cv) = &*s;
                let mut next = Instant::now() + every;
                let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if *stopped {
                        break;
                    }
                    let now = Instant::now();
                    if now < next {
                        stopped = cv
                            .wait_timeout(stopped, next - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        continue;
                    }
                    drop(stopped);
                    if let Err(e) = core.refresh() {
                        tracing::warn!(path = %core.ctx.path.display(), error = %e,
                            "heartbeat stopped: could not refresh the lease");
                        if !matches!(e, Error::Lost { .. }) {
                            core.state().lost =
                                Some(format!("the heartbeat could not refresh it: {e}"));
                        }
                        HEARTBEATS.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    next = Instant::now() + every;
                    stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                }
                HEARTBEATS.fetch_sub(1, Ordering::SeqCst);
            })?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }

    pub(super) fn stop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
pub(crate) fn heartbeats_running() -> usize {
    HEARTBEATS.load(Ordering::SeqCst)
}
