//! Admission: caps on open client connections, per IP address (all c2s
//! listeners together) and in total, checked right after `accept` and
//! before a task or a buffer exists for the connection. A connection holds
//! an [`Admitted`] ticket; dropping it gives the place back.
//!
//! The total defaults to what the file descriptor limit leaves after a
//! reserve for storage, HTTP and files, so that a flood of silent
//! connections can never make `accept` fail for `/healthz` or storage.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// Why a connection was refused: the `connection_rejected` reason label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerAddress,
    Total,
}

impl Refused {
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::PerAddress => "too_many_from_address",
            Refused::Total => "too_many_connections",
        }
    }

    /// What the client reads in the stream error.
    pub fn text(&self) -> &'static str {
        match self {
            Refused::PerAddress => "too many connections from your address",
            Refused::Total => "the server has reached its connection limit",
        }
    }
}

pub struct Admission {
    per_address: Mutex<HashMap<IpAddr, u32>>,
    total: AtomicUsize,
    /// Process-wide cap on client connections.
    max_total: usize,
    /// Connections closed so far (the memory trimmer's cue).
    closed: AtomicUsize,
}

impl Admission {
    pub fn new(max_total: usize) -> Arc<Admission> {
        Arc::new(Admission {
            per_address: Mutex::new(HashMap::new()),
            closed: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            max_total: max_total.max(1),
        })
    }

    /// The process-wide cap: the listeners' explicit caps added up, or
    /// (any listener on "auto") the descriptors left after the reserve.
    pub fn max_total_for(config: &Config, fd_limit: u64) -> usize {
        let explicit: usize = config.listen.c2s.iter().map(|l| l.max_connections).sum();
        if config.listen.c2s.iter().all(|l| l.max_connections > 0) {
            return explicit;
        }
        // Storage pool, HTTP connections, the database file, logs, certs.
        let http: usize = config.listen.http.iter().map(|h| h.max_connections).sum();
        let reserve = 64 + http + config.storage.max_connections as usize;
        (fd_limit as usize).saturating_sub(reserve).max(16)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes a place for a connection from `ip`, or says which cap is full.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address_cap: usize,
    ) -> Result<Admitted, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n as usize >= per_address_cap {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::PerAddress);
        }
        *n += 1;
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

/// A connection's place; given back when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Connections closed since the process started.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        a.closed.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = a.per_address.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    // Entries live only while the address has connections.
                    map.remove(&self.ip);
                }
            }
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Raises the soft file descriptor limit to the hard one (what Prosody and
/// ejabberd's scripts do) and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        rl.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_gives_places_back() {
        let a = Admission::new(3);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let t1 = a.admit(ip1, 2).unwrap();
        let t2 = a.admit(ip1, 2).unwrap();
        assert_eq!(a.admit(ip1, 2).err(), Some(Refused::PerAddress));
        let t3 = a.admit(ip2, 2).unwrap();
        assert_eq!(a.admit(ip2, 2).err(), Some(Refused::Total));
        assert_eq!(a.open(), 3);
        drop((t1, t2, t3));
        assert_eq!(a.open(), 0);
        assert!(a.per_address.lock().unwrap().is_empty());
        let _again = a.admit(ip1, 2).unwrap();
    }
}
