//! Failed logins per source address: after `max_failures` bad passwords
//! within `window`, CONNECTs from that address that would check a password
//! are refused at once, without hashing, until the window that started
//! with the first failure has passed. Guessing passwords then costs the
//! attacker a window per `max_failures` tries, and the broker no hashing
//! beyond them.
//!
//! IPv6 addresses are counted per /64: one host is usually given a whole
//! /64, so counting single addresses would not slow it down. The table
//! holds at most `MAX_ADDRESSES` entries: when full, expired entries go
//! first, then the oldest, so many addresses cost bounded memory (and an
//! evicted attacker starts a new window, no worse than a new address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Addresses tracked at once (about 64 bytes each).
pub const MAX_ADDRESSES: usize = 10_000;

/// Failures of one address within its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The per-address failure counts and the number of refusals.
#[derive(Debug)]
pub struct LoginThrottle {
    /// 0 turns the throttle off.
    max_failures: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<HashMap<IpAddr, Window>>,
    refused: AtomicU64,
}

/// The key an address is counted under: IPv4 (also IPv4-mapped) as is,
/// IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> LoginThrottle {
        LoginThrottle::with_capacity(max_failures, window, MAX_ADDRESSES)
    }

    fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> LoginThrottle {
        LoginThrottle {
            max_failures,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether a login from `ip` is refused now; a refusal is counted.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        self.refuses_at(ip, Instant::now())
    }

    fn refuses_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let blocked = self.table.lock().get(&key(ip)).is_some_and(|w| {
            now.saturating_duration_since(w.started) < self.window
                && w.failures >= self.max_failures
        });
        if blocked {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        blocked
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let key = key(ip);
        let mut table = self.table.lock();
        if !table.contains_key(&key) && table.len() >= self.capacity {
            let window = self.window;
            table.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if table.len() >= self.capacity {
                if let Some(oldest) = table.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let w = table.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// CONNECTs refused by the throttle since start.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Addresses refused right now.
    pub fn blocked_addresses(&self) -> usize {
        let now = Instant::now();
        self.table
            .lock()
            .values()
            .filter(|w| {
                now.saturating_duration_since(w.started) < self.window
                    && w.failures >= self.max_failures
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_after_max_failures_until_the_window_passes() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.7");
        for i in 0..3 {
            assert!(!t.refuses_at(a, t0), "after {i} failures");
            t.failed_at(a, t0 + Duration::from_secs(i));
        }
        assert!(t.refuses_at(a, t0 + Duration::from_secs(10)));
        assert!(!t.refuses_at(ip("192.0.2.8"), t0), "another address");
        assert!(t.refuses_at(a, t0 + Duration::from_secs(59)));
        assert!(!t.refuses_at(a, t0 + Duration::from_secs(60)));
        assert_eq!(t.refused_total(), 2);
        // A failure after the window starts a new one.
        t.failed_at(a, t0 + Duration::from_secs(61));
        assert!(!t.refuses_at(a, t0 + Duration::from_secs(62)));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        t.failed_at(ip("2001:db8:1:2::1"), now);
        t.failed_at(ip("2001:db8:1:2:ffff::9"), now);
        assert!(t.refuses_at(ip("2001:db8:1:2::77"), now));
        assert!(!t.refuses_at(ip("2001:db8:1:3::1"), now));
        t.failed_at(ip("::ffff:192.0.2.1"), now);
        t.failed_at(ip("192.0.2.1"), now);
        assert!(t.refuses_at(ip("192.0.2.1"), now));
    }

    #[test]
    fn the_table_is_bounded_expired_then_oldest_go_first() {
        let t = LoginThrottle::with_capacity(1, Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.failed_at(ip(a), t0 + Duration::from_secs(i as u64));
        }
        t.failed_at(ip("10.0.0.4"), t0 + Duration::from_secs(10));
        assert_eq!(t.table.lock().len(), 3);
        assert!(
            !t.refuses_at(ip("10.0.0.1"), t0 + Duration::from_secs(11)),
            "oldest evicted"
        );
        assert!(t.refuses_at(ip("10.0.0.4"), t0 + Duration::from_secs(11)));
        // Expired entries make room before anyone recent is evicted.
        t.failed_at(ip("10.0.0.5"), t0 + Duration::from_secs(61));
        assert!(t.refuses_at(ip("10.0.0.4"), t0 + Duration::from_secs(62)));
        assert!(t.refuses_at(ip("10.0.0.5"), t0 + Duration::from_secs(62)));
    }

    #[test]
    fn zero_turns_it_off() {
        let t = LoginThrottle::new(0, Duration::from_secs(60));
        let a = ip("192.0.2.1");
        for _ in 0..100 {
            t.failed(a);
        }
        assert!(!t.refuses(a));
        assert!(t.table.lock().is_empty());
    }
}
