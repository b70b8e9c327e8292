//! The broker side of a connection's protocol machine: carries out what
//! `session::Machine` decides on shared state (routing, subscriptions,
//! the session's queue, counters) and collects what the connection's
//! next write must wait for.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use parking_lot::MutexGuard;
use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::auth::Acl;
use crate::broker::{Broker, SessionSlot, Subscription};
use crate::codec::{QoS, SubscriptionOptions};
use crate::session::machine::{Count, ProtocolLimits, Routed};
use crate::session::{ConnectionHost, Message, SessionState};
use crate::store::{now_ms, Store, Ticket};
use crate::topic::TopicFilter;

/// What the buffered output waits for before it may be written: acks to
/// publishers wait for their messages to be on disk, and for bridges with
/// `ack = "sink"` to confirm.
#[derive(Debug, Default)]
pub struct Held {
    /// What must be durable before the output goes out.
    pub pending: Ticket,
    /// Bridges with `ack = "sink"` that must confirm before the output
    /// (holding the PUBACKs, in order) goes out.
    pub sink_waits: VecDeque<oneshot::Receiver<()>>,
    /// A bridge could not confirm one of them: the held acks never go out.
    pub sink_failed: bool,
    /// Deliveries waited for the held output to go out (see the
    /// connection's `drain`).
    pub drain_deferred: bool,
}

impl Held {
    pub fn wait_for(&mut self, ticket: Ticket) {
        self.pending = self.pending.max(ticket);
    }

    /// Takes the sink confirmations that have arrived; whether none is
    /// still awaited.
    pub fn sinks_confirmed(&mut self) -> bool {
        while let Some(wait) = self.sink_waits.front_mut() {
            match wait.try_recv() {
                Ok(()) => {}
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Closed) => self.sink_failed = true,
            }
            self.sink_waits.pop_front();
        }
        true
    }
}

/// One connection's view of the broker, lent to the machine per call.
pub struct BrokerHost<'a> {
    pub broker: &'a Broker,
    pub slot: &'a Arc<SessionSlot>,
    pub store: &'a Store,
    pub held: &'a mut Held,
}

impl ConnectionHost for BrokerHost<'_> {
    type State<'s>
        = MutexGuard<'s, SessionState>
    where
        Self: 's;

    fn limits(&self) -> ProtocolLimits {
        let l = &self.broker.config.limits;
        ProtocolLimits {
            max_packet_size: l.max_packet_size,
            max_topic_length: l.max_topic_length,
            max_topic_levels: l.max_topic_levels,
            topic_alias_maximum: l.topic_alias_maximum,
            receive_maximum: l.receive_maximum,
            max_subscriptions_per_client: l.max_subscriptions_per_client,
            max_session_expiry: l.max_session_expiry,
            maximum_qos: self.broker.maximum_qos(),
        }
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.slot.state.lock()
    }

    fn with_acl<R>(&self, f: impl FnOnce(Option<&Acl>) -> R) -> R {
        let access = self.broker.access();
        f(access.acl.as_ref())
    }

    fn count(&self, counter: Count, n: u64) {
        let stats = &self.broker.stats;
        let c = match counter {
            Count::Received(qos) => &stats.received_by_qos[usize::from(qos.as_u8())],
            Count::Sent(qos) => &stats.sent_by_qos[usize::from(qos.as_u8())],
            Count::PublishDenied => &stats.publish_denied,
            Count::PublishQuotaRefused => &stats.publish_quota_refused,
            Count::DroppedTooLarge => &stats.dropped_too_large,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn route_at_most_once(&mut self, message: Message) {
        self.broker.publish(message);
    }

    fn route(&mut self, message: Message, refuse_if_saturated: bool) -> Routed {
        // QoS 2 only: its incoming packet id must share the message's
        // commit; QoS 1 keeps the publish path free of the extra lock.
        // Its flows record too, from the same lock (in a cluster, the
        // incoming id just taken).
        let (journal, flows) = if message.qos == QoS::ExactlyOnce {
            let (journal, waits, flows) = self.slot.take_journal_ops(self.store);
            self.held.wait_for(waits);
            (journal, flows)
        } else {
            (Vec::new(), None)
        };
        let published = self
            .broker
            .publish_acknowledged(message, refuse_if_saturated, journal);
        // Refused, the ticket is the journal's alone.
        self.held.wait_for(published.ticket);
        if !published.refused {
            // A QoS 2 message's incoming packet id (a cluster keeps it in
            // the session's flows record) is recorded once the message is
            // stored: the node that resumes the session then never takes a
            // publisher's repeat for a message the stream lacks.
            let waits = match flows {
                Some(flows) => self
                    .broker
                    .flows_recorded(self.slot, flows, published.sink_acks),
                None => published.sink_acks,
            };
            self.held.sink_waits.extend(waits);
        }
        Routed {
            matched: published.matched,
            saturated: published.saturated,
            refused: published.refused,
        }
    }

    fn flush_journal(&mut self) {
        let (ticket, flows) = self.slot.flush_journal(self.store);
        self.held.wait_for(ticket);
        if let Some(flows) = flows {
            let waits = self.broker.flows_recorded(self.slot, flows, Vec::new());
            self.held.sink_waits.extend(waits);
        }
    }

    fn drained(&self, state: &SessionState, more: bool) {
        if more {
            self.slot.notify.notify_one();
        }
        self.slot.release_push_back(state);
    }

    fn subscriptions(&self, raw: &ByteString) -> (usize, bool) {
        let subscriptions = self.slot.subscriptions.lock();
        (subscriptions.len(), subscriptions.contains_key(raw))
    }

    fn subscription_room(&self) -> usize {
        self.broker.subscription_room(self.slot)
    }

    fn subscribe(
        &mut self,
        filter: TopicFilter,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        now: Instant,
    ) {
        let subscription = Subscription {
            filter,
            options,
            identifier,
        };
        self.broker.subscribe(self.slot, subscription, now);
    }

    fn unsubscribe(&mut self, raw: &ByteString) -> bool {
        self.broker.unsubscribe(self.slot, raw)
    }

    fn subscriptions_changed(&mut self) {
        let ticket = self.broker.persist_session(self.slot, 0);
        self.held.wait_for(ticket);
        let recorded = self.broker.subscriptions_recorded(self.slot);
        self.held.sink_waits.extend(recorded);
    }

    fn set_session_expiry(&mut self, seconds: u32) {
        self.slot.control.lock().session_expiry = seconds;
    }
}
