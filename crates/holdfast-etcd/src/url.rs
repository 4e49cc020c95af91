//! `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`: where the cluster is and
//! which key prefix holdfast uses in it.

use std::fmt;

/// The key prefix when the URL names none: every key holdfast writes starts
/// with `holdfast/`.
pub const DEFAULT_PREFIX: &str = "holdfast";

/// A parsed `etcd://` (plain) or `etcds://` (TLS) URL.
///
/// ```
/// let url = holdfast_etcd::EtcdUrl::parse("etcd://10.0.0.1:2379,10.0.0.2:2379/jobs")?;
/// assert_eq!(url.endpoints(), ["10.0.0.1:2379", "10.0.0.2:2379"]);
/// assert_eq!(url.prefix(), "jobs");
/// assert!(!url.tls());
/// assert_eq!(url.to_string(), "etcd://10.0.0.1:2379,10.0.0.2:2379/jobs");
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    endpoints: Vec<String>,
    prefix: String,
    tls: bool,
}

impl EtcdUrl {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (`etcds://` for TLS).
    /// A missing port is etcd's client port, 2379; the prefix defaults to
    /// [`DEFAULT_PREFIX`].
    ///
    /// ```
    /// let url = holdfast_etcd::EtcdUrl::parse("etcds://etcd.internal/jobs")?;
    /// assert_eq!(url.endpoints(), ["etcd.internal:2379"]);
    /// assert!(url.tls());
    /// assert!(holdfast_etcd::EtcdUrl::parse("http://etcd.internal").is_err());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`holdfast::Error::InvalidInput`] for another scheme, an empty host
    /// list, a bad port, or a prefix with an empty segment or a NUL.
    pub fn parse(url: &str) -> holdfast::Result<EtcdUrl> {
        let bad = |reason: String| holdfast::Error::InvalidInput {
            path: url.into(),
            reason,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else {
            return Err(bad(
                "not an etcd URL: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX] \
                 (etcds:// for TLS)"
                    .into(),
            ));
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_end_matches('/')),
            None => (rest, ""),
        };
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            prefix
        };
        if prefix.split('/').any(str::is_empty) || prefix.contains('\0') {
            return Err(bad(format!(
                "key prefix {prefix:?} has an empty segment or a NUL"
            )));
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            if h.is_empty() {
                return Err(bad("empty host in the endpoint list".into()));
            }
            let with_port = match h.rsplit_once(':') {
                // IPv6 literal without a port: [::1]
                Some((_, p)) if h.ends_with(']') || p.contains(']') => format!("{h}:2379"),
                Some((host, port)) => {
                    if host.is_empty() {
                        return Err(bad(format!("endpoint {h:?} has no host")));
                    }
                    match port.parse::<u16>() {
                        Ok(p) if p > 0 => h.to_owned(),
                        _ => return Err(bad(format!("endpoint {h:?}: bad port {port:?}"))),
                    }
                }
                None => format!("{h}:2379"),
            };
            endpoints.push(with_port);
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.to_owned(),
            tls,
        })
    }

    /// A URL for these endpoints (`HOST:PORT`), with the default prefix.
    ///
    /// ```
    /// let url = holdfast_etcd::EtcdUrl::new(["10.0.0.1:2379", "10.0.0.2:2379"]);
    /// assert_eq!(url.prefix(), holdfast_etcd::DEFAULT_PREFIX);
    /// ```
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdUrl {
        EtcdUrl {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            tls: false,
        }
    }

    /// The `HOST:PORT` endpoints.
    ///
    /// ```
    /// let url = holdfast_etcd::EtcdUrl::parse("etcd://a,b:2380")?;
    /// assert_eq!(url.endpoints(), ["a:2379", "b:2380"]);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix (without a trailing `/`).
    ///
    /// ```
    /// assert_eq!(holdfast_etcd::EtcdUrl::parse("etcd://a/team/jobs")?.prefix(), "team/jobs");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the URL asks for TLS (`etcds://`).
    ///
    /// ```
    /// assert!(holdfast_etcd::EtcdUrl::parse("etcds://etcd.internal")?.tls());
    /// assert!(!holdfast_etcd::EtcdUrl::parse("etcd://etcd.internal")?.tls());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Sets the key prefix.
    ///
    /// ```
    /// let mut url = holdfast_etcd::EtcdUrl::new(["10.0.0.1:2379"]);
    /// url.set_prefix("team/jobs");
    /// assert_eq!(url.to_string(), "etcd://10.0.0.1:2379/team/jobs");
    /// ```
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.prefix = prefix.into();
    }

    /// Asks for TLS (as `etcds://` does).
    ///
    /// ```
    /// let mut url = holdfast_etcd::EtcdUrl::new(["etcd.internal:2379"]);
    /// url.set_tls(true);
    /// assert_eq!(url.to_string(), "etcds://etcd.internal:2379");
    /// ```
    pub fn set_tls(&mut self, tls: bool) {
        self.tls = tls;
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        write!(f, "{scheme}://{}", self.endpoints.join(","))?;
        if self.prefix != DEFAULT_PREFIX {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_prefix() {
        let u = EtcdUrl::parse("etcd://a:1,b/x/y/").unwrap();
        assert_eq!(u.endpoints(), ["a:1", "b:2379"]);
        assert_eq!(u.prefix(), "x/y");
        assert_eq!(u.to_string(), "etcd://a:1,b:2379/x/y");
        let u = EtcdUrl::parse("etcds://127.0.0.1:23790").unwrap();
        assert!(u.tls());
        assert_eq!(u.prefix(), DEFAULT_PREFIX);
        assert_eq!(u.to_string(), "etcds://127.0.0.1:23790");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a:1,,b:2",
            "etcd://a:0",
            "etcd://a:99999",
            "etcd://a:x",
            "etcd://:1",
            "etcd://a:1/x//y",
        ] {
            let e = EtcdUrl::parse(bad).unwrap_err();
            assert!(
                matches!(e, holdfast::Error::InvalidInput { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
