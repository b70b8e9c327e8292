//! MQTT 5 features (spec 3.1.2.11, 3.3.2.3, 3.14.2.2, 4.9): message expiry,
//! topic aliases both ways, Receive Maximum both ways, Maximum Packet Size
//! both ways, application properties passed through, no-local, and the
//! protocol errors around session expiry and subscription identifiers.

use std::time::Duration;

use bytes::Bytes;
use sluice::codec::*;

use crate::harness::*;

const QUIET: Duration = Duration::from_millis(300);

fn with_alias(mut p: Publish, alias: u16) -> Publish {
    p.properties.topic_alias = Some(alias);
    p
}

/// Sends `p` and returns everything the broker sends until it closes.
fn send_and_close(c: &mut Raw, p: Packet) -> Vec<Packet> {
    c.send(&p);
    c.until_closed()
}

#[test]
fn message_expiry_is_decremented_for_an_offline_session() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect_with(s.port, connect_v5("exp-sub", true, 300));
    sub.subscribe(1, &[("exp/#", sub_opts(QoS::AtLeastOnce))]);
    sub.disconnect();
    let (mut p, _) = Raw::connect(s.port, V5, "exp-pub", true);
    let mut m = publish("exp/a", b"a", QoS::AtLeastOnce, 1);
    m.properties.message_expiry_interval = Some(10);
    p.publish(m);
    std::thread::sleep(Duration::from_millis(1200));
    let (mut sub, ack) = Raw::connect_with(s.port, connect_v5("exp-sub", false, 300));
    assert!(ack.session_present);
    let got = sub.expect_publish();
    let left = got.properties.message_expiry_interval.expect("expiry kept");
    assert!((1..=9).contains(&left), "remaining expiry {left}, sent 10");
}

#[test]
fn expired_message_is_dropped_for_an_offline_session() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect_with(s.port, connect_v5("drop-sub", true, 300));
    sub.subscribe(1, &[("drop/#", sub_opts(QoS::AtLeastOnce))]);
    sub.disconnect();
    let (mut p, _) = Raw::connect(s.port, V5, "drop-pub", true);
    let mut m = publish("drop/old", b"old", QoS::AtLeastOnce, 1);
    m.properties.message_expiry_interval = Some(1);
    p.publish(m);
    std::thread::sleep(Duration::from_millis(1500));
    p.publish(publish("drop/new", b"new", QoS::AtLeastOnce, 2));
    let (mut sub, _) = Raw::connect_with(s.port, connect_v5("drop-sub", false, 300));
    let got = sub.collect_publishes(QUIET);
    let topics: Vec<&str> = got.iter().map(|p| &*p.topic).collect();
    assert_eq!(topics, vec!["drop/new"]);
    assert_eq!(got[0].properties.message_expiry_interval, None);
}

#[test]
fn topic_alias_from_the_client_is_resolved() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect(s.port, V5, "alias-sub", true);
    sub.subscribe(1, &[("alias/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "alias-pub", true);
    p.publish(with_alias(publish("alias/t", b"1", QoS::AtLeastOnce, 1), 1));
    p.publish(with_alias(publish("", b"2", QoS::AtLeastOnce, 2), 1));
    p.publish(with_alias(publish("", b"3", QoS::AtMostOnce, 0), 1));
    for want in [b"1", b"2", b"3"] {
        let got = sub.expect_publish();
        assert_eq!(&*got.topic, "alias/t");
        assert_eq!(&*got.payload, want);
        assert_eq!(got.properties.topic_alias, None, "aliases are per hop");
    }
    // An alias can be re-pointed to another topic.
    p.publish(with_alias(publish("alias/u", b"4", QoS::AtLeastOnce, 3), 1));
    p.publish(with_alias(publish("", b"5", QoS::AtLeastOnce, 4), 1));
    assert_eq!(&*sub.expect_publish().topic, "alias/u");
    assert_eq!(&*sub.expect_publish().topic, "alias/u");
}

#[test]
fn topic_alias_above_the_maximum_is_refused_with_0x94() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__TOPIC_ALIAS_MAXIMUM", "5")]);
    let (mut c, ack) = Raw::connect(s.port, V5, "alias-big", true);
    assert_eq!(ack.properties.topic_alias_maximum, Some(5));
    // The maximum itself is usable.
    c.publish(with_alias(publish("t", b"x", QoS::AtLeastOnce, 1), 5));
    let got = send_and_close(
        &mut c,
        Packet::Publish(with_alias(publish("t", b"x", QoS::AtMostOnce, 0), 6)),
    );
    assert_eq!(got, vec![disconnect_packet(ReasonCode::TopicAliasInvalid)]);
}

#[test]
fn topic_alias_when_the_broker_allows_none_is_refused_with_0x94() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__TOPIC_ALIAS_MAXIMUM", "0")]);
    let (mut c, ack) = Raw::connect(s.port, V5, "alias-none", true);
    assert_eq!(ack.properties.topic_alias_maximum, None);
    let got = send_and_close(
        &mut c,
        Packet::Publish(with_alias(publish("t", b"x", QoS::AtMostOnce, 0), 1)),
    );
    assert_eq!(got, vec![disconnect_packet(ReasonCode::TopicAliasInvalid)]);
}

#[test]
fn empty_topic_with_unknown_alias_is_a_protocol_error() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "alias-unknown", true);
    let got = send_and_close(
        &mut c,
        Packet::Publish(with_alias(publish("", b"x", QoS::AtLeastOnce, 1), 3)),
    );
    assert_eq!(got, vec![disconnect_packet(ReasonCode::ProtocolError)]);
}

#[test]
fn broker_assigns_topic_aliases_when_the_client_allows_them() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "alias-in", true);
    c.properties.topic_alias_maximum = Some(4);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("ba/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "alias-out", true);
    p.publish(publish("ba/x", b"1", QoS::AtLeastOnce, 1));
    p.publish(publish("ba/x", b"2", QoS::AtLeastOnce, 2));
    p.publish(publish("ba/y", b"3", QoS::AtLeastOnce, 3));
    let first = sub.expect_publish();
    let alias = first.properties.topic_alias.expect("alias assigned");
    assert_eq!(&*first.topic, "ba/x", "the first use carries the topic");
    assert!((1..=4).contains(&alias));
    let second = sub.expect_publish();
    assert_eq!(&*second.topic, "", "the second use sends only the alias");
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(&*second.payload, b"2");
    let third = sub.expect_publish();
    assert_eq!(&*third.topic, "ba/y");
    assert_ne!(third.properties.topic_alias, Some(alias));
}

#[test]
fn no_topic_alias_is_sent_to_a_client_that_did_not_allow_them() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect(s.port, V5, "alias-never", true);
    sub.subscribe(1, &[("nb/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "alias-never-pub", true);
    for i in 1..=2 {
        p.publish(publish("nb/x", b"x", QoS::AtLeastOnce, i));
    }
    for _ in 0..2 {
        let got = sub.expect_publish();
        assert_eq!(&*got.topic, "nb/x");
        assert_eq!(got.properties.topic_alias, None);
    }
}

#[test]
fn client_receive_maximum_limits_unacknowledged_deliveries() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "rm-sub", true);
    c.properties.receive_maximum = Some(2);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("rm", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "rm-pub", true);
    for i in 1..=4u16 {
        p.publish(publish("rm", &[i as u8], QoS::AtLeastOnce, i));
    }
    let a = sub.recv_publish();
    let b = sub.recv_publish();
    assert_eq!((&*a.payload, &*b.payload), (&[1u8][..], &[2u8][..]));
    sub.expect_silence(QUIET);
    sub.send(&Packet::PubAck(Ack::new(a.packet_id.unwrap())));
    assert_eq!(&*sub.recv_publish().payload, &[3]);
    sub.expect_silence(QUIET);
}

#[test]
fn exceeding_the_broker_receive_maximum_is_refused_with_0x93() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__RECEIVE_MAXIMUM", "2")]);
    let (mut c, ack) = Raw::connect(s.port, V5, "rm-over", true);
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for i in 1..=3 {
        c.send(&Packet::Publish(publish("q2", b"x", QoS::ExactlyOnce, i)));
    }
    let got = c.until_closed();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(&got[0], Packet::PubRec(a) if a.packet_id == pid(1)));
    assert!(matches!(&got[1], Packet::PubRec(a) if a.packet_id == pid(2)));
    assert_eq!(
        got[2],
        disconnect_packet(ReasonCode::ReceiveMaximumExceeded)
    );
}

#[test]
fn released_qos2_messages_do_not_count_against_the_receive_maximum() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__RECEIVE_MAXIMUM", "2")]);
    let (mut c, _) = Raw::connect(s.port, V5, "rm-ok", true);
    for i in 1..=5 {
        c.publish(publish("q2", b"x", QoS::ExactlyOnce, i));
    }
    c.disconnect();
}

#[test]
fn message_over_the_client_maximum_packet_size_is_skipped() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "mps-sub", true);
    c.properties.maximum_packet_size = Some(64);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("mps", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "mps-pub", true);
    p.publish(publish("mps", &[b'L'; 100], QoS::AtLeastOnce, 1));
    p.publish(publish("mps", &[b'B'; 100], QoS::AtMostOnce, 0));
    p.publish(publish("mps", b"small", QoS::AtLeastOnce, 2));
    let got = sub.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&*got[0].payload, b"small");
}

/// A session resumed with a smaller Maximum Packet Size: the in-flight
/// messages that no longer fit are not sent again, and their flows end as
/// if they had been (3.1.2.11.4). Kept in flight, they held the client's
/// one Receive Maximum slot and nothing else came.
#[test]
fn resumed_in_flight_message_over_the_new_maximum_packet_size_completes() {
    let s = Sluice::start();
    let mut c = connect_v5("mps-resume", false, 300);
    c.properties.receive_maximum = Some(1);
    let (mut sub, _) = Raw::connect_with(s.port, c.clone());
    sub.subscribe(1, &[("mpsr/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "mps-resume-pub", true);
    p.publish(publish("mpsr/big", &[b'L'; 200], QoS::AtLeastOnce, 1));
    let big = sub.recv_publish();
    assert_eq!(big.payload.len(), 200);
    // Not acknowledged: gone with the connection, in flight in the session.
    sub.drop_connection();
    std::thread::sleep(Duration::from_millis(200));
    p.publish(publish("mpsr/small", b"small", QoS::AtLeastOnce, 2));
    c.clean_start = false;
    c.properties.maximum_packet_size = Some(100);
    let (mut sub, ack) = Raw::connect_with(s.port, c);
    assert!(ack.session_present);
    let got = sub.collect_publishes(QUIET * 3);
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(
        payloads,
        [&b"small"[..]],
        "the big one is not resent, the next one comes"
    );
}

#[test]
fn packet_over_the_broker_maximum_packet_size_is_refused_with_0x95() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_PACKET_SIZE", "1024")]);
    let (mut c, ack) = Raw::connect(s.port, V5, "big", true);
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    // Just under the limit is fine.
    c.publish(publish("big", &[0; 900], QoS::AtLeastOnce, 1));
    let got = send_and_close(
        &mut c,
        Packet::Publish(publish("big", &[0; 2000], QoS::AtLeastOnce, 2)),
    );
    assert_eq!(got, vec![disconnect_packet(ReasonCode::PacketTooLarge)]);
    // 3.1.1 has no DISCONNECT from the server: the connection just closes.
    let (mut c, _) = Raw::connect(s.port, V4, "big4", true);
    let got = send_and_close(
        &mut c,
        Packet::Publish(publish("big", &[0; 2000], QoS::AtLeastOnce, 2)),
    );
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn application_properties_are_passed_through_unchanged() {
    let s = Sluice::start();
    let (mut sub, _) = Raw::connect(s.port, V5, "props-sub", true);
    sub.subscribe(1, &[("props/#", sub_opts(QoS::ExactlyOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "props-pub", true);
    let sent = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain; charset=utf-8".into()),
        response_topic: Some("props/reply/42".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xff])),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("b".into(), "3".into()),
            ("".into(), "".into()),
        ],
        ..Properties::default()
    };
    let mut m = publish("props/x", "héllo".as_bytes(), QoS::ExactlyOnce, 1);
    m.properties = sent.clone();
    p.publish(m);
    let got = sub.expect_publish();
    assert_eq!(got.properties, sent);
    // A message without properties arrives without any.
    p.publish(publish("props/y", b"bare", QoS::AtLeastOnce, 2));
    let bare = sub.expect_publish();
    assert_eq!(bare.properties, Properties::default());
}

#[test]
fn no_local_subscription_does_not_receive_own_publishes() {
    let s = Sluice::start();
    let (mut me, _) = Raw::connect(s.port, V5, "nl-me", true);
    me.subscribe(
        1,
        &[(
            "nl/#",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    );
    let (mut other, _) = Raw::connect(s.port, V5, "nl-other", true);
    other.subscribe(1, &[("nl/#", sub_opts(QoS::AtLeastOnce))]);
    me.publish(publish("nl/mine", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(&*other.expect_publish().payload, b"m");
    me.expect_silence(QUIET);
    // Messages from others still reach the no-local subscriber.
    other.publish(publish("nl/theirs", b"t", QoS::AtLeastOnce, 1));
    assert_eq!(&*me.expect_publish().payload, b"t");
}

#[test]
fn disconnect_setting_session_expiry_after_zero_is_a_protocol_error() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect_with(s.port, connect_v5("exp-zero", false, 0));
    let d = Disconnect {
        reason: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: Some(30),
            ..Properties::default()
        },
    };
    let got = send_and_close(&mut c, Packet::Disconnect(d));
    assert_eq!(got, vec![disconnect_packet(ReasonCode::ProtocolError)]);
    // The session did not take the refused expiry.
    let (c, ack) = Raw::connect_with(s.port, connect_v5("exp-zero", false, 0));
    assert!(!ack.session_present);
    c.disconnect();
}

#[test]
fn disconnect_can_shorten_session_expiry_to_zero() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect_with(s.port, connect_v5("exp-short", false, 300));
    let d = Disconnect {
        reason: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..Properties::default()
        },
    };
    assert!(send_and_close(&mut c, Packet::Disconnect(d)).is_empty());
    let (c, ack) = Raw::connect_with(s.port, connect_v5("exp-short", false, 300));
    assert!(!ack.session_present, "session ended at DISCONNECT");
    c.disconnect();
}

#[test]
fn subscription_identifier_in_a_client_publish_is_a_protocol_error() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "pub-subid", true);
    let mut m = publish("t", b"x", QoS::AtLeastOnce, 1);
    m.properties.subscription_identifiers = vec![5];
    let got = send_and_close(&mut c, Packet::Publish(m));
    assert_eq!(got, vec![disconnect_packet(ReasonCode::ProtocolError)]);
}

#[test]
fn client_receive_maximum_counts_qos2_until_pubcomp() {
    let s = Sluice::start();
    let mut c = connect_packet(V5, "rm2-sub", true);
    c.properties.receive_maximum = Some(1);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("rm2", sub_opts(QoS::ExactlyOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "rm2-pub", true);
    p.publish(publish("rm2", b"1", QoS::ExactlyOnce, 1));
    p.publish(publish("rm2", b"2", QoS::ExactlyOnce, 2));
    let first = sub.recv_publish();
    let id = first.packet_id.unwrap();
    sub.send(&Packet::PubRec(Ack::new(id)));
    assert_eq!(sub.recv(), Some(Packet::PubRel(Ack::new(id))));
    // PUBREL received, PUBCOMP not yet sent: still in flight.
    sub.expect_silence(QUIET);
    sub.send(&Packet::PubComp(Ack::new(id)));
    assert_eq!(&*sub.recv_publish().payload, b"2");
}

#[test]
fn broker_maximum_packet_size_boundary_is_exact() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_PACKET_SIZE", "1024")]);
    let sized = |total: usize| {
        let mut m = publish("edge", b"", QoS::AtMostOnce, 0);
        let overhead = encoded_len(&Packet::Publish(m.clone()), V5);
        // Remaining length takes two bytes for these sizes, one for the empty packet.
        m.payload = vec![b'x'; total - overhead - 1].into();
        assert_eq!(encoded_len(&Packet::Publish(m.clone()), V5), total);
        m
    };
    let (mut sub, _) = Raw::connect(s.port, V5, "edge-sub", true);
    sub.subscribe(1, &[("edge", sub_opts(QoS::AtMostOnce))]);
    let (mut c, _) = Raw::connect(s.port, V5, "edge", true);
    c.send(&Packet::Publish(sized(1024)));
    assert_eq!(sub.recv_publish().payload.len(), sized(1024).payload.len());
    let got = send_and_close(&mut c, Packet::Publish(sized(1025)));
    assert_eq!(got, vec![disconnect_packet(ReasonCode::PacketTooLarge)]);
}

#[test]
fn client_maximum_packet_size_boundary_is_exact() {
    let s = Sluice::start();
    let max = 200usize;
    let mut c = connect_packet(V5, "cedge-sub", true);
    c.properties.maximum_packet_size = Some(max as u32);
    let (mut sub, _) = Raw::connect_with(s.port, c);
    sub.subscribe(1, &[("cedge", sub_opts(QoS::AtMostOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "cedge-pub", true);
    // What the subscriber receives has the same size as what was sent: no
    // properties are added (no alias, no identifier, no expiry).
    let with_total = |total: usize| {
        let mut m = publish("cedge", b"", QoS::AtMostOnce, 0);
        let overhead = encoded_len(&Packet::Publish(m.clone()), V5);
        m.payload = vec![b'y'; total - overhead - 1].into();
        assert_eq!(encoded_len(&Packet::Publish(m.clone()), V5), total);
        m
    };
    p.publish(with_total(max + 1));
    p.publish(with_total(max));
    let got = sub.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(encoded_len(&Packet::Publish(got[0].clone()), V5), max);
}

#[test]
fn client_topic_aliases_do_not_survive_a_reconnect() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect_with(s.port, connect_v5("alias-life", true, 60));
    c.publish(with_alias(publish("al/t", b"1", QoS::AtLeastOnce, 1), 2));
    c.disconnect();
    let (mut c, ack) = Raw::connect_with(s.port, connect_v5("alias-life", false, 60));
    assert!(ack.session_present);
    let got = send_and_close(
        &mut c,
        Packet::Publish(with_alias(publish("", b"2", QoS::AtLeastOnce, 2), 2)),
    );
    assert_eq!(got, vec![disconnect_packet(ReasonCode::ProtocolError)]);
}

#[test]
fn broker_topic_aliases_start_afresh_on_a_new_connection() {
    let s = Sluice::start();
    let mut c = connect_v5("alias-fresh", true, 60);
    c.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = Raw::connect_with(s.port, c.clone());
    sub.subscribe(1, &[("af", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "alias-fresh-pub", true);
    p.publish(publish("af", b"1", QoS::AtLeastOnce, 1));
    assert_eq!(&*sub.expect_publish().topic, "af");
    sub.disconnect();
    c.clean_start = false;
    let (mut sub, _) = Raw::connect_with(s.port, c);
    p.publish(publish("af", b"2", QoS::AtLeastOnce, 2));
    let got = sub.expect_publish();
    assert_eq!(&*got.topic, "af", "a new connection has no aliases yet");
    assert!(got.properties.topic_alias.is_some());
}

#[test]
fn user_properties_on_subscribe_and_unsubscribe_are_accepted() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "up-sub", true);
    let up = Properties {
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    let ack = c.subscribe_with(1, &[("up", sub_opts(QoS::AtLeastOnce))], up.clone());
    assert_eq!(ack.reasons, vec![1]);
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(2),
        properties: up,
        filters: vec!["up".into()],
    }));
    match c.recv() {
        Some(Packet::UnsubAck(a)) => assert_eq!(a.reasons, vec![0]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}
