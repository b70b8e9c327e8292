//! The broker's families: traffic, connections, limits and refusals,
//! sessions and subscriptions, the store.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::family::{client_label, counter, family, fgauge, gauge, Labels, PROTOCOL, QOS};
use super::snapshot::Snapshot;

impl Snapshot {
    /// Uptime, version, messages and bytes in and out.
    pub(super) fn encode_traffic(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let by_qos = |a: &[u64; 3]| -> Vec<(Labels, ConstCounter<u64>)> {
            (0..3)
                .map(|i| (vec![("qos", QOS[i].to_owned())], counter(a[i])))
                .collect()
        };
        family(
            e,
            "sluice_uptime_seconds",
            "Seconds since the broker started.",
            Gauge,
            &[(vec![], fgauge(self.uptime))],
        )?;
        family(
            e,
            "sluice_build_info",
            "The running version.",
            Gauge,
            &[(
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                gauge(1),
            )],
        )?;
        family(
            e,
            "sluice_messages_received",
            "PUBLISH packets received from clients, by QoS.",
            Counter,
            &by_qos(&self.received_by_qos),
        )?;
        family(
            e,
            "sluice_messages_sent",
            "PUBLISH packets sent to clients, by QoS.",
            Counter,
            &by_qos(&self.sent_by_qos),
        )?;
        family(
            e,
            "sluice_bytes_received",
            "Bytes read from clients.",
            Counter,
            &[(vec![], counter(self.bytes_received))],
        )?;
        family(
            e,
            "sluice_bytes_sent",
            "Bytes written to clients.",
            Counter,
            &[(vec![], counter(self.bytes_sent))],
        )?;
        Ok(())
    }

    /// Clients and connections, per protocol and per listener.
    pub(super) fn encode_connections(
        &self,
        e: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let connected: Vec<_> = (0..2)
            .map(|i| {
                (
                    vec![("protocol", PROTOCOL[i].to_owned())],
                    gauge(self.connected_by_protocol[i]),
                )
            })
            .collect();
        family(
            e,
            "sluice_clients_connected",
            "Clients connected now, by protocol version.",
            Gauge,
            &connected,
        )?;
        family(
            e,
            "sluice_connections_parked",
            "Idle connections parked in the idle table now (records, not tasks).",
            Gauge,
            &[(vec![], gauge(self.connections_parked))],
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
            e,
            "sluice_client_connections",
            "Clients accepted (CONNACK sent) since start, by protocol version.",
            Counter,
            &totals,
        )?;
        family(
            e,
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
            e,
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
            e,
            "sluice_listener_accepted",
            "Connections accepted per listener since start.",
            Counter,
            &total,
        )?;
        Ok(())
    }

    /// Dropped messages and the global budgets: in use, configured, refusals.
    pub(super) fn encode_limits(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let dropped: Vec<_> = self
            .dropped
            .iter()
            .map(|(r, v)| (vec![("reason", (*r).to_owned())], counter(*v)))
            .collect();
        family(
            e,
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
            e,
            "sluice_budget_used",
            "Global budgets in use: bytes opening connections buffer, retained bytes, bytes queued across sessions, sessions.",
            Gauge,
            &budget(used.map(|v| v as u64)),
        )?;
        family(
            e,
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
            e,
            "sluice_limit_refusals",
            "Refusals by global limits, by reason: CONNECTs over max_connect_packet_size, opening reads that waited for max_opening_bytes, retained PUBLISHes over max_retained_bytes, new sessions over max_sessions, deliveries over max_total_queued_bytes (also in messages_dropped{reason=\"queue_full\"}).",
            Counter,
            &refusals,
        )?;
        Ok(())
    }

    /// Logins and connections refused or closed.
    pub(super) fn encode_refusals(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        family(
            e,
            "sluice_auth_failures",
            "CONNECTs refused for bad credentials or not authorized.",
            Counter,
            &[(vec![], counter(self.auth_failures))],
        )?;
        family(
            e,
            "sluice_takeover_refused",
            "CONNECTs refused because their client id belongs to another identity's session.",
            Counter,
            &[(vec![], counter(self.takeover_refused))],
        )?;
        family(
            e,
            "sluice_slow_consumers_disconnected",
            "Connections closed because the client stopped reading (limits.write_timeout_secs).",
            Counter,
            &[(vec![], counter(self.slow_consumers_disconnected))],
        )?;
        family(
            e,
            "sluice_auth_throttled",
            "CONNECTs refused because their address had too many failed logins.",
            Counter,
            &[(vec![], counter(self.auth_throttled.0))],
        )?;
        family(
            e,
            "sluice_auth_throttled_addresses",
            "Addresses whose password logins are refused right now.",
            Gauge,
            &[(vec![], gauge(self.auth_throttled.1))],
        )?;
        Ok(())
    }

    /// What the broker holds: retained messages, subscriptions, sessions and their queues.
    pub(super) fn encode_state(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::Gauge;
        family(
            e,
            "sluice_retained_messages",
            "Retained messages held.",
            Gauge,
            &[(vec![], gauge(self.retained))],
        )?;
        family(
            e,
            "sluice_subscriptions",
            "Subscriptions in the topic tree.",
            Gauge,
            &[(vec![], gauge(self.subscriptions))],
        )?;
        family(
            e,
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
            e,
            "sluice_queued_messages",
            "Messages waiting in session queues.",
            Gauge,
            &[(vec![], gauge(self.sessions.queued))],
        )?;
        family(
            e,
            "sluice_inflight_messages",
            "QoS 1/2 messages sent and not yet acknowledged.",
            Gauge,
            &[(vec![], gauge(self.sessions.inflight))],
        )?;
        family(
            e,
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
            e,
            "sluice_session_messages_dropped",
            "Messages lost to a full queue since the session began, for the sessions that lost the most (at most 10).",
            Gauge,
            &top,
        )?;
        Ok(())
    }

    /// The store's size, operations and commit times (persistence on).
    pub(super) fn encode_store(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        family(
            e,
            "sluice_store_disk_bytes",
            "Size of the data directory's store on disk.",
            Gauge,
            &[(vec![], gauge(self.store_disk_bytes))],
        )?;
        family(
            e,
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
        Ok(())
    }
}
