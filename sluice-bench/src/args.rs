//! Command line of the load generator.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sluice-bench",
    about = "MQTT load generator: fan-in, fan-out, pairs, idle connections"
)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub host: String,
    #[arg(long, default_value_t = 1883, global = true)]
    pub port: u16,
    /// Ports publishers connect to, in turn (publisher i to the i-th modulo
    /// their number): for the nodes of a cluster. Default: `--port`.
    #[arg(long, value_delimiter = ',', global = true)]
    pub pub_ports: Vec<u16>,
    /// Ports subscribers connect to, in turn, as `--pub-ports`.
    #[arg(long, value_delimiter = ',', global = true)]
    pub sub_ports: Vec<u16>,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long = "mqtt", default_value_t = 4, global = true)]
    pub mqtt_version: u8,
    #[arg(long, default_value_t = 0, global = true)]
    pub qos: u8,
    /// Payload bytes (at least 20: publisher, sequence, timestamp).
    #[arg(long, default_value_t = 64, global = true)]
    pub size: usize,
    /// Total messages per second over all publishers; 0 = as fast as it goes.
    #[arg(long, default_value_t = 0, global = true)]
    pub rate: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub duration: f64,
    #[arg(long, default_value_t = 2.0, global = true)]
    pub warmup: f64,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 100, global = true)]
    pub inflight: usize,
    /// Closed loop: publishers pause while more deliveries than this are
    /// owed to subscribers. 0 = open loop (publish whatever happens).
    #[arg(long, default_value_t = 100_000, global = true)]
    pub max_owed: u64,
    /// Runtime worker threads of the generator. One is the default from
    /// measurement (notes in BENCHMARKS.md): on 2 cores shared with the
    /// broker, a second worker cost more CPU than it gained, and one
    /// worker beat a current-thread runtime.
    #[arg(long, default_value_t = 1, global = true)]
    pub threads: usize,
    /// The broker's process id, to report its CPU time and memory.
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Subscribers (and the conn scenario's connections) keep persistent
    /// sessions (clean start 0, v5 session expiry 1 h), so a durable broker
    /// must store what it queues for them.
    #[arg(long, global = true)]
    pub persistent_subscribers: bool,
    /// Prefix of client ids and topics, so runs do not collide.
    #[arg(long, default_value = "bench", global = true)]
    pub prefix: String,
    #[command(subcommand)]
    pub scenario: Scenario,
}

impl Args {
    /// These arguments with `--port` set to the `i`-th of `ports` (in
    /// turn), or as they are when `ports` is empty.
    pub fn on_port(&self, ports: &[u16], i: usize) -> Args {
        let mut a = self.clone();
        if !ports.is_empty() {
            a.port = ports[i % ports.len()];
        }
        a
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// P publishers on PREFIX/<i> → S subscribers on PREFIX/#.
    Fanin {
        #[arg(short, long, default_value_t = 50)]
        publishers: usize,
        #[arg(short, long, default_value_t = 1)]
        subscribers: usize,
    },
    /// 1 publisher → S subscribers of its topic.
    Fanout {
        #[arg(short, long, default_value_t = 100)]
        subscribers: usize,
    },
    /// N publisher/subscriber pairs, one topic each.
    Pairs {
        #[arg(short = 'n', long, default_value_t = 50)]
        pairs: usize,
    },
    /// N idle connections (keep alive 300), spread over source addresses
    /// 127.0.0.2, 127.0.0.3, … so more than 28k fit.
    Conn {
        #[arg(short = 'n', long, default_value_t = 10_000)]
        connections: usize,
        /// How many loopback source addresses to spread over.
        #[arg(long, default_value_t = 4)]
        source_addresses: u8,
        /// CONNECTs in flight at once (the next starts when one is done).
        #[arg(long, default_value_t = 500)]
        in_flight: usize,
        /// Pad client ids to this many characters (0: `PREFIX-idle-N`).
        #[arg(long, default_value_t = 0)]
        client_id_len: usize,
        /// Each connection subscribes to a topic of its own.
        #[arg(long)]
        subscribe: bool,
        /// Seconds to wait after the last CONNACK before reading the
        /// broker's memory again.
        #[arg(long, default_value_t = 5.0)]
        settle: f64,
    },
    /// Not a scenario: a null broker on --host:--port that answers and
    /// forwards PUBLISH to the subscribers of its exact topic or of a
    /// PREFIX/# above it, doing as little as it can. Runs until stopped; a scenario run against it measures the
    /// generator's own ceiling.
    Reflector,
}
