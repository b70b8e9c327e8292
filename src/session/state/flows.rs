//! A session's QoS 2 flows as a cluster keeps them, so the node that
//! resumes the session (its client moved, or its node died) goes on with
//! each flow where it stood (4.3.3, 4.4): a message the client may have
//! received comes again under the same packet id with DUP set, a message
//! it already received gets only its PUBREL, and a publisher's repeat of a
//! PUBLISH it sent before the move is not routed a second time.
//!
//! Outgoing flows are named by their position in the cluster's stream
//! (the delivery's [`SinkAck::position`](crate::session::SinkAck)): the
//! resuming node gets the message again from the stream, under that
//! position. Kept only for sessions the cluster feeds ([`keep_flows`]);
//! a single node keeps these flows in its own store instead.
//!
//! [`keep_flows`]: SessionState::keep_flows

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::codec::{Packet, QoS};
use crate::session::{Delivery, Message};

use super::{OutState, SessionState};

/// What a session's QoS 2 flows are, for the record a cluster keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flows {
    /// Messages sent to the client under a packet id and not completed.
    pub outgoing: Vec<OutgoingFlow>,
    /// Packet ids of the client's QoS 2 messages routed and not released.
    pub incoming: Vec<u16>,
}

/// One outgoing QoS 2 flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingFlow {
    /// The message's position in the cluster's stream; 0 for a message
    /// that is not in the stream (a retained message sent on SUBSCRIBE, a
    /// `$` topic): the resuming node cannot send it again, so it releases
    /// the packet id (PUBREL) the client may still hold.
    pub position: u64,
    pub packet_id: u16,
    /// PUBREC came and PUBREL went: the client has the message.
    pub released: bool,
}

impl Flows {
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.is_empty()
    }
}

/// The flows bookkeeping of a session the cluster feeds.
#[derive(Debug, Default)]
pub(super) struct KeptFlows {
    /// The flows changed since the record was last written.
    changed: bool,
    /// Flows a resumed session owes whose message has not come again
    /// from the stream yet: position → (packet id, released). Their
    /// packet ids are not given to other messages meanwhile.
    awaiting: BTreeMap<u64, (u16, bool)>,
    /// Packet ids of resumed flows to send again (PUBLISH with DUP, or
    /// PUBREL) at the next write.
    resend: Vec<u16>,
}

/// The stream position of a delivery the cluster feeds.
fn position(d: &Delivery) -> Option<u64> {
    d.sink_ack.as_ref().and_then(|a| a.position())
}

/// What stands in flight for a flow whose message is not at hand: only
/// its PUBREL is sent again.
fn placeholder() -> Delivery {
    let message = Message::from_broker(ByteString::new(), Bytes::new(), QoS::ExactlyOnce, false, 0);
    Delivery {
        message: Arc::new(message),
        qos: QoS::ExactlyOnce,
        retain: false,
        subscription_ids: Vec::new(),
        seq: None,
        sink_ack: None,
        shared_group: None,
    }
}

impl SessionState {
    /// Keeps the session's QoS 2 flows for a cluster's record (a session
    /// the cluster feeds), from now on.
    pub fn keep_flows(&mut self) {
        self.kept_flows.get_or_insert_with(Box::default);
    }

    /// Notes that the flows changed (when they are kept).
    pub(super) fn flows_changed(&mut self) {
        if let Some(k) = &mut self.kept_flows {
            k.changed = true;
        }
    }

    /// The flows, if they changed since the last call: the record to write
    /// before the client sees anything more.
    pub fn take_changed_flows(&mut self) -> Option<Flows> {
        let k = self.kept_flows.as_mut()?;
        if !std::mem::take(&mut k.changed) {
            return None;
        }
        Some(self.flows())
    }

    /// What the session's QoS 2 flows are now.
    pub fn flows(&self) -> Flows {
        let mut outgoing: Vec<OutgoingFlow> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.state != OutState::AwaitPubAck)
            .map(|(id, f)| OutgoingFlow {
                position: position(&f.delivery).unwrap_or(0),
                packet_id: *id,
                released: f.state == OutState::AwaitPubComp,
            })
            .collect();
        if let Some(k) = &self.kept_flows {
            outgoing.extend(
                k.awaiting
                    .iter()
                    .map(|(position, (id, released))| OutgoingFlow {
                        position: *position,
                        packet_id: *id,
                        released: *released,
                    }),
            );
        }
        Flows {
            outgoing,
            incoming: self.incoming_qos2.iter().copied().collect(),
        }
    }

    /// Takes over the flows of a session resumed from the cluster's
    /// record: incoming ids at once, outgoing flows when their messages
    /// come again from the stream ([`SessionState::enqueue`]).
    /// A flow whose message is not in the stream goes in flight at once,
    /// released (the connection's first resend sends its PUBREL). The
    /// record is written again by this node at its first chance.
    pub fn resume_flows(&mut self, flows: Flows) {
        self.incoming_qos2.extend(flows.incoming.iter().copied());
        let k = self.kept_flows.get_or_insert_with(Box::default);
        k.changed = !flows.is_empty();
        let mut elsewhere = Vec::new();
        for f in flows.outgoing {
            match f.position {
                0 => elsewhere.push(f.packet_id),
                position => {
                    k.awaiting.insert(position, (f.packet_id, f.released));
                }
            }
        }
        for id in elsewhere {
            if id != 0 && !self.inflight.contains_key(&id) {
                self.start_flow(id, placeholder(), OutState::AwaitPubComp);
            }
        }
    }

    /// How many resumed flows wait for their messages (they count in the
    /// client's receive maximum).
    pub(super) fn awaiting_len(&self) -> usize {
        self.kept_flows.as_ref().map_or(0, |k| k.awaiting.len())
    }

    /// Whether a resumed flow waits for the message at `position`.
    pub fn awaits(&self, position: u64) -> bool {
        self.kept_flows
            .as_ref()
            .is_some_and(|k| k.awaiting.contains_key(&position))
    }

    /// Whether resumed flows still wait for their messages.
    pub fn awaits_any(&self) -> bool {
        self.kept_flows
            .as_ref()
            .is_some_and(|k| !k.awaiting.is_empty())
    }

    /// Forgets resumed flows whose messages the stream will not offer
    /// again: every position up to `floor` was acknowledged (the record
    /// keeps a completed flow until its next write, so a session resumed
    /// from it may await a message that is done with). Their packet ids
    /// are free again.
    pub fn forget_awaiting_through(&mut self, floor: u64) {
        if let Some(k) = &mut self.kept_flows {
            let before = k.awaiting.len();
            k.awaiting.retain(|position, _| *position > floor);
            k.changed |= k.awaiting.len() != before;
        }
    }

    /// Whether `id` is promised to a resumed flow whose message has not
    /// come yet.
    pub(super) fn reserved(&self, id: u16) -> bool {
        self.kept_flows
            .as_ref()
            .is_some_and(|k| k.awaiting.values().any(|(held, _)| *held == id))
    }

    /// A delivery that continues a resumed flow goes in flight under the
    /// flow's packet id, to be sent again; any other comes back.
    pub(super) fn continue_flow(&mut self, mut d: Delivery) -> Result<(), Delivery> {
        let Some(k) = &mut self.kept_flows else {
            return Err(d);
        };
        let Some(position) = position(&d) else {
            return Err(d);
        };
        let Some((id, released)) = k.awaiting.remove(&position) else {
            return Err(d);
        };
        if self.inflight.contains_key(&id) {
            return Err(d);
        }
        k.resend.push(id);
        // The client has it as QoS 2 whatever its subscription says now.
        d.qos = QoS::ExactlyOnce;
        let state = if released {
            OutState::AwaitPubComp
        } else {
            OutState::AwaitPubRec
        };
        self.start_flow(id, d, state);
        Ok(())
    }

    /// Resumed flows sent again with everything in flight (a connection
    /// starts) need no second copy.
    pub(super) fn forget_resends(&mut self) {
        if let Some(k) = &mut self.kept_flows {
            k.resend.clear();
        }
    }

    /// What resumed flows send again now: their PUBLISH with DUP set, or
    /// their PUBREL (see [`SessionState::send_again`]).
    pub fn take_resends(&mut self, now: Instant, fits: &dyn Fn(&Packet) -> bool) -> Vec<Packet> {
        let Some(k) = &mut self.kept_flows else {
            return Vec::new();
        };
        let ids = std::mem::take(&mut k.resend);
        ids.into_iter()
            .filter_map(|id| self.send_again(id, now, fits))
            .collect()
    }
}
