//! What a Kafka sink is told, and how that becomes librdkafka settings.
//!
//! Our own settings are checked in [`KafkaSink::new`]; librdkafka checks the
//! rest (unknown keys, bad values, conflicting settings, a CA file it cannot
//! load) when the producer is created, so a misconfiguration fails at
//! start-up instead of failing every batch. [`KafkaSinkConfig::check`] runs
//! the same steps, so `check-config` refuses what start-up would.
//!
//! [`KafkaSink::new`]: super::KafkaSink::new

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

use crate::config::secret::SecretSource;

/// How librdkafka compresses message batches.
///
/// `zstd` is missing on purpose: librdkafka is built without libzstd here
/// (rdkafka's `zstd` feature is off), so it would only fail at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    /// The value of librdkafka's `compression.type`.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Settings of a [`KafkaSink`](super::KafkaSink): the `[bridges.sink]`
/// table of a bridge with `kind = "kafka"`, read as is from the broker's
/// configuration (the field names are the file's keys unless renamed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port,host:port`: where the producer learns the cluster's layout.
    pub bootstrap_servers: String,
    /// Topic template, e.g. `telemetry-{topic.2}`, rendered per record by
    /// the transform into the record's destination.
    pub topic: String,
    /// Key template, e.g. `{topic.3}` (the device): records with the same
    /// key go to the same partition, in order.
    #[serde(default)]
    pub key: Option<String>,
    /// How many replicas must have a record before Kafka acknowledges it:
    /// `all` (or `-1`, the default), `1` or `0`. Anything but `all` gives up
    /// the idempotent producer (Kafka requires `all` for it) and with it the
    /// protection against duplicates from internal retries; order is then
    /// kept by sending one request per connection at a time. With `0` a
    /// record counts as delivered once it is written to the socket.
    #[serde(default = "default_acks")]
    pub acks: String,
    /// `none` (default), `gzip`, `snappy` or `lz4`.
    #[serde(default)]
    pub compression: Compression,
    /// Records handed to librdkafka at once and awaited together; also what
    /// the delivery loop hands to one `send`. 5000 by default: deep enough
    /// that the round trip and the buffer's cursor write per batch are
    /// amortized (BENCHMARKS.md, "Kafka bridge", has the comparison).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long librdkafka keeps trying to deliver a record (including
    /// waiting for an unreachable broker) before it reports the record as
    /// failed, which the sink reports as retryable; then the bridge backs
    /// off and resends from the first unacknowledged one. 30 s by default;
    /// the file's `message_timeout_secs = 0` means one second.
    #[serde(
        rename = "message_timeout_secs",
        default = "default_message_timeout",
        deserialize_with = "crate::config::duration::secs_at_least_one"
    )]
    pub message_timeout: Duration,
    /// Resends a record gets after errors of its own (its topic unknown, or
    /// it timed out while later records of the batch got
    /// through) before it is dead-lettered, so one bad topic cannot hold
    /// back the rest for long. Errors of the whole cluster are retried
    /// without limit. 5 by default.
    #[serde(default = "default_record_retries")]
    pub record_retries: u32,
    /// Any librdkafka producer option (TLS, SASL, `batch.size`, ...), applied
    /// after the settings above, so these have the last word.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// A file whose content (trailing newlines removed) is the SASL password
    /// (librdkafka's `sasl.password`; a Confluent Cloud API secret, say), so
    /// that the configuration holds no secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the SASL password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Exactly once into Kafka: each batch is produced in one Kafka
    /// transaction together with the bridge's cursor, so `read_committed`
    /// consumers see every record once, wherever a crash strikes (see
    /// `transaction`). Needs `acks = "all"`, a `transactional_id` and a
    /// cluster with transactions. Off by default (at least once, with ids).
    #[serde(default)]
    pub exactly_once: bool,
    /// The producer's `transactional.id` (with `exactly_once`): the same
    /// across restarts, one per bridge. A restarted broker's producer fences
    /// the one a crash left behind with it and finds its cursor by it.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// The topic holding the cursors (with `exactly_once`), one record per
    /// transaction keyed by the `transactional_id`; created with one
    /// partition and `cleanup.policy = compact` when missing.
    #[serde(default = "default_cursor_topic")]
    pub cursor_topic: String,
}

fn default_cursor_topic() -> String {
    super::transaction::DEFAULT_CURSOR_TOPIC.to_owned()
}

fn default_acks() -> String {
    "all".to_owned()
}

fn default_max_in_flight() -> usize {
    5000
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_record_retries() -> u32 {
    DEFAULT_RECORD_RETRIES
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        KafkaSinkConfig {
            bootstrap_servers: "localhost:9092".to_owned(),
            topic: String::new(),
            key: None,
            acks: default_acks(),
            compression: Compression::None,
            max_in_flight: default_max_in_flight(),
            message_timeout: default_message_timeout(),
            record_retries: DEFAULT_RECORD_RETRIES,
            options: BTreeMap::new(),
            password_file: None,
            password_env: None,
            exactly_once: false,
            transactional_id: None,
            cursor_topic: default_cursor_topic(),
        }
    }
}

impl KafkaSinkConfig {
    /// Everything [`KafkaSink::new`] checks: our settings, the password,
    /// then librdkafka's opinion of each option (unknown keys, values it
    /// cannot parse, features this build lacks) and of them together
    /// (conflicts, a SASL mechanism without its credentials, a TLS file it
    /// cannot load). For the latter a producer is created as start-up
    /// creates it, but without `bootstrap.servers`: it never connects, and
    /// is gone before this returns.
    ///
    /// [`KafkaSink::new`]: super::KafkaSink::new
    pub fn check(&self) -> Result<(), KafkaSinkSetupError> {
        let mut client = settings(self)?;
        client.remove("bootstrap.servers");
        // The default context: librdkafka's warning about the missing
        // servers goes to the `log` crate, which nothing listens to.
        client
            .create::<BaseProducer>()
            .map(drop)
            .map_err(KafkaSinkSetupError::from_kafka)
    }

    /// The key of the file an error of [`KafkaSink::new`] is about, relative
    /// to the sink's table, and the error worded for the file.
    ///
    /// [`KafkaSink::new`]: super::KafkaSink::new
    pub fn describe(&self, error: &KafkaSinkSetupError) -> (String, String) {
        let (key, message): (&str, String) = match error {
            KafkaSinkSetupError::NoBootstrapServers => (
                "bootstrap_servers",
                "must name at least one host:port".to_owned(),
            ),
            KafkaSinkSetupError::InvalidAcks(_) => {
                ("acks", "must be \"all\", \"1\" or \"0\"".to_owned())
            }
            KafkaSinkSetupError::ZeroMaxInFlight => {
                ("max_in_flight", "must be at least 1".to_owned())
            }
            KafkaSinkSetupError::MessageTimeout(_) => ("message_timeout_secs", error.to_string()),
            KafkaSinkSetupError::InvalidOption { name, .. } if name == "bootstrap_servers" => {
                ("bootstrap_servers", error.to_string())
            }
            KafkaSinkSetupError::InvalidOption { name, .. } => {
                return (format!("options.{name}"), error.to_string());
            }
            KafkaSinkSetupError::Password { key, reason } => (*key, reason.clone()),
            KafkaSinkSetupError::ExactlyOnce { key, reason } => (*key, reason.clone()),
            // librdkafka's message names the property at fault, usually
            // first: the option it names earliest is the key.
            KafkaSinkSetupError::Producer(reason) => {
                let named = self
                    .options
                    .keys()
                    .filter_map(|name| reason.find(name.as_str()).map(|at| (at, name)))
                    .min_by_key(|(at, name)| (*at, std::cmp::Reverse(name.len())));
                return match named {
                    Some((_, name)) => (format!("options.{name}"), error.to_string()),
                    None => ("options".to_owned(), error.to_string()),
                };
            }
        };
        (key.to_owned(), message)
    }
}

/// Why a [`KafkaSink`](super::KafkaSink) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSinkSetupError {
    #[error("bootstrap_servers is empty")]
    NoBootstrapServers,
    #[error("invalid acks {0:?}: expected \"all\", \"-1\", \"1\" or \"0\"")]
    InvalidAcks(String),
    #[error("max_in_flight must be greater than zero")]
    ZeroMaxInFlight,
    #[error("message_timeout {0:?} is out of range (1 ms to {max:?})", max = MAX_MESSAGE_TIMEOUT)]
    MessageTimeout(Duration),
    /// librdkafka refused the option: unknown key, or a value it cannot parse.
    #[error("invalid Kafka option {name:?}: {reason}")]
    InvalidOption { name: String, reason: String },
    /// `password_file` or `password_env` cannot be read, or clashes with
    /// another way of giving the password.
    #[error("{key}: {reason}")]
    Password { key: &'static str, reason: String },
    /// `exactly_once` and its settings do not fit together.
    #[error("{key}: {reason}")]
    ExactlyOnce { key: &'static str, reason: String },
    /// The options are each valid but do not fit together (for example
    /// `acks=1` with `enable.idempotence=true`); librdkafka's message names
    /// them.
    #[error("cannot create the Kafka producer: {0}")]
    Producer(String),
}

impl KafkaSinkSetupError {
    pub(crate) fn from_kafka(error: KafkaError) -> KafkaSinkSetupError {
        match error {
            // The value stays out of the message: it may be a password.
            KafkaError::ClientConfig(_, reason, name, _) => {
                KafkaSinkSetupError::InvalidOption { name, reason }
            }
            KafkaError::ClientCreation(reason) => KafkaSinkSetupError::Producer(reason),
            other => KafkaSinkSetupError::Producer(other.to_string()),
        }
    }
}

/// librdkafka's upper bound for `message.timeout.ms` (a signed 32-bit count
/// of milliseconds); 0 would mean "never time out", which would hide an
/// unreachable cluster forever.
const MAX_MESSAGE_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Linger before a produce request leaves: a few records more per request
/// for a delay the MQTT side does not notice.
const LINGER_MS: &str = "5";

/// Keys set here that librdkafka also knows under another name. Setting both
/// names would let whichever the config map yields last win, so a user
/// option under either name replaces ours.
const ALIASES: &[&[&str]] = &[
    &["acks", "request.required.acks"],
    &["compression.type", "compression.codec"],
    &["message.timeout.ms", "delivery.timeout.ms"],
    &["queue.buffering.max.ms", "linger.ms"],
    &["max.in.flight.requests.per.connection", "max.in.flight"],
];

/// Checks what librdkafka would not (or would only report obscurely).
pub(crate) fn validate(config: &KafkaSinkConfig) -> Result<(), KafkaSinkSetupError> {
    if config.bootstrap_servers.trim().is_empty() {
        return Err(KafkaSinkSetupError::NoBootstrapServers);
    }
    if !matches!(config.acks.as_str(), "all" | "-1" | "1" | "0") {
        return Err(KafkaSinkSetupError::InvalidAcks(config.acks.clone()));
    }
    if config.max_in_flight == 0 {
        return Err(KafkaSinkSetupError::ZeroMaxInFlight);
    }
    if config.message_timeout < Duration::from_millis(1)
        || config.message_timeout > MAX_MESSAGE_TIMEOUT
    {
        return Err(KafkaSinkSetupError::MessageTimeout(config.message_timeout));
    }
    super::transaction::validate(config)?;
    // librdkafka takes C strings; rdkafka would report a NUL without the key.
    let with_nul = std::iter::once(("bootstrap_servers", config.bootstrap_servers.as_str()))
        .chain(config.options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .find(|(k, v)| k.contains('\0') || v.contains('\0'));
    if let Some((name, _)) = with_nul {
        return Err(KafkaSinkSetupError::InvalidOption {
            name: name.to_owned(),
            reason: "contains a NUL character".to_owned(),
        });
    }
    Ok(())
}

/// The SASL password from `password_file` or `password_env`, if either is
/// given.
fn password(config: &KafkaSinkConfig) -> Result<Option<String>, KafkaSinkSetupError> {
    let (key, source) = match (&config.password_file, &config.password_env) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(KafkaSinkSetupError::Password {
                key: "password_env",
                reason: "give password_file or password_env, not both".to_owned(),
            })
        }
        (Some(path), None) => ("password_file", SecretSource::File(path)),
        (None, Some(var)) => ("password_env", SecretSource::Env(var)),
    };
    if config.options.contains_key(SASL_PASSWORD) {
        return Err(KafkaSinkSetupError::Password {
            key,
            reason: format!("the password is in options.\"{SASL_PASSWORD}\" already"),
        });
    }
    let bad = |reason| KafkaSinkSetupError::Password { key, reason };
    let bytes = source.read().map_err(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad("is not UTF-8".to_owned()))?;
    if text.contains('\0') {
        return Err(bad("contains a NUL character".to_owned()));
    }
    Ok(Some(text))
}

/// librdkafka's key for the SASL password.
const SASL_PASSWORD: &str = "sasl.password";

/// What the producer is created from, once everything of ours is checked:
/// [`client_config`] and the password. Shared by start-up and the check, so
/// both see the same settings.
pub(crate) fn settings(config: &KafkaSinkConfig) -> Result<ClientConfig, KafkaSinkSetupError> {
    validate(config)?;
    let password = password(config)?;
    let mut client = client_config(config);
    if let Some(password) = password {
        client.set(SASL_PASSWORD, password);
    }
    Ok(client)
}

/// Default for [`KafkaSinkConfig::record_retries`].
pub const DEFAULT_RECORD_RETRIES: u32 = 5;

/// How long librdkafka waits for a topic the cluster says does not exist
/// before it fails the topic's records (its default, 30 s, would hold the
/// whole bridge that long per attempt). Creation still has the retries'
/// backoff to propagate.
const TOPIC_PROPAGATION_MS: &str = "1000";

/// The librdkafka settings of a sink: ours, then `options` over them.
///
/// The idempotent producer is on when `acks` is `all`, so that librdkafka's
/// internal retries neither reorder nor duplicate records within a partition.
pub fn client_config(config: &KafkaSinkConfig) -> ClientConfig {
    let idempotent = matches!(config.acks.as_str(), "all" | "-1");
    let mut client = ClientConfig::new();
    // librdkafka's own level otherwise follows the `log` crate's, which
    // nothing here sets: its warnings would be lost. They go to tracing.
    client.set_log_level(rdkafka::config::RDKafkaLogLevel::Info);
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "sluice")
        .set("enable.idempotence", idempotent.to_string())
        .set("acks", &config.acks)
        .set("compression.type", config.compression.as_librdkafka())
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.ms", LINGER_MS)
        .set("topic.metadata.propagation.max.ms", TOPIC_PROPAGATION_MS);
    super::transaction::configure(config, &mut client);
    if !idempotent {
        // Without idempotence a retried request may overtake the next one.
        client.set("max.in.flight.requests.per.connection", "1");
    }
    for (name, value) in &config.options {
        if let Some(group) = ALIASES.iter().find(|group| group.contains(&name.as_str())) {
            for alias in group.iter().filter(|alias| **alias != name) {
                client.remove(alias);
            }
        }
        client.set(name, value);
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_defaults_match_the_documented_ones() {
        let config = KafkaSinkConfig::default();
        assert_eq!(config.acks, "all");
        assert_eq!(config.compression, Compression::None);
        assert_eq!(config.max_in_flight, 5000);
        assert_eq!(config.message_timeout, Duration::from_secs(30));
        assert!(config.options.is_empty());
        assert_eq!(validate(&config), Ok(()));
    }

    #[test]
    fn kafka_client_config_holds_our_settings_then_the_options() {
        let config = KafkaSinkConfig {
            bootstrap_servers: "a:9092,b:9092".to_owned(),
            compression: Compression::Lz4,
            message_timeout: Duration::from_millis(1500),
            options: [
                ("security.protocol".to_owned(), "ssl".to_owned()),
                ("compression.type".to_owned(), "gzip".to_owned()),
            ]
            .into(),
            ..KafkaSinkConfig::default()
        };
        let client = client_config(&config);
        assert_eq!(client.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("message.timeout.ms"), Some("1500"));
        assert_eq!(client.get("queue.buffering.max.ms"), Some("5"));
        assert_eq!(client.get("max.in.flight.requests.per.connection"), None);
        assert_eq!(client.get("security.protocol"), Some("ssl"));
        assert_eq!(client.get("compression.type"), Some("gzip"));
    }

    #[test]
    fn kafka_an_option_under_an_alias_replaces_our_setting() {
        let config = KafkaSinkConfig {
            options: [
                ("linger.ms".to_owned(), "50".to_owned()),
                ("delivery.timeout.ms".to_owned(), "9000".to_owned()),
            ]
            .into(),
            ..KafkaSinkConfig::default()
        };
        let client = client_config(&config);
        assert_eq!(client.get("queue.buffering.max.ms"), None);
        assert_eq!(client.get("linger.ms"), Some("50"));
        assert_eq!(client.get("message.timeout.ms"), None);
        assert_eq!(client.get("delivery.timeout.ms"), Some("9000"));
    }

    #[test]
    fn kafka_acks_below_all_turn_idempotence_off_and_keep_order() {
        for acks in ["1", "0"] {
            let config = KafkaSinkConfig {
                acks: acks.to_owned(),
                ..KafkaSinkConfig::default()
            };
            let client = client_config(&config);
            assert_eq!(client.get("enable.idempotence"), Some("false"), "{acks}");
            assert_eq!(client.get("acks"), Some(acks));
            assert_eq!(
                client.get("max.in.flight.requests.per.connection"),
                Some("1")
            );
        }
    }

    #[test]
    fn kafka_validation_refuses_what_would_misbehave_later() {
        let cases: Vec<(KafkaSinkConfig, KafkaSinkSetupError)> = vec![
            (
                KafkaSinkConfig {
                    bootstrap_servers: " ".to_owned(),
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::NoBootstrapServers,
            ),
            (
                KafkaSinkConfig {
                    acks: "2".to_owned(),
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::InvalidAcks("2".to_owned()),
            ),
            (
                KafkaSinkConfig {
                    max_in_flight: 0,
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::ZeroMaxInFlight,
            ),
            (
                KafkaSinkConfig {
                    message_timeout: Duration::from_micros(500),
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::MessageTimeout(Duration::from_micros(500)),
            ),
            (
                KafkaSinkConfig {
                    message_timeout: Duration::from_secs(30 * 24 * 3600),
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::MessageTimeout(Duration::from_secs(30 * 24 * 3600)),
            ),
            (
                KafkaSinkConfig {
                    options: [("sasl.password".to_owned(), "a\0b".to_owned())].into(),
                    ..KafkaSinkConfig::default()
                },
                KafkaSinkSetupError::InvalidOption {
                    name: "sasl.password".to_owned(),
                    reason: "contains a NUL character".to_owned(),
                },
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(validate(&config), Err(expected));
        }
        for acks in ["all", "-1", "1", "0"] {
            let config = KafkaSinkConfig {
                acks: acks.to_owned(),
                ..KafkaSinkConfig::default()
            };
            assert_eq!(validate(&config), Ok(()), "{acks}");
        }
    }

    #[test]
    fn kafka_compression_deserializes_from_config_words() {
        let c: Compression = serde_json::from_str("\"snappy\"").unwrap();
        assert_eq!(c, Compression::Snappy);
        let c: Compression = serde_json::from_str("\"lz4\"").unwrap();
        assert_eq!(c, Compression::Lz4);
        assert!(serde_json::from_str::<Compression>("\"zstd\"").is_err());
        assert!(serde_json::from_str::<Compression>("\"Gzip\"").is_err());
    }
}
