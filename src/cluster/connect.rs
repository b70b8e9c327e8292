//! The node's connection to NATS, from the `[cluster]` table: servers,
//! credentials and the CA the servers' certificates chain to.

use std::time::Duration;

use crate::config::ClusterConfig;

/// Why the connection could not be set up (a credential that cannot be
/// read). An unreachable server is not an error: the client keeps trying
/// in the background (`retry_on_initial_connect`), and publishers wait.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{key}: cannot read {path}: {source}")]
    Secret {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: environment variable {var} is not set")]
    Env { key: &'static str, var: String },
    #[error("cluster.servers: {0}")]
    Nats(String),
}

/// Connects to the NATS servers as the `[cluster]` table says. With
/// `echo` off NATS does not send the connection its own publishes (the
/// node's clients had them locally); the connection of the shared
/// subscriptions needs them (NATS may pick this node's group member).
pub async fn connect(cfg: &ClusterConfig, echo: bool) -> Result<async_nats::Client, ConnectError> {
    let role = if echo { "shared" } else { "main" };
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("sluice-{}-{role}", cfg.node_name))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        // A burst of cross-node traffic waits in NATS' client buffer
        // rather than being dropped as a slow consumer.
        .subscription_capacity(1 << 16)
        .event_callback(move |event| async move {
            match event {
                async_nats::Event::Connected => {
                    tracing::info!(connection = role, "cluster: connected to NATS")
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!(
                        connection = role,
                        "cluster: disconnected from NATS, reconnecting"
                    )
                }
                other => tracing::warn!(connection = role, event = %other, "cluster: NATS"),
            }
        });
    if let Some(user) = &cfg.user {
        let password = secret(
            "cluster.password_file",
            cfg.password_file.as_ref(),
            "cluster.password_env",
            cfg.password_env.as_deref(),
        )?
        .unwrap_or_default();
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(token) = secret(
        "cluster.token_file",
        cfg.token_file.as_ref(),
        "cluster.token_env",
        cfg.token_env.as_deref(),
    )? {
        options = options.token(token);
    }
    if let Some(ca) = &cfg.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = cfg
        .servers
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| ConnectError::Nats(format!("`{s}`: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if !echo {
        options = options.no_echo();
    }
    options
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Nats(e.to_string()))
}

/// A secret from its file (trimmed of the final newline) or its
/// environment variable, whichever the table names.
fn secret(
    file_key: &'static str,
    file: Option<&std::path::PathBuf>,
    env_key: &'static str,
    env: Option<&str>,
) -> Result<Option<String>, ConnectError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConnectError::Secret {
            key: file_key,
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    if let Some(var) = env {
        return std::env::var(var).map(Some).map_err(|_| ConnectError::Env {
            key: env_key,
            var: var.to_owned(),
        });
    }
    Ok(None)
}
