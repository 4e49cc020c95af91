//! Deciding whether the holder a lock names is gone.
//!
//! Pure logic: the caller reads the lock (content and times) and supplies a
//! [`Probe`] for process liveness, so every rule is unit-tested here with
//! fakes. The rules are listed in the [module docs](super#when-is-a-lock-stale).

use std::ffi::OsString;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Whose conventions a record follows (this decides which host name it is
/// compared with, and how its lease is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// holdfast's own record: mtime is the expiry when a lifetime is recorded.
    Holdfast,
    /// A flufl.lock claim (holdfast's carries start time, boot id, pid
    /// namespace and lifetime in its random field): mtime is the expiry.
    Flufl,
    /// A filelock SoftFileLock record: mtime is the last refresh; the lease
    /// length is the reader's own setting.
    Filelock,
}

/// Who a lock names, normalised across formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claimant {
    pub format: Format,
    pub pid: u32,
    pub host: String,
    pub start_time: Option<u64>,
    /// Lower-case hex without dashes.
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
    pub lifetime: Option<Duration>,
    pub since: Option<SystemTime>,
    pub uid: Option<u32>,
    pub command: Option<String>,
    /// Identifies one acquisition (holdfast records and claims).
    pub nonce: Option<String>,
    /// The claim file (link protocol), as the record names it.
    pub claim: Option<OsString>,
}

/// What was found at the lock path, classified by the protocol module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// A record naming its holder.
    Holder(Claimant),
    /// A holder's "released" tombstone: remove at once.
    Released,
    /// Nothing usable yet (an empty marker, an empty lock directory, a
    /// damaged holdfast record, an unparsable filelock record): a writer may
    /// be between creating and writing it, so it is only removed once it has
    /// stayed unchanged for the grace period. `breaker` is the pid a filelock
    /// break placeholder names.
    Unsettled { what: String, breaker: Option<u32> },
    /// Content that names no holder holdfast can check (lockfile's empty
    /// lock files, another program's data, filelock's recordless markers):
    /// never removed automatically (only by the age policy or
    /// `break_lock`). `host`/`pid` are what file names suggest, for display.
    Unknown {
        what: String,
        host: Option<String>,
        pid: Option<u32>,
    },
}

/// The lock object's times (of the inode that carries the lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Times {
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// This process, as records name it in each format.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub pid: u32,
    pub host: String,
    pub fqdn: String,
    pub filelock_host: String,
    pub boot_id: Option<String>,
    pub pid_ns: Option<u64>,
}

impl Local {
    fn host_for(&self, f: Format) -> &str {
        match f {
            Format::Holdfast => &self.host,
            Format::Flufl => &self.fqdn,
            Format::Filelock => &self.filelock_host,
        }
    }
}

/// The knobs of the rules (from `LockFileOptions`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    pub skew: Duration,
    pub max_lifetime: Duration,
    pub stale_after: Option<Duration>,
    pub grace: Duration,
    /// Lease length for records that carry none (filelock's): the reader's
    /// configured lifetime.
    pub assumed_lifetime: Option<Duration>,
}

/// Process liveness, from the system or from a test.
pub(crate) trait Probe {
    /// The process exists and is not a zombie.
    fn alive(&self, pid: u32) -> bool;
    /// Its start time in clock ticks since boot.
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// Another process runs in a nested pid namespace as `pid` with this
    /// start time (see `sys::owner_runs_in_child_pidns`).
    fn runs_in_child_ns(&self, pid: u32, start: u64) -> bool;
}

/// Why holdfast considers a lock stale.
///
/// ```
/// use holdfast::lockfile::{LockFile, Protocol};
/// # let dir = tempfile::tempdir().unwrap();
/// let lock = LockFile::open(dir.path().join("job.lock"), Protocol::Soft)?;
/// let _g = lock.lock()?;
/// if let Some(why) = lock.status()?.stale {
///     println!("would take it over: {why:?}");
/// }
/// # Ok::<(), holdfast::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// The holder ran on this host and its process is gone.
    Exited {
        /// The holder's pid.
        pid: u32,
    },
    /// The holder's pid now belongs to another process (its start time
    /// differs from the one recorded).
    PidReused {
        /// The holder's pid.
        pid: u32,
    },
    /// The holder ran on this host before its last reboot (boot id differs).
    Rebooted,
    /// The holder's lease ran out more than the clock-skew allowance ago
    /// (a holder on another host, or one whose life cannot be checked).
    Expired {
        /// When the lease ended, as holdfast reads it.
        at: SystemTime,
    },
    /// The lock was last created or refreshed longer ago than
    /// [`LockFileOptions::stale_after`](super::LockFileOptions::stale_after)
    /// (plus the clock-skew allowance) allows.
    TooOld {
        /// How long ago.
        age: Duration,
    },
    /// The holder marked it released (its lock object had been moved
    /// aside by a mistaken take-over when it let go).
    Released,
    /// It names no holder (empty, or a damaged record) and stayed unchanged
    /// for the grace period.
    Unreadable {
        /// What was found.
        what: String,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::Exited { pid } => write!(f, "holder pid {pid} has exited"),
            StaleReason::PidReused { pid } => {
                write!(
                    f,
                    "pid {pid} now belongs to another process (start time differs)"
                )
            }
            StaleReason::Rebooted => f.write_str("the holder's machine has rebooted since"),
            StaleReason::Expired { at } => write!(
                f,
                "the lease expired at {}",
                crate::holder::fmt_utc_time(*at)
            ),
            StaleReason::TooOld { age } => {
                write!(f, "not refreshed for {}", crate::holder::fmt_duration(*age))
            }
            StaleReason::Released => f.write_str("the holder marked it released"),
            StaleReason::Unreadable { what } => write!(f, "{what}, unchanged for the grace period"),
        }
    }
}

/// The verdict on a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Somebody holds it.
    Held,
    /// Nobody does any more: it may be taken over.
    Stale(StaleReason),
    /// Cannot tell yet (unsettled content within its grace period).
    Unsettled,
    /// Cannot tell at all: wait for it to go away.
    Unknown,
}

/// Everything a waiter needs from one look at a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub verdict: Verdict,
    /// The lease end as read (after the plausibility clamp).
    pub expires: Option<SystemTime>,
    /// When, at the latest, the verdict may change by the clock alone.
    pub recheck_in: Option<Duration>,
    /// A same-host holder to watch for exit: (pid, start time).
    pub watch_pid: Option<(u32, Option<u64>)>,
    /// Same host, alive, and its start time matches the record.
    pub confirmed: bool,
}

/// The lease end holdfast reads from a record and its times.
///
/// holdfast and flufl.lock holders set the lock's mtime to
/// `now + lifetime` on every refresh, and the kernel (or the file server)
/// sets its ctime to the time of that refresh. An mtime further than the
/// lifetime (at most `max_lifetime`) plus the skew allowance past the ctime
/// is implausible (a clock far ahead, or a planted file): the lease is then
/// read as ending `lifetime` after the ctime. filelock records carry no
/// lease; their mtime is the last refresh and the reader's own lifetime is
/// added.
pub(crate) fn lease_expiry(c: &Claimant, t: Times, rules: &Rules) -> Option<SystemTime> {
    match c.format {
        Format::Filelock => {
            let lifetime = rules.assumed_lifetime?;
            let base = if t.mtime > add(t.ctime, rules.skew) {
                t.ctime
            } else {
                t.mtime
            };
            Some(add(base, lifetime))
        }
        Format::Holdfast | Format::Flufl => {
            let lifetime = match (c.lifetime, c.format) {
                (Some(l), _) => l.min(rules.max_lifetime),
                (None, Format::Flufl) => rules.max_lifetime,
                (None, _) => return None,
            };
            let bound = add(t.ctime, lifetime);
            Some(if t.mtime > add(bound, rules.skew) {
                bound
            } else {
                t.mtime
            })
        }
    }
}

fn add(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

fn until(now: SystemTime, t: SystemTime) -> Duration {
    t.duration_since(now).unwrap_or_default()
}

/// Judges a lock. `unchanged_for` is how long this waiter has seen the lock
/// in exactly this state (inode, mtime, ctime), on its monotonic clock.
pub(crate) fn judge(
    content: &Content,
    times: Times,
    local: &Local,
    rules: &Rules,
    probe: &dyn Probe,
    now: SystemTime,
    unchanged_for: Duration,
) -> Judgement {
    let mut j = Judgement {
        verdict: Verdict::Held,
        expires: None,
        recheck_in: None,
        watch_pid: None,
        confirmed: false,
    };
    match content {
        Content::Released => {
            j.verdict = Verdict::Stale(StaleReason::Released);
            return j;
        }
        Content::Unsettled { what, .. } => {
            // Settled by our own observation (monotonic), or by the ctime
            // when it is old enough on any plausible clock.
            let by_ctime = add(times.ctime, rules.grace + rules.skew);
            if unchanged_for >= rules.grace || now >= by_ctime {
                j.verdict = Verdict::Stale(StaleReason::Unreadable { what: what.clone() });
                return j;
            }
            j.verdict = Verdict::Unsettled;
            j.recheck_in = Some(rules.grace.saturating_sub(unchanged_for));
        }
        Content::Unknown { .. } => j.verdict = Verdict::Unknown,
        Content::Holder(c) => judge_holder(c, times, local, rules, probe, now, &mut j),
    }
    if let Some(max_age) = rules.stale_after
        && !matches!(j.verdict, Verdict::Stale(_))
    {
        let limit = add(times.ctime, max_age + rules.skew);
        if now > limit {
            let age = now.duration_since(times.ctime).unwrap_or_default();
            j.verdict = Verdict::Stale(StaleReason::TooOld { age });
            j.recheck_in = None;
        } else {
            let left = until(now, limit) + Duration::from_millis(1);
            j.recheck_in = Some(j.recheck_in.map_or(left, |r| r.min(left)));
        }
    }
    j
}

/// Whether a record was written on this host, in this pid namespace: the
/// host name it carries is the one this process would write in that format,
/// and the pid namespaces (where recorded) agree.
pub(crate) fn same_host(c: &Claimant, local: &Local) -> bool {
    c.host == local.host_for(c.format)
        && match (c.pid_ns, local.pid_ns) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

fn judge_holder(
    c: &Claimant,
    times: Times,
    local: &Local,
    rules: &Rules,
    probe: &dyn Probe,
    now: SystemTime,
    j: &mut Judgement,
) {
    j.expires = lease_expiry(c, times, rules);
    if same_host(c, local) {
        if let (Some(theirs), Some(ours)) = (&c.boot_id, &local.boot_id)
            && theirs != ours
        {
            j.verdict = Verdict::Stale(StaleReason::Rebooted);
            return;
        }
        // A record without a pid namespace, written from a container that
        // shares this host name, names a pid of that container (filelock's
        // `_owner_runs_elsewhere`): not proof of death.
        let elsewhere = || {
            c.pid_ns.is_none()
                && !c.host.contains("?pidns-")
                && c.start_time
                    .is_some_and(|s| probe.runs_in_child_ns(c.pid, s))
        };
        if !probe.alive(c.pid) {
            if !elsewhere() {
                j.verdict = Verdict::Stale(StaleReason::Exited { pid: c.pid });
                return;
            }
        } else {
            match (c.start_time, probe.start_time(c.pid)) {
                (Some(rec), Some(cur)) if rec != cur => {
                    if !elsewhere() {
                        j.verdict = Verdict::Stale(StaleReason::PidReused { pid: c.pid });
                        return;
                    }
                }
                (Some(_), Some(_)) => {
                    // Proven alive: the lease does not matter on this host.
                    j.confirmed = true;
                    j.watch_pid = Some((c.pid, c.start_time));
                    j.verdict = Verdict::Held;
                    return;
                }
                _ => j.watch_pid = Some((c.pid, None)),
            }
        }
    }
    // Another host, or a same-host holder whose life cannot be proven (no
    // start time recorded): the lease decides.
    match j.expires {
        Some(e) => {
            let limit = add(e, rules.skew);
            if now > limit {
                j.verdict = Verdict::Stale(StaleReason::Expired { at: e });
            } else {
                j.verdict = Verdict::Held;
                j.recheck_in = Some(until(now, limit) + Duration::from_millis(1));
            }
        }
        None => j.verdict = Verdict::Held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    struct Fake {
        procs: HashMap<u32, u64>,
        nested: Vec<(u32, u64)>,
    }
    impl Probe for Fake {
        fn alive(&self, pid: u32) -> bool {
            self.procs.contains_key(&pid)
        }
        fn start_time(&self, pid: u32) -> Option<u64> {
            self.procs.get(&pid).copied()
        }
        fn runs_in_child_ns(&self, pid: u32, start: u64) -> bool {
            self.nested.contains(&(pid, start))
        }
    }

    fn local() -> Local {
        Local {
            pid: 1,
            host: "web-1".into(),
            fqdn: "web-1.example".into(),
            filelock_host: "web-1".into(),
            boot_id: Some("b00t".into()),
            pid_ns: Some(7),
        }
    }

    fn rules() -> Rules {
        Rules {
            skew: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(3600),
            stale_after: None,
            grace: Duration::from_secs(2),
            assumed_lifetime: None,
        }
    }

    fn probe() -> Fake {
        Fake {
            procs: [(100, 5000), (200, 6000)].into_iter().collect(),
            nested: vec![],
        }
    }

    fn claimant(pid: u32) -> Claimant {
        Claimant {
            format: Format::Holdfast,
            pid,
            host: "web-1".into(),
            start_time: Some(5000),
            boot_id: Some("b00t".into()),
            pid_ns: Some(7),
            lifetime: Some(Duration::from_secs(15)),
            since: None,
            uid: None,
            command: None,
            nonce: Some("n".into()),
            claim: None,
        }
    }

    const T0: u64 = 1_700_000_000;
    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }
    /// A lock refreshed at T0 with a 15 s lifetime.
    fn times() -> Times {
        Times {
            mtime: at(T0 + 15),
            ctime: at(T0),
        }
    }

    fn run(c: Claimant, now: SystemTime) -> Judgement {
        judge(
            &Content::Holder(c),
            times(),
            &local(),
            &rules(),
            &probe(),
            now,
            Duration::ZERO,
        )
    }

    #[test]
    fn same_host_live_holder_is_held_even_past_its_lease() {
        let j = run(claimant(100), at(T0 + 3600));
        assert_eq!(j.verdict, Verdict::Held);
        assert!(j.confirmed);
        assert_eq!(j.watch_pid, Some((100, Some(5000))));
    }

    #[test]
    fn same_host_dead_holder_is_stale_at_once() {
        let j = run(claimant(300), at(T0 + 1));
        assert_eq!(j.verdict, Verdict::Stale(StaleReason::Exited { pid: 300 }));
    }

    #[test]
    fn reused_pid_does_not_keep_a_lock_alive() {
        let mut c = claimant(200); // pid 200 is alive, started at 6000
        c.start_time = Some(5999);
        let j = run(c.clone(), at(T0 + 1));
        assert_eq!(
            j.verdict,
            Verdict::Stale(StaleReason::PidReused { pid: 200 })
        );
        // Control: the right start time keeps it.
        c.start_time = Some(6000);
        assert_eq!(run(c, at(T0 + 1)).verdict, Verdict::Held);
    }

    #[test]
    fn other_boot_is_stale() {
        let mut c = claimant(100);
        c.boot_id = Some("0ther".into());
        assert_eq!(
            run(c, at(T0 + 1)).verdict,
            Verdict::Stale(StaleReason::Rebooted)
        );
    }

    #[test]
    fn other_host_waits_for_lease_plus_skew() {
        let mut c = claimant(300); // dead here, but on another host
        c.host = "web-2".into();
        let j = run(c.clone(), at(T0 + 15 + 10));
        assert_eq!(j.verdict, Verdict::Held);
        assert_eq!(j.expires, Some(at(T0 + 15)));
        assert_eq!(j.recheck_in, Some(Duration::from_millis(1)));
        let j = run(c, at(T0 + 15 + 11));
        assert_eq!(
            j.verdict,
            Verdict::Stale(StaleReason::Expired { at: at(T0 + 15) })
        );
    }

    #[test]
    fn other_pid_namespace_is_another_host() {
        let mut c = claimant(300);
        c.pid_ns = Some(8);
        assert_eq!(run(c, at(T0 + 1)).verdict, Verdict::Held);
    }

    #[test]
    fn implausible_future_expiry_is_clamped_to_ctime_plus_lifetime() {
        let mut c = claimant(300);
        c.host = "web-2".into();
        let t = Times {
            mtime: at(T0 + 10 * 365 * 86_400),
            ctime: at(T0),
        };
        let j = judge(
            &Content::Holder(c.clone()),
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 26),
            Duration::ZERO,
        );
        assert_eq!(
            j.verdict,
            Verdict::Stale(StaleReason::Expired { at: at(T0 + 15) })
        );
        // A flufl claim without a recorded lifetime: max_lifetime bounds it.
        c.format = Format::Flufl;
        c.host = "elsewhere".into();
        c.lifetime = None;
        let j = judge(
            &Content::Holder(c),
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 3600 + 11),
            Duration::ZERO,
        );
        assert_eq!(j.expires, Some(at(T0 + 3600)));
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::Expired { .. })
        ));
    }

    #[test]
    fn no_lifetime_means_no_lease() {
        let mut c = claimant(300);
        c.host = "web-2".into();
        c.lifetime = None;
        let j = run(c, at(T0 + 1_000_000));
        assert_eq!((j.verdict, j.expires), (Verdict::Held, None));
    }

    #[test]
    fn unprovable_same_host_holder_falls_back_to_the_lease() {
        // flufl.lock's own claims carry no start time.
        let mut c = claimant(200);
        c.format = Format::Flufl;
        c.host = "web-1.example".into();
        c.start_time = None;
        c.boot_id = None;
        c.pid_ns = None;
        c.lifetime = None;
        let t = times();
        let j = judge(
            &Content::Holder(c.clone()),
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 20),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Held);
        assert!(!j.confirmed);
        let j = judge(
            &Content::Holder(c.clone()),
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 26),
            Duration::ZERO,
        );
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::Expired { .. })
        ));
        // Dead pid on this host: stale at once.
        c.pid = 999;
        let j = judge(
            &Content::Holder(c),
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 1),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Stale(StaleReason::Exited { pid: 999 }));
    }

    #[test]
    fn filelock_records_use_the_readers_lifetime() {
        let mut c = claimant(300);
        c.format = Format::Filelock;
        c.host = "other".into();
        c.lifetime = None;
        let t = Times {
            mtime: at(T0),
            ctime: at(T0),
        };
        let mut r = rules();
        let j = judge(
            &Content::Holder(c.clone()),
            t,
            &local(),
            &r,
            &probe(),
            at(T0 + 99_999),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Held);
        r.assumed_lifetime = Some(Duration::from_secs(5));
        let j = judge(
            &Content::Holder(c),
            t,
            &local(),
            &r,
            &probe(),
            at(T0 + 16),
            Duration::ZERO,
        );
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::Expired { .. })
        ));
    }

    #[test]
    fn nested_namespace_owner_is_not_proof_of_death() {
        let mut c = claimant(300);
        c.format = Format::Filelock;
        c.pid_ns = None;
        c.lifetime = None;
        let p = Fake {
            procs: HashMap::new(),
            nested: vec![(300, 5000)],
        };
        let j = judge(
            &Content::Holder(c.clone()),
            times(),
            &local(),
            &rules(),
            &p,
            at(T0),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Held);
        c.host = "web-1?pidns-f0000001".into();
        let j = judge(
            &Content::Holder(c),
            times(),
            &local(),
            &rules(),
            &p,
            at(T0),
            Duration::ZERO,
        );
        assert!(
            matches!(j.verdict, Verdict::Held),
            "other namespace → another host"
        );
    }

    #[test]
    fn unsettled_content_waits_for_the_grace_period() {
        let content = Content::Unsettled {
            what: "an empty lock file".into(),
            breaker: None,
        };
        let t = times();
        let j = judge(
            &content,
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 1),
            Duration::from_millis(500),
        );
        assert_eq!(j.verdict, Verdict::Unsettled);
        assert_eq!(j.recheck_in, Some(Duration::from_millis(1500)));
        let j = judge(
            &content,
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 1),
            Duration::from_secs(2),
        );
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::Unreadable { .. })
        ));
        // Old by its ctime on any plausible clock: no need to watch it.
        let j = judge(
            &content,
            t,
            &local(),
            &rules(),
            &probe(),
            at(T0 + 13),
            Duration::ZERO,
        );
        assert!(matches!(j.verdict, Verdict::Stale(_)));
    }

    #[test]
    fn unknown_content_is_never_stale_without_the_age_policy() {
        let content = Content::Unknown {
            what: "an empty lock file made by lockfile".into(),
            host: None,
            pid: None,
        };
        let j = judge(
            &content,
            times(),
            &local(),
            &rules(),
            &probe(),
            at(T0 + 1_000_000),
            Duration::from_secs(1000),
        );
        assert_eq!(j.verdict, Verdict::Unknown);
        let mut r = rules();
        r.stale_after = Some(Duration::from_secs(300));
        let j = judge(
            &content,
            times(),
            &local(),
            &r,
            &probe(),
            at(T0 + 309),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Unknown);
        let j = judge(
            &content,
            times(),
            &local(),
            &r,
            &probe(),
            at(T0 + 311),
            Duration::ZERO,
        );
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::TooOld { .. })
        ));
        // The age policy also applies to live holders (libvcs's semantics).
        let j = judge(
            &Content::Holder(claimant(100)),
            times(),
            &local(),
            &r,
            &probe(),
            at(T0 + 311),
            Duration::ZERO,
        );
        assert!(matches!(
            j.verdict,
            Verdict::Stale(StaleReason::TooOld { .. })
        ));
    }

    #[test]
    fn released_is_stale_at_once() {
        let j = judge(
            &Content::Released,
            times(),
            &local(),
            &rules(),
            &probe(),
            at(T0),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Stale(StaleReason::Released));
    }
}
