//! Records and tables as people read them: times relative to the trace's
//! start and as wall-clock RFC 3339 (UTC), numbers in fixed columns.

use super::query::{CallStat, TreeStat};
use super::Record;

/// `+12.345ms` after `start_us` (`-…` for a record before it).
pub fn relative(ts_us: u64, start_us: u64) -> String {
    let (sign, d) = if ts_us >= start_us {
        ('+', ts_us - start_us)
    } else {
        ('-', start_us - ts_us)
    };
    format!("{sign}{}.{:03}ms", d / 1000, d % 1000)
}

/// `2024-05-06T07:08:09.123456Z` for microseconds since the Unix epoch.
pub fn rfc3339(ts_us: u64) -> String {
    let secs = ts_us / 1_000_000;
    let micros = ts_us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One record per line: index, time since the start, wall clock, task,
/// kind, name (and duration), details.
pub fn record_line(r: &Record, start_us: u64) -> String {
    let d = r.duration_us.map(|d| format!(" {d}µs")).unwrap_or_default();
    format!(
        "{:>6} {:>13} {} {:<10} {:<7} {}{} {}",
        r.index,
        relative(r.ts_us, start_us),
        rfc3339(r.ts_us),
        r.task.to_string(),
        format!("{:?}", r.kind).to_lowercase(),
        r.name,
        d,
        r.data
    )
    .trim_end()
    .to_string()
}

/// `tree`'s table: count and accumulated time right-aligned, then the shape.
pub fn tree_table(trees: &[TreeStat]) -> Vec<String> {
    let mut out = vec![format!("{:>7} {:>12}  tree", "count", "acc µs")];
    for t in trees {
        out.push(format!("{:>7} {:>12}  {}", t.count, t.acc_us, t.shape));
    }
    out
}

/// `stat`'s table.
pub fn stat_table(stats: &[CallStat]) -> Vec<String> {
    let width = stats
        .iter()
        .map(|s| s.key.chars().count())
        .max()
        .unwrap_or(0)
        .max(40);
    let mut out = vec![format!(
        "{:<width$} {:>8} {:>12} {:>12}",
        "function", "count", "acc µs", "own µs"
    )];
    for s in stats {
        out.push(format!(
            "{:<width$} {:>8} {:>12} {:>12}",
            s.key, s.count, s.acc_us, s.own_us
        ));
    }
    out
}
