//! The library's multi-process integration tests, as one test binary (one
//! link instead of one per file). Each module is one area; run one with
//! `cargo test -p holdfast-testkit --test testkit MODULE::` (for example
//! `lock::`). The Python peers they start live in `tests/peers/`.

mod backend;
mod common;
mod fifo;
mod harden;
mod lock;
mod lock_interop;
mod lockfile;
mod phase;
