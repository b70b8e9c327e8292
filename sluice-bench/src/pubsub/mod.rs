//! The publish/subscribe scenarios: fan-in, fan-out and pairs.

mod client;
mod publisher;
mod subscriber;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use sluice::codec::{
    encode_packet, Packet, PacketId, Properties, ProtocolVersion, QoS, Subscribe,
    SubscriptionOptions,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

use crate::args::{Args, Scenario};
use crate::cpu;
use crate::report::Report;
pub use client::{connect, connect_with};
use client::{qos, version};
use publisher::{publisher, PubConfig};
pub use subscriber::{put_ack, READ_CHUNK};
use subscriber::{subscriber, SubStats};

/// Bytes at the start of every payload: publisher index, sequence, send time.
const HEADER: usize = 4 + 8 + 8;

struct Shared {
    epoch: Instant,
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicBool,
    sent_total: AtomicU64,
    sent_window: AtomicU64,
    received_total: AtomicU64,
    /// Subscribers whose SUBACK arrived.
    subscribed: AtomicU64,
    fan: u64,
    max_owed: u64,
}

impl Shared {
    fn owed(&self) -> u64 {
        (self.sent_total.load(Ordering::Relaxed) * self.fan)
            .saturating_sub(self.received_total.load(Ordering::Relaxed))
    }
}

/// Who publishes where and who subscribes to what.
struct Plan {
    pub_topics: Vec<String>,
    sub_filters: Vec<String>,
    /// Deliveries each message owes (subscribers that match it).
    fan: u64,
}

impl Plan {
    fn of(args: &Args) -> Plan {
        let p = &args.prefix;
        let (pub_topics, sub_filters, fan) = match &args.scenario {
            Scenario::Fanin {
                publishers,
                subscribers,
            } => (
                (0..*publishers).map(|i| format!("{p}/{i}")).collect(),
                vec![format!("{p}/#"); *subscribers],
                *subscribers as u64,
            ),
            Scenario::Fanout { subscribers } => (
                vec![format!("{p}/0")],
                vec![format!("{p}/0"); *subscribers],
                *subscribers as u64,
            ),
            Scenario::Pairs { pairs } => {
                let topics: Vec<String> = (0..*pairs).map(|i| format!("{p}/{i}")).collect();
                (topics.clone(), topics, 1)
            }
            Scenario::Conn { .. } | Scenario::Reflector => {
                unreachable!("not a publish/subscribe scenario")
            }
        };
        Plan {
            pub_topics,
            sub_filters,
            fan,
        }
    }
}

/// What the measured window saw from outside the clients.
struct Window {
    length: Duration,
    gen_cpu: Option<f64>,
    broker_cpu: Option<f64>,
}

pub async fn run(args: &Args) -> anyhow::Result<Report> {
    if args.size < HEADER {
        bail!("--size must be at least {HEADER} bytes");
    }
    let plan = Plan::of(args);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicBool::new(false),
        sent_total: AtomicU64::new(0),
        sent_window: AtomicU64::new(0),
        received_total: AtomicU64::new(0),
        subscribed: AtomicU64::new(0),
        fan: plan.fan,
        max_owed: args.max_owed,
    });
    let subs = start_subscribers(args, &plan, &shared).await?;
    // Every SUBACK before publishing (what is published before a SUBACK
    // need not reach its subscriber; a broker may take its time to
    // acknowledge a subscription, a cluster node records it first).
    let subacks_by = Instant::now() + Duration::from_secs(30);
    while shared.subscribed.load(Ordering::Acquire) < subs.len() as u64 {
        if Instant::now() > subacks_by {
            bail!("not every subscription was acknowledged within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pubs = start_publishers(args, &plan, &shared).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let window = measure(args, &shared).await;
    shared.stop.store(true, Ordering::Release);
    for h in pubs {
        h.await.context("publisher task")?.context("publisher")?;
    }
    // Let the last deliveries arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while shared.owed() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.done.store(true, Ordering::Release);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut received_window = 0;
    let mut dups = 0;
    for h in subs {
        let s = h.await.context("subscriber task")??;
        hist.add(&s.latency_us)?;
        received_window += s.received_window;
        dups += s.duplicates_or_reordered;
    }
    let sent_total = shared.sent_total.load(Ordering::Relaxed);
    let received_total = shared.received_total.load(Ordering::Relaxed);
    let expected = sent_total * plan.fan;
    Ok(Report::pubsub(
        args,
        plan.pub_topics.len(),
        plan.sub_filters.len(),
        window.length,
        shared.sent_window.load(Ordering::Relaxed),
        received_window,
        expected.saturating_sub(received_total),
        dups,
        &hist,
        window.gen_cpu,
        window.broker_cpu,
    ))
}

/// Connects every subscriber, subscribes it and starts its task.
async fn start_subscribers(
    args: &Args,
    plan: &Plan,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<SubStats>>>> {
    let v = version(args)?;
    let mut subs = Vec::new();
    for (i, filter) in plan.sub_filters.iter().enumerate() {
        let (rd, mut wr, buf) = connect_with(
            &args.on_port(&args.sub_ports, i),
            &format!("{}-sub-{i}", args.prefix),
            300,
            None,
            args.persistent_subscribers,
        )
        .await?;
        subscribe_one(args, &mut wr, filter).await?;
        subs.push(tokio::spawn(subscriber(
            rd,
            wr,
            buf,
            v,
            plan.pub_topics.len(),
            Arc::clone(shared),
        )));
    }
    Ok(subs)
}

/// Sends SUBSCRIBE to `filter` at the run's QoS (the SUBACK is left to
/// the connection's reader).
pub async fn subscribe_one(
    args: &Args,
    wr: &mut OwnedWriteHalf,
    filter: &str,
) -> anyhow::Result<()> {
    let sub = Subscribe {
        packet_id: PacketId::MIN,
        properties: Properties::default(),
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos: qos(args)?,
                ..Default::default()
            },
        )],
    };
    let mut out = BytesMut::new();
    encode_packet(&Packet::Subscribe(sub), version(args)?, &mut out)?;
    wr.write_all(&out).await?;
    Ok(())
}

/// Connects every publisher and starts its task, the target rate shared
/// out evenly.
async fn start_publishers(
    args: &Args,
    plan: &Plan,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let (v, q): (ProtocolVersion, QoS) = (version(args)?, qos(args)?);
    let per_pub_rate = if args.rate == 0 {
        0.0
    } else {
        args.rate as f64 / plan.pub_topics.len() as f64
    };
    let mut pubs = Vec::new();
    for (i, topic) in plan.pub_topics.iter().enumerate() {
        let (rd, wr, _) = connect(
            &args.on_port(&args.pub_ports, i),
            &format!("{}-pub-{i}", args.prefix),
            300,
            None,
        )
        .await?;
        let cfg = PubConfig {
            index: i as u32,
            topic: topic.clone(),
            qos: q,
            version: v,
            size: args.size,
            rate: per_pub_rate,
            window: args.inflight.max(1),
        };
        pubs.push(tokio::spawn(publisher(rd, wr, cfg, Arc::clone(shared))));
    }
    Ok(pubs)
}

/// The measured window: counts what the clients see for `--duration`
/// seconds, printing the receive rate each second (text mode), and the CPU
/// time the generator and the broker spent meanwhile.
async fn measure(args: &Args, shared: &Shared) -> Window {
    let gen_cpu0 = cpu::cpu_seconds(None);
    let broker_cpu0 = args.broker_pid.and_then(|pid| cpu::cpu_seconds(Some(pid)));
    let received0 = shared.received_total.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Release);
    let t0 = Instant::now();
    let mut last = (t0, received0);
    while t0.elapsed().as_secs_f64() < args.duration {
        tokio::time::sleep(Duration::from_secs(1).min(Duration::from_secs_f64(args.duration)))
            .await;
        if !args.json {
            let now = Instant::now();
            let r = shared.received_total.load(Ordering::Relaxed);
            let rate = (r - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            eprintln!(
                "[{:5.1}s] {:>10.0} msg/s received, {} owed",
                t0.elapsed().as_secs_f64(),
                rate,
                shared.owed()
            );
            last = (now, r);
        }
    }
    shared.measuring.store(false, Ordering::Release);
    let length = t0.elapsed();
    let gen_cpu = cpu::cpu_seconds(None).zip(gen_cpu0).map(|(a, b)| a - b);
    let broker_cpu = args
        .broker_pid
        .and_then(|pid| cpu::cpu_seconds(Some(pid)))
        .zip(broker_cpu0)
        .map(|(a, b)| a - b);
    Window {
        length,
        gen_cpu,
        broker_cpu,
    }
}
