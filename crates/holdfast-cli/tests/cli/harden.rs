//! Hardening (issue 10): what a hostile local user can plant, and what a
//! newcomer types. Cases that need another user run the planting step as
//! uid 65534 through `setpriv`, and are skipped (saying so) when the tests
//! do not run as root. Nothing waits on a bare sleep: every command runs to
//! its end under a bounded wait.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use holdfast_testkit::{Dir, Output as Out, is_root, mkfifo, path_str as s, run_to_end};

use crate::common::{HOLDFAST, T, holdfast, run};

/// `argv` run as uid/gid 65534 (nobody) with no supplementary groups.
fn as_nobody(argv: &[&str]) -> Out {
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv));
    assert_eq!(out.code(), 0, "as nobody: {argv:?}: {out:?}");
    out
}

/// A world-writable sticky directory (like /tmp) inside a fresh temp dir
/// that nobody can reach.
fn sticky(d: &Dir) -> std::path::PathBuf {
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = d.join("shared");
    std::fs::create_dir(&s).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o1777)).unwrap();
    s
}

/// Issue 10 item 2: `holdfast flock` run by root on a path another user
/// planted never writes into what the link names (nor creates a file where
/// a dangling link points), nor into a file another user owns; it still
/// follows the link for locking, as flock(1) does.
#[test]
fn flock_never_writes_through_a_planted_symlink_or_into_a_foreign_file() {
    if !is_root() {
        eprintln!("skipped: planting as another user needs root");
        return;
    }
    let d = Dir::new();
    let shared = sticky(&d);
    // A root-owned empty file the attacker wants scribbled on.
    let victim = d.join("victim");
    std::fs::write(&victim, b"").unwrap();
    let link = shared.join("job.lock");
    as_nobody(&["ln", "-s", s(&victim), s(&link)]);

    // The lock is taken on what the link names: a second flock of the
    // victim itself, from inside, conflicts (exit 1).
    let out = run(holdfast().args([
        "flock",
        s(&link),
        HOLDFAST,
        "flock",
        "-n",
        s(&victim),
        "true",
    ]));
    assert_eq!(out.code(), 1, "the link was followed for locking: {out:?}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"",
        "nothing written through the link"
    );

    // A dangling link: no file is created where it points.
    let planted = d.join("planted");
    let dangling = shared.join("dangling.lock");
    as_nobody(&["ln", "-s", s(&planted), s(&dangling)]);
    let out = run(holdfast().args(["flock", s(&dangling), "true"]));
    assert_eq!(out.code(), 66, "{out:?}");
    assert!(out.stderr.contains("cannot open lock file"), "{out:?}");
    assert!(
        out.stderr.contains("symbolic link to a missing file"),
        "{out:?}"
    );
    assert!(
        !planted.exists(),
        "a file was created through a dangling link"
    );

    // A file another user created: locked, never written into.
    let theirs = shared.join("theirs.lock");
    as_nobody(&["sh", "-c", &format!("umask 0; : > {}", s(&theirs))]);
    let out = run(holdfast().args(["flock", s(&theirs), "true"]));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        b"",
        "wrote into another user's file"
    );

    // Control: a file of root's own gets its holder record (so the checks
    // above can fail).
    let mine = shared.join("mine.lock");
    let out = run(holdfast().args(["flock", s(&mine), "true"]));
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        std::fs::read(&mine)
            .unwrap()
            .starts_with(b"holdfast-holder"),
        "no record in our own file"
    );
}

/// Issue 10 item 9: `phase NAME --target X` refuses a target that is a
/// device or a FIFO, and a lock or status file path that is a directory or
/// a FIFO, with a clear message (exit 64), creating nothing beside it.
#[test]
fn phase_refuses_targets_that_are_not_files() {
    let d = Dir::new();
    let fifo = d.join("queue");
    mkfifo(&fifo);
    let mut cases = vec![(fifo.clone(), "a FIFO")];
    if is_root() {
        let dev = d.join("null");
        let out = run(Command::new("mknod").arg(&dev).args(["c", "1", "3"]));
        assert_eq!(out.code(), 0, "{out:?}");
        cases.push((dev, "a character device"));
    }
    for (target, kind) in cases {
        let out = run(holdfast()
            .args(["phase", "p1", "--target"])
            .arg(&target)
            .args(["--", "touch", s(&d.join("ran"))]));
        assert_eq!(out.code(), 64, "{target:?}: {out:?}");
        assert!(
            out.stderr.contains(&format!("the target is {kind}"))
                && out.stderr.contains(s(&target)),
            "{out:?}"
        );
        assert!(!d.join("ran").exists(), "the command ran for {target:?}");
        for suffix in [".lock", ".status"] {
            let beside = format!("{}{suffix}", target.display());
            assert!(!Path::new(&beside).exists(), "{beside} was created");
        }
    }

    // A directory (or a FIFO) where the lock or status file goes.
    let target = d.join("app.db");
    for (beside, kind) in [("app.db.lock", "a directory"), ("app.db.status", "a FIFO")] {
        let p = d.join(beside);
        if kind == "a FIFO" {
            mkfifo(&p);
        } else {
            std::fs::create_dir(&p).unwrap();
        }
        let out = run(holdfast()
            .args(["phase", "p1", "--xattrs", "off", "--target"])
            .arg(&target)
            .args(["--", "touch", s(&d.join("ran"))]));
        assert_eq!(out.code(), 64, "{beside}: {out:?}");
        assert!(out.stderr.contains(&format!("is {kind}")), "{out:?}");
        assert!(out.stderr.contains(beside), "{out:?}");
        assert!(
            !d.join("ran").exists(),
            "the command ran with {beside} {kind}"
        );
        if kind == "a FIFO" {
            std::fs::remove_file(&p).unwrap();
        } else {
            std::fs::remove_dir(&p).unwrap();
        }
    }

    // A directory target is fine, and a missing one too.
    for target in [d.join("venv"), d.join("new.db")] {
        if target.ends_with("venv") {
            std::fs::create_dir(&target).unwrap();
        }
        let out = run(holdfast()
            .args(["phase", "p1", "--target"])
            .arg(&target)
            .args(["--", "true"]));
        assert_eq!(out.code(), 0, "{target:?}: {out:?}");
    }
}

/// Issue 10 item 10: a symbolic link at `once KEY`, dangling or not, is
/// refused (exit 64, naming it), never taken for "already done".
#[test]
fn once_refuses_a_symlink_at_the_key_even_a_dangling_one() {
    let d = Dir::new();
    let real = d.join("real");
    std::fs::write(&real, b"").unwrap();
    for (name, to) in [("dangling", d.join("nowhere")), ("link", real.clone())] {
        let key = d.join(name);
        std::os::unix::fs::symlink(&to, &key).unwrap();
        let ran = d.join(&format!("{name}.ran"));
        let out = run(holdfast()
            .arg("once")
            .arg(&key)
            .args(["--", "touch", s(&ran)]));
        assert_eq!(out.code(), 64, "{name}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("{} is a symbolic link", key.display())),
            "{out:?}"
        );
        assert!(!ran.exists(), "{name}: ran the command through a link");
        let out = run(holdfast().args(["once", "--status"]).arg(&key));
        assert_eq!(out.code(), 64, "--status {name}: {out:?}");
        assert!(!out.stdout.contains("done"), "{out:?}");
        assert!(!d.join("nowhere").exists());
    }
    // Nor is a FIFO (or a device) a marker anyone made.
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let out = run(holdfast()
        .arg("once")
        .arg(&fifo)
        .args(["--", "touch", s(&d.join("ran"))]));
    assert_eq!(out.code(), 64, "{out:?}");
    assert!(out.stderr.contains("the run-once key is a FIFO"), "{out:?}");
    assert!(!d.join("ran").exists());
}

/// Issue 10 item 13: `holdfast run` with a kernel lock (and `--fifo`)
/// passes TERM, INT, HUP and QUIT on to the command, waits for it, and
/// exits with its status; the lock is free afterwards.
#[test]
fn run_forwards_termination_signals_to_the_command_in_kernel_mode() {
    use holdfast_testkit::Child;
    let d = Dir::new();
    let lock = d.join("job.lock");
    for (mode, sig) in [
        (None, "TERM"),
        (None, "INT"),
        (None, "HUP"),
        (None, "QUIT"),
        (Some("--fifo"), "TERM"),
    ] {
        // The shell forwards nothing itself: the trap fires only if the
        // signal reaches it; it stops its own sleep and says so.
        let script =
            format!("trap 'kill $!; echo got {sig}; exit 3' {sig}; sleep 30 & echo ready; wait");
        let mut cmd = holdfast();
        cmd.arg("run")
            .args(mode)
            .arg(&lock)
            .args(["--", "sh", "-c", &script]);
        let mut child = Child::spawn(cmd);
        child.expect_line("ready", T);
        let out = run(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.pid().to_string()));
        assert_eq!(out.code(), 0, "{out:?}");
        assert_eq!(child.expect_line("got", T), format!("got {sig}"));
        let st = child.wait(T);
        assert_eq!(
            st.code(),
            Some(3),
            "{mode:?} {sig}: holdfast's own status {st:?}"
        );
        let out = run(holdfast()
            .args(["run", "--no-wait"])
            .arg(&lock)
            .args(["--", "true"]));
        assert_eq!(out.code(), 0, "the lock is free again: {out:?}");
    }
}

/// Issue 10 item 14: the CLI speaks flags, never the library's API: no
/// `Protocol::`, `Backend::`, `holdfast::...`, `Options::` or `(true)` in
/// what a shell user reads, and the flock(1) habit of leaving out `--` gets
/// "put `--` before the command".
#[test]
fn cli_messages_speak_flags_not_rust() {
    let d = Dir::new();
    let dir = d.join("dir");
    std::fs::create_dir(&dir).unwrap();
    let x = d.join("x.lock");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", s(&x), "true"],
            "put `--` before the command: holdfast run ",
        ),
        (
            vec!["run", "-w", "5", s(&x), "sh", "-c", "echo hi"],
            "-- sh -c 'echo hi'",
        ),
        (vec!["once", s(&x), "true"], "put `--` before the command"),
        (
            vec!["run", "--lockfile", "soft", s(&dir), "--", "true"],
            "use --lockfile mkdir",
        ),
        (
            vec!["run", "--lockfile", "link", s(&dir), "--", "true"],
            "use --lockfile mkdir",
        ),
        (
            vec![
                "run",
                "--lockfile",
                "soft",
                "--compat",
                "flufl",
                s(&x),
                "--",
                "true",
            ],
            "--lockfile soft does not take --compat flufl (soft takes holdfast or filelock",
        ),
        (
            vec![
                "run",
                "--lockfile",
                "mkdir",
                "--compat",
                "filelock",
                s(&x),
                "--",
                "true",
            ],
            "--lockfile mkdir does not take --compat filelock",
        ),
        (
            vec!["run", "--fcntl", s(&dir), "--", "true"],
            "leave out --fcntl",
        ),
        (
            vec!["break", "--protocol", "soft", "--compat", "flufl", s(&x)],
            "--protocol soft does not take --compat flufl",
        ),
        (
            vec!["flock", "--fcntl", s(&dir), "true"],
            "leave out --fcntl",
        ),
    ];
    for (args, want) in cases {
        let out = run(holdfast().args(&args));
        assert_ne!(out.code(), 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        for rust in ["::", "(true)", "Options", "holdfast::"] {
            assert!(
                !out.stderr.contains(rust),
                "{args:?} speaks Rust: {}",
                out.stderr
            );
        }
    }
}

/// Issue 10 item 7: `scripts/demo` runs the binary cargo reports (not a
/// hard-coded `target/release/holdfast`) and every wait in it is bounded.
/// The script is run from a copy of the tree without any `target/`, with a
/// `cargo` on PATH that reports this test's holdfast as the artifact it
/// built, as `cargo build --message-format=json` does.
#[test]
fn the_demo_finds_the_binary_through_cargo_and_finishes() {
    let d = Dir::new();
    let root = d.join("tree");
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    let demo = root.join("scripts/demo");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo"),
        &demo,
    )
    .unwrap();
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n\
             case \" $* \" in *' build '*) ;; *) echo \"stub cargo: $*\" >&2; exit 2;; esac\n\
             case \" $* \" in *' --message-format=json'*) ;; *) exit 0;; esac\n\
             echo '{{\"reason\":\"compiler-artifact\",\"target\":{{\"name\":\"holdfast\"}},\
             \"executable\":\"{HOLDFAST}\",\"fresh\":true}}'\n\
             echo '{{\"reason\":\"build-finished\",\"success\":true}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run_to_end(
        Command::new("bash")
            .arg(&demo)
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", d.join("elsewhere")),
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    for want in ["(exit 1)", "(exit 124)", "my turn", "\"held\""] {
        assert!(out.stdout.contains(want), "{want:?} missing: {out:?}");
    }
}

/// Issue 10 item 16 (man page): sections a man page has, a synopsis of
/// every form, and recipes set line by line (not filled into one
/// paragraph where a command wraps mid-way).
#[test]
fn the_man_pages_read_like_man_pages() {
    let out = run(holdfast().arg("man"));
    assert_eq!(out.code(), 0, "{out:?}");
    let roff = &out.stdout;
    let sections: Vec<&str> = roff
        .lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|l| l.trim_matches('"'))
        .collect();
    assert_eq!(
        sections,
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "SUBCOMMANDS",
            "EXIT STATUS",
            "EXAMPLES",
            "SEE ALSO"
        ]
    );
    assert!(
        !roff.contains("The holdfast command:"),
        "NAME repeats the crate description"
    );
    for sub in [
        "run", "flock", "status", "list", "break", "once", "phase", "phases",
    ] {
        assert!(
            roff.contains(&format!("\\fBholdfast {sub}\\fR")),
            "no synopsis of {sub}"
        );
    }
    for sub in ["run", "flock", "once", "phase", "break"] {
        let out = run(holdfast().args(["man", sub]));
        assert_eq!(out.code(), 0, "{out:?}");
        assert!(
            !out.stdout.contains(".SH EXTRA"),
            "man {sub}: EXTRA section"
        );
        assert!(
            out.stdout.contains(".SH \"EXIT STATUS\""),
            "man {sub}: no EXIT STATUS"
        );
        assert!(
            out.stdout.contains(&format!("\\fBholdfast {sub}\\fR")),
            "man {sub}: synopsis"
        );
    }
    // Formatted at 80 columns, a recipe is one line, as typed.
    let nroff = Command::new("nroff")
        .args(["-man", "-Tutf8", "-rLL=80n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut nroff) = nroff else {
        eprintln!("nroff not installed: formatting not checked");
        return;
    };
    use std::io::Write as _;
    nroff
        .stdin
        .take()
        .unwrap()
        .write_all(roff.as_bytes())
        .unwrap();
    let page = nroff.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&page.stdout);
    for recipe in [
        "holdfast run --fifo /run/lock/deploy.lock -- ./deploy.sh",
        "holdfast once /shared/app/cache-ready -- ./warm-cache.sh",
        "holdfast flock --nonblock 9 || { echo 'already running' >&2; exit 1; }",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == recipe),
            "{recipe:?} is not one line of the page:\n{text}"
        );
    }
}

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The lines of `[section]` in a TOML text, up to the next section.
fn toml_section<'a>(text: &'a str, section: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim() != format!("[{section}]"))
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect()
}

/// Issue 10 item 16: what a release needs. Both license texts (at the root
/// and in each published crate), a changelog, publishable metadata, a
/// dependency on holdfast with a version, crate READMEs without doctest
/// scaffolding, an MSRV the README states as Cargo.toml does (scripts/test
/// builds with it), and a release profile without debug info.
#[test]
fn release_hygiene() {
    let mit = repo_file("LICENSE-MIT");
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = repo_file("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    assert!(repo_file("CHANGELOG.md").contains("## [Unreleased]"));

    let root = repo_file("Cargo.toml");
    let package = toml_section(&root, "workspace.package");
    let field = |lines: &[&str], key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .map(|v| v.trim_matches('"').to_owned())
    };
    let version = field(&package, "version").expect("workspace version");
    let msrv = field(&package, "rust-version").expect("workspace rust-version");
    assert_eq!(
        field(&package, "license").as_deref(),
        Some("MIT OR Apache-2.0")
    );
    assert!(
        repo_file("README.md").contains(&format!("({msrv} or newer")),
        "the README states the MSRV {msrv}"
    );
    let deps = toml_section(&root, "workspace.dependencies");
    let holdfast = deps
        .iter()
        .find(|l| l.starts_with("holdfast = "))
        .expect("holdfast in workspace.dependencies");
    assert!(
        holdfast.contains(&format!("version = \"{version}\"")),
        "holdfast-cli's dependency on holdfast has no version: {holdfast}"
    );

    for krate in ["holdfast", "holdfast-cli"] {
        let manifest = repo_file(&format!("crates/{krate}/Cargo.toml"));
        let pkg = toml_section(&manifest, "package");
        for key in ["description", "keywords", "categories", "readme"] {
            assert!(field(&pkg, key).is_some(), "{krate}: no {key}");
        }
        assert_eq!(
            field(&pkg, "readme").as_deref(),
            Some("README.md"),
            "{krate}"
        );
        // No placeholder address on the registry page: there is no public
        // repository yet, so no `repository` rather than a made-up one.
        assert!(
            !root.contains("example.invalid") || !pkg.iter().any(|l| l.starts_with("repository")),
            "{krate} inherits the placeholder repository"
        );
        assert!(!manifest.contains("example.invalid"), "{krate}");
        for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
            repo_file(&format!("crates/{krate}/{license}"));
        }
        // What the registry shows: no hidden doctest lines (`# let ...`).
        let readme = repo_file(&format!("crates/{krate}/README.md"));
        let mut in_code = false;
        for line in readme.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
            } else if in_code {
                assert!(
                    !(line == "#" || line.starts_with("# ")),
                    "{krate}/README.md shows doctest scaffolding: {line:?}"
                );
            }
        }
    }

    let release = toml_section(&root, "profile.release");
    for line in &release {
        let l = line.replace(' ', "");
        assert!(
            !l.starts_with("debug=") || l == "debug=false" || l == "debug=0",
            "release profile with debug info: {line}"
        );
        assert!(!l.starts_with("strip=") || !l.contains("none"), "{line}");
    }
}
