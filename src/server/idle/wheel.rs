//! Keep-alive deadlines of parked connections, one bucket per second.
//!
//! A million idle connections each have one deadline (1.5 times their
//! keep alive), and most are cancelled by the connection's next packet.
//! A hashed wheel with a bucket per second makes scheduling and
//! cancelling O(1) at 8 bytes per timer, and a tick costs only the timers
//! of the second that passed (plus, once per turn of the wheel, those set
//! further ahead than a turn). Deadlines are rounded up to whole seconds:
//! a keep-alive timeout fires at most a second late, never early.

use std::time::{Duration, Instant};

/// Buckets, one per second: a turn of the wheel is 17 minutes, longer
/// than most keep-alives, so most timers are looked at once.
pub const BUCKETS: usize = 1024;

/// Where a timer sits, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    bucket: u32,
    index: u32,
}

/// What a tick did to a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// The timer of this key is due; it is gone from the wheel.
    Due(u32),
    /// This key's timer (for a later turn) moved within its bucket.
    Moved(u32, Position),
}

/// The wheel. Keys are the caller's (the idle table's entry numbers); it
/// keeps each timer's position next to the key to cancel it.
#[derive(Debug)]
pub struct KeepAliveWheel {
    start: Instant,
    /// (key, deadline in whole seconds since `start`).
    buckets: Vec<Vec<(u32, u32)>>,
    /// Seconds since `start` whose buckets have fired.
    fired_through: u32,
    len: usize,
}

impl KeepAliveWheel {
    pub fn new(start: Instant) -> KeepAliveWheel {
        KeepAliveWheel {
            start,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            fired_through: 0,
            len: 0,
        }
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets a timer for `key` at `at` (rounded up to a whole second; a
    /// deadline already passed fires at the next tick).
    pub fn schedule(&mut self, key: u32, at: Instant) -> Position {
        let since = at.saturating_duration_since(self.start);
        let rounded_up = since.as_secs() + u64::from(since.subsec_nanos() > 0);
        let second = u32::try_from(rounded_up)
            .unwrap_or(u32::MAX)
            .max(self.fired_through + 1);
        let bucket = second as usize % BUCKETS;
        let slots = &mut self.buckets[bucket];
        slots.push((key, second));
        self.len += 1;
        Position {
            bucket: bucket as u32,
            index: (slots.len() - 1) as u32,
        }
    }

    /// Removes the timer at `pos`. The last timer of its bucket takes its
    /// place: that one's key and new position are returned, for the
    /// caller to note.
    pub fn cancel(&mut self, pos: Position) -> Option<(u32, Position)> {
        let slots = self.buckets.get_mut(pos.bucket as usize)?;
        let index = pos.index as usize;
        if index >= slots.len() {
            return None;
        }
        slots.swap_remove(index);
        self.len -= 1;
        slots.get(index).map(|&(key, _)| (key, pos))
    }

    /// When the next tick is due, if any timer is pending.
    pub fn next_tick(&self) -> Option<Instant> {
        (!self.is_empty()).then(|| self.at(self.fired_through + 1))
    }

    fn at(&self, second: u32) -> Instant {
        self.start + Duration::from_secs(u64::from(second))
    }

    /// Fires the buckets of every second up to `now`, reporting each due
    /// timer and each timer that moved.
    pub fn advance(&mut self, now: Instant, mut report: impl FnMut(Tick)) {
        let now_second =
            u32::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX);
        if now_second <= self.fired_through {
            return;
        }
        // After a long sleep, one pass over every bucket is enough.
        let first = self
            .fired_through
            .saturating_add(1)
            .max(now_second.saturating_sub(BUCKETS as u32 - 1));
        for second in first..=now_second {
            self.fire_bucket(second as usize % BUCKETS, now_second, &mut report);
        }
        self.fired_through = now_second;
    }

    fn fire_bucket(&mut self, bucket: usize, now_second: u32, report: &mut impl FnMut(Tick)) {
        let slots = &mut self.buckets[bucket];
        let mut index = 0;
        while index < slots.len() {
            let (key, second) = slots[index];
            if second > now_second {
                index += 1;
                continue;
            }
            slots.swap_remove(index);
            self.len -= 1;
            report(Tick::Due(key));
            if let Some(&(moved, _)) = slots.get(index) {
                let pos = Position {
                    bucket: bucket as u32,
                    index: index as u32,
                };
                report(Tick::Moved(moved, pos));
            }
        }
        if slots.is_empty() && slots.capacity() > 64 {
            // A burst of timers (a reconnect storm) leaves no lasting
            // allocation behind.
            *slots = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests;
