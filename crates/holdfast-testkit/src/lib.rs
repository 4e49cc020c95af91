//! Test support for holdfast's multi-process tests.
//!
//! - [`Dir`]: a unique temporary directory per test.
//! - [`Child`]: a spawned helper process whose stdout is read line by line
//!   with a bounded wait (tests synchronise on what children print, never on
//!   sleeps).
//! - [`wait_for`]: poll a condition with a deadline and a message that says
//!   what was awaited.
//! - [`kernel_waiters`] / [`kernel_holders`]: read `/proc/locks` to see that a
//!   process is really blocked on (or holding) a lock.
//!
//! The helper binary (`holdfast-helper`, see `src/bin/holdfast-helper/`) is
//! what the child processes run.

pub mod etcd;
pub mod fuzz;
pub mod postgres;
mod python;
pub use etcd::Etcd;
pub use python::{peer_python, peer_script};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A unique temporary directory, removed on drop.
#[derive(Debug)]
pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// Creates a fresh directory (under `$TMPDIR`).
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::Builder::new()
                .prefix("holdfast-test-")
                .tempdir()
                .expect("create a temp dir"),
        }
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Dir {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `cond` until it returns `Some`, or panics after `timeout` saying
/// what it waited for. The pause between polls is 1 ms: this is a test
/// synchronisation aid, never part of the library.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A running child process with line-buffered stdout.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Child {
    /// Spawns `cmd` with piped stdin and stdout (stderr inherited).
    pub fn spawn(mut cmd: Command) -> Child {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child {
            child,
            lines: rx,
            what,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or panics after `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(e) => panic!("no line from {} within {timeout:?}: {e}", self.what),
        }
    }

    /// Waits for a line starting with `prefix` (skipping others), returns it.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => continue,
                Err(e) => panic!(
                    "no line starting with {prefix:?} from {} within {timeout:?}: {e}",
                    self.what
                ),
            }
        }
    }

    /// A line if one is already there or arrives within `timeout`.
    pub fn try_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Writes a line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush to child");
    }

    /// Closes the child's stdin (helpers treat that as "release and exit").
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let what = self.what.clone();
        wait_for(&format!("{what} to exit"), timeout, || {
            self.child.try_wait().expect("try_wait")
        })
    }

    /// Whether the child has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of `/proc/locks` for a file: (pid, exclusive, waiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcLock {
    /// The pid the kernel names (-1 for OFD locks).
    pub pid: i64,
    /// WRITE rather than READ.
    pub exclusive: bool,
    /// A blocked request (`->`), not a held lock.
    pub waiting: bool,
}

/// The `/proc/locks` lines for `path`'s inode.
///
/// The kernel serves `/proc/locks` a page per `read` and walks its list of
/// locks afresh for each, so a table read in several walks can miss a line
/// when other locks come and go meanwhile (seen under load). The table is
/// read with a large buffer (one walk when it fits in a page); when it took
/// several, it is read again until two consecutive reads return the same
/// whole table (at most 6 reads), keeping every line any read showed (as
/// the library's own reader does). Two reads that agree only on this
/// inode's lines prove nothing: both can skip the same held lock.
pub fn proc_locks(path: &Path) -> Vec<ProcLock> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    // SAFETY-free: major/minor via libc macros.
    let (maj, min) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let want = format!("{maj:02x}:{min:02x}:{}", meta.ino());
    let (mut text, walks) = read_lock_table();
    let mut seen = parse_proc_locks(&text, &want);
    if walks > 1 {
        for _ in 1..6 {
            let next = read_lock_table().0;
            let again = parse_proc_locks(&next, &want);
            if next == text {
                break;
            }
            text = next;
            for l in &again {
                let n = again.iter().filter(|o| *o == l).count();
                if seen.iter().filter(|o| *o == l).count() < n {
                    seen.push(*l);
                }
            }
        }
    }
    seen
}

/// `/proc/locks` (empty if unreadable) and how many `read` calls, each a
/// walk of the kernel's list, returned text.
fn read_lock_table() -> (String, usize) {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open("/proc/locks") else {
        return (String::new(), 0);
    };
    let mut chunk = vec![0u8; 64 * 1024];
    let (mut text, mut walks) = (Vec::new(), 0);
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&chunk[..n]);
                walks += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), walks)
}

/// The lines of `text` (a `/proc/locks`) on the inode `want`
/// (`MAJ:MIN:INODE`).
fn parse_proc_locks(text: &str, want: &str) -> Vec<ProcLock> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let waiting = f[1] == "->";
        if waiting {
            f.remove(1);
        }
        if f.get(5) != Some(&want) {
            continue;
        }
        out.push(ProcLock {
            pid: f[4].parse().unwrap_or(0),
            exclusive: f[3] == "WRITE",
            waiting,
        });
    }
    out
}

/// Pids blocked waiting for a lock on `path`.
pub fn kernel_waiters(path: &Path) -> Vec<i64> {
    proc_locks(path)
        .into_iter()
        .filter(|l| l.waiting)
        .map(|l| l.pid)
        .collect()
}

/// Pids holding a lock on `path`.
pub fn kernel_holders(path: &Path) -> Vec<i64> {
    proc_locks(path)
        .into_iter()
        .filter(|l| !l.waiting)
        .map(|l| l.pid)
        .collect()
}

/// What a command printed and how it ended (see [`run_to_end`]).
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code, or -1 if a signal ended it.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs `cmd` with stdin from /dev/null until it exits (panicking after
/// `timeout`, after killing it), collecting stdout and stderr as they come so a chatty child
/// never blocks on a full pipe.
pub fn run_to_end(cmd: &mut Command, timeout: Duration) -> Output {
    let (status, stdout, stderr) = run_to_end_raw(cmd, timeout);
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// [`run_to_end`], with stdout and stderr as the bytes written (for tests
/// of what a command prints, UTF-8 or not).
pub fn run_to_end_raw(cmd: &mut Command, timeout: Duration) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = read(Box::new(child.stdout.take().expect("stdout")));
    let err = read(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            // Never leave a hung (or spinning) child behind a failed test.
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?} waiting for {what} to exit (killed it)");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// Reads `r` to its end on a thread; join the handle for the text.
pub fn read_to_string_in_background(
    mut r: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// What a process writes to a pipe, read on a thread while it runs, for
/// output awaited (with [`wait_for`]) before the process exits.
#[derive(Debug)]
pub struct Collector {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collector {
    /// Starts reading `r` (a child's stdout or stderr) to its end.
    pub fn new(mut r: impl std::io::Read + Send + 'static) -> Collector {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = buf.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().expect("collector").extend_from_slice(&chunk[..n]);
            }
        });
        Collector { buf, reader }
    }

    /// What has arrived so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().expect("collector")).into_owned()
    }

    /// Everything, once the writer has closed its end (join after the
    /// process exited).
    pub fn finish(self) -> String {
        let Collector { buf, reader } = self;
        reader.join().expect("collector thread");
        String::from_utf8_lossy(&buf.lock().expect("collector")).into_owned()
    }
}

/// Whether the tests run as root (some plant files as another user, some
/// need permissions root ignores).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `p` as a `&str`, for argument lists (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 test path")
}

/// Makes a FIFO at `p` (with mkfifo(1)), or panics saying why.
pub fn mkfifo(p: &Path) {
    let out = run_to_end(Command::new("mkfifo").arg(p), Duration::from_secs(30));
    assert_eq!(out.code(), 0, "mkfifo {}: {out:?}", p.display());
}

/// util-linux flock(1), which the tests need (`scripts/install-deps`
/// installs util-linux).
pub fn util_linux_flock() -> &'static str {
    for p in ["/usr/bin/flock", "/bin/flock", "/usr/local/bin/flock"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("util-linux flock(1) is needed for the compatibility tests: apt-get install util-linux");
}
