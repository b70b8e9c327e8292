//! Cluster mode: persistent sessions live in JetStream (one consumer per
//! session), so a client resumes its session on any node, and neither a
//! node's death nor a NATS server's loses a message its publisher had
//! acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::cluster_nodes::{client, receive, wait_for_counters, SluiceCluster};
use crate::harness::{connect_v5, publish, sub_opts, Raw};

/// Payloads `raw` receives, with their copies: until every one of
/// `expected` came (or 20 s passed: what the node died with comes again
/// after `REDELIVER_AFTER_SECS`), then until 1 s of quiet.
fn collect(raw: &mut Raw, expected: &[&str]) -> HashMap<Vec<u8>, usize> {
    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let complete =
        |got: &HashMap<Vec<u8>, usize>| expected.iter().all(|e| got.contains_key(e.as_bytes()));
    while !complete(&got) && Instant::now() < deadline {
        if let Some(p) = receive(raw, Duration::from_millis(200)) {
            *got.entry(p.payload.to_vec()).or_insert(0) += 1;
        }
    }
    while let Some(p) = receive(raw, Duration::from_secs(1)) {
        *got.entry(p.payload.to_vec()).or_insert(0) += 1;
    }
    got
}

#[test]
fn a_persistent_session_resumes_on_another_node_with_its_queued_messages() {
    let cluster = SluiceCluster::start(3, 3, 3);
    let (mut keeper, ack) = Raw::connect_with(cluster.port(0), connect_v5("keeper", false, 600));
    assert!(!ack.session_present);
    keeper.subscribe(1, &[("fleet/#", sub_opts(QoS::AtLeastOnce))]);
    keeper.disconnect();

    // Published on node 1 while the session's client is away.
    let mut publisher = client(cluster.port(1), ProtocolVersion::V5, "pub");
    for i in 0..20u32 {
        publisher.publish(publish(
            "fleet/t",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            1 + i as u16,
        ));
    }

    // The client comes back on node 2: same session, same messages, once.
    let (mut keeper, ack) = Raw::connect_with(cluster.port(2), connect_v5("keeper", false, 600));
    assert!(ack.session_present, "session not resumed on node 2");
    let names: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let got = collect(&mut keeper, &names);
    let expected: HashSet<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    assert_eq!(got.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(got.values().all(|n| *n == 1), "copies: {got:?}");
    wait_for_counters(&cluster.nodes[2], &[("sessions_resumed", 1)]);
    shows_every_node_and_the_session(&cluster);

    // Its subscription came along: a publish on its new node (the local
    // path) and one on node 0 each arrive once.
    let mut local = client(cluster.port(2), ProtocolVersion::V5, "pub2");
    local.publish(publish("fleet/a", b"here", QoS::AtLeastOnce, 1));
    publisher.publish(publish("fleet/b", b"there", QoS::AtLeastOnce, 99));
    let got = collect(&mut keeper, &["here", "there"]);
    assert_eq!(got.get(&b"here"[..]), Some(&1), "{got:?}");
    assert_eq!(got.get(&b"there"[..]), Some(&1), "{got:?}");
    keeper.disconnect();

    // A clean start on yet another node ends the session everywhere.
    publisher.publish(publish("fleet/c", b"gone", QoS::AtLeastOnce, 100));
    let (mut fresh, ack) = Raw::connect_with(cluster.port(1), connect_v5("keeper", true, 600));
    assert!(!ack.session_present);
    fresh.expect_silence(Duration::from_secs(1));
    fresh.disconnect();
    let (mut again, ack) = Raw::connect_with(cluster.port(0), connect_v5("keeper", false, 600));
    assert!(!ack.session_present, "the old session came back");
    again.expect_silence(Duration::from_secs(1));
}

#[test]
fn a_persistent_session_back_on_its_own_node_gets_what_came_while_it_was_away_once() {
    let cluster = SluiceCluster::start(3, 2, 3);
    let mut publisher = client(cluster.port(1), ProtocolVersion::V5, "pub");
    for round in 0..2 {
        let (mut homebody, _) =
            Raw::connect_with(cluster.port(0), connect_v5("homebody", false, 600));
        if round == 0 {
            homebody.subscribe(1, &[("home/#", sub_opts(QoS::AtLeastOnce))]);
        }
        // Its feed pauses while it is away (and goes on when it is back).
        homebody.disconnect();
        std::thread::sleep(Duration::from_millis(1500));
        let names: Vec<String> = (0..10).map(|i| format!("r{round}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            publisher.publish(publish(
                "home/x",
                name.as_bytes(),
                QoS::AtLeastOnce,
                1 + i as u16,
            ));
        }
        let (mut homebody, ack) =
            Raw::connect_with(cluster.port(0), connect_v5("homebody", false, 600));
        assert!(ack.session_present);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = collect(&mut homebody, &names);
        assert_eq!(got.len(), 10, "round {round}: {got:?}");
        assert!(got.values().all(|n| *n == 1), "round {round}: {got:?}");
        homebody.disconnect();
    }
}

/// The admin API of node 2 lists the three nodes (node 2 with the
/// resumed client's connection) and the session's consumer; `/metrics`
/// counts the nodes alive.
fn shows_every_node_and_the_session(cluster: &SluiceCluster) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = cluster.nodes[2].admin("GET", "/api/v1/cluster", None, None);
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
        let alive = nodes.iter().all(|n| n["alive"] == true);
        let node2_serves = nodes
            .iter()
            .any(|n| n["name"] == "node2" && n["connections"].as_u64() >= Some(1));
        let consumers = view["stream_consumers"].as_u64().unwrap_or(0);
        if names == ["node0", "node1", "node2"] && alive && node2_serves && consumers >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "cluster view incomplete: {body}");
        thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = cluster.nodes[2].admin("GET", "/metrics", None, None);
    let alive = crate::harness::metric(&metrics, "sluice_cluster_nodes_alive{node=\"node2\"}");
    assert_eq!(alive, Some(3.0), "{metrics}");
}

/// What the fault test's clients saw.
#[derive(Default)]
struct Seen {
    /// Payloads each publisher had acknowledged.
    acked: Mutex<Vec<Vec<u8>>>,
    /// Copies of each payload each subscriber received.
    received: Mutex<Vec<HashMap<Vec<u8>, usize>>>,
}

/// The first node after `from` that accepts the CONNECT, tried in turn.
fn connect_somewhere(ports: &[u16], from: usize, c: &Connect) -> (Raw, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = from;
    loop {
        assert!(Instant::now() < deadline, "no node took {:?}", c.client_id);
        if let Some(raw) = Raw::try_connect_with(ports[i], c.clone()) {
            return (raw, i);
        }
        i = (i + 1) % ports.len();
        thread::sleep(Duration::from_millis(100));
    }
}

/// A client that moves to the next node when its node stops answering
/// (two pings unanswered), as a fleet's devices do.
pub struct Roaming {
    pub raw: Raw,
    at: usize,
    silent: u32,
    ports: Vec<u16>,
    connect: Connect,
    quiet_since: Instant,
}

impl Roaming {
    pub fn connect(ports: Vec<u16>, from: usize, connect: Connect) -> Roaming {
        let (raw, at) = connect_somewhere(&ports, from, &connect);
        Roaming {
            raw,
            at,
            silent: 0,
            ports,
            connect,
            quiet_since: Instant::now(),
        }
    }

    /// The next packet within half a second; on silence a ping, or a move
    /// to the next node.
    pub fn next(&mut self) -> Option<Packet> {
        if let Some(p) = self.raw.recv_timeout(Duration::from_millis(500)) {
            self.silent = 0;
            if matches!(p, Packet::Publish(_)) {
                self.quiet_since = Instant::now();
            }
            return Some(p);
        }
        self.silent += 1;
        if self.silent >= 3 {
            let next = (self.at + 1) % self.ports.len();
            (self.raw, self.at) = connect_somewhere(&self.ports, next, &self.connect);
            self.silent = 0;
        } else {
            self.raw.send(&Packet::PingReq);
        }
        None
    }

    /// `done` was set and no message came for 5 s.
    pub fn finished(&self, done: &AtomicBool) -> bool {
        done.load(Ordering::Acquire) && self.quiet_since.elapsed() > Duration::from_secs(5)
    }
}

/// A persistent subscriber that reconnects to the next node when its node
/// goes, until `done` and 5 s of quiet.
fn subscriber(ports: Vec<u16>, k: usize, seen: Arc<Seen>, done: Arc<AtomicBool>) {
    let mut client = Roaming::connect(ports, k, connect_v5(&format!("durable-{k}"), false, 600));
    while !client.finished(&done) {
        if let Some(Packet::Publish(p)) = client.next() {
            if let Some(id) = p.packet_id {
                client.raw.send(&Packet::PubAck(Ack::new(id)));
            }
            *seen.received.lock().unwrap()[k]
                .entry(p.payload.to_vec())
                .or_insert(0) += 1;
        }
    }
}

/// A QoS 1 publisher on node `k` (the next node when its node goes) until
/// `stop`, noting what was acknowledged.
fn publisher(ports: Vec<u16>, k: usize, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let c = crate::harness::connect_packet(ProtocolVersion::V5, &format!("loader-{k}"), true);
    let (mut raw, mut at) = connect_somewhere(&ports, k, &c);
    let mut n = 0u32;
    while !stop.load(Ordering::Acquire) && n < 4000 {
        let payload = format!("p{k}-{n}").into_bytes();
        let id = (n % 60000 + 1) as u16;
        raw.send(&Packet::Publish(publish(
            "load/x",
            &payload,
            QoS::AtLeastOnce,
            id,
        )));
        match raw.recv_timeout(Duration::from_secs(5)) {
            Some(Packet::PubAck(a)) if a.packet_id.get() == id => {
                seen.acked.lock().unwrap().push(payload);
            }
            _ => (raw, at) = connect_somewhere(&ports, (at + 1) % ports.len(), &c),
        }
        n += 1;
    }
}

#[test]
fn persistent_subscribers_lose_no_acknowledged_message_when_a_node_and_a_nats_server_die() {
    let mut cluster = SluiceCluster::start(3, 3, 3);
    let ports: Vec<u16> = (0..3).map(|i| cluster.port(i)).collect();
    let seen = Arc::new(Seen::default());
    *seen.received.lock().unwrap() = vec![HashMap::new(); 3];
    for (k, port) in ports.iter().enumerate() {
        let (mut raw, _) =
            Raw::connect_with(*port, connect_v5(&format!("durable-{k}"), false, 600));
        raw.subscribe(1, &[("load/#", sub_opts(QoS::AtLeastOnce))]);
        raw.drop_connection();
    }
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let subscribers: Vec<_> = (0..3)
        .map(|k| {
            let (p, s, d) = (ports.clone(), Arc::clone(&seen), Arc::clone(&done));
            thread::spawn(move || subscriber(p, k, s, d))
        })
        .collect();
    let publishers: Vec<_> = (0..3)
        .map(|k| {
            let (p, s, st) = (ports.clone(), Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || publisher(p, k, s, st))
        })
        .collect();

    thread::sleep(Duration::from_secs(2));
    cluster.nodes[0].kill();
    thread::sleep(Duration::from_secs(2));
    cluster.nats.kill(1);
    thread::sleep(Duration::from_secs(3));
    let node0 = cluster.nodes.remove(0).kill_and_restart();
    cluster.nodes.insert(0, node0);
    cluster.nats.restart(1);
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    for p in publishers {
        p.join().unwrap();
    }
    wait_until_received(&seen, Duration::from_secs(90));
    done.store(true, Ordering::Release);
    for s in subscribers {
        s.join().unwrap();
    }
    report(&seen);
}

/// Waits until every subscriber has every acknowledged message (or the
/// time is up; `report` says what is missing).
fn wait_until_received(seen: &Seen, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let acked = seen.acked.lock().unwrap().clone();
        let received = seen.received.lock().unwrap();
        if received
            .iter()
            .all(|r| acked.iter().all(|p| r.contains_key(p)))
        {
            return;
        }
        drop(received);
        thread::sleep(Duration::from_millis(500));
    }
}

/// Asserts nothing acknowledged is missing; prints the duplicates.
fn report(seen: &Seen) {
    let acked = seen.acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "too little load: {} acknowledged",
        acked.len()
    );
    for (k, received) in seen.received.lock().unwrap().iter().enumerate() {
        let missing: Vec<String> = acked
            .iter()
            .filter(|p| !received.contains_key(*p))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let duplicates = received.values().filter(|n| **n > 1).count();
        eprintln!(
            "durable-{k}: {} acknowledged, {} received, {} missing, {duplicates} duplicated",
            acked.len(),
            received.len(),
            missing.len()
        );
        assert!(
            missing.is_empty(),
            "durable-{k} is missing {} acknowledged messages, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
}
