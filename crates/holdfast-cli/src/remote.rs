//! `--backend URL` (or `HOLDFAST_BACKEND=URL`): the same commands over a
//! lock service instead of a local file. The lock's NAME goes where the
//! path goes.
//!
//! This module only parses the URL and dispatches on its scheme; each
//! service has its own module (`postgres.rs` for `postgres://` and
//! `postgresql://`, behind the cargo feature `postgres`, on by default). A
//! new service is one more [`Service`] variant, one arm per command below,
//! and its module.

use clap::Args;

use crate::cli::{ListArgs, OnceArgs, PhaseArgs, RunArgs, StatusArgs};
use crate::exit;

/// The flags every command that can use a lock service takes.
#[derive(Debug, Default, Args)]
pub struct RemoteArgs {
    /// Use a lock service instead of a local file:
    /// postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE (also
    /// postgresql://; libpq's PG* variables fill in what it leaves out).
    /// Also read from HOLDFAST_BACKEND. The lock's NAME goes where the path
    /// goes.
    #[arg(long, value_name = "URL", help_heading = "Lock service")]
    pub backend: Option<String>,
    /// With --backend: give up reaching the service after this long
    /// (PostgreSQL: default the URL's connect_timeout, PGCONNECT_TIMEOUT,
    /// else 10s).
    #[arg(long, value_name = "DURATION", help_heading = "Lock service")]
    pub connect_timeout: Option<String>,
}

/// A lock service named by a `--backend` URL.
#[derive(Debug)]
pub enum Service {
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

    /// The service to use, `None` for a local lock; a bad URL is reported
    /// (exit 64).
    pub fn service(&self) -> Result<Option<Service>, u8> {
        let Some(url) = self.url() else {
            if self.backend_only_flag().is_some() {
                return Err(usage(&format!(
                    "{} needs --backend URL (or HOLDFAST_BACKEND)",
                    self.backend_only_flag().unwrap_or_default()
                )));
            }
            return Ok(None);
        };
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => crate::postgres::service(&url, self).map(Some),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => Err(usage(&format!(
                "--backend {url}: this holdfast was built without PostgreSQL support \
                 (cargo feature 'postgres')"
            ))),
            _ => Err(usage(&format!(
                "--backend {url:?}: unknown lock service; expected \
                 postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE"
            ))),
        }
    }

    fn backend_only_flag(&self) -> Option<&'static str> {
        self.connect_timeout
            .is_some()
            .then_some("--connect-timeout")
    }
}

pub fn usage(msg: &str) -> u8 {
    eprintln!("holdfast: {msg}");
    exit::USAGE
}

/// The lock name a path argument stands for under `--backend`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub fn name(arg: &std::path::Path) -> Result<String, u8> {
    arg.to_str()
        .map(str::to_owned)
        .ok_or_else(|| usage(&format!("lock name {arg:?} is not valid UTF-8")))
}

/// Local-only flags that make no sense with `--backend`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub fn refuse_local(flags: &[(bool, &str)]) -> Result<(), u8> {
    match flags.iter().find(|(set, _)| *set) {
        Some((_, f)) => Err(usage(&format!(
            "{f} is for local locks; it cannot be used with --backend"
        ))),
        None => Ok(()),
    }
}

/// `holdfast run --backend URL NAME -- COMMAND`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn run(service: Service, args: RunArgs) -> u8 {
    match service {
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::run(pg, args),
    }
}

/// `holdfast once --backend URL KEY -- COMMAND`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn once(service: Service, args: OnceArgs) -> u8 {
    match service {
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::once(pg, args),
    }
}

/// `holdfast phase --backend URL NAME --target TARGET -- COMMAND`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn phase(service: Service, args: PhaseArgs) -> u8 {
    match service {
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::phase(pg, args),
    }
}

/// `holdfast status --backend URL NAME...`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn status(service: Service, args: StatusArgs) -> u8 {
    match service {
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::status(pg, args),
    }
}

/// `holdfast list --backend URL [PREFIX]`.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn list(service: Service, args: ListArgs) -> u8 {
    match service {
        #[cfg(feature = "postgres")]
        Service::Postgres(pg) => crate::postgres::list(pg, args),
    }
}
