//! What the cluster part of a node did, for the admin API and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Counters, each only ever increasing.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// QoS 1/2 messages JetStream stored (and so acknowledged).
    pub published_durable: AtomicU64,
    /// QoS 0 messages sent as plain NATS messages.
    pub published_volatile: AtomicU64,
    /// Publishes sent again after NATS or JetStream did not answer.
    pub publish_retries: AtomicU64,
    /// Messages from other nodes routed to this node's subscribers.
    pub received: AtomicU64,
    /// Messages NATS gave this node for its shared subscriptions.
    pub received_shared: AtomicU64,
    /// Copies skipped: a message matching several of this node's
    /// subscriptions, or published again.
    pub duplicates: AtomicU64,
    /// Messages and bucket entries that were not Sluice's.
    pub decode_errors: AtomicU64,
    /// Retained-bucket updates applied to this node's retained store.
    pub retained_applied: AtomicU64,
    /// Messages larger than NATS takes (payload past `max_payload`, or a
    /// topic past [`super::subject::MAX_SUBJECT_BYTES`]), kept on this node.
    pub too_large: AtomicU64,
    /// Client ids this node's CONNECTs wrote into the session bucket.
    pub claims_written: AtomicU64,
    /// CONNECTs let in without a claim: the bucket did not answer in time.
    pub claims_unanswered: AtomicU64,
    /// Wills of this node's connections written to the wills bucket.
    pub wills_kept: AtomicU64,
    /// Heartbeats this node wrote (other nodes publish the wills of a
    /// node whose heartbeats stop).
    pub heartbeats: AtomicU64,
    /// Wills of dead nodes' clients this node published.
    pub wills_of_dead_nodes: AtomicU64,
    /// Changes of persistent sessions' consumers JetStream took.
    pub sessions_recorded: AtomicU64,
    /// Changes of persistent sessions' consumers that failed (a SUBACK
    /// not sent, the connection closed).
    pub sessions_unrecorded: AtomicU64,
    /// Persistent sessions another node held that resumed here.
    pub sessions_resumed: AtomicU64,
    /// Messages persistent sessions' consumers gave this node.
    pub fed: AtomicU64,
    /// The last survey of the cluster's nodes and stream.
    pub survey: parking_lot::Mutex<super::members::Survey>,
    /// The stream and the bucket exist: messages flow.
    pub ready: AtomicBool,
}

impl ClusterStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one event a client can cause at will; whether to log it:
    /// the 1st, 2nd, 4th, 8th… (one client must not be able to flood the
    /// log; the counter has them all).
    pub fn add_one_worth_logging(counter: &AtomicU64) -> bool {
        (counter.fetch_add(1, Ordering::Relaxed) + 1).is_power_of_two()
    }

    pub fn snapshot(&self) -> ClusterCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterCounters {
            published_durable: get(&self.published_durable),
            published_volatile: get(&self.published_volatile),
            publish_retries: get(&self.publish_retries),
            received: get(&self.received),
            received_shared: get(&self.received_shared),
            duplicates: get(&self.duplicates),
            decode_errors: get(&self.decode_errors),
            retained_applied: get(&self.retained_applied),
            too_large: get(&self.too_large),
            claims_written: get(&self.claims_written),
            claims_unanswered: get(&self.claims_unanswered),
            wills_kept: get(&self.wills_kept),
            heartbeats: get(&self.heartbeats),
            wills_of_dead_nodes: get(&self.wills_of_dead_nodes),
            sessions_recorded: get(&self.sessions_recorded),
            sessions_unrecorded: get(&self.sessions_unrecorded),
            sessions_resumed: get(&self.sessions_resumed),
            fed: get(&self.fed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ClusterCounters {
    pub published_durable: u64,
    pub published_volatile: u64,
    pub publish_retries: u64,
    pub received: u64,
    pub received_shared: u64,
    pub duplicates: u64,
    pub decode_errors: u64,
    pub retained_applied: u64,
    pub too_large: u64,
    pub claims_written: u64,
    pub claims_unanswered: u64,
    pub wills_kept: u64,
    pub heartbeats: u64,
    pub wills_of_dead_nodes: u64,
    pub sessions_recorded: u64,
    pub sessions_unrecorded: u64,
    pub sessions_resumed: u64,
    pub fed: u64,
}
