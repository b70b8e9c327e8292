//! Delivery: drains a bridge's buffer into its sink, in order, resending
//! from the first record the far side has not acknowledged (go-back-N).
//!
//! The loop knows the buffer and the [`Sink`] trait; what the broker does
//! with the outcome (counters, publishers waiting for `ack = "sink"`, the
//! status the admin API shows) goes through [`DeliveryHost`], so the loop
//! runs the same against an in-memory sink in a test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::buffer::Buffer;
use crate::record::Record;
use crate::sink::{Sink, SinkError};

/// Shortest pause between attempts while the sink is unreachable.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between attempts while the sink is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Longest wait a `Retry-After` answer can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What the delivery loop shares with the bridge that runs it.
pub trait DeliveryHost: Send + Sync + 'static {
    /// The bridge's name, for logs.
    fn name(&self) -> &str;
    fn buffer(&self) -> &Arc<Mutex<Buffer>>;
    /// While true nothing goes to the sink; `wake` ends the pause.
    fn paused(&self) -> bool;
    /// Notified when records arrive, on resume and on stop.
    fn wake(&self) -> &Notify;
    /// Becomes true when the bridge stops.
    fn stop(&self) -> watch::Receiver<bool>;
    /// `records` more reached the sink, the last of them `through`.
    fn delivered(&self, records: usize, through: u64);
    /// `record` went to the dead-letter file because the sink refused it
    /// with `reason` (the sink's words, as written in the file).
    fn dead_lettered(&self, record: u64, reason: &str);
    /// The sink failed with a retryable error (`Some`, once per attempt),
    /// or works again (`None`, once after a failure).
    fn failing(&self, error: Option<String>);
}

/// Runs until the bridge is stopped. Retryable failures back off
/// exponentially (with jitter, up to 5 s, or as long as the far side's
/// `Retry-After` asks) and resend; a permanent failure sends the batch one
/// record at a time to find the culprit, which goes to the dead letter file.
pub async fn run<S: Sink, H: DeliveryHost>(mut sink: S, host: Arc<H>) {
    sink.start();
    let mut delivery = Delivery {
        stop: host.stop(),
        max: sink.max_batch().max(1),
        max_bytes: sink.max_batch_bytes(),
        linger: sink.linger(),
        sink,
        host,
        backoff: MIN_BACKOFF,
        failing_since: None,
        lingered: false,
    };
    while !*delivery.stop.borrow() {
        delivery.step().await;
    }
}

/// The loop's state between two steps.
struct Delivery<S, H> {
    sink: S,
    host: Arc<H>,
    stop: watch::Receiver<bool>,
    max: usize,
    max_bytes: usize,
    linger: Duration,
    backoff: Duration,
    failing_since: Option<Instant>,
    /// The batch in hand already waited `linger` once.
    lingered: bool,
}

impl<S: Sink, H: DeliveryHost> Delivery<S, H> {
    /// Waits for something to send, or sends one batch.
    async fn step(&mut self) {
        if self.host.paused() {
            tokio::select! {
                _ = self.host.wake().notified() => {}
                _ = self.stop.changed() => {}
            }
            return;
        }
        let Some(mut batch) = self.peek().await else {
            return;
        };
        if batch.is_empty() {
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_secs(1), self.host.wake().notified()) => {}
                _ = self.stop.changed() => {}
            }
            return;
        }
        if batch.len() < self.max && !self.linger.is_zero() && !self.lingered {
            // Let the batch fill (records keep arriving in the buffer).
            self.lingered = true;
            self.sleep(self.linger).await;
            return;
        }
        self.lingered = false;
        truncate_to_bytes(&mut batch, self.max_bytes);
        match self.sink.send(&batch).await {
            Ok(()) => self.on_delivered(&batch).await,
            Err(SinkError::Retryable(e)) => self.on_retryable(e).await,
            Err(SinkError::Permanent(_)) => self.find_refused(&batch).await,
        }
    }

    /// The records from the first unacknowledged one, or none after a read
    /// error (logged, and waited on).
    async fn peek(&self) -> Option<Vec<Record>> {
        let b = Arc::clone(self.host.buffer());
        let max = self.max;
        match tokio::task::spawn_blocking(move || b.lock().peek(max)).await {
            Ok(Ok(batch)) => Some(batch),
            Ok(Err(e)) => {
                tracing::error!(bridge = %self.host.name(), error = %e, "bridge buffer read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(_) => None,
        }
    }

    async fn on_delivered(&mut self, batch: &[Record]) {
        self.ack(batch.len()).await;
        if let Some(last) = batch.last() {
            self.host.delivered(batch.len(), last.id);
        }
        self.backoff = MIN_BACKOFF;
        if let Some(since) = self.failing_since.take() {
            self.host.failing(None);
            tracing::info!(bridge = %self.host.name(), outage_ms = since.elapsed().as_millis() as u64, "bridge sink reachable again");
        }
    }

    async fn on_retryable(&mut self, error: String) {
        if self.failing_since.is_none() {
            tracing::warn!(bridge = %self.host.name(), error = %error, "bridge sink unreachable; records stay buffered");
            self.failing_since = Some(Instant::now());
        }
        self.host.failing(Some(error));
        // The far side's Retry-After wins over our backoff (capped: a
        // hostile value must not park the bridge for hours).
        let wait = self
            .sink
            .retry_after()
            .map_or_else(|| jittered(self.backoff), |d| d.min(MAX_RETRY_AFTER));
        self.sleep(wait).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Sends the batch one record at a time to find the one the far side
    /// refuses: it goes to the dead-letter file; the ones before it got
    /// through and are acknowledged. A retryable error ends the search (the
    /// rest is resent by the next step).
    async fn find_refused(&mut self, batch: &[Record]) {
        for one in batch.chunks(1) {
            match self.sink.send(one).await {
                Ok(()) => {
                    self.ack(1).await;
                    self.host.delivered(1, one[0].id);
                }
                Err(SinkError::Permanent(reason)) => {
                    let b = Arc::clone(self.host.buffer());
                    let line = reason.clone();
                    let _ = tokio::task::spawn_blocking(move || b.lock().dead_letter(&line)).await;
                    self.host.dead_lettered(one[0].id, &reason);
                }
                Err(SinkError::Retryable(_)) => break,
            }
        }
    }

    async fn ack(&self, n: usize) {
        let b = Arc::clone(self.host.buffer());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.lock().ack(n)).await {
            tracing::error!(bridge = %self.host.name(), error = %e, "bridge buffer acknowledgement failed; records will be resent");
        }
    }

    /// Sleeps, or less if the bridge stops meanwhile.
    async fn sleep(&mut self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.changed() => {}
        }
    }
}

/// Keeps the longest prefix whose payloads fit `max_bytes` (at least one
/// record, whatever its size).
fn truncate_to_bytes(batch: &mut Vec<Record>, max_bytes: usize) {
    let mut total = 0usize;
    let keep = batch
        .iter()
        .position(|r| {
            total = total.saturating_add(r.payload.len());
            total > max_bytes
        })
        .unwrap_or(batch.len())
        .max(1);
    batch.truncate(keep);
}

/// Up to a quarter more or less, so bridges failing together do not retry
/// in lockstep.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let quarter = d / 4;
    let offset = quarter.mul_f64(f64::from(nanos % 1000) / 500.0);
    d - quarter + offset
}

#[cfg(test)]
mod tests;
