//! `GET /mqtt` on the admin listener: MQTT over WebSocket on the admin
//! port, so the dashboard has a broker to talk to on the defaults (no
//! ws listener, or `--bind` replacing the MQTT listeners).
//!
//! Before the upgrade the request passed the admin guard (Host, and its
//! Origin as for a state-changing request); here it also needs the admin
//! token, or a loopback peer when none is configured, as the REST API
//! does. A browser cannot set `Authorization` on a WebSocket, so the
//! token may come as the offered subprotocol `sluice.bearer.<base64url>`
//! (the server selects `mqtt`, never echoes the token). After the 101 the
//! connection is MQTT under the broker's own authentication.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::guard::ConnInfo;
use super::{bearer_token, constant_time_eq, AdminState};

/// Prefix of the subprotocol that carries the token.
const TOKEN_PROTOCOL: &str = "sluice.bearer.";

/// The subprotocols the client offered, in order.
fn offered(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The token the client presented: the Authorization header, else the
/// token subprotocol.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
    {
        return Some(t.to_owned());
    }
    let encoded = offered(headers).find_map(|p| p.strip_prefix(TOKEN_PROTOCOL))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::SEC_WEBSOCKET_VERSION, "13")],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Checks the request, answers 101 and hands the upgraded stream to the
/// server's MQTT connection.
pub async fn upgrade(State(state): State<Arc<AdminState>>, mut req: Request) -> Response {
    let Some(ctx) = state.mqtt_endpoint.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let headers = req.headers();
    let is_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_websocket)
    else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "MQTT over WebSocket (subprotocol mqtt) only",
        );
    };
    if !version_13 {
        return refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only");
    }
    let Some(conn) = req.extensions().get::<ConnInfo>().copied() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let allowed = match &state.token {
        None => conn.peer_is_loopback(),
        Some(expected) => presented_token(headers)
            .is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())),
    };
    if !allowed {
        tracing::info!(peer = %conn.peer, "admin MQTT WebSocket refused: no valid admin token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            if state.token.is_none() {
                "the admin listener has no token configured: only loopback clients may use it"
            } else {
                "missing or wrong admin token"
            },
        );
    }
    let accept = derive_accept_key(key.as_bytes());
    let protocol = offered(headers).find(|p| *p == "mqtt" || *p == "mqttv3.1");
    let protocol = protocol.and_then(|p| HeaderValue::from_str(p).ok());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let broker = Arc::clone(&state.broker);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                crate::server::serve_upgraded(broker, ctx, TokioIo::new(upgraded), conn.peer).await;
            }
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "admin WebSocket upgrade failed")
            }
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        out.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    response
}
