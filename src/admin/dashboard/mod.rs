//! The live dashboard (`/dashboard/`): static files compiled into the
//! binary (no build step, nothing to install), and `config.json`, which
//! tells the page where the broker's WebSocket listeners are.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AdminState;

const INDEX: &str = include_str!("index.html");
const STYLE: &str = include_str!("style.css");

/// The page's scripts, one per concept (index.html loads them in this
/// order): the MQTT client, helpers, the API, charts, views, the start.
const SCRIPTS: &[(&str, &str)] = &[
    ("mqtt-ws.js", include_str!("mqtt-ws.js")),
    ("dom.js", include_str!("dom.js")),
    ("api.js", include_str!("api.js")),
    ("charts.js", include_str!("charts.js")),
    ("views.js", include_str!("views.js")),
    ("overview.js", include_str!("overview.js")),
    ("clients.js", include_str!("clients.js")),
    ("subscriptions.js", include_str!("subscriptions.js")),
    ("retained.js", include_str!("retained.js")),
    ("bridges.js", include_str!("bridges.js")),
    ("topics.js", include_str!("topics.js")),
    ("app.js", include_str!("app.js")),
];

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `{"listeners": [{"protocol": "wss", "port": 8084, "path": "/mqtt"},
/// {"protocol": "ws", "port": 8080, "path": "/mqtt", "admin": true}],
/// "token_required": false}`: the broker's WebSocket listeners, then the
/// admin listener's own endpoint (which needs the admin token, or a
/// loopback client when `token_required` is false).
async fn config(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let mut listeners: Vec<serde_json::Value> = s
        .listeners
        .iter()
        .filter(|l| l.protocol.is_websocket())
        .map(|l| {
            serde_json::json!({
                "protocol": l.protocol.name(),
                "port": l.addr.port(),
                "path": l.ws_path,
            })
        })
        .collect();
    if let Some(endpoint) = &s.mqtt_endpoint {
        listeners.push(serde_json::json!({
            "protocol": endpoint.protocol.name(),
            "port": s.port,
            "path": endpoint.ws_path,
            "admin": true,
        }));
    }
    Json(serde_json::json!({
        "listeners": listeners,
        "token_required": s.token.is_some(),
    }))
}

/// One of [`SCRIPTS`] by name; 404 for anything else.
async fn script(Path(name): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => file("text/javascript; charset=utf-8", body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The dashboard's routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::permanent("/dashboard/") }),
        )
        .route(
            "/dashboard/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route("/dashboard/{script}", get(script))
        .route(
            "/dashboard/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route("/dashboard/config.json", get(config))
}
