//! The load generator against the real broker: short, bounded runs that
//! check it counts what it claims (no loss at QoS 1, every message seen).

use std::process::Command;

use crate::harness::*;

fn bench(port: u16, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args([
            "--port",
            &port.to_string(),
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run sluice-bench");
    assert!(
        out.status.success(),
        "sluice-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[test]
fn pairs_qos1_loses_nothing_and_measures_latency() {
    let s = Sluice::start();
    let r = bench(
        s.port,
        &["--qos", "1", "--persistent-subscribers", "pairs", "-n", "3"],
    );
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicates_or_reordered"], 0);
    assert!(r["received"].as_u64().unwrap() > 100, "{r}");
    assert!(r["latency_us"]["p50"].as_u64().unwrap() > 0);
}

#[test]
fn fanout_qos0_v5_delivers_to_every_subscriber() {
    let s = Sluice::start();
    let r = bench(
        s.port,
        &["--mqtt", "5", "--rate", "2000", "fanout", "-s", "4"],
    );
    assert!(r["sent"].as_f64().unwrap() > 500.0, "{r}");
    assert!(r["received"].as_f64().unwrap() > 2000.0, "{r}");
    // Every message reached all 4 subscribers (counted over the whole run,
    // so a slow machine shifting the window edges cannot skew it).
    assert_eq!(r["lost"], 0, "{r}");
}

#[test]
fn idle_connections_are_counted() {
    let s = Sluice::start();
    let pid = s.pid().to_string();
    let r = bench(
        s.port,
        &[
            "--broker-pid",
            &pid,
            "conn",
            "-n",
            "200",
            "--source-addresses",
            "2",
        ],
    );
    assert_eq!(r["connections"], 200);
    assert!(r["rss_per_connection"].as_u64().is_some(), "{r}");
}
