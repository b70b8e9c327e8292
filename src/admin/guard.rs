//! What the admin listener accepts, before any handler runs: a Host that
//! DNS rebinding cannot forge, no state-changing request from a foreign
//! page, no tokenless API use from another machine, and requests that
//! arrive within `request_timeout_secs` and `max_body_bytes`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::config::AdminConfig;
use crate::server::origin::{host_allowed, origin_listed, Authority, WebOrigin};

/// The two ends of the connection a request came on, set per connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
}

impl ConnInfo {
    /// Whether the client is on this machine (IPv4-mapped loopback too).
    pub fn peer_is_loopback(&self) -> bool {
        self.peer.ip().to_canonical().is_loopback()
    }
}

/// The Host/Origin rules and request bounds of the listener.
#[derive(Debug, Clone)]
pub struct Policy {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// Port a Host header without one means (80, or 443 with TLS).
    default_port: u16,
    pub request_timeout: Duration,
    max_body_bytes: usize,
}

impl Policy {
    pub fn new(config: &AdminConfig) -> Policy {
        Policy {
            allowed_hosts: config.allowed_hosts.clone(),
            allowed_origins: config.allowed_origins.clone(),
            default_port: if config.tls_cert.is_some() { 443 } else { 80 },
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            max_body_bytes: config.max_body_bytes,
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Why the request is refused, if it is.
    fn refusal(&self, req: &Request) -> Option<(StatusCode, String)> {
        let headers = req.headers();
        let host_text = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let Some(host) =
            Authority::parse(host_text).filter(|h| host_allowed(h, &self.allowed_hosts))
        else {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                format!("Host `{host_text}` is not accepted here (an IP address, localhost, or admin.allowed_hosts)"),
            ));
        };
        // A WebSocket upgrade is a GET, but the page would then talk MQTT
        // with the user's reach: its Origin is checked as for a POST.
        let safe = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) && !headers.contains_key(header::SEC_WEBSOCKET_KEY);
        if !safe {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let text = origin.to_str().unwrap_or("");
                let same = WebOrigin::parse(text)
                    .is_some_and(|o| o.same_as_host(&host, self.default_port));
                if !same && !origin_listed(text, &self.allowed_origins) {
                    return Some((
                        StatusCode::FORBIDDEN,
                        format!("Origin `{text}` may not change anything here (same origin or admin.allowed_origins)"),
                    ));
                }
            }
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Some((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over admin.max_body_bytes ({})",
                    self.max_body_bytes
                ),
            ));
        }
        None
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONNECTION, "close")],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// A request body that fails once its time is up. Only reading the body
/// is bounded, not the handler's work: a reload or a durable publish is
/// never cut off half-way.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new("request body timed out"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The checks of every request, then the handler with the body under the
/// request timeout: a body trickled a byte at a time ends with 408 and a
/// closed connection.
pub async fn check(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if let Some((status, message)) = state.policy.refusal(&req) {
        tracing::info!(
            status = status.as_u16(),
            method = %req.method(),
            path = req.uri().path(),
            reason = %message,
            "admin request refused"
        );
        return refuse(status, message);
    }
    let expired = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(state.policy.request_timeout)),
        expired: Arc::clone(&expired),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if expired.load(Ordering::Relaxed) {
        tracing::info!("admin request body not received in time");
        return refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive within admin.request_timeout_secs".to_owned(),
        );
    }
    response
}
