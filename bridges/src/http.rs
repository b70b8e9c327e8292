//! The HTTP sink: each record is POSTed (or PUT) to the URL in its
//! `destination`, and the batch is acknowledged once every request got a 2xx.
//!
//! Requests go one at a time, in batch order, over a keep-alive pool (HTTP/1.1,
//! plain or TLS with rustls and ring). A batch stops at its first failure and
//! reports it; the records sent before it were delivered, and will be sent
//! again when the caller resends the batch, which is what `sluice-record-id`
//! lets the receiver detect.
//!
//! Every request carries `sluice-record-id`, `sluice-mqtt-topic` (from the
//! record header `mqtt-topic`, percent-encoded beyond visible ASCII), the
//! configured static headers and `content-type`.
//!
//! Errors: no answer in time, a broken connection, a TLS failure, 408, 429
//! and 5xx are [`SinkError::Retryable`]; other 4xx, 3xx (redirects are not
//! followed), a bad URL and, in JSON-array mode, a payload that is not JSON
//! are [`SinkError::Permanent`]. Messages name the record ids and the URL
//! without its query string, which may hold a secret.
//!
//! Layout: `config` (settings, validation, errors), `request` (records to
//! requests, statuses to verdicts; no I/O), `tls` (the rustls client config),
//! and `tests` (against real HTTP servers).

mod config;
mod request;
mod tls;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, LOCATION, RETRY_AFTER};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

pub use config::{BatchMode, HttpSinkConfig, HttpSinkError, Method};

use crate::record::Record;
use crate::sink::{Sink, SinkError};
use request::{Outgoing, Verdict};

/// How long an idle pooled connection is kept. Servers commonly close idle
/// connections after 60 s or more; the client retries a request that found
/// its pooled connection already closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// How much of a response body is read: enough to quote an error, while a
/// larger body is dropped along with its connection.
const BODY_LIMIT: usize = 64 * 1024;

/// How much of an error response body goes into the error message.
const BODY_QUOTED: usize = 200;

static RECORD_ID: HeaderName = HeaderName::from_static("sluice-record-id");
static MQTT_TOPIC: HeaderName = HeaderName::from_static("sluice-mqtt-topic");

/// Delivers records to HTTP endpoints; see the module documentation.
pub struct HttpSink {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    method: http::Method,
    /// Static headers and content type, checked at construction.
    fixed_headers: HeaderMap,
    timeout: Duration,
    batch: BatchMode,
    max_batch_records: usize,
    max_batch_bytes: usize,
    linger: Duration,
    /// The last `Retry-After` (seconds form) a 429/503 answer gave, in ms;
    /// 0 when none. Taken by the delivery loop through `Sink::retry_after`.
    retry_after_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Static headers stay out: they often hold credentials.
        f.debug_struct("HttpSink")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// What [`HttpSink::new`] derives from the settings before it builds the
/// client: the static headers and the TLS configuration, or why not.
fn checked(mut config: HttpSinkConfig) -> Result<(HeaderMap, rustls::ClientConfig), HttpSinkError> {
    if config.timeout.is_zero() {
        return Err(HttpSinkError::ZeroTimeout);
    }
    if config.batch == BatchMode::Ndjson && config.content_type == "application/json" {
        config.content_type = "application/x-ndjson".to_owned();
    }
    let fixed_headers = config::fixed_headers(&config)?;
    let tls = tls::client_config(config.tls_ca.as_deref())?;
    Ok((fixed_headers, tls))
}

impl HttpSinkConfig {
    /// Everything [`HttpSink::new`] refuses, without building the client
    /// (for a configuration check).
    pub fn check(&self) -> Result<(), HttpSinkError> {
        checked(self.clone()).map(drop)
    }
}

impl HttpSink {
    /// Checks the configuration and sets up the connection pool; connects to
    /// nothing yet. Needs no runtime, but `send` must run on a Tokio one.
    pub fn new(config: HttpSinkConfig) -> Result<HttpSink, HttpSinkError> {
        let (fixed_headers, tls) = checked(config.clone())?;

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);

        Ok(HttpSink {
            client,
            method: config.method.as_http(),
            fixed_headers,
            timeout: config.timeout,
            batch: config.batch,
            max_batch_records: config.max_batch_records.max(1),
            max_batch_bytes: config.max_batch_bytes.max(1),
            linger: config.linger,
            retry_after_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Makes one request and waits for its whole answer, within the timeout.
    async fn deliver(&self, mut out: Outgoing) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.timeout;
        let label = std::mem::take(&mut out.label);
        let req = self.request(out);
        let response = match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(SinkError::Retryable(format!(
                    "{label}: {}",
                    error_chain(&error)
                )))
            }
            Err(_) => {
                return Err(SinkError::Retryable(format!(
                    "{label}: no response within {:?}",
                    self.timeout
                )))
            }
        };
        let status = response.status();
        let header_text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header_text(&RETRY_AFTER);
        let location = header_text(&LOCATION);
        // Reading the body to its end is what returns the connection to the
        // pool. Once the status is 2xx the records are delivered whatever
        // happens to the body.
        let body = tokio::time::timeout_at(
            deadline,
            Limited::new(response.into_body(), BODY_LIMIT).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|collected| collected.to_bytes());

        let verdict = request::classify(status);
        tracing::debug!(status = status.as_u16(), ?verdict, records = %label, "http request answered");
        if verdict == Verdict::Delivered {
            return Ok(());
        }
        let message = self.refusal(&label, status, retry_after, location, body.as_deref());
        Err(match verdict {
            Verdict::Retry => SinkError::Retryable(message),
            _ => SinkError::Permanent(message),
        })
    }

    /// The request for one outgoing body: method, URI, the record ids and
    /// topic headers, then the configured headers.
    fn request(&self, out: Outgoing) -> http::Request<Full<Bytes>> {
        let mut req = http::Request::new(Full::new(out.body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = out.uri;
        let headers = req.headers_mut();
        headers.insert(RECORD_ID.clone(), out.ids);
        if let Some(topic) = out.topic {
            headers.insert(MQTT_TOPIC.clone(), topic);
        }
        for (name, value) in &self.fixed_headers {
            headers.append(name.clone(), value.clone());
        }
        req
    }

    /// Why the endpoint did not take the records, for the bridge's status
    /// and log; remembers a `Retry-After` in seconds for the next attempt.
    fn refusal(
        &self,
        label: &str,
        status: http::StatusCode,
        retry_after: Option<String>,
        location: Option<String>,
        body: Option<&[u8]>,
    ) -> String {
        let mut message = format!("{label}: HTTP {status}");
        if let Some(secs) = retry_after
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.retry_after_ms.store(
                secs.saturating_mul(1000).max(1),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if let Some(retry_after) = retry_after {
            message.push_str(&format!(" (retry-after: {retry_after})"));
        }
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            message.push_str(&format!(" (redirects to {location}, not followed)"));
        }
        if let Some(quote) = body.and_then(quote_body) {
            message.push_str(": ");
            message.push_str(&quote);
        }
        message
    }
}

impl Sink for HttpSink {
    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        match self.batch {
            BatchMode::One => {
                for record in batch {
                    self.deliver(request::one(record)?).await?;
                }
            }
            BatchMode::JsonArray => {
                for out in request::json_arrays(batch)? {
                    self.deliver(out).await?;
                }
            }
            BatchMode::Ndjson => {
                for out in request::ndjson(batch)? {
                    self.deliver(out).await?;
                }
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn max_batch(&self) -> usize {
        self.max_batch_records
    }

    fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn retry_after(&mut self) -> Option<Duration> {
        let ms = self
            .retry_after_ms
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms))
    }
}

/// The error and its causes, e.g. `client error (Connect): tcp connect
/// error: Connection refused (os error 111)`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of an error body on one line, or none when it is empty.
fn quote_body(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_QUOTED)]);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let ellipsis = if body.len() > BODY_QUOTED { "..." } else { "" };
    Some(format!("{line}{ellipsis}"))
}
