//! The link task's in direction: subscribing on the remote, handing its
//! messages to the broker, and answering them (in order) once the broker
//! has them durable.

use bytestring::ByteString;
use sluice_codec::{
    Ack, Packet, PacketId, Properties, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscriptionOptions,
};
use tokio::sync::{mpsc, oneshot};

use super::{LinkTask, PendingAck, SUBSCRIBE_PACKET_ID};
use crate::mqtt::inbound::{Inbound, InboundOutcome};
use crate::mqtt::link::Link;

impl LinkTask {
    /// Subscribes to the inbound filters (each connection: the remote may
    /// not have kept them). MQTT 5: no-local, so what the out direction
    /// publishes under our client id does not come back in; retained
    /// messages only for a subscription the remote did not have.
    pub(super) fn subscribe(&mut self, link: &mut Link) -> Result<(), String> {
        let Some(inbound) = &self.inbound else {
            return Ok(());
        };
        if inbound.subscriptions.is_empty() {
            return Ok(());
        }
        let filters = inbound
            .subscriptions
            .iter()
            .map(|r| {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtLeastOnce),
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                };
                (ByteString::from(r.filter.as_str()), options)
            })
            .collect();
        let packet_id = PacketId::new(SUBSCRIBE_PACKET_ID).unwrap_or(PacketId::MAX);
        link.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: Properties::default(),
            filters,
        }))
    }

    pub(super) fn on_suback(&self, reasons: &[u8]) {
        let Some(inbound) = &self.inbound else {
            return;
        };
        for (route, reason) in inbound.subscriptions.iter().zip(reasons) {
            if *reason >= 0x80 {
                let why = format!(
                    "the remote refused the subscription `{}` (0x{reason:02x})",
                    route.filter
                );
                tracing::warn!(remote = %self.dialer.cfg.address, error = %why, "mqtt bridge: inbound subscription refused");
                self.status.set_error(why);
            }
        }
    }

    /// A message from the remote: handed to the broker (QoS 1/2 answered
    /// once durable there), or acknowledged and dropped when no route
    /// takes it.
    pub(super) fn on_inbound(&mut self, p: Publish, link: &mut Link) -> Result<(), String> {
        let pid = p.packet_id;
        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, pid) {
            if self.received_qos2.contains(&id.get()) {
                return link.queue(&Packet::PubRec(Ack::new(id)));
            }
            if self.pending_acks.iter().any(|a| a.packet_id == id) {
                return Ok(());
            }
        }
        let mapped = self.inbound.as_ref().and_then(|i| i.routes.map(&p.topic));
        let (Some(inbound), Some(topic)) = (self.inbound.as_ref(), mapped) else {
            return match (p.qos, pid) {
                (QoS::AtLeastOnce, Some(id)) => link.queue(&Packet::PubAck(Ack::new(id))),
                (QoS::ExactlyOnce, Some(id)) => {
                    self.received_qos2.insert(id.get());
                    link.queue(&Packet::PubRec(Ack::new(id)))
                }
                _ => Ok(()),
            };
        };
        let (done, answer) = oneshot::channel();
        let message = Inbound {
            topic,
            payload: p.payload.clone(),
            qos: p.qos.as_u8(),
            retain: p.retain,
            user_properties: p
                .properties
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            done: pid.map(|_| done),
        };
        match inbound.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) if pid.is_none() => {
                self.status.inbound_dropped();
                return Ok(());
            }
            Err(_) => return Err("the broker does not take inbound messages now".into()),
        }
        self.status.inbound_received();
        if let Some(packet_id) = pid {
            self.pending_acks.push_back(PendingAck {
                packet_id,
                qos: p.qos,
                answer,
            });
        }
        Ok(())
    }

    /// The oldest inbound message is durable locally (or refused): its
    /// PUBACK or PUBREC goes out.
    pub(super) fn answer_front(
        &mut self,
        answer: Option<InboundOutcome>,
        link: &mut Link,
    ) -> Result<(), String> {
        let Some(front) = self.pending_acks.pop_front() else {
            return Ok(());
        };
        let Some(outcome) = answer else {
            // The broker's side went away (the bridge stops): no answer,
            // the remote resends after we reconnect.
            return Err("the bridge's inbound task ended".into());
        };
        let mut ack = Ack::new(front.packet_id);
        if let InboundOutcome::Refused(why) = &outcome {
            tracing::warn!(remote = %self.dialer.cfg.address, reason = %why, "mqtt bridge: inbound message refused locally");
            if link.version.is_v5() {
                ack.reason = ReasonCode::NotAuthorized;
            }
        }
        match front.qos {
            QoS::ExactlyOnce => {
                if !ack.reason.is_error() {
                    self.received_qos2.insert(front.packet_id.get());
                }
                link.queue(&Packet::PubRec(ack))
            }
            _ => link.queue(&Packet::PubAck(ack)),
        }
    }
}
