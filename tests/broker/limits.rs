//! Resource limits against a hostile client (issue 17): what a client
//! sends must not pin more memory than what the broker keeps of it, and
//! global budgets refuse with clear reason codes.

use std::time::Duration;

use bytes::Bytes;
use sluice::codec::*;

use crate::harness::*;

const MIB: u64 = 1 << 20;

/// A topic filter the broker refuses (longer than `max_topic_length`),
/// used to make a SUBSCRIBE big.
fn padding_filter() -> (bytestring::ByteString, SubscriptionOptions) {
    ("x".repeat(65_000).into(), sub_opts(QoS::AtMostOnce))
}

/// Sends 40 SUBSCRIBEs of ~1 MB: 15 refused filters each, and the short
/// filter `pin/{i}` first when `keep` (else one more refused filter).
fn subscribe_padded(c: &mut Raw, keep: bool) {
    for i in 0..40u16 {
        let first = if keep {
            (format!("pin/{i}").into(), sub_opts(QoS::AtLeastOnce))
        } else {
            padding_filter()
        };
        let mut filters = vec![first];
        filters.extend((0..15).map(|_| padding_filter()));
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(i + 1),
            properties: Properties::default(),
            filters,
        }));
        match c.recv_timeout(Duration::from_secs(10)) {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.reasons[0] == 1, keep, "{i}");
                assert_eq!(a.reasons.len(), 16);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

/// 40 subscriptions, each sent in a ~1 MB SUBSCRIBE padded with refused
/// filters, kept in a persistent session after DISCONNECT: the 40 short
/// filters must not keep their megabyte packets alive (they did: +58 MiB).
/// The same traffic without a filter kept comes first, so what the
/// allocator keeps cached is in the baseline.
#[test]
fn stored_subscriptions_do_not_pin_their_subscribe_packets() {
    let sluice = Sluice::start();
    let (mut c, _) = Raw::connect_with(sluice.port, connect_v5("pinner", true, 3600));
    subscribe_padded(&mut c, false);
    let before = sluice.rss_bytes();
    subscribe_padded(&mut c, true);
    c.disconnect();
    assert_rss_growth_below(&sluice, before, 20, "40 short subscriptions");
    // The subscriptions are there and work.
    let (mut p, _) = Raw::connect(sluice.port, V5, "pub", true);
    let (mut back, ack) = Raw::connect_with(sluice.port, connect_v5("pinner", false, 3600));
    assert!(ack.session_present);
    p.publish(publish("pin/39", b"y", QoS::AtLeastOnce, 1));
    assert_eq!(&back.expect_publish().topic[..], "pin/39");
}

/// 60 topic aliases, each set up by a ~1 MB PUBLISH: the alias table keeps
/// 60 short topics, not 60 MB of packets (it did: +99 MiB).
#[test]
fn topic_aliases_do_not_pin_their_publish_packets() {
    let sluice = Sluice::start();
    let (mut c, _) = Raw::connect(sluice.port, V5, "aliaser", true);
    let payload = Bytes::from(vec![b'p'; 1_000_000]);
    let mut send_60 = |aliased: bool| {
        for alias in 1..=60u16 {
            let mut p = publish(&format!("alias/{alias}"), &[], QoS::AtMostOnce, 0);
            p.payload = payload.clone();
            p.properties.topic_alias = aliased.then_some(alias);
            c.send(&Packet::Publish(p));
        }
        ping(&mut c);
    };
    // The same traffic without aliases first: the allocator's cache is
    // in the baseline.
    send_60(false);
    let before = sluice.rss_bytes();
    send_60(true);
    assert_rss_growth_below(&sluice, before, 20, "60 topic aliases");
    c.disconnect();
}

/// Waits until the broker has handled everything sent before.
fn ping(c: &mut Raw) {
    c.send(&Packet::PingReq);
    assert_eq!(
        c.recv_timeout(Duration::from_secs(20)),
        Some(Packet::PingResp)
    );
}

/// A 1 MB QoS 0 PUBLISH to `big` and `small` right after it, in one write
/// (so the broker reads them into one buffer).
fn after_a_megabyte(small: Publish) -> bytes::BytesMut {
    let mut big = publish("big", &[], QoS::AtMostOnce, 0);
    big.payload = Bytes::from(vec![b'b'; 1_000_000]);
    let mut pair = bytes::BytesMut::new();
    for p in [big, small] {
        encode_packet(&Packet::Publish(p), V5, &mut pair).expect("encode");
    }
    pair
}

/// The broker's RSS settles within `mib` MiB above `before`.
fn assert_rss_growth_below(s: &Sluice, before: u64, mib: u64, what: &str) {
    let rss = s.rss_settles_below(before + mib * MIB, Duration::from_secs(5));
    assert!(
        rss <= before + mib * MIB,
        "RSS grew by {} MiB for {what}",
        rss.saturating_sub(before) / MIB
    );
}

fn scrape(s: &Sluice) -> String {
    let (status, text) = s.admin("GET", "/metrics", None, None);
    assert_eq!(status, 200, "{text}");
    text
}

fn refusals(s: &Sluice, reason: &str) -> f64 {
    let text = scrape(s);
    let series = format!("sluice_limit_refusals_total{{reason=\"{reason}\"}}");
    metric(&text, &series).unwrap_or_else(|| panic!("no {series} in {text}"))
}

fn budget_used(s: &Sluice, budget: &str) -> f64 {
    let text = scrape(s);
    let series = format!("sluice_budget_used{{budget=\"{budget}\"}}");
    metric(&text, &series).unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// The start of a CONNECT announcing `remaining` bytes: fixed header,
/// protocol name and level, flags, keep alive.
fn connect_head(level: u8, remaining: u32) -> Vec<u8> {
    let mut head = bytes::BytesMut::from(&[0x10u8][..]);
    put_varint(&mut head, remaining).expect("varint");
    head.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60]);
    head.to_vec()
}

/// A CONNECT announcing ~1 MB (under max_packet_size) is refused from its header, before any of
/// its body is sent (it was buffered in full: 1,000 such sockets held
/// +165 MiB): v5 gets CONNACK 0x95, 3.1.1 is closed.
#[test]
fn an_oversized_connect_is_refused_from_its_header() {
    use std::io::{Read, Write};
    let s = Sluice::start();
    for (level, version) in [(5u8, V5), (4, V4)] {
        let mut raw = Raw::open(s.port, version);
        raw.send_bytes(&connect_head(level, 1_000_000));
        let answer = raw.until_closed();
        if level == 5 {
            match answer.as_slice() {
                [Packet::ConnAck(ack)] => assert_eq!(ack.code, ReasonCode::PacketTooLarge),
                other => panic!("expected CONNACK 0x95, got {other:?}"),
            }
        } else {
            assert!(answer.is_empty(), "3.1.1 has no code for it: {answer:?}");
        }
    }
    assert_eq!(refusals(&s, "connect_too_large"), 2.0);
    // A CONNECT with a 60 KB will (the largest a will payload can be is
    // 64 KB) still fits the default.
    let mut c = connect_v5("big-will", true, 0);
    c.will = Some(will_msg("w/t", &[b'w'; 60_000], QoS::AtMostOnce, false));
    Raw::connect_with(s.port, c).0.disconnect();
    // The raw TCP side: the broker closed without waiting for the body.
    let mut sock = std::net::TcpStream::connect(s.addr()).expect("connect");
    sock.write_all(&connect_head(4, 1_000_000)).expect("write");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(sock.read(&mut [0u8; 16]).ok(), Some(0), "closed");
}

/// 300 sockets each sending 50 KB of a 60 KB CONNECT and no more: what
/// they make the broker hold together stays within max_opening_bytes
/// (1 MiB here; without the budget, 300 × 60 KB = 18 MB). Their reads
/// wait, counted; a device with a small CONNECT still gets in meanwhile.
#[test]
fn opening_connections_share_one_byte_budget() {
    let s = Sluice::start_with(&[
        ("SLUICE__LIMITS__MAX_OPENING_BYTES", "1048576"),
        ("SLUICE__LIMITS__CONNECT_TIMEOUT_SECS", "30"),
    ]);
    // The baseline already holds 300 accepted sockets that sent nothing:
    // what a connection costs anyway (its task, bounded by
    // max_connections) is not what this measures, and left in, it made
    // the bound flaky on a busy machine (11 MiB measured once).
    let mut openers: Vec<Raw> = (0..300).map(|_| Raw::open(s.port, V4)).collect();
    let accepted = || metric(&scrape(&s), "sluice_connections_accepted_total").unwrap_or(0.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while accepted() < 300.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.rss_bytes();
    let mut head = connect_head(4, 60_000);
    head.resize(50_000, b'x');
    for raw in &mut openers {
        raw.send_bytes(&head);
    }
    // Until all have been read as far as the budget lets them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let waits = || {
        metric(
            &scrape(&s),
            "sluice_limit_refusals_total{reason=\"opening_wait\"}",
        )
    };
    while waits().unwrap_or(0.0) < 250.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = s.rss_bytes();
    assert!(
        rss <= before + 10 * MIB,
        "RSS grew by {} MiB for 300 unfinished CONNECTs",
        rss.saturating_sub(before) / MIB
    );
    assert!(refusals(&s, "opening_wait") >= 250.0, "{}", scrape(&s));
    let held = budget_used(&s, "opening_bytes");
    assert!(held <= 1_048_576.0, "opening connections hold {held} bytes");
    let (device, _) = Raw::connect(s.port, V4, "small-connect", true);
    device.disconnect();
    drop(openers);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while budget_used(&s, "opening_bytes") > 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(budget_used(&s, "opening_bytes"), 0.0, "given back");
}

fn retained_msg(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Publish {
    let mut p = publish(topic, payload, qos, id);
    p.retain = true;
    p
}

/// Sends `p` and returns the reason of its PUBACK.
fn puback_reason(c: &mut Raw, p: Publish) -> ReasonCode {
    c.send(&Packet::Publish(p));
    match c.recv() {
        Some(Packet::PubAck(a)) => a.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Retained messages share one byte budget (300 kB here; 60 retained
/// messages of 1 MB took +147 MiB before). Over it, a v5 QoS 1 publisher
/// is told 0x97 and nothing is delivered (a retry is safe); a QoS 0 or
/// 3.1.1 publish is delivered but not retained. Replacing a message with
/// one no larger, and clearing, always pass.
#[test]
fn retained_messages_share_one_byte_budget() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_RETAINED_BYTES", "300000")]);
    let (mut sub, _) = Raw::connect(s.port, V5, "r-sub", true);
    sub.subscribe(1, &[("r/#", sub_opts(QoS::AtLeastOnce))]);
    let (mut p, _) = Raw::connect(s.port, V5, "r-pub", true);
    let big = vec![b'r'; 100_000];
    for (i, topic) in ["r/1", "r/2"].iter().enumerate() {
        let id = i as u16 + 1;
        let reason = puback_reason(&mut p, retained_msg(topic, &big, QoS::AtLeastOnce, id));
        assert_eq!(reason, ReasonCode::Success);
        assert_eq!(&sub.expect_publish().topic[..], *topic);
    }
    let reason = puback_reason(&mut p, retained_msg("r/3", &big, QoS::AtLeastOnce, 3));
    assert_eq!(reason, ReasonCode::QuotaExceeded);
    sub.expect_silence(Duration::from_millis(300));
    // QoS 0, and 3.1.1 QoS 1: delivered, not retained.
    p.send(&Packet::Publish(retained_msg(
        "r/4",
        &big,
        QoS::AtMostOnce,
        0,
    )));
    assert_eq!(&sub.expect_publish().topic[..], "r/4");
    let (mut old, _) = Raw::connect(s.port, V4, "r-pub-311", true);
    old.publish(retained_msg("r/5", &big, QoS::AtLeastOnce, 1));
    assert_eq!(&sub.expect_publish().topic[..], "r/5");
    // A smaller replacement passes.
    let reason = puback_reason(&mut p, retained_msg("r/1", b"small", QoS::AtLeastOnce, 4));
    assert_eq!(reason, ReasonCode::Success);
    let (mut late, _) = Raw::connect(s.port, V5, "r-late", true);
    late.subscribe(1, &[("r/#", sub_opts(QoS::AtMostOnce))]);
    let kept: Vec<String> = late
        .collect_publishes(Duration::from_millis(500))
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(kept, ["r/1", "r/2"]);
    assert_eq!(refusals(&s, "retained"), 3.0);
    let used = budget_used(&s, "retained_bytes");
    assert!((100_000.0..=300_000.0).contains(&used), "{used}");
}

/// Sessions are capped (2 here): a CONNECT that would create a third gets
/// CONNACK 0x97 (v5) / 3 server unavailable (3.1.1); resuming or taking
/// over an existing session still works.
#[test]
fn sessions_are_capped_with_a_clear_refusal() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_SESSIONS", "2")]);
    let (_a, _) = Raw::connect_with(s.port, connect_v5("a", true, 3600));
    let (b, _) = Raw::connect(s.port, V4, "b", false);
    for (version, code) in [
        (V5, ReasonCode::QuotaExceeded),
        (V4, ReasonCode::ServerUnavailable),
    ] {
        let mut c = Raw::open(s.port, version);
        c.send(&Packet::Connect(Box::new(connect_packet(
            version, "c", true,
        ))));
        match c.until_closed().as_slice() {
            [Packet::ConnAck(ack)] => assert_eq!(ack.code, code, "{version:?}"),
            other => panic!("expected one CONNACK, got {other:?}"),
        }
    }
    b.disconnect();
    let (_b_again, ack) = Raw::connect(s.port, V4, "b", false);
    assert!(ack.session_present);
    let (_a_taken_over, _) = Raw::connect_with(s.port, connect_v5("a", true, 3600));
    assert_eq!(refusals(&s, "sessions"), 2.0);
    assert_eq!(budget_used(&s, "sessions"), 2.0);
}

/// Bytes queued across all sessions are capped (250 kB here): two
/// offline sessions subscribed to q/# take 4 of 10 deliveries of 50 kB,
/// the other 6 are dropped and counted; the budget is given back as
/// the sessions drain.
#[test]
fn queued_bytes_share_one_budget_across_sessions() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_TOTAL_QUEUED_BYTES", "250000")]);
    for id in ["q1", "q2"] {
        let (mut c, _) = Raw::connect_with(s.port, connect_v5(id, true, 3600));
        c.subscribe(1, &[("q/#", sub_opts(QoS::AtLeastOnce))]);
        c.disconnect();
    }
    let (mut p, _) = Raw::connect(s.port, V5, "q-pub", true);
    for i in 1..=5u16 {
        p.publish(publish("q/x", &[b'q'; 50_000], QoS::AtLeastOnce, i));
    }
    assert_eq!(refusals(&s, "queued_bytes"), 6.0);
    assert_eq!(budget_used(&s, "queued_bytes"), 4.0 * 50_003.0);
    let mut received = 0;
    for id in ["q1", "q2"] {
        let (mut c, _) = Raw::connect_with(s.port, connect_v5(id, false, 3600));
        received += c.collect_publishes(Duration::from_millis(500)).len();
        c.disconnect();
    }
    assert_eq!(received, 4);
    assert_eq!(budget_used(&s, "queued_bytes"), 0.0);
}

/// A small retained message read in the same buffer as a 1 MB PUBLISH
/// before it must not keep that megabyte alive (it did: a slice pins its
/// whole allocation): 40 such pairs keep 40 small messages, not 40 MB.
#[test]
fn retained_messages_do_not_pin_the_buffer_they_were_read_into() {
    let s = Sluice::start_with(&[("SLUICE__PERSISTENCE", "false")]);
    let (mut p, _) = Raw::connect(s.port, V5, "r-small", true);
    let mut send_40 = |retain: bool| {
        for i in 1..=40u16 {
            let mut small = publish(&format!("small/{i}"), b"s", QoS::AtMostOnce, 0);
            small.retain = retain;
            p.send_bytes(&after_a_megabyte(small));
        }
        p.send(&Packet::PingReq);
        assert_eq!(
            p.recv_timeout(Duration::from_secs(20)),
            Some(Packet::PingResp)
        );
    };
    // Not retained first: the allocator's cache is in the baseline.
    send_40(false);
    let before = s.rss_bytes();
    send_40(true);
    assert_rss_growth_below(&s, before, 10, "40 small retained messages");
}

/// The same for messages queued for an offline session: 40 small QoS 1
/// messages, each read right after a 1 MB PUBLISH, must not keep 40 MB
/// alive while they wait.
#[test]
fn queued_messages_do_not_pin_the_buffer_they_were_read_into() {
    let s = Sluice::start_with(&[("SLUICE__PERSISTENCE", "false")]);
    let (mut sub, _) = Raw::connect_with(s.port, connect_v5("offline-sub", true, 3600));
    sub.subscribe(1, &[("small/#", sub_opts(QoS::AtLeastOnce))]);
    sub.disconnect();
    let (mut p, _) = Raw::connect(s.port, V5, "q-small", true);
    let mut send_40 = |prefix: &str| {
        for i in 1..=40u16 {
            let small = publish(&format!("{prefix}/{i}"), b"s", QoS::AtMostOnce, 0);
            p.send_bytes(&after_a_megabyte(small));
        }
        p.send(&Packet::PingReq);
        assert_eq!(
            p.recv_timeout(Duration::from_secs(20)),
            Some(Packet::PingResp)
        );
    };
    // Not queued first: the allocator's cache is in the baseline.
    send_40("nobody");
    let before = s.rss_bytes();
    send_40("small");
    assert_rss_growth_below(&s, before, 10, "40 small queued messages");
    let (mut back, _) = Raw::connect_with(s.port, connect_v5("offline-sub", false, 3600));
    assert_eq!(back.collect_publishes(Duration::from_millis(500)).len(), 40);
}
