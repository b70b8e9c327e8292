//! The `[admin]` table: the HTTP listener for metrics, health and the
//! REST API.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::validate::{is_host_pattern, is_origin_pattern, must_exist, Problem};

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
    /// Create `token_file` with a random token when it does not exist, and
    /// log the token once (a container image's first start: safe without
    /// the operator choosing a secret first, shown where they look).
    pub generate_token: bool,
    /// Require the token for `/metrics` too (off: Prometheus scrapes
    /// without credentials, like most exporters).
    pub protect_metrics: bool,
    /// Serve the live dashboard page at `/dashboard/` (it connects back over
    /// the ws/wss listeners, or this listener's `/mqtt`).
    pub dashboard: bool,
    /// Serve MQTT over WebSocket at `/mqtt` on this listener's own port
    /// (after the same Host, Origin and token checks as the REST API), so
    /// the dashboard works without a ws listener; the broker's own
    /// authentication applies to the MQTT connection as on any listener.
    pub mqtt_websocket: bool,
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
            generate_token: false,
            protect_metrics: false,
            dashboard: true,
            mqtt_websocket: true,
            tls_cert: None,
            tls_key: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            request_timeout_secs: 10,
            max_body_bytes: 2 << 20,
        }
    }
}

impl AdminConfig {
    /// Everything wrong with the `[admin]` table, keys named in full.
    pub(super) fn validate(&self) -> Result<(), Problem> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Problem::new(
                "admin.tls_cert",
                "admin.tls_cert and admin.tls_key go together",
            ));
        }
        if self.generate_token && self.token_file.is_none() {
            return Err(Problem::new(
                "admin.generate_token",
                "needs admin.token_file (where the generated token is kept)",
            ));
        }
        // A token file that is generated may be missing until the start.
        let token_file = self.token_file.as_ref().filter(|_| !self.generate_token);
        must_exist([
            ("admin.tls_cert", self.tls_cert.as_ref()),
            ("admin.tls_key", self.tls_key.as_ref()),
            ("admin.token_file", token_file),
        ])?;
        if self.request_timeout_secs == 0 {
            return Err(Problem::new(
                "admin.request_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(Problem::new(
                "admin.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| !is_host_pattern(h)) {
            return Err(Problem::new(
                "admin.allowed_hosts",
                format!("`{bad}` is not `*`, `name` or `name:port`"),
            ));
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin_pattern(o)) {
            return Err(Problem::new(
                "admin.allowed_origins",
                format!("`{bad}` is not `*` or `http(s)://host[:port]`"),
            ));
        }
        if let (None, Some(var)) = (&self.token_file, &self.token_env) {
            if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                return Err(Problem::new(
                    "admin.token_env",
                    format!("environment variable {var} is not set"),
                ));
            }
        }
        Ok(())
    }
}
