//! The holder record: what a queue key's value says about its owner.
//!
//! Every waiter and holder of an etcd lock has one key,
//! `PREFIX/lock/NAME/LEASE` (the lease in hex), attached to its lease. Its
//! value is this record as JSON, so `etcdctl get --prefix PREFIX/lock/`
//! shows who is there; the fencing token is not in it, because it is the
//! key's own create revision, which etcd keeps beside the value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holdfast::{Holder, HolderRecord, HolderSource, Mode};
use serde_json::{Value, json};

/// Who owns a queue key, as its value says.
///
/// ```
/// let rec = holdfast_etcd::Record::for_this_process(holdfast::Mode::Shared);
/// println!("stored as {}", rec.encode());
/// assert_eq!(rec.mode, holdfast::Mode::Shared);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Exclusive or shared.
    pub mode: Mode,
    /// Host name of the owner.
    pub host: Option<String>,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its uid.
    pub uid: Option<u32>,
    /// Its command line.
    pub command: Option<String>,
    /// When it asked for the lock.
    pub since: Option<SystemTime>,
}

impl Record {
    /// The calling process, asking in `mode`, now.
    ///
    /// ```
    /// let rec = holdfast_etcd::Record::for_this_process(holdfast::Mode::Exclusive);
    /// assert_eq!(rec.pid, Some(std::process::id()));
    /// ```
    pub fn for_this_process(mode: Mode) -> Record {
        let r = HolderRecord::for_this_process(mode, 0);
        Record {
            mode,
            host: Some(r.host),
            pid: Some(r.pid),
            uid: r.uid,
            command: Some(r.command),
            since: Some(r.since),
        }
    }

    /// The JSON stored in etcd.
    ///
    /// ```
    /// use holdfast_etcd::Record;
    /// let json = Record::for_this_process(holdfast::Mode::Shared).encode();
    /// assert_eq!(Record::decode(json.as_bytes()).mode, holdfast::Mode::Shared);
    /// ```
    pub fn encode(&self) -> String {
        let since = self
            .since
            .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        json!({
            "holdfast": 1,
            "mode": self.mode.to_string(),
            "host": self.host,
            "pid": self.pid,
            "uid": self.uid,
            "command": self.command,
            "since": since,
        })
        .to_string()
    }

    /// Reads a queue key's value. Anything that is not our JSON (a key
    /// someone else put there) counts as an exclusive holder we know
    /// nothing about: the safe reading.
    ///
    /// ```
    /// use holdfast_etcd::Record;
    /// // A key someone put there by hand: an exclusive holder we know nothing about.
    /// let rec = Record::decode(b"not json");
    /// assert_eq!(rec.mode, holdfast::Mode::Exclusive);
    /// assert_eq!(rec.pid, None);
    /// ```
    pub fn decode(bytes: &[u8]) -> Record {
        let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
        };
        Record {
            mode: match v.get("mode").and_then(Value::as_str) {
                Some("shared") => Mode::Shared,
                _ => Mode::Exclusive,
            },
            host: s("host"),
            pid: n("pid"),
            uid: n("uid"),
            command: s("command"),
            since: v
                .get("since")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| UNIX_EPOCH + Duration::from_secs_f64(x)),
        }
    }

    /// As the library's [`Holder`], with `token`.
    ///
    /// ```
    /// let rec = holdfast_etcd::Record::for_this_process(holdfast::Mode::Exclusive);
    /// let holder = rec.holder(42);
    /// assert_eq!(holder.token, Some(42));
    /// assert_eq!(holder.pid, Some(std::process::id()));
    /// ```
    pub fn holder(&self, token: u64) -> Holder {
        let mut h = Holder::default();
        h.pid = self.pid;
        h.command = self.command.clone();
        h.host = self.host.clone();
        h.uid = self.uid;
        h.since = self.since;
        h.mode = Some(self.mode);
        h.token = Some(token);
        h.source = HolderSource::Record;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_values() {
        let r = Record::for_this_process(Mode::Shared);
        let back = Record::decode(r.encode().as_bytes());
        assert_eq!(back.mode, Mode::Shared);
        assert_eq!(back.pid, Some(std::process::id()));
        assert_eq!(back.host, r.host);
        let foreign = Record::decode(b"not json");
        assert_eq!(foreign.mode, Mode::Exclusive);
        assert_eq!(foreign.pid, None);
    }
}
