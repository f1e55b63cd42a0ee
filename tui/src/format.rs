//! Numbers, durations and sizes as a console shows them: short and
//! fixed-width enough that columns do not jitter between redraws.

/// `1234` → `1.2k`, `0.5` → `0.5`, `12` → `12`.
pub fn count(v: f64) -> String {
    // An empty sum is -0.0; never show "-0".
    let v = v + 0.0;
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A per-second rate; `–` when unknown (the first sample).
pub fn rate(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{}/s", count(v)),
        None => "–".into(),
    }
}

/// Seconds as `450µs`, `12.3ms`, `1.20s`; `–` when unknown.
pub fn latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "–".into(),
        Some(s) if s < 1e-3 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

/// An uptime or connection age: `42s`, `7m03s`, `3h12m`, `5d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Bytes as `512B`, `3.4KiB`, `120.5MiB`.
pub fn bytes(v: f64) -> String {
    const K: f64 = 1024.0;
    let v = v + 0.0;
    if v >= K * K * K {
        format!("{:.1}GiB", v / (K * K * K))
    } else if v >= K * K {
        format!("{:.1}MiB", v / (K * K))
    } else if v >= K {
        format!("{:.1}KiB", v / K)
    } else {
        format!("{v:.0}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(count(12.0), "12");
        assert_eq!(count(-0.0), "0");
        assert_eq!(count(2.5), "2.5");
        assert_eq!(count(12345.0), "12.3k");
        assert_eq!(count(2_500_000.0), "2.5M");
        assert_eq!(rate(None), "–");
        assert_eq!(rate(Some(1500.0)), "1500/s");
        assert_eq!(latency(Some(0.00045)), "450µs");
        assert_eq!(latency(Some(0.0123)), "12.3ms");
        assert_eq!(latency(Some(1.2)), "1.20s");
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(423.0), "7m03s");
        assert_eq!(age(3.0 * 3600.0 + 720.0), "3h12m");
        assert_eq!(age(5.0 * 86400.0 + 4.0 * 3600.0), "5d04h");
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5MiB");
    }
}
