//! `holdfast flock`: a drop-in for util-linux flock(1).
//!
//! Same forms, options and exit codes as flock(1) 2.38 (`--fcntl` as in
//! 2.40): option parsing stops at the first non-option (getopt's `+`), a
//! conflict and a timeout both exit 1 (or `-E N`), open failures exit 66 /
//! 73 / 71, a failed lock call 65 / 71, a command that cannot be executed
//! 69, a command killed by signal N 128+N. Messages follow flock(1)'s
//! wording; `--verbose` prints flock(1)'s own lines on stdout as it does.
//!
//! What holdfast adds, without changing any exit code: a holder record in
//! the lock file (so `holdfast status` names the holder, its command and
//! since when, even for plain `flock` users of the same file; only in a
//! file the user owns, reached without a symlink, see
//! [`holdfast::LockOptions::holder_record`]), the waiting
//! line on a terminal, holder details in `--verbose` failure messages, and
//! `HOLDFAST_FENCING_TOKEN` in the command's environment.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::Args;
use holdfast::{Backend, Error, LockOptions, Mode, Wait};

use crate::cli::FlockArgs;
use crate::exec::{Launch, Program};
use crate::waiting::{self, Show};
use crate::{exit, getopt};

/// Parses flock(1)-style arguments (`argv[0]` first) and runs them. `prog`
/// is the name used in messages: `flock` when invoked through a symlink of
/// that name, else `holdfast`.
pub fn main(prog: &str, mut argv: Vec<OsString>) -> u8 {
    if !argv.is_empty() {
        argv.remove(0);
    }
    let name = display_name(prog);
    match getopt::parse(argv) {
        Ok(getopt::Parsed::Run(args)) => run(prog, args),
        Ok(getopt::Parsed::Help) => {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}", command(name).render_long_help());
            exit::OK
        }
        Ok(getopt::Parsed::Version) => {
            println!("{name} from holdfast {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Err(msg) => {
            eprintln!("{prog}: {msg}");
            eprintln!("Try '{name} --help' for more information.");
            exit::USAGE
        }
    }
}

/// The clap command for the flock form alone (cheaper than the whole CLI).
pub fn command(name: &'static str) -> clap::Command {
    let cmd = clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Manage file locks from shell scripts (a drop-in for util-linux flock(1)).");
    FlockArgs::augment_args(cmd)
}

/// What `-w SECS` turned out to mean, as flock(1) reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Timer {
    /// Zero (after truncation to microseconds): `--nonblock`.
    NonBlock,
    /// Wait this long.
    Wait(Duration),
    /// A value flock(1)'s timer refuses (negative, infinite, too large): it
    /// exits 71 ("cannot set up timer").
    Refused,
}

/// Reads `SECS` as util-linux `strtotimeval_or_err`: a C `strtold` number
/// (leading blanks, sign, decimal with exponent, hex, `inf`, `nan`) cut to
/// whole microseconds. `None` if it is not a number at all (exit 64).
fn parse_secs(s: &str) -> Option<Timer> {
    let t = s.trim_start();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let value = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        parse_hex(hex)?
    } else {
        if body.is_empty() || body.starts_with(['+', '-']) {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    let value = if neg { -value } else { value };
    // (time_t) v and (suseconds_t)((v - sec) * 1e6), as flock(1) does.
    if !value.is_finite() || value.abs() >= 9.2e18 {
        return Some(Timer::Refused);
    }
    let sec = value.trunc();
    let usec = ((value - sec) * 1e6).trunc();
    Some(if sec == 0.0 && usec == 0.0 {
        Timer::NonBlock
    } else if sec < 0.0 || usec < 0.0 {
        Timer::Refused
    } else {
        Timer::Wait(Duration::new(sec as u64, (usec as u32) * 1000))
    })
}

fn parse_hex(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v)
}

/// util-linux `strtos32_or_err` (base 10, leading blanks and a sign allowed).
fn parse_s32(s: &str) -> Option<i32> {
    s.trim_start().parse::<i32>().ok()
}

/// `strerror` text without Rust's " (os error N)" suffix, as flock(1) prints.
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The validated form of the arguments.
#[derive(Debug)]
enum Target {
    /// `FILE|DIR COMMAND...` or `FILE|DIR -c STRING`.
    File { path: OsString, program: Program },
    /// `FD`.
    Fd(i32),
}

pub fn run(prog: &str, args: FlockArgs) -> u8 {
    let usage = |msg: &str| {
        eprintln!("{prog}: {msg}");
        eprintln!("Try '{} --help' for more information.", display_name(prog));
        exit::USAGE
    };
    let conflict_code = match &args.conflict_exit_code {
        None => 1,
        Some(s) => match parse_s32(s) {
            None => return usage(&format!("invalid exit code: '{s}'")),
            Some(n) if !(0..=255).contains(&n) => {
                return usage("exit code out of range (expected 0 to 255)");
            }
            Some(n) => n as u8,
        },
    };
    let timer = match &args.timeout {
        None => None,
        Some(s) => match parse_secs(s) {
            Some(t) => Some(t),
            None => return usage(&format!("invalid timeout value: '{s}'")),
        },
    };
    if args.no_fork && args.close {
        return usage("the --no-fork and --close options are incompatible");
    }
    let target = match args.args.as_slice() {
        [] => return usage("requires file descriptor, file or directory"),
        [one] => match one.to_str().and_then(parse_s32) {
            Some(fd) => Target::Fd(fd),
            None => {
                return usage(&format!(
                    "bad file descriptor: '{}' (to lock a file, give a command to run: \
                     {} FILE COMMAND)",
                    one.to_string_lossy(),
                    display_name(prog)
                ));
            }
        },
        [path, flag, rest @ ..] if flag == "-c" || flag == "--command" => match rest {
            [string] => Target::File {
                path: path.clone(),
                program: Program::Shell(string.clone()),
            },
            _ => {
                return usage(&format!(
                    "{} requires exactly one command argument",
                    flag.to_string_lossy()
                ));
            }
        },
        [path, argv @ ..] => Target::File {
            path: path.clone(),
            program: Program::Argv(argv.to_vec()),
        },
    };
    let mode = if args.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let mut opts = LockOptions::new();
    opts.backend(if args.fcntl {
        Backend::OfdFcntl
    } else {
        Backend::Flock
    });
    // flock(1) creates lock files 0666 (minus the umask) and follows
    // symlinks; so does its drop-in (to lock, never to create or write).
    opts.permissions(0o666).follow_symlinks(true);
    let (lock, program) = match target {
        Target::File { path, program } => match opts.open(&path) {
            Ok(l) => (l, Some(program)),
            Err(e) => {
                let code = match &e {
                    Error::Io {
                        op: holdfast::IoOp::Open,
                        source,
                        ..
                    } => exit::flock::open_code(source),
                    _ => exit::NO_INPUT,
                };
                let why = match &e {
                    Error::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound
                            && std::fs::symlink_metadata(&path)
                                .is_ok_and(|m| m.file_type().is_symlink()) =>
                    {
                        format!(
                            "{} (it is a symbolic link to a missing file; holdfast does not \
                             create a file through a link)",
                            strerror(source)
                        )
                    }
                    Error::Io { source, .. } => strerror(source),
                    other => exit::for_error(other).1,
                };
                eprintln!(
                    "{prog}: cannot open lock file {}: {why}",
                    holdfast::text::os_str(&path)
                );
                return code;
            }
        },
        Target::Fd(fd) => match opts.open_inherited(fd) {
            Ok(l) => (l, None),
            Err(Error::Io { source, .. }) => {
                eprintln!("{prog}: {fd}: {}", strerror(&source));
                return exit::flock::lock_code(&source);
            }
            Err(e) => {
                eprintln!("{prog}: {fd}: {e}");
                return exit::DATA_ERR;
            }
        },
    };
    let shown = || match &program {
        Some(_) => holdfast::text::path(lock.path()).into_owned(),
        None => holdfast::text::os_str(&args.args[0]).into_owned(),
    };
    let wait = match (args.nonblock, timer) {
        (true, _) | (false, Some(Timer::NonBlock)) => Wait::NoWait,
        (false, Some(Timer::Refused)) => {
            eprintln!(
                "{prog}: cannot set up timer: invalid timeout '{}' (it must be a finite, \
                 non-negative number of seconds)",
                args.timeout.as_deref().unwrap_or_default()
            );
            return exit::OS_ERR;
        }
        (false, Some(Timer::Wait(d))) => Wait::Timeout(d),
        (false, None) => Wait::Forever,
    };
    let started = Instant::now();
    let guard = if args.unlock {
        if let Err(e) = lock.force_unlock() {
            return lock_failure(prog, &shown(), &e);
        }
        None
    } else {
        let show = if args.verbose {
            Show::Always
        } else {
            Show::OnTerminal
        };
        match waiting::acquire(&lock, mode, wait, show) {
            Ok(g) => Some(g),
            Err(e @ Error::WouldBlock { .. }) => {
                if args.verbose {
                    eprintln!("{prog}: failed to get lock: {}", e.holders());
                }
                return conflict_code;
            }
            Err(e @ Error::Timeout { .. }) => {
                if args.verbose {
                    eprintln!("{prog}: timeout while waiting to get lock: {}", e.holders());
                }
                return conflict_code;
            }
            Err(e) => return lock_failure(prog, &shown(), &e),
        }
    };
    if args.verbose {
        let took = started.elapsed();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{prog}: getting lock took {}.{:06} seconds",
            took.as_secs(),
            took.subsec_micros()
        );
        if let Some(p) = &program {
            let _ = writeln!(out, "{prog}: executing {}", p.name());
        }
        let _ = out.flush();
    }
    let Some(program) = program else {
        // The FD form: the lock belongs to the descriptor the caller keeps
        // open; dropping the guard would release it for everyone.
        if let Some(g) = guard {
            std::mem::forget(g);
        }
        return exit::OK;
    };
    let token = guard.as_ref().and_then(|g| g.token());
    let launch = Launch {
        lock_fd: guard.as_ref().filter(|_| !args.close).map(|g| g.as_fd()),
        token,
        keeps_lock_file: false,
        forward_signals: false,
    };
    if args.no_fork {
        let e = launch.exec(&program);
        eprintln!(
            "{prog}: failed to execute {}: {}",
            program.name(),
            strerror(&e)
        );
        return exit::flock::exec_code(&e);
    }
    let status = match launch.run(&program) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{prog}: failed to execute {}: {}",
                program.name(),
                strerror(&e)
            );
            return exit::flock::exec_code(&e);
        }
    };
    drop(guard);
    exit::for_child(status)
}

fn display_name(prog: &str) -> &'static str {
    if prog == "flock" {
        "flock"
    } else {
        "holdfast flock"
    }
}

fn lock_failure(prog: &str, shown: &str, e: &Error) -> u8 {
    match e {
        Error::Io { source, .. } => {
            eprintln!("{prog}: {shown}: {}", strerror(source));
            exit::flock::lock_code(source)
        }
        other => {
            eprintln!("{prog}: {shown}: {other}");
            exit::DATA_ERR
        }
    }
}

/// Whether `argv[0]` names this program `flock` (a symlink to holdfast).
pub fn invoked_as_flock(argv0: &OsStr) -> bool {
    std::path::Path::new(argv0).file_name() == Some(OsStr::new("flock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_as_flock_reads_them() {
        let w = |s| parse_secs(s);
        assert_eq!(w("5"), Some(Timer::Wait(Duration::from_secs(5))));
        assert_eq!(w("0.25"), Some(Timer::Wait(Duration::from_millis(250))));
        assert_eq!(w(" 1e-1"), Some(Timer::Wait(Duration::from_millis(100))));
        assert_eq!(w("0x10"), Some(Timer::Wait(Duration::from_secs(16))));
        assert_eq!(w("0x1.8"), Some(Timer::Wait(Duration::from_millis(1500))));
        assert_eq!(w("+2"), Some(Timer::Wait(Duration::from_secs(2))));
        assert_eq!(w("0"), Some(Timer::NonBlock));
        assert_eq!(w("0.0000001"), Some(Timer::NonBlock), "below a microsecond");
        assert_eq!(w("-0"), Some(Timer::NonBlock));
        assert_eq!(w("-1"), Some(Timer::Refused));
        assert_eq!(w("inf"), Some(Timer::Refused));
        assert_eq!(w("nan"), Some(Timer::Refused));
        assert_eq!(w("1e20"), Some(Timer::Refused));
        assert_eq!(w("abc"), None);
        assert_eq!(w("1x"), None);
        assert_eq!(w("5s"), None, "flock(1) takes plain seconds only");
        assert_eq!(w(""), None);
        assert_eq!(w("1 "), None, "trailing garbage");
        assert_eq!(w("--1"), None);
    }

    #[test]
    fn exit_codes_and_fds_as_strtos32() {
        assert_eq!(parse_s32("42"), Some(42));
        assert_eq!(parse_s32(" 9"), Some(9));
        assert_eq!(parse_s32("+3"), Some(3));
        assert_eq!(parse_s32("-1"), Some(-1));
        assert_eq!(parse_s32("9x"), None);
        assert_eq!(parse_s32("99999999999"), None);
    }

    #[test]
    fn strerror_drops_the_rust_suffix() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(strerror(&e), "No such file or directory");
    }

    #[test]
    fn argv0_flock() {
        assert!(invoked_as_flock(OsStr::new("/usr/local/bin/flock")));
        assert!(invoked_as_flock(OsStr::new("flock")));
        assert!(!invoked_as_flock(OsStr::new("holdfast")));
        assert!(!invoked_as_flock(OsStr::new("flockx")));
    }
}
