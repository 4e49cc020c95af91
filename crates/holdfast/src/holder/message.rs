//! Durations and times as messages show them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a duration the way people read it: `850ms`, `5s`, `1.5s`,
/// `2m3s`, `1h2m`, rounded to the unit shown (never truncated: a wait of
/// 4.96 s is `5s`, not `4.9s`).
///
/// ```
/// use std::time::Duration;
/// use holdfast::holder::fmt_duration;
/// assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
/// assert_eq!(fmt_duration(Duration::from_millis(4960)), "5s");
/// assert_eq!(fmt_duration(Duration::from_secs(123)), "2m3s");
/// ```
pub fn fmt_duration(d: Duration) -> String {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        let (secs, tenths) = (tenths / 10, tenths % 10);
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    let secs = (ms + 500) / 1000;
    if secs < 3600 {
        let (m, s) = (secs / 60, secs % 60);
        return if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        };
    }
    let mins = (secs + 30) / 60;
    let (h, m) = (mins / 60, mins % 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m}m")
    }
}

/// `HH:MM:SS UTC` of a wall-clock time.
pub(crate) fn fmt_utc_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}
