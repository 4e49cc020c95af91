//! `holdfast phase NAME --target FILE -- COMMAND` and `holdfast phases
//! status|reset TARGET`: the library's phase runner
//! ([`holdfast::phase::PhaseRunner`]) from the shell, with the markers of
//! Python phaselock 1.1.0 (xattr `user.phaselock.NAME` on the target, or a
//! line in `TARGET.status`; lock `TARGET.lock`).
//!
//! One invocation runs one phase; a script runs its phases in order with
//! `set -e`, so a later phase only ever runs after the earlier ones were
//! marked done.

use std::path::Path;

use holdfast::phase::{MarkerStore, Markers, Phase, PhaseRunner, XattrMode};
use holdfast::text::escape;
use holdfast::{Error, Wait};
use serde_json::{Value, json};

use crate::cli::{MarkerArgs, PhaseArgs, PhasesResetArgs, PhasesStatusArgs, XattrsArg};
use crate::exec::{Launch, Program};
use crate::waiting::{self, Show};
use crate::{exit, report};

fn usage(msg: &str) -> u8 {
    eprintln!("holdfast: {msg}");
    exit::USAGE
}

fn fail(e: &Error) -> u8 {
    let (code, msg) = exit::for_error(e);
    eprintln!("holdfast: {msg}");
    code
}

fn xattr_mode(a: XattrsArg) -> XattrMode {
    match a {
        XattrsArg::Auto => XattrMode::Auto,
        XattrsArg::On => XattrMode::On,
        XattrsArg::Off => XattrMode::Off,
    }
}

fn runner(target: &Path, markers: &MarkerArgs) -> PhaseRunner {
    let mut r = PhaseRunner::new(target);
    r.xattrs(xattr_mode(markers.xattrs))
        .namespace(&markers.namespace);
    r
}

fn store_name(s: MarkerStore) -> &'static str {
    match s {
        MarkerStore::Xattr => "xattr",
        MarkerStore::StatusFile => "status file",
    }
}

/// `holdfast phase NAME --target FILE -- COMMAND`.
pub fn run(args: PhaseArgs) -> u8 {
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    let show = args.show.show();
    let mut runner = runner(&args.target, &args.markers);
    runner.wait(wait).strict_marker_locking(args.strict);
    if args.create_parents
        && let Err(msg) = super::create_parents(&args.target)
    {
        return usage(&msg);
    }
    let program = Program::Argv(args.command);
    let what = format!("phase {:?} of {}", args.name, report::shown(&args.target));
    let mut failed: Option<u8> = None;
    let result = waiting::around(&runner.lock_path(), show, |painter| {
        let mut phase = Phase::new(args.name.clone(), |ctx| {
            painter.stop();
            let launch = Launch {
                lock_fd: (!args.close.close).then(|| ctx.lock_fd()),
                token: ctx.token(),
                keeps_lock_file: false,
                forward_signals: false,
            };
            match launch.run(&program) {
                Ok(st) if st.success() => Ok(()),
                Ok(st) => {
                    failed = Some(exit::for_child(st));
                    Err(super::once::exited(&program, st).into())
                }
                Err(e) => {
                    failed = Some(exit::for_spawn_error(&e));
                    Err(format!("cannot run {}: {e}", program.name()).into())
                }
            }
        });
        if let Some(a) = &args.attr_name {
            phase = phase.attr_name(a.clone());
        }
        if let Some(v) = &args.attr_value {
            phase = phase.attr_value(v.as_bytes().to_vec());
        }
        runner.run([phase])
    });
    match result {
        Ok(report) => {
            if args.show.verbose {
                if report.completed.is_empty() {
                    eprintln!("holdfast: {what} is already done; skipped");
                } else {
                    let store = if report.xattrs_available {
                        format!(
                            "xattr {}",
                            runner.attr_key(args.attr_name.as_deref().unwrap_or(&args.name))
                        )
                    } else {
                        format!("status file {}", report::shown(&runner.status_path()))
                    };
                    eprintln!(
                        "holdfast: ran {what}; marked done in the {store}{}",
                        report
                            .token
                            .map(|t| format!(" (fencing token {t})"))
                            .unwrap_or_default()
                    );
                }
            }
            exit::OK
        }
        Err(Error::ActionFailed { source, .. }) => {
            eprintln!(
                "holdfast: {what}: {source}; not marked done (the next run starts again at \
                 this phase)"
            );
            failed.unwrap_or(exit::OS_ERR)
        }
        Err(e) => fail(&e),
    }
}

/// One phase marker as `phases status` shows it.
struct Entry {
    name: String,
    stores: Vec<MarkerStore>,
    xattr_value: Option<Vec<u8>>,
}

/// The markers in a stable order: the status file's order, then the
/// phases marked only by an xattr, by name.
fn entries(m: &Markers) -> Vec<Entry> {
    let mut out: Vec<Entry> = m
        .status
        .iter()
        .map(|n| {
            let x = m.xattrs.iter().find(|(x, _)| x == n);
            Entry {
                name: n.clone(),
                stores: if x.is_some() {
                    vec![MarkerStore::Xattr, MarkerStore::StatusFile]
                } else {
                    vec![MarkerStore::StatusFile]
                },
                xattr_value: x.map(|(_, v)| v.clone()),
            }
        })
        .collect();
    let mut only_xattr: Vec<&(String, Vec<u8>)> = m
        .xattrs
        .iter()
        .filter(|(n, _)| !m.status.contains(n))
        .collect();
    only_xattr.sort();
    out.extend(only_xattr.into_iter().map(|(n, v)| Entry {
        name: n.clone(),
        stores: vec![MarkerStore::Xattr],
        xattr_value: Some(v.clone()),
    }));
    out
}

/// Why the selected store is the status file, for humans.
fn status_file_reason(mode: XattrsArg, m: &Markers) -> String {
    if mode == XattrsArg::Off {
        return "--xattrs off".into();
    }
    if let Some(err) = &m.xattr_error {
        return format!("xattrs unusable here: {err}");
    }
    if mode == XattrsArg::Auto
        && let Some(v) = std::env::var_os(holdfast::phase::PHASELOCK_ENABLE_XATTRS)
    {
        return format!(
            "{}={}",
            holdfast::phase::PHASELOCK_ENABLE_XATTRS,
            holdfast::text::os_str(&v)
        );
    }
    "the filesystem refuses xattrs".into()
}

/// `holdfast phases status TARGET [NAME...]`.
pub fn status(args: PhasesStatusArgs) -> u8 {
    let runner = runner(&args.target, &args.markers);
    let markers = match runner.markers() {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    let store = match runner.selected_store() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let lock_path = runner.lock_path();
    let lock = match holdfast::status(&lock_path) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let target_exists = std::fs::symlink_metadata(runner.target()).is_ok();
    let status_exists = std::fs::symlink_metadata(&markers.status_path).is_ok();
    let done = entries(&markers);
    let missing: Vec<&String> = args.names.iter().filter(|n| !markers.contains(n)).collect();
    if args.json {
        let mut phases: Vec<Value> = done
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "done": true,
                    "stores": e.stores.iter().map(|s| match s {
                        MarkerStore::Xattr => "xattr",
                        MarkerStore::StatusFile => "status-file",
                    }).collect::<Vec<_>>(),
                    "xattr_value": e.xattr_value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                })
            })
            .collect();
        phases.extend(
            missing
                .iter()
                .map(|n| json!({ "name": n, "done": false, "stores": [], "xattr_value": null })),
        );
        let out = json!({
            "target": report::path_json(runner.target()),
            "target_exists": target_exists,
            "lock_path": report::path_json(&lock_path),
            "status_path": report::path_json(&markers.status_path),
            "status_file_exists": status_exists,
            "namespace": args.markers.namespace.trim_matches('.'),
            "xattrs_mode": match args.markers.xattrs {
                XattrsArg::Auto => "auto",
                XattrsArg::On => "on",
                XattrsArg::Off => "off",
            },
            "store": match store {
                MarkerStore::Xattr => "xattr",
                MarkerStore::StatusFile => "status-file",
            },
            "xattr_error": markers.xattr_error,
            "phases": phases,
            "stale_temp_files": markers.stale_temp_files.iter().map(|p| report::path_json(p)).collect::<Vec<_>>(),
            "lock": report::kernel_json(&lock),
        });
        println!("{}", report::json_line(&out));
    } else {
        let target = report::shown(runner.target());
        println!(
            "target:      {target}{}",
            if target_exists {
                ""
            } else {
                " (does not exist yet)"
            }
        );
        println!(
            "lock:        {}",
            report::kernel_text(&lock, &report::shown(&lock_path))
        );
        let store_text = match store {
            MarkerStore::Xattr if !target_exists => format!(
                "xattrs ({}.*; until the target exists, markers go to the status file)",
                args.markers.namespace.trim_matches('.')
            ),
            MarkerStore::Xattr => {
                format!("xattrs ({}.*)", args.markers.namespace.trim_matches('.'))
            }
            MarkerStore::StatusFile => format!(
                "status file ({})",
                status_file_reason(args.markers.xattrs, &markers)
            ),
        };
        println!("store:       {store_text}");
        println!(
            "status file: {}{}",
            report::shown(&markers.status_path),
            if status_exists {
                format!(
                    " ({} {})",
                    markers.status.len(),
                    if markers.status.len() == 1 {
                        "entry"
                    } else {
                        "entries"
                    }
                )
            } else {
                " (absent)".into()
            }
        );
        let done: Vec<String> = done
            .iter()
            .map(|e| {
                let stores: Vec<&str> = e.stores.iter().map(|s| store_name(*s)).collect();
                format!("{} [{}]", escape(&e.name), stores.join(", "))
            })
            .collect();
        report::phase_lines(&done, &missing);
        for t in &markers.stale_temp_files {
            println!(
                "leftover:    {} (from a crashed writer; the next run or 'phases reset' removes it)",
                report::shown(t)
            );
        }
    }
    if missing.is_empty() {
        exit::OK
    } else {
        exit::NOT_DONE
    }
}

/// `holdfast phases reset TARGET [NAME...]`.
pub fn reset(args: PhasesResetArgs) -> u8 {
    let wait = match args.wait.wait() {
        Ok(w) => w,
        Err(msg) => return usage(&msg),
    };
    if args.attr_name.is_some() && args.names.len() != 1 {
        return usage("--attr-name needs exactly one phase NAME");
    }
    let mut runner = PhaseRunner::new(&args.target);
    runner.namespace(&args.namespace).wait(wait);
    let target = report::shown(&args.target);
    let lock_path = runner.lock_path();
    if args.names.is_empty() {
        let before = match waiting::around(&lock_path, Show::OnTerminal, |_| runner.reset()) {
            Ok(m) => m,
            Err(e) => return fail_reset(&e, wait),
        };
        let removed = entries(&before);
        if removed.is_empty() {
            println!("{target}: no phase markers");
        }
        for e in removed {
            let stores: Vec<&str> = e.stores.iter().map(|s| store_name(*s)).collect();
            println!(
                "{target}: removed {} [{}]",
                escape(&e.name),
                stores.join(", ")
            );
        }
        return exit::OK;
    }
    for name in &args.names {
        match waiting::around(&lock_path, Show::OnTerminal, |_| {
            runner.unmark(name, args.attr_name.as_deref())
        }) {
            Ok(true) => println!("{target}: removed {}", escape(name)),
            Ok(false) => println!("{target}: {} was not marked", escape(name)),
            Err(e) => return fail_reset(&e, wait),
        }
    }
    exit::OK
}

fn fail_reset(e: &Error, wait: Wait) -> u8 {
    if wait == Wait::NoWait && matches!(e, Error::WouldBlock { .. }) {
        let (code, msg) = exit::for_error(e);
        eprintln!("holdfast: a phase is running: {msg}");
        return code;
    }
    fail(e)
}
