//! How `status` and `list` show a lock: one line of text, or one JSON
//! object (the same shape for both commands). A path may be a kernel lock
//! (`holdfast::status`), a lock-file lock (`LockFile::status`), or, oddly,
//! both at once.

use std::time::{SystemTime, UNIX_EPOCH};

use holdfast::holder::fmt_duration;
use holdfast::lockfile::{Compat, LockFile, LockFileStatus, StaleReason};
use holdfast::{Holder, HolderRecord, HolderSource, LockStatus};
use serde_json::{Value, json};

/// A lock-file lock as `status` and `list` show it.
#[derive(Debug)]
pub struct LockFileView {
    /// `soft`, `link`, `mkdir`.
    pub protocol: String,
    /// `holdfast`, `flufl`, `lockfile`, `filelock`.
    pub format: &'static str,
    /// `soft lock (holdfast format)`.
    pub kind: String,
    pub status: LockFileStatus,
}

impl LockFileView {
    /// Looks at `lock` now.
    ///
    /// # Errors
    ///
    /// As [`LockFile::status`].
    pub fn of(lock: &LockFile) -> holdfast::Result<LockFileView> {
        Ok(LockFileView {
            protocol: lock.protocol().to_string(),
            format: match lock.compat() {
                Compat::Flufl => "flufl",
                Compat::Lockfile => "lockfile",
                Compat::Filelock => "filelock",
                _ => "holdfast",
            },
            kind: crate::cmd::lockfile_kind(lock),
            status: lock.status()?,
        })
    }

    /// Held by a holder that is not known to be gone.
    pub fn held(&self) -> bool {
        self.status.locked && self.status.stale.is_none()
    }

    /// Whether its holder is alive: `Some(true)` when checked on this host,
    /// `Some(false)` when known gone, `None` when it cannot be told.
    pub fn holder_alive(&self) -> Option<bool> {
        match &self.status.stale {
            Some(StaleReason::Exited { .. } | StaleReason::PidReused { .. }) => Some(false),
            Some(StaleReason::Rebooted | StaleReason::Released) => Some(false),
            _ => self
                .status
                .holder
                .as_ref()
                .filter(|h| h.source == HolderSource::Record)
                .map(|_| true),
        }
    }

    /// `lease ends in 12s` / `lease ended 3s ago`.
    pub fn lease(&self, now: SystemTime) -> Option<String> {
        let t = self.status.expires?;
        Some(match t.duration_since(now) {
            Ok(left) => format!("lease ends in {}", fmt_duration(left)),
            Err(e) => format!("lease ended {} ago", fmt_duration(e.duration())),
        })
    }

    /// The text after the path: `soft lock (holdfast format), held by pid
    /// 4242 (sleep 100) on web-1 since 12:03:04 UTC (31s), holder alive`.
    pub fn text(&self) -> String {
        let st = &self.status;
        let who = st
            .holder
            .as_ref()
            .map_or("holder unknown".to_owned(), |h| format!("by {h}"));
        let mut s = match &st.stale {
            Some(reason) => format!(
                "{}, stale ({reason}): last held {who}; 'holdfast break' removes it",
                self.kind
            ),
            None => format!("{}, held {who}", self.kind),
        };
        if st.stale.is_none() {
            let lease = self.lease(SystemTime::now());
            match (self.holder_alive(), lease) {
                (Some(true), None) => s.push_str(", holder alive"),
                (Some(true), Some(l)) => s.push_str(&format!(", holder alive, {l}")),
                // Another host, or no start time recorded (a live pid
                // might be a reused one): the lease decides.
                (_, Some(l)) => s.push_str(&format!(", holder unverified, {l}")),
                (_, None) => s.push_str(", holder unverified and no lease: never stale by itself"),
            }
        }
        s
    }

    fn json(&self) -> Value {
        let st = &self.status;
        let now = SystemTime::now();
        json!({
            "path": st.path,
            "protocol": self.protocol,
            "format": self.format,
            "locked": st.locked,
            "stale": st.stale.is_some(),
            "stale_reason": st.stale.as_ref().map(|r| r.to_string()),
            "holder": st.holder.as_ref().map(|h| holder_json(h, now)),
            "holder_alive": self.holder_alive(),
            "expires": st.expires.and_then(unix_secs),
            "expires_in": st.expires.map(|t| signed_secs(t, now)),
        })
    }
}

/// `t - now` in seconds, negative when `t` is past.
fn signed_secs(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Held by anyone: a kernel lock, or a lock file whose holder is not gone.
pub fn held(st: &LockStatus, lf: Option<&LockFileView>) -> bool {
    st.held.is_some() || lf.is_some_and(LockFileView::held)
}

fn unix_secs(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

fn source_name(s: HolderSource) -> &'static str {
    match s {
        HolderSource::Record => "record",
        HolderSource::Kernel => "kernel",
        HolderSource::Unverified => "unverified",
        _ => "other",
    }
}

/// One line: `app.lock: exclusive, held by pid 4242 (python3 migrate.py) on web-1 since 12:03:04 UTC (31s), token 17`,
/// or for a lock file `app.lock: soft lock (holdfast format), held by ...`.
pub fn text(st: &LockStatus, name: &str, lf: Option<&LockFileView>) -> String {
    match lf.filter(|l| l.status.locked) {
        Some(l) if l.status.path != st.path && st.held.is_none() => {
            format!("{name}: {}: {}", l.status.path.display(), l.text())
        }
        Some(l) if st.held.is_none() => format!("{name}: {}", l.text()),
        Some(l) => format!("{}; also a {}", kernel_text(st, name), l.text()),
        None => kernel_text(st, name),
    }
}

fn kernel_text(st: &LockStatus, name: &str) -> String {
    match st.held {
        None if !st.exists => format!("{name}: free (no such file)"),
        None => match &st.last_record {
            Some(r) => format!(
                "{name}: free (last held by pid {}{} on {}, fencing token {})",
                r.pid,
                if r.command.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.command)
                },
                r.host,
                r.token
            ),
            None => format!("{name}: free"),
        },
        Some(mode) => {
            let token = st
                .holders
                .first()
                .and_then(|h| h.token)
                .map(|t| format!(", fencing token {t}"))
                .unwrap_or_default();
            format!("{name}: {mode}, {}{token}", st.holders)
        }
    }
}

fn holder_json(h: &Holder, now: SystemTime) -> Value {
    json!({
        "pid": h.pid,
        "command": h.command,
        "host": h.host,
        "uid": h.uid,
        "since": h.since.and_then(unix_secs),
        "held_for": h.since.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs_f64()),
        "mode": h.mode.map(|m| m.to_string()),
        "token": h.token,
        "source": source_name(h.source),
        "this_process": h.this_process,
    })
}

fn record_json(r: &HolderRecord) -> Value {
    json!({
        "token": r.token,
        "pid": r.pid,
        "command": r.command,
        "host": r.host,
        "uid": r.uid,
        "mode": r.mode.to_string(),
        "since": unix_secs(r.since),
    })
}

/// The JSON object for one lock.
pub fn json(st: &LockStatus, lf: Option<&LockFileView>) -> Value {
    let now = SystemTime::now();
    let lf = lf.filter(|l| l.status.locked);
    let mode = st
        .held
        .map(|m| m.to_string())
        .or_else(|| lf.filter(|l| l.held()).map(|_| "exclusive".to_owned()));
    json!({
        "path": st.path,
        "exists": st.exists,
        "held": held(st, lf),
        "mode": mode,
        "holders": st.holders.iter().map(|h| holder_json(h, now)).collect::<Vec<_>>(),
        "last_token": st.last_record.as_ref().map(|r| r.token),
        "last_record": st.last_record.as_ref().map(record_json),
        "lockfile": lf.map(LockFileView::json),
    })
}
