//! Messages from the other nodes, into this node: one NATS subscription
//! per subject of each filter this node's clients hold (QoS 0 and QoS 1/2
//! messages travel under two subject prefixes), all feeding one task that
//! routes each message once to the local subscribers.
//!
//! A shared subscription (`$share/g/f`) is a NATS queue subscription on
//! the second connection (the one NATS echoes this node's own publishes
//! to): NATS hands each message to one node of the group, which gives it
//! to one of its members.
//!
//! A subscription ends when its filter's last local subscriber goes; NATS
//! re-subscribes by itself after a reconnection.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::envelope;
use super::interest::Interest;
use super::recent::RecentIds;
use super::status::ClusterStats;
use super::subject::SubjectSpace;
use crate::broker::Broker;
use crate::topic::TopicFilter;

/// Messages waiting between the subscriptions and the routing task.
const INBOUND_QUEUE: usize = 8192;

/// Longest a SUBACK waits for NATS to have the subscription.
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Ids remembered to skip repeats ([`RecentIds`]).
const RECENT_IDS: usize = 1 << 16;

/// What the inbound side needs.
pub struct Inbound {
    /// The node's main connection (its own publishes not echoed).
    pub client: async_nats::Client,
    /// The shared subscriptions' connection (echoed).
    pub shared_client: async_nats::Client,
    pub spaces: [SubjectSpace; 2],
    pub prefix: String,
    pub node: String,
    pub broker: Arc<Broker>,
    pub stats: Arc<ClusterStats>,
}

/// A message as a subscription forwards it: for a shared subscription,
/// with the subscription it came for.
type Arrival = (Option<Arc<TopicFilter>>, async_nats::Message);

/// Runs until `stop`: follows `interest`, routes what arrives.
pub async fn run(
    inbound: Inbound,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<Arrival>(INBOUND_QUEUE);
    let mut subscriptions: HashMap<(bool, ByteString), Vec<JoinHandle<()>>> = HashMap::new();
    let mut recent = RecentIds::new(RECENT_IDS);
    loop {
        tokio::select! {
            change = interest.recv() => {
                let Some(change) = change else { break };
                follow(&inbound, change, &mut subscriptions, &tx).await;
            }
            Some((share, message)) = rx.recv() => {
                route(&inbound, &mut recent, share.as_deref(), message)
            }
            _ = stop.changed() => break,
        }
    }
    for tasks in subscriptions.into_values() {
        tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Subscribes or unsubscribes as one interest change says.
async fn follow(
    inbound: &Inbound,
    change: Interest,
    subscriptions: &mut HashMap<(bool, ByteString), Vec<JoinHandle<()>>>,
    tx: &mpsc::Sender<Arrival>,
) {
    let (key, add) = match change {
        Interest::Add(f) => ((false, f), true),
        Interest::Remove(f) => ((false, f), false),
        Interest::AddShared(f) => ((true, f), true),
        Interest::RemoveShared(f) => ((true, f), false),
        Interest::Settled(done) => {
            // Bounded: with NATS away the SUBACK goes after the wait.
            let flushed = async {
                let _ = inbound.client.flush().await;
                let _ = inbound.shared_client.flush().await;
            };
            let _ = tokio::time::timeout(SETTLE_WITHIN, flushed).await;
            let _ = done.send(());
            return;
        }
    };
    let tasks = if add {
        subscribe(inbound, &key, tx).await
    } else {
        Vec::new()
    };
    let old = if add {
        subscriptions.insert(key, tasks)
    } else {
        subscriptions.remove(&key)
    };
    old.iter().flatten().for_each(JoinHandle::abort);
}

/// One forwarding task per subject the filter maps to, in both spaces.
async fn subscribe(
    inbound: &Inbound,
    (shared, raw): &(bool, ByteString),
    tx: &mpsc::Sender<Arrival>,
) -> Vec<JoinHandle<()>> {
    let share = if *shared {
        let max_levels = inbound.broker.config.limits.max_topic_levels;
        match TopicFilter::parse(raw.clone(), max_levels) {
            Ok(f) => Some(Arc::new(f)),
            Err(_) => return Vec::new(),
        }
    } else {
        None
    };
    let filter = share.as_ref().map_or(raw.as_ref(), |f| f.filter.as_ref());
    let queue = format!(
        "{}.share.{}",
        inbound.prefix,
        super::digest::short_hash(raw)
    );
    let mut tasks = Vec::new();
    for space in &inbound.spaces {
        for subject in space.filter_subjects(filter) {
            let subscribed = match &share {
                Some(_) => {
                    inbound
                        .shared_client
                        .queue_subscribe(subject.clone(), queue.clone())
                        .await
                }
                None => inbound.client.subscribe(subject.clone()).await,
            };
            match subscribed {
                Ok(mut sub) => {
                    let (tx, share) = (tx.clone(), share.clone());
                    tasks.push(tokio::spawn(async move {
                        while let Some(m) = sub.next().await {
                            if tx.send((share.clone(), m)).await.is_err() {
                                return;
                            }
                        }
                    }));
                }
                Err(e) => {
                    tracing::error!(%subject, error = %e, "cluster: cannot subscribe; messages from other nodes for this filter are missed");
                }
            }
        }
    }
    tasks
}

/// Routes one message from NATS: to this node's subscribers, unless this
/// node sent it (its subscribers had it locally) or it was routed already;
/// for a shared subscription, to one of its members here.
fn route(
    inbound: &Inbound,
    recent: &mut RecentIds,
    share: Option<&TopicFilter>,
    m: async_nats::Message,
) {
    let received = match envelope::decode(m.headers.as_ref(), &m.payload) {
        Ok(r) => r,
        Err(e) => {
            ClusterStats::add(&inbound.stats.decode_errors, 1);
            tracing::debug!(subject = %m.subject, error = %e, "cluster: message not from a node, ignored");
            return;
        }
    };
    let Some(share) = share else {
        if received.origin == inbound.node {
            return;
        }
        if !recent.first(&received.id) {
            ClusterStats::add(&inbound.stats.duplicates, 1);
            return;
        }
        ClusterStats::add(&inbound.stats.received, 1);
        inbound.broker.publish_from_cluster(received.message);
        return;
    };
    if !recent.first(&format!("{}|{}", received.id, share.raw)) {
        ClusterStats::add(&inbound.stats.duplicates, 1);
        return;
    }
    ClusterStats::add(&inbound.stats.received_shared, 1);
    inbound.broker.publish_to_shared(share, received.message);
}
