//! The Kafka peer of the Kafka bridge tests: a tansu broker (Kafka protocol,
//! in-memory storage) on an ephemeral port, killed when dropped, and a
//! consumer that reads a topic from its beginning.
//!
//! tansu 0.6.0 is expected on PATH (`tests/install-deps.sh` installs it).
//! Its log goes to a file in the fixture's temp directory, not to the
//! test's output: it is chatty, and only of use when a test fails.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The header the Kafka sink puts on every message: the bridge's record id.
pub const MSG_ID_HEADER: &str = "sluice-msg-id";

/// A running tansu broker.
pub struct Tansu {
    child: Child,
    pub port: u16,
    /// Where tansu's CLI reaches it (`tcp://host:port`): its port, or a
    /// relay that logs the CLI in (see `kafka_fronts`).
    cli_broker: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How a tansu is started besides its port.
#[derive(Debug, Clone, Copy, Default)]
pub struct TansuSetup {
    /// `--authentication`: clients must log in with SASL (SCRAM).
    pub authentication: bool,
    /// The port tansu tells clients to use (a front's) instead of its own.
    pub advertised_port: Option<u16>,
}

impl Tansu {
    /// Starts tansu on a free port and waits until it accepts connections.
    /// The port is found by binding port 0 and letting it go, so another
    /// process may take it first: then tansu exits and the next port is
    /// tried.
    pub fn start() -> Tansu {
        Tansu::start_with(TansuSetup::default())
    }

    pub fn start_with(setup: TansuSetup) -> Tansu {
        let dir = tempfile::tempdir().expect("temp dir for tansu");
        let log = dir.path().join("tansu.log");
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_tansu(port, &log, setup);
            if wait_until_listening(&mut child, port, Duration::from_secs(10)) {
                return Tansu {
                    child,
                    port,
                    cli_broker: format!("tcp://127.0.0.1:{port}"),
                    log,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "tansu did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `host:port`, for `bootstrap_servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with one partition (so the whole topic is in order);
    /// tansu does not create topics on first use.
    pub fn create_topic(&self, name: &str) {
        self.cli(&["topic", "create", "--partitions", "1", name]);
    }

    /// Sends tansu's CLI to `port` (a relay that logs it in) instead of
    /// tansu's own port.
    pub fn set_cli_port(&mut self, port: u16) {
        self.cli_broker = format!("tcp://127.0.0.1:{port}");
    }

    /// Runs `tansu <command> --broker URL <rest>`, which must succeed.
    fn cli(&self, args: &[&str]) {
        let (command, rest) = args.split_at(2);
        let out = Command::new("tansu")
            .args(command)
            .args(["--broker", &self.cli_broker])
            .args(rest)
            .output()
            .expect("run tansu's CLI");
        assert!(
            out.status.success(),
            "tansu {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is
    /// answered, as with a hung or partitioned Kafka.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Undoes [`Tansu::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} tansu");
    }

    /// What tansu logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A consumer of `topic` (partition 0) from its first message.
    pub fn reader(&self, topic: &str) -> TopicReader {
        TopicReader::new(&self.bootstrap(), topic)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log goes with the temp directory: show its end when a test
        // failed (the harness prints a failed test's output only).
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("--- tansu log (last 30 lines) ---\n{tail}");
        }
    }
}

fn spawn_tansu(port: u16, log: &Path, setup: TansuSetup) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{}", setup.advertised_port.unwrap_or(port));
    let out = std::fs::File::create(log).expect("tansu log file");
    let err = out.try_clone().expect("tansu log file");
    let mut command = Command::new("tansu");
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &advertised])
        .args(["--storage-engine", "memory://tansu/"]);
    if setup.authentication {
        command.arg("--authentication");
    }
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn tansu (tests/install-deps.sh installs it)")
}

/// Whether `child` accepts connections on `port` within `within`; false
/// as soon as it exits (the port was taken).
fn wait_until_listening(child: &mut Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// One message as consumed.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// In order, as on the wire.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The bridge's record id, from the `sluice-msg-id` header; panics if
    /// the header is missing or not a decimal number.
    pub fn msg_id(&self) -> u64 {
        let raw = self
            .header(MSG_ID_HEADER)
            .unwrap_or_else(|| panic!("no {MSG_ID_HEADER} header: {self:?}"));
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{MSG_ID_HEADER} is not a decimal id: {self:?}"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {self:?}"))
    }
}

/// The first copy of each record id, in arrival order: the sink is
/// at-least-once, and a resend repeats ids.
pub fn distinct(messages: &[Received]) -> Vec<&Received> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .filter(|m| seen.insert(m.msg_id()))
        .collect()
}

/// Reads one topic's partition 0 from the beginning. The partition is
/// assigned, not subscribed to: no group to join, nothing committed.
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    got: Vec<Received>,
    last_error: Option<String>,
}

impl TopicReader {
    pub fn new(bootstrap: &str, topic: &str) -> TopicReader {
        TopicReader::with_options(bootstrap, topic, &[])
    }

    /// With librdkafka `options` (TLS, SASL) besides the reader's own.
    pub fn with_options(bootstrap: &str, topic: &str, options: &[(&str, &str)]) -> TopicReader {
        // librdkafka wants a group id even for `assign`; it is never used
        // (no subscription, no commits).
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("reader-{topic}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .set("enable.partition.eof", "false");
        for (name, value) in options {
            config.set(*name, *value);
        }
        let consumer: BaseConsumer = config.create().expect("create the Kafka consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition offset");
        consumer.assign(&tpl).expect("assign the partition");
        TopicReader {
            consumer,
            topic: topic.to_owned(),
            got: Vec::new(),
            last_error: None,
        }
    }

    /// Polls until `done` holds for everything read so far, or `within`
    /// passes; returns everything read so far either way.
    pub fn read_until(
        &mut self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> &[Received] {
        let deadline = Instant::now() + within;
        loop {
            // What has arrived first: `done` may look at every message, so
            // it is not run once per message.
            while self.poll(Duration::ZERO) {}
            if done(&self.got) || Instant::now() >= deadline {
                return &self.got;
            }
            self.poll(Duration::from_millis(100));
        }
    }

    /// Polls until at least `n` distinct record ids arrived, or `within`
    /// passes.
    pub fn read_distinct(&mut self, n: usize, within: Duration) -> &[Received] {
        self.read_until(within, |got| distinct(got).len() >= n)
    }

    /// Everything that arrives until `quiet` passes without a message.
    pub fn read_quiet(&mut self, quiet: Duration) -> &[Received] {
        while self.poll(quiet) {}
        &self.got
    }

    /// One poll; whether a message arrived.
    fn poll(&mut self, timeout: Duration) -> bool {
        match self.consumer.poll(timeout) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                self.got.push(Received {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                true
            }
            Some(Err(e)) => {
                self.last_error = Some(e.to_string());
                false
            }
            None => false,
        }
    }

    /// For failure messages: the topic, what was read, the last error.
    pub fn describe(&self) -> String {
        format!(
            "topic {:?}: {} messages read, last consumer error {:?}",
            self.topic,
            self.got.len(),
            self.last_error
        )
    }
}
