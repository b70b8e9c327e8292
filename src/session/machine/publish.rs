//! PUBLISH from the client (3.3): topic aliases, topic limits, the
//! publish rate, the ACL and `$SYS`, and the QoS 1/2 acknowledgement with
//! its reason code.

use std::time::{Duration, Instant};

use crate::auth::Access;
use crate::codec::{owned_string, Ack, Packet, PacketId, Publish, QoS, ReasonCode};
use crate::session::{FlowError, Message};

use super::{ConnectionHost, Count, Exit, Machine};

/// How long reading pauses when a subscriber asks publishers to slow down.
const SATURATED_PAUSE: Duration = Duration::from_millis(100);

impl Machine {
    pub(super) fn on_publish<H: ConnectionHost>(
        &mut self,
        mut p: Publish,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        let limits = host.limits();
        if self.version.is_v5() {
            if !p.properties.subscription_identifiers.is_empty() {
                return Err(self.violation(ReasonCode::ProtocolError));
            }
            self.resolve_alias(&mut p, limits.topic_alias_maximum)?;
        }
        if p.topic.len() > limits.max_topic_length
            || p.topic.split('/').count() > limits.max_topic_levels
        {
            return Err(self.violation(ReasonCode::TopicNameInvalid));
        }
        if let Some(rate) = &mut self.rate {
            if let Some(wait) = rate.charge(p.payload.len(), now) {
                self.paused_until = Some(now + wait);
            }
        }
        let (qos, packet_id) = (p.qos, p.packet_id);
        host.count(Count::Received(qos), 1);
        if !self.may_publish(&p.topic, host) {
            tracing::debug!(topic = %p.topic, "PUBLISH denied by the ACL");
            host.count(Count::PublishDenied, 1);
            self.refuse_denied(qos, packet_id);
            return Ok(());
        }
        let routable = !(p.topic.starts_with("$SYS/") || &*p.topic == "$SYS");
        let message = Message {
            topic: p.topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            expires_at: p
                .properties
                .message_expiry_interval
                .map(|s| now + Duration::from_secs(u64::from(s))),
            properties: Message::forwardable_properties(&p.properties),
            publisher: Some(self.client_id.clone()),
            username: self.username.clone(),
            accepted_ms: host.now_ms(),
            stored: None,
        };
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => {
                if routable {
                    host.route_at_most_once(message);
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                let matched = self.route_acked(message, routable, now, host);
                let reason = self.ack_reason(matched);
                self.send(Packet::PubAck(Ack::with_reason(id, reason)));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.exactly_once(id, message, routable, now, host)?;
            }
            _ => return Err(self.violation(ReasonCode::ProtocolError)),
        }
        Ok(())
    }

    /// Sets up or uses an incoming topic alias (3.3.2.3.4).
    fn resolve_alias(&mut self, p: &mut Publish, maximum: u16) -> Result<(), Exit> {
        let Some(alias) = p.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias > maximum {
            return Err(self.violation(ReasonCode::TopicAliasInvalid));
        }
        if p.topic.is_empty() {
            match self.incoming_aliases.get(&alias) {
                Some(t) => p.topic = t.clone(),
                None => return Err(self.violation(ReasonCode::ProtocolError)),
            }
        } else {
            // Owned: the alias outlives this (maybe 1 MB) PUBLISH.
            self.incoming_aliases.insert(alias, owned_string(&p.topic));
        }
        Ok(())
    }

    fn may_publish<H: ConnectionHost>(&self, topic: &str, host: &H) -> bool {
        let (client_id, username) = (&self.client_id, self.username.as_deref());
        host.with_acl(|acl| {
            acl.is_none_or(|acl| acl.check_topic(client_id, username, topic, Access::Write))
        })
    }

    /// A PUBLISH the ACL refuses: v5 says why; 3.1.1 has no way to, so the
    /// flow completes as if delivered (as mosquitto does).
    fn refuse_denied(&mut self, qos: QoS, packet_id: Option<PacketId>) {
        let reason = if self.version.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(Ack::with_reason(id, reason))),
            (QoS::ExactlyOnce, Some(id)) => self.send(Packet::PubRec(Ack::with_reason(id, reason))),
            _ => {}
        }
    }

    /// QoS 2 (4.3.3): a packet id already routed is not routed again; a
    /// new one counts against the receive maximum.
    fn exactly_once<H: ConnectionHost>(
        &mut self,
        id: PacketId,
        message: Message,
        routable: bool,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        let receive_max = host.limits().receive_maximum;
        let fresh = host.state().on_incoming_qos2(id, receive_max);
        match fresh {
            Ok(true) => {
                // The incoming id and the message become durable together:
                // `route` writes the journal (the id) in the message's
                // commit. Apart, a crash between the two commits would keep
                // the id alone, and the publisher's resend would be taken
                // for a repeat: acknowledged, never routed.
                let matched = self.route_acked(message, routable, now, host);
                if matched.is_none() {
                    // Refused: the flow ends here, the id is free again.
                    host.state().on_pubrel(id);
                }
                // Not routed (refused, or nothing to route): the id alone.
                host.flush_journal();
                let reason = self.ack_reason(matched);
                self.send(Packet::PubRec(Ack::with_reason(id, reason)));
            }
            Ok(false) => self.send(Packet::PubRec(Ack::new(id))),
            Err(FlowError::ReceiveMaximumExceeded) => {
                return Err(self.violation(ReasonCode::ReceiveMaximumExceeded));
            }
        }
        Ok(())
    }

    /// Routes a message whose acknowledgement must wait for its durability
    /// (`$SYS` is the broker's own: matched by nobody). `None` when refused
    /// because a subscriber (a full bridge) asks publishers to slow down:
    /// v5 QoS 1/2 publishers are told 0x97 and retry; others are routed
    /// and paused briefly (back-pressure).
    fn route_acked<H: ConnectionHost>(
        &mut self,
        message: Message,
        routable: bool,
        now: Instant,
        host: &mut H,
    ) -> Option<usize> {
        if !routable {
            return Some(0);
        }
        let refuse = self.version.is_v5() && message.qos != QoS::AtMostOnce;
        let routed = host.route(message, refuse);
        if routed.saturated {
            let until = now + SATURATED_PAUSE;
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
        if routed.refused {
            host.count(Count::PublishQuotaRefused, 1);
            return None;
        }
        Some(routed.matched)
    }

    fn ack_reason(&self, matched: Option<usize>) -> ReasonCode {
        match matched {
            None => ReasonCode::QuotaExceeded,
            Some(0) if self.version.is_v5() => ReasonCode::NoMatchingSubscribers,
            Some(_) => ReasonCode::Success,
        }
    }
}
