//! Cluster mode on NATS JetStream (issue 23): several nodes, one broker to
//! clients. What this version carries across nodes:
//!
//! - messages: what a node's clients publish reaches the subscribers of
//!   every node (QoS 0, 1 and 2, v5 properties, expiry), through NATS
//!   subjects, so a node only receives what its clients subscribed to
//!   ([`interest`], [`inbound`]); a QoS 1/2 publisher's acknowledgement
//!   waits until JetStream stored the message on a majority of its
//!   replicas ([`link`]);
//! - retained messages, in a replicated key-value bucket every node
//!   mirrors ([`retained`]).
//!
//! - shared subscriptions: NATS queue groups pick one node per message, the
//!   node one of its members;
//! - who holds a client id ([`directory`]): a second connection on another
//!   node takes over (or is refused, for another identity).
//!
//! - wills of a node that dies ([`wills`]): the others publish them.
//! - persistent sessions: each has a JetStream consumer holding its
//!   subscriptions and every QoS 1/2 message for it until its client
//!   acknowledged it ([`consumers`], [`feed`]); the session resumes on
//!   whichever node its client connects to.
//!
//! The cluster is an edge of the broker, a sibling of `server` and
//! `bridge` (docs/ARCHITECTURE.md): it plugs into the broker's router seam
//! and publishes into the broker what other nodes send.

mod connect;
mod consumers;
mod digest;
mod directory;
mod envelope;
mod feed;
mod flows;
mod follow;
mod inbound;
mod interest;
mod link;
mod members;
mod recent;
mod retained;
mod status;
mod streams;
mod subject;
mod wills;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use connect::ConnectError;
pub use interest::{Interest, InterestRouter};
pub use status::{ClusterCounters, ClusterStats};
pub use subject::{SubjectError, SubjectSpace};

use crate::broker::{Broker, Subscription};
use crate::codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use crate::config::{ClusterConfig, SessionTakeover};
use crate::store::now_ms;
use crate::topic::TopicFilter;

/// The session the link drains (under the bridges' reserved prefix, so
/// no client can take it).
pub const LINK_CLIENT_ID: &str = "$bridge/$cluster";

/// A running cluster node: its NATS connection and tasks.
pub struct Cluster {
    status: Arc<ClusterStatus>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the admin API and `/metrics` read of a running cluster node.
pub struct ClusterStatus {
    pub node: String,
    pub stats: Arc<ClusterStats>,
    client: async_nats::Client,
}

/// What the admin API shows of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    pub node: String,
    /// Every node's last heartbeat, this one's included.
    pub nodes: Vec<members::NodeView>,
    /// Messages JetStream still keeps for persistent sessions.
    pub stream_messages: u64,
    /// Persistent sessions with a consumer, cluster-wide.
    pub stream_consumers: u64,
    /// `connected`, `disconnected` or `pending`.
    pub nats: String,
    /// The stream and bucket exist: messages flow between nodes.
    pub ready: bool,
    pub counters: ClusterCounters,
}

impl Cluster {
    /// Connects to NATS and starts the link, the inbound side and the
    /// retained mirror. The stream and bucket are made (or found) in the
    /// background: until NATS answers, local clients are served and QoS
    /// 1/2 publishers wait for their acknowledgement.
    pub async fn start(
        cfg: &ClusterConfig,
        broker: &Arc<Broker>,
        (router, interest): (Arc<InterestRouter>, mpsc::UnboundedReceiver<Interest>),
    ) -> Result<Cluster, ConnectError> {
        let client = connect::connect(cfg, false).await?;
        let shared_client = connect::connect(cfg, true).await?;
        let stats = Arc::new(ClusterStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let space = |kind: &str| {
            SubjectSpace::new(&format!("{}.{kind}", cfg.prefix))
                .map_err(|e| ConnectError::Nats(format!("cluster.prefix: {e}")))
        };
        let (durable, volatile) = (space("m")?, space("v")?);
        // The router has announced every filter since the broker was made
        // (the restored sessions' too): the channel holds them all.
        let inbound = inbound::Inbound {
            client: client.clone(),
            shared_client,
            spaces: [durable.clone(), volatile.clone()],
            prefix: cfg.prefix.clone(),
            node: cfg.node_name.clone(),
            broker: Arc::clone(broker),
            stats: Arc::clone(&stats),
        };
        let link = link::Link {
            slot: open_link_session(broker),
            client: client.clone(),
            js: async_nats::jetstream::new(client.clone()),
            retained: None,
            durable: durable.clone(),
            volatile,
            node: cfg.node_name.clone(),
            incarnation: now_ms(),
            next_id: AtomicU64::new(0),
            stats: Arc::clone(&stats),
        };
        let (directory, will_rx) =
            open_directory(cfg, (broker, router), &client, durable, &stats, &stop_rx);
        let tasks = vec![
            tokio::spawn(inbound::run(inbound, interest, stop_rx.clone())),
            tokio::spawn(run_when_ready(
                link,
                (directory, will_rx),
                streams::Names::new(&cfg.prefix),
                usize::from(cfg.replicas),
                Arc::clone(broker),
                stop_rx,
            )),
        ];
        Ok(Cluster {
            status: Arc::new(ClusterStatus {
                node: cfg.node_name.clone(),
                stats,
                client,
            }),
            stop,
            tasks,
        })
    }

    pub fn status(&self) -> Arc<ClusterStatus> {
        Arc::clone(&self.status)
    }

    /// Stops the tasks and flushes what the client still holds.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let client = &self.status.client;
        let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    }
}

impl ClusterStatus {
    /// Whether the node is connected to a NATS server now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn view(&self) -> ClusterView {
        let nats = match self.client.connection_state() {
            async_nats::connection::State::Connected => "connected",
            async_nats::connection::State::Disconnected => "disconnected",
            async_nats::connection::State::Pending => "pending",
        };
        let survey = self.stats.survey.lock().clone();
        ClusterView {
            node: self.node.clone(),
            nodes: survey.nodes,
            stream_messages: survey.stream_messages,
            stream_consumers: survey.stream_consumers,
            nats: nats.into(),
            ready: self.stats.ready.load(std::sync::atomic::Ordering::Acquire),
            counters: self.stats.snapshot(),
        }
    }
}

/// The session directory (with the persistent sessions' consumers and
/// feeds), installed in the broker, and the wills it reports.
fn open_directory(
    cfg: &ClusterConfig,
    (broker, interest): (&Arc<Broker>, Arc<InterestRouter>),
    client: &async_nats::Client,
    durable: SubjectSpace,
    stats: &Arc<ClusterStats>,
    stop: &watch::Receiver<bool>,
) -> (
    Arc<directory::Directory>,
    mpsc::UnboundedReceiver<wills::WillChange>,
) {
    let consumers = consumers::Consumers::start(
        &cfg.prefix,
        durable,
        (
            Duration::from_secs(u64::from(cfg.redeliver_after_secs)),
            broker.config.limits.max_queued_messages,
        ),
        Arc::clone(stats),
        stop.clone(),
    );
    let feeds = feed::Feeds::start(
        client.clone(),
        Arc::clone(&consumers),
        broker,
        Arc::clone(stats),
        stop.clone(),
    );
    let (will_changes, will_rx) = mpsc::unbounded_channel();
    let directory = Arc::new(directory::Directory {
        node: cfg.node_name.clone(),
        any_identity: broker.config.session_takeover == SessionTakeover::AnyIdentity,
        bucket: std::sync::OnceLock::new(),
        wills: will_changes,
        with_will: Default::default(),
        stats: Arc::clone(stats),
        interest,
        consumers,
        feeds,
        flows: Arc::new(flows::FlowRecords::new(&cfg.node_name)),
    });
    broker.set_directory(Arc::clone(&directory) as Arc<dyn crate::broker::SessionDirectory>);
    (directory, will_rx)
}

/// Once the stream and buckets exist: the link, the retained mirror and
/// the session directory, until `stop`.
async fn run_when_ready(
    mut link: link::Link,
    (directory, will_changes): (
        Arc<directory::Directory>,
        mpsc::UnboundedReceiver<wills::WillChange>,
    ),
    names: streams::Names,
    replicas: usize,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(buckets) = ensure_until_ready(&link.js, &names, replicas, &mut stop).await else {
        return;
    };
    directory.consumers.set_stream(buckets.messages.clone());
    let _ = directory.bucket.set(buckets.sessions.clone());
    let _ = directory.flows.bucket.set(buckets.flows.clone());
    let claims = tokio::spawn(directory::watch_claims(
        buckets.sessions.clone(),
        directory.node.clone(),
        (Arc::clone(&broker), Arc::clone(&directory.feeds)),
        stop.clone(),
    ));
    let kept = tokio::spawn(wills::keep(
        buckets.wills.clone(),
        (directory.node.clone(), link.incarnation),
        Arc::clone(&link.stats),
        will_changes,
        stop.clone(),
    ));
    let surveyed = tokio::spawn(members::watch(
        buckets.nodes.clone(),
        buckets.messages.clone(),
        Arc::clone(&link.stats),
        stop.clone(),
    ));
    let nodes = tokio::spawn(wills::watch_nodes(
        buckets.nodes,
        buckets.wills,
        buckets.sessions.clone(),
        (directory.node.clone(), link.incarnation),
        Arc::clone(&broker),
        Arc::clone(&link.stats),
        stop.clone(),
    ));
    let bucket = buckets.retained;
    link.stats
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(stream = %names.stream, bucket = %names.retained_bucket, replicas, "cluster: stream and retained bucket ready");
    link.retained = Some(bucket.clone());
    let mirror = tokio::spawn(retained::mirror(
        bucket,
        Arc::clone(&broker),
        Arc::clone(&link.stats),
        stop.clone(),
    ));
    link::run(Arc::new(link), broker.store().clone(), stop).await;
    for task in [mirror, claims, kept, nodes, surveyed] {
        task.abort();
    }
}

/// Creates the stream and bucket, retrying while NATS does not answer.
async fn ensure_until_ready(
    js: &async_nats::jetstream::Context,
    names: &streams::Names,
    replicas: usize,
    stop: &mut watch::Receiver<bool>,
) -> Option<streams::Buckets> {
    let mut delay = Duration::from_millis(200);
    loop {
        match streams::ensure(js, names, replicas).await {
            Ok(buckets) => return Some(buckets),
            Err(e) => {
                tracing::warn!(error = %e, "cluster: JetStream not ready, retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The link's session: subscribed to every topic at QoS 1, acknowledged
/// by the link (its publishers wait for JetStream), never dropping a
/// QoS 1/2 message.
fn open_link_session(broker: &Arc<Broker>) -> Arc<crate::broker::SessionSlot> {
    let client_id = ByteString::from_static(LINK_CLIENT_ID);
    let (slot, _) = broker.open_session(&client_id, true);
    {
        let mut c = slot.control.lock();
        c.protocol = Some(ProtocolVersion::V5);
        c.generation += 1;
    }
    slot.set_acl_exempt(true);
    slot.set_persistent(false);
    slot.set_ack_on_sink(true);
    slot.set_bridge(true);
    slot.set_online(true);
    let max_levels = broker.config.limits.max_topic_levels;
    if let Ok(filter) = TopicFilter::parse(ByteString::from_static("#"), max_levels) {
        broker.subscribe(
            &slot,
            Subscription {
                filter,
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
                identifier: None,
            },
            Instant::now(),
        );
    }
    slot
}
