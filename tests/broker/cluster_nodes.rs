//! The cluster-mode fixture: a NATS cluster ([`NatsCluster`]) and N Sluice
//! nodes on 127.0.0.1 configured to use it, each with its own data
//! directory; everything is stopped when the fixture is dropped.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::{Raw, Sluice};
use crate::nats_peer::NatsCluster;

/// How long a message a persistent session holds unacknowledged waits
/// before JetStream offers it again (short: tests kill nodes).
pub const REDELIVER_AFTER_SECS: u64 = 3;

/// How long a node may take to reach NATS and find (or make) the stream.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct SluiceCluster {
    pub nats: NatsCluster,
    pub nodes: Vec<Sluice>,
}

impl SluiceCluster {
    /// `servers` NATS servers and `nodes` Sluice nodes, streams with
    /// `replicas` replicas; returns once every node is ready.
    pub fn start(servers: usize, nodes: usize, replicas: usize) -> SluiceCluster {
        SluiceCluster::start_with(servers, nodes, replicas, "")
    }

    /// As [`SluiceCluster::start`], with `top` (top-level keys) at the
    /// head of every node's configuration.
    pub fn start_with(servers: usize, nodes: usize, replicas: usize, top: &str) -> SluiceCluster {
        let nats = NatsCluster::start(servers);
        let urls = nats.urls();
        let nodes = (0..nodes)
            .map(|i| Sluice::start_config(&format!("{top}\n{}", node_config(&urls, i, replicas))))
            .collect();
        let cluster = SluiceCluster { nats, nodes };
        for (i, node) in cluster.nodes.iter().enumerate() {
            wait_ready(node, i);
        }
        cluster
    }

    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }
}

/// A node's configuration: one TCP listener, the cluster table.
pub fn node_config(urls: &[String], i: usize, replicas: usize) -> String {
    let servers: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[cluster]\nservers = [{}]\nnode_name = \"node{i}\"\nreplicas = {replicas}\nredeliver_after_secs = {REDELIVER_AFTER_SECS}\n",
        servers.join(", ")
    )
}

/// Waits for the node's "stream and retained bucket ready" line.
pub fn wait_ready(node: &Sluice, i: usize) {
    let deadline = Instant::now() + READY_WITHIN;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for line in node.log_lines() {
            if line.contains("stream and retained bucket ready") {
                return;
            }
            seen.push(line);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "node{i} did not become ready:\n{}",
        seen[seen.len().saturating_sub(40)..].join("\n")
    );
}

/// A client of `port` that acknowledges what it receives.
pub fn client(port: u16, version: ProtocolVersion, id: &str) -> Raw {
    let (raw, _) = Raw::connect(port, version, id, true);
    raw
}

/// The next PUBLISH within `within`, acknowledged (QoS 1 PUBACK; QoS 2
/// PUBREC, PUBREL, PUBCOMP); `None` if none came.
pub fn receive(raw: &mut Raw, within: Duration) -> Option<Publish> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw.recv_timeout(left)? {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => raw.send(&Packet::PubAck(Ack::new(id))),
                    (QoS::ExactlyOnce, Some(id)) => raw.send(&Packet::PubRec(Ack::new(id))),
                    _ => {}
                }
                return Some(p);
            }
            Packet::PubRel(a) => raw.send(&Packet::PubComp(Ack::new(a.packet_id))),
            _ => {}
        }
    }
}

/// Publishes QoS 0 probes to `topic` from `publisher` until `subscriber`
/// receives one (subscriptions reach the other nodes through NATS a moment
/// after SUBACK), then drains what else arrived.
pub fn wait_for_route(publisher: &mut Raw, subscriber: &mut Raw, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        publisher.publish(crate::harness::publish(topic, b"probe", QoS::AtMostOnce, 0));
        if receive(subscriber, Duration::from_millis(200)).is_some() {
            while receive(subscriber, Duration::from_millis(300)).is_some() {}
            return;
        }
    }
    panic!("no route for {topic} within 30 s");
}

/// Waits (up to 30 s) until every counter of `node`'s cluster view named
/// in `at_least` has reached its value.
pub fn wait_for_counters(node: &Sluice, at_least: &[(&str, u64)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = node.admin("GET", "/api/v1/cluster", None, None);
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        let counters = &view["counters"];
        if at_least
            .iter()
            .all(|(name, min)| counters[*name].as_u64() >= Some(*min))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counters {at_least:?} not reached: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
