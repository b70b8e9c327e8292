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
    /// Host header values accepted besides IP literals and `localhost`
    /// (`name` for any port, `name:port` for one, `*` for any Host). A
    /// browser reaching the listener through a name an attacker controls
    /// (DNS rebinding) sends that name, so other names are refused.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://ops.example.com`) whose pages may send
    /// state-changing requests (POST, PUT, DELETE, PATCH) besides the
    /// listener's own origin; `*` allows any. Stops cross-site requests
    /// from a page the operator happens to visit.
    pub allowed_origins: Vec<String>,
    /// Seconds a request may take to arrive: its headers, then its body
    /// (a client trickling bytes holds a connection and a task otherwise).
    pub request_timeout_secs: u64,
    /// Largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
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
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            request_timeout_secs: 10,
            max_body_bytes: 2 << 20,
        }
    }
}
