//! Configuration: built-in defaults, an optional TOML file and `SLUICE__…`
//! environment overrides, read through the `config` crate. Unknown keys and
//! bad values are errors that name the key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod admin;

pub use admin::AdminConfig;
/// A bridge's table is the bridges crate's own type: its keys, defaults and
/// checks live there, beside the sinks they configure.
pub use sluice_bridges::config::{BridgeAck, BridgeConfig, SinkConfig};

use crate::session::QueueFullPolicy;
use crate::store::FsyncPolicy;

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Load {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: invalid value for `{key}`: {message}")]
    Invalid {
        source_name: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain MQTT over TCP.
    #[default]
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket (subprotocol `mqtt`), for browsers.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerProtocol::Tls | ListenerProtocol::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerProtocol::Ws | ListenerProtocol::Wss)
    }

    pub fn name(self) -> &'static str {
        match self {
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "tls",
            ListenerProtocol::Ws => "ws",
            ListenerProtocol::Wss => "wss",
        }
    }
}

/// Which part of a client certificate becomes the user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// The subject's common name (as mosquitto's `use_identity_as_username`).
    #[default]
    Cn,
    /// The first DNS subject alternative name.
    Dns,
    /// The first e-mail subject alternative name.
    Email,
    /// The first URI subject alternative name.
    Uri,
}

/// TLS settings of a `tls` or `wss` listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca`).
    #[serde(default)]
    pub require_certificate: bool,
    /// Use the client certificate's identity as the user name; no password
    /// is then needed.
    #[serde(default)]
    pub use_identity_as_username: bool,
    #[serde(default)]
    pub identity_source: IdentitySource,
}

fn default_ws_path() -> String {
    "/mqtt".into()
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port, e.g. "127.0.0.1:1883". Port 0 picks a free port.
    pub bind: SocketAddr,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Overrides the global `allow_anonymous` for this listener.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// Connections on this listener; 0 = only the global limit applies.
    #[serde(default)]
    pub max_connections: usize,
    /// HTTP path of a `ws`/`wss` listener.
    #[serde(default = "default_ws_path")]
    pub ws_path: String,
    /// Page origins (`https://app.example.com`) a browser may open a
    /// `ws`/`wss` connection from, besides the listener's own host and
    /// port and the admin dashboard's; `*` allows any. Upgrades without
    /// `Origin` (devices, non-browser clients) are always accepted.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Overrides `limits.queue_full_policy` for sessions of clients that
    /// connect here (e.g. `push_back` for a listener of back-end consumers
    /// that must not lose messages, `drop_oldest` for dashboards).
    #[serde(default)]
    pub queue_full_policy: Option<QueueFullPolicy>,
    /// Required for `tls` and `wss`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl ListenerConfig {
    /// A plain TCP listener, as `--bind` makes.
    pub fn tcp(bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            bind,
            protocol: ListenerProtocol::Tcp,
            allow_anonymous: None,
            max_connections: 0,
            ws_path: default_ws_path(),
            allowed_origins: Vec::new(),
            queue_full_policy: None,
            tls: None,
        }
    }
}

/// Limits against misbehaving or overloaded clients. Every one has a safe
/// default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet accepted from a client, fixed header included.
    pub max_packet_size: u32,
    /// Simultaneous client connections.
    pub max_connections: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight_messages: u16,
    /// QoS 2 messages a client may have unreleased towards us (v5 Receive Maximum).
    pub receive_maximum: u16,
    /// Messages queued per session (offline, or beyond the inflight window).
    pub max_queued_messages: usize,
    /// Payload bytes queued per session.
    pub max_queued_bytes: usize,
    pub queue_full_policy: QueueFullPolicy,
    /// Levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Bytes in a topic name or filter.
    pub max_topic_length: usize,
    /// Largest keep alive accepted; clients asking for more (or 0) are told
    /// this value through v5 Server Keep Alive. 0 = no limit.
    pub max_keep_alive: u16,
    /// Cap on the v5 session expiry interval, seconds.
    pub max_session_expiry: u32,
    /// Topic aliases a v5 client may use towards us.
    pub topic_alias_maximum: u16,
    /// Seconds a new socket has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds one write to a client may wait for the client to read; a
    /// client that stops reading is disconnected after it (and counted).
    pub write_timeout_secs: u64,
    /// Subscriptions per client.
    pub max_subscriptions_per_client: usize,
    /// PUBLISH packets per second one client may send; beyond it the broker
    /// stops reading from that client until it is back under (back-pressure,
    /// nothing is dropped). 0 = no limit.
    pub publish_rate_messages: u32,
    /// Payload bytes per second one client may publish; 0 = no limit.
    pub publish_rate_bytes: u64,
    /// Bad passwords from one address (IPv6: one /64) within
    /// `auth_failure_window_secs` before its password logins are refused
    /// until the window ends (v5 0x9F, 3.1.1 rc 3). 0 = no throttle.
    pub max_auth_failures: u32,
    pub auth_failure_window_secs: u64,
    /// Largest CONNECT accepted, checked from the fixed header before any
    /// of it is buffered: a client that has not authenticated yet gets
    /// less than `max_packet_size` (the smaller of the two applies). The
    /// default, 320 KiB, holds every field of a CONNECT at its protocol
    /// limit (client id, will topic and payload, user name and password of
    /// 65,535 bytes each): every CONNECT the protocol allows is accepted,
    /// and `max_opening_bytes` bounds what unauthenticated clients hold
    /// together.
    pub max_connect_packet_size: u32,
    /// Bytes all connections still opening (before CONNACK) may buffer
    /// together; beyond it their reads wait (within the connect timeout).
    pub max_opening_bytes: usize,
    /// Bytes of retained messages (topic, payload, properties and a
    /// per-message overhead) across the broker; a retained PUBLISH that
    /// would go beyond is not retained (v5 QoS 1/2: refused with 0x97).
    pub max_retained_bytes: usize,
    /// Sessions (online and offline) across the broker; a CONNECT that
    /// would create one more is refused (v5 0x97, 3.1.1 rc 3).
    pub max_sessions: usize,
    /// Payload and topic bytes queued across all sessions; deliveries
    /// beyond it are dropped and counted.
    pub max_total_queued_bytes: usize,
}

impl Limits {
    /// The largest CONNECT accepted: the smaller of the two packet limits.
    pub fn connect_packet_limit(&self) -> usize {
        self.max_connect_packet_size.min(self.max_packet_size) as usize
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1 << 20,
            max_connections: 100_000,
            max_inflight_messages: 256,
            receive_maximum: 1024,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 << 20,
            queue_full_policy: QueueFullPolicy::DropOldest,
            max_topic_levels: 32,
            max_topic_length: 4096,
            max_keep_alive: 0,
            max_session_expiry: u32::MAX,
            topic_alias_maximum: 64,
            connect_timeout_secs: 10,
            write_timeout_secs: 30,
            max_subscriptions_per_client: 1000,
            publish_rate_messages: 0,
            publish_rate_bytes: 0,
            max_auth_failures: 10,
            auth_failure_window_secs: 60,
            max_connect_packet_size: 320 << 10,
            max_opening_bytes: 64 << 20,
            max_retained_bytes: 256 << 20,
            max_sessions: 1_000_000,
            max_total_queued_bytes: 1 << 30,
        }
    }
}

/// Who may connect with the client id of an existing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionTakeover {
    /// Only the identity (user name or certificate identity) that created
    /// the session; another is refused with v5 0x87 / 3.1.1 rc 5.
    #[default]
    SameIdentity,
    /// Any identity; when it differs from the session's, the old session is
    /// discarded first (its subscriptions and messages are never handed to
    /// the new identity).
    AnyIdentity,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable text (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// tracing filter, e.g. "info" or "sluice=debug".
    pub log_level: String,
    /// "human" (default) or "json".
    pub log_format: LogFormat,
    pub listeners: Vec<ListenerConfig>,
    pub limits: Limits,
    /// Accept clients without credentials.
    pub allow_anonymous: bool,
    /// Whether a client id in use by one identity may be taken by another:
    /// "same_identity" (default) or "any_identity".
    pub session_takeover: SessionTakeover,
    /// Prefix of the Response Information sent to v5 clients that ask for
    /// it; the client id is appended.
    pub response_information_prefix: String,
    /// Keep sessions, queues and retained messages on disk. Off: memory
    /// only, everything is lost on restart.
    pub persistence: bool,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// When acknowledged messages reach the disk: "always", "batch" (group
    /// commit, default) or "never" (OS buffers only).
    pub fsync: FsyncPolicy,
    /// Mosquitto-format password file (`$7$`/`$6$` lines). Reloaded on SIGHUP.
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file. Without one every client may publish and
    /// subscribe to everything. Reloaded on SIGHUP.
    pub acl_file: Option<PathBuf>,
    /// Bridges to Kafka and HTTP endpoints.
    pub bridges: Vec<BridgeConfig>,
    /// A directory of bridge definitions, one TOML file per bridge (the
    /// same keys as a `[[bridges]]` table), added to `bridges`.
    pub bridges_dir: Option<PathBuf>,
    /// The admin HTTP listener (metrics, health, REST API).
    pub admin: AdminConfig,
    /// Seconds between `$SYS/broker/...` updates (mosquitto's name); 0
    /// turns them off.
    pub sys_interval: u64,
    /// On SIGTERM, how long bridges may go on delivering what they hold
    /// before the broker exits (the rest stays in their buffers for the
    /// next start).
    pub drain_timeout_secs: u64,
    /// Threads that serve connections; 0 (default) is one per CPU core.
    /// One thread needs less CPU per message and answers sooner when the
    /// broker shares a small machine (see BENCHMARKS.md). Read at start
    /// only.
    pub worker_threads: usize,
}

/// More threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            log_format: LogFormat::Human,
            listeners: vec![ListenerConfig::tcp(SocketAddr::from((
                [127, 0, 0, 1],
                1883,
            )))],
            limits: Limits::default(),
            allow_anonymous: true,
            session_takeover: SessionTakeover::SameIdentity,
            response_information_prefix: "sluice/response/".into(),
            persistence: true,
            data_dir: PathBuf::from("./data"),
            fsync: FsyncPolicy::Batch,
            password_file: None,
            acl_file: None,
            bridges: Vec::new(),
            bridges_dir: None,
            admin: AdminConfig::default(),
            sys_interval: 10,
            drain_timeout_secs: 10,
            worker_threads: 0,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if given, then `SLUICE__SECTION__KEY`
    /// environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let source_name = match file {
            Some(f) => f.display().to_string(),
            None => "built-in defaults and environment".to_string(),
        };
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Load {
                    source_name,
                    message: "file not found".into(),
                });
            }
            builder = builder
                .add_source(config::File::from(PathBuf::from(f)).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SLUICE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let raw = builder.build().map_err(|e| ConfigError::Load {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        let mut cfg: Config = raw.try_deserialize().map_err(|e| ConfigError::Load {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = cfg.bridges_dir.clone() {
            cfg.bridges.extend(load_bridges_dir(&dir)?);
        }
        cfg.validate(&source_name)?;
        Ok(cfg)
    }

    fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            source_name: source_name.to_string(),
            key: key.to_string(),
            message: message.to_string(),
        };
        let l = &self.limits;
        if self.listeners.is_empty() {
            return Err(invalid("listeners", "at least one listener is needed"));
        }
        if l.max_packet_size < 64 || l.max_packet_size > crate::codec::MAX_VARINT + 5 {
            return Err(invalid(
                "limits.max_packet_size",
                "must be between 64 and 268435460",
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "worker_threads",
                &format!("must be at most {MAX_WORKER_THREADS} (0: one per core)"),
            ));
        }
        if l.max_inflight_messages == 0 {
            return Err(invalid(
                "limits.max_inflight_messages",
                "must be at least 1",
            ));
        }
        if l.receive_maximum == 0 {
            return Err(invalid("limits.receive_maximum", "must be at least 1"));
        }
        if l.max_queued_messages == 0 {
            return Err(invalid("limits.max_queued_messages", "must be at least 1"));
        }
        if l.max_topic_levels == 0 {
            return Err(invalid("limits.max_topic_levels", "must be at least 1"));
        }
        if l.max_topic_length == 0 || l.max_topic_length > 65_535 {
            return Err(invalid(
                "limits.max_topic_length",
                "must be between 1 and 65535",
            ));
        }
        if l.auth_failure_window_secs == 0 {
            return Err(invalid(
                "limits.auth_failure_window_secs",
                "must be at least 1",
            ));
        }
        if l.connect_timeout_secs == 0 {
            return Err(invalid("limits.connect_timeout_secs", "must be at least 1"));
        }
        if l.write_timeout_secs == 0 {
            return Err(invalid("limits.write_timeout_secs", "must be at least 1"));
        }
        if l.max_connect_packet_size < 64 {
            return Err(invalid(
                "limits.max_connect_packet_size",
                "must be at least 64",
            ));
        }
        if l.max_opening_bytes < l.connect_packet_limit() {
            return Err(invalid(
                "limits.max_opening_bytes",
                "must be at least the largest CONNECT accepted (limits.max_connect_packet_size)",
            ));
        }
        if l.max_sessions == 0 {
            return Err(invalid("limits.max_sessions", "must be at least 1"));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            match (&l.tls, l.protocol.uses_tls()) {
                (None, true) => {
                    return Err(invalid(
                        &key("tls"),
                        "a tls/wss listener needs a [listeners.tls] table with cert and key",
                    ))
                }
                (Some(_), false) => {
                    return Err(invalid(
                        &key("tls"),
                        "TLS settings on a tcp/ws listener (use protocol = \"tls\" or \"wss\")",
                    ))
                }
                (Some(t), true) => {
                    for (name, path) in [
                        ("tls.cert", Some(&t.cert)),
                        ("tls.key", Some(&t.key)),
                        ("tls.client_ca", t.client_ca.as_ref()),
                    ] {
                        if let Some(p) = path {
                            if !p.exists() {
                                return Err(invalid(
                                    &key(name),
                                    &format!("{} does not exist", p.display()),
                                ));
                            }
                        }
                    }
                    if t.require_certificate && t.client_ca.is_none() {
                        return Err(invalid(
                            &key("tls.require_certificate"),
                            "needs tls.client_ca",
                        ));
                    }
                    if t.use_identity_as_username && t.client_ca.is_none() {
                        return Err(invalid(
                            &key("tls.use_identity_as_username"),
                            "needs tls.client_ca",
                        ));
                    }
                }
                (None, false) => {}
            }
            if l.protocol.is_websocket() && !l.ws_path.starts_with('/') {
                return Err(invalid(&key("ws_path"), "must start with '/'"));
            }
            if let Some(bad) = l.allowed_origins.iter().find(|o| !is_origin_pattern(o)) {
                return Err(invalid(
                    &key("allowed_origins"),
                    &format!("`{bad}` is not `*` or `http(s)://host[:port]`"),
                ));
            }
        }
        for (name, path) in [
            ("password_file", &self.password_file),
            ("acl_file", &self.acl_file),
        ] {
            if let Some(p) = path {
                if !p.exists() {
                    return Err(invalid(name, &format!("{} does not exist", p.display())));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, b) in self.bridges.iter().enumerate() {
            let key = |k: &str| format!("bridges[{i}].{k}");
            b.validate(|f| {
                crate::topic::TopicFilter::parse(f.into(), l.max_topic_levels)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| invalid(&key(&e.key), &e.message))?;
            if !names.insert(b.name.clone()) {
                return Err(invalid(
                    &key("name"),
                    &format!("bridge `{}`: a second bridge with this name", b.name),
                ));
            }
        }
        if self.persistence && self.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "data_dir",
                "must not be empty when persistence is on",
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        let a = &self.admin;
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            return Err(invalid(
                "admin.tls_cert",
                "admin.tls_cert and admin.tls_key go together",
            ));
        }
        for (name, path) in [
            ("admin.tls_cert", &a.tls_cert),
            ("admin.tls_key", &a.tls_key),
            ("admin.token_file", &a.token_file),
        ] {
            if let Some(p) = path {
                if !p.exists() {
                    return Err(invalid(name, &format!("{} does not exist", p.display())));
                }
            }
        }
        if a.request_timeout_secs == 0 {
            return Err(invalid("admin.request_timeout_secs", "must be at least 1"));
        }
        if a.max_body_bytes < 1024 {
            return Err(invalid("admin.max_body_bytes", "must be at least 1024"));
        }
        if let Some(bad) = a.allowed_hosts.iter().find(|h| !is_host_pattern(h)) {
            return Err(invalid(
                "admin.allowed_hosts",
                &format!("`{bad}` is not `*`, `name` or `name:port`"),
            ));
        }
        if let Some(bad) = a.allowed_origins.iter().find(|o| !is_origin_pattern(o)) {
            return Err(invalid(
                "admin.allowed_origins",
                &format!("`{bad}` is not `*` or `http(s)://host[:port]`"),
            ));
        }
        if let (None, Some(var)) = (&a.token_file, &a.token_env) {
            if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                return Err(invalid(
                    "admin.token_env",
                    &format!("environment variable {var} is not set"),
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid(
                "log_level",
                "not a valid log filter (try \"info\" or \"sluice=debug\")",
            ));
        }
        Ok(())
    }
}

/// `*`, `name` or `name:port` (no scheme, no path).
fn is_host_pattern(h: &str) -> bool {
    h == "*" || (!h.is_empty() && !h.contains(['/', ' ', '*']))
}

/// `*` or `http(s)://host[:port]` (no path).
pub(crate) fn is_origin_pattern(o: &str) -> bool {
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"));
    o == "*" || rest.is_some_and(|r| is_host_pattern(r.trim_end_matches('/')) && r != "*")
}

/// Reads every `*.toml` in `dir` (in name order) as one bridge.
fn load_bridges_dir(dir: &Path) -> Result<Vec<BridgeConfig>, ConfigError> {
    let source_name = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Load {
        source_name: source_name.clone(),
        message: format!("bridges_dir: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.display().to_string();
            config::Config::builder()
                .add_source(config::File::from(f).format(config::FileFormat::Toml))
                .build()
                .and_then(|c| c.try_deserialize::<BridgeConfig>())
                .map_err(|e| ConfigError::Load {
                    source_name: name,
                    message: e.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        Config::load(Some(f.path()))
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:1883");
        assert!(c.allow_anonymous);
    }

    #[test]
    fn file_values_override_defaults() {
        let c =
            load_str("[limits]\nmax_packet_size = 2048\n[[listeners]]\nbind = \"127.0.0.1:0\"\n")
                .unwrap();
        assert_eq!(c.limits.max_packet_size, 2048);
        assert_eq!(c.listeners[0].bind.port(), 0);
    }

    #[test]
    fn unknown_key_is_an_error_naming_key_and_file() {
        let err = load_str("[limits]\nmax_pakcet_size = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_pakcet_size"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }

    /// The pre-authentication CONNECT limit is the smaller of the two, and
    /// the opening budget must hold at least one such CONNECT.
    #[test]
    fn connect_and_budget_limits_are_checked() {
        let c = load_str("[limits]\nmax_packet_size = 2048\n").expect("valid");
        assert_eq!(c.limits.connect_packet_limit(), 2048);
        for (toml, key) in [
            (
                "max_connect_packet_size = 10",
                "limits.max_connect_packet_size",
            ),
            ("max_opening_bytes = 1000", "limits.max_opening_bytes"),
            ("max_sessions = 0", "limits.max_sessions"),
        ] {
            let err = load_str(&format!("[limits]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn bad_value_is_an_error_naming_key() {
        let err = load_str("[limits]\nmax_inflight_messages = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_inflight_messages"), "{err}");
        let err = load_str("[limits]\nmax_packet_size = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_packet_size"), "{err}");
    }

    #[test]
    fn worker_threads_default_to_one_per_core_and_are_bounded() {
        assert_eq!(Config::load(None).unwrap().worker_threads, 0);
        assert_eq!(load_str("worker_threads = 1\n").unwrap().worker_threads, 1);
        let err = load_str("worker_threads = 100000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker_threads"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }

    #[test]
    fn bridges_dir_adds_one_bridge_per_file_and_names_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = |name: &str| {
            format!("name = \"{name}\"\nfilters = [\"a/#\"]\n[sink]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n")
        };
        std::fs::write(dir.path().join("a.toml"), bridge("one")).unwrap();
        std::fs::write(dir.path().join("b.toml"), bridge("two")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let c = load_str(&format!("bridges_dir = \"{}\"\n", dir.path().display())).unwrap();
        let names: Vec<&str> = c.bridges.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        std::fs::write(
            dir.path().join("c.toml"),
            "name = \"three\"\nfilterz = []\n",
        )
        .unwrap();
        let err = load_str(&format!("bridges_dir = \"{}\"\n", dir.path().display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains("filterz"), "{err}");
    }

    #[test]
    fn admin_hosts_and_origins_are_checked() {
        let c = load_str("[admin]\nallowed_hosts = [\"broker.lan\", \"ops:9000\"]\nallowed_origins = [\"https://ops.example\", \"*\"]\n").unwrap();
        assert_eq!(c.admin.request_timeout_secs, 10);
        for (toml, key) in [
            (
                "allowed_hosts = [\"http://broker.lan\"]",
                "admin.allowed_hosts",
            ),
            (
                "allowed_origins = [\"ops.example\"]",
                "admin.allowed_origins",
            ),
            (
                "allowed_origins = [\"https://ops.example/path\"]",
                "admin.allowed_origins",
            ),
            ("request_timeout_secs = 0", "admin.request_timeout_secs"),
        ] {
            let err = load_str(&format!("[admin]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/sluice.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/sluice.toml") && err.contains("not found"),
            "{err}"
        );
    }
}
