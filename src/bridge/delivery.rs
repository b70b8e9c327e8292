//! The broker's side of delivery: the loop itself is the bridges crate's
//! (`sluice_bridges::delivery`); here its outcomes reach the bridge's
//! counters, its status and the publishers waiting for `ack = "sink"`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_bridges::buffer::Buffer;
use sluice_bridges::delivery::DeliveryHost;
use tokio::sync::{watch, Notify};

use super::running::Shared;
use super::stats::BridgeStats;

impl DeliveryHost for Shared {
    fn name(&self) -> &str {
        &self.name
    }

    fn buffer(&self) -> &Arc<Mutex<Buffer>> {
        &self.buffer
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    fn wake(&self) -> &Notify {
        &self.wake
    }

    fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    fn delivered(&self, records: usize, through: u64) {
        BridgeStats::add(&self.stats.delivered, records as u64);
        self.settle_through(through);
    }

    fn dead_lettered(&self, record: u64, reason: &str) {
        self.log_dead_letter(record, &format!("refused by the sink: {reason}"));
        BridgeStats::add(&self.stats.dead_lettered, 1);
        self.settle_through(record);
    }

    fn failing(&self, error: Option<String>) {
        if error.is_some() {
            BridgeStats::add(&self.stats.retried, 1);
        }
        self.set_failing(error);
    }
}
