//! How `status` and `list` show a lock: one line of text, or one JSON
//! object (the same shape for both commands).

use std::time::{SystemTime, UNIX_EPOCH};

use holdfast::{Holder, HolderRecord, HolderSource, LockStatus};
use serde_json::{Value, json};

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

/// One line: `app.lock: exclusive, held by pid 4242 (python3 migrate.py) on web-1 since 12:03:04 UTC (31s), token 17`.
pub fn text(st: &LockStatus, name: &str) -> String {
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
pub fn json(st: &LockStatus) -> Value {
    let now = SystemTime::now();
    json!({
        "path": st.path,
        "exists": st.exists,
        "held": st.held.is_some(),
        "mode": st.held.map(|m| m.to_string()),
        "holders": st.holders.iter().map(|h| holder_json(h, now)).collect::<Vec<_>>(),
        "last_token": st.last_record.as_ref().map(|r| r.token),
        "last_record": st.last_record.as_ref().map(record_json),
    })
}
