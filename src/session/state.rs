//! The state a session keeps between connections (spec 4.1): its queue of
//! messages not yet sent, QoS 1/2 flows in flight both ways and packet id
//! allocation. Pure state: no I/O, time passed in as `now`, so every flow is
//! tested without sockets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::codec::{Ack, Packet, PacketId, Publish, QoS, ReasonCode};

use super::message::{Delivery, SinkAck};
use super::outbox::{OutboxRecord, OutboxState, Ticket};
use super::queue_limits::QueueLimits;
use super::queued_bytes::QueueCharge;

/// A change the state machine made that must reach the store. Produced
/// under the session lock and handed to the store in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put (`Some`) or delete (`None`) the outbox entry `seq`.
    Outbox {
        seq: u64,
        record: Option<OutboxRecord>,
    },
    /// Remember (`true`) or forget an incoming QoS 2 packet id.
    Incoming { packet_id: u16, present: bool },
}

/// A delivery read back from the store.
#[derive(Debug, Clone)]
pub struct RestoredDelivery {
    pub delivery: Delivery,
    pub state: OutboxState,
    pub packet_id: u16,
}

/// Where an outgoing QoS 1/2 message stands. Named after the packet awaited.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub delivery: Delivery,
    pub state: OutState,
    /// Send order, so a reconnect resends in the original order.
    seq: u64,
}

/// Result of offering a delivery to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Queued, and the oldest message was dropped to make room.
    DroppedOldest,
    /// Not queued: the queue was full and the policy keeps old messages.
    DroppedNew,
}

/// A protocol violation by the client detected by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("receive maximum exceeded")]
    ReceiveMaximumExceeded,
}

#[derive(Debug, Default)]
pub struct SessionState {
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    /// `queued_bytes` as taken from the global budget.
    charge: QueueCharge,
    inflight: BTreeMap<u16, Inflight>,
    next_packet_id: u16,
    next_seq: u64,
    /// QoS 2 packet ids received and routed, waiting for PUBREL. A repeat
    /// PUBLISH with one of these ids is not routed again (exactly once).
    /// A B-tree set rather than a hash set: empty, it is 24 bytes instead
    /// of 48, and every session of a fleet carries one (it decides
    /// whether a `SessionSlot` fits mimalloc's 512-byte size class).
    incoming_qos2: BTreeSet<u16>,
    limits: QueueLimits,
    /// Messages dropped because the queue was full, since the session began.
    pub dropped: u64,
    /// Messages dropped because they expired before delivery.
    pub expired: u64,
    /// Whether this session's state is kept in the store.
    persistent: bool,
    /// A bridge's session: QoS 1/2 deliveries are never dropped (see
    /// `enqueue.rs`).
    lossless: bool,
    journal: Vec<Change>,
    /// Set when a journaled change must be durable before the next packet
    /// goes to the client (QoS 2 exactly-once bookkeeping).
    journal_must_wait: bool,
    /// Ticket of submitted changes that the serving connection must see
    /// durable before writing more (whoever submitted them).
    wait_ticket: Ticket,
    /// QoS 2 flows kept for a cluster's record (a session the cluster
    /// feeds); boxed and absent otherwise, so a session stays small.
    kept_flows: Option<Box<flows::KeptFlows>>,
}

fn outbox_record(d: &Delivery, state: OutboxState, packet_id: u16) -> Option<OutboxRecord> {
    Some(OutboxRecord {
        message_id: d.message.stored_id()?,
        qos: d.qos,
        retain: d.retain,
        state,
        packet_id,
        subscription_ids: d.subscription_ids.clone(),
    })
}

fn delivery_bytes(d: &Delivery) -> usize {
    d.message.payload.len() + d.message.topic.len()
}

impl SessionState {
    pub fn new(limits: QueueLimits) -> SessionState {
        SessionState {
            charge: QueueCharge::new(limits.global.clone()),
            limits,
            next_packet_id: 1,
            ..Default::default()
        }
    }

    /// Rebuilds a session read back from the store: queued deliveries,
    /// flows in flight and incoming QoS 2 ids, in their original order.
    pub fn restore(
        limits: QueueLimits,
        deliveries: Vec<RestoredDelivery>,
        incoming: Vec<u16>,
    ) -> SessionState {
        let mut s = SessionState::new(limits);
        s.persistent = true;
        for r in deliveries {
            let packet_id = PacketId::new(r.packet_id);
            match (r.state, packet_id) {
                (OutboxState::Queued, _) | (_, None) => {
                    s.queued_bytes += delivery_bytes(&r.delivery);
                    s.charge.force(delivery_bytes(&r.delivery));
                    s.queue.push_back(r.delivery);
                }
                (state, Some(id)) => {
                    let state = match (state, r.delivery.qos) {
                        (OutboxState::Released, _) => OutState::AwaitPubComp,
                        (_, QoS::ExactlyOnce) => OutState::AwaitPubRec,
                        _ => OutState::AwaitPubAck,
                    };
                    s.start_flow(id.get(), r.delivery, state);
                    s.next_packet_id = id.get().checked_add(1).unwrap_or(1);
                }
            }
        }
        s.incoming_qos2 = incoming.into_iter().collect();
        s
    }

    /// Puts a flow in flight under `id`, after those already there (the
    /// order a reconnect resends them in).
    fn start_flow(&mut self, id: u16, delivery: Delivery, state: OutState) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.insert(
            id,
            Inflight {
                delivery,
                state,
                seq,
            },
        );
    }

    pub fn set_persistent(&mut self, persistent: bool) {
        self.persistent = persistent;
    }

    /// Takes the changes to persist, and whether one of them must be durable
    /// before anything more is written to the client.
    pub fn take_journal(&mut self) -> (Vec<Change>, bool) {
        let wait = std::mem::take(&mut self.journal_must_wait);
        (std::mem::take(&mut self.journal), wait)
    }

    /// Records that submitted changes must be durable before the connection
    /// writes more.
    pub fn raise_wait(&mut self, ticket: Ticket) {
        self.wait_ticket = self.wait_ticket.max(ticket);
    }

    pub fn take_wait(&mut self) -> Ticket {
        std::mem::take(&mut self.wait_ticket)
    }

    fn journal_outbox(&mut self, d: &Delivery, record: Option<OutboxRecord>, must_wait: bool) {
        if let Some(seq) = d.seq {
            self.journal.push(Change::Outbox { seq, record });
            self.journal_must_wait |= must_wait;
        }
    }

    fn journal_done(&mut self, d: &Delivery) {
        self.journal_outbox(d, None, false);
    }

    /// A delivery's flow is over for good (acknowledged by the client,
    /// refused by it, expired, or never deliverable): its outbox entry
    /// goes, and whoever waits for the client's acknowledgement of it (a
    /// persistent session fed from the cluster acknowledges it there) is
    /// told. A delivery dropped from a full queue is not settled.
    fn settle(&mut self, d: &Delivery) {
        self.journal_done(d);
        if let Some(ack) = &d.sink_ack {
            ack.fire();
        }
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// About what the queued messages take on the wire (topic, payload and
    /// a few bytes of header each), to size a write buffer once.
    pub fn pending_wire_bytes(&self) -> usize {
        self.queued_bytes + 8 * self.queue.len()
    }

    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        if self.inflight.len() + self.awaiting_len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if id != 0 && !self.inflight.contains_key(&id) && !self.reserved(id) {
                return PacketId::new(id);
            }
        }
    }

    /// Takes the next queued message to send, if the window allows. QoS 1/2
    /// messages get a packet id and enter the inflight set; QoS 0 leave the
    /// session when returned. Expired messages are skipped and counted.
    pub fn next_publish(&mut self, now: Instant, window: usize) -> Option<Publish> {
        self.next_delivery(now, window, |d, packet_id| {
            build_publish(d, packet_id, false, now)
        })
    }

    /// As [`SessionState::next_publish`], but hands the delivery and its
    /// packet id to `emit` (which encodes it) instead of building an owned
    /// PUBLISH; returns what `emit` returned.
    pub fn next_delivery<R>(
        &mut self,
        now: Instant,
        window: usize,
        emit: impl FnOnce(&Delivery, Option<PacketId>) -> R,
    ) -> Option<R> {
        loop {
            let front = self.queue.front()?;
            if front.qos != QoS::AtMostOnce && self.inflight.len() + self.awaiting_len() >= window {
                return None;
            }
            let d = self.queue.pop_front()?;
            self.queued_bytes -= delivery_bytes(&d);
            self.charge.give_back(delivery_bytes(&d));
            if d.message.is_expired(now) {
                self.expired += 1;
                self.settle(&d);
                continue;
            }
            let packet_id = if d.qos == QoS::AtMostOnce {
                None
            } else {
                let Some(id) = self.allocate_packet_id() else {
                    self.queued_bytes += delivery_bytes(&d);
                    self.charge.force(delivery_bytes(&d));
                    self.queue.push_front(d);
                    return None;
                };
                Some(id)
            };
            let emitted = emit(&d, packet_id);
            if let Some(id) = packet_id {
                // A QoS 2 packet id must be on disk before the client sees it,
                // or a restart could resend the message under a new id. A
                // QoS 1 delivery needs no such record: after a restart it is
                // simply sent again (at least once), which saves a write.
                if d.qos == QoS::ExactlyOnce {
                    let record = outbox_record(&d, OutboxState::Sent, id.get());
                    self.journal_outbox(&d, record, true);
                    self.flows_changed();
                }
                let state = if d.qos == QoS::AtLeastOnce {
                    OutState::AwaitPubAck
                } else {
                    OutState::AwaitPubRec
                };
                self.start_flow(id.get(), d, state);
            }
            return Some(emitted);
        }
    }

    /// Forgets an outgoing message that could not be sent (too large for
    /// the client), as if its flow completed (3.1.2.11.4).
    pub fn discard_inflight(&mut self, id: PacketId) {
        if let Some(f) = self.inflight.remove(&id.get()) {
            self.settle(&f.delivery);
        }
    }

    /// Takes every delivery a shared subscription picked this session for
    /// and that the client has not received for certain (queued, or sent
    /// and not acknowledged; a QoS 2 message already PUBRECed stays), as if
    /// their flows completed here: the session is ending and another
    /// member of the group takes them (v5 4.8.2).
    pub fn take_shared_deliveries(&mut self) -> Vec<Delivery> {
        let mut flows: Vec<(u16, u64)> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.state != OutState::AwaitPubComp && f.delivery.shared_group.is_some())
            .map(|(id, f)| (*id, f.seq))
            .collect();
        flows.sort_by_key(|(_, seq)| *seq);
        let mut out = Vec::new();
        for (id, _) in flows {
            if let Some(f) = self.inflight.remove(&id) {
                self.journal_done(&f.delivery);
                out.push(f.delivery);
            }
        }
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for d in std::mem::take(&mut self.queue) {
            if d.shared_group.is_some() {
                self.queued_bytes -= delivery_bytes(&d);
                self.charge.give_back(delivery_bytes(&d));
                self.journal_done(&d);
                out.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.queue = kept;
        out
    }

    /// Takes the sink-acknowledgement signal of an in-flight delivery (a
    /// bridge passes it on to its sink).
    pub fn take_sink_ack(&mut self, id: PacketId) -> Option<Arc<dyn SinkAck>> {
        self.inflight
            .get_mut(&id.get())
            .and_then(|f| f.delivery.sink_ack.take())
    }

    /// The store's id of the message in flight under `id`, if it is stored.
    pub fn message_id_of(&self, id: PacketId) -> Option<u64> {
        self.inflight
            .get(&id.get())
            .and_then(|f| f.delivery.message.stored_id())
    }

    /// The message in flight under `id`.
    pub fn message_of(&self, id: PacketId) -> Option<Arc<super::message::Message>> {
        self.inflight
            .get(&id.get())
            .map(|f| Arc::clone(&f.delivery.message))
    }

    /// PUBACK from the client. False if the id was not awaiting one.
    pub fn on_puback(&mut self, id: PacketId) -> bool {
        match self.inflight.get(&id.get()) {
            Some(f) if f.state == OutState::AwaitPubAck => {
                if let Some(f) = self.inflight.remove(&id.get()) {
                    self.settle(&f.delivery);
                }
                true
            }
            _ => false,
        }
    }

    /// PUBREC from the client: answer PUBREL, or end the flow if the client
    /// refused the message (v5 reason >= 0x80). Unknown ids get PUBREL 0x92.
    pub fn on_pubrec(&mut self, id: PacketId, reason: ReasonCode) -> Option<Ack> {
        match self.inflight.get_mut(&id.get()) {
            Some(f) if f.state == OutState::AwaitPubRec || f.state == OutState::AwaitPubComp => {
                if reason.is_error() {
                    if let Some(f) = self.inflight.remove(&id.get()) {
                        self.settle(&f.delivery);
                    }
                    return None;
                }
                f.state = OutState::AwaitPubComp;
                let d = f.delivery.clone();
                // Released must be durable before PUBREL goes out: after a
                // restart we resend PUBREL, never the PUBLISH again.
                let record = outbox_record(&d, OutboxState::Released, id.get());
                self.journal_outbox(&d, record, true);
                self.flows_changed();
                Some(Ack::new(id))
            }
            _ => {
                if reason.is_error() {
                    None
                } else {
                    Some(Ack::with_reason(id, ReasonCode::PacketIdentifierNotFound))
                }
            }
        }
    }

    /// PUBCOMP from the client. False if the id was not awaiting one.
    pub fn on_pubcomp(&mut self, id: PacketId) -> bool {
        match self.inflight.get(&id.get()) {
            Some(f) if f.state == OutState::AwaitPubComp => {
                if let Some(f) = self.inflight.remove(&id.get()) {
                    self.settle(&f.delivery);
                }
                true
            }
            _ => false,
        }
    }

    /// An incoming QoS 2 PUBLISH. Returns true when it is new and must be
    /// routed, false for a repeat of a message already routed.
    pub fn on_incoming_qos2(
        &mut self,
        id: PacketId,
        receive_maximum: u16,
    ) -> Result<bool, FlowError> {
        if self.incoming_qos2.contains(&id.get()) {
            return Ok(false);
        }
        if self.incoming_qos2.len() >= usize::from(receive_maximum) {
            return Err(FlowError::ReceiveMaximumExceeded);
        }
        self.incoming_qos2.insert(id.get());
        self.flows_changed();
        if self.persistent {
            self.journal.push(Change::Incoming {
                packet_id: id.get(),
                present: true,
            });
            self.journal_must_wait = true;
        }
        Ok(true)
    }

    /// PUBREL from the client: releases the id. Returns the PUBCOMP.
    pub fn on_pubrel(&mut self, id: PacketId) -> Ack {
        if self.incoming_qos2.remove(&id.get()) {
            self.flows_changed();
            if self.persistent {
                self.journal.push(Change::Incoming {
                    packet_id: id.get(),
                    present: false,
                });
                self.journal_must_wait = true;
            }
            Ack::new(id)
        } else {
            Ack::with_reason(id, ReasonCode::PacketIdentifierNotFound)
        }
    }

    /// What a resumed session sends first (4.4): every unacknowledged
    /// PUBLISH again with DUP set, and PUBREL for those already received,
    /// in their original order (see [`SessionState::send_again`] for a
    /// PUBLISH that no longer `fits`).
    pub fn resend(&mut self, now: Instant, fits: &dyn Fn(&Packet) -> bool) -> Vec<Packet> {
        self.forget_resends();
        let mut flows: Vec<(u16, u64)> = self.inflight.iter().map(|(id, f)| (*id, f.seq)).collect();
        flows.sort_by_key(|(_, seq)| *seq);
        flows
            .into_iter()
            .filter_map(|(id, _)| self.send_again(id, now, fits))
            .collect()
    }

    /// One in-flight flow sent again: its PUBLISH with DUP set, or its
    /// PUBREL. A PUBLISH larger than the client's Maximum Packet Size (a
    /// new connection may set a smaller one) is not sent, and its flow
    /// goes on as if it had been (3.1.2.11.4): a QoS 1 flow ends, a QoS 2
    /// flow is released (the client may hold the message from a
    /// connection that took it). Kept in flight, it would hold a window
    /// slot and its packet id forever.
    pub(super) fn send_again(
        &mut self,
        id: u16,
        now: Instant,
        fits: &dyn Fn(&Packet) -> bool,
    ) -> Option<Packet> {
        let packet_id = PacketId::new(id)?;
        let f = self.inflight.get(&id)?;
        if f.state == OutState::AwaitPubComp {
            return Some(Packet::PubRel(Ack::new(packet_id)));
        }
        let publish = Packet::Publish(build_publish(&f.delivery, Some(packet_id), true, now));
        if fits(&publish) {
            return Some(publish);
        }
        tracing::debug!(
            packet_id = id,
            "in-flight message not sent again (too large for the client now, or not allowed)"
        );
        if f.state == OutState::AwaitPubRec {
            return self
                .on_pubrec(packet_id, ReasonCode::Success)
                .map(Packet::PubRel);
        }
        self.discard_inflight(packet_id);
        None
    }
}

/// The PUBLISH for one delivery, with per-hop v5 properties filled in.
pub fn build_publish(
    d: &Delivery,
    packet_id: Option<PacketId>,
    dup: bool,
    now: Instant,
) -> Publish {
    let m = &d.message;
    let mut properties = m.properties.as_deref().cloned().unwrap_or_default();
    properties.message_expiry_interval = m.remaining_expiry(now);
    properties.subscription_identifiers = d.subscription_ids.clone();
    Publish {
        dup: dup && d.qos != QoS::AtMostOnce,
        qos: d.qos,
        retain: d.retain,
        topic: m.topic.clone(),
        packet_id,
        properties,
        payload: m.payload.clone(),
    }
}

mod enqueue;
mod flows;
pub use flows::{Flows, OutgoingFlow};
#[cfg(test)]
mod flows_tests;
#[cfg(test)]
mod tests;
