//! The queue's limits at work: what a full queue does with a new delivery
//! (the policy), when publishers are held back, and the one exception to
//! the policy: a lossless queue (a bridge's session) never drops a QoS 1/2
//! delivery.
//!
//! Why a bridge is the exception: a message the broker acknowledged to its
//! publisher is the broker's to deliver, and a bridge is where it is headed
//! (its buffer, then its sink). Dropping it from the bridge's queue would
//! lose what was promised. Memory stays bounded by holding the publishers
//! back instead: at the limits a lossless queue pushes back (v5 QoS 1/2
//! publishers get 0x97 and resend later; a 3.1.1 publisher's PUBACK/PUBREC
//! waits until the bridge has taken the message, and its reading pauses),
//! and a QoS 0 delivery, which nobody was promised, may still go.

use crate::codec::QoS;
use crate::session::{Delivery, QueueFullPolicy};

use super::{delivery_bytes, Enqueued, SessionState};

impl SessionState {
    /// The queue policy in force (set per listener when a client connects).
    pub fn set_policy(&mut self, policy: QueueFullPolicy) {
        self.limits.policy = policy;
    }

    /// Makes the queue lossless (a bridge's session): QoS 1/2 deliveries
    /// are queued past the limits and the global budget, and the limits
    /// hold publishers back instead, whatever the policy.
    pub fn set_lossless(&mut self, lossless: bool) {
        self.lossless = lossless;
    }

    /// Whether publishers should be held back for this session: the queue
    /// is at its limits and either lossless, or persistent under the
    /// push-back policy.
    pub fn wants_push_back(&self) -> bool {
        let holds_back =
            self.lossless || (self.limits.policy == QueueFullPolicy::PushBack && self.persistent);
        holds_back
            && (self.queue.len() >= self.limits.max_messages
                || self.queued_bytes >= self.limits.max_bytes)
    }

    /// Whether a push-back may end: the queue is down to three quarters of
    /// its limits (hysteresis, so publishers are not flapped per message).
    pub fn push_back_may_end(&self) -> bool {
        self.queue.len() <= self.limits.max_messages / 4 * 3
            && self.queued_bytes <= self.limits.max_bytes / 4 * 3
    }

    /// Offers a message to the session. Bounded by count and bytes, except
    /// for a lossless queue's QoS 1/2 deliveries.
    pub fn enqueue(&mut self, d: Delivery) -> Enqueued {
        // Only a session a cluster feeds has flows to continue: every
        // other delivery (the publish path's) passes with one branch.
        let d = match self.kept_flows {
            None => d,
            Some(_) => match self.continue_flow(d) {
                Ok(()) => return Enqueued::Queued,
                Err(d) => d,
            },
        };
        if self.lossless && d.qos != QoS::AtMostOnce {
            self.keep(d);
            return Enqueued::Queued;
        }
        let size = delivery_bytes(&d);
        let full = |s: &Self| {
            s.queue.len() >= s.limits.max_messages || s.queued_bytes + size > s.limits.max_bytes
        };
        let mut outcome = Enqueued::Queued;
        if full(self) {
            let policy = match self.limits.policy {
                QueueFullPolicy::PushBack if self.persistent => QueueFullPolicy::DropNewest,
                QueueFullPolicy::PushBack => QueueFullPolicy::DropOldest,
                p => p,
            };
            match policy {
                QueueFullPolicy::PushBack | QueueFullPolicy::DropNewest => {
                    self.dropped += 1;
                    self.journal_done(&d);
                    return Enqueued::DroppedNew;
                }
                QueueFullPolicy::DropOldest => {
                    while full(self) {
                        let Some(old) = self.pop_droppable() else {
                            // One message bigger than the byte limit on its
                            // own, or only deliveries that may not go ahead.
                            self.dropped += 1;
                            self.journal_done(&d);
                            return Enqueued::DroppedNew;
                        };
                        self.queued_bytes -= delivery_bytes(&old);
                        self.charge.give_back(delivery_bytes(&old));
                        self.journal_done(&old);
                        self.dropped += 1;
                        outcome = Enqueued::DroppedOldest;
                    }
                }
            }
        }
        if !self.charge.take(size) {
            // The global budget is spent: the new delivery goes, whatever
            // the policy (this session's oldest may not be what fills it).
            self.dropped += 1;
            self.journal_done(&d);
            return Enqueued::DroppedNew;
        }
        self.queued_bytes += size;
        self.queue.push_back(d);
        outcome
    }

    /// Queues a delivery that may not be dropped, past the limits and the
    /// global budget (still charged to it, so its count stays true and
    /// other sessions feel it).
    fn keep(&mut self, d: Delivery) {
        let size = delivery_bytes(&d);
        self.charge.force(size);
        self.queued_bytes += size;
        self.queue.push_back(d);
    }

    /// Takes the oldest queued delivery to drop it, unless it may not be
    /// dropped (a lossless queue's QoS 1/2 delivery): the queue's order
    /// stays, and a QoS 0 delivery never pushes out a QoS 1/2 one.
    fn pop_droppable(&mut self) -> Option<Delivery> {
        if self.lossless && self.queue.front()?.qos != QoS::AtMostOnce {
            return None;
        }
        self.queue.pop_front()
    }
}
