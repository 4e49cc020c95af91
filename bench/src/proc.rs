//! Spawning worker processes and talking to them line by line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where a worker's code lives.
#[derive(Clone, Debug)]
pub enum Runner {
    /// `holdfast-bench worker IMPL ...` (this binary).
    Rust(&'static str),
    /// `PYTHON bench/peers/SCRIPT IMPL ...`.
    Python {
        /// The peer script under `bench/peers/`.
        script: &'static str,
        /// The implementation name the script understands.
        imp: &'static str,
    },
}

/// Process-wide settings.
#[derive(Clone, Debug)]
pub struct Env {
    /// Python interpreter with the peer libraries, if any.
    pub python: Option<PathBuf>,
    /// Shorter runs.
    pub quick: bool,
}

impl Runner {
    /// Whether this runner can run here.
    pub fn available(&self, env: &Env) -> bool {
        match self {
            Runner::Rust(_) => true,
            Runner::Python { .. } => env.python.is_some(),
        }
    }

    /// The command that starts this worker with `args`.
    pub fn command(&self, env: &Env, args: &[&str]) -> Command {
        match self {
            Runner::Rust(imp) => {
                let mut c = Command::new(std::env::current_exe().expect("current exe"));
                c.arg("worker").arg(imp).args(args);
                c
            }
            Runner::Python { script, imp } => {
                let mut c = Command::new(env.python.as_ref().expect("python"));
                c.arg(peers_dir().join(script)).arg(imp).args(args);
                c
            }
        }
    }
}

/// `bench/peers`.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    /// Spawns a worker with `args` after the implementation name.
    pub fn spawn(runner: &Runner, env: &Env, args: &[&str]) -> Worker {
        Worker::spawn_command(runner.command(env, args))
    }

    /// Spawns a worker from a ready-made command (for scenarios whose
    /// workers take other arguments or environment).
    pub fn spawn_command(mut cmd: Command) -> Worker {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            stdin,
            lines: rx,
        }
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Receives one line (panics after 120 s).
    pub fn recv(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(120))
            .expect("worker answered")
    }

    /// Receives a line `PREFIX VALUE` and returns VALUE.
    pub fn recv_value(&mut self, prefix: &str) -> u64 {
        loop {
            let l = self.recv();
            if let Some(v) = l.strip_prefix(prefix) {
                return v.trim().parse().expect("number");
            }
        }
    }

    /// Closes stdin and waits for exit.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
