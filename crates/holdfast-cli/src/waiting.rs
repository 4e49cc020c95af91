//! Waiting that people can see.
//!
//! When an acquisition has to wait longer than a moment (200 ms) and stderr
//! is a terminal, a live line on stderr says who is in the way:
//!
//! ```text
//! waiting for an exclusive lock on ./app.lock — held by pid 4242 (python3 migrate.py) for 3.2s
//! ```
//!
//! It is redrawn about once a second and erased when the lock is acquired
//! (or the wait fails), so the command's own output starts on a clean line.
//! "for 3.2s" is how long the holder has held the lock, from its holder
//! record when it left one, else a lower bound: how long it has been seen
//! holding it ("for at least 3.2s"). With `--verbose` and stderr not a
//! terminal, a plain line is written instead when the wait starts and when
//! the holder changes. Nothing is ever written to stdout.
//!
//! The wait itself is not turned into polling: the calling thread blocks in
//! the library's kernel wait (woken by the release itself), and a second
//! thread, started only once the lock turned out to be taken, redraws the
//! line on a one-second timer until the main thread tells it to stop.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use holdfast::{
    Error, FifoGuard, FifoLock, Holders, Lock, LockFile, LockFileGuard, LockGuard, Mode, Wait,
};

/// How long a wait may last before it is shown.
const MOMENT: Duration = Duration::from_millis(200);
/// How often the live line is redrawn.
const REFRESH: Duration = Duration::from_secs(1);

/// When to show the waiting line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// Never (`--quiet`).
    Never,
    /// When stderr is a terminal (the default).
    OnTerminal,
    /// Always (`--verbose`): live on a terminal, plain lines elsewhere.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Live,
    Lines,
}

/// Acquires `lock` as [`Lock::acquire`] does, showing the waiting line as
/// `show` says. The first attempt does not wait, so the uncontended path
/// costs one lock call and no thread.
///
/// # Errors
///
/// As [`Lock::acquire`].
pub fn acquire<'l>(
    lock: &'l Lock,
    mode: Mode,
    wait: Wait,
    show: Show,
) -> holdfast::Result<LockGuard<'l>> {
    let started = Instant::now();
    let wait = deadline(wait, started);
    match lock.acquire(mode, Wait::NoWait) {
        Err(Error::WouldBlock { .. }) if wait != Wait::NoWait => {}
        other => return other,
    }
    shown(lock.path(), mode, &|| lock.holders(), started, show, || {
        lock.acquire(mode, wait)
    })
}

/// [`acquire`] for a [`FifoLock`]. There is no first attempt without
/// waiting here: giving up a place in the queue to take a new one would
/// let a later arrival pass. So on a terminal the painter thread starts
/// at once (it stays silent for the first moment, as always).
///
/// # Errors
///
/// As [`FifoLock::acquire`].
pub fn acquire_fifo<'l>(
    lock: &'l FifoLock,
    mode: Mode,
    wait: Wait,
    show: Show,
) -> holdfast::Result<FifoGuard<'l>> {
    let started = Instant::now();
    shown(lock.path(), mode, &|| lock.holders(), started, show, || {
        lock.acquire(mode, wait)
    })
}

/// [`acquire`] for a lock-file lock (always exclusive); the holder shown
/// is the one the lock file names.
///
/// # Errors
///
/// As [`LockFile::acquire`].
pub fn acquire_lockfile<'l>(
    lock: &'l LockFile,
    wait: Wait,
    show: Show,
) -> holdfast::Result<LockFileGuard<'l>> {
    let started = Instant::now();
    let wait = deadline(wait, started);
    match lock.acquire(Wait::NoWait) {
        Err(Error::WouldBlock { .. }) if wait != Wait::NoWait => {}
        other => return other,
    }
    let holders = || -> Holders {
        lock.holder()
            .ok()
            .flatten()
            .into_iter()
            .collect::<Vec<_>>()
            .into()
    };
    shown(
        lock.path(),
        Mode::Exclusive,
        &holders,
        started,
        show,
        || lock.acquire(wait),
    )
}

/// A timeout counts from `started`, not from after the first attempt.
fn deadline(wait: Wait, started: Instant) -> Wait {
    match wait {
        Wait::Timeout(d) => started.checked_add(d).map_or(wait, Wait::Deadline),
        other => other,
    }
}

/// Runs the waiting call `wait` on this thread while a painter thread
/// shows the line (if `show` allows), naming `holders`.
fn shown<G>(
    path: &Path,
    mode: Mode,
    holders: &(dyn Fn() -> Holders + Sync),
    started: Instant,
    show: Show,
    wait: impl FnOnce() -> holdfast::Result<G>,
) -> holdfast::Result<G> {
    let tty = std::io::stderr().is_terminal();
    let style = match (show, tty) {
        (Show::Never, _) | (Show::OnTerminal, false) => return wait(),
        (_, true) => Style::Live,
        (Show::Always, false) => Style::Lines,
    };
    let (done, stop) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || paint(path, holders, mode, started, style, &stop));
        let got = wait();
        drop(done); // wakes the painter, which erases its line; joined here
        got
    })
}

/// Stops the waiting line of [`around`] once the lock is held.
#[derive(Debug, Default)]
pub struct Painter {
    stop: Option<mpsc::Sender<()>>,
    finished: Option<mpsc::Receiver<()>>,
}

impl Painter {
    /// Erases the waiting line (if it was shown) and returns once it is
    /// gone, so that whatever is printed next starts on a clean line.
    /// Further calls do nothing.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(finished) = self.finished.take() {
            // Err when the painter has exited: that is the signal.
            let _ = finished.recv();
        }
    }
}

/// The waiting line for library calls that wait for the lock on
/// `lock_path` inside themselves (run-once, phases), where [`acquire`]
/// cannot be used. `f` runs on this thread; it (or the action it hands to
/// the library) calls [`Painter::stop`] once the lock is held. If the call
/// has not got that far within a moment, the line appears, naming the
/// holder from `holdfast::status` of the lock file. No thread is started
/// unless `show` can show something.
pub fn around<T>(lock_path: &Path, show: Show, f: impl FnOnce(&mut Painter) -> T) -> T {
    let tty = std::io::stderr().is_terminal();
    let style = match (show, tty) {
        (Show::Never, _) | (Show::OnTerminal, false) => return f(&mut Painter::default()),
        (_, true) => Style::Live,
        (Show::Always, false) => Style::Lines,
    };
    let started = Instant::now();
    let (done, stop) = mpsc::channel::<()>();
    let (finished_tx, finished) = mpsc::channel::<()>();
    let holders = || {
        holdfast::status(lock_path)
            .map(|st| st.holders)
            .unwrap_or_default()
    };
    thread::scope(|s| {
        s.spawn(move || {
            paint(lock_path, &holders, Mode::Exclusive, started, style, &stop);
            drop(finished_tx);
        });
        let mut painter = Painter {
            stop: Some(done),
            finished: Some(finished),
        };
        let out = f(&mut painter);
        painter.stop();
        out
    })
}

fn paint(
    path: &Path,
    holders: &dyn Fn() -> Holders,
    mode: Mode,
    started: Instant,
    style: Style,
    stop: &mpsc::Receiver<()>,
) {
    if stop.recv_timeout(MOMENT.saturating_sub(started.elapsed())) != Err(RecvTimeoutError::Timeout)
    {
        return; // acquired (or failed) within a moment: say nothing
    }
    let width = terminal_width();
    // (pid of the first holder, when we first saw it holding)
    let mut seen: Option<(Option<u32>, Instant)> = None;
    loop {
        let holders = holders();
        let pid = holders.first().and_then(|h| h.pid);
        let changed = seen.is_none_or(|(p, _)| p != pid);
        if changed {
            seen = Some((
                pid,
                if seen.is_none() {
                    started
                } else {
                    Instant::now()
                },
            ));
        }
        let first_seen = seen.map_or(started, |(_, t)| t);
        let text = line(
            path,
            mode,
            &holders,
            first_seen.elapsed(),
            SystemTime::now(),
        );
        let mut err = std::io::stderr().lock();
        let _ = match style {
            Style::Live => write!(err, "\r\x1b[K{}", truncate(&text, width)),
            Style::Lines if changed => writeln!(err, "holdfast: {text}"),
            Style::Lines => Ok(()),
        };
        let _ = err.flush();
        drop(err);
        match stop.recv_timeout(REFRESH) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    if style == Style::Live {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}

/// The text of the waiting line. `seen_for` is how long the current
/// holder has been seen holding the lock (the lower bound used when its
/// holder record does not say since when).
pub fn line(
    path: &Path,
    mode: Mode,
    holders: &Holders,
    seen_for: Duration,
    now: SystemTime,
) -> String {
    let mut s = format!(
        "waiting for {} lock on {}",
        mode.with_article(),
        holdfast::text::path(path)
    );
    let Some(first) = holders.first() else {
        s.push_str(" — holder unknown");
        s.push_str(&format!(
            ", waited {}",
            holdfast::holder::fmt_duration(seen_for)
        ));
        return s;
    };
    s.push_str(" — held ");
    if holders.len() > 1 {
        s.push_str("(shared) ");
    }
    s.push_str("by ");
    match first.pid {
        Some(pid) => s.push_str(&format!("pid {pid}")),
        None => s.push_str("an unknown process"),
    }
    if let Some(cmd) = first.command.as_deref().filter(|c| !c.is_empty()) {
        s.push_str(&format!(" ({cmd})"));
    }
    if holders.len() > 1 {
        let others = holders.len() - 1;
        s.push_str(&format!(
            " and {others} other{}",
            if others == 1 { "" } else { "s" }
        ));
    }
    match first.since.and_then(|t| now.duration_since(t).ok()) {
        Some(held) => s.push_str(&format!(" for {}", short_duration(held))),
        None => s.push_str(&format!(" for at least {}", short_duration(seen_for))),
    }
    s
}

/// `850ms` below a second, then `3.2s`, `2m3s`, as the library prints.
fn short_duration(d: Duration) -> String {
    holdfast::holder::fmt_duration(d)
}

/// Cuts `text` to fit a terminal line of `width` columns without wrapping
/// (a wrapped line could not be erased with one carriage return).
fn truncate(text: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(20);
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The terminal's width; `COLUMNS` when the terminal does not know it (a
/// pseudo-terminal nobody sized), else 80.
fn terminal_width() -> usize {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 => ws.ws_col as usize,
        _ => std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&c| c > 0)
            .unwrap_or(80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast::Holder;

    fn holder(pid: u32, cmd: &str, since: Option<SystemTime>) -> Holder {
        let mut h = Holder::default();
        h.pid = Some(pid);
        h.command = Some(cmd.into());
        h.since = since;
        h
    }

    #[test]
    fn names_the_holder_and_how_long() {
        let now = SystemTime::now();
        let hs = Holders::from(vec![holder(
            4242,
            "python3 migrate.py",
            Some(now - Duration::from_millis(3200)),
        )]);
        assert_eq!(
            line(
                Path::new("./app.lock"),
                Mode::Exclusive,
                &hs,
                Duration::from_secs(1),
                now
            ),
            "waiting for an exclusive lock on ./app.lock — held by pid 4242 (python3 migrate.py) for 3.2s"
        );
    }

    #[test]
    fn without_a_record_the_time_is_a_lower_bound() {
        let hs = Holders::from(vec![holder(7, "flock l sleep 9", None)]);
        let s = line(
            Path::new("l"),
            Mode::Shared,
            &hs,
            Duration::from_secs(2),
            SystemTime::now(),
        );
        assert_eq!(
            s,
            "waiting for a shared lock on l — held by pid 7 (flock l sleep 9) for at least 2s"
        );
    }

    #[test]
    fn shared_holders_and_unknown_holders() {
        let hs = Holders::from(vec![
            holder(1, "a", None),
            holder(2, "b", None),
            holder(3, "c", None),
        ]);
        let s = line(
            Path::new("l"),
            Mode::Exclusive,
            &hs,
            Duration::ZERO,
            SystemTime::now(),
        );
        assert!(
            s.contains("held (shared) by pid 1 (a) and 2 others for at least 0ms"),
            "{s}"
        );
        let s = line(
            Path::new("l"),
            Mode::Exclusive,
            &Holders::new(),
            Duration::from_secs(5),
            SystemTime::now(),
        );
        assert!(s.ends_with("— holder unknown, waited 5s"), "{s}");
    }

    #[test]
    fn truncation_keeps_one_line() {
        assert_eq!(truncate("short", 80), "short");
        let long = "x".repeat(200);
        let t = truncate(&long, 40);
        assert_eq!(t.chars().count(), 39);
        assert!(t.ends_with('…'));
    }
}
