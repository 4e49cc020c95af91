//! The path check without a `statx` per acquisition: one inotify instance
//! per process, watched through an epoll instance, tells a [`Lock`] that
//! re-acquires its file whether anything happened to it since it last
//! looked.
//!
//! # Why
//!
//! Every acquisition checks that the file it locked is still the one at
//! the path (its link count is not 0): otherwise a deleted or replaced lock
//! file would be locked as an orphan. A `statx` for that is the dearest of
//! the three system calls of a lock + unlock (it fills and copies out a
//! whole `struct statx`). Unlinking a file, or renaming another over it,
//! changes its link count, which raises `IN_ATTRIB` on its inode (and
//! `IN_DELETE_SELF` / `IN_MOVE_SELF` cover the rest), synchronously, in the
//! system call that did it: the event is queued before that call returns,
//! and the epoll instance, woken by the queueing, is ready at once. So
//! `epoll_wait(ep, 1, timeout 0)` answering 0 (the cheapest call found:
//! ~65 ns above `getppid`, where `statx` is ~300 ns and `ioctl(FIONREAD)`
//! ~130 ns on the benchmark machine) proves that no watched inode changed
//! since the last look; anything else (an event, `IN_Q_OVERFLOW`, an
//! error) sends every watch of the process to a full `statx` once.
//!
//! # Failure modes, and what they fall back to
//!
//! - Any event drains the queue and bumps a process-wide generation; each
//!   watch whose generation is old does one full `statx` (so an event for
//!   another file, or an overflow, costs one `statx` per watch, never a
//!   missed change).
//! - Fork: the inotify and epoll instances are shared with the parent
//!   (reading events in the child would steal the parent's). A watch made
//!   in another process is never used: the child registers anew with an
//!   instance of its own, and never removes the parent's watches.
//! - Limits: `max_user_instances` (128 per user) is why there is one
//!   instance per process, never one per lock; when the instance or a
//!   watch cannot be had (`EMFILE`, `ENOSPC`), that lock keeps `statx`.
//! - Filesystems where changes may come from elsewhere without an event
//!   (NFS, FUSE, anything but ext4, xfs, btrfs and tmpfs) keep `statx`.
//! - A second lock on the same inode shares the watch descriptor (the
//!   kernel gives one per inode and instance): watches are counted, and
//!   the last one removes it.
//!
//! [`Lock`]: crate::Lock

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};

use rustix::event::epoll;
use rustix::fs::inotify;

/// The process's inotify instance and the epoll instance that polls it.
#[derive(Debug)]
struct Instance {
    pid: u32,
    inotify: OwnedFd,
    epoll: OwnedFd,
    /// Bumped before every drain of the queue.
    generation: AtomicU64,
    /// Watch descriptor -> watches using it; also serialises add and remove.
    refs: Mutex<HashMap<i32, u32>>,
    /// Serialises drains.
    draining: Mutex<()>,
}

static CURRENT: Mutex<Option<Arc<Instance>>> = Mutex::new(None);

#[cfg(test)]
thread_local! {
    /// Makes this thread's registrations fail, as when the instance or
    /// watch limits are exhausted.
    static FAIL_FOR_TESTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How many checks on this thread the watch answered alone.
    static TRUSTED_FOR_TESTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl Instance {
    fn new(pid: u32) -> Option<Instance> {
        let inotify =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).ok()?;
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
        epoll::add(
            &ep,
            &inotify,
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN,
        )
        .ok()?;
        Some(Instance {
            pid,
            inotify,
            epoll: ep,
            generation: AtomicU64::new(0),
            refs: Mutex::new(HashMap::new()),
            draining: Mutex::new(()),
        })
    }

    /// This process's instance, made on first use (again in a forked
    /// child).
    fn current() -> Option<Arc<Instance>> {
        let pid = crate::sys::current_pid();
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cur.as_ref().filter(|i| i.pid == pid) {
            return Some(i.clone());
        }
        let i = Arc::new(Instance::new(pid)?);
        *cur = Some(i.clone());
        Some(i)
    }

    /// Empties the event queue; the generation is bumped first, so a
    /// watch that finds the queue empty because of this drain also finds
    /// the new generation.
    fn drain(&self) {
        let _d = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 4096];
        while matches!(rustix::io::read(&self.inotify, &mut buf), Ok(n) if n > 0) {}
    }
}

/// One lock file's registration with its process's inotify instance.
#[derive(Debug)]
pub(crate) struct PathWatch {
    inst: Arc<Instance>,
    wd: i32,
    /// The generation this watch last saw.
    seen: u64,
}

impl PathWatch {
    /// Watches the file `file` is open on (its inode, through
    /// `/proc/self/fd`, whatever is at its path now), or `None` where the
    /// watch cannot be trusted or had (see the module docs). The caller
    /// checks the file in full once after this: changes from before the
    /// watch raise no event.
    pub(crate) fn new(file: &File) -> Option<PathWatch> {
        #[cfg(test)]
        if FAIL_FOR_TESTS.with(std::cell::Cell::get) {
            return None; // as if the instance or watch limit were exhausted
        }
        if !events_cover_every_change(file) {
            return None;
        }
        let inst = Instance::current()?;
        let seen = inst.generation.load(Ordering::SeqCst);
        let wd = {
            let mut refs = inst.refs.lock().unwrap_or_else(|e| e.into_inner());
            let wd = inotify::add_watch(
                &inst.inotify,
                format!("/proc/self/fd/{}", file.as_raw_fd()),
                inotify::WatchFlags::ATTRIB
                    | inotify::WatchFlags::DELETE_SELF
                    | inotify::WatchFlags::MOVE_SELF,
            )
            .ok()?;
            *refs.entry(wd).or_insert(0) += 1;
            wd
        };
        Some(PathWatch { inst, wd, seen })
    }

    /// `Some(true)`: nothing happened to any watched file since this
    /// watch last looked, so the file is as the last full check found it.
    /// `Some(false)`: something may have; check in full (this watch then
    /// counts as up to date). `None`: the watch belongs to another process
    /// (a fork): drop it.
    #[inline]
    pub(crate) fn unchanged(&mut self) -> Option<bool> {
        if self.inst.pid != crate::sys::current_pid() {
            return None;
        }
        match super::hot::epoll_ready(self.inst.epoll.as_fd()) {
            Ok(0) => {}
            Ok(_) => self.inst.drain(),
            Err(_) => {
                self.seen = self.inst.generation.load(Ordering::SeqCst);
                return Some(false);
            }
        }
        fence(Ordering::SeqCst);
        let g = self.inst.generation.load(Ordering::SeqCst);
        if g == self.seen {
            #[cfg(test)]
            TRUSTED_FOR_TESTS.with(|c| c.set(c.get() + 1));
            Some(true)
        } else {
            self.seen = g;
            Some(false)
        }
    }
}

impl Drop for PathWatch {
    fn drop(&mut self) {
        if self.inst.pid != crate::sys::current_pid() {
            // Inherited: the instance is the parent's too; leave it be.
            return;
        }
        let mut refs = self.inst.refs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = refs.get_mut(&self.wd) {
            *n -= 1;
            if *n == 0 {
                refs.remove(&self.wd);
                let _ = inotify::remove_watch(&self.inst.inotify, self.wd);
            }
        }
    }
}

/// Whether every change to files on `file`'s filesystem raises an event
/// here: local filesystems only (a change made on another NFS client, or
/// behind a FUSE server, raises none).
fn events_cover_every_change(file: &File) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    match rustix::fs::fstatfs(file) {
        #[allow(clippy::unnecessary_cast)] // i64 on x86_64, not everywhere
        Ok(st) => matches!(st.f_type as i64, EXT4 | XFS | BTRFS | TMPFS),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    //! The failure modes of the watch, through the `Lock` that uses it: a
    //! file deleted or renamed over between acquisitions, a second lock on
    //! the same inode, an overflowed queue, a fork, no watch to be had.
    use super::*;
    use crate::{Error, Lock};
    use std::path::Path;

    fn trusted() -> u32 {
        TRUSTED_FOR_TESTS.with(std::cell::Cell::get)
    }

    /// Locks `lock` a few times, so that its watch is registered and used
    /// (asserted unless the filesystem has no watch).
    fn settle(lock: &Lock) {
        let before = trusted();
        for _ in 0..4 {
            drop(lock.lock().unwrap());
        }
        let file = File::open(lock.path()).unwrap();
        if events_cover_every_change(&file) {
            assert!(trusted() > before, "the watch answered no check");
        }
    }

    /// The lock we hold is on the file now at `path`.
    fn holds_the_file_at(path: &Path) {
        let other = Lock::open(path).unwrap();
        assert!(
            matches!(other.try_lock(), Err(Error::WouldBlock { .. })),
            "an orphan was locked: the file at the path is free"
        );
    }

    #[test]
    fn a_file_deleted_between_acquisitions_is_reopened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        settle(&lock);
        std::fs::remove_file(&p).unwrap();
        let _g = lock.lock().unwrap();
        holds_the_file_at(&p);
    }

    #[test]
    fn a_file_renamed_over_between_acquisitions_is_reopened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        settle(&lock);
        std::fs::write(d.path().join("new"), b"").unwrap();
        std::fs::rename(d.path().join("new"), &p).unwrap();
        let _g = lock.lock().unwrap();
        holds_the_file_at(&p);
    }

    #[test]
    fn a_second_lock_on_the_inode_keeps_the_watch_when_the_first_goes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let a = Lock::open(&p).unwrap();
        let b = Lock::open(&p).unwrap();
        settle(&a);
        settle(&b);
        drop(a); // must not remove the watch b shares
        settle(&b);
        std::fs::remove_file(&p).unwrap();
        let _g = b.lock().unwrap();
        holds_the_file_at(&p);
    }

    #[test]
    fn an_overflowed_queue_still_sends_the_lock_to_a_full_check() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        settle(&lock);
        // Two other watched files, changed in turn (identical events in a
        // row are merged), fill the queue past its limit; the unlink's own
        // event is then dropped, and only the overflow tells.
        let (x, y) = (d.path().join("x"), d.path().join("y"));
        let (lx, ly) = (Lock::open(&x).unwrap(), Lock::open(&y).unwrap());
        settle(&lx);
        settle(&ly);
        let limit: u32 = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16_384);
        use std::os::unix::fs::PermissionsExt;
        for i in 0..=limit / 2 + 8 {
            let mode = if i % 2 == 0 { 0o600 } else { 0o644 };
            std::fs::set_permissions(&x, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::set_permissions(&y, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::remove_file(&p).unwrap();
        let _g = lock.lock().unwrap();
        holds_the_file_at(&p);
    }

    #[test]
    fn a_lock_without_a_watch_checks_in_full() {
        FAIL_FOR_TESTS.with(|f| f.set(true));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        let before = trusted();
        for _ in 0..4 {
            drop(lock.lock().unwrap());
        }
        assert_eq!(trusted(), before, "no watch was to be had");
        std::fs::remove_file(&p).unwrap();
        let _g = lock.lock().unwrap();
        FAIL_FOR_TESTS.with(|f| f.set(false));
        holds_the_file_at(&p);
    }

    /// Forks, so it runs alone in a copy of this test binary (a fork while
    /// other test threads hold locks could hang the child).
    #[test]
    fn a_forked_child_watches_with_an_instance_of_its_own() {
        const NAME: &str =
            "sys::linux::pathwatch::tests::a_forked_child_watches_with_an_instance_of_its_own";
        if std::env::var_os("HOLDFAST_PATHWATCH_FORK_TEST").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
                .env("HOLDFAST_PATHWATCH_FORK_TEST", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "the test did not run: {text}");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let lock = Lock::open(&p).unwrap();
        settle(&lock);
        // SAFETY: this process runs this test alone; the child only locks,
        // unlinks and exits with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // The child: its checks must not read the parent's queue.
            let ok = std::panic::catch_unwind(|| {
                drop(lock.lock().unwrap());
                std::fs::remove_file(&p).unwrap();
                let _g = lock.lock().unwrap();
                let other = Lock::open(&p).unwrap();
                matches!(other.try_lock(), Err(Error::WouldBlock { .. }))
            });
            // SAFETY: ends the child without running the parent's exit
            // handlers or destructors.
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child locked an orphan or failed: {status:#x}"
        );
        // The child unlinked the parent's file: the parent must notice,
        // which it cannot if the child drained the parent's queue.
        let _g = lock.lock().unwrap();
        holds_the_file_at(&p);
    }
}
