//! Exactly once into Kafka (`exactly_once = true`).
//!
//! At least once resends a batch whose acknowledgement a crash took: the
//! buffer's cursor is written after Kafka has the records, so the records
//! between are produced again. Here each batch is one Kafka transaction
//! holding the records *and* the bridge's cursor (every record id below it
//! is in Kafka), written as a record of the cursor topic keyed by the
//! `transactional_id` (Kafka Connect's exactly-once sources keep their
//! offsets the same way). Kafka commits both or neither, so Kafka's cursor
//! always says which records `read_committed` consumers can see.
//!
//! After a start, and after any failure whose outcome is unknown (a commit
//! that timed out, a producer replaced), the sink first initialises
//! transactions with the same `transactional_id`: Kafka fences the producer
//! a crash left behind and aborts its open transaction. Then it reads the
//! cursor back (with `read_committed`) and drops from the next batch the
//! records below it: a crash between Kafka's commit and the buffer's own
//! cursor write leaves exactly those at the head of the buffer, and they are
//! acknowledged to the buffer without being produced twice.
//!
//! The cursor topic is the bridge's own (one partition, compacted), so no
//! other producer's open transaction can hide the cursor from the reader.
//! A cursor past every record the batch holds cannot be this buffer's (its
//! directory was wiped, or two bridges share the `transactional_id`): it is
//! ignored with an error in the log, which may resend, never lose.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{KafkaSink, KafkaSinkConfig, KafkaSinkSetupError, MAX_TOPIC_LEN};
use crate::record::{now_ms, Record};
use crate::sink::SinkError;

/// Prefix of the default cursor topic, followed by the transactional id.
pub const DEFAULT_CURSOR_TOPIC_PREFIX: &str = "sluice-cursor.";

/// The header naming the transaction a record was produced in:
/// `<cursor>@<producer start, ms>`, also in the transaction's cursor record.
/// Consumers need not read it (`read_committed` does the work); it lets a
/// record be traced to its transaction, and lets the tests tell committed
/// transactions on librdkafka's mock cluster, which shows aborted records.
pub const TXN_HEADER: &str = "sluice-txn";

/// The empty default: `cursor_topic` unset means the derived name.
pub const DEFAULT_CURSOR_TOPIC: &str = "";

/// librdkafka's default `transaction.timeout.ms`; raised to the message
/// timeout when that is longer (librdkafka refuses a message timeout
/// longer than the transaction's).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Records read back per attempt to find the last cursor: each transaction
/// adds a cursor record and a commit marker, so the last few suffice unless
/// many transactions were aborted.
const FIRST_WINDOW: i64 = 64;

/// The sink's side of the transactions.
#[derive(Debug)]
pub(super) struct Transactions {
    transactional_id: String,
    cursor_topic: String,
    /// `init_transactions` succeeded on the current producer (once per
    /// producer).
    initialised: bool,
    /// Kafka's cursor is known: read since the last start or failure whose
    /// outcome is unknown, or set by our own commit.
    ready: bool,
    /// Every record below this id is committed in Kafka.
    committed: Option<u64>,
    /// An abort failed: the producer is replaced before the next batch.
    pub(super) abandoned: bool,
    /// When the current producer was created (ms since the epoch): with the
    /// cursor it names a transaction (see [`TXN_HEADER`]).
    producer_started_ms: u64,
    /// The open transaction's name, carried by its records.
    pub(super) open: Option<String>,
}

impl Transactions {
    /// `None` unless `exactly_once` (the configuration is validated).
    pub(super) fn of(config: &KafkaSinkConfig) -> Option<Transactions> {
        if !config.exactly_once {
            return None;
        }
        let transactional_id = config.transactional_id.clone().unwrap_or_default();
        Some(Transactions {
            cursor_topic: cursor_topic(config),
            transactional_id,
            initialised: false,
            ready: false,
            committed: None,
            abandoned: false,
            producer_started_ms: now_ms(),
            open: None,
        })
    }

    /// The producer was replaced: its successor starts over.
    pub(super) fn producer_replaced(&mut self) {
        self.initialised = false;
        self.ready = false;
        self.producer_started_ms = now_ms();
    }

    /// The index of the first record of `batch` Kafka does not have yet.
    fn first_uncommitted(&mut self, batch: &[Record]) -> usize {
        let (Some(committed), Some(last)) = (self.committed, batch.last()) else {
            return 0;
        };
        if committed > last.id.saturating_add(1) {
            tracing::error!(
                cursor_topic = %self.cursor_topic,
                committed,
                first = batch[0].id,
                last = last.id,
                "the cursor in Kafka is past every record of the bridge's buffer: not this buffer's \
                 (a wiped buffer directory, or a transactional_id shared by two bridges); ignored"
            );
            self.committed = None;
            return 0;
        }
        let skip = batch.partition_point(|r| r.id < committed);
        if skip > 0 {
            tracing::info!(
                records = skip,
                "records committed to Kafka before a restart are not produced again"
            );
        }
        skip
    }
}

/// The cursor topic: the configured one, or `sluice-cursor.<id>` with the
/// characters Kafka refuses in a topic name replaced by `_`.
pub(super) fn cursor_topic(config: &KafkaSinkConfig) -> String {
    if !config.cursor_topic.is_empty() {
        return config.cursor_topic.clone();
    }
    let id = config.transactional_id.as_deref().unwrap_or_default();
    let mut topic: String = DEFAULT_CURSOR_TOPIC_PREFIX
        .chars()
        .chain(id.chars().map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        }))
        .collect();
    topic.truncate(MAX_TOPIC_LEN);
    topic
}

/// What `exactly_once` needs from the rest of the configuration.
pub(super) fn validate(config: &KafkaSinkConfig) -> Result<(), KafkaSinkSetupError> {
    let bad = |key, reason: &str| {
        Err(KafkaSinkSetupError::ExactlyOnce {
            key,
            reason: reason.to_owned(),
        })
    };
    if config.options.contains_key("transactional.id") {
        return bad(
            "options",
            "\"transactional.id\" is set by `transactional_id` with `exactly_once = true`",
        );
    }
    if !config.exactly_once {
        if config.transactional_id.is_some() {
            return bad("transactional_id", "needs `exactly_once = true`");
        }
        if !config.cursor_topic.is_empty() {
            return bad("cursor_topic", "needs `exactly_once = true`");
        }
        return Ok(());
    }
    match config.transactional_id.as_deref() {
        None => return bad(
            "transactional_id",
            "`exactly_once` needs a transactional_id, the same across restarts and one per bridge",
        ),
        Some(id) if id.trim().is_empty() || id.contains('\0') => {
            return bad("transactional_id", "must be a non-empty name without NUL")
        }
        Some(_) => {}
    }
    if !matches!(config.acks.as_str(), "all" | "-1") {
        return bad("acks", "`exactly_once` needs acks = \"all\"");
    }
    let topic = cursor_topic(config);
    if !super::is_valid_topic(&topic) {
        return bad(
            "cursor_topic",
            "is not a valid Kafka topic name (a-z, A-Z, 0-9, '.', '_', '-')",
        );
    }
    Ok(())
}

/// The transactional producer's settings (before the user's options).
pub(super) fn configure(config: &KafkaSinkConfig, client: &mut ClientConfig) {
    let Some(id) = config
        .transactional_id
        .as_deref()
        .filter(|_| config.exactly_once)
    else {
        return;
    };
    let timeout = TRANSACTION_TIMEOUT.max(config.message_timeout);
    client
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout.as_millis().to_string());
}

impl KafkaSink {
    /// Sends `batch` as one transaction with the cursor past its last
    /// record (see the module documentation).
    pub(super) async fn send_in_transaction(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.prepare_transactions().await?;
        let Some(t) = self.transactions.as_mut() else {
            return Ok(());
        };
        let skip = t.first_uncommitted(batch);
        let (transactional_id, cursor_topic) = (t.transactional_id.clone(), t.cursor_topic.clone());
        let rest = &batch[skip..];
        let Some(last) = rest.last() else {
            return Ok(());
        };
        let cursor = last.id.saturating_add(1);
        let name = format!("{cursor}@{}", t.producer_started_ms);
        t.open = Some(name.clone());
        if let Err(e) = self.producer.begin_transaction() {
            // Only in a state no batch should leave: start over.
            self.abandon();
            return Err(self.transaction_failed("beginning a transaction", &e));
        }
        let mut tally = self.status.tally();
        let produced = match self.produce(rest, &mut tally).await {
            Ok(()) => self
                .produce_cursor(&cursor_topic, &transactional_id, cursor, &name)
                .await
                .map_err(SinkError::Retryable),
            Err(e) => Err(e),
        };
        if let Err(e) = produced {
            if let Some(t) = self.transactions.as_mut() {
                t.open = None;
            }
            self.abort().await;
            return Err(e);
        }
        let producer = self.producer.clone();
        let timeout = self.message_timeout;
        if let Some(t) = self.transactions.as_mut() {
            t.open = None;
        }
        let committed =
            tokio::task::spawn_blocking(move || producer.commit_transaction(timeout)).await;
        match committed {
            Ok(Ok(())) => {
                if let Some(t) = self.transactions.as_mut() {
                    t.committed = Some(cursor);
                }
                self.settled(rest);
                Ok(())
            }
            Ok(Err(e)) => {
                // Committed or not: the cursor read before the next batch
                // tells. An abortable error is aborted; any other (a commit
                // that timed out may still be under way) gets a new
                // producer, whose `init_transactions` waits for the old
                // transaction to end.
                if let Some(t) = self.transactions.as_mut() {
                    t.ready = false;
                }
                if matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort()) {
                    self.abort().await;
                } else {
                    self.abandon();
                }
                Err(self.transaction_failed("committing the transaction", &e))
            }
            Err(_) => {
                self.abandon();
                Err(SinkError::Retryable(
                    "the commit of a Kafka transaction was cancelled".to_owned(),
                ))
            }
        }
    }

    /// Initialises transactions on a new producer and reads Kafka's cursor,
    /// unless both are done.
    async fn prepare_transactions(&mut self) -> Result<(), SinkError> {
        let Some(t) = self.transactions.as_ref() else {
            return Ok(());
        };
        if t.ready {
            return Ok(());
        }
        let (initialised, topic, key) = (
            t.initialised,
            t.cursor_topic.clone(),
            t.transactional_id.clone(),
        );
        let timeout = self.message_timeout;
        if !initialised {
            let producer = self.producer.clone();
            let result =
                tokio::task::spawn_blocking(move || producer.init_transactions(timeout)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.transaction_failed("initialising transactions", &e)),
                Err(_) => {
                    return Err(SinkError::Retryable(
                        "initialising Kafka transactions was cancelled".to_owned(),
                    ))
                }
            }
            if let Some(t) = self.transactions.as_mut() {
                t.initialised = true;
            }
        }
        let mut created = false;
        let committed = loop {
            let client = self.client_config.clone();
            let (from, by) = (topic.clone(), key.clone());
            let read =
                tokio::task::spawn_blocking(move || read_cursor(&client, &from, &by, timeout))
                    .await
                    .unwrap_or_else(|_| Err(CursorError::Failed("cancelled".to_owned())));
            match read {
                Ok(committed) => break committed,
                // Just created: its metadata may take a moment to spread.
                Err(CursorError::NoTopic) if created => {
                    return Err(SinkError::Retryable(format!(
                        "the cursor topic {topic:?} was created but is not known yet"
                    )))
                }
                Err(CursorError::NoTopic) => {
                    self.create_cursor_topic(&topic).await?;
                    created = true;
                }
                Err(CursorError::Failed(reason)) => {
                    return Err(SinkError::Retryable(format!(
                        "reading the bridge's cursor from Kafka: {reason}"
                    )))
                }
            }
        };
        if let Some(t) = self.transactions.as_mut() {
            t.committed = committed;
            t.ready = true;
        }
        Ok(())
    }

    /// Creates the cursor topic: one partition, compacted (only the last
    /// cursor matters), the cluster's default replication.
    async fn create_cursor_topic(&self, topic: &str) -> Result<(), SinkError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config.create().map_err(|e| {
                SinkError::Retryable(format!("creating the cursor topic {topic:?}: {e}"))
            })?;
        let new =
            NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let options = AdminOptions::new()
            .operation_timeout(Some(self.message_timeout))
            .request_timeout(Some(self.message_timeout));
        let failed = |reason: String| {
            SinkError::Retryable(format!(
                "creating the cursor topic {topic:?} (or create it: one partition, \
                 cleanup.policy=compact): {reason}"
            ))
        };
        let results = admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| failed(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(failed(code.to_string())),
            }
        }
        tracing::info!(topic, "created the Kafka bridge's cursor topic");
        Ok(())
    }

    /// Produces the cursor record and waits for its delivery report.
    async fn produce_cursor(
        &self,
        topic: &str,
        key: &str,
        cursor: u64,
        name: &str,
    ) -> Result<(), String> {
        let value = serde_json::json!({ "acked_below": cursor, "txn": name }).to_string();
        let record = FutureRecord::<str, str>::to(topic)
            .partition(0)
            .key(key)
            .payload(&value);
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| format!("the cursor to {topic:?}: {e}"))?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(format!("the cursor to {topic:?}: {e}")),
            Err(_) => Err(format!("the cursor to {topic:?}: no delivery report")),
        }
    }

    /// Aborts the open transaction; when even that fails the producer is
    /// replaced before the next batch (whose new `init_transactions` ends
    /// the transaction for it).
    async fn abort(&mut self) {
        let producer = self.producer.clone();
        let timeout = self.message_timeout;
        let aborted =
            tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await;
        if !matches!(aborted, Ok(Ok(()))) {
            self.abandon();
        }
    }

    /// The producer is in a transaction state we cannot end: it is replaced
    /// before the next batch, and Kafka's cursor read again.
    fn abandon(&mut self) {
        if let Some(t) = self.transactions.as_mut() {
            t.abandoned = true;
            t.ready = false;
        }
    }

    /// A transaction call failed: retryable (a fatal error replaces the
    /// producer before the next batch).
    fn transaction_failed(&self, doing: &str, error: &KafkaError) -> SinkError {
        SinkError::Retryable(match self.cluster_error.get() {
            Some(cause) => format!("{doing}: {error}; the cluster's last error: {cause}"),
            None => format!("{doing}: {error}"),
        })
    }
}

/// Why the cursor could not be read.
enum CursorError {
    /// The cursor topic does not exist (yet).
    NoTopic,
    Failed(String),
}

impl From<String> for CursorError {
    fn from(reason: String) -> Self {
        CursorError::Failed(reason)
    }
}

/// The last committed cursor of `key` in partition 0 of `topic`, read with
/// `read_committed` from the end backwards (a window growing until a
/// cursor is found or the partition's start is reached).
fn read_cursor(
    client: &ClientConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<u64>, CursorError> {
    let mut config = client.clone();
    for producer_only in ["transactional.id", "transaction.timeout.ms"] {
        config.remove(producer_only);
    }
    config
        .set("group.id", "sluice-cursor-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let (low, high) = match consumer.fetch_watermarks(topic, 0, timeout) {
        Ok(marks) => marks,
        Err(e) if is_unknown_topic(&e) => return Err(CursorError::NoTopic),
        Err(e) => return Err(CursorError::Failed(e.to_string())),
    };
    let deadline = Instant::now() + timeout;
    if high <= low {
        return Ok(None);
    }
    let mut window = FIRST_WINDOW;
    loop {
        let from = high.saturating_sub(window).max(low);
        if let Some(cursor) = scan(&consumer, topic, key, from, deadline)? {
            return Ok(Some(cursor));
        }
        if from == low {
            return Ok(None);
        }
        window = window.saturating_mul(16);
    }
}

/// The last cursor of `key` from offset `from` to the partition's end.
fn scan(
    consumer: &BaseConsumer,
    topic: &str,
    key: &str,
    from: i64,
    deadline: Instant,
) -> Result<Option<u64>, CursorError> {
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Offset(from))
        .map_err(|e| e.to_string())?;
    consumer.assign(&partitions).map_err(|e| e.to_string())?;
    let mut last = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if message.key() != Some(key.as_bytes()) {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_slice(message.payload().unwrap_or_default())
                        .map_err(|e| format!("a cursor record is not JSON: {e}"))?;
                let cursor = value["acked_below"]
                    .as_u64()
                    .ok_or_else(|| format!("a cursor record lacks acked_below: {value}"))?;
                last = Some(cursor);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(Err(e)) if is_unknown_topic(&e) => return Err(CursorError::NoTopic),
            Some(Err(e)) => return Err(CursorError::Failed(e.to_string())),
            None => {}
        }
    }
    Err(CursorError::Failed(format!(
        "no end of {topic:?} within the message timeout"
    )))
}

fn is_unknown_topic(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
