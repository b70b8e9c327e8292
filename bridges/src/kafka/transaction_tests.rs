//! Exactly once against librdkafka's mock cluster, which implements the
//! transaction APIs (tansu 0.6.0 does not): what a `read_committed`
//! consumer sees after a restart between Kafka's commit and the buffer's
//! acknowledgement, after a crash in the middle of a transaction (the
//! crashed producer still alive, a zombie), and after an outage.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::producer::Producer;
use rdkafka::Message;

use super::*;
use crate::kafka::KafkaSink;
use crate::sink::Sink;

const WAIT: Duration = Duration::from_secs(10);

use super::super::tests::{cluster_with, reader, Cluster};

/// The mock cluster has no CreateTopics: the cursor topic is made here.
fn exactly_once(cluster: &Cluster, id: &str) -> KafkaSinkConfig {
    cluster
        .create_topic(&format!("{DEFAULT_CURSOR_TOPIC_PREFIX}{id}"), 1, 1)
        .unwrap();
    KafkaSinkConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        exactly_once: true,
        transactional_id: Some(id.to_owned()),
        message_timeout: Duration::from_secs(5),
        ..KafkaSinkConfig::default()
    }
}

fn records(ids: std::ops::Range<u64>, topic: &str) -> Vec<Record> {
    ids.map(|id| Record {
        id,
        destination: topic.to_owned(),
        key: None,
        payload: Bytes::from(format!("r{id}")),
        headers: Vec::new(),
        timestamp_ms: 0,
    })
    .collect()
}

/// Payloads a `read_committed` consumer sees in partition 0 of `topic`:
/// read to the partition's end once at least `expected` came (or `WAIT`).
fn committed_payloads(cluster: &Cluster, topic: &str, expected: usize) -> Vec<String> {
    let read_committed = [
        ("isolation.level", "read_committed"),
        ("enable.partition.eof", "true"),
    ];
    let consumer = reader(cluster, topic, &read_committed);
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(KafkaError::PartitionEOF(_))) if got.len() >= expected => break,
            _ => {}
        }
    }
    got
}

fn names(ids: std::ops::Range<u64>) -> Vec<String> {
    ids.map(|id| format!("r{id}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_commits_the_records_with_the_cursor() {
    let cluster = cluster_with("eo");
    let config = exactly_once(&cluster, "bridge-a");
    let mut sink = KafkaSink::new(config.clone()).unwrap();
    sink.send(&records(0..5, "eo")).await.unwrap();
    sink.send(&records(5..7, "eo")).await.unwrap();
    assert_eq!(committed_payloads(&cluster, "eo", 7), names(0..7));
    let client = super::super::config::settings(&config).unwrap();
    let cursor = read_cursor(&client, &cursor_topic(&config), "bridge-a", WAIT);
    assert!(matches!(cursor, Ok(Some(7))), "the cursor in Kafka");
}

/// A crash after Kafka's commit and before the buffer's own cursor write:
/// the restarted sink is handed the same records again (and more) and
/// produces only the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_before_a_restart_is_not_produced_again() {
    let cluster = cluster_with("eo");
    let config = exactly_once(&cluster, "bridge-b");
    let mut first = KafkaSink::new(config.clone()).unwrap();
    first.send(&records(0..5, "eo")).await.unwrap();
    drop(first);
    let mut restarted = KafkaSink::new(config).unwrap();
    restarted.send(&records(0..8, "eo")).await.unwrap();
    assert_eq!(committed_payloads(&cluster, "eo", 8), names(0..8));
}

/// A crash in the middle of a transaction: the restarted sink starts from
/// Kafka's cursor (the open transaction's records are not in it) and
/// commits them in a transaction of its own. Kafka would also fence the
/// crashed producer and hide its aborted records; the mock cluster does
/// neither (it keeps no transaction markers), so what is checked here is
/// the sink's side: which records the restarted producer sends and the
/// cursor it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_transaction_resends_from_kafkas_cursor() {
    let cluster = cluster_with("eo");
    let config = exactly_once(&cluster, "bridge-c");
    let mut crashed = KafkaSink::new(config.clone()).unwrap();
    crashed.send(&records(0..2, "eo")).await.unwrap();
    crashed.producer.begin_transaction().unwrap();
    let open = records(2..4, "eo");
    let mut tally = crashed.status.tally();
    crashed.produce(&open, &mut tally).await.unwrap();
    drop(tally);
    std::mem::forget(crashed);

    let mut restarted = KafkaSink::new(config.clone()).unwrap();
    restarted.send(&records(2..5, "eo")).await.unwrap();
    let client = super::super::config::settings(&config).unwrap();
    let cursor = read_cursor(&client, &cursor_topic(&config), "bridge-c", WAIT);
    assert!(matches!(cursor, Ok(Some(5))), "the cursor in Kafka");
    let all = committed_payloads(&cluster, "eo", 7);
    // r2 and r3 twice: the crashed transaction's copies, which Kafka would
    // hide from `read_committed` consumers; each with its transaction.
    assert_eq!(all, ["r0", "r1", "r2", "r3", "r2", "r3", "r4"]);
}

/// An outage fails the transaction (retryable); the resend after it is
/// committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_the_transaction_and_the_resend_commits_once() {
    let cluster = cluster_with("eo");
    let mut config = exactly_once(&cluster, "bridge-d");
    config.message_timeout = Duration::from_secs(2);
    let mut sink = KafkaSink::new(config).unwrap();
    sink.send(&records(0..3, "eo")).await.unwrap();
    cluster.broker_down(1).unwrap();
    let during = sink.send(&records(3..6, "eo")).await;
    assert!(
        matches!(during, Err(SinkError::Retryable(_))),
        "during the outage: {during:?}"
    );
    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + WAIT * 3;
    let mut after = sink.send(&records(3..6, "eo")).await;
    while after.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = sink.send(&records(3..6, "eo")).await;
    }
    assert_eq!(after, Ok(()));
    assert_eq!(committed_payloads(&cluster, "eo", 6), names(0..6));
}

/// A commit Kafka refuses in a way that cannot be aborted (the producer
/// fenced): the producer is replaced, Kafka's cursor read again, and the
/// records go out (once: here the mock shows the failed transaction's
/// cursor, so they count as committed; Kafka would have hidden both and
/// they would be sent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_gets_a_new_producer_and_kafkas_cursor_again() {
    let cluster = cluster_with("eo");
    let config = exactly_once(&cluster, "bridge-e");
    let mut sink = KafkaSink::new(config.clone()).unwrap();
    sink.send(&records(0..2, "eo")).await.unwrap();
    let fenced = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
    cluster.request_errors(rdkafka::types::RDKafkaApiKey::EndTxn, &[fenced]);
    let refused = sink.send(&records(2..4, "eo")).await;
    assert!(
        matches!(refused, Err(SinkError::Retryable(_))),
        "the refused commit: {refused:?}"
    );
    let deadline = Instant::now() + WAIT;
    let mut after = sink.send(&records(2..5, "eo")).await;
    while after.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = sink.send(&records(2..5, "eo")).await;
    }
    assert_eq!(after, Ok(()));
    let client = super::super::config::settings(&config).unwrap();
    let cursor = read_cursor(&client, &cursor_topic(&config), "bridge-e", WAIT);
    assert!(matches!(cursor, Ok(Some(5))), "the cursor in Kafka");
    assert_eq!(committed_payloads(&cluster, "eo", 5), names(0..5));
}

#[test]
fn exactly_once_settings_are_checked() {
    let base = KafkaSinkConfig {
        exactly_once: true,
        transactional_id: Some("b".to_owned()),
        ..KafkaSinkConfig::default()
    };
    let key_of = |config: &KafkaSinkConfig| match validate(config) {
        Err(KafkaSinkSetupError::ExactlyOnce { key, .. }) => Some(key),
        _ => None,
    };
    assert_eq!(validate(&base), Ok(()));
    let no_id = KafkaSinkConfig {
        transactional_id: None,
        ..base.clone()
    };
    assert_eq!(key_of(&no_id), Some("transactional_id"));
    let acks_one = KafkaSinkConfig {
        acks: "1".to_owned(),
        ..base.clone()
    };
    assert_eq!(key_of(&acks_one), Some("acks"));
    let id_alone = KafkaSinkConfig {
        exactly_once: false,
        ..base.clone()
    };
    assert_eq!(key_of(&id_alone), Some("transactional_id"));
    let mut raw_option = KafkaSinkConfig::default();
    raw_option
        .options
        .insert("transactional.id".to_owned(), "x".to_owned());
    assert_eq!(key_of(&raw_option), Some("options"));
    let bad_topic = KafkaSinkConfig {
        cursor_topic: "a/b".to_owned(),
        ..base.clone()
    };
    assert_eq!(key_of(&bad_topic), Some("cursor_topic"));
}

#[test]
fn the_default_cursor_topic_is_the_transactional_ids_own() {
    let config = KafkaSinkConfig {
        exactly_once: true,
        transactional_id: Some("edge 7/telemetry".to_owned()),
        ..KafkaSinkConfig::default()
    };
    assert_eq!(cursor_topic(&config), "sluice-cursor.edge_7_telemetry");
    let client = super::super::config::settings(&config).unwrap();
    assert_eq!(client.get("transactional.id"), Some("edge 7/telemetry"));
}
