//! The broker's counters and the per-session totals scrapes read: plain
//! numbers, no routing or session logic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytestring::ByteString;

use super::SessionSlot;

/// Counters for logs, `$SYS` and the metrics endpoint. Plain relaxed
/// atomics: connections add their counts once per read or write batch.
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries dropped because a session's queue was full.
    pub messages_dropped: AtomicU64,
    pub connections_total: AtomicU64,
    /// PUBLISH packets received, by QoS.
    pub received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent, by QoS.
    pub sent_by_qos: [AtomicU64; 3],
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// CONNECTs refused for bad credentials or not authorized.
    pub auth_failures: AtomicU64,
    /// CONNECTs refused because their client id belongs to a session of
    /// another identity.
    pub takeover_refused: AtomicU64,
    /// Connections closed because the client stopped reading (a write made
    /// no progress within `limits.write_timeout_secs`).
    pub slow_consumers_disconnected: AtomicU64,
    /// PUBLISHes refused by the ACL.
    pub publish_denied: AtomicU64,
    /// QoS 1/2 PUBLISHes answered 0x97 because a bridge was full.
    pub publish_quota_refused: AtomicU64,
    /// Messages not sent because they exceed the client's maximum packet
    /// size.
    pub dropped_too_large: AtomicU64,
    /// Connected clients by protocol: [3.1.1, 5.0].
    pub connected_by_protocol: [AtomicUsize; 2],
    /// Connections accepted since start by protocol: [3.1.1, 5.0].
    pub connected_total_by_protocol: [AtomicU64; 2],
    /// Most clients connected at once.
    pub max_connected: AtomicUsize,
    /// Connections parked in the idle table now (idle, held as records
    /// rather than tasks).
    pub connections_parked: AtomicUsize,
}

impl Stats {
    pub fn protocol_index(v: crate::codec::ProtocolVersion) -> usize {
        usize::from(v.is_v5())
    }

    pub fn client_connected(&self, v: crate::codec::ProtocolVersion) {
        let i = Stats::protocol_index(v);
        let now = self.connected_by_protocol[i].fetch_add(1, Ordering::Relaxed)
            + 1
            + self.connected_by_protocol[1 - i].load(Ordering::Relaxed);
        self.connected_total_by_protocol[i].fetch_add(1, Ordering::Relaxed);
        self.max_connected.fetch_max(now, Ordering::Relaxed);
    }

    pub fn client_disconnected(&self, v: crate::codec::ProtocolVersion) {
        self.connected_by_protocol[Stats::protocol_index(v)].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn clients_connected(&self) -> usize {
        self.connected_by_protocol
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// What [`super::Broker::session_totals`] counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionTotals {
    pub online: u64,
    pub offline: u64,
    pub queued: u64,
    pub inflight: u64,
    /// Sessions holding publishers back (`push_back` policy).
    pub pushing_back: u64,
    /// The sessions that lost the most messages to full queues, most
    /// first, at most [`TOP_DROPPING_SESSIONS`]: a per-client view of drops
    /// whose size does not grow with the fleet.
    pub top_dropping: Vec<(ByteString, u64)>,
}

/// How many sessions [`SessionTotals::top_dropping`] names.
pub const TOP_DROPPING_SESSIONS: usize = 10;

impl SessionTotals {
    /// Adds one session: online or offline, what it holds, and its drops
    /// if they are among the most.
    pub fn count(&mut self, slot: &SessionSlot) {
        if slot.is_online() {
            self.online += 1;
        } else {
            self.offline += 1;
        }
        self.pushing_back += u64::from(slot.is_pushing_back());
        let state = slot.state.lock();
        self.queued += state.queued_len() as u64;
        self.inflight += state.inflight_len() as u64;
        let dropped = state.dropped;
        drop(state);
        let full = self.top_dropping.len() >= TOP_DROPPING_SESSIONS;
        if dropped > 0 && (!full || self.top_dropping.last().is_some_and(|l| l.1 < dropped)) {
            if full {
                self.top_dropping.pop();
            }
            let at = self.top_dropping.partition_point(|(_, d)| *d >= dropped);
            self.top_dropping
                .insert(at, (slot.client_id.clone(), dropped));
        }
    }
}
