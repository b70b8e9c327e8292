//! CONNECT / CONNACK (spec 3.1, 3.2): return codes, client ids, sessions,
//! keep alive and takeover.

use std::time::Duration;

use sluice::codec::*;

use crate::harness::*;

#[test]
fn v311_and_v5_connect_is_accepted() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (c, ack) = Raw::connect(s.port, v, "c1", true);
        assert!(!ack.session_present);
        c.disconnect();
    }
}

#[test]
fn unsupported_protocol_level_gets_return_code_1() {
    let s = Sluice::start();
    let mut raw = Raw::open(s.port, V4);
    // CONNECT "MQTT" level 6.
    raw.send_bytes(&[
        0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 1, b'x',
    ]);
    let got = raw.until_closed();
    match got.first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::UnsupportedProtocolVersion),
        other => panic!("expected CONNACK 0x01, got {other:?}"),
    }
}

#[test]
fn v311_empty_client_id_needs_clean_session() {
    let s = Sluice::start();
    let mut raw = Raw::open(s.port, V4);
    raw.send(&Packet::Connect(Box::new(connect_packet(V4, "", false))));
    match raw.until_closed().first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::ClientIdentifierNotValid),
        other => panic!("expected CONNACK 0x02, got {other:?}"),
    }
    let (c, _) = Raw::connect(s.port, V4, "", true);
    c.disconnect();
}

#[test]
fn v5_empty_client_id_is_assigned() {
    let s = Sluice::start();
    let (c, ack) = Raw::connect(s.port, V5, "", true);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("assigned client id");
    assert!(!id.is_empty());
    c.disconnect();
}

#[test]
fn v5_connack_announces_limits() {
    let s = Sluice::start_with(&[
        ("SLUICE__LIMITS__RECEIVE_MAXIMUM", "20"),
        ("SLUICE__LIMITS__MAX_PACKET_SIZE", "5000"),
    ]);
    let (c, ack) = Raw::connect(s.port, V5, "lim", true);
    assert_eq!(ack.properties.receive_maximum, Some(20));
    assert_eq!(ack.properties.maximum_packet_size, Some(5000));
    assert!(ack.properties.topic_alias_maximum.is_some());
    c.disconnect();
}

#[test]
fn first_packet_must_be_connect() {
    let s = Sluice::start();
    let mut raw = Raw::open(s.port, V4);
    raw.send(&Packet::PingReq);
    assert!(raw.until_closed().is_empty());
}

#[test]
fn second_connect_is_a_protocol_error() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "twice", true);
    c.send(&Packet::Connect(Box::new(connect_packet(
        V5, "twice", true,
    ))));
    let got = c.until_closed();
    assert_eq!(
        got,
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ProtocolError
        ))]
    );
}

#[test]
fn session_present_when_resuming_persistent_session() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let mut c = connect_packet(v, "persist", false);
        if v == V5 {
            c.properties.session_expiry_interval = Some(60);
        }
        let (raw, ack) = Raw::connect_with(s.port, c.clone());
        assert!(!ack.session_present);
        raw.disconnect();
        let (raw, ack) = Raw::connect_with(s.port, c.clone());
        assert!(ack.session_present, "{v:?}");
        raw.disconnect();
        // Clean start discards it.
        let (raw, ack) = Raw::connect(s.port, v, "persist", true);
        assert!(!ack.session_present);
        raw.disconnect();
    }
}

#[test]
fn v5_session_expiry_zero_ends_session_at_disconnect() {
    let s = Sluice::start();
    let (raw, _) = Raw::connect(s.port, V5, "short", false);
    raw.disconnect();
    let (raw, ack) = Raw::connect(s.port, V5, "short", false);
    assert!(!ack.session_present);
    raw.disconnect();
}

#[test]
fn v5_session_expires_after_interval() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "expiring", false);
    c.properties.session_expiry_interval = Some(1);
    let (raw, _) = Raw::connect_with(s.port, c.clone());
    raw.disconnect();
    std::thread::sleep(Duration::from_millis(1600));
    let (raw, ack) = Raw::connect_with(s.port, c);
    assert!(!ack.session_present, "session should have expired");
    raw.disconnect();
}

#[test]
fn takeover_disconnects_first_connection_with_0x8e() {
    let s = Sluice::start();
    let (mut first, _) = Raw::connect(s.port, V5, "dup-id", true);
    let (second, _) = Raw::connect(s.port, V5, "dup-id", true);
    let got = first.until_closed();
    assert_eq!(
        got,
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::SessionTakenOver
        ))]
    );
    second.disconnect();
}

#[test]
fn takeover_in_v311_closes_first_connection() {
    let s = Sluice::start();
    let (mut first, _) = Raw::connect(s.port, V4, "dup-311", false);
    first.subscribe(1, &[("t/1", sub_opts(QoS::AtLeastOnce))]);
    let (mut second, ack) = Raw::connect(s.port, V4, "dup-311", false);
    assert!(ack.session_present);
    assert!(first.until_closed().is_empty());
    // The subscription moved with the session.
    let (mut p, _) = Raw::connect(s.port, V4, "pub", true);
    p.publish(publish("t/1", b"x", QoS::AtLeastOnce, 1));
    assert_eq!(&*second.expect_publish().payload, b"x");
}

// Keep alive expiry (1.5 x the interval, DISCONNECT 0x8D) runs on
// simulated time in `session::machine` tests; the real broker's end of it
// is `will::will_is_published_on_keep_alive_timeout` (0x8D and the will).

#[test]
fn pingreq_keeps_connection_alive() {
    let s = Sluice::start();
    let mut c = connect_packet(V4, "pinger", true);
    c.keep_alive = 1;
    let (mut raw, _) = Raw::connect_with(s.port, c);
    // 1.8 s in all: past the 1.5 s a silent client gets. The rule itself
    // (each packet moves the deadline) is tested on simulated time in
    // `session::machine`.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        raw.send(&Packet::PingReq);
        assert_eq!(raw.recv(), Some(Packet::PingResp));
    }
    raw.disconnect();
}

#[test]
fn server_keep_alive_caps_client_keep_alive() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_KEEP_ALIVE", "30")]);
    let (raw, ack) = Raw::connect(s.port, V5, "ka", true);
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(30),
        "client asked for 60"
    );
    raw.disconnect();
}

#[test]
fn connect_timeout_closes_silent_socket() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__CONNECT_TIMEOUT_SECS", "1")]);
    let mut raw = Raw::open(s.port, V4);
    assert!(raw.until_closed().is_empty());
}

#[test]
fn enhanced_auth_method_is_refused() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "auth", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let mut raw = Raw::open(s.port, V5);
    raw.send(&Packet::Connect(Box::new(c)));
    match raw.until_closed().first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::BadAuthenticationMethod),
        other => panic!("expected CONNACK 0x8C, got {other:?}"),
    }
}

#[test]
fn request_response_information_is_answered() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "rr", true);
    c.properties.request_response_information = Some(1);
    let (raw, ack) = Raw::connect_with(s.port, c);
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("sluice/response/rr")
    );
    raw.disconnect();
}

#[test]
fn max_connections_refuses_with_server_busy() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_CONNECTIONS", "1")]);
    let (first, _) = Raw::connect(s.port, V5, "one", true);
    let mut raw = Raw::open(s.port, V5);
    raw.send(&Packet::Connect(Box::new(connect_packet(V5, "two", true))));
    match raw.until_closed().first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::ServerBusy),
        other => panic!("expected CONNACK 0x89, got {other:?}"),
    }
    first.disconnect();
}

#[test]
fn sigterm_sends_v5_clients_server_shutting_down() {
    let s = Sluice::start();
    let (mut raw, _) = Raw::connect(s.port, V5, "bye", true);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        raw.until_closed(),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ServerShuttingDown
        ))]
    );
}

#[test]
fn slowloris_connect_is_closed_at_the_connect_timeout() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__CONNECT_TIMEOUT_SECS", "1")]);
    let mut raw = Raw::open(s.port, V4);
    let mut bytes = bytes::BytesMut::new();
    encode_packet(
        &Packet::Connect(Box::new(connect_packet(V4, "slow", true))),
        V4,
        &mut bytes,
    )
    .unwrap();
    let started = std::time::Instant::now();
    // One byte every 300 ms: the whole CONNECT would take ~6 s.
    for b in bytes.iter().take(6) {
        raw.send_bytes(&[*b]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        raw.until_closed().is_empty(),
        "no CONNACK for a CONNECT that came too slowly"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed by the timeout, not by the end of input"
    );
}
