//! Codec round trips and malformed-packet classes, by packet type.
//!
//! Each module covers one spec area: valid packets must survive
//! encode → decode unchanged in every version that has them, and each class
//! of malformed input must be refused with the reason code the server sends
//! (0x81 malformed, 0x82 protocol error, 0x84, 0x90, 0x94, 0x95).

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::*;

const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V311);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

/// Encodes, checks `encoded_len`, decodes and compares; CONNECT is decoded
/// as the first packet of a connection (version unknown).
#[track_caller]
fn round_trip(p: Packet, v: ProtocolVersion) {
    let back = reencode(&p, v);
    assert_eq!(back, p, "{} did not survive a {v:?} round trip", p.name());
}

/// Encodes and decodes without comparing, for packets whose encoding is lossy
/// on purpose (3.1.1 drops v5-only fields).
#[track_caller]
fn reencode(p: &Packet, v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::new();
    let n = encode_packet(p, v, &mut buf).unwrap();
    assert_eq!(n, buf.len());
    assert_eq!(n, encoded_len(p, v));
    let version = if matches!(p, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let back = decode_packet(&mut buf, version, usize::MAX)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    back
}

fn decode_bytes(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode_packet(&mut buf, v, 1 << 20)
}

/// Decodes one whole packet that must be valid.
#[track_caller]
fn decode_ok(bytes: &[u8], v: Option<ProtocolVersion>) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let p = decode_packet(&mut buf, v, 1 << 20)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    p
}

/// Asserts that `bytes` is refused with `code` and returns the error.
#[track_caller]
fn rejected(bytes: &[u8], v: Option<ProtocolVersion>, code: ReasonCode) -> DecodeError {
    match decode_bytes(bytes, v) {
        Ok(p) => panic!("expected {code:?}, decoded {p:?}"),
        Err(e) => {
            assert_eq!(e.reason_code(), code, "wrong reason code for: {e}");
            e
        }
    }
}

/// A packet: first byte, minimal remaining length, body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
fn s(x: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(x.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

/// A property block (length prefix plus the properties).
fn props(p: &[u8]) -> Vec<u8> {
    assert!(p.len() < 128);
    let mut v = vec![p.len() as u8];
    v.extend_from_slice(p);
    v
}

fn v5_props(v: ProtocolVersion, p: Properties) -> Properties {
    if v.is_v5() {
        p
    } else {
        Properties::default()
    }
}

fn qos0_publish(topic: ByteString, payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic,
        packet_id: None,
        properties: Properties::default(),
        payload,
    })
}

fn user(k: &str, v: &str) -> (ByteString, ByteString) {
    (k.into(), v.into())
}

mod framing {
    use super::*;

    /// A small packet read right after a large one is decoded from an
    /// allocation of its own, so keeping it does not keep the large one.
    #[test]
    fn a_packet_after_a_large_one_does_not_share_its_buffer() {
        use crate::owned::shares;
        let mut wire = BytesMut::new();
        for (topic, payload) in [("big", vec![0; 20_000]), ("small", vec![1])] {
            let p = qos0_publish(topic.into(), payload.into());
            encode_packet(&p, ProtocolVersion::V311, &mut wire).expect("encode");
        }
        let frame = wire.as_ptr_range();
        let mut decoded = Vec::new();
        while let Some(Packet::Publish(p)) = decode_packet(&mut wire, V4, 1 << 20).expect("decode")
        {
            decoded.push(p);
        }
        assert_eq!(decoded.len(), 2);
        assert!(
            shares(&decoded[0].payload, &frame),
            "the large one is zero-copy"
        );
        assert!(!shares(&decoded[1].payload, &frame));
        assert!(!shares(decoded[1].topic.as_bytes(), &frame));
    }

    #[test]
    fn partial_packets_are_none_and_consume_nothing() {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b".into(),
            packet_id: Some(pid(9)),
            properties: Properties::default(),
            payload: Bytes::from(vec![7u8; 300]),
        });
        let mut full = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V311, &mut full).unwrap();
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(
                decode_packet(&mut buf, V4, 1 << 20),
                Ok(None),
                "prefix of {cut} bytes"
            );
            assert_eq!(&buf[..], &full[..cut], "prefix of {cut} bytes was consumed");
        }
        let mut buf = full.clone();
        assert_eq!(decode_packet(&mut buf, V4, 1 << 20).unwrap(), Some(p));
    }

    #[test]
    fn partial_connect_is_none_before_the_version_is_known() {
        let bytes = frame(0x10, &[s(b"MQTT"), vec![4, 0x02, 0, 60], s(b"c")].concat());
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_bytes(&bytes[..cut], None),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn several_packets_in_one_buffer_decode_in_order() {
        let connect = Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::default(),
            client_id: "dev-1".into(),
            will: None,
            username: None,
            password: None,
        }));
        let rest = [
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                filters: vec![("a/#".into(), SubscriptionOptions::default())],
            }),
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: None,
                properties: Properties::default(),
                payload: Bytes::from_static(b"x"),
            }),
            Packet::PingReq,
            Packet::PubAck(Ack::new(pid(4))),
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        ];
        let v = ProtocolVersion::V5;
        let mut buf = BytesMut::new();
        encode_packet(&connect, v, &mut buf).unwrap();
        for p in &rest {
            encode_packet(p, v, &mut buf).unwrap();
        }
        // A trailing partial packet stays in the buffer.
        buf.extend_from_slice(&[0x30, 0x05, 0x00]);

        assert_eq!(
            decode_packet(&mut buf, None, 1 << 20).unwrap(),
            Some(connect)
        );
        for p in rest {
            assert_eq!(decode_packet(&mut buf, V5, 1 << 20).unwrap(), Some(p));
        }
        assert_eq!(decode_packet(&mut buf, V5, 1 << 20).unwrap(), None);
        assert_eq!(&buf[..], &[0x30, 0x05, 0x00]);
    }

    #[test]
    fn oversized_packet_is_refused_from_the_fixed_header() {
        // Remaining length 1000, only the fixed header present: refused
        // without waiting for (or buffering) the body.
        let mut buf = BytesMut::from(&[0x30, 0xe8, 0x07][..]);
        assert_eq!(
            decode_packet(&mut buf, V4, 100),
            Err(DecodeError::PacketTooLarge {
                size: 1003,
                max: 100
            })
        );
        assert_eq!(
            DecodeError::PacketTooLarge {
                size: 1003,
                max: 100
            }
            .reason_code(),
            ReasonCode::PacketTooLarge
        );
        // The same for a CONNECT, before any version is known.
        let mut buf = BytesMut::from(&[0x10, 0xe8, 0x07][..]);
        assert!(matches!(
            decode_packet(&mut buf, None, 100),
            Err(DecodeError::PacketTooLarge { .. })
        ));
    }

    #[test]
    fn an_announced_size_is_not_allocated_before_the_bytes_arrive() {
        // A header announcing 100 MB, under a 200 MB limit.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0xc2, 0xd7, 0x2f][..]);
        assert_eq!(decode_packet(&mut buf, V4, 200 << 20), Ok(None));
        assert!(
            buf.capacity() < 1 << 20,
            "reserved {} bytes",
            buf.capacity()
        );
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn packet_size_limit_counts_the_fixed_header() {
        let bytes = frame(0x30, &[s(b"t"), b"12345".to_vec()].concat());
        assert_eq!(bytes.len(), 10);
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(decode_packet(&mut buf, V4, 10).unwrap().is_some());
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            decode_packet(&mut buf, V4, 9),
            Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
        );
    }

    #[test]
    fn non_minimal_remaining_length_is_malformed() {
        // 0 encoded in two bytes, and 2 encoded in two bytes.
        rejected(&[0xc0, 0x80, 0x00], V4, ReasonCode::MalformedPacket);
        rejected(&[0xe0, 0x82, 0x00, 0, 0], V5, ReasonCode::MalformedPacket);
        rejected(&[0x30, 0x80, 0x80, 0x00], V4, ReasonCode::MalformedPacket);
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        rejected(
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &[0x30, 0x80, 0x80, 0x80, 0x80],
            V5,
            ReasonCode::MalformedPacket,
        );
        // Four continuation bytes are refused even before a fifth arrives.
        rejected(
            &[0x30, 0x80, 0x80, 0x80, 0x80],
            None,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn incomplete_remaining_length_waits() {
        assert_eq!(decode_bytes(&[0x30, 0x80], V4), Ok(None));
        assert_eq!(decode_bytes(&[0x30, 0xff, 0xff, 0xff], V4), Ok(None));
        assert_eq!(decode_bytes(&[], V4), Ok(None));
    }

    #[test]
    fn largest_remaining_length_is_accepted_by_the_frame_reader() {
        // 268_435_455 in four bytes: valid framing, so only the size limit stops it.
        assert_eq!(
            decode_bytes(&[0x30, 0xff, 0xff, 0xff, 0x7f], V4),
            Err(DecodeError::PacketTooLarge {
                size: 268_435_460,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn reserved_packet_type_zero_is_malformed() {
        rejected(&[0x00, 0x00], V4, ReasonCode::MalformedPacket);
        rejected(&[0x00, 0x00], V5, ReasonCode::MalformedPacket);
        // Before CONNECT, anything that is not CONNECT is a protocol error.
        rejected(&[0x00, 0x00], None, ReasonCode::ProtocolError);
    }

    #[test]
    fn auth_is_a_reserved_type_in_v311() {
        let e = rejected(&[0xf0, 0x00], V4, ReasonCode::MalformedPacket);
        assert_eq!(e, DecodeError::Malformed("reserved packet type"));
        assert_eq!(
            decode_ok(&[0xf0, 0x00], V5),
            Packet::Auth(Auth {
                reason: ReasonCode::Success,
                properties: Properties::default()
            })
        );
    }

    #[test]
    fn first_packet_must_be_connect() {
        for bytes in [
            frame(0xc0, &[]),
            frame(0x30, &[s(b"a"), b"x".to_vec()].concat()),
            frame(0xe0, &[]),
        ] {
            let e = rejected(&bytes, None, ReasonCode::ProtocolError);
            assert_eq!(e, DecodeError::Protocol("first packet is not CONNECT"));
        }
        // Refused from the fixed header alone: no need to buffer the body.
        rejected(&[0x30, 0x7f], None, ReasonCode::ProtocolError);
    }

    #[test]
    fn second_connect_is_a_protocol_error() {
        let bytes = frame(0x10, &[s(b"MQTT"), vec![4, 0x02, 0, 60], s(b"c")].concat());
        assert!(matches!(decode_ok(&bytes, None), Packet::Connect(_)));
        for v in [V4, V5] {
            let e = rejected(&bytes, v, ReasonCode::ProtocolError);
            assert_eq!(e, DecodeError::Protocol("second CONNECT"));
        }
    }

    /// (first byte with wrong flags, first byte with right flags, 3.1.1 body, v5 body)
    fn flag_cases() -> Vec<(u8, u8, Vec<u8>, Vec<u8>)> {
        let pid = vec![0, 1];
        let sub4 = [pid.clone(), s(b"a"), vec![0]].concat();
        let sub5 = [pid.clone(), vec![0], s(b"a"), vec![0]].concat();
        let unsub4 = [pid.clone(), s(b"a")].concat();
        let unsub5 = [pid.clone(), vec![0], s(b"a")].concat();
        vec![
            (0x21, 0x20, vec![0, 0], vec![0, 0, 0]),
            (0x41, 0x40, pid.clone(), pid.clone()),
            (0x48, 0x40, pid.clone(), pid.clone()),
            (0x52, 0x50, pid.clone(), pid.clone()),
            // PUBREL, SUBSCRIBE and UNSUBSCRIBE must carry 0b0010.
            (0x60, 0x62, pid.clone(), pid.clone()),
            (0x63, 0x62, pid.clone(), pid.clone()),
            (0x6a, 0x62, pid.clone(), pid.clone()),
            (0x72, 0x70, pid.clone(), pid.clone()),
            (0x80, 0x82, sub4.clone(), sub5.clone()),
            (0x83, 0x82, sub4.clone(), sub5.clone()),
            (0x8a, 0x82, sub4, sub5),
            (0x92, 0x90, vec![0, 1, 0], vec![0, 1, 0, 0]),
            (0xa0, 0xa2, unsub4.clone(), unsub5.clone()),
            (0xa3, 0xa2, unsub4, unsub5),
            (0xb2, 0xb0, pid.clone(), vec![0, 1, 0, 0]),
            (0xc1, 0xc0, vec![], vec![]),
            (0xc8, 0xc0, vec![], vec![]),
            (0xd2, 0xd0, vec![], vec![]),
            (0xe2, 0xe0, vec![], vec![]),
        ]
    }

    #[test]
    fn reserved_fixed_header_flags_are_malformed() {
        for (bad, good, body4, body5) in flag_cases() {
            for (v, body) in [(V4, &body4), (V5, &body5)] {
                decode_ok(&frame(good, body), v);
                let e = rejected(&frame(bad, body), v, ReasonCode::MalformedPacket);
                assert_eq!(
                    e,
                    DecodeError::Malformed("reserved fixed header flags"),
                    "{bad:#04x} in {v:?}"
                );
            }
        }
        // CONNECT and AUTH too.
        let connect = [s(b"MQTT"), vec![4, 0x02, 0, 60], s(b"c")].concat();
        rejected(&frame(0x11, &connect), None, ReasonCode::MalformedPacket);
        rejected(&frame(0xf1, &[]), V5, ReasonCode::MalformedPacket);
    }
}

mod connect {
    use super::*;

    fn v311_frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        frame(
            0x10,
            &[s(b"MQTT"), vec![4, flags, 0, 60], payload.to_vec()].concat(),
        )
    }

    fn v5_frame(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
        frame(
            0x10,
            &[
                s(b"MQTT"),
                vec![5, flags, 0, 60],
                props(properties),
                payload.to_vec(),
            ]
            .concat(),
        )
    }

    fn minimal(protocol: ProtocolVersion) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: "client-1".into(),
            will: None,
            username: None,
            password: None,
        }
    }

    #[test]
    fn minimal_connect_round_trips_in_every_version() {
        for v in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            round_trip(Packet::Connect(Box::new(minimal(v))), v);
            let mut c = minimal(v);
            c.clean_start = false;
            c.keep_alive = 0;
            c.client_id = "".into();
            round_trip(Packet::Connect(Box::new(c)), v);
        }
    }

    #[test]
    fn connect_with_will_username_and_binary_password_round_trips() {
        for v in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            for (qos, retain) in [
                (QoS::AtMostOnce, false),
                (QoS::AtLeastOnce, true),
                (QoS::ExactlyOnce, false),
            ] {
                let c = Connect {
                    will: Some(Will {
                        topic: "devices/1/status".into(),
                        payload: Bytes::from_static(b"\x00offline\xff"),
                        qos,
                        retain,
                        properties: Properties::default(),
                    }),
                    username: Some("user".into()),
                    // Not UTF-8 on purpose: passwords are binary data.
                    password: Some(Bytes::from_static(&[0xff, 0x00, 0xc3, 0x28])),
                    ..minimal(v)
                };
                round_trip(Packet::Connect(Box::new(c)), v);
            }
        }
    }

    #[test]
    fn v5_connect_with_every_property_round_trips() {
        let c = Connect {
            properties: Properties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                maximum_packet_size: Some(65_536),
                topic_alias_maximum: Some(10),
                request_response_information: Some(1),
                request_problem_information: Some(0),
                user_properties: vec![user("a", "1"), user("a", "2"), user("", "")],
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"\x01\x02")),
                ..Default::default()
            },
            will: Some(Will {
                topic: "w".into(),
                payload: Bytes::new(),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: Properties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("reply/to".into()),
                    correlation_data: Some(Bytes::from_static(b"\xde\xad")),
                    user_properties: vec![user("k", "v")],
                    ..Default::default()
                },
            }),
            username: Some("u".into()),
            password: Some(Bytes::new()),
            ..minimal(ProtocolVersion::V5)
        };
        round_trip(Packet::Connect(Box::new(c)), ProtocolVersion::V5);
    }

    #[test]
    fn decodes_the_version_from_the_packet() {
        let p = decode_ok(&v311_frame(0x02, &s(b"c")), None);
        let Packet::Connect(c) = p else {
            panic!("{p:?}")
        };
        assert_eq!(c.protocol, ProtocolVersion::V311);
        assert_eq!(c.client_id, "c");
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 60);

        let p = decode_ok(
            &frame(0x10, &[s(b"MQIsdp"), vec![3, 0, 0, 10], s(b"old")].concat()),
            None,
        );
        let Packet::Connect(c) = p else {
            panic!("{p:?}")
        };
        assert_eq!(c.protocol, ProtocolVersion::V31);

        let p = decode_ok(&v5_frame(0x00, &[], &s(b"c")), None);
        let Packet::Connect(c) = p else {
            panic!("{p:?}")
        };
        assert_eq!(c.protocol, ProtocolVersion::V5);
    }

    #[test]
    fn reserved_connect_flag_is_malformed() {
        rejected(
            &v311_frame(0x03, &s(b"c")),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v5_frame(0x01, &[], &s(b"c")),
            None,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn will_qos_or_retain_without_will_flag_is_malformed() {
        for flags in [0x02 | 0x08, 0x02 | 0x10, 0x02 | 0x18, 0x02 | 0x20] {
            rejected(
                &v311_frame(flags, &s(b"c")),
                None,
                ReasonCode::MalformedPacket,
            );
            rejected(
                &v5_frame(flags, &[], &s(b"c")),
                None,
                ReasonCode::MalformedPacket,
            );
        }
    }

    #[test]
    fn will_qos_3_is_malformed() {
        let payload = [s(b"c"), s(b"w"), s(b"bye")].concat();
        rejected(
            &v311_frame(0x04 | 0x18, &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        let payload = [s(b"c"), vec![0], s(b"w"), s(b"bye")].concat();
        rejected(
            &v5_frame(0x04 | 0x18, &[], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn will_topic_must_be_a_valid_topic_name() {
        for topic in [&b"a/+"[..], b"#"] {
            let payload = [s(b"c"), s(topic), s(b"bye")].concat();
            let e = rejected(
                &v311_frame(0x04, &payload),
                None,
                ReasonCode::TopicNameInvalid,
            );
            assert!(matches!(e, DecodeError::TopicNameInvalid(_)));
        }
        let payload = [s(b"c"), s(b""), s(b"bye")].concat();
        rejected(
            &v311_frame(0x04, &payload),
            None,
            ReasonCode::TopicNameInvalid,
        );
    }

    #[test]
    fn password_without_username_is_malformed_in_v311_only() {
        let payload = [s(b"c"), s(b"secret")].concat();
        rejected(
            &v311_frame(0x40, &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        let old = frame(
            0x10,
            &[s(b"MQIsdp"), vec![3, 0x40, 0, 10], payload.clone()].concat(),
        );
        rejected(&old, None, ReasonCode::MalformedPacket);

        let Packet::Connect(c) = decode_ok(&v5_frame(0x40, &[], &payload), None) else {
            panic!()
        };
        assert_eq!(c.username, None);
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        round_trip(Packet::Connect(c), ProtocolVersion::V5);
    }

    #[test]
    fn unsupported_protocol_level_is_reported_as_such() {
        for (name, level) in [
            (&b"MQTT"[..], 3),
            (b"MQTT", 6),
            (b"MQTT", 0),
            (b"MQTT", 255),
            (b"MQIsdp", 4),
        ] {
            let bytes = frame(0x10, &[s(name), vec![level, 0x02, 0, 60], s(b"c")].concat());
            let e = rejected(&bytes, None, ReasonCode::UnsupportedProtocolVersion);
            assert_eq!(e, DecodeError::UnsupportedProtocolVersion(level));
        }
    }

    #[test]
    fn wrong_protocol_name_is_a_protocol_error() {
        for name in [&b"MQTX"[..], b"mqtt", b"", b"MQTT ", b"MQIsdp3"] {
            let bytes = frame(0x10, &[s(name), vec![4, 0x02, 0, 60], s(b"c")].concat());
            rejected(&bytes, None, ReasonCode::ProtocolError);
        }
        // Not even a string.
        rejected(
            &frame(0x10, &[0x00, 0x04, 0xff, 0xfe, 0xfd, 0xfc, 4, 2, 0, 60]),
            None,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn truncated_or_padded_connect_is_malformed() {
        let good = v311_frame(0x02, &s(b"c"));
        assert!(decode_bytes(&good, None).unwrap().is_some());
        let body = &good[2..];
        for cut in 0..body.len() {
            rejected(
                &frame(0x10, &body[..cut]),
                None,
                ReasonCode::MalformedPacket,
            );
        }
        rejected(
            &frame(0x10, &[body, &[0][..]].concat()),
            None,
            ReasonCode::MalformedPacket,
        );
        // Username flag with no username.
        rejected(
            &v311_frame(0x82, &s(b"c")),
            None,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn client_id_and_username_must_be_valid_utf8_without_nul() {
        rejected(
            &v311_frame(0x02, &s(b"a\0b")),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v311_frame(0x02, &s(&[0xc3, 0x28])),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v311_frame(0x82, &[s(b"c"), s(&[0xff])].concat()),
            None,
            ReasonCode::MalformedPacket,
        );
        // The password is binary and may hold anything.
        decode_ok(
            &v311_frame(0xc2, &[s(b"c"), s(b"u"), s(&[0, 0xff])].concat()),
            None,
        );
    }

    #[test]
    fn v5_connect_properties_are_validated() {
        let payload = s(b"c");
        // Topic alias is a PUBLISH property.
        rejected(
            &v5_frame(0, &[0x23, 0, 1], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        // Will delay interval belongs in the will properties.
        rejected(
            &v5_frame(0, &[0x18, 0, 0, 0, 1], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v5_frame(0, &[0x21, 0, 0], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        rejected(
            &v5_frame(0, &[0x27, 0, 0, 0, 0], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        rejected(
            &v5_frame(0, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        rejected(
            &v5_frame(0, &[0x17, 2], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        rejected(
            &v5_frame(0, &[0x19, 2], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        // Authentication data needs an authentication method (3.1.2.11.10).
        let e = rejected(
            &v5_frame(0, &[0x16, 0, 1, 0xaa], &payload),
            None,
            ReasonCode::ProtocolError,
        );
        assert_eq!(
            e,
            DecodeError::Protocol("authentication data without authentication method")
        );
        decode_ok(
            &v5_frame(
                0,
                &[&[0x15][..], &s(b"m")[..], &[0x16, 0, 1, 0xaa][..]].concat(),
                &payload,
            ),
            None,
        );
        // Unknown property identifiers.
        rejected(
            &v5_frame(0, &[0x7f, 0], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v5_frame(0, &[0x00], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v5_frame(0, &[0x81, 0x01, 0], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        // A property block longer than the packet.
        let bytes = frame(
            0x10,
            &[s(b"MQTT"), vec![5, 0, 0, 60, 20, 0x11, 0, 0, 0, 1]].concat(),
        );
        rejected(&bytes, None, ReasonCode::MalformedPacket);
        // A property cut in the middle of its value.
        rejected(
            &v5_frame(0, &[0x11, 0, 0], &payload),
            None,
            ReasonCode::MalformedPacket,
        );
        // The property length is mandatory in v5.
        let bytes = frame(0x10, &[s(b"MQTT"), vec![5, 0, 0, 60]].concat());
        rejected(&bytes, None, ReasonCode::MalformedPacket);
    }

    #[test]
    fn v5_will_properties_are_validated() {
        let will = |p: &[u8]| [s(b"c"), props(p), s(b"w"), s(b"bye")].concat();
        decode_ok(&v5_frame(0x04, &[], &will(&[0x18, 0, 0, 0, 9])), None);
        // Session expiry is a CONNECT property, not a will property.
        rejected(
            &v5_frame(0x04, &[], &will(&[0x11, 0, 0, 0, 9])),
            None,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &v5_frame(0x04, &[], &will(&[0x18, 0, 0, 0, 9, 0x18, 0, 0, 0, 9])),
            None,
            ReasonCode::ProtocolError,
        );
        rejected(
            &v5_frame(0x04, &[], &will(&[0x01, 2])),
            None,
            ReasonCode::ProtocolError,
        );
        let bad_response = [&[0x08][..], &s(b"r/+")[..]].concat();
        rejected(
            &v5_frame(0x04, &[], &will(&bad_response)),
            None,
            ReasonCode::ProtocolError,
        );
    }
}

mod connack {
    use super::*;

    #[test]
    fn v311_connack_round_trips_every_return_code() {
        for code in [
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ] {
            for session_present in [false, true] {
                round_trip(
                    Packet::ConnAck(ConnAck {
                        session_present,
                        code,
                        properties: Properties::default(),
                    }),
                    ProtocolVersion::V311,
                );
            }
        }
    }

    #[test]
    fn v5_reason_codes_map_to_v311_return_codes() {
        for (code, byte) in [
            (ReasonCode::Banned, 5),
            (ReasonCode::BadAuthenticationMethod, 4),
            (ReasonCode::ServerBusy, 3),
            (ReasonCode::UnspecifiedError, 3),
            (ReasonCode::UnsupportedProtocolVersion, 1),
        ] {
            let p = Packet::ConnAck(ConnAck {
                session_present: false,
                code,
                properties: Properties::default(),
            });
            let mut buf = BytesMut::new();
            encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
            assert_eq!(&buf[..], &[0x20, 2, 0, byte], "{code:?}");
        }
    }

    #[test]
    fn v5_connack_with_every_property_round_trips() {
        let properties = Properties {
            session_expiry_interval: Some(0),
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(0),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some("auto-123".into()),
            topic_alias_maximum: Some(16),
            reason_string: Some("welcome".into()),
            user_properties: vec![user("region", "eu")],
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(1),
            shared_subscription_available: Some(0),
            server_keep_alive: Some(30),
            response_information: Some("resp/".into()),
            server_reference: Some("other:1883".into()),
            authentication_method: Some("PLAIN".into()),
            authentication_data: Some(Bytes::from_static(b"\x00")),
            ..Default::default()
        };
        round_trip(
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ReasonCode::Success,
                properties,
            }),
            ProtocolVersion::V5,
        );
        for code in [
            ReasonCode::NotAuthorized,
            ReasonCode::UseAnotherServer,
            ReasonCode::QuotaExceeded,
        ] {
            round_trip(
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                    properties: Properties::default(),
                }),
                ProtocolVersion::V5,
            );
        }
    }

    #[test]
    fn malformed_connacks_are_refused() {
        rejected(&frame(0x20, &[0x02, 0]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x20, &[0x00, 6]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x20, &[0x00, 0, 0]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x20, &[0x00]), V4, ReasonCode::MalformedPacket);
        // v5: property length is mandatory, reason codes come from the CONNACK table.
        rejected(&frame(0x20, &[0x00, 0]), V5, ReasonCode::MalformedPacket);
        rejected(
            &frame(0x20, &[0x00, 0x04, 0]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x20, &[0x00, 0x01, 0]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x20, &[0x00, 0x00, 3, 0x23, 0, 1]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x20, &[0x00, 0x00, 2, 0x24, 2]),
            V5,
            ReasonCode::ProtocolError,
        );
        rejected(
            &frame(0x20, &[0x00, 0x00, 0, 0]),
            V5,
            ReasonCode::MalformedPacket,
        );
    }
}

mod publish {
    use super::*;

    fn publish(v: ProtocolVersion, qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: "sensors/temp/1".into(),
            packet_id: (qos != QoS::AtMostOnce).then(|| pid(42)),
            properties: v5_props(v, Properties::default()),
            payload: Bytes::from_static(b"21.5"),
        }
    }

    #[test]
    fn every_qos_round_trips_in_both_versions() {
        for v in BOTH {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                round_trip(Packet::Publish(publish(v, qos)), v);
                let retained = Publish {
                    retain: true,
                    payload: Bytes::new(),
                    ..publish(v, qos)
                };
                round_trip(Packet::Publish(retained), v);
                if qos != QoS::AtMostOnce {
                    round_trip(
                        Packet::Publish(Publish {
                            dup: true,
                            ..publish(v, qos)
                        }),
                        v,
                    );
                }
            }
        }
    }

    #[test]
    fn binary_payload_and_unicode_topic_round_trip() {
        for v in BOTH {
            let p = Publish {
                topic: "ä/€/𝄞/$SYS".into(),
                payload: Bytes::from((0..=255u8).collect::<Vec<_>>()),
                ..publish(v, QoS::AtLeastOnce)
            };
            round_trip(Packet::Publish(p), v);
        }
    }

    #[test]
    fn v5_publish_with_properties_round_trips() {
        let properties = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(120),
            content_type: Some("application/json".into()),
            response_topic: Some("replies/1".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01\x02")),
            subscription_identifiers: vec![1, 127, 128, 16_384, MAX_VARINT],
            topic_alias: Some(3),
            user_properties: vec![user("a", "b"), user("a", "b")],
            ..Default::default()
        };
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let p = Publish {
                properties: properties.clone(),
                retain: true,
                ..publish(ProtocolVersion::V5, qos)
            };
            round_trip(Packet::Publish(p), ProtocolVersion::V5);
        }
    }

    #[test]
    fn v5_empty_topic_with_alias_is_accepted() {
        let p = Publish {
            topic: "".into(),
            properties: Properties {
                topic_alias: Some(7),
                ..Default::default()
            },
            ..publish(ProtocolVersion::V5, QoS::AtMostOnce)
        };
        round_trip(Packet::Publish(p), ProtocolVersion::V5);
        let p = decode_ok(&frame(0x30, &[s(b""), props(&[0x23, 0, 5])].concat()), V5);
        let Packet::Publish(p) = p else { panic!() };
        assert_eq!(p.topic, "");
        assert_eq!(p.properties.topic_alias, Some(5));
    }

    #[test]
    fn v311_publish_wire_format() {
        let p = Packet::Publish(Publish {
            retain: true,
            ..publish(ProtocolVersion::V311, QoS::AtLeastOnce)
        });
        let mut buf = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            &frame(
                0x33,
                &[s(b"sensors/temp/1"), vec![0, 42], b"21.5".to_vec()].concat()
            )[..]
        );
    }

    #[test]
    fn qos_3_is_malformed() {
        rejected(
            &frame(0x36, &[s(b"a"), vec![0, 1]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x37, &[s(b"a"), vec![0, 1, 0]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn dup_on_qos_0_is_malformed() {
        rejected(&frame(0x38, &s(b"a")), V4, ReasonCode::MalformedPacket);
        rejected(
            &frame(0x39, &[s(b"a"), vec![0]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn packet_id_zero_is_malformed() {
        rejected(
            &frame(0x32, &[s(b"a"), vec![0, 0]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x34, &[s(b"a"), vec![0, 0, 0]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
        // Missing packet id.
        rejected(&frame(0x32, &s(b"a")), V4, ReasonCode::MalformedPacket);
    }

    #[test]
    fn wildcards_in_topic_names_are_topic_name_invalid() {
        for topic in [&b"a/+"[..], b"a/#", b"#", b"+", b"a+b", b"sport/tennis#"] {
            let e = rejected(&frame(0x30, &s(topic)), V4, ReasonCode::TopicNameInvalid);
            assert!(matches!(e, DecodeError::TopicNameInvalid(_)));
            assert_eq!(e.reason_code().as_u8(), 0x90);
            rejected(
                &frame(0x30, &[s(topic), vec![0]].concat()),
                V5,
                ReasonCode::TopicNameInvalid,
            );
        }
    }

    #[test]
    fn empty_topic_without_alias_is_refused() {
        rejected(&frame(0x30, &s(b"")), V4, ReasonCode::TopicNameInvalid);
        rejected(
            &frame(0x30, &[s(b""), vec![0]].concat()),
            V5,
            ReasonCode::ProtocolError,
        );
    }

    #[test]
    fn topic_alias_zero_is_topic_alias_invalid() {
        let e = rejected(
            &frame(0x30, &[s(b"a"), props(&[0x23, 0, 0])].concat()),
            V5,
            ReasonCode::TopicAliasInvalid,
        );
        assert_eq!(e, DecodeError::TopicAliasInvalid);
        assert_eq!(e.reason_code().as_u8(), 0x94);
    }

    #[test]
    fn topic_must_be_valid_utf8_without_nul() {
        for topic in [
            &b"a\0b"[..],
            &[0xff],
            &[0xc3, 0x28],
            // Overlong encoding of '/'.
            &[0xc0, 0xaf],
            // A UTF-16 surrogate (U+D800) is not a Unicode scalar value.
            &[0xed, 0xa0, 0x80],
            // Truncated multi-byte sequence.
            &[b'a', 0xe2, 0x82],
        ] {
            rejected(&frame(0x30, &s(topic)), V4, ReasonCode::MalformedPacket);
            rejected(
                &frame(0x30, &[s(topic), vec![0]].concat()),
                V5,
                ReasonCode::MalformedPacket,
            );
        }
    }

    #[test]
    fn topic_length_past_the_packet_is_malformed() {
        rejected(&frame(0x30, &[0, 9, b'a']), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x30, &[0]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x30, &[]), V4, ReasonCode::MalformedPacket);
    }

    #[test]
    fn v5_publish_properties_are_validated() {
        let with = |p: &[u8]| frame(0x30, &[s(b"a"), props(p)].concat());
        decode_ok(&with(&[0x0b, 1, 0x0b, 2]), V5);
        rejected(&with(&[0x0b, 0]), V5, ReasonCode::ProtocolError);
        rejected(
            &with(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
            V5,
            ReasonCode::ProtocolError,
        );
        rejected(
            &with(&[0x23, 0, 1, 0x23, 0, 2]),
            V5,
            ReasonCode::ProtocolError,
        );
        rejected(&with(&[0x01, 2]), V5, ReasonCode::ProtocolError);
        rejected(&with(&[0x11, 0, 0, 0, 1]), V5, ReasonCode::MalformedPacket);
        rejected(&with(&[0x21, 0, 1]), V5, ReasonCode::MalformedPacket);
        rejected(
            &with(&[&[0x08][..], &s(b"r/#")[..]].concat()),
            V5,
            ReasonCode::ProtocolError,
        );
        rejected(
            &with(&[&[0x08][..], &s(b"")[..]].concat()),
            V5,
            ReasonCode::ProtocolError,
        );
        rejected(
            &with(&[&[0x03][..], &s(&[0xff])[..]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &with(&[&[0x26][..], &s(b"k")[..], &s(b"v\0")[..]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
        // Property length is mandatory in v5.
        rejected(&frame(0x30, &s(b"a")), V5, ReasonCode::MalformedPacket);
        // Non-minimal subscription identifier.
        rejected(&with(&[0x0b, 0x81, 0x00]), V5, ReasonCode::MalformedPacket);
    }

    #[test]
    fn payload_is_everything_after_the_header() {
        let Packet::Publish(p) = decode_ok(&frame(0x30, &[s(b"a"), vec![0, 0, 0]].concat()), V4)
        else {
            panic!()
        };
        assert_eq!(&p.payload[..], &[0, 0, 0]);
        let Packet::Publish(p) = decode_ok(&frame(0x30, &[s(b"a"), vec![0, 0, 0]].concat()), V5)
        else {
            panic!()
        };
        assert_eq!(&p.payload[..], &[0, 0]);
    }
}

mod acks {
    use super::*;

    /// Builds the packet of one acknowledgement type.
    type MakeAck = fn(Ack) -> Packet;

    const KINDS: [(u8, MakeAck); 4] = [
        (0x40, Packet::PubAck),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ];

    #[test]
    fn every_ack_round_trips_in_both_versions() {
        for (_, make) in KINDS {
            for v in BOTH {
                round_trip(make(Ack::new(pid(1))), v);
                round_trip(make(Ack::new(pid(u16::MAX))), v);
            }
        }
    }

    #[test]
    fn v5_acks_with_reason_and_properties_round_trip() {
        let properties = Properties {
            reason_string: Some("why".into()),
            user_properties: vec![user("k", "v")],
            ..Default::default()
        };
        let cases = [
            (Packet::PubAck as MakeAck, ReasonCode::NoMatchingSubscribers),
            (Packet::PubAck, ReasonCode::QuotaExceeded),
            (Packet::PubRec, ReasonCode::PacketIdentifierInUse),
            (Packet::PubRec, ReasonCode::PayloadFormatInvalid),
            (Packet::PubRel, ReasonCode::PacketIdentifierNotFound),
            (Packet::PubComp, ReasonCode::PacketIdentifierNotFound),
        ];
        for (make, reason) in cases {
            round_trip(make(Ack::with_reason(pid(7), reason)), ProtocolVersion::V5);
            round_trip(
                make(Ack {
                    packet_id: pid(7),
                    reason,
                    properties: properties.clone(),
                }),
                ProtocolVersion::V5,
            );
        }
        for (_, make) in KINDS {
            round_trip(
                make(Ack {
                    packet_id: pid(7),
                    reason: ReasonCode::Success,
                    properties: properties.clone(),
                }),
                ProtocolVersion::V5,
            );
        }
    }

    #[test]
    fn v5_short_forms_decode() {
        for (first, make) in KINDS {
            let plain = make(Ack::new(pid(1)));
            assert_eq!(decode_ok(&frame(first, &[0, 1]), V5), plain);
            assert_eq!(decode_ok(&frame(first, &[0, 1, 0]), V5), plain);
            assert_eq!(decode_ok(&frame(first, &[0, 1, 0, 0]), V5), plain);
        }
        assert_eq!(
            decode_ok(&frame(0x40, &[0, 1, 0x10]), V5),
            Packet::PubAck(Ack::with_reason(pid(1), ReasonCode::NoMatchingSubscribers))
        );
    }

    #[test]
    fn success_ack_encodes_in_the_short_form() {
        let mut buf = BytesMut::new();
        encode_packet(
            &Packet::PubAck(Ack::new(pid(1))),
            ProtocolVersion::V5,
            &mut buf,
        )
        .unwrap();
        encode_packet(
            &Packet::PubRel(Ack::new(pid(2))),
            ProtocolVersion::V5,
            &mut buf,
        )
        .unwrap();
        encode_packet(
            &Packet::PubComp(Ack::with_reason(
                pid(3),
                ReasonCode::PacketIdentifierNotFound,
            )),
            ProtocolVersion::V5,
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            &buf[..],
            &[0x40, 2, 0, 1, 0x62, 2, 0, 2, 0x70, 3, 0, 3, 0x92]
        );
        // 3.1.1 has no reason codes: only the packet id is written.
        let mut buf = BytesMut::new();
        let p = Packet::PubRec(Ack::with_reason(pid(5), ReasonCode::QuotaExceeded));
        encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x50, 2, 0, 5]);
    }

    #[test]
    fn malformed_acks_are_refused() {
        for (first, _) in KINDS {
            for v in [V4, V5] {
                rejected(&frame(first, &[0, 0]), v, ReasonCode::MalformedPacket);
                rejected(&frame(first, &[0]), v, ReasonCode::MalformedPacket);
                rejected(&frame(first, &[]), v, ReasonCode::MalformedPacket);
            }
            // 3.1.1 acks are exactly two bytes.
            rejected(&frame(first, &[0, 1, 0]), V4, ReasonCode::MalformedPacket);
            // Unknown reason code, and a property not allowed in acks.
            rejected(
                &frame(first, &[0, 1, 0x05]),
                V5,
                ReasonCode::MalformedPacket,
            );
            rejected(
                &frame(first, &[0, 1, 0, 3, 0x23, 0, 1]),
                V5,
                ReasonCode::MalformedPacket,
            );
            // Bytes after the properties.
            rejected(
                &frame(first, &[0, 1, 0, 0, 0]),
                V5,
                ReasonCode::MalformedPacket,
            );
            // Property length past the packet.
            rejected(
                &frame(first, &[0, 1, 0, 5, 0x1f]),
                V5,
                ReasonCode::MalformedPacket,
            );
            // Reason string twice.
            let twice = [vec![0, 1, 0, 8, 0x1f], s(b"a"), vec![0x1f], s(b"b")].concat();
            rejected(&frame(first, &twice), V5, ReasonCode::ProtocolError);
        }
    }

    #[test]
    fn reason_codes_are_checked_per_ack_type() {
        // PUBACK/PUBREC may not use the PUBREL/PUBCOMP code and vice versa.
        rejected(&frame(0x40, &[0, 1, 0x92]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0x50, &[0, 1, 0x92]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0x62, &[0, 1, 0x10]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0x70, &[0, 1, 0x80]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0x40, &[0, 1, 0x81]), V5, ReasonCode::MalformedPacket);
        decode_ok(&frame(0x50, &[0, 1, 0x97]), V5);
        decode_ok(&frame(0x62, &[0, 1, 0x92]), V5);
    }
}

mod subscribe {
    use super::*;

    fn all_options() -> Vec<SubscriptionOptions> {
        let mut out = Vec::new();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for no_local in [false, true] {
                for retain_as_published in [false, true] {
                    for retain_handling in [
                        RetainHandling::SendAtSubscribe,
                        RetainHandling::SendIfNew,
                        RetainHandling::DoNotSend,
                    ] {
                        out.push(SubscriptionOptions {
                            qos,
                            no_local,
                            retain_as_published,
                            retain_handling,
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn v311_subscribe_round_trips() {
        let filters = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
            .map(|(i, qos)| {
                (
                    ByteString::from(format!("a/{i}/#")),
                    SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let p = Subscribe {
            packet_id: pid(10),
            properties: Properties::default(),
            filters,
        };
        round_trip(Packet::Subscribe(p), ProtocolVersion::V311);
    }

    #[test]
    fn v5_subscribe_with_every_option_round_trips() {
        let filters: Vec<_> = all_options()
            .into_iter()
            .enumerate()
            .map(|(i, o)| (ByteString::from(format!("f/{i}/+")), o))
            .collect();
        assert_eq!(filters.len(), 36);
        let properties = Properties {
            subscription_identifiers: vec![268_435_455],
            user_properties: vec![user("u", "p")],
            ..Default::default()
        };
        round_trip(
            Packet::Subscribe(Subscribe {
                packet_id: pid(3),
                properties,
                filters,
            }),
            ProtocolVersion::V5,
        );
    }

    #[test]
    fn v5_options_byte_layout() {
        let Packet::Subscribe(s5) = decode_ok(
            &frame(
                0x82,
                &[vec![0, 1, 0], s(b"$share/g/a"), vec![0x2e]].concat(),
            ),
            V5,
        ) else {
            panic!()
        };
        assert_eq!(
            s5.filters,
            vec![(
                "$share/g/a".into(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                }
            )]
        );
    }

    #[test]
    fn v5_options_are_dropped_when_encoding_for_v311() {
        let o = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let p = Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            filters: vec![("a".into(), o)],
        });
        let mut buf = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            &frame(0x82, &[vec![0, 1], s(b"a"), vec![1]].concat())[..]
        );
    }

    #[test]
    fn empty_subscribe_is_a_protocol_error() {
        rejected(&frame(0x82, &[0, 1]), V4, ReasonCode::ProtocolError);
        rejected(&frame(0x82, &[0, 1, 0]), V5, ReasonCode::ProtocolError);
    }

    #[test]
    fn v311_requested_qos_byte_is_strict() {
        for byte in [0x03, 0x04, 0x08, 0x10, 0x40, 0x80, 0xfc, 0xff] {
            rejected(
                &frame(0x82, &[vec![0, 1], s(b"a"), vec![byte]].concat()),
                V4,
                ReasonCode::MalformedPacket,
            );
        }
    }

    #[test]
    fn v5_subscription_options_are_validated() {
        let sub = |byte: u8| frame(0x82, &[vec![0, 1, 0], s(b"a"), vec![byte]].concat());
        // Reserved bits 6 and 7: malformed.
        rejected(&sub(0x40), V5, ReasonCode::MalformedPacket);
        rejected(&sub(0x80), V5, ReasonCode::MalformedPacket);
        // QoS 3 and retain handling 3: protocol errors (3.8.3.1).
        rejected(&sub(0x03), V5, ReasonCode::ProtocolError);
        rejected(&sub(0x30), V5, ReasonCode::ProtocolError);
        rejected(&sub(0x3f), V5, ReasonCode::ProtocolError);
    }

    #[test]
    fn malformed_subscribes_are_refused() {
        // Packet id 0, filter without options, bad strings.
        rejected(
            &frame(0x82, &[vec![0, 0], s(b"a"), vec![0]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x82, &[vec![0, 1], s(b"a")].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x82, &[vec![0, 1], s(b"a\0"), vec![0]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x82, &[vec![0, 1], s(&[0xfe]), vec![0]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0x82, &[vec![0, 1, 0], s(b"a"), vec![0], vec![0]].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
        // Subscription identifier: not 0, at most once; no other properties.
        let with = |p: &[u8]| frame(0x82, &[vec![0, 1], props(p), s(b"a"), vec![0]].concat());
        decode_ok(&with(&[0x0b, 1]), V5);
        rejected(&with(&[0x0b, 0]), V5, ReasonCode::ProtocolError);
        rejected(&with(&[0x0b, 1, 0x0b, 2]), V5, ReasonCode::ProtocolError);
        rejected(&with(&[0x23, 0, 1]), V5, ReasonCode::MalformedPacket);
        rejected(&with(&[0x1f, 0, 0]), V5, ReasonCode::MalformedPacket);
    }
}

mod suback {
    use super::*;

    #[test]
    fn suback_round_trips_in_both_versions() {
        round_trip(
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reasons: vec![0, 1, 2, 0x80],
            }),
            ProtocolVersion::V311,
        );
        round_trip(
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties {
                    reason_string: Some("partly".into()),
                    ..Default::default()
                },
                reasons: vec![
                    0, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2,
                ],
            }),
            ProtocolVersion::V5,
        );
    }

    #[test]
    fn v5_failure_codes_become_0x80_for_v311() {
        let p = Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Properties::default(),
            reasons: vec![1, 0x8f, 0xa2],
        });
        assert_eq!(
            reencode(&p, ProtocolVersion::V311),
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reasons: vec![1, 0x80, 0x80]
            })
        );
    }

    #[test]
    fn malformed_subacks_are_refused() {
        rejected(&frame(0x90, &[0, 1]), V4, ReasonCode::ProtocolError);
        rejected(&frame(0x90, &[0, 1, 0]), V5, ReasonCode::ProtocolError);
        rejected(&frame(0x90, &[0, 1, 3]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x90, &[0, 1, 0x8f]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0x90, &[0, 1, 0, 3]), V5, ReasonCode::MalformedPacket);
        rejected(
            &frame(0x90, &[0, 1, 0, 0x11]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(&frame(0x90, &[0, 0, 0]), V4, ReasonCode::MalformedPacket);
        rejected(
            &frame(0x90, &[0, 1, 3, 0x23, 0, 1, 0]),
            V5,
            ReasonCode::MalformedPacket,
        );
    }
}

mod unsubscribe {
    use super::*;

    #[test]
    fn unsubscribe_round_trips_in_both_versions() {
        for v in BOTH {
            let p = Unsubscribe {
                packet_id: pid(2),
                properties: v5_props(
                    v,
                    Properties {
                        user_properties: vec![user("x", "y")],
                        ..Default::default()
                    },
                ),
                filters: vec!["a/#".into(), "b/+/c".into(), "$share/g/d".into()],
            };
            round_trip(Packet::Unsubscribe(p), v);
        }
    }

    #[test]
    fn malformed_unsubscribes_are_refused() {
        rejected(&frame(0xa2, &[0, 1]), V4, ReasonCode::ProtocolError);
        rejected(&frame(0xa2, &[0, 1, 0]), V5, ReasonCode::ProtocolError);
        rejected(
            &frame(0xa2, &[vec![0, 0], s(b"a")].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0xa2, &[vec![0, 1], s(b"a"), vec![0]].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0xa2, &[vec![0, 1], s(b"\0")].concat()),
            V4,
            ReasonCode::MalformedPacket,
        );
        // A subscription identifier has no meaning in UNSUBSCRIBE.
        rejected(
            &frame(0xa2, &[vec![0, 1], props(&[0x0b, 1]), s(b"a")].concat()),
            V5,
            ReasonCode::MalformedPacket,
        );
    }

    #[test]
    fn unsuback_round_trips_in_both_versions() {
        round_trip(
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(9),
                properties: Properties::default(),
                reasons: vec![],
            }),
            ProtocolVersion::V311,
        );
        round_trip(
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(9),
                properties: Properties {
                    reason_string: Some("ok".into()),
                    ..Default::default()
                },
                reasons: vec![0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
            }),
            ProtocolVersion::V5,
        );
    }

    #[test]
    fn v311_unsuback_carries_only_the_packet_id() {
        let p = Packet::UnsubAck(UnsubAck {
            packet_id: pid(9),
            properties: Properties {
                reason_string: Some("dropped".into()),
                ..Default::default()
            },
            reasons: vec![0x11],
        });
        let mut buf = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0xb0, 2, 0, 9]);
    }

    #[test]
    fn malformed_unsubacks_are_refused() {
        rejected(&frame(0xb0, &[0, 1, 0]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0xb0, &[0, 0]), V4, ReasonCode::MalformedPacket);
        rejected(&frame(0xb0, &[0, 1]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0xb0, &[0, 1, 0]), V5, ReasonCode::ProtocolError);
        rejected(
            &frame(0xb0, &[0, 1, 0, 0x01]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(
            &frame(0xb0, &[0, 1, 0, 0x10]),
            V5,
            ReasonCode::MalformedPacket,
        );
    }
}

mod ping {
    use super::*;

    #[test]
    fn pings_round_trip_and_are_two_bytes() {
        for v in BOTH {
            round_trip(Packet::PingReq, v);
            round_trip(Packet::PingResp, v);
            let mut buf = BytesMut::new();
            encode_packet(&Packet::PingReq, v, &mut buf).unwrap();
            encode_packet(&Packet::PingResp, v, &mut buf).unwrap();
            assert_eq!(&buf[..], &[0xc0, 0, 0xd0, 0]);
        }
    }

    #[test]
    fn pings_with_a_body_are_malformed() {
        for v in [V4, V5] {
            rejected(&frame(0xc0, &[0]), v, ReasonCode::MalformedPacket);
            rejected(&frame(0xd0, &[0, 0]), v, ReasonCode::MalformedPacket);
        }
    }
}

mod disconnect {
    use super::*;

    #[test]
    fn disconnect_round_trips_in_both_versions() {
        round_trip(
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
            ProtocolVersion::V311,
        );
        for reason in [
            ReasonCode::Success,
            ReasonCode::DisconnectWithWill,
            ReasonCode::ServerShuttingDown,
            ReasonCode::SessionTakenOver,
            ReasonCode::BadAuthenticationMethod,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ] {
            round_trip(
                Packet::Disconnect(Disconnect::new(reason)),
                ProtocolVersion::V5,
            );
        }
        let properties = Properties {
            session_expiry_interval: Some(0),
            reason_string: Some("bye".into()),
            server_reference: Some("elsewhere".into()),
            user_properties: vec![user("a", "b")],
            ..Default::default()
        };
        for reason in [ReasonCode::Success, ReasonCode::UseAnotherServer] {
            round_trip(
                Packet::Disconnect(Disconnect {
                    reason,
                    properties: properties.clone(),
                }),
                ProtocolVersion::V5,
            );
        }
    }

    #[test]
    fn v5_short_forms_are_accepted() {
        assert_eq!(
            decode_ok(&[0xe0, 0x00], V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::Success))
        );
        assert_eq!(
            decode_ok(&[0xe0, 0x01, 0x8e], V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver))
        );
        assert_eq!(
            decode_ok(&[0xe0, 0x02, 0x04, 0x00], V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill))
        );
    }

    #[test]
    fn v311_disconnect_encodes_without_a_body() {
        let mut buf = BytesMut::new();
        let p = Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown));
        encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0xe0, 0]);
    }

    #[test]
    fn malformed_disconnects_are_refused() {
        rejected(&frame(0xe0, &[0]), V4, ReasonCode::MalformedPacket);
        // Reason codes outside the DISCONNECT table, and unknown ones.
        for code in [
            0x01, 0x02, 0x10, 0x11, 0x18, 0x19, 0x84, 0x85, 0x86, 0x88, 0x8a, 0x91, 0x92, 0x05,
            0xff,
        ] {
            rejected(&frame(0xe0, &[code]), V5, ReasonCode::MalformedPacket);
        }
        rejected(
            &frame(0xe0, &[0, 3, 0x23, 0, 1]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(&frame(0xe0, &[0, 0, 0]), V5, ReasonCode::MalformedPacket);
        rejected(
            &frame(0xe0, &[0, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]),
            V5,
            ReasonCode::ProtocolError,
        );
    }
}

mod auth {
    use super::*;

    #[test]
    fn auth_round_trips() {
        round_trip(
            Packet::Auth(Auth {
                reason: ReasonCode::Success,
                properties: Properties::default(),
            }),
            ProtocolVersion::V5,
        );
        let properties = Properties {
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"\x00\xffnonce")),
            reason_string: Some("step 2".into()),
            user_properties: vec![user("a", "b")],
            ..Default::default()
        };
        for reason in [
            ReasonCode::ContinueAuthentication,
            ReasonCode::ReAuthenticate,
            ReasonCode::Success,
        ] {
            round_trip(
                Packet::Auth(Auth {
                    reason,
                    properties: properties.clone(),
                }),
                ProtocolVersion::V5,
            );
        }
    }

    #[test]
    fn malformed_auths_are_refused() {
        rejected(&frame(0xf0, &[0x80]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0xf0, &[0x04]), V5, ReasonCode::MalformedPacket);
        rejected(
            &frame(0xf0, &[0x18, 5, 0x11, 0, 0, 0, 1]),
            V5,
            ReasonCode::MalformedPacket,
        );
        rejected(&frame(0xf0, &[0x18, 0, 1]), V5, ReasonCode::MalformedPacket);
        rejected(&frame(0xf0, &[0x18]), V4, ReasonCode::MalformedPacket);
    }
}

mod encode {
    use super::*;

    fn publish_with_topic(topic: String) -> Packet {
        qos0_publish(topic.into(), Bytes::new())
    }

    /// Encodes `p` after some existing bytes and checks the error leaves the
    /// buffer as it was.
    #[track_caller]
    fn refused(p: &Packet, v: ProtocolVersion) -> EncodeError {
        let mut buf = BytesMut::from(&b"prior"[..]);
        let e = encode_packet(p, v, &mut buf).expect_err("encoding should fail");
        assert_eq!(
            &buf[..],
            b"prior",
            "a failed encode must not leave partial bytes"
        );
        e
    }

    #[test]
    fn strings_over_65535_bytes_are_refused_never_truncated() {
        let long = "a".repeat(65_536);
        for v in BOTH {
            assert_eq!(
                refused(&publish_with_topic(long.clone()), v),
                EncodeError::FieldTooLong(65_536)
            );
        }
        let connect = |f: &dyn Fn(&mut Connect)| {
            let mut c = Connect {
                protocol: ProtocolVersion::V5,
                clean_start: true,
                keep_alive: 0,
                properties: Properties::default(),
                client_id: "c".into(),
                will: None,
                username: None,
                password: None,
            };
            f(&mut c);
            Packet::Connect(Box::new(c))
        };
        let big = Bytes::from(vec![0u8; 70_000]);
        let cases = [
            connect(&|c| c.client_id = long.as_str().into()),
            connect(&|c| c.username = Some(long.as_str().into())),
            connect(&|c| c.password = Some(big.clone())),
            connect(&|c| {
                c.will = Some(Will {
                    topic: "w".into(),
                    payload: big.clone(),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    properties: Properties::default(),
                })
            }),
            connect(&|c| c.properties.user_properties = vec![(long.as_str().into(), "v".into())]),
            connect(&|c| c.properties.authentication_data = Some(big.clone())),
        ];
        for p in &cases {
            assert!(
                matches!(
                    refused(p, ProtocolVersion::V5),
                    EncodeError::FieldTooLong(_)
                ),
                "{p:?}"
            );
        }
        let sub = Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            filters: vec![(long.as_str().into(), SubscriptionOptions::default())],
        });
        assert_eq!(
            refused(&sub, ProtocolVersion::V311),
            EncodeError::FieldTooLong(65_536)
        );
        let ack = Packet::PubAck(Ack {
            packet_id: pid(1),
            reason: ReasonCode::Success,
            properties: Properties {
                reason_string: Some(long.as_str().into()),
                ..Default::default()
            },
        });
        assert_eq!(
            refused(&ack, ProtocolVersion::V5),
            EncodeError::FieldTooLong(65_536)
        );
    }

    #[test]
    fn strings_of_exactly_65535_bytes_round_trip() {
        let topic = "t".repeat(65_535);
        for v in BOTH {
            round_trip(publish_with_topic(topic.clone()), v);
        }
    }

    #[test]
    fn qos_above_zero_needs_a_packet_id() {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::new(),
        });
        assert_eq!(
            refused(&p, ProtocolVersion::V311),
            EncodeError::MissingPacketId
        );
    }

    #[test]
    fn packets_over_the_protocol_maximum_are_refused() {
        // Zeroed allocations are lazy, so this costs no real memory: the size
        // check happens before anything is written.
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(vec![0u8; MAX_VARINT as usize]),
        });
        assert_eq!(
            refused(&p, ProtocolVersion::V311),
            EncodeError::PacketTooLarge(MAX_VARINT as usize + 3)
        );
    }

    #[test]
    fn out_of_range_subscription_identifier_is_refused() {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a".into(),
            packet_id: None,
            properties: Properties {
                subscription_identifiers: vec![MAX_VARINT + 1],
                ..Default::default()
            },
            payload: Bytes::new(),
        });
        assert_eq!(
            refused(&p, ProtocolVersion::V5),
            EncodeError::VarIntOutOfRange(MAX_VARINT + 1)
        );
    }

    #[test]
    fn encode_appends_and_reports_its_length() {
        let mut buf = BytesMut::from(&b"xy"[..]);
        let n = encode_packet(&Packet::PingReq, ProtocolVersion::V5, &mut buf).unwrap();
        assert_eq!(n, 2);
        assert_eq!(&buf[..], b"xy\xc0\x00");
    }

    #[test]
    fn remaining_length_uses_the_minimal_encoding() {
        for payload_len in [0usize, 120, 121, 122, 16_000, 16_500, 2_100_000] {
            let p = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "abcd".into(),
                packet_id: None,
                properties: Properties::default(),
                payload: Bytes::from(vec![1u8; payload_len]),
            });
            let mut buf = BytesMut::new();
            encode_packet(&p, ProtocolVersion::V311, &mut buf).unwrap();
            let body = 6 + payload_len;
            assert_eq!(buf.len(), 1 + wire::varint_len(body as u32) + body);
            assert_eq!(
                decode_varint(&buf[1..]).unwrap(),
                Some((body as u32, wire::varint_len(body as u32)))
            );
            let mut again = buf.clone();
            assert_eq!(decode_packet(&mut again, V4, usize::MAX).unwrap(), Some(p));
        }
    }
}

mod reason_codes {
    use super::*;

    #[test]
    fn decode_errors_map_to_their_reason_codes() {
        assert_eq!(DecodeError::Malformed("x").reason_code().as_u8(), 0x81);
        assert_eq!(DecodeError::Protocol("x").reason_code().as_u8(), 0x82);
        assert_eq!(
            DecodeError::UnsupportedProtocolVersion(6)
                .reason_code()
                .as_u8(),
            0x84
        );
        assert_eq!(
            DecodeError::TopicNameInvalid("x").reason_code().as_u8(),
            0x90
        );
        assert_eq!(DecodeError::TopicAliasInvalid.reason_code().as_u8(), 0x94);
        assert_eq!(
            DecodeError::PacketTooLarge { size: 2, max: 1 }
                .reason_code()
                .as_u8(),
            0x95
        );
    }

    #[test]
    fn reason_code_bytes_round_trip() {
        for b in 0..=255u8 {
            if let Some(code) = ReasonCode::from_u8(b) {
                assert_eq!(code.as_u8(), b);
                assert_eq!(code.is_error(), b >= 0x80);
            }
        }
    }
}

mod robustness {
    //! A small deterministic fuzz run that works on stable, so every
    //! `cargo test` checks the invariants of `fuzz/fuzz_targets/decode_packet.rs`
    //! on mutations of valid packets: no panic, `Ok(None)` consumes nothing,
    //! and whatever decodes re-encodes to the same packet.

    use super::*;

    /// xorshift64*: reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn packets(v: ProtocolVersion) -> Vec<Packet> {
        let v5 = v.is_v5();
        let props = |p: Properties| if v5 { p } else { Properties::default() };
        let reason = |r: ReasonCode| if v5 { r } else { ReasonCode::Success };
        let mut out = vec![
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ReasonCode::Success,
                properties: props(Properties {
                    receive_maximum: Some(5),
                    ..Default::default()
                }),
            }),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: props(Properties {
                    subscription_identifiers: vec![300],
                    ..Default::default()
                }),
                filters: vec![
                    (
                        "a/+".into(),
                        SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            ..Default::default()
                        },
                    ),
                    ("#".into(), SubscriptionOptions::default()),
                ],
            }),
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reasons: vec![2, 0x80],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(2),
                properties: props(Properties {
                    user_properties: vec![user("k", "v")],
                    ..Default::default()
                }),
                filters: vec!["a/+".into()],
            }),
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(2),
                properties: Properties::default(),
                reasons: if v5 { vec![0x11] } else { vec![] },
            }),
            Packet::PubAck(Ack::with_reason(
                pid(3),
                reason(ReasonCode::NoMatchingSubscribers),
            )),
            Packet::PubRec(Ack {
                packet_id: pid(4),
                reason: ReasonCode::Success,
                properties: props(Properties {
                    reason_string: Some("r".into()),
                    ..Default::default()
                }),
            }),
            Packet::PubRel(Ack::new(pid(4))),
            Packet::PubComp(Ack::with_reason(
                pid(4),
                reason(ReasonCode::PacketIdentifierNotFound),
            )),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect(Disconnect {
                reason: reason(ReasonCode::DisconnectWithWill),
                properties: props(Properties {
                    session_expiry_interval: Some(9),
                    ..Default::default()
                }),
            }),
        ];
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            out.push(Packet::Publish(Publish {
                dup: false,
                qos,
                retain: true,
                topic: "a/b".into(),
                packet_id: (qos != QoS::AtMostOnce).then(|| pid(5)),
                properties: props(Properties {
                    topic_alias: Some(1),
                    message_expiry_interval: Some(10),
                    user_properties: vec![user("a", "b")],
                    ..Default::default()
                }),
                payload: Bytes::from_static(b"payload"),
            }));
        }
        if v5 {
            out.push(Packet::Auth(Auth {
                reason: ReasonCode::ContinueAuthentication,
                properties: Properties {
                    authentication_method: Some("m".into()),
                    ..Default::default()
                },
            }));
        }
        out
    }

    fn connect(v: ProtocolVersion) -> Packet {
        Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 10,
            properties: v5_props(
                v,
                Properties {
                    session_expiry_interval: Some(5),
                    ..Default::default()
                },
            ),
            client_id: "c".into(),
            will: Some(Will {
                topic: "w".into(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: v5_props(
                    v,
                    Properties {
                        will_delay_interval: Some(1),
                        ..Default::default()
                    },
                ),
            }),
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"p")),
        }))
    }

    fn encode_all(ps: &[Packet], v: ProtocolVersion) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for p in ps {
            encode_packet(p, v, &mut buf).unwrap();
        }
        buf.to_vec()
    }

    /// Valid inputs and the state to decode them in: a whole connection
    /// (from CONNECT), or packets after a CONNECT of version `v`.
    fn seeds() -> Vec<(Option<ProtocolVersion>, Vec<u8>)> {
        let mut out = Vec::new();
        for v in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            let ps = packets(v);
            let mut stream = vec![connect(v)];
            stream.extend(ps.iter().cloned());
            out.push((None, encode_all(&stream, v)));
            out.push((Some(v), encode_all(&ps, v)));
            out.extend(
                ps.iter()
                    .map(|p| (Some(v), encode_all(std::slice::from_ref(p), v))),
            );
        }
        out
    }

    fn check_stream(data: &[u8], start: Option<ProtocolVersion>) {
        let mut buf = BytesMut::from(data);
        let mut version = start;
        loop {
            let before = buf.len();
            match decode_packet(&mut buf, version, 4096) {
                Ok(Some(p)) => {
                    assert!(buf.len() < before);
                    let v = match (&p, version) {
                        (Packet::Connect(c), None) => c.protocol,
                        (_, Some(v)) => v,
                        (p, None) => panic!("{} decoded before CONNECT", p.name()),
                    };
                    assert_eq!(reencode(&p, v), p, "from input {data:02x?}");
                    version = Some(v);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed input {data:02x?}");
                    return;
                }
                Err(_) => return,
            }
        }
    }

    #[test]
    fn seeds_decode_completely() {
        for (start, seed) in seeds() {
            let mut buf = BytesMut::from(&seed[..]);
            let mut version = start;
            while !buf.is_empty() {
                if let Packet::Connect(c) = decode_packet(&mut buf, version, usize::MAX)
                    .unwrap()
                    .unwrap()
                {
                    version = Some(c.protocol);
                }
            }
        }
    }

    #[test]
    fn mutated_packets_never_panic_and_round_trip() {
        let seeds = seeds();
        let mut rng = Rng(0x5eed_c0de_1234_5678);
        for _ in 0..100_000 {
            let (seed_start, seed) = &seeds[rng.below(seeds.len())];
            let mut data = seed.clone();
            for _ in 0..=rng.below(4) {
                let len = data.len();
                match rng.below(5) {
                    0 if len > 0 => data[rng.below(len)] ^= 1 << rng.below(8),
                    1 if len > 0 => data[rng.below(len)] = rng.next() as u8,
                    2 => data.insert(rng.below(len + 1), rng.next() as u8),
                    3 if len > 0 => {
                        data.remove(rng.below(len));
                    }
                    _ => data.truncate(rng.below(len + 1)),
                }
            }
            for start in [None, V4, V5, *seed_start] {
                check_stream(&data, start);
            }
        }
    }
}
