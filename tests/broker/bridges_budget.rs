//! Transforms run on a budget: a rule that loops or recurses forever on
//! some message dead-letters that message; the broker, its other bridges
//! and its shutdown carry on, and a restart does not meet it again.

use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::bridges::Endpoint;
use crate::harness::*;

/// Three bridges to one endpoint: one loops on `{"loop":true}`, one
/// recurses without end on `{"deep":true}`, one is plain.
fn config(port: u16) -> String {
    let bridge = |name: &str, filter: &str, rule: &str| {
        format!(
            r#"
[[bridges]]
name = "{name}"
filters = ["{filter}"]
transform = '{rule}'
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{port}/{name}"
timeout_secs = 2
"#
        )
    };
    format!(
        "drain_timeout_secs = 2\n[[listeners]]\nbind = \"127.0.0.1:0\"\n{}{}{}",
        bridge(
            "loops",
            "loop/#",
            "if .payload.loop then until(false; .) else .payload end"
        ),
        bridge(
            "recurses",
            "deep/#",
            "def f: 1 + f; if .payload.deep then f else .payload end"
        ),
        bridge("plain", "plain/#", ".payload"),
    )
}

fn dead_letter_reasons(s: &Sluice, bridge: &str) -> Vec<String> {
    let file = s
        .data
        .path()
        .join(format!("store/bridges/{bridge}/dead-letter.jsonl"));
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["reason"].as_str().map(str::to_owned))
        .collect()
}

fn wait_dead_letters(s: &Sluice, bridge: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let reasons = dead_letter_reasons(s, bridge);
        if !reasons.is_empty() || Instant::now() > deadline {
            return reasons;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rule_that_never_ends_dead_letters_its_message_and_stops_nothing() {
    let ep = Endpoint::start("[]");
    let mut s = Sluice::start_config(&config(ep.port));
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let q1 = QoS::AtLeastOnce;
    p.publish(publish("loop/a", br#"{"loop":true}"#, q1, 1));
    p.publish(publish("deep/a", br#"{"deep":true}"#, q1, 2));
    p.publish(publish("plain/a", br#"{"n":1}"#, q1, 3));
    p.publish(publish("loop/b", br#"{"n":2}"#, q1, 4));
    p.publish(publish("deep/b", br#"{"n":3}"#, q1, 5));
    let got = ep.wait_for(3, Duration::from_secs(20));
    let mut paths: Vec<&str> = got.iter().filter_map(|r| r["path"].as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths, ["/loops", "/plain", "/recurses"], "{got:?}");

    for (bridge, why) in [
        ("loops", "steps|longer than"),
        ("recurses", "deeply|steps|longer than"),
    ] {
        let reasons = wait_dead_letters(&s, bridge, Duration::from_secs(10));
        assert_eq!(reasons.len(), 1, "{bridge}: {reasons:?}");
        assert!(
            reasons[0].contains("jq rule stopped")
                && why.split('|').any(|w| reasons[0].contains(w)),
            "{bridge}: {reasons:?}"
        );
    }
    // Still serving.
    let (mut q, _) = Raw::connect(s.port, V5, "other", true);
    q.publish(publish("plain/b", br#"{"n":4}"#, q1, 1));
    assert!(ep.wait_for(4, Duration::from_secs(10)).len() >= 4);

    s.signal("TERM");
    let started = Instant::now();
    let status = s
        .wait_exit(Duration::from_secs(8))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?} after {:?}", started.elapsed());

    // A restart neither crashes nor meets the bad messages again.
    let s = s.restart();
    let (mut p, _) = Raw::connect(s.port, V4, "dev2", true);
    p.publish(publish("deep/c", br#"{"n":5}"#, q1, 1));
    assert!(ep.wait_for(5, Duration::from_secs(10)).len() >= 5);
    assert_eq!(dead_letter_reasons(&s, "recurses").len(), 1);
}

#[test]
fn a_rule_that_never_ends_on_a_sample_is_refused_at_start() {
    let ep = Endpoint::start("[]");
    let toml = config(ep.port).replace(
        "if .payload.loop then until(false; .) else .payload end",
        "until(false; .)",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = std::process::Command::new(SLUICE)
        .args(["--config", path.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice started with a rule that never ends");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("`loops`") && err.contains("sample"), "{err}");
}

/// 300 payloads that do not decode, to a bridge whose dead-letter files may
/// hold 16 KiB: the files stay within it (keeping the newest), every line
/// left out is counted, and the log says so in a few lines, not 300.
#[test]
fn dead_letter_files_and_their_log_lines_are_bounded() {
    let ep = Endpoint::start("[]");
    let toml = format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"
[[bridges]]
name = "bad"
filters = ["bad/#"]
max_bytes = 65536
dead_letter_max_bytes = 16384
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{}/bad"
"#,
        ep.port
    );
    let s = Sluice::start_config(&toml);
    let (mut p, _) = Raw::connect(s.port, V4, "dev", true);
    let payload = vec![b'x'; 100];
    let burst = (1..=300u16)
        .map(|i| publish("bad/dev", &payload, QoS::AtLeastOnce, i))
        .collect();
    p.publish_burst_qos1(burst, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (_, body) = s.admin("GET", "/api/v1/bridges/bad", None, None);
        let st: serde_json::Value = serde_json::from_str(&body).unwrap();
        if st["dead_lettered"] == 300 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["dead_lettered"], 300, "{status}");
    let dir = s.data.path().join("store/bridges/bad");
    let lines = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_default()
            .lines()
            .count() as u64
    };
    let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    let total = size("dead-letter.jsonl") + size("dead-letter.1.jsonl");
    assert!(total <= 16384, "{total} bytes of dead letters");
    let kept = lines("dead-letter.jsonl") + lines("dead-letter.1.jsonl");
    let discarded = status["dead_letter_discarded"].as_u64().unwrap();
    assert!(discarded > 0, "{status}");
    assert_eq!(kept + discarded, 300, "{status}");
    let (_, metrics) = s.admin("GET", "/metrics", None, None);
    assert_eq!(
        metric(
            &metrics,
            "sluice_bridge_dead_letter_discarded_total{bridge=\"bad\"}"
        ),
        Some(discarded as f64)
    );
    let logged = s
        .log_lines()
        .iter()
        .filter(|l| l.contains("dead-lettered"))
        .count();
    assert!(logged <= 10, "{logged} log lines about dead letters");
}
