//! The exposition text of a fixed snapshot, compared byte for byte with
//! `exposition.txt`: the families, their order, help texts and labels are
//! what dashboards and alerts are built on.

use prometheus_client::registry::Registry;

use super::snapshot::{ListenerSnapshot, Snapshot};
use crate::bridge::BridgeStatus;
use crate::broker::SessionTotals;
use crate::ops::process::ProcessStats;

fn bridge(name: &str, state: &'static str, base: u64) -> BridgeStatus {
    BridgeStatus {
        name: name.to_owned(),
        sink: "http",
        filters: vec!["a/#".to_owned()],
        state,
        failing_since_ms: None,
        last_error: None,
        received: base + 1,
        transformed: base + 2,
        dropped_by_transform: base + 3,
        delivered: base + 4,
        retried: base + 5,
        dead_lettered: base + 6,
        dead_letter_discarded: base + 7,
        dead_letter_bytes: base + 8,
        dropped_oldest: base + 9,
        buffered_records: base + 10,
        buffered_bytes: base + 11,
        oldest_undelivered_ms: 1500 + base,
        session_queued: 12,
        link: None,
        kafka: None,
    }
}

/// Two partitions, one not yet acknowledged, and errors of both kinds.
fn kafka_report() -> sluice_bridges::kafka::KafkaReport {
    use sluice_bridges::kafka::PartitionReport;
    sluice_bridges::kafka::KafkaReport {
        partitions: vec![
            PartitionReport {
                topic: "telemetry".to_owned(),
                partition: 0,
                delivered: 60,
                acked_offset: Some(1041),
                queued: 3,
                in_flight: 2,
                delivery_latency_ms: Some(250),
                last_ack_ms: Some(1_700_000_000_500),
            },
            PartitionReport {
                topic: "telemetry".to_owned(),
                partition: 1,
                queued: 7,
                ..PartitionReport::default()
            },
        ],
        untracked_delivered: 4,
        producer_queued: 12,
        record_errors: [("MESSAGE_TIMED_OUT".to_owned(), 5)].into(),
        client_errors: [
            ("ALL_BROKERS_DOWN".to_owned(), 1),
            ("BROKER_TRANSPORT_FAILURE".to_owned(), 2),
        ]
        .into(),
    }
}

fn snapshot(store_enabled: bool, process: Option<ProcessStats>) -> Snapshot {
    Snapshot {
        uptime: 12.5,
        received_by_qos: [1, 2, 3],
        sent_by_qos: [4, 5, 6],
        bytes_received: 700,
        bytes_sent: 800,
        connected_by_protocol: [9, 10],
        connected_total_by_protocol: [11, 12],
        connections_total: 13,
        connections_parked: 8,
        listeners: vec![
            ListenerSnapshot {
                name: "tcp://127.0.0.1:1883".to_owned(),
                current: 14,
                total: 15,
            },
            ListenerSnapshot {
                name: "ws://127.0.0.1:8083".to_owned(),
                current: 16,
                total: 17,
            },
        ],
        dropped: vec![("queue_full", 18), ("too_large", 19)],
        auth_failures: 20,
        takeover_refused: 21,
        slow_consumers_disconnected: 22,
        auth_throttled: (23, 24),
        retained: 25,
        subscriptions: 26,
        sessions: SessionTotals {
            online: 27,
            offline: 28,
            queued: 29,
            inflight: 30,
            pushing_back: 31,
            top_dropping: vec![("x".repeat(70).into(), 32), ("short".into(), 33)],
        },
        store_enabled,
        store_disk_bytes: 34,
        store_ops: 35,
        commit: (0.25, 36, vec![(0.001, 30), (0.01, 35), (f64::MAX, 36)]),
        bridges: vec![
            BridgeStatus {
                sink: "kafka",
                kafka: Some(kafka_report()),
                ..bridge("kafka-one", "running", 100)
            },
            bridge("http-two", "failing", 200),
            BridgeStatus {
                sink: "mqtt",
                link: Some(sluice_bridges::mqtt::LinkReport {
                    connected: true,
                    session_present: true,
                    connects: 3,
                    ..Default::default()
                }),
                ..bridge("mqtt-three", "running", 300)
            },
        ],
        process,
        budgets: crate::broker::BudgetNumbers {
            opening_bytes: 37,
            retained_bytes: 38,
            queued_bytes: 39,
            sessions: 40,
            refused_connect_too_large: 41,
            opening_waits: 42,
            refused_retained: 43,
            refused_sessions: 44,
            refused_queued_bytes: 45,
        },
        limits: [46, 47, 48, 49],
    }
}

fn render(s: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(s));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

#[test]
fn the_exposition_is_unchanged() {
    let process = ProcessStats {
        cpu_seconds: 1.5,
        resident_bytes: 50,
        virtual_bytes: 51,
        open_fds: 52,
        max_fds: Some(53),
        threads: 54,
    };
    let text = render(snapshot(true, Some(process)));
    let text = text.replace(env!("CARGO_PKG_VERSION"), "VERSION");
    assert_eq!(text, include_str!("exposition.txt"));
}

#[test]
fn without_store_bridges_or_process_their_families_are_left_out() {
    let mut s = snapshot(false, None);
    s.bridges.clear();
    let text = render(s);
    for gone in ["sluice_store_", "sluice_bridge_", "process_"] {
        assert!(!text.contains(gone), "{gone} in\n{text}");
    }
    assert!(text.contains("sluice_sessions_pushing_back 31"), "{text}");
}

/// The Grafana dashboard in examples/ queries only series the exposition
/// has: a renamed family must take the panel along.
#[test]
fn the_grafana_dashboard_names_only_series_the_exposition_has() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../examples/grafana/sluice-bridges.json"
    ))
    .unwrap();
    let exposition = include_str!("exposition.txt");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut checked = 0;
    for expr in exprs {
        for (start, _) in expr.match_indices("sluice_") {
            let name: String = expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let sampled = exposition.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            });
            assert!(sampled, "{name} (in {expr}) is not in exposition.txt");
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

fn collect_exprs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr" | "definition", Some(expr)) => out.push(expr),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
