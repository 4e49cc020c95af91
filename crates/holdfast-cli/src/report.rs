//! How `status`, `list` and `break` print the library's verdicts
//! (`holdfast::inspect`): one line of text, or one JSON object (the same
//! shape for `status` and `list`). Nothing here decides anything about a
//! lock; it only words what the library found.
//!
//! Text output escapes every byte of untrusted text (paths, holder
//! commands and hosts: `holdfast::text`), so a hostile record or file name
//! cannot drive the terminal or forge a line. JSON keeps the exact text: a
//! path that is not UTF-8 becomes `{"bytes": [...], "lossy": "..."}`
//! instead of a string (see `path_json`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holdfast::holder::fmt_duration;
use holdfast::inspect::{Found, Inspection, Liveness, LockFileVerdict};
use holdfast::text::{self, JsonPath};
use holdfast::{Holder, HolderRecord, HolderSource, LockStatus};
use serde_json::{Value, json};

/// A path for text output.
pub fn shown(p: &Path) -> String {
    text::path(p).into_owned()
}

/// `value` as one line of JSON safe on a terminal: serde_json escapes
/// C0 controls, and this escapes (as `\uXXXX`, the same string once
/// parsed) what it leaves raw: DEL, C1 controls such as U+009B (CSI to
/// some terminals) and the invisible bidi and zero-width characters.
pub fn json_line(value: &Value) -> String {
    let raw = value.to_string();
    let safe = |c: char| !text::is_unsafe(c);
    if raw.chars().all(safe) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if safe(c) {
            out.push(c);
        } else {
            // Only inside strings: outside them JSON has no such character.
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A path for JSON output, lossless: a string when it is UTF-8, else
/// `{"bytes": [...], "lossy": "..."}`.
pub fn path_json(p: &Path) -> Value {
    match text::path_json(p) {
        JsonPath::Utf8(s) => Value::String(s.to_owned()),
        JsonPath::Bytes { bytes, lossy } => json!({ "bytes": bytes, "lossy": lossy }),
        _ => Value::String(p.to_string_lossy().into_owned()),
    }
}

/// `soft lock (holdfast format)`.
pub fn kind(v: &LockFileVerdict) -> String {
    format!("{} lock ({} format)", v.protocol, v.compat.program())
}

/// `lease ends in 12s` / `lease ended 3s ago`.
fn lease(t: SystemTime, now: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(left) => format!("lease ends in {}", fmt_duration(left)),
        Err(e) => format!("lease ended {} ago", fmt_duration(e.duration())),
    }
}

/// The text after the path: `soft lock (holdfast format), held by pid
/// 4242 (sleep 100) on web-1 since 12:03:04 UTC (31s), holder alive`.
fn lock_file_text(v: &LockFileVerdict) -> String {
    let st = &v.status;
    let who = st
        .holder
        .as_ref()
        .map_or("holder unknown".to_owned(), |h| format!("by {h}"));
    let kind = kind(v);
    if let Liveness::Stale(reason) = &v.liveness {
        return format!(
            "{kind}, stale ({}): last held {who}; 'holdfast break' removes it",
            text::escape(&reason.to_string())
        );
    }
    let now = SystemTime::now();
    let tail = match (&v.liveness, st.expires) {
        (Liveness::Alive { .. }, None) => "holder alive".to_owned(),
        (Liveness::Alive { .. }, Some(t)) => format!("holder alive, {}", lease(t, now)),
        // Another host, or no start time recorded (a live pid might be a
        // reused one): the lease decides.
        (_, Some(t)) => format!("holder unverified, {}", lease(t, now)),
        (Liveness::NoHolder { grace, stale_at }, None) => format!(
            "names no holder yet (a record being written, damaged, or left by a killed \
             holder): stale once unchanged for {} ({})",
            fmt_duration(*grace),
            by_age(*stale_at, now)
        ),
        (_, None) => "holder unverified and no lease: never stale by itself".to_owned(),
    };
    format!("{kind}, held {who}, {tail}")
}

/// One line: `app.lock: exclusive, held by pid 4242 (python3 migrate.py) on
/// web-1 since 12:03:04 UTC (31s), token 17`, or for a lock file
/// `app.lock: soft lock (holdfast format), held by ...`.
pub fn text(seen: &Inspection) -> String {
    let name = shown(&seen.path);
    let st = &seen.kernel;
    let mut line = match seen.lock_file.as_ref().filter(|l| l.status.locked) {
        Some(l) if l.status.path != st.path && st.held.is_none() => {
            format!("{name}: {}: {}", shown(&l.status.path), lock_file_text(l))
        }
        Some(l) if st.held.is_none() => format!("{name}: {}", lock_file_text(l)),
        Some(l) => format!("{}; also a {}", kernel_text(st, &name), lock_file_text(l)),
        None => kernel_text(st, &name),
    };
    if seen.lock_file.as_ref().is_none_or(|l| !l.status.locked) && st.held.is_none() {
        match &seen.found {
            Found::Special(what) => line = format!("{name}: {what}, not a lock"),
            Found::Directory => line.push_str(" (a directory that is not a lock)"),
            _ => {}
        }
    }
    if let Some(p) = &seen.phases {
        line.push_str(&format!(
            "; phases done: {}",
            if p.done.is_empty() {
                "none".to_owned()
            } else {
                text::escape(&p.done.join(", ")).into_owned()
            }
        ));
    }
    line
}

/// One line for a kernel lock alone (`phases status` shows its lock so).
pub fn kernel_text(st: &LockStatus, name: &str) -> String {
    match st.held {
        None if !st.exists => format!("{name}: free (no such file)"),
        None => match &st.last_record {
            Some(r) => format!(
                "{name}: free (last held by pid {}{} on {}, fencing token {})",
                r.pid,
                if r.command.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", text::escape(&r.command))
                },
                text::escape(&r.host),
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

fn unix_secs(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// `t - now` in seconds, negative when `t` is past.
fn signed_secs(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn source_name(s: HolderSource) -> &'static str {
    match s {
        HolderSource::Record => "record",
        HolderSource::Kernel => "kernel",
        HolderSource::Unverified => "unverified",
        _ => "other",
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

fn lock_file_json(v: &LockFileVerdict, now: SystemTime) -> Value {
    let st = &v.status;
    json!({
        "path": path_json(&st.path),
        "protocol": v.protocol.to_string(),
        "format": v.compat.name(),
        "locked": st.locked,
        "stale": st.stale.is_some(),
        "stale_reason": st.stale.as_ref().map(|r| r.to_string()),
        "holder": st.holder.as_ref().map(|h| holder_json(h, now)),
        "holder_alive": v.liveness.holder_alive(),
        "expires": st.expires.and_then(unix_secs),
        "expires_in": st.expires.map(|t| signed_secs(t, now)),
    })
}

/// The JSON object for a kernel lock alone, in the shape of [`json`].
pub fn kernel_json(st: &LockStatus) -> Value {
    let now = SystemTime::now();
    json!({
        "path": path_json(&st.path),
        "exists": st.exists,
        "held": st.held.is_some(),
        "mode": st.held.map(|m| m.to_string()),
        "holders": st.holders.iter().map(|h| holder_json(h, now)).collect::<Vec<_>>(),
        "last_token": st.last_record.as_ref().map(|r| r.token),
        "last_record": st.last_record.as_ref().map(record_json),
        "lockfile": Value::Null,
    })
}

/// The JSON object for one path.
pub fn json(seen: &Inspection) -> Value {
    let now = SystemTime::now();
    let st = &seen.kernel;
    let lf = seen.lock_file.as_ref().filter(|l| l.status.locked);
    let mode = st
        .held
        .map(|m| m.to_string())
        .or_else(|| lf.filter(|l| l.held()).map(|_| "exclusive".to_owned()));
    json!({
        "path": path_json(&st.path),
        "exists": st.exists,
        "held": seen.held(),
        "mode": mode,
        "holders": st.holders.iter().map(|h| holder_json(h, now)).collect::<Vec<_>>(),
        "last_token": st.last_record.as_ref().map(|r| r.token),
        "last_record": st.last_record.as_ref().map(record_json),
        "lockfile": lf.map(|l| lock_file_json(l, now)),
        "phases_done": seen.phases.as_ref().map(|p| p.done.clone()),
    })
}

/// `stale by its age in 9s`: when a one-off look calls an unsettled lock
/// stale.
fn by_age(stale_at: SystemTime, now: SystemTime) -> String {
    match stale_at.duration_since(now) {
        Ok(left) => format!("by its age in {}", fmt_duration(left)),
        Err(_) => "by its age now".to_owned(),
    }
}

/// Why a lock was not broken: `held by pid 4242 (...), which is alive`.
pub fn kept(v: &LockFileVerdict) -> String {
    let Some(h) = &v.status.holder else {
        return "holder unknown".to_owned();
    };
    let now = SystemTime::now();
    let why = match &v.liveness {
        Liveness::Alive { .. } => "which is alive".to_owned(),
        Liveness::LeaseRunning { expires } => format!(
            "whose lease runs for another {} (the holder cannot be verified from here)",
            fmt_duration(expires.duration_since(now).unwrap_or(Duration::ZERO))
        ),
        Liveness::LeaseInSkew { expired, skew } => format!(
            "whose lease ended {} ago, within the {} allowed for other hosts' clocks",
            fmt_duration(now.duration_since(*expired).unwrap_or(Duration::ZERO)),
            fmt_duration(*skew)
        ),
        Liveness::NoHolder { grace, stale_at } => format!(
            "which names no holder yet (a record being written, damaged, or left by a killed \
             holder): it counts as stale once unchanged for {} ({})",
            fmt_duration(*grace),
            by_age(*stale_at, now)
        ),
        _ => "which holdfast cannot check (another host without a lease, a program that records \
              no holder, or content that names none): never stale by itself"
            .to_owned(),
    };
    format!("held by {h}, {why}")
}

/// What was broken: `held by pid 4242 (sleep 100) on web-1 since ...;
/// stale: holder pid 4242 has exited`.
pub fn removed(v: &LockFileVerdict) -> String {
    let who = match &v.status.holder {
        Some(h) => format!("held by {h}"),
        None => "holder unknown".to_owned(),
    };
    match &v.status.stale {
        Some(reason) => format!("{who}; stale: {}", text::escape(&reason.to_string())),
        None => format!("{who}; not stale (--force)"),
    }
}

/// What is at a path that holds no lock-file lock, for `break`.
pub fn not_a_lock(seen: &Inspection) -> String {
    let st = &seen.kernel;
    match &seen.found {
        Found::KernelLockFile => match &st.last_record {
            Some(r) => format!(
                "a kernel lock file, free now (last held by pid {}, fencing token {}): there is \
                 nothing to break, kernel locks end with their holder",
                r.pid, r.token
            ),
            None => "a kernel lock file, free now: there is nothing to break, kernel locks end \
                     with their holder"
                .to_owned(),
        },
        Found::Directory => "a directory that is not a mkdir lock (a mkdir lock directory holds \
                             only its holder's *.holdfast record or Python lockfile's unique \
                             name): holdfast never removes it"
            .to_owned(),
        Found::EmptyFile => "an empty file, which is what flock(1) and other kernel-lock users \
                             leave behind, free now; if a lock-file library made it, name its \
                             protocol (--protocol soft --compat filelock)"
            .to_owned(),
        Found::Special(what) => format!("{what}, which no lock-file protocol makes"),
        _ => "a file holding no lock-file record holdfast recognises (a pid file? data?); name \
              the protocol to break it anyway"
            .to_owned(),
    }
}

/// The `done:` and `not done:` lines of `holdfast phases status`, whatever
/// keeps the markers: `done` holds one entry per finished phase, already
/// escaped and annotated by the caller; `missing` the names asked for that
/// are not done (escaped here).
pub fn phase_lines<S: AsRef<str>>(done: &[String], missing: &[S]) {
    let done_text = if done.is_empty() {
        "(none)".to_owned()
    } else {
        done.join(", ")
    };
    println!("done:        {done_text}");
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|s| text::escape(s.as_ref()).into_owned())
            .collect();
        println!("not done:    {}", names.join(", "));
    }
}
