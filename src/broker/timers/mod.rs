//! The timers of offline sessions: a delayed will (v5 3.1.3.2.2) and the
//! end of a session whose expiry interval has passed (3.1.2.11.2), all in
//! one [`TimerWheel`] that one task drives (`Broker::schedule_offline`
//! starts it). An idle offline session costs an entry in an ordered map,
//! not a task.
//!
//! A timer carries the connection generation it was planned for: when it
//! fires, the broker acts only if the session is still offline and no
//! connection came since (the generation is unchanged), which is how a
//! reconnect before the deadline cancels it. Planning a slot again
//! replaces its earlier timers (they could only be stale), so a session
//! has at most one will timer and one expiry timer, however often its
//! client comes and goes.
//!
//! Lock: `OfflineTimers::wheel` is a leaf: taken alone, released before a
//! due timer is acted on (which publishes and ends sessions).

mod wheel;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::SessionSlot;
use crate::session::AfterDisconnect;
pub use wheel::TimerWheel;

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Publish the session's will (its delay has passed).
    Will,
    /// End the session (its expiry interval has passed).
    Expiry,
}

/// A timer whose deadline has come.
#[derive(Debug)]
pub struct Due {
    pub kind: TimerKind,
    pub slot: Arc<SessionSlot>,
    /// The session's connection generation when the timer was planned.
    pub generation: u64,
}

/// A slot's timers are keyed by the slot's address: the timer holds the
/// slot, so the address is not reused while the key is in the wheel.
type Key = (usize, TimerKind);

#[derive(Default)]
pub struct OfflineTimers {
    wheel: Mutex<TimerWheel<Key, Due>>,
    /// Wakes the driver when a deadline earlier than the one it sleeps
    /// until is planned (a stored permit if it is not waiting yet).
    wake: Notify,
    driver_started: AtomicBool,
}

impl OfflineTimers {
    /// Plans `slot`'s will and expiry as `plan` says, from `now`,
    /// replacing the slot's earlier timers. A session that ends at once is
    /// not planned here (the broker ends it on the spot). True when the
    /// driver must wake for an earlier deadline.
    pub fn plan(
        &self,
        slot: &Arc<SessionSlot>,
        plan: &AfterDisconnect,
        generation: u64,
        now: Instant,
    ) -> bool {
        let address = Arc::as_ptr(slot) as usize;
        let mut wheel = self.wheel.lock();
        wheel.cancel(&(address, TimerKind::Will));
        wheel.cancel(&(address, TimerKind::Expiry));
        let timers = [
            (TimerKind::Will, plan.will_after),
            (
                TimerKind::Expiry,
                plan.session_ends_after.filter(|d| !d.is_zero()),
            ),
        ];
        let mut earliest = false;
        // The will first: at equal deadlines it fires before the session
        // ends (the will is sent when the session ends at the latest).
        for (kind, after) in timers {
            // A deadline past what the clock can count never comes.
            let Some(at) = after.and_then(|d| now.checked_add(d)) else {
                continue;
            };
            let due = Due {
                kind,
                slot: Arc::clone(slot),
                generation,
            };
            earliest |= wheel.schedule((address, kind), at, due);
        }
        earliest
    }

    /// Takes the timers due at `now`, earliest first.
    pub fn take_due(&self, now: Instant) -> Vec<Due> {
        self.wheel.lock().take_due(now)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.lock().next_deadline()
    }

    /// Timers pending (metrics, tests).
    pub fn len(&self) -> usize {
        self.wheel.lock().len()
    }

    /// Wakes the driver (an earlier deadline, or the broker is gone).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves at the next [`OfflineTimers::wake`] (or at once if one
    /// came since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// True exactly once: the caller starts the driver.
    pub fn claim_driver(&self) -> bool {
        !self.driver_started.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests;
