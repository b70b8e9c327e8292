//! What a Kafka bridge reports beyond the delivery loop's counters, so that
//! an operator can tell which partition lags and why: per partition, the
//! records Kafka acknowledged, the last acknowledged offset, the records
//! librdkafka still holds for it and how old a batch was when Kafka took
//! it; per bridge, failed records and client errors by error code.
//!
//! The sink writes [`KafkaStatus`] once per `send` (a [`Tally`] gathers the
//! batch's delivery reports without a lock and adds them when dropped), and
//! librdkafka's statistics (every [`STATISTICS_INTERVAL_MS`] unless the
//! user set `statistics.interval.ms`) fill in the queues. The broker reads a
//! [`KafkaReport`] at scrape time, as it reads an MQTT link's `LinkReport`.
//!
//! Error codes are named in upper snake case after rdkafka's
//! `RDKafkaErrorCode`: Kafka's protocol errors as Kafka names them
//! (`REQUEST_TIMED_OUT`, `NOT_ENOUGH_REPLICAS`,
//! `UNKNOWN_TOPIC_OR_PARTITION`), librdkafka's local errors as rdkafka
//! names them (`MESSAGE_TIMED_OUT` for `_MSG_TIMED_OUT`,
//! `BROKER_TRANSPORT_FAILURE` for `_TRANSPORT`, `ALL_BROKERS_DOWN`). The
//! codes are a closed set; partitions are not, so at most
//! [`MAX_PARTITIONS`] are tracked per bridge and records acknowledged for
//! any further partition are only counted together.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::record::Record;

/// Partitions tracked per bridge: each is a handful of metric series, and a
/// topic template could otherwise fan out to any number of them.
pub const MAX_PARTITIONS: usize = 1024;

/// How often librdkafka reports its queues, unless the user chose
/// otherwise (`0` turns the statistics off: the queue numbers stay 0).
pub const STATISTICS_INTERVAL_MS: &str = "1000";

const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// The label of an error that carries no librdkafka code.
const NO_CODE: &str = "OTHER";

/// Turns librdkafka's statistics on, unless the user set their interval.
pub(crate) fn enable_statistics(config: &mut ClientConfig) {
    if config.get(STATISTICS_INTERVAL).is_none() {
        config.set(STATISTICS_INTERVAL, STATISTICS_INTERVAL_MS);
    }
}

/// Shared by the sink, its producer's context (and its replacements') and
/// whoever reports on the bridge.
#[derive(Debug, Default)]
pub struct KafkaStatus {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Topic -> partition -> numbers.
    topics: BTreeMap<String, BTreeMap<i32, Partition>>,
    /// Partitions in `topics`, against [`MAX_PARTITIONS`].
    tracked: usize,
    untracked_delivered: u64,
    producer_queued: u64,
    record_errors: BTreeMap<String, u64>,
    client_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Partition {
    delivered: u64,
    acked_offset: Option<i64>,
    queued: u64,
    in_flight: u64,
    delivery_latency_ms: Option<u64>,
    last_ack_ms: Option<u64>,
}

/// A copy of [`KafkaStatus`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KafkaReport {
    /// By topic, then partition; at most [`MAX_PARTITIONS`].
    pub partitions: Vec<PartitionReport>,
    /// Records acknowledged for partitions past [`MAX_PARTITIONS`].
    pub untracked_delivered: u64,
    /// Records in librdkafka's queues, including those not yet given a
    /// partition (topic metadata still unknown).
    pub producer_queued: u64,
    /// Records whose delivery failed, by error code (every attempt counts).
    pub record_errors: BTreeMap<String, u64>,
    /// Errors librdkafka reported about the client and its connections
    /// (broker down, TLS, authentication), by error code.
    pub client_errors: BTreeMap<String, u64>,
}

/// One partition in a [`KafkaReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    /// Records Kafka acknowledged (a resent record counts again).
    pub delivered: u64,
    /// Offset of the last record Kafka acknowledged.
    pub acked_offset: Option<i64>,
    /// Records librdkafka holds for the partition, not yet sent.
    pub queued: u64,
    /// Records sent, their acknowledgement awaited.
    pub in_flight: u64,
    /// Age of the oldest record of the last acknowledged batch when Kafka
    /// acknowledged it (from the record's timestamp, when the broker took
    /// the message in).
    pub delivery_latency_ms: Option<u64>,
    /// When Kafka last acknowledged a record of the partition, in ms since
    /// the Unix epoch.
    pub last_ack_ms: Option<u64>,
}

impl KafkaStatus {
    /// A tally of one batch, added here when dropped.
    pub(crate) fn tally<'a>(self: &Arc<Self>) -> Tally<'a> {
        Tally {
            status: Arc::clone(self),
            partitions: HashMap::new(),
            errors: Vec::new(),
        }
    }

    pub fn report(&self) -> KafkaReport {
        let state = self.state.lock();
        let partitions = state
            .topics
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(|(id, p)| PartitionReport {
                    topic: topic.clone(),
                    partition: *id,
                    delivered: p.delivered,
                    acked_offset: p.acked_offset,
                    queued: p.queued,
                    in_flight: p.in_flight,
                    delivery_latency_ms: p.delivery_latency_ms,
                    last_ack_ms: p.last_ack_ms,
                })
            })
            .collect();
        KafkaReport {
            partitions,
            untracked_delivered: state.untracked_delivered,
            producer_queued: state.producer_queued,
            record_errors: state.record_errors.clone(),
            client_errors: state.client_errors.clone(),
        }
    }

    /// librdkafka's queues, from its periodic statistics (on its thread).
    pub(crate) fn statistics(&self, statistics: &Statistics) {
        let mut state = self.state.lock();
        state.producer_queued = statistics.msg_cnt;
        for p in state.topics.values_mut().flat_map(BTreeMap::values_mut) {
            p.queued = 0;
            p.in_flight = 0;
        }
        for (topic, t) in &statistics.topics {
            // -1 is librdkafka's holding place for records not yet given
            // a partition; `producer_queued` counts them.
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                let Some(entry) = state.partition(topic, p.partition) else {
                    continue;
                };
                entry.queued = non_negative(p.msgq_cnt) + non_negative(p.xmit_msgq_cnt);
                entry.in_flight = non_negative(p.msgs_inflight);
            }
        }
    }

    /// An error librdkafka reported about the client (its context's
    /// `error`).
    pub(crate) fn client_error(&self, error: &KafkaError) {
        let name = error
            .rdkafka_error_code()
            .map_or_else(|| NO_CODE.to_owned(), code_name);
        *self.state.lock().client_errors.entry(name).or_insert(0) += 1;
    }
}

impl State {
    /// The partition's entry, made if the cap allows.
    fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        let known = self
            .topics
            .get(topic)
            .is_some_and(|t| t.contains_key(&partition));
        if !known {
            if self.tracked >= MAX_PARTITIONS {
                return None;
            }
            self.tracked += 1;
        }
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_owned(), BTreeMap::new());
        }
        Some(self.topics.get_mut(topic)?.entry(partition).or_default())
    }
}

/// One batch's delivery reports, gathered without a lock; added to the
/// status when dropped, whichever way `send` ends.
pub(crate) struct Tally<'a> {
    status: Arc<KafkaStatus>,
    partitions: HashMap<(&'a str, i32), BatchPartition>,
    /// Few distinct codes per batch: a list beats a map.
    errors: Vec<(Option<RDKafkaErrorCode>, u64)>,
}

#[derive(Debug, Default)]
struct BatchPartition {
    delivered: u64,
    last_offset: i64,
    /// Smallest record timestamp of the batch (0: none had one).
    oldest_ms: u64,
}

impl<'a> Tally<'a> {
    /// Kafka acknowledged `record` at `offset` of `partition`.
    pub(crate) fn delivered(&mut self, record: &'a Record, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((record.destination.as_str(), partition))
            .or_default();
        p.delivered += 1;
        p.last_offset = p.last_offset.max(offset);
        if record.timestamp_ms > 0 && (p.oldest_ms == 0 || record.timestamp_ms < p.oldest_ms) {
            p.oldest_ms = record.timestamp_ms;
        }
    }

    /// A record failed with `error` (refused at once or in its report).
    pub(crate) fn failed(&mut self, error: &KafkaError) {
        let code = error.rdkafka_error_code();
        match self.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((code, 1)),
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        if self.partitions.is_empty() && self.errors.is_empty() {
            return;
        }
        let now = now_ms();
        let mut state = self.status.state.lock();
        for ((topic, partition), batch) in self.partitions.drain() {
            let Some(p) = state.partition(topic, partition) else {
                state.untracked_delivered += batch.delivered;
                continue;
            };
            p.delivered += batch.delivered;
            p.acked_offset = Some(p.acked_offset.unwrap_or(-1).max(batch.last_offset));
            p.last_ack_ms = Some(now);
            if batch.oldest_ms > 0 {
                p.delivery_latency_ms = Some(now.saturating_sub(batch.oldest_ms));
            }
        }
        for (code, n) in self.errors.drain(..) {
            let name = code.map_or_else(|| NO_CODE.to_owned(), code_name);
            *state.record_errors.entry(name).or_insert(0) += n;
        }
    }
}

/// `MessageTimedOut` -> `MESSAGE_TIMED_OUT`, `UnsupportedSASLMechanism` ->
/// `UNSUPPORTED_SASL_MECHANISM`: rdkafka's variant name in upper snake case.
pub(crate) fn code_name(code: RDKafkaErrorCode) -> String {
    let camel: Vec<char> = format!("{code:?}").chars().collect();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| camel.get(j));
        let next = camel.get(i + 1);
        let word_starts = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(char::is_ascii_lowercase))
            });
        if word_starts {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
