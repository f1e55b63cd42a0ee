//! Latency recording and percentiles.
//!
//! [`Histogram`] is a log-linear histogram (HdrHistogram's layout with 7
//! bits of precision): values below 128 ns are exact, larger ones land in
//! one of 64 buckets per power of two, so a reported value is within 1/64
//! (1.6 %) of the true one. Recording is one atomic add, from any task; a
//! run keeps one histogram per measurement however many samples it takes.
//!
//! Percentiles use the nearest-rank definition: the p-th percentile of n
//! samples is the smallest value v such that at least ceil(p/100 · n)
//! samples are ≤ v. [`percentile_sorted`] is the exact version on a sorted
//! slice, used for small sample sets and as the histogram's reference.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use crate::report::Latency;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since this process's first call: the timestamp
/// a message carries and its receiver compares with.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Nearest-rank percentile of sorted samples; `None` when empty.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Sub-bucket bits: 2^7 = 128 exact values, then 64 buckets per octave.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
/// Octaves above the exact range: values up to 2^(7+40) ns (~40 hours).
const OCTAVES: u64 = 40;
const BUCKETS: usize = (SUB + OCTAVES * HALF) as usize;

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // floor(log2 v) >= 7
                                               // Octave k (1-based) holds [64·2^k, 128·2^k) in 64 buckets 2^k wide.
    let octave = e - u64::from(SUB_BITS) + 1;
    if octave > OCTAVES {
        return BUCKETS - 1;
    }
    let mantissa = v >> octave; // 64..128
    (SUB + (octave - 1) * HALF + (mantissa - HALF)) as usize
}

/// The highest value that falls in bucket `i` (reported for it, so a
/// percentile is never below the true one).
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let octave = (i - SUB) / HALF + 1;
    let mantissa = (i - SUB) % HALF + HALF;
    ((mantissa + 1) << octave) - 1
}

/// A concurrent log-linear histogram of nanosecond values.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, ns: u64) {
        self.counts[index(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(ns, Relaxed);
        self.min.fetch_min(ns, Relaxed);
        self.max.fetch_max(ns, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Nearest-rank percentile (within 1/64 above the true value; exact
    /// below 128 ns and at p100, which is the recorded maximum).
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (((p / 100.0) * n as f64).ceil() as u64).clamp(1, n);
        let max = self.max.load(Relaxed);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return Some(bucket_high(i).min(max));
            }
        }
        Some(max)
    }

    /// The summary a report carries, in milliseconds.
    pub fn summary(&self) -> Latency {
        let n = self.count();
        let ms = |ns: u64| ns as f64 / 1e6;
        let p = |q| self.percentile(q).map(ms).unwrap_or(0.0);
        Latency {
            count: n,
            min_ms: if n == 0 {
                0.0
            } else {
                ms(self.min.load(Relaxed))
            },
            mean_ms: if n == 0 {
                0.0
            } else {
                ms(self.sum.load(Relaxed)) / n as f64
            },
            p50_ms: p(50.0),
            p90_ms: p(90.0),
            p99_ms: p(99.0),
            p999_ms: p(99.9),
            max_ms: ms(self.max.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_sorted_samples() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 99.0), Some(99));
        assert_eq!(percentile_sorted(&v, 99.9), Some(100));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        // The textbook example: 15, 20, 35, 40, 50.
        let w = [15, 20, 35, 40, 50];
        assert_eq!(percentile_sorted(&w, 5.0), Some(15));
        assert_eq!(percentile_sorted(&w, 30.0), Some(20));
        assert_eq!(percentile_sorted(&w, 40.0), Some(20));
        assert_eq!(percentile_sorted(&w, 50.0), Some(35));
        assert_eq!(percentile_sorted(&w, 100.0), Some(50));
        assert_eq!(percentile_sorted(&[], 50.0), None);
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        // Every value maps into a bucket whose high end is >= it and
        // within 1/64 of it; bucket indices never go down.
        let mut last = 0;
        let mut v = 0u64;
        while v < 1 << 40 {
            let i = index(v);
            assert!(i >= last, "index went down at {v}");
            let hi = bucket_high(i);
            assert!(hi >= v, "bucket {i} high {hi} below {v}");
            assert!(
                (hi - v) as f64 <= v as f64 / 64.0 + 1.0,
                "bucket {i} too wide at {v}"
            );
            if i > 0 {
                assert_eq!(index(bucket_high(i - 1) + 1), i, "gap before bucket {i}");
            }
            last = i;
            v = v + 1 + v / 97;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_exact_below_128() {
        let h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((s.mean_ms - 50.5e-6).abs() < 1e-12);
        assert_eq!(s.min_ms, 1e-6);
    }

    #[test]
    fn histogram_matches_sorted_within_precision() {
        // A skewed spread from 10 µs to ~1 s, like real latencies.
        let mut samples: Vec<u64> = (0..20_000u64)
            .map(|i| 10_000 + (i * i * 2_500) % 1_000_000_000)
            .collect();
        let h = Histogram::new();
        for &s in &samples {
            h.record(s);
        }
        samples.sort_unstable();
        for p in [1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let exact = percentile_sorted(&samples, p).expect("samples") as f64;
            let approx = h.percentile(p).expect("samples") as f64;
            assert!(
                approx >= exact && approx <= exact * (1.0 + 1.0 / 64.0),
                "p{p}: exact {exact}, histogram {approx}"
            );
        }
        assert_eq!(h.percentile(100.0), Some(*samples.last().expect("samples")));
    }

    #[test]
    fn empty_histogram() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        let s = h.summary();
        assert_eq!((s.count, s.p99_ms, s.max_ms), (0, 0.0, 0.0));
    }
}
