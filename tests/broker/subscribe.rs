//! SUBSCRIBE / SUBACK and UNSUBSCRIBE / UNSUBACK (spec 3.8–3.11), topic
//! filter matching with `+`, `#` and `$`-topics (4.7), overlapping
//! subscriptions and subscription identifiers (3.3.4, 3.8.2.1.2), shared
//! subscriptions (4.8.2) and the per-client subscription limit.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice::codec::*;

use crate::harness::*;

const QUIET: Duration = Duration::from_millis(300);

fn topics(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(|p| p.topic.to_string()).collect()
}

fn with_sub_id(id: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![id],
        ..Properties::default()
    }
}

#[test]
fn suback_grants_the_requested_qos_per_filter() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "granted", true);
        let ack = c.subscribe(
            7,
            &[
                ("g/0", sub_opts(QoS::AtMostOnce)),
                ("g/1", sub_opts(QoS::AtLeastOnce)),
                ("g/2", sub_opts(QoS::ExactlyOnce)),
            ],
        );
        assert_eq!(ack.packet_id, pid(7), "{v:?}");
        assert_eq!(ack.reasons, vec![0, 1, 2], "{v:?}");
        c.disconnect();
    }
}

#[test]
fn invalid_filters_are_refused_per_entry_and_valid_ones_granted() {
    let s = Sluice::start();
    for (v, refused) in [(V4, 0x80), (V5, 0x8F)] {
        let (mut c, _) = Raw::connect(s.port, v, "mixed", true);
        let ack = c.subscribe(
            1,
            &[
                ("ok/+", sub_opts(QoS::AtLeastOnce)),
                ("a/#/b", sub_opts(QoS::AtLeastOnce)),
                ("a+", sub_opts(QoS::AtLeastOnce)),
                ("sport#", sub_opts(QoS::AtLeastOnce)),
                ("", sub_opts(QoS::AtLeastOnce)),
                ("fine", sub_opts(QoS::ExactlyOnce)),
            ],
        );
        assert_eq!(
            ack.reasons,
            vec![1, refused, refused, refused, refused, 2],
            "{v:?}"
        );
        // The valid entries really are in place.
        let (mut p, _) = Raw::connect(s.port, v, "mixed-pub", true);
        p.publish(publish("ok/x", b"1", QoS::AtLeastOnce, 1));
        p.publish(publish("fine", b"2", QoS::AtLeastOnce, 2));
        let got = c.collect_publishes(QUIET);
        assert_eq!(topics(&got), vec!["ok/x", "fine"], "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn plus_and_hash_wildcards_match_by_level() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "wild", true);
        c.subscribe(
            1,
            &[
                ("w/+/c", sub_opts(QoS::AtLeastOnce)),
                ("h/#", sub_opts(QoS::AtLeastOnce)),
            ],
        );
        let (mut p, _) = Raw::connect(s.port, v, "wild-pub", true);
        for t in [
            "w/b/c",   // + matches one level
            "w/b/d",   // last level differs
            "w/b/c/d", // + does not span levels
            "w//c",    // + matches an empty level
            "w/c",     // + needs a level
            "h",       // "h/#" matches the parent level too
            "h/x/y/z", // # spans levels
            "hx/y",    // not under h/
        ] {
            p.publish(publish(t, t.as_bytes(), QoS::AtLeastOnce, 1));
        }
        let got = c.collect_publishes(QUIET);
        assert_eq!(topics(&got), vec!["w/b/c", "w//c", "h", "h/x/y/z"], "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut all, _) = Raw::connect(s.port, v, "hash", true);
        all.subscribe(1, &[("#", sub_opts(QoS::AtLeastOnce))]);
        let (mut plus, _) = Raw::connect(s.port, v, "plus", true);
        plus.subscribe(1, &[("+/bar", sub_opts(QoS::AtLeastOnce))]);
        let (mut dollar, _) = Raw::connect(s.port, v, "dollar", true);
        dollar.subscribe(1, &[("$foo/#", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(s.port, v, "dollar-pub", true);
        p.publish(publish("$foo/bar", b"d", QoS::AtLeastOnce, 1));
        p.publish(publish("foo/bar", b"n", QoS::AtLeastOnce, 2));
        // Only the explicit "$foo/#" sees the $-topic; the wildcard
        // subscribers only the ordinary one.
        assert_eq!(topics(&dollar.collect_publishes(QUIET)), vec!["$foo/bar"]);
        assert_eq!(topics(&all.collect_publishes(QUIET)), vec!["foo/bar"]);
        assert_eq!(topics(&plus.collect_publishes(QUIET)), vec!["foo/bar"]);
        for c in [all, plus, dollar, p] {
            c.disconnect();
        }
    }
}

#[test]
fn client_publishes_to_sys_topics_are_dropped() {
    let s = Sluice::start();
    let (mut sys, _) = Raw::connect(s.port, V5, "sys-watch", true);
    // Not $SYS/#: the broker's own $SYS/broker/... values would arrive.
    sys.subscribe(1, &[("$SYS/fake", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "sys-pub", true);
    p.publish(publish("$SYS/fake", b"x", QoS::AtLeastOnce, 1));
    sys.expect_silence(QUIET);
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "overlap", true);
        c.subscribe(
            1,
            &[
                ("ov/+", sub_opts(QoS::AtMostOnce)),
                ("ov/#", sub_opts(QoS::ExactlyOnce)),
                ("ov/x", sub_opts(QoS::AtLeastOnce)),
            ],
        );
        let (mut p, _) = Raw::connect(s.port, v, "overlap-pub", true);
        p.publish(publish("ov/x", b"once", QoS::ExactlyOnce, 1));
        let got = c.collect_publishes(QUIET);
        assert_eq!(got.len(), 1, "{v:?}: {got:?}");
        assert_eq!(got[0].qos, QoS::ExactlyOnce, "{v:?}");
        assert_eq!(&*got[0].payload, b"once");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn v5_overlapping_subscriptions_carry_every_subscription_identifier() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "ids", true);
    c.subscribe_with(1, &[("id/+", sub_opts(QoS::AtLeastOnce))], with_sub_id(7));
    c.subscribe_with(2, &[("id/#", sub_opts(QoS::AtMostOnce))], with_sub_id(900));
    // A third overlapping subscription without an identifier adds none.
    c.subscribe(3, &[("id/x", sub_opts(QoS::AtMostOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "ids-pub", true);
    p.publish(publish("id/x", b"x", QoS::ExactlyOnce, 1));
    let got = c.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "one copy: {got:?}");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![7, 900]);
}

#[test]
fn v5_subscription_identifier_is_sent_with_matching_messages() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "one-id", true);
    c.subscribe_with(1, &[("sid/a", sub_opts(QoS::AtLeastOnce))], with_sub_id(42));
    c.subscribe(2, &[("sid/b", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "one-id-pub", true);
    p.publish(publish("sid/a", b"a", QoS::AtLeastOnce, 1));
    p.publish(publish("sid/b", b"b", QoS::AtLeastOnce, 2));
    let a = c.expect_publish();
    assert_eq!(&*a.topic, "sid/a");
    assert_eq!(a.properties.subscription_identifiers, vec![42]);
    let b = c.expect_publish();
    assert_eq!(&*b.topic, "sid/b");
    assert!(
        b.properties.subscription_identifiers.is_empty(),
        "subscription without an identifier: {b:?}"
    );
}

#[test]
fn unsubscribe_stops_delivery() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "unsub", true);
        c.subscribe(
            1,
            &[
                ("u/a", sub_opts(QoS::AtLeastOnce)),
                ("u/b", sub_opts(QoS::AtLeastOnce)),
            ],
        );
        c.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            filters: vec!["u/a".into()],
        }));
        match c.recv() {
            Some(Packet::UnsubAck(a)) => assert_eq!(a.packet_id, pid(2)),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        let (mut p, _) = Raw::connect(s.port, v, "unsub-pub", true);
        p.publish(publish("u/a", b"gone", QoS::AtLeastOnce, 1));
        p.publish(publish("u/b", b"kept", QoS::AtLeastOnce, 2));
        let got = c.collect_publishes(QUIET);
        assert_eq!(topics(&got), vec!["u/b"], "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn v5_unsuback_reports_success_and_no_subscription_existed() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "unsuback", true);
    c.subscribe(1, &[("x/y", sub_opts(QoS::AtMostOnce))]);
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(9),
        properties: Properties::default(),
        filters: vec!["x/y".into(), "never/subscribed".into(), "x/y".into()],
    }));
    match c.recv() {
        Some(Packet::UnsubAck(a)) => {
            assert_eq!(a.packet_id, pid(9));
            // The second "x/y" is gone by the time it is processed.
            assert_eq!(a.reasons, vec![0x00, 0x11, 0x11]);
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[test]
fn resubscribing_replaces_the_granted_qos() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "resub", true);
        assert_eq!(
            c.subscribe(1, &[("rs", sub_opts(QoS::ExactlyOnce))])
                .reasons,
            vec![2]
        );
        assert_eq!(
            c.subscribe(2, &[("rs", sub_opts(QoS::AtMostOnce))]).reasons,
            vec![0]
        );
        let (mut p, _) = Raw::connect(s.port, v, "resub-pub", true);
        p.publish(publish("rs", b"x", QoS::ExactlyOnce, 1));
        let got = c.collect_publishes(QUIET);
        assert_eq!(
            got.len(),
            1,
            "{v:?}: the subscription is replaced, not added"
        );
        assert_eq!(got[0].qos, QoS::AtMostOnce, "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn shared_subscription_splits_messages_within_a_group_and_copies_across() {
    let s = Sluice::start();
    let (mut m1, _) = Raw::connect(s.port, V5, "member-1", true);
    let (mut m2, _) = Raw::connect(s.port, V5, "member-2", true);
    let (mut other, _) = Raw::connect(s.port, V5, "other-group", true);
    let (mut plain, _) = Raw::connect(s.port, V5, "plain", true);
    for c in [&mut m1, &mut m2] {
        let ack = c.subscribe(1, &[("$share/g/sh/#", sub_opts(QoS::AtLeastOnce))]);
        assert_eq!(ack.reasons, vec![1]);
    }
    other.subscribe(1, &[("$share/h/sh/#", sub_opts(QoS::AtLeastOnce))]);
    plain.subscribe(1, &[("sh/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "share-pub", true);
    for i in 0..10u16 {
        p.publish(publish(
            &format!("sh/{i}"),
            &[i as u8],
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    let got1 = topics(&m1.collect_publishes(QUIET));
    let got2 = topics(&m2.collect_publishes(QUIET));
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "both members get some: {got1:?} / {got2:?}"
    );
    assert_eq!(got1.len() + got2.len(), 10, "{got1:?} / {got2:?}");
    let union: BTreeSet<String> = got1.iter().chain(&got2).cloned().collect();
    assert_eq!(union.len(), 10, "each message exactly once in the group");
    assert_eq!(other.collect_publishes(QUIET).len(), 10, "other group");
    assert_eq!(plain.collect_publishes(QUIET).len(), 10, "plain subscriber");
}

#[test]
fn v5_shared_subscription_with_no_local_is_a_protocol_error() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "share-nolocal", true);
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: vec![(
            "$share/g/t".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    }));
    assert_eq!(
        c.until_closed(),
        vec![disconnect_packet(ReasonCode::ProtocolError)]
    );
}

#[test]
fn subscription_limit_refuses_new_filters_with_quota_exceeded() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_SUBSCRIPTIONS_PER_CLIENT", "2")]);
    for (v, refused) in [(V4, 0x80), (V5, 0x97)] {
        let (mut c, _) = Raw::connect(s.port, v, "limited", true);
        let ack = c.subscribe(
            1,
            &[
                ("l/a", sub_opts(QoS::AtLeastOnce)),
                ("l/b", sub_opts(QoS::AtLeastOnce)),
                ("l/c", sub_opts(QoS::AtLeastOnce)),
            ],
        );
        assert_eq!(ack.reasons, vec![1, 1, refused], "{v:?}");
        // Replacing an existing subscription is still allowed.
        let ack = c.subscribe(2, &[("l/a", sub_opts(QoS::ExactlyOnce))]);
        assert_eq!(ack.reasons, vec![2], "{v:?}");
        // The refused filter really is not subscribed.
        let (mut p, _) = Raw::connect(s.port, v, "limited-pub", true);
        p.publish(publish("l/c", b"c", QoS::AtLeastOnce, 1));
        p.publish(publish("l/b", b"b", QoS::AtLeastOnce, 2));
        assert_eq!(topics(&c.collect_publishes(QUIET)), vec!["l/b"], "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn shared_subscription_member_leaving_leaves_all_messages_to_the_rest() {
    let s = Sluice::start();
    let (mut m1, _) = Raw::connect(s.port, V5, "leave-1", true);
    let (mut m2, _) = Raw::connect(s.port, V5, "leave-2", true);
    for c in [&mut m1, &mut m2] {
        c.subscribe(1, &[("$share/g/lv", sub_opts(QoS::AtLeastOnce))]);
    }
    m1.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(2),
        properties: Properties::default(),
        filters: vec!["$share/g/lv".into()],
    }));
    match m1.recv() {
        Some(Packet::UnsubAck(a)) => assert_eq!(a.reasons, vec![0x00]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let (mut p, _) = Raw::connect(s.port, V5, "leave-pub", true);
    for i in 1..=4 {
        p.publish(publish("lv", b"x", QoS::AtLeastOnce, i));
    }
    assert_eq!(m2.collect_publishes(QUIET).len(), 4);
    m1.expect_silence(QUIET);
}

#[test]
fn shared_subscription_prefers_online_members() {
    let s = Sluice::start();
    let (mut away, _) = Raw::connect_with(s.port, connect_v5("away", true, 300));
    away.subscribe(1, &[("$share/g/on", sub_opts(QoS::AtLeastOnce))]);
    away.disconnect();
    let (mut here, _) = Raw::connect(s.port, V5, "here", true);
    here.subscribe(1, &[("$share/g/on", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "online-pub", true);
    for i in 1..=4 {
        p.publish(publish("on", b"x", QoS::AtLeastOnce, i));
    }
    assert_eq!(here.collect_publishes(QUIET).len(), 4);
    let (mut away, ack) = Raw::connect_with(s.port, connect_v5("away", false, 300));
    assert!(ack.session_present);
    away.expect_silence(QUIET);
}

#[test]
fn v5_resubscribing_without_identifier_drops_the_old_identifier() {
    let s = Sluice::start();
    let (mut c, _) = Raw::connect(s.port, V5, "reid", true);
    c.subscribe_with(1, &[("reid", sub_opts(QoS::AtLeastOnce))], with_sub_id(5));
    c.subscribe(2, &[("reid", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "reid-pub", true);
    p.publish(publish("reid", b"x", QoS::AtLeastOnce, 1));
    let got = c.expect_publish();
    assert!(
        got.properties.subscription_identifiers.is_empty(),
        "{got:?}"
    );
}

#[test]
fn v5_retained_delivery_carries_the_subscription_identifier() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rid-pub", true);
    let mut m = publish("rid/t", b"r", QoS::AtLeastOnce, 1);
    m.retain = true;
    p.publish(m);
    let (mut c, _) = Raw::connect(s.port, V5, "rid", true);
    c.subscribe_with(1, &[("rid/#", sub_opts(QoS::AtLeastOnce))], with_sub_id(77));
    let got = c.expect_publish();
    assert!(got.retain);
    assert_eq!(got.properties.subscription_identifiers, vec![77]);
}

#[test]
fn filters_over_the_level_limit_are_refused() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_TOPIC_LEVELS", "3")]);
    for (v, refused) in [(V4, 0x80), (V5, 0x8F)] {
        let (mut c, _) = Raw::connect(s.port, v, "levels", true);
        let ack = c.subscribe(
            1,
            &[
                ("a/b/c", sub_opts(QoS::AtMostOnce)),
                ("a/b/c/d", sub_opts(QoS::AtMostOnce)),
                ("a/+/#", sub_opts(QoS::AtMostOnce)),
            ],
        );
        assert_eq!(ack.reasons, vec![0, refused, 0], "{v:?}");
        c.disconnect();
    }
}

/// A member of a shared group that drops with unacknowledged QoS 1
/// messages: its session ends (clean), and the group's other member gets
/// them (v5 4.8.2 "SHOULD"), so nothing PUBACKed to the publisher is lost.
#[test]
fn a_dropped_shared_member_hands_its_unacknowledged_messages_to_the_group() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let filter = format!("$share/g/jobs{}/#", v.level());
        let topic = format!("jobs{}/run", v.level());
        let (mut silent, _) = Raw::connect(s.port, v, "silent", true);
        silent.subscribe(1, &[(filter.as_str(), sub_opts(QoS::AtLeastOnce))]);
        let (mut worker, _) = Raw::connect(s.port, v, "worker", true);
        worker.subscribe(1, &[(filter.as_str(), sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(s.port, v, "producer", true);
        p.publish_burst_qos1(
            (1..=10u16)
                .map(|i| publish(&topic, &[i as u8], QoS::AtLeastOnce, i))
                .collect(),
            Duration::from_secs(5),
        );
        // The silent member receives its share and never acknowledges.
        let mut held = 0;
        while let Some(Packet::Publish(_)) = silent.recv_timeout(QUIET) {
            held += 1;
        }
        assert!(held > 0, "{v:?}: round robin gave the silent member some");
        let mut got: BTreeSet<u8> = BTreeSet::new();
        for m in worker.collect_publishes(QUIET) {
            got.insert(m.payload[0]);
        }
        silent.drop_connection();
        for m in worker.collect_publishes(Duration::from_secs(2)) {
            got.insert(m.payload[0]);
        }
        assert_eq!(
            got,
            (1..=10u8).collect(),
            "{v:?}: every message reached the group"
        );
        worker.disconnect();
        p.disconnect();
    }
}
