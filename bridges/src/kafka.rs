//! The Kafka sink: each record is produced to the topic in its
//! `destination`, and the batch is acknowledged once Kafka has every record.
//!
//! A batch is handed to librdkafka whole (up to `max_in_flight` records),
//! which groups the records into one produce request per partition after a
//! 5 ms linger; then every delivery report is awaited. Records of one
//! partition keep the batch's order: with `acks=all` the idempotent
//! producer keeps it across librdkafka's internal retries (and drops the
//! duplicates those retries would make). Records without a key are spread
//! over partitions by librdkafka's partitioner.
//!
//! Each message carries the record's key, payload and timestamp, the
//! record's headers in order, then `sluice-msg-id`: the record id in
//! decimal, which lets consumers drop the duplicates that resending after an
//! error brings (the sink is at-least-once).
//!
//! Errors: a record Kafka will never take (too large, invalid topic name,
//! corrupt, timestamp out of the broker's bounds) is
//! [`SinkError::Permanent`]; anything else (no delivery within
//! `message_timeout`, a broken connection, an unknown topic or partition,
//! authentication or authorisation, an unreachable cluster) is
//! [`SinkError::Retryable`]. Retryable errors of one record (its topic
//! unknown or not authorised, or a timeout while later records of the batch
//! got through: the cluster is up) count against
//! [`KafkaSinkConfig::record_retries`]; past it the record is permanent, so
//! the bridge dead-letters it and the records behind it flow again. Errors
//! of the whole cluster never do: an outage must not empty the buffer into
//! the dead letter. A topic name Kafka would refuse is caught before
//! anything of the batch is sent. Messages name the record id and the topic.
//!
//! Layout: `config` (settings, validation, librdkafka options), `report`
//! (per-partition numbers and errors by code, for metrics), `tests`
//! (against librdkafka's in-process mock cluster, `report_tests` for the
//! report) and `check_tests` (the configuration check against start-up).

mod config;
mod report;
mod transaction;

#[cfg(test)]
mod check_tests;
#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tokio::time::Instant;

pub use transaction::TXN_HEADER;

pub use config::{
    client_config, Compression, KafkaSinkConfig, KafkaSinkSetupError, DEFAULT_RECORD_RETRIES,
};
use report::Tally;
pub use report::{KafkaReport, KafkaStatus, PartitionReport, MAX_PARTITIONS};

use crate::record::Record;
use crate::sink::{Sink, SinkError};
use transaction::Transactions;

/// The header carrying the record id.
pub const MSG_ID_HEADER: &str = "sluice-msg-id";

/// Pause before offering a record again to a full librdkafka queue.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// How long dropping the sink waits for records already handed to
/// librdkafka. Those records are not acknowledged and will be sent again
/// anyway; the wait only spares them a purge, so it is kept short (it blocks
/// the dropping thread).
const FLUSH_ON_DROP: Duration = Duration::from_millis(500);

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_LEN: usize = 249;

/// Delivers records to Kafka; see the module documentation.
pub struct KafkaSink {
    producer: FutureProducer<TracingContext>,
    /// What librdkafka last said about the cluster as a whole, shared with
    /// the producer's context (and its replacements').
    cluster_error: ClusterError,
    /// Per-partition numbers and errors by code, shared the same way.
    status: Arc<KafkaStatus>,
    /// Kept to replace the producer after a fatal error.
    client_config: ClientConfig,
    /// The producer was fenced (its idempotent epoch refused): the next
    /// `send` starts a new one.
    fenced: bool,
    max_in_flight: usize,
    message_timeout: Duration,
    record_retries: u32,
    /// Record id -> failures of its own so far (see the module docs).
    failures: HashMap<u64, u32>,
    /// With `exactly_once`: each batch is a transaction (see `transaction`).
    /// Boxed: most sinks have none, and the handle stays small.
    transactions: Option<Box<Transactions>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The librdkafka options stay out: they often hold credentials.
        f.debug_struct("KafkaSink")
            .field("max_in_flight", &self.max_in_flight)
            .field("message_timeout", &self.message_timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Checks the configuration and creates the producer, which connects in
    /// the background; an unreachable cluster shows up as retryable errors
    /// from `send`, not here. Needs no runtime, but `send` must run on a
    /// Tokio one.
    pub fn new(config: KafkaSinkConfig) -> Result<KafkaSink, KafkaSinkSetupError> {
        let mut client_config = config::settings(&config)?;
        report::enable_statistics(&mut client_config);
        let cluster_error = ClusterError::default();
        let status = Arc::new(KafkaStatus::default());
        let producer = create_producer(&client_config, &cluster_error, &status)?;
        Ok(KafkaSink {
            transactions: Transactions::of(&config).map(Box::new),
            producer,
            cluster_error,
            status,
            client_config,
            fenced: false,
            max_in_flight: config.max_in_flight,
            message_timeout: config.message_timeout,
            record_retries: config.record_retries,
            failures: HashMap::new(),
        })
    }

    /// Per-partition numbers and errors by code, for the bridge's status.
    pub fn status(&self) -> Arc<KafkaStatus> {
        Arc::clone(&self.status)
    }

    /// Hands one record to librdkafka, waiting while its queue is full (for
    /// at most `message_timeout`, by when queued records have expired).
    async fn enqueue(&self, record: &Record) -> Result<DeliveryFuture, KafkaError> {
        let id = record.dedup_id();
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
        for (name, value) in &record.headers {
            if name == crate::record::MESSAGE_ID_HEADER {
                continue;
            }
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_ref()),
            });
        }
        headers = headers.insert(Header {
            key: MSG_ID_HEADER,
            value: Some(id.as_bytes()),
        });
        if let Some(name) = self.transactions.as_ref().and_then(|t| t.open.as_deref()) {
            headers = headers.insert(Header {
                key: transaction::TXN_HEADER,
                value: Some(name.as_bytes()),
            });
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(&record.destination)
            .payload(record.payload.as_ref())
            // 0 lets librdkafka stamp the current time.
            .timestamp(i64::try_from(record.timestamp_ms).unwrap_or(i64::MAX))
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key.as_ref());
        }

        let deadline = Instant::now() + self.message_timeout;
        loop {
            match self.producer.send_result(message) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    message = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The verdict on `record`'s failure, counting it against the record's
    /// retries when it is the record's own (see the module docs).
    fn judge(&mut self, record: &Record, error: &KafkaError, later_ok: bool) -> SinkError {
        let verdict = verdict(record, error);
        let SinkError::Retryable(reason) = verdict else {
            return verdict;
        };
        let own = later_ok || error.rdkafka_error_code().is_some_and(is_record_specific);
        if !own {
            return SinkError::Retryable(match self.cluster_error.get() {
                Some(cause) => format!("{reason}; the cluster's last error: {cause}"),
                None => reason,
            });
        }
        // Entries of records already settled are of no more use.
        self.failures.retain(|id, _| *id >= record.id);
        let failures = self.failures.entry(record.id).or_insert(0);
        *failures += 1;
        // The count stays past the limit, so the record-by-record resend
        // that finds the refused record is told at once.
        if *failures > self.record_retries {
            return SinkError::Permanent(format!(
                "{reason} (gave up after {} attempts)",
                self.record_retries + 1
            ));
        }
        SinkError::Retryable(reason)
    }

    /// After a fatal error (possible with the idempotent producer) librdkafka
    /// refuses every record; a new producer is the only way forward.
    ///
    /// The same after a fenced epoch: when a record times out, librdkafka
    /// bumps the idempotent producer's epoch on its own; Kafka accepts that,
    /// but some Kafka-protocol brokers (tansu) answer every later produce
    /// with PRODUCER_FENCED without librdkafka calling it fatal, and the
    /// bridge would retry forever.
    fn replace_producer_after_fatal_error(&mut self) -> Result<(), SinkError> {
        let abandoned = self
            .transactions
            .as_mut()
            .is_some_and(|t| std::mem::take(&mut t.abandoned));
        if std::mem::take(&mut self.fenced) {
            tracing::warn!("kafka producer fenced; replacing it");
        } else if abandoned {
            tracing::warn!("kafka transaction could not be ended; replacing the producer");
        } else {
            let Some((code, reason)) = self.producer.client().fatal_error() else {
                return Ok(());
            };
            tracing::warn!(?code, %reason, "kafka producer failed fatally; replacing it");
        }
        self.producer = create_producer(&self.client_config, &self.cluster_error, &self.status)
            .map_err(|error| {
                SinkError::Retryable(format!("replacing the failed Kafka producer: {error}"))
            })?;
        if let Some(t) = self.transactions.as_mut() {
            t.producer_replaced();
        }
        Ok(())
    }

    /// Produces `chunk` (at most `max_in_flight` records) and awaits every
    /// delivery report, counting them in `tally`.
    async fn produce<'a>(
        &mut self,
        chunk: &'a [Record],
        tally: &mut Tally<'a>,
    ) -> Result<(), SinkError> {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for record in chunk {
            match self.enqueue(record).await {
                Ok(delivery) => deliveries.push(delivery),
                // Refused before it was sent (its topic is known to be
                // unknown, say): nothing after it went out.
                Err(error) => {
                    tally.failed(&error);
                    return Err(self.judge(record, &error, false));
                }
            }
        }
        // Every report is awaited: whether records after a failed one got
        // through tells a record's own trouble from the cluster's.
        let mut first_failure: Option<(&Record, KafkaError)> = None;
        let mut later_ok = false;
        for (record, delivery) in chunk.iter().zip(deliveries) {
            let error = match delivery.await {
                Ok(Ok(delivery)) => {
                    tally.delivered(record, delivery.partition, delivery.offset);
                    later_ok |= first_failure.is_some();
                    continue;
                }
                Ok(Err((error, _))) => {
                    tally.failed(&error);
                    error
                }
                Err(_canceled) => {
                    return Err(SinkError::Retryable(format!(
                        "record {} to topic {:?}: the producer went away before reporting delivery",
                        record.id, record.destination
                    )))
                }
            };
            if matches!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
            ) {
                self.fenced = true;
            }
            if first_failure.is_none() {
                first_failure = Some((record, error));
            }
        }
        match first_failure {
            Some((record, error)) => Err(self.judge(record, &error, later_ok)),
            None => Ok(()),
        }
    }

    /// Records up to the batch's last are through: their counts go, and so
    /// does the cluster's trouble.
    fn settled(&mut self, batch: &[Record]) {
        self.cluster_error.clear();
        if let Some(last) = batch.last() {
            self.failures.retain(|id, _| *id > last.id);
        }
    }
}

impl Sink for KafkaSink {
    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.replace_producer_after_fatal_error()?;
        for record in batch {
            check_topic(record)?;
        }
        if self.transactions.is_some() {
            return self.send_in_transaction(batch).await;
        }
        let mut tally = self.status.tally();
        for chunk in batch.chunks(self.max_in_flight) {
            self.produce(chunk, &mut tally).await?;
        }
        self.settled(batch);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn max_batch(&self) -> usize {
        self.max_in_flight
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Err(error) = self.producer.flush(FLUSH_ON_DROP) {
            tracing::debug!(%error, "kafka producer not flushed on close");
        }
    }
}

fn create_producer(
    config: &ClientConfig,
    cluster_error: &ClusterError,
    status: &Arc<KafkaStatus>,
) -> Result<FutureProducer<TracingContext>, KafkaSinkSetupError> {
    config
        .create_with_context(TracingContext {
            cluster_error: cluster_error.clone(),
            status: Arc::clone(status),
        })
        .map_err(KafkaSinkSetupError::from_kafka)
}

/// Errors about the record itself: resending it can never succeed.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidRecord
            // CORRUPT_MESSAGE in Kafka's own list.
            | RDKafkaErrorCode::InvalidMessage
            // RECORD_LIST_TOO_LARGE in Kafka's own list.
            | RDKafkaErrorCode::MessageBatchTooLarge
            // Outside the broker's `message.timestamp.*.max.ms` window: old
            // records replayed after a long outage stay outside it.
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// Retryable errors about the record's topic or partition, not the cluster.
fn is_record_specific(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
    )
}

fn verdict(record: &Record, error: &KafkaError) -> SinkError {
    let reason = format!(
        "record {} to topic {:?}: {error}",
        record.id, record.destination
    );
    match error.rdkafka_error_code() {
        Some(code) if is_permanent(code) => SinkError::Permanent(reason),
        _ => SinkError::Retryable(reason),
    }
}

/// Kafka's rules for topic names. An MQTT-shaped name (`a/b`) would
/// otherwise go to the cluster and come back as a metadata error for every
/// resend.
fn check_topic(record: &Record) -> Result<(), SinkError> {
    let topic = record.destination.as_str();
    if is_valid_topic(topic) {
        return Ok(());
    }
    Err(SinkError::Permanent(format!(
        "record {}: {topic:?} is not a valid Kafka topic name \
         (1 to {MAX_TOPIC_LEN} of a-z, A-Z, 0-9, '.', '_', '-'; not \".\" or \"..\")",
        record.id
    )))
}

/// Kafka's rules for a topic name.
fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Routes librdkafka's log lines and client errors to `tracing` (rdkafka's
/// default writes to the `log` crate, which nothing here listens to), and
/// its statistics and client errors to the sink's [`KafkaStatus`].
struct TracingContext {
    cluster_error: ClusterError,
    status: Arc<KafkaStatus>,
}

/// The reason of librdkafka's last error about the connection to the
/// cluster (a TLS handshake that failed, a refused SASL login, ...). The
/// records themselves only time out meanwhile, so the sink adds it to their
/// error: the bridge's status then says why.
#[derive(Debug, Clone, Default)]
struct ClusterError(Arc<Mutex<Option<String>>>);

impl ClusterError {
    fn set(&self, error: &KafkaError, reason: &str) {
        // "All brokers down" follows the error that brought them down and
        // would hide it.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        let reason = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_owned()
        };
        *self.0.lock() = Some(reason);
    }

    fn clear(&self) {
        *self.0.lock() = None;
    }

    fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, message, "librdkafka"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection losses land here and repeat while the cluster is down;
        // `send` reports their effect, so this stays below warn.
        tracing::info!(%error, reason, "kafka client error");
        self.status.client_error(&error);
        self.cluster_error.set(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.status.statistics(&statistics);
    }
}
