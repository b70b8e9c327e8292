//! Subscriptions in the REST API: one client's, and the broker-wide list
//! the dashboard's Subscriptions view shows (the broker keeps them per
//! session, so the list is gathered from every session at request time).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{error, find, page, Shared};
use crate::broker::{SessionSlot, Subscription};
use crate::codec::RetainHandling;

/// A subscription as the API shows it.
fn subscription_json(sub: &Subscription) -> serde_json::Value {
    json!({
        "filter": sub.filter.raw.to_string(),
        "qos": sub.options.qos.as_u8(),
        "no_local": sub.options.no_local,
        "retain_as_published": sub.options.retain_as_published,
        "retain_handling": match sub.options.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        },
        "identifier": sub.identifier,
    })
}

fn by_filter(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    a["filter"].as_str().cmp(&b["filter"].as_str())
}

/// `GET /api/v1/clients/{id}/subscriptions`
pub async fn client_subscriptions(State(s): Shared, Path(id): Path<String>) -> Response {
    let Some(slot) = find(&s, &id) else {
        return error(StatusCode::NOT_FOUND, format!("no session `{id}`"));
    };
    let mut subs: Vec<serde_json::Value> = slot
        .subscriptions
        .lock()
        .values()
        .map(subscription_json)
        .collect();
    subs.sort_by(by_filter);
    Json(json!({"client_id": id, "subscriptions": subs})).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SubscriptionQuery {
    /// Substring of the filter or of the client id.
    q: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// One session's subscriptions that match the query, each with its
/// client id and whether that client is connected.
fn session_subscriptions(slot: &Arc<SessionSlot>, needle: Option<&str>) -> Vec<serde_json::Value> {
    let client_id = slot.client_id.to_string();
    let id_matches = needle.is_none_or(|n| client_id.contains(n));
    let connected = slot.is_online();
    slot.subscriptions
        .lock()
        .values()
        .filter(|sub| id_matches || needle.is_some_and(|n| sub.filter.raw.contains(n)))
        .map(|sub| {
            let mut v = subscription_json(sub);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("client_id".into(), json!(client_id));
                obj.insert("connected".into(), json!(connected));
            }
            v
        })
        .collect()
}

/// `GET /api/v1/subscriptions?q=&offset=&limit=`: every session's
/// subscriptions, sorted by filter then client id.
pub async fn list_subscriptions(
    State(s): Shared,
    Query(q): Query<SubscriptionQuery>,
) -> Json<serde_json::Value> {
    let mut all: Vec<serde_json::Value> = s
        .broker
        .sessions()
        .iter()
        .flat_map(|slot| session_subscriptions(slot, q.q.as_deref()))
        .collect();
    all.sort_by(|a, b| by_filter(a, b).then(a["client_id"].as_str().cmp(&b["client_id"].as_str())));
    page(all, q.offset, q.limit)
}
