//! MQTT 5 properties (spec 2.2.2). One struct for every packet type; which
//! properties a packet may carry is checked on decode against [`PropertyScope`].

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::wire::{put_binary, put_string, put_varint, varint_len, Reader};

/// The packet (or will) a property block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyScope {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// All MQTT 5 properties. Absent means `None`/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    /// Several only in PUBLISH from server to client (one per matching subscription).
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub reason_string: Option<ByteString>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(ByteString, ByteString)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Whether property `pid` may appear in `scope` (spec 2.2.2.2 table).
fn allowed(pid: u8, scope: PropertyScope) -> bool {
    use id::*;
    use PropertyScope::*;
    match pid {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => matches!(scope, Publish | Will),
        SUBSCRIPTION_IDENTIFIER => matches!(scope, Publish | Subscribe),
        SESSION_EXPIRY_INTERVAL => matches!(scope, Connect | ConnAck | Disconnect),
        ASSIGNED_CLIENT_IDENTIFIER
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => scope == ConnAck,
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => matches!(scope, Connect | ConnAck | Auth),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => scope == Connect,
        WILL_DELAY_INTERVAL => scope == Will,
        SERVER_REFERENCE => matches!(scope, ConnAck | Disconnect),
        REASON_STRING => matches!(scope, ConnAck | Ack | SubAck | UnsubAck | Disconnect | Auth),
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => {
            matches!(scope, Connect | ConnAck)
        }
        TOPIC_ALIAS => scope == Publish,
        USER_PROPERTY => true,
        _ => false,
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears twice"));
    }
    *slot = Some(v);
    Ok(())
}

fn zero_or_one(v: u8) -> Result<u8, DecodeError> {
    if v > 1 {
        return Err(DecodeError::Protocol("property value must be 0 or 1"));
    }
    Ok(v)
}

impl Properties {
    /// Reads a property block (length prefix included).
    pub fn decode(r: &mut Reader, scope: PropertyScope) -> Result<Properties, DecodeError> {
        use id::*;
        let len = r.varint()? as usize;
        let mut r = Reader::new(r.take(len)?);
        let mut p = Properties::default();
        while !r.is_empty() {
            // Property identifiers are variable byte integers; all defined ones
            // fit in one byte, so a multi-byte id is unknown and malformed.
            let pid = r.varint()?;
            let pid = u8::try_from(pid).map_err(|_| DecodeError::Malformed("unknown property"))?;
            if !allowed(pid, scope) {
                return Err(DecodeError::Malformed(
                    "property not allowed in this packet",
                ));
            }
            match pid {
                PAYLOAD_FORMAT_INDICATOR => {
                    set_once(&mut p.payload_format_indicator, zero_or_one(r.u8()?)?)?
                }
                MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, r.u32()?)?,
                CONTENT_TYPE => set_once(&mut p.content_type, r.string()?)?,
                RESPONSE_TOPIC => {
                    let t = r.string()?;
                    if t.is_empty() || t.contains(['+', '#']) {
                        return Err(DecodeError::Protocol("response topic must be a topic name"));
                    }
                    set_once(&mut p.response_topic, t)?
                }
                CORRELATION_DATA => set_once(&mut p.correlation_data, r.binary()?)?,
                SUBSCRIPTION_IDENTIFIER => {
                    let v = r.varint()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("subscription identifier 0"));
                    }
                    if scope == PropertyScope::Subscribe && !p.subscription_identifiers.is_empty() {
                        return Err(DecodeError::Protocol("property appears twice"));
                    }
                    p.subscription_identifiers.push(v);
                }
                SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, r.u32()?)?,
                ASSIGNED_CLIENT_IDENTIFIER => {
                    set_once(&mut p.assigned_client_identifier, r.string()?)?
                }
                SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, r.u16()?)?,
                AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r.string()?)?,
                AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r.binary()?)?,
                REQUEST_PROBLEM_INFORMATION => {
                    set_once(&mut p.request_problem_information, zero_or_one(r.u8()?)?)?
                }
                WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, r.u32()?)?,
                REQUEST_RESPONSE_INFORMATION => {
                    set_once(&mut p.request_response_information, zero_or_one(r.u8()?)?)?
                }
                RESPONSE_INFORMATION => set_once(&mut p.response_information, r.string()?)?,
                SERVER_REFERENCE => set_once(&mut p.server_reference, r.string()?)?,
                REASON_STRING => set_once(&mut p.reason_string, r.string()?)?,
                RECEIVE_MAXIMUM => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("receive maximum 0"));
                    }
                    set_once(&mut p.receive_maximum, v)?
                }
                TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r.u16()?)?,
                TOPIC_ALIAS => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::TopicAliasInvalid);
                    }
                    set_once(&mut p.topic_alias, v)?
                }
                MAXIMUM_QOS => set_once(&mut p.maximum_qos, zero_or_one(r.u8()?)?)?,
                RETAIN_AVAILABLE => set_once(&mut p.retain_available, zero_or_one(r.u8()?)?)?,
                USER_PROPERTY => {
                    let k = r.string()?;
                    let v = r.string()?;
                    p.user_properties.push((k, v));
                }
                MAXIMUM_PACKET_SIZE => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("maximum packet size 0"));
                    }
                    set_once(&mut p.maximum_packet_size, v)?
                }
                WILDCARD_SUBSCRIPTION_AVAILABLE => set_once(
                    &mut p.wildcard_subscription_available,
                    zero_or_one(r.u8()?)?,
                )?,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_once(
                    &mut p.subscription_identifier_available,
                    zero_or_one(r.u8()?)?,
                )?,
                SHARED_SUBSCRIPTION_AVAILABLE => {
                    set_once(&mut p.shared_subscription_available, zero_or_one(r.u8()?)?)?
                }
                _ => return Err(DecodeError::Malformed("unknown property")),
            }
        }
        Ok(p)
    }

    /// Length of the encoded properties, without the length prefix.
    pub fn encoded_len(&self) -> usize {
        fn s(v: &Option<ByteString>) -> usize {
            v.as_ref().map_or(0, |x| 3 + x.len())
        }
        fn b(v: &Option<Bytes>) -> usize {
            v.as_ref().map_or(0, |x| 3 + x.len())
        }
        fn n<T>(v: &Option<T>, width: usize) -> usize {
            v.as_ref().map_or(0, |_| 1 + width)
        }
        n(&self.payload_format_indicator, 1)
            + n(&self.message_expiry_interval, 4)
            + s(&self.content_type)
            + s(&self.response_topic)
            + b(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|v| 1 + varint_len(*v))
                .sum::<usize>()
            + n(&self.session_expiry_interval, 4)
            + s(&self.assigned_client_identifier)
            + n(&self.server_keep_alive, 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(&self.request_problem_information, 1)
            + n(&self.will_delay_interval, 4)
            + n(&self.request_response_information, 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(&self.receive_maximum, 2)
            + n(&self.topic_alias_maximum, 2)
            + n(&self.topic_alias, 2)
            + n(&self.maximum_qos, 1)
            + n(&self.retain_available, 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + n(&self.maximum_packet_size, 4)
            + n(&self.wildcard_subscription_available, 1)
            + n(&self.subscription_identifier_available, 1)
            + n(&self.shared_subscription_available, 1)
    }

    /// Length including the variable byte integer prefix.
    pub fn wire_len(&self) -> usize {
        let len = self.encoded_len();
        varint_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
    }

    /// Writes the property block with its length prefix.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        use id::*;
        let len = self.encoded_len();
        put_varint(
            buf,
            u32::try_from(len).map_err(|_| EncodeError::PacketTooLarge(len))?,
        )?;
        let u8p = |buf: &mut BytesMut, pid: u8, v: Option<u8>| {
            if let Some(v) = v {
                buf.put_u8(pid);
                buf.put_u8(v);
            }
        };
        let u16p = |buf: &mut BytesMut, pid: u8, v: Option<u16>| {
            if let Some(v) = v {
                buf.put_u8(pid);
                buf.put_u16(v);
            }
        };
        let u32p = |buf: &mut BytesMut, pid: u8, v: Option<u32>| {
            if let Some(v) = v {
                buf.put_u8(pid);
                buf.put_u32(v);
            }
        };
        fn sp(buf: &mut BytesMut, pid: u8, v: &Option<ByteString>) -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(pid);
                put_string(buf, v)?;
            }
            Ok(())
        }
        fn bp(buf: &mut BytesMut, pid: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(pid);
                put_binary(buf, v)?;
            }
            Ok(())
        }
        u8p(buf, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        u32p(buf, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        sp(buf, CONTENT_TYPE, &self.content_type)?;
        sp(buf, RESPONSE_TOPIC, &self.response_topic)?;
        bp(buf, CORRELATION_DATA, &self.correlation_data)?;
        for v in &self.subscription_identifiers {
            buf.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(buf, *v)?;
        }
        u32p(buf, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        sp(
            buf,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        u16p(buf, SERVER_KEEP_ALIVE, self.server_keep_alive);
        sp(buf, AUTHENTICATION_METHOD, &self.authentication_method)?;
        bp(buf, AUTHENTICATION_DATA, &self.authentication_data)?;
        u8p(
            buf,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        u32p(buf, WILL_DELAY_INTERVAL, self.will_delay_interval);
        u8p(
            buf,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        sp(buf, RESPONSE_INFORMATION, &self.response_information)?;
        sp(buf, SERVER_REFERENCE, &self.server_reference)?;
        sp(buf, REASON_STRING, &self.reason_string)?;
        u16p(buf, RECEIVE_MAXIMUM, self.receive_maximum);
        u16p(buf, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        u16p(buf, TOPIC_ALIAS, self.topic_alias);
        u8p(buf, MAXIMUM_QOS, self.maximum_qos);
        u8p(buf, RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            buf.put_u8(USER_PROPERTY);
            put_string(buf, k)?;
            put_string(buf, v)?;
        }
        u32p(buf, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        u8p(
            buf,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        u8p(
            buf,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        u8p(
            buf,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.encoded_len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &'static [u8], scope: PropertyScope) -> Result<Properties, DecodeError> {
        Properties::decode(&mut Reader::new(Bytes::from_static(bytes)), scope)
    }

    #[test]
    fn duplicate_property_is_a_protocol_error() {
        let r = decode(&[6, 0x02, 0, 0, 0, 1, 0x01], PropertyScope::Publish);
        assert!(r.is_err());
        let r = decode(
            &[10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2],
            PropertyScope::Publish,
        );
        assert_eq!(r, Err(DecodeError::Protocol("property appears twice")));
    }

    #[test]
    fn subscription_identifier_zero_is_refused() {
        assert_eq!(
            decode(&[2, 0x0B, 0], PropertyScope::Subscribe),
            Err(DecodeError::Protocol("subscription identifier 0"))
        );
    }

    #[test]
    fn topic_alias_zero_is_refused() {
        assert_eq!(
            decode(&[3, 0x23, 0, 0], PropertyScope::Publish),
            Err(DecodeError::TopicAliasInvalid)
        );
    }

    #[test]
    fn property_outside_its_packet_is_malformed() {
        assert!(matches!(
            decode(&[3, 0x23, 0, 1], PropertyScope::Connect),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let p = Properties {
            message_expiry_interval: Some(30),
            content_type: Some("application/json".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            subscription_identifiers: vec![1, 300],
            topic_alias: Some(4),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            payload_format_indicator: Some(1),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        p.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), p.wire_len());
        let back =
            Properties::decode(&mut Reader::new(buf.freeze()), PropertyScope::Publish).unwrap();
        assert_eq!(back, p);
    }
}
