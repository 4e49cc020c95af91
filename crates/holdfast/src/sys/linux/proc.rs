//! Readers of `/proc`: boot id, process start times, state, command line,
//! uid, and the kernel lock table (`/proc/locks`, `/proc/PID/fdinfo`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::sys::{FileId, KernelLock, KernelLockKind};

/// A one-line `/proc` file (`stat`, `boot_id`): `open`, one `read`,
/// `close`. procfs builds such a file whole and hands all of it to a read
/// with room for it, so a short read ending in a newline is all of it;
/// anything else (a longer file) is read again the general way.
/// `fs::read_to_string` makes six more calls here: a `statx` for a size
/// hint (procfs says 0) and reads of 32, 32, 64, 128 and 256 bytes.
fn read_line_file(path: &str) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 1024];
    let n = File::open(path).ok()?.read(&mut buf).ok()?;
    if n < buf.len() && buf[..n].ends_with(b"\n") {
        return String::from_utf8(buf[..n].to_vec()).ok();
    }
    std::fs::read_to_string(path).ok()
}

/// The kernel's boot id: changes on every boot.
pub(crate) fn boot_id() -> Option<String> {
    let s = read_line_file("/proc/sys/kernel/random/boot_id")?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`
/// field 22). Together with the boot id it identifies a process for good:
/// a reused pid has a different start time.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = read_line_file(&format!("/proc/{pid}/stat"))?;
    parse_stat_start_time(&stat)
}

pub(crate) fn parse_stat_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); field 22 is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A process's state letter and start time, from one read of
/// `/proc/PID/stat`; `None` if it does not exist.
pub(crate) fn process_state_start(pid: u32) -> Option<(char, u64)> {
    let stat = read_line_file(&format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// A process's command line, arguments quoted as a shell would need them
/// and joined by spaces; the short command name for processes without one
/// (kernel threads, zombies).
pub(crate) fn process_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        return Some(format!("[{}]", comm.trim()));
    }
    Some(crate::text::shell_join(&args))
}

/// The path an open file was opened by, from `/proc/self/fd`, if it is
/// still a plain absolute path (not `pipe:[…]`, not ` (deleted)`).
pub(crate) fn fd_path(file: &File) -> Option<std::path::PathBuf> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    let deleted = target
        .as_os_str()
        .as_encoded_bytes()
        .ends_with(b" (deleted)");
    (target.is_absolute() && !deleted).then_some(target)
}

/// A process's real uid.
pub(crate) fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The locks the kernel reports on this file, from `/proc/locks`. Waiting
/// requests (`->` lines) are not holders and are left out. OFD locks carry
/// no pid there; their owner is looked up in `/proc/*/fdinfo`.
pub(crate) fn kernel_locks(id: FileId) -> io::Result<Option<Vec<KernelLock>>> {
    let (major, minor) = crate::sys::imp::dev_major_minor(id.dev);
    let mut found = match settled_locks(read_lock_table, major, minor, id.ino) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if found.iter().any(|l| l.pid.is_none()) {
        let owners = ofd_owners(major, minor, id.ino);
        let mut owners = owners.into_iter();
        for l in found.iter_mut().filter(|l| l.pid.is_none()) {
            l.pid = owners.next();
        }
    }
    Ok(Some(found))
}

/// How many times [`settled_locks`] reads the lock table at most.
const TABLE_READS: usize = 6;

/// `/proc/locks`, and how many walks of the kernel's list of locks it took.
///
/// The kernel serves the table at most a page per `read` call, and walks
/// its list afresh for each call from the index where the last one
/// stopped. A lock released meanwhile before that index shifts the rest
/// down by one, and one line is never shown: a held lock missing from the
/// table (seen under load, with the table over a page). Within one call
/// the list cannot change. So the table is read with a buffer far larger
/// than a page, which gets it in one walk whenever it fits in one (std's
/// `read_to_string` starts with a 32-byte read, and so walks many times).
fn read_lock_table() -> io::Result<(String, usize)> {
    use std::io::Read;
    let mut f = File::open("/proc/locks")?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut text = Vec::new();
    let mut walks = 0;
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&chunk[..n]);
                walks += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((String::from_utf8_lossy(&text).into_owned(), walks))
}

/// The held locks on one inode from `read` (a [`read_lock_table`]). A
/// table read in one walk is a snapshot; one read in several walks may
/// miss a line, so it is read again until two consecutive reads return the
/// same whole table (at most [`TABLE_READS`] reads), keeping every lock
/// any read showed: a lock seen held during the reads is reported, one
/// never missed. Agreement is judged on the whole table, not on this
/// inode's lines: under churn elsewhere, two reads can both skip the same
/// held lock and agree that it is absent (seen once in CI).
fn settled_locks(
    mut read: impl FnMut() -> io::Result<(String, usize)>,
    major: u32,
    minor: u32,
    ino: u64,
) -> io::Result<Vec<KernelLock>> {
    let (mut text, walks) = read()?;
    let mut seen = parse_proc_locks(&text, major, minor, ino);
    if walks <= 1 {
        return Ok(seen);
    }
    for _ in 1..TABLE_READS {
        let (next, _) = read()?;
        let again = parse_proc_locks(&next, major, minor, ino);
        if next == text {
            break;
        }
        text = next;
        // Keep each lock as many times as the read that showed it most.
        for l in &again {
            let want = again.iter().filter(|o| *o == l).count();
            if seen.iter().filter(|o| *o == l).count() < want {
                seen.push(l.clone());
            }
        }
    }
    Ok(seen)
}

/// Parses `/proc/locks` text, keeping the held locks on one inode.
pub(crate) fn parse_proc_locks(text: &str, major: u32, minor: u32, ino: u64) -> Vec<KernelLock> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(l) = parse_lock_line(line, major, minor, ino) {
            out.push(l);
        }
    }
    out
}

fn parse_lock_line(line: &str, major: u32, minor: u32, ino: u64) -> Option<KernelLock> {
    let mut it = line.split_ascii_whitespace();
    let _id = it.next()?; // "1:"
    let kind = it.next()?;
    if kind == "->" {
        return None; // a waiter, not a holder
    }
    let kind = match kind {
        "FLOCK" => KernelLockKind::Flock,
        "OFDLCK" => KernelLockKind::Ofd,
        "POSIX" => KernelLockKind::Posix,
        _ => return None, // LEASE, DELEG, ...
    };
    let _advisory = it.next()?;
    let exclusive = match it.next()? {
        "WRITE" => true,
        "READ" => false,
        _ => return None,
    };
    let pid: i64 = it.next()?.parse().ok()?;
    let dev = it.next()?;
    let mut parts = dev.split(':');
    let maj = u32::from_str_radix(parts.next()?, 16).ok()?;
    let min = u32::from_str_radix(parts.next()?, 16).ok()?;
    let i: u64 = parts.next()?.parse().ok()?;
    if (maj, min, i) != (major, minor, ino) {
        return None;
    }
    Some(KernelLock {
        kind,
        exclusive,
        pid: (pid > 0).then_some(pid as u32),
    })
}

/// Finds processes whose `fdinfo` shows an OFD lock on the inode (the
/// lslocks technique). Only processes we may inspect are seen.
fn ofd_owners(major: u32, minor: u32, ino: u64) -> Vec<u32> {
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        'fds: for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in info.lines() {
                if let Some(rest) = line.strip_prefix("lock:")
                    && let Some(l) = parse_lock_line(rest.trim_start(), major, minor, ino)
                    && l.kind == KernelLockKind::Ofd
                {
                    owners.push(pid);
                    break 'fds;
                }
            }
        }
    }
    owners
}

/// Pids of processes whose open file descriptions hold an OFD lock on the
/// inode overlapping bytes `[start, end)`, from `/proc/*/fdinfo` (only
/// processes we may inspect are seen).
pub(crate) fn ofd_lock_pids(id: FileId, start: u64, end: u64) -> Vec<u32> {
    let (major, minor) = crate::sys::imp::dev_major_minor(id.dev);
    let want = format!("{major:02x}:{minor:02x}:{}", id.ino);
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        'fds: for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in info.lines() {
                let Some(rest) = line.strip_prefix("lock:") else {
                    continue;
                };
                if let Some((s, e)) = parse_ofd_range(rest, &want)
                    && s < end
                    && e >= start
                {
                    pids.push(pid);
                    break 'fds;
                }
            }
        }
    }
    pids
}

/// `(first, last)` byte of an `OFDLCK` line on the inode `want`
/// (`maj:min:ino`), held (not waiting).
fn parse_ofd_range(line: &str, want: &str) -> Option<(u64, u64)> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    // "1:" "OFDLCK" "ADVISORY" "WRITE" "-1" "dev:ino" start end
    if f.len() < 8 || f[1] != "OFDLCK" || f[5] != want {
        return None;
    }
    let s = f[6].parse().ok()?;
    let e = if f[7] == "EOF" {
        u64::MAX
    } else {
        f[7].parse().ok()?
    };
    Some((s, e))
}

/// Whether a process other than `pid` runs in a nested pid namespace where
/// its own pid is `pid`, with the start time `start`: the writer of a record
/// that names `pid` from inside a container that shares this host name
/// (filelock's `_owner_runs_elsewhere`). Such a record is not proof of death.
pub(crate) fn owner_runs_in_child_pidns(pid: u32, start: u64) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let Some(task) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if task == pid || process_start_time(task) != Some(start) {
            continue;
        }
        let Ok(status) = std::fs::read(format!("/proc/{task}/status")) else {
            continue;
        };
        let innermost = status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"NSpid:"))
            .and_then(|rest| {
                rest.split(|b| b.is_ascii_whitespace())
                    .rev()
                    .find(|f| !f.is_empty())
            })
            .and_then(|f| std::str::from_utf8(f).ok()?.parse::<u32>().ok());
        if innermost == Some(pid) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn state_and_start_of_this_process() {
        let (state, start) = process_state_start(std::process::id()).unwrap();
        assert_eq!(Some(start), process_start_time(std::process::id()));
        assert!(state == 'R' || state == 'S', "{state}");
    }

    /// The one-read path gives what a whole read gives: the boot id, and
    /// the start time of this process and of a thread whose name has
    /// spaces, a `)` and a newline; a file longer than the buffer is read
    /// whole.
    #[test]
    fn one_read_of_a_line_file_is_all_of_it() {
        let whole = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(boot_id().as_deref(), Some(whole.trim()));
        assert_eq!(boot_id().map(|b| b.len()), Some(36));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(
            process_start_time(std::process::id()),
            parse_stat_start_time(&own)
        );
        // A thread named so (its /proc/TID/stat is read as a process's).
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("a ) b\nc".into())
            .spawn(move || {
                tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
                    .unwrap();
                done_rx.recv().ok();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let whole = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap();
        assert!(whole.contains("(a ) b\nc)"), "{whole:?}");
        assert_eq!(process_start_time(tid), parse_stat_start_time(&whole));
        assert!(process_start_time(tid).is_some());
        done_tx.send(()).unwrap();
        t.join().unwrap();
        let long = read_line_file("/proc/self/maps").unwrap();
        assert_eq!(long, std::fs::read_to_string("/proc/self/maps").unwrap());
    }

    #[test]
    fn stat_start_time_survives_odd_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat_start_time(stat), Some(987654));
        assert_eq!(parse_stat_start_time("garbage"), None);
    }

    #[test]
    fn ofd_range_lines() {
        let l = "\t7: OFDLCK ADVISORY  WRITE -1 fd:01:1234 1048576 1048577";
        assert_eq!(parse_ofd_range(l, "fd:01:1234"), Some((1048576, 1048577)));
        assert_eq!(parse_ofd_range(l, "fd:01:9"), None);
        let e = "1: OFDLCK ADVISORY READ -1 fd:01:1234 0 EOF";
        assert_eq!(parse_ofd_range(e, "fd:01:1234"), Some((0, u64::MAX)));
        assert_eq!(
            parse_ofd_range("1: FLOCK ADVISORY WRITE 5 fd:01:1234 0 EOF", "fd:01:1234"),
            None
        );
    }

    /// A table read in several walks that skipped a line is read again,
    /// and the lock it missed is reported; one walk is read once.
    #[test]
    fn lock_table_read_in_several_walks_is_read_until_two_reads_agree() {
        let held = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n";
        let other = "2: FLOCK  ADVISORY  WRITE 7 fd:01:5 0 EOF\n";
        let want = vec![KernelLock {
            kind: KernelLockKind::Flock,
            exclusive: true,
            pid: Some(4242),
        }];
        let reads = |tables: Vec<(String, usize)>| {
            let mut tables = tables.into_iter();
            let mut calls = 0;
            let got = settled_locks(
                || {
                    calls += 1;
                    Ok(tables.next().expect("read once too often"))
                },
                0xfd,
                1,
                1234,
            )
            .unwrap();
            (got, calls)
        };
        // One walk: a snapshot, taken as it is (even without the line).
        assert_eq!(reads(vec![(other.into(), 1)]), (vec![], 1));
        assert_eq!(reads(vec![(held.into(), 1)]), (want.clone(), 1));
        // Several walks, the line skipped the first time: read again
        // until two whole tables agree.
        let (got, calls) = reads(vec![
            (other.into(), 2),
            (format!("{other}{held}"), 2),
            (format!("{held}{other}"), 2),
            (format!("{held}{other}"), 2),
        ]);
        assert_eq!((got, calls), (want.clone(), 4));
        // Two reads that both skipped the held line agree on this inode
        // but not on the table (churn elsewhere): not the end.
        let churn = |n| format!("{n}: FLOCK  ADVISORY  WRITE 9{n} fd:01:77 0 EOF\n");
        let (got, calls) = reads(vec![
            (churn(1), 2),
            (churn(2), 2),
            (format!("{}{held}", churn(3)), 2),
            (format!("{}{held}", churn(3)), 2),
        ]);
        assert_eq!((got, calls), (want.clone(), 4));
        // Two reads that agree end it.
        assert_eq!(
            reads(vec![(held.into(), 2), (held.into(), 2)]),
            (want.clone(), 2)
        );
        // Reads that never agree: every lock any of them showed.
        let shared = |pid| format!("1: FLOCK  ADVISORY  READ {pid} fd:01:1234 0 EOF\n");
        let (got, calls) = reads(vec![
            (shared(1), 2),
            (shared(2), 2),
            (shared(3), 2),
            (shared(4), 2),
            (shared(5), 2),
            (shared(6), 2),
        ]);
        assert_eq!(calls, TABLE_READS);
        let pids: Vec<Option<u32>> = got.iter().map(|l| l.pid).collect();
        assert_eq!(
            pids,
            vec![Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)]
        );
    }

    /// The lock table of this machine is read in one walk when it fits in
    /// a page, and a lock held here is in it.
    #[test]
    fn the_lock_table_is_read_in_one_walk_and_shows_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("l")).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
        // A lock taken elsewhere on the machine between two reads adds a
        // walk that returns it (the table grew past where the first walk
        // ended), so one walk is asked of some read among a few, not of
        // every read: a reader with a small buffer (std's read_to_string
        // starts with 32 bytes) never gets one.
        let mut reads = Vec::new();
        for _ in 0..20 {
            let (text, walks) = read_lock_table().unwrap();
            if text.len() >= 2048 || walks == 1 {
                reads.clear();
                break;
            }
            reads.push((walks, text.len()));
        }
        assert!(reads.is_empty(), "never one walk: {reads:?}");
        let id = crate::sys::file_id(&f).unwrap();
        let found = kernel_locks(id).unwrap().unwrap();
        assert!(
            found
                .iter()
                .any(|l| l.exclusive && l.pid == Some(std::process::id())),
            "{found:?}"
        );
    }

    #[test]
    fn proc_locks_lines() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4243 fd:01:1234 0 EOF\n\
                    2: OFDLCK ADVISORY  READ  -1 fd:01:1234 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 99 fd:01:9999 0 EOF\n\
                    4: LEASE  ACTIVE    READ  12 fd:01:1234 0 EOF\n\
                    junk\n";
        let got = parse_proc_locks(text, 0xfd, 1, 1234);
        assert_eq!(
            got,
            vec![
                KernelLock {
                    kind: KernelLockKind::Flock,
                    exclusive: true,
                    pid: Some(4242)
                },
                KernelLock {
                    kind: KernelLockKind::Ofd,
                    exclusive: false,
                    pid: None
                },
            ]
        );
    }
}
