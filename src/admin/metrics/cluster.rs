//! The cluster families (`sluice_cluster_*`), written only in cluster mode,
//! after every other family.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::family::{counter, family, gauge};
use crate::cluster::{ClusterCounters, ClusterView};

/// One scrape's reading of the node's cluster part.
#[derive(Debug)]
pub(super) struct ClusterSnapshot(pub(super) ClusterView);

impl Collector for ClusterSnapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &self.0;
        let node = || vec![("node", v.node.clone())];
        family(
            &mut e,
            "sluice_cluster_nats_connected",
            "1 while the node is connected to a NATS server.",
            MetricType::Gauge,
            &[(node(), gauge(u64::from(v.nats == "connected")))],
        )?;
        family(
            &mut e,
            "sluice_cluster_ready",
            "1 once the cluster's stream and retained bucket exist.",
            MetricType::Gauge,
            &[(node(), gauge(u64::from(v.ready)))],
        )?;
        let alive = v.nodes.iter().filter(|n| n.alive).count() as u64;
        family(
            &mut e,
            "sluice_cluster_nodes_alive",
            "Nodes whose heartbeat is recent, this one included.",
            MetricType::Gauge,
            &[(node(), gauge(alive))],
        )?;
        family(
            &mut e,
            "sluice_cluster_stream_messages",
            "Messages JetStream keeps for persistent sessions (delivery lag).",
            MetricType::Gauge,
            &[(node(), gauge(v.stream_messages))],
        )?;
        let counters = counter_families(&v.counters);
        for (name, help, value) in counters {
            family(
                &mut e,
                name,
                help,
                MetricType::Counter,
                &[(node(), counter(value))],
            )?;
        }
        Ok(())
    }
}

/// The counter families: name, help, value.
fn counter_families(c: &ClusterCounters) -> Vec<(&'static str, &'static str, u64)> {
    let mut families = message_families(c).to_vec();
    families.extend(session_families(c));
    families
}

/// What crossed nodes.
fn message_families(c: &ClusterCounters) -> [(&'static str, &'static str, u64); 8] {
    [
        (
            "sluice_cluster_published_durable",
            "QoS 1/2 messages JetStream stored for this node's publishers.",
            c.published_durable,
        ),
        (
            "sluice_cluster_published_volatile",
            "QoS 0 messages sent to the other nodes.",
            c.published_volatile,
        ),
        (
            "sluice_cluster_publish_retries",
            "Publishes sent again after NATS or JetStream did not answer.",
            c.publish_retries,
        ),
        (
            "sluice_cluster_received",
            "Messages from other nodes routed to this node's subscribers.",
            c.received,
        ),
        (
            "sluice_cluster_received_shared",
            "Messages NATS gave this node for its shared subscriptions.",
            c.received_shared,
        ),
        (
            "sluice_cluster_duplicates",
            "Copies from other nodes skipped (overlapping subscriptions, resends).",
            c.duplicates,
        ),
        (
            "sluice_cluster_decode_errors",
            "NATS messages and bucket entries that were not a node's.",
            c.decode_errors,
        ),
        (
            "sluice_cluster_retained_applied",
            "Retained-bucket updates applied to this node.",
            c.retained_applied,
        ),
    ]
}

/// Sessions, wills and the nodes' liveness.
fn session_families(c: &ClusterCounters) -> [(&'static str, &'static str, u64); 10] {
    [
        (
            "sluice_cluster_claims_written",
            "Client ids this node's CONNECTs wrote into the session bucket.",
            c.claims_written,
        ),
        (
            "sluice_cluster_claims_unanswered",
            "CONNECTs let in without a claim: the session bucket did not answer in time.",
            c.claims_unanswered,
        ),
        (
            "sluice_cluster_heartbeats",
            "Heartbeats this node wrote for the others to see it alive.",
            c.heartbeats,
        ),
        (
            "sluice_cluster_wills_kept",
            "Wills of this node's connections written where other nodes find them.",
            c.wills_kept,
        ),
        (
            "sluice_cluster_wills_of_dead_nodes",
            "Wills of dead nodes' clients this node published.",
            c.wills_of_dead_nodes,
        ),
        (
            "sluice_cluster_too_large",
            "Messages over the NATS servers' max_payload or with topics too long for a subject, kept on this node.",
            c.too_large,
        ),
        (
            "sluice_cluster_sessions_recorded",
            "Changes of persistent sessions' JetStream consumers made.",
            c.sessions_recorded,
        ),
        (
            "sluice_cluster_sessions_unrecorded",
            "Changes of persistent sessions' JetStream consumers that failed.",
            c.sessions_unrecorded,
        ),
        (
            "sluice_cluster_sessions_resumed",
            "Persistent sessions another node held that resumed on this node.",
            c.sessions_resumed,
        ),
        (
            "sluice_cluster_fed",
            "Messages persistent sessions' consumers gave this node.",
            c.fed,
        ),
    ]
}
