//! What follows a closed connection: a delayed will and the end of the
//! session, when their time comes, unless the client came back. The
//! deadlines live in the timer wheel (`timers`); one task, started with
//! the first plan, sleeps until the earliest and fires what is due.

use std::sync::{Arc, Weak};
use std::time::Instant;

use super::timers::{Due, OfflineTimers, TimerKind};
use super::{Broker, SessionSlot};
use crate::session::AfterDisconnect;
use crate::store::now_ms;

impl Broker {
    /// Carries out what follows a closed connection: publishes a delayed
    /// will and ends the session when their time comes, unless the client
    /// reconnected meanwhile (`generation` changed). A session whose
    /// expiry is zero ends now. Must run inside the runtime (the first
    /// call starts the timer task).
    pub fn schedule_offline(
        self: &Arc<Self>,
        slot: &Arc<SessionSlot>,
        plan: AfterDisconnect,
        generation: u64,
    ) {
        self.plan_offline(slot, &plan, generation, Instant::now());
        self.forget_settled_will(slot);
        if self.timers.claim_driver() {
            tokio::spawn(drive_timers(Arc::downgrade(self), Arc::clone(&self.timers)));
        }
    }

    /// [`Broker::schedule_offline`] from `now`, without starting the task
    /// (tests drive [`Broker::fire_due_timers`] with simulated time).
    pub(super) fn plan_offline(
        &self,
        slot: &Arc<SessionSlot>,
        plan: &AfterDisconnect,
        generation: u64,
        now: Instant,
    ) {
        if self.timers.plan(slot, plan, generation, now) {
            self.timers.wake();
        }
        if plan.session_ends_after.is_some_and(|d| d.is_zero()) {
            self.remove_session(slot);
        }
    }

    /// Acts on the timers due at `now`, earliest first; returns how many
    /// came due (stale ones included).
    pub fn fire_due_timers(&self, now: Instant) -> usize {
        let due = self.timers.take_due(now);
        let n = due.len();
        for Due {
            kind,
            slot,
            generation,
        } in due
        {
            if !still_offline(&slot, generation) {
                continue;
            }
            match kind {
                TimerKind::Will => {
                    let will = slot.control.lock().will.take();
                    if let Some(w) = will {
                        self.publish_will(&w, &slot);
                        self.persist_session(&slot, now_ms());
                        self.note_will(&slot.client_id, None);
                    }
                }
                TimerKind::Expiry => {
                    tracing::debug!(client_id = %slot.client_id, "session expired");
                    self.remove_session(&slot);
                }
            }
        }
        n
    }
}

/// Whether the session is offline since the connection `generation`
/// counted: no client has come back.
fn still_offline(slot: &SessionSlot, generation: u64) -> bool {
    !slot.is_online() && slot.control.lock().generation == generation
}

/// The one task behind every offline timer: fires what is due, sleeps
/// until the next deadline or until an earlier one is planned. Holds the
/// broker weakly, and ends when it is gone (its `Drop` wakes this task).
async fn drive_timers(broker: Weak<Broker>, timers: Arc<OfflineTimers>) {
    loop {
        let next = {
            let Some(broker) = broker.upgrade() else {
                return;
            };
            broker.fire_due_timers(Instant::now());
            timers.next_deadline()
        };
        match next {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = timers.woken() => {}
                }
            }
            None => timers.woken().await,
        }
    }
}
