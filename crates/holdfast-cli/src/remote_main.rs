//! `holdfast-remote`: the `holdfast` command with its lock services
//! (`--backend etcd://...`, `postgres://...`) served in this process. The
//! `holdfast` binary `exec`s it, with the same arguments, for every
//! command that names a service, so that its own start-up (every local
//! lock, `once`, `phase`) carries none of the clients' code, imports and
//! libraries. It is [`holdfast_cli::run`], as the Python wheel runs it;
//! this binary keeps the default position-independent link (the network
//! code keeps ASLR; see `build.rs`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    holdfast::process::default_sigpipe();
    std::process::ExitCode::from(holdfast_cli::run(std::env::args_os().collect()))
}
