//! holdfast's backend traits over etcd, so that the library's generic
//! phase runner and run-once ([`holdfast::PhaseRunner::run_with`],
//! [`holdfast::once::RunOnce::run_with`]) and any code written against
//! [`LockBackend`] run unchanged over etcd.
//!
//! ```no_run
//! use holdfast::{Phase, PhaseRunner};
//! let client = holdfast_etcd::Client::connect("etcd://127.0.0.1:2379")?;
//! let lock = client.lock("app-db")?;
//! let markers = client.markers("app-db")?;
//! let runner = PhaseRunner::new("app-db");
//! runner.run_with(&lock, &markers, [
//!     Phase::new("schema-v1", |_| Ok(())),
//!     Phase::new("seed-v1", |_| Ok(())),
//! ])?;
//! # Ok::<(), holdfast::Error>(())
//! ```

use std::path::Path;

use holdfast::{CompletionStore, HeldLock, LockBackend, Mode, Result, Wait};

use crate::lock::{EtcdGuard, EtcdLock};
use crate::markers::EtcdMarkers;

impl LockBackend for EtcdLock {
    type Guard = EtcdGuard;

    fn location(&self) -> &Path {
        EtcdLock::location(self)
    }

    fn acquire(&self, mode: Mode, wait: Wait) -> Result<EtcdGuard> {
        EtcdLock::acquire(self, mode, wait)
    }
}

impl HeldLock for EtcdGuard {
    fn mode(&self) -> Mode {
        EtcdGuard::mode(self)
    }

    fn token(&self) -> Option<u64> {
        Some(EtcdGuard::token(self))
    }

    fn check(&self) -> Result<()> {
        EtcdGuard::check(self)
    }

    fn release(self) -> Result<()> {
        EtcdGuard::release(self)
    }
}

impl CompletionStore<EtcdGuard> for EtcdMarkers {
    fn is_done(&self, key: &str) -> Result<bool> {
        EtcdMarkers::is_done(self, key)
    }

    fn done_keys(&self) -> Result<Vec<String>> {
        EtcdMarkers::done_keys(self)
    }

    fn mark_done(&self, key: &str, held: &EtcdGuard) -> Result<()> {
        EtcdMarkers::mark_done(self, key, held)
    }

    fn clear(&self, key: &str) -> Result<bool> {
        EtcdMarkers::clear(self, key)
    }
}
