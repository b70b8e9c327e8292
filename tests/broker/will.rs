//! Will messages (spec 3.1.2.5–3.1.2.7, 3.1.3.2, 3.14.2.1): published on an
//! abnormal loss of the connection or a keep-alive timeout, not on a normal
//! DISCONNECT, on v5 DISCONNECT 0x04; retained wills; the v5 will delay
//! interval and its interplay with reconnection and session expiry; will
//! properties passed through.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::codec::*;

use crate::harness::*;

const QUIET: Duration = Duration::from_millis(500);

/// A subscriber to `filter` at QoS 1.
fn watcher(port: u16, id: &str, filter: &str) -> Raw {
    let (mut w, _) = Raw::connect(port, V5, id, true);
    w.subscribe(1, &[(filter, sub_opts(QoS::AtLeastOnce))]);
    w
}

fn with_will(mut c: Connect, will: Will) -> Connect {
    c.will = Some(will);
    c
}

#[test]
fn will_is_published_when_the_connection_is_lost() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let mut w = watcher(s.port, "lost-watch", "lost/#");
        let topic = format!("lost/{v:?}");
        let c = with_will(
            connect_packet(v, "lost", true),
            will_msg(&topic, b"gone", QoS::AtLeastOnce, false),
        );
        let (raw, _) = Raw::connect_with(s.port, c);
        raw.drop_connection();
        let got = w.expect_publish();
        assert_eq!(&*got.topic, topic.as_str(), "{v:?}");
        assert_eq!(&*got.payload, b"gone");
        assert_eq!(got.qos, QoS::AtLeastOnce);
        assert!(!got.retain);
        w.disconnect();
    }
}

#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let mut w = watcher(s.port, "polite-watch", "polite/#");
        let c = with_will(
            connect_packet(v, "polite", true),
            will_msg("polite/will", b"gone", QoS::AtLeastOnce, false),
        );
        let (raw, _) = Raw::connect_with(s.port, c);
        raw.disconnect();
        w.expect_silence(QUIET);
        w.disconnect();
    }
}

#[test]
fn v5_disconnect_with_will_message_publishes_the_will() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "dww-watch", "dww/#");
    let c = with_will(
        connect_packet(V5, "dww", true),
        will_msg("dww/will", b"asked", QoS::AtMostOnce, false),
    );
    let (mut raw, _) = Raw::connect_with(s.port, c);
    raw.send(&disconnect_packet(ReasonCode::DisconnectWithWill));
    assert!(raw.until_closed().is_empty());
    assert_eq!(&*w.expect_publish().payload, b"asked");
}

#[test]
fn will_with_retain_flag_is_stored_as_retained() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let topic = format!("wr/{v:?}");
        let c = with_will(
            connect_packet(v, "will-retain", true),
            will_msg(&topic, b"last words", QoS::AtLeastOnce, true),
        );
        let (raw, _) = Raw::connect_with(s.port, c);
        raw.drop_connection();
        // Give the broker a moment to notice the loss, then subscribe late.
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            let (mut late, _) = Raw::connect(s.port, v, "late", true);
            late.subscribe(1, &[(topic.as_str(), sub_opts(QoS::AtLeastOnce))]);
            // A subscriber that arrives before the will sees it live
            // (RETAIN 0); only a later one shows it was retained.
            if let Some(p) = late.publish_within(Duration::from_millis(200)) {
                if p.retain {
                    break p;
                }
            }
            late.disconnect();
            assert!(Instant::now() < deadline, "{v:?}: will never retained");
        };
        assert!(got.retain, "{v:?}: {got:?}");
        assert_eq!(&*got.payload, b"last words");
    }
}

#[test]
fn v5_will_delay_postpones_the_will() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "delay-watch", "delay/#");
    let mut will = will_msg("delay/will", b"late", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(2);
    let (raw, _) = Raw::connect_with(s.port, with_will(connect_v5("delay", true, 60), will));
    let lost = Instant::now();
    raw.drop_connection();
    w.expect_silence(Duration::from_millis(1500));
    let got = w
        .publish_within(Duration::from_secs(2))
        .expect("will after its delay");
    assert_eq!(&*got.payload, b"late");
    let after = lost.elapsed();
    assert!(after >= Duration::from_millis(1900), "will after {after:?}");
}

#[test]
fn v5_will_is_not_published_if_the_client_reconnects_within_the_delay() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "back-watch", "back/#");
    let mut will = will_msg("back/will", b"late", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(2);
    let (raw, _) = Raw::connect_with(s.port, with_will(connect_v5("back", true, 60), will));
    raw.drop_connection();
    std::thread::sleep(Duration::from_millis(300));
    let (again, ack) = Raw::connect_with(s.port, connect_v5("back", false, 60));
    assert!(ack.session_present, "session resumed");
    // Past the original 2 s delay: still nothing.
    w.expect_silence(Duration::from_millis(2500));
    again.disconnect();
    w.expect_silence(Duration::from_millis(200));
}

#[test]
fn v5_will_is_published_when_the_session_ends_before_the_delay() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "end-watch", "end/#");
    let mut will = will_msg("end/will", b"session over", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(30);
    let (raw, _) = Raw::connect_with(s.port, with_will(connect_v5("end", true, 1), will));
    let lost = Instant::now();
    raw.drop_connection();
    w.expect_silence(Duration::from_millis(600));
    let got = w
        .publish_within(Duration::from_secs(2))
        .expect("will when the 1 s session expires, not after 30 s");
    assert_eq!(&*got.payload, b"session over");
    assert!(lost.elapsed() >= Duration::from_millis(900));
}

#[test]
fn will_is_published_on_keep_alive_timeout() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "ka-watch", "ka/#");
    let mut clients = Vec::new();
    for v in [V4, V5] {
        let mut c = with_will(
            connect_packet(v, &format!("ka-{v:?}"), true),
            will_msg(&format!("ka/{v:?}"), b"timeout", QoS::AtLeastOnce, false),
        );
        c.keep_alive = 1;
        clients.push(Raw::connect_with(s.port, c).0);
    }
    // Both stay silent; the broker gives up after 1.5 s.
    let mut got: Vec<String> = (0..2)
        .map(|_| w.expect_publish().topic.to_string())
        .collect();
    got.sort();
    assert_eq!(got, vec!["ka/V311", "ka/V5"]);
    let mut v5 = clients.pop().unwrap();
    assert_eq!(
        v5.until_closed(),
        vec![disconnect_packet(ReasonCode::KeepAliveTimeout)]
    );
}

#[test]
fn will_is_published_when_the_broker_closes_for_a_protocol_error() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let mut w = watcher(s.port, "err-watch", "err/#");
        let c = with_will(
            connect_packet(v, "err", true),
            will_msg("err/will", b"broken", QoS::AtLeastOnce, false),
        );
        let (mut raw, _) = Raw::connect_with(s.port, c);
        // PUBLISH with QoS 3: malformed.
        raw.send_bytes(&[0x36, 0x05, 0x00, 0x01, b'x', 0x00, 0x01]);
        let _ = raw.until_closed();
        assert_eq!(&*w.expect_publish().payload, b"broken", "{v:?}");
        w.disconnect();
    }
}

#[test]
fn v5_will_properties_are_passed_through() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "props-watch", "props/#");
    let mut will = will_msg("props/will", b"{\"ok\":false}", QoS::AtLeastOnce, false);
    will.properties = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("props/reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("k".into(), "1".into()),
            ("a".into(), "x".into()),
            ("k".into(), "2".into()),
        ],
        ..Properties::default()
    };
    let expected = will.properties.clone();
    let (raw, _) = Raw::connect_with(s.port, with_will(connect_packet(V5, "props", true), will));
    raw.drop_connection();
    let got = w.expect_publish();
    assert_eq!(got.properties.payload_format_indicator, Some(1));
    assert_eq!(got.properties.content_type, expected.content_type);
    assert_eq!(got.properties.response_topic, expected.response_topic);
    assert_eq!(got.properties.correlation_data, expected.correlation_data);
    assert_eq!(got.properties.user_properties, expected.user_properties);
    assert_eq!(
        got.properties.will_delay_interval, None,
        "will delay is not a PUBLISH property"
    );
}

#[test]
fn v5_disconnect_with_an_error_reason_publishes_the_will() {
    // MQTT-3.1.2-8 / 3.14.4: only DISCONNECT with reason 0x00 deletes the
    // will; a client reporting an error (0x80) still gets it published.
    let s = Sluice::start();
    let mut w = watcher(s.port, "derr-watch", "derr/#");
    let c = with_will(
        connect_packet(V5, "derr", true),
        will_msg("derr/will", b"failed", QoS::AtLeastOnce, false),
    );
    let (mut raw, _) = Raw::connect_with(s.port, c);
    raw.send(&disconnect_packet(ReasonCode::UnspecifiedError));
    assert!(raw.until_closed().is_empty());
    let got = w.publish_within(Duration::from_secs(2));
    assert_eq!(
        got.map(|p| p.payload),
        Some(Bytes::from_static(b"failed")),
        "DISCONNECT 0x80 must not discard the will"
    );
}

#[test]
fn v5_will_delay_with_session_expiry_0_publishes_at_once() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "zero-watch", "zero/#");
    let mut will = will_msg("zero/will", b"now", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(30);
    let (raw, _) = Raw::connect_with(s.port, with_will(connect_v5("zero", true, 0), will));
    raw.drop_connection();
    let got = w
        .publish_within(Duration::from_secs(2))
        .expect("the session ends at once, and the will with it");
    assert_eq!(&*got.payload, b"now");
}

#[test]
fn v5_session_takeover_publishes_the_old_connections_will() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "to-watch", "to/#");
    let c = with_will(
        connect_v5("to", true, 60),
        will_msg("to/will", b"replaced", QoS::AtLeastOnce, false),
    );
    let (mut old, _) = Raw::connect_with(s.port, c);
    let (new, _) = Raw::connect_with(s.port, connect_v5("to", false, 60));
    assert_eq!(
        old.until_closed(),
        vec![disconnect_packet(ReasonCode::SessionTakenOver)]
    );
    assert_eq!(&*w.expect_publish().payload, b"replaced");
    new.disconnect();
}

#[test]
fn v5_session_takeover_within_the_will_delay_suppresses_the_will() {
    let s = Sluice::start();
    let mut w = watcher(s.port, "tod-watch", "tod/#");
    let mut will = will_msg("tod/will", b"replaced", QoS::AtLeastOnce, false);
    will.properties.will_delay_interval = Some(1);
    let (mut old, _) = Raw::connect_with(s.port, with_will(connect_v5("tod", true, 60), will));
    let (new, ack) = Raw::connect_with(s.port, connect_v5("tod", false, 60));
    assert!(ack.session_present);
    assert_eq!(
        old.until_closed(),
        vec![disconnect_packet(ReasonCode::SessionTakenOver)]
    );
    w.expect_silence(Duration::from_millis(1500));
    new.disconnect();
}

/// A will is a later PUBLISH: a topic a PUBLISH could not use is refused at
/// CONNECT, where the client can still be told. `$SYS` is the broker's.
#[test]
fn will_topics_obey_the_publish_rules() {
    let s = Sluice::start();
    let mut sys = watcher(s.port, "sys-watch", "$SYS/#");
    let deep = vec!["l"; 33].join("/");
    for v in [V4, V5] {
        for (topic, v5_code) in [
            ("$SYS/broker/uptime", ReasonCode::NotAuthorized),
            (deep.as_str(), ReasonCode::TopicNameInvalid),
        ] {
            let c = with_will(
                connect_packet(v, "bad-will", true),
                will_msg(topic, b"x", QoS::AtMostOnce, true),
            );
            let mut raw = Raw::open(s.port, v);
            raw.send(&Packet::Connect(Box::new(c)));
            let expected = if v == V5 {
                v5_code
            } else {
                ReasonCode::NotAuthorized
            };
            match raw.recv() {
                Some(Packet::ConnAck(a)) => assert_eq!(a.code, expected, "{v:?} {topic}"),
                other => panic!("{v:?} {topic}: expected CONNACK, got {other:?}"),
            }
        }
    }
    // Nothing was stored as a retained `$SYS` message.
    let got = sys.collect_publishes(QUIET);
    assert!(
        got.iter().all(|p| &p.payload[..] != b"x"),
        "{:?}",
        got.iter().map(|p| &p.topic).collect::<Vec<_>>()
    );
}
