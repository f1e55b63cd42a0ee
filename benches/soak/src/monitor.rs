//! The server process from /proc: resident memory, open descriptors, CPU
//! time, and whether it is still alive; and the first/min/max/last of a
//! series of samples.

use serde::Serialize;

/// One look at the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerSample {
    pub rss_bytes: u64,
    pub fds: u64,
    pub cpu_s: f64,
}

/// Reads RSS (`VmRSS`), the number of entries in `/proc/PID/fd`, and
/// utime + stime. `None` once the process is gone (or unreadable).
pub fn sample(pid: u32) -> Option<ServerSample> {
    if !alive(pid) {
        return None;
    }
    let rss_bytes = osprey_loadgen::proc::rss_bytes(pid).ok()?;
    let cpu_s = osprey_loadgen::proc::cpu_seconds(pid).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ServerSample {
        rss_bytes,
        fds,
        cpu_s,
    })
}

/// The process exists and is not a zombie (a server that crashed under a
/// parent that has not reaped it yet is dead too).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => process_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The state letter of /proc/PID/stat (after the parenthesised name).
fn process_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// First, smallest, largest and last value of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Range {
    pub first: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub samples: u64,
}

impl Range {
    pub fn add(&mut self, v: f64) {
        if self.samples == 0 {
            *self = Range {
                first: v,
                min: v,
                max: v,
                last: v,
                samples: 1,
            };
            return;
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
        self.samples += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_keeps_first_min_max_last() {
        let mut r = Range::default();
        for v in [5.0, 3.0, 9.0, 4.0] {
            r.add(v);
        }
        assert_eq!(
            r,
            Range {
                first: 5.0,
                min: 3.0,
                max: 9.0,
                last: 4.0,
                samples: 4
            }
        );
    }

    #[test]
    fn reads_this_process_and_sees_dead_ones() {
        let s = sample(std::process::id()).expect("own sample");
        assert!(s.rss_bytes > 0 && s.fds > 0);
        assert!(!alive(u32::MAX));
        assert_eq!(process_state("12 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(process_state("12 (soak) S 1 2"), Some('S'));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        // Exited but not reaped: a zombie, which is not alive.
        let t = std::time::Instant::now();
        while alive(pid) && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(pid));
        child.wait().expect("reap");
        assert!(sample(pid).is_none());
    }
}
