//! holdfast's locks, run-once and setup phases over **etcd** (the v3 API),
//! for processes on different machines.
//!
//! Lock files reach other hosts over NFS, but NFS locking is where teams
//! get hurt; a fleet that outgrows one machine coordinates through a
//! consensus store. This crate gives holdfast's primitives an etcd
//! backend:
//!
//! - [`EtcdLock`]: a named lock, exclusive or shared, **first come first
//!   served**, held under a **lease** that the guard renews in the
//!   background, with a **fencing token** per acquisition;
//! - [`EtcdMarkers`]: phase and run-once completion markers written in
//!   **one etcd transaction that checks the lock is still held**;
//! - the [`holdfast::LockBackend`], [`holdfast::HeldLock`] and
//!   [`holdfast::CompletionStore`] traits over both, so
//!   [`holdfast::PhaseRunner::run_with`] and
//!   [`holdfast::once::RunOnce::run_with`] run unchanged over etcd;
//! - [`Client::status`] / [`Client::list`]: who holds (host, pid, command,
//!   since, token) and who waits, from any machine.
//!
//! The `holdfast` command uses it for `--backend etcd://HOST:PORT[,...]`.
//!
//! ```no_run
//! use std::time::Duration;
//! let client = holdfast_etcd::Client::connect("etcd://10.0.0.5:2379,10.0.0.6:2379")?;
//! let lock = client.lock("nightly-report")?.with_ttl(Duration::from_secs(10))?;
//! let guard = lock.lock_timeout(Duration::from_secs(60))?;
//! println!("holding with fencing token {}", guard.token());
//! // ... work; pass guard.token() to what the work writes to ...
//! guard.check()?; // still ours? (Error::Lost once the lease is gone)
//! guard.release()?;
//! # Ok::<(), holdfast::Error>(())
//! ```
//!
//! # Design
//!
//! Keys live under a prefix (`holdfast/` by default; `etcd://host/PREFIX`
//! picks another):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `PREFIX/lock/NAME/LEASE` | the holder record (JSON: mode, host, pid, uid, command, since) | attached to the acquisition's lease |
//! | `PREFIX/done/NAME/KEY` | the marker (JSON: token, host, pid, time) | durable |
//!
//! Acquiring grants a lease (the TTL, 15 s by default) and puts the queue
//! key under it; etcd stamps the key with the cluster's next revision. The
//! queue is the keys under `PREFIX/lock/NAME/` in revision order. A
//! request holds the lock when nothing older conflicts with it (anything,
//! for an exclusive request; an exclusive key, for a shared one);
//! otherwise it **watches its predecessor** from the revision it looked at
//! and looks again when that key is deleted. No polling, no herd, and
//! arrival order is service order (etcd's own `concurrency.Mutex` recipe,
//! with readers). See [`lock`](crate::EtcdLock) for the details.
//!
//! The client talks to one member at a time and moves to the next member
//! that answers when it stops answering (a killed leader costs one
//! election, about a second with etcd's defaults).
//!
//! # Guarantees, and what a lease cannot guarantee
//!
//! - **Mutual exclusion while leases hold.** etcd's key-value operations
//!   and transactions are linearizable (Jepsen found them
//!   strict-serializable); two live leases never both see themselves first
//!   in the queue.
//! - **A dead holder frees the lock within its TTL.** A holder killed with
//!   SIGKILL, or cut off from etcd, stops renewing; etcd expires its lease
//!   and deletes its key, and the next in line proceeds (tested: within
//!   TTL + 1 s).
//! - **The holder learns of a loss.** The guard counts its lease valid
//!   until *the send time of its last successful renewal* plus the granted
//!   TTL, never later than etcd itself; after that, or when etcd says the
//!   lease is gone, or when its key is deleted, [`EtcdGuard::check`]
//!   returns [`holdfast::Error::Lost`] and [`EtcdGuard::lost_signal`] wakes
//!   (`holdfast run` then stops its command and exits 75).
//! - **It cannot stop a paused holder from acting late.** A process paused
//!   longer than its TTL (SIGSTOP, a stop-the-world GC, a VM migration, a
//!   swap storm) or whose packets were delayed has lost the lock *before it
//!   can know it*: when it runs again, its next step may already overlap
//!   the new holder's. No lease-based lock (etcd's, ZooKeeper's, Redis's)
//!   can prevent that; Kleppmann's "How to do distributed locking" (2016)
//!   and Jepsen's etcd 3.4.3 report say so. That is what fencing is for.
//! - **Fencing.** [`EtcdGuard::token`] is the create revision of the
//!   holder's key: it grows with every acquisition across the cluster, so
//!   a later holder always has a larger token. Whatever the work writes to
//!   can refuse a token smaller than the largest it has seen. What this
//!   crate itself writes, the completion markers, is fenced in etcd: the
//!   marker is put in one transaction that first compares the holder key's
//!   create revision with the token, so **a holder that lost its lock can
//!   never mark anything done** (tested with a SIGSTOPped holder).
//!
//! # A resource checking the fencing token
//!
//! The work of a holder goes to some resource: a database, object storage,
//! another service. To be safe against a paused holder, the resource keeps
//! the largest token it has accepted and refuses smaller ones, in the same
//! atomic step as the write. With SQL:
//!
//! ```sql
//! -- once:
//! CREATE TABLE fence (resource text PRIMARY KEY, token bigint NOT NULL);
//! INSERT INTO fence VALUES ('reports', 0);
//! -- every write of a holder, in one transaction:
//! BEGIN;
//! UPDATE fence SET token = $1 WHERE resource = 'reports' AND token <= $1;
//! -- 0 rows updated: a newer holder has written; ROLLBACK and stop.
//! INSERT INTO reports ...;
//! COMMIT;
//! ```
//!
//! The same check over a key in etcd itself:
//!
//! ```no_run
//! use etcd_client::{Compare, CompareOp, Txn, TxnOp};
//! # async fn f(mut etcd: etcd_client::Client, token: u64) -> Result<(), etcd_client::Error> {
//! // Write `report` only if no newer holder has written: compare the
//! // token stored beside it, in the same transaction as the write.
//! let last = etcd.get("reports/token", None).await?;
//! let seen: u64 = last.kvs().first()
//!     .and_then(|kv| kv.value_str().ok()?.parse().ok())
//!     .unwrap_or(0);
//! if token < seen {
//!     return Ok(()); // a newer holder has been here: stop
//! }
//! let guard_rev = last.kvs().first().map_or(0, |kv| kv.mod_revision());
//! let txn = Txn::new()
//!     .when([Compare::mod_revision("reports/token", CompareOp::Equal, guard_rev)])
//!     .and_then([
//!         TxnOp::put("reports/token", token.to_string(), None),
//!         TxnOp::put("reports/latest", "...", None),
//!     ]);
//! let written = etcd.txn(txn).await?.succeeded(); // false: someone wrote meanwhile; look again
//! # let _ = written; Ok(()) }
//! ```
//!
//! A shell command run by `holdfast run --backend etcd://...` finds its
//! token in `HOLDFAST_FENCING_TOKEN`.
//!
//! # Blocking and async
//!
//! Every operation has a blocking form ([`EtcdLock::acquire`],
//! [`EtcdGuard::release`], ...), and acquisition and release have async
//! forms ([`EtcdLock::acquire_async`], [`EtcdGuard::release_async`],
//! [`ClientOptions::connect_async`]). The [`Client`] owns a one-thread
//! tokio runtime that runs the requests and renews the leases, so the async
//! forms work from any executor and the blocking forms from any thread
//! (not from inside async code: they would block it).
//!
//! # Building
//!
//! `etcd-client` compiles etcd's protobuf definitions at build time and
//! needs `protoc` and its include files: Debian's `protobuf-compiler` and
//! `libprotobuf-dev` (`scripts/install-deps` installs them). TLS is
//! etcd-client's `tls` feature: rustls with the `ring` provider, pure
//! Rust plus a little C and assembly built by `cc`, so it needs no OpenSSL
//! headers; servers are verified against the CA given
//! ([`ClientOptions::ca_cert`]), not the system's roots. Tested against an
//! etcd started with `--cert-file`, `--key-file`, `--trusted-ca-file` and
//! `--client-cert-auth`.

mod client;
/// The library's documentation check, run on this crate's sources: every
/// public function has an example, every fallible one `# Errors`.
#[cfg(test)]
#[path = "../../holdfast/src/doc_coverage.rs"]
mod doc_coverage;
mod error;
mod lock;
mod markers;
mod record;
mod status;
mod sys;
mod traits;
mod url;

pub use client::{Client, ClientOptions};
pub use error::is_unreachable;
pub use lock::{DEFAULT_TTL, EtcdGuard, EtcdLock, LostSignal, MAX_TTL, MIN_TTL};
pub use markers::{EtcdMarkers, Marker};
pub use record::Record;
pub use status::{LockView, QueueEntry};
pub use url::{DEFAULT_PREFIX, EtcdUrl};
