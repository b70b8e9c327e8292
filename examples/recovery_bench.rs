//! Measures startup recovery: fills a data directory with N persistent
//! sessions (each with a subscription and a queued QoS 1 message) and M
//! retained messages, then times opening the store and rebuilding the
//! broker's state, as `sluice` does at startup.
//!
//! cargo run --release --example recovery_bench -- [SESSIONS] [RETAINED]

use std::time::Instant;

use bytes::Bytes;
use sluice::broker::Broker;
use sluice::codec::{ProtocolVersion, QoS, SubscriptionOptions};
use sluice::config::Config;
use sluice::store::{
    FsyncPolicy, MessageRecord, Op, OutboxRecord, OutboxState, SessionRecord, Store,
    SubscriptionRecord,
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let retained: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store");

    let fill = Instant::now();
    {
        let (store, _) = Store::open(&path, FsyncPolicy::Never)?;
        let mut id = 0u64;
        let mut ops = Vec::new();
        for i in 0..retained {
            id += 1;
            let topic = format!("devices/{}/{}/state", i / 1000, i % 1000);
            ops.push(Op::PutMessage {
                id,
                record: MessageRecord {
                    topic: topic.clone().into(),
                    payload: Bytes::from_static(b"{\"temp\":21.5,\"ok\":true}"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: None,
                    expires_at_ms: 0,
                    publisher: None,
                    username: None,
                    accepted_ms: 0,
                },
            });
            ops.push(Op::PutRetained {
                topic: topic.into(),
                message_id: id,
            });
            if ops.len() >= 10_000 {
                store.submit(std::mem::take(&mut ops));
            }
        }
        for i in 0..sessions {
            id += 1;
            let client_id: bytestring::ByteString = format!("sensor-{i}").into();
            ops.push(Op::PutSession {
                client_id: client_id.clone(),
                record: Box::new(SessionRecord {
                    protocol: ProtocolVersion::V5,
                    session_expiry: 86_400,
                    disconnected_at_ms: sluice::store::now_ms(),
                    will: None,
                    will_delay: 0,
                    subscriptions: vec![SubscriptionRecord {
                        filter: format!("commands/{i}/#").into(),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..Default::default()
                        },
                        identifier: None,
                    }],
                    username: None,
                    owner_unknown: false,
                }),
            });
            ops.push(Op::PutMessage {
                id,
                record: MessageRecord {
                    topic: format!("commands/{i}/reboot").into(),
                    payload: Bytes::from_static(b"now"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: None,
                    expires_at_ms: 0,
                    publisher: None,
                    username: None,
                    accepted_ms: 0,
                },
            });
            ops.push(Op::PutOutbox {
                client_id,
                seq: 1,
                record: OutboxRecord {
                    message_id: id,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    state: OutboxState::Queued,
                    packet_id: 0,
                    subscription_ids: vec![],
                },
            });
            if ops.len() >= 10_000 {
                store.submit(std::mem::take(&mut ops));
            }
        }
        store.submit(ops);
        store.close();
    }
    println!(
        "filled {sessions} sessions and {retained} retained messages in {:.1?}",
        fill.elapsed()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let (store, recovered) = Store::open(&path, FsyncPolicy::Batch)?;
        let opened = started.elapsed();
        let broker = Broker::new(Config::default(), store.clone());
        let summary = broker.restore(recovered);
        let total = started.elapsed();
        println!(
            "recovered {} sessions, {} subscriptions, {} queued, {} retained: read {:.2?}, rebuilt {:.2?}, total {:.2?}, disk {} MB",
            summary.sessions,
            summary.subscriptions,
            summary.queued,
            summary.retained,
            opened,
            summary.elapsed,
            total,
            store.disk_usage() / 1_000_000
        );
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(rss) = status.lines().find(|l| l.starts_with("VmHWM")) {
                println!("peak memory: {}", rss.trim_start_matches("VmHWM:").trim());
            }
        }
        store.close();
        anyhow::Ok(())
    })
}
