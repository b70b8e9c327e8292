//! The broker's headline numbers, read once: `$SYS/broker/...` publishes
//! them and `GET /api/v1/broker` returns them, so the two always agree.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::broker::Broker;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokerNumbers {
    pub version: &'static str,
    pub uptime_secs: u64,
    pub clients_connected: usize,
    /// Sessions without a connection.
    pub clients_disconnected: usize,
    pub clients_total: usize,
    /// Most clients connected at once.
    pub clients_maximum: usize,
    /// PUBLISH packets from and to clients.
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Deliveries dropped because a session's queue was full.
    pub messages_dropped: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// TCP connections accepted since start.
    pub connections_total: u64,
    pub subscriptions: usize,
    pub retained: usize,
    pub store_bytes: u64,
    /// Global budgets: what is used and what was refused, by reason.
    pub limits: crate::broker::BudgetNumbers,
}

fn sum(counters: &[AtomicU64]) -> u64 {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

impl BrokerNumbers {
    pub fn read(broker: &Broker) -> BrokerNumbers {
        let s = &broker.stats;
        let connected = s.clients_connected();
        let sessions = broker.session_count();
        BrokerNumbers {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: broker.uptime().as_secs(),
            clients_connected: connected,
            clients_disconnected: sessions.saturating_sub(connected),
            clients_total: sessions.max(connected),
            clients_maximum: s.max_connected.load(Ordering::Relaxed),
            messages_received: sum(&s.received_by_qos),
            messages_sent: sum(&s.sent_by_qos),
            messages_dropped: s.messages_dropped.load(Ordering::Relaxed),
            bytes_received: s.bytes_received.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            connections_total: s.connections_total.load(Ordering::Relaxed),
            subscriptions: broker.subscription_count(),
            retained: broker.retained_count(),
            store_bytes: broker.store().disk_usage(),
            limits: broker.budget_numbers(),
        }
    }
}
