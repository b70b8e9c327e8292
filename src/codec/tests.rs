//! Codec round trips and malformed-packet classes, by packet type.

use bytes::{Bytes, BytesMut};

use super::*;

fn round_trip(p: Packet, v: ProtocolVersion) {
    let mut buf = BytesMut::new();
    let n = encode_packet(&p, v, &mut buf).unwrap();
    assert_eq!(n, encoded_len(&p, v));
    let version = if matches!(p, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let back = decode_packet(&mut buf, version, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(back, p);
    assert!(buf.is_empty());
}

fn decode_bytes(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode_packet(&mut buf, v, 1 << 20)
}

const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V311);

#[test]
fn publish_round_trips_in_both_versions() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        round_trip(
            Packet::Publish(Publish {
                dup: true,
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: PacketId::new(7),
                properties: if v.is_v5() {
                    Properties {
                        message_expiry_interval: Some(5),
                        ..Default::default()
                    }
                } else {
                    Properties::default()
                },
                payload: Bytes::from_static(b"hello"),
            }),
            v,
        );
    }
}

#[test]
fn v5_disconnect_short_forms_are_accepted() {
    assert_eq!(
        decode_bytes(&[0xe0, 0x00], V5).unwrap(),
        Some(Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
    );
    assert_eq!(
        decode_bytes(&[0xe0, 0x01, 0x8e], V5).unwrap(),
        Some(Packet::Disconnect(Disconnect::new(
            ReasonCode::SessionTakenOver
        )))
    );
}

#[test]
fn oversized_packet_is_refused_from_the_fixed_header() {
    // Remaining length 1000, only 2 bytes present: refused without waiting.
    let mut buf = BytesMut::from(&[0x30, 0xe8, 0x07][..]);
    assert_eq!(
        decode_packet(&mut buf, V4, 100),
        Err(DecodeError::PacketTooLarge {
            size: 1003,
            max: 100
        })
    );
}

#[test]
fn partial_packet_is_none_not_error() {
    assert_eq!(decode_bytes(&[0x30, 0x05, 0x00], V4).unwrap(), None);
    assert_eq!(decode_bytes(&[0x30], V4).unwrap(), None);
}
