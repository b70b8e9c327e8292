//! The interface every sink implements.

use std::future::Future;

use crate::record::Record;

/// Why a batch did not reach its destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (timeouts, 5xx, broker unavailable): the buffer keeps
    /// the records and resends them from the first unacknowledged one.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never succeed (4xx, record too large): the record goes to the
    /// dead letter file with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A destination for records. `send` returns once the far side has every
/// record of the batch (that is the acknowledgement), or an error.
pub trait Sink: Send {
    /// Called once when the delivery loop starts, on its runtime: a sink
    /// that keeps a connection of its own (MQTT) opens it here rather than
    /// when it is built (a reload builds the new sink while the old one
    /// still runs).
    fn start(&mut self) {}

    /// Delivers `batch` in order.
    fn send(&mut self, batch: &[Record]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Largest sum of payload bytes handed to the sink at once (at least one
    /// record goes whatever its size).
    fn max_batch_bytes(&self) -> usize {
        usize::MAX
    }

    /// How long the delivery loop waits for a batch to fill before sending
    /// a partial one (zero: send what is there).
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// How long the far side asked to be left alone after the last
    /// retryable error (HTTP `Retry-After`), taken once; the delivery loop
    /// waits that long instead of its own backoff.
    fn retry_after(&mut self) -> Option<std::time::Duration> {
        None
    }

    /// A short name for logs and metrics ("http", "kafka").
    fn kind(&self) -> &'static str;

    /// How many records the delivery loop hands to one `send`. A sink that
    /// pipelines records (Kafka) wants large batches to amortise the wait for
    /// acknowledgements; one that sends records one by one gains nothing
    /// from them, and a failed batch is resent whole.
    fn max_batch(&self) -> usize {
        100
    }
}
