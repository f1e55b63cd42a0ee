//! Traffic shaping of a session's input (ejabberd's and MongooseIM's
//! `shaper`): token buckets in bytes and in stanzas. When one runs dry the
//! session stops reading its socket until it refills, so TCP pushes back
//! on the sender; nothing is dropped.

use std::time::{Duration, Instant};

use crate::config::{C2sListener, Config};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// The tokens there are now (after refilling).
    pub fn available(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens
    }

    /// Takes `n` tokens (the bytes or stanzas already read: they are never
    /// refused); the pause before reading more, if the bucket is in debt.
    pub fn take(&mut self, n: f64, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// A session's two buckets, from its listener and its host's overrides.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    pub bytes: Option<Bucket>,
    pub stanzas: Option<Bucket>,
}

impl Shaping {
    /// How many bytes the next read may take: what the byte bucket holds
    /// (a read is never smaller than 512 bytes; the excess is a debt).
    pub fn read_budget(&mut self) -> usize {
        match self.bytes.as_mut() {
            Some(b) => (b.available(Instant::now()).max(0.0) as usize).max(512),
            None => usize::MAX,
        }
    }

    /// How long until the stanza bucket holds one more.
    pub fn next_stanza(&self) -> Duration {
        self.stanzas
            .as_ref()
            .map_or(Duration::ZERO, |b| Duration::from_secs_f64(1.0 / b.rate))
    }

    /// How many stanzas may be handled before the next pause (at least one).
    pub fn stanza_budget(&mut self) -> u64 {
        match self.stanzas.as_mut() {
            Some(b) => (b.available(Instant::now()).max(0.0) as u64).max(1),
            None => u64::MAX,
        }
    }

    pub fn for_session(config: &Config, listener: &C2sListener, host: &str) -> Shaping {
        let over = config.host_config.iter().find(|h| h.host == host);
        let name = over
            .and_then(|h| h.shaper.as_deref())
            .unwrap_or(&listener.shaper);
        let bytes = config.shaper.get(name).map(|s| {
            let burst = s
                .burst
                .unwrap_or(s.max_rate * 4)
                .max(listener.max_stanza_size as u64);
            Bucket::new(s.max_rate as f64, burst as f64)
        });
        let rate = over
            .and_then(|h| h.max_stanza_rate)
            .unwrap_or(listener.max_stanza_rate);
        let stanzas = (rate > 0).then(|| Bucket::new(f64::from(rate), 2.0 * f64::from(rate)));
        Shaping { bytes, stanzas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_reading_pauses_for_the_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, 4000.0);
        assert_eq!(b.take(4000.0, t0), None);
        let pause = b.take(500.0, t0).unwrap();
        assert!((pause.as_secs_f64() - 0.5).abs() < 1e-9, "{pause:?}");
        // After the pause the debt is paid and a second's worth refilled.
        assert_eq!(b.take(0.0, t0 + Duration::from_millis(500)), None);
        assert_eq!(b.take(1000.0, t0 + Duration::from_millis(1500)), None);
        // Idle time refills up to the burst, no further.
        assert_eq!(b.take(4000.0, t0 + Duration::from_secs(100)), None);
        assert!(b.take(1.0, t0 + Duration::from_secs(100)).is_some());
    }

    #[test]
    fn host_overrides_the_listener() {
        let mut config = Config::default_for_no_file();
        config.host_config.push(crate::config::HostConfig {
            host: "localhost".into(),
            shaper: Some("none".into()),
            max_stanza_rate: Some(0),
        });
        let l = config.listen.c2s[0].clone();
        let s = Shaping::for_session(&config, &l, "localhost");
        assert!(s.bytes.is_none() && s.stanzas.is_none());
        let s = Shaping::for_session(&config, &l, "other.example");
        assert!(s.bytes.is_some() && s.stanzas.is_some());
    }
}
