//! One acquisition of a [`FifoLock`](super::FifoLock) as a step machine
//! (take a ticket, wait for the predecessor, take the lock file's kernel
//! lock), and what it holds once granted.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::shared::{FifoShared, Idle};
use crate::acquire::{self, Waiting};
use crate::error::{Error, IoOp, Result};
use crate::holder;
use crate::mode::{Mode, Wait};
use crate::queue::{self, Enqueue, Kind, LinkCheck, Machine, Served, Step, Target};
use crate::sys::{self, FileId, LockReq};

/// One acquisition of a [`FifoLock`], as a step machine.
pub(crate) struct FifoAcquire {
    shared: Arc<FifoShared>,
    main: Arc<File>,
    pub(super) main_id: FileId,
    q: Enqueue,
    /// The holder record template of these descriptions (with its mapping
    /// of the lock file's head).
    record: Option<holder::RecordTemplate>,
    /// The lock file's path check.
    main_linked: LinkCheck,
    mode: Mode,
    phase: Phase,
    main_held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Taking a ticket, then waiting for our turn (`queue::Enqueue`).
    Queue,
    Main,
}

impl FifoAcquire {
    pub(crate) fn new(shared: &Arc<FifoShared>, mode: Mode) -> Result<FifoAcquire> {
        let Idle {
            main,
            main_id,
            queue: q,
            record,
            main_linked,
        } = match shared.take_idle() {
            Some(idle) => idle,
            None => {
                let (main, main_id) = shared.open_main()?;
                let q = queue::open_queue(&shared.queue_path, shared.opts.permissions)?;
                Idle::new(main, main_id, q)
            }
        };
        Ok(FifoAcquire {
            shared: shared.clone(),
            main,
            main_id,
            q: Enqueue::new(
                q,
                shared.queue_path.clone(),
                shared.opts.permissions,
                Kind::Fifo,
                mode == Mode::Exclusive,
                true,
            ),
            record,
            main_linked,
            mode,
            phase: Phase::Queue,
            main_held: false,
        })
    }

    /// Turns a finished acquisition into what a guard holds.
    pub(crate) fn finish(mut self) -> FifoHeld {
        let writable = self
            .shared
            .writable
            .load(std::sync::atomic::Ordering::Relaxed);
        let token = if self.mode == Mode::Exclusive && self.shared.opts.record && writable {
            // Through the mapping of the lock file's head from this
            // description's second acquisition on, as `Lock` does.
            match holder::RecordTemplate::write_shared(&mut self.record, &self.main) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.shared.path.display(), error = %e,
                        "could not write the holder record");
                    None
                }
            }
        } else {
            None
        };
        let FifoAcquire {
            shared,
            main,
            main_id,
            q,
            record,
            main_linked,
            mode,
            ..
        } = self;
        let Enqueue {
            queue,
            ticket,
            stale,
            ..
        } = q;
        FifoHeld {
            shared,
            files: Some(Idle {
                main,
                main_id,
                queue,
                record,
                main_linked,
            }),
            main_id,
            ticket: ticket.expect("a finished acquisition holds a ticket"),
            stale,
            mode,
            token,
            pid: sys::current_pid(),
        }
    }
}

impl Machine for FifoAcquire {
    fn advance(&mut self) -> Result<Step> {
        loop {
            match self.phase {
                Phase::Queue => {
                    // Nobody in line (seen under the counter lock): try the
                    // kernel lock right there; got, our ticket is taken in
                    // the holding state.
                    let (main, backend, mode) = (&self.main, self.shared.opts.backend, self.mode);
                    let main_held = &mut self.main_held;
                    let path = &self.shared.path;
                    let mut first = |_: &File, _: u64| -> Result<Served> {
                        *main_held = sys::try_lock(main, backend, mode)
                            .map_err(|e| Error::io(IoOp::Lock, path, e))?;
                        Ok(if *main_held {
                            Served::Holding
                        } else {
                            Served::No
                        })
                    };
                    let step = self.q.advance_or(Some(&mut first));
                    if step.is_err() && self.main_held {
                        let _ = sys::unlock(&self.main, backend);
                        self.main_held = false;
                        self.q.mark_waiting();
                    }
                    if let Some(step) = step? {
                        return Ok(step);
                    }
                    self.phase = Phase::Main;
                }
                Phase::Main => {
                    let backend = self.shared.opts.backend;
                    let lock_err = |e| Error::io(IoOp::Lock, &self.shared.path, e);
                    if !self.main_held {
                        if sys::try_lock(&self.main, backend, self.mode).map_err(lock_err)? {
                            self.main_held = true;
                        } else {
                            return Ok(Step::Wait {
                                target: Target::Main,
                                reqs: vec![LockReq::Whole {
                                    backend,
                                    mode: self.mode,
                                }],
                                short: false,
                            });
                        }
                    }
                    if self.shared.opts.verify_path
                        && self.main_linked.is_unlinked(&self.main).map_err(lock_err)?
                    {
                        tracing::debug!(path = %self.shared.path.display(), "lock file was unlinked; reopening");
                        let _ = sys::unlock(&self.main, backend);
                        self.main_held = false;
                        let (f, id) = self.shared.open_main()?;
                        self.main = Arc::new(f);
                        self.main_id = id;
                        self.main_linked = LinkCheck::default();
                        continue;
                    }
                    // Our successor, waiting for us to hold, may now wait
                    // on the kernel lock (hand-off protocol).
                    self.q.mark_holding()?;
                    return Ok(Step::Ready);
                }
            }
        }
    }

    fn granted(&mut self, _index: usize) -> Result<()> {
        match self.phase {
            Phase::Queue => self.q.granted(),
            Phase::Main => {
                self.main_held = true;
                Ok(())
            }
        }
    }

    fn file(&self, target: Target) -> &File {
        match target {
            Target::Queue => &self.q.queue.file,
            Target::Main => &self.main,
        }
    }

    fn path(&self, target: Target) -> &Path {
        match target {
            Target::Queue => &self.shared.queue_path,
            Target::Main => &self.shared.path,
        }
    }

    fn contention(&mut self, wait: Wait, started: Instant) -> Error {
        let _ = self.q.leave();
        if self.main_held {
            let _ = sys::unlock(&self.main, self.shared.opts.backend);
            self.main_held = false;
        }
        acquire::contention(&self.shared.path, self.mode, wait, started, || {
            holder::describe(Some(&self.main), self.main_id)
        })
    }
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting {
        let shared = self.shared.clone();
        Waiting::new(
            &self.shared.path,
            self.mode,
            started,
            deadline,
            Arc::new(move || shared.holders()),
        )
    }
}

/// What a held FIFO lock owns: its two open file descriptions (lock and
/// ticket). Releases on drop. Shared by the blocking and async guards.
pub(crate) struct FifoHeld {
    pub(super) shared: Arc<FifoShared>,
    pub(super) files: Option<Idle>,
    pub(super) main_id: FileId,
    pub(super) ticket: u64,
    /// A departed predecessor's byte still locked (see `Enqueue::granted`).
    pub(super) stale: Option<u64>,
    pub(super) mode: Mode,
    pub(super) token: Option<u64>,
    pub(super) pid: u32,
}

impl FifoHeld {
    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }
    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }
    pub(crate) fn token(&self) -> Option<u64> {
        self.token
    }

    pub(crate) fn release(&mut self) -> Result<()> {
        let Some(idle) = self.files.take() else {
            return Ok(());
        };
        if sys::current_pid() != self.pid {
            // A forked child: the descriptions are shared with the parent,
            // whose lock this is. Just close our copies.
            return Ok(());
        }
        let unlocked = sys::unlock(&idle.main, self.shared.opts.backend)
            .map_err(|e| Error::io(IoOp::Unlock, &self.shared.path, e));
        let leave = |start: u64, len: u64| {
            sys::range_unlock(&idle.queue.file, queue::TICKET_BASE + start, len)
                .map_err(|e| Error::io(IoOp::LeaveQueue, &self.shared.queue_path, e))
        };
        // The departed predecessor's byte is usually the one just below
        // ours: then one call lets go of both.
        let left = match self.stale.take() {
            Some(b) if b + 1 == self.ticket => leave(b, 2),
            Some(b) => leave(self.ticket, 1).and(leave(b, 1)),
            None => leave(self.ticket, 1),
        };
        if unlocked.is_ok() && left.is_ok() {
            self.shared.put_idle(idle);
        }
        // On failure the files are closed, which releases both locks.
        unlocked.and(left)
    }
}

impl Drop for FifoHeld {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(path = %self.shared.path.display(), error = %e, "failed to release FIFO lock");
        }
    }
}

impl FifoHeld {
    #[cfg(unix)]
    pub(crate) fn main_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.files
            .as_ref()
            .expect("a held lock has its files until released")
            .main
            .as_fd()
    }
}
