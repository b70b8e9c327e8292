//! The Kafka bridge against librdkafka's mock cluster (in this process,
//! on a real port): failures tansu cannot make on demand.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice::codec::*;

use crate::harness::*;

/// Payloads of partition 0 of `topic`, until `count` came or 15 s passed.
fn read(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    topic: &str,
    distinct: usize,
) -> Vec<String> {
    let consumer = reader(cluster, topic, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut out = Vec::new();
    // At least once: a retried batch may deliver a record twice.
    while out.len() < distinct && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let record = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if !out.contains(&record) {
                out.push(record);
            }
        }
    }
    out
}

/// A consumer of partition 0 of `topic` from the start, without a group,
/// with `extra` settings.
pub(crate) fn reader(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    topic: &str,
    extra: &[(&str, &str)],
) -> BaseConsumer {
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

/// A record for a topic the cluster does not have is retried
/// `record_retries` times, then dead-lettered with the reason; the records
/// behind it, to a topic that exists, are delivered.
#[test]
fn an_unknown_kafka_topic_is_dead_lettered_and_the_rest_flows() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t-good", 1, 1).unwrap();
    let unknown = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    cluster.topic_error("t-missing", unknown).unwrap();
    let s = Sluice::start_config(&format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"
[[bridges]]
name = "k"
filters = ["sensors/#"]
transform = ".payload.n | tostring"
[bridges.sink]
kind = "kafka"
bootstrap_servers = "{}"
topic = "t-{{topic.2}}"
record_retries = 2
"#,
        cluster.bootstrap_servers()
    ));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let q1 = QoS::AtLeastOnce;
    p.publish(publish("sensors/good/x", br#"{"n":1}"#, q1, 1));
    p.publish(publish("sensors/missing/x", br#"{"n":2}"#, q1, 2));
    p.publish(publish("sensors/good/x", br#"{"n":3}"#, q1, 3));
    let got = read(&cluster, "t-good", 2);
    assert!(
        got.contains(&"\"1\"".to_owned()) && got.contains(&"\"3\"".to_owned()),
        "{got:?}"
    );

    let file = s.data.path().join("store/bridges/k/dead-letter.jsonl");
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a dead-letter line")).unwrap();
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.contains("t-missing") && reason.contains("gave up after 3 attempts"),
        "{reason}"
    );
    assert_eq!(line["record"]["payload"]["utf8"], "\"2\"", "{line}");
}
