//! Human durations for `--timeout`: `5s`, `500ms`, `2m`, `1.5s`, `1h`,
//! `250us`; a bare number means seconds (as `flock -w`).

use std::time::Duration;

/// Parses a duration, or says what is wrong with it.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.starts_with('-') || t.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("cannot read {s:?} as a duration (try 5s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("duration {s:?} is too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("5x").unwrap_err().contains("unknown unit"));
        assert!(parse("-1").unwrap_err().contains("negative"));
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
    }
}
