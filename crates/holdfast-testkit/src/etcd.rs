//! A real etcd for tests: one member or a cluster, on free 127.0.0.1
//! ports, data in a temp dir, stopped by pid when dropped; optionally
//! serving clients over TLS with certificates made by the `openssl`
//! command ([`TlsFiles`]).
//!
//! `scripts/install-deps` installs Debian's `etcd-server` and `etcd-client`
//! (and `scripts/test` sets `HOLDFAST_REQUIRE_ETCD=1`): with that variable
//! set a missing etcd fails the test; without it the test is skipped with
//! a message saying why.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One running etcd member.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    child: Option<std::process::Child>,
}

/// A running etcd (one member or several), stopped on drop.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
}

/// Certificates for an etcd serving clients over TLS, made with the
/// `openssl` command (ECDSA P-256): a CA, a server certificate for
/// 127.0.0.1 and `localhost` signed by it, a client certificate signed by
/// it, and a second, unrelated CA (to show a wrong CA is refused).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server certificate and key.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

impl TlsFiles {
    /// Makes the files in `dir`, or `None` (with a message) if the
    /// `openssl` command is missing (panics when `HOLDFAST_REQUIRE_ETCD` is
    /// set, as for a missing etcd).
    pub fn generate(dir: &Path) -> Option<TlsFiles> {
        let have = Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            if std::env::var_os("HOLDFAST_REQUIRE_ETCD").is_some_and(|v| v != "0") {
                panic!("openssl not found but HOLDFAST_REQUIRE_ETCD is set (Debian openssl)");
            }
            eprintln!("SKIPPED: the openssl command is not installed (Debian openssl)");
            return None;
        }
        let f = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (ca, key, cn) in [
            ("ca.pem", "ca-key.pem", "holdfast test CA"),
            ("other-ca.pem", "other-ca-key.pem", "holdfast unrelated CA"),
        ] {
            let subj = format!("/CN={cn}");
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                key,
                "-out",
                ca,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args);
        }
        for (who, cn, ext) in [
            (
                "server",
                "localhost",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "holdfast", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, cert, extf) = (
                format!("{who}-key.pem"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("{who}.ext"),
            );
            std::fs::write(
                f(&extf),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .expect("write the extensions file");
            let subj = format!("/CN={cn}");
            let mut args = vec!["req", "-new"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(&args);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-set_serial",
                if who == "server" { "2" } else { "3" },
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &extf,
            ]);
        }
        Some(TlsFiles {
            ca: f("ca.pem"),
            server_cert: f("server.pem"),
            server_key: f("server-key.pem"),
            client_cert: f("client.pem"),
            client_key: f("client-key.pem"),
            other_ca: f("other-ca.pem"),
        })
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Whether the `etcd` and `etcdctl` programs are there; if not, says so
/// and returns false (or panics when `HOLDFAST_REQUIRE_ETCD` is set).
pub fn etcd_available() -> bool {
    let ok = [("etcd", "--version"), ("etcdctl", "version")]
        .iter()
        .all(|(p, a)| {
            Command::new(p)
                .arg(a)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if !ok {
        if std::env::var_os("HOLDFAST_REQUIRE_ETCD").is_some_and(|v| v != "0") {
            panic!(
                "etcd/etcdctl not found but HOLDFAST_REQUIRE_ETCD is set: \
                 run scripts/install-deps as root (Debian etcd-server etcd-client)"
            );
        }
        eprintln!(
            "SKIPPED: etcd/etcdctl not installed (Debian etcd-server etcd-client; \
             scripts/install-deps installs them as root)"
        );
    }
    ok
}

impl Etcd {
    /// One member, or `None` (test skipped) if etcd is not installed.
    pub fn start() -> Option<Etcd> {
        Etcd::cluster(1)
    }

    /// `n` members forming one cluster, or `None` if etcd is not installed.
    pub fn cluster(n: usize) -> Option<Etcd> {
        Etcd::cluster_with(n, None)
    }

    /// One member serving clients over TLS only (`https://`), asking them
    /// for a certificate signed by `tls.ca`; `None` if etcd is missing.
    pub fn start_tls(tls: &TlsFiles) -> Option<Etcd> {
        Etcd::cluster_with(1, Some(tls.clone()))
    }

    fn cluster_with(n: usize, tls: Option<TlsFiles>) -> Option<Etcd> {
        if !etcd_available() {
            return None;
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        // In memory where there is /dev/shm: etcd fsyncs every write, and
        // the tests are about locking, not about this machine's disk.
        let dir = tempfile::Builder::new()
            .prefix("holdfast-etcd-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::Builder::new().prefix("holdfast-etcd-").tempdir())
            .expect("a temp dir for etcd");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let log =
                std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("etcd log");
            let mut etcd = Command::new("etcd");
            if let Some(t) = &tls {
                etcd.arg("--cert-file")
                    .arg(&t.server_cert)
                    .arg("--key-file")
                    .arg(&t.server_key)
                    .arg("--trusted-ca-file")
                    .arg(&t.ca)
                    .arg("--client-cert-auth");
            }
            let child = etcd
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(format!("{name}.data")))
                .arg(format!(
                    "--listen-client-urls={scheme}://127.0.0.1:{client}"
                ))
                .arg(format!(
                    "--advertise-client-urls={scheme}://127.0.0.1:{client}"
                ))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={initial}"))
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "holdfast-test"])
                .args(["--log-level", "warn", "--logger", "zap"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("start etcd");
            members.push(Member {
                name,
                client: *client,
                child: Some(child),
            });
        }
        let etcd = Etcd { members, dir, tls };
        etcd.wait_healthy(Duration::from_secs(30));
        Some(etcd)
    }

    fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self
                .etcdctl()
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not become healthy within {timeout:?}; logs in {}: {}",
                    self.dir.path().display(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The logs of every member, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                format!("--- {} ---\n{text}", m.name)
            })
            .collect()
    }

    /// `HOST:PORT` of each live member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// `etcd://HOST:PORT,...` (`etcds://` with TLS) of every member (dead
    /// ones too: clients must cope).
    pub fn url(&self) -> String {
        let all: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", all.join(","))
    }

    /// `etcdctl` (API v3) aimed at the live members (with the client
    /// certificate under TLS).
    pub fn etcdctl(&self) -> Command {
        let mut c = Command::new("etcdctl");
        let endpoints: Vec<String> = match &self.tls {
            Some(t) => {
                c.arg("--cacert")
                    .arg(&t.ca)
                    .arg("--cert")
                    .arg(&t.client_cert)
                    .arg("--key")
                    .arg(&t.client_key);
                self.endpoints()
                    .iter()
                    .map(|e| format!("https://{e}"))
                    .collect()
            }
            None => self.endpoints(),
        };
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")));
        for v in [
            "ETCDCTL_USER",
            "ETCDCTL_CACERT",
            "ETCDCTL_CERT",
            "ETCDCTL_KEY",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// The index of the current leader, asked of the live members.
    pub fn leader(&self) -> Option<usize> {
        let out = self
            .etcdctl()
            .args(["endpoint", "status", "-w", "fields"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // One block per endpoint: "MemberID" : N ... "Leader" : N ...
        // "Endpoint" : "HOST:PORT" (the endpoint comes last).
        let mut member = None;
        let mut leader = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(" : ") else {
                continue;
            };
            let k = k.trim().trim_matches('"');
            let v = v.trim().trim_matches('"');
            match k {
                "MemberID" => member = Some(v.to_owned()),
                "Leader" => leader = Some(v.to_owned()),
                "Endpoint" => {
                    if member.is_some() && member == leader {
                        return self
                            .members
                            .iter()
                            .position(|m| v.ends_with(&format!(":{}", m.client)));
                    }
                    member = None;
                    leader = None;
                }
                _ => {}
            }
        }
        None
    }

    /// The pid of member `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs member `i` (by its pid) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The temp dir the members keep their data and logs in.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                // SIGTERM by pid, then SIGKILL if it lingers.
                // SAFETY: kill(2) with a pid we spawned and have not reaped.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if c.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
