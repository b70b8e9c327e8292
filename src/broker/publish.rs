//! Routing one publish, in the order its steps run: budget the retained
//! copy, match and merge (the router), check read access, persist what
//! must survive a crash, keep the retained copy, build the deliveries,
//! submit to the store, enqueue and count what was dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, OneshotSinkAck, SessionSlot, Target};
use crate::auth::Acl;
use crate::codec::{QoS, Will};
use crate::session::{Delivery, Enqueued, Message, StoredMessage};
use crate::store::{now_ms, MessageRecord, Op, OutboxRecord, OutboxState, Ticket};
use crate::topic::TopicFilter;

/// What routing a publish produced.
#[derive(Debug)]
pub struct Published {
    /// Sessions (and shared groups) that were offered the message.
    pub matched: usize,
    /// Durable once everything this publish must keep is on disk: the
    /// publisher's PUBACK/PUBREC waits for it.
    pub ticket: Ticket,
    /// A matching subscriber (a bridge with a full buffer and the `block`
    /// policy) asks publishers to slow down.
    pub saturated: bool,
    /// Not routed at all: the caller asked to refuse when saturated.
    pub refused: bool,
    /// One per bridge that took a copy the publisher's acknowledgement
    /// waits for (a QoS 1/2 copy with `ack = "sink"`, or a QoS 1 copy the
    /// store did not keep because the bridge's buffer does): all of them.
    pub sink_acks: Vec<tokio::sync::oneshot::Receiver<()>>,
}

/// The deliveries of one publish, ready to enqueue, and the sink
/// acknowledgements the publisher waits for.
struct Prepared {
    deliveries: Vec<(Arc<SessionSlot>, Delivery)>,
    sink_acks: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl Broker {
    /// Routes a message: stores it if retained, then queues one delivery per
    /// matching session (one per shared group). A session with overlapping
    /// subscriptions gets a single copy at the highest granted QoS carrying
    /// every matching subscription identifier. What must survive a crash
    /// (the retained copy, QoS 1/2 deliveries to persistent sessions) goes
    /// to the store first; the returned ticket says when it is durable.
    pub fn publish(&self, message: Message) -> Published {
        self.route_message(message, false, false, Vec::new())
    }

    /// A client's QoS 1/2 publish: its acknowledgement waits for `ticket`
    /// and for every `sink_acks`, so a bridge's buffer may be the only
    /// durable copy of a QoS 1 message (see [`hands_off`]). With
    /// `refuse_if_saturated`, a message that would reach a saturated
    /// subscriber is not routed at all (the caller answers v5 0x97 quota
    /// exceeded and the publisher retries later).
    ///
    /// `with` (the publisher's session changes: an incoming QoS 2 packet
    /// id) is written in the message's commit, or alone when the message is
    /// refused; the ticket covers it either way.
    pub fn publish_acknowledged(
        &self,
        message: Message,
        refuse_if_saturated: bool,
        with: Vec<Op>,
    ) -> Published {
        self.route_message(message, refuse_if_saturated, true, with)
    }

    /// A message another node of the cluster accepted and sent here: it
    /// goes to this node's subscribers only. Never to a bridge (each node
    /// bridges what its own clients publish, so a bridge configured on
    /// every node forwards each message once) nor back to the cluster's
    /// link (itself a bridge session); the retained copy comes from the
    /// cluster's retained mirror ([`Broker::mirror_retained`]), not from
    /// here, so the two cannot disagree about the order of updates.
    pub fn publish_from_cluster(&self, message: Message) -> Published {
        let access = self.access();
        let acl = access.acl.as_ref();
        let mut targets = self.router.route(&message, acl);
        targets.retain(|t| !t.slot.is_bridge());
        keep_readers(&mut targets, acl, &message.topic);
        self.deliver_from_cluster(message, targets)
    }

    /// A message the cluster gave this node for its members of the shared
    /// subscription `share` (`$share/g/f`): one of them gets it, as a
    /// local publish would pick it.
    pub fn publish_to_shared(&self, share: &TopicFilter, message: Message) -> Published {
        let access = self.access();
        let picked = self
            .router
            .pick_shared(share, &message.topic, access.acl.as_ref());
        let targets = picked
            .map(|e| {
                let opts = &e.subscription.options;
                Target {
                    qos: message.qos.min(opts.qos),
                    retain: message.retain && opts.retain_as_published,
                    subscription_ids: e.subscription.identifier.into_iter().collect(),
                    shared: true,
                    share: Some(e.subscription.filter.raw.clone()),
                    slot: e.slot,
                }
            })
            .into_iter()
            .collect();
        self.deliver_from_cluster(message, targets)
    }

    /// Persists and queues another node's message for `targets`.
    fn deliver_from_cluster(&self, mut message: Message, targets: Vec<Target>) -> Published {
        // The targets carry the retain flag each subscriber gets; the
        // store keeps no retained copy of it here.
        message.retain = false;
        let mut ops = Vec::new();
        self.persist_message(&mut message, &targets, false, &mut ops);
        let message = Arc::new(message);
        let prepared = self.prepare_deliveries(&message, targets, false, &mut ops);
        let ticket = self.store.submit(ops);
        let matched = self.enqueue(prepared.deliveries);
        Published {
            matched,
            ticket,
            saturated: false,
            refused: false,
            sink_acks: prepared.sink_acks,
        }
    }

    /// Replaces (or, with an empty payload, clears) a topic's retained
    /// message with the cluster's copy, in memory only: the cluster's
    /// key-value bucket is what keeps it, and replays it at every start.
    pub fn mirror_retained(&self, message: Message) {
        self.retained
            .put(&Arc::new(super::budget::detached(message)));
    }

    fn route_message(
        &self,
        message: Message,
        refuse_if_saturated: bool,
        publisher_waits: bool,
        with: Vec<Op>,
    ) -> Published {
        let mut message = match self.budget_retained(message, refuse_if_saturated) {
            Ok(m) => m,
            Err(refused) => {
                return Published {
                    ticket: self.store.submit(with),
                    ..refused
                }
            }
        };
        let access = self.access();
        let acl = access.acl.as_ref();
        // One call through the seam per publish: match and merge.
        let mut targets = self.router.route(&message, acl);
        keep_readers(&mut targets, acl, &message.topic);
        let saturated = targets.iter().any(|t| t.slot.is_saturated());
        if saturated && refuse_if_saturated {
            return Published {
                saturated,
                ticket: self.store.submit(with),
                ..Published::refused()
            };
        }
        let mut ops = with;
        let handoff = publisher_waits && message.qos == QoS::AtLeastOnce;
        self.persist_message(&mut message, &targets, handoff, &mut ops);
        let message = Arc::new(message);
        self.keep_retained(&message, &mut ops);
        let prepared = self.prepare_deliveries(&message, targets, publisher_waits, &mut ops);
        // Before queueing: a later delete of a queued entry must follow its put.
        let ticket = self.store.submit(ops);
        let matched = self.enqueue(prepared.deliveries);
        Published {
            matched,
            ticket,
            saturated,
            refused: false,
            sink_acks: prepared.sink_acks,
        }
    }

    /// Gives the message its disk copy when something must survive a
    /// crash: a retained message, or a QoS 1/2 delivery to a persistent
    /// session.
    fn persist_message(
        &self,
        message: &mut Message,
        targets: &[Target],
        handoff: bool,
        ops: &mut Vec<Op>,
    ) {
        if !self.store.is_enabled() {
            return;
        }
        let keep_for_sessions = targets
            .iter()
            .any(|t| t.qos != QoS::AtMostOnce && t.slot.is_persistent() && !hands_off(t, handoff));
        if !(keeps_retained(message) || keep_for_sessions) {
            return;
        }
        let id = self.store.next_message_id();
        ops.push(Op::PutMessage {
            id,
            record: message_record(message),
        });
        message.stored = Some(Arc::new(StoredMessage::new(id, self.release.clone())));
    }

    /// Stores, replaces or clears the topic's retained message, in memory
    /// and (when it has a disk copy) in the store's retained index.
    fn keep_retained(&self, message: &Arc<Message>, ops: &mut Vec<Op>) {
        if !message.retain {
            return;
        }
        self.retained.put(message);
        if !self.store.is_enabled() {
            return;
        }
        let topic = message.topic.clone();
        ops.push(match message.stored_id() {
            Some(message_id) if keeps_retained(message) => Op::PutRetained { topic, message_id },
            _ => Op::DeleteRetained { topic },
        });
    }

    /// One delivery per target; an outbox entry for each QoS 1/2 delivery
    /// to a persistent session the store keeps it for; a sink
    /// acknowledgement for each bridge that acknowledges on its sink, holds
    /// the only durable copy, or pushes back (see [`held_for_room`]).
    fn prepare_deliveries(
        &self,
        message: &Arc<Message>,
        targets: Vec<Target>,
        publisher_waits: bool,
        ops: &mut Vec<Op>,
    ) -> Prepared {
        let handoff = publisher_waits && message.qos == QoS::AtLeastOnce;
        let mut deliveries = Vec::with_capacity(targets.len());
        let mut sink_acks = Vec::new();
        for t in targets {
            let waits = t.qos != QoS::AtMostOnce && t.slot.acks_on_sink();
            let handed_off = hands_off(&t, handoff);
            let held = held_for_room(&t, publisher_waits);
            let sink_ack = (waits || handed_off || held).then(|| {
                let (signal, wait) = OneshotSinkAck::pair();
                sink_acks.push(wait);
                signal
            });
            let mut d = Delivery {
                message: Arc::clone(message),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
                seq: None,
                sink_ack,
                shared_group: t.share,
            };
            if !handed_off {
                d.seq = outbox_entry(&t.slot, &d, ops);
            }
            deliveries.push((t.slot, d));
        }
        Prepared {
            deliveries,
            sink_acks,
        }
    }

    /// Queues each delivery; counts (and logs, sparingly) those a full
    /// queue dropped. Returns how many were offered.
    fn enqueue(&self, deliveries: Vec<(Arc<SessionSlot>, Delivery)>) -> usize {
        let matched = deliveries.len();
        for (slot, d) in deliveries {
            if slot.deliver(d, &self.store) != Enqueued::Queued {
                self.count_drop(&slot);
            }
        }
        matched
    }

    pub(super) fn count_drop(&self, slot: &SessionSlot) {
        let total = self.stats.messages_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let session_drops = slot.state.lock().dropped;
        // Never silent, never a log line per message either.
        if session_drops == 1 || session_drops % 1000 == 0 {
            tracing::warn!(
                client_id = %slot.client_id,
                session_drops,
                total_drops = total,
                policy = ?self.config.limits.queue_full_policy,
                "session queue full, messages dropped"
            );
        }
    }

    /// Publishes a session's will, if its identity may still write the
    /// topic (the ACL may have been reloaded since CONNECT checked it).
    pub fn publish_will(&self, will: &Will, slot: &SessionSlot) {
        if let Some(acl) = &self.access().acl {
            let user = slot.control.lock().username.clone();
            if !acl.check_topic(
                &slot.client_id,
                user.as_deref(),
                &will.topic,
                crate::auth::Access::Write,
            ) {
                tracing::info!(client_id = %slot.client_id, topic = %will.topic, "will not published: the ACL no longer allows it");
                return;
            }
        }
        self.publish(will_message(will, &slot.client_id));
    }
}

/// Whether the store keeps no copy for target `t` because a bridge's
/// buffer becomes the message's durable copy: a QoS 1 message
/// (`handoff`: the publisher's acknowledgement waits for the bridge) to a
/// bridge at QoS 1. A crash before the buffer's append loses nothing
/// acknowledged: the publisher resends. Not for QoS 2: the publisher's
/// packet-id state is in the store, and the message must become durable
/// with it or a crash between the two would lose or repeat it.
fn hands_off(t: &Target, handoff: bool) -> bool {
    handoff && t.qos != QoS::AtMostOnce && t.slot.is_bridge()
}

/// Whether the publisher's acknowledgement waits until the bridge of
/// target `t` has taken the message into its buffer: the bridge pushes
/// back (its buffer or its queue is full) and the publisher was routed
/// anyway (a 3.1.1 publisher, which has no way to be told 0x97). A
/// bridge's queue never drops the message (it is lossless), so what bounds
/// it is the publisher: it gets no PUBACK/PUBREC, so no reason to send
/// more, until there is room (and its reading pauses meanwhile).
fn held_for_room(t: &Target, publisher_waits: bool) -> bool {
    publisher_waits && t.qos != QoS::AtMostOnce && t.slot.is_bridge() && t.slot.is_saturated()
}

/// Drops the targets the ACL does not let read `topic`. Shared picks were
/// checked when they were chosen.
fn keep_readers(targets: &mut Vec<Target>, acl: Option<&Acl>, topic: &str) {
    if let Some(acl) = acl {
        targets.retain(|t| t.shared || t.slot.may_read(acl, topic));
    }
}

/// Whether a retained message is kept on disk. `$SYS` values are rewritten
/// every few seconds and stale after a restart: kept in memory only.
fn keeps_retained(m: &Message) -> bool {
    m.retain && !m.payload.is_empty() && !m.topic.starts_with("$SYS/")
}

/// Journals `d` in `slot`'s outbox when it must survive a crash (a QoS 1/2
/// delivery of a stored message to a persistent session); returns the
/// outbox key it got.
pub(super) fn outbox_entry(slot: &SessionSlot, d: &Delivery, ops: &mut Vec<Op>) -> Option<u64> {
    let message_id = d.message.stored_id()?;
    if d.qos == QoS::AtMostOnce || !slot.is_persistent() {
        return None;
    }
    let seq = slot.next_seq();
    ops.push(Op::PutOutbox {
        client_id: slot.client_id.clone(),
        seq,
        record: OutboxRecord {
            message_id,
            qos: d.qos,
            retain: d.retain,
            state: OutboxState::Queued,
            packet_id: 0,
            subscription_ids: d.subscription_ids.clone(),
        },
    });
    Some(seq)
}

/// The store's copy of a message.
pub fn message_record(m: &Message) -> MessageRecord {
    let now = Instant::now();
    MessageRecord {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.clone(),
        expires_at_ms: m
            .expires_at
            .map(|t| (now_ms() + t.saturating_duration_since(now).as_millis() as u64).max(1))
            .unwrap_or(0),
        publisher: m.publisher.clone(),
        username: m.username.clone(),
        accepted_ms: m.accepted_ms,
    }
}

/// The message a record holds (read back from the store, or sent by
/// another node), its expiry moved from wall-clock time (`now_wall`, ms
/// since the epoch) to `now`'s clock.
pub fn message_from_record(
    r: MessageRecord,
    stored: Option<Arc<StoredMessage>>,
    now: Instant,
    now_wall: u64,
) -> Message {
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
        stored,
    }
}

/// The message a will becomes when it is published.
pub fn will_message(w: &Will, client_id: &ByteString) -> Message {
    Message {
        topic: w.topic.clone(),
        payload: w.payload.clone(),
        qos: w.qos,
        retain: w.retain,
        properties: Message::forwardable_properties(&w.properties),
        expires_at: w
            .properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s))),
        publisher: Some(client_id.clone()),
        username: None,
        accepted_ms: now_ms(),
        stored: None,
    }
}
