//! Deadlines in one ordered map: the pure part of the broker's timers.
//! Nothing here reads a clock or spawns anything; the caller passes `now`,
//! so tests drive it with simulated time.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Timers keyed by `K`, at most one per key, fired in deadline order (at
/// equal deadlines, in the order they were scheduled). Scheduling a key
/// again replaces its timer; the costs are `O(log n)` per schedule,
/// cancel and fire, and nothing per idle timer.
#[derive(Debug)]
pub struct TimerWheel<K, V> {
    /// Ordered by deadline, then by a sequence number that makes each
    /// entry's position unique.
    by_deadline: BTreeMap<(Instant, u64), (K, V)>,
    /// Where each key's timer sits in `by_deadline`.
    by_key: HashMap<K, (Instant, u64)>,
    next_seq: u64,
}

impl<K, V> Default for TimerWheel<K, V> {
    fn default() -> Self {
        TimerWheel {
            by_deadline: BTreeMap::new(),
            by_key: HashMap::new(),
            next_seq: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> TimerWheel<K, V> {
    /// Sets `key`'s timer to fire at `at` with `value`, replacing the one
    /// it had. True when `at` is now the earliest deadline (a driver
    /// sleeping until a later one must wake up).
    pub fn schedule(&mut self, key: K, at: Instant, value: V) -> bool {
        self.cancel(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.insert(key.clone(), (at, seq));
        self.by_deadline.insert((at, seq), (key, value));
        self.next_deadline() == Some(at)
    }

    /// Removes `key`'s timer, returning its value.
    pub fn cancel(&mut self, key: &K) -> Option<V> {
        let at = self.by_key.remove(key)?;
        self.by_deadline.remove(&at).map(|(_, v)| v)
    }

    /// When the earliest timer fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|(at, _)| *at)
    }

    /// Takes every timer due at `now` (deadline not after it), earliest
    /// first.
    pub fn take_due(&mut self, now: Instant) -> Vec<V> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (key, value) = entry.remove();
            self.by_key.remove(&key);
            due.push(value);
        }
        due
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.by_deadline.is_empty()
    }
}
