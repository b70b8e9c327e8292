//! The admin HTTP listener: Prometheus metrics, health and readiness, and a
//! JSON REST API to look at and act on the running broker.
//!
//! Served by axum's router over hyper, one task per connection (the TLS
//! handshake runs in that task, never in the accept loop). The REST API
//! needs `Authorization: Bearer TOKEN` when a token is configured, and is
//! served to loopback clients only when none is; health endpoints never
//! need it, `/metrics` only with `protect_metrics`. Every request first
//! passes `guard` (Host, Origin, size and time bounds).
//!
//! Layout: `api` (REST handlers), `metrics` (the exposition, built at
//! scrape time from the broker's counters), `dashboard` (the live page),
//! `guard` (what a request must look like), this file (routing, auth,
//! serving).

mod api;
mod dashboard;
mod guard;
mod metrics;
mod mqtt_ws;
mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::bridge::Bridges;
use crate::broker::Broker;
use crate::config::AdminConfig;
use crate::ops::reload::Reloader;
use crate::server::ListenerCtx;

pub use metrics::render_metrics;

/// Everything the handlers reach.
pub struct AdminState {
    pub broker: Arc<Broker>,
    pub bridges: Arc<Bridges>,
    pub reloader: Arc<Reloader>,
    /// The bound MQTT listeners (metrics, dashboard, allowed origins): the
    /// admin asks the server's layer, the broker does not keep them.
    pub listeners: Vec<Arc<ListenerCtx>>,
    /// Set once every MQTT listener is bound; cleared at shutdown.
    pub ready: AtomicBool,
    /// The node's cluster part, in cluster mode.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterStatus>>,
    /// MQTT over WebSocket at `/mqtt` on the admin port
    /// (`admin.mqtt_websocket`), as a listener of its own.
    mqtt_endpoint: Option<Arc<ListenerCtx>>,
    /// The admin listener's port (the dashboard's config).
    port: u16,
    token: Option<String>,
    protect_metrics: bool,
    dashboard: bool,
    policy: guard::Policy,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.token_file {path}: {error}")]
    Token { path: String, error: std::io::Error },
    #[error("admin.token_file {path} is empty")]
    EmptyToken { path: String },
    #[error("admin listener: cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("admin listener TLS: {0}")]
    Tls(#[from] crate::server::TlsSetupError),
}

impl AdminState {
    pub fn new(
        config: &AdminConfig,
        bound: &AdminListener,
        broker: Arc<Broker>,
        bridges: Arc<Bridges>,
        reloader: Arc<Reloader>,
        listeners: Vec<Arc<ListenerCtx>>,
    ) -> Result<Arc<AdminState>, AdminError> {
        let token = token::load(config)?;
        if token.is_none() && !config.bind.ip().to_canonical().is_loopback() {
            tracing::warn!(
                addr = %config.bind,
                "the admin listener is not on loopback and has no token: the REST API answers loopback clients only (set admin.token_file or admin.token_env)"
            );
        }
        let mqtt_endpoint = config.mqtt_websocket.then(|| {
            Arc::new(crate::server::admin_endpoint(
                bound.addr,
                bound.tls.is_some(),
                broker.config.allow_anonymous,
            ))
        });
        Ok(Arc::new(AdminState {
            mqtt_endpoint,
            port: bound.addr.port(),
            broker,
            bridges,
            reloader,
            listeners,
            ready: AtomicBool::new(false),
            cluster: std::sync::OnceLock::new(),
            token,
            protect_metrics: config.protect_metrics,
            dashboard: config.dashboard,
            policy: guard::Policy::new(config),
        }))
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), expected.as_bytes())
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// case-insensitive (RFC 9110 11.1): `bearer TOKEN` from a hand-written
/// curl was refused.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares without stopping at the first difference, so response timing
/// does not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Without a token anyone who reaches the socket could use the API, so
/// tokenless mode is for clients on this machine only.
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let local = req
        .extensions()
        .get::<guard::ConnInfo>()
        .is_some_and(|c| c.peer_is_loopback());
    if state.token.is_none() && !local {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "the admin API has no token configured: only loopback clients may use it"})),
        )
            .into_response()
    } else if state.authorized(&req) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})),
        )
            .into_response()
    }
}

async fn metrics_handler(State(state): State<Arc<AdminState>>, req: Request) -> Response {
    if state.protect_metrics && !state.authorized(&req) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    match render_metrics(
        &state.broker,
        &state.bridges,
        &state.listeners,
        state.cluster.get().map(|c| &**c),
    ) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let listeners = state.ready.load(Ordering::Acquire);
    let store = state.broker.store();
    // After a storage failure nothing is acknowledged any more, and the
    // process is about to exit.
    let store_failed = store.failure().is_some();
    let ready = listeners && !store_failed;
    let bridges: Vec<serde_json::Value> = state
        .bridges
        .statuses()
        .into_iter()
        .map(|b| serde_json::json!({"name": b.name, "state": b.state}))
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "listeners_bound": listeners,
        "store": match (store.is_enabled(), store_failed) {
            (_, true) => "failed",
            (true, false) => "open",
            (false, false) => "memory",
        },
        "bridges": bridges,
    });
    // A failing bridge does not make the broker unready: devices can still
    // publish, and the bridge buffers.
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/broker", get(api::broker))
        .route("/clients", get(api::list_clients))
        .route(
            "/clients/{id}",
            get(api::get_client).delete(api::kick_client),
        )
        .route(
            "/clients/{id}/subscriptions",
            get(api::client_subscriptions),
        )
        .route("/subscriptions", get(api::list_subscriptions))
        .route(
            "/retained",
            get(api::list_retained).delete(api::delete_retained),
        )
        .route("/cluster", get(api::cluster))
        .route("/bridges", get(api::list_bridges))
        .route("/bridges/{name}", get(api::get_bridge))
        .route("/bridges/{name}/pause", post(api::pause_bridge))
        .route("/bridges/{name}/resume", post(api::resume_bridge))
        .route("/publish", post(api::publish))
        .route("/reload", post(api::reload))
        .route("/log-level", put(api::set_log_level))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    let mut app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1", api);
    if state.dashboard {
        app = app.merge(dashboard::routes());
    }
    if state.mqtt_endpoint.is_some() {
        app = app.route(crate::server::ADMIN_MQTT_PATH, get(mqtt_ws::upgrade));
    }
    app.layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state),
        guard::check,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(
        state.policy.max_body_bytes(),
    ))
    .with_state(state)
}

/// A bound admin listener.
pub struct AdminListener {
    socket: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    pub addr: SocketAddr,
}

/// Binds the admin address and loads its TLS configuration.
pub async fn bind(config: &AdminConfig) -> Result<AdminListener, AdminError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let listener_tls = crate::config::TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
                require_certificate: false,
                use_identity_as_username: false,
                identity_source: Default::default(),
            };
            let mut server = (*crate::server::server_config(&listener_tls)?).clone();
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
        }
        _ => None,
    };
    let socket = TcpListener::bind(config.bind)
        .await
        .map_err(|error| AdminError::Bind {
            addr: config.bind,
            error,
        })?;
    let addr = socket.local_addr().map_err(|error| AdminError::Bind {
        addr: config.bind,
        error,
    })?;
    Ok(AdminListener { socket, tls, addr })
}

/// Serves the admin API until the process ends.
pub async fn serve(listener: AdminListener, state: Arc<AdminState>) {
    let header_timeout = state.policy.request_timeout;
    let scheme = if listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for l in state.listeners.iter() {
        l.ws_origins.set_dashboard(scheme, listener.addr.port());
    }
    let app = router(state);
    loop {
        let (tcp, peer) = match listener.socket.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service =
            TowerToHyperService::new(app.clone().layer(axum::Extension(guard::ConnInfo { peer })));
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let http = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                b
            };
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let _ = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                }
                None => {
                    let _ = http
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                }
            }
        });
    }
}
