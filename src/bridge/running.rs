//! One running bridge: its buffer, counters and the two tasks that move
//! records (intake: session → transform → buffer; delivery: buffer → sink).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_bridges::buffer::Buffer;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::stats::{BridgeStats, BridgeStatus};
use crate::broker::SessionSlot;
use crate::config::BridgeConfig;
use crate::session::SinkAck;
use crate::store::now_ms;

/// State the intake and delivery tasks share with the admin side.
pub struct Shared {
    pub name: String,
    pub config: BridgeConfig,
    pub buffer: Arc<Mutex<Buffer>>,
    pub slot: Arc<SessionSlot>,
    pub stats: BridgeStats,
    /// Set by the admin API: records keep arriving in the buffer, nothing
    /// goes to the sink.
    pub paused: AtomicBool,
    /// Wakes the delivery task: new records, resumed, or stopping.
    pub wake: Notify,
    /// `ack = "sink"`: publishers waiting for records, by record id (in
    /// increasing order).
    pub sink_acks: Mutex<VecDeque<(u64, Arc<dyn SinkAck>)>>,
    /// Since when (ms since the epoch) and why the sink has been failing.
    pub failing: Mutex<Option<(u64, String)>>,
    /// Set when the intake gave up (its transform threads would not stop):
    /// the bridge takes no more messages until it is restarted (reload or
    /// broker restart); they wait in its session.
    pub failed: Mutex<Option<String>>,
    /// Dead-letter log lines: a stream of bad messages is summed up, not
    /// logged line by line.
    pub dead_letter_log: Mutex<LogBudget>,
    pub stop: watch::Receiver<bool>,
    /// The sink's own connection (MQTT bridges), reported in the status.
    pub link: Option<Arc<sluice_bridges::mqtt::LinkStatus>>,
    /// The Kafka sink's per-partition numbers and errors (Kafka bridges).
    pub kafka: Option<Arc<sluice_bridges::kafka::KafkaStatus>>,
}

/// Lines allowed per [`LogBudget::WINDOW`].
const LOG_LINES_PER_WINDOW: u32 = 5;

/// A rate limit for one kind of log line: a few per window, then one line
/// saying how many were left out.
#[derive(Debug, Default)]
pub struct LogBudget {
    window_start: Option<std::time::Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

    /// Whether to log this occurrence; the second value is how many were
    /// suppressed in the window that just ended (to report once).
    pub fn allow(&mut self, now: std::time::Instant) -> (bool, u64) {
        let mut ended = 0;
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= Self::WINDOW)
        {
            ended = std::mem::take(&mut self.suppressed);
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < LOG_LINES_PER_WINDOW {
            self.logged += 1;
            (true, ended)
        } else {
            self.suppressed += 1;
            (false, ended)
        }
    }
}

impl Shared {
    /// Logs a dead-lettered record within the log budget.
    pub fn log_dead_letter(&self, record: u64, reason: &str) {
        let (log, suppressed) = self.dead_letter_log.lock().allow(std::time::Instant::now());
        if suppressed > 0 {
            tracing::warn!(bridge = %self.name, suppressed, "more records dead-lettered (log lines left out; see the counters)");
        }
        if log {
            tracing::warn!(bridge = %self.name, record, %reason, "record dead-lettered");
        }
    }

    /// Tells publishers whose records up to `last_id` are settled (delivered
    /// or dead-lettered) that they may have their acknowledgement.
    pub fn settle_through(&self, last_id: u64) {
        let mut acks = self.sink_acks.lock();
        while acks.front().is_some_and(|(id, _)| *id <= last_id) {
            if let Some((_, signal)) = acks.pop_front() {
                signal.fire();
            }
        }
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn set_failing(&self, error: Option<String>) {
        let mut f = self.failing.lock();
        match error {
            Some(e) => {
                let since = f.as_ref().map_or_else(now_ms, |(s, _)| *s);
                *f = Some((since, e));
            }
            None => *f = None,
        }
    }

    /// Whether everything the bridge took in has reached the sink.
    pub fn is_drained(&self) -> bool {
        let session_empty = {
            let s = self.slot.state.lock();
            s.queued_len() == 0 && s.inflight_len() == 0
        };
        session_empty && self.buffer.lock().is_empty()
    }

    pub fn status(&self) -> BridgeStatus {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let (records, bytes, oldest, dead_letter_discarded, dead_letter_bytes) = {
            let b = self.buffer.lock();
            (
                b.len(),
                b.bytes(),
                b.oldest_timestamp_ms(),
                b.dead_letter_discarded(),
                b.dead_letter_bytes(),
            )
        };
        let failed = self.failed.lock().clone();
        let failing = match failed {
            Some(why) => Some((0, why)),
            None => self.failing.lock().clone(),
        };
        let state = if self.failed.lock().is_some() {
            "failed"
        } else if self.paused.load(Ordering::Relaxed) {
            "paused"
        } else if failing.is_some() {
            "failing"
        } else {
            "running"
        };
        let s = &self.stats;
        BridgeStatus {
            name: self.name.clone(),
            sink: self.config.sink.kind(),
            filters: self.config.filters.clone(),
            state,
            failing_since_ms: failing.as_ref().map(|(since, _)| *since).filter(|s| *s > 0),
            last_error: failing.map(|(_, e)| e),
            received: load(&s.received),
            transformed: load(&s.transformed),
            dropped_by_transform: load(&s.dropped_by_transform),
            delivered: load(&s.delivered),
            retried: load(&s.retried),
            dead_lettered: load(&s.dead_lettered),
            dead_letter_discarded,
            dead_letter_bytes,
            dropped_oldest: load(&s.dropped_oldest),
            buffered_records: records,
            buffered_bytes: bytes,
            oldest_undelivered_ms: oldest.map_or(0, |t| now_ms().saturating_sub(t)),
            session_queued: self.slot.state.lock().queued_len(),
            link: self.link.as_ref().map(|l| l.report()),
            kafka: self.kafka.as_ref().map(|k| k.report()),
        }
    }
}

/// A started bridge and how to stop it.
pub struct RunningBridge {
    pub shared: Arc<Shared>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl RunningBridge {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Relaxed);
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Stops both tasks and waits for them: afterwards nobody holds the
    /// buffer, so the same bridge can be started again on its directory.
    /// Records stay in the buffer; messages not yet taken in stay in the
    /// bridge's session.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        self.shared.wake.notify_one();
        self.shared.slot.notify.notify_one();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.shared.buffer.lock().sync() {
            tracing::error!(bridge = %self.shared.name, error = %e, "bridge buffer sync failed");
        }
        tracing::info!(bridge = %self.shared.name, "bridge stopped");
    }
}
