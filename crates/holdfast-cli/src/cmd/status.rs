//! `holdfast status`: is it held, and by whom.

use std::time::UNIX_EPOCH;

use holdfast::{Holder, LockStatus};
use serde_json::{Value, json};

use crate::cli::StatusArgs;
use crate::exit;

pub fn run(args: StatusArgs) -> u8 {
    let mut any_held = false;
    let mut failed = None;
    let mut out = Vec::new();
    for path in &args.paths {
        match holdfast::status(path) {
            Ok(st) => {
                any_held |= st.held.is_some();
                if args.json {
                    out.push(to_json(&st));
                } else {
                    println!("{}", to_text(&st));
                }
            }
            Err(e) => {
                eprintln!("holdfast: {e}");
                failed = Some(exit::for_error(&e));
            }
        }
    }
    if args.json {
        println!("{}", Value::Array(out));
    }
    match failed {
        Some(code) => code,
        None if any_held => exit::WOULD_BLOCK,
        None => exit::OK,
    }
}

fn to_text(st: &LockStatus) -> String {
    let path = st.path.display();
    match st.held {
        None if !st.exists => format!("{path}: free (no such file)"),
        None => format!("{path}: free"),
        Some(mode) => format!("{path}: {mode}, {}", st.holders),
    }
}

fn holder_json(h: &Holder) -> Value {
    json!({
        "pid": h.pid,
        "command": h.command,
        "host": h.host,
        "uid": h.uid,
        "since": h.since.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
        "mode": h.mode.map(|m| m.to_string()),
        "token": h.token,
        "source": format!("{:?}", h.source).to_lowercase(),
    })
}

fn to_json(st: &LockStatus) -> Value {
    json!({
        "path": st.path,
        "exists": st.exists,
        "held": st.held.is_some(),
        "mode": st.held.map(|m| m.to_string()),
        "holders": st.holders.iter().map(holder_json).collect::<Vec<_>>(),
        "last_token": st.last_record.as_ref().map(|r| r.token),
    })
}
