//! The bridges' families, one series per bridge.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::family::{counter, family, fgauge, gauge};
use super::snapshot::Snapshot;
use crate::bridge::BridgeStatus;

/// Reads one bridge's value of a family.
type Pick = fn(&BridgeStatus) -> u64;

/// Counter families: name, help, the value of one bridge.
const COUNTERS: [(&str, &str, Pick); 8] = [
    (
        "sluice_bridge_received",
        "Messages taken in from the bridge's session.",
        |b| b.received,
    ),
    (
        "sluice_bridge_transformed",
        "Records the transform produced.",
        |b| b.transformed,
    ),
    (
        "sluice_bridge_dropped_by_transform",
        "Messages the transform dropped (no output).",
        |b| b.dropped_by_transform,
    ),
    (
        "sluice_bridge_delivered",
        "Records the sink acknowledged.",
        |b| b.delivered,
    ),
    (
        "sluice_bridge_retried",
        "Batches resent after a retryable sink error.",
        |b| b.retried,
    ),
    (
        "sluice_bridge_dead_lettered",
        "Records written to the dead-letter file.",
        |b| b.dead_lettered,
    ),
    (
        "sluice_bridge_dead_letter_discarded",
        "Dead-letter lines not kept: the dead-letter files' bound.",
        |b| b.dead_letter_discarded,
    ),
    (
        "sluice_bridge_dropped_oldest",
        "Records discarded by the drop_oldest policy.",
        |b| b.dropped_oldest,
    ),
];

/// Gauge families: name, help, the value of one bridge.
const GAUGES: [(&str, &str, Pick); 3] = [
    (
        "sluice_bridge_buffered_records",
        "Records buffered and not yet acknowledged by the sink.",
        |b| b.buffered_records,
    ),
    (
        "sluice_bridge_buffered_bytes",
        "Bytes of those records.",
        |b| b.buffered_bytes,
    ),
    (
        "sluice_bridge_session_queued",
        "Messages waiting in the bridge's session, not yet buffered.",
        |b| b.session_queued as u64,
    ),
];

impl Snapshot {
    pub(super) fn encode_bridges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.bridges.is_empty() {
            return Ok(());
        }
        let label = |b: &BridgeStatus| vec![("bridge", b.name.clone())];
        for (name, help, pick) in COUNTERS {
            let v: Vec<_> = self
                .bridges
                .iter()
                .map(|b| (label(b), counter(pick(b))))
                .collect();
            family(e, name, help, MetricType::Counter, &v)?;
        }
        for (name, help, pick) in GAUGES {
            let v: Vec<_> = self
                .bridges
                .iter()
                .map(|b| (label(b), gauge(pick(b))))
                .collect();
            family(e, name, help, MetricType::Gauge, &v)?;
        }
        let age: Vec<_> = self
            .bridges
            .iter()
            .map(|b| (label(b), fgauge(b.oldest_undelivered_ms as f64 / 1000.0)))
            .collect();
        family(
            e,
            "sluice_bridge_oldest_undelivered_seconds",
            "Age of the oldest record not yet delivered (0 when none).",
            MetricType::Gauge,
            &age,
        )?;
        let up: Vec<_> = self
            .bridges
            .iter()
            .map(|b| {
                (
                    vec![("bridge", b.name.clone()), ("state", b.state.to_owned())],
                    gauge(1),
                )
            })
            .collect();
        family(
            e,
            "sluice_bridge_state",
            "1 for the bridge's current state (running, paused, failing, failed).",
            MetricType::Gauge,
            &up,
        )?;
        self.encode_bridge_links(e)?;
        self.encode_bridge_kafka(e)
    }

    /// The links of MQTT bridges to their remote brokers.
    fn encode_bridge_links(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let links: Vec<_> = self
            .bridges
            .iter()
            .filter_map(|b| Some((vec![("bridge", b.name.clone())], b.link.as_ref()?)))
            .collect();
        if links.is_empty() {
            return Ok(());
        }
        let connected: Vec<_> = links
            .iter()
            .map(|(l, r)| (l.clone(), gauge(u64::from(r.connected))))
            .collect();
        family(
            e,
            "sluice_bridge_link_connected",
            "MQTT bridges: 1 while connected to the remote broker.",
            MetricType::Gauge,
            &connected,
        )?;
        let connects: Vec<_> = links
            .iter()
            .map(|(l, r)| (l.clone(), counter(r.connects)))
            .collect();
        family(
            e,
            "sluice_bridge_link_connects",
            "MQTT bridges: connections made to the remote broker (1 + reconnects).",
            MetricType::Counter,
            &connects,
        )?;
        Ok(())
    }
}
