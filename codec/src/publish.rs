//! PUBLISH (spec 3.3). Topic and payload are `Bytes`-backed: decoding slices
//! the received frame, and fan-out clones a reference count, not the data.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::connect::check_topic_name;
use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyScope};
use super::wire::{put_string, PacketId, ProtocolVersion, QoS, Reader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in v5 when a topic alias stands for it.
    pub topic: ByteString,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<PacketId>,
    pub properties: Properties,
    pub payload: Bytes,
}

impl Publish {
    pub fn decode(
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos =
            QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
        let retain = flags & 0x01 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
        }
        let topic = r.string()?;
        check_topic_name(&topic)?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(PacketId::new(r.u16()?).ok_or(DecodeError::Malformed("packet identifier 0"))?)
        };
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyScope::Publish)?
        } else {
            Properties::default()
        };
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(if version.is_v5() {
                DecodeError::Protocol("empty topic without topic alias")
            } else {
                DecodeError::TopicNameInvalid("empty topic name")
            });
        }
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }

    pub fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if version.is_v5() {
            n += self.properties.wire_len();
        }
        n
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_string(buf, &self.topic)?;
        if self.qos != QoS::AtMostOnce {
            let id = self.packet_id.ok_or(EncodeError::MissingPacketId)?;
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.encode(buf)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}
