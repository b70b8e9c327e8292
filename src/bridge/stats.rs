//! What a bridge counts, for the metrics endpoint and the REST API.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of one bridge since the broker started. Updated once per batch
/// (never per record on a lock), read at scrape time.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages taken from the bridge's session.
    pub received: AtomicU64,
    /// Records the transform produced (appended to the buffer).
    pub transformed: AtomicU64,
    /// Messages the transform chose to drop (no output).
    pub dropped_by_transform: AtomicU64,
    /// Records the sink acknowledged.
    pub delivered: AtomicU64,
    /// Batches sent again after a retryable sink error.
    pub retried: AtomicU64,
    /// Records written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Records discarded by the `drop_oldest` policy.
    pub dropped_oldest: AtomicU64,
}

impl BridgeStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A bridge as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeStatus {
    pub name: String,
    /// "kafka", "http" or "mqtt".
    pub sink: &'static str,
    pub filters: Vec<String>,
    /// "running", "paused", "failing" (the sink refuses or is
    /// unreachable) or "failed" (the transform's threads would not stop:
    /// no more intake until the bridge restarts).
    pub state: &'static str,
    /// Since when the sink has been failing, in ms since the Unix epoch.
    pub failing_since_ms: Option<u64>,
    pub last_error: Option<String>,
    pub received: u64,
    pub transformed: u64,
    pub dropped_by_transform: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    /// Dead-letter lines not kept (the files' bound) since the start.
    pub dead_letter_discarded: u64,
    /// Size of the dead-letter files.
    pub dead_letter_bytes: u64,
    pub dropped_oldest: u64,
    /// Records in the buffer not yet acknowledged by the sink.
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// Age of the oldest undelivered record, in ms (0 when empty).
    pub oldest_undelivered_ms: u64,
    /// Messages waiting in the bridge's session (not yet in the buffer).
    pub session_queued: usize,
    /// MQTT bridges: the link to the remote broker (connected, whether the
    /// remote still had our session, connections made, last error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<sluice_bridges::mqtt::LinkReport>,
    /// Kafka bridges: per partition, records acknowledged, the last
    /// acknowledged offset, records librdkafka holds and the last batch's
    /// latency; failed records and client errors by error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<sluice_bridges::kafka::KafkaReport>,
}
