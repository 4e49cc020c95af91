//! How a [`Lock`] is taken: in-process admission between threads, the
//! kernel acquisition (try, then one blocking wait), the holder record, and
//! the step machine ([`WholeAcquire`]) behind owned and async guards.

use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::guard::{LockGuard, OwnedLockGuard};
use super::options::{LockOptions, open_file};
use super::{HELD_BY_THIS_THREAD, Held, Lock, State, ThreadKey, current_thread, lock_poisoned};
use crate::acquire::{self, WaitObserver, Waiting, Watch};
use crate::error::{Error, IoOp, Result};
use crate::holder;
use crate::mode::{Mode, Wait};
use crate::queue::{Machine, Step, Target};
use crate::sys::{self, FileId, FileKind, LockReq};

impl Lock {
    /// [`acquire`](Self::acquire), telling `observer` when the first
    /// attempt found the lock taken and the call starts to wait, and when
    /// the wait is over (see [`crate::acquire`]). The wait itself is the
    /// same: blocked in the kernel, a timeout counted from the start of
    /// this call.
    ///
    /// ```
    /// use holdfast::acquire::{WaitObserver, Waiting};
    /// use holdfast::{Mode, Wait};
    /// struct Say;
    /// impl WaitObserver for Say {
    ///     fn wait_started(&self, w: &Waiting) {
    ///         eprintln!("waiting for {}: {}", w.path().display(), w.holders());
    ///     }
    /// }
    /// # let dir = tempfile::tempdir().unwrap();
    /// let lock = holdfast::Lock::open(dir.path().join("app.lock"))?;
    /// let _g = lock.acquire_observed(Mode::Exclusive, Wait::Forever, &Say)?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_observed(
        &self,
        mode: Mode,
        wait: Wait,
        observer: &dyn WaitObserver,
    ) -> Result<LockGuard<'_>> {
        // A timeout counts from here, before the first attempt.
        let timed_from = matches!(wait, Wait::Timeout(_) | Wait::Deadline(_)).then(Instant::now);
        let me = current_thread();
        let mut st = lock_poisoned(self.state.lock());
        // Whether our last kernel attempt just found the lock taken, so the
        // slow path need not ask again before it blocks.
        let mut known_busy = false;
        // Fast path: nobody in this process holds it; a non-blocking kernel
        // attempt is safe to make under the state mutex.
        if matches!(st.held, Held::Free) {
            let lock_err = |e| Error::io(IoOp::Lock, &self.path, e);
            if sys::try_lock(&st.file, self.opts.backend, mode).map_err(lock_err)? {
                if !self.opts.verify_path || !Self::fast_unlinked(&mut st).map_err(lock_err)? {
                    return Ok(self.finish_acquire(&mut st, me, mode));
                }
                // Deleted behind our back: the slow path reopens.
                let _ = sys::unlock(&st.file, self.opts.backend);
            } else if wait == Wait::NoWait {
                let (file, id) = (st.file.clone(), st.id);
                drop(st);
                return Err(self.contention(mode, wait, Instant::now(), &file, id));
            } else {
                known_busy = true;
            }
        }
        // Slow path: somebody (possibly this process) is in the way.
        let started = timed_from.unwrap_or_else(Instant::now);
        let deadline = match wait {
            Wait::NoWait => None,
            other => acquire::deadline(other, started),
        };
        let mut watch = Watch::new(observer);
        // 1. In-process admission.
        loop {
            match &mut st.held {
                Held::Free => {
                    st.held = Held::Acquiring;
                    break;
                }
                Held::Exclusive { thread, depth } if *thread == me => {
                    if self.opts.reentrant {
                        *depth += 1;
                        return Ok(self.guard(&st, mode, None, true));
                    }
                    // As std's `try_lock`: a try is told "would block"
                    // (naming this process); only a wait, which would
                    // never end, is refused as AlreadyHeld.
                    if wait == Wait::NoWait {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, Instant::now(), &file, id));
                    }
                    return Err(Error::AlreadyHeld {
                        path: self.path.clone(),
                    });
                }
                Held::Shared { holders } if mode == Mode::Shared => {
                    match holders.iter_mut().find(|(t, _)| *t == me) {
                        Some((_, n)) => *n += 1,
                        None => holders.push((me, 1)),
                    }
                    return Ok(self.guard(&st, mode, None, false));
                }
                Held::Shared { holders } if holders.iter().any(|(t, _)| *t == me) => {
                    if wait == Wait::NoWait {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, Instant::now(), &file, id));
                    }
                    return Err(Error::AlreadyHeld {
                        path: self.path.clone(),
                    });
                }
                _ => {
                    let now = Instant::now();
                    let left = match (wait, deadline) {
                        (Wait::NoWait, _) => None,
                        (_, Some(d)) if now >= d => None,
                        (_, Some(d)) => Some(Some(d - now)),
                        (_, None) => Some(None),
                    };
                    let Some(left) = left else {
                        let (file, id) = (st.file.clone(), st.id);
                        drop(st);
                        return Err(self.contention(mode, wait, started, &file, id));
                    };
                    watch.start(|| self.waiting(mode, started, deadline, &st));
                    st.waiters += 1;
                    st = match left {
                        None => lock_poisoned(self.changed.wait(st)),
                        Some(left) => lock_poisoned(self.changed.wait_timeout(st, left)).0,
                    };
                    st.waiters -= 1;
                    known_busy = false;
                }
            }
        }
        // 2. Kernel acquisition, outside the state mutex.
        if known_busy && wait != Wait::NoWait {
            watch.start(|| self.waiting(mode, started, deadline, &st));
        }
        let (file, id, kind) = (st.file.clone(), st.id, st.kind);
        drop(st);
        let outcome = self.kernel_acquire(
            file, id, kind, mode, wait, deadline, known_busy, &mut watch, started,
        );
        let mut st = lock_poisoned(self.state.lock());
        match outcome {
            Ok(Some((file, id, kind))) => {
                if !Arc::ptr_eq(&st.file, &file) {
                    // Reopened: the watch was the old file's.
                    st.watch = None;
                    st.watch_step = 0;
                }
                st.file = file;
                st.id = id;
                st.kind = kind;
                drop(watch);
                Ok(self.finish_acquire(&mut st, me, mode))
            }
            Ok(None) => {
                self.set_free(&mut st);
                let (file, id) = (st.file.clone(), st.id);
                drop(st);
                Err(self.contention(mode, wait, started, &file, id))
            }
            Err(e) => {
                self.set_free(&mut st);
                Err(e)
            }
        }
    }

    /// The fast path's path check: whether the file just locked was
    /// deleted or replaced. From the second acquisition of a file on, the
    /// process's path watch answers with one `epoll_wait` while nothing
    /// happened to a watched file; otherwise (the first acquisition, after
    /// an event, where no watch can be had) `statx` does.
    #[inline]
    fn fast_unlinked(st: &mut State) -> std::io::Result<bool> {
        if let Some(w) = st.watch.as_mut() {
            match w.unchanged() {
                Some(true) => return Ok(false),
                Some(false) => return sys::is_unlinked(&st.file),
                None => {
                    // Made before a fork: this process registers anew.
                    st.watch = None;
                    st.watch_step = 1;
                }
            }
        }
        match st.watch_step {
            // A process that locks once never pays for a watch.
            0 => st.watch_step = 1,
            1 => {
                // Watch first, then check in full: a change after this
                // raises an event, one before it is seen by the check.
                st.watch = sys::PathWatch::new(&st.file);
                st.watch_step = 2;
            }
            _ => {}
        }
        sys::is_unlinked(&st.file)
    }

    /// What an observer is told about this lock's wait.
    fn waiting(
        &self,
        mode: Mode,
        started: Instant,
        deadline: Option<Instant>,
        st: &State,
    ) -> Waiting {
        let (file, id) = (st.file.clone(), st.id);
        Waiting::new(
            &self.path,
            mode,
            started,
            deadline,
            Arc::new(move || holder::describe(Some(&file), id)),
        )
    }

    /// Marks the in-process state free and wakes threads waiting for it.
    #[inline]
    pub(super) fn set_free(&self, st: &mut State) {
        st.held = Held::Free;
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Records a fresh kernel acquisition in the state and makes its guard.
    #[inline]
    pub(super) fn finish_acquire(
        &self,
        st: &mut State,
        me: ThreadKey,
        mode: Mode,
    ) -> LockGuard<'_> {
        st.held = match mode {
            Mode::Exclusive => Held::Exclusive {
                thread: me,
                depth: 1,
            },
            Mode::Shared => Held::Shared {
                holders: vec![(me, 1)],
            },
        };
        let token = if mode == Mode::Exclusive {
            self.write_record(st)
        } else {
            None
        };
        let id = st.id;
        HELD_BY_THIS_THREAD.with(|h| h.borrow_mut().push((id, self.addr())));
        if st.waiters > 0 {
            // Shared requests of other threads may now join.
            self.changed.notify_all();
        }
        self.guard(st, mode, token, false)
    }

    /// Acquires in the kernel. `Ok(None)`: would block / timed out.
    /// `known_busy`: a non-blocking attempt just failed, skip straight to
    /// waiting (in `sys::wait_any`, the one kernel wait).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    pub(super) fn kernel_acquire(
        &self,
        mut file: Arc<File>,
        mut id: FileId,
        mut kind: FileKind,
        mode: Mode,
        wait: Wait,
        deadline: Option<Instant>,
        mut known_busy: bool,
        watch: &mut Watch<'_>,
        started: Instant,
    ) -> Result<Option<(Arc<File>, FileId, FileKind)>> {
        let backend = self.opts.backend;
        let lock_err = |e| Error::io(IoOp::Lock, &self.path, e);
        loop {
            let got = !std::mem::take(&mut known_busy)
                && sys::try_lock(&file, backend, mode).map_err(lock_err)?;
            let got = if got || wait == Wait::NoWait {
                got
            } else {
                self.refuse_self_deadlock(id)?;
                watch.start(|| {
                    let (f, i) = (file.clone(), id);
                    Waiting::new(
                        &self.path,
                        mode,
                        started,
                        deadline,
                        Arc::new(move || holder::describe(Some(&f), i)),
                    )
                });
                sys::wait_any(&file, &[LockReq::Whole { backend, mode }], deadline)
                    .map_err(lock_err)?
                    .is_some()
            };
            if !got {
                return Ok(None);
            }
            if !self.opts.verify_path || !sys::is_unlinked(&file).map_err(lock_err)? {
                return Ok(Some((file, id, kind)));
            }
            // Someone deleted or replaced the file while we waited: our lock
            // guards nothing. Let it go, reopen the path, try again.
            tracing::debug!(path = %self.path.display(), "lock file was unlinked; reopening");
            let _ = sys::unlock(&file, backend);
            let (f, k, i) = open_file(&self.path, &self.opts)?;
            file = Arc::new(f);
            id = i;
            kind = k;
        }
    }

    /// Waiting for a lock this very thread holds through another `Lock`
    /// value would never end.
    pub(super) fn refuse_self_deadlock(&self, id: FileId) -> Result<()> {
        let me = self.addr();
        let held = HELD_BY_THIS_THREAD.with(|h| {
            h.borrow()
                .iter()
                .any(|(held, owner)| *held == id && *owner != me)
        });
        if held {
            return Err(Error::AlreadyHeld {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    #[inline]
    pub(super) fn write_record(&self, st: &mut State) -> Option<u64> {
        if !self.opts.record || st.kind != FileKind::Writable {
            return None;
        }
        match holder::RecordTemplate::write_shared(&mut st.template, &st.file) {
            Ok(token) => token,
            Err(e) => {
                // The lock is held; only the diagnostics are missing.
                tracing::warn!(path = %self.path.display(), error = %e,
                    "could not write the holder record");
                None
            }
        }
    }

    pub(super) fn addr(&self) -> usize {
        self as *const Lock as usize
    }

    #[inline]
    pub(super) fn guard(
        &self,
        st: &State,
        mode: Mode,
        token: Option<u64>,
        nested: bool,
    ) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            file: st.file.clone(),
            mode,
            token,
            pid: sys::current_pid(),
            nested,
            released: false,
            _not_send: PhantomData,
        }
    }

    /// The contention error (built only when returned).
    pub(super) fn contention(
        &self,
        mode: Mode,
        wait: Wait,
        started: Instant,
        file: &File,
        id: FileId,
    ) -> Error {
        acquire::contention(&self.path, mode, wait, started, || {
            holder::describe(Some(file), id)
        })
    }

    /// Releases the kernel lock and marks the state free. Called with the
    /// state locked.
    #[inline]
    pub(super) fn release_kernel(&self, st: &mut MutexGuard<'_, State>) -> Result<()> {
        let id = st.id;
        let me = self.addr();
        HELD_BY_THIS_THREAD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().position(|e| *e == (id, me)) {
                h.swap_remove(i);
            }
        });
        let result = sys::unlock(&st.file, self.opts.backend)
            .map_err(|e| Error::io(IoOp::Unlock, &self.path, e));
        self.set_free(st);
        result
    }
}

/// An acquisition of a whole-file lock on its own open file description,
/// as steps (see [`crate::queue::Machine`]): what owned and async guards of
/// a [`Lock`] are made of.
pub(crate) struct WholeAcquire<'a> {
    path: &'a Path,
    opts: &'a LockOptions,
    file: File,
    kind: FileKind,
    id: FileId,
    mode: Mode,
    held: bool,
}

impl<'a> WholeAcquire<'a> {
    /// Opens the lock file anew (a description of its own).
    pub(crate) fn open(path: &'a Path, opts: &'a LockOptions, mode: Mode) -> Result<Self> {
        let (file, kind, id) = open_file(path, opts)?;
        Ok(WholeAcquire {
            path,
            opts,
            file,
            kind,
            id,
            mode,
            held: false,
        })
    }

    /// The identity of the file being locked.
    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// The guard of a finished acquisition, with its holder record written
    /// (exclusive, writable file, records on).
    pub(crate) fn finish(
        self,
        path: &Arc<Path>,
        opts: &LockOptions,
        template: &mut Option<holder::RecordTemplate>,
    ) -> OwnedLockGuard {
        let token =
            if self.mode == Mode::Exclusive && opts.record && self.kind == FileKind::Writable {
                holder::RecordTemplate::write(template, &self.file).unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %e,
                        "could not write the holder record");
                    None
                })
            } else {
                None
            };
        OwnedLockGuard {
            file: Some(self.file),
            path: path.clone(),
            backend: opts.backend,
            mode: self.mode,
            token,
            pid: sys::current_pid(),
        }
    }
}

impl Machine for WholeAcquire<'_> {
    fn advance(&mut self) -> Result<Step> {
        let path = self.path;
        let backend = self.opts.backend;
        loop {
            if !self.held {
                if sys::try_lock(&self.file, backend, self.mode)
                    .map_err(|e| Error::io(IoOp::Lock, path, e))?
                {
                    self.held = true;
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
            if self.opts.verify_path
                && sys::is_unlinked(&self.file).map_err(|e| Error::io(IoOp::Lock, path, e))?
            {
                let _ = sys::unlock(&self.file, backend);
                self.held = false;
                let (f, k, i) = open_file(path, self.opts)?;
                (self.file, self.kind, self.id) = (f, k, i);
                continue;
            }
            return Ok(Step::Ready);
        }
    }
    fn granted(&mut self, _index: usize) -> Result<()> {
        self.held = true;
        Ok(())
    }
    fn file(&self, _target: Target) -> &File {
        &self.file
    }
    fn path(&self, _target: Target) -> &Path {
        self.path
    }
    fn contention(&mut self, wait: Wait, started: Instant) -> Error {
        acquire::contention(self.path, self.mode, wait, started, || {
            holder::describe(Some(&self.file), self.id)
        })
    }
    fn waiting(&self, started: Instant, deadline: Option<Instant>) -> Waiting {
        let (file, id) = (self.file.try_clone().ok(), self.id);
        Waiting::new(
            self.path,
            self.mode,
            started,
            deadline,
            Arc::new(move || holder::describe(file.as_ref(), id)),
        )
    }
}
