//! CONNECT and CONNACK (spec 3.1, 3.2).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyScope};
use super::reason::ReasonCode;
use super::wire::{put_binary, put_string, ProtocolVersion, QoS, Reader};

/// A will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// "Clean Session" in 3.1.1, "Clean Start" in 5.0.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: Properties,
    pub client_id: ByteString,
    pub will: Option<Will>,
    pub username: Option<ByteString>,
    /// Binary data, not a string: devices send raw tokens.
    pub password: Option<Bytes>,
}

/// Checks a topic name as PUBLISH and wills carry it (4.7): no wildcards.
/// Emptiness is checked by callers, since a v5 PUBLISH may use an alias.
pub fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        return Err(DecodeError::TopicNameInvalid("wildcard in topic name"));
    }
    Ok(())
}

/// The flags byte of CONNECT (spec 3.1.2.3), checked.
struct ConnectFlags {
    clean_start: bool,
    /// The will's QoS and retain flag when the will flag is set.
    will: Option<(QoS, bool)>,
    username: bool,
    password: bool,
}

impl ConnectFlags {
    fn decode(flags: u8, protocol: ProtocolVersion) -> Result<ConnectFlags, DecodeError> {
        if flags & 0x01 != 0 {
            return Err(DecodeError::Malformed("CONNECT reserved flag set"));
        }
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password = flags & 0x40 != 0;
        let username = flags & 0x80 != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            return Err(DecodeError::Malformed(
                "will QoS or retain set without will flag",
            ));
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
        if password && !username && !protocol.is_v5() {
            return Err(DecodeError::Malformed("password without user name"));
        }
        Ok(ConnectFlags {
            clean_start: flags & 0x02 != 0,
            will: will_flag.then_some((will_qos, will_retain)),
            username,
            password,
        })
    }
}

/// The protocol name and level (spec 3.1.2.1, 3.1.2.2).
fn decode_protocol(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = r.string()?;
    let level = r.u8()?;
    match (&*name, level) {
        ("MQTT", 4) => Ok(ProtocolVersion::V311),
        ("MQTT", 5) => Ok(ProtocolVersion::V5),
        ("MQIsdp", 3) => Ok(ProtocolVersion::V31),
        ("MQTT", _) | ("MQIsdp", _) => Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => Err(DecodeError::Protocol("unknown protocol name")),
    }
}

impl Will {
    /// The will's part of the CONNECT payload: properties (5.0), topic,
    /// payload.
    fn decode(
        r: &mut Reader,
        protocol: ProtocolVersion,
        (qos, retain): (QoS, bool),
    ) -> Result<Will, DecodeError> {
        let properties = if protocol.is_v5() {
            Properties::decode(r, PropertyScope::Will)?
        } else {
            Properties::default()
        };
        let topic = r.string()?;
        if topic.is_empty() {
            return Err(DecodeError::TopicNameInvalid("empty will topic"));
        }
        check_topic_name(&topic)?;
        let payload = r.binary()?;
        Ok(Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    }
}

impl Connect {
    pub fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
        let protocol = decode_protocol(r)?;
        let flags = ConnectFlags::decode(r.u8()?, protocol)?;
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            Properties::decode(r, PropertyScope::Connect)?
        } else {
            Properties::default()
        };
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "authentication data without authentication method",
            ));
        }
        let client_id = r.string()?;
        let will = match flags.will {
            Some(will) => Some(Will::decode(r, protocol, will)?),
            None => None,
        };
        let username = if flags.username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if flags.password {
            Some(r.binary()?)
        } else {
            None
        };
        if !r.is_empty() {
            return Err(DecodeError::Malformed("bytes after CONNECT payload"));
        }
        Ok(Connect {
            protocol,
            clean_start: flags.clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    pub fn body_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let name_len = if self.protocol == ProtocolVersion::V31 {
            8
        } else {
            6
        };
        let mut n = name_len + 1 + 1 + 2;
        if v5 {
            n += self.properties.wire_len();
        }
        n += 2 + self.client_id.len();
        if let Some(w) = &self.will {
            if v5 {
                n += w.properties.wire_len();
            }
            n += 2 + w.topic.len() + 2 + w.payload.len();
        }
        n += self.username.as_ref().map_or(0, |u| 2 + u.len());
        n += self.password.as_ref().map_or(0, |p| 2 + p.len());
        n
    }

    pub fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        if self.protocol == ProtocolVersion::V31 {
            put_string(buf, "MQIsdp")?;
        } else {
            put_string(buf, "MQTT")?;
        }
        buf.put_u8(self.protocol.level());
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos.as_u8() << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(buf)?;
        }
        put_string(buf, &self.client_id)?;
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(buf)?;
            }
            put_string(buf, &w.topic)?;
            put_binary(buf, &w.payload)?;
        }
        if let Some(u) = &self.username {
            put_string(buf, u)?;
        }
        if let Some(p) = &self.password {
            put_binary(buf, p)?;
        }
        Ok(())
    }
}

/// CONNACK. `code` is the v5 reason code; for 3.1.1 it is mapped to the
/// return code on encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ReasonCode,
    pub properties: Properties,
}

/// CONNACK reason codes (v5 3.2.2.2 table).
fn valid_v5_connack_code(code: ReasonCode) -> bool {
    matches!(
        code.as_u8(),
        0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

impl ConnAck {
    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::Malformed("CONNACK reserved flags set"));
        }
        let raw = r.u8()?;
        let (code, properties) = if version.is_v5() {
            let code = ReasonCode::from_u8(raw)
                .filter(|c| valid_v5_connack_code(*c))
                .ok_or(DecodeError::Malformed("reason code not allowed in CONNACK"))?;
            (code, Properties::decode(r, PropertyScope::ConnAck)?)
        } else {
            let code = match raw {
                0 => ReasonCode::Success,
                1 => ReasonCode::UnsupportedProtocolVersion,
                2 => ReasonCode::ClientIdentifierNotValid,
                3 => ReasonCode::ServerUnavailable,
                4 => ReasonCode::BadUserNameOrPassword,
                5 => ReasonCode::NotAuthorized,
                _ => return Err(DecodeError::Malformed("unknown CONNACK return code")),
            };
            (code, Properties::default())
        };
        if !r.is_empty() {
            return Err(DecodeError::Malformed("bytes after CONNACK"));
        }
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            code,
            properties,
        })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.wire_len()
        } else {
            2
        }
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            buf.put_u8(self.code.as_u8());
            self.properties.encode(buf)?;
        } else {
            buf.put_u8(self.code.v311_connack_code());
        }
        Ok(())
    }
}
