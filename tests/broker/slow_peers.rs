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

fn parked_subscriber(port: u16, filter: &str) -> Connect {
    let mut c = connect_packet(V5, "slow", false);
    c.properties.session_expiry_interval = Some(600);
    let (mut sub, _) = Raw::connect_with(port, c.clone());
    sub.subscribe(1, &[(filter, sub_opts(QoS::AtLeastOnce))]);
    sub.disconnect();
    c
}

/// The PUBACK reason for one QoS 1 publish.
fn puback_reason(p: &mut Raw, id: u16) -> ReasonCode {
    p.send(&Packet::Publish(publish(
        "pb/x",
        &[id as u8],
        QoS::AtLeastOnce,
        id,
    )));
    match p.recv() {
        Some(Packet::PubAck(a)) => a.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Drops by a full queue are visible per client: in the admin API's
/// client view and, for the sessions that lost the most, in `/metrics`.
#[test]
fn drops_by_a_full_queue_are_counted_per_client() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_QUEUED_MESSAGES", "2")]);
    parked_subscriber(s.port, "pb/#");
    let (mut p, _) = Raw::connect(s.port, V5, "pub", true);
    for id in 1..=5 {
        assert_eq!(puback_reason(&mut p, id), ReasonCode::Success);
    }
    let (status, body) = s.admin("GET", "/api/v1/clients/slow", None, None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["dropped"], 3, "{body}");
    let (_, metrics) = s.admin("GET", "/metrics", None, None);
    assert_eq!(
        metric(
            &metrics,
            "sluice_session_messages_dropped{client_id=\"slow\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
}

/// With `queue_full_policy = "push_back"` on its listener, a persistent
/// subscriber's full queue holds publishers back instead of losing
/// messages: v5 QoS 1 publishes are refused with 0x97 (and retried) until
/// the subscriber has taken a quarter of its queue.
#[test]
fn a_full_persistent_queue_pushes_back_on_publishers() {
    let s = Sluice::start_config(
        "[limits]\nmax_queued_messages = 4\n\n[[listeners]]\nbind = \"127.0.0.1:0\"\nqueue_full_policy = \"push_back\"\n",
    );
    let c = parked_subscriber(s.port, "pb/#");
    let (mut p, _) = Raw::connect(s.port, V5, "pub", true);
    for id in 1..=4 {
        assert_eq!(puback_reason(&mut p, id), ReasonCode::Success, "{id}");
    }
    assert_eq!(puback_reason(&mut p, 5), ReasonCode::QuotaExceeded);
    let (_, body) = s.admin("GET", "/api/v1/clients/slow", None, None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["pushing_back"].clone(), v["dropped"].clone()),
        (true.into(), 0.into()),
        "{body}"
    );
    // The subscriber comes back and takes its messages: nothing was lost.
    let (mut sub, ack) = Raw::connect_with(s.port, c);
    assert!(ack.session_present);
    let got: Vec<u8> = sub
        .collect_publishes(Duration::from_millis(500))
        .iter()
        .map(|m| m.payload[0])
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4]);
    // And publishers may go on.
    assert_eq!(puback_reason(&mut p, 6), ReasonCode::Success);
    assert_eq!(sub.recv_publish().payload[0], 6);
}
