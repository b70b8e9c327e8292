//! A PUBLISH without v5 properties, borrowed from a queued message.
//!
//! Most deliveries carry no properties (no expiry, no subscription
//! identifier, no topic alias). Building an owned [`Publish`](super::Publish)
//! for each of them clones the topic and payload (two atomic reference
//! counts shared by every subscriber of a fan-out) and moves a ~470-byte
//! value around; encoding straight from borrowed parts does neither.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::wire::{put_string, put_varint, varint_len, PacketId, ProtocolVersion, QoS, MAX_VARINT};

#[derive(Debug, Clone, Copy)]
pub struct PlainPublish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<PacketId>,
    pub payload: &'a [u8],
}

impl PlainPublish<'_> {
    fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if version.is_v5() {
            // An empty property block is its length, 0, in one byte.
            n += 1;
        }
        n
    }

    /// Size on the wire, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
    }

    /// Appends the packet to `buf`; returns the bytes written.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let body = self.body_len(version);
        if body > MAX_VARINT as usize {
            return Err(EncodeError::PacketTooLarge(body));
        }
        let flags = (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain);
        let start = buf.len();
        buf.reserve(body + 5);
        buf.put_u8(0x30 | flags);
        put_varint(buf, body as u32)?;
        put_string(buf, self.topic)?;
        if self.qos != QoS::AtMostOnce {
            let id = self.packet_id.ok_or(EncodeError::MissingPacketId)?;
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            buf.put_u8(0);
        }
        buf.put_slice(self.payload);
        Ok(buf.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{encode_packet, encoded_len, Packet, Properties, Publish};

    /// Byte for byte what the owned `Publish` encodes, in every shape.
    #[test]
    fn plain_publish_encodes_as_publish_does() {
        let payload = vec![7u8; 300];
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for (dup, retain) in [(false, false), (true, true)] {
                    let packet_id = (qos != QoS::AtMostOnce)
                        .then(|| PacketId::new(513))
                        .flatten();
                    let owned = Packet::Publish(Publish {
                        dup,
                        qos,
                        retain,
                        topic: "a/b/c".into(),
                        packet_id,
                        properties: Properties::default(),
                        payload: Bytes::from(payload.clone()),
                    });
                    let mut expected = BytesMut::new();
                    encode_packet(&owned, version, &mut expected).expect("encode");
                    let plain = PlainPublish {
                        dup,
                        qos,
                        retain,
                        topic: "a/b/c",
                        packet_id,
                        payload: &payload,
                    };
                    let mut got = BytesMut::new();
                    let n = plain.encode(version, &mut got).expect("encode");
                    assert_eq!(got, expected, "{version:?} {qos:?} dup={dup}");
                    assert_eq!(n, got.len());
                    assert_eq!(plain.encoded_len(version), encoded_len(&owned, version));
                }
            }
        }
    }

    #[test]
    fn plain_publish_without_packet_id_at_qos1_is_refused() {
        let plain = PlainPublish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            payload: b"x",
        };
        assert!(plain
            .encode(ProtocolVersion::V311, &mut BytesMut::new())
            .is_err());
    }
}
