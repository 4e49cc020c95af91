//! Who holds a file: the kernel's lock table combined with the holder
//! record into one list of [`Holder`]s.

use std::fs::File;

use super::head::read_record;
use super::identity::hostname_override;
use super::record::RecordContent;
use super::{Holder, HolderSource, Holders};
use crate::mode::Mode;
use crate::sys;

/// Combines the kernel's lock table with the holder record into the list of
/// holders of a file. Never fails: what cannot be read is left out.
pub(crate) fn describe(file: Option<&File>, id: sys::FileId) -> Holders {
    let record = file
        .and_then(|f| read_record(f).ok())
        .and_then(|(c, _)| match c {
            RecordContent::Record(r) => Some(r),
            _ => None,
        });
    let kernel = sys::kernel_locks(id).ok().flatten();
    let Some(locks) = kernel else {
        // No kernel view on this platform: report the record, unverified,
        // if its process still exists.
        return record
            .filter(|r| sys::process_exists(r.pid))
            .map(|r| vec![Holder::from_record(&r, HolderSource::Unverified)])
            .unwrap_or_default()
            .into();
    };
    let my_boot = sys::boot_id();
    let mut out: Vec<Holder> = Vec::new();
    for l in locks {
        let mode = if l.exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        if let Some(pid) = l.pid
            && out.iter().any(|h| h.pid == Some(pid))
        {
            continue;
        }
        // The record names the holder when the kernel's pid is the
        // record's (same start time, so not a recycled pid), or when the
        // kernel's pid is gone: flock records the pid that *requested* the
        // lock, which for a timed wait is holdfast's short-lived waiter task
        // and for an inherited descriptor may be a parent that exited.
        let confirmed = record.as_ref().filter(|r| {
            let alive =
                |pid: u32| r.start_time.is_none() || r.start_time == sys::process_start_time(pid);
            l.exclusive
                && r.mode == Mode::Exclusive
                && (r.boot_id.is_none() || r.boot_id == my_boot)
                && match l.pid {
                    Some(kpid) if kpid == r.pid => alive(kpid),
                    // A zombie is gone too: a waiter task that signalled
                    // the grant and exited is reaped only later.
                    Some(kpid) => {
                        (!sys::process_exists(kpid)
                            || matches!(sys::process_state_start(kpid), Some(('Z' | 'X', _))))
                            && sys::process_exists(r.pid)
                            && alive(r.pid)
                    }
                    None => sys::process_exists(r.pid) && alive(r.pid),
                }
        });
        out.push(match confirmed {
            Some(r) => Holder::from_record(r, HolderSource::Record),
            None => Holder {
                pid: l.pid,
                command: l.pid.and_then(sys::process_cmdline),
                host: Some(hostname_override().unwrap_or_else(sys::hostname)),
                uid: l.pid.and_then(sys::process_uid),
                since: None,
                mode: Some(mode),
                token: None,
                this_process: l.pid == Some(sys::current_pid()),
                source: HolderSource::Kernel,
            },
        });
    }
    out.into()
}
