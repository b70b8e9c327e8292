//! Keep alive (3.1.2.10): the server closes a connection that sent nothing
//! for one and a half times the keep alive interval.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct KeepAlive {
    /// Zero disables the check.
    interval: Duration,
    last_seen: Instant,
}

impl KeepAlive {
    pub fn new(seconds: u16, now: Instant) -> KeepAlive {
        KeepAlive {
            interval: Duration::from_secs(u64::from(seconds)),
            last_seen: now,
        }
    }

    /// Any packet from the client counts as activity.
    pub fn seen(&mut self, now: Instant) {
        self.last_seen = now;
    }

    /// When the connection must be closed if nothing arrives before.
    pub fn deadline(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            None
        } else {
            Some(self.last_seen + self.interval * 3 / 2)
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }
}

/// The keep alive the server uses given the client's request and the
/// configured maximum; `Some` when it differs and must be sent back as v5
/// Server Keep Alive (3.2.2.3.14).
pub fn negotiate_keep_alive(requested: u16, max: u16) -> (u16, Option<u16>) {
    if max == 0 || (requested != 0 && requested <= max) {
        (requested, None)
    } else {
        (max, Some(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_one_and_a_half_intervals() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(10, t0);
        assert!(!k.expired(t0 + Duration::from_secs(14)));
        assert!(k.expired(t0 + Duration::from_secs(15)));
        k.seen(t0 + Duration::from_secs(14));
        assert!(!k.expired(t0 + Duration::from_secs(20)));
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(29)));
    }

    #[test]
    fn zero_disables_keep_alive() {
        let t0 = Instant::now();
        let k = KeepAlive::new(0, t0);
        assert_eq!(k.deadline(), None);
        assert!(!k.expired(t0 + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn server_keep_alive_caps_the_request() {
        assert_eq!(negotiate_keep_alive(30, 60), (30, None));
        assert_eq!(negotiate_keep_alive(120, 60), (60, Some(60)));
        assert_eq!(
            negotiate_keep_alive(0, 60),
            (60, Some(60)),
            "0 means no limit, which exceeds the max"
        );
        assert_eq!(negotiate_keep_alive(0, 0), (0, None));
    }
}
