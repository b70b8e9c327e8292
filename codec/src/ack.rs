//! PUBACK, PUBREC, PUBREL and PUBCOMP (spec 3.4–3.7): one shape, four types.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyScope};
use super::reason::ReasonCode;
use super::wire::{PacketId, ProtocolVersion, Reader};

/// Which acknowledgement this is; decides the allowed reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Ack {
    pub fn new(packet_id: PacketId) -> Ack {
        Ack {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }

    pub fn with_reason(packet_id: PacketId, reason: ReasonCode) -> Ack {
        Ack {
            packet_id,
            reason,
            properties: Properties::default(),
        }
    }

    pub fn decode(
        kind: AckKind,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Ack, DecodeError> {
        let packet_id =
            PacketId::new(r.u16()?).ok_or(DecodeError::Malformed("packet identifier 0"))?;
        if !version.is_v5() {
            if !r.is_empty() {
                return Err(DecodeError::Malformed("bytes after acknowledgement"));
            }
            return Ok(Ack::new(packet_id));
        }
        if r.is_empty() {
            return Ok(Ack::new(packet_id));
        }
        let raw = r.u8()?;
        let reason =
            ReasonCode::from_u8(raw).ok_or(DecodeError::Malformed("unknown reason code"))?;
        let valid = match kind {
            AckKind::PubAck | AckKind::PubRec => matches!(
                raw,
                0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
            ),
            AckKind::PubRel | AckKind::PubComp => matches!(raw, 0x00 | 0x92),
        };
        if !valid {
            return Err(DecodeError::Malformed(
                "reason code not allowed in this acknowledgement",
            ));
        }
        let properties = if r.is_empty() {
            Properties::default()
        } else {
            Properties::decode(r, PropertyScope::Ack)?
        };
        if !r.is_empty() {
            return Err(DecodeError::Malformed("bytes after acknowledgement"));
        }
        Ok(Ack {
            packet_id,
            reason,
            properties,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            return 2;
        }
        if self.properties.is_empty() {
            if self.reason == ReasonCode::Success {
                2
            } else {
                3
            }
        } else {
            3 + self.properties.wire_len()
        }
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return Ok(());
        }
        let empty = self.properties.is_empty();
        if empty && self.reason == ReasonCode::Success {
            return Ok(());
        }
        buf.put_u8(self.reason.as_u8());
        if !empty {
            self.properties.encode(buf)?;
        }
        Ok(())
    }
}
