//! The `[[listeners]]` tables: where the broker listens, over which
//! transport, and the TLS settings of `tls` and `wss` listeners.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::validate::{is_origin_pattern, must_exist, Problem};
use crate::session::QueueFullPolicy;

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

impl ListenerConfig {
    /// Everything wrong with one listener; keys are relative to its table
    /// (`tls.cert`, `ws_path`, ...).
    pub(super) fn validate(&self) -> Result<(), Problem> {
        match (&self.tls, self.protocol.uses_tls()) {
            (None, true) => {
                return Err(Problem::new(
                    "tls",
                    "a tls/wss listener needs a [listeners.tls] table with cert and key",
                ))
            }
            (Some(_), false) => {
                return Err(Problem::new(
                    "tls",
                    "TLS settings on a tcp/ws listener (use protocol = \"tls\" or \"wss\")",
                ))
            }
            (Some(t), true) => t.validate()?,
            (None, false) => {}
        }
        if self.protocol.is_websocket() && !self.ws_path.starts_with('/') {
            return Err(Problem::new("ws_path", "must start with '/'"));
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin_pattern(o)) {
            return Err(Problem::new(
                "allowed_origins",
                format!("`{bad}` is not `*` or `http(s)://host[:port]`"),
            ));
        }
        Ok(())
    }
}

impl TlsConfig {
    fn validate(&self) -> Result<(), Problem> {
        must_exist([
            ("tls.cert", Some(&self.cert)),
            ("tls.key", Some(&self.key)),
            ("tls.client_ca", self.client_ca.as_ref()),
        ])?;
        if self.require_certificate && self.client_ca.is_none() {
            return Err(Problem::new(
                "tls.require_certificate",
                "needs tls.client_ca",
            ));
        }
        if self.use_identity_as_username && self.client_ca.is_none() {
            return Err(Problem::new(
                "tls.use_identity_as_username",
                "needs tls.client_ca",
            ));
        }
        Ok(())
    }
}
