//! Kafka bridges' families: one series per partition (labels bridge,
//! topic, partition; at most `sluice_bridges::kafka::MAX_PARTITIONS` per
//! bridge) and errors by code (a closed set), so that a lagging partition
//! and the reason of an outage show on a dashboard.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use sluice_bridges::kafka::{KafkaReport, PartitionReport};

use super::family::{counter, family, fgauge, gauge, Labels};
use super::snapshot::Snapshot;

/// Reads one partition's value of a family, if it has one yet.
type Pick<T> = fn(&PartitionReport) -> Option<T>;

/// Per-partition families counted in records or offsets: name, help,
/// counter or gauge, the value.
const PARTITION_COUNTS: [(&str, &str, MetricType, Pick<u64>); 4] = [
    (
        "sluice_bridge_kafka_partition_delivered",
        "Kafka bridges: records Kafka acknowledged in the partition.",
        MetricType::Counter,
        |p| Some(p.delivered),
    ),
    (
        "sluice_bridge_kafka_partition_acked_offset",
        "Kafka bridges: offset of the partition's last acknowledged record.",
        MetricType::Gauge,
        |p| p.acked_offset.and_then(|o| u64::try_from(o).ok()),
    ),
    (
        "sluice_bridge_kafka_partition_queued_records",
        "Kafka bridges: records librdkafka holds for the partition, not yet sent (its statistics, every second).",
        MetricType::Gauge,
        |p| Some(p.queued),
    ),
    (
        "sluice_bridge_kafka_partition_in_flight_records",
        "Kafka bridges: records sent to the partition's leader, acknowledgement awaited.",
        MetricType::Gauge,
        |p| Some(p.in_flight),
    ),
];

/// Reads one bridge's errors by code.
type ErrorsOf = fn(&KafkaReport) -> &std::collections::BTreeMap<String, u64>;

/// Per-partition gauges in seconds: name, help, the value in ms.
const PARTITION_SECONDS: [(&str, &str, Pick<u64>); 2] = [
    (
        "sluice_bridge_kafka_partition_delivery_latency_seconds",
        "Kafka bridges: age of the oldest record of the partition's last acknowledged batch at its acknowledgement.",
        |p| p.delivery_latency_ms,
    ),
    (
        "sluice_bridge_kafka_partition_last_ack_timestamp_seconds",
        "Kafka bridges: when Kafka last acknowledged a record of the partition (Unix time).",
        |p| p.last_ack_ms,
    ),
];

/// The Kafka bridges of a snapshot, by name.
type KafkaBridges<'a> = [(&'a str, &'a KafkaReport)];

impl Snapshot {
    /// Every Kafka bridge's partitions and errors; nothing without one.
    pub(super) fn encode_bridge_kafka(
        &self,
        e: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let kafka: Vec<(&str, &KafkaReport)> = self
            .bridges
            .iter()
            .filter_map(|b| Some((b.name.as_str(), b.kafka.as_ref()?)))
            .collect();
        if kafka.is_empty() {
            return Ok(());
        }
        encode_partitions(e, &kafka)?;
        encode_producers(e, &kafka)?;
        encode_errors(e, &kafka)
    }
}

/// The per-partition families.
fn encode_partitions(
    e: &mut DescriptorEncoder,
    kafka: &KafkaBridges,
) -> Result<(), std::fmt::Error> {
    for (name, help, metric_type, pick) in PARTITION_COUNTS {
        let v = partition_values(kafka, pick);
        if v.is_empty() {
            continue;
        }
        if matches!(metric_type, MetricType::Counter) {
            let v: Vec<_> = v.into_iter().map(|(l, n)| (l, counter(n))).collect();
            family(e, name, help, metric_type, &v)?;
        } else {
            let v: Vec<_> = v.into_iter().map(|(l, n)| (l, gauge(n))).collect();
            family(e, name, help, metric_type, &v)?;
        }
    }
    for (name, help, pick) in PARTITION_SECONDS {
        let v: Vec<_> = partition_values(kafka, pick)
            .into_iter()
            .map(|(l, ms)| (l, fgauge(ms as f64 / 1000.0)))
            .collect();
        if !v.is_empty() {
            family(e, name, help, MetricType::Gauge, &v)?;
        }
    }
    Ok(())
}

/// One series per bridge: librdkafka's queue, records past the cap.
fn encode_producers(
    e: &mut DescriptorEncoder,
    kafka: &KafkaBridges,
) -> Result<(), std::fmt::Error> {
    let bridge = |b: &str| vec![("bridge", b.to_owned())];
    let queued: Vec<_> = kafka
        .iter()
        .map(|(b, r)| (bridge(b), gauge(r.producer_queued)))
        .collect();
    family(
        e,
        "sluice_bridge_kafka_producer_queued_records",
        "Kafka bridges: records in librdkafka's queues, also those not yet given a partition.",
        MetricType::Gauge,
        &queued,
    )?;
    let untracked: Vec<_> = kafka
        .iter()
        .map(|(b, r)| (bridge(b), counter(r.untracked_delivered)))
        .collect();
    family(
        e,
        "sluice_bridge_kafka_untracked_delivered",
        "Kafka bridges: records acknowledged in partitions past the cap on partitions tracked per bridge.",
        MetricType::Counter,
        &untracked,
    )
}

/// Errors by code (labels bridge, code); a family without any is left out.
fn encode_errors(e: &mut DescriptorEncoder, kafka: &KafkaBridges) -> Result<(), std::fmt::Error> {
    for (name, help, errors) in [
        (
            "sluice_bridge_kafka_record_errors",
            "Kafka bridges: records whose delivery failed, by error code (every attempt).",
            (|r| &r.record_errors) as ErrorsOf,
        ),
        (
            "sluice_bridge_kafka_client_errors",
            "Kafka bridges: errors librdkafka reported about the client and its connections, by error code.",
            |r| &r.client_errors,
        ),
    ] {
        let v: Vec<_> = kafka
            .iter()
            .flat_map(|(b, r)| {
                errors(r).iter().map(move |(code, n)| {
                    (
                        vec![("bridge", (*b).to_owned()), ("code", code.clone())],
                        counter(*n),
                    )
                })
            })
            .collect();
        if !v.is_empty() {
            family(e, name, help, MetricType::Counter, &v)?;
        }
    }
    Ok(())
}

/// One value per partition of every Kafka bridge, labelled; partitions
/// without a value yet are left out.
fn partition_values<'a>(kafka: &KafkaBridges, pick: Pick<u64>) -> Vec<(Labels<'a>, u64)> {
    kafka
        .iter()
        .flat_map(|(bridge, r)| {
            r.partitions.iter().filter_map(move |p| {
                let labels = vec![
                    ("bridge", (*bridge).to_owned()),
                    ("topic", p.topic.clone()),
                    ("partition", p.partition.to_string()),
                ];
                Some((labels, pick(p)?))
            })
        })
        .collect()
}
