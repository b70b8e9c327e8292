//! What an HTTP sink is told, and what is checked before it starts.
//!
//! Everything that can be checked once is checked in [`HttpSink::new`]
//! (static headers, content type, CA file), so a misconfiguration fails at
//! start-up instead of dead-lettering every record.
//!
//! [`HttpSink::new`]: super::HttpSink::new

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

/// The request method. Only the two that mean "here is a new resource" make
/// sense for pushing records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    #[serde(alias = "post")]
    Post,
    #[serde(alias = "put")]
    Put,
}

impl Method {
    pub(crate) fn as_http(self) -> http::Method {
        match self {
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
        }
    }
}

/// How records become requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// One request per record; the body is the record's payload as is.
    #[default]
    One,
    /// One request per destination URL per batch; the body is a JSON array
    /// of the payloads, which must therefore each be a JSON document.
    /// Records keep their order within a URL; URLs are sent in the order of
    /// their first record.
    JsonArray,
    /// As `JsonArray`, but the body is newline-delimited JSON (one payload
    /// per line; a payload spanning lines is re-encoded compactly), sent as
    /// `application/x-ndjson` unless `content_type` says otherwise.
    Ndjson,
}

/// Settings of an [`HttpSink`](super::HttpSink): the `[bridges.sink]` table
/// of a bridge with `kind = "http"`, read as is from the broker's
/// configuration (the field names are the file's keys unless renamed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// URL template (`{topic}`, `{topic.2}`, `{client_id}`,
    /// `{payload.field}`, ...), rendered per record by the transform into
    /// the record's destination.
    pub url: String,
    /// POST by default.
    #[serde(default)]
    pub method: Method,
    /// Sent on every request, e.g. `Authorization`. Framing headers
    /// (`Content-Length`, ...), `Content-Type` (see `content_type`) and
    /// `sluice-*` are refused.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from an environment variable when the
    /// sink is built (`Authorization = "WEBHOOK_TOKEN"`), so secrets stay out
    /// of the file. A missing variable is a configuration error.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// Bound on one request: connect, TLS handshake, sending the body and
    /// reading the whole response. 10 s by default; the file's
    /// `timeout_secs = 0` means one second.
    #[serde(
        rename = "timeout_secs",
        default = "default_timeout",
        deserialize_with = "crate::config::duration::secs_at_least_one"
    )]
    pub timeout: Duration,
    /// "one" (a request per record), "json_array" or "ndjson" (one request
    /// per URL per batch).
    #[serde(default)]
    pub batch: BatchMode,
    /// Records handed to the sink at once (the largest request in the
    /// batching modes). 100 by default.
    #[serde(rename = "batch_max_records", default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// Largest request body in the batching modes, in payload bytes (a
    /// single larger record still goes alone). 1 MiB by default.
    #[serde(rename = "batch_max_bytes", default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// How long to wait for a batch to fill before sending a partial one.
    /// Zero by default.
    #[serde(
        rename = "linger_ms",
        default,
        deserialize_with = "crate::config::duration::millis"
    )]
    pub linger: Duration,
    /// A PEM file of CA certificates trusted for https destinations in
    /// addition to the system's roots (for a private PKI).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// `application/json` by default (`application/x-ndjson` in the ndjson
    /// mode). Not a key of the file.
    #[serde(skip, default = "default_content_type")]
    pub content_type: String,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_batch_records() -> usize {
    100
}

fn default_max_batch_bytes() -> usize {
    1 << 20
}

fn default_content_type() -> String {
    "application/json".to_owned()
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            url: String::new(),
            method: Method::Post,
            headers: BTreeMap::new(),
            headers_from_env: BTreeMap::new(),
            timeout: default_timeout(),
            batch: BatchMode::One,
            content_type: default_content_type(),
            tls_ca: None,
            max_batch_records: default_max_batch_records(),
            max_batch_bytes: default_max_batch_bytes(),
            linger: Duration::ZERO,
        }
    }
}

impl HttpSinkConfig {
    /// The static headers, then those read from the environment.
    pub(crate) fn resolved_headers(&self) -> Result<Vec<(String, String)>, HttpSinkError> {
        let mut all: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (header, var) in &self.headers_from_env {
            let value = std::env::var(var).map_err(|_| HttpSinkError::MissingEnv {
                header: header.clone(),
                var: var.clone(),
            })?;
            all.push((header.clone(), value));
        }
        Ok(all)
    }

    /// The key of the file an error of [`HttpSink::new`] is about, relative
    /// to the sink's table.
    ///
    /// [`HttpSink::new`]: super::HttpSink::new
    pub fn key_of(&self, error: &HttpSinkError) -> String {
        match error {
            HttpSinkError::MissingEnv { header, .. } => format!("headers_from_env.{header}"),
            HttpSinkError::InvalidHeader { name, .. }
                if self.headers_from_env.contains_key(name) =>
            {
                format!("headers_from_env.{name}")
            }
            HttpSinkError::InvalidHeader { name, .. } => format!("headers.{name}"),
            HttpSinkError::InvalidContentType(_) => "content_type".to_owned(),
            HttpSinkError::ZeroTimeout => "timeout_secs".to_owned(),
            HttpSinkError::ReadCa { .. }
            | HttpSinkError::NoCaCertificate { .. }
            | HttpSinkError::InvalidCa { .. }
            | HttpSinkError::Tls(_) => "tls_ca".to_owned(),
        }
    }
}

/// Why an [`HttpSink`](super::HttpSink) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSinkError {
    /// Worded as the broker's configuration check always said it.
    #[error("environment variable {var} is not set")]
    MissingEnv { header: String, var: String },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("invalid content type {0:?}")]
    InvalidContentType(String),
    #[error("the request timeout must be greater than zero")]
    ZeroTimeout,
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file {path} holds no certificate")]
    NoCaCertificate { path: PathBuf },
    #[error("CA file {path}: unusable certificate: {source}")]
    InvalidCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Headers that hyper derives from the body and the connection: setting them
/// by hand would corrupt the framing or the keep-alive pool.
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// The headers every request of the sink carries: the static ones, then the
/// content type.
pub(crate) fn fixed_headers(config: &HttpSinkConfig) -> Result<HeaderMap, HttpSinkError> {
    let mut map = HeaderMap::new();
    for (name, value) in &config.resolved_headers()? {
        let invalid = |reason: &str| HttpSinkError::InvalidHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if FRAMING_HEADERS.contains(&header.as_str()) {
            return Err(invalid("set by the HTTP client itself"));
        }
        if header == CONTENT_TYPE {
            return Err(invalid("use the content_type setting"));
        }
        if header.as_str().starts_with("sluice-") {
            return Err(invalid(
                "the sluice- prefix is reserved for the headers the sink adds",
            ));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid("the value holds a control character"))?;
        map.append(header, value);
    }
    let content_type = HeaderValue::from_str(&config.content_type)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| HttpSinkError::InvalidContentType(config.content_type.clone()))?;
    map.insert(CONTENT_TYPE, content_type);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(headers: &[(&str, &str)]) -> HttpSinkConfig {
        HttpSinkConfig {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..HttpSinkConfig::default()
        }
    }

    #[test]
    fn http_defaults_match_the_documented_ones() {
        let config = HttpSinkConfig::default();
        assert_eq!(config.method, Method::Post);
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.batch, BatchMode::One);
        assert_eq!(config.content_type, "application/json");
        assert_eq!(config.tls_ca, None);
    }

    #[test]
    fn http_static_headers_keep_order_and_repeats() {
        let map = fixed_headers(&with_headers(&[
            ("Authorization", "Bearer x"),
            ("X-A", "1"),
            ("x-a", "2"),
        ]))
        .unwrap();
        assert_eq!(map["authorization"], "Bearer x");
        let xa: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(map[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn http_refuses_headers_that_would_break_requests() {
        for (name, value) in [
            ("bad name", "v"),
            ("Content-Length", "3"),
            ("transfer-encoding", "chunked"),
            ("Content-Type", "text/plain"),
            ("sluice-record-id", "1"),
            ("x-ok", "line\r\nbreak"),
        ] {
            let err = fixed_headers(&with_headers(&[(name, value)])).unwrap_err();
            assert!(
                matches!(err, HttpSinkError::InvalidHeader { .. }),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn http_refuses_an_empty_or_broken_content_type() {
        for ct in ["", "text/plain\n"] {
            let config = HttpSinkConfig {
                content_type: ct.to_owned(),
                ..HttpSinkConfig::default()
            };
            assert!(matches!(
                fixed_headers(&config),
                Err(HttpSinkError::InvalidContentType(_))
            ));
        }
    }

    #[test]
    fn http_method_and_batch_mode_deserialize_from_config_words() {
        let m: Method = serde_json::from_str("\"PUT\"").unwrap();
        assert_eq!(m, Method::Put);
        let m: Method = serde_json::from_str("\"post\"").unwrap();
        assert_eq!(m, Method::Post);
        assert!(serde_json::from_str::<Method>("\"GET\"").is_err());
        let b: BatchMode = serde_json::from_str("\"json_array\"").unwrap();
        assert_eq!(b, BatchMode::JsonArray);
    }
}
