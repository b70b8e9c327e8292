//! Cluster mode: messages and retained messages across nodes, on a real
//! NATS cluster (three servers, streams with three replicas) and three
//! Sluice nodes on loopback.

use std::collections::HashMap;
use std::time::Duration;

use bytestring::ByteString;
use sluice::codec::*;

use crate::cluster_nodes::{client, receive, wait_for_counters, wait_for_route, SluiceCluster};
use crate::harness::{publish, sub_opts, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

/// Everything but probes `raw` receives until 1 s of quiet, by payload: (QoS, copies,
/// the last copy).
fn collect(raw: &mut Raw) -> HashMap<Vec<u8>, (QoS, usize, Publish)> {
    let mut got: HashMap<Vec<u8>, (QoS, usize, Publish)> = HashMap::new();
    while let Some(p) = receive(raw, Duration::from_secs(1)) {
        if &p.payload[..] == b"probe" {
            // Late route probes (see `wait_for_route`).
            continue;
        }
        let e = got
            .entry(p.payload.to_vec())
            .or_insert((p.qos, 0, p.clone()));
        e.1 += 1;
        e.2 = p;
    }
    got
}

#[test]
fn a_message_reaches_every_matching_subscription_on_every_node_once() {
    let cluster = SluiceCluster::start(3, 3, 3);
    // Overlapping subscriptions on node 1: one copy at the higher QoS.
    let mut b = client(cluster.port(1), V5, "sub-b");
    b.subscribe(
        1,
        &[
            ("c/#", sub_opts(QoS::ExactlyOnce)),
            ("c/+/x", sub_opts(QoS::AtLeastOnce)),
        ],
    );
    let mut c = client(cluster.port(2), V311, "sub-c");
    c.subscribe(1, &[("c/+/x", sub_opts(QoS::AtLeastOnce))]);
    // On the publisher's own node: the local path, and only it.
    let mut a = client(cluster.port(0), V5, "sub-a");
    a.subscribe(1, &[("c/#", sub_opts(QoS::ExactlyOnce))]);
    // A subscriber whose filter nothing matches gets nothing.
    let mut idle = client(cluster.port(2), V5, "sub-idle");
    idle.subscribe(1, &[("elsewhere/#", sub_opts(QoS::AtLeastOnce))]);

    let mut publisher = client(cluster.port(0), V5, "pub");
    wait_for_route(&mut publisher, &mut b, "c/probe/x");
    wait_for_route(&mut publisher, &mut c, "c/probe/x");
    while receive(&mut a, Duration::from_millis(300)).is_some() {}

    for (payload, qos) in [
        (&b"q0"[..], QoS::AtMostOnce),
        (b"q1", QoS::AtLeastOnce),
        (b"q2", QoS::ExactlyOnce),
    ] {
        let mut p = publish("c/1/x", payload, qos, 7);
        p.properties
            .user_properties
            .push((ByteString::from("k"), ByteString::from("v")));
        p.properties.content_type = Some(ByteString::from("text/plain"));
        publisher.publish(p);
    }

    let on_b = collect(&mut b);
    let on_c = collect(&mut c);
    let on_a = collect(&mut a);
    for (name, got, qos_cap) in [
        ("node 1 (v5, overlapping)", &on_b, QoS::ExactlyOnce),
        ("node 2 (3.1.1)", &on_c, QoS::AtLeastOnce),
        ("node 0 (local)", &on_a, QoS::ExactlyOnce),
    ] {
        assert_eq!(got.len(), 3, "{name}: {:?}", got.keys());
        for (payload, sent_qos) in [
            (&b"q0"[..], QoS::AtMostOnce),
            (b"q1", QoS::AtLeastOnce),
            (b"q2", QoS::ExactlyOnce),
        ] {
            let (qos, copies, p) = &got[payload];
            assert_eq!(*copies, 1, "{name}: {payload:?} delivered {copies} times");
            assert_eq!(*qos, sent_qos.min(qos_cap), "{name}: {payload:?}");
            assert_eq!(p.topic, "c/1/x");
            assert!(!p.retain);
        }
    }
    // v5 properties cross the nodes unchanged.
    let (_, _, p) = &on_b[&b"q1"[..]];
    assert_eq!(
        p.properties.user_properties,
        vec![(ByteString::from("k"), ByteString::from("v"))]
    );
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    idle.expect_silence(Duration::from_millis(300));

    // The admin API and /metrics show the node's part.
    let (status, body) = cluster.nodes[1].admin("GET", "/api/v1/cluster", None, None);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["node"], "node1");
    assert_eq!(view["nats"], "connected");
    assert_eq!(view["ready"], true);
    assert!(
        view["counters"]["received"].as_u64().unwrap() >= 3,
        "{body}"
    );
    assert!(
        view["counters"]["duplicates"].as_u64().unwrap() >= 3,
        "{body}"
    );
    let (_, metrics) = cluster.nodes[0].admin("GET", "/metrics", None, None);
    let durable = crate::harness::metric(
        &metrics,
        "sluice_cluster_published_durable_total{node=\"node0\"}",
    );
    assert!(durable.is_some_and(|n| n >= 2.0), "{metrics}");
}

/// Subscribes `filter` on a fresh connection to `port` and returns the
/// retained messages it gets; tries again (the bucket reaches the other
/// nodes a moment later) until `want` says yes, for up to 30 s.
fn retained_on(port: u16, filter: &str, want: impl Fn(&[Publish]) -> bool) -> Vec<Publish> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let mut raw = client(port, V5, &format!("retained-reader-{n}"));
        raw.subscribe(1, &[(filter, sub_opts(QoS::AtLeastOnce))]);
        let mut got = Vec::new();
        while let Some(p) = receive(&mut raw, Duration::from_millis(500)) {
            got.push(p);
        }
        if want(&got) || std::time::Instant::now() > deadline {
            return got;
        }
    }
}

#[test]
fn retained_messages_are_found_on_every_node() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let mut publisher = client(cluster.port(0), V311, "retainer");
    for (topic, payload) in [("r/1", "one"), ("r/2", "two")] {
        let mut p = publish(topic, payload.as_bytes(), QoS::AtLeastOnce, 3);
        p.retain = true;
        publisher.publish(p);
    }
    let got = retained_on(cluster.port(2), "r/+", |g| g.len() >= 2);
    let mut topics: Vec<(String, Vec<u8>, bool)> = got
        .iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec(), p.retain))
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        vec![
            ("r/1".into(), b"one".to_vec(), true),
            ("r/2".into(), b"two".to_vec(), true)
        ]
    );

    // Cleared on another node: gone everywhere.
    let mut clearer = client(cluster.port(1), V5, "clearer");
    let mut p = publish("r/1", b"", QoS::AtMostOnce, 0);
    p.retain = true;
    clearer.publish(p);
    let got = retained_on(cluster.port(0), "r/#", |g| g.len() == 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic, "r/2");
}

#[test]
fn a_qos1_publish_is_acknowledged_only_once_jetstream_has_stored_it() {
    let mut cluster = SluiceCluster::start(3, 1, 3);
    let mut publisher = client(cluster.port(0), V5, "waiting-publisher");
    publisher.publish(publish("j/1", b"before", QoS::AtLeastOnce, 1));
    // Two of three servers gone: no JetStream quorum, no acknowledgement.
    cluster.nats.kill(1);
    cluster.nats.kill(2);
    publisher.send(&Packet::Publish(publish(
        "j/1",
        b"during",
        QoS::AtLeastOnce,
        2,
    )));
    publisher.expect_silence(Duration::from_secs(3));
    // A quorum again: the publish is stored and acknowledged.
    cluster.nats.restart(1);
    match publisher.recv_timeout(Duration::from_secs(60)) {
        Some(Packet::PubAck(a)) => assert_eq!(a.packet_id.get(), 2),
        other => panic!("expected the PUBACK once a quorum is back, got {other:?}"),
    }
}

#[test]
fn a_node_without_nats_serves_its_own_clients_and_says_so() {
    let port = crate::kafka_peer::free_port();
    let node = crate::harness::Sluice::start_config(&crate::cluster_nodes::node_config(
        &[format!("nats://127.0.0.1:{port}")],
        0,
        1,
    ));
    let mut sub = client(node.port, V5, "local-sub");
    sub.subscribe(1, &[("l/#", sub_opts(QoS::AtMostOnce))]);
    let mut publisher = client(node.port, V311, "local-pub");
    publisher.publish(publish("l/1", b"here", QoS::AtMostOnce, 0));
    let got = receive(&mut sub, Duration::from_secs(5)).expect("delivered locally");
    assert_eq!(&got.payload[..], b"here");

    let (status, body) = node.admin("GET", "/api/v1/cluster", None, None);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(view["nats"], "connected", "{body}");
    assert_eq!(view["ready"], false, "{body}");
    // A QoS 1 publish waits for JetStream: no PUBACK meanwhile.
    publisher.send(&Packet::Publish(publish("l/2", b"w", QoS::AtLeastOnce, 9)));
    publisher.expect_silence(Duration::from_secs(2));
}

#[test]
fn a_single_node_has_no_cluster_view() {
    let node = crate::harness::Sluice::start();
    let (status, _) = node.admin("GET", "/api/v1/cluster", None, None);
    assert_eq!(status, 404);
}

#[test]
fn a_shared_subscription_spans_nodes_and_gets_each_message_once() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let mut members = [
        client(cluster.port(1), V5, "member-1"),
        client(cluster.port(2), V311, "member-2"),
    ];
    for m in &mut members {
        m.subscribe(1, &[("$share/g/s/#", sub_opts(QoS::AtLeastOnce))]);
    }
    let mut plain = client(cluster.port(2), V5, "plain");
    plain.subscribe(1, &[("s/#", sub_opts(QoS::AtLeastOnce))]);
    let mut publisher = client(cluster.port(0), V5, "shared-pub");
    wait_for_route(&mut publisher, &mut plain, "s/probe");
    // Until both members' queue subscriptions are in place.
    let mut probed = [false, false];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while probed != [true, true] {
        assert!(
            std::time::Instant::now() < deadline,
            "members not reached: {probed:?}"
        );
        publisher.publish(publish("s/probe", b"probe", QoS::AtMostOnce, 0));
        for (i, m) in members.iter_mut().enumerate() {
            while receive(m, Duration::from_millis(100)).is_some() {
                probed[i] = true;
            }
        }
    }
    collect(&mut plain);

    let sent = 40;
    for n in 0..sent {
        let payload = format!("m{n}");
        publisher.publish(publish("s/x", payload.as_bytes(), QoS::AtLeastOnce, 5));
    }
    let got: Vec<_> = members.iter_mut().map(collect).collect();
    let mut all: Vec<&Vec<u8>> = got.iter().flat_map(|g| g.keys()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), sent, "every message reached the group");
    for g in &got {
        assert!(g.values().all(|(_, copies, _)| *copies == 1));
        assert!(!g.is_empty(), "NATS balances over both nodes' members");
    }
    assert_eq!(got[0].len() + got[1].len(), sent, "one member per message");
    // A plain subscription beside the group still gets everything.
    assert_eq!(collect(&mut plain).len(), sent);
}

#[test]
fn a_connection_on_another_node_takes_the_client_id_over() {
    let cluster = SluiceCluster::start(3, 2, 3);
    let mut first = client(cluster.port(0), V5, "roamer");
    let mut connected = crate::harness::connect_packet(V5, "roamer", true);
    connected.keep_alive = 60;
    let (_second, _) = Raw::connect_with(cluster.port(1), connected);
    let closing = first.until_closed();
    assert!(
        closing.iter().any(|p| matches!(
            p,
            Packet::Disconnect(d) if d.reason == ReasonCode::SessionTakenOver
        )),
        "the first connection is told 0x8E: {closing:?}"
    );
    // Node 0 ended its session: nothing is left there.
    let (status, body) = cluster.nodes[0].admin("GET", "/api/v1/clients/roamer", None, None);
    assert_eq!(status, 404, "{body}");
}

#[test]
fn another_identity_cannot_take_a_client_id_held_on_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    for (user, password) in [("alice", "a-secret"), ("bob", "b-secret")] {
        let ok = std::process::Command::new(crate::harness::SLUICE)
            .arg("passwd")
            .arg(&passwords)
            .arg(user)
            .args(["--password", password])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let top = format!(
        "allow_anonymous = false\npassword_file = \"{}\"\n",
        passwords.display()
    );
    let cluster = SluiceCluster::start_with(3, 2, 3, &top);
    let login = |user: &str, password: &str| {
        let mut c = crate::harness::connect_packet(V5, "owned", false);
        c.properties.session_expiry_interval = Some(3600);
        c.username = Some(ByteString::from(user));
        c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        c
    };
    let (_alice, _) = Raw::connect_with(cluster.port(0), login("alice", "a-secret"));
    // A claim the bucket does not answer in time lets the CONNECT in
    // unwritten (availability first): wait until Alice's is written.
    wait_for_counters(&cluster.nodes[0], &[("claims_written", 1)]);
    let mut bob = Raw::open(cluster.port(1), V5);
    bob.send(&Packet::Connect(Box::new(login("bob", "b-secret"))));
    match bob.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::NotAuthorized),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Alice herself may move.
    let (_alice_again, _) = Raw::connect_with(cluster.port(1), login("alice", "a-secret"));
}

/// A persistent session with a will on node 0 of a two-node cluster (its
/// connection, kept open), and a subscriber of its topic on node 1 (the
/// route checked).
fn mortal_on_node_0(cluster: &SluiceCluster) -> (Raw, Raw) {
    let mut watcher = client(cluster.port(1), V5, "will-watcher");
    watcher.subscribe(1, &[("w/#", sub_opts(QoS::AtLeastOnce))]);
    let mut prober = client(cluster.port(0), V5, "will-prober");
    wait_for_route(&mut prober, &mut watcher, "w/probe");
    let mut c = crate::harness::connect_v5("mortal", false, 600);
    c.will = Some(Will {
        topic: ByteString::from("w/mortal"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (mortal, _) = Raw::connect_with(cluster.port(0), c);
    // The will reaches the bucket a moment after CONNACK (a node killed
    // before that loses it: the window the README states), and node 0 is
    // seen alive since (its death is told by the end of its heartbeats).
    wait_for_counters(&cluster.nodes[0], &[("wills_kept", 1), ("heartbeats", 2)]);
    (watcher, mortal)
}

#[test]
fn the_will_of_a_client_of_a_killed_node_is_published_by_another_node_once() {
    let mut cluster = SluiceCluster::start(3, 2, 3);
    let (mut watcher, _mortal) = mortal_on_node_0(&cluster);
    // SIGKILL: node 0 cannot publish anything any more.
    cluster.nodes[0].kill();
    let Some(will) = receive(&mut watcher, Duration::from_secs(60)) else {
        let log = cluster.nodes[1].log_lines();
        let log: Vec<&String> = log
            .iter()
            .filter(|l| !l.contains("client connected"))
            .collect();
        panic!("no will from node 1; its log:\n{log:#?}");
    };
    assert_eq!(will.topic, "w/mortal");
    assert_eq!(&will.payload[..], b"gone");
    let (_, body) = cluster.nodes[1].admin("GET", "/api/v1/cluster", None, None);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["counters"]["wills_of_dead_nodes"], 1, "{body}");
    // Node 0 comes back with the session in its store: the will is not
    // published a second time.
    let node0 = cluster.nodes.remove(0).kill_and_restart();
    crate::cluster_nodes::wait_ready(&node0, 0);
    wait_for_counters(&node0, &[("heartbeats", 3)]);
    assert!(
        receive(&mut watcher, Duration::from_secs(3)).is_none(),
        "published once"
    );
}

#[test]
fn a_node_restarted_at_once_publishes_the_wills_its_restart_ended_once() {
    let mut cluster = SluiceCluster::start(3, 2, 3);
    let (mut watcher, _mortal) = mortal_on_node_0(&cluster);
    // Back before the other node takes it for dead.
    let node0 = cluster.nodes.remove(0).kill_and_restart();
    cluster.nodes.insert(0, node0);
    let Some(will) = receive(&mut watcher, Duration::from_secs(60)) else {
        panic!("no will after the restart");
    };
    assert_eq!(&will.payload[..], b"gone");
    assert!(
        receive(&mut watcher, Duration::from_secs(5)).is_none(),
        "published once"
    );
}
