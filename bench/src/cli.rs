//! CLI scenario: the cost of one invocation, `holdfast flock LOCK true`
//! beside `flock LOCK true` (util-linux) and plain `true`, interleaved in
//! one run, so the cost each tool *adds* to the command can be compared.
//!
//! A second table measures steps that are already done, the usual case of
//! `holdfast once` and `holdfast phase` at container start, beside
//! `test -e KEY` (the cheapest check a script can spawn).
//!
//! If `HOLDFAST_BENCH_STATIC` names a statically linked holdfast (built by
//! `bench/run` with `-C target-feature=+crt-static`), it gets a row too:
//! without the dynamic loader and libgcc_s, start-up is cheaper than the
//! C program's. If `HOLDFAST_BENCH_BASE` names another holdfast binary
//! (an earlier build, to compare a change before and after in one run),
//! its `flock`, `run`, `once` and `phase` rows are added, labelled
//! "baseline build".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::proc::Env;
use crate::stats::{fmt_ns, now_ns, percentile, ratio};

struct Row {
    label: &'static str,
    argv: Vec<String>,
}

fn holdfast_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.join("holdfast");
    bin.exists().then_some(bin)
}

fn util_flock() -> Option<PathBuf> {
    ["/usr/bin/flock", "/bin/flock"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// CPU time (user + system) of all reaped descendants so far, in ns.
fn children_cpu_ns() -> f64 {
    // SAFETY: getrusage fills in the zeroed, properly sized struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall time and CPU time (the whole process tree: the tool and the
/// command it waited for) of one spawn-and-wait, in ns.
fn once(argv: &[String]) -> (f64, f64) {
    let c0 = children_cpu_ns();
    let t0 = now_ns();
    let st = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    let t = now_ns() - t0;
    assert!(st.success(), "{argv:?} failed: {st}");
    (t as f64, children_cpu_ns() - c0)
}

/// Runs the scenario and prints a Markdown table.
pub fn run(env: &Env, dir: &Path) {
    println!("\n## CLI: cost of one invocation\n");
    let (Some(holdfast), Some(flock)) = (holdfast_bin(), util_flock()) else {
        println!(
            "Skipped: needs the release `holdfast` binary beside holdfast-bench \
             (cargo build --release -p holdfast-cli) and util-linux flock(1).\n"
        );
        return;
    };
    let lock = dir.join("cli.lock").display().to_string();
    let hf = holdfast.display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut rows = vec![
        Row {
            label: "true (anchor: spawning the command alone)",
            argv: s(&["true"]),
        },
        Row {
            label: "util-linux flock LOCK true",
            argv: s(&[&flock.display().to_string(), &lock, "true"]),
        },
        Row {
            label: "holdfast flock LOCK true",
            argv: s(&[&hf, "flock", &lock, "true"]),
        },
        Row {
            label: "holdfast run LOCK -- true",
            argv: s(&[&hf, "run", &lock, "--", "true"]),
        },
    ];
    if let Some(st) = std::env::var_os("HOLDFAST_BENCH_STATIC").filter(|p| Path::new(p).exists()) {
        rows.push(Row {
            label: "holdfast flock LOCK true, static build",
            argv: s(&[
                &Path::new(&st).display().to_string(),
                "flock",
                &lock,
                "true",
            ]),
        });
    }
    if let Some(base) = baseline() {
        rows.push(Row {
            label: "holdfast flock LOCK true, baseline build",
            argv: s(&[&base, "flock", &lock, "true"]),
        });
        rows.push(Row {
            label: "holdfast run LOCK -- true, baseline build",
            argv: s(&[&base, "run", &lock, "--", "true"]),
        });
    }
    let rounds = if env.quick { 300 } else { 3000 };
    let (p50, p90, cpu) = measure(&rows, rounds);
    let added = |i: usize| p50[i] - p50[0];
    let added_cpu = |i: usize| cpu[i] - cpu[0];
    println!(
        "Each row spawns the command line and waits for it ({rounds} rounds, rows interleaved; \
         uncontended lock file). Wall: p50/p90 of the spawn-to-exit time. CPU: mean user+system \
         time of the whole process tree (the tool and the `true` it ran), which a busy machine \
         disturbs less than wall time. Added = minus plain `true`: the cost the tool itself adds. \
         Target: holdfast adds no more than flock(1) (ratio ≤ 1.00).\n"
    );
    println!(
        "| command | wall p50 | wall p90 | CPU mean | added wall (p50) | added CPU | added vs flock(1): wall / CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let (add, vs) = if i == 0 {
            ("—".to_owned(), "—".to_owned())
        } else {
            (
                format!("{} | {}", fmt_ns(added(i)), fmt_ns(added_cpu(i))),
                format!(
                    "{} / {}",
                    ratio(added(i), added(1)),
                    ratio(added_cpu(i), added_cpu(1))
                ),
            )
        };
        let add = if i == 0 { "— | —".to_owned() } else { add };
        println!(
            "| {} | {} | {} | {} | {add} | {vs} |",
            r.label,
            fmt_ns(p50[i]),
            fmt_ns(p90[i]),
            fmt_ns(cpu[i])
        );
    }
    done_steps(&hf, dir, rounds);
}

/// The binary `HOLDFAST_BENCH_BASE` names, if it exists.
fn baseline() -> Option<String> {
    std::env::var_os("HOLDFAST_BENCH_BASE")
        .filter(|p| Path::new(p).exists())
        .map(|p| Path::new(&p).display().to_string())
}

/// Runs the rows interleaved, after a warm-up; (wall p50, wall p90, mean
/// CPU) per row.
fn measure(rows: &[Row], rounds: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    // Warm up page cache and the files, then interleave the rows so
    // drift in machine load hits them all alike.
    for r in rows {
        for _ in 0..20 {
            once(&r.argv);
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); rows.len()];
    let mut cpu = vec![0f64; rows.len()];
    for _ in 0..rounds {
        for (i, r) in rows.iter().enumerate() {
            let (wall, c) = once(&r.argv);
            samples[i].push(wall);
            cpu[i] += c;
        }
    }
    let cpu: Vec<f64> = cpu.iter().map(|c| c / rounds as f64).collect();
    let p50: Vec<f64> = samples.iter_mut().map(|xs| percentile(xs, 50.0)).collect();
    let p90: Vec<f64> = samples.iter_mut().map(|xs| percentile(xs, 90.0)).collect();
    (p50, p90, cpu)
}

/// The second table: `holdfast once` and `holdfast phase` finding their
/// step done, beside `test -e KEY`.
fn done_steps(hf: &str, dir: &Path, rounds: usize) {
    let Some(test) = ["/usr/bin/test", "/bin/test"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        println!("\nSkipped the already-done table: no test(1) binary.\n");
        return;
    };
    let key = dir.join("cli-once.done");
    let target = dir.join("cli-phase.db");
    std::fs::write(&target, b"").expect("create the phase target");
    let k = key.display().to_string();
    let t = target.display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // Mark both steps done once, through holdfast itself.
    once(&s(&[hf, "once", &k, "--", "true"]));
    once(&s(&[hf, "phase", "setup", "--target", &t, "--", "true"]));
    let mut rows = vec![
        Row {
            label: "true (anchor: spawning a command alone)",
            argv: s(&["true"]),
        },
        Row {
            label: "test -e KEY (a hand-written check, as a process)",
            argv: s(&[test, "-e", &k]),
        },
        Row {
            label: "holdfast once KEY -- true (done: nothing run)",
            argv: s(&[hf, "once", &k, "--", "true"]),
        },
        Row {
            label: "holdfast phase NAME --target T -- true (done: skipped)",
            argv: s(&[hf, "phase", "setup", "--target", &t, "--", "true"]),
        },
    ];
    if let Some(base) = baseline() {
        rows.push(Row {
            label: "holdfast once KEY -- true (done), baseline build",
            argv: s(&[&base, "once", &k, "--", "true"]),
        });
        rows.push(Row {
            label: "holdfast phase NAME --target T -- true (done), baseline build",
            argv: s(&[&base, "phase", "setup", "--target", &t, "--", "true"]),
        });
    }
    let (p50, p90, cpu) = measure(&rows, rounds);
    println!(
        "\n### Steps already done (`holdfast once`, `holdfast phase`)\n\n\
         The usual case at container start: the step was done by an earlier start, so \
         holdfast only checks its marker (an `lstat` for `once`; an `lstat` and a \
         `getxattr` for a phase) and exits 0 without running the command. Same method as above; the ratio \
         compares each row's whole time with that of `test -e KEY` run as a process \
         (a shell's built-in `[ -e KEY ]` costs nothing, but does not wait for a step that \
         is still running).\n"
    );
    println!("| command | wall p50 | wall p90 | CPU mean | vs test -e: wall / CPU |");
    println!("|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let vs = if i < 2 {
            "—".to_owned()
        } else {
            format!("{} / {}", ratio(p50[i], p50[1]), ratio(cpu[i], cpu[1]))
        };
        println!(
            "| {} | {} | {} | {} | {vs} |",
            r.label,
            fmt_ns(p50[i]),
            fmt_ns(p90[i]),
            fmt_ns(cpu[i])
        );
    }
}
