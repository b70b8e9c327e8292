//! The showcase (issue 10): the sensor simulator against a real broker
//! (TCP, mutual TLS, a broker killed mid-run), `examples/demo.sh` end to end
//! (Kafka peer, bridges, dashboard, and nothing left running after it), the
//! example configurations (`docker/` is checked in `showcase_docker`).
//!
//! The examples `sensor_sim` and `kafka_tail` are run as built binaries.
//! `cargo test --all-targets` compiles examples only as test harnesses, so
//! the first test that needs them runs `cargo build --example ...` once
//! (a no-op when they are up to date).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::harness::*;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a built example, building both showcase examples the first
/// time (next to the `sluice` binary: target/debug/examples/).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut child = Command::new(env!("CARGO"))
            .current_dir(repo())
            .args(["build", "--quiet", "--workspace", "--locked"])
            .args(["--example", "sensor_sim", "--example", "kafka_tail"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run cargo: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("cargo build --example failed:\n{err}"))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("cargo build --example took over 10 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = Path::new(SLUICE)
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Runs a command to its end, killing it after `within`.
fn run_bounded(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {within:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn generate_certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(repo().join("certs/generate.sh"))
        .arg(dir.path().join("certs"))
        .status()
        .expect("run certs/generate.sh");
    assert!(status.success(), "certs/generate.sh failed");
    dir
}

/// A subscriber to `sensors/#` at QoS 1 on `port`.
fn counter(port: u16, client_id: &str, clean: bool) -> Raw {
    let (mut sub, _) = Raw::connect(port, V4, client_id, clean);
    let ack = sub.subscribe(1, &[("sensors/#", sub_opts(QoS::AtLeastOnce))]);
    assert_eq!(ack.reasons, vec![1], "SUBACK: QoS 1 granted");
    sub
}

/// Readings received, by topic: the set of `seq` values (duplicates, which
/// QoS 1 allows after a reconnect, collapse). Every payload must be a
/// complete reading.
fn collect_readings(
    sub: &mut Raw,
    expected: usize,
    within: Duration,
) -> BTreeMap<String, BTreeSet<u64>> {
    let mut got: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let deadline = Instant::now() + within;
    while got.values().map(BTreeSet::len).sum::<usize>() < expected && Instant::now() < deadline {
        let Some(p) = sub.publish_within(Duration::from_millis(500)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&p.payload)
            .unwrap_or_else(|e| panic!("reading on {} is not JSON: {e}", &*p.topic));
        for field in ["temperature", "humidity", "battery"] {
            assert!(v[field].is_f64() || v[field].is_u64(), "{field} in {v}");
        }
        assert!(v["ts"].as_u64().unwrap() > 1_600_000_000_000, "ts in {v}");
        let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("seq in {v}"));
        got.entry(p.topic.to_string()).or_default().insert(seq);
    }
    got
}

/// Every sensor of `count` sent `messages` readings, seq 1..=messages, on
/// `sensors/site-S/sensor-NNN/telemetry` (3 sites).
fn assert_complete(got: &BTreeMap<String, BTreeSet<u64>>, count: usize, messages: u64) {
    let want: BTreeSet<u64> = (1..=messages).collect();
    for i in 1..=count {
        let topic = format!("sensors/site-{}/sensor-{i:03}/telemetry", (i - 1) % 3 + 1);
        let seqs = got.get(&topic).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&seqs).collect();
        assert!(missing.is_empty(), "{topic}: missing seq {missing:?}");
    }
    assert_eq!(got.len(), count, "unexpected topics: {:?}", got.keys());
}

fn summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("sensor_sim:"))
        .unwrap_or_else(|| {
            panic!(
                "no summary line; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

#[test]
fn sensor_sim_delivers_every_reading_over_tcp() {
    // Built (if need be) before any timing starts.
    let bin = example("sensor_sim");
    let s = Sluice::start();
    let mut sub = counter(s.port, "counter", true);
    let (count, messages) = (5, 40);
    let sim = std::thread::spawn({
        let port = s.port.to_string();
        move || {
            run_bounded(
                Command::new(bin).args([
                    "--port",
                    &port,
                    "--count",
                    &count.to_string(),
                    "--messages",
                    &messages.to_string(),
                    "--rate",
                    "100",
                    "--qos",
                    "1",
                ]),
                Duration::from_secs(60),
            )
        }
    });
    let got = collect_readings(&mut sub, count * messages as usize, Duration::from_secs(60));
    let out = sim.join().unwrap();
    assert!(out.status.success(), "{}", summary(&out));
    assert!(
        summary(&out).contains("sent 200, acked 200, unacked 0"),
        "{}",
        summary(&out)
    );
    assert_complete(&got, count, messages);
}

#[test]
fn sensor_sim_over_mutual_tls() {
    // Built (if need be) before any timing starts.
    let bin = example("sensor_sim");
    let dir = generate_certs();
    let certs = dir.path().join("certs");
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let s = Sluice::start_config(&format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"
protocol = "tcp"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "tls"
[listeners.tls]
cert = "{}"
key = "{}"
client_ca = "{}"
require_certificate = true
"#,
        c("server-chain.pem"),
        c("server.key"),
        c("ca.pem")
    ));
    let tls = s.port_of("tls").to_string();
    let mut sub = counter(s.port_of("tcp"), "counter", true);
    let sim = |cafile: &str, extra: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "localhost", "--port", &tls, "--cafile", cafile]);
        cmd.args(["--count", "4", "--messages", "25", "--rate", "50"]);
        cmd.args(extra);
        run_bounded(&mut cmd, Duration::from_secs(60))
    };

    let out = sim(
        &c("ca.pem"),
        &["--cert", &c("client.pem"), "--key", &c("client.key")],
    );
    assert!(out.status.success(), "{}", summary(&out));
    assert!(summary(&out).contains("acked 100, unacked 0"));
    assert_complete(
        &collect_readings(&mut sub, 100, Duration::from_secs(30)),
        4,
        25,
    );

    // A broker certificate from another CA is refused, and said so; and so
    // is a client without a certificate. Nothing gets through.
    let limits = ["--duration", "2", "--drain-timeout", "1"];
    let (cert, key) = (c("client.pem"), c("client.key"));
    let mut args = vec!["--cert", &cert, "--key", &key];
    args.extend(limits);
    let out = sim(&c("other-ca.pem"), &args);
    assert_eq!(out.status.code(), Some(1), "{}", summary(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid peer certificate"), "{err}");
    let out = sim(&c("ca.pem"), &limits);
    assert_eq!(out.status.code(), Some(1), "{}", summary(&out));
    assert!(summary(&out).contains("acked 0"), "{}", summary(&out));
    if let Some(p) = sub.publish_within(Duration::from_millis(300)) {
        panic!("a refused sensor got through: {p:?}");
    }
}

#[test]
fn sensor_sim_reconnects_and_resends_across_a_broker_crash() {
    // Built (if need be) before any timing starts.
    let bin = example("sensor_sim");
    let s = Sluice::start();
    // A persistent subscriber, offline while the sensors run: the broker
    // keeps (on disk) every reading it acknowledged for it.
    let sub = counter(s.port, "counter", false);
    sub.disconnect();
    let (count, messages) = (4, 150);
    let sim = std::thread::spawn({
        let port = s.port.to_string();
        move || {
            run_bounded(
                Command::new(bin).args([
                    "--port",
                    &port,
                    "--count",
                    &count.to_string(),
                    "--messages",
                    &messages.to_string(),
                    "--rate",
                    "50",
                    "--drain-timeout",
                    "20",
                ]),
                Duration::from_secs(90),
            )
        }
    });
    std::thread::sleep(Duration::from_millis(1200));
    let s = s.kill_and_restart();
    let out = sim.join().unwrap();
    let line = summary(&out);
    assert!(out.status.success(), "{line}");
    assert!(line.contains("unacked 0"), "{line}");
    let reconnects: u64 = line
        .split("reconnects ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reconnect count in {line}"));
    assert!(
        reconnects >= count as u64,
        "every sensor reconnects: {line}"
    );
    // Its session (and subscription) survived the crash: queued readings
    // flow as soon as it is back.
    let (mut sub, ack) = Raw::connect(s.port, V4, "counter", false);
    assert!(ack.session_present, "the subscriber's session was lost");
    let got = collect_readings(&mut sub, count * messages as usize, Duration::from_secs(60));
    assert_complete(&got, count, messages);
}

/// A running `examples/demo.sh`, in a process group of its own; killed with
/// everything it listed if the test fails.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Unique to this run: every temporary file of the demo is under it.
    marker: tempfile::TempDir,
    pids: Vec<u32>,
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        assert!(
            Command::new("tansu")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "tansu is not on PATH (tests/install-deps.sh installs it)"
        );
        let marker = tempfile::Builder::new()
            .prefix("showcase-demo-")
            .tempdir()
            .unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("examples/demo.sh"))
            .args(["--no-build", "--sensors", "4", "--rate", "2"])
            .args(extra)
            .env("TMPDIR", marker.path())
            .env("SLUICE_BIN", SLUICE)
            .env("SENSOR_SIM_BIN", example("sensor_sim"))
            .env("KAFKA_TAIL_BIN", example("kafka_tail"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("run examples/demo.sh");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Demo {
            child,
            lines: rx,
            seen: Vec::new(),
            marker,
            pids: Vec::new(),
        }
    }

    /// Reads output until a line satisfies `pred`; None after `within`.
    fn wait_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some(p) = line.split("pids: ").nth(1) {
                self.pids = p
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
            }
            self.seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// The admin port, from the "Dashboard: http://127.0.0.1:PORT/dashboard/" line.
    fn admin_port(&mut self) -> u16 {
        let line = self
            .wait_line(Duration::from_secs(60), |l| l.contains("Dashboard:"))
            .unwrap_or_else(|| panic!("no dashboard URL in:\n{}", self.output()));
        line.split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    }

    /// Waits for the script's exit (draining its output meanwhile).
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // The rest of the output, up to the readers' EOF.
                while self
                    .wait_line(Duration::from_millis(500), |_| false)
                    .is_some()
                {}
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "demo.sh did not exit within {within:?}:\n{}",
                self.output()
            );
            let _ = self.wait_line(Duration::from_millis(100), |_| false);
        }
    }

    /// Processes of this run still alive: anything in its process group
    /// (the script's helpers), and any process whose environment or command
    /// line names this run's directory (every child inherits TMPDIR=it).
    /// Zombies are dead and do not count.
    fn leftovers(&self) -> Vec<(u32, String)> {
        let marker = self.marker.path().to_string_lossy().into_owned();
        let pgid = self.child.id().to_string();
        let mut left = Vec::new();
        let out = Command::new("pgrep")
            .args(["-a", "-g", &pgid])
            .output()
            .expect("pgrep");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(pid) = line.split(' ').next().and_then(|p| p.parse().ok()) {
                if alive(pid) {
                    left.push((pid, line.to_owned()));
                }
            }
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let read = |f: &str| std::fs::read(entry.path().join(f)).unwrap_or_default();
            let named = [read("environ"), read("cmdline")]
                .iter()
                .any(|b| String::from_utf8_lossy(b).contains(&marker));
            if named && alive(pid) && !left.iter().any(|(p, _)| *p == pid) {
                let cmd = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
                left.push((pid, cmd));
            }
        }
        left
    }
}

/// Whether `pid` is a process that is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z'))
    })
}

impl Drop for Demo {
    /// Kills what a failed test left: the script's group while it runs,
    /// and every live process of this run (found afresh, never by a pid
    /// remembered from earlier, which may belong to someone else by now).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        for (pid, _) in self.leftovers() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

fn assert_dashboard_served(admin: u16) {
    let (status, page) = http_request(admin, "GET", "/dashboard/", None, None);
    assert_eq!(status, 200);
    assert!(page.contains("mqtt-ws.js") && page.contains("id=\"tree\""));
    let (status, cfg) = http_request(admin, "GET", "/dashboard/config.json", None, None);
    assert_eq!(status, 200);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let protocols: Vec<&str> = cfg["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["protocol"].as_str())
        .collect();
    assert!(protocols.contains(&"wss"), "{cfg}");
}

#[test]
fn demo_smoke_reaches_kafka_and_leaves_nothing_running() {
    let mut demo = Demo::start(&["--smoke", "8"]);
    let admin = demo.admin_port();
    assert_dashboard_served(admin);
    let status = demo.wait_exit(Duration::from_secs(120));
    let out = demo.output();
    assert!(
        status.success(),
        "demo.sh --smoke failed ({status}):\n{out}"
    );
    assert!(out.contains("smoke OK"), "{out}");
    // Readings made it through the jq transform into Kafka...
    let kafka: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("[kafka] telemetry["))
        .collect();
    assert!(kafka.len() >= 4, "too few Kafka records:\n{out}");
    let json = &kafka[0][kafka[0].find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(v["site"].as_str().unwrap().starts_with("site-"), "{v}");
    assert!(v["device"].as_str().unwrap().starts_with("sensor-"), "{v}");
    assert!(v.get("ts").is_none(), "not transformed: {v}");
    // ...and the sensors' TLS connections were all acknowledged.
    assert!(
        out.lines()
            .any(|l| l.starts_with("[sensors] sensor_sim: 4 sensors") && l.contains("unacked 0")),
        "{out}"
    );
    assert!(demo.pids.len() >= 5, "no pid list in:\n{out}");
    for pid in &demo.pids {
        assert!(!alive(*pid), "child {pid} outlived the script");
    }
    let left = demo.leftovers();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        std::fs::read_dir(demo.marker.path())
            .unwrap()
            .next()
            .is_none(),
        "the work directory was not removed"
    );
}

#[test]
fn demo_stops_everything_on_sigint() {
    let mut demo = Demo::start(&["--free-ports"]);
    let admin = demo.admin_port();
    assert!(
        demo.wait_line(Duration::from_secs(60), |l| l
            .starts_with("[kafka] telemetry["))
            .is_some(),
        "nothing reached Kafka:\n{}",
        demo.output()
    );
    assert_dashboard_served(admin);
    // As the terminal's Ctrl-C would, but to the script alone: its trap
    // must stop the children (each runs in a session of its own).
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = demo.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{}", demo.output());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopping took {:?}",
        started.elapsed()
    );
    assert!(demo.output().contains("stopped"), "{}", demo.output());
    assert!(demo.pids.len() >= 5, "no pid list in:\n{}", demo.output());
    for pid in &demo.pids {
        assert!(!alive(*pid), "child {pid} outlived the script");
    }
    let left = demo.leftovers();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_err(),
        "the broker still answers on {admin}"
    );
}

/// Every configuration under examples/ and docker/ passes `sluice
/// check-config`, run where the demo runs them: beside a certs/ directory.
#[test]
fn every_example_config_passes_check_config() {
    let dir = generate_certs();
    let mut configs = Vec::new();
    for root in ["examples", "docker"] {
        let mut stack = vec![repo().join(root)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    configs.push(p);
                }
            }
        }
    }
    assert!(configs.len() >= 6, "{configs:?}");
    for path in configs {
        let out = Command::new(SLUICE)
            .current_dir(dir.path())
            .arg("check-config")
            .arg(&path)
            // kafka-managed.toml's API secret: without it the check fails,
            // as start-up would (bridges_kafka_secure checks that).
            .env("KAFKA_API_SECRET", "not-a-secret")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
