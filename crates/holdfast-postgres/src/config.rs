//! Where the server is: a libpq-style URL (or `key=value` string) plus
//! libpq's `PG*` environment variables, and the TLS connector.

use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast::{Error, Result};
use postgres::config::{Host, SslMode};

/// The `PG*` variables holdfast reads, as libpq does: each fills in what the
/// URL leaves out.
pub const ENV_VARS: [&str; 9] = [
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGSSLMODE",
    "PGSSLROOTCERT",
];

/// Socket directories tried, in order, when neither the URL nor `PGHOST`
/// names a host (libpq's compiled-in default is the first on Debian).
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// How long a connection attempt may take unless `connect_timeout` or
/// `PGCONNECT_TIMEOUT` says otherwise (libpq waits forever; a lock tool
/// should say that the server is unreachable instead).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `sslmode` asked for, including libpq's verifying modes that the
/// client's own parser does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tls {
    Disable,
    /// `prefer`/`require`: encrypt, do not verify (as libpq).
    Unverified {
        required: bool,
    },
    /// `verify-ca`/`verify-full`: verify the chain (and the host name).
    Verified {
        host_name: bool,
    },
}

/// A parsed connection target.
pub(crate) struct Target {
    pub config: postgres::Config,
    pub tls: Tls,
    pub root_cert: Option<PathBuf>,
    /// `postgres://user@host:port/db`, no password: for messages.
    pub display: String,
    /// Built on first use and kept: building one loads the system's
    /// trust store, tens of milliseconds.
    #[cfg(feature = "tls")]
    connector: std::sync::OnceLock<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.display)
            .field("tls", &self.tls)
            .field("root_cert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

/// Splits `url` into the part `postgres::Config` parses and the TLS
/// options holdfast handles itself (`sslmode`, `sslrootcert`).
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut sslmode, mut rootcert) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", v)) => sslmode = Some(percent_decode(v)),
                Some(("sslrootcert", v)) => rootcert = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rebuilt, sslmode, rootcert)
    } else {
        // key=value form: values with quotes are rare for these two keys.
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some(("sslmode", v)) => sslmode = Some(v.trim_matches('\'').to_owned()),
                Some(("sslrootcert", v)) => rootcert = Some(v.trim_matches('\'').to_owned()),
                _ => kept.push(word),
            }
        }
        (kept.join(" "), sslmode, rootcert)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid(url_shown: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        path: PathBuf::from(url_shown),
        reason: reason.into(),
    }
}

/// The URL with any password replaced, for messages about a URL that did
/// not parse.
pub(crate) fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        && let Some((cred, after)) = rest.split_once('@')
        && let Some((user, _)) = cred.split_once(':')
    {
        let scheme = &url[..url.len() - rest.len()];
        return format!("{scheme}{user}:***@{after}");
    }
    url.to_owned()
}

impl Target {
    /// Parses `url` (`postgres://`, `postgresql://` or libpq `key=value`),
    /// filling in what it leaves out from `env` (the `PG*` variables) and
    /// libpq's defaults.
    pub(crate) fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
        let shown = redact(url);
        let (rest, url_sslmode, url_rootcert) = split_tls_params(url);
        let mut config: postgres::Config = rest
            .parse()
            .map_err(|e| invalid(&shown, format!("not a PostgreSQL connection URL: {e}")))?;
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(hosts) => {
                    for h in hosts.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    let dir = SOCKET_DIRS
                        .iter()
                        .find(|d| Path::new(d).is_dir())
                        .copied()
                        .unwrap_or("localhost");
                    config.host(dir);
                }
            }
        }
        if config.get_ports().is_empty()
            && let Some(p) = env("PGPORT")
        {
            let port = p
                .parse()
                .map_err(|_| invalid(&shown, format!("PGPORT={p:?} is not a port number")))?;
            config.port(port);
        }
        if config.get_user().is_none() {
            match env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
            {
                Some(u) => {
                    config.user(&u);
                }
                None => {
                    return Err(invalid(
                        &shown,
                        "no user name: put USER@ in the URL or set PGUSER",
                    ));
                }
            }
        }
        if config.get_password().is_none()
            && let Some(p) = env("PGPASSWORD")
        {
            config.password(p);
        }
        if config.get_dbname().is_none() {
            let db =
                env("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or("").to_owned());
            config.dbname(&db);
        }
        if config.get_application_name().is_none() {
            config.application_name(env("PGAPPNAME").as_deref().unwrap_or("holdfast"));
        }
        if config.get_connect_timeout().is_none() {
            let t = match env("PGCONNECT_TIMEOUT") {
                Some(v) => match v.parse::<u64>() {
                    Ok(0) => None,
                    Ok(s) => Some(Duration::from_secs(s.max(2))),
                    Err(_) => {
                        return Err(invalid(
                            &shown,
                            format!("PGCONNECT_TIMEOUT={v:?} is not a number of seconds"),
                        ));
                    }
                },
                None => Some(DEFAULT_CONNECT_TIMEOUT),
            };
            if let Some(t) = t {
                config.connect_timeout(t);
            }
        }
        let sslmode = url_sslmode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".to_owned());
        let tls = match sslmode.as_str() {
            "disable" | "allow" => Tls::Disable,
            "prefer" => Tls::Unverified { required: false },
            "require" => Tls::Unverified { required: true },
            "verify-ca" => Tls::Verified { host_name: false },
            "verify-full" => Tls::Verified { host_name: true },
            other => {
                return Err(invalid(
                    &shown,
                    format!(
                        "sslmode={other:?} is not one of disable, allow, prefer, require, \
                         verify-ca, verify-full"
                    ),
                ));
            }
        };
        // As libpq: no TLS on Unix-domain sockets, whatever sslmode says.
        let tls = if config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
        {
            Tls::Disable
        } else {
            tls
        };
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Unverified { required: false } => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let root_cert = url_rootcert
            .or_else(|| env("PGSSLROOTCERT"))
            .map(PathBuf::from);
        let display = display(&config);
        Ok(Target {
            config,
            tls,
            root_cert,
            display,
            #[cfg(feature = "tls")]
            connector: std::sync::OnceLock::new(),
        })
    }

    /// The same target with another connection timeout.
    pub(crate) fn with_connect_timeout(&self, timeout: Duration) -> Target {
        let mut config = self.config.clone();
        config.connect_timeout(timeout);
        Target {
            config,
            tls: self.tls,
            root_cert: self.root_cert.clone(),
            display: self.display.clone(),
            #[cfg(feature = "tls")]
            connector: std::sync::OnceLock::new(),
        }
    }

    /// Opens one session.
    pub(crate) fn connect(&self) -> Result<postgres::Client> {
        match self.tls {
            Tls::Disable => self
                .config
                .connect(postgres::NoTls)
                .map_err(|e| connect_error(&self.display, &e)),
            _ => self.connect_tls(),
        }
    }

    #[cfg(feature = "tls")]
    fn connect_tls(&self) -> Result<postgres::Client> {
        let connector = match self.connector.get() {
            Some(c) => c.clone(),
            None => {
                let c = crate::tls::connector(self.tls, self.root_cert.as_deref())
                    .map_err(|why| crate::backend_error("set up TLS for", &self.display, why))?;
                let _ = self.connector.set(c.clone());
                c
            }
        };
        self.config
            .connect(connector)
            .map_err(|e| connect_error(&self.display, &e))
    }

    #[cfg(not(feature = "tls"))]
    fn connect_tls(&self) -> Result<postgres::Client> {
        if matches!(self.tls, Tls::Unverified { required: false }) {
            // Without a TLS library, `prefer` is plain text, as libpq's
            // when the server offers no TLS.
            let mut config = self.config.clone();
            config.ssl_mode(SslMode::Disable);
            return config
                .connect(postgres::NoTls)
                .map_err(|e| connect_error(&self.display, &e));
        }
        Err(crate::backend_error(
            "connect to",
            &self.display,
            "TLS was asked for (sslmode) but holdfast-postgres was built without its \
             tls feature",
        ))
    }
}

/// `postgres://user@host:port/db`.
fn display(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// What a failed connection attempt means, in words, naming the server.
pub(crate) fn connect_error(server: &str, e: &postgres::Error) -> Error {
    let why = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                let t = inner.to_string();
                if !s.contains(&t) {
                    s = format!("{s}: {t}");
                }
                src = inner.source();
            }
            s
        }
    };
    crate::backend_error("connect to", server, why)
}
