//! `holdfast list DIR`: the locks in a directory.
//!
//! Every entry directly in the directory (a regular file or a directory,
//! never a symlink) that `holdfast::inspect::inspect` finds to be a lock:
//! held by the kernel, carrying a holdfast holder record from an earlier
//! holder, or a lock-file lock of any protocol and format, in name order.

use serde_json::Value;

use crate::cli::ListArgs;
use crate::exit;
use crate::report::{self, shown};

pub fn run(args: ListArgs) -> u8 {
    let Some(dir) = args.dir.as_deref() else {
        eprintln!("holdfast: list: which directory? (holdfast list DIR)");
        return exit::USAGE;
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no such directory".to_owned()
            } else if !dir.is_dir() {
                "not a directory".to_owned()
            } else {
                e.to_string()
            };
            eprintln!("holdfast: cannot list {}: {why}", shown(dir));
            return if dir.is_dir() {
                exit::NO_INPUT
            } else {
                exit::USAGE
            };
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_dir()))
        .map(|e| e.path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    let mut code = exit::OK;
    for path in paths {
        match holdfast::inspect::inspect(&path) {
            // A lock file only where it is (not the `PATH.lock` of another
            // entry: that one is listed under its own name).
            Ok(mut seen) => {
                seen.lock_file = seen
                    .lock_file
                    .filter(|l| l.status.path == path && l.status.locked);
                seen.phases = None;
                if !seen.is_lock() {
                    continue;
                }
                if args.json {
                    out.push(report::json(&seen));
                } else {
                    println!("{}", report::text(&seen));
                }
            }
            Err(e) => {
                // An unreadable entry is reported, the rest still listed.
                let (_, msg) = exit::for_error(&e);
                eprintln!("holdfast: {msg}");
                code = exit::NO_INPUT;
            }
        }
    }
    if args.json {
        println!("{}", report::json_line(&Value::Array(out)));
    }
    code
}
