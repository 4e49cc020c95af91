//! The one piece of platform code of this crate: the client's runtime
//! threads block `SIGPIPE`.
//!
//! gRPC writes to its sockets with `writev(2)`, which (unlike `send(2)`
//! with `MSG_NOSIGNAL`) raises `SIGPIPE` when the peer has closed the
//! connection: an etcd refusing a TLS handshake (no client certificate),
//! or a member killed mid-request. A program that leaves `SIGPIPE` at its
//! default (C programs, and the `holdfast` command, which does so to end
//! quietly on a closed stdout) would die of it, silently. Blocked on the
//! threads that do the writes, the signal stays pending on them and the
//! write fails with `EPIPE`, which the client reports (and which
//! fail-over handles). The process's disposition and the mask of every
//! other thread (the one that spawns commands, too) are untouched.

/// Blocks `SIGPIPE` for the calling thread.
pub(crate) fn block_sigpipe_in_this_thread() {
    #[cfg(unix)]
    {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is initialised by sigemptyset before sigaddset and
        // pthread_sigmask read it; both only write into it; the old mask
        // is not asked for (null). Changes only this thread's mask.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        }
    }
}
