//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (spec 3.8–3.11). Filters are
//! decoded as strings here and validated as filters by the router, which
//! answers an invalid filter per entry (SUBACK 0x80 / 0x8F).

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyScope};
use super::wire::{put_string, PacketId, ProtocolVersion, QoS, Reader};

/// v5 retain handling (3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// Only if the subscription did not exist.
    SendIfNew = 1,
    DoNotSend = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// 3.1.1 makes every bad bit a malformed packet (3.8.3.1, MQTT-3-8.3-4);
    /// v5 splits it: reserved bits are malformed, while QoS 3 and retain
    /// handling 3 are protocol errors (3.8.3.1).
    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        if !version.is_v5() {
            if byte & 0xfc != 0 {
                return Err(DecodeError::Malformed("reserved bits set in requested QoS"));
            }
            let qos = QoS::from_u8(byte).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
            return Ok(SubscriptionOptions {
                qos,
                ..Default::default()
            });
        }
        if byte & 0xc0 != 0 {
            return Err(DecodeError::Malformed(
                "reserved bits set in subscription options",
            ));
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::Protocol("subscription QoS 3"))?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(&self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos.as_u8();
        if version.is_v5() {
            if self.no_local {
                b |= 0x04;
            }
            if self.retain_as_published {
                b |= 0x08;
            }
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
}

fn packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or(DecodeError::Malformed("packet identifier 0"))
}

impl Subscribe {
    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyScope::Subscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props + self.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(buf)?;
        }
        for (f, o) in &self.filters {
            put_string(buf, f)?;
            buf.put_u8(o.encode(version));
        }
        Ok(())
    }
}

/// SUBACK; `reasons` are raw bytes (granted QoS or failure code), written
/// with the v5 codes. A 3.1.1 client only knows 0x80 as a failure, so any
/// failure code is sent to it as 0x80 (3.9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub reasons: Vec<u8>,
}

/// SUBACK return codes a 3.1.1 peer may send (3.9.3).
fn valid_v311_suback_code(code: u8) -> bool {
    matches!(code, 0x00 | 0x01 | 0x02 | 0x80)
}

/// SUBACK reason codes a v5 peer may send (3.9.3 table).
fn valid_v5_suback_code(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// UNSUBACK reason codes (v5 3.11.3 table).
fn valid_unsuback_code(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

impl SubAck {
    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyScope::SubAck)?
        } else {
            Properties::default()
        };
        let reasons = r.rest().to_vec();
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("SUBACK without reason codes"));
        }
        let valid = if version.is_v5() {
            valid_v5_suback_code
        } else {
            valid_v311_suback_code
        };
        if !reasons.iter().all(|&c| valid(c)) {
            return Err(DecodeError::Malformed("reason code not allowed in SUBACK"));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props + self.reasons.len()
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(buf)?;
            buf.put_slice(&self.reasons);
        } else {
            for &code in &self.reasons {
                buf.put_u8(if code >= 0x80 { 0x80 } else { code });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub filters: Vec<ByteString>,
}

impl Unsubscribe {
    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyScope::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(buf)?;
        }
        for f in &self.filters {
            put_string(buf, f)?;
        }
        Ok(())
    }
}

/// UNSUBACK; reason codes exist only in v5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub properties: Properties,
    pub reasons: Vec<u8>,
}

impl UnsubAck {
    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let packet_id = packet_id(r)?;
        if !version.is_v5() {
            if !r.is_empty() {
                return Err(DecodeError::Malformed("bytes after UNSUBACK"));
            }
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reasons: Vec::new(),
            });
        }
        let properties = Properties::decode(r, PropertyScope::UnsubAck)?;
        let reasons = r.rest().to_vec();
        // One reason code per filter, and UNSUBSCRIBE has at least one.
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("UNSUBACK without reason codes"));
        }
        if !reasons.iter().all(|&c| valid_unsuback_code(c)) {
            return Err(DecodeError::Malformed(
                "reason code not allowed in UNSUBACK",
            ));
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.wire_len() + self.reasons.len()
        } else {
            2
        }
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(buf)?;
            buf.put_slice(&self.reasons);
        }
        Ok(())
    }
}
