//! `/metrics`: the Prometheus (OpenMetrics text) exposition. Every value is
//! read at scrape time from counters the broker keeps anyway; a fresh
//! registry per scrape (no global one) keeps tests isolated.
//!
//! Layout: `snapshot` reads the numbers once, `family` writes one metric
//! family, and `broker`, `bridges` (with `kafka`: Kafka bridges' partitions
//! and error codes) and `process` write their families in the order the
//! exposition has always had; `cluster`'s come last, in cluster mode.

mod bridges;
mod broker;
mod cluster;
mod family;
mod kafka;
mod process;
mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::bridge::Bridges;
use crate::broker::Broker;
use crate::server::ListenerCtx;
use snapshot::Snapshot;

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_traffic(&mut e)?;
        self.encode_connections(&mut e)?;
        self.encode_limits(&mut e)?;
        self.encode_refusals(&mut e)?;
        self.encode_state(&mut e)?;
        if self.store_enabled {
            self.encode_store(&mut e)?;
        }
        self.encode_bridges(&mut e)?;
        if let Some(p) = &self.process {
            process::encode(&mut e, p)?;
        }
        Ok(())
    }
}

/// The whole exposition text.
pub fn render_metrics(
    broker: &Arc<Broker>,
    bridges: &Bridges,
    listeners: &[Arc<ListenerCtx>],
    cluster: Option<&crate::cluster::ClusterStatus>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::take(broker, bridges, listeners)));
    if let Some(c) = cluster {
        registry.register_collector(Box::new(cluster::ClusterSnapshot(c.view())));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
