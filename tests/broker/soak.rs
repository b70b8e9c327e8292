//! Soak: publishers, subscribers and a bridge run together while the
//! broker is SIGKILLed again and again; every PUBACKed message must reach
//! every persistent subscriber and the bridge's HTTP endpoint.
//!
//! Off by default (it takes minutes): `SLUICE_SOAK=120 cargo test --test
//! broker soak -- --nocapture` runs it for 120 s (10 to 600).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::bridges::Endpoint;
use crate::harness::*;
use crate::persistence::persistent;

const PUBLISHERS: u32 = 3;

/// A message's identity: (publisher, sequence number), as its payload
/// carries it in JSON.
type Id = (u32, u32);

fn payload(id: Id) -> Vec<u8> {
    format!("{{\"p\":{},\"n\":{}}}", id.0, id.1).into_bytes()
}

fn parse(bytes: &[u8]) -> Option<Id> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some((v["p"].as_u64()? as u32, v["n"].as_u64()? as u32))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Publishes QoS 1 until `stop`, reconnecting through crashes; returns
/// what was acknowledged.
fn publisher(port: u16, p: u32, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Id>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let Some(mut c) =
                Raw::try_connect_with(port, connect_packet(V4, &format!("soak-pub-{p}"), true))
            else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            while !stop.load(Ordering::Relaxed) {
                let packet_id = (n % 60_000 + 1) as u16;
                let mut m = publish(&format!("soak/{p}"), b"", QoS::AtLeastOnce, packet_id);
                m.payload = payload((p, n)).into();
                c.send(&Packet::Publish(m));
                n += 1;
                // A soak checks correctness, not speed: a steady pace
                // keeps the bridge's endpoint (a Python server) ahead.
                std::thread::sleep(Duration::from_millis(2));
                match c.recv_timeout(Duration::from_secs(3)) {
                    Some(Packet::PubAck(a)) if a.packet_id.get() == packet_id => {
                        acked.push((p, n - 1));
                    }
                    _ => break,
                }
            }
        }
        acked
    })
}

/// A persistent subscriber to `soak/#` that stays online, reconnecting
/// through crashes, until `stop`; records what it receives.
fn subscriber(
    port: u16,
    version: ProtocolVersion,
    id: &'static str,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<BTreeSet<Id>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(mut c) = Raw::try_connect_with(port, persistent(version, id)) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            while !stop.load(Ordering::Relaxed) {
                match c.recv_timeout(Duration::from_millis(500)) {
                    Some(Packet::Publish(m)) => {
                        if let Some(pid) = m.packet_id {
                            c.send(&Packet::PubAck(Ack::new(pid)));
                        }
                        if let Some(id) = parse(&m.payload) {
                            got.lock().unwrap().insert(id);
                        }
                    }
                    Some(_) => {}
                    // A timeout is quiet; a closed socket ends the loop
                    // at the next send failure or read.
                    None => {
                        c.send(&Packet::PingReq);
                        if c.recv_timeout(Duration::from_secs(2)).is_none() {
                            break;
                        }
                    }
                }
            }
        }
    })
}

#[test]
fn publishers_subscribers_bridges_and_kills_lose_nothing() {
    let Some(secs) = std::env::var("SLUICE_SOAK")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        eprintln!("soak test skipped: set SLUICE_SOAK=<seconds> to run it");
        return;
    };
    let run_for = Duration::from_secs(secs.clamp(10, 600));
    let endpoint = Endpoint::start("[]");
    let port = free_port();
    let mut s = Sluice::start_config(&format!(
        r#"
[[listeners]]
bind = "127.0.0.1:{port}"

[[bridges]]
name = "soak"
filters = ["soak/#"]
qos = 1
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{}/soak"
timeout_secs = 2
batch = "ndjson"
"#,
        endpoint.port
    ));
    // Sessions exist before anything is published.
    for (version, id) in [(V4, "soak-sub-4"), (V5, "soak-sub-5")] {
        let (mut c, _) = Raw::connect_with(port, persistent(version, id));
        c.subscribe(1, &[("soak/#", sub_opts(QoS::AtLeastOnce))]);
        c.disconnect();
    }
    let stop_subs = Arc::new(AtomicBool::new(false));
    let got: Vec<Arc<Mutex<BTreeSet<Id>>>> = (0..2).map(|_| Arc::default()).collect();
    let subs = vec![
        subscriber(port, V4, "soak-sub-4", stop_subs.clone(), got[0].clone()),
        subscriber(port, V5, "soak-sub-5", stop_subs.clone(), got[1].clone()),
    ];
    let stop_pubs = Arc::new(AtomicBool::new(false));
    let pubs: Vec<_> = (0..PUBLISHERS)
        .map(|p| publisher(port, p, stop_pubs.clone()))
        .collect();

    let started = Instant::now();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut kills = 0;
    while started.elapsed() < run_for {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(2000 + seed % 4000));
        s = s.kill_and_restart();
        kills += 1;
    }
    stop_pubs.store(true, Ordering::Relaxed);
    let acked: BTreeSet<Id> = pubs
        .into_iter()
        .flat_map(|h| h.join().expect("publisher"))
        .collect();
    assert!(!acked.is_empty(), "publishers made progress");

    // Subscribers drain what is owed to them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.iter().any(|g| !acked.is_subset(&g.lock().unwrap())) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_subs.store(true, Ordering::Relaxed);
    for h in subs {
        h.join().expect("subscriber");
    }
    for (i, g) in got.iter().enumerate() {
        let g = g.lock().unwrap();
        let lost: Vec<&Id> = acked.difference(&g).collect();
        assert!(
            lost.is_empty(),
            "subscriber {i}: {} of {} acknowledged messages lost over {kills} kills, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
    }
    // And the bridge delivered each at least once.
    let at_endpoint = || -> BTreeSet<Id> {
        endpoint
            .delivered()
            .iter()
            .filter_map(|r| r["body"].as_str())
            .flat_map(|body| body.lines().filter_map(|l| parse(l.as_bytes())))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at_endpoint_now = at_endpoint();
    while !acked.is_subset(&at_endpoint_now) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        at_endpoint_now = at_endpoint();
    }
    let at_endpoint = at_endpoint_now;
    let lost: Vec<&Id> = acked.difference(&at_endpoint).collect();
    assert!(
        lost.is_empty(),
        "bridge: {} of {} acknowledged messages never reached the endpoint, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "soak: {} acknowledged over {kills} kills in {:?}; all delivered",
        acked.len(),
        started.elapsed()
    );
}
