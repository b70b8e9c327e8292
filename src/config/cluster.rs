//! The `[cluster]` table: cluster mode on NATS JetStream (issue 23). Its
//! presence turns cluster mode on; without it the broker is a single node
//! with its embedded store (see `crate::cluster` for what crosses nodes).

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::{must_exist, Problem};

/// JetStream keeps at most five replicas of a stream.
const MAX_REPLICAS: u8 = 5;

/// How this node reaches NATS and what it names there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`); the
    /// client tries them in turn and learns the rest of the NATS cluster.
    pub servers: Vec<String>,
    /// This node's name, unique in the cluster: it owns sessions and
    /// appears in the admin API.
    pub node_name: String,
    /// JetStream replicas of every stream and bucket: a message is
    /// acknowledged once a majority of them stored it.
    pub replicas: u8,
    /// The first token of every subject and the start of every stream and
    /// bucket name, so several clusters can share one NATS.
    pub prefix: String,
    /// NATS user name; its password comes from `password_file` or
    /// `password_env`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// A NATS token, from a file or an environment variable (instead of a
    /// user and password).
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// PEM CA certificates the NATS servers' certificates must chain to
    /// (else the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// Seconds a message handed to a persistent session stays unacknowledged
    /// before JetStream offers it again: how long the messages a killed
    /// node was delivering wait before the node that resumes the session
    /// gets them.
    pub redeliver_after_secs: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            servers: Vec::new(),
            node_name: String::new(),
            replicas: 3,
            prefix: "sluice".into(),
            user: None,
            password_file: None,
            password_env: None,
            token_file: None,
            token_env: None,
            tls_ca: None,
            redeliver_after_secs: 30,
        }
    }
}

impl ClusterConfig {
    /// Everything wrong with the `[cluster]` table, keys named in full.
    pub(super) fn validate(&self) -> Result<(), Problem> {
        if self.servers.is_empty() {
            return Err(Problem::new(
                "cluster.servers",
                "at least one NATS URL is needed",
            ));
        }
        if let Some(bad) = self.servers.iter().find(|s| !is_nats_url(s)) {
            return Err(Problem::new(
                "cluster.servers",
                format!("`{bad}` is not `nats://host:port` or `tls://host:port`"),
            ));
        }
        if !is_name(&self.node_name) {
            return Err(Problem::new(
                "cluster.node_name",
                "required: letters, digits, '-' and '_'",
            ));
        }
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(Problem::new(
                "cluster.replicas",
                format!("must be 1 to {MAX_REPLICAS} (JetStream's limit)"),
            ));
        }
        if self.redeliver_after_secs == 0 {
            return Err(Problem::new(
                "cluster.redeliver_after_secs",
                "must be at least 1",
            ));
        }
        // One NATS token and part of stream names: no '.', no wildcards.
        if !is_name(&self.prefix) {
            return Err(Problem::new(
                "cluster.prefix",
                "must be letters, digits, '-' and '_'",
            ));
        }
        self.validate_credentials()?;
        must_exist([
            ("cluster.password_file", self.password_file.as_ref()),
            ("cluster.token_file", self.token_file.as_ref()),
            ("cluster.tls_ca", self.tls_ca.as_ref()),
        ])?;
        for (key, var) in [
            ("cluster.password_env", &self.password_env),
            ("cluster.token_env", &self.token_env),
        ] {
            if let Some(var) = var {
                if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                    return Err(Problem::new(
                        key,
                        format!("environment variable {var} is not set"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A user with exactly one password source, or a token from exactly one
    /// source, or neither.
    fn validate_credentials(&self) -> Result<(), Problem> {
        let password = self.password_file.is_some() as u8 + self.password_env.is_some() as u8;
        let token = self.token_file.is_some() as u8 + self.token_env.is_some() as u8;
        if self.user.is_some() && password != 1 {
            return Err(Problem::new(
                "cluster.user",
                "needs exactly one of cluster.password_file and cluster.password_env",
            ));
        }
        if self.user.is_none() && password > 0 {
            return Err(Problem::new(
                "cluster.password_file",
                "a password needs cluster.user",
            ));
        }
        if token > 1 || (token == 1 && self.user.is_some()) {
            return Err(Problem::new(
                "cluster.token_file",
                "one of cluster.token_file and cluster.token_env, and not with cluster.user",
            ));
        }
        Ok(())
    }
}

/// `nats://host:port` or `tls://host:port` (a port is required: NATS
/// clients differ on the default), without user information.
fn is_nats_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"));
    let Some((host, port)) = rest.and_then(|r| r.rsplit_once(':')) else {
        return false;
    };
    // No credentials in the URL: they would show in logs; they have keys.
    !host.is_empty() && !host.contains(['/', ' ', '@']) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// A non-empty name of ASCII letters, digits, `-` and `_`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
