//! The idle-connection scenario: how fast the broker accepts connections
//! and what each costs it in memory.
//!
//! What a connection costs depends on how it was opened (notes in
//! BENCHMARKS.md): with many CONNECTs in flight at once the broker holds
//! many connections in their opening state together, and memory its
//! allocator took then is not all given back. The options let a run open
//! connections the way another generator would, and the report gives the
//! resident memory right after the last CONNACK, after settling, and the
//! peak.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::cpu::{self, Memory};
use crate::pubsub::{connect_with, subscribe_one};
use crate::report::Report;

/// How the connections are opened and held.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub connections: usize,
    /// Loopback source addresses to spread over (127.0.0.2, …).
    pub source_addresses: u8,
    /// CONNECTs in flight at once.
    pub in_flight: usize,
    /// Client ids padded to this many characters (0: as short as they come).
    pub client_id_len: usize,
    /// Each connection subscribes to a topic of its own after CONNACK.
    pub subscribe: bool,
    /// Seconds between the last CONNACK and the second memory reading.
    pub settle: f64,
}

pub async fn run(args: &Args, plan: &ConnPlan) -> anyhow::Result<Report> {
    let mem0 = args.broker_pid.and_then(cpu::memory);
    let started = Instant::now();
    let mut held = Vec::with_capacity(plan.connections);
    let shared_args = Arc::new(args.clone());
    let mut tasks = JoinSet::new();
    for j in 0..plan.connections {
        if tasks.len() >= plan.in_flight.max(1) {
            if let Some(r) = tasks.join_next().await {
                held.push(r??);
            }
        }
        let a = Arc::clone(&shared_args);
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (j % usize::from(plan.source_addresses.max(1))) as u8,
        ));
        let source = (a.host == "127.0.0.1").then_some(ip);
        let id = format!("{}-idle-{j}", args.prefix);
        let id = format!("{id:-<width$}", width = plan.client_id_len);
        let subscribe = plan.subscribe.then(|| format!("{}/idle/{j}", args.prefix));
        tasks.spawn(async move {
            let persistent = a.persistent_subscribers;
            let (rd, mut wr, buf) = connect_with(&a, &id, 300, source, persistent).await?;
            if let Some(topic) = subscribe {
                subscribe_one(&a, &mut wr, &topic).await?;
            }
            anyhow::Ok((rd, wr, buf))
        });
    }
    while let Some(r) = tasks.join_next().await {
        held.push(r??);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let mem1 = args.broker_pid.and_then(cpu::memory);
    tokio::time::sleep(Duration::from_secs_f64(plan.settle)).await;
    let mem2 = args.broker_pid.and_then(cpu::memory);
    let n = held.len().max(1) as u64;
    let per = |after: Option<Memory>, field: fn(&Memory) -> u64| {
        mem0.zip(after)
            .map(|(a, b)| field(&b).saturating_sub(field(&a)) / n)
    };
    let value = json!({
        "scenario": "conn",
        "connections": held.len(),
        "connect_seconds": connect_secs,
        "connects_per_sec": held.len() as f64 / connect_secs,
        "in_flight": plan.in_flight,
        "settle_seconds": plan.settle,
        "broker_rss_before": mem0.map(|m| m.rss),
        "broker_rss_connected": mem1.map(|m| m.rss),
        "broker_rss_after": mem2.map(|m| m.rss),
        "broker_rss_peak": mem2.map(|m| m.peak),
        // RSS growth over the connections, read after settling.
        "rss_per_connection": per(mem2, |m| m.rss),
        "rss_per_connection_at_last_connack": per(mem1, |m| m.rss),
        "rss_anon_per_connection": per(mem2, |m| m.anon),
        "rss_peak_per_connection": per(mem2, |m| m.peak),
    });
    drop(held);
    Ok(Report::conn(value))
}
