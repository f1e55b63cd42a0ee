//! Handlers turn emissions into log lines and traces (metrics are kept by
//! the registry's store, not by a handler). Each opts in per event and
//! resolves a label set once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::registry::Meta;
use crate::spec::EventSpec;

pub trait Handler: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether this handler takes this event at all.
    fn wants(&self, spec: &EventSpec) -> bool;
    /// Prepares for one label set (label values in the order of
    /// `spec.labels`); `None` declines it.
    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>>;
}

/// A handler bound to one event and label set: called on every emission,
/// so it must be quick and must not block.
pub trait ResolvedHandler: Send + Sync {
    fn handle(&self, measurements: &[(&'static str, f64)], meta: &Meta<'_>);

    /// When the handler wants emissions at all, read once at resolve time
    /// and checked inline before every call: a handler that is off most of
    /// the time (a log level, an armed tracer) then costs one load.
    fn gate(&self) -> Gate {
        Gate::Always
    }
}

/// A handler's switch, checked by the registry before calling it.
#[derive(Clone, Copy)]
pub enum Gate {
    Always,
    /// Called while the flag is set.
    Flag(&'static AtomicBool),
    /// Called while the level in the cell is at least `level` (a log
    /// handler's process-wide maximum, which can change at run time).
    Level {
        cell: &'static AtomicU8,
        level: u8,
    },
}

impl Gate {
    #[inline]
    pub fn open(&self) -> bool {
        match self {
            Gate::Always => true,
            Gate::Flag(f) => f.load(Ordering::Relaxed),
            Gate::Level { cell, level } => cell.load(Ordering::Relaxed) >= *level,
        }
    }
}

/// Whether two measurement keys are equal. Keys are short catalogue
/// constants, often the same address: pointers first, then the bytes as
/// one or two (overlapping) word loads for keys of 4 to 16 bytes. This runs
/// for every measurement of every emission; a `memcmp` call or a byte loop
/// costs several times the compare itself.
#[inline]
pub(crate) fn key_eq(a: &str, b: &str) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let word8 = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])))
    };
    let word4 = |s: &[u8], at: usize| {
        s.get(at..at + 4)
            .map(|w| u32::from_ne_bytes(w.try_into().unwrap_or([0; 4])))
    };
    match n {
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        _ => a == b,
    }
}

/// A counter's increment from a measurement (`v` > 0), rounded; the usual
/// 1 needs no rounding call.
#[inline]
pub(crate) fn count_of(v: f64) -> u64 {
    if v == 1.0 {
        1
    } else {
        (v + 0.5) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::key_eq;

    #[test]
    fn keys_compare_equal_only_when_every_byte_is_equal() {
        let base = "abcdefghijklmnopqrstu";
        for n in 0..=base.len() {
            let a = base[..n].to_string();
            let b = base[..n].to_string();
            assert!(key_eq(&a, &b), "{a}");
            assert!(!key_eq(&a, &base[..n.saturating_sub(1)]) || n == 0);
            // A difference at any position is seen.
            for i in 0..n {
                let mut c = a.clone().into_bytes();
                c[i] = b'_';
                let c = String::from_utf8(c).unwrap();
                assert!(!key_eq(&a, &c), "{a} vs {c}");
            }
        }
        assert!(key_eq("seconds", "seconds"));
        assert!(!key_eq("count", "bytes"));
    }
}
