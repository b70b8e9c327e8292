//! The Kafka sink against librdkafka's in-process mock cluster: records are
//! read back with a plain consumer (assigned partitions, no group), and
//! failures are made by the cluster (broker down) or by librdkafka itself
//! (size limit, fatal error).

use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

use super::*;

/// Bound on every wait in these tests.
pub(super) const WAIT: Duration = Duration::from_secs(8);

pub(super) type Cluster = MockCluster<'static, DefaultProducerContext>;

pub(super) fn cluster_with(topic: &str) -> Cluster {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 1, 1).unwrap();
    cluster
}

pub(super) fn sink_for(cluster: &Cluster, tweak: impl FnOnce(&mut KafkaSinkConfig)) -> KafkaSink {
    let mut config = KafkaSinkConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        ..KafkaSinkConfig::default()
    };
    tweak(&mut config);
    KafkaSink::new(config).unwrap()
}

pub(super) fn record(id: u64, topic: &str, payload: impl Into<Bytes>) -> Record {
    Record {
        id,
        destination: topic.to_owned(),
        key: None,
        payload: payload.into(),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

/// Reads partition 0 of `topic` from the start until `count` messages came
/// or `WAIT` passed.
fn read(cluster: &Cluster, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer = reader(cluster, topic, &[]);
    let deadline = std::time::Instant::now() + WAIT;
    let mut messages = Vec::new();
    while messages.len() < count && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.unwrap().detach());
        }
    }
    messages
}

/// A consumer of partition 0 of `topic` from the start, without a group,
/// with `extra` settings.
pub(super) fn reader(cluster: &Cluster, topic: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "sluice-test")
        .set("enable.auto.commit", "false");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&partitions).unwrap();
    consumer
}

fn headers_of(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn kafka_batch_arrives_in_order_with_keys_timestamps_and_headers() {
    let cluster = cluster_with("readings");
    let mut sink = sink_for(&cluster, |_| {});
    let batch: Vec<Record> = (0..50u64)
        .map(|i| Record {
            id: 1_000 + i,
            destination: "readings".to_owned(),
            // Every seventh record has no key.
            key: (i % 7 != 0).then(|| Bytes::from(format!("key-{i}"))),
            payload: Bytes::from(format!("{{\"n\":{i}}}")),
            headers: vec![
                ("mqtt-topic".to_owned(), Bytes::from(format!("sensors/{i}"))),
                ("empty".to_owned(), Bytes::new()),
            ],
            timestamp_ms: 1_700_000_000_000 + i,
        })
        .collect();

    tokio::time::timeout(WAIT, sink.send(&batch))
        .await
        .expect("send timed out")
        .unwrap();

    let messages = read(&cluster, "readings", batch.len());
    assert_eq!(messages.len(), batch.len());
    for (message, record) in messages.iter().zip(&batch) {
        assert_eq!(message.key(), record.key.as_deref(), "record {}", record.id);
        assert_eq!(message.payload(), Some(record.payload.as_ref()));
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(record.timestamp_ms as i64)
        );
        assert_eq!(
            headers_of(message),
            vec![
                ("mqtt-topic".to_owned(), record.headers[0].1.to_vec()),
                ("empty".to_owned(), Vec::new()),
                (MSG_ID_HEADER.to_owned(), record.id.to_string().into_bytes()),
            ]
        );
    }
    // The loop was fed in order; the offsets say Kafka kept it.
    let offsets: Vec<i64> = messages.iter().map(|m| m.offset()).collect();
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
}

#[tokio::test]
async fn kafka_batches_larger_than_max_in_flight_go_in_chunks() {
    let cluster = cluster_with("chunks");
    let mut sink = sink_for(&cluster, |c| c.max_in_flight = 3);
    assert_eq!(sink.max_batch(), 3);
    let batch: Vec<Record> = (0..10u64)
        .map(|i| record(i, "chunks", format!("p{i}")))
        .collect();

    tokio::time::timeout(WAIT, sink.send(&batch))
        .await
        .expect("send timed out")
        .unwrap();

    let payloads: Vec<Vec<u8>> = read(&cluster, "chunks", 10)
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("p{i}").into_bytes()).collect();
    assert_eq!(payloads, expected);
}

#[tokio::test]
async fn kafka_a_record_over_message_max_bytes_is_permanent() {
    let cluster = cluster_with("big");
    let mut sink = sink_for(&cluster, |c| {
        c.options = [("message.max.bytes".to_owned(), "10000".to_owned())].into();
    });
    let batch = [
        record(1, "big", "small"),
        record(2, "big", vec![b'x'; 50_000]),
    ];

    let error = tokio::time::timeout(WAIT, sink.send(&batch))
        .await
        .expect("send timed out")
        .unwrap_err();

    let SinkError::Permanent(reason) = error else {
        panic!("expected a permanent error, got {error:?}");
    };
    assert!(reason.contains("record 2"), "{reason}");
    assert!(reason.contains("too large"), "{reason}");
}

#[tokio::test]
async fn kafka_an_invalid_topic_name_is_permanent_before_anything_is_sent() {
    let cluster = cluster_with("fine");
    let mut sink = sink_for(&cluster, |_| {});
    let long = "t".repeat(250);
    for bad in ["sensors/temp", "", "..", long.as_str(), "caf\u{e9}"] {
        let batch = [record(1, "fine", "first"), record(7, bad, "x")];
        let error = sink.send(&batch).await.unwrap_err();
        let SinkError::Permanent(reason) = error else {
            panic!("{bad:?}: expected a permanent error, got {error:?}");
        };
        assert!(reason.contains("record 7"), "{reason}");
    }
    // The valid record before the bad one was never produced: the first
    // message of the partition is the one sent afterwards.
    sink.send(&[record(2, "fine", "after")]).await.unwrap();
    let messages = read(&cluster, "fine", 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].offset(), 0);
    assert_eq!(messages[0].payload(), Some(&b"after"[..]));
}

#[tokio::test]
async fn kafka_an_unreachable_broker_is_retryable_and_a_resend_succeeds_after_recovery() {
    let cluster = cluster_with("outage");
    let mut sink = sink_for(&cluster, |c| {
        c.message_timeout = Duration::from_secs(1);
        // Reconnect promptly once the broker is back.
        c.options = [
            ("reconnect.backoff.ms".to_owned(), "10".to_owned()),
            ("reconnect.backoff.max.ms".to_owned(), "100".to_owned()),
        ]
        .into();
    });
    // The first produce also waits for the cluster's metadata and the
    // idempotent producer's id, which on a busy machine can take longer than
    // the 1 s message timeout: a warm-up on another topic, until it passes,
    // so that only the outage below can fail `before`.
    cluster.create_topic("warm-up", 1, 1).unwrap();
    let deadline = Instant::now() + WAIT;
    while let Err(error) = sink.send(&[record(0, "warm-up", "x")]).await {
        assert!(Instant::now() < deadline, "no warm-up: {error:?}");
    }
    sink.send(&[record(1, "outage", "before")]).await.unwrap();

    cluster.broker_down(1).unwrap();
    let batch = [
        record(2, "outage", "during-a"),
        record(3, "outage", "during-b"),
    ];
    let started = Instant::now();
    let error = tokio::time::timeout(WAIT, sink.send(&batch))
        .await
        .expect("send did not give up within the message timeout")
        .unwrap_err();
    let SinkError::Retryable(reason) = error else {
        panic!("expected a retryable error, got {error:?}");
    };
    assert!(reason.contains("record 2"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{reason}");

    cluster.broker_up(1).unwrap();
    tokio::time::timeout(WAIT, sink.send(&batch))
        .await
        .expect("resend timed out")
        .unwrap();

    let payloads: Vec<Vec<u8>> = read(&cluster, "outage", 3)
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(
        payloads,
        [&b"before"[..], b"during-a", b"during-b"].map(<[u8]>::to_vec)
    );
}

#[tokio::test]
async fn kafka_a_fatal_producer_error_is_retryable_and_the_producer_is_replaced() {
    let cluster = cluster_with("fatal");
    let mut sink = sink_for(&cluster, |_| {});
    sink.send(&[record(1, "fatal", "one")]).await.unwrap();

    let raised = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            sink.producer.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            c"raised by the test".as_ptr(),
        )
    };
    assert_eq!(
        raised,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    assert!(sink.producer.client().fatal_error().is_some());

    tokio::time::timeout(WAIT, sink.send(&[record(2, "fatal", "two")]))
        .await
        .expect("send timed out")
        .unwrap();
    assert!(sink.producer.client().fatal_error().is_none());
    let payloads: Vec<Vec<u8>> = read(&cluster, "fatal", 2)
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(payloads, [&b"one"[..], b"two"].map(<[u8]>::to_vec));
}

#[test]
fn kafka_new_names_an_unknown_or_invalid_option() {
    let config = KafkaSinkConfig {
        options: [
            ("client.id".to_owned(), "ok".to_owned()),
            ("no.such.option".to_owned(), "1".to_owned()),
        ]
        .into(),
        ..KafkaSinkConfig::default()
    };
    match KafkaSink::new(config).unwrap_err() {
        KafkaSinkSetupError::InvalidOption { name, reason } => {
            assert_eq!(name, "no.such.option");
            assert!(reason.contains("no.such.option"), "{reason}");
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }

    let config = KafkaSinkConfig {
        options: [("socket.timeout.ms".to_owned(), "soon".to_owned())].into(),
        ..KafkaSinkConfig::default()
    };
    let error = KafkaSink::new(config).unwrap_err();
    assert!(
        matches!(&error, KafkaSinkSetupError::InvalidOption { name, .. } if name == "socket.timeout.ms"),
        "{error:?}"
    );
    assert!(error.to_string().contains("socket.timeout.ms"), "{error}");
}

#[test]
fn kafka_new_checks_acks_and_conflicting_options() {
    let config = KafkaSinkConfig {
        acks: "2".to_owned(),
        ..KafkaSinkConfig::default()
    };
    assert_eq!(
        KafkaSink::new(config).unwrap_err(),
        KafkaSinkSetupError::InvalidAcks("2".to_owned())
    );

    // Every accepted acks value gives a producer librdkafka agrees with.
    for acks in ["all", "-1", "1", "0"] {
        let config = KafkaSinkConfig {
            acks: acks.to_owned(),
            ..KafkaSinkConfig::default()
        };
        let sink = KafkaSink::new(config).unwrap();
        assert_eq!(sink.kind(), "kafka");
        assert_eq!(sink.max_batch(), 5000);
    }

    // An option that contradicts ours is librdkafka's to refuse, by name.
    let config = KafkaSinkConfig {
        options: [("request.required.acks".to_owned(), "1".to_owned())].into(),
        ..KafkaSinkConfig::default()
    };
    let error = KafkaSink::new(config).unwrap_err();
    assert!(
        matches!(&error, KafkaSinkSetupError::Producer(m) if m.contains("acks")),
        "{error:?}"
    );
}

/// The way the delivery loop drives a sink: resend from the first record
/// not acknowledged after a retryable error; after a permanent one, record
/// by record, dead-lettering the refused one. Returns the dead-lettered ids
/// and the number of sends.
async fn deliver(sink: &mut KafkaSink, mut pending: Vec<Record>) -> (Vec<u64>, usize) {
    let (mut dead, mut sends) = (Vec::new(), 0);
    while !pending.is_empty() {
        sends += 1;
        assert!(sends < 50, "never settled");
        match sink.send(&pending).await {
            Ok(()) => pending.clear(),
            Err(SinkError::Retryable(_)) => {}
            Err(SinkError::Permanent(_)) => {
                let mut rest = Vec::new();
                for one in std::mem::take(&mut pending) {
                    if !rest.is_empty() {
                        rest.push(one);
                        continue;
                    }
                    match sink.send(std::slice::from_ref(&one)).await {
                        Ok(()) => {}
                        Err(SinkError::Permanent(_)) => dead.push(one.id),
                        Err(SinkError::Retryable(_)) => rest.push(one),
                    }
                }
                pending = rest;
            }
        }
    }
    (dead, sends)
}

#[tokio::test]
async fn kafka_an_unknown_topic_is_dead_lettered_after_its_retries_and_the_rest_flows() {
    let cluster = cluster_with("good");
    let unknown = rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    cluster.topic_error("missing", unknown).unwrap();
    let mut sink = sink_for(&cluster, |c| {
        c.message_timeout = Duration::from_secs(20);
        c.record_retries = 2;
    });
    let batch = vec![
        record(1, "good", "a"),
        record(2, "missing", "lost"),
        record(3, "good", "b"),
    ];
    let started = Instant::now();
    let (dead, sends) = tokio::time::timeout(Duration::from_secs(30), deliver(&mut sink, batch))
        .await
        .expect("the unknown topic held the sink");
    assert_eq!(dead, [2]);
    assert!(sends >= 3, "{sends} sends: two retries first");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let payloads: std::collections::HashSet<Vec<u8>> = read(&cluster, "good", 2)
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert!(payloads.contains(&b"a"[..]) && payloads.contains(&b"b"[..]));
}

#[tokio::test]
async fn kafka_a_cluster_outage_never_uses_up_record_retries() {
    let cluster = cluster_with("outage2");
    let mut sink = sink_for(&cluster, |c| {
        c.message_timeout = Duration::from_millis(300);
        c.record_retries = 1;
    });
    cluster.broker_down(1).unwrap();
    for _ in 0..4 {
        let r = sink
            .send(&[record(1, "outage2", "x"), record(2, "outage2", "y")])
            .await;
        assert!(matches!(r, Err(SinkError::Retryable(_))), "{r:?}");
    }
}

/// Records only time out while the cluster cannot be reached; the error
/// says why (here the broker refusing connections), for the status.
#[tokio::test]
async fn kafka_a_timeout_names_the_clusters_last_error() {
    let cluster = cluster_with("down");
    let mut sink = sink_for(&cluster, |c| c.message_timeout = Duration::from_millis(500));
    cluster.broker_down(1).unwrap();
    let r = sink.send(&[record(1, "down", "x")]).await;
    match r {
        Err(SinkError::Retryable(reason)) => {
            assert!(reason.contains("the cluster's last error: "), "{reason}")
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}
