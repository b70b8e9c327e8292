//! The load generator against the broker: short, bounded runs that check
//! it counts what it claims (no loss at QoS 1, every message seen). The
//! broker runs in this process (in memory, an ephemeral port), so the
//! test needs nothing built beforehand but the generator itself.

use std::process::Command;
use std::time::Duration;

use sluice::broker::Broker;
use sluice::config::{Config, ListenerConfig};
use sluice::server;
use sluice::store::Store;

/// A broker on 127.0.0.1 with an ephemeral port; runs until dropped.
struct InProcessBroker {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl InProcessBroker {
    fn start() -> InProcessBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let port = runtime.block_on(async {
            let config = Config {
                persistence: false,
                listeners: vec![ListenerConfig::tcp(([127, 0, 0, 1], 0).into())],
                ..Config::default()
            };
            let listeners = server::bind_all(&config.listeners, true)
                .await
                .expect("bind");
            let port = listeners[0].ctx.addr.port();
            let broker = Broker::new(config, Store::disabled());
            tokio::spawn(server::serve(
                broker,
                listeners,
                std::future::pending(),
                Duration::from_secs(1),
            ));
            port
        });
        InProcessBroker {
            port,
            _runtime: runtime,
        }
    }
}

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
    let s = InProcessBroker::start();
    let r = bench(
        s.port,
        &["--qos", "1", "--persistent-subscribers", "pairs", "-n", "3"],
    );
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicates_or_reordered"], 0);
    assert!(r["received"].as_u64().expect("received") > 100, "{r}");
    assert!(r["latency_us"]["p50"].as_u64().expect("p50") > 0);
}

/// With its window full, a QoS 2 publisher gets a slot back only after
/// PUBREC, PUBREL and PUBCOMP: it must send its PUBRELs while it waits.
/// It did not, so each full window waited 100 ms (at most ~10 messages a
/// second per publisher here, one in flight; now each takes a round trip).
#[test]
fn pairs_qos2_with_a_full_window_sends_its_pubrels_while_waiting() {
    let s = InProcessBroker::start();
    let r = bench(
        s.port,
        &["--qos", "2", "--inflight", "1", "pairs", "-n", "3"],
    );
    assert_eq!(r["lost"], 0, "{r}");
    assert!(r["received"].as_u64().expect("received") > 200, "{r}");
}

#[test]
fn fanout_qos0_v5_delivers_to_every_subscriber() {
    let s = InProcessBroker::start();
    let r = bench(
        s.port,
        &["--mqtt", "5", "--rate", "2000", "fanout", "-s", "4"],
    );
    assert!(r["sent"].as_f64().expect("sent") > 500.0, "{r}");
    assert!(r["received"].as_f64().expect("received") > 2000.0, "{r}");
    // Every message reached all 4 subscribers (counted over the whole run,
    // so a slow machine shifting the window edges cannot skew it).
    assert_eq!(r["lost"], 0, "{r}");
}

#[test]
fn idle_connections_are_counted() {
    let s = InProcessBroker::start();
    // The broker is this process: its memory is what the report divides.
    let pid = std::process::id().to_string();
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

#[test]
fn a_bad_argument_is_refused_before_connecting() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["--port", "1", "--mqtt", "6", "pairs", "-n", "1"])
        .output()
        .expect("run sluice-bench");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mqtt must be 4 or 5"), "{err}");
}

/// The reflector (the generator's null broker) on a free port; killed
/// when dropped.
struct Reflector {
    port: u16,
    child: std::process::Child,
}

impl Reflector {
    fn start() -> Reflector {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
            .args(["--port", &port.to_string(), "reflector"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the reflector");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Reflector { port, child }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_reflector_forwards_every_scenario_without_loss() {
    let r = Reflector::start();
    for (version, args) in [
        ("4", &["--qos", "1", "pairs", "-n", "3"][..]),
        ("5", &["--qos", "1", "pairs", "-n", "3"][..]),
        (
            "4",
            &["--qos", "0", "--rate", "2000", "fanout", "-s", "4"][..],
        ),
        (
            "5",
            &[
                "--qos", "2", "--rate", "2000", "fanin", "-p", "3", "-s", "2",
            ][..],
        ),
    ] {
        let out = bench(r.port, &[&["--mqtt", version], args].concat());
        assert_eq!(out["lost"], 0, "{args:?}: {out}");
        assert_eq!(out["duplicates_or_reordered"], 0, "{args:?}: {out}");
        assert!(
            out["received"].as_u64().expect("received") > 100,
            "{args:?}: {out}"
        );
    }
}
