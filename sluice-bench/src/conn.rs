//! The idle-connection scenario: how fast the broker accepts connections
//! and what each costs it in memory.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::args::Args;
use crate::cpu;
use crate::pubsub::connect;
use crate::report::Report;

pub async fn run(args: &Args, connections: usize, source_addresses: u8) -> anyhow::Result<Report> {
    let rss0 = args.broker_pid.and_then(cpu::rss_bytes);
    let started = Instant::now();
    let mut held = Vec::with_capacity(connections);
    let shared_args = std::sync::Arc::new(args.clone());
    // Connect in waves so the accept queue is never the limit being measured.
    let wave = 500;
    let mut i = 0;
    while i < connections {
        let mut tasks = tokio::task::JoinSet::new();
        for j in i..(i + wave).min(connections) {
            let ip = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + (j % usize::from(source_addresses.max(1))) as u8,
            ));
            let a = std::sync::Arc::clone(&shared_args);
            let id = format!("{}-idle-{j}", args.prefix);
            let source = (a.host == "127.0.0.1").then_some(ip);
            tasks.spawn(async move { connect(&a, &id, 300, source).await });
        }
        while let Some(r) = tasks.join_next().await {
            held.push(r??);
        }
        i += wave;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.duration.min(5.0))).await;
    let rss1 = args.broker_pid.and_then(cpu::rss_bytes);
    let per_conn = rss0
        .zip(rss1)
        .map(|(a, b)| b.saturating_sub(a) / connections.max(1) as u64);
    let value = json!({
        "scenario": "conn",
        "connections": held.len(),
        "connect_seconds": connect_secs,
        "connects_per_sec": held.len() as f64 / connect_secs,
        "broker_rss_before": rss0,
        "broker_rss_after": rss1,
        "rss_per_connection": per_conn,
    });
    drop(held);
    Ok(Report::conn(value))
}
