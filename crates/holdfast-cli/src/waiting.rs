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

use std::cell::RefCell;

use holdfast::acquire::{WaitObserver, Waiting};
use holdfast::{
    FifoGuard, FifoLock, Holders, Lock, LockFile, LockFileGuard, LockGuard, Mode, Wait,
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

/// The waiting line as a [`WaitObserver`]: the library tells it when an
/// acquisition starts to wait (after its first attempt found the lock
/// taken) and when the wait is over; the wait itself is the library's, so
/// there is one attempt, one clock (a timeout counts from the start of the
/// call) and no holder lookup unless the line is shown.
struct Line {
    show: Show,
    painter: RefCell<Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>>,
}

impl Line {
    fn new(show: Show) -> Line {
        Line {
            show,
            painter: RefCell::new(None),
        }
    }
}

impl WaitObserver for Line {
    fn wait_started(&self, w: &Waiting) {
        let Some(style) = style(self.show) else {
            return;
        };
        let (done, stop) = mpsc::channel::<()>();
        let w = w.clone();
        let painter = thread::spawn(move || {
            paint(
                w.path(),
                &|| w.holders(),
                w.mode(),
                w.started(),
                style,
                &stop,
            );
        });
        *self.painter.borrow_mut() = Some((done, painter));
    }

    fn wait_ended(&self) {
        if let Some((done, painter)) = self.painter.borrow_mut().take() {
            drop(done); // wakes the painter, which erases its line
            let _ = painter.join();
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.wait_ended();
    }
}

/// How to show the line, if at all.
fn style(show: Show) -> Option<Style> {
    match (show, std::io::stderr().is_terminal()) {
        (Show::Never, _) | (Show::OnTerminal, false) => None,
        (_, true) => Some(Style::Live),
        (Show::Always, false) => Some(Style::Lines),
    }
}

/// Acquires `lock` as [`Lock::acquire`] does, showing the waiting line as
/// `show` says ([`Lock::acquire_observed`]). The uncontended path costs one
/// lock call and no thread.
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
    lock.acquire_observed(mode, wait, &Line::new(show))
}

/// [`acquire`] for a [`FifoLock`]: the line appears once the acquisition
/// waits in line for a holder.
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
    lock.acquire_observed(mode, wait, &Line::new(show))
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
    lock.acquire_observed(Mode::Exclusive, wait, &Line::new(show))
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
    let Some(style) = style(show) else {
        return f(&mut Painter::default());
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

/// [`around`] for a lock that is not a local file (a lock service):
/// `holders` says who holds it, `location` and `mode` name it in the line.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub fn around_with<T>(
    location: &Path,
    mode: Mode,
    show: Show,
    holders: &(dyn Fn() -> Holders + Sync),
    f: impl FnOnce(&mut Painter) -> T,
) -> T {
    let tty = std::io::stderr().is_terminal();
    let style = match (show, tty) {
        (Show::Never, _) | (Show::OnTerminal, false) => return f(&mut Painter::default()),
        (_, true) => Style::Live,
        (Show::Always, false) => Style::Lines,
    };
    let started = Instant::now();
    let (done, stop) = mpsc::channel::<()>();
    let (finished_tx, finished) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || {
            paint(location, holders, mode, started, style, &stop);
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
        let (head, shown_path, tail) = parts(
            path,
            mode,
            &holders,
            first_seen.elapsed(),
            SystemTime::now(),
        );
        let text = format!("{head}{shown_path}{tail}");
        let mut err = std::io::stderr().lock();
        let _ = match style {
            Style::Live => write!(err, "\r\x1b[K{}", fit(&head, &shown_path, &tail, width)),
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
#[cfg(test)]
fn line(path: &Path, mode: Mode, holders: &Holders, seen_for: Duration, now: SystemTime) -> String {
    let (head, path, tail) = parts(path, mode, holders, seen_for, now);
    format!("{head}{path}{tail}")
}

/// The waiting line in three parts: what is waited for, the path, and
/// who holds it (so that [`fit`] can shorten the path, never the holder).
fn parts(
    path: &Path,
    mode: Mode,
    holders: &Holders,
    seen_for: Duration,
    now: SystemTime,
) -> (String, String, String) {
    let head = format!("waiting for {} lock on ", mode.with_article());
    let path = holdfast::text::path(path).to_string();
    let mut s = String::new();
    let Some(first) = holders.first() else {
        s.push_str(" — holder unknown");
        s.push_str(&format!(
            ", waited {}",
            holdfast::holder::fmt_duration(seen_for)
        ));
        return (head, path, s);
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
    (head, path, s)
}

/// The shortest a path is cut to before anything else gives way.
const MIN_PATH: usize = 12;

/// The line cut to `width` columns without wrapping (a wrapped line could
/// not be erased with one carriage return). What gives way, in order: the
/// middle of the path (`/srv/…/app.lock`, down to a dozen characters),
/// then the words before it (`waiting: `); the holder (pid and command)
/// never, unless the terminal is too narrow for it alone, when the end of
/// the line is cut.
fn fit(head: &str, path: &str, tail: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(20);
    let len = |s: &str| s.chars().count();
    if len(head) + len(path) + len(tail) <= max {
        return format!("{head}{path}{tail}");
    }
    let short_head = "waiting: ";
    let head = if len(head) + MIN_PATH.min(len(path)) + len(tail) <= max {
        head
    } else {
        short_head
    };
    let room = max.saturating_sub(len(head) + len(tail)).max(MIN_PATH);
    truncate(
        &format!("{head}{}{tail}", middle_ellipsis(path, room)),
        width,
    )
}

/// `path` in at most `max` characters, its middle replaced by `…` (two
/// thirds of what is kept come from the end, where the file name is).
fn middle_ellipsis(path: &str, max: usize) -> String {
    let chars: Vec<char> = path.chars().collect();
    if chars.len() <= max {
        return path.to_owned();
    }
    let keep = max.saturating_sub(1);
    let tail = (keep * 2).div_ceil(3);
    let head = keep - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
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
    fn on_a_narrow_terminal_the_path_loses_its_middle_never_the_holder() {
        let hs = Holders::from(vec![holder(4242, "python3 migrate.py", None)]);
        let path = Path::new("/srv/very/long/deployment/directory/of/the/application/app.lock");
        let (head, p, tail) = parts(
            path,
            Mode::Exclusive,
            &hs,
            Duration::from_secs(3),
            SystemTime::now(),
        );
        let shown = fit(&head, &p, &tail, 80);
        assert!(shown.chars().count() < 80, "{shown}");
        assert!(
            shown.ends_with("— held by pid 4242 (python3 migrate.py) for at least 3s"),
            "{shown}"
        );
        assert!(shown.starts_with("waiting: /srv"), "{shown}");
        assert!(
            shown.contains('…') && shown.contains("app.lock —"),
            "{shown}"
        );
        // With room for the words, only the path gives way.
        let wide = fit(&head, &p, &tail, 120);
        assert!(
            wide.starts_with("waiting for an exclusive lock on /srv/"),
            "{wide}"
        );
        assert!(wide.contains('…') && wide.chars().count() < 120, "{wide}");
        assert!(
            wide.ends_with("(python3 migrate.py) for at least 3s"),
            "{wide}"
        );
        // A line that fits is left alone.
        assert_eq!(fit("a ", "b", " c", 80), "a b c");
        assert_eq!(middle_ellipsis("/abcdefghij", 5), "/…hij");
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
