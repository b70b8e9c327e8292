//! Per-connection rules for packets sent to a client: topic aliases the
//! client allowed (3.3.2.3.4) and its Maximum Packet Size (3.1.2.11.4).

use std::collections::HashMap;
use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;

use crate::codec::{
    encode_packet, encoded_len, EncodeError, Packet, PacketId, PlainPublish, ProtocolVersion,
    Publish,
};
use crate::session::{build_publish, Delivery};

#[derive(Debug)]
pub struct OutgoingLimits {
    pub version: ProtocolVersion,
    /// Largest packet the client accepts.
    pub max_packet_size: usize,
    /// Aliases the client accepts from us (0 = none).
    alias_max: u16,
    aliases: HashMap<ByteString, u16>,
}

impl OutgoingLimits {
    pub fn new(version: ProtocolVersion, max_packet_size: usize, alias_max: u16) -> OutgoingLimits {
        OutgoingLimits {
            version,
            max_packet_size,
            alias_max,
            aliases: HashMap::new(),
        }
    }

    /// Shapes a PUBLISH for this client: uses a topic alias when one exists
    /// or can be assigned, and returns `None` if the packet would exceed the
    /// client's maximum size (the caller then treats it as delivered).
    pub fn prepare(&mut self, mut p: Publish) -> Option<Packet> {
        if !self.version.is_v5() || self.alias_max == 0 {
            let packet = Packet::Publish(p);
            return (encoded_len(&packet, self.version) <= self.max_packet_size).then_some(packet);
        }
        if let Some(&alias) = self.aliases.get(&p.topic) {
            p.properties.topic_alias = Some(alias);
            p.topic = ByteString::new();
            let packet = Packet::Publish(p);
            return (encoded_len(&packet, self.version) <= self.max_packet_size).then_some(packet);
        }
        let next = self.aliases.len() + 1;
        if next <= usize::from(self.alias_max) {
            let alias = next as u16;
            let topic = p.topic.clone();
            p.properties.topic_alias = Some(alias);
            let packet = Packet::Publish(p);
            if encoded_len(&packet, self.version) <= self.max_packet_size {
                self.aliases.insert(topic, alias);
                return Some(packet);
            }
            return None;
        }
        let packet = Packet::Publish(p);
        (encoded_len(&packet, self.version) <= self.max_packet_size).then_some(packet)
    }

    /// Encodes one delivery for this client into `buf`. Returns `Ok(false)`
    /// if it exceeds the client's maximum packet size (nothing written).
    /// A delivery without per-hop properties, to a client that takes no
    /// topic aliases, is encoded from borrowed parts; any other goes
    /// through an owned PUBLISH.
    pub fn encode_delivery(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        now: Instant,
        buf: &mut BytesMut,
    ) -> Result<bool, EncodeError> {
        let m = &d.message;
        let plain = m.properties.is_none()
            && m.expires_at.is_none()
            && d.subscription_ids.is_empty()
            && (!self.version.is_v5() || self.alias_max == 0);
        if plain {
            let p = PlainPublish {
                dup: false,
                qos: d.qos,
                retain: d.retain,
                topic: &m.topic,
                packet_id,
                payload: &m.payload,
            };
            if p.encoded_len(self.version) > self.max_packet_size {
                return Ok(false);
            }
            p.encode(self.version, buf)?;
            return Ok(true);
        }
        match self.prepare(build_publish(d, packet_id, false, now)) {
            Some(packet) => encode_packet(&packet, self.version, buf).map(|_| true),
            None => Ok(false),
        }
    }

    /// Whether a non-PUBLISH packet fits the client's limit.
    pub fn fits(&self, packet: &Packet) -> bool {
        encoded_len(packet, self.version) <= self.max_packet_size
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Properties, QoS};

    fn publish(topic: &str, payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        }
    }

    fn as_publish(p: Option<Packet>) -> Publish {
        match p {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn alias_is_assigned_then_reused_with_empty_topic() {
        let mut o = OutgoingLimits::new(ProtocolVersion::V5, 1 << 20, 2);
        let first = as_publish(o.prepare(publish("a/b", b"1")));
        assert_eq!(
            (&*first.topic, first.properties.topic_alias),
            ("a/b", Some(1))
        );
        let second = as_publish(o.prepare(publish("a/b", b"2")));
        assert_eq!(
            (&*second.topic, second.properties.topic_alias),
            ("", Some(1))
        );
        as_publish(o.prepare(publish("c", b"3")));
        let third = as_publish(o.prepare(publish("d", b"4")));
        assert_eq!(third.properties.topic_alias, None, "alias space used up");
    }

    #[test]
    fn no_alias_when_client_allows_none_or_v311() {
        let mut o = OutgoingLimits::new(ProtocolVersion::V5, 1 << 20, 0);
        assert_eq!(
            as_publish(o.prepare(publish("a", b"1")))
                .properties
                .topic_alias,
            None
        );
        let mut o = OutgoingLimits::new(ProtocolVersion::V311, 1 << 20, 5);
        assert_eq!(
            as_publish(o.prepare(publish("a", b"1")))
                .properties
                .topic_alias,
            None
        );
    }

    #[test]
    fn packet_over_client_maximum_is_not_sent() {
        let mut o = OutgoingLimits::new(ProtocolVersion::V5, 20, 0);
        assert!(o.prepare(publish("a", b"small")).is_some());
        assert!(o
            .prepare(publish("a", b"this payload is too large"))
            .is_none());
    }
}
