//! Accept loops' shared habit: when `accept` fails (out of file
//! descriptors, mostly) pause with a growing delay and keep serving, and
//! warn at most every few seconds with the number of errors since.

use std::io;
use std::time::{Duration, Instant};

/// Accept errors (out of file descriptors, mostly): a growing pause, and a
/// warning at most every few seconds with the number of errors since.
pub struct AcceptBackoff {
    delay: Duration,
    errors: u64,
    warned: Option<Instant>,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);
    const WARN_EVERY: Duration = Duration::from_secs(5);

    pub fn new() -> AcceptBackoff {
        AcceptBackoff {
            delay: Self::FIRST,
            errors: 0,
            warned: None,
        }
    }

    /// After an accept error: how long to pause; logs when it is time.
    pub fn failed(&mut self, listener: &str, e: &io::Error) -> Duration {
        self.errors += 1;
        if self.warned.is_none_or(|t| t.elapsed() >= Self::WARN_EVERY) {
            tracing::warn!(listener, error = %e, errors = self.errors, "accept failed; backing off");
            self.warned = Some(Instant::now());
            self.errors = 0;
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        d
    }

    pub fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::new();
        let e = io::Error::other("EMFILE");
        let delays: Vec<_> = (0..10).map(|_| b.failed("t", &e)).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed("t", &e), Duration::from_millis(10));
    }
}
