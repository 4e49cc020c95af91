//! Looking at locks without taking them: who holds, who waits.

use std::path::PathBuf;

use etcd_client::{GetOptions, KeyValue, SortOrder, SortTarget};
use holdfast::{Holders, Mode, Result};

use crate::client::Client;
use crate::lock::check_name;
use crate::record::Record;

/// One key in a lock's queue: a holder or a waiter.
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
/// for e in client.status("deploy")?.entries {
///     let role = if e.holding { "holds" } else { "waits" };
///     println!("{} {role} (token {}, pid {:?})", e.key, e.token, e.record.pid);
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct QueueEntry {
    /// The etcd key (`PREFIX/lock/NAME/LEASE`).
    pub key: String,
    /// Its lease.
    pub lease: i64,
    /// Its create revision: the fencing token it has (or will have) as holder.
    pub token: u64,
    /// What its value says about its owner.
    pub record: Record,
    /// Whether it holds the lock (rather than waits for it).
    pub holding: bool,
}

/// A lock's queue as etcd has it now.
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
/// let view = client.status("deploy")?;
/// println!("{}: held {}, {} waiting", view.name, view.held(), view.waiting());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LockView {
    /// The lock name.
    pub name: String,
    /// `etcd://HOST:PORT/NAME`.
    pub location: PathBuf,
    /// Holders first, then waiters, in arrival (revision) order.
    pub entries: Vec<QueueEntry>,
}

impl LockView {
    /// Whether anyone holds it.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// if !client.status("deploy")?.held() {
    ///     println!("deploy is free");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn held(&self) -> bool {
        self.entries.iter().any(|e| e.holding)
    }

    /// The mode it is held in, if held.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// if let Some(mode) = client.status("catalog")?.mode() {
    ///     println!("held {}", mode.with_article());
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Option<Mode> {
        self.entries
            .iter()
            .find(|e| e.holding)
            .map(|e| e.record.mode)
    }

    /// The holders, as the library describes holders.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// println!("deploy: {}", client.status("deploy")?.holders());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn holders(&self) -> Holders {
        Holders::from(
            self.entries
                .iter()
                .filter(|e| e.holding)
                .map(|e| e.record.holder(e.token))
                .collect::<Vec<_>>(),
        )
    }

    /// How many wait.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// println!("{} waiting for deploy", client.status("deploy")?.waiting());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| !e.holding).count()
    }
}

fn sorted() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

fn entries(kvs: &[KeyValue]) -> Vec<QueueEntry> {
    let mut out: Vec<QueueEntry> = Vec::new();
    let mut holding = true;
    for kv in kvs {
        let record = Record::decode(kv.value());
        if holding && !out.is_empty() {
            // After the first: only shared after shared keeps holding.
            holding =
                record.mode == Mode::Shared && out.iter().all(|e| e.record.mode == Mode::Shared);
        }
        out.push(QueueEntry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            lease: kv.lease(),
            token: u64::try_from(kv.create_revision()).unwrap_or(0),
            record,
            holding,
        });
    }
    out
}

impl Client {
    /// Who holds and who waits for the lock `name`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
    /// let view = client.status("deploy")?;
    /// if let Some(h) = view.holders().first() {
    ///     println!("held by pid {:?} on {:?} (token {:?})", h.pid, h.host, h.token);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`holdfast::Error::InvalidInput`] for a bad name;
    /// [`holdfast::Error::Backend`] if etcd cannot be reached.
    pub fn status(&self, name: &str) -> Result<LockView> {
        let location = self.location_of("", name);
        check_name("lock name", name, &location)?;
        let prefix = self.key(&format!("lock/{name}/"));
        let this = self.clone();
        let name = name.to_owned();
        self.block_on(async move {
            let r = this
                .conn()
                .rpc("look at", &location, |mut c| {
                    let prefix = prefix.clone();
                    async move { c.get(prefix, Some(sorted())).await }
                })
                .await?;
            Ok(LockView {
                name,
                location,
                entries: entries(r.kvs()),
            })
        })
    }

    /// Every lock whose name starts with `name_prefix` that has a holder or
    /// a waiter, sorted by name.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// for view in client.list("jobs")? {
    ///     println!("{}: {} ({} waiting)", view.name, view.holders(), view.waiting());
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`holdfast::Error::InvalidInput`] if `name_prefix` has a `/` or a
    /// control character; [`holdfast::Error::Backend`] if etcd cannot be reached.
    pub fn list(&self, name_prefix: &str) -> Result<Vec<LockView>> {
        let location = self.location_of("", name_prefix);
        if !name_prefix.is_empty() {
            check_name("lock name prefix", name_prefix, &location)?;
        }
        let root = self.key("lock/");
        let prefix = format!("{root}{name_prefix}");
        let this = self.clone();
        self.block_on(async move {
            let r = this
                .conn()
                .rpc("list the locks of", &location, |mut c| {
                    let prefix = prefix.clone();
                    async move { c.get(prefix, Some(sorted())).await }
                })
                .await?;
            let mut by_name: std::collections::BTreeMap<String, Vec<KeyValue>> = Default::default();
            for kv in r.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                let Some(rest) = key.strip_prefix(root.as_str()) else {
                    continue;
                };
                let Some((name, _lease)) = rest.split_once('/') else {
                    continue;
                };
                by_name.entry(name.to_owned()).or_default().push(kv.clone());
            }
            Ok(by_name
                .into_iter()
                .map(|(name, kvs)| LockView {
                    location: this.location_of("", &name),
                    name,
                    entries: entries(&kvs),
                })
                .collect())
        })
    }
}
