//! Retained messages across the cluster: a JetStream key-value bucket holds
//! the last retained message of every topic (replicated like the stream),
//! and every node mirrors the bucket into its own retained store, so a
//! SUBSCRIBE on any node finds every retained message with the single-node
//! lookup (wildcards included) without a round trip.
//!
//! The key is a hash of the topic (NATS keys allow few characters, and a
//! topic may be 64 KiB); the value is the message as nodes send it
//! ([`super::envelope`]), topic included. A clear is stored as a message
//! with an empty payload, as MQTT writes it, so a node that was down when
//! the topic was cleared still learns which topic it was.
//!
//! Eventually consistent: a node applies updates in the bucket's order, a
//! little after the node that took the PUBLISH (which applied it at once).

use async_nats::jetstream::kv;
use tokio::sync::watch;

use super::envelope;
use super::status::ClusterStats;
use crate::broker::Broker;
use std::sync::Arc;

/// The bucket key of `topic`.
pub fn retained_key(topic: &str) -> String {
    super::digest::short_hash(topic)
}

/// Applies the bucket's content, then its changes, to the broker's
/// retained store until `stop`; watches again after an interruption, from
/// the revision it had reached.
pub async fn mirror(
    bucket: kv::Store,
    broker: Arc<Broker>,
    stats: Arc<ClusterStats>,
    mut stop: watch::Receiver<bool>,
) {
    super::follow::follow(&bucket, "retained", &mut stop, |entry| {
        apply(&broker, &stats, entry)
    })
    .await;
}

fn apply(broker: &Broker, stats: &ClusterStats, entry: kv::Entry) {
    if entry.operation != kv::Operation::Put {
        // Purges and deletes are not written by Sluice: nothing names the
        // topic.
        return;
    }
    match envelope::decode_record(&entry.value) {
        Ok(mut message) => {
            message.retain = true;
            ClusterStats::add(&stats.retained_applied, 1);
            broker.mirror_retained(message);
        }
        Err(e) => {
            ClusterStats::add(&stats.decode_errors, 1);
            tracing::warn!(key = %entry.key, error = %e, "cluster: retained entry not understood");
        }
    }
}
