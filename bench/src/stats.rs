//! Small statistics helpers: percentiles, formatting, ratio tables.

/// Percentile `p` (0..=100) of `xs` (sorted in place), nearest-rank.
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// A duration in nanoseconds, human-readable.
pub fn fmt_ns(ns: f64) -> String {
    if ns.is_nan() {
        "n/a".into()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `x / base` as `1.23×`.
pub fn ratio(x: f64, base: f64) -> String {
    if base == 0.0 || x.is_nan() || base.is_nan() {
        "n/a".into()
    } else {
        format!("{:.2}×", x / base)
    }
}

/// Monotonic clock in nanoseconds, comparable across processes
/// (CLOCK_MONOTONIC; Python's `time.monotonic_ns()` reads the same clock).
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
