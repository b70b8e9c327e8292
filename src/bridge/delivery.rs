//! Delivery: drains the buffer into the sink, in order, resending from the
//! first record the far side has not acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_bridges::{AnySink, Sink, SinkError};

use super::running::Shared;
use super::stats::BridgeStats;

/// Longest pause between attempts while the sink is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Longest wait a `Retry-After` answer can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Runs until the bridge is stopped. Retryable failures back off
/// exponentially (with jitter, up to 5 s) and resend; a permanent failure
/// sends the batch one record at a time to find the culprit, which goes to
/// the dead letter file.
pub async fn run(mut sink: AnySink, shared: Arc<Shared>) {
    let name = shared.name.clone();
    let mut stop = shared.stop.clone();
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    let max = sink.max_batch().max(1);
    let max_bytes = sink.max_batch_bytes();
    let linger = sink.linger();
    let mut lingered = false;
    loop {
        if shared.stopping() {
            return;
        }
        if shared.paused.load(Ordering::Relaxed) {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let b = Arc::clone(&shared.buffer);
        let mut batch = match tokio::task::spawn_blocking(move || b.lock().peek(max)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(bridge = %name, error = %e, "bridge buffer read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => continue,
        };
        if batch.is_empty() {
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        if batch.len() < max && !linger.is_zero() && !lingered {
            // Let the batch fill (records keep arriving in the buffer).
            lingered = true;
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        lingered = false;
        truncate_to_bytes(&mut batch, max_bytes);
        match sink.send(&batch).await {
            Ok(()) => {
                ack(&shared, batch.len()).await;
                BridgeStats::add(&shared.stats.delivered, batch.len() as u64);
                shared.settle_through(batch[batch.len() - 1].id);
                backoff = Duration::from_millis(100);
                if let Some(since) = failing_since.take() {
                    shared.set_failing(None);
                    tracing::info!(bridge = %name, outage_ms = since.elapsed().as_millis() as u64, "bridge sink reachable again");
                }
            }
            Err(SinkError::Retryable(e)) => {
                BridgeStats::add(&shared.stats.retried, 1);
                if failing_since.is_none() {
                    tracing::warn!(bridge = %name, error = %e, "bridge sink unreachable; records stay buffered");
                    failing_since = Some(Instant::now());
                }
                shared.set_failing(Some(e));
                // The far side's Retry-After wins over our backoff (capped:
                // a hostile value must not park the bridge for hours).
                let wait = sink
                    .retry_after()
                    .map_or_else(|| jittered(backoff), |d| d.min(MAX_RETRY_AFTER));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(SinkError::Permanent(_)) => {
                // Find the record the far side refuses; the ones before it
                // got through and are acknowledged.
                for one in batch.chunks(1) {
                    match sink.send(one).await {
                        Ok(()) => {
                            ack(&shared, 1).await;
                            BridgeStats::add(&shared.stats.delivered, 1);
                        }
                        Err(SinkError::Permanent(reason)) => {
                            shared.log_dead_letter(
                                one[0].id,
                                &format!("refused by the sink: {reason}"),
                            );
                            BridgeStats::add(&shared.stats.dead_lettered, 1);
                            let b = Arc::clone(&shared.buffer);
                            let _ =
                                tokio::task::spawn_blocking(move || b.lock().dead_letter(&reason))
                                    .await;
                        }
                        Err(SinkError::Retryable(_)) => break,
                    }
                    shared.settle_through(one[0].id);
                }
            }
        }
    }
}

/// Keeps the longest prefix whose payloads fit `max_bytes` (at least one
/// record, whatever its size).
fn truncate_to_bytes(batch: &mut Vec<sluice_bridges::Record>, max_bytes: usize) {
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

async fn ack(shared: &Shared, n: usize) {
    let b = Arc::clone(&shared.buffer);
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.lock().ack(n)).await {
        tracing::error!(bridge = %shared.name, error = %e, "bridge buffer acknowledgement failed; records will be resent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, size: usize) -> sluice_bridges::Record {
        sluice_bridges::Record {
            id,
            destination: String::new(),
            key: None,
            payload: bytes::Bytes::from(vec![b'x'; size]),
            headers: Vec::new(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn batches_are_cut_at_the_byte_limit_but_never_empty() {
        let mut b: Vec<_> = (0..5).map(|i| rec(i, 400)).collect();
        truncate_to_bytes(&mut b, 1000);
        assert_eq!(b.len(), 2);
        let mut big = vec![rec(1, 5000), rec(2, 10)];
        truncate_to_bytes(&mut big, 1000);
        assert_eq!(
            big.len(),
            1,
            "a record larger than the limit still goes alone"
        );
        let mut all: Vec<_> = (0..3).map(|i| rec(i, 10)).collect();
        truncate_to_bytes(&mut all, usize::MAX);
        assert_eq!(all.len(), 3);
    }
}
