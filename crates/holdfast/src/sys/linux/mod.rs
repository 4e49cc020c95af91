//! Linux-only pieces: `/proc` readers, OFD byte-range locks, the killable
//! lock waiter and the timer-interrupted timed wait, and inotify/pidfd
//! watches.

pub(crate) mod hot;
mod ofd;
mod pathwatch;
mod proc;
pub(crate) mod raw;
mod timed;
mod waiter;
mod watch;

#[cfg(feature = "tokio")]
pub(crate) use ofd::raw_try;
pub(crate) use ofd::{range_conflict, range_lock, range_unlock};
pub(crate) use pathwatch::PathWatch;
pub(crate) use proc::{
    boot_id, fd_path, kernel_locks, ofd_lock_pids, owner_runs_in_child_pidns, process_cmdline,
    process_start_time, process_state_start, process_uid,
};
#[cfg(feature = "tokio")]
pub(crate) use waiter::{WaitStatus, Waiter, settle};
pub(crate) use waiter::{reap_exited_waiters, wait_any};
pub(crate) use watch::{DirWatch, PidWatch, wait_for_change};
