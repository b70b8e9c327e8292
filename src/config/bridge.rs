//! Bridge definitions: `[[bridges]]` tables in the main file or one file
//! per bridge under `bridges_dir`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

fn default_bridge_qos() -> u8 {
    1
}

fn default_bridge_max_bytes() -> u64 {
    1 << 30
}

fn default_dead_letter_max_bytes() -> u64 {
    sluice_bridges::buffer::DEFAULT_DEAD_LETTER_MAX_BYTES
}

fn default_transform_timeout_ms() -> u64 {
    sluice_bridges::transform::budget::DEFAULT_TIMEOUT.as_millis() as u64
}

fn default_transform_max_steps() -> u64 {
    sluice_bridges::transform::budget::DEFAULT_MAX_STEPS
}

fn default_transform_max_output_bytes() -> usize {
    sluice_bridges::transform::budget::DEFAULT_MAX_OUTPUT_BYTES
}

fn default_http_timeout_secs() -> u64 {
    10
}

fn default_http_batch_max_records() -> usize {
    100
}

fn default_http_batch_max_bytes() -> usize {
    1 << 20
}

fn default_kafka_record_retries() -> u32 {
    sluice_bridges::kafka::DEFAULT_RECORD_RETRIES
}

fn default_kafka_acks() -> String {
    "all".into()
}

/// Deep enough that the round trip and the buffer's cursor write per batch
/// are amortized (1000 held the bridge at 47% of direct production, 5000
/// at 69%).
fn default_kafka_max_in_flight() -> usize {
    5000
}

fn default_kafka_message_timeout_secs() -> u64 {
    30
}

/// Where a bridge sends its records.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BridgeSinkConfig {
    /// POST (or PUT) each record to a URL rendered from a template
    /// (`{topic}`, `{topic.2}`, `{client_id}`, `{payload.field}`, ...).
    Http {
        url: String,
        #[serde(default)]
        method: sluice_bridges::http::Method,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Headers whose value is read from an environment variable at
        /// start-up (`Authorization = "WEBHOOK_TOKEN"`), so secrets stay
        /// out of the file. A missing variable is a configuration error.
        #[serde(default)]
        headers_from_env: BTreeMap<String, String>,
        #[serde(default = "default_http_timeout_secs")]
        timeout_secs: u64,
        /// "one" (a request per record), "json_array" or "ndjson" (one
        /// request per URL per batch).
        #[serde(default)]
        batch: sluice_bridges::http::BatchMode,
        /// Records per request at most in the batching modes (and records
        /// handed to the sink at once).
        #[serde(default = "default_http_batch_max_records")]
        batch_max_records: usize,
        /// Payload bytes per request at most in the batching modes.
        #[serde(default = "default_http_batch_max_bytes")]
        batch_max_bytes: usize,
        /// Milliseconds to wait for a batch to fill before sending a
        /// partial one.
        #[serde(default)]
        linger_ms: u64,
        /// Extra CA for https endpoints (PEM).
        #[serde(default)]
        tls_ca: Option<PathBuf>,
    },
    /// Produce each record to a Kafka topic rendered from a template, with
    /// an idempotent producer (order per partition survives retries).
    Kafka {
        /// `host:port[,host:port...]`.
        bootstrap_servers: String,
        /// Topic template, e.g. `telemetry-{topic.2}`.
        topic: String,
        /// Key template, e.g. `{topic.3}` (the device): records with the
        /// same key go to the same partition, in order.
        #[serde(default)]
        key: Option<String>,
        /// `all` (default), `1` or `0`.
        #[serde(default = "default_kafka_acks")]
        acks: String,
        /// `none` (default), `gzip`, `snappy` or `lz4`.
        #[serde(default)]
        compression: sluice_bridges::kafka::Compression,
        /// Records handed to the producer at once and awaited together.
        #[serde(default = "default_kafka_max_in_flight")]
        max_in_flight: usize,
        /// How long the producer tries one record before the bridge backs
        /// off and resends from the first unacknowledged one.
        #[serde(default = "default_kafka_message_timeout_secs")]
        message_timeout_secs: u64,
        /// Resends a record gets for errors of its own (unknown topic, or a
        /// timeout while later records got through) before it is
        /// dead-lettered; cluster-wide errors retry without limit.
        #[serde(default = "default_kafka_record_retries")]
        record_retries: u32,
        /// Any librdkafka producer option (`security.protocol`,
        /// `sasl.mechanism`, `linger.ms`, ...), applied last.
        #[serde(default)]
        options: BTreeMap<String, String>,
    },
}

impl BridgeSinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BridgeSinkConfig::Http { .. } => "http",
            BridgeSinkConfig::Kafka { .. } => "kafka",
        }
    }
}

/// When the device that published a bridged QoS 1/2 message gets its
/// PUBACK/PUBREC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeAck {
    /// Once the message is durable in the bridge's buffer (fast; the
    /// buffer guarantees delivery later).
    #[default]
    Buffer,
    /// Only once the sink (Kafka, the HTTP endpoint) acknowledged it: the
    /// device keeps and resends messages while the sink is down.
    Sink,
}

/// One bridge: MQTT messages matching `filters`, transformed, buffered on
/// disk, delivered to a sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Letters, digits, '-' and '_'; names the buffer directory.
    pub name: String,
    /// MQTT topic filters; messages matching any of them are bridged.
    pub filters: Vec<String>,
    /// The identity the bridge reads under. Unset (the default): trusted,
    /// the bridge receives everything its filters match whatever the ACL
    /// says (the operator chose the filters). Set: the ACL applies to the
    /// bridge as to a client logged in with this user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Subscription QoS: 0 or 1 (1: nothing acknowledged to the publisher
    /// is lost on the way).
    #[serde(default = "default_bridge_qos")]
    pub qos: u8,
    /// jq expression run over {payload, topic, client_id, username, qos,
    /// retain, timestamp, user_properties}; its first output is the new
    /// payload, no output drops the message.
    #[serde(default)]
    pub transform: Option<String>,
    /// Wall-clock budget of one run of the rule; past it the message is
    /// dead-lettered.
    #[serde(default = "default_transform_timeout_ms")]
    pub transform_timeout_ms: u64,
    /// Step budget of one run (jq function calls, generator outputs).
    #[serde(default = "default_transform_max_steps")]
    pub transform_max_steps: u64,
    /// Largest transformed payload (compact JSON), in bytes.
    #[serde(default = "default_transform_max_output_bytes")]
    pub transform_max_output_bytes: usize,
    #[serde(default)]
    pub payload_format: sluice_bridges::transform::PayloadFormat,
    #[serde(default)]
    pub on_decode_error: sluice_bridges::transform::OnDecodeError,
    /// Disk quota of the bridge's buffer.
    #[serde(default = "default_bridge_max_bytes")]
    pub max_bytes: u64,
    /// When the buffer is full: "block" (stop taking messages; they wait in
    /// the bridge's session queue) or "drop_oldest".
    #[serde(default)]
    pub full_policy: sluice_bridges::buffer::FullPolicy,
    /// Bound on the dead-letter files (current and rotated together).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// When they are full: "rotate" (keep the newest lines) or
    /// "discard_new"; lines not kept are counted.
    #[serde(default)]
    pub dead_letter_full_policy: sluice_bridges::buffer::DeadLetterPolicy,
    /// "buffer" (default) or "sink": see [`BridgeAck`].
    #[serde(default)]
    pub ack: BridgeAck,
    pub sink: BridgeSinkConfig,
}
