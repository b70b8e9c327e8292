//! The record of each persistent session's QoS 2 flows
//! (`<prefix>_flows`, one key per session, replicated like the stream), so
//! the node that resumes a session continues them under their packet ids
//! ([`crate::session::Flows`]): exactly once survives a client moving to
//! another node and a node's death.
//!
//! The node holding the session writes the whole record whenever a flow
//! starts, is released or an incoming id comes or goes, before the client
//! sees the packet that follows (the connection's output waits), and after
//! what that output waited for already: an incoming id is recorded only
//! once its message is in the stream, so a resuming node that takes a
//! publisher's repeat for one it has is never wrong (a death in between
//! routes the repeat again: a duplicate, never a loss). Writes of
//! one session go in order, one at a time; changes that come meanwhile
//! are written together as the latest record (they are snapshots, so the
//! newest holds every earlier change). A write that fails or does not
//! finish within [`WRITE_WITHIN`] closes the connection: the client comes
//! back and the flow resumes from the last record written.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::digest::short_hash;
use crate::session::Flows;

/// Bound on one write of a record.
const WRITE_WITHIN: Duration = Duration::from_secs(10);

/// A record as stored: the flows and the node that wrote them.
#[derive(Serialize, Deserialize)]
struct Record {
    node: String,
    #[serde(flatten)]
    flows: Flows,
}

/// Records waiting to be written for one session.
#[derive(Default)]
struct Pending {
    latest: Option<Flows>,
    waiters: Vec<oneshot::Sender<()>>,
    /// What must be confirmed before the record is written.
    after: Vec<oneshot::Receiver<()>>,
}

/// The flows records of this node's sessions.
#[derive(Default)]
pub struct FlowRecords {
    /// This node's name, written into each record.
    node: String,
    /// Set once the bucket exists; before, there is nothing to keep the
    /// records in (and no session to resume elsewhere): writes succeed.
    pub bucket: OnceLock<kv::Store>,
    /// By key, while a write of that key is under way.
    pending: Mutex<HashMap<String, Pending>>,
}

impl FlowRecords {
    pub fn new(node: &str) -> FlowRecords {
        FlowRecords {
            node: node.to_owned(),
            ..Default::default()
        }
    }

    /// Writes `flows` as `client_id`'s record once every signal of `after`
    /// came; the returned signal comes once it is stored (dropped unsent
    /// if it could not be, or one of `after` was dropped).
    pub fn save(
        self: &Arc<Self>,
        client_id: &str,
        flows: Flows,
        after: Vec<oneshot::Receiver<()>>,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let key = short_hash(client_id);
        let start = {
            let mut pending = self.pending.lock();
            let start = !pending.contains_key(&key);
            let p = pending.entry(key.clone()).or_default();
            p.latest = Some(flows);
            p.waiters.push(tx);
            p.after.extend(after);
            start
        };
        if start {
            tokio::spawn(Arc::clone(self).write(key));
        }
        rx
    }

    /// Forgets `client_id`'s record (its session ended, or starts anew).
    pub fn clear(self: &Arc<Self>, client_id: &str) {
        drop(self.save(client_id, Flows::default(), Vec::new()));
    }

    /// Writes `key`'s latest record until none waits. Once a record's
    /// `after` went unconfirmed (its message never reached the stream),
    /// no later record of this run is written either: they all still hold
    /// that message's packet id, and a node resuming the session from one
    /// would take the publisher's repeat for a message the stream lacks.
    /// Their connection closes (its waiters get nothing).
    async fn write(self: Arc<Self>, key: String) {
        let mut unconfirmed = false;
        loop {
            let (flows, waiters, after) = {
                let mut pending = self.pending.lock();
                let Some(p) = pending.get_mut(&key) else {
                    return;
                };
                match p.latest.take() {
                    Some(flows) => (
                        flows,
                        std::mem::take(&mut p.waiters),
                        std::mem::take(&mut p.after),
                    ),
                    None => {
                        pending.remove(&key);
                        return;
                    }
                }
            };
            for signal in after {
                if unconfirmed {
                    break;
                }
                unconfirmed |= signal.await.is_err();
            }
            // Unconfirmed, the record stays as it was.
            if !unconfirmed && self.put(&key, &flows).await {
                for w in waiters {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Writes one record, again after a failure (a bucket just made may
    /// not be known to every NATS server yet) until [`WRITE_WITHIN`].
    async fn put(&self, key: &str, flows: &Flows) -> bool {
        let Some(bucket) = self.bucket.get() else {
            return true;
        };
        let record = Record {
            node: self.node.clone(),
            flows: flows.clone(),
        };
        let value = match serde_json::to_vec(&record) {
            Ok(v) => bytes::Bytes::from(v),
            Err(_) => return false,
        };
        let deadline = tokio::time::Instant::now() + WRITE_WITHIN;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = async {
                if flows.is_empty() {
                    bucket.delete(key).await.map_err(|e| e.to_string())
                } else {
                    bucket
                        .put(key, value.clone())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            };
            let error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => e,
                Err(_) => "timed out".to_owned(),
            };
            if tokio::time::Instant::now() + pause >= deadline {
                tracing::warn!(error = %error, "cluster: a session's QoS 2 flows were not recorded");
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// `client_id`'s record as `holder` (the node that held the session)
    /// wrote it; none when no flow is under way, or when the record is
    /// another node's (a late write of a node the session had left).
    pub async fn fetch(&self, client_id: &str, holder: &str) -> Result<Flows, async_nats::Error> {
        let Some(bucket) = self.bucket.get() else {
            return Ok(Flows::default());
        };
        let value = bucket.get(short_hash(client_id)).await?;
        let record = value.and_then(|v| serde_json::from_slice::<Record>(&v).ok());
        Ok(match record {
            Some(r) if r.node == holder => r.flows,
            Some(r) => {
                tracing::debug!(client_id, writer = %r.node, holder, "cluster: flows record of a node the session had left, ignored");
                Flows::default()
            }
            None => Flows::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_incoming(id: u16) -> Flows {
        Flows {
            outgoing: Vec::new(),
            incoming: vec![id],
        }
    }

    #[tokio::test]
    async fn after_a_message_missed_the_stream_no_later_record_is_written() {
        // No bucket: a record that gets to be written is confirmed at once.
        let records = Arc::new(FlowRecords::new("node0"));
        let (stored, stored_rx) = oneshot::channel::<()>();
        let first = records.save("c", with_incoming(7), vec![stored_rx]);
        tokio::task::yield_now().await;
        // Written after the first: it still holds id 7.
        let second = records.save("c", with_incoming(7), Vec::new());
        drop(stored);
        assert!(
            first.await.is_err(),
            "id 7's message never reached the stream"
        );
        assert!(
            second.await.is_err(),
            "a later record holding id 7 was written"
        );
        // The next run of writes starts clean.
        tokio::task::yield_now().await;
        let third = records.save("c", Flows::default(), Vec::new());
        assert!(third.await.is_ok());
    }

    #[tokio::test]
    async fn records_wait_for_what_they_follow() {
        let records = Arc::new(FlowRecords::new("node0"));
        let (stored, stored_rx) = oneshot::channel::<()>();
        let mut written = records.save("c", with_incoming(7), vec![stored_rx]);
        tokio::task::yield_now().await;
        assert!(
            written.try_recv().is_err(),
            "written before the message was stored"
        );
        stored.send(()).unwrap();
        assert!(written.await.is_ok());
    }
}
