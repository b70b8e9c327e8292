//! QoS 2 into Kafka exactly once (`exactly_once = true`), through SIGKILLs
//! of the broker at random points, against librdkafka's mock cluster (in
//! this process, on a real port; it implements the transaction APIs, tansu
//! 0.6.0 does not).
//!
//! The mock keeps no transaction markers: it neither hides the records of
//! an aborted transaction from `read_committed` consumers nor fences a
//! crashed producer, as Kafka does. The reader here does Kafka's part: a
//! record counts when its transaction (its `sluice-txn` header) has its
//! cursor record in the cursor topic, which is what Kafka's commit makes
//! visible together with the records.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::Message;
use sluice::codec::*;

use crate::bridges_kafka::Link;
use crate::bridges_kafka_mock::reader;
use crate::harness::*;
use crate::kafka_peer::free_port;

type Cluster = MockCluster<'static, DefaultProducerContext>;

const TOPIC: &str = "eo";
const TRANSACTIONAL_ID: &str = "eo-bridge";
const CURSOR_TOPIC: &str = "sluice-cursor.eo-bridge";

/// The records of `topic` (partition 0, read uncommitted: all the mock
/// has): payload and transaction name.
fn all_records(cluster: &Cluster, topic: &str) -> Vec<(String, String)> {
    let consumer = reader(cluster, topic, &[("enable.partition.eof", "true")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let txn = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "sluice-txn"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
                out.push((payload.into_owned(), txn));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    out
}

/// Sequence numbers as a `read_committed` consumer of Kafka would see
/// them, in order (see the module documentation).
fn committed_sequences(cluster: &Cluster) -> Vec<u64> {
    let committed: HashSet<String> = all_records(cluster, CURSOR_TOPIC)
        .into_iter()
        .filter_map(|(value, _)| {
            let v: serde_json::Value = serde_json::from_str(&value).ok()?;
            Some(v["txn"].as_str()?.to_owned())
        })
        .collect();
    all_records(cluster, TOPIC)
        .into_iter()
        .filter(|(_, txn)| committed.contains(txn))
        .filter_map(|(payload, _)| payload.trim_matches(['<', '>']).parse().ok())
        .collect()
}

/// What the QoS 2 publisher got through.
struct Published {
    /// Sequence numbers whose PUBREC came (the broker owns them).
    received: Vec<u64>,
    connections: u32,
}

/// Publishes `sensors/eo` QoS 2 messages (payload: the sequence number) one
/// at a time on a persistent session until `stop`, reconnecting whenever
/// the broker goes away and carrying on where the flow stood, as a QoS 2
/// client must: PUBLISH again (DUP) until PUBREC, then PUBREL until PUBCOMP.
fn publish_qos2_through_crashes(port: u16, stop: &AtomicBool) -> Published {
    let mut out = Published {
        received: Vec::new(),
        connections: 0,
    };
    let (mut seq, mut releasing, mut dup) = (0u64, false, false);
    while !stop.load(Ordering::Relaxed) {
        let Some(mut link) = Link::connect_session(port, "eo-device", false) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        out.connections += 1;
        while !stop.load(Ordering::Relaxed) {
            let n = (seq % 60_000 + 1) as u16;
            let id = pid(n);
            if releasing {
                if link.send(&Packet::PubRel(Ack::new(id))).is_none() {
                    break;
                }
                match link.recv(Duration::from_secs(5)) {
                    Some(Packet::PubComp(a)) if a.packet_id == id => {
                        (seq, releasing, dup) = (seq + 1, false, false);
                    }
                    _ => break,
                }
            } else {
                let mut p = publish(
                    "sensors/eo",
                    seq.to_string().as_bytes(),
                    QoS::ExactlyOnce,
                    n,
                );
                p.dup = dup;
                dup = true;
                if link.send(&Packet::Publish(p)).is_none() {
                    break;
                }
                match link.recv(Duration::from_secs(5)) {
                    Some(Packet::PubRec(a)) if a.packet_id == id => {
                        out.received.push(seq);
                        releasing = true;
                    }
                    _ => break,
                }
            }
        }
    }
    out
}

/// Where the `suspects` are: their neighbours in the mock's log with their
/// transactions, the cursors, and the broker's bridge log lines.
fn explain(cluster: &Cluster, logs: &[String], suspects: &[u64]) -> String {
    let near = |payload: &str| {
        let q: u64 = payload.trim_matches(['<', '>']).parse().unwrap_or(0);
        suspects.iter().any(|m| q + 8 > *m && q < m + 8)
    };
    let neighbours: Vec<(String, String)> = all_records(cluster, TOPIC)
        .into_iter()
        .filter(|(p, _)| near(p))
        .collect();
    let cursors = all_records(cluster, CURSOR_TOPIC);
    let bridge_lines: Vec<&String> = logs
        .iter()
        .filter(|l| !l.contains("librdkafka") && (l.contains("bridge") || l.contains("kafka")))
        .collect();
    format!(
        "around them in the log: {neighbours:?}\ncursors: {cursors:?}\nbridge log lines: \
         {bridge_lines:#?}"
    )
}

/// A pseudo-random number from `seed` (xorshift), for the kill times.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn qos2_reaches_kafka_exactly_once_through_sigkills() {
    let cluster: Cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    // The mock has no CreateTopics; Kafka would get it created by the sink.
    cluster.create_topic(CURSOR_TOPIC, 1, 1).unwrap();
    // Slow round trips stretch each transaction, so kills land inside.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(30))
        .unwrap();
    let port = free_port();
    let config = format!(
        r#"
[[listeners]]
bind = "127.0.0.1:{port}"
[[bridges]]
name = "eo"
filters = ["sensors/#"]
[bridges.sink]
kind = "kafka"
bootstrap_servers = "{servers}"
topic = "{TOPIC}"
exactly_once = true
transactional_id = "{TRANSACTIONAL_ID}"
message_timeout_secs = 10
"#,
        servers = cluster.bootstrap_servers()
    );
    let mut s = Sluice::start_config(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || publish_qos2_through_crashes(port, &stop))
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let first_seed = seed;
    let mut kills = Vec::new();
    let mut logs: Vec<String> = Vec::new();
    for _ in 0..4 {
        let wait = 400 + next(&mut seed) % 1200;
        kills.push(wait);
        std::thread::sleep(Duration::from_millis(wait));
        logs.extend(s.log_lines());
        s = s.kill_and_restart();
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    assert!(
        published.connections >= 5 && published.received.len() >= 20,
        "the publisher did not get through: {} connections, {} messages",
        published.connections,
        published.received.len()
    );

    let last = *published.received.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seqs = committed_sequences(&cluster);
    while !seqs.contains(&last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        seqs = committed_sequences(&cluster);
    }
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for seq in &seqs {
        *counts.entry(*seq).or_default() += 1;
    }
    let context = format!(
        "seed {first_seed}, kills after {kills:?} ms; {} received; committed: {:?}",
        published.received.len(),
        seqs.iter().take(2000).collect::<Vec<_>>()
    );
    let missing: Vec<u64> = published
        .received
        .iter()
        .filter(|seq| !counts.contains_key(seq))
        .copied()
        .collect();
    let twice: Vec<u64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(seq, _)| *seq)
        .collect();
    if !missing.is_empty() || !twice.is_empty() {
        logs.extend(s.log_lines());
        let suspects: Vec<u64> = missing.iter().chain(&twice).copied().collect();
        panic!(
            "lost: {missing:?}, more than once: {twice:?}; {context}\n{}",
            explain(&cluster, &logs, &suspects)
        );
    }
    let in_order = seqs.windows(2).all(|w| w[0] < w[1]);
    assert!(in_order, "out of order; {context}");
    // Records of transactions a kill cut short stay in the mock's log
    // (Kafka would hide them): how often the kills hit one.
    let all = all_records(&cluster, TOPIC).len();
    eprintln!(
        "{all} records in the log, {} committed; seed {first_seed}, kills after {kills:?} ms",
        seqs.len()
    );
}

/// `check-config` names the key of each `exactly_once` mistake, as
/// start-up would refuse it.
#[test]
fn check_config_names_the_exactly_once_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let config = |sink: &str| {
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[bridges]]\nname = \"eo\"\nfilters = [\"a/#\"]\n\
             [bridges.sink]\nkind = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"t\"\n{sink}"
        )
    };
    let ok = config("exactly_once = true\ntransactional_id = \"eo-1\"\n");
    let (code, err) = crate::bridges::check_config(dir.path(), &ok);
    assert_eq!(code, Some(0), "{err}");
    let cases = [
        ("exactly_once = true\n", "bridges[0].sink.transactional_id"),
        (
            "exactly_once = true\ntransactional_id = \"eo-1\"\nacks = \"1\"\n",
            "bridges[0].sink.acks",
        ),
        (
            "transactional_id = \"eo-1\"\n",
            "bridges[0].sink.transactional_id",
        ),
        (
            "exactly_once = true\ntransactional_id = \"eo-1\"\ncursor_topic = \"a/b\"\n",
            "bridges[0].sink.cursor_topic",
        ),
    ];
    for (sink, key) in cases {
        let (code, err) = crate::bridges::check_config(dir.path(), &config(sink));
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
    }
}
