//! Configuration: built-in defaults, an optional TOML file and `SLUICE__…`
//! environment overrides, read through the `config` crate. Unknown keys and
//! bad values are errors that name the key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod admin;
mod cluster;
mod limits;
mod listener;
mod validate;

pub use admin::AdminConfig;
pub use cluster::ClusterConfig;
pub use limits::Limits;
pub use listener::{IdentitySource, ListenerConfig, ListenerProtocol, TlsConfig};
/// A bridge's table is the bridges crate's own type: its keys, defaults and
/// checks live there, beside the sinks they configure.
pub use sluice_bridges::config::{BridgeAck, BridgeConfig, SinkConfig};

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
    /// Cluster mode on NATS JetStream; absent (default): a single node.
    pub cluster: Option<ClusterConfig>,
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
            cluster: None,
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
mod tests;
