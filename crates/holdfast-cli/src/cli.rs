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
util-linux flock(1), Python filelock and friends), in arrival order if asked, \
or under lock files for NFS and several hosts (the formats of Python's \
flufl.lock, lockfile and filelock); tells who is holding a lock and for how \
long, tells a timeout apart from a conflict, and breaks lock files whose \
holder is gone. 'holdfast flock' is a drop-in replacement for flock(1); a \
symlink named 'flock' pointing at holdfast behaves as flock(1) too.";

const RECIPES: &str = "\
Recipes:
  # A cron job that must never overlap with itself (a second run exits 1 at once):
  */5 * * * *  holdfast run --no-wait /run/lock/backup.lock -- /usr/local/bin/backup

  # Migration at container start: every replica runs this; the first one
  # migrates while the others wait, replicas started later skip it, and a
  # failed migration is not marked done, so the next start retries it:
  holdfast phase migrate-v42 --target /shared/app/app.db -- ./manage.py migrate && exec ./server
  # (the markers are Python phaselock's: its PhaseLockService sees them too)

  # The same for any one-time step, with a plain marker file ('[ -e KEY ]'):
  holdfast once /shared/app/cache-ready -- ./warm-cache.sh

  # A single-instance script (the lock lives as long as the shell does):
  exec 9>/run/lock/myscript.lock
  holdfast flock --nonblock 9 || { echo 'already running' >&2; exit 1; }

  # The same, for scripts that already use flock(1): nothing changes.
  ln -s \"$(command -v holdfast)\" /usr/local/bin/flock

  # Deployments that must take turns, first come first served:
  holdfast run --fifo /run/lock/deploy.lock -- ./deploy.sh

  # A job shared by several hosts over NFS (a lock file, lease renewed while
  # it runs; the same lock as Python flufl.lock's on that path):
  holdfast run --lockfile link /nfs/shared/nightly.lock -- ./nightly.sh

  # Who holds it, and since when? (exit 1 while held; --json for scripts)
  holdfast status /shared/app/migrate.lock
  holdfast list --json /run/lock
  holdfast phases status /shared/app/app.db

  # A lock file left behind by a crashed holder (only if it is stale):
  holdfast break /nfs/shared/nightly.lock

Exit codes (run, once, phase): the command's own status, 128+N if it was
killed by signal N, 1 if the lock is held and --no-wait was given, 124 if
--timeout ran out, 64 for bad input, 126/127 if the command cannot be run;
once and phase exit 0 when the step was already done. break: 0 broken, 1
refused (live holder, kernel lock), 66 no lock file there. 'holdfast flock'
uses flock(1)'s codes; see 'holdfast help flock'.

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
    /// List the locks in a directory: held ones, lock files, and holder records.
    List(ListArgs),
    /// Remove a stale lock file (soft, link or mkdir protocol); never a kernel lock.
    Break(BreakArgs),
    /// Run a command once across all concurrent and later callers.
    Once(OnceArgs),
    /// Run a command as one setup phase of a target, unless already done.
    Phase(PhaseArgs),
    /// Show or reset the phase markers of a target.
    Phases(PhasesArgs),
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
  holdfast run --fifo /srv/app/deploy.lock -- ./deploy.sh       # first come, first served
  holdfast run --lockfile link /nfs/shared/job.lock -- ./job    # across NFS clients

While it waits longer than a moment with stderr on a terminal (or with
--verbose), holdfast shows who holds the lock:
  waiting for an exclusive lock on ./app.lock — held by pid 4242 (python3 migrate.py) for 3.2s

Kernel locks (the default): the command gets the lock's file descriptor (so
the lock lives as long as the command does, even if holdfast is killed;
--close turns that off) and the fencing token of the acquisition in
HOLDFAST_FENCING_TOKEN. SIGTERM, SIGHUP, SIGINT and SIGQUIT sent to holdfast
are passed on to the command (in every mode), and holdfast exits with the
command's status once it has stopped ('holdfast flock' does not, as flock(1)
does not). --fifo queues the waiters (holdfast::FifoLock, queue
file LOCKFILE.fifo): they get the lock in the order they asked for it, while
the lock itself is the same kernel lock flock(1) and 'holdfast run' take.

Lock files (--lockfile soft|link|mkdir): the lock is a file (or directory)
that exists while it is held, for NFS and several hosts, and for paths that
Python's flufl.lock (link), lockfile (--compat lockfile) or filelock's
SoftFileLock (soft --compat filelock) guard. It names holdfast as its
holder, so holdfast stays until the command exits and then removes it:
SIGTERM, SIGHUP, SIGINT and SIGQUIT sent to holdfast are passed on to the
command, and if holdfast is killed outright the command is killed too
(so it never runs on without the lock; processes it started in the
background are its own business). A lock whose holder died is taken
over at once on the same host; a holder on another host is trusted until
its lease (--lifetime; link locks default to 15s) runs out, so while the
command runs holdfast renews the lease every lifetime/3 (--no-heartbeat
turns that off).

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
  75     --lockfile: the lock was broken or lost while the command ran
  126    the command cannot be executed
  127    the command was not found";

/// `--timeout` / `--no-wait`: how long to wait for the lock. Shared by
/// every command that waits (`run`, `once`, `phase`, `phases reset`).
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Give up after this long (5s, 500ms, 2m, 1.5h; a bare number is
    /// seconds): exit 124. 0 means --no-wait.
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
}

/// `--verbose` / `--quiet`: what holdfast says on stderr while it waits
/// and works. Shared by `run`, `once` and `phase`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Say what happens (waiting, acquisition, ran or skipped) on stderr,
    /// and show the waiting line even when stderr is not a terminal.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Never show the waiting line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--close`: whether the command inherits the lock. Shared by `run`,
/// `once` and `phase`.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// Do not pass the lock's file descriptor to the command (by default
    /// the command inherits it, so the lock lives as long as the command
    /// does, even if holdfast is killed).
    #[arg(short = 'o', long)]
    pub close: bool,
}

#[derive(Debug, Args)]
#[command(after_long_help = RUN_HELP)]
pub struct RunArgs {
    /// Take a shared lock instead of an exclusive one.
    #[arg(short, long)]
    pub shared: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub close: CloseArgs,
    /// Use open-file-description fcntl locks (seen by fcntl/lockf users and
    /// `flock --fcntl`, not by flock(2) users).
    #[arg(long)]
    pub fcntl: bool,
    /// Serve waiters in arrival order (a FIFO queue in LOCKFILE.fifo in front
    /// of the same kernel lock).
    #[arg(long)]
    pub fifo: bool,
    /// Use a lock file of this protocol instead of a kernel lock (for NFS,
    /// several hosts, and paths Python lock-file libraries guard).
    #[arg(
        long = "lockfile",
        value_enum,
        value_name = "PROTOCOL",
        conflicts_with_all = ["shared", "fcntl", "fifo", "close"]
    )]
    pub protocol: Option<ProtocolArg>,
    /// With --lockfile: whose on-disk format to follow (default: holdfast's;
    /// link locks are flufl.lock's).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "protocol")]
    pub compat: Option<CompatArg>,
    /// With --lockfile: the lease other hosts trust (5s, 2m, ...; default:
    /// 15s for link locks, none for soft and mkdir).
    #[arg(long, value_name = "DURATION", requires = "protocol")]
    pub lifetime: Option<String>,
    /// With --lockfile: renew the lease every lifetime/3 while the command
    /// runs (the default whenever there is a lease).
    #[arg(long, requires = "protocol", overrides_with = "no_heartbeat")]
    pub heartbeat: bool,
    /// With --lockfile: do not renew the lease; it ends after --lifetime
    /// even if the command still runs.
    #[arg(long, requires = "protocol", overrides_with = "heartbeat")]
    pub no_heartbeat: bool,
    #[command(flatten)]
    pub show: ShowArgs,
    /// Create missing parent directories of the lock file.
    #[arg(long)]
    pub create_parents: bool,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// The lock file (created if missing; a directory works too); with
    /// --backend, the lock's name.
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

Like flock(1) it follows a symlink at FILE to lock what the link names. It
writes its holder record only into a file of the user's own reached without a
link, and never creates a file where a dangling link points (exit 66).

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
Each path is looked at as a kernel lock (the kernel's lock table and the
holder record holdfast writes) and, when its content shows one, as a lock
file: holdfast's soft, link and mkdir locks, Python flufl.lock's,
lockfile's (also found at PATH.lock) and filelock's SoftFileLock. A lock
file shows its holder, whether that holder is alive (checked on this host)
or stale (and why), and its lease.

Exit codes: 0 if every lock is free (a stale lock file counts as free:
acquirers take it over, 'holdfast break' removes it), 1 if any is held, 64
for bad input, 66 if a lock file exists but cannot be read.

JSON: an array with one object per path: path, exists, held, mode, holders
(kernel holders: pid, command, host, uid, since [Unix seconds], held_for
[seconds], mode, token, source [record|kernel|unverified], this_process),
last_record (the holder record left in the file, with its fencing token)
and lockfile (null, or: path, protocol [soft|link|mkdir], format
[holdfast|flufl|lockfile|filelock], locked, stale, stale_reason, holder,
holder_alive [true|false|null: cannot be checked], expires [Unix seconds],
expires_in [seconds, negative once past]), phases_done (null, or the phases
PATH.status records as done). A path is a string, or {\"bytes\": [...],
\"lossy\": \"...\"} when it is not UTF-8. Text output escapes control
characters (\\x1b, \\n; \\xff for bytes that are not UTF-8).")]
pub struct StatusArgs {
    /// Print JSON (one object per lock, in an array).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// Lock files to inspect (with --backend, lock names).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Lists every file (and directory) directly in DIR that is locked now, that
carries a holdfast holder record from an earlier holder, or that is a lock
file (as 'holdfast status' recognises them; stale ones included, claim
files of link locks not). Symbolic links are skipped. Exit codes: 0 on
success, 64 if DIR is not a directory, 66 if some entry could not be read
(the others are still listed).

JSON: an array of the same objects 'holdfast status --json' prints.")]
pub struct ListArgs {
    /// Print JSON (one object per lock, in an array).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// The directory to look in (with --backend: list the locks whose
    /// names start with this; all when it is left out).
    pub dir: Option<PathBuf>,
}

/// A lock-file protocol (`--lockfile`, `--protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// A file created with O_EXCL, holding the holder's record.
    Soft,
    /// A unique claim file hard-linked to the lock name (flufl.lock's, NFS-safe).
    Link,
    /// A directory created with mkdir, holding the holder's record.
    Mkdir,
}

/// Whose on-disk conventions a lock file follows (`--compat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// holdfast's own (for link locks: flufl.lock's).
    Holdfast,
    /// Python flufl.lock (link).
    Flufl,
    /// Python lockfile's LinkLockFile / MkdirLockFile: the lock is PATH.lock.
    Lockfile,
    /// Python filelock's SoftFileLock (soft).
    Filelock,
}

const BREAK_HELP: &str = "\
Removes a lock-file lock (soft, link or mkdir protocol) whose holder is
gone, and says who that was and why it counts as gone: the holder's
process exited, its pid now belongs to another process, the machine
rebooted since, or its lease expired (a holder on another host). A lock
whose holder is alive, or whose holder cannot be checked (another host
with a lease still running, a lock without an owner record), is left
alone unless --force is given. The lock examined is the lock removed: if
another process takes the path meanwhile, its new lock is judged afresh.

Kernel locks (flock(1), 'holdfast run', fcntl) cannot be broken and never
need to be: the kernel releases them when the holder exits or closes the
file. For those, break names the holder and exits 1.

Without --protocol, the protocol and format come from what is at PATH:
  a file with a holdfast lock-file record        soft (holdfast)
  ... whose record names a claim file            link (lockfile's naming)
  a file with a flufl.lock claim (a|b|pid|c)     link (flufl.lock)
  a file with a filelock record (pid, host)      soft (filelock)
  an empty file named *.lock with 2 links        link (lockfile's LinkLockFile)
  a directory with a *.holdfast record, or an
  empty directory named *.lock                   mkdir (holdfast)
  a directory named *.lock with lockfile's name  mkdir (lockfile's MkdirLockFile)
  none of these at PATH, but at PATH.lock        that lock (lockfile names locks so)
Anything else (an empty file as flock(1) leaves, a pid file, data) is not
taken for a lock: name the protocol to break it anyway.

Examples:
  holdfast break /shared/app/migrate.lock
  holdfast break --force /nfs/jobs/nightly.lock
  holdfast break --protocol soft --compat filelock --force /srv/app/data.lock

Exit codes:
  0      the lock was removed (it names who held it, on stdout)
  1      refused: the holder is alive or cannot be checked (no --force), or
         PATH is held with a kernel lock
  64     bad input (a symlink, a protocol that does not match what is there)
  66     no lock-file lock at PATH (nothing there, or not a lock file)
  71     the lock could not be removed (permissions, I/O error)";

#[derive(Debug, Args)]
#[command(after_long_help = BREAK_HELP)]
pub struct BreakArgs {
    /// The protocol of the lock (default: recognised from what is at PATH).
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<ProtocolArg>,
    /// Whose format the lock follows (default: the protocol's own).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "protocol")]
    pub compat: Option<CompatArg>,
    /// Break it even if its holder is alive or cannot be checked (that holder
    /// may still believe it holds the lock).
    #[arg(short, long)]
    pub force: bool,
    /// The lock (with --compat lockfile: the path lockfile was given; the lock
    /// is PATH.lock).
    pub path: PathBuf,
}

const ONCE_HELP: &str = "\
Runs COMMAND unless KEY exists, and creates KEY (durably) once COMMAND has
exited 0. Callers that arrive while it runs wait in the kernel on the lock
KEY.lock, then find KEY and exit 0 without running it; later callers exit 0
at once. The command gets the lock's descriptor (so the lock lasts as long
as the command, even if holdfast is killed; --close turns that off) and
the fencing token in HOLDFAST_FENCING_TOKEN.

If the command fails (non-zero status), KEY is not created: this caller
exits with the command's status, and the next caller runs it again. What
callers that were already waiting do is --on-leader-failure:
  retry      (default) the next waiter runs the command itself, and so on
  propagate  every waiter of that round exits 75 without running it
A caller killed while running the command (kill -9, OOM) counts as failed:
its lock is released when it and its command are gone.

KEY is a plain file: '[ -e KEY ]' tells whether it is done, 'touch KEY'
marks it done by hand, 'holdfast once --reset KEY' (or 'rm KEY') makes it
run again. A symbolic link at KEY, dangling or not, is refused (exit 64),
never taken for done: remove it or name the real file. So is a FIFO or a
device (once /dev/null ... would otherwise be done forever).

Examples:
  holdfast once /var/lib/app/initialized -- ./init-cache.sh
  holdfast once --timeout 10m /shared/app/migrated-v42 -- ./manage.py migrate
  holdfast once --status /shared/app/migrated-v42 && echo 'already migrated'
  holdfast once --reset /shared/app/migrated-v42

Exit codes:
  0      done: the command ran and exited 0, or it was already done
  N      the command failed with status N (128+N: killed by signal N); not done
  1      --no-wait and another caller is running it; --status: not done
  75     --on-leader-failure propagate: the caller running it failed or died
  124    --timeout ran out while another caller was running it
  64     bad input (no command, bad duration, KEY in a missing directory, ...)
  126/127 the command cannot be executed / was not found";

#[derive(Debug, Args)]
#[command(after_long_help = ONCE_HELP)]
pub struct OnceArgs {
    #[command(flatten)]
    pub wait: WaitArgs,
    /// What waiting callers do when the caller running the command fails
    /// or dies: run it themselves (retry) or exit 75 (propagate).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = LeaderFailureArg::Retry)]
    pub on_leader_failure: LeaderFailureArg,
    /// Run nothing: exit 0 if KEY is done, 1 if not (and say whether a
    /// caller is running it now).
    #[arg(long, conflicts_with_all = ["reset", "command", "timeout", "no_wait", "create_parents"])]
    pub status: bool,
    /// Forget that KEY is done (remove it, under the lock, waiting for a
    /// caller running it), so the next caller runs the command again.
    #[arg(long, conflicts_with = "command")]
    pub reset: bool,
    #[command(flatten)]
    pub close: CloseArgs,
    #[command(flatten)]
    pub show: ShowArgs,
    /// Create missing parent directories of KEY.
    #[arg(long)]
    pub create_parents: bool,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// The run-once key: a file that exists once the command has succeeded
    /// (the lock is KEY.lock); with --backend, a name.
    pub key: PathBuf,
    /// The command and its arguments (after `--`).
    #[arg(
        last = true,
        value_name = "COMMAND",
        required_unless_present_any = ["status", "reset"]
    )]
    pub command: Vec<OsString>,
}

/// `--on-leader-failure` (the library's `LeaderFailure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LeaderFailureArg {
    /// The next waiter runs the command itself.
    Retry,
    /// Waiters exit 75 without running it.
    Propagate,
}

const PHASE_HELP: &str = "\
Runs COMMAND as the setup phase NAME of TARGET (typically a database file),
unless NAME is already marked done, and marks it done once COMMAND has
exited 0. Phases run under the exclusive lock TARGET.lock: concurrent
callers wait in the kernel, then skip the phase. If the command fails, the
phase stays unmarked and holdfast exits with the command's status, so the
next run starts again at this phase. Run several phases in order from a
script with 'set -e'; each is skipped once done:

  set -e
  holdfast phase schema-v1 --target /srv/app/app.db -- ./schema.sh
  holdfast phase seed-v1   --target /srv/app/app.db -- ./seed.sh

The markers are those of Python phaselock 1.1.0, so Python code using
PhaseLockService on the same target sees them and holdfast sees its markers:
an extended attribute user.phaselock.NAME on TARGET when the filesystem
takes xattrs, else a line NAME in TARGET.status. PHASELOCK_ENABLE_XATTRS
(0/off/status: status file only) is honoured under --xattrs auto. holdfast
reads both stores and writes the one phaselock would choose.

Unlike phaselock (10 s), holdfast waits as long as it takes unless
--timeout is given. The command gets the lock's descriptor (--close turns
that off) and the fencing token in HOLDFAST_FENCING_TOKEN.

Exit codes:
  0      the phase ran and exited 0, or it was already done (skipped)
  N      the command failed with status N (128+N: killed by signal N); not marked
  1      --no-wait and another process holds TARGET.lock
  124    --timeout ran out
  64     bad input (bad phase name, TARGET a symlink, a device or a FIFO, TARGET.lock
         or TARGET.status not a regular file, TARGET in a missing directory, ...)
  65     TARGET.status is corrupt (see 'holdfast phases reset')
  126/127 the command cannot be executed / was not found";

/// Marker store options shared by `phase` and `phases`.
#[derive(Debug, Args)]
pub struct MarkerArgs {
    /// Where markers go: auto (PHASELOCK_ENABLE_XATTRS decides, xattrs when
    /// unset), on (xattrs if the filesystem takes them), off (status file only).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = XattrsArg::Auto)]
    pub xattrs: XattrsArg,
    /// The xattr namespace of the markers (phaselock's namespace).
    #[arg(long, value_name = "NS", default_value = "user.phaselock")]
    pub namespace: String,
}

/// `--xattrs` (the library's `XattrMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XattrsArg {
    /// As PHASELOCK_ENABLE_XATTRS says (xattrs when it is unset).
    Auto,
    /// Xattrs if the filesystem takes them, else the status file.
    On,
    /// The status file only (xattr markers are still read).
    Off,
}

#[derive(Debug, Args)]
#[command(after_long_help = PHASE_HELP)]
pub struct PhaseArgs {
    /// The phase name (its marker: xattr user.phaselock.NAME, or a line in
    /// TARGET.status).
    pub name: String,
    /// The file the phases belong to (it need not exist yet); the lock is
    /// TARGET.lock.
    #[arg(short = 't', long, value_name = "FILE", required = true)]
    pub target: PathBuf,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub markers: MarkerArgs,
    /// Trust markers only after taking the lock (phaselock's
    /// strict_marker_locking; recommended when TARGET is a SQLite database).
    #[arg(long)]
    pub strict: bool,
    /// Name the marker xattr ATTR instead of NAME (phaselock's attr_name).
    #[arg(long, value_name = "ATTR")]
    pub attr_name: Option<String>,
    /// The marker xattr's value (phaselock's attr_value; default 1).
    #[arg(long, value_name = "VALUE")]
    pub attr_value: Option<String>,
    #[command(flatten)]
    pub close: CloseArgs,
    #[command(flatten)]
    pub show: ShowArgs,
    /// Create missing parent directories of TARGET.
    #[arg(long)]
    pub create_parents: bool,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct PhasesArgs {
    #[command(subcommand)]
    pub command: PhasesCommand,
}

#[derive(Debug, Subcommand)]
pub enum PhasesCommand {
    /// Which phases of a target are marked done, in which store.
    Status(PhasesStatusArgs),
    /// Remove phase markers of a target (all, or the named ones), under the lock.
    Reset(PhasesResetArgs),
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Shows the target, its lock TARGET.lock (free, or who holds it), the store a
marker written now would go to, the status file TARGET.status, and every
phase marked done with the store(s) it is in. With NAMEs, exits 1 unless
all of them are marked done:

  holdfast phases status /srv/app/app.db schema-v1 || echo 'schema not set up yet'

Exit codes: 0 (with NAMEs: all done), 1 (some NAME not done), 64 bad input,
65 a corrupt status file.

JSON: one object: target, target_exists, lock_path, status_path,
status_file_exists, namespace, xattrs_mode, store (xattr|status-file),
xattr_error, phases (name, done, stores, xattr_value), stale_temp_files,
lock (the object 'holdfast status --json' prints for TARGET.lock).")]
pub struct PhasesStatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub markers: MarkerArgs,
    /// The target (as given to 'holdfast phase --target').
    pub target: PathBuf,
    /// Phases to check: exit 1 unless every one of them is marked done.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Without NAMEs, removes every marker of TARGET in the namespace (the xattrs,
TARGET.status, temporary files crashed writers left); with NAMEs, only
theirs. It takes the lock TARGET.lock first, so it never pulls a marker
from under a running phase; the lock file itself stays. The next
'holdfast phase' (or phaselock) run then runs those phases again.

Examples:
  holdfast phases reset /srv/app/app.db seed-v1
  holdfast phases reset /srv/app/app.db

Prints one line per marker removed. Exit codes: 0, 1 (--no-wait, lock
held), 124 (--timeout ran out), 64 bad input.")]
pub struct PhasesResetArgs {
    #[command(flatten)]
    pub wait: WaitArgs,
    /// The marker xattr name of the (one) NAME, if it was run with --attr-name.
    #[arg(long, value_name = "ATTR", requires = "names")]
    pub attr_name: Option<String>,
    /// The xattr namespace of the markers (phaselock's namespace).
    #[arg(long, value_name = "NS", default_value = "user.phaselock")]
    pub namespace: String,
    /// The target.
    pub target: PathBuf,
    /// The phases to reset (default: all).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag a `conflicts_with`/`requires` names exists, also those of
    /// the flattened groups (`WaitArgs`, `ShowArgs`, `CloseArgs`).
    #[test]
    fn the_definitions_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
