//! The `[admin]` table: the HTTP listener for metrics, health and the
//! REST API.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Settings of the admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Loopback by default: the API can kick clients and publish.
    pub bind: SocketAddr,
    /// A file holding the bearer token the REST API requires
    /// (`Authorization: Bearer TOKEN`); surrounding whitespace is ignored.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token (used when `token_file`
    /// is not set).
    pub token_env: Option<String>,
    /// Require the token for `/metrics` too (off: Prometheus scrapes
    /// without credentials, like most exporters).
    pub protect_metrics: bool,
    /// Serve the live dashboard page at `/dashboard/` (it connects back over
    /// the ws/wss listeners).
    pub dashboard: bool,
    /// Serve HTTPS with this certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            token_env: None,
            protect_metrics: false,
            dashboard: true,
            tls_cert: None,
            tls_key: None,
        }
    }
}
