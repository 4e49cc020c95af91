//! Locks over etcd: a queue of keys ordered by revision, a lease per
//! acquisition, the create revision as the fencing token.
//!
//! # The algorithm
//!
//! Acquiring `NAME` grants a lease of the lock's TTL and puts the key
//! `PREFIX/lock/NAME/LEASE` (the holder record as its value) attached to
//! that lease; etcd stamps it with the cluster's next revision, its *create
//! revision*. The keys under `PREFIX/lock/NAME/` ordered by create revision
//! are the queue. An exclusive request holds the lock when no key is older
//! than its own; a shared one when no older key is exclusive. Otherwise
//! it watches the one key it waits for, its predecessor (the newest older
//! key, or for a shared request the newest older exclusive one), from the
//! revision it looked at, and looks again when that key is deleted: no
//! polling, no thundering herd, and the first to ask is the first served
//! (this is etcd's own `concurrency.Mutex` recipe, with readers added).
//!
//! Each look is one transaction that also checks the request's own key
//! still exists with its create revision: a request whose lease ran out
//! while it waited is never told it holds the lock.
//!
//! # Leases, loss and fencing
//!
//! The lease is renewed every TTL/3 by the client's runtime thread for as
//! long as the guard lives (and while waiting). The guard counts the lease
//! as valid until *the time the last successful renewal was sent* plus the
//! TTL etcd granted: never later than etcd itself will expire it. When
//! that time passes without a renewal, when etcd answers that the lease is
//! gone, or when the key is deleted (`etcdctl lease revoke`, `etcdctl
//! del`), the guard is *lost*: [`EtcdGuard::check`] returns
//! [`Error::Lost`](holdfast::Error::Lost) and [`EtcdGuard::lost_signal`] wakes up.
//!
//! A process paused longer than its TTL (SIGSTOP, a long GC pause, a VM
//! migration) learns that only when it runs again, and may already have
//! acted in between: no lease can prevent that. The fencing token
//! ([`EtcdGuard::token`], the key's create revision: it increases with
//! every acquisition across the cluster) lets the resource itself refuse a
//! stale holder, and the phase and run-once markers of this crate
//! ([`crate::EtcdMarkers`]) are written in one transaction that compares
//! it, so a stale holder can never mark anything done.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use holdfast::{Error, Holders, Mode, Result, Wait};

use crate::client::{Client, Conn};
use crate::record::Record;

/// The lease TTL when none is given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// The shortest TTL accepted. (etcd itself may grant more: with its default
/// election settings its minimum is 2 s; [`EtcdGuard::ttl`] says what it granted.)
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest TTL accepted: a holder that dies keeps the lock this long.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Checks a lock, phase-target or marker name: not empty, at most 255
/// bytes, no `/` (it would reach into another name's keys) and no NUL or
/// other control characters.
pub(crate) fn check_name(what: &str, name: &str, location: &Path) -> Result<()> {
    let reason = if name.is_empty() {
        Some(format!("the {what} is empty"))
    } else if name.len() > 255 {
        Some(format!("the {what} is longer than 255 bytes"))
    } else if name.contains('/') {
        Some(format!(
            "the {what} {name:?} contains '/' (names are single key segments; \
             use the URL's /PREFIX to group locks)"
        ))
    } else if name.chars().any(char::is_control) {
        Some(format!(
            "the {what} {name:?} contains a NUL or another control character"
        ))
    } else if name == "." || name == ".." {
        Some(format!("the {what} {name:?} is not a usable name"))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidInput {
            path: location.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a lease TTL: whole seconds within [`MIN_TTL`]..=[`MAX_TTL`].
pub(crate) fn check_ttl(ttl: Duration, location: &Path) -> Result<()> {
    let reason = if ttl < MIN_TTL || ttl > MAX_TTL {
        Some(format!(
            "lease TTL {ttl:?} is out of range: it must be between {}s and {}s",
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ))
    } else if ttl.subsec_nanos() != 0 {
        Some(format!(
            "lease TTL {ttl:?} is not a whole number of seconds (etcd leases count seconds)"
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidInput {
            path: location.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

impl Client {
    /// The lock `name` (keys under `PREFIX/lock/NAME/`), with the default
    /// TTL. Nothing is sent to etcd until it is acquired.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
    /// let lock = client.lock("deploy")?.with_ttl(std::time::Duration::from_secs(5))?;
    /// let guard = lock.lock()?;
    /// // ... work, passing guard.token() to whatever the work writes to ...
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) if `name` is empty, has a `/`, a NUL or
    /// another control character, or is longer than 255 bytes.
    pub fn lock(&self, name: &str) -> Result<EtcdLock> {
        let location = self.location_of("", name);
        check_name("lock name", name, &location)?;
        Ok(EtcdLock {
            client: self.clone(),
            name: name.to_owned(),
            queue: self.key(&format!("lock/{name}/")),
            location,
            ttl: DEFAULT_TTL,
        })
    }
}

/// A named lock in etcd: exclusive or shared, first come first served,
/// held under a lease. See the [crate docs](crate#design) for the algorithm.
///
/// Cheap to clone; acquiring needs no `&mut`.
///
/// ```no_run
/// use holdfast::{Mode, Wait};
/// use std::time::Duration;
/// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
/// let lock = client.lock("reports")?;
/// let reader = lock.acquire(Mode::Shared, Wait::Timeout(Duration::from_secs(10)))?;
/// assert_eq!(reader.mode(), Mode::Shared);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EtcdLock {
    client: Client,
    name: String,
    queue: String,
    location: PathBuf,
    ttl: Duration,
}

impl EtcdLock {
    /// The same lock with a lease of `ttl`: how long a holder that dies (or
    /// is cut off, or paused) keeps the lock.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// // A holder that dies keeps the lock at most 30 s:
    /// let lock = client.lock("nightly-report")?.with_ttl(std::time::Duration::from_secs(30))?;
    /// assert_eq!(lock.ttl().as_secs(), 30);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](holdfast::Error::InvalidInput) unless `ttl` is whole seconds between
    /// [`MIN_TTL`] and [`MAX_TTL`].
    pub fn with_ttl(mut self, ttl: Duration) -> Result<Self> {
        check_ttl(ttl, &self.location)?;
        self.ttl = ttl;
        Ok(self)
    }

    /// The lock's name.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// assert_eq!(client.lock("nightly-report")?.name(), "nightly-report");
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lease TTL asked for.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let lock = client.lock("nightly-report")?;
    /// println!("a dead holder keeps it for {:?}", lock.ttl());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `etcd://HOST:PORT/NAME`, as errors name it.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let lock = client.lock("nightly-report")?;
    /// println!("locking {}", lock.location().display()); // etcd://10.0.0.5:2379/nightly-report
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The key prefix of its queue: `PREFIX/lock/NAME/`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let lock = client.lock("nightly-report")?;
    /// assert_eq!(lock.queue_prefix(), "holdfast/lock/nightly-report/"); // etcdctl get --prefix
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn queue_prefix(&self) -> &str {
        &self.queue
    }

    /// The client it uses.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let lock = client.lock("nightly-report")?;
    /// let view = lock.client().status(lock.name())?;
    /// println!("{} waiting", view.waiting());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Waits for the exclusive lock.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?; // first come, first served
    /// // ... the work, under a lease the guard renews ...
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EtcdLock::acquire`].
    pub fn lock(&self) -> Result<EtcdGuard> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Waits for a shared lock.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let reader = client.lock("catalog")?.lock_shared()?;
    /// assert_eq!(reader.mode(), holdfast::Mode::Shared);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EtcdLock::acquire`].
    pub fn lock_shared(&self) -> Result<EtcdGuard> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the exclusive lock if it is free now.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// match client.lock("nightly-report")?.try_lock() {
    ///     Ok(guard) => guard.release()?,
    ///     Err(e) if e.is_contention() => println!("already running: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`](holdfast::Error::WouldBlock) naming the holder(s); otherwise as
    /// [`EtcdLock::acquire`].
    pub fn try_lock(&self) -> Result<EtcdGuard> {
        self.acquire(Mode::Exclusive, Wait::NoWait)
    }

    /// Takes a shared lock if no exclusive holder or waiter is ahead.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// if let Ok(reader) = client.lock("catalog")?.try_lock_shared() {
    ///     println!("reading under token {}", reader.token());
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EtcdLock::try_lock`].
    pub fn try_lock_shared(&self) -> Result<EtcdGuard> {
        self.acquire(Mode::Shared, Wait::NoWait)
    }

    /// Waits at most `timeout` for the exclusive lock.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// use std::time::Duration;
    /// let guard = client.lock("nightly-report")?.lock_timeout(Duration::from_secs(60))?;
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](holdfast::Error::Timeout) naming the holder(s); otherwise as
    /// [`EtcdLock::acquire`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<EtcdGuard> {
        self.acquire(Mode::Exclusive, Wait::Timeout(timeout))
    }

    /// Acquires in `mode`, waiting as `wait` says (blocking).
    ///
    /// Must not be called from inside async code (use
    /// [`EtcdLock::acquire_async`] there).
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// use holdfast::{Mode, Wait};
    /// let guard = client.lock("catalog")?.acquire(Mode::Shared, Wait::NoWait)?;
    /// guard.release()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::WouldBlock`](holdfast::Error::WouldBlock) / [`Error::Timeout`](holdfast::Error::Timeout): held by others (named);
    /// - [`Error::Lost`](holdfast::Error::Lost): the lease ran out while waiting (etcd unreachable
    ///   for longer than the TTL);
    /// - [`Error::Backend`](holdfast::Error::Backend): etcd unreachable or refusing (`op` and the
    ///   endpoints say which), permission denied.
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<EtcdGuard> {
        self.client.block_on(acquire(self.clone(), mode, wait))
    }

    /// [`EtcdLock::acquire`] for async code (any executor: the work runs on
    /// the client's own runtime thread).
    ///
    /// ```no_run
    /// use holdfast::{Mode, Wait};
    /// async fn job(lock: &holdfast_etcd::EtcdLock) -> holdfast::Result<()> {
    ///     let guard = lock.acquire_async(Mode::Exclusive, Wait::Forever).await?;
    ///     // ... async work ...
    ///     guard.release_async().await
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EtcdLock::acquire`].
    pub async fn acquire_async(&self, mode: Mode, wait: Wait) -> Result<EtcdGuard> {
        self.client.run(acquire(self.clone(), mode, wait)).await
    }
}

/// What a guard and its renewal task share.
#[derive(Debug)]
pub(crate) struct State {
    inner: Mutex<StateInner>,
    cv: Condvar,
    changed: tokio::sync::watch::Sender<()>,
    stop: tokio::sync::Notify,
}

#[derive(Debug)]
struct StateInner {
    status: Status,
    valid_until: Instant,
    /// [`LostSignal::cancel`] was called.
    cancelled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Held,
    Lost(String),
    Released,
}

impl State {
    fn new(valid_until: Instant) -> Arc<State> {
        Arc::new(State {
            inner: Mutex::new(StateInner {
                status: Status::Held,
                valid_until,
                cancelled: false,
            }),
            cv: Condvar::new(),
            changed: tokio::sync::watch::Sender::new(()),
            stop: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease is gone: `reason`. Only the first reason counts.
    pub(crate) fn lose(&self, reason: String) {
        let mut g = self.lock();
        if g.status == Status::Held {
            g.status = Status::Lost(reason);
            drop(g);
            self.cv.notify_all();
            self.changed.send_replace(());
        }
    }

    fn renewed(&self, until: Instant) {
        let mut g = self.lock();
        if until > g.valid_until {
            g.valid_until = until;
        }
    }

    /// The loss reason, judging the lease by the clock too.
    fn lost_reason(&self) -> Option<String> {
        let mut g = self.lock();
        match &g.status {
            Status::Lost(r) => Some(r.clone()),
            Status::Released => None,
            Status::Held => {
                let now = Instant::now();
                if now > g.valid_until {
                    let r = format!(
                        "its lease ran out {:.1}s ago without a renewal reaching etcd \
                         (process paused, or etcd unreachable)",
                        (now - g.valid_until).as_secs_f64()
                    );
                    g.status = Status::Lost(r.clone());
                    drop(g);
                    self.cv.notify_all();
                    self.changed.send_replace(());
                    Some(r)
                } else {
                    None
                }
            }
        }
    }

    /// Released by its owner: stops the renewals. Returns the status before.
    fn finish(&self) -> Status {
        let mut g = self.lock();
        let before = std::mem::replace(&mut g.status, Status::Released);
        drop(g);
        self.cv.notify_all();
        self.changed.send_replace(());
        self.stop.notify_one();
        before
    }

    fn held(&self) -> bool {
        self.lock().status == Status::Held
    }
}

/// Blocks until a guard's lock is lost (or released): for a thread that
/// must act at once when that happens, such as `holdfast run` stopping its
/// command. Get one with [`EtcdGuard::lost_signal`].
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
/// let guard = client.lock("nightly-report")?.lock()?;
/// let lost = guard.lost_signal();
/// std::thread::spawn(move || {
///     if let Some(why) = lost.wait() {
///         eprintln!("stop: {why}");
///     }
/// });
/// # drop(guard);
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LostSignal {
    state: Arc<State>,
}

impl LostSignal {
    /// Waits until the lock is lost (returns why), released, or
    /// [`LostSignal::cancel`] is called (returns `None`). No polling: the
    /// renewal task wakes it, and it wakes by itself when the lease's time
    /// runs out.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// let lost = guard.lost_signal();
    /// let watcher = std::thread::spawn(move || {
    ///     if let Some(why) = lost.wait() {
    ///         eprintln!("lock lost, stopping: {why}");
    ///     }
    /// });
    /// guard.release()?; // wakes the watcher with None
    /// watcher.join().unwrap();
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn wait(&self) -> Option<String> {
        let mut g = self.state.lock();
        loop {
            if g.cancelled {
                return None;
            }
            match &g.status {
                Status::Lost(r) => return Some(r.clone()),
                Status::Released => return None,
                Status::Held => {
                    let now = Instant::now();
                    if now > g.valid_until {
                        drop(g);
                        return self.state.lost_reason();
                    }
                    let left = g.valid_until - now;
                    g = self
                        .state
                        .cv
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Wakes [`LostSignal::wait`] with `None` without releasing anything;
    /// later waits return `None` at once.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// let lost = guard.lost_signal();
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| lost.wait());
    ///     lost.cancel(); // stop watching, keep the lock
    ///     assert_eq!(waiter.join().unwrap(), None);
    /// });
    /// guard.check()?;
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn cancel(&self) {
        self.state.lock().cancelled = true;
        self.state.cv.notify_all();
    }
}

/// Acquisition: lease, queue key, then wait for the predecessor.
async fn acquire(lock: EtcdLock, mode: Mode, wait: Wait) -> Result<EtcdGuard> {
    let started = Instant::now();
    let (try_only, deadline) = match wait {
        Wait::NoWait => (true, None),
        Wait::Forever => (false, None),
        Wait::Timeout(d) => (false, started.checked_add(d)),
        Wait::Deadline(i) => (false, Some(i)),
    };
    let client = &lock.client;
    let conn = client.conn().clone();
    let path = lock.location.clone();
    let sent = Instant::now();
    let ttl_secs = lock.ttl.as_secs() as i64;
    let grant = conn
        .rpc("grant a lease for", &path, |mut c| async move {
            c.lease_grant(ttl_secs, None).await
        })
        .await?;
    let lease = grant.id();
    let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
    if granted.is_zero() {
        return Err(crate::error::failure(
            "grant a lease for",
            &path,
            std::io::Error::other(format!("etcd refused the lease: {}", grant.error())),
        ));
    }
    let state = State::new(sent + granted);
    let key = format!("{}{lease:016x}", lock.queue);
    let record = Record::for_this_process(mode).encode();
    // Join the queue and read it in one transaction (etcd's own Mutex
    // does the same): put our key unless it exists (a retried request
    // whose first try went through finds it), and read the whole queue.
    let queue_get = || {
        TxnOp::get(
            lock.queue.clone(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend),
            ),
        )
    };
    let join = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.clone(),
                record,
                Some(PutOptions::new().with_lease(lease)),
            ),
            queue_get(),
        ])
        .or_else([TxnOp::get(key.clone(), None), queue_get()]);
    let joined = conn
        .rpc("join the queue of", &path, |mut c| {
            let join = join.clone();
            async move { c.txn(join).await }
        })
        .await;
    let (rev, first) = match joined {
        Ok(r) => {
            let seen = r.header().map(|h| h.revision()).unwrap_or(0);
            let mut responses = r.op_responses().into_iter();
            let own = responses.next();
            let rev = match (r.succeeded(), own) {
                (true, _) => seen,
                (false, Some(TxnOpResponse::Get(g))) => {
                    g.kvs().first().map_or(0, |kv| kv.create_revision())
                }
                (false, _) => 0,
            };
            let older: Vec<KeyValue> = match responses.next() {
                Some(TxnOpResponse::Get(g)) => g
                    .kvs()
                    .iter()
                    .filter(|kv| kv.create_revision() < rev)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            (rev, (seen, older))
        }
        Err(e) => {
            revoke_quietly(client, lease).await;
            return Err(e);
        }
    };
    if rev <= 0 {
        revoke_quietly(client, lease).await;
        return Err(lost_err(
            &path,
            "its queue key vanished as it joined the queue (the lease was revoked)".into(),
        ));
    }
    let first = Some(first);
    client.handle().spawn(renew(
        conn.clone(),
        state.clone(),
        key.clone(),
        rev,
        lease,
        granted,
    ));
    let guard = EtcdGuard {
        client: client.clone(),
        state,
        key,
        lease,
        token: u64::try_from(rev).unwrap_or(0),
        mode,
        location: path,
        ttl: granted,
        released: false,
        waited_for: None,
    };
    match wait_turn(&lock, &guard, first, try_only, deadline, started).await {
        Ok(waited_for) => {
            let mut guard = guard;
            guard.waited_for = waited_for;
            Ok(guard)
        }
        Err(e) => {
            // Leave the queue now rather than when the lease runs out.
            let mut g = guard;
            g.released = true;
            let _ = release(&g.client, &g.state, g.lease, &g.location).await;
            Err(e)
        }
    }
}

/// Waits until no key ahead of ours conflicts with `guard.mode`; returns
/// the holders that were in the way at the first look (`None`: there
/// were none, the lock was free).
async fn wait_turn(
    lock: &EtcdLock,
    guard: &EtcdGuard,
    mut first: Option<(i64, Vec<KeyValue>)>,
    try_only: bool,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<Option<Holders>> {
    let client = &lock.client;
    let conn = client.conn();
    let path = &guard.location;
    let rev = guard.token as i64;
    let mut lost = guard.state.changed.subscribe();
    let mut backoff = Duration::from_millis(20);
    let mut waited_for = None;
    loop {
        if let Some(r) = guard.state.lost_reason() {
            return Err(lost_err(path, format!("while waiting for the lock, {r}")));
        }
        let (seen, older) = if let Some(first) = first.take() {
            // The look made when joining the queue.
            first
        } else {
            // Our key is still ours, and who is ahead of us: one transaction.
            let txn = Txn::new()
                .when([Compare::create_revision(
                    guard.key.clone(),
                    CompareOp::Equal,
                    rev,
                )])
                .and_then([TxnOp::get(
                    lock.queue.clone(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_max_create_revision(rev - 1)
                            .with_sort(SortTarget::Create, SortOrder::Ascend),
                    ),
                )]);
            let resp = match conn
                .rpc("look at the queue of", path, |mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await
            {
                Ok(r) => r,
                Err(e) if transient(&e) && before(deadline) && guard.state.held() => {
                    tracing::debug!("{e}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff = Duration::from_millis(20);
            if !resp.succeeded() {
                return Err(lost_err(
                    path,
                    "its queue key vanished while it waited (the lease expired or was revoked)"
                        .into(),
                ));
            }
            let seen = resp.header().map(|h| h.revision()).unwrap_or(rev);
            let older: Vec<KeyValue> = match resp.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(g)) => g.kvs().to_vec(),
                _ => Vec::new(),
            };
            (seen, older)
        };
        let blocker = match guard.mode {
            Mode::Exclusive => older.last(),
            Mode::Shared => older
                .iter()
                .rev()
                .find(|kv| Record::decode(kv.value()).mode == Mode::Exclusive),
        };
        let Some(blocker) = blocker else {
            return Ok(waited_for);
        };
        if try_only {
            return Err(Error::WouldBlock {
                path: path.clone(),
                mode: guard.mode,
                holders: holders_of(&older),
            });
        }
        if waited_for.is_none() {
            waited_for = Some(holders_of(&older));
        }
        // Watch the one key we wait for, from the revision we looked at.
        let watch = conn
            .etcd()
            .0
            .watch(
                blocker.key().to_vec(),
                Some(WatchOptions::new().with_start_revision(seen + 1)),
            )
            .await;
        let mut stream = match watch {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("watch on {path:?} failed: {e}; looking again");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        if resp.canceled()
                            || resp
                                .events()
                                .iter()
                                .any(|e| e.event_type() == EventType::Delete)
                        {
                            break;
                        }
                    }
                    // The stream ended (leader change, connection lost):
                    // look again.
                    Ok(None) | Err(_) => break,
                },
                () = timeout => {
                    let holders = current_holders(client, lock).await;
                    return Err(Error::Timeout {
                        path: path.clone(),
                        mode: guard.mode,
                        waited: started.elapsed(),
                        holders,
                    });
                }
                _ = lost.changed() => {
                    // Status changed: the loop head reports a loss.
                    break;
                }
            }
        }
    }
}

fn before(deadline: Option<Instant>) -> bool {
    deadline.is_none_or(|d| Instant::now() < d)
}

/// Errors worth another try while waiting: etcd busy electing a leader,
/// a connection to re-establish. Not refusals.
pub(crate) fn transient(e: &Error) -> bool {
    match crate::error::kind(e) {
        Some(k) => !matches!(
            k,
            std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::InvalidInput
        ),
        None => false,
    }
}

pub(crate) fn lost_err(path: &Path, reason: String) -> Error {
    Error::Lost {
        path: path.to_owned(),
        reason,
    }
}

/// The holders among `queue` (sorted by create revision): the first key,
/// and if it is shared, every shared key up to the first exclusive one.
pub(crate) fn holders_of(queue: &[KeyValue]) -> Holders {
    let mut out = Vec::new();
    for kv in queue {
        let rec = Record::decode(kv.value());
        let token = u64::try_from(kv.create_revision()).unwrap_or(0);
        match rec.mode {
            Mode::Exclusive if out.is_empty() => {
                out.push(rec.holder(token));
                break;
            }
            Mode::Exclusive => break,
            Mode::Shared => out.push(rec.holder(token)),
        }
    }
    Holders::from(out)
}

async fn current_holders(client: &Client, lock: &EtcdLock) -> Holders {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    match client
        .conn()
        .rpc("look at", &lock.location, |mut c| {
            let (q, o) = (lock.queue.clone(), opts.clone());
            async move { c.get(q, Some(o)).await }
        })
        .await
    {
        Ok(r) => holders_of(r.kvs()),
        Err(_) => Holders::new(),
    }
}

async fn revoke_quietly(client: &Client, lease: i64) {
    let conn = client.conn();
    let _ = conn
        .rpc("release", &conn.location, |mut c| async move {
            c.lease_revoke(lease).await
        })
        .await;
}

/// Renews the lease every TTL/3 until the guard is released, and notices
/// when it is lost: etcd says it is gone, its key is deleted, or its time
/// runs out without a renewal.
async fn renew(
    conn: Arc<Conn>,
    state: Arc<State>,
    key: String,
    rev: i64,
    lease: i64,
    ttl: Duration,
) {
    let period = (ttl / 3).max(Duration::from_millis(300));
    let mut keeper: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let mut watch: Option<etcd_client::WatchStream> = None;
    let mut next = Instant::now() + period;
    let request_timeout = conn.request_timeout;
    loop {
        let (mut etcd, generation) = conn.etcd();
        if watch.is_none() {
            watch = etcd
                .watch(
                    key.clone(),
                    Some(WatchOptions::new().with_start_revision(rev + 1)),
                )
                .await
                .ok();
        }
        let deleted = async {
            match watch.as_mut() {
                Some(w) => match w.message().await {
                    Ok(Some(resp)) => Some(
                        resp.events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete),
                    ),
                    _ => None,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = state.stop.notified() => return,
            () = tokio::time::sleep_until(next.into()) => {}
            d = deleted => match d {
                Some(true) => {
                    state.lose(format!(
                        "its key {key} was deleted (lease revoked or key removed)"
                    ));
                    return;
                }
                Some(false) => continue,
                None => {
                    watch = None;
                    continue;
                }
            },
        }
        if !state.held() || state.lost_reason().is_some() {
            return;
        }
        let sent = Instant::now();
        let attempt = tokio::time::timeout(period.min(request_timeout), async {
            if keeper.is_none() {
                keeper = Some(etcd.lease_keep_alive(lease).await?);
            }
            let (k, s) = keeper.as_mut().expect("just set");
            k.keep_alive().await?;
            match s.message().await? {
                Some(r) => Ok(r.ttl()),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "keep-alive stream ended".into(),
                )),
            }
        })
        .await;
        match attempt {
            Ok(Ok(ttl)) if ttl > 0 => {
                state.renewed(sent + Duration::from_secs(ttl as u64));
                next = sent + period;
            }
            Ok(Ok(_)) => {
                state.lose(format!(
                    "etcd says its lease {lease:x} has expired or was revoked"
                ));
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("renewing lease {lease:x}: {e}");
                keeper = None;
                watch = None;
                let _ = conn.switch(Some(generation)).await;
                next = Instant::now() + period.min(Duration::from_millis(500));
            }
            Err(_) => {
                keeper = None;
                watch = None;
                let _ = conn.switch(Some(generation)).await;
                next = Instant::now() + period.min(Duration::from_millis(500));
            }
        }
    }
}

/// Revokes the lease (deleting the key) and says what became of the lock.
async fn release(client: &Client, state: &State, lease: i64, path: &Path) -> Result<()> {
    let was = state.finish();
    let revoked = client
        .conn()
        .rpc("release", path, |mut c| async move {
            c.lease_revoke(lease).await
        })
        .await;
    match (was, revoked) {
        (Status::Lost(reason), _) => Err(lost_err(path, reason)),
        (_, Ok(_)) => Ok(()),
        (_, Err(e)) if crate::error::kind(&e) == Some(std::io::ErrorKind::NotFound) => {
            Err(lost_err(
                path,
                "its lease had already expired: another process may have held the lock".into(),
            ))
        }
        (_, Err(e)) => Err(e),
    }
}

/// A held etcd lock. Releasing it (or dropping it) revokes its lease,
/// which deletes its key and lets the next in line in.
///
/// The lease is renewed in the background for as long as the guard lives;
/// [`EtcdGuard::check`] says whether it still holds.
///
/// ```no_run
/// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
/// {
///     let guard = client.lock("nightly-report")?.lock()?;
///     println!("token {}, lease {:x}", guard.token(), guard.lease_id());
/// } // released here: the lease is revoked
/// # Ok::<(), holdfast::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct EtcdGuard {
    client: Client,
    pub(crate) state: Arc<State>,
    key: String,
    lease: i64,
    token: u64,
    mode: Mode,
    location: PathBuf,
    ttl: Duration,
    released: bool,
    waited_for: Option<Holders>,
}

impl EtcdGuard {
    /// Whether this acquisition had to wait, and if so for whom: the
    /// holders ahead of it when it first looked (`None`: the lock was free
    /// at once). Run-once with "propagate the leader's failure" uses it: a
    /// caller that waited for a leader and then finds no completion marker
    /// knows the leader stopped without finishing.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
    /// let guard = client.lock("init")?.lock()?;
    /// if let Some(leader) = guard.waited_for() {
    ///     println!("waited for {leader}");
    /// }
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn waited_for(&self) -> Option<&Holders> {
        self.waited_for.as_ref()
    }

    /// The fencing token: the create revision of this acquisition's key.
    /// Every later acquisition of any lock in the cluster gets a larger one,
    /// so a resource that remembers the largest token it has seen can turn
    /// away a holder whose lease ran out.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// // Hand it to what the work writes to, which refuses anything older:
    /// println!("HOLDFAST_FENCING_TOKEN={}", guard.token());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Exclusive or shared.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// assert_eq!(guard.mode(), holdfast::Mode::Exclusive);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The key that stands for this holder (`PREFIX/lock/NAME/LEASE`).
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// println!("queue key {}", guard.key()); // holdfast/lock/nightly-report/<lease>
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease id.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// println!("etcdctl lease timetolive {:x}", guard.lease_id());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lease_id(&self) -> i64 {
        self.lease
    }

    /// The TTL etcd granted.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// println!("renewed every {:?}", guard.ttl() / 3);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `etcd://HOST:PORT/NAME`.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// println!("holding {}", guard.location().display());
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// `Ok(())` while the lease is known to be alive.
    ///
    /// No request is made: the answer comes from the renewals so far, so it
    /// may say "held" for a lease etcd revoked a moment ago (until the
    /// renewal task hears of it), but never for a lease whose time ran out.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// // ... work ...
    /// guard.check()?; // Err(Lost) once the lease is gone: do not publish the result
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](holdfast::Error::Lost) with the reason once the lock is lost.
    pub fn check(&self) -> Result<()> {
        match self.state.lost_reason() {
            Some(r) => Err(lost_err(&self.location, r)),
            None => Ok(()),
        }
    }

    /// A handle that blocks until this lock is lost.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// let lost = guard.lost_signal();
    /// std::thread::spawn(move || {
    ///     if let Some(why) = lost.wait() {
    ///         eprintln!("lost the lock: {why}");
    ///     }
    /// });
    /// # drop(guard);
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    pub fn lost_signal(&self) -> LostSignal {
        LostSignal {
            state: self.state.clone(),
        }
    }

    /// Releases the lock now.
    ///
    /// ```no_run
    /// let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379")?;
    /// let guard = client.lock("nightly-report")?.lock()?;
    /// guard.release()?; // revokes the lease: the next waiter runs at once
    /// # Ok::<(), holdfast::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Lost`](holdfast::Error::Lost) if the lock had been lost before (the work done
    /// under it may have overlapped another holder's); [`Error::Backend`](holdfast::Error::Backend) if
    /// etcd cannot be reached (the lease then runs out by itself).
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        let (client, state, lease, path) = (
            self.client.clone(),
            self.state.clone(),
            self.lease,
            self.location.clone(),
        );
        self.client
            .block_on(async move { release(&client, &state, lease, &path).await })
    }

    /// [`EtcdGuard::release`] for async code.
    ///
    /// ```no_run
    /// async fn done(guard: holdfast_etcd::EtcdGuard) -> holdfast::Result<()> {
    ///     guard.release_async().await
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EtcdGuard::release`].
    pub async fn release_async(mut self) -> Result<()> {
        self.released = true;
        let (client, state, lease, path) = (
            self.client.clone(),
            self.state.clone(),
            self.lease,
            self.location.clone(),
        );
        self.client
            .run(async move { release(&client, &state, lease, &path).await })
            .await
    }
}

impl Drop for EtcdGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, state, lease, path) = (
            self.client.clone(),
            self.state.clone(),
            self.lease,
            self.location.clone(),
        );
        let fut = async move {
            if let Err(e) = release(&client, &state, lease, &path).await {
                tracing::warn!("releasing {}: {e}", path.display());
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside async code: cannot block here; the release runs on.
            self.client.handle().spawn(fut);
        } else {
            self.client.block_on(fut);
        }
    }
}
