//! What an MQTT sink is told: the `[bridges.sink]` table of a bridge with
//! `kind = "mqtt"`, read as is from the broker's configuration, its
//! defaults and its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::inbound::InboundRoute;

/// Which MQTT version the bridge speaks to the remote broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub enum RemoteProtocol {
    /// `protocol = 4`: MQTT 3.1.1 (clean session off, no properties).
    V311,
    /// `protocol = 5`, the default: session expiry, receive maximum, user
    /// properties (the loop marker), reason codes.
    #[default]
    V5,
}

impl TryFrom<u8> for RemoteProtocol {
    type Error = String;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        match level {
            4 => Ok(RemoteProtocol::V311),
            5 => Ok(RemoteProtocol::V5),
            other => Err(format!(
                "protocol {other} is not supported: use 4 (MQTT 3.1.1) or 5 (MQTT 5.0)"
            )),
        }
    }
}

/// What becomes of a message's retain flag on the remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetainPolicy {
    /// Republished retained when it was published retained (the default).
    #[default]
    Keep,
    /// Never retained on the remote.
    Clear,
}

/// TLS to the remote: `[bridges.sink.tls]`. Present means TLS; the
/// system's roots are trusted, plus `ca_file` when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTls {
    /// PEM CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for remotes that require mutual TLS
    /// (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the remote's certificate must carry; the address's host by
    /// default.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Settings of an [`MqttSink`](super::MqttSink).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `host:port` of the remote broker.
    pub address: String,
    /// 4 (MQTT 3.1.1) or 5 (MQTT 5.0, the default).
    #[serde(default)]
    pub protocol: RemoteProtocol,
    /// The bridge's client id on the remote: the remote keeps our session
    /// (in-flight messages, QoS 2 state) under it, so it must be stable
    /// and unique to this bridge.
    pub client_id: String,
    /// Remote topic template, rendered per message: `{topic}` (the
    /// default) keeps the topic, `cloud/site-1/{topic}` adds a prefix,
    /// `{topic.2..}` strips the first level.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Highest QoS used on the remote: a message goes at its publisher's
    /// QoS, at most this. 2 by default.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// `keep` (default) or `clear`.
    #[serde(default)]
    pub retain: RetainPolicy,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u16,
    /// How long the remote keeps our session while we are away (MQTT 5;
    /// MQTT 3.1.1 keeps it until the remote drops it). One week by default:
    /// an outage shorter than this loses no QoS 1/2 state on the remote.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_secs: u32,
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose content (trailing newline removed) is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub tls: Option<RemoteTls>,
    /// QoS 1/2 messages awaiting the remote's acknowledgement at once (the
    /// remote's receive maximum lowers it); also what one delivery batch
    /// holds.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u16,
    #[serde(
        rename = "connect_timeout_secs",
        default = "default_connect_timeout",
        deserialize_with = "crate::config::duration::secs_at_least_one"
    )]
    pub connect_timeout: Duration,
    /// How long the remote may leave an acknowledgement owed before the
    /// connection is taken as dead, dropped and opened again (what was not
    /// acknowledged is resent).
    #[serde(
        rename = "ack_timeout_secs",
        default = "default_ack_timeout",
        deserialize_with = "crate::config::duration::secs_at_least_one"
    )]
    pub ack_timeout: Duration,
    /// The in direction: `[[bridges.sink.inbound]]` subscriptions on the
    /// remote whose messages are published locally. Empty: out only.
    #[serde(default)]
    pub inbound: Vec<InboundRoute>,
}

fn default_topic() -> String {
    "{topic}".to_owned()
}

fn default_qos() -> u8 {
    2
}

fn default_keep_alive() -> u16 {
    60
}

fn default_session_expiry() -> u32 {
    7 * 24 * 3600
}

fn default_max_in_flight() -> u16 {
    100
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The most `[[bridges.sink.inbound]]` tables: they go in one SUBSCRIBE.
pub const MAX_INBOUND_ROUTES: u16 = 100;

/// A setting that cannot work, with its key under `sink.`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MqttConfigError {
    pub key: &'static str,
    pub message: String,
}

impl MqttSinkConfig {
    /// Everything [`MqttSink::new`](super::MqttSink::new) would refuse,
    /// without connecting.
    pub fn check(&self) -> Result<(), MqttConfigError> {
        let bad = |key: &'static str, message: String| Err(MqttConfigError { key, message });
        if self.host_port().is_none() {
            return bad("address", format!("`{}` is not host:port", self.address));
        }
        if self.client_id.is_empty() || self.client_id.len() > 65535 {
            return bad("client_id", "must be 1 to 65535 bytes".into());
        }
        if self.qos > 2 {
            return bad("qos", "must be 0, 1 or 2".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > super::MAX_PUBLISH_PACKET_ID {
            return bad(
                "max_in_flight",
                format!("must be between 1 and {}", super::MAX_PUBLISH_PACKET_ID),
            );
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return bad(
                "password_env",
                "give password_file or password_env, not both".into(),
            );
        }
        if (self.password_file.is_some() || self.password_env.is_some())
            && self.username.is_none()
            && self.protocol == RemoteProtocol::V311
        {
            return bad(
                "username",
                "MQTT 3.1.1 sends a password only with a user name".into(),
            );
        }
        self.password().map(|_| ())?;
        if self.inbound.len() > usize::from(MAX_INBOUND_ROUTES) {
            return bad(
                "inbound",
                format!("at most {MAX_INBOUND_ROUTES} subscriptions"),
            );
        }
        for route in &self.inbound {
            route.check().map_err(|message| MqttConfigError {
                key: "inbound",
                message,
            })?;
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return bad(
                    "tls.key_file",
                    "cert_file and key_file go together (mutual TLS)".into(),
                );
            }
            super::tls::connector(tls).map_err(|message| MqttConfigError {
                key: "tls",
                message,
            })?;
        }
        Ok(())
    }

    /// The address split into host and port.
    pub(crate) fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok().filter(|&p| p != 0)?;
        (!host.is_empty()).then_some((host, port))
    }

    /// The password from its file or variable, if one is configured.
    pub(crate) fn password(&self) -> Result<Option<Vec<u8>>, MqttConfigError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read(path).map_err(|e| MqttConfigError {
                key: "password_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let mut text = text;
            while matches!(text.last(), Some(b'\n' | b'\r')) {
                text.pop();
            }
            return Ok(Some(text));
        }
        if let Some(var) = &self.password_env {
            return match std::env::var_os(var) {
                Some(v) => Ok(Some(v.into_encoded_bytes())),
                None => Err(MqttConfigError {
                    key: "password_env",
                    message: format!("environment variable {var} is not set"),
                }),
            };
        }
        Ok(None)
    }
}
