//! Cluster mode: QoS 2 stays exactly once when a persistent session moves
//! to another node, by its client's choice or because its node died
//! (4.3.3, 4.4). The session's flows are recorded in JetStream, so the
//! node that resumes it sends an unacknowledged message again under the
//! same packet id with DUP set, a released one only its PUBREL, and does
//! not route a publisher's repeat of a message it already took.

use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::cluster_nodes::{client, receive, wait_for_route, SluiceCluster};
use crate::harness::{connect_v5, pid, publish, sub_opts, Raw};

/// The next packet that is not a PINGRESP, within `within`.
fn next_packet(raw: &mut Raw, within: Duration) -> Option<Packet> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw.recv_timeout(left)? {
            Packet::PingResp => continue,
            p => return Some(p),
        }
    }
}

/// What `raw` receives until 2 s of quiet, every flow completed.
fn payloads(raw: &mut Raw) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = receive(raw, Duration::from_secs(2)) {
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    got
}

fn resumed(port: u16, client_id: &str) -> Raw {
    let (raw, ack) = Raw::connect_with(port, connect_v5(client_id, false, 600));
    assert!(ack.session_present, "{client_id}: session not resumed");
    raw
}

#[test]
fn a_qos2_delivery_goes_on_under_its_packet_id_wherever_the_session_goes() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let (mut sub, _) = Raw::connect_with(cluster.port(0), connect_v5("eo-sub", false, 600));
    sub.subscribe(1, &[("eo/#", sub_opts(QoS::ExactlyOnce))]);
    let mut publisher = client(cluster.port(1), ProtocolVersion::V5, "eo-pub");
    // A first message completes, so the next takes a packet id a fresh
    // session on another node would not start with.
    publisher.publish(publish("eo/t", b"warm-up", QoS::ExactlyOnce, 1));
    assert_eq!(payloads(&mut sub), ["warm-up"]);

    // The client gets the message and answers nothing: it moves to node 2.
    publisher.publish(publish("eo/t", b"first", QoS::ExactlyOnce, 2));
    let Some(Packet::Publish(first)) = next_packet(&mut sub, Duration::from_secs(15)) else {
        panic!("no PUBLISH on node 0");
    };
    assert_eq!(&first.payload[..], b"first");
    let id = first.packet_id.expect("a QoS 2 PUBLISH has a packet id");
    sub.drop_connection();
    let mut sub = resumed(cluster.port(2), "eo-sub");
    match next_packet(&mut sub, Duration::from_secs(20)) {
        Some(Packet::Publish(again)) => {
            assert_eq!(&again.payload[..], b"first");
            assert!(again.dup, "sent again without DUP: {again:?}");
            assert_eq!(again.packet_id, Some(id), "sent again under another id");
        }
        other => panic!("expected the PUBLISH again on node 2, got {other:?}"),
    }
    // It has it now; PUBREL comes, and node 2 dies before PUBCOMP.
    sub.send(&Packet::PubRec(Ack::new(id)));
    match next_packet(&mut sub, Duration::from_secs(15)) {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    let mut cluster = cluster;
    cluster.nodes[2].kill();

    // On node 0 only the PUBREL comes again, never the message.
    let mut sub = resumed(cluster.port(0), "eo-sub");
    match next_packet(&mut sub, Duration::from_secs(20)) {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
        other => panic!("expected only the PUBREL on node 0, got {other:?}"),
    }
    sub.send(&Packet::PubComp(Ack::new(id)));
    publisher.publish(publish("eo/t", b"second", QoS::ExactlyOnce, 3));
    let second = receive(&mut sub, Duration::from_secs(15)).expect("no second message");
    assert_eq!(&second.payload[..], b"second");
    assert!(
        payloads(&mut sub).is_empty(),
        "more than the second message"
    );

    // The record keeps that completed flow until its next write; node 1
    // learns from the stream that it is done and does not hold its packet
    // id back (a fresh session's first id).
    sub.drop_connection();
    let mut sub = resumed(cluster.port(1), "eo-sub");
    std::thread::sleep(Duration::from_secs(3));
    publisher.publish(publish("eo/t", b"third", QoS::ExactlyOnce, 4));
    let third = receive(&mut sub, Duration::from_secs(15)).expect("no third message");
    assert_eq!(&third.payload[..], b"third");
    assert!(!third.dup);
    assert_eq!(
        third.packet_id, second.packet_id,
        "a done flow's id held back"
    );
    assert!(payloads(&mut sub).is_empty(), "more than the third message");
}

/// A device's QoS 2 PUBLISH, without completing its flow.
fn publish_unreleased(dev: &mut Raw, id: u16, payload: &[u8], dup: bool) {
    let mut p = publish("in/x", payload, QoS::ExactlyOnce, id);
    p.dup = dup;
    dev.send(&Packet::Publish(p));
    match next_packet(dev, Duration::from_secs(15)) {
        Some(Packet::PubRec(a)) => {
            assert_eq!(a.packet_id, pid(id));
            assert_eq!(a.reason, ReasonCode::Success);
        }
        other => panic!("expected PUBREC {id}, got {other:?}"),
    }
}

/// Releases `id`: PUBCOMP must say the id was known.
fn release(dev: &mut Raw, id: u16) {
    dev.send(&Packet::PubRel(Ack::new(pid(id))));
    match next_packet(dev, Duration::from_secs(15)) {
        Some(Packet::PubComp(a)) => {
            assert_eq!(a.packet_id, pid(id));
            assert_eq!(a.reason, ReasonCode::Success, "id {id} unknown");
        }
        other => panic!("expected PUBCOMP {id}, got {other:?}"),
    }
}

#[test]
fn a_qos2_publish_sent_again_on_another_node_is_routed_once() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let mut watcher = client(cluster.port(2), ProtocolVersion::V5, "eo-watch");
    watcher.subscribe(1, &[("in/#", sub_opts(QoS::ExactlyOnce))]);
    // A device that also listens: its session is one the cluster keeps.
    let (mut dev, _) = Raw::connect_with(cluster.port(0), connect_v5("eo-dev", false, 600));
    dev.subscribe(1, &[("dev/cmd", sub_opts(QoS::AtLeastOnce))]);
    wait_for_route(&mut dev, &mut watcher, "in/probe");

    // Taken on node 0; the device never saw the PUBREC and moves.
    publish_unreleased(&mut dev, 7, b"seven", false);
    dev.drop_connection();
    let mut dev = resumed(cluster.port(1), "eo-dev");
    publish_unreleased(&mut dev, 7, b"seven", true);
    release(&mut dev, 7);

    // Taken on node 1, which dies; the device sends it again on node 0.
    publish_unreleased(&mut dev, 8, b"eight", false);
    let mut cluster = cluster;
    cluster.nodes[1].kill();
    let mut dev = resumed(cluster.port(0), "eo-dev");
    publish_unreleased(&mut dev, 8, b"eight", true);
    release(&mut dev, 8);

    // Released ids are free again: a new message under id 7 is routed.
    publish_unreleased(&mut dev, 7, b"new seven", false);
    release(&mut dev, 7);
    let mut got = payloads(&mut watcher);
    got.sort();
    assert_eq!(got, ["eight", "new seven", "seven"]);
}
