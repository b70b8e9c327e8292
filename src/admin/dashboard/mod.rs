//! The live dashboard (`/dashboard/`): static files compiled into the
//! binary (no build step, nothing to install), and `config.json`, which
//! tells the page where the broker's WebSocket listeners are.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AdminState;

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const MQTT: &str = include_str!("mqtt-ws.js");
const STYLE: &str = include_str!("style.css");

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
        .route(
            "/dashboard/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/dashboard/mqtt-ws.js",
            get(|| async { file("text/javascript; charset=utf-8", MQTT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route("/dashboard/config.json", get(config))
}
