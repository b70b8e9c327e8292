//! The numbers one scrape shows, read once from the broker, the bridges,
//! the listeners and the process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::bridge::{BridgeStatus, Bridges};
use crate::broker::{Broker, SessionTotals};
use crate::ops::process::ProcessStats;
use crate::server::ListenerCtx;

/// Per-listener numbers.
#[derive(Debug)]
pub(super) struct ListenerSnapshot {
    pub(super) name: String,
    pub(super) current: u64,
    pub(super) total: u64,
}

/// Everything one scrape shows, read once.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) uptime: f64,
    pub(super) received_by_qos: [u64; 3],
    pub(super) sent_by_qos: [u64; 3],
    pub(super) bytes_received: u64,
    pub(super) bytes_sent: u64,
    pub(super) connected_by_protocol: [u64; 2],
    pub(super) connected_total_by_protocol: [u64; 2],
    pub(super) connections_total: u64,
    pub(super) connections_parked: u64,
    pub(super) listeners: Vec<ListenerSnapshot>,
    pub(super) dropped: Vec<(&'static str, u64)>,
    pub(super) auth_failures: u64,
    pub(super) takeover_refused: u64,
    pub(super) slow_consumers_disconnected: u64,
    /// CONNECTs refused by the login throttle, addresses refused now.
    pub(super) auth_throttled: (u64, u64),
    pub(super) retained: u64,
    pub(super) subscriptions: u64,
    pub(super) sessions: SessionTotals,
    pub(super) store_enabled: bool,
    pub(super) store_disk_bytes: u64,
    pub(super) store_ops: u64,
    pub(super) commit: (f64, u64, Vec<(f64, u64)>),
    pub(super) bridges: Vec<BridgeStatus>,
    pub(super) process: Option<ProcessStats>,
    pub(super) budgets: crate::broker::BudgetNumbers,
    pub(super) limits: [u64; 4],
}

fn load3(a: &[AtomicU64; 3]) -> [u64; 3] {
    [0, 1, 2].map(|i| a[i].load(Ordering::Relaxed))
}

impl Snapshot {
    pub(super) fn take(
        broker: &Broker,
        bridges: &Bridges,
        listeners: &[Arc<ListenerCtx>],
    ) -> Snapshot {
        let s = &broker.stats;
        let store = broker.store();
        let commit_stats = store.commit_stats();
        Snapshot {
            uptime: broker.uptime().as_secs_f64(),
            received_by_qos: load3(&s.received_by_qos),
            sent_by_qos: load3(&s.sent_by_qos),
            bytes_received: s.bytes_received.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            connected_by_protocol: [0, 1]
                .map(|i| s.connected_by_protocol[i].load(Ordering::Relaxed) as u64),
            connected_total_by_protocol: [0, 1]
                .map(|i| s.connected_total_by_protocol[i].load(Ordering::Relaxed)),
            connections_total: s.connections_total.load(Ordering::Relaxed),
            connections_parked: s.connections_parked.load(Ordering::Relaxed) as u64,
            listeners: listeners
                .iter()
                .map(|l| ListenerSnapshot {
                    name: format!("{}://{}", l.protocol.name(), l.addr),
                    current: l.connections.load(Ordering::Relaxed) as u64,
                    total: l.accepted_total.load(Ordering::Relaxed),
                })
                .collect(),
            dropped: vec![
                ("queue_full", s.messages_dropped.load(Ordering::Relaxed)),
                ("too_large", s.dropped_too_large.load(Ordering::Relaxed)),
                ("not_authorized", s.publish_denied.load(Ordering::Relaxed)),
                (
                    "quota_exceeded",
                    s.publish_quota_refused.load(Ordering::Relaxed),
                ),
            ],
            auth_failures: s.auth_failures.load(Ordering::Relaxed),
            takeover_refused: s.takeover_refused.load(Ordering::Relaxed),
            slow_consumers_disconnected: s.slow_consumers_disconnected.load(Ordering::Relaxed),
            auth_throttled: (
                broker.login_throttle.refused_total(),
                broker.login_throttle.blocked_addresses() as u64,
            ),
            retained: broker.retained_count() as u64,
            subscriptions: broker.subscription_count() as u64,
            sessions: broker.session_totals(),
            store_enabled: store.is_enabled(),
            store_disk_bytes: store.disk_usage(),
            store_ops: commit_stats.ops.load(Ordering::Relaxed),
            commit: commit_stats.snapshot(),
            bridges: bridges.statuses(),
            process: ProcessStats::read(),
            budgets: broker.budget_numbers(),
            limits: {
                let l = &broker.config.limits;
                [
                    l.max_opening_bytes,
                    l.max_retained_bytes,
                    l.max_total_queued_bytes,
                    l.max_sessions,
                ]
                .map(|v| v as u64)
            },
        }
    }
}
