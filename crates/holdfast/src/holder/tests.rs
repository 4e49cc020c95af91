use std::fs::File;
use std::time::UNIX_EPOCH;

use super::head::{Mapped, next_token};
use super::identity::own_command_line;
use super::record::{MAGIC, encode_head};
use super::*;

fn sample() -> HolderRecord {
    HolderRecord {
        token: 42,
        pid: 4242,
        start_time: Some(987),
        boot_id: Some("b00t".into()),
        host: "web-1".into(),
        uid: Some(1000),
        mode: Mode::Exclusive,
        since: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
        command: "python3 migrate.py --name \"a\\b\"\nnext\u{7}".into(),
    }
}

#[test]
fn round_trip() {
    let r = sample();
    let bytes = r.encode();
    assert_eq!(HolderRecord::parse(&bytes), Ok(r));
}

#[test]
fn every_truncation_is_corrupt_not_a_panic() {
    let bytes = sample().encode();
    for cut in 1..bytes.len() {
        match RecordContent::classify(&bytes[..cut]) {
            RecordContent::Corrupt(_) | RecordContent::Foreign => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn garbage_and_foreign_content() {
    assert_eq!(RecordContent::classify(b"4242"), RecordContent::Foreign);
    assert_eq!(
        RecordContent::classify(b"4242\nvm\n123\n"),
        RecordContent::Foreign
    );
    assert_eq!(RecordContent::classify(b"\0"), RecordContent::Empty);
    assert!(matches!(
        RecordContent::classify(b"holdfast-holder 1\ntoken x\nend\n"),
        RecordContent::Corrupt(_)
    ));
    assert!(matches!(
        RecordContent::classify(b"holdfast-holder 1\xff\xfe"),
        RecordContent::Corrupt(_)
    ));
    assert!(matches!(
        RecordContent::classify(b"holdfast-holder one\n"),
        RecordContent::Corrupt(_)
    ));
    assert!(matches!(
        RecordContent::classify(b"holdfast-holder 1\ntoken 1\npid 99999999999\nend\n"),
        RecordContent::Corrupt(_)
    ));
    // Pseudo-random garbage after the magic never panics.
    let mut x: u32 = 12345;
    for _ in 0..2000 {
        let mut buf = b"holdfast-holder 1\n".to_vec();
        for _ in 0..64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            buf.push(b"tokenpidmodesinceend \n0123456789.\\u{"[(x >> 16) as usize % 36]);
        }
        let _ = RecordContent::classify(&buf);
    }
}

#[test]
fn unknown_keys_are_ignored_and_later_versions_parse() {
    let mut text = String::from_utf8(sample().encode()).unwrap();
    text = text.replace("holdfast-holder 1", "holdfast-holder 2");
    text = text.replace("end\n", "lease 30\nend\n");
    assert_eq!(HolderRecord::parse(text.as_bytes()).unwrap().token, 42);
}

#[test]
fn next_token_fast_path_agrees_with_the_parser() {
    let mut r = sample();
    for token in [0u64, 1, 9, 10, 99_999, u64::MAX - 1] {
        r.token = token;
        let bytes = r.encode();
        assert_eq!(next_token(&bytes, false), Some(token + 1));
        // Through the slow path too (a record with its lines reordered).
        let text = String::from_utf8(bytes).unwrap();
        let reordered = text
            .replacen(&format!("token {token}\n"), "", 1)
            .replace("end\n", &format!("token {token}\nend\n"));
        assert_eq!(next_token(reordered.as_bytes(), false), Some(token + 1));
    }
    assert_eq!(next_token(b"", false), Some(1));
    assert_eq!(next_token(b"\0", false), Some(1));
    assert_eq!(next_token(b"user data", false), None);
    assert_eq!(next_token(b"user data", true), None);
    assert!(next_token(b"holdfast-holder 1\ntoken 5\n", false).unwrap() > 1_000_000);
    assert!(next_token(b"holdfast-holder 1\ntoken 5\nend\n", true).unwrap() > 1_000_000);
}

#[test]
fn hand_formatted_head_matches_fmt() {
    for (token, secs, nanos) in [
        (0u64, 0u64, 0u32),
        (1, 1_700_000_000, 5),
        (9, 9, 999_999_999),
        (10, 10, 100_000_000),
        (u64::MAX, 253_402_300_799, 1),
    ] {
        let mut out = Vec::new();
        encode_head(&mut out, token, UNIX_EPOCH + Duration::new(secs, nanos));
        let want = format!("{MAGIC} {RECORD_VERSION}\ntoken {token}\nsince {secs}.{nanos:09}\n");
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

/// The mapped record road (Linux): the same process acquiring again
/// patches its record in place; a peer's record is read, not assumed;
/// a peer truncating the file (filelock opens with `O_TRUNC`) makes the
/// mapping fault into its guard, never kills us, and the token starts
/// over from the file as it is now.
#[test]
#[cfg(target_os = "linux")]
fn mapped_record_reads_peers_and_survives_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.lock");
    let lock = crate::Lock::open(&path).unwrap();
    let token = || lock.lock().unwrap().token().unwrap();
    let t1 = token();
    let t2 = token();
    assert_eq!(t2, t1 + 1);
    let on_disk = || HolderRecord::parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk().token, t2);
    // A peer's record of the same length with a larger token.
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let peer = text.replacen(&format!("token {t2}\n"), &format!("token {}\n", t2 + 5), 1);
    assert_eq!(peer.len(), text.len());
    std::fs::write(&path, peer).unwrap();
    assert_eq!(token(), t2 + 6);
    assert_eq!(on_disk().token, t2 + 6);
    // Truncated by a peer, more times than the mapping is retried: no
    // crash, the file decides.
    for _ in 0..2 * Mapped::MAX_FAULTS {
        File::options()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        assert_eq!(token(), 1);
        assert_eq!(token(), 2);
        assert_eq!(on_disk().token, 2);
    }
    // Foreign content of any length is never touched.
    std::fs::write(&path, b"user data\n").unwrap();
    assert_eq!(lock.lock().unwrap().token(), None);
    assert_eq!(std::fs::read(&path).unwrap(), b"user data\n");
}

/// The command line in records comes from memory, and says what
/// `/proc/self/cmdline` says (what other processes see for us).
#[test]
#[cfg(target_os = "linux")]
fn own_command_line_matches_proc() {
    assert_eq!(own_command_line(), sys::process_cmdline(sys::current_pid()));
}

#[test]
fn durations_read_naturally() {
    assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
    assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
    assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(fmt_duration(Duration::from_secs(123)), "2m3s");
    assert_eq!(fmt_duration(Duration::from_secs(3720)), "1h2m");
    // Rounded, not truncated (issue 10 item 11).
    assert_eq!(fmt_duration(Duration::from_millis(4960)), "5s");
    assert_eq!(fmt_duration(Duration::from_millis(4940)), "4.9s");
    assert_eq!(fmt_duration(Duration::from_micros(999_600)), "1s");
    assert_eq!(fmt_duration(Duration::from_micros(994_400)), "994ms");
    assert_eq!(fmt_duration(Duration::from_millis(59_970)), "1m");
    assert_eq!(fmt_duration(Duration::from_millis(119_600)), "2m");
    assert_eq!(fmt_duration(Duration::from_secs(3599)), "59m59s");
    assert_eq!(fmt_duration(Duration::from_secs(7170)), "2h");
}

#[test]
fn holder_message_names_pid_command_host_and_age() {
    let mut r = sample();
    r.since = SystemTime::now() - Duration::from_secs(31);
    let h = Holder::from_record(&r, HolderSource::Record);
    let s = Holders::from(vec![h]).to_string();
    assert!(s.starts_with("held by pid 4242 (python3 migrate.py"), "{s}");
    assert!(s.contains(" on web-1 since "), "{s}");
    assert!(s.ends_with("UTC (31s)"), "{s}");
}
