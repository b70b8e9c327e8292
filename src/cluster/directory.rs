//! Client ids across nodes: a JetStream key-value bucket
//! (`<prefix>_sessions`, replicated like the stream) says which node and
//! which identity hold each client id. A CONNECT claims its client id
//! there before the session is taken: refused when another identity's
//! session holds it on another node (unless `session_takeover =
//! "any_identity"`), written otherwise. Every node watches the bucket: a
//! node whose client id another node claimed closes that connection (v5
//! DISCONNECT 0x8E, as a takeover on one node) and ends its session there,
//! so one session per client id exists in the cluster. A persistent
//! session moves with its client: the claiming node reads what the session
//! was from its JetStream consumer ([`super::consumers`]) and resumes it.
//!
//! Availability over strictness: with the bucket unreachable, a claim is
//! granted after [`CLAIM_WITHIN`] and not written.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytestring::ByteString;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::consumers::{record_room, Consumers};
use super::digest::short_hash;
use super::feed::{is_fed, Feeds};
use super::flows::FlowRecords;
use super::status::ClusterStats;
use super::wills::WillChange;
use crate::broker::{Broker, Claim, SessionDirectory, SessionSlot};
use crate::codec::ReasonCode;
use crate::session::machine::{owner_check, OwnerCheck};
use crate::session::{Flows, Message};
use crate::store::now_ms;

/// Bound on a claim's round trips to the bucket.
const CLAIM_WITHIN: Duration = Duration::from_secs(5);

/// How long a node waits for its connection to let go of a session
/// another node claimed before ending it anyway.
const LET_GO_WITHIN: Duration = Duration::from_secs(10);

/// One entry of the bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Holder {
    client_id: String,
    node: String,
    username: Option<String>,
    at_ms: u64,
}

/// The cluster's [`SessionDirectory`].
pub struct Directory {
    pub node: String,
    pub any_identity: bool,
    /// Set once the bucket exists; claims are granted before.
    pub bucket: OnceLock<kv::Store>,
    /// Will changes, to [`super::wills::keep`].
    pub wills: mpsc::UnboundedSender<WillChange>,
    /// Client ids whose will this node put in the wills bucket (only
    /// those need a removal).
    pub with_will: Mutex<HashSet<ByteString>>,
    pub stats: Arc<ClusterStats>,
    /// This node's interest in NATS (a SUBACK waits until it is in effect).
    pub interest: Arc<super::InterestRouter>,
    /// Persistent sessions' consumers, and the feeds reading them.
    pub consumers: Arc<Consumers>,
    pub feeds: Arc<Feeds>,
    /// Persistent sessions' QoS 2 flows.
    pub flows: Arc<FlowRecords>,
}

impl SessionDirectory for Directory {
    fn claim<'a>(
        &'a self,
        client_id: &'a ByteString,
        identity: Option<&'a ByteString>,
        clean_start: bool,
    ) -> Pin<Box<dyn Future<Output = Claim> + Send + 'a>> {
        Box::pin(async move {
            let Some(bucket) = self.bucket.get() else {
                return Claim::Granted;
            };
            let claimed = self.claim_in(bucket, client_id, identity, clean_start);
            match tokio::time::timeout(CLAIM_WITHIN, claimed).await {
                Ok(Ok(claim)) => claim,
                Ok(Err(e)) => {
                    ClusterStats::add(&self.stats.claims_unanswered, 1);
                    tracing::warn!(client_id = %client_id, error = %e, "cluster: client id not claimed in the session bucket; connecting anyway");
                    Claim::Granted
                }
                Err(_) => {
                    ClusterStats::add(&self.stats.claims_unanswered, 1);
                    tracing::warn!(client_id = %client_id, "cluster: session bucket did not answer; connecting anyway");
                    Claim::Granted
                }
            }
        })
    }

    fn will_changed(&self, client_id: &ByteString, will: Option<(Message, u32)>) {
        self.will_change(client_id, will);
    }

    fn session_attached(&self, slot: &Arc<SessionSlot>) {
        self.feeds.ensure(slot);
    }

    /// A persistent session's record goes into its consumer's metadata,
    /// which NATS bounds: past it the consumer could not be changed and
    /// every SUBSCRIBE would end the connection.
    fn subscription_room(&self, slot: &SessionSlot) -> Option<usize> {
        is_fed(slot).then(|| record_room(&slot.record(0)))
    }

    fn subscriptions_changed(&self, slot: &Arc<SessionSlot>) -> Vec<oneshot::Receiver<()>> {
        let mut waits = vec![self.interest.settled()];
        if is_fed(slot) {
            waits.push(self.consumers.save(&slot.client_id, slot.record(0)));
            self.feeds.ensure(slot);
        }
        waits
    }

    fn flows_changed(
        &self,
        slot: &SessionSlot,
        flows: Flows,
        after: Vec<oneshot::Receiver<()>>,
    ) -> Vec<oneshot::Receiver<()>> {
        vec![self.flows.save(&slot.client_id, flows, after)]
    }

    fn session_ended(&self, slot: &SessionSlot) {
        drop(self.consumers.delete(&slot.client_id));
        self.flows.clear(&slot.client_id);
        self.feeds.forget(&slot.client_id);
    }
}

impl Directory {
    fn will_change(&self, client_id: &ByteString, will: Option<(Message, u32)>) {
        let change = match will {
            Some((will, delay_secs)) => {
                self.with_will.lock().insert(client_id.clone());
                WillChange::Set {
                    client_id: client_id.clone(),
                    will: Box::new(will),
                    delay_secs,
                }
            }
            None if self.with_will.lock().remove(client_id) => WillChange::Clear {
                client_id: client_id.clone(),
            },
            None => return,
        };
        let _ = self.wills.send(change);
    }

    async fn claim_in(
        &self,
        bucket: &kv::Store,
        client_id: &ByteString,
        identity: Option<&ByteString>,
        clean_start: bool,
    ) -> Result<Claim, async_nats::Error> {
        let key = short_hash(client_id);
        let held: Option<Holder> = bucket
            .get(key.as_str())
            .await?
            .and_then(|v| serde_json::from_slice(&v).ok());
        if let Some(h) = &held {
            if h.node != self.node {
                let owner = h.username.as_deref().map(ByteString::from);
                let check = owner_check(Some((owner.as_ref(), false)), identity, self.any_identity);
                if check == OwnerCheck::ForeignRefused {
                    return Ok(Claim::Refused);
                }
            }
        }
        let mine = Holder {
            client_id: client_id.to_string(),
            node: self.node.clone(),
            username: identity.map(|u| u.to_string()),
            at_ms: now_ms(),
        };
        let unchanged = held
            .as_ref()
            .is_some_and(|h| h.node == mine.node && h.username == mine.username);
        if !unchanged {
            bucket
                .put(key.as_str(), serde_json::to_vec(&mine)?.into())
                .await?;
            ClusterStats::add(&self.stats.claims_written, 1);
        }
        let elsewhere = held.as_ref().is_some_and(|h| h.node != self.node);
        if clean_start && held.is_some() {
            // The session it may have had anywhere ends here.
            let _ = self.consumers.delete(client_id).await;
        } else if elsewhere {
            if let Some(record) = self.consumers.fetch(client_id).await? {
                let holder = held.as_ref().map_or("", |h| h.node.as_str());
                let flows = self.flows.fetch(client_id, holder).await?;
                ClusterStats::add(&self.stats.sessions_resumed, 1);
                return Ok(Claim::Moved(Box::new((record, flows))));
            }
        }
        if held.is_some() && (clean_start || elsewhere) {
            // A new session: no flow of an earlier one goes on.
            self.flows.clear(client_id);
        }
        Ok(Claim::Granted)
    }
}

/// Follows the bucket until `stop` (its content first, so sessions
/// restored here for client ids another node claimed meanwhile go too): a
/// client id another node claimed leaves this node.
pub async fn watch_claims(
    bucket: kv::Store,
    node: String,
    (broker, feeds): (Arc<Broker>, Arc<Feeds>),
    mut stop: watch::Receiver<bool>,
) {
    super::follow::follow(&bucket, "sessions", &mut stop, |entry| {
        let Ok(holder) = serde_json::from_slice::<Holder>(&entry.value) else {
            return;
        };
        if holder.node != node {
            let (broker, feeds) = (Arc::clone(&broker), Arc::clone(&feeds));
            tokio::spawn(async move { let_go(&broker, &feeds, holder).await });
        }
    })
    .await;
}

/// The node holding `client_id` now, as the bucket says.
pub async fn holder_node(bucket: &kv::Store, client_id: &str) -> Option<String> {
    let value = bucket.get(short_hash(client_id)).await.ok()??;
    serde_json::from_slice::<Holder>(&value)
        .ok()
        .map(|h| h.node)
}

/// Closes this node's connection of a client id another node claimed, and
/// ends its session here.
async fn let_go(broker: &Broker, feeds: &Feeds, holder: Holder) {
    let client_id = ByteString::from(holder.client_id);
    let Some(slot) = broker.find_session(&client_id) else {
        return;
    };
    // A connection made here after the other node's claim is the newer.
    if slot.is_bridge() || slot.control.lock().connected_at_ms > holder.at_ms {
        return;
    }
    tracing::info!(client_id = %client_id, node = %holder.node, "cluster: client id taken over by another node");
    slot.kick(ReasonCode::SessionTakenOver);
    let lock = slot.connection_lock.clone();
    let _ = tokio::time::timeout(LET_GO_WITHIN, lock.lock_owned()).await;
    // What the cluster keeps of it (its consumer) stays for the new node.
    broker.let_go_session(&slot);
    feeds.forget(&client_id);
}
