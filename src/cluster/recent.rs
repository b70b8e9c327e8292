//! The ids of the messages a node received last, so that a message
//! matching several of the node's subscriptions (NATS sends one copy per
//! matching subscription: `a/+` and `a/#` both take `a/b`), or published
//! again after a lost JetStream acknowledgement, is routed once.
//!
//! NATS sends the copies of one message back to back, so a window of the
//! last few thousand ids is ample; the window is bounded, whatever the
//! rate.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` ids seen, by hash (a collision, one in 2^64 per
/// pair, would drop one copy of a message).
#[derive(Debug)]
pub struct RecentIds {
    seen: HashSet<u64, foldhash::fast::FixedState>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds {
            seen: HashSet::with_capacity_and_hasher(capacity, Default::default()),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// True the first time `id` is seen within the window.
    pub fn first(&mut self, id: &str) -> bool {
        let key = hash(id);
        if !self.seen.insert(key) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(key);
        true
    }
}

/// A keyed hash: ids come from other nodes, which are trusted, but a
/// fixed seed costs nothing.
fn hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x5157_1ce0_c1a5_7e72).hash_one(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_counts_once_within_the_window() {
        let mut r = RecentIds::new(2);
        assert!(r.first("a"));
        assert!(!r.first("a"));
        assert!(r.first("b"));
        assert!(r.first("c"), "a third id pushes the first out");
        assert!(r.first("a"), "out of the window: seen again");
        assert!(!r.first("c"));
    }
}
