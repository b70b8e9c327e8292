//! A bridge's configuration: one `[[bridges]]` table of the broker's file
//! (or one file under `bridges_dir`), read as is into these types, with its
//! defaults and its validation. The broker embeds [`BridgeConfig`] in its own
//! configuration and calls [`BridgeConfig::validate`]; nothing is mapped by
//! hand in between, so a key, its default and its check live in one place.
//!
//! The sink's table is the sink's own settings type
//! ([`HttpSinkConfig`], [`KafkaSinkConfig`]), so what the file says is what
//! the sink is built from ([`SinkConfig::build`]).

use std::time::Duration;

use serde::Deserialize;

use crate::any_sink::AnySink;
use crate::buffer::{DeadLetterPolicy, FullPolicy};
use crate::http::HttpSinkConfig;
use crate::kafka::KafkaSinkConfig;
use crate::mqtt::MqttSinkConfig;
use crate::transform::budget::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_STEPS, DEFAULT_TIMEOUT};
use crate::transform::{
    Budget, Escape, OnDecodeError, PayloadFormat, Transform, TransformConfig, TransformError,
    DEFAULT_MAX_DEPTH,
};

/// Client ids with this prefix belong to bridges (a bridge's session is
/// `$bridge/NAME`); clients may not use them.
pub const CLIENT_ID_PREFIX: &str = "$bridge/";

/// A bridge setting that is not acceptable, with the key that holds it
/// (relative to the bridge's table: `qos`, `sink.acks`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// Why a sink could not be built: the sink's own error, worded as it is.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpSinkError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaSinkSetupError),
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttSinkError),
}

/// Where a bridge sends its records: the `[bridges.sink]` table, whose
/// `kind` picks the sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    /// POST (or PUT) each record to a URL rendered from a template.
    Http(HttpSinkConfig),
    /// Produce each record to a Kafka topic rendered from a template, with
    /// an idempotent producer (order per partition survives retries).
    Kafka(KafkaSinkConfig),
    /// Publish each record to a remote MQTT broker (store-and-forward,
    /// edge to cloud), on a topic rendered from a template.
    Mqtt(MqttSinkConfig),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Http(_) => "http",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Mqtt(_) => "mqtt",
        }
    }

    /// Everything building the sink would refuse, without building it (no
    /// connection pool, no producer threads), with the key it is about
    /// (`sink.…`).
    pub fn check(&self) -> Result<(), ConfigError> {
        let (key, message) = match self {
            SinkConfig::Http(c) => match c.check() {
                Ok(()) => return Ok(()),
                Err(e) => (c.key_of(&e), e.to_string()),
            },
            SinkConfig::Kafka(c) => match c.check() {
                Ok(()) => return Ok(()),
                Err(e) => c.describe(&e),
            },
            SinkConfig::Mqtt(c) => match c.check() {
                Ok(()) => return Ok(()),
                Err(e) => (e.key.to_owned(), e.message),
            },
        };
        Err(ConfigError {
            key: format!("sink.{key}"),
            message,
        })
    }

    /// Builds the sink; the error names the problem (see [`Self::check`],
    /// which the configuration ran already). `state_dir` is the bridge's
    /// own directory (its buffer's), where a sink keeps what must survive
    /// a restart besides the buffer (the MQTT sink's QoS 2 release log).
    pub fn build(&self, state_dir: &std::path::Path) -> Result<AnySink, SinkBuildError> {
        Ok(match self {
            SinkConfig::Http(c) => AnySink::Http(Box::new(crate::http::HttpSink::new(c.clone())?)),
            SinkConfig::Kafka(c) => AnySink::Kafka(crate::kafka::KafkaSink::new(c.clone())?),
            SinkConfig::Mqtt(c) => {
                AnySink::Mqtt(Box::new(crate::mqtt::MqttSink::new(c.clone(), state_dir)?))
            }
        })
    }
}

/// When the device that published a bridged QoS 1/2 message gets its
/// PUBACK/PUBREC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeAck {
    /// Once the message is durable in the bridge's buffer (fast; the
    /// buffer guarantees delivery later).
    #[default]
    Buffer,
    /// Only once the sink (Kafka, the HTTP endpoint) acknowledged it: the
    /// device keeps and resends messages while the sink is down.
    Sink,
}

fn default_qos() -> u8 {
    1
}

fn default_max_bytes() -> u64 {
    crate::buffer::DEFAULT_MAX_BYTES
}

fn default_dead_letter_max_bytes() -> u64 {
    crate::buffer::DEFAULT_DEAD_LETTER_MAX_BYTES
}

fn default_transform_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT.as_millis() as u64
}

fn default_transform_max_steps() -> u64 {
    DEFAULT_MAX_STEPS
}

fn default_transform_max_output_bytes() -> usize {
    DEFAULT_MAX_OUTPUT_BYTES
}

/// One bridge: MQTT messages matching `filters`, transformed, buffered on
/// disk, delivered to a sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Letters, digits, '-' and '_'; names the buffer directory.
    pub name: String,
    /// MQTT topic filters; messages matching any of them are bridged.
    pub filters: Vec<String>,
    /// The identity the bridge reads under. Unset (the default): trusted,
    /// the bridge receives everything its filters match whatever the ACL
    /// says (the operator chose the filters). Set: the ACL applies to the
    /// bridge as to a client logged in with this user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Subscription QoS: 0 or 1 (1: nothing acknowledged to the publisher
    /// is lost on the way).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// jq expression run over {payload, topic, client_id, username, qos,
    /// retain, timestamp, user_properties}; its first output is the new
    /// payload, no output drops the message.
    #[serde(default)]
    pub transform: Option<String>,
    /// Wall-clock budget of one run of the rule; past it the message is
    /// dead-lettered.
    #[serde(default = "default_transform_timeout_ms")]
    pub transform_timeout_ms: u64,
    /// Step budget of one run (jq function calls, generator outputs).
    #[serde(default = "default_transform_max_steps")]
    pub transform_max_steps: u64,
    /// Largest transformed payload (compact JSON), in bytes.
    #[serde(default = "default_transform_max_output_bytes")]
    pub transform_max_output_bytes: usize,
    /// How payloads decode before the rule: "json", "raw", "cbor",
    /// "msgpack". Unset: "raw" for an MQTT sink (a broker-to-broker bridge
    /// forwards bytes as they are), "json" for the others.
    #[serde(default)]
    pub payload_format: Option<PayloadFormat>,
    #[serde(default)]
    pub on_decode_error: OnDecodeError,
    /// Disk quota of the bridge's buffer.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// When the buffer is full: "block" (stop taking messages; they wait in
    /// the bridge's session queue) or "drop_oldest".
    #[serde(default)]
    pub full_policy: FullPolicy,
    /// Bound on the dead-letter files (current and rotated together).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// When they are full: "rotate" (keep the newest lines) or
    /// "discard_new"; lines not kept are counted.
    #[serde(default)]
    pub dead_letter_full_policy: DeadLetterPolicy,
    /// "buffer" (default) or "sink": see [`BridgeAck`].
    #[serde(default)]
    pub ack: BridgeAck,
    pub sink: SinkConfig,
}

impl BridgeConfig {
    /// The client id of the bridge's session.
    pub fn client_id(&self) -> String {
        format!("{CLIENT_ID_PREFIX}{}", self.name)
    }

    /// Checks the bridge on its own, in the order of its keys: everything
    /// start-up would refuse, so a configuration check refuses the same.
    /// `check_filter` is the broker's rule for a topic filter (its limits
    /// are the broker's). Messages start with the bridge's name.
    pub fn validate<E: std::fmt::Display>(
        &self,
        check_filter: impl Fn(&str) -> Result<(), E>,
    ) -> Result<(), ConfigError> {
        let who = format!("bridge `{}`: ", self.name);
        let invalid = |key: &str, message: &str| ConfigError {
            key: key.to_owned(),
            message: format!("{who}{message}"),
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ConfigError {
                key: "name".to_owned(),
                message: "use letters, digits, '-' and '_'".to_owned(),
            });
        }
        if self.filters.is_empty() {
            return Err(invalid("filters", "at least one topic filter is needed"));
        }
        for f in &self.filters {
            check_filter(f).map_err(|e| invalid("filters", &format!("`{f}`: {e}")))?;
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err(invalid(
                "username",
                "must not be empty (leave it out for a trusted bridge)",
            ));
        }
        if self.qos > 1 {
            return Err(invalid("qos", "must be 0 or 1"));
        }
        if self.ack == BridgeAck::Sink {
            if self.qos != 1 {
                return Err(invalid("qos", "ack = \"sink\" needs qos = 1"));
            }
            if self.full_policy != FullPolicy::Block {
                return Err(invalid(
                    "full_policy",
                    "ack = \"sink\" needs full_policy = \"block\" (a dropped record cannot be acknowledged)",
                ));
            }
        }
        self.validate_budgets(&invalid)?;
        if let Err(e) = self.compile_transform() {
            return Err(invalid("transform", &e.to_string()));
        }
        self.sink.check().map_err(|e| invalid(&e.key, &e.message))
    }

    /// The transform's budget and the dead-letter bound.
    fn validate_budgets(
        &self,
        invalid: &impl Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !(1..=60_000).contains(&self.transform_timeout_ms) {
            return Err(invalid(
                "transform_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if self.dead_letter_max_bytes < 4096 {
            return Err(invalid("dead_letter_max_bytes", "must be at least 4096"));
        }
        if self.transform_max_steps == 0 {
            return Err(invalid("transform_max_steps", "must be at least 1"));
        }
        if self.transform_max_output_bytes == 0 {
            return Err(invalid("transform_max_output_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// The payload format in effect (see the field).
    pub fn payload_format(&self) -> PayloadFormat {
        self.payload_format.unwrap_or(match self.sink {
            SinkConfig::Mqtt(_) => PayloadFormat::Raw,
            _ => PayloadFormat::Json,
        })
    }

    /// Compiles the bridge's transform as configured, with the sink's
    /// destination (and key) templates.
    pub fn compile_transform(&self) -> Result<Transform, TransformError> {
        let (destination, destination_escape, key) = match &self.sink {
            SinkConfig::Http(c) => (c.url.clone(), Escape::Url, None),
            SinkConfig::Kafka(c) => (c.topic.clone(), Escape::None, c.key.clone()),
            SinkConfig::Mqtt(c) => (c.topic.clone(), Escape::None, None),
        };
        Transform::compile(&TransformConfig {
            expression: self.transform.clone(),
            payload_format: self.payload_format(),
            on_decode_error: self.on_decode_error,
            max_depth: DEFAULT_MAX_DEPTH,
            destination,
            destination_escape,
            key,
            budget: Budget {
                max_steps: self.transform_max_steps,
                timeout: Duration::from_millis(self.transform_timeout_ms),
                max_output_bytes: self.transform_max_output_bytes,
            },
            mqtt_flags: matches!(self.sink, SinkConfig::Mqtt(_)),
        })
    }
}

pub mod secret;

/// Durations written in the file as a count of seconds or milliseconds.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Whole seconds; 0 counts as 1 (a zero timeout would fail every
    /// request, and the keys have always meant "at least a second").
    pub fn secs_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?.max(1)))
    }

    pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests;
