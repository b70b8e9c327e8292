//! Startup recovery: rebuilds sessions, subscriptions, queues, flows in
//! flight and retained messages from the store, and resumes the timers of
//! sessions that were offline (or connected when the broker stopped, which
//! counts as a lost connection now).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, RouteEntry, SessionSlot, Subscription};
use crate::session::{
    after_disconnect, AfterDisconnect, Delivery, Message, RestoredDelivery, SessionState,
    StoredMessage,
};
use crate::store::{now_ms, Digest, MessageRecord, Op, OutboxRecord, Recovered, SessionRecord};
use crate::topic::TopicFilter;

/// What recovery found, for the startup log.
#[derive(Debug, Default, Clone)]
pub struct RestoreSummary {
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained: usize,
    pub queued: usize,
    pub inflight: usize,
    pub messages: usize,
    /// Records that pointed at nothing (e.g. after a crash mid-cleanup), removed.
    pub dangling_removed: usize,
    pub elapsed: Duration,
}

/// Recovery under way: what is read back, what is left to place, and the
/// clean-up it finds.
struct Restoring {
    /// Every message with its disk guard; those nothing refers to are
    /// dropped when recovery ends, which deletes them.
    messages: HashMap<u64, Arc<Message>>,
    /// Outbox entries by client, taken as their sessions are restored;
    /// what is left belongs to no session.
    outbox: HashMap<ByteString, Vec<(u64, OutboxRecord)>>,
    incoming: HashMap<ByteString, Vec<u16>>,
    ops: Vec<Op>,
    summary: RestoreSummary,
    now_wall: u64,
}

impl Broker {
    /// Loads what the store recovered. Must run inside the runtime (it
    /// schedules will and expiry timers) and before listeners accept.
    pub fn restore(self: &Arc<Self>, r: Recovered) -> RestoreSummary {
        let started = Instant::now();
        let mut rs = Restoring::new(self, r.messages, r.outbox, r.incoming);
        self.restore_retained(r.retained, &mut rs);
        let mut timers = Vec::with_capacity(r.sessions.len());
        for (client_id, rec) in r.sessions {
            timers.push(self.restore_session(client_id, rec, &mut rs));
        }
        // Only now: a will published at once must find every restored
        // subscriber in the router.
        for (slot, plan) in timers {
            self.schedule_offline(&slot, plan, 0);
        }
        rs.remove_dangling(r.orphaned_sessions, r.orphaned_entries);
        self.store.submit(std::mem::take(&mut rs.ops));
        let mut summary = rs.finish();
        summary.elapsed = started.elapsed();
        summary
    }

    fn restore_retained(&self, retained: Vec<(ByteString, u64)>, rs: &mut Restoring) {
        for (topic, id) in retained {
            match rs.messages.get(&id) {
                Some(m) => self.retained.put(m),
                None => {
                    rs.summary.dangling_removed += 1;
                    rs.ops.push(Op::DeleteRetained { topic });
                }
            }
        }
        rs.summary.retained = self.retained.len();
    }

    /// One session: its queue and flows, identity and will, subscriptions;
    /// registered; with the plan its timers resume from.
    fn restore_session(
        &self,
        client_id: ByteString,
        rec: SessionRecord,
        rs: &mut Restoring,
    ) -> (Arc<SessionSlot>, AfterDisconnect) {
        let limits = self.queue_limits();
        let slot = Arc::new(SessionSlot::new(client_id.clone(), limits.clone()));
        let (deliveries, next_seq) = rs.deliveries_of(&client_id);
        let incoming = rs.incoming.remove(&client_id).unwrap_or_default();
        let state = SessionState::restore(limits, deliveries, incoming);
        rs.summary.queued += state.queued_len();
        rs.summary.inflight += state.inflight_len();
        *slot.state.lock() = state;
        slot.set_next_seq(next_seq);
        slot.set_persistent(true);
        restore_control(&slot, &rec);
        rs.summary.subscriptions += self.restore_subscriptions(&slot, &rec);
        self.sessions.insert(Arc::clone(&slot));
        rs.summary.sessions += 1;

        // A session connected at the crash lost its connection now.
        let disconnected_at = if rec.disconnected_at_ms == 0 {
            self.persist_session(&slot, rs.now_wall);
            rs.now_wall
        } else {
            rec.disconnected_at_ms
        };
        let elapsed = Duration::from_millis(rs.now_wall.saturating_sub(disconnected_at));
        // In a cluster the wills bucket has this node's wills, and the
        // cluster publishes those its restart ended (once, whichever node).
        let has_will = rec.will.is_some() && self.config.cluster.is_none();
        let mut plan = after_disconnect(has_will, true, rec.will_delay, rec.session_expiry);
        plan.will_after = plan.will_after.map(|d| d.saturating_sub(elapsed));
        plan.session_ends_after = plan.session_ends_after.map(|d| d.saturating_sub(elapsed));
        (slot, plan)
    }

    /// Puts the session's stored subscriptions in its slot and the router;
    /// returns how many (those no longer valid are dropped, logged).
    pub(super) fn restore_subscriptions(
        &self,
        slot: &Arc<SessionSlot>,
        rec: &SessionRecord,
    ) -> usize {
        let max_levels = self.config.limits.max_topic_levels.max(1);
        let mut restored = Vec::with_capacity(rec.subscriptions.len());
        for s in &rec.subscriptions {
            let Ok(filter) = TopicFilter::parse(s.filter.clone(), max_levels) else {
                tracing::warn!(client_id = %slot.client_id, filter = %s.filter, "stored subscription no longer valid under current limits, dropped");
                continue;
            };
            let sub = Subscription {
                filter,
                options: s.options,
                identifier: s.identifier,
            };
            self.router.subscribe(RouteEntry {
                slot: Arc::clone(slot),
                subscription: sub.clone(),
            });
            restored.push(sub);
        }
        let count = restored.len();
        let mut subs = slot.subscriptions.lock();
        for sub in restored {
            subs.insert(sub.filter.raw.clone(), sub);
        }
        count
    }
}

/// Who owns the session and what it left: deliveries to it are checked
/// against this identity's ACL before it reconnects.
pub(super) fn restore_control(slot: &SessionSlot, rec: &SessionRecord) {
    let mut c = slot.control.lock();
    c.protocol = Some(rec.protocol);
    c.session_expiry = rec.session_expiry;
    c.will = rec.will.clone().map(Box::new);
    c.will_delay = rec.will_delay;
    c.username = rec.username.clone();
    c.owner_unknown = rec.owner_unknown;
}

impl Restoring {
    fn new(
        broker: &Broker,
        messages: HashMap<u64, MessageRecord>,
        outbox_entries: Vec<(ByteString, u64, OutboxRecord)>,
        incoming_ids: Vec<(ByteString, u16)>,
    ) -> Restoring {
        let now = Instant::now();
        let now_wall = now_ms();
        let summary = RestoreSummary {
            messages: messages.len(),
            ..Default::default()
        };
        let messages = messages
            .into_iter()
            .map(|(id, rec)| {
                let m = to_message(id, rec, broker, now, now_wall);
                (id, Arc::new(m))
            })
            .collect();
        let mut outbox: HashMap<_, Vec<_>> = HashMap::new();
        for (client, seq, rec) in outbox_entries {
            outbox.entry(client).or_default().push((seq, rec));
        }
        let mut incoming: HashMap<_, Vec<_>> = HashMap::new();
        for (client, id) in incoming_ids {
            incoming.entry(client).or_default().push(id);
        }
        Restoring {
            messages,
            outbox,
            incoming,
            ops: Vec::new(),
            summary,
            now_wall,
        }
    }

    /// The session's outbox as deliveries, and the next outbox key.
    /// Entries whose message is gone are removed.
    fn deliveries_of(&mut self, client_id: &ByteString) -> (Vec<RestoredDelivery>, u64) {
        let mut deliveries = Vec::new();
        let mut next_seq = 1;
        for (seq, o) in self.outbox.remove(client_id).unwrap_or_default() {
            next_seq = next_seq.max(seq + 1);
            let Some(message) = self.messages.get(&o.message_id) else {
                self.summary.dangling_removed += 1;
                self.ops.push(Op::DeleteOutbox {
                    client_id: client_id.clone(),
                    seq,
                });
                continue;
            };
            deliveries.push(RestoredDelivery {
                delivery: Delivery {
                    message: Arc::clone(message),
                    qos: o.qos,
                    retain: o.retain,
                    subscription_ids: o.subscription_ids,
                    seq: Some(seq),
                    sink_ack: None,
                    shared_group: None,
                },
                state: o.state,
                packet_id: o.packet_id,
            });
        }
        (deliveries, next_seq)
    }

    /// Removes what belongs to no session: outbox and incoming entries
    /// left over, and those of sessions known only by their digest.
    fn remove_dangling(&mut self, orphaned: Vec<Digest>, orphaned_entries: usize) {
        for (client_id, entries) in std::mem::take(&mut self.outbox) {
            for (seq, _) in entries {
                self.summary.dangling_removed += 1;
                self.ops.push(Op::DeleteOutbox {
                    client_id: client_id.clone(),
                    seq,
                });
            }
        }
        self.summary.dangling_removed += orphaned_entries;
        for session in orphaned {
            self.ops.push(Op::DeleteOrphaned { session });
        }
        for (client_id, ids) in std::mem::take(&mut self.incoming) {
            for packet_id in ids {
                self.summary.dangling_removed += 1;
                self.ops.push(Op::DeleteIncoming {
                    client_id: client_id.clone(),
                    packet_id,
                });
            }
        }
    }

    /// The summary; the messages nothing refers to are dropped here,
    /// which deletes them from the store.
    fn finish(self) -> RestoreSummary {
        self.summary
    }
}

fn to_message(id: u64, r: MessageRecord, broker: &Broker, now: Instant, now_wall: u64) -> Message {
    let stored = Arc::new(StoredMessage::new(id, broker.release.clone()));
    super::message_from_record(r, Some(stored), now, now_wall)
}
