//! Per-client publish rate limit (messages/s and bytes/s) as a token
//! bucket. Going over does not drop anything: the connection stops reading
//! until the bucket refills, so TCP pushes back on the client.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PublishRate {
    messages_per_sec: f64,
    bytes_per_sec: f64,
    messages: f64,
    bytes: f64,
    last: Instant,
}

impl PublishRate {
    /// `None` when neither limit is set.
    pub fn new(messages_per_sec: u32, bytes_per_sec: u64, now: Instant) -> Option<PublishRate> {
        if messages_per_sec == 0 && bytes_per_sec == 0 {
            return None;
        }
        let m = f64::from(messages_per_sec);
        let b = bytes_per_sec as f64;
        // One second of burst.
        Some(PublishRate {
            messages_per_sec: m,
            bytes_per_sec: b,
            messages: m,
            bytes: b,
            last: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.messages = (self.messages + dt * self.messages_per_sec).min(self.messages_per_sec);
        self.bytes = (self.bytes + dt * self.bytes_per_sec).min(self.bytes_per_sec);
    }

    /// Counts one PUBLISH of `payload` bytes. Returns how long to stop
    /// reading when the client is over its rate.
    pub fn charge(&mut self, payload: usize, now: Instant) -> Option<Duration> {
        self.refill(now);
        let mut wait: f64 = 0.0;
        if self.messages_per_sec > 0.0 {
            self.messages -= 1.0;
            if self.messages < 0.0 {
                wait = wait.max(-self.messages / self.messages_per_sec);
            }
        }
        if self.bytes_per_sec > 0.0 {
            self.bytes -= payload as f64;
            if self.bytes < 0.0 {
                wait = wait.max(-self.bytes / self.bytes_per_sec);
            }
        }
        (wait > 0.0).then(|| Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_means_no_limiter() {
        assert!(PublishRate::new(0, 0, Instant::now()).is_none());
    }

    #[test]
    fn message_rate_allows_a_second_of_burst_then_paces() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(10, 0, t0).unwrap();
        for _ in 0..10 {
            assert_eq!(r.charge(1, t0), None);
        }
        let wait = r.charge(1, t0).expect("over the rate");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // After the wait, the debt is paid.
        assert_eq!(r.charge(0, t0 + Duration::from_millis(300)), None);
    }

    #[test]
    fn byte_rate_paces_large_payloads() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(0, 1000, t0).unwrap();
        assert_eq!(r.charge(1000, t0), None);
        let wait = r.charge(500, t0).unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6);
    }
}
