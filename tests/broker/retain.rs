//! Retained messages (spec 3.3.1.3, 3.8.3.1): storing, replacing and
//! clearing, the RETAIN flag on delivery, v5 retain handling and
//! retain-as-published, shared subscriptions, message expiry and the QoS
//! of a retained delivery.

use std::collections::HashMap;
use std::time::Duration;

use sluice::codec::*;

use crate::harness::*;

const QUIET: Duration = Duration::from_millis(300);

fn retained(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Publish {
    let mut p = publish(topic, payload, qos, id);
    p.retain = true;
    p
}

fn opts(qos: QoS, retain_handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling,
        ..Default::default()
    }
}

#[test]
fn retained_message_is_sent_on_subscribe_with_retain_flag() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let topic = format!("ret/{v:?}");
        let (mut p, _) = Raw::connect(s.port, v, "ret-pub", true);
        p.publish(retained(&topic, b"stored", QoS::AtLeastOnce, 1));
        p.disconnect();
        let (mut c, _) = Raw::connect(s.port, v, "ret-sub", true);
        c.subscribe(1, &[(topic.as_str(), sub_opts(QoS::AtLeastOnce))]);
        let got = c.collect_publishes(QUIET);
        assert_eq!(got.len(), 1, "{v:?}: {got:?}");
        assert!(got[0].retain, "{v:?}: retained delivery has RETAIN set");
        assert_eq!(&*got[0].topic, topic.as_str());
        assert_eq!(&*got[0].payload, b"stored");
        c.disconnect();
    }
}

#[test]
fn newer_retained_message_replaces_the_older_one() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut p, _) = Raw::connect(s.port, v, "replace-pub", true);
        p.publish(retained("rep/t", b"old", QoS::AtLeastOnce, 1));
        p.publish(retained("rep/t", b"new", QoS::AtLeastOnce, 2));
        let (mut c, _) = Raw::connect(s.port, v, "replace-sub", true);
        c.subscribe(1, &[("rep/#", sub_opts(QoS::AtLeastOnce))]);
        let got = c.collect_publishes(QUIET);
        assert_eq!(got.len(), 1, "{v:?}: {got:?}");
        assert_eq!(&*got[0].payload, b"new", "{v:?}");
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn empty_retained_payload_clears_the_topic() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut p, _) = Raw::connect(s.port, v, "clear-pub", true);
        p.publish(retained("clr/t", b"x", QoS::AtLeastOnce, 1));
        p.publish(retained("clr/keep", b"k", QoS::AtLeastOnce, 2));
        p.publish(retained("clr/t", b"", QoS::AtLeastOnce, 3));
        let (mut c, _) = Raw::connect(s.port, v, "clear-sub", true);
        c.subscribe(1, &[("clr/#", sub_opts(QoS::AtLeastOnce))]);
        let got = c.collect_publishes(QUIET);
        let t: Vec<&str> = got.iter().map(|p| &*p.topic).collect();
        assert_eq!(t, vec!["clr/keep"], "{v:?}");
        // Clean up so the next round starts empty.
        p.publish(retained("clr/keep", b"", QoS::AtLeastOnce, 4));
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn live_delivery_clears_retain_flag_unless_retain_as_published() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut c, _) = Raw::connect(s.port, v, "live", true);
        c.subscribe(1, &[("live/t", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(s.port, v, "live-pub", true);
        p.publish(retained("live/t", b"1", QoS::AtLeastOnce, 1));
        let got = c.expect_publish();
        assert!(!got.retain, "{v:?}: live delivery must have RETAIN 0");
        p.publish(retained("live/t", b"", QoS::AtLeastOnce, 2));
        let got = c.expect_publish();
        assert!(
            got.payload.is_empty(),
            "{v:?}: the clearing message is routed"
        );
        p.disconnect();
        c.disconnect();
    }
}

#[test]
fn v5_retain_as_published_keeps_the_retain_flag_on_live_delivery() {
    let s = Sluice::start();
    let (mut rap, _) = Raw::connect(s.port, V5, "rap", true);
    rap.subscribe(
        1,
        &[(
            "rap/t",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                retain_as_published: true,
                ..Default::default()
            },
        )],
    );
    let (mut p, _) = Raw::connect(s.port, V5, "rap-pub", true);
    p.publish(retained("rap/t", b"r", QoS::AtLeastOnce, 1));
    p.publish(publish("rap/t", b"n", QoS::AtLeastOnce, 2));
    let first = rap.expect_publish();
    assert!(first.retain, "retained publish keeps RETAIN: {first:?}");
    let second = rap.expect_publish();
    assert!(!second.retain, "non-retained publish stays 0: {second:?}");
}

#[test]
fn v5_retain_handling_0_sends_retained_on_every_subscribe() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rh0-pub", true);
    p.publish(retained("rh0/t", b"r", QoS::AtLeastOnce, 1));
    let (mut c, _) = Raw::connect(s.port, V5, "rh0", true);
    let o = opts(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe);
    c.subscribe(1, &[("rh0/t", o)]);
    assert_eq!(c.collect_publishes(QUIET).len(), 1, "first subscribe");
    c.subscribe(2, &[("rh0/t", o)]);
    assert_eq!(c.collect_publishes(QUIET).len(), 1, "re-subscribe");
}

#[test]
fn v5_retain_handling_1_sends_retained_only_for_a_new_subscription() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rh1-pub", true);
    p.publish(retained("rh1/t", b"r", QoS::AtLeastOnce, 1));
    let (mut c, _) = Raw::connect(s.port, V5, "rh1", true);
    let o = opts(QoS::AtLeastOnce, RetainHandling::SendIfNew);
    c.subscribe(1, &[("rh1/t", o)]);
    let got = c.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "new subscription gets it: {got:?}");
    assert!(got[0].retain);
    c.subscribe(2, &[("rh1/t", o)]);
    c.expect_silence(QUIET);
    // A different filter is a new subscription again.
    c.subscribe(3, &[("rh1/+", o)]);
    assert_eq!(c.collect_publishes(QUIET).len(), 1, "new filter");
}

#[test]
fn v5_retain_handling_2_never_sends_retained() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rh2-pub", true);
    p.publish(retained("rh2/t", b"r", QoS::AtLeastOnce, 1));
    let (mut c, _) = Raw::connect(s.port, V5, "rh2", true);
    let ack = c.subscribe(
        1,
        &[("rh2/t", opts(QoS::AtLeastOnce, RetainHandling::DoNotSend))],
    );
    assert_eq!(ack.reasons, vec![1]);
    c.expect_silence(QUIET);
    // The subscription works for live messages.
    p.publish(publish("rh2/t", b"live", QoS::AtLeastOnce, 2));
    assert_eq!(&*c.expect_publish().payload, b"live");
}

#[test]
fn retained_messages_are_not_sent_to_shared_subscriptions() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rs-pub", true);
    p.publish(retained("rs/t", b"r", QoS::AtLeastOnce, 1));
    let (mut shared, _) = Raw::connect(s.port, V5, "rs-shared", true);
    shared.subscribe(1, &[("$share/g/rs/#", sub_opts(QoS::AtLeastOnce))]);
    shared.expect_silence(QUIET);
    let (mut plain, _) = Raw::connect(s.port, V5, "rs-plain", true);
    plain.subscribe(1, &[("rs/#", sub_opts(QoS::AtLeastOnce))]);
    assert_eq!(plain.collect_publishes(QUIET).len(), 1);
}

#[test]
fn v5_expired_retained_message_is_not_delivered() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rexp-pub", true);
    let mut short = retained("rexp/short", b"s", QoS::AtLeastOnce, 1);
    short.properties.message_expiry_interval = Some(1);
    p.publish(short);
    let mut long = retained("rexp/long", b"l", QoS::AtLeastOnce, 2);
    long.properties.message_expiry_interval = Some(60);
    p.publish(long);
    std::thread::sleep(Duration::from_millis(1300));
    let (mut c, _) = Raw::connect(s.port, V5, "rexp", true);
    c.subscribe(1, &[("rexp/#", sub_opts(QoS::AtLeastOnce))]);
    let got = c.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "only the unexpired one: {got:?}");
    assert_eq!(&*got[0].topic, "rexp/long");
    let left = got[0].properties.message_expiry_interval.expect("expiry");
    assert!((58..=59).contains(&left), "remaining expiry {left}");
}

#[test]
fn retained_delivery_qos_is_the_minimum_of_stored_and_granted() {
    let s = Sluice::start();
    for v in [V4, V5] {
        let (mut p, _) = Raw::connect(s.port, v, "rq-pub", true);
        p.publish(retained("rq/zero", b"0", QoS::AtMostOnce, 0));
        p.publish(retained("rq/one", b"1", QoS::AtLeastOnce, 1));
        p.publish(retained("rq/two", b"2", QoS::ExactlyOnce, 2));
        let (mut c, _) = Raw::connect(s.port, v, "rq", true);
        c.subscribe(1, &[("rq/+", sub_opts(QoS::AtLeastOnce))]);
        let got: HashMap<String, QoS> = c
            .collect_publishes(QUIET)
            .into_iter()
            .map(|p| (p.topic.to_string(), p.qos))
            .collect();
        let want: HashMap<String, QoS> = [
            ("rq/zero".to_string(), QoS::AtMostOnce),
            ("rq/one".to_string(), QoS::AtLeastOnce),
            ("rq/two".to_string(), QoS::AtLeastOnce),
        ]
        .into();
        assert_eq!(got, want, "{v:?}");
        c.disconnect();
        p.disconnect();
    }
}

#[test]
fn retained_dollar_topics_need_an_explicit_filter() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rd-pub", true);
    p.publish(retained("$dollar/r", b"d", QoS::AtLeastOnce, 1));
    for filter in ["#", "+/r"] {
        let (mut c, _) = Raw::connect(s.port, V5, "rd-wild", true);
        c.subscribe(1, &[(filter, sub_opts(QoS::AtLeastOnce))]);
        c.expect_silence(QUIET);
        c.disconnect();
    }
    let (mut c, _) = Raw::connect(s.port, V5, "rd-explicit", true);
    c.subscribe(1, &[("$dollar/+", sub_opts(QoS::AtLeastOnce))]);
    assert_eq!(&*c.expect_publish().topic, "$dollar/r");
}

#[test]
fn retained_message_keeps_its_v5_properties() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "rprop-pub", true);
    let mut m = retained("rprop/t", b"r", QoS::AtLeastOnce, 1);
    m.properties.content_type = Some("text/plain".into());
    m.properties.user_properties = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    p.publish(m.clone());
    let (mut c, _) = Raw::connect(s.port, V5, "rprop", true);
    c.subscribe(1, &[("rprop/t", sub_opts(QoS::AtLeastOnce))]);
    let got = c.expect_publish();
    assert_eq!(got.properties, m.properties);
}

#[test]
fn retained_message_published_through_a_topic_alias_is_stored_under_its_topic() {
    let s = Sluice::start();
    let (mut p, _) = Raw::connect(s.port, V5, "ralias-pub", true);
    let mut first = retained("ralias/t", b"1", QoS::AtLeastOnce, 1);
    first.properties.topic_alias = Some(1);
    p.publish(first);
    let mut second = retained("", b"2", QoS::AtLeastOnce, 2);
    second.properties.topic_alias = Some(1);
    p.publish(second);
    let (mut c, _) = Raw::connect(s.port, V5, "ralias", true);
    c.subscribe(1, &[("ralias/#", sub_opts(QoS::AtLeastOnce))]);
    let got = c.collect_publishes(QUIET);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((&*got[0].topic, &*got[0].payload), ("ralias/t", &b"2"[..]));
}
