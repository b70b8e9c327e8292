//! Wills that outlive the node holding their connection. While a
//! connection with a will is open, its node keeps the will in the
//! `<prefix>_wills` bucket (key `<node>.<hash of the client id>`), and
//! removes it once the node itself has dealt with it (the connection ended
//! and the will was published, cancelled or handed to the will-delay
//! timer, which it still owns while it runs). Every node writes a
//! heartbeat into `<prefix>_nodes` every [`HEARTBEAT`]; a node silent for
//! [`DEAD_AFTER`] is dead, and the others publish its wills: each will is
//! claimed by deleting it at the revision read (one node wins), after its
//! delay counted from the dead node's last heartbeat, and only while the
//! client has not connected to another node since.
//!
//! The puts and deletes of one node go through one task, in order, so a
//! connection's will and its removal cannot swap places.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytestring::ByteString;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::digest::short_hash;
use super::envelope;
use super::members::{Heartbeat, DEAD_AFTER};
use super::status::ClusterStats;
use crate::broker::Broker;
use crate::session::Message;
use crate::store::now_ms;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A change of one client's will on this node.
#[derive(Debug)]
pub enum WillChange {
    Set {
        client_id: ByteString,
        will: Box<Message>,
        delay_secs: u32,
    },
    Clear {
        client_id: ByteString,
    },
}

/// A will as the bucket keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredWill {
    client_id: String,
    node: String,
    /// When the node that wrote it started (ms since the epoch): a will a
    /// node's earlier run left is its connection's that the restart ended.
    #[serde(default)]
    incarnation: u64,
    delay_secs: u32,
    /// The will message as nodes send messages ([`envelope`]), base64.
    record: String,
}

fn key(node: &str, client_id: &str) -> String {
    format!("{node}.{}", short_hash(client_id))
}

/// Writes this node's will changes in order until `stop`.
pub async fn keep(
    bucket: kv::Store,
    (node, incarnation): (String, u64),
    stats: Arc<ClusterStats>,
    mut changes: mpsc::UnboundedReceiver<WillChange>,
    mut stop: watch::Receiver<bool>,
) {
    use base64::Engine;
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = stop.changed() => return,
        };
        let Some(change) = change else { return };
        let result = match change {
            WillChange::Set {
                client_id,
                will,
                delay_secs,
            } => {
                let record = crate::broker::message_record(&will).encode();
                let stored = StoredWill {
                    client_id: client_id.to_string(),
                    node: node.clone(),
                    incarnation,
                    delay_secs,
                    record: base64::engine::general_purpose::STANDARD.encode(record),
                };
                match serde_json::to_vec(&stored) {
                    Ok(v) => bucket
                        .put(key(&node, &client_id), v.into())
                        .await
                        .map(|_| ClusterStats::add(&stats.wills_kept, 1))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            WillChange::Clear { client_id } => bucket
                .purge(key(&node, &client_id))
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cluster: will not kept in the wills bucket; it is lost if this node dies");
        }
    }
}

/// What a node knows of the others, from watching the two buckets.
#[derive(Default)]
struct Known {
    /// This node's last heartbeat before this run, if it ran before.
    my_last_run: Option<u64>,
    /// The last heartbeat (ms since the epoch) of each node holding a will.
    beats: HashMap<String, u64>,
    /// Every will in the bucket, by key.
    wills: HashMap<String, StoredWill>,
}

/// Says this node is alive every [`HEARTBEAT`] and publishes the wills of
/// nodes that stopped saying so, until `stop`. The wills are followed by a
/// watch (no listing per round); the few nodes holding them are read
/// directly each round.
pub async fn watch_nodes(
    nodes: kv::Store,
    wills: kv::Store,
    sessions: kv::Store,
    (node, incarnation): (String, u64),
    broker: Arc<Broker>,
    stats: Arc<ClusterStats>,
    mut stop: watch::Receiver<bool>,
) {
    let known = Arc::new(Mutex::new(Known {
        // Read before this run's first heartbeat replaces it.
        my_last_run: last_heartbeat(&nodes, &node).await.or(Some(incarnation)),
        ..Known::default()
    }));
    let follower = {
        let (wills, known, mut stop) = (wills.clone(), Arc::clone(&known), stop.clone());
        tokio::spawn(async move {
            super::follow::follow(&wills, "wills", &mut stop, |entry| {
                let will = (entry.operation == kv::Operation::Put)
                    .then(|| serde_json::from_slice::<StoredWill>(&entry.value).ok())
                    .flatten();
                let mut k = known.lock();
                match will {
                    Some(w) => k.wills.insert(entry.key, w),
                    None => k.wills.remove(&entry.key),
                };
            })
            .await
        })
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        beat(&nodes, &node, &broker, &stats).await;
        refresh_beats(&nodes, &known, &node).await;
        let due = due_wills(&known, (&node, incarnation));
        if !due.is_empty() {
            tracing::debug!(wills = due.len(), "cluster: wills of silent nodes due");
        }
        for (key, dead_node, last_seen) in due {
            if publish_if_due(&wills, &sessions, &key, &dead_node, last_seen, &broker).await {
                ClusterStats::add(&stats.wills_of_dead_nodes, 1);
            }
        }
    }
    follower.abort();
}

/// Writes this node's heartbeat, trying again every 200 ms within one
/// [`HEARTBEAT`] (a bucket just made may not take writes at once).
async fn beat(nodes: &kv::Store, node: &str, broker: &Broker, stats: &ClusterStats) {
    let deadline = tokio::time::Instant::now() + HEARTBEAT;
    loop {
        let beat = Heartbeat {
            at_ms: now_ms(),
            connections: broker.connection_count() as u64,
            sessions: broker.session_count() as u64,
        };
        let Ok(v) = serde_json::to_vec(&beat) else {
            return;
        };
        match nodes.put(node, v.into()).await {
            Ok(_) => {
                ClusterStats::add(&stats.heartbeats, 1);
                return;
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(error = %e, "cluster: heartbeat not written");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads the heartbeat of every node that holds a will (a direct read:
/// the watch alone was seen to miss a node's heartbeats under load).
async fn refresh_beats(nodes: &kv::Store, known: &Mutex<Known>, me: &str) {
    let holders: std::collections::BTreeSet<String> = known
        .lock()
        .wills
        .values()
        .filter(|w| w.node != me)
        .map(|w| w.node.clone())
        .collect();
    for holder in holders {
        match nodes.get(holder.as_str()).await {
            Ok(Some(v)) => {
                if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&v) {
                    known.lock().beats.insert(holder, beat.at_ms);
                }
            }
            Ok(None) => {
                tracing::debug!(node = %holder, "cluster: no heartbeat of a node holding wills")
            }
            Err(e) => tracing::debug!(node = %holder, error = %e, "cluster: heartbeat not read"),
        }
    }
}

/// The wills of nodes silent for [`DEAD_AFTER`], and those this node's
/// earlier run left (its restart ended their connections; the local store
/// does not publish them, see `Broker::restore`): (key, node, last seen).
fn due_wills(known: &Mutex<Known>, (me, incarnation): (&str, u64)) -> Vec<(String, String, u64)> {
    let now = now_ms();
    let k = known.lock();
    k.wills
        .iter()
        .filter_map(|(key, w)| {
            if w.node == me {
                let last = k.my_last_run?;
                return (w.incarnation != incarnation).then(|| (key.clone(), w.node.clone(), last));
            }
            let last = *k.beats.get(&w.node)?;
            (now.saturating_sub(last) > DEAD_AFTER.as_millis() as u64)
                .then(|| (key.clone(), w.node.clone(), last))
        })
        .collect()
}

/// `node`'s heartbeat as its last run left it.
async fn last_heartbeat(nodes: &kv::Store, node: &str) -> Option<u64> {
    let value = nodes.get(node).await.ok()??;
    serde_json::from_slice::<Heartbeat>(&value)
        .ok()
        .map(|b| b.at_ms)
}

/// Publishes the will under `key` of the dead node `node` once its delay
/// (from `last_seen`) has passed, if this node wins it and the client has
/// not connected elsewhere since; whether it did.
async fn publish_if_due(
    wills: &kv::Store,
    sessions: &kv::Store,
    key: &str,
    node: &str,
    last_seen: u64,
    broker: &Broker,
) -> bool {
    use base64::Engine;
    let entry = match wills.entry(key).await {
        Ok(Some(entry)) => entry,
        other => {
            tracing::debug!(key, found = ?other.map(|e| e.map(|e| e.operation)), "cluster: will entry not read");
            return false;
        }
    };
    if entry.operation != kv::Operation::Put {
        return false;
    }
    let Ok(will) = serde_json::from_slice::<StoredWill>(&entry.value) else {
        return false;
    };
    if now_ms() < last_seen + u64::from(will.delay_secs) * 1000 {
        return false;
    }
    // One node wins the will: the delete at the revision read.
    if let Err(e) = wills
        .delete_expect_revision(key, Some(entry.revision))
        .await
    {
        tracing::debug!(key, error = %e, "cluster: will of a dead node taken by another node");
        return false;
    }
    // A client that came back elsewhere within the delay keeps its will
    // (3.1.3.2.2); with no delay the will is due whatever happened since.
    let moved = will.delay_secs > 0
        && super::directory::holder_node(sessions, &will.client_id)
            .await
            .is_some_and(|holder| holder != node);
    if moved {
        tracing::info!(client_id = %will.client_id, node, "cluster: will of a dead node not published: the client connected elsewhere");
        return false;
    }
    let Ok(record) = base64::engine::general_purpose::STANDARD.decode(will.record) else {
        return false;
    };
    match envelope::decode_record(&record) {
        Ok(message) => {
            tracing::info!(client_id = %will.client_id, node, topic = %message.topic, "cluster: publishing the will of a client of a dead node");
            broker.publish(message);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cluster: will of a dead node not understood");
            false
        }
    }
}
