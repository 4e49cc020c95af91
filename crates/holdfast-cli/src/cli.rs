//! Command-line definitions (clap). Help, man page and completions come
//! from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Process coordination around files: locks that name their holder.
#[derive(Debug, Parser)]
#[command(name = "holdfast", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  # A cron job that must never overlap with itself:
  holdfast run --no-wait /run/lock/backup.lock -- /usr/local/bin/backup

  # Wait at most 30 seconds for a migration lock, then give up (exit 124):
  holdfast run --timeout 30s /srv/app/migrate.lock -- ./manage.py migrate

  # Who holds it?
  holdfast status /srv/app/migrate.lock";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command while holding a lock; its exit status is passed through.
    Run(RunArgs),
    /// Show whether locks are held, and by whom.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Take a shared lock instead of an exclusive one.
    #[arg(short, long)]
    pub shared: bool,
    /// Give up after this long (5s, 500ms, 2m; a bare number is seconds): exit 124.
    #[arg(short = 'w', long, value_name = "DURATION", conflicts_with = "no_wait")]
    pub timeout: Option<String>,
    /// Fail at once (exit 1) if the lock is held.
    #[arg(short, long)]
    pub no_wait: bool,
    /// Do not pass the lock's file descriptor to the command (by default the
    /// command inherits it, so the lock lives as long as the command does).
    #[arg(short = 'o', long)]
    pub close: bool,
    /// Report waiting and acquisition on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Create missing parent directories of the lock file.
    #[arg(long)]
    pub create_parents: bool,
    /// The lock file (created if missing; a directory works too).
    pub lockfile: PathBuf,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (one object per lock, in an array).
    #[arg(long)]
    pub json: bool,
    /// Lock files to inspect.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}
