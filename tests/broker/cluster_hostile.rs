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
    let long = "x".repeat(3900);
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
    // ~96 KB of records: about 24 filters of 3.9 KB fit, not 80.
    assert!((10..40).contains(&granted.len()), "{}", granted.len());
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
