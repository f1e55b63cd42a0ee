//! The server process seen from /proc (RSS, CPU time), and this
//! process's open-file limit.

use crate::error::Error;
use crate::report::ServerUsage;

/// Resident set size in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Result<u64, Error> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Proc(format!("{path}: {e}")))?;
    parse_rss(&text).ok_or_else(|| Error::Proc(format!("{path}: no VmRSS")))
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") | None => 1024,
        Some("mB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(n * unit)
}

/// User + system CPU seconds of the whole process, all threads
/// (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Proc(format!("{path}: {e}")))?;
    let ticks = parse_cpu_ticks(&text).ok_or_else(|| Error::Proc(format!("{path}: malformed")))?;
    Ok(ticks as f64 / clock_ticks())
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // ')': fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU and RSS at the start of a measured part, to diff at its end.
pub struct Sampler {
    pid: u32,
    cpu0: f64,
    rss0: u64,
}

impl Sampler {
    /// `None` without a PID; an error when the PID cannot be read (a
    /// wrong `--server-pid` should stop the run, not yield empty numbers).
    pub fn start(pid: Option<u32>) -> Result<Option<Sampler>, Error> {
        let Some(pid) = pid else {
            return Ok(None);
        };
        Ok(Some(Sampler {
            pid,
            cpu0: cpu_seconds(pid)?,
            rss0: rss_bytes(pid)?,
        }))
    }

    pub fn rss_before(&self) -> u64 {
        self.rss0
    }

    pub fn cpu_so_far(&self) -> f64 {
        cpu_seconds(self.pid).map(|c| c - self.cpu0).unwrap_or(0.0)
    }

    /// The usage since `start`; the server having exited shows as zeros
    /// after its last known values, not as a failed run.
    pub fn finish(&self) -> ServerUsage {
        ServerUsage {
            pid: self.pid,
            cpu_seconds: self.cpu_so_far(),
            rss_before_bytes: self.rss0,
            rss_after_bytes: rss_bytes(self.pid).unwrap_or(0),
        }
    }
}

/// Raises the soft open-file limit to the hard one (each connection is a
/// descriptor); returns the (soft, hard) limits now in force.
pub fn raise_nofile_limit() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        assert_eq!(
            parse_rss("Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\n"),
            Some(1234 * 1024)
        );
        assert_eq!(parse_rss("Name:\tkthread\n"), None);
        let stat = "4242 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 0);
        assert!(cpu_seconds(me).expect("cpu") >= 0.0);
        assert!(rss_bytes(u32::MAX).is_err());
        let (soft, hard) = raise_nofile_limit().expect("rlimit");
        assert_eq!(soft, hard);
    }
}
