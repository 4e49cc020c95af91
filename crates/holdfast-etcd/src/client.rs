//! The connection to etcd: endpoints, credentials, TLS, and the small
//! runtime that drives it.
//!
//! etcd's client (`etcd-client`, over gRPC with tonic) is asynchronous.
//! [`Client`] owns a one-thread tokio runtime: the blocking API runs its
//! requests there, the async API hands them to it (so it works from any
//! executor), and every held lock's lease is renewed there in the
//! background, whatever the caller's threads are doing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use holdfast::{Error, Result};

use crate::url::EtcdUrl;

/// How to reach an etcd cluster: endpoints, key prefix, credentials, TLS
/// and time limits. Built from a URL, then adjusted like
/// [`std::fs::OpenOptions`].
///
/// ```no_run
/// use std::time::Duration;
/// let client = holdfast_etcd::ClientOptions::new("etcd://10.0.0.1:2379,10.0.0.2:2379")?
///     .user("deploy", "secret")
///     .ca_cert("/etc/etcd/ca.pem")
///     .connect_timeout(Duration::from_secs(3))
///     .connect()?;
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientOptions {
    url: EtcdUrl,
    user: Option<(String, String)>,
    ca_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ClientOptions {
    /// Options for the cluster at `url` (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`,
    /// see [`EtcdUrl`]); no credentials, no TLS unless `etcds://`, 5 s to
    /// connect and 5 s per request.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let client = holdfast_etcd::ClientOptions::new("etcds://etcd.internal:2379/jobs")?
    ///     .ca_cert("/etc/etcd/ca.pem")
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .connect()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) if `url` is not an etcd URL.
    pub fn new(url: &str) -> Result<ClientOptions> {
        Ok(ClientOptions::from_url(EtcdUrl::parse(url)?))
    }

    /// Options for an already parsed URL.
    ///
    /// ```
    /// use holdfast_etcd::{ClientOptions, EtcdUrl};
    /// let opts = ClientOptions::from_url(EtcdUrl::new(["10.0.0.1:2379", "10.0.0.2:2379"]));
    /// assert_eq!(opts.url().endpoints().len(), 2);
    /// ```
    pub fn from_url(url: EtcdUrl) -> ClientOptions {
        ClientOptions {
            url,
            user: None,
            ca_cert: None,
            cert: None,
            key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Authenticate as `name` with `password` (etcd's `--user name:password`).
    ///
    /// ```
    /// let opts = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?.user("deploy", "s3cret");
    /// # drop(opts);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// Verify the servers with this CA certificate (PEM); turns TLS on.
    ///
    /// ```
    /// let opts = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?.ca_cert("/etc/etcd/ca.pem");
    /// # drop(opts);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM); turns TLS on.
    ///
    /// ```
    /// let opts = holdfast_etcd::ClientOptions::new("etcds://10.0.0.5:2379")?
    ///     .client_cert("/etc/etcd/client.pem", "/etc/etcd/client-key.pem");
    /// # drop(opts);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// How long connecting (and authenticating) may take.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?.connect_timeout(Duration::from_secs(2));
    /// # drop(opts);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one request may take before it counts as failed (waiting
    /// for a lock is not one request: it is bounded by its own [`holdfast::Wait`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?.request_timeout(Duration::from_secs(10));
    /// # drop(opts);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The URL these options connect to.
    ///
    /// ```
    /// let opts = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5/jobs")?;
    /// assert_eq!(opts.url().prefix(), "jobs");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }

    /// Connects (blocking) to the first member that answers, starting
    /// from one picked by this process's pid (so that many clients spread
    /// over the members); later requests move to the next member that
    /// answers when this one stops. A member that refuses TLS or the
    /// credentials may show only at the first request, with the same error.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?
    ///     .user("deploy", "s3cret")
    ///     .connect()?; // authenticates now: wrong credentials fail here
    /// let _guard = client.lock("nightly-report")?.lock()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](holdfast::Error::Backend) naming the endpoints: unreachable, timed out, wrong
    /// credentials (`PermissionDenied`), unreadable certificate files
    /// (`op` says which); [`Error::InvalidInput`](holdfast::Error::InvalidInput) for a client certificate
    /// without its key.
    pub fn connect(self) -> Result<Client> {
        let location = PathBuf::from(self.url.to_string());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("holdfast-etcd")
            // The sockets are written on these threads only (see sys.rs).
            .on_thread_start(crate::sys::block_sigpipe_in_this_thread)
            .enable_all()
            .build()
            .map_err(|e| crate::error::failure("start the runtime for", &location, e))?;
        // Connected on the runtime's thread, not the caller's (SIGPIPE).
        let conn = match rt.block_on(rt.spawn(async move { self.connect_etcd().await })) {
            Ok(c) => c?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                rt: Some(rt),
                conn: Arc::new(conn),
            }),
        })
    }

    /// Connects from async code (the connection is still driven by the
    /// client's own runtime thread, so any executor works).
    ///
    /// ```no_run
    /// async fn client() -> holdfast::Result<holdfast_etcd::Client> {
    ///     holdfast_etcd::ClientOptions::new("etcd://10.0.0.5:2379")?.connect_async().await
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ClientOptions::connect`].
    pub async fn connect_async(self) -> Result<Client> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.connect());
        });
        rx.await.map_err(|_| {
            crate::error::failure(
                "connect to",
                &PathBuf::from("etcd"),
                std::io::Error::other("the connecting thread died"),
            )
        })?
    }

    async fn connect_etcd(&self) -> Result<Conn> {
        let location = PathBuf::from(self.url.to_string());
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some((u, p)) = &self.user {
            opts = opts.with_user(u.clone(), p.clone());
        }
        let tls = self.url.tls() || self.ca_cert.is_some() || self.cert.is_some();
        if tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.ca_cert {
                let pem = read_pem(ca)?;
                t = t.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    let cert = read_pem(c)?;
                    let key = read_pem(k)?;
                    t = t.identity(etcd_client::Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::InvalidInput {
                        path: location,
                        reason: "a client certificate needs its key, and a key its certificate \
                                 (--cert and --key)"
                            .into(),
                    });
                }
            }
            opts = opts.with_tls(t);
        }
        let scheme = if tls { "https://" } else { "http://" };
        let conn = Conn {
            etcd: std::sync::RwLock::new(None),
            generation: AtomicU64::new(0),
            current: AtomicUsize::new(
                std::process::id() as usize % self.url.endpoints().len().max(1),
            ),
            switching: tokio::sync::Mutex::new(()),
            endpoints: self.url.endpoints().to_vec(),
            scheme,
            client_cert: self.cert.is_some(),
            opts,
            user: self.user.as_ref().map(|(u, _)| u.clone()),
            url: self.url.clone(),
            location,
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
        };
        conn.switch(None).await?;
        Ok(conn)
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        op: holdfast::error::IoOp::Read,
        path: path.to_owned(),
        source: e,
    })
}

fn is_auth_failure(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
            ) || s.message().contains("authentication failed")
        }
        _ => false,
    }
}

/// The message of an etcd error without the gRPC wrapping, followed by
/// the causes beneath it that say more (a TLS alert under "operation was
/// canceled", say).
pub(crate) fn short(e: &etcd_client::Error) -> String {
    let mut out = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_owned(),
        other => other.to_string(),
    };
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn unreachable(location: &Path, endpoints: &[String], why: &str) -> Error {
    crate::error::failure(
        "reach",
        location,
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "etcd at {} does not answer ({why}); is etcd running there?",
                endpoints.join(",")
            ),
        ),
    )
}

/// A connection to an etcd cluster. Cheap to clone (one connection and one
/// runtime thread are shared).
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
/// let lock = client.lock("nightly-backup")?;
/// let guard = lock.lock()?;
/// println!("fencing token {}", guard.token());
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    rt: Option<tokio::runtime::Runtime>,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside async
        // code; nothing of ours needs to finish once the client is gone.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.conn.url.to_string())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `url` with default options (see [`ClientOptions`]).
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ClientOptions::connect`].
    pub fn connect(url: &str) -> Result<Client> {
        ClientOptions::new(url)?.connect()
    }

    /// The URL this client talks to.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// println!("talking to {}", client.url());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn url(&self) -> &EtcdUrl {
        &self.inner.conn.url
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.inner
            .rt
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }

    /// `etcd://HOST:PORT/.../NAME`, for messages.
    pub(crate) fn location_of(&self, what: &str, name: &str) -> PathBuf {
        let mut s = self.inner.conn.location.to_string_lossy().into_owned();
        if self.inner.conn.url.prefix() == crate::url::DEFAULT_PREFIX {
            s.push('/');
        } else {
            s.push(':');
        }
        s.push_str(what);
        s.push_str(name);
        PathBuf::from(s)
    }

    /// Key: `PREFIX/SUB`.
    pub(crate) fn key(&self, sub: &str) -> String {
        format!("{}/{sub}", self.inner.conn.url.prefix())
    }

    /// Runs `fut` on the client's runtime and waits for it (blocking API).
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> T {
        // Spawned rather than polled on the caller's thread, so that a
        // caller inside some other runtime (or none) behaves the same way.
        let handle = self.handle().spawn(fut);
        match futures_block_on(handle) {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Runs `fut` on the client's runtime and awaits it (async API).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> T {
        match self.handle().spawn(fut).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The connection (shared with the renewal tasks).
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.inner.conn
    }
}

/// The connection to one member at a time, moving to the next member
/// that answers when the current one stops answering.
///
/// (etcd-client balances over all endpoints itself, but a request it
/// sends to a dead member fails instead of going to a live one; a CLI
/// process that starts while a member is down would fail. So the members
/// are tried here, one by one, with a TCP connect first.)
pub(crate) struct Conn {
    etcd: std::sync::RwLock<Option<etcd_client::Client>>,
    /// Bumped at every switch, so that concurrent failures switch once.
    generation: AtomicU64,
    /// The endpoint in use.
    current: AtomicUsize,
    switching: tokio::sync::Mutex<()>,
    endpoints: Vec<String>,
    scheme: &'static str,
    /// A client certificate is given (for the TLS hints).
    client_cert: bool,
    opts: etcd_client::ConnectOptions,
    user: Option<String>,
    pub(crate) url: EtcdUrl,
    pub(crate) location: PathBuf,
    pub(crate) request_timeout: Duration,
    connect_timeout: Duration,
}

impl Conn {
    /// The client in use now, and its generation.
    pub(crate) fn etcd(&self) -> (etcd_client::Client, u64) {
        let g = self.etcd.read().unwrap_or_else(|e| e.into_inner());
        (
            g.clone().expect("connected before use"),
            self.generation.load(Ordering::SeqCst),
        )
    }

    /// Connects to the first member (from the one after the current, or
    /// the current one at start) that accepts a TCP connection, unless
    /// another task already switched since `seen`.
    pub(crate) async fn switch(&self, seen: Option<u64>) -> Result<()> {
        let _one = self.switching.lock().await;
        if let Some(g) = seen
            && self.generation.load(Ordering::SeqCst) != g
        {
            return Ok(());
        }
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::SeqCst) + usize::from(seen.is_some());
        let mut why = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let ep = &self.endpoints[idx];
            match tokio::time::timeout(
                self.connect_timeout,
                tokio::net::TcpStream::connect(ep.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    why = format!("{ep}: {e}");
                    continue;
                }
                Err(_) => {
                    why = format!("{ep}: no answer within {:?}", self.connect_timeout);
                    continue;
                }
            }
            let connected = tokio::time::timeout(
                self.connect_timeout,
                etcd_client::Client::connect(
                    [format!("{}{ep}", self.scheme)],
                    Some(self.opts.clone()),
                ),
            )
            .await;
            match connected {
                Ok(Ok(c)) => {
                    *self.etcd.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
                    self.current.store(idx, Ordering::SeqCst);
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Ok(Err(e)) => {
                    if let Some(u) = &self.user
                        && is_auth_failure(&e)
                    {
                        return Err(crate::error::failure(
                            "authenticate to",
                            &self.location,
                            std::io::Error::new(
                                std::io::ErrorKind::PermissionDenied,
                                format!("etcd refused user {u:?}: {}", short(&e)),
                            ),
                        ));
                    }
                    why = format!("{ep}: {}", short(&e));
                }
                Err(_) => why = format!("{ep}: no answer within {:?}", self.connect_timeout),
            }
        }
        Err(unreachable(&self.location, &self.endpoints, &why))
    }

    /// One request, made with `f` on the current member; etcd busy (no
    /// leader yet) or a member gone is retried, on the next member where
    /// the connection failed, until the request timeout runs out.
    pub(crate) async fn rpc<T, F, Fut>(&self, op: &'static str, path: &Path, mut f: F) -> Result<T>
    where
        F: FnMut(etcd_client::Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let (etcd, generation) = self.etcd();
            let err = match tokio::time::timeout_at(deadline, f(etcd)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(crate::error::failure(
                        op,
                        path,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "etcd at {} gave no answer within {:?}; is etcd running there?",
                                self.url.endpoints().join(","),
                                self.request_timeout
                            ),
                        ),
                    ));
                }
            };
            let retry = match &err {
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                    self.switch(Some(generation)).await.is_ok()
                }
                etcd_client::Error::GRpcStatus(s) => match s.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        // A member without a leader, or one going away.
                        let _ = self.switch(Some(generation)).await;
                        true
                    }
                    tonic::Code::DeadlineExceeded | tonic::Code::Aborted => true,
                    _ => false,
                },
                _ => false,
            };
            if !retry || tokio::time::Instant::now() + backoff >= deadline {
                let mut e = request_error(op, path, &self.url, &err);
                if let Some(hint) = self.tls_hint(&err) {
                    // Over TLS, a refusal; in plain text, as it was.
                    let kind = if self.scheme == "https://" {
                        std::io::ErrorKind::PermissionDenied
                    } else {
                        crate::error::kind(&e).unwrap_or(std::io::ErrorKind::Other)
                    };
                    e = crate::error::failure(
                        op,
                        path,
                        std::io::Error::new(
                            kind,
                            format!(
                                "etcd at {}: {}: {hint}",
                                self.url.endpoints().join(","),
                                short(&err)
                            ),
                        ),
                    );
                }
                return Err(e);
            }
            tracing::debug!("{op} {}: {err}; retrying", path.display());
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
}

impl Conn {
    /// What a request failing this way most likely means. Over TLS: etcd's
    /// certificate not signed by the CA given; or etcd accepted the
    /// handshake (TLS 1.3 checks the client's certificate after it), then
    /// closed the connection because the client's certificate was missing
    /// or not signed by a CA it trusts (the client only sees the request
    /// cancelled). In plain text: a member serving TLS.
    fn tls_hint(&self, e: &etcd_client::Error) -> Option<&'static str> {
        let text = short(e);
        let tls = self.scheme == "https://";
        if tls && text.contains("invalid peer certificate") {
            return Some(
                "etcd's server certificate does not verify with the CA given \
                 (--cacert or ETCDCTL_CACERT)",
            );
        }
        let closed = match e {
            etcd_client::Error::TransportError(_) => true,
            etcd_client::Error::GRpcStatus(s) => {
                matches!(
                    s.code(),
                    tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
                ) && (text.contains("cancel") || text.contains("transport error"))
            }
            _ => false,
        };
        match (closed, tls, self.client_cert) {
            (false, _, _) => None,
            // The port answers TCP but not plain gRPC: most likely TLS.
            (true, false, _) => Some(
                "etcd answered but closed the connection; if it serves TLS, use etcds:// or \
                 --cacert (ETCDCTL_CACERT)",
            ),
            (true, true, false) => Some(
                "etcd closed the TLS connection; it probably requires a client certificate \
                 (--cert and --key, or ETCDCTL_CERT and ETCDCTL_KEY)",
            ),
            (true, true, true) => Some(
                "etcd closed the TLS connection; it probably does not trust the client \
                 certificate (--cert): is it signed by the CA etcd was given \
                 (--trusted-ca-file)?",
            ),
        }
    }
}

pub(crate) fn request_error(
    op: &'static str,
    path: &Path,
    url: &EtcdUrl,
    e: &etcd_client::Error,
) -> Error {
    let kind = match e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                std::io::ErrorKind::PermissionDenied
            }
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                std::io::ErrorKind::TimedOut
            }
            tonic::Code::NotFound => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::Other,
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            std::io::ErrorKind::ConnectionRefused
        }
        _ => std::io::ErrorKind::Other,
    };
    crate::error::failure(
        op,
        path,
        std::io::Error::new(
            kind,
            format!("etcd at {}: {}", url.endpoints().join(","), short(e)),
        ),
    )
}

/// Blocks the calling thread on a future that runs elsewhere (a task's
/// join handle): park until woken.
fn futures_block_on<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
