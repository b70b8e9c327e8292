//! Global budgets: what the whole broker may spend, whatever each client
//! does within its own limits. Per-client limits (packet size, queue per
//! session, subscriptions per client) do not add up to a bound: a thousand
//! clients each within them could still take the process down. These do:
//! bytes buffered by connections that have not authenticated yet, bytes of
//! retained messages, the number of sessions, and bytes queued across all
//! sessions. Each refusal is counted by reason (metrics, `$SYS`, admin API).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::codec::{owned_bytes, owned_string};
use crate::config::Limits;
use bytestring::ByteString;
use serde::Serialize;

use super::{Broker, Published};
use crate::session::{Message, QueuedBytes};

/// Refusals and waits, by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    /// CONNECTs announced larger than `limits.max_connect_packet_size`.
    pub connect_too_large: AtomicU64,
    /// Reads of opening connections that waited for `limits.max_opening_bytes`.
    pub opening_waits: AtomicU64,
    /// Retained PUBLISHes not retained: `max_retained_bytes` reached.
    pub retained: AtomicU64,
    /// New sessions refused: `max_sessions` reached.
    pub sessions: AtomicU64,
}

/// The broker's global budgets and their refusal counters.
#[derive(Debug)]
pub struct Budgets {
    opening: Arc<Semaphore>,
    opening_capacity: usize,
    /// The largest CONNECT accepted (`Limits::connect_packet_limit`).
    max_connect: usize,
    pub queued: Arc<QueuedBytes>,
    pub refused: Refusals,
}

impl Budgets {
    pub fn new(limits: &Limits) -> Budgets {
        let opening_capacity = limits.max_opening_bytes.min(Semaphore::MAX_PERMITS);
        Budgets {
            opening: Arc::new(Semaphore::new(opening_capacity)),
            opening_capacity,
            max_connect: limits.connect_packet_limit(),
            queued: Arc::new(QueuedBytes::new(limits.max_total_queued_bytes)),
            refused: Refusals::default(),
        }
    }

    /// A connection's share of the opening budget, empty until it reads,
    /// with the largest CONNECT it may send.
    pub fn opening_charge(self: &Arc<Self>) -> OpeningCharge {
        OpeningCharge {
            budgets: Arc::clone(self),
            held: None,
            max_connect: self.max_connect,
        }
    }

    /// Bytes held now by connections in the opening phase.
    pub fn opening_bytes(&self) -> usize {
        self.opening_capacity - self.opening.available_permits()
    }

    /// Counts a refusal of `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one opening connection holds of `max_opening_bytes`; given back
/// when dropped (CONNACK sent, or the connection closed).
pub struct OpeningCharge {
    budgets: Arc<Budgets>,
    held: Option<OwnedSemaphorePermit>,
    /// `limits.max_connect_packet_size` (or `max_packet_size`, if smaller).
    pub max_connect: usize,
}

impl OpeningCharge {
    /// Holds at least `bytes` (capped at the whole budget), waiting while
    /// other opening connections hold the rest. The wait is bounded by the
    /// connect timeout around the whole opening read.
    pub async fn hold(&mut self, bytes: usize) {
        let want = bytes.min(self.budgets.opening_capacity);
        let have = self.held.as_ref().map_or(0, |p| p.num_permits());
        let Some(extra) = want.checked_sub(have).filter(|&n| n > 0) else {
            return;
        };
        let extra = u32::try_from(extra).unwrap_or(u32::MAX);
        let sem = &self.budgets.opening;
        let permit = match Arc::clone(sem).try_acquire_many_owned(extra) {
            Ok(p) => p,
            Err(_) => {
                Budgets::count(&self.budgets.refused.opening_waits);
                match Arc::clone(sem).acquire_many_owned(extra).await {
                    Ok(p) => p,
                    // Never closed; nothing to hold then.
                    Err(_) => return,
                }
            }
        };
        match &mut self.held {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    pub fn held(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }
}

/// The message with topic, payload, properties and publisher copied into
/// allocations of their own, exactly their size. For retained messages,
/// which may live for months: the received buffer their slices point into
/// can be twice the packet (it grows by doubling) and hold other packets,
/// and the retained budget must count what the memory really is. One copy
/// per retained publish; other publishes copy nothing.
pub fn detached(m: Message) -> Message {
    Message {
        topic: owned_string(&m.topic),
        payload: owned_bytes(&m.payload),
        properties: m.properties.map(|p| Box::new(p.detached())),
        publisher: m.publisher.as_deref().map(owned_string),
        ..m
    }
}

/// The budgets as the admin API, `$SYS` and `/metrics` show them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BudgetNumbers {
    /// Bytes held by connections before CONNACK.
    pub opening_bytes: usize,
    pub retained_bytes: usize,
    pub queued_bytes: usize,
    pub sessions: usize,
    /// Refusals and waits by reason, since start.
    pub refused_connect_too_large: u64,
    pub opening_waits: u64,
    pub refused_retained: u64,
    pub refused_sessions: u64,
    pub refused_queued_bytes: u64,
}

impl Published {
    /// Nothing routed: the publisher is told 0x97 quota exceeded.
    pub(super) fn refused() -> Published {
        Published {
            matched: 0,
            ticket: Default::default(),
            saturated: false,
            refused: true,
            sink_acks: Vec::new(),
        }
    }
}

impl Broker {
    /// Applies `limits.max_retained_bytes` to a client's retained PUBLISH,
    /// before it is routed. Within the budget the message is detached
    /// (see [`detached`]). Over it: refused outright when the publisher
    /// can be told (`can_refuse`: v5 QoS 1/2, answered 0x97 with nothing
    /// delivered, so a retry is safe), else delivered as a plain message,
    /// not retained. Either way counted. Clearing a topic always passes;
    /// the broker's own messages (`$SYS`, admin API) are not charged.
    pub(super) fn budget_retained(
        &self,
        message: Message,
        can_refuse: bool,
    ) -> Result<Message, Published> {
        if !message.retain || message.publisher.is_none() || message.payload.is_empty() {
            return Ok(message);
        }
        let max = self.config.limits.max_retained_bytes;
        if self.retained.fits(&message, max) {
            return Ok(detached(message));
        }
        Budgets::count(&self.budget.refused.retained);
        tracing::debug!(topic = %message.topic, max_retained_bytes = max, "retained budget spent, message not retained");
        if can_refuse {
            return Err(Published::refused());
        }
        Ok(Message {
            retain: false,
            ..message
        })
    }

    /// Whether a CONNECT for `client_id` may go on under
    /// `limits.max_sessions`: resuming or replacing a session always, a
    /// new one while there are fewer. Checked before the session is made:
    /// CONNECTs racing for the last places may overshoot by a few.
    pub fn admits_session(&self, client_id: &ByteString) -> bool {
        if self
            .sessions
            .admits(client_id, self.config.limits.max_sessions)
        {
            return true;
        }
        Budgets::count(&self.budget.refused.sessions);
        false
    }

    pub fn budget_numbers(&self) -> BudgetNumbers {
        let r = &self.budget.refused;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BudgetNumbers {
            opening_bytes: self.budget.opening_bytes(),
            retained_bytes: self.retained.bytes(),
            queued_bytes: self.budget.queued.used(),
            sessions: self.session_count(),
            refused_connect_too_large: load(&r.connect_too_large),
            opening_waits: load(&r.opening_waits),
            refused_retained: load(&r.retained),
            refused_sessions: load(&r.sessions),
            refused_queued_bytes: self.budget.queued.refused(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_charges_wait_for_each_other_within_the_budget() {
        let limits = Limits {
            max_opening_bytes: 10_000,
            ..Limits::default()
        };
        let budgets = Arc::new(Budgets::new(&limits));
        let mut a = budgets.opening_charge();
        a.hold(6_000).await;
        a.hold(4_000).await; // already held
        assert_eq!(a.held(), 6_000);
        let mut b = budgets.opening_charge();
        b.hold(4_000).await;
        assert_eq!(budgets.opening_bytes(), 10_000);
        let mut c = budgets.opening_charge();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), c.hold(1)).await;
        assert!(waiting.is_err(), "over the budget must wait");
        drop(a);
        c.hold(1).await;
        assert_eq!(budgets.opening_bytes(), 4_001);
        assert_eq!(budgets.refused.opening_waits.load(Ordering::Relaxed), 1);
        // More than the whole budget is capped, not a deadlock.
        drop((b, c));
        let mut d = budgets.opening_charge();
        d.hold(1 << 40).await;
        assert_eq!(d.held(), 10_000);
    }
}
