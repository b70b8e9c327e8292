//! `/metrics`: the Prometheus (OpenMetrics text) exposition. Every value is
//! read at scrape time from counters the broker keeps anyway; a fresh
//! registry per scrape (no global one) keeps tests isolated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::bridge::{BridgeStatus, Bridges};
use crate::broker::{Broker, SessionTotals};
use crate::ops::process::ProcessStats;
use crate::server::ListenerCtx;

/// Per-listener numbers.
#[derive(Debug)]
struct ListenerSnapshot {
    name: String,
    current: u64,
    total: u64,
}

/// Everything one scrape shows, read once.
#[derive(Debug)]
struct Snapshot {
    uptime: f64,
    received_by_qos: [u64; 3],
    sent_by_qos: [u64; 3],
    bytes_received: u64,
    bytes_sent: u64,
    connected_by_protocol: [u64; 2],
    connected_total_by_protocol: [u64; 2],
    connections_total: u64,
    listeners: Vec<ListenerSnapshot>,
    dropped: Vec<(&'static str, u64)>,
    auth_failures: u64,
    takeover_refused: u64,
    slow_consumers_disconnected: u64,
    /// CONNECTs refused by the login throttle, addresses refused now.
    auth_throttled: (u64, u64),
    retained: u64,
    subscriptions: u64,
    sessions: SessionTotals,
    store_enabled: bool,
    store_disk_bytes: u64,
    store_ops: u64,
    commit: (f64, u64, Vec<(f64, u64)>),
    bridges: Vec<BridgeStatus>,
    process: Option<ProcessStats>,
    budgets: crate::broker::BudgetNumbers,
    limits: [u64; 4],
}

fn load3(a: &[AtomicU64; 3]) -> [u64; 3] {
    [0, 1, 2].map(|i| a[i].load(Ordering::Relaxed))
}

impl Snapshot {
    fn take(broker: &Broker, bridges: &Bridges, listeners: &[Arc<ListenerCtx>]) -> Snapshot {
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

/// Label pairs of one series.
type Labels<'a> = Vec<(&'a str, String)>;

/// Writes one metric family (a name, help, type and its labelled values).
/// A client id as a label value: cut to 64 characters, so a label stays
/// small whatever id a client chose (the protocol allows 65,535 bytes).
fn client_label(id: &str) -> String {
    match id.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &id[..end]),
        None => id.to_owned(),
    }
}

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: &[(Labels, M)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, metric_type)?;
    if let [(labels, value)] = values {
        if labels.is_empty() {
            return value.encode(m);
        }
    }
    for (labels, value) in values {
        let owned: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        value.encode(m.encode_family(&owned)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

fn fgauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

const QOS: [&str; 3] = ["0", "1", "2"];
const PROTOCOL: [&str; 2] = ["3.1.1", "5.0"];

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let by_qos = |a: &[u64; 3]| -> Vec<(Labels, ConstCounter<u64>)> {
            (0..3)
                .map(|i| (vec![("qos", QOS[i].to_owned())], counter(a[i])))
                .collect()
        };
        family(
            &mut e,
            "sluice_uptime_seconds",
            "Seconds since the broker started.",
            Gauge,
            &[(vec![], fgauge(self.uptime))],
        )?;
        family(
            &mut e,
            "sluice_build_info",
            "The running version.",
            Gauge,
            &[(
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                gauge(1),
            )],
        )?;
        family(
            &mut e,
            "sluice_messages_received",
            "PUBLISH packets received from clients, by QoS.",
            Counter,
            &by_qos(&self.received_by_qos),
        )?;
        family(
            &mut e,
            "sluice_messages_sent",
            "PUBLISH packets sent to clients, by QoS.",
            Counter,
            &by_qos(&self.sent_by_qos),
        )?;
        family(
            &mut e,
            "sluice_bytes_received",
            "Bytes read from clients.",
            Counter,
            &[(vec![], counter(self.bytes_received))],
        )?;
        family(
            &mut e,
            "sluice_bytes_sent",
            "Bytes written to clients.",
            Counter,
            &[(vec![], counter(self.bytes_sent))],
        )?;
        let connected: Vec<_> = (0..2)
            .map(|i| {
                (
                    vec![("protocol", PROTOCOL[i].to_owned())],
                    gauge(self.connected_by_protocol[i]),
                )
            })
            .collect();
        family(
            &mut e,
            "sluice_clients_connected",
            "Clients connected now, by protocol version.",
            Gauge,
            &connected,
        )?;
        let totals: Vec<_> = (0..2)
            .map(|i| {
                (
                    vec![("protocol", PROTOCOL[i].to_owned())],
                    counter(self.connected_total_by_protocol[i]),
                )
            })
            .collect();
        family(
            &mut e,
            "sluice_client_connections",
            "Clients accepted (CONNACK sent) since start, by protocol version.",
            Counter,
            &totals,
        )?;
        family(
            &mut e,
            "sluice_connections_accepted",
            "TCP connections accepted since start, all listeners.",
            Counter,
            &[(vec![], counter(self.connections_total))],
        )?;
        let current: Vec<_> = self
            .listeners
            .iter()
            .map(|l| (vec![("listener", l.name.clone())], gauge(l.current)))
            .collect();
        family(
            &mut e,
            "sluice_listener_connections",
            "Open connections per listener.",
            Gauge,
            &current,
        )?;
        let total: Vec<_> = self
            .listeners
            .iter()
            .map(|l| (vec![("listener", l.name.clone())], counter(l.total)))
            .collect();
        family(
            &mut e,
            "sluice_listener_accepted",
            "Connections accepted per listener since start.",
            Counter,
            &total,
        )?;
        let dropped: Vec<_> = self
            .dropped
            .iter()
            .map(|(r, v)| (vec![("reason", (*r).to_owned())], counter(*v)))
            .collect();
        family(
            &mut e,
            "sluice_messages_dropped",
            "Messages not delivered or not accepted, by reason.",
            Counter,
            &dropped,
        )?;
        let b = &self.budgets;
        let used = [
            b.opening_bytes,
            b.retained_bytes,
            b.queued_bytes,
            b.sessions,
        ];
        let budget = |values: [u64; 4]| -> Vec<(Labels, ConstGauge<i64>)> {
            [
                "opening_bytes",
                "retained_bytes",
                "queued_bytes",
                "sessions",
            ]
            .iter()
            .zip(values)
            .map(|(name, v)| (vec![("budget", (*name).to_owned())], gauge(v)))
            .collect()
        };
        family(
            &mut e,
            "sluice_budget_used",
            "Global budgets in use: bytes opening connections buffer, retained bytes, bytes queued across sessions, sessions.",
            Gauge,
            &budget(used.map(|v| v as u64)),
        )?;
        family(
            &mut e,
            "sluice_budget_limit",
            "The configured global budgets (limits.max_opening_bytes, max_retained_bytes, max_total_queued_bytes, max_sessions).",
            Gauge,
            &budget(self.limits),
        )?;
        let refusals: Vec<_> = [
            ("connect_too_large", b.refused_connect_too_large),
            ("opening_wait", b.opening_waits),
            ("retained", b.refused_retained),
            ("sessions", b.refused_sessions),
            ("queued_bytes", b.refused_queued_bytes),
        ]
        .iter()
        .map(|(r, v)| (vec![("reason", (*r).to_owned())], counter(*v)))
        .collect();
        family(
            &mut e,
            "sluice_limit_refusals",
            "Refusals by global limits, by reason: CONNECTs over max_connect_packet_size, opening reads that waited for max_opening_bytes, retained PUBLISHes over max_retained_bytes, new sessions over max_sessions, deliveries over max_total_queued_bytes (also in messages_dropped{reason=\"queue_full\"}).",
            Counter,
            &refusals,
        )?;
        family(
            &mut e,
            "sluice_auth_failures",
            "CONNECTs refused for bad credentials or not authorized.",
            Counter,
            &[(vec![], counter(self.auth_failures))],
        )?;
        family(
            &mut e,
            "sluice_takeover_refused",
            "CONNECTs refused because their client id belongs to another identity's session.",
            Counter,
            &[(vec![], counter(self.takeover_refused))],
        )?;
        family(
            &mut e,
            "sluice_slow_consumers_disconnected",
            "Connections closed because the client stopped reading (limits.write_timeout_secs).",
            Counter,
            &[(vec![], counter(self.slow_consumers_disconnected))],
        )?;
        family(
            &mut e,
            "sluice_auth_throttled",
            "CONNECTs refused because their address had too many failed logins.",
            Counter,
            &[(vec![], counter(self.auth_throttled.0))],
        )?;
        family(
            &mut e,
            "sluice_auth_throttled_addresses",
            "Addresses whose password logins are refused right now.",
            Gauge,
            &[(vec![], gauge(self.auth_throttled.1))],
        )?;
        family(
            &mut e,
            "sluice_retained_messages",
            "Retained messages held.",
            Gauge,
            &[(vec![], gauge(self.retained))],
        )?;
        family(
            &mut e,
            "sluice_subscriptions",
            "Subscriptions in the topic tree.",
            Gauge,
            &[(vec![], gauge(self.subscriptions))],
        )?;
        family(
            &mut e,
            "sluice_sessions",
            "Sessions, by whether a client is connected.",
            Gauge,
            &[
                (
                    vec![("state", "online".to_owned())],
                    gauge(self.sessions.online),
                ),
                (
                    vec![("state", "offline".to_owned())],
                    gauge(self.sessions.offline),
                ),
            ],
        )?;
        family(
            &mut e,
            "sluice_queued_messages",
            "Messages waiting in session queues.",
            Gauge,
            &[(vec![], gauge(self.sessions.queued))],
        )?;
        family(
            &mut e,
            "sluice_inflight_messages",
            "QoS 1/2 messages sent and not yet acknowledged.",
            Gauge,
            &[(vec![], gauge(self.sessions.inflight))],
        )?;
        family(
            &mut e,
            "sluice_sessions_pushing_back",
            "Sessions whose full queue holds publishers back (push_back policy).",
            Gauge,
            &[(vec![], gauge(self.sessions.pushing_back))],
        )?;
        let top: Vec<(Labels, _)> = self
            .sessions
            .top_dropping
            .iter()
            .map(|(id, n)| (vec![("client_id", client_label(id))], gauge(*n)))
            .collect();
        family(
            &mut e,
            "sluice_session_messages_dropped",
            "Messages lost to a full queue since the session began, for the sessions that lost the most (at most 10).",
            Gauge,
            &top,
        )?;
        if self.store_enabled {
            family(
                &mut e,
                "sluice_store_disk_bytes",
                "Size of the data directory's store on disk.",
                Gauge,
                &[(vec![], gauge(self.store_disk_bytes))],
            )?;
            family(
                &mut e,
                "sluice_store_ops",
                "Store operations committed.",
                Counter,
                &[(vec![], counter(self.store_ops))],
            )?;
            let (sum, count, buckets) = &self.commit;
            let m = e.encode_descriptor(
                "sluice_store_commit_seconds",
                "Time to write and sync one commit group.",
                None,
                MetricType::Histogram,
            )?;
            let mut m = m;
            m.encode_histogram::<Vec<(String, String)>>(*sum, *count, buckets, None)?;
        }
        self.encode_bridges(&mut e)?;
        if let Some(p) = &self.process {
            family(
                &mut e,
                "process_cpu_seconds",
                "User and system CPU time of the broker process.",
                Counter,
                &[(vec![], ConstCounter::new(p.cpu_seconds))],
            )?;
            family(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory.",
                Gauge,
                &[(vec![], gauge(p.resident_bytes))],
            )?;
            family(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory.",
                Gauge,
                &[(vec![], gauge(p.virtual_bytes))],
            )?;
            family(
                &mut e,
                "process_open_fds",
                "Open file descriptors.",
                Gauge,
                &[(vec![], gauge(p.open_fds))],
            )?;
            if let Some(max) = p.max_fds {
                family(
                    &mut e,
                    "process_max_fds",
                    "File descriptor limit.",
                    Gauge,
                    &[(vec![], gauge(max))],
                )?;
            }
            family(
                &mut e,
                "process_threads",
                "Threads of the broker process.",
                Gauge,
                &[(vec![], gauge(p.threads))],
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn encode_bridges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.bridges.is_empty() {
            return Ok(());
        }
        let label = |b: &BridgeStatus| vec![("bridge", b.name.clone())];
        type Pick = fn(&BridgeStatus) -> u64;
        let counters: [(&str, &str, Pick); 8] = [
            (
                "sluice_bridge_received",
                "Messages taken in from the bridge's session.",
                |b| b.received,
            ),
            (
                "sluice_bridge_transformed",
                "Records the transform produced.",
                |b| b.transformed,
            ),
            (
                "sluice_bridge_dropped_by_transform",
                "Messages the transform dropped (no output).",
                |b| b.dropped_by_transform,
            ),
            (
                "sluice_bridge_delivered",
                "Records the sink acknowledged.",
                |b| b.delivered,
            ),
            (
                "sluice_bridge_retried",
                "Batches resent after a retryable sink error.",
                |b| b.retried,
            ),
            (
                "sluice_bridge_dead_lettered",
                "Records written to the dead-letter file.",
                |b| b.dead_lettered,
            ),
            (
                "sluice_bridge_dead_letter_discarded",
                "Dead-letter lines not kept: the dead-letter files' bound.",
                |b| b.dead_letter_discarded,
            ),
            (
                "sluice_bridge_dropped_oldest",
                "Records discarded by the drop_oldest policy.",
                |b| b.dropped_oldest,
            ),
        ];
        for (name, help, pick) in counters {
            let v: Vec<_> = self
                .bridges
                .iter()
                .map(|b| (label(b), counter(pick(b))))
                .collect();
            family(e, name, help, MetricType::Counter, &v)?;
        }
        let gauges: [(&str, &str, Pick); 3] = [
            (
                "sluice_bridge_buffered_records",
                "Records buffered and not yet acknowledged by the sink.",
                |b| b.buffered_records,
            ),
            (
                "sluice_bridge_buffered_bytes",
                "Bytes of those records.",
                |b| b.buffered_bytes,
            ),
            (
                "sluice_bridge_session_queued",
                "Messages waiting in the bridge's session, not yet buffered.",
                |b| b.session_queued as u64,
            ),
        ];
        for (name, help, pick) in gauges {
            let v: Vec<_> = self
                .bridges
                .iter()
                .map(|b| (label(b), gauge(pick(b))))
                .collect();
            family(e, name, help, MetricType::Gauge, &v)?;
        }
        let age: Vec<_> = self
            .bridges
            .iter()
            .map(|b| (label(b), fgauge(b.oldest_undelivered_ms as f64 / 1000.0)))
            .collect();
        family(
            e,
            "sluice_bridge_oldest_undelivered_seconds",
            "Age of the oldest record not yet delivered (0 when none).",
            MetricType::Gauge,
            &age,
        )?;
        let up: Vec<_> = self
            .bridges
            .iter()
            .map(|b| {
                (
                    vec![("bridge", b.name.clone()), ("state", b.state.to_owned())],
                    gauge(1),
                )
            })
            .collect();
        family(
            e,
            "sluice_bridge_state",
            "1 for the bridge's current state (running, paused, failing, failed).",
            MetricType::Gauge,
            &up,
        )?;
        Ok(())
    }
}

/// The whole exposition text.
pub fn render_metrics(
    broker: &Arc<Broker>,
    bridges: &Bridges,
    listeners: &[Arc<ListenerCtx>],
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::take(broker, bridges, listeners)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
