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
    after_disconnect, Delivery, Message, RestoredDelivery, SessionState, StoredMessage,
};
use crate::store::{now_ms, MessageRecord, Op, Recovered};
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

fn to_message(id: u64, r: MessageRecord, broker: &Broker, now: Instant, now_wall: u64) -> Message {
    let expires_at = (r.expires_at_ms != 0)
        .then(|| now + Duration::from_millis(r.expires_at_ms.saturating_sub(now_wall)));
    Message {
        topic: r.topic,
        payload: r.payload,
        qos: r.qos,
        retain: r.retain,
        properties: r.properties,
        expires_at,
        publisher: r.publisher,
        username: r.username,
        accepted_ms: r.accepted_ms,
        stored: Some(Arc::new(StoredMessage::new(id, broker.release.clone()))),
    }
}

impl Broker {
    /// Loads what the store recovered. Must run inside the runtime (it
    /// schedules will and expiry timers) and before listeners accept.
    pub fn restore(self: &Arc<Self>, r: Recovered) -> RestoreSummary {
        let started = Instant::now();
        let now = Instant::now();
        let now_wall = now_ms();
        let mut summary = RestoreSummary {
            messages: r.messages.len(),
            ..Default::default()
        };
        let mut ops = Vec::new();
        // Every message gets its disk guard now; those nothing refers to are
        // dropped at the end of this function, which deletes them.
        let messages: HashMap<u64, Arc<Message>> = r
            .messages
            .into_iter()
            .map(|(id, rec)| (id, Arc::new(to_message(id, rec, self, now, now_wall))))
            .collect();

        {
            let mut retained = self.retained.write();
            for (topic, id) in r.retained {
                match messages.get(&id) {
                    Some(m) => retained.put(m),
                    None => {
                        summary.dangling_removed += 1;
                        ops.push(Op::DeleteRetained { topic });
                    }
                }
            }
            summary.retained = retained.len();
        }

        let mut outbox: HashMap<ByteString, Vec<(u64, crate::store::OutboxRecord)>> =
            HashMap::new();
        for (client, seq, rec) in r.outbox {
            outbox.entry(client).or_default().push((seq, rec));
        }
        let mut incoming: HashMap<ByteString, Vec<u16>> = HashMap::new();
        for (client, id) in r.incoming {
            incoming.entry(client).or_default().push(id);
        }

        let limits = self.queue_limits();
        let max_levels = self.config.limits.max_topic_levels.max(1);
        let mut timers = Vec::new();
        for (client_id, rec) in r.sessions {
            let slot = Arc::new(SessionSlot::new(client_id.clone(), limits.clone()));
            let mut deliveries = Vec::new();
            let mut next_seq = 1;
            for (seq, o) in outbox.remove(&client_id).unwrap_or_default() {
                next_seq = next_seq.max(seq + 1);
                let Some(message) = messages.get(&o.message_id) else {
                    summary.dangling_removed += 1;
                    ops.push(Op::DeleteOutbox {
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
            let state = SessionState::restore(
                limits.clone(),
                deliveries,
                incoming.remove(&client_id).unwrap_or_default(),
            );
            summary.queued += state.queued_len();
            summary.inflight += state.inflight_len();
            *slot.state.lock() = state;
            slot.set_next_seq(next_seq);
            slot.set_persistent(true);
            {
                let mut c = slot.control.lock();
                c.protocol = Some(rec.protocol);
                c.session_expiry = rec.session_expiry;
                c.will = rec.will.clone().map(Box::new);
                c.will_delay = rec.will_delay;
                // Who owns the session: deliveries to it are checked
                // against this identity's ACL before it reconnects.
                c.username = rec.username.clone();
                c.owner_unknown = rec.owner_unknown;
            }
            {
                let mut tree = self.subscriptions.write();
                let mut subs = slot.subscriptions.lock();
                for s in &rec.subscriptions {
                    let Ok(filter) = TopicFilter::parse(s.filter.clone(), max_levels) else {
                        tracing::warn!(client_id = %client_id, filter = %s.filter, "stored subscription no longer valid under current limits, dropped");
                        continue;
                    };
                    let sub = Subscription {
                        filter,
                        options: s.options,
                        identifier: s.identifier,
                    };
                    tree.insert(
                        &sub.filter,
                        client_id.clone(),
                        RouteEntry {
                            slot: Arc::clone(&slot),
                            subscription: sub.clone(),
                        },
                    );
                    subs.insert(sub.filter.raw.clone(), sub);
                    summary.subscriptions += 1;
                }
            }
            self.sessions
                .lock()
                .insert(client_id.clone(), Arc::clone(&slot));
            summary.sessions += 1;

            // A session connected at the crash lost its connection now.
            let disconnected_at = if rec.disconnected_at_ms == 0 {
                now_wall
            } else {
                rec.disconnected_at_ms
            };
            if rec.disconnected_at_ms == 0 {
                self.persist_session(&slot, now_wall);
            }
            let elapsed = Duration::from_millis(now_wall.saturating_sub(disconnected_at));
            let mut plan =
                after_disconnect(rec.will.is_some(), true, rec.will_delay, rec.session_expiry);
            plan.will_after = plan.will_after.map(|d| d.saturating_sub(elapsed));
            plan.session_ends_after = plan.session_ends_after.map(|d| d.saturating_sub(elapsed));
            timers.push((slot, plan));
        }
        // Only now: a will published at once must find every restored
        // subscriber in the tree.
        for (slot, plan) in timers {
            self.schedule_offline(&slot, plan, 0);
        }
        for (client_id, entries) in outbox {
            for (seq, _) in entries {
                summary.dangling_removed += 1;
                ops.push(Op::DeleteOutbox {
                    client_id: client_id.clone(),
                    seq,
                });
            }
        }
        summary.dangling_removed += r.orphaned_entries;
        for session in r.orphaned_sessions {
            ops.push(Op::DeleteOrphaned { session });
        }
        for (client_id, ids) in incoming {
            for packet_id in ids {
                summary.dangling_removed += 1;
                ops.push(Op::DeleteIncoming {
                    client_id: client_id.clone(),
                    packet_id,
                });
            }
        }
        self.store.submit(ops);
        let before = messages.len();
        drop(messages);
        let _ = before;
        summary.elapsed = started.elapsed();
        summary
    }
}
