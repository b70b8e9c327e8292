//! Simulated sensors: N devices publishing JSON readings to an MQTT broker
//! with rumqttc, over TCP or TLS.
//!
//! ```sh
//! cargo run --example sensor_sim -- --count 20 --rate 2
//! cargo run --example sensor_sim -- --port 8883 --cafile dev-certs/ca.pem \
//!     --cert dev-certs/client.pem --key dev-certs/client.key --messages 100
//! ```
//!
//! Sensor `i` publishes on `PREFIX/site-S/sensor-NNN/telemetry` (the sensors
//! are spread over `--sites` sites) a reading such as
//! `{"temperature": 21.37, "humidity": 44.1, "battery": 96.2, "seq": 17, "ts": 1732634000123}`;
//! `seq` counts from 1 per sensor, `ts` is Unix time in milliseconds.
//!
//! With QoS 1 or 2 every sensor keeps a persistent session (clean session
//! off), so after a lost connection rumqttc reconnects (we back off from
//! 100 ms to 5 s) and resends what the broker had not acknowledged. A
//! one-line progress display goes to stderr, a summary to stdout at the end;
//! the exit status is 1 if readings are left unacknowledged.
//!
//! TLS: rumqttc is a dev-dependency without its TLS features (its default,
//! `use-rustls`, brings aws-lc, which this project keeps out of its tree).
//! So for TLS each sensor's rumqttc connects to a Unix socket of this
//! process, and every connection accepted there is carried over a real TLS
//! connection to the broker made with tokio-rustls and the ring provider,
//! with the client certificate if one is given. Reconnects work as they
//! would with rumqttc's own TLS: a new local connection, a new handshake.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use tokio::sync::watch;

#[derive(Parser, Debug, Clone)]
#[command(about = "Simulated sensors publishing JSON readings over MQTT (TCP or TLS)")]
struct Args {
    /// Broker host; with TLS also the name checked against the server
    /// certificate (an IP address is checked against its IP SANs).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port [default: 1883, or 8883 with --cafile].
    #[arg(long)]
    port: Option<u16>,
    /// Number of sensors, one MQTT connection each.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Readings per second, per sensor.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// QoS of the readings (0, 1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// First topic level: topics are PREFIX/site-S/sensor-NNN/telemetry.
    #[arg(long, default_value = "sensors")]
    topic_prefix: String,
    /// Number of sites the sensors are spread over.
    #[arg(long, default_value_t = 3)]
    sites: usize,
    /// Readings per sensor; then wait for the acknowledgements and stop.
    #[arg(long)]
    messages: Option<u64>,
    /// Seconds to run (without --messages or --duration: until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// CA certificate(s) to trust for the broker (PEM); turns TLS on.
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// The name the server certificate must be valid for [default: --host]
    /// (e.g. `localhost` when the broker is reached under another name).
    #[arg(long, requires = "cafile")]
    tls_server_name: Option<String>,
    /// Client certificate chain for mutual TLS (PEM).
    #[arg(long, requires = "key", requires = "cafile")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// Client ids are PREFIX-001, PREFIX-002, ...
    #[arg(long, default_value = "sim")]
    client_id_prefix: String,
    /// Seconds to wait for outstanding acknowledgements when stopping.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
}

/// Counters shared by every sensor and the progress display.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    connected: AtomicUsize,
    connections: AtomicU64,
    /// The last connection error, shown while not every sensor is connected.
    last_error: Mutex<Option<String>>,
    /// The last TLS failure of the tunnel (rumqttc only sees a closed
    /// socket); cleared by a successful handshake.
    tls_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().unwrap() = Some(e.to_string());
    }

    fn tls_error(&self, e: String) {
        *self.tls_error.lock().unwrap() = Some(e);
    }

    /// What went wrong last, TLS first: it is the cause of the MQTT error.
    fn describe_error(&self) -> Option<String> {
        let tls = self.tls_error.lock().unwrap().clone();
        let mqtt = self.last_error.lock().unwrap().clone();
        match (tls, mqtt) {
            (Some(t), _) => Some(t),
            (None, m) => m,
        }
    }
}

/// One sensor's own counts, to know when its readings are all acknowledged.
#[derive(Default)]
struct SensorCounts {
    sent: AtomicU64,
    acked: AtomicU64,
}

impl SensorCounts {
    fn unacked(&self) -> u64 {
        self.sent
            .load(Relaxed)
            .saturating_sub(self.acked.load(Relaxed))
    }
}

/// A random walk per sensor, from a tiny xorshift generator (no `rand`).
struct Reading {
    state: u64,
    temperature: f64,
    humidity: f64,
    battery: f64,
}

impl Reading {
    fn new(seed: u64) -> Reading {
        let mut r = Reading {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            temperature: 0.0,
            humidity: 0.0,
            battery: 0.0,
        };
        r.temperature = 17.0 + 9.0 * r.uniform();
        r.humidity = 35.0 + 30.0 * r.uniform();
        r.battery = 60.0 + 40.0 * r.uniform();
        r
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self, seq: u64) -> Vec<u8> {
        self.temperature = (self.temperature + (self.uniform() - 0.5) * 0.6).clamp(-10.0, 45.0);
        self.humidity = (self.humidity + (self.uniform() - 0.5) * 1.0).clamp(5.0, 95.0);
        self.battery = (self.battery - 0.02 * self.uniform()).max(0.0);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let round = |v: f64| (v * 100.0).round() / 100.0;
        serde_json::to_vec(&serde_json::json!({
            "temperature": round(self.temperature),
            "humidity": round(self.humidity),
            "battery": round(self.battery),
            "seq": seq,
            "ts": ts,
        }))
        .expect("a reading serializes")
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.count == 0 || args.sites == 0 {
        bail!("--count and --sites must be at least 1");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let port = args
        .port
        .unwrap_or(if args.cafile.is_some() { 8883 } else { 1883 });
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // With TLS, rumqttc talks to the local tunnel instead of the broker.
    let tunnel = match &args.cafile {
        Some(ca) => Some(
            TlsTunnel::start(
                &args.host,
                port,
                args.tls_server_name.as_deref().unwrap_or(&args.host),
                ca,
                args.cert.as_deref().zip(args.key.as_deref()),
                stats.clone(),
            )
            .await?,
        ),
        None => None,
    };

    let started = Instant::now();
    let mut sensors = Vec::new();
    for i in 0..args.count {
        let mut opts = match &tunnel {
            Some(t) => {
                let mut o = MqttOptions::new(
                    client_id(&args, i),
                    t.path.to_string_lossy().into_owned(),
                    0,
                );
                o.set_transport(Transport::unix());
                o
            }
            None => MqttOptions::new(client_id(&args, i), args.host.clone(), port),
        };
        opts.set_keep_alive(Duration::from_secs(30));
        // A persistent session is what makes the broker keep (and rumqttc
        // resend) unacknowledged QoS 1/2 messages across a reconnect.
        opts.set_clean_session(args.qos == 0);
        if let Some(user) = &args.username {
            opts.set_credentials(user.clone(), args.password.clone().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let counts = Arc::new(SensorCounts::default());
        let driver = tokio::spawn(drive(eventloop, stats.clone(), counts.clone()));
        let publisher = tokio::spawn(publish(
            args.clone(),
            i,
            client.clone(),
            stats.clone(),
            counts.clone(),
            stop_rx.clone(),
            started,
        ));
        sensors.push((client, counts, driver, publisher));
    }

    let progress = tokio::spawn(progress(stats.clone(), args.count, args.qos));

    // Stop on Ctrl-C, SIGTERM or --duration; or when every sensor is done.
    let deadline = args.duration.map(Duration::from_secs_f64);
    let all_done = async {
        for (_, _, _, publisher) in &mut sensors {
            let _ = publisher.await;
        }
    };
    tokio::select! {
        _ = all_done => {}
        _ = shutdown_signal() => {}
        _ = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    let _ = stop_tx.send(true);
    let publishing = started.elapsed();

    // Wait for the outstanding acknowledgements, then disconnect.
    // A second Ctrl-C stops waiting.
    if args.qos > 0 {
        let drain_until = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
        let mut again = std::pin::pin!(shutdown_signal());
        while sensors.iter().any(|(_, c, _, _)| c.unacked() > 0) && Instant::now() < drain_until {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = &mut again => break,
            }
        }
    }
    for (client, _, _, _) in &sensors {
        let _ = client.try_disconnect();
    }
    let disconnected = async {
        for (_, _, driver, _) in &mut sensors {
            let _ = driver.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), disconnected).await;
    progress.abort();

    let sent = stats.sent.load(Relaxed);
    let unacked: u64 = sensors.iter().map(|(_, c, _, _)| c.unacked()).sum();
    let connections = stats.connections.load(Relaxed);
    let secs = publishing.as_secs_f64();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let acked = if args.qos == 0 {
        "-".to_string()
    } else {
        (sent - unacked).to_string()
    };
    println!(
        "sensor_sim: {} sensors, sent {sent}, acked {acked}, unacked {unacked}, \
         reconnects {}, {secs:.1} s, {:.0} msg/s",
        args.count,
        connections.saturating_sub(args.count as u64),
        sent as f64 / secs.max(0.001),
    );
    if unacked > 0 {
        if let Some(e) = stats.describe_error() {
            eprintln!("sensor_sim: last connection error: {e}");
        }
        std::process::exit(1);
    }
    Ok(())
}

fn client_id(args: &Args, i: usize) -> String {
    format!("{}-{:03}", args.client_id_prefix, i + 1)
}

fn topic(args: &Args, i: usize) -> String {
    format!(
        "{}/site-{}/sensor-{:03}/telemetry",
        args.topic_prefix,
        i % args.sites + 1,
        i + 1
    )
}

/// One sensor's readings, at `--rate`, until `--messages` or stop.
async fn publish(
    args: Args,
    i: usize,
    client: AsyncClient,
    stats: Arc<Stats>,
    counts: Arc<SensorCounts>,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) {
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let topic = topic(&args, i);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    // Spread the sensors over the period instead of publishing in bursts.
    let first = started + period.mul_f64(i as f64 / args.count as f64);
    let mut tick = tokio::time::interval_at(first.into(), period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reading = Reading::new(i as u64 + 1);
    let mut seq = 0;
    while args.messages.is_none_or(|m| seq < m) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        seq += 1;
        let payload = reading.next(seq);
        // Blocks while rumqttc's queue is full (e.g. the broker is away).
        tokio::select! {
            r = client.publish(topic.as_str(), qos, false, payload) => {
                if r.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        counts.sent.fetch_add(1, Relaxed);
        stats.sent.fetch_add(1, Relaxed);
    }
}

/// Runs one sensor's event loop: counts acknowledgements, and reconnects
/// with exponential back-off after an error (rumqttc reconnects on the
/// next poll and resends what was not acknowledged).
async fn drive(mut eventloop: EventLoop, stats: Arc<Stats>, counts: Arc<SensorCounts>) {
    let mut backoff = Duration::from_millis(100);
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff = Duration::from_millis(100);
                stats.connected.fetch_add(1, Relaxed);
                stats.connections.fetch_add(1, Relaxed);
            }
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                counts.acked.fetch_add(1, Relaxed);
                stats.acked.fetch_add(1, Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if connected {
                    stats.connected.fetch_sub(1, Relaxed);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    connected = false;
                    stats.connected.fetch_sub(1, Relaxed);
                }
                if matches!(e, rumqttc::ConnectionError::RequestsDone) {
                    return;
                }
                stats.error(&e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The one-line progress display on stderr: rewritten in place on a
/// terminal, a line every 5 s otherwise (logs stay readable).
async fn progress(stats: Arc<Stats>, count: usize, qos: u8) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(every).await;
        let sent = stats.sent.load(Relaxed);
        let now = Instant::now();
        let rate = (sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, sent);
        let connected = stats.connected.load(Relaxed);
        let acked = if qos == 0 {
            "-".to_string()
        } else {
            stats.acked.load(Relaxed).min(sent).to_string()
        };
        let mut line =
            format!("{connected}/{count} connected  sent {sent}  acked {acked}  {rate:.0} msg/s");
        if connected < count {
            if let Some(e) = stats.describe_error() {
                line.push_str(&format!("  ({e})"));
            }
        }
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "sensor_sim: {line}");
        }
        let _ = err.flush();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A Unix socket whose connections are carried over TLS to the broker.
struct TlsTunnel {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsTunnel {
    async fn start(
        host: &str,
        port: u16,
        server_name: &str,
        cafile: &Path,
        client_auth: Option<(&Path, &Path)>,
        stats: Arc<Stats>,
    ) -> Result<TlsTunnel> {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(tls_config(cafile, client_auth)?));
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("{server_name:?} is not a valid TLS server name"))?;
        let dir = tempfile::Builder::new().prefix("sensor-sim-").tempdir()?;
        let path = dir.path().join("tls.sock");
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("bind {}", path.display()))?;
        let host = host.to_owned();
        tokio::spawn(async move {
            while let Ok((mut local, _)) = listener.accept().await {
                let (connector, name, host, stats) = (
                    connector.clone(),
                    server_name.clone(),
                    host.clone(),
                    stats.clone(),
                );
                tokio::spawn(async move {
                    let dial = async {
                        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                        tcp.set_nodelay(true)?;
                        connector.connect(name, tcp).await
                    };
                    match tokio::time::timeout(Duration::from_secs(10), dial).await {
                        Ok(Ok(mut tls)) => {
                            *stats.tls_error.lock().unwrap() = None;
                            let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
                        }
                        // Dropping `local` makes rumqttc see the failure
                        // and back off; the reason is shown in the progress.
                        Ok(Err(e)) => stats.tls_error(format!("TLS to {host}:{port}: {e}")),
                        Err(_) => stats.tls_error(format!("TLS to {host}:{port}: timed out")),
                    }
                });
            }
        });
        Ok(TlsTunnel { path, _dir: dir })
    }
}

fn tls_config(cafile: &Path, client_auth: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig> {
    let open = |p: &Path| -> Result<BufReader<File>> {
        Ok(BufReader::new(
            File::open(p).with_context(|| format!("open {}", p.display()))?,
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut open(cafile)?) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", cafile.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client_auth {
        Some((cert, key)) => {
            let chain = rustls_pemfile::certs(&mut open(cert)?).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut open(key)?)?
                .with_context(|| format!("no private key in {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}
