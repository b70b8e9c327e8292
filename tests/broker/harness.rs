//! Test harness: runs the real `sluice` binary on an ephemeral port and
//! offers a raw MQTT client built on the project's codec, for tests that
//! need exact control over the bytes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice::codec::*;

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A running broker with its own data directory; killed when dropped.
pub struct Sluice {
    child: Child,
    pub port: u16,
    /// (protocol, port) of every listener, in configuration order.
    pub listeners: Vec<(String, u16)>,
    log: mpsc::Receiver<String>,
    /// The lines printed up to "sluice started" (start-up warnings).
    pub startup_log: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Kept so restarts find the same state; removed with the broker.
    pub data: std::sync::Arc<tempfile::TempDir>,
    /// RLIMIT_FSIZE for the process (SIGXFSZ ignored, so a write past it
    /// fails with EFBIG): a disk that refuses writes.
    file_size_limit: Option<u64>,
}

impl Sluice {
    pub fn start() -> Sluice {
        Sluice::start_with(&[])
    }

    /// Starts with extra `SLUICE__…` environment overrides.
    pub fn start_with(env: &[(&str, &str)]) -> Sluice {
        Sluice::start_args(&[], env)
    }

    pub fn start_with_config(path: &Path) -> Sluice {
        Sluice::start_args(&["--config", path.to_str().unwrap()], &[])
    }

    pub fn start_args(args: &[&str], env: &[(&str, &str)]) -> Sluice {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp data dir"));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Sluice::spawn(args, env, data, 0, None)
    }

    /// Starts with writes to any file limited to `bytes` (see
    /// `file_size_limit`).
    pub fn start_with_file_size_limit(bytes: u64) -> Sluice {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp data dir"));
        Sluice::spawn(Vec::new(), Vec::new(), data, 0, Some(bytes))
    }

    fn spawn(
        args: Vec<String>,
        env: Vec<(String, String)>,
        data: std::sync::Arc<tempfile::TempDir>,
        port: u16,
        file_size_limit: Option<u64>,
    ) -> Sluice {
        let mut cmd = Command::new(SLUICE);
        if let Some(limit) = file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.args(&args);
        // A config file brings its own listeners.
        let uses_config = args.iter().any(|a| a == "--config");
        if !uses_config {
            cmd.args(["--bind", &format!("127.0.0.1:{port}")]);
        }
        cmd.arg("--data-dir").arg(data.path().join("store"));
        // Tests run side by side: never the default admin port.
        if !args.iter().any(|a| a == "--admin-bind") {
            cmd.args(["--admin-bind", "127.0.0.1:0"]);
        }
        cmd.env("RUST_LOG", "sluice=debug");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned from here on, so a failed start still kills the process.
        let mut sluice = Sluice {
            child,
            port: 0,
            listeners: Vec::new(),
            log: rx,
            startup_log: Vec::new(),
            args,
            env,
            data,
            file_size_limit,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match sluice.log.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("sluice did not start (no 'sluice started' line)"),
            };
            sluice.startup_log.push(line.clone());
            if line.contains("listening") {
                let field = |name: &str| {
                    line.split(&format!("{name}="))
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .map(|s| s.trim_matches('"').to_string())
                };
                let addr = field("addr").expect("addr field");
                let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
                let protocol = field("protocol").unwrap_or_default();
                if sluice.listeners.is_empty() {
                    sluice.port = port;
                }
                sluice.listeners.push((protocol, port));
            }
            if line.contains("sluice started") {
                return sluice;
            }
        }
    }

    /// Starts with a configuration file (its listeners, usually on port 0).
    pub fn start_config(toml: &str) -> Sluice {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp data dir"));
        let path = data.path().join("sluice.toml");
        std::fs::write(&path, toml).expect("write config");
        let args = vec!["--config".to_string(), path.to_string_lossy().into_owned()];
        Sluice::spawn(args, Vec::new(), data, 0, None)
    }

    /// The port of the first listener of `protocol` ("tcp", "tls", "ws", "wss").
    pub fn port_of(&self, protocol: &str) -> u16 {
        self.listeners
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, port)| *port)
            .unwrap_or_else(|| panic!("no {protocol} listener in {:?}", self.listeners))
    }

    /// Sends SIGHUP (reload password file, ACL, TLS certificates).
    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    /// Kills the broker with SIGKILL (no cleanup at all); its data
    /// directory stays for [`Sluice::kill_and_restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the broker with SIGKILL (no cleanup at all) and starts it
    /// again on the same port and data directory.
    pub fn kill_and_restart(mut self) -> Sluice {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.respawn()
    }

    /// Stops the broker with SIGTERM (graceful) and starts it again on the
    /// same port and data directory.
    pub fn restart(mut self) -> Sluice {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        // Bridges may use their drain timeout (10 s by default).
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "sluice did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.respawn()
    }

    fn respawn(self) -> Sluice {
        let (args, env, data, port, limit) = (
            self.args.clone(),
            self.env.clone(),
            self.data.clone(),
            self.port,
            self.file_size_limit,
        );
        drop(self);
        Sluice::spawn(args, env, data, port, limit)
    }

    /// Starts again on the same port and data directory without the file
    /// size limit, once the process has exited (or killing it).
    pub fn respawn_without_limits(mut self) -> Sluice {
        self.file_size_limit = None;
        self.respawn()
    }

    /// The admin API's port.
    pub fn admin_port(&self) -> u16 {
        self.port_of("admin")
    }

    /// One request to the admin API; (status, body).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        http_request(self.admin_port(), method, path, token, body)
    }

    /// Sends `signal` (e.g. "TERM", "INT") without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Log lines printed so far (drains them).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Polls until the broker's RSS is at most `bound` (allocators give
    /// memory back with a delay); returns the last reading.
    pub fn rss_settles_below(&self, bound: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let rss = self.rss_bytes();
            if rss <= bound || Instant::now() >= deadline {
                return rss;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The test failed: what the broker said last is the first clue.
            let lines: Vec<String> = self.log.try_iter().collect();
            let from = lines.len().saturating_sub(150);
            eprintln!("--- last {} broker log lines ---", lines.len() - from);
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for the
/// admin API; (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of one series in a Prometheus exposition, e.g.
/// `metric(&text, "sluice_messages_received_total{qos=\"1\"}")`.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// A blocking MQTT client speaking through the project's codec.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// A CONNECT without properties, except that v5 ones decline problem
/// information: tests compare the packets that end connections exactly,
/// and the words of their Reason Strings are not part of the protocol
/// (tests/broker/closing.rs checks them).
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 60,
        properties: Properties {
            request_problem_information: version.is_v5().then_some(0),
            ..Properties::default()
        },
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(pid(id))
        },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

pub fn sub_opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

impl Raw {
    pub fn open(port: u16, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to sluice");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Opens a connection and completes CONNECT/CONNACK; panics unless accepted.
    pub fn connect(
        port: u16,
        version: ProtocolVersion,
        client_id: &str,
        clean: bool,
    ) -> (Raw, ConnAck) {
        Raw::connect_with(port, connect_packet(version, client_id, clean))
    }

    pub fn connect_with(port: u16, c: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(port, c.protocol);
        raw.send(&Packet::Connect(Box::new(c)));
        match raw.recv() {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, ReasonCode::Success, "CONNACK refused: {ack:?}");
                (raw, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// As [`Raw::connect_with`], but `None` instead of a panic when the
    /// broker is not there (restarting) or does not accept: for clients
    /// that reconnect through crashes.
    pub fn try_connect_with(port: u16, c: Connect) -> Option<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_nodelay(true).ok()?;
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            version: c.protocol,
        };
        raw.send(&Packet::Connect(Box::new(c)));
        match raw.recv() {
            Some(Packet::ConnAck(ack)) if ack.code == ReasonCode::Success => Some(raw),
            _ => None,
        }
    }

    pub fn send(&mut self, p: &Packet) {
        let mut buf = BytesMut::new();
        encode_packet(p, self.version, &mut buf).unwrap();
        self.send_bytes(&buf);
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Next packet within 5 s; `None` on close or timeout.
    pub fn recv(&mut self) -> Option<Packet> {
        self.recv_timeout(Duration::from_secs(5))
    }

    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = Some(self.version);
            if let Some(p) =
                decode_packet(&mut self.buf, v, usize::MAX).expect("broker sent a bad packet")
            {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Asserts that nothing arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(p) = self.recv_timeout(d) {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Reads until the broker closes the connection; returns what came before.
    pub fn until_closed(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "connection not closed; got {out:?}"
            );
            let v = Some(self.version);
            match decode_packet(&mut self.buf, v, usize::MAX) {
                Ok(Some(p)) => {
                    out.push(p);
                    continue;
                }
                Ok(None) => {}
                Err(e) => panic!("broker sent a bad packet: {e}"),
            }
            self.stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return out,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn subscribe(&mut self, id: u16, filters: &[(&str, SubscriptionOptions)]) -> SubAck {
        self.subscribe_with(id, filters, Properties::default())
    }

    pub fn subscribe_with(
        &mut self,
        id: u16,
        filters: &[(&str, SubscriptionOptions)],
        properties: Properties,
    ) -> SubAck {
        let filters = filters.iter().map(|(f, o)| ((*f).into(), *o)).collect();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            properties,
            filters,
        }));
        match self.recv() {
            Some(Packet::SubAck(a)) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow from the publisher's side.
    pub fn publish(&mut self, p: Publish) {
        let qos = p.qos;
        self.send(&Packet::Publish(p));
        // An acknowledgement waits for a group commit (or a bridge's disk
        // buffer), which a loaded machine can hold up for seconds.
        let ack_within = Duration::from_secs(15);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv_timeout(ack_within) {
                Some(Packet::PubAck(_)) => {}
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => match self.recv_timeout(ack_within) {
                Some(Packet::PubRec(a)) => {
                    self.send(&Packet::PubRel(Ack::new(a.packet_id)));
                    match self.recv() {
                        Some(Packet::PubComp(_)) => {}
                        other => panic!("expected PUBCOMP, got {other:?}"),
                    }
                }
                other => panic!("expected PUBREC, got {other:?}"),
            },
        }
    }

    /// Sends QoS 1 publishes in one write, as a client with a wide window
    /// would, then waits for all their PUBACKs (each within `within`).
    pub fn publish_burst_qos1(&mut self, burst: Vec<Publish>, within: Duration) {
        let mut bytes = BytesMut::new();
        let total = burst.len();
        for p in burst {
            encode_packet(&Packet::Publish(p), self.version, &mut bytes).unwrap();
        }
        self.send_bytes(&bytes);
        for acked in 0..total {
            match self.recv_timeout(within) {
                Some(Packet::PubAck(_)) => {}
                other => panic!("after {acked} of {total} acks: {other:?}"),
            }
        }
    }

    /// Receives a PUBLISH, acknowledging it (QoS 1: PUBACK; QoS 2: PUBREC,
    /// and PUBCOMP for any PUBREL met while waiting).
    pub fn expect_publish(&mut self) -> Publish {
        loop {
            match self.recv() {
                Some(Packet::PubRel(a)) => self.send(&Packet::PubComp(Ack::new(a.packet_id))),
                Some(Packet::Publish(p)) => {
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))),
                        (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(Ack::new(id))),
                        _ => {}
                    }
                    return p;
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        // Wait for the broker to close, so its session bookkeeping is done.
        let _ = self.until_closed();
    }

    /// Drops the TCP connection without DISCONNECT (an abnormal loss).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

pub const V4: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

// Helpers for the subscribe, retain, will, v5_features and malformed tests.

impl Raw {
    /// The next PUBLISH within `d`, acknowledged as `expect_publish` does
    /// (PUBREL met on the way gets its PUBCOMP); `None` if none arrives.
    /// Panics on any other packet.
    pub fn publish_within(&mut self, d: Duration) -> Option<Publish> {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left)? {
                Packet::PubRel(a) => self.send(&Packet::PubComp(Ack::new(a.packet_id))),
                Packet::Publish(p) => {
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))),
                        (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(Ack::new(id))),
                        _ => {}
                    }
                    return Some(p);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    /// Every PUBLISH that arrives until `quiet` passes without one, each
    /// acknowledged.
    pub fn collect_publishes(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(p) = self.publish_within(quiet) {
            out.push(p);
        }
        out
    }

    /// The next packet, which must be a PUBLISH; not acknowledged.
    pub fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// A v5 CONNECT with the given session expiry interval (0 = property absent).
pub fn connect_v5(client_id: &str, clean: bool, session_expiry: u32) -> Connect {
    let mut c = connect_packet(V5, client_id, clean);
    if session_expiry > 0 {
        c.properties.session_expiry_interval = Some(session_expiry);
    }
    c
}

/// A will message without properties.
pub fn will_msg(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Properties::default(),
    }
}

/// A DISCONNECT packet with `reason` and no properties.
pub fn disconnect_packet(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect::new(reason))
}
