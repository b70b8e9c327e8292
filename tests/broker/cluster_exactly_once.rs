//! Cluster mode: QoS 2 stays exactly once when a persistent session moves
//! to another node, by its client's choice or because its node died
//! (4.3.3, 4.4). The session's flows are recorded in JetStream, so the
//! node that resumes it sends an unacknowledged message again under the
//! same packet id with DUP set, a released one only its PUBREL, and does
//! not route a publisher's repeat of a message it already took.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::cluster_nodes::{client, receive, wait_for_route, SluiceCluster};
use crate::cluster_sessions::Roaming;
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

/// What a QoS 2 subscriber handed its application: copies per payload.
type Delivered = Arc<Mutex<HashMap<Vec<u8>, usize>>>;

/// A persistent QoS 2 subscriber that keeps its side of the flows across
/// connections, as a client must (4.3.3): a PUBLISH under a packet id it
/// holds (received, not yet released) is not handed on again. Reconnects
/// to the next node when its node goes; stops after `done` and 5 s quiet.
fn exactly_once_subscriber(ports: Vec<u16>, k: usize, got: Delivered, done: Arc<AtomicBool>) {
    let mut client = Roaming::connect(ports, 0, connect_v5(&format!("eo-durable-{k}"), false, 600));
    let mut held: HashSet<u16> = HashSet::new();
    while !client.finished(&done) {
        match client.next() {
            Some(Packet::Publish(p)) => {
                let Some(id) = p.packet_id else { continue };
                if held.insert(id.get()) {
                    *got.lock().unwrap().entry(p.payload.to_vec()).or_insert(0) += 1;
                }
                client.raw.send(&Packet::PubRec(Ack::new(id)));
            }
            Some(Packet::PubRel(a)) => {
                held.remove(&a.packet_id.get());
                client.raw.send(&Packet::PubComp(Ack::new(a.packet_id)));
            }
            _ => {}
        }
    }
}

/// A QoS 2 publisher on node 1 (which stays up) until `stop`: what got
/// PUBREC is acknowledged.
fn exactly_once_publisher(port: u16, acked: Arc<Mutex<Vec<Vec<u8>>>>, stop: Arc<AtomicBool>) {
    let mut raw = client(port, ProtocolVersion::V5, "eo-loader");
    let mut n = 0u32;
    while !stop.load(Ordering::Acquire) && n < 3000 {
        let payload = format!("q{n}").into_bytes();
        raw.publish(publish(
            "eoload/x",
            &payload,
            QoS::ExactlyOnce,
            (n % 60000 + 1) as u16,
        ));
        acked.lock().unwrap().push(payload);
        n += 1;
    }
}

#[test]
fn qos2_subscribers_get_every_message_exactly_once_when_their_node_dies() {
    let mut cluster = SluiceCluster::start(3, 3, 3);
    let ports: Vec<u16> = (0..3).map(|i| cluster.port(i)).collect();
    let delivered: Vec<Delivered> = (0..2).map(|_| Delivered::default()).collect();
    for k in 0..2 {
        let (mut raw, _) =
            Raw::connect_with(ports[0], connect_v5(&format!("eo-durable-{k}"), false, 600));
        raw.subscribe(1, &[("eoload/#", sub_opts(QoS::ExactlyOnce))]);
        raw.drop_connection();
    }
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    let subscribers: Vec<_> = (0..2)
        .map(|k| {
            let (p, g, d) = (ports.clone(), Arc::clone(&delivered[k]), Arc::clone(&done));
            thread::spawn(move || exactly_once_subscriber(p, k, g, d))
        })
        .collect();
    let publisher = {
        let (a, s) = (Arc::clone(&acked), Arc::clone(&stop));
        let port = ports[1];
        thread::spawn(move || exactly_once_publisher(port, a, s))
    };
    thread::sleep(Duration::from_secs(3));
    cluster.nodes[0].kill();
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Release);
    publisher.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !delivered
            .iter()
            .all(|d| acked.iter().all(|p| d.lock().unwrap().contains_key(p)))
    {
        thread::sleep(Duration::from_millis(500));
    }
    done.store(true, Ordering::Release);
    for s in subscribers {
        s.join().unwrap();
    }
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    for (k, d) in delivered.iter().enumerate() {
        let d = d.lock().unwrap();
        let missing = acked.iter().filter(|p| !d.contains_key(*p)).count();
        let twice: Vec<String> = d
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect();
        eprintln!(
            "eo-durable-{k}: {} acknowledged, {} delivered, {missing} missing, {} twice",
            acked.len(),
            d.len(),
            twice.len()
        );
        assert_eq!(missing, 0, "eo-durable-{k} misses acknowledged messages");
        assert!(
            twice.is_empty(),
            "eo-durable-{k} got these twice: {twice:?}"
        );
    }
}
