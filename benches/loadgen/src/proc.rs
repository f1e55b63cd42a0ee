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

/// CPU and RSS of the server processes at the start of a measured part,
/// to diff at its end. Several processes (a cluster's nodes on one
/// machine) are summed.
pub struct Sampler {
    /// (pid, CPU seconds, RSS bytes) at the start.
    procs: Vec<(u32, f64, u64)>,
}

impl Sampler {
    /// `None` without a PID; an error when a PID cannot be read (a wrong
    /// `--server-pid` should stop the run, not yield empty numbers).
    pub fn start(pids: &[u32]) -> Result<Option<Sampler>, Error> {
        if pids.is_empty() {
            return Ok(None);
        }
        let procs = pids
            .iter()
            .map(|&pid| Ok((pid, cpu_seconds(pid)?, rss_bytes(pid)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(Sampler { procs }))
    }

    /// The summed RSS of the processes at the start.
    pub fn rss_before(&self) -> u64 {
        self.procs.iter().map(|p| p.2).sum()
    }

    /// The summed CPU seconds since the start.
    pub fn cpu_so_far(&self) -> f64 {
        self.procs
            .iter()
            .map(|&(pid, cpu0, _)| cpu_seconds(pid).map(|c| c - cpu0).unwrap_or(0.0))
            .sum()
    }

    /// The usage since `start`; the server having exited shows as zeros
    /// after its last known values, not as a failed run. With several
    /// processes: their sum (pid 0), each one's in `each`.
    pub fn finish(&self) -> ServerUsage {
        let each: Vec<ServerUsage> = self
            .procs
            .iter()
            .map(|&(pid, cpu0, rss0)| ServerUsage {
                pid,
                cpu_seconds: cpu_seconds(pid).map(|c| c - cpu0).unwrap_or(0.0),
                rss_before_bytes: rss0,
                rss_after_bytes: rss_bytes(pid).unwrap_or(0),
                each: Vec::new(),
            })
            .collect();
        if each.len() == 1 {
            return each.into_iter().next().unwrap_or_default();
        }
        ServerUsage {
            pid: 0,
            cpu_seconds: each.iter().map(|u| u.cpu_seconds).sum(),
            rss_before_bytes: each.iter().map(|u| u.rss_before_bytes).sum(),
            rss_after_bytes: each.iter().map(|u| u.rss_after_bytes).sum(),
            each,
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
        let one = Sampler::start(&[me]).expect("start").expect("sampler");
        let u = one.finish();
        assert_eq!((u.pid, u.each.len()), (me, 0));
        let two = Sampler::start(&[me, me]).expect("start").expect("sampler");
        let u = two.finish();
        assert_eq!((u.pid, u.each.len()), (0, 2));
        assert_eq!(u.rss_before_bytes, two.rss_before());
        assert!(Sampler::start(&[]).expect("start").is_none());
        assert!(Sampler::start(&[me, u32::MAX]).is_err());
        let (soft, hard) = raise_nofile_limit().expect("rlimit");
        assert_eq!(soft, hard);
    }
}
