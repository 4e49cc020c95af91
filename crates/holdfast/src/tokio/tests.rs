//! The async road through the polling fallback.

use super::poll::{FORCE_POLL, POLL_WAITS};
use super::*;
use crate::{FifoLock, Lock, Semaphore};

fn runtime() -> ::tokio::runtime::Runtime {
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A held guard of a blocking primitive and the async acquisition that
/// waits for it (its own open file descriptions, so the kernel makes
/// them exclude each other within this process).
enum Kind {
    Plain,
    Fifo,
    Sem,
}

type Held = Box<dyn std::any::Any>;

impl Kind {
    fn hold(&self, path: &Path) -> Held {
        match self {
            Kind::Plain => Box::new(
                Lock::open(path)
                    .unwrap()
                    .acquire_owned(Mode::Exclusive, Wait::NoWait)
                    .unwrap(),
            ),
            Kind::Fifo => Box::new(
                FifoLock::open(path)
                    .unwrap()
                    .acquire_owned(Mode::Exclusive, Wait::NoWait)
                    .unwrap(),
            ),
            Kind::Sem => Box::new(
                Semaphore::open(path, 1)
                    .unwrap()
                    .acquire_owned(Mode::Exclusive, Wait::NoWait)
                    .unwrap(),
            ),
        }
    }

    async fn acquire(&self, path: &Path, wait: Wait) -> Result<Held> {
        Ok(match self {
            Kind::Plain => Box::new(
                AsyncLock::open(path)?
                    .acquire(Mode::Exclusive, wait)
                    .await?,
            ),
            Kind::Fifo => Box::new(
                AsyncFifoLock::open(path)?
                    .acquire(Mode::Exclusive, wait)
                    .await?,
            ),
            Kind::Sem => Box::new(
                AsyncSemaphore::open(path, 1)?
                    .acquire(Mode::Exclusive, wait)
                    .await?,
            ),
        })
    }
}

/// Where no waiter task can be created (forced here as
/// `HOLDFAST_WAITER=poll`, an old kernel or a seccomp `EPERM` force it),
/// every async primitive still times out on time naming the wait, and
/// gets the lock once it is released, by bounded polling.
#[test]
fn every_async_primitive_waits_through_the_polling_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    FORCE_POLL.with(|f| f.set(true));
    for (name, kind) in [
        ("AsyncLock", Kind::Plain),
        ("AsyncFifoLock", Kind::Fifo),
        ("AsyncSemaphore", Kind::Sem),
    ] {
        let path = dir.path().join(name);
        let held = kind.hold(&path);

        let polls = POLL_WAITS.with(std::cell::Cell::get);
        let started = Instant::now();
        let err = rt
            .block_on(kind.acquire(&path, Wait::Timeout(Duration::from_millis(120))))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{name}: {err}");
        assert!(started.elapsed() >= Duration::from_millis(120), "{name}");
        assert!(
            POLL_WAITS.with(std::cell::Cell::get) > polls,
            "{name}: did not poll"
        );

        // Released while the untimed acquisition polls: it gets the lock.
        let polls = POLL_WAITS.with(std::cell::Cell::get);
        let got = rt.block_on(async {
            let release = async {
                while POLL_WAITS.with(std::cell::Cell::get) == polls {
                    ::tokio::task::yield_now().await;
                }
                ::tokio::time::sleep(Duration::from_millis(5)).await;
                drop(held);
            };
            let wait =
                ::tokio::time::timeout(Duration::from_secs(30), kind.acquire(&path, Wait::Forever));
            ::tokio::join!(release, wait).1
        });
        let guard = got
            .unwrap_or_else(|_| panic!("{name}: never got the lock after its release"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        drop(guard);
    }
    FORCE_POLL.with(|f| f.set(false));
}
