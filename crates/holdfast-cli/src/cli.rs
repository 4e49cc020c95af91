//! Command-line definitions (clap): the first of the two parsing stages.
//!
//! These structs only describe the raw flags; each `cmd/` module validates
//! them into library options. Help, the man pages (`holdfast man`) and the
//! shell completions (`holdfast completions`) are generated from these
//! same definitions, so they cannot drift apart.
//!
//! Adding a subcommand: one variant in [`Command`], one `*Args` struct
//! here, one module in `cmd/`, one arm in `main`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Process coordination around files: locks that name their holder.
#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    about,
    long_about = LONG_ABOUT,
    after_help = "Run 'holdfast help' for examples, 'holdfast help COMMAND' for each command.",
    after_long_help = RECIPES,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "\
Process coordination around files: locks that name their holder.

holdfast runs commands under kernel file locks (flock(2), the same locks as \
util-linux flock(1), Python filelock and friends), tells who is holding a \
lock and for how long, and tells a timeout apart from a conflict. \
'holdfast flock' is a drop-in replacement for flock(1); a symlink named \
'flock' pointing at holdfast behaves as flock(1) too.";

const RECIPES: &str = "\
Recipes:
  # A cron job that must never overlap with itself (a second run exits 1 at once):
  */5 * * * *  holdfast run --no-wait /run/lock/backup.lock -- /usr/local/bin/backup

  # Migration at container start: every replica runs this; one migrates while
  # the others wait (up to 10 minutes, then exit 124), then they all start:
  holdfast run --timeout 10m /shared/app/migrate.lock -- ./manage.py migrate && exec ./server

  # A single-instance script (the lock lives as long as the shell does):
  exec 9>/run/lock/myscript.lock
  holdfast flock --nonblock 9 || { echo 'already running' >&2; exit 1; }

  # The same, for scripts that already use flock(1): nothing changes.
  ln -s \"$(command -v holdfast)\" /usr/local/bin/flock

  # Who holds it, and since when? (exit 1 while held; --json for scripts)
  holdfast status /shared/app/migrate.lock
  holdfast list --json /run/lock

Exit codes (run): the command's own status, 128+N if it was killed by signal N,
1 if the lock is held and --no-wait was given, 124 if --timeout ran out,
64 for bad input, 126/127 if the command cannot be run. 'holdfast flock' uses
flock(1)'s codes; see 'holdfast help flock'.

Shell completions: holdfast completions bash|zsh|fish|elvish|powershell
Man pages: holdfast man [COMMAND] | man -l -";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command while holding a lock; its exit status is passed through.
    Run(RunArgs),
    /// A drop-in for util-linux flock(1): same options, same exit codes.
    Flock(FlockArgs),
    /// Show whether locks are held, and by whom.
    Status(StatusArgs),
    /// List the locks in a directory that are held or carry a holder record.
    List(ListArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print a man page (roff) for holdfast or one of its commands.
    Man(ManArgs),
}

const RUN_HELP: &str = "\
Examples:
  holdfast run --no-wait /run/lock/backup.lock -- /usr/local/bin/backup
  holdfast run --timeout 30s /srv/app/migrate.lock -- ./manage.py migrate
  holdfast run --shared /srv/app/schema.lock -- ./read-only-report

While it waits longer than a moment with stderr on a terminal (or with
--verbose), holdfast shows who holds the lock:
  waiting for an exclusive lock on ./app.lock — held by pid 4242 (python3 migrate.py) for 3.2s

The command gets the lock's file descriptor (so the lock lives as long as the
command does, even if holdfast is killed; --close turns that off) and the
fencing token of the acquisition in HOLDFAST_FENCING_TOKEN.

Exit codes:
  N      the command's own exit status
  128+N  the command was killed by signal N
  1      the lock is held and --no-wait (or --timeout 0) was given
  124    --timeout ran out (as timeout(1)); distinct from 1
  64     bad input: missing command, bad duration, negative timeout, lock path
         in a missing or unwritable directory, a lock path that is a symlink
  66     the lock file exists but cannot be opened
  71     the kernel refused the lock (or a system limit was hit)
  73     the lock file cannot be created (read-only filesystem, disk full)
  126    the command cannot be executed
  127    the command was not found";

#[derive(Debug, Args)]
#[command(after_long_help = RUN_HELP)]
pub struct RunArgs {
    /// Take a shared lock instead of an exclusive one.
    #[arg(short, long)]
    pub shared: bool,
    /// Give up after this long (5s, 500ms, 2m, 1.5h; a bare number is seconds): exit 124.
    #[arg(
        short = 'w',
        long,
        value_name = "DURATION",
        conflicts_with = "no_wait",
        allow_hyphen_values = true
    )]
    pub timeout: Option<String>,
    /// Fail at once (exit 1) if the lock is held.
    #[arg(short, long)]
    pub no_wait: bool,
    /// Do not pass the lock's file descriptor to the command (by default the
    /// command inherits it, so the lock lives as long as the command does).
    #[arg(short = 'o', long)]
    pub close: bool,
    /// Use open-file-description fcntl locks (seen by fcntl/lockf users and
    /// `flock --fcntl`, not by flock(2) users).
    #[arg(long)]
    pub fcntl: bool,
    /// Report waiting and acquisition on stderr, even when it is not a terminal.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Never show the waiting line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Create missing parent directories of the lock file.
    #[arg(long)]
    pub create_parents: bool,
    /// The lock file (created if missing; a directory works too).
    pub lockfile: PathBuf,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

const FLOCK_HELP: &str = "\
Forms (as util-linux flock(1)):
  holdfast flock [options] FILE|DIR COMMAND [ARGS...]
  holdfast flock [options] FILE|DIR -c COMMAND-STRING
  holdfast flock [options] FD

Options end at the first argument that is not an option, so the command's
own options pass through untouched. Invoked through a symlink named 'flock',
holdfast behaves exactly like this command.

Examples:
  holdfast flock -n /run/lock/backup.lock /usr/local/bin/backup
  holdfast flock -w 30 /srv/app/migrate.lock -c './manage.py migrate && touch done'
  ( holdfast flock -s 9 && ./reader ) 9>/srv/app/data.lock
  exec 9>/run/lock/myscript.lock; holdfast flock -n 9 || exit 1

While it waits longer than a moment with stderr on a terminal (or with
--verbose), it shows who holds the lock on stderr; it is silent otherwise.
--verbose also prints flock(1)'s own messages (on stdout, as flock(1) does).

Exit codes (identical to util-linux flock(1)):
  N      the command's exit status (128+N if it was killed by signal N)
  1      conflict (-n) or timeout (-w); -E sets another code for both
  64     usage error
  65     the lock operation failed (for example a closed descriptor)
  66     the lock file cannot be opened
  69     the command cannot be executed
  71     system limit or --wait value the timer cannot take (negative, too large)
  73     the lock file cannot be created (read-only filesystem, disk full)";

/// The flags of `holdfast flock`, spelled as util-linux flock(1) spells them.
#[derive(Debug, Args)]
#[command(
    after_long_help = FLOCK_HELP,
    args_override_self = true,
    infer_long_args = true,
    override_usage = "holdfast flock [OPTIONS] FILE|DIR COMMAND [ARGS]...\n       \
                      holdfast flock [OPTIONS] FILE|DIR -c COMMAND\n       \
                      holdfast flock [OPTIONS] FD",
)]
pub struct FlockArgs {
    /// Get a shared lock.
    #[arg(short = 's', long, overrides_with_all = ["exclusive", "unlock"])]
    pub shared: bool,
    /// Get an exclusive lock (the default).
    #[arg(short = 'x', short_alias = 'e', long, overrides_with_all = ["shared", "unlock"])]
    pub exclusive: bool,
    /// Remove a lock (from the descriptor, in the FD form).
    #[arg(short = 'u', long, overrides_with_all = ["shared", "exclusive"])]
    pub unlock: bool,
    /// Fail rather than wait.
    #[arg(
        short = 'n',
        long = "nonblock",
        visible_alias = "nb",
        alias = "nonblocking"
    )]
    pub nonblock: bool,
    /// Wait at most SECS seconds (fractions allowed; 0 means --nonblock).
    #[arg(
        short = 'w',
        long = "timeout",
        visible_alias = "wait",
        value_name = "SECS",
        allow_hyphen_values = true
    )]
    pub timeout: Option<String>,
    /// Exit code after a conflict or timeout (default 1).
    #[arg(
        short = 'E',
        long = "conflict-exit-code",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub conflict_exit_code: Option<String>,
    /// Close the lock's descriptor before running the command.
    #[arg(short = 'o', long)]
    pub close: bool,
    /// Execute the command without forking (holdfast becomes the command).
    #[arg(short = 'F', long)]
    pub no_fork: bool,
    /// Use open-file-description fcntl locks (F_OFD_SETLK) rather than flock(2).
    #[arg(long)]
    pub fcntl: bool,
    /// Print what happens (flock(1)'s messages) and who holds the lock while waiting.
    #[arg(long)]
    pub verbose: bool,
    /// FILE|DIR COMMAND [ARGS...], FILE|DIR -c COMMAND, or FD.
    #[arg(
        value_name = "FILE|FD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Exit codes: 0 if every lock is free, 1 if any is held, 64 for bad input,
66 if a lock file exists but cannot be read.

JSON: an array with one object per path: path, exists, held, mode, holders
(pid, command, host, uid, since [Unix seconds], held_for [seconds], mode,
token, source [record|kernel|unverified], this_process) and last_record
(the holder record left in the file, with its fencing token).")]
pub struct StatusArgs {
    /// Print JSON (one object per lock, in an array).
    #[arg(long)]
    pub json: bool,
    /// Lock files to inspect.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Lists every file (and directory) directly in DIR that is locked now, or that
carries a holdfast holder record from an earlier holder. Symbolic links are
skipped. Exit codes: 0 on success, 64 if DIR is not a directory, 66 if
some entry could not be read (the others are still listed).

JSON: an array of the same objects 'holdfast status --json' prints.")]
pub struct ListArgs {
    /// Print JSON (one object per lock, in an array).
    #[arg(long)]
    pub json: bool,
    /// The directory to look in.
    pub dir: PathBuf,
}

/// Shells clap_complete can write completions for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  holdfast completions bash > /etc/bash_completion.d/holdfast
  holdfast completions zsh > \"${fpath[1]}/_holdfast\"
  holdfast completions fish > ~/.config/fish/completions/holdfast.fish")]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  holdfast man | man -l -
  holdfast man flock > /usr/local/share/man/man1/holdfast-flock.1")]
pub struct ManArgs {
    /// The command to document (default: holdfast itself).
    pub command: Option<String>,
}
