//! Completion markers (setup phases, run-once) in etcd, written only by a
//! holder that still holds its lock.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use etcd_client::{Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use holdfast::Result;
use serde_json::json;

use crate::client::Client;
use crate::lock::{EtcdGuard, check_name, lost_err};
use crate::record::Record;

impl Client {
    /// The completion markers of `name` (keys `PREFIX/done/NAME/KEY`): the
    /// phases of the target `name`, or the run-once key `name`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let markers = client.markers("app-db")?;
    /// println!("done: {:?}", markers.done_keys()?);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) for a bad name (as [`Client::lock`]).
    pub fn markers(&self, name: &str) -> Result<EtcdMarkers> {
        let location = self.location_of("", name);
        check_name("marker set name", name, &location)?;
        Ok(EtcdMarkers {
            client: self.clone(),
            prefix: self.key(&format!("done/{name}/")),
            location,
        })
    }
}

/// The completion markers of one phase target or run-once key.
///
/// A marker is written by [`EtcdMarkers::mark_done`] in **one etcd
/// transaction** that first compares the create revision of the caller's
/// lock key with its fencing token: if the lease has run out (the caller
/// was paused, or cut off, and someone else may hold the lock now), the
/// key is gone or newer, the comparison fails and nothing is written. A
/// holder that lost its lock can never mark anything done.
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
/// let lock = client.lock("app-db")?;
/// let markers = client.markers("app-db")?;
/// if !markers.is_done("schema-v1")? {
///     let guard = lock.lock()?;
///     if !markers.is_done("schema-v1")? {
///         // ... create the schema ...
///         markers.mark_done("schema-v1", &guard)?; // refused if the lock was lost
///     }
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EtcdMarkers {
    client: Client,
    prefix: String,
    location: PathBuf,
}

impl EtcdMarkers {
    /// `etcd://HOST:PORT/NAME`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// println!("markers at {}", client.markers("app-db")?.location().display());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The key prefix: `PREFIX/done/NAME/`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// assert_eq!(client.markers("app-db")?.prefix(), "holdfast/done/app-db/"); // etcdctl get --prefix
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> Result<String> {
        check_name("marker name", key, &self.location)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Whether `key` is marked done (a linearizable read).
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// if client.markers("app-db")?.is_done("schema-v1")? {
    ///     println!("schema-v1 already done");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) for a bad key; [`Error::Backend`](holdfast::Error::Backend) if etcd cannot
    /// be reached.
    pub fn is_done(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let this = self.clone();
        self.client
            .block_on(async move { this.is_done_async_inner(k).await })
    }

    async fn is_done_async_inner(&self, k: String) -> Result<bool> {
        let r = self
            .client
            .conn()
            .rpc("read the markers of", &self.location, |mut c| {
                let k = k.clone();
                async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(r.count() > 0)
    }

    /// The keys marked done, in the order they were marked.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// for key in client.markers("app-db")?.done_keys()? {
    ///     println!("done: {key}");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](holdfast::Error::Backend) if etcd cannot be reached.
    pub fn done_keys(&self) -> Result<Vec<String>> {
        Ok(self.scan(true)?.into_iter().map(|(key, _)| key).collect())
    }

    /// Every marker with what its value records (who wrote it, when, with
    /// which fencing token), in the order they were marked. A value holdfast
    /// did not write (a key put by hand) is listed with the fields empty.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
    /// for m in client.markers("app-db")?.entries()? {
    ///     println!("{} done with fencing token {:?} by pid {:?}", m.key, m.token, m.pid);
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](holdfast::Error::Backend) if etcd cannot be reached.
    pub fn entries(&self) -> Result<Vec<Marker>> {
        Ok(self
            .scan(false)?
            .into_iter()
            .map(|(key, value)| Marker::decode(key, &value))
            .collect())
    }

    /// The markers' keys (the prefix taken off) and values, in the order
    /// they were marked; with `keys_only` etcd sends no values (they are
    /// empty here), for callers that only need the keys.
    fn scan(&self, keys_only: bool) -> Result<Vec<(String, Vec<u8>)>> {
        let this = self.clone();
        self.client.block_on(async move {
            let r = this
                .client
                .conn()
                .rpc("read the markers of", &this.location, |mut c| {
                    let prefix = this.prefix.clone();
                    let mut options = GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend);
                    if keys_only {
                        options = options.with_keys_only();
                    }
                    async move { c.get(prefix, Some(options)).await }
                })
                .await?;
            Ok(r.kvs()
                .iter()
                .filter_map(|kv| {
                    let key = std::str::from_utf8(kv.key())
                        .ok()?
                        .strip_prefix(this.prefix.as_str())?
                        .to_owned();
                    Some((key, kv.value().to_vec()))
                })
                .collect())
        })
    }

    /// Marks `key` done, **only if `held` still holds its lock**: one
    /// transaction compares the create revision of `held`'s key with its
    /// fencing token and writes the marker only if they match. The marker's
    /// value records the token, host, pid and time.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("app-db")?.lock()?;
    /// // ... create the schema ...
    /// client.markers("app-db")?.mark_done("schema-v1", &guard)?; // refused once the lease is gone
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](holdfast::Error::Lost) if the comparison failed (the lease ran out or was
    /// revoked: nothing was written, and `held` reports the loss from now
    /// on); [`Error::InvalidInput`](holdfast::Error::InvalidInput) for a bad key; [`Error::Backend`](holdfast::Error::Backend) if etcd
    /// cannot be reached (then nothing is known to be written: a retry is
    /// safe, the marker is idempotent).
    pub fn mark_done(&self, key: &str, held: &EtcdGuard) -> Result<()> {
        let k = self.key(key)?;
        let lock_key = held.key().to_owned();
        let token = held.token();
        let state = held.state.clone();
        let this = self.clone();
        let holder_path = held.location().to_owned();
        let name = key.to_owned();
        self.client.block_on(async move {
            let me = Record::for_this_process(holdfast::Mode::Exclusive);
            let value = json!({
                "holdfast": 1,
                "token": token,
                "host": me.host,
                "pid": me.pid,
                "at": SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            })
            .to_string();
            let txn = Txn::new()
                .when([Compare::create_revision(
                    lock_key.clone(),
                    CompareOp::Equal,
                    token as i64,
                )])
                .and_then([TxnOp::put(k, value, None)]);
            let r = this
                .client
                .conn()
                .rpc("write a marker of", &this.location, |mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await?;
            if r.succeeded() {
                Ok(())
            } else {
                let reason = format!(
                    "marker {name:?} was not written: the lock key {lock_key} no longer has \
                     create revision {token} (its lease ran out or was revoked; another \
                     process may hold the lock)"
                );
                state.lose(reason.clone());
                Err(lost_err(&holder_path, reason))
            }
        })
    }

    /// Removes the marker of `key`; `true` if there was one.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// if client.markers("app-db")?.clear("seed-v1")? {
    ///     println!("seed-v1 will run again");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) for a bad key; [`Error::Backend`](holdfast::Error::Backend) if etcd cannot
    /// be reached.
    pub fn clear(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let this = self.clone();
        self.client.block_on(async move {
            let r = this
                .client
                .conn()
                .rpc("remove a marker of", &this.location, |mut c| {
                    let k = k.clone();
                    async move { c.delete(k, None).await }
                })
                .await?;
            Ok(r.deleted() > 0)
        })
    }

    /// Removes every marker; how many there were.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let markers = client.markers("app-db")?;
    /// let _guard = client.lock("app-db")?.lock()?; // under the lock writers take
    /// markers.clear_all()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](holdfast::Error::Backend) if etcd cannot be reached.
    pub fn clear_all(&self) -> Result<u64> {
        let this = self.clone();
        self.client.block_on(async move {
            let r = this
                .client
                .conn()
                .rpc("remove the markers of", &this.location, |mut c| {
                    let prefix = this.prefix.clone();
                    async move {
                        c.delete(
                            prefix,
                            Some(etcd_client::DeleteOptions::new().with_prefix()),
                        )
                        .await
                    }
                })
                .await?;
            Ok(u64::try_from(r.deleted()).unwrap_or(0))
        })
    }
}

/// One completion marker, as [`EtcdMarkers::entries`] reads it.
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
/// for m in client.markers("app-db")?.entries()? {
///     println!("{} done by {:?} (token {:?}) at {:?}", m.key, m.host, m.token, m.at);
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Marker {
    /// The marker's key: the phase name, or `once` for run-once.
    pub key: String,
    /// The fencing token of the holder that wrote it.
    pub token: Option<u64>,
    /// The host of the process that wrote it.
    pub host: Option<String>,
    /// Its pid.
    pub pid: Option<u32>,
    /// When it was written.
    pub at: Option<SystemTime>,
}

impl Marker {
    fn decode(key: String, value: &[u8]) -> Marker {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
        Marker {
            key,
            token: v["token"].as_u64(),
            host: v["host"].as_str().map(str::to_owned),
            pid: v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()),
            at: v["at"]
                .as_f64()
                .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
                .and_then(|d| UNIX_EPOCH.checked_add(d)),
        }
    }
}
