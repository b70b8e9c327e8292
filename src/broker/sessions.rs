//! Sessions through the façade: opening and ending them (with what ending
//! means for subscriptions, the store and shared groups), writing their
//! records, and their subscriptions (with the retained messages a new
//! subscription calls for).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::publish::outbox_entry;
use super::registry::Opened;
use super::restore::restore_control;
use super::{Broker, RouteEntry, SessionSlot, Subscription};
use crate::codec::RetainHandling;
use crate::session::{Delivery, Flows};
use crate::store::{Op, SessionRecord, Ticket};
use crate::topic::TopicFilter;

impl Broker {
    /// Returns the session to attach to: the existing one unless
    /// `clean_start`, in which case the old state is discarded. The bool is
    /// "session present".
    pub fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
    ) -> (Arc<SessionSlot>, bool) {
        let make = || SessionSlot::new(client_id.clone(), self.queue_limits());
        match self.sessions.open(client_id, clean_start, make) {
            Opened::Resumed(slot) => (slot, true),
            Opened::New { slot, replaced } => {
                if let Some(old) = replaced {
                    self.end_session(&old);
                    self.tell_ended(&old);
                }
                (slot, false)
            }
        }
    }

    /// Ends a session: forgets it and its subscriptions, unless it has
    /// already been replaced by another slot.
    pub fn remove_session(&self, slot: &Arc<SessionSlot>) {
        if self.let_go_session(slot) {
            self.tell_ended(slot);
        }
    }

    /// Forgets a session here because it lives on elsewhere (another node
    /// took it over): as [`Broker::remove_session`], but the cluster keeps
    /// what it holds of it. Whether it was still this node's.
    pub fn let_go_session(&self, slot: &Arc<SessionSlot>) -> bool {
        if !self.sessions.remove_if_current(slot) {
            return false;
        }
        self.end_session(slot);
        self.note_will(&slot.client_id, None);
        true
    }

    /// Takes in a persistent session another node held (its client
    /// connected here): its subscriptions and owner, offline until the
    /// connection attaches, its QoS 2 flows going on where they stood; a
    /// copy this node still had is replaced.
    pub fn adopt_session(&self, client_id: &ByteString, record: &SessionRecord, flows: Flows) {
        if let Some(old) = self.sessions.find(client_id) {
            self.let_go_session(&old);
        }
        let slot = Arc::new(SessionSlot::new(client_id.clone(), self.queue_limits()));
        slot.set_persistent(self.store.is_enabled());
        slot.state.lock().resume_flows(flows);
        restore_control(&slot, record);
        self.restore_subscriptions(&slot, record);
        self.sessions.insert(slot);
    }

    /// Tells the cluster a persistent session ended.
    fn tell_ended(&self, slot: &SessionSlot) {
        if let Some(d) = self.directory.get() {
            if slot.is_persistent() && !slot.is_bridge() {
                d.session_ended(slot);
            }
        }
    }

    /// What follows a session's leaving the registry: its subscriptions
    /// leave the router, its records the store, and its unacknowledged
    /// shared-subscription messages go to other members.
    fn end_session(&self, slot: &Arc<SessionSlot>) {
        self.drop_subscriptions(slot);
        self.store.submit(vec![Op::DeleteSession {
            client_id: slot.client_id.clone(),
        }]);
        self.hand_over_shared(slot);
    }

    /// Gives the messages a shared subscription picked `slot` for, and
    /// that its client has not acknowledged, to other members of their
    /// groups (v5 4.8.2: the session ended). Called once `slot` has left
    /// the router, so it is never picked again. A group with no member left
    /// that may read the message drops it (counted).
    fn hand_over_shared(&self, slot: &Arc<SessionSlot>) {
        let taken = slot.state.lock().take_shared_deliveries();
        if taken.is_empty() {
            return;
        }
        let access = self.access();
        let acl = access.acl.as_ref();
        let mut ops = Vec::new();
        let mut handed = Vec::with_capacity(taken.len());
        let mut lost = 0u64;
        for mut d in taken {
            let picked = d
                .shared_group
                .clone()
                .and_then(|raw| TopicFilter::parse(raw, usize::MAX).ok())
                .and_then(|group| self.router.pick_shared(&group, &d.message.topic, acl));
            let Some(entry) = picked else {
                lost += 1;
                continue;
            };
            d.qos = d.message.qos.min(entry.subscription.options.qos);
            d.subscription_ids = entry.subscription.identifier.into_iter().collect();
            d.seq = outbox_entry(&entry.slot, &d, &mut ops);
            handed.push((entry.slot, d));
        }
        self.store.submit(ops);
        tracing::debug!(client_id = %slot.client_id, handed = handed.len(), lost, "shared-subscription messages handed over");
        if lost > 0 {
            self.stats
                .messages_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
        for (target, d) in handed {
            target.deliver(d, &self.store);
        }
    }

    /// Writes a persistent session's record (subscriptions, will, expiry).
    pub fn persist_session(&self, slot: &SessionSlot, disconnected_at_ms: u64) -> Ticket {
        if !slot.is_persistent() || !self.store.is_enabled() {
            return Ticket::default();
        }
        let record = Box::new(slot.record(disconnected_at_ms));
        self.store.submit(vec![Op::PutSession {
            client_id: slot.client_id.clone(),
            record,
        }])
    }

    fn drop_subscriptions(&self, slot: &Arc<SessionSlot>) {
        let subs: Vec<Subscription> = slot.subscriptions.lock().drain().map(|(_, s)| s).collect();
        for s in subs {
            self.router.unsubscribe(&s.filter, &slot.client_id);
        }
    }

    /// Adds (or replaces) a subscription and queues the retained messages it
    /// calls for. Returns whether the subscription already existed.
    pub fn subscribe(&self, slot: &Arc<SessionSlot>, sub: Subscription, now: Instant) -> bool {
        let existed = self.router.subscribe(RouteEntry {
            slot: Arc::clone(slot),
            subscription: sub.clone(),
        });
        slot.subscriptions
            .lock()
            .insert(sub.filter.raw.clone(), sub.clone());
        let send_retained = sub.filter.share_group.is_none()
            && match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            self.send_retained(slot, &sub, now);
        }
        existed
    }

    /// Queues the retained messages `sub` matches that `slot` may read.
    fn send_retained(&self, slot: &SessionSlot, sub: &Subscription, now: Instant) {
        let mut messages = self.retained.matching(&sub.filter.filter, now);
        if let Some(acl) = &self.access().acl {
            messages.retain(|m| slot.may_read(acl, &m.topic));
        }
        for message in messages {
            let qos = message.qos.min(sub.options.qos);
            slot.deliver(
                Delivery {
                    message,
                    qos,
                    retain: true,
                    subscription_ids: sub.identifier.into_iter().collect(),
                    seq: None,
                    sink_ack: None,
                    shared_group: None,
                },
                &self.store,
            );
        }
    }

    /// Removes a subscription by the filter string the client used.
    pub fn unsubscribe(&self, slot: &Arc<SessionSlot>, raw_filter: &ByteString) -> bool {
        let Some(sub) = slot.subscriptions.lock().remove(raw_filter) else {
            return false;
        };
        self.router.unsubscribe(&sub.filter, &slot.client_id)
    }
}
