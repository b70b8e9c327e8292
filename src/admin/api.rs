//! The REST API (`/api/v1/...`), JSON in and out. Errors are
//! `{"error": "..."}` with a fitting status.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminState;
use crate::broker::SessionSlot;
use crate::codec::{QoS, ReasonCode};
use crate::ops::numbers::BrokerNumbers;
use crate::session::Message;
use crate::topic::TopicFilter;

mod subscriptions;

pub use subscriptions::{client_subscriptions, list_subscriptions};

type Shared = State<Arc<AdminState>>;

/// One page of a sorted list: `{"total": N, "items": [...]}` (100 items
/// unless `limit` says otherwise, 10,000 at most).
fn page<T: Serialize>(all: Vec<T>, offset: usize, limit: Option<usize>) -> Json<serde_json::Value> {
    let total = all.len();
    let limit = limit.unwrap_or(100).min(10_000);
    let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
    Json(json!({"total": total, "items": items}))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// `GET /api/v1/broker`: the numbers `$SYS/broker/...` publishes.
pub async fn broker(State(s): Shared) -> Json<BrokerNumbers> {
    Json(BrokerNumbers::read(&s.broker))
}

/// A client (session) as the API shows it.
#[derive(Debug, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub connected: bool,
    pub persistent: bool,
    pub address: Option<String>,
    pub username: Option<String>,
    /// "3.1.1" or "5.0".
    pub protocol: Option<&'static str>,
    pub keep_alive: u16,
    /// Current or last connection, ms since the Unix epoch.
    pub connected_since_ms: u64,
    pub inflight: usize,
    pub queued: usize,
    /// Messages this session lost to a full queue (or the global queue
    /// budget) since it began.
    pub dropped: u64,
    /// Messages that expired before they could be delivered.
    pub expired: u64,
    /// Publishers are held back for this session (`push_back` policy).
    pub pushing_back: bool,
    pub subscriptions: usize,
}

fn client_info(slot: &SessionSlot) -> ClientInfo {
    let (address, username, protocol, keep_alive, since) = {
        let c = slot.control.lock();
        (
            c.peer.map(|p| p.to_string()),
            c.username.as_ref().map(|u| u.to_string()),
            c.protocol.map(|v| if v.is_v5() { "5.0" } else { "3.1.1" }),
            c.keep_alive,
            c.connected_at_ms,
        )
    };
    let (inflight, queued, dropped, expired) = {
        let s = slot.state.lock();
        (s.inflight_len(), s.queued_len(), s.dropped, s.expired)
    };
    ClientInfo {
        client_id: slot.client_id.to_string(),
        connected: slot.is_online(),
        persistent: slot.is_persistent(),
        address,
        username,
        protocol,
        keep_alive,
        connected_since_ms: since,
        inflight,
        queued,
        dropped,
        expired,
        pushing_back: slot.is_pushing_back(),
        subscriptions: slot.subscriptions.lock().len(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ClientQuery {
    /// Substring of the client id, user name or address.
    q: Option<String>,
    /// Only connected (true) or only offline (false) clients.
    connected: Option<bool>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// `GET /api/v1/clients?q=&connected=&offset=&limit=` (sorted by id).
pub async fn list_clients(
    State(s): Shared,
    Query(q): Query<ClientQuery>,
) -> Json<serde_json::Value> {
    let mut all: Vec<ClientInfo> = s
        .broker
        .sessions()
        .iter()
        .map(|slot| client_info(slot))
        .collect();
    all.retain(|c| {
        q.connected.is_none_or(|want| c.connected == want)
            && q.q.as_deref().is_none_or(|needle| {
                c.client_id.contains(needle)
                    || c.username.as_deref().is_some_and(|u| u.contains(needle))
                    || c.address.as_deref().is_some_and(|a| a.contains(needle))
            })
    });
    all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    page(all, q.offset, q.limit)
}

fn find(s: &AdminState, id: &str) -> Option<Arc<SessionSlot>> {
    s.broker.find_session(&ByteString::from(id))
}

/// `GET /api/v1/clients/{id}`
pub async fn get_client(State(s): Shared, Path(id): Path<String>) -> Response {
    match find(&s, &id) {
        Some(slot) => Json(client_info(&slot)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no session `{id}`")),
    }
}

/// `DELETE /api/v1/clients/{id}`: disconnects the client (v5 clients get
/// DISCONNECT 0x98 administrative action). Its session stays as its
/// session expiry says.
pub async fn kick_client(State(s): Shared, Path(id): Path<String>) -> Response {
    let Some(slot) = find(&s, &id) else {
        return error(StatusCode::NOT_FOUND, format!("no session `{id}`"));
    };
    if !slot.is_online() {
        return error(StatusCode::CONFLICT, format!("`{id}` is not connected"));
    }
    match slot.kick(ReasonCode::AdministrativeAction) {
        true => {
            tracing::info!(client_id = %id, "client disconnected by the admin API");
            Json(json!({"disconnected": id})).into_response()
        }
        false => error(StatusCode::CONFLICT, format!("`{id}` is not connected")),
    }
}

#[derive(Debug, Deserialize)]
pub struct RetainedQuery {
    /// A topic filter, `#` by default.
    filter: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// Shows a payload as text when it is UTF-8, else as base64.
fn payload_json(payload: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(payload) {
        Ok(text) => json!({"payload": text}),
        Err(_) => {
            json!({"payload_base64": base64::engine::general_purpose::STANDARD.encode(payload)})
        }
    }
}

/// `GET /api/v1/retained?filter=&offset=&limit=` (sorted by topic).
pub async fn list_retained(State(s): Shared, Query(q): Query<RetainedQuery>) -> Response {
    let raw = q.filter.unwrap_or_else(|| "#".to_owned());
    let max_levels = s.broker.config.limits.max_topic_levels;
    let filter = match TopicFilter::parse(ByteString::from(raw.as_str()), max_levels) {
        Ok(f) if f.share_group.is_none() => f,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "a shared subscription is not a retained filter",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("filter `{raw}`: {e}")),
    };
    let all = s.broker.retained_matching(&filter.filter);
    let total = all.len();
    let limit = q.limit.unwrap_or(100).min(10_000);
    let items: Vec<serde_json::Value> = all
        .iter()
        .skip(q.offset)
        .take(limit)
        .map(|m| {
            let mut v = json!({
                "topic": m.topic.to_string(),
                "qos": m.qos.as_u8(),
                "bytes": m.payload.len(),
            });
            if let (Some(obj), serde_json::Value::Object(p)) =
                (v.as_object_mut(), payload_json(&m.payload))
            {
                obj.extend(p);
            }
            v
        })
        .collect();
    Json(json!({"total": total, "items": items})).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TopicQuery {
    topic: String,
}

/// `DELETE /api/v1/retained?topic=a/b`
pub async fn delete_retained(State(s): Shared, Query(q): Query<TopicQuery>) -> Response {
    if q.topic.is_empty() || q.topic.contains(['+', '#']) {
        return error(
            StatusCode::BAD_REQUEST,
            "a topic name (no wildcards) is needed",
        );
    }
    if s.broker
        .delete_retained(&ByteString::from(q.topic.as_str()))
    {
        tracing::info!(topic = %q.topic, "retained message deleted by the admin API");
        Json(json!({"deleted": q.topic})).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no retained message on `{}`", q.topic),
        )
    }
}

/// `GET /api/v1/cluster`: the node's name, its NATS connection, whether
/// the stream and bucket are ready, and its counters; 404 on a single node.
pub async fn cluster(State(s): Shared) -> Response {
    match s.cluster.get() {
        Some(c) => Json(c.view()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not in cluster mode"),
    }
}

/// `GET /api/v1/bridges`
pub async fn list_bridges(State(s): Shared) -> Json<serde_json::Value> {
    Json(json!({"items": s.bridges.statuses()}))
}

/// `GET /api/v1/bridges/{name}`
pub async fn get_bridge(State(s): Shared, Path(name): Path<String>) -> Response {
    match s.bridges.status(&name) {
        Some(b) => Json(b).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no bridge `{name}`")),
    }
}

async fn set_paused(s: &AdminState, name: &str, paused: bool) -> Response {
    if s.bridges.set_paused(name, paused).await {
        match s.bridges.status(name) {
            Some(b) => Json(b).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no bridge `{name}`")),
        }
    } else {
        error(StatusCode::NOT_FOUND, format!("no bridge `{name}`"))
    }
}

/// `POST /api/v1/bridges/{name}/pause`: records keep arriving in the
/// buffer; nothing goes to the sink until resumed.
pub async fn pause_bridge(State(s): Shared, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, true).await
}

/// `POST /api/v1/bridges/{name}/resume`
pub async fn resume_bridge(State(s): Shared, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    topic: String,
    /// Text payload.
    #[serde(default)]
    payload: Option<String>,
    /// Binary payload, base64 (instead of `payload`).
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

/// `POST /api/v1/publish` `{"topic", "payload" | "payload_base64", "qos",
/// "retain"}`: routed like a client's message (durable before the answer
/// for QoS 1/2).
pub async fn publish(
    State(s): Shared,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(e) = crate::codec::check_topic_name(&req.topic) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("topic `{}`: {e}", req.topic),
        );
    }
    if req.topic.starts_with('$') {
        return error(
            StatusCode::BAD_REQUEST,
            "topics starting with '$' are the broker's",
        );
    }
    let payload = match (req.payload, req.payload_base64) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give payload or payload_base64, not both",
            )
        }
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())
        {
            Ok(p) => Bytes::from(p),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("payload_base64: {e}")),
        },
        (None, None) => Bytes::new(),
    };
    let Some(qos) = QoS::from_u8(req.qos) else {
        return error(StatusCode::BAD_REQUEST, "qos must be 0, 1 or 2");
    };
    let published = s.broker.publish(Message::from_broker(
        ByteString::from(req.topic.as_str()),
        payload,
        qos,
        req.retain,
        crate::store::now_ms(),
    ));
    s.broker.store().wait(published.ticket).await;
    Json(json!({"topic": req.topic, "matched": published.matched})).into_response()
}

/// `POST /api/v1/reload`: as SIGHUP.
pub async fn reload(State(s): Shared) -> Response {
    match s.reloader.reload().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload failed; the running configuration stays");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload failed, nothing changed: {e}"),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogLevelRequest {
    level: String,
}

/// `PUT /api/v1/log-level` `{"level": "debug"}` (any tracing filter).
pub async fn set_log_level(State(s): Shared, Json(req): Json<LogLevelRequest>) -> Response {
    match s.reloader.set_log_level(&req.level).await {
        Ok(()) => Json(json!({"level": req.level})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
