//! `--backend URL` (or `HOLDFAST_BACKEND=URL`): the same commands over a
//! lock service instead of a local file. The lock's NAME goes where the
//! path goes.
//!
//! This module only parses the URL and dispatches on its scheme; each
//! service has its own module: `etcd.rs` for `etcd://` and `etcds://`
//! (cargo feature `etcd`), `postgres.rs` for `postgres://` and
//! `postgresql://` (cargo feature `postgres`), both on by default. A new
//! service is one more [`Service`] variant, one arm per command below, and
//! its module.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::cli::{
    Command, ListArgs, OnceArgs, PhaseArgs, PhasesCommand, PhasesResetArgs, PhasesStatusArgs,
    RunArgs, StatusArgs,
};
use crate::exit;

/// The flags every command that can use a lock service takes.
#[derive(Debug, Default, Args)]
pub struct RemoteArgs {
    /// Use a lock service instead of a local file:
    /// etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (etcds:// for TLS), or
    /// postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE (also
    /// postgresql://; libpq's PG* variables fill in what it leaves out).
    /// Also read from HOLDFAST_BACKEND. The lock's NAME goes where the path
    /// goes.
    #[arg(long, value_name = "URL", help_heading = "Lock service")]
    pub backend: Option<String>,
    /// With --backend: give up reaching the service after this long (etcd:
    /// default 5s, also per request; PostgreSQL: default the URL's
    /// connect_timeout, PGCONNECT_TIMEOUT, else 10s).
    #[arg(long, value_name = "DURATION", help_heading = "Lock service")]
    pub connect_timeout: Option<String>,
    /// etcd: the lease, how long a holder that dies (or is cut off, or
    /// paused) keeps the lock; renewed every TTL/3 while held (whole
    /// seconds, 1s to 24h; default 15s).
    #[arg(long, value_name = "DURATION", help_heading = "Lock service")]
    pub ttl: Option<String>,
    /// etcd: verify the servers with this CA bundle (PEM), turning TLS on
    /// (also ETCDCTL_CACERT).
    #[arg(
        long = "cacert",
        id = "remote_cacert",
        value_name = "FILE",
        help_heading = "Lock service"
    )]
    pub cacert: Option<PathBuf>,
    /// etcd: client certificate (PEM; also ETCDCTL_CERT).
    #[arg(
        long = "cert",
        id = "remote_cert",
        value_name = "FILE",
        help_heading = "Lock service"
    )]
    pub cert: Option<PathBuf>,
    /// etcd: client certificate key (PEM; also ETCDCTL_KEY).
    #[arg(
        long = "key",
        id = "remote_key",
        value_name = "FILE",
        help_heading = "Lock service"
    )]
    pub key: Option<PathBuf>,
    /// etcd: authenticate as USER (also ETCDCTL_USER, which may be
    /// USER:PASSWORD).
    #[arg(
        long = "user",
        id = "remote_user",
        value_name = "USER[:PASSWORD]",
        help_heading = "Lock service"
    )]
    pub user: Option<String>,
    /// etcd: the password of --user (also ETCDCTL_PASSWORD).
    #[arg(
        long = "password",
        id = "remote_password",
        value_name = "PASSWORD",
        help_heading = "Lock service"
    )]
    pub password: Option<String>,
}

/// How a command naming a lock service is served (see [`crate::run`] and
/// [`crate::run_local`]).
pub trait Backends {
    /// The service, once its URL is read.
    type Service;
    /// The service `remote` names, `None` for a local lock, or the exit
    /// code (a bad URL, already reported).
    fn service(remote: &RemoteArgs, argv: &[OsString]) -> Result<Option<Self::Service>, u8>;
    /// Runs `command` (whose `RemoteArgs` named `service`).
    fn serve(service: Self::Service, command: Command) -> u8;
}

/// Lock services served in this process.
pub enum InProcess {}

impl Backends for InProcess {
    type Service = Service;

    fn service(remote: &RemoteArgs, _argv: &[OsString]) -> Result<Option<Service>, u8> {
        remote.service()
    }

    fn serve(service: Service, command: Command) -> u8 {
        match command {
            Command::Run(a) => run(service, a),
            Command::Status(a) => status(service, a),
            Command::List(a) => list(service, a),
            Command::Once(a) => once(service, a),
            Command::Phase(a) => phase(service, a),
            Command::Phases(a) => match a.command {
                PhasesCommand::Status(a) => phases_status(service, a),
                PhasesCommand::Reset(a) => phases_reset(service, a),
            },
            Command::Flock(_) | Command::Break(_) | Command::Completions(_) | Command::Man(_) => {
                crate::local(command)
            }
        }
    }
}

/// Lock services served by the `holdfast-remote` binary beside this one:
/// this process is replaced by it, with the same arguments. Nothing here
/// refers to the services' code, so a binary built on this alone leaves
/// it out.
pub enum Helper {}

/// The helper binary's name, in the directory of the running `holdfast`.
pub const HELPER: &str = "holdfast-remote";

impl Backends for Helper {
    type Service = std::convert::Infallible;

    fn service(remote: &RemoteArgs, argv: &[OsString]) -> Result<Option<Self::Service>, u8> {
        if remote.url().is_none() {
            return remote.local().map(|()| None);
        }
        Err(exec_helper(argv))
    }

    fn serve(service: Self::Service, _command: Command) -> u8 {
        match service {}
    }
}

/// Replaces this process with [`HELPER`] (same `argv`); returns the exit
/// code only if that fails, after saying why.
fn exec_helper(argv: &[OsString]) -> u8 {
    use std::os::unix::process::CommandExt;
    let helper = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(HELPER),
        Err(e) => {
            eprintln!("holdfast: --backend: cannot find this program's path to run {HELPER}: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let mut cmd = std::process::Command::new(&helper);
    cmd.args(argv.get(1..).unwrap_or_default());
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    let e = cmd.exec();
    eprintln!(
        "holdfast: --backend: cannot run {} (lock services are served by {HELPER}, \
         installed beside holdfast): {e}",
        helper.display()
    );
    exit::UNAVAILABLE
}

/// A lock service named by a `--backend` URL.
#[derive(Debug)]
pub enum Service {
    /// `etcd://` / `etcds://`.
    #[cfg(feature = "etcd")]
    Etcd(holdfast_etcd::EtcdUrl),
    /// `postgres://` / `postgresql://` (libpq's form; `PG*` variables fill
    /// the gaps).
    #[cfg(feature = "postgres")]
    Postgres(holdfast_postgres::Postgres),
}

impl RemoteArgs {
    /// The URL given by `--backend` or `HOLDFAST_BACKEND`, if any.
    fn url(&self) -> Option<String> {
        self.backend.clone().or_else(|| {
            std::env::var("HOLDFAST_BACKEND")
                .ok()
                .filter(|s| !s.is_empty())
        })
    }

    /// For a local lock (no URL): refuses the flags only a service takes
    /// (exit 64).
    fn local(&self) -> Result<(), u8> {
        match self.backend_only_flag() {
            Some(flag) => Err(usage(&format!(
                "{flag} needs --backend URL (or HOLDFAST_BACKEND)"
            ))),
            None => Ok(()),
        }
    }

    /// The service to use, `None` for a local lock; a bad URL is reported
    /// (exit 64).
    pub fn service(&self) -> Result<Option<Service>, u8> {
        let Some(url) = self.url() else {
            return self.local().map(|()| None);
        };
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            #[cfg(feature = "etcd")]
            "etcd" | "etcds" => match holdfast_etcd::EtcdUrl::parse(&url) {
                Ok(u) => Ok(Some(Service::Etcd(u))),
                Err(e) => Err(usage(&e.to_string())),
            },
            #[cfg(not(feature = "etcd"))]
            "etcd" | "etcds" => Err(usage(&format!(
                "--backend {url}: this holdfast was built without etcd support \
                 (cargo feature 'etcd')"
            ))),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => match self.etcd_only_flag() {
                Some(flag) => Err(usage(&format!(
                    "{flag} is an etcd option; PostgreSQL takes its credentials and TLS \
                     settings from the URL and libpq's PG* variables"
                ))),
                None => crate::postgres::service(&url, self).map(Some),
            },
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => Err(usage(&format!(
                "--backend {url}: this holdfast was built without PostgreSQL support \
                 (cargo feature 'postgres')"
            ))),
            _ => Err(usage(&format!(
                "--backend {url:?}: unknown lock service; expected \
                 etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or \
                 postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE"
            ))),
        }
    }

    fn backend_only_flag(&self) -> Option<&'static str> {
        [
            (self.ttl.is_some(), "--ttl"),
            (self.connect_timeout.is_some(), "--connect-timeout"),
            (self.cacert.is_some(), "--cacert"),
            (self.cert.is_some(), "--cert"),
            (self.key.is_some(), "--key"),
            (self.user.is_some(), "--user"),
            (self.password.is_some(), "--password"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }

    /// The etcd-only flags given, for services that take none of them.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn etcd_only_flag(&self) -> Option<&'static str> {
        [
            (self.ttl.is_some(), "--ttl"),
            (self.cacert.is_some(), "--cacert"),
            (self.cert.is_some(), "--cert"),
            (self.key.is_some(), "--key"),
            (self.user.is_some(), "--user"),
            (self.password.is_some(), "--password"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

pub fn usage(msg: &str) -> u8 {
    eprintln!("holdfast: {msg}");
    exit::USAGE
}

/// The lock name a path argument stands for under `--backend`.
#[cfg_attr(not(any(feature = "etcd", feature = "postgres")), allow(dead_code))]
pub fn name(arg: &std::path::Path) -> Result<String, u8> {
    arg.to_str()
        .map(str::to_owned)
        .ok_or_else(|| usage(&format!("lock name {arg:?} is not valid UTF-8")))
}

/// Local-only flags that make no sense with `--backend`.
#[cfg_attr(not(any(feature = "etcd", feature = "postgres")), allow(dead_code))]
pub fn refuse_local(flags: &[(bool, &str)]) -> Result<(), u8> {
    match flags.iter().find(|(set, _)| *set) {
        Some((_, f)) => Err(usage(&format!(
            "{f} is for local locks; it cannot be used with --backend"
        ))),
        None => Ok(()),
    }
}

/// `holdfast run --backend URL NAME -- COMMAND`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn run(service: Service, args: RunArgs) -> u8 {
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::run(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::run(pg, args),
    }
}

/// `holdfast once --backend URL KEY -- COMMAND`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn once(service: Service, args: OnceArgs) -> u8 {
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::once(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::once(pg, args),
    }
}

/// `holdfast phase --backend URL NAME --target TARGET -- COMMAND`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn phase(service: Service, args: PhaseArgs) -> u8 {
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::phase(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::phase(pg, args),
    }
}

/// `holdfast status --backend URL NAME...`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn status(service: Service, args: StatusArgs) -> u8 {
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::status(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::status(pg, args),
    }
}

/// `holdfast list --backend URL [PREFIX]`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn list(service: Service, args: ListArgs) -> u8 {
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::list(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::list(pg, args),
    }
}

/// `holdfast phases status --backend URL TARGET [NAME...]`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn phases_status(service: Service, args: PhasesStatusArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (
            args.markers.xattrs != crate::cli::XattrsArg::Auto,
            "--xattrs",
        ),
        (args.markers.namespace != "user.phaselock", "--namespace"),
    ]) {
        return code;
    }
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::phases_status(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::phases_status(pg, args),
    }
}

/// `holdfast phases reset --backend URL TARGET [NAME...]`.
#[cfg_attr(
    not(any(feature = "etcd", feature = "postgres")),
    allow(unused_variables)
)]
pub fn phases_reset(service: Service, args: PhasesResetArgs) -> u8 {
    if let Err(code) = refuse_local(&[
        (args.attr_name.is_some(), "--attr-name"),
        (args.namespace != "user.phaselock", "--namespace"),
    ]) {
        return code;
    }
    match service {
        #[cfg(feature = "etcd")]
        Service::Etcd(url) => crate::etcd::phases_reset(url, args),
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::phases_reset(pg, args),
    }
}
