//! `holdfast status`: is it held, and by whom.

use serde_json::Value;

use crate::cli::StatusArgs;
use crate::{exit, report};

pub fn run(args: StatusArgs) -> u8 {
    let mut any_held = false;
    let mut failed = None;
    let mut out = Vec::new();
    for path in &args.paths {
        match holdfast::status(path) {
            Ok(st) => {
                any_held |= st.held.is_some();
                if args.json {
                    out.push(report::json(&st));
                } else {
                    println!("{}", report::text(&st, &path.display().to_string()));
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
