//! Bridges end to end: MQTT in, transformed, buffered on disk, POSTed to a
//! real HTTP server (Python's http.server, bridges/src/http/test_server.py),
//! through outages and SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;

/// The HTTP endpoint: answers `script` statuses in order, then 200.
pub(crate) struct Endpoint {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    pub(crate) fn start(script: &str) -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.json");
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("bridges/src/http/test_server.py");
        let mut child = Command::new("python3")
            .arg(server)
            .arg(&log)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("server port");
        Endpoint {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Requests answered 200, in arrival order.
    pub(crate) fn delivered(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_else(|_| "[]".into());
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        all.into_iter().filter(|r| r["answer"] == 200).collect()
    }

    /// Waits until `n` distinct bodies were delivered (resends after a crash
    /// are duplicates and do not count).
    pub(crate) fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.delivered();
            let distinct: std::collections::HashSet<&str> =
                got.iter().filter_map(|r| r["body"].as_str()).collect();
            if distinct.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bridge_config(port: u16) -> String {
    format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "telemetry"
filters = ["sensors/#"]
transform = ".payload | {{room: .room, t: .temp}}"
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{port}/ingest/{{topic.2}}"
timeout_secs = 2
"#
    )
}

fn body(r: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

#[test]
fn http_bridge_transforms_and_posts_with_record_ids() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V5, "dev", true);
    p.publish(publish(
        "sensors/kitchen/temp",
        br#"{"room":"kitchen","temp":21.5,"junk":1}"#,
        QoS::AtLeastOnce,
        1,
    ));
    p.publish(publish("other/topic", b"{}", QoS::AtLeastOnce, 2));
    let got = ep.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["method"], "POST");
    assert_eq!(got[0]["path"], "/ingest/kitchen");
    assert_eq!(
        body(&got[0]),
        serde_json::json!({"room": "kitchen", "t": 21.5})
    );
    let headers = got[0]["headers"].as_array().unwrap();
    let has = |name: &str| {
        headers
            .iter()
            .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
    };
    assert!(
        has("sluice-record-id") && has("sluice-mqtt-topic"),
        "{headers:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ep.delivered().len(),
        1,
        "non-matching topic must not be bridged"
    );
}

#[test]
fn endpoint_outage_loses_nothing_and_keeps_order() {
    // The endpoint fails the first 4 requests (503), then recovers.
    let ep = Endpoint::start("[503, 503, 503, 503]");
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..10 {
        p.publish(publish(
            "sensors/hall/temp",
            format!(r#"{{"room":"hall","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    let got = ep.wait_for(10, Duration::from_secs(20));
    let temps: Vec<i64> = got.iter().map(|r| body(r)["t"].as_i64().unwrap()).collect();
    assert_eq!(temps, (0..10).collect::<Vec<i64>>());
}

#[test]
fn acknowledged_messages_survive_sigkill_while_the_endpoint_is_down() {
    let ep = Endpoint::start("[503, 503, 503, 503, 503]");
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..20 {
        // Each PUBACK means: durable (broker store or bridge buffer).
        p.publish(publish(
            "sensors/attic/temp",
            format!(r#"{{"room":"attic","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    let s = s.kill_and_restart();
    let got = ep.wait_for(20, Duration::from_secs(20));
    let mut temps: Vec<i64> = got.iter().map(|r| body(r)["t"].as_i64().unwrap()).collect();
    temps.sort();
    temps.dedup();
    assert_eq!(
        temps,
        (0..20).collect::<Vec<i64>>(),
        "every acknowledged message delivered (duplicates allowed)"
    );
    drop(s);
}

#[test]
fn bad_bridge_config_names_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[[bridges]]\nname = \"broken\"\nfilters = [\"a/#\"]\ntransform = \".payload | {\"\n[bridges.sink]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n",
    )
    .unwrap();
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridges[0].transform") && err.contains("broken"),
        "{err}"
    );
}

#[test]
fn clients_cannot_take_a_bridge_session() {
    let s = Sluice::start();
    let mut raw = Raw::open(s.port, V5);
    raw.send(&Packet::Connect(Box::new(connect_packet(
        V5,
        "$bridge/telemetry",
        true,
    ))));
    match raw.until_closed().first() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::ClientIdentifierNotValid),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_bridge_buffer_pushes_back_on_v5_publishers_with_0x97() {
    // The endpoint is down for good; the buffer holds 64 KiB.
    let ep = Endpoint::start(&format!("[{}]", vec!["503"; 2000].join(",")));
    let cfg = bridge_config(ep.port)
        .replace("timeout_secs = 2", "timeout_secs = 2\n")
        .replace(
            "filters = [\"sensors/#\"]",
            "filters = [\"sensors/#\"]\nmax_bytes = 65536\nfull_policy = \"block\"",
        );
    let s = Sluice::start_config(&cfg);
    let (mut flood, _) = Raw::connect(s.port, V5, "flood", true);
    // The transform keeps `room`, so each buffered record is ~2 KB: 100 of
    // them are three times what the buffer holds.
    let payload = format!(r#"{{"room":"{}","temp":1}}"#, "p".repeat(2000));
    let reading = |id| publish("sensors/x/t", payload.as_bytes(), QoS::AtLeastOnce, id);
    for i in 1..=100u16 {
        flood.send(&Packet::Publish(reading(i)));
    }
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("back-pressure") && Instant::now() < deadline {
        log.push_str(&s.log_lines().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log.contains("back-pressure"), "the buffer never filled");
    // The flood's messages past what fits have no durable copy but the
    // buffer they wait for: their PUBACKs wait, in order (MQTT 4.6), and
    // nothing is acknowledged that a crash could lose. A v5 publisher
    // with nothing waiting is refused at once; a 3.1.1 one waits too.
    let (mut late, _) = Raw::connect(s.port, V5, "late", true);
    late.send(&Packet::Publish(reading(1)));
    match late.recv_timeout(Duration::from_secs(10)) {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::QuotaExceeded),
        other => panic!("expected PUBACK 0x97, got {other:?}"),
    }
    let (mut old, _) = Raw::connect(s.port, V4, "old", true);
    old.send(&Packet::Publish(reading(1)));
    old.expect_silence(Duration::from_secs(2));
}

#[test]
fn removing_a_bridge_from_the_config_removes_its_session() {
    let ep = Endpoint::start("[]");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Starts the broker on `config`, returns its log up to "sluice started",
    // then stops it gracefully (SIGTERM).
    let run = |config: &Path| {
        let mut child = Command::new(SLUICE)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(&store)
            .env("RUST_LOG", "sluice=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        let stderr = child.stderr.take().unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("sluice started");
            lines.push(line);
            if done {
                break;
            }
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        lines.join("\n")
    };
    let with_bridge = dir.path().join("with.toml");
    std::fs::write(&with_bridge, bridge_config(ep.port)).unwrap();
    let first = run(&with_bridge);
    assert!(first.contains("bridge started"), "{first}");
    let without = dir.path().join("without.toml");
    std::fs::write(&without, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let second = run(&without);
    assert!(second.contains("bridge no longer configured"), "{second}");
    let third = run(&without);
    assert!(
        !third.contains("bridge no longer configured"),
        "session was not removed: {third}"
    );
}

#[test]
fn payload_the_transform_refuses_goes_to_the_dead_letter_file() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    p.publish(publish(
        "sensors/bad/temp",
        b"not json",
        QoS::AtLeastOnce,
        1,
    ));
    p.publish(publish(
        "sensors/good/temp",
        br#"{"room":"good","temp":1}"#,
        QoS::AtLeastOnce,
        2,
    ));
    assert_eq!(
        ep.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "the good one still goes through"
    );
    let file = s
        .data
        .path()
        .join("store/bridges/telemetry/dead-letter.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a dead-letter line")).unwrap();
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("transform failed"),
        "{line}"
    );
    assert_eq!(line["record"]["payload"]["utf8"], "not json", "{line}");
    assert!(
        line["record"]["headers"]
            .to_string()
            .contains("sensors/bad/temp"),
        "{line}"
    );
}

/// The telemetry bridge with extra lines in its `[[bridges]]` table.
fn bridge_config_with(port: u16, extra: &str) -> String {
    bridge_config(port).replace("transform = ", &format!("{extra}\ntransform = "))
}

#[test]
fn with_ack_sink_the_puback_waits_for_the_endpoint() {
    // Three failures first: the PUBACK may only come once a 200 was given.
    let ep = Endpoint::start("[503, 503, 503]");
    let s = Sluice::start_config(&bridge_config_with(ep.port, "ack = \"sink\""));
    let (mut p, _) = Raw::connect(s.port, V5, "dev", true);
    p.send(&Packet::Publish(publish(
        "sensors/cellar/temp",
        br#"{"room":"cellar","temp":7}"#,
        QoS::AtLeastOnce,
        1,
    )));
    match p.recv_timeout(Duration::from_secs(15)) {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::Success),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(
        ep.delivered().len(),
        1,
        "PUBACK came before the endpoint had the record"
    );
    let requests = std::fs::read_to_string(&ep.log).unwrap();
    assert!(requests.matches("503").count() >= 3, "{requests}");
}

#[test]
fn ack_sink_needs_qos_1_and_the_block_policy() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("ack = \"sink\"\nqos = 0", "qos"),
        (
            "ack = \"sink\"\nfull_policy = \"drop_oldest\"",
            "full_policy",
        ),
    ] {
        let (code, err) = check_config(dir.path(), &bridge_config_with(1, extra));
        assert_ne!(code, Some(0), "{extra}");
        assert!(err.contains(&format!("bridges[0].{key}")), "{err}");
    }
}

/// Runs `sluice check-config` on `toml` (written to `dir/b.toml`): the exit
/// code and what it wrote to stderr.
pub fn check_config(dir: &std::path::Path, toml: &str) -> (Option<i32>, String) {
    let cfg = dir.join("b.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sink settings that only building the sink used to refuse (so start-up
/// failed on a file `check-config` had passed) are refused by the check
/// too, under their key; start-up refuses them the same way.
#[test]
fn check_config_refuses_the_sink_settings_start_up_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[bridges]]\nname = \"k\"\nfilters = [\"a/#\"]\n[bridges.sink]\nkind = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"t\"\n[bridges.sink.options]\n\"no.such.option\" = \"1\"\n";
    let cases = [
        (
            bridge_config(1).replace("timeout_secs = 2", "headers = { Content-Length = \"3\" }"),
            "bridges[0].sink.headers.Content-Length",
        ),
        (
            bridge_config(1).replace("timeout_secs = 2", "tls_ca = \"/nonexistent/ca.pem\""),
            "bridges[0].sink.tls_ca",
        ),
        (kafka.to_owned(), "bridges[0].sink.options.no.such.option"),
    ];
    for (toml, key) in cases {
        let (code, err) = check_config(dir.path(), &toml);
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(err.contains(key), "{err}");
        let out = Command::new(SLUICE)
            .args(["--config", dir.path().join("b.toml").to_str().unwrap()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn a_paused_bridge_buffers_and_delivers_on_resume() {
    let ep = Endpoint::start("[]");
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (status, body) = s.admin("POST", "/api/v1/bridges/telemetry/pause", None, None);
    assert_eq!(status, 200, "{body}");
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..5 {
        p.publish(publish(
            "sensors/porch/temp",
            format!(r#"{{"room":"porch","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(ep.delivered().is_empty(), "delivered while paused");
    let (_, body) = s.admin("GET", "/api/v1/bridges/telemetry", None, None);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["state"], "paused");
    assert_eq!(st["buffered_records"], 5, "{st}");
    assert_eq!(st["received"], 5);
    let metrics = s.admin("GET", "/metrics", None, None).1;
    assert_eq!(
        metric(
            &metrics,
            "sluice_bridge_buffered_records{bridge=\"telemetry\"}"
        ),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        s.admin("POST", "/api/v1/bridges/nope/pause", None, None).0,
        404
    );

    s.admin("POST", "/api/v1/bridges/telemetry/resume", None, None);
    let got = ep.wait_for(5, Duration::from_secs(10));
    assert_eq!(got.len(), 5);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = s.admin("GET", "/api/v1/bridges", None, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let b = &v["items"][0];
        if b["delivered"] == 5 && b["buffered_records"] == 0 {
            assert_eq!(b["state"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_lets_bridges_drain_before_exiting() {
    // Failing at first: records are still buffered when SIGTERM comes.
    let ep = Endpoint::start("[503, 503, 503, 503, 503]");
    let mut s = Sluice::start_config(&format!(
        "drain_timeout_secs = 15\n{}",
        bridge_config(ep.port)
    ));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..3 {
        p.publish(publish(
            "sensors/shed/temp",
            format!(r#"{{"room":"shed","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    assert!(ep.delivered().is_empty());
    s.signal("TERM");
    let status = s.wait_exit(Duration::from_secs(20)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        ep.delivered().len(),
        3,
        "the bridge delivered what it held before exiting"
    );
}

#[test]
fn a_second_signal_exits_at_once_and_the_buffer_survives() {
    // Nothing listens on port 1: the bridge can never deliver, so the
    // graceful shutdown would wait the whole drain timeout.
    let mut s = Sluice::start_config(&format!("drain_timeout_secs = 60\n{}", bridge_config(1)));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    p.publish(publish(
        "sensors/void/temp",
        br#"{"room":"void","temp":1}"#,
        QoS::AtLeastOnce,
        1,
    ));
    s.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.wait_exit(Duration::from_millis(100)).is_none(),
        "still draining"
    );
    s.signal("TERM");
    let status = s
        .wait_exit(Duration::from_secs(4))
        .expect("exited after the second signal");
    assert!(!status.success(), "{status:?}");
    let s = s.restart();
    let (_, body) = s.admin("GET", "/api/v1/bridges/telemetry", None, None);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["buffered_records"], 1, "{st}");
}

#[test]
fn sighup_adds_changes_and_removes_bridges_while_clients_stay_connected() {
    let ep = Endpoint::start("[]");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let s = Sluice::start_with_config(&config);
    let (mut p, _) = Raw::connect(s.port, V5, "stays", true);
    p.publish(publish(
        "sensors/a/temp",
        br#"{"room":"a","temp":0}"#,
        QoS::AtLeastOnce,
        1,
    ));

    // Added.
    std::fs::write(&config, bridge_config(ep.port)).unwrap();
    let (status, text) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 200, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["bridges"]["added"][0], "telemetry", "{report}");
    p.publish(publish(
        "sensors/b/temp",
        br#"{"room":"b","temp":1}"#,
        QoS::AtLeastOnce,
        2,
    ));
    let got = ep.wait_for(1, Duration::from_secs(10));
    assert_eq!(body(&got[0])["room"], "b");

    // Changed (paused first so records wait in the buffer across the
    // restart of the bridge): nothing buffered is lost.
    s.admin("POST", "/api/v1/bridges/telemetry/pause", None, None);
    p.publish(publish(
        "sensors/c/temp",
        br#"{"room":"c","temp":2}"#,
        QoS::AtLeastOnce,
        3,
    ));
    std::fs::write(
        &config,
        bridge_config(ep.port).replace("{room: .room, t: .temp}", "{room: .room, t: .temp, v: 2}"),
    )
    .unwrap();
    s.hangup();
    let got = ep.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(body(&got[1]), serde_json::json!({"room": "c", "t": 2}));
    p.publish(publish(
        "sensors/d/temp",
        br#"{"room":"d","temp":3}"#,
        QoS::AtLeastOnce,
        4,
    ));
    let got = ep.wait_for(3, Duration::from_secs(10));
    assert_eq!(
        body(&got[2]),
        serde_json::json!({"room": "d", "t": 3, "v": 2})
    );

    // A broken bridge definition: refused, the running one stays.
    std::fs::write(
        &config,
        bridge_config(ep.port).replace("{room: .room, t: .temp}", "{room: "),
    )
    .unwrap();
    let (status, body_text) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 422, "{body_text}");
    assert!(body_text.contains("telemetry"), "{body_text}");

    // Removed.
    std::fs::write(&config, "[[listeners]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let (status, body_text) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(status, 200, "{body_text}");
    let report: serde_json::Value = serde_json::from_str(&body_text).unwrap();
    assert_eq!(report["bridges"]["removed"][0], "telemetry");
    p.publish(publish(
        "sensors/e/temp",
        br#"{"room":"e","temp":4}"#,
        QoS::AtLeastOnce,
        5,
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ep.delivered().len(), 3);
    let (_, clients) = s.admin("GET", "/api/v1/clients?q=stays&connected=true", None, None);
    assert!(clients.contains("\"total\":1"), "{clients}");
}

#[test]
fn retry_after_from_the_endpoint_is_honoured() {
    // One 429 asking for 2 s; the bridge's own backoff would retry after
    // about 100 ms.
    let ep = Endpoint::start(r#"["429:2"]"#);
    let s = Sluice::start_config(&bridge_config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let started = Instant::now();
    p.publish(publish(
        "sensors/lab/temp",
        br#"{"room":"lab","temp":5}"#,
        QoS::AtLeastOnce,
        1,
    ));
    let got = ep.wait_for(1, Duration::from_secs(15));
    let waited = started.elapsed();
    assert_eq!(got.len(), 1);
    assert!(
        waited >= Duration::from_millis(1800),
        "retried after {waited:?}, before the 2 s the endpoint asked for"
    );
}

#[test]
fn ndjson_batches_carry_one_payload_per_line() {
    let ep = Endpoint::start("[]");
    let config = bridge_config(ep.port)
        .replace("timeout_secs = 2", "timeout_secs = 2\nbatch = \"ndjson\"")
        .replace("/ingest/{topic.2}", "/ingest");
    let s = Sluice::start_config(&config);
    // Paused while publishing, so the three records go in one batch.
    s.admin("POST", "/api/v1/bridges/telemetry/pause", None, None);
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..3 {
        p.publish(publish(
            "sensors/loft/temp",
            format!(r#"{{"room":"loft","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    // A PUBACK means stored, not yet in the bridge's buffer: resuming
    // before all three are buffered would send them in two requests.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = s.admin("GET", "/api/v1/bridges/telemetry", None, None);
        let st: serde_json::Value = serde_json::from_str(&body).unwrap();
        if st["buffered_records"] == 3 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    s.admin("POST", "/api/v1/bridges/telemetry/resume", None, None);
    let got = ep.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    let lines: Vec<serde_json::Value> = got[0]["body"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let temps: Vec<i64> = lines.iter().map(|v| v["t"].as_i64().unwrap()).collect();
    assert_eq!(temps, vec![0, 1, 2]);
    let ctype = got[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("content-type"))
        .map(|h| h[1].as_str().unwrap().to_owned());
    assert_eq!(ctype.as_deref(), Some("application/x-ndjson"));
}

/// `config` with its sink posting JSON arrays to one URL, plus `sink_extra`
/// settings of the sink.
fn json_arrays_to_one_url(config: String, sink_extra: &str) -> String {
    config
        .replace(
            "timeout_secs = 2",
            &format!("timeout_secs = 2\nbatch = \"json_array\"\n{sink_extra}"),
        )
        .replace("/ingest/{topic.2}", "/ingest")
}

/// Records in one JSON-array request.
fn records_in(request: &serde_json::Value) -> usize {
    serde_json::from_str::<Vec<serde_json::Value>>(request["body"].as_str().unwrap())
        .unwrap()
        .len()
}

#[test]
fn linger_gathers_records_into_one_json_array() {
    let ep = Endpoint::start("[]");
    let config = json_arrays_to_one_url(
        bridge_config(ep.port),
        "linger_ms = 1500\nbatch_max_bytes = 70",
    );
    let s = Sluice::start_config(&config);
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    for i in 0..5 {
        p.publish(publish(
            "sensors/den/temp",
            format!(r#"{{"room":"den","temp":{i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            i + 1,
        ));
    }
    let got = ep.wait_for(2, Duration::from_secs(10));
    // Each transformed record is 20 bytes: 70 bytes hold 3 of them.
    let sizes: Vec<usize> = got.iter().map(records_in).collect();
    assert_eq!(sizes, vec![3, 2], "{got:?}");
}

/// With `ack = "sink"` the PUBACKs wait for the endpoint, but the
/// publisher's connection keeps reading meanwhile, so one request carries
/// many of its records. (It used to read a kilobyte per confirmation: with
/// 1 KB messages, one record per request.)
#[test]
fn with_ack_sink_a_publisher_is_read_while_its_acks_wait() {
    const MESSAGES: u16 = 200;
    let ep = Endpoint::start("[]");
    let config = json_arrays_to_one_url(bridge_config_with(ep.port, "ack = \"sink\""), "");
    let s = Sluice::start_config(&config);
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let pad = "x".repeat(1000);
    let burst = (1..=MESSAGES)
        .map(|id| {
            let payload = format!(r#"{{"room":"den","temp":{id},"pad":"{pad}"}}"#);
            publish("sensors/den/temp", payload.as_bytes(), QoS::AtLeastOnce, id)
        })
        .collect();
    p.publish_burst_qos1(burst, Duration::from_secs(15));
    let requests = ep.delivered();
    let records: usize = requests.iter().map(records_in).sum();
    assert_eq!(
        records,
        usize::from(MESSAGES),
        "every acked record was delivered"
    );
    assert!(
        requests.len() <= usize::from(MESSAGES) / 4,
        "{} requests for {MESSAGES} records",
        requests.len()
    );
}
