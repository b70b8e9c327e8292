//! Copies of decoded values that own their bytes.
//!
//! Decoding is zero-copy: strings and binary fields are slices of the
//! received packet, and a slice keeps the whole allocation it points into
//! alive (the packet, and whatever else was read into the same buffer). That
//! is right for a value that dies with its packet, and wrong for one kept
//! beyond it: a 10-byte topic filter kept from a 1 MB SUBSCRIBE pinned the
//! whole megabyte for the life of the subscription (issue 17). So every
//! place that stores a decoded value past its packet's life (subscriptions,
//! client ids, user names, topic aliases, wills, retained messages) takes a
//! copy from here. The publish path itself copies nothing: a message's
//! payload may go on sharing its own packet's buffer while it is delivered
//! or queued; `decode_packet` makes sure that buffer holds no large packet
//! besides it.

use bytes::Bytes;
use bytestring::ByteString;

use super::connect::Will;
use super::properties::Properties;

/// A copy of `s` in an allocation of its own, exactly its size.
pub fn owned_string(s: &str) -> ByteString {
    ByteString::from(s)
}

/// A copy of `b` in an allocation of its own, exactly its size.
pub fn owned_bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn owned_opt_string(s: &Option<ByteString>) -> Option<ByteString> {
    s.as_deref().map(owned_string)
}

fn owned_opt_bytes(b: &Option<Bytes>) -> Option<Bytes> {
    b.as_deref().map(owned_bytes)
}

impl Properties {
    /// These properties with every string and binary value copied out of
    /// the packet they were decoded from.
    pub fn detached(&self) -> Properties {
        // Destructured in full: a new string property cannot be forgotten here.
        let Properties {
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            session_expiry_interval,
            assigned_client_identifier,
            server_keep_alive,
            authentication_method,
            authentication_data,
            request_problem_information,
            will_delay_interval,
            request_response_information,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            topic_alias,
            maximum_qos,
            retain_available,
            user_properties,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available,
        } = self;
        Properties {
            payload_format_indicator: *payload_format_indicator,
            message_expiry_interval: *message_expiry_interval,
            content_type: owned_opt_string(content_type),
            response_topic: owned_opt_string(response_topic),
            correlation_data: owned_opt_bytes(correlation_data),
            subscription_identifiers: subscription_identifiers.clone(),
            session_expiry_interval: *session_expiry_interval,
            assigned_client_identifier: owned_opt_string(assigned_client_identifier),
            server_keep_alive: *server_keep_alive,
            authentication_method: owned_opt_string(authentication_method),
            authentication_data: owned_opt_bytes(authentication_data),
            request_problem_information: *request_problem_information,
            will_delay_interval: *will_delay_interval,
            request_response_information: *request_response_information,
            response_information: owned_opt_string(response_information),
            server_reference: owned_opt_string(server_reference),
            reason_string: owned_opt_string(reason_string),
            receive_maximum: *receive_maximum,
            topic_alias_maximum: *topic_alias_maximum,
            topic_alias: *topic_alias,
            maximum_qos: *maximum_qos,
            retain_available: *retain_available,
            user_properties: user_properties
                .iter()
                .map(|(k, v)| (owned_string(k), owned_string(v)))
                .collect(),
            maximum_packet_size: *maximum_packet_size,
            wildcard_subscription_available: *wildcard_subscription_available,
            subscription_identifier_available: *subscription_identifier_available,
            shared_subscription_available: *shared_subscription_available,
        }
    }
}

impl Will {
    /// This will with its topic, payload and properties copied out of the
    /// CONNECT: a session keeps its will for as long as it lives, and the
    /// CONNECT may be far larger (user properties, a password).
    pub fn detached(&self) -> Will {
        Will {
            topic: owned_string(&self.topic),
            payload: owned_bytes(&self.payload),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.detached(),
        }
    }
}

/// Whether `value` lies inside `buffer` (the pointer range of a receive
/// buffer, taken before decoding): a value that does still shares, and
/// pins, that allocation. For tests.
#[cfg(test)]
pub fn shares(value: &[u8], buffer: &std::ops::Range<*const u8>) -> bool {
    !value.is_empty() && buffer.contains(&value.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_packet, encode_packet, Connect, Packet, ProtocolVersion, QoS};
    use bytes::BytesMut;

    #[test]
    fn a_detached_will_shares_nothing_with_its_connect() {
        let mut properties = Properties::default();
        properties.user_properties.push(("k".into(), "v".into()));
        properties.content_type = Some("text/plain".into());
        properties.correlation_data = Some(Bytes::from_static(b"corr"));
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::default(),
            client_id: "c".into(),
            will: Some(Will {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties,
            }),
            username: None,
            password: None,
        };
        let mut wire = BytesMut::new();
        encode_packet(
            &Packet::Connect(Box::new(connect)),
            ProtocolVersion::V5,
            &mut wire,
        )
        .expect("encode");
        let frame = wire.as_ptr_range();
        let Some(Packet::Connect(decoded)) =
            decode_packet(&mut wire, None, 1 << 20).expect("decode")
        else {
            panic!("not a CONNECT");
        };
        let will = decoded.will.as_ref().expect("will");
        let shared_parts = |w: &Will| -> usize {
            let p = &w.properties;
            let (k, v) = &p.user_properties[0];
            [
                w.topic.as_bytes(),
                &w.payload[..],
                k.as_bytes(),
                v.as_bytes(),
                p.content_type.as_deref().unwrap_or_default().as_bytes(),
                p.correlation_data.as_deref().unwrap_or_default(),
            ]
            .iter()
            .filter(|part| shares(part, &frame))
            .count()
        };
        // Decoded zero-copy, every part points into the packet...
        assert_eq!(shared_parts(will), 6);
        // ...and the detached copy into none of it.
        let detached = will.detached();
        assert_eq!(&detached, will);
        assert_eq!(shared_parts(&detached), 0);
    }
}
