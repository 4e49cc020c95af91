//! CLI scenario: the cost of one invocation, `holdfast flock LOCK true`
//! beside `flock LOCK true` (util-linux) and plain `true`, interleaved in
//! one run, so the cost each tool *adds* to the command can be compared.
//!
//! If `HOLDFAST_BENCH_STATIC` names a statically linked holdfast (built by
//! `bench/run` with `-C target-feature=+crt-static`), it gets a row too:
//! without the dynamic loader and libgcc_s, start-up is cheaper than the
//! C program's.

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
    let rounds = if env.quick { 300 } else { 3000 };
    // Warm up page cache and the lock file, then interleave the rows so
    // drift in machine load hits them all alike.
    for r in &rows {
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
}
