//! The `holdfast` command's integration tests, as one test binary (one
//! link instead of one per file). Each module is one area; run one with
//! `cargo test -p holdfast-cli --test cli MODULE::` (for example
//! `once_phase::`). The etcd and PostgreSQL modules start their own
//! servers (see `scripts/test` for the `HOLDFAST_REQUIRE_*` switches).

mod break_fifo;
mod cli;
mod common;
mod etcd;
mod fuzz_disk;
mod harden;
mod inspect;
mod once_phase;
mod postgres;
mod remote_phases;
