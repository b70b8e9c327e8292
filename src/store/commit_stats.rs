//! How long group commits take, for the metrics endpoint. Plain atomics
//! written by the committer thread once per commit group, so measuring
//! costs nothing on the publish path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
pub struct CommitStats {
    /// Per bucket (not cumulative); the last slot counts what exceeds every
    /// bound.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
    /// Operations written (puts and deletes).
    pub ops: AtomicU64,
}

impl CommitStats {
    pub fn observe(&self, took: Duration, ops: usize) {
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
    }

    /// (sum in seconds, count, cumulative buckets) as Prometheus wants them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(COMMIT_BUCKETS.len() + 1);
        for (i, bound) in COMMIT_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
        {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            buckets.push((bound, cumulative));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, self.count.load(Ordering::Relaxed), buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_infinity() {
        let s = CommitStats::default();
        s.observe(Duration::from_micros(50), 3);
        s.observe(Duration::from_millis(3), 1);
        s.observe(Duration::from_secs(2), 1);
        let (sum, count, buckets) = s.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 2.00305).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[5], (0.005, 2));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 3)));
        assert_eq!(s.ops.load(Ordering::Relaxed), 5);
    }
}
