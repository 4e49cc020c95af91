//! `holdfast status`: is it held, and by whom.
//!
//! Each path is looked at as a kernel lock (`holdfast::status`) and as a
//! lock-file lock, when its content shows one (`LockFile::detect`; also
//! `PATH.lock`, where Python's lockfile puts the lock for `PATH`).

use serde_json::Value;

use crate::cli::StatusArgs;
use crate::report::{self, LockFileView};
use crate::{exit, report::held};

pub fn run(args: StatusArgs) -> u8 {
    let mut any_held = false;
    let mut failed = None;
    let mut out = Vec::new();
    for path in &args.paths {
        let looked = holdfast::status(path).and_then(|st| {
            let lf = match super::find_lockfile(path)? {
                Some(lock) => Some(LockFileView::of(&lock)?),
                None => None,
            };
            Ok((st, lf))
        });
        match looked {
            Ok((st, lf)) => {
                any_held |= held(&st, lf.as_ref());
                if args.json {
                    out.push(report::json(&st, lf.as_ref()));
                } else {
                    println!(
                        "{}",
                        report::text(&st, &path.display().to_string(), lf.as_ref())
                    );
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
        println!("{}", Value::Array(out));
    }
    match failed {
        Some(code) => code,
        None if any_held => exit::WOULD_BLOCK,
        None => exit::OK,
    }
}
