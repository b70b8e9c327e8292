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

/// A broker with the Kafka bridge `k` taking `sensors/#` into `cluster`;
/// `bridge` and `sink` are more lines of its tables, `rest` more tables.
fn start_with_bridge(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    bridge: &str,
    sink: &str,
    rest: &str,
) -> Sluice {
    Sluice::start_config(&format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"
[[bridges]]
name = "k"
filters = ["sensors/#"]
{bridge}
[bridges.sink]
kind = "kafka"
bootstrap_servers = "{}"
{sink}
{rest}"#,
        cluster.bootstrap_servers()
    ))
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
    let s = start_with_bridge(
        &cluster,
        r#"transform = ".payload.n | tostring""#,
        "topic = \"t-{topic.2}\"\nrecord_retries = 2",
        "",
    );
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

/// `GET /api/v1/bridges` and `/metrics` show a Kafka bridge's partitions:
/// records acknowledged and the last offset of each (summing to what was
/// published), queues from librdkafka's statistics; an HTTP bridge beside
/// it has no `kafka` part.
#[test]
fn the_bridge_status_and_metrics_show_each_kafka_partition() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t-parts", 2, 1).unwrap();
    let http_bridge = r#"
[[bridges]]
name = "h"
filters = ["nothing/#"]
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:9/"
"#;
    let s = start_with_bridge(
        &cluster,
        "",
        "topic = \"t-parts\"\nkey = \"{topic.2}\"",
        http_bridge,
    );
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    // Twenty keys spread over both partitions.
    for i in 0..40u16 {
        let topic = format!("sensors/d{}/x", i % 20);
        p.publish(publish(&topic, b"1", QoS::AtLeastOnce, i + 1));
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let (k, partitions) = loop {
        let (code, body) = s.admin("GET", "/api/v1/bridges", None, None);
        assert_eq!(code, 200, "{body}");
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        let k = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "k")
            .cloned()
            .unwrap();
        let h = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "h");
        assert!(h.unwrap().get("kafka").is_none(), "{body}");
        let partitions = k["kafka"]["partitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let delivered: u64 = partitions
            .iter()
            .map(|p| p["delivered"].as_u64().unwrap())
            .sum();
        if delivered == 40 && partitions.len() == 2 {
            break (k, partitions);
        }
        assert!(Instant::now() < deadline, "not all delivered: {k}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(k["delivered"], 40, "{k}");
    assert_eq!(k["kafka"]["record_errors"], serde_json::json!({}), "{k}");
    let (_, metrics) = s.admin("GET", "/metrics", None, None);
    for (i, part) in partitions.iter().enumerate() {
        assert_eq!(part["topic"], "t-parts", "{k}");
        assert_eq!(part["partition"], i as u64, "{k}");
        let delivered = part["delivered"].as_u64().unwrap();
        assert!(delivered > 0, "both partitions get records: {k}");
        // A fresh topic on a healthy cluster: no resends.
        assert_eq!(part["acked_offset"], delivered - 1, "{k}");
        let labels = format!(r#"{{bridge="k",topic="t-parts",partition="{i}"}}"#);
        for (family, value) in [
            (
                "sluice_bridge_kafka_partition_delivered_total",
                delivered as f64,
            ),
            (
                "sluice_bridge_kafka_partition_acked_offset",
                (delivered - 1) as f64,
            ),
            ("sluice_bridge_kafka_partition_queued_records", 0.0),
        ] {
            let series = format!("{family}{labels}");
            assert_eq!(
                metric(&metrics, &series),
                Some(value),
                "{series} in\n{metrics}"
            );
        }
        let latency = format!("sluice_bridge_kafka_partition_delivery_latency_seconds{labels}");
        assert!(
            metric(&metrics, &latency).is_some(),
            "{latency} in\n{metrics}"
        );
    }
    assert!(!metrics.contains(r#"bridge="h",topic"#), "{metrics}");
}
