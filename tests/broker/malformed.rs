//! Malformed packets and protocol errors from clients (spec 1.5, 2.1–2.2,
//! 4.13; v5 reason codes 0x81, 0x82, 0x90, 0x94, 0x95): hand-written bytes
//! sent after a valid CONNECT must end the connection, with a v5
//! DISCONNECT carrying the right reason code and, in 3.1.1, no packet at
//! all. Also bad CONNECT packets, garbage before CONNECT, and oversized
//! length announcements that must not make the broker wait for a body.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice::codec::*;

use crate::harness::*;

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A packet: first byte, minimal remaining length, body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend(varint(body.len()));
    v.extend_from_slice(body);
    v
}

/// A length-prefixed string or binary field.
fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A v5 property block (length prefix included).
fn props(p: &[u8]) -> Vec<u8> {
    let mut v = varint(p.len());
    v.extend_from_slice(p);
    v
}

/// A PUBLISH body for `version`: topic, packet id, v5 properties, payload.
fn publish_body(v: ProtocolVersion, topic: &[u8], id: Option<u16>, p: &[u8]) -> Vec<u8> {
    let mut b = field(topic);
    if let Some(id) = id {
        b.extend(id.to_be_bytes());
    }
    if v.is_v5() {
        b.extend(props(p));
    }
    b.extend_from_slice(b"payload");
    b
}

/// A SUBSCRIBE body for `version` with one filter and its options byte.
fn subscribe_body(v: ProtocolVersion, p: &[u8], filter: &[u8], options: u8) -> Vec<u8> {
    let mut b = vec![0, 1];
    if v.is_v5() {
        b.extend(props(p));
    }
    b.extend(field(filter));
    b.push(options);
    b
}

/// Connects with `version`, sends `bytes`, and returns what the broker
/// sent until it closed the connection.
fn after_connect(port: u16, v: ProtocolVersion, bytes: &[u8]) -> Vec<Packet> {
    let (mut c, _) = Raw::connect(port, v, &format!("bad-{v:?}"), true);
    c.send_bytes(bytes);
    c.until_closed()
}

/// Asserts that `bytes` after CONNECT end a v5 connection with DISCONNECT
/// `reason` and nothing else.
fn assert_v5_refused(port: u16, bytes: &[u8], reason: ReasonCode, what: &str) {
    let got = after_connect(port, V5, bytes);
    assert_eq!(got, vec![disconnect_packet(reason)], "v5: {what}");
}

/// Asserts that `bytes` after CONNECT close a 3.1.1 connection without any
/// packet from the broker.
fn assert_v4_closed(port: u16, bytes: &[u8], what: &str) {
    let got = after_connect(port, V4, bytes);
    assert!(got.is_empty(), "3.1.1: {what}: got {got:?}");
}

/// Checks one kind of bad packet in both versions.
fn assert_refused_both(
    port: u16,
    what: &str,
    build: impl Fn(ProtocolVersion) -> Vec<u8>,
    v5_reason: ReasonCode,
) {
    assert_v5_refused(port, &build(V5), v5_reason, what);
    assert_v4_closed(port, &build(V4), what);
}

/// A fresh client can still connect and exchange a message.
fn assert_broker_still_serves(port: u16) {
    for v in [V4, V5] {
        let (mut sub, _) = Raw::connect(port, v, "after-sub", true);
        sub.subscribe(1, &[("still/alive", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(port, v, "after-pub", true);
        p.publish(publish("still/alive", b"yes", QoS::AtLeastOnce, 1));
        assert_eq!(&*sub.expect_publish().payload, b"yes", "{v:?}");
        p.disconnect();
        sub.disconnect();
    }
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let s = Sluice::start();
    reserved_fixed_header_flags_are_malformed_on(s.port);
}

fn reserved_fixed_header_flags_are_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "SUBSCRIBE with flags 0",
        |v| frame(0x80, &subscribe_body(v, &[], b"a", 0)),
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "UNSUBSCRIBE with flags 0",
        |v| {
            let mut b = vec![0, 1];
            if v.is_v5() {
                b.push(0);
            }
            b.extend(field(b"a"));
            frame(0xa0, &b)
        },
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "PUBREL with flags 0",
        |_| frame(0x60, &[0, 1]),
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "PINGREQ with flags 1",
        |_| frame(0xc1, &[]),
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "DISCONNECT with flags 8",
        |_| frame(0xe8, &[]),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn publish_with_qos_3_is_malformed() {
    let s = Sluice::start();
    publish_with_qos_3_is_malformed_on(s.port);
}

fn publish_with_qos_3_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "PUBLISH QoS 3",
        |v| frame(0x36, &publish_body(v, b"t", Some(1), &[])),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn publish_with_dup_on_qos_0_is_malformed() {
    let s = Sluice::start();
    publish_with_dup_on_qos_0_is_malformed_on(s.port);
}

fn publish_with_dup_on_qos_0_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "PUBLISH DUP with QoS 0",
        |v| frame(0x38, &publish_body(v, b"t", None, &[])),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn publish_with_packet_identifier_0_is_malformed() {
    let s = Sluice::start();
    publish_with_packet_identifier_0_is_malformed_on(s.port);
}

fn publish_with_packet_identifier_0_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "PUBLISH QoS 1 with packet id 0",
        |v| frame(0x32, &publish_body(v, b"t", Some(0), &[])),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn publish_with_wildcard_in_topic_is_an_invalid_topic_name() {
    let s = Sluice::start();
    publish_with_wildcard_in_topic_is_an_invalid_topic_name_on(s.port);
}

fn publish_with_wildcard_in_topic_is_an_invalid_topic_name_on(port: u16) {
    for topic in [&b"a/+"[..], b"a/#", b"#", b"+"] {
        let what = format!("PUBLISH to {:?}", String::from_utf8_lossy(topic));
        assert_refused_both(
            port,
            &what,
            |v| frame(0x30, &publish_body(v, topic, None, &[])),
            ReasonCode::TopicNameInvalid,
        );
    }
}

#[test]
fn publish_with_empty_topic_and_no_alias_is_refused() {
    let s = Sluice::start();
    publish_with_empty_topic_and_no_alias_is_refused_on(s.port);
}

fn publish_with_empty_topic_and_no_alias_is_refused_on(port: u16) {
    // v5: an empty topic needs a topic alias (protocol error);
    // 3.1.1: an empty topic name is invalid.
    assert_v5_refused(
        port,
        &frame(0x30, &publish_body(V5, b"", None, &[])),
        ReasonCode::ProtocolError,
        "empty topic",
    );
    assert_v4_closed(
        port,
        &frame(0x30, &publish_body(V4, b"", None, &[])),
        "empty topic",
    );
}

#[test]
fn topic_with_bad_utf8_or_nul_is_malformed() {
    let s = Sluice::start();
    topic_with_bad_utf8_or_nul_is_malformed_on(s.port);
}

fn topic_with_bad_utf8_or_nul_is_malformed_on(port: u16) {
    let bad: [(&str, &[u8]); 4] = [
        ("invalid UTF-8 sequence", &[b'a', 0xc3, 0x28]),
        ("UTF-16 surrogate encoded in UTF-8", &[0xed, 0xa0, 0x80]),
        ("overlong encoding", &[0xc0, 0xaf]),
        ("U+0000", b"a\0b"),
    ];
    for (what, topic) in bad {
        assert_refused_both(
            port,
            what,
            |v| frame(0x30, &publish_body(v, topic, None, &[])),
            ReasonCode::MalformedPacket,
        );
    }
    // The same applies to topic filters.
    assert_refused_both(
        port,
        "SUBSCRIBE filter with U+0000",
        |v| frame(0x82, &subscribe_body(v, &[], b"a/\0", 0)),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn non_minimal_remaining_length_is_malformed() {
    let s = Sluice::start();
    non_minimal_remaining_length_is_malformed_on(s.port);
}

fn non_minimal_remaining_length_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "PINGREQ with remaining length 0 in two bytes",
        |_| vec![0xc0, 0x80, 0x00],
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "PUBLISH with remaining length in three bytes",
        |v| {
            let body = publish_body(v, b"t", None, &[]);
            let mut b = vec![0x30, 0x80 | body.len() as u8, 0x80, 0x00];
            b.extend(body);
            b
        },
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "remaining length of five bytes",
        |_| vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn packet_body_shorter_than_its_fields_is_malformed() {
    let s = Sluice::start();
    packet_body_shorter_than_its_fields_is_malformed_on(s.port);
}

fn packet_body_shorter_than_its_fields_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "topic length beyond the packet",
        |_| frame(0x30, &[0x00, 0x20, b'a']),
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "PINGREQ with a body",
        |_| frame(0xc0, &[0]),
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn v5_property_not_allowed_in_the_packet_is_malformed() {
    let s = Sluice::start();
    v5_property_not_allowed_in_the_packet_is_malformed_on(s.port);
}

fn v5_property_not_allowed_in_the_packet_is_malformed_on(port: u16) {
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "session expiry in PUBLISH",
            frame(0x30, &publish_body(V5, b"t", None, &[0x11, 0, 0, 0, 10])),
        ),
        (
            "topic alias in SUBSCRIBE",
            frame(0x82, &subscribe_body(V5, &[0x23, 0, 1], b"t", 0)),
        ),
        (
            "will delay in PUBLISH",
            frame(0x30, &publish_body(V5, b"t", None, &[0x18, 0, 0, 0, 1])),
        ),
        (
            "unknown property 0x7f",
            frame(0x30, &publish_body(V5, b"t", None, &[0x7f, 0])),
        ),
    ];
    for (what, bytes) in cases {
        assert_v5_refused(port, &bytes, ReasonCode::MalformedPacket, what);
    }
}

#[test]
fn v5_duplicate_property_is_a_protocol_error() {
    let s = Sluice::start();
    v5_duplicate_property_is_a_protocol_error_on(s.port);
}

fn v5_duplicate_property_is_a_protocol_error_on(port: u16) {
    let mut content_type_twice = vec![0x03];
    content_type_twice.extend(field(b"a"));
    content_type_twice.push(0x03);
    content_type_twice.extend(field(b"b"));
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "content type twice",
            frame(0x30, &publish_body(V5, b"t", None, &content_type_twice)),
        ),
        (
            "message expiry twice",
            frame(
                0x30,
                &publish_body(V5, b"t", None, &[0x02, 0, 0, 0, 5, 0x02, 0, 0, 0, 6]),
            ),
        ),
        (
            "subscription identifier twice in SUBSCRIBE",
            frame(0x82, &subscribe_body(V5, &[0x0b, 1, 0x0b, 2], b"t", 0)),
        ),
    ];
    for (what, bytes) in cases {
        assert_v5_refused(port, &bytes, ReasonCode::ProtocolError, what);
    }
}

#[test]
fn v5_topic_alias_0_is_invalid() {
    let s = Sluice::start();
    v5_topic_alias_0_is_invalid_on(s.port);
}

fn v5_topic_alias_0_is_invalid_on(port: u16) {
    assert_v5_refused(
        port,
        &frame(0x30, &publish_body(V5, b"t", None, &[0x23, 0, 0])),
        ReasonCode::TopicAliasInvalid,
        "topic alias 0",
    );
}

#[test]
fn bad_subscribe_payloads_are_refused() {
    let s = Sluice::start();
    bad_subscribe_payloads_are_refused_on(s.port);
}

fn bad_subscribe_payloads_are_refused_on(port: u16) {
    assert_refused_both(
        port,
        "SUBSCRIBE without filters",
        |v| frame(0x82, if v.is_v5() { &[0, 1, 0] } else { &[0, 1] }),
        ReasonCode::ProtocolError,
    );
    assert_refused_both(
        port,
        "subscription options with reserved bits",
        |v| frame(0x82, &subscribe_body(v, &[], b"t", 0xc1)),
        ReasonCode::MalformedPacket,
    );
    assert_v5_refused(
        port,
        &frame(0x82, &subscribe_body(V5, &[], b"t", 0x03)),
        ReasonCode::ProtocolError,
        "subscription QoS 3",
    );
    assert_v5_refused(
        port,
        &frame(0x82, &subscribe_body(V5, &[], b"t", 0x30)),
        ReasonCode::ProtocolError,
        "retain handling 3",
    );
    assert_v4_closed(
        port,
        &frame(0x82, &subscribe_body(V4, &[], b"t", 0x03)),
        "requested QoS 3",
    );
    assert_v4_closed(
        port,
        &frame(0x82, &subscribe_body(V4, &[], b"t", 0x04)),
        "no-local bit in 3.1.1",
    );
}

#[test]
fn auth_packet_is_refused() {
    let s = Sluice::start();
    auth_packet_is_refused_on(s.port);
}

fn auth_packet_is_refused_on(port: u16) {
    // 3.1.1 has no AUTH: packet type 15 is reserved.
    assert_v4_closed(port, &frame(0xf0, &[]), "AUTH in 3.1.1");
    // v5 AUTH without an authentication method in CONNECT.
    assert_v5_refused(
        port,
        &frame(0xf0, &[0x19, 0x00]),
        ReasonCode::ProtocolError,
        "AUTH without a method",
    );
}

#[test]
fn reserved_packet_type_0_is_refused() {
    let s = Sluice::start();
    reserved_packet_type_0_is_refused_on(s.port);
}

fn reserved_packet_type_0_is_refused_on(port: u16) {
    assert_refused_both(
        port,
        "packet type 0",
        |_| frame(0x00, &[]),
        ReasonCode::MalformedPacket,
    );
    assert_v4_closed(port, &frame(0xf0, &[0, 0]), "packet type 15 with a body");
}

#[test]
fn server_only_packets_from_a_client_are_protocol_errors() {
    let s = Sluice::start();
    server_only_packets_from_a_client_are_protocol_errors_on(s.port);
}

fn server_only_packets_from_a_client_are_protocol_errors_on(port: u16) {
    assert_refused_both(
        port,
        "CONNACK from a client",
        |v| frame(0x20, if v.is_v5() { &[0, 0, 0] } else { &[0, 0] }),
        ReasonCode::ProtocolError,
    );
    assert_refused_both(
        port,
        "SUBACK from a client",
        |v| frame(0x90, if v.is_v5() { &[0, 1, 0, 0] } else { &[0, 1, 0] }),
        ReasonCode::ProtocolError,
    );
    assert_refused_both(
        port,
        "PINGRESP from a client",
        |_| frame(0xd0, &[]),
        ReasonCode::ProtocolError,
    );
}

/// Encodes a valid CONNECT and returns its bytes.
fn connect_bytes(c: Connect) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(c)), V5, &mut buf).unwrap();
    buf.to_vec()
}

/// Sends a bad CONNECT and asserts: a CONNACK with `code` then close, or a
/// close without any packet.
fn assert_connect_refused(
    port: u16,
    v: ProtocolVersion,
    bytes: &[u8],
    code: ReasonCode,
    what: &str,
) {
    let mut raw = Raw::open(port, v);
    raw.send_bytes(bytes);
    let got = raw.until_closed();
    match got.as_slice() {
        [] => {}
        [Packet::ConnAck(a)] if v.is_v5() => assert_eq!(a.code, code, "{what}"),
        other => panic!("{what}: expected CONNACK {code:?} or a plain close, got {other:?}"),
    }
}

#[test]
fn malformed_v5_connect_is_refused() {
    let s = Sluice::start();
    malformed_v5_connect_is_refused_on(s.port);
}

fn malformed_v5_connect_is_refused_on(port: u16) {
    // Reserved flag (bit 0) set.
    let mut reserved = connect_bytes(connect_packet(V5, "c", true));
    assert_eq!(reserved[9], 0x02, "connect flags at byte 9");
    reserved[9] |= 0x01;
    assert_connect_refused(
        port,
        V5,
        &reserved,
        ReasonCode::MalformedPacket,
        "reserved flag",
    );

    // Will QoS 3.
    let mut c = connect_packet(V5, "c", true);
    c.will = Some(will_msg("w", b"x", QoS::AtMostOnce, false));
    let mut will_qos3 = connect_bytes(c);
    will_qos3[9] |= 0x18;
    assert_connect_refused(
        port,
        V5,
        &will_qos3,
        ReasonCode::MalformedPacket,
        "will QoS 3",
    );

    // Session expiry interval twice.
    let mut body = field(b"MQTT");
    body.extend([5, 0x02, 0, 60]);
    body.extend(props(&[0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 10]));
    body.extend(field(b"dup"));
    assert_connect_refused(
        port,
        V5,
        &frame(0x10, &body),
        ReasonCode::ProtocolError,
        "duplicate property",
    );

    // A property CONNECT may not carry (topic alias).
    let mut body = field(b"MQTT");
    body.extend([5, 0x02, 0, 60]);
    body.extend(props(&[0x23, 0, 1]));
    body.extend(field(b"alias"));
    assert_connect_refused(
        port,
        V5,
        &frame(0x10, &body),
        ReasonCode::MalformedPacket,
        "property not allowed",
    );

    // Trailing bytes after the payload.
    let mut trailing = connect_bytes(connect_packet(V5, "c", true));
    trailing.push(0xff);
    trailing[1] += 1;
    assert_connect_refused(
        port,
        V5,
        &trailing,
        ReasonCode::MalformedPacket,
        "trailing bytes",
    );

    assert_broker_still_serves(port);
}

#[test]
fn malformed_v311_connect_is_closed_without_connack() {
    let s = Sluice::start();
    malformed_v311_connect_is_closed_without_connack_on(s.port);
}

fn malformed_v311_connect_is_closed_without_connack_on(port: u16) {
    let c = connect_packet(V4, "c", true);
    let mut buf = BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(c)), V4, &mut buf).unwrap();
    let mut bytes = buf.to_vec();
    bytes[9] |= 0x01;
    let mut raw = Raw::open(port, V4);
    raw.send_bytes(&bytes);
    assert!(
        raw.until_closed().is_empty(),
        "reserved flag in 3.1.1 CONNECT"
    );
    assert_broker_still_serves(port);
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn garbage_before_connect_is_closed_and_the_broker_keeps_serving() {
    let s = Sluice::start();
    garbage_before_connect_is_closed_and_the_broker_keeps_serving_on(s.port);
}

fn garbage_before_connect_is_closed_and_the_broker_keeps_serving_on(port: u16) {
    let mut streams: Vec<(String, Vec<u8>)> = vec![(
        "HTTP request".into(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
    )];
    for seed in 1..=8u32 {
        let mut bytes = noise(seed, 512);
        // Not a CONNECT, so the broker cannot wait for a body.
        if bytes[0] >> 4 == 1 {
            bytes[0] ^= 0x30;
        }
        streams.push((format!("noise seed {seed}"), bytes));
    }
    for (what, bytes) in streams {
        let started = Instant::now();
        let mut raw = Raw::open(port, V5);
        raw.send_bytes(&bytes);
        let got = raw.until_closed();
        assert!(
            got.is_empty(),
            "{what}: expected a plain close, got {got:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: closed only after {:?}",
            started.elapsed()
        );
    }
    assert_broker_still_serves(port);
}

#[test]
fn huge_remaining_length_is_refused_without_waiting_for_the_body() {
    let s = Sluice::start();
    huge_remaining_length_is_refused_without_waiting_for_the_body_on(s.port);
}

fn huge_remaining_length_is_refused_without_waiting_for_the_body_on(port: u16) {
    let huge = {
        let mut v = vec![0x30];
        v.extend(varint(200_000_000));
        v
    };
    // After CONNECT.
    for v in [V5, V4] {
        let started = Instant::now();
        let got = after_connect(port, v, &huge);
        let took = started.elapsed();
        if v.is_v5() {
            assert_eq!(got, vec![disconnect_packet(ReasonCode::PacketTooLarge)]);
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        assert!(
            took < Duration::from_secs(2),
            "{v:?}: closed after {took:?}"
        );
    }
    // As the first packet: a CONNECT announcing 200 MB.
    let started = Instant::now();
    let mut raw = Raw::open(port, V4);
    let mut connect = vec![0x10];
    connect.extend(varint(200_000_000));
    connect.extend(field(b"MQTT"));
    raw.send_bytes(&connect);
    assert!(raw.until_closed().is_empty());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert_broker_still_serves(port);
}

#[test]
fn packet_identifier_0_in_subscribe_and_unsubscribe_is_malformed() {
    let s = Sluice::start();
    packet_identifier_0_in_subscribe_and_unsubscribe_is_malformed_on(s.port);
}

fn packet_identifier_0_in_subscribe_and_unsubscribe_is_malformed_on(port: u16) {
    assert_refused_both(
        port,
        "SUBSCRIBE with packet id 0",
        |v| {
            let mut b = subscribe_body(v, &[], b"t", 0);
            b[1] = 0;
            frame(0x82, &b)
        },
        ReasonCode::MalformedPacket,
    );
    assert_refused_both(
        port,
        "UNSUBSCRIBE with packet id 0",
        |v| {
            let mut b = vec![0, 0];
            if v.is_v5() {
                b.push(0);
            }
            b.extend(field(b"t"));
            frame(0xa2, &b)
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn unsubscribe_without_filters_is_a_protocol_error() {
    let s = Sluice::start();
    unsubscribe_without_filters_is_a_protocol_error_on(s.port);
}

fn unsubscribe_without_filters_is_a_protocol_error_on(port: u16) {
    assert_refused_both(
        port,
        "UNSUBSCRIBE without filters",
        |v| frame(0xa2, if v.is_v5() { &[0, 1, 0] } else { &[0, 1] }),
        ReasonCode::ProtocolError,
    );
}

#[test]
fn v5_bad_property_values_are_refused() {
    let s = Sluice::start();
    v5_bad_property_values_are_refused_on(s.port);
}

fn v5_bad_property_values_are_refused_on(port: u16) {
    // Property length 0 written in two bytes.
    let mut body = field(b"t");
    body.extend([0x80, 0x00]);
    assert_v5_refused(
        port,
        &frame(0x30, &body),
        ReasonCode::MalformedPacket,
        "non-minimal property length",
    );
    assert_v5_refused(
        port,
        &frame(0x82, &subscribe_body(V5, &[0x0b, 0], b"t", 0)),
        ReasonCode::ProtocolError,
        "subscription identifier 0",
    );
    assert_v5_refused(
        port,
        &frame(0x30, &publish_body(V5, b"t", None, &[0x01, 2])),
        ReasonCode::ProtocolError,
        "payload format indicator 2",
    );
    assert_v5_refused(
        port,
        &frame(0x30, &publish_body(V5, b"t", None, &[0x02, 0, 0])),
        ReasonCode::MalformedPacket,
        "message expiry cut short by the property length",
    );
}

#[test]
fn v5_reason_codes_not_allowed_in_the_packet_are_malformed() {
    let s = Sluice::start();
    v5_reason_codes_not_allowed_in_the_packet_are_malformed_on(s.port);
}

fn v5_reason_codes_not_allowed_in_the_packet_are_malformed_on(port: u16) {
    assert_v5_refused(
        port,
        &frame(0x62, &[0, 1, 0x80]),
        ReasonCode::MalformedPacket,
        "PUBREL with reason 0x80",
    );
    assert_v5_refused(
        port,
        &frame(0xe0, &[0x01]),
        ReasonCode::MalformedPacket,
        "DISCONNECT with reason 0x01",
    );
    assert_v5_refused(
        port,
        &frame(0xe0, &[0x03]),
        ReasonCode::MalformedPacket,
        "DISCONNECT with an undefined reason 0x03",
    );
}

#[test]
fn packets_split_into_single_bytes_are_reassembled() {
    let s = Sluice::start();
    packets_split_into_single_bytes_are_reassembled_on(s.port);
}

fn packets_split_into_single_bytes_are_reassembled_on(port: u16) {
    for v in [V4, V5] {
        let (mut sub, _) = Raw::connect(port, v, "frag-sub", true);
        sub.subscribe(1, &[("frag/t", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(port, v, "frag-pub", true);
        let mut bytes = BytesMut::new();
        let mut m = publish("frag/t", &[b'z'; 300], QoS::AtLeastOnce, 7);
        m.properties.user_properties = vec![("k".into(), "v".into())];
        encode_packet(&Packet::Publish(m), v, &mut bytes).unwrap();
        for b in bytes.iter() {
            p.send_bytes(&[*b]);
        }
        match p.recv() {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, pid(7)),
            other => panic!("{v:?}: expected PUBACK, got {other:?}"),
        }
        let got = sub.expect_publish();
        assert_eq!(got.payload.len(), 300, "{v:?}");
        p.disconnect();
        sub.disconnect();
    }
}

#[test]
fn several_packets_in_one_write_are_all_handled() {
    let s = Sluice::start();
    several_packets_in_one_write_are_all_handled_on(s.port);
}

fn several_packets_in_one_write_are_all_handled_on(port: u16) {
    let (mut c, _) = Raw::connect(port, V5, "batch", true);
    let mut bytes = BytesMut::new();
    for p in [
        Packet::PingReq,
        Packet::Publish(publish("batch/a", b"1", QoS::AtLeastOnce, 1)),
        Packet::PingReq,
    ] {
        encode_packet(&p, V5, &mut bytes).unwrap();
    }
    c.send_bytes(&bytes);
    assert_eq!(c.recv(), Some(Packet::PingResp));
    assert!(matches!(c.recv(), Some(Packet::PubAck(a)) if a.packet_id == pid(1)));
    assert_eq!(c.recv(), Some(Packet::PingResp));
}

#[test]
fn bad_will_or_credentials_in_connect_are_refused() {
    let s = Sluice::start();
    bad_will_or_credentials_in_connect_are_refused_on(s.port);
}

fn bad_will_or_credentials_in_connect_are_refused_on(port: u16) {
    // v5 will topic with a wildcard.
    let mut c = connect_packet(V5, "c", true);
    c.will = Some(will_msg("w/#", b"x", QoS::AtMostOnce, false));
    assert_connect_refused(
        port,
        V5,
        &connect_bytes(c),
        ReasonCode::TopicNameInvalid,
        "will topic with a wildcard",
    );
    // 3.1.1 password without a user name.
    let mut c = connect_packet(V4, "c", true);
    c.password = Some(bytes::Bytes::from_static(b"secret"));
    let mut buf = BytesMut::new();
    encode_packet(&Packet::Connect(Box::new(c)), V4, &mut buf).unwrap();
    assert_connect_refused(
        port,
        V4,
        &buf,
        ReasonCode::MalformedPacket,
        "password without user name",
    );
    // Will QoS set without the will flag (3.1.1).
    let mut buf = BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet(V4, "c", true))),
        V4,
        &mut buf,
    )
    .unwrap();
    buf[9] |= 0x08;
    assert_connect_refused(
        port,
        V4,
        &buf,
        ReasonCode::MalformedPacket,
        "will QoS without will",
    );
    assert_broker_still_serves(port);
}

/// One check of the battery, against the broker at a port.
pub type Check = fn(u16);

/// The battery, each check against a broker at a port (the cluster tests
/// run it against a node of a three-node cluster).
pub const BATTERY: &[(&str, Check)] = &[
    (
        "reserved_fixed_header_flags_are_malformed",
        reserved_fixed_header_flags_are_malformed_on,
    ),
    (
        "publish_with_qos_3_is_malformed",
        publish_with_qos_3_is_malformed_on,
    ),
    (
        "publish_with_dup_on_qos_0_is_malformed",
        publish_with_dup_on_qos_0_is_malformed_on,
    ),
    (
        "publish_with_packet_identifier_0_is_malformed",
        publish_with_packet_identifier_0_is_malformed_on,
    ),
    (
        "publish_with_wildcard_in_topic_is_an_invalid_topic_name",
        publish_with_wildcard_in_topic_is_an_invalid_topic_name_on,
    ),
    (
        "publish_with_empty_topic_and_no_alias_is_refused",
        publish_with_empty_topic_and_no_alias_is_refused_on,
    ),
    (
        "topic_with_bad_utf8_or_nul_is_malformed",
        topic_with_bad_utf8_or_nul_is_malformed_on,
    ),
    (
        "non_minimal_remaining_length_is_malformed",
        non_minimal_remaining_length_is_malformed_on,
    ),
    (
        "packet_body_shorter_than_its_fields_is_malformed",
        packet_body_shorter_than_its_fields_is_malformed_on,
    ),
    (
        "v5_property_not_allowed_in_the_packet_is_malformed",
        v5_property_not_allowed_in_the_packet_is_malformed_on,
    ),
    (
        "v5_duplicate_property_is_a_protocol_error",
        v5_duplicate_property_is_a_protocol_error_on,
    ),
    (
        "v5_topic_alias_0_is_invalid",
        v5_topic_alias_0_is_invalid_on,
    ),
    (
        "bad_subscribe_payloads_are_refused",
        bad_subscribe_payloads_are_refused_on,
    ),
    ("auth_packet_is_refused", auth_packet_is_refused_on),
    (
        "reserved_packet_type_0_is_refused",
        reserved_packet_type_0_is_refused_on,
    ),
    (
        "server_only_packets_from_a_client_are_protocol_errors",
        server_only_packets_from_a_client_are_protocol_errors_on,
    ),
    (
        "malformed_v5_connect_is_refused",
        malformed_v5_connect_is_refused_on,
    ),
    (
        "malformed_v311_connect_is_closed_without_connack",
        malformed_v311_connect_is_closed_without_connack_on,
    ),
    (
        "garbage_before_connect_is_closed_and_the_broker_keeps_serving",
        garbage_before_connect_is_closed_and_the_broker_keeps_serving_on,
    ),
    (
        "huge_remaining_length_is_refused_without_waiting_for_the_body",
        huge_remaining_length_is_refused_without_waiting_for_the_body_on,
    ),
    (
        "packet_identifier_0_in_subscribe_and_unsubscribe_is_malformed",
        packet_identifier_0_in_subscribe_and_unsubscribe_is_malformed_on,
    ),
    (
        "unsubscribe_without_filters_is_a_protocol_error",
        unsubscribe_without_filters_is_a_protocol_error_on,
    ),
    (
        "v5_bad_property_values_are_refused",
        v5_bad_property_values_are_refused_on,
    ),
    (
        "v5_reason_codes_not_allowed_in_the_packet_are_malformed",
        v5_reason_codes_not_allowed_in_the_packet_are_malformed_on,
    ),
    (
        "packets_split_into_single_bytes_are_reassembled",
        packets_split_into_single_bytes_are_reassembled_on,
    ),
    (
        "several_packets_in_one_write_are_all_handled",
        several_packets_in_one_write_are_all_handled_on,
    ),
    (
        "bad_will_or_credentials_in_connect_are_refused",
        bad_will_or_credentials_in_connect_are_refused_on,
    ),
];
