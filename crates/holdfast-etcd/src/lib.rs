//! wip
mod client;
mod error;
mod lock;
mod markers;
mod record;
mod status;
mod traits;
mod url;

pub use client::{Client, ClientOptions};
pub use error::is_unreachable;
pub use lock::{DEFAULT_TTL, EtcdGuard, EtcdLock, LostSignal, MAX_TTL, MIN_TTL};
pub use markers::EtcdMarkers;
pub use record::Record;
pub use status::{LockView, QueueEntry};
pub use url::{DEFAULT_PREFIX, EtcdUrl};
