//! A throwaway PostgreSQL server for tests: `initdb` in a temp dir, the
//! server on a Unix socket in that dir and on a free 127.0.0.1 port,
//! stopped (SIGINT, its fast shutdown) by pid when dropped.
//!
//! `initdb` refuses to run as root, so as root the server runs as the
//! `postgres` user through `setpriv`. A small `sh` between the test and
//! the server stops the server when the test process exits (its stdin, a
//! pipe from the test, closes), so a server kept in a `static` (never
//! dropped) does not outlive the test binary. The binaries are found in `HOLDFAST_PG_BINDIR`, then
//! `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
//! Without them the tests that need a server are skipped with a message,
//! unless `HOLDFAST_REQUIRE_POSTGRES=1` (set by `scripts/test`, which
//! installs PostgreSQL) makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Dir, wait_for};

/// The superuser's password on TCP (the Unix socket trusts everyone).
pub const PASSWORD: &str = "holdfast-secret";

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct PgServer {
    dir: Dir,
    bindir: PathBuf,
    port: u16,
    /// The sh that runs the server (see `start`).
    child: std::process::Child,
    /// Its stdin: closing it stops the server.
    lifeline: Option<std::process::ChildStdin>,
    as_postgres: bool,
}

fn bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HOLDFAST_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if d.join("initdb").is_file() {
            return Some(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The server of this test process: started by the first test that asks,
/// shared by the rest (each uses its own database, see [`database`]);
/// `None` as [`PgServer::start`] says.
pub fn server() -> Option<&'static PgServer> {
    static SERVER: std::sync::OnceLock<Option<PgServer>> = std::sync::OnceLock::new();
    SERVER.get_or_init(PgServer::start).as_ref()
}

/// A fresh (dropped and created) database `name` on [`server`], and its
/// URL; `None` when there is no server.
pub fn database(name: &str) -> Option<(&'static PgServer, String)> {
    let s = server()?;
    s.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    s.psql("postgres", &format!("CREATE DATABASE {name}"));
    Some((s, s.url(name)))
}

/// SQL counting the sessions waiting (not granted) for the advisory lock
/// whose 64-bit key is `key` (a number, or an SQL expression giving one).
pub fn advisory_waiters_sql(key: impl std::fmt::Display) -> String {
    format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND ((classid::int8 << 32) | objid::int8) = {key}"
    )
}

impl PgServer {
    /// Starts a server, or returns `None` (after saying why on stderr) if
    /// PostgreSQL is not installed and not required.
    pub fn start() -> Option<PgServer> {
        Self::start_with(None)
    }

    /// Starts a server that also accepts TLS on its TCP port (`ssl=on`),
    /// presenting `tls.server_cert` (for 127.0.0.1 and `localhost`, signed
    /// by `tls.ca`); `None` as for [`PgServer::start`], or if the
    /// `openssl`-made files are missing.
    pub fn start_tls(tls: &crate::etcd::TlsFiles) -> Option<PgServer> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&crate::etcd::TlsFiles>) -> Option<PgServer> {
        let Some(bindir) = bindir() else {
            if std::env::var_os("HOLDFAST_REQUIRE_POSTGRES").is_some_and(|v| v == "1") {
                panic!(
                    "PostgreSQL is required (HOLDFAST_REQUIRE_POSTGRES=1) but no initdb was \
                     found: run scripts/install-deps as root, or set HOLDFAST_PG_BINDIR"
                );
            }
            eprintln!(
                "skipped: no PostgreSQL server binaries (scripts/install-deps installs them)"
            );
            return None;
        };
        let dir = Dir::new();
        let as_postgres = rustix_is_root();
        if as_postgres {
            let st = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(st.success(), "chown the server's temp dir to postgres");
        }
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_postgres {
            let _ = Command::new("chown").arg("postgres").arg(&pwfile).status();
        }
        let mut ssl_args = Vec::new();
        if let Some(tls) = tls {
            // The server refuses a key that others can read, and reads
            // both files as its own user.
            use std::os::unix::fs::PermissionsExt;
            let (cert, key) = (dir.join("server.pem"), dir.join("server-key.pem"));
            std::fs::copy(&tls.server_cert, &cert).unwrap();
            std::fs::copy(&tls.server_key, &key).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if as_postgres {
                let st = Command::new("chown")
                    .arg("postgres")
                    .args([&cert, &key])
                    .status()
                    .expect("run chown");
                assert!(st.success(), "chown the server's certificate to postgres");
            }
            ssl_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let data = dir.join("data");
        let out = run_as(as_postgres, &bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A port another process grabs between our probe and the server's
        // bind makes the start fail with "could not bind": rare enough to
        // report rather than retry.
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        // The server runs under a small sh that stops it (SIGINT) and
        // removes its directory as soon as its stdin closes: when the test process exits, however it
        // exits, even if the PgServer is in a static that is never dropped.
        // The server stays the sh's unreaped child until then, so the pid
        // it signals cannot have been reused.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "\"$@\" & pid=$!; read -r _ || :; kill -INT \"$pid\" 2>/dev/null; wait \"$pid\"; \
                 rm -rf \"$HOLDFAST_PG_TEMP\"",
                "sh",
            ])
            .args(run_as_argv(as_postgres, &bindir.join("postgres")))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=16MB",
            ])
            .args(&ssl_args)
            .env("HOLDFAST_PG_TEMP", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let lifeline = child.stdin.take();
        let mut server = PgServer {
            dir,
            bindir,
            port,
            child,
            lifeline,
            as_postgres,
        };
        let log = server.dir.join("server.log");
        let ready = wait_for(
            "the PostgreSQL server to start",
            Duration::from_secs(60),
            || {
                if let Ok(Some(_)) = server.child.try_wait() {
                    return Some(false);
                }
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("ready to accept connections")
                    .then_some(true)
            },
        );
        assert!(
            ready,
            "the PostgreSQL server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(server)
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's bin directory (psql, pg_ctl).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// A URL for the superuser over the Unix socket (trusted, no password)
    /// to database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@{}:{}/{db}",
            percent_encode(&self.dir.path().to_string_lossy()),
            self.port
        )
    }

    /// A URL over TCP for `user` with `password` (scram-sha-256).
    pub fn tcp_url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL as the superuser through `psql` on the socket; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The pid of the sh that runs the server and stops it when this
    /// process exits.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server was started as the `postgres` user (we are root).
    pub fn runs_as_postgres(&self) -> bool {
        self.as_postgres
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Closing the lifeline makes the sh send SIGINT, PostgreSQL's fast
        // shutdown (ends sessions, stops cleanly), and wait for it.
        drop(self.lifeline.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// `program` as argv, through `setpriv` to the postgres user as root
/// (`setpriv` execs, so the pid is the program's).
fn run_as_argv(as_postgres: bool, program: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = Vec::new();
    if as_postgres {
        for a in [
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ] {
            v.push(a.into());
        }
    }
    v.push(program.into());
    v
}

fn run_as(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
