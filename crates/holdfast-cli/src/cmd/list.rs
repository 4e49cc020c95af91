//! `holdfast list DIR`: the locks in a directory.
//!
//! Every entry directly in the directory (a regular file or a directory,
//! never a symlink) that the kernel reports locked, that carries a
//! holdfast holder record from an earlier holder, or that is a lock-file
//! lock (`LockFile::detect`: holdfast's soft, link and mkdir locks,
//! flufl.lock's, Python lockfile's and filelock's), in name order.

use holdfast::lockfile::LockFile;
use serde_json::Value;

use crate::cli::ListArgs;
use crate::exit;
use crate::report::{self, LockFileView};

pub fn run(args: ListArgs) -> u8 {
    let entries = match std::fs::read_dir(&args.dir) {
        Ok(rd) => rd,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no such directory".to_owned()
            } else if !args.dir.is_dir() {
                "not a directory".to_owned()
            } else {
                e.to_string()
            };
            eprintln!("holdfast: cannot list {}: {why}", args.dir.display());
            return if args.dir.exists() && args.dir.is_dir() {
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
        let looked = holdfast::status(&path).and_then(|st| {
            let lf = match LockFile::detect(&path)? {
                Some(lock) => Some(LockFileView::of(&lock)?).filter(|v| v.status.locked),
                None => None,
            };
            Ok((st, lf))
        });
        match looked {
            Ok((st, lf)) if st.held.is_some() || st.last_record.is_some() || lf.is_some() => {
                if args.json {
                    out.push(report::json(&st, lf.as_ref()));
                } else {
                    println!(
                        "{}",
                        report::text(&st, &path.display().to_string(), lf.as_ref())
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                // An unreadable entry is reported, the rest still listed.
                let (_, msg) = exit::for_error(&e);
                eprintln!("holdfast: {msg}");
                code = exit::NO_INPUT;
            }
        }
    }
    if args.json {
        println!("{}", Value::Array(out));
    }
    code
}
