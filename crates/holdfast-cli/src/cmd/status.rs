//! `holdfast status`: is it held, and by whom. A printer of
//! `holdfast::inspect::inspect`, which looks at each path as a kernel lock
//! and as a lock-file lock (at the path, or at `PATH.lock`, where Python's
//! lockfile puts the lock for `PATH`).

use serde_json::Value;

use crate::cli::StatusArgs;
use crate::{exit, report};

pub fn run(args: StatusArgs) -> u8 {
    let mut any_held = false;
    let mut failed = None;
    let mut out = Vec::new();
    for path in &args.paths {
        match holdfast::inspect::inspect(path) {
            Ok(seen) => {
                any_held |= seen.held();
                if args.json {
                    out.push(report::json(&seen));
                } else {
                    println!("{}", report::text(&seen));
                }
            }
            Err(e) => {
                let (code, msg) = exit::for_error(&e);
                eprintln!("holdfast: {msg}");
                failed = Some(code);
            }
        }
    }
    if args.json {
        println!("{}", report::json_line(&Value::Array(out)));
    }
    match failed {
        Some(code) => code,
        None if any_held => exit::WOULD_BLOCK,
        None => exit::OK,
    }
}
