use bytes::{Bytes, BytesMut};

use super::*;
use crate::error::DecodeError;
use crate::wire::Reader;

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
    let back = Properties::decode(&mut Reader::new(buf.freeze()), PropertyScope::Publish).unwrap();
    assert_eq!(back, p);
}
