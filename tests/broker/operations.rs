//! Operating the broker: log formats, configuration checks from the CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sluice::codec::QoS;

use crate::harness::*;

#[test]
fn json_log_format_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(SLUICE)
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("store"))
        .env("SLUICE__LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen_listening = false;
    for line in BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take(10)
    {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{v}"
        );
        if v["fields"]["message"] == "listening" {
            assert!(v["fields"]["addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"));
            seen_listening = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen_listening);
}

#[test]
fn check_config_accepts_the_examples_and_names_bad_keys() {
    for example in [
        "examples/sluice.toml",
        "examples/bridges/http-alerts.toml",
        "examples/bridges/kafka-telemetry.toml",
        "examples/bridges/edge-to-cloud.toml",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(example);
        let out = Command::new(SLUICE)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "log_format = \"xml\"\n").unwrap();
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("xml"), "{err}");
}

/// Threads the runtime named for connections, read from /proc.
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task list")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "tokio-rt-worker")
        .count()
}

#[test]
fn worker_threads_sets_the_threads_that_serve_connections() {
    let s = Sluice::start_with(&[("SLUICE__WORKER_THREADS", "1")]);
    assert_eq!(runtime_workers(s.pid()), 1);
    // And one thread serves publishers and subscribers alike.
    for v in [V4, V5] {
        let (mut sub, _) = Raw::connect(s.port, v, "one-thread-sub", true);
        sub.subscribe(1, &[("one/thread", sub_opts(QoS::AtLeastOnce))]);
        let (mut p, _) = Raw::connect(s.port, v, "one-thread-pub", true);
        p.publish(publish("one/thread", b"hi", QoS::AtLeastOnce, 1));
        let got = sub.collect_publishes(std::time::Duration::from_millis(300));
        assert_eq!(got.len(), 1, "{v:?}");
        assert_eq!(&*got[0].payload, b"hi");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = Sluice::start();
    assert_eq!(runtime_workers(d.pid()), cores, "default: one per core");
}
