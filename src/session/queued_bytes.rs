//! The bytes queued across every session, against one global budget
//! (`limits.max_total_queued_bytes`). Each session's queue is bounded on
//! its own; without this, a million sessions each within their bound could
//! still hold more than the machine has.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The shared counter. Sessions take from it as they queue and give back
/// as they send, drop or end.
#[derive(Debug)]
pub struct QueuedBytes {
    used: AtomicUsize,
    max: usize,
    /// Deliveries dropped because the budget was spent.
    refused: AtomicU64,
}

impl QueuedBytes {
    pub fn new(max: usize) -> QueuedBytes {
        QueuedBytes {
            used: AtomicUsize::new(0),
            max,
            refused: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes if they fit, else counts a refusal. One
    /// compare-and-swap loop: it runs for every queued delivery.
    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .is_ok();
        if !taken {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// What one session holds of the budget; given back when dropped (the
/// session ended).
#[derive(Debug, Default)]
pub struct QueueCharge {
    budget: Option<Arc<QueuedBytes>>,
    held: usize,
}

impl QueueCharge {
    pub fn new(budget: Option<Arc<QueuedBytes>>) -> QueueCharge {
        QueueCharge { budget, held: 0 }
    }

    /// Takes `n` bytes for a new delivery; false if the budget is spent.
    pub fn take(&mut self, n: usize) -> bool {
        if let Some(b) = &self.budget {
            if !b.try_take(n) {
                return false;
            }
        }
        self.held += n;
        true
    }

    /// Takes `n` bytes whatever the budget says (a session restored from
    /// the store: its messages were accepted before).
    pub fn force(&mut self, n: usize) {
        if let Some(b) = &self.budget {
            b.used.fetch_add(n, Ordering::AcqRel);
        }
        self.held += n;
    }

    pub fn give_back(&mut self, n: usize) {
        let n = n.min(self.held);
        self.held -= n;
        if let Some(b) = &self.budget {
            b.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Drop for QueueCharge {
    fn drop(&mut self) {
        let held = self.held;
        self.give_back(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_share_one_budget_and_give_back_when_they_end() {
        let budget = Arc::new(QueuedBytes::new(100));
        let mut a = QueueCharge::new(Some(Arc::clone(&budget)));
        let mut b = QueueCharge::new(Some(Arc::clone(&budget)));
        assert!(a.take(60));
        assert!(!b.take(41));
        assert!(b.take(40));
        assert_eq!(budget.refused(), 1);
        a.give_back(10);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.force(100);
        assert_eq!(budget.used(), 140);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(!QueueCharge::new(Some(budget)).take(usize::MAX));
    }
}
