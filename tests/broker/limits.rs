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

/// 40 subscriptions, each sent in a ~1 MB SUBSCRIBE padded with refused
/// filters, kept in a persistent session after DISCONNECT: the 40 short
/// filters must not keep their megabyte packets alive (they did: +47 MiB).
#[test]
fn stored_subscriptions_do_not_pin_their_subscribe_packets() {
    let sluice = Sluice::start();
    let (mut c, _) = Raw::connect_with(sluice.port, connect_v5("pinner", true, 3600));
    let before = sluice.rss_bytes();
    for i in 0..40u16 {
        let mut filters = vec![(format!("pin/{i}").into(), sub_opts(QoS::AtLeastOnce))];
        filters.extend((0..15).map(|_| padding_filter()));
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(i + 1),
            properties: Properties::default(),
            filters,
        }));
        match c.recv_timeout(Duration::from_secs(10)) {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.reasons[0], 1, "{i}");
                assert_eq!(a.reasons.len(), 16);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    c.disconnect();
    let rss = sluice.rss_settles_below(before + 20 * MIB, Duration::from_secs(5));
    assert!(
        rss <= before + 20 * MIB,
        "RSS grew by {} MiB for 40 short subscriptions",
        (rss.saturating_sub(before)) / MIB
    );
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
    let before = sluice.rss_bytes();
    let payload = Bytes::from(vec![b'p'; 1_000_000]);
    for alias in 1..=60u16 {
        let mut p = publish(&format!("alias/{alias}"), &[], QoS::AtMostOnce, 0);
        p.payload = payload.clone();
        p.properties.topic_alias = Some(alias);
        c.send(&Packet::Publish(p));
    }
    c.send(&Packet::PingReq);
    assert_eq!(
        c.recv_timeout(Duration::from_secs(20)),
        Some(Packet::PingResp)
    );
    let rss = sluice.rss_settles_below(before + 20 * MIB, Duration::from_secs(5));
    assert!(
        rss <= before + 20 * MIB,
        "RSS grew by {} MiB for 60 topic aliases",
        (rss.saturating_sub(before)) / MIB
    );
    c.disconnect();
}
