//! Attack class "slow peers": a client that stops reading its socket. Its
//! writes are bounded in time, and a takeover or an admin kick completes
//! within a couple of seconds whatever the old connection is doing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::codec::*;

use crate::harness::*;

/// Payload of each flood message: 256 KiB.
const CHUNK: usize = 256 * 1024;

/// Connects `client_id` (v5, clean), subscribes to `flood/#`, and then
/// never reads again: the connection is kept open by the returned socket.
fn stuck_subscriber(port: u16, client_id: &str, will: Option<Will>) -> Raw {
    let mut c = connect_packet(V5, client_id, true);
    c.will = will;
    c.keep_alive = 0;
    let (mut raw, _) = Raw::connect_with(port, c);
    raw.subscribe(1, &[("flood/#", sub_opts(QoS::AtMostOnce))]);
    raw
}

/// Publishes `count` QoS 0 messages of CHUNK bytes: far more than the
/// loopback socket buffers of a client that does not read can take.
fn flood(port: u16, count: usize) {
    let (mut p, _) = Raw::connect(port, V5, "flooder", true);
    let payload = Bytes::from(vec![b'x'; CHUNK]);
    let mut buf = bytes::BytesMut::new();
    for _ in 0..count {
        let mut m = publish("flood/data", b"", QoS::AtMostOnce, 0);
        m.payload = payload.clone();
        encode_packet(&Packet::Publish(m), V5, &mut buf).unwrap();
    }
    p.send_bytes(&buf);
    // A round trip: the broker has read everything before this returns.
    p.send(&Packet::PingReq);
    assert_eq!(
        p.recv_timeout(Duration::from_secs(20)),
        Some(Packet::PingResp)
    );
}

#[test]
fn a_takeover_completes_while_the_old_connection_does_not_read() {
    let s = Sluice::start();
    let _stuck = stuck_subscriber(s.port, "stuck", None);
    flood(s.port, 96);
    // Give the connection time to block in its write.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut raw = Raw::open(s.port, V5);
    raw.send(&Packet::Connect(Box::new(connect_packet(
        V5, "stuck", false,
    ))));
    let ack = match raw.recv_timeout(Duration::from_secs(15)) {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let took = started.elapsed();
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(took < Duration::from_secs(4), "takeover took {took:?}");
}

#[test]
fn an_admin_kick_disconnects_a_client_that_does_not_read() {
    let s = Sluice::start();
    let will = will_msg("gone/stuck", b"bye", QoS::AtMostOnce, false);
    let _stuck = stuck_subscriber(s.port, "stuck", Some(will));
    let (mut watcher, _) = Raw::connect(s.port, V5, "watcher", true);
    watcher.subscribe(1, &[("gone/#", sub_opts(QoS::AtMostOnce))]);
    flood(s.port, 96);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = s.admin("DELETE", "/api/v1/clients/stuck", None, None);
    assert_eq!(status, 200, "{body}");
    let will = watcher.publish_within(Duration::from_secs(10));
    assert_eq!(
        will.map(|p| p.topic.to_string()).as_deref(),
        Some("gone/stuck")
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "kick took {took:?}");
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__WRITE_TIMEOUT_SECS", "1")]);
    let will = will_msg("gone/stuck", b"bye", QoS::AtMostOnce, false);
    let _stuck = stuck_subscriber(s.port, "stuck", Some(will));
    let (mut watcher, _) = Raw::connect(s.port, V5, "watcher", true);
    watcher.subscribe(1, &[("gone/#", sub_opts(QoS::AtMostOnce))]);
    flood(s.port, 96);
    // Nobody asked it to leave: the stalled write ends the connection,
    // the will says so.
    let will = watcher.publish_within(Duration::from_secs(10));
    assert_eq!(
        will.map(|p| p.topic.to_string()).as_deref(),
        Some("gone/stuck")
    );
    let (_, metrics) = s.admin("GET", "/metrics", None, None);
    assert_eq!(
        metric(&metrics, "sluice_slow_consumers_disconnected_total"),
        Some(1.0),
        "counted"
    );
}
