//! Guards that own what they borrow, so Python objects can keep them.
//!
//! The library's blocking guards borrow their lock (`LockGuard<'a>`), and
//! some are not `Send` because the in-process bookkeeping of a `Lock` is
//! per thread. A Python object must own its guard and may be touched by
//! any thread, so [`Owned`] keeps the lock alive in an `Arc` beside a guard
//! whose borrow is extended to `'static`.
//!
//! Soundness: the guard is always dropped before the `Arc` it borrows from
//! (explicit `Drop`), and the `Arc`'s contents never move. Sending it to
//! another thread is sound because the library's guards only touch
//! `Sync` state (a mutex-protected state machine and an `Arc<File>`); the
//! Python layer releases a guard on the thread that took it, which is what
//! the per-thread bookkeeping of shared holds needs (a guard dropped
//! elsewhere, by the garbage collector, at worst keeps the kernel lock
//! until the lock object itself is closed).
//!
//! Why not the library's owned guards (`Lock::acquire_owned`)? They open
//! a file description per acquisition, which made an uncontended
//! acquire+release 3-5x slower (measured: ~3 us borrowed vs ~14 us owned
//! without a holder record, on the shared 2-core VM), and `holdfast.Lock`
//! is meant to cost about what a raw `fcntl.flock` pair costs in Python.
//! Lock files, FIFO locks and semaphores use the owned guards.

use std::mem::ManuallyDrop;
use std::sync::Arc;

pub(crate) struct Owned<L: 'static, G> {
    guard: ManuallyDrop<G>,
    owner: ManuallyDrop<Arc<L>>,
}

// SAFETY: see the module docs: the guards only touch `Sync` state of their
// lock, which the `Arc` keeps alive.
unsafe impl<L: Send + Sync + 'static, G> Send for Owned<L, G> {}
// SAFETY: only `&self` accessors of the guard are exposed, which read
// plain fields.
unsafe impl<L: Send + Sync + 'static, G> Sync for Owned<L, G> {}

impl<L: Send + Sync + 'static, G> Owned<L, G> {
    /// Calls `take` with a `'static` borrow of `owner` and keeps what it
    /// returns together with `owner`.
    pub(crate) fn try_new<E>(
        owner: &Arc<L>,
        take: impl FnOnce(&'static L) -> Result<G, E>,
    ) -> Result<Self, E> {
        let owner = Arc::clone(owner);
        // SAFETY: the reference points into the `Arc`'s allocation, which
        // this struct keeps alive (and unmoved) for as long as the guard
        // made from it exists: `Drop` drops the guard first.
        let lock: &'static L = unsafe { &*Arc::as_ptr(&owner) };
        let guard = take(lock)?;
        Ok(Owned {
            guard: ManuallyDrop::new(guard),
            owner: ManuallyDrop::new(owner),
        })
    }

    pub(crate) fn get(&self) -> &G {
        &self.guard
    }

    pub(crate) fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// Hands the guard to `f` (to unlock it and see the result), then lets
    /// go of the owner.
    pub(crate) fn finish<R>(self, f: impl FnOnce(G) -> R) -> R {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so each field is taken exactly once.
        let guard = unsafe { ManuallyDrop::take(&mut me.guard) };
        let r = f(guard);
        // SAFETY: as above; the guard is gone.
        drop(unsafe { ManuallyDrop::take(&mut me.owner) });
        r
    }
}

impl<L: 'static, G> Drop for Owned<L, G> {
    fn drop(&mut self) {
        // SAFETY: dropped once each, guard first (it borrows the owner).
        unsafe {
            ManuallyDrop::drop(&mut self.guard);
            ManuallyDrop::drop(&mut self.owner);
        }
    }
}

/// Carries a value into `Python::detach` (which wants `Send`) when it is
/// only used by the detaching thread itself, which is the thread it
/// belongs to.
pub(crate) struct SameThread<T>(pub(crate) T);

// SAFETY: `detach` runs its closure on the calling thread; the value never
// leaves it.
unsafe impl<T> Send for SameThread<T> {}
