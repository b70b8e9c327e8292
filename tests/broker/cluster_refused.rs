//! Until routing across nodes exists, a `[cluster]` table stops the broker
//! at start with a clear message (it would otherwise run as a lone node
//! the operator believes clustered); a bad table is refused naming its key.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::SLUICE;

/// Starts `sluice --config FILE` with `toml` in FILE; the exit code and
/// stderr once it exits, killed (and failed) if it runs for 10 s.
fn start_with(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cluster.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut child = Command::new(SLUICE)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice started with a [cluster] table");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_cluster_table_stops_the_start_with_a_clear_message() {
    let (code, err) = start_with(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[cluster]\nservers = [\"nats://127.0.0.1:4222\"]\nnode_name = \"n1\"\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cluster mode is not available yet in this build")
            && err.contains("cluster.toml"),
        "{err}"
    );

    let (code, err) = start_with("[cluster]\nservers = [\"nats://127.0.0.1:4222\"]\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cluster.node_name"), "{err}");
}
