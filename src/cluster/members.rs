//! What the admin API shows of the whole cluster: every node's last
//! heartbeat (with its connection and session counts) and the stream's
//! backlog (messages JetStream still keeps for a persistent session, a
//! measure of delivery lag), read every few seconds.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, stream::Stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::status::ClusterStats;
use crate::store::now_ms;

/// How often the cluster is surveyed.
const EVERY: Duration = Duration::from_secs(2);

/// A node silent this long is shown as not alive (and its wills are
/// published, see `super::wills`).
pub const DEAD_AFTER: Duration = Duration::from_secs(10);

/// A node's last sign of life, in the nodes bucket under its name.
#[derive(Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub at_ms: u64,
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub sessions: u64,
}

/// One node as the last survey found it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub alive: bool,
    pub last_seen_ms: u64,
    pub connections: u64,
    pub sessions: u64,
}

/// The last survey.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Survey {
    pub nodes: Vec<NodeView>,
    /// Messages the stream holds: stored and not yet acknowledged by every
    /// persistent session that wants them.
    pub stream_messages: u64,
    /// Persistent sessions with a consumer, cluster-wide.
    pub stream_consumers: u64,
}

/// Surveys the cluster every [`EVERY`] until `stop`.
pub async fn watch(
    nodes: kv::Store,
    mut stream: Stream,
    stats: Arc<ClusterStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut survey = Survey {
            nodes: read_nodes(&nodes).await,
            ..Survey::default()
        };
        if let Ok(info) = stream.info().await {
            survey.stream_messages = info.state.messages;
            survey.stream_consumers = info.state.consumer_count as u64;
        }
        *stats.survey.lock() = survey;
    }
}

/// Every node's heartbeat, by name.
async fn read_nodes(nodes: &kv::Store) -> Vec<NodeView> {
    let Ok(mut keys) = nodes.keys().await else {
        return Vec::new();
    };
    let now = now_ms();
    let mut found = Vec::new();
    while let Some(Ok(name)) = keys.next().await {
        let Ok(Some(value)) = nodes.get(name.as_str()).await else {
            continue;
        };
        let Ok(beat) = serde_json::from_slice::<Heartbeat>(&value) else {
            continue;
        };
        found.push(NodeView {
            alive: now.saturating_sub(beat.at_ms) <= DEAD_AFTER.as_millis() as u64,
            name,
            last_seen_ms: beat.at_ms,
            connections: beat.connections,
            sessions: beat.sessions,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}
