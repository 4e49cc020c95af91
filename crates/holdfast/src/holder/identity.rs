//! This process as a holder record describes it: pid, start time, boot
//! id, host, uid and command line, read once.

use std::sync::Mutex;

use crate::sys;

/// Longest command line stored in a record.
const MAX_CMD: usize = 1024;

/// The calling process as a holder record describes it.
#[derive(Debug)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub boot_id: Option<String>,
    pub host: String,
    pub uid: u32,
    pub command: String,
}

static IDENTITY: Mutex<Option<std::sync::Arc<Identity>>> = Mutex::new(None);

impl Identity {
    /// This process's identity, computed once per process (a forked child
    /// recomputes it because its pid differs).
    pub(crate) fn current() -> std::sync::Arc<Identity> {
        let pid = sys::current_pid();
        let mut slot = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = slot.as_ref()
            && id.pid == pid
        {
            return id.clone();
        }
        // Our own arguments are in memory already: no read of
        // /proc/self/cmdline (the same words, empty ones left out alike).
        let mut command = own_command_line()
            .or_else(|| sys::process_cmdline(pid))
            .unwrap_or_default();
        truncate_utf8(&mut command, MAX_CMD);
        let id = std::sync::Arc::new(Identity {
            pid,
            start_time: sys::process_start_time(pid),
            boot_id: sys::boot_id(),
            host: hostname_override().unwrap_or_else(sys::hostname),
            uid: sys::current_uid(),
            command,
        });
        *slot = Some(id.clone());
        id
    }
}

/// This process's arguments as `/proc/self/cmdline` would give them
/// (quoted, joined by spaces, empty ones left out); `None` where the runtime
/// does not know them.
pub(super) fn own_command_line() -> Option<String> {
    let args: Vec<String> = std::env::args_os()
        .filter(|a| !a.is_empty())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    (!args.is_empty()).then(|| crate::text::shell_join(&args))
}

/// `HOLDFAST_HOSTNAME` overrides the host name written into records, for
/// tests that simulate several hosts and for containers whose host name is
/// meaningless.
pub(crate) fn hostname_override() -> Option<String> {
    std::env::var("HOLDFAST_HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}
