//! Hostile clients of a cluster node: what a single node takes must not
//! break the parts cluster mode adds (the session record in JetStream).

use std::time::Duration;

use sluice::codec::*;

use crate::cluster_nodes::{client, receive, wait_for_route, SluiceCluster};
use crate::harness::*;

/// SUBSCRIBE with `filters` (id `id`), all at QoS 1; the SUBACK's codes,
/// or `None` if the connection closed instead.
fn subscribe_all(c: &mut Raw, id: u16, filters: &[String]) -> Option<Vec<u8>> {
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(id)?,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|f| (f.as_str().into(), sub_opts(QoS::AtLeastOnce)))
            .collect(),
    }));
    match c.recv_timeout(Duration::from_secs(30)) {
        Some(Packet::SubAck(a)) => Some(a.reasons),
        _ => None,
    }
}

/// A persistent session's record lives in its JetStream consumer, whose
/// metadata NATS bounds (128 KiB). Long filters past that were accepted,
/// the consumer could not be changed, and the connection closed without
/// SUBACK (after every reconnect again). Now the filters that would not
/// fit are refused in the SUBACK (0x97), the session keeps the rest, and
/// resumes with them on another node.
#[test]
fn a_persistent_session_past_its_record_size_gets_quota_exceeded_not_a_closed_connection() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let (mut hog, _) = Raw::connect_with(cluster.port(0), connect_v5("hog", false, 600));
    // Long, but short enough to cross nodes as a NATS subject.
    let long = "x".repeat(3000);
    let mut granted = Vec::new();
    for batch in 0..8u16 {
        let filters: Vec<String> = (0..10).map(|i| format!("hog/{batch}/{i}/{long}")).collect();
        let reasons = subscribe_all(&mut hog, batch + 1, &filters)
            .unwrap_or_else(|| panic!("batch {batch}: connection closed instead of SUBACK"));
        for (f, r) in filters.into_iter().zip(reasons) {
            assert!(r == 1 || r == 0x97, "{r:#x}");
            if r == 1 {
                granted.push(f);
            }
        }
    }
    // ~96 KB of records: about 32 filters of 3 KB fit, not 80.
    assert!((10..60).contains(&granted.len()), "{}", granted.len());
    hog.disconnect();

    // Resumed on another node, with the granted subscriptions.
    let (mut hog, ack) = Raw::connect_with(cluster.port(1), connect_v5("hog", false, 600));
    assert!(ack.session_present);
    let mut p = client(cluster.port(2), V5, "hog-feeder");
    let last = granted.last().expect("some granted");
    // The route to node 1 is there once the probe (QoS 0) arrives.
    wait_for_route(&mut p, &mut hog, last);
    p.publish(publish(last, b"fits", QoS::AtLeastOnce, 1));
    let got = receive(&mut hog, Duration::from_secs(10)).expect("delivered to the resumed session");
    assert_eq!(&*got.payload, b"fits");
}

/// A topic name MQTT allows (up to 4,096 bytes) can map to a subject
/// longer than a NATS protocol line holds (`*`, `>`, spaces are escaped
/// in three bytes). One QoS 1 publish to it closed the node's NATS
/// connection, and the link sent it again after every reconnect: no other
/// client of that node got a PUBACK again. Now such a message stays on
/// its node (PUBACK, local subscribers get it) and the link goes on.
#[test]
fn a_topic_too_long_for_a_nats_subject_stays_on_its_node_and_the_link_goes_on() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let mut remote = client(cluster.port(1), V5, "calm-remote");
    remote.subscribe(1, &[("calm/#", sub_opts(QoS::AtLeastOnce))]);
    let mut local = client(cluster.port(0), V5, "calm-local");
    local.subscribe(1, &[("calm/#", sub_opts(QoS::AtLeastOnce))]);
    let mut p = client(cluster.port(0), V5, "calm-pub");
    wait_for_route(&mut p, &mut remote, "calm/x");
    while receive(&mut local, Duration::from_millis(300)).is_some() {}

    let long = format!("calm/{}", "y.*> ".repeat(817));
    assert!(long.len() <= 4096);
    let mut hostile = client(cluster.port(0), V5, "long-pub");
    hostile.publish(publish(&long, b"long", QoS::AtLeastOnce, 1));
    let got = receive(&mut local, Duration::from_secs(10)).expect("kept on its node");
    assert_eq!(&*got.payload, b"long");
    // Again and again: counted every time, logged at the 1st, 2nd, 4th.
    for id in 2..=5 {
        hostile.publish(publish(&long, b"long", QoS::AtLeastOnce, id));
    }

    // The link still carries everyone else's messages.
    p.publish(publish("calm/after", b"after", QoS::AtLeastOnce, 2));
    let got = receive(&mut remote, Duration::from_secs(20)).expect("the link goes on");
    assert_eq!(&*got.payload, b"after");

    // Subscribing to it (a NATS SUB line as long) on node 2 leaves node 2
    // connected too.
    let mut lurker = client(cluster.port(2), V5, "long-sub");
    lurker.subscribe(1, &[(long.as_str(), sub_opts(QoS::AtLeastOnce))]);
    let mut p2 = client(cluster.port(2), V5, "calm-pub-2");
    p2.publish(publish("calm/after2", b"after2", QoS::AtLeastOnce, 3));
    let got = receive(&mut remote, Duration::from_secs(20)).expect("node 2's link goes on");
    assert_eq!(&*got.payload, b"after2");
    let (_, body) = cluster.nodes[0].admin("GET", "/api/v1/cluster", None, None);
    let view: serde_json::Value = serde_json::from_str(&body).expect("cluster view");
    assert_eq!(view["counters"]["too_large"], 5, "{body}");
    let logged = cluster.nodes[0]
        .log_lines()
        .iter()
        .filter(|l| l.contains("topic too long for NATS"))
        .count();
    assert_eq!(logged, 3);
}

/// MQTT allows client ids of 65,535 bytes; NATS refuses a consumer
/// description over 4,096, and the description named the client id: such
/// a persistent session could never subscribe (every SUBSCRIBE closed the
/// connection). The description now shows only the id's start.
#[test]
fn a_persistent_session_with_a_long_client_id_subscribes() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let id = "c".repeat(20_000);
    let (mut c, _) = Raw::connect_with(cluster.port(0), connect_v5(&id, false, 600));
    let reasons = subscribe_all(&mut c, 1, &["long/id".to_string()]);
    assert_eq!(reasons, Some(vec![1]));
    let mut p = client(cluster.port(1), V5, "long-id-feeder");
    wait_for_route(&mut p, &mut c, "long/id");
    p.publish(publish("long/id", b"found", QoS::AtLeastOnce, 1));
    let got = receive(&mut c, Duration::from_secs(10)).expect("delivered");
    assert_eq!(&*got.payload, b"found");
}
