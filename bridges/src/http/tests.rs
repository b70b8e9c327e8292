//! The HTTP sink against real servers: a Python `http.server` (plain and
//! TLS) that records what it receives and answers as scripted, and a Tokio
//! listener that never answers, for the timeout.

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::*;

const SERVER_SCRIPT: &str = include_str!("test_server.py");
/// Bound on the server's start and on every wait in these tests.
const WAIT: Duration = Duration::from_secs(15);

/// How the Python server answers one request.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    Close,
}

/// A running `test_server.py`, killed on drop (its stdin closing would end
/// it too).
struct PyServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    client_port: u64,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl PyServer {
    fn start(answers: &[Answer]) -> PyServer {
        Self::spawn(answers, None)
    }

    /// With TLS, from the `server-chain.pem` and `server.key` in `certs`.
    fn start_tls(answers: &[Answer], certs: &Path) -> PyServer {
        Self::spawn(answers, Some(certs))
    }

    fn spawn(answers: &[Answer], certs: Option<&Path>) -> PyServer {
        let dir = tempfile::tempdir().unwrap();
        let script_path = dir.path().join("test_server.py");
        std::fs::write(&script_path, SERVER_SCRIPT).unwrap();
        let log = dir.path().join("requests.json");
        let answers: Vec<Value> = answers
            .iter()
            .map(|a| match a {
                Answer::Status(s) => Value::from(*s),
                Answer::Close => Value::from("close"),
            })
            .collect();
        let mut cmd = Command::new("python3");
        cmd.arg(&script_path)
            .arg(&log)
            .arg(Value::from(answers).to_string());
        if let Some(certs) = certs {
            cmd.arg(certs.join("server-chain.pem"))
                .arg(certs.join("server.key"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed to run the HTTP sink tests");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("test server did not report its port within {WAIT:?}");
            }
        };
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("test server failed to start: {line:?}");
            }
        };
        PyServer {
            child,
            _stdin: stdin,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far. The server writes its log before answering,
    /// so once `send` returns the log covers that batch.
    fn requests(&self) -> Vec<Seen> {
        let Ok(text) = std::fs::read_to_string(&self.log) else {
            return Vec::new();
        };
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.iter()
            .map(|r| Seen {
                method: r["method"].as_str().unwrap().to_owned(),
                path: r["path"].as_str().unwrap().to_owned(),
                headers: r["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_owned(),
                            h[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
                body: r["body"].as_str().unwrap().to_owned(),
                client_port: r["client_port"].as_u64().unwrap(),
            })
            .collect()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record(id: u64, destination: &str, payload: &str) -> Record {
    Record {
        id,
        destination: destination.to_owned(),
        key: None,
        payload: Bytes::from(payload.to_owned()),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn with_topic(mut record: Record, topic: &str) -> Record {
    record
        .headers
        .push(("mqtt-topic".to_owned(), Bytes::from(topic.to_owned())));
    record
}

fn sink(config: HttpSinkConfig) -> HttpSink {
    HttpSink::new(config).unwrap()
}

/// `send`, bounded so a hung request fails the test instead of stalling it.
async fn send(sink: &mut HttpSink, batch: &[Record]) -> Result<(), SinkError> {
    tokio::time::timeout(WAIT, sink.send(batch))
        .await
        .expect("send did not return in time")
}

fn expect_retryable(result: Result<(), SinkError>, parts: &[&str]) -> String {
    match result {
        Err(SinkError::Retryable(msg)) => {
            for part in parts {
                assert!(msg.contains(part), "{part:?} missing from {msg:?}");
            }
            msg
        }
        other => panic!("expected Retryable with {parts:?}, got {other:?}"),
    }
}

fn expect_permanent(result: Result<(), SinkError>, parts: &[&str]) -> String {
    match result {
        Err(SinkError::Permanent(msg)) => {
            for part in parts {
                assert!(msg.contains(part), "{part:?} missing from {msg:?}");
            }
            msg
        }
        other => panic!("expected Permanent with {parts:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn http_posts_one_record_with_body_headers_and_id() {
    let server = PyServer::start(&[]);
    let mut sink = sink(HttpSinkConfig {
        headers: vec![
            ("Authorization".to_owned(), "Bearer t0ken".to_owned()),
            ("X-Tenant".to_owned(), "acme".to_owned()),
        ]
        .into_iter()
        .collect(),
        ..HttpSinkConfig::default()
    });
    assert_eq!(sink.kind(), "http");
    let batch = [with_topic(
        record(42, &server.url("/ingest?src=mqtt"), r#"{"t":21.5}"#),
        "sensors/room 1/temp",
    )];
    send(&mut sink, &batch).await.unwrap();

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/ingest?src=mqtt");
    assert_eq!(req.body, r#"{"t":21.5}"#);
    assert_eq!(req.header("sluice-record-id"), Some("42"));
    assert_eq!(
        req.header("sluice-mqtt-topic"),
        Some("sensors/room%201/temp")
    );
    assert_eq!(req.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(req.header("x-tenant"), Some("acme"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("content-length"), Some("10"));
    assert_eq!(
        req.header("host"),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );

    // No topic header on the record, none on the request.
    send(&mut sink, &[record(43, &server.url("/"), "x")])
        .await
        .unwrap();
    let seen = server.requests();
    assert_eq!(seen[1].header("sluice-record-id"), Some("43"));
    assert_eq!(seen[1].header("sluice-mqtt-topic"), None);
}

#[tokio::test]
async fn http_sends_records_in_order_over_one_kept_alive_connection() {
    let server = PyServer::start(&[]);
    let mut sink = sink(HttpSinkConfig {
        method: Method::Put,
        content_type: "text/plain".to_owned(),
        ..HttpSinkConfig::default()
    });
    let batch: Vec<Record> = (1..=5)
        .map(|id| {
            record(
                id,
                &server.url(&format!("/r/{id}")),
                &format!("payload {id}"),
            )
        })
        .collect();
    send(&mut sink, &batch).await.unwrap();
    send(&mut sink, &[record(6, &server.url("/r/6"), "payload 6")])
        .await
        .unwrap();

    let seen = server.requests();
    assert_eq!(seen.len(), 6);
    for (i, req) in seen.iter().enumerate() {
        let id = i + 1;
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, format!("/r/{id}"));
        assert_eq!(req.body, format!("payload {id}"));
        assert_eq!(
            req.header("sluice-record-id"),
            Some(id.to_string().as_str())
        );
        assert_eq!(req.header("content-type"), Some("text/plain"));
    }
    let first_port = seen[0].client_port;
    assert!(
        seen.iter().all(|r| r.client_port == first_port),
        "the connection was not reused: {:?}",
        seen.iter().map(|r| r.client_port).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn http_500_is_retryable_and_a_resend_succeeds() {
    let server = PyServer::start(&[Answer::Status(200), Answer::Status(500)]);
    let mut sink = sink(HttpSinkConfig::default());
    let batch: Vec<Record> = (1..=3)
        .map(|id| record(id, &server.url("/in"), "{}"))
        .collect();

    let msg = expect_retryable(
        send(&mut sink, &batch).await,
        &["record 2", "/in", "500", "scripted 500"],
    );
    assert!(!msg.contains("Permanent"));
    // The batch stopped at the failure: record 3 was not sent.
    let ids: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("sluice-record-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2"]);

    send(&mut sink, &batch).await.unwrap();
    let ids: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("sluice-record-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2", "1", "2", "3"]);
}

#[tokio::test]
async fn http_404_is_permanent_and_stops_the_batch() {
    let server = PyServer::start(&[Answer::Status(404)]);
    let mut sink = sink(HttpSinkConfig::default());
    let batch = [
        record(9, &server.url("/missing?api_key=s3cret"), "{}"),
        record(10, &server.url("/missing"), "{}"),
    ];
    let msg = expect_permanent(
        send(&mut sink, &batch).await,
        &["record 9", "/missing", "404 Not Found", "scripted 404"],
    );
    assert!(!msg.contains("s3cret"), "the query string leaked: {msg}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn http_429_and_408_are_retryable() {
    let server = PyServer::start(&[
        Answer::Status(429),
        Answer::Status(408),
        Answer::Status(400),
    ]);
    let mut sink = sink(HttpSinkConfig::default());
    let batch = [record(1, &server.url("/"), "{}")];
    expect_retryable(
        send(&mut sink, &batch).await,
        &["429 Too Many Requests", "retry-after: 7"],
    );
    expect_retryable(send(&mut sink, &batch).await, &["408"]);
    expect_permanent(send(&mut sink, &batch).await, &["400 Bad Request"]);
    send(&mut sink, &batch).await.unwrap();
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn http_connection_closed_without_answer_is_retryable() {
    let server = PyServer::start(&[Answer::Close]);
    let mut sink = sink(HttpSinkConfig::default());
    let batch = [record(5, &server.url("/"), "{}")];
    expect_retryable(send(&mut sink, &batch).await, &["record 5"]);
    send(&mut sink, &batch).await.unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn http_connection_refused_is_retryable() {
    let port = {
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut sink = sink(HttpSinkConfig::default());
    let batch = [record(1, &format!("http://127.0.0.1:{port}/"), "{}")];
    expect_retryable(send(&mut sink, &batch).await, &["record 1", "refused"]);
}

#[tokio::test]
async fn http_no_answer_within_the_timeout_is_retryable() {
    // Accepts connections and reads requests, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut sink = sink(HttpSinkConfig {
        timeout: Duration::from_millis(300),
        ..HttpSinkConfig::default()
    });
    let batch = [record(1, &format!("http://127.0.0.1:{port}/slow"), "{}")];
    let started = std::time::Instant::now();
    expect_retryable(
        send(&mut sink, &batch).await,
        &["record 1", "no response within 300ms"],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    silent.abort();
}

#[tokio::test]
async fn http_json_array_groups_records_by_url() {
    let server = PyServer::start(&[]);
    let mut sink = sink(HttpSinkConfig {
        batch: BatchMode::JsonArray,
        ..HttpSinkConfig::default()
    });
    let (a, b) = (server.url("/a"), server.url("/b"));
    let batch = [
        with_topic(record(1, &a, r#"{"n":1}"#), "t/a"),
        with_topic(record(2, &b, r#"{"n":2}"#), "t/b"),
        with_topic(record(3, &a, "3"), "t/a"),
        with_topic(record(4, &b, r#""four""#), "t/b2"),
        with_topic(record(5, &a, "[5]"), "t/a"),
    ];
    send(&mut sink, &batch).await.unwrap();

    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/a");
    assert_eq!(seen[0].header("sluice-record-id"), Some("1,3,5"));
    assert_eq!(seen[0].header("sluice-mqtt-topic"), Some("t/a"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!([{"n": 1}, 3, [5]]));
    assert_eq!(seen[1].path, "/b");
    assert_eq!(seen[1].header("sluice-record-id"), Some("2,4"));
    assert_eq!(seen[1].header("sluice-mqtt-topic"), None);
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body, serde_json::json!([{"n": 2}, "four"]));

    // A payload that is not JSON fails the batch before anything is sent.
    let bad = [record(6, &a, "{}"), record(7, &b, "not json")];
    expect_permanent(send(&mut sink, &bad).await, &["record 7", "not JSON"]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn http_bad_urls_are_permanent_without_panicking() {
    let mut sink = sink(HttpSinkConfig::default());
    for destination in [
        "",
        "not a url",
        "ftp://example.com/",
        "http://",
        "/relative",
        "http://u:p@h/",
    ] {
        let msg = expect_permanent(
            send(&mut sink, &[record(3, destination, "{}")]).await,
            &["record 3", "invalid destination URL"],
        );
        assert!(!msg.is_empty());
    }
    let mut sink = HttpSink::new(HttpSinkConfig {
        batch: BatchMode::JsonArray,
        ..HttpSinkConfig::default()
    })
    .unwrap();
    expect_permanent(
        send(&mut sink, &[record(4, "nope", "{}")]).await,
        &["record 4", "invalid destination URL"],
    );
}

#[tokio::test]
async fn http_empty_batch_sends_nothing() {
    let server = PyServer::start(&[]);
    let mut sink = sink(HttpSinkConfig::default());
    send(&mut sink, &[]).await.unwrap();
    assert!(server.requests().is_empty());
}

#[test]
fn http_new_refuses_bad_settings() {
    let zero = HttpSinkConfig {
        timeout: Duration::ZERO,
        ..HttpSinkConfig::default()
    };
    assert!(matches!(
        HttpSink::new(zero),
        Err(HttpSinkError::ZeroTimeout)
    ));
    let missing_ca = HttpSinkConfig {
        tls_ca: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..HttpSinkConfig::default()
    };
    let err = HttpSink::new(missing_ca).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let bad_header = HttpSinkConfig {
        headers: [("Content-Length".to_owned(), "1".to_owned())].into(),
        ..HttpSinkConfig::default()
    };
    assert!(matches!(
        HttpSink::new(bad_header),
        Err(HttpSinkError::InvalidHeader { .. })
    ));
}

#[test]
fn http_debug_output_hides_static_headers() {
    let sink = sink(HttpSinkConfig {
        headers: [("Authorization".to_owned(), "Bearer t0ken".to_owned())].into(),
        ..HttpSinkConfig::default()
    });
    let shown = format!("{sink:?}");
    assert!(
        shown.contains("HttpSink") && !shown.contains("t0ken"),
        "{shown}"
    );
}

#[tokio::test]
async fn http_https_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let generate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs/generate.sh");
    let status = Command::new("bash")
        .arg(&generate)
        .arg(certs.path())
        .status()
        .expect("bash must be installed");
    assert!(status.success(), "{} failed", generate.display());

    let server = PyServer::start_tls(&[], certs.path());
    let url = format!("https://localhost:{}/secure", server.port);
    let batch = [with_topic(record(77, &url, r#"{"secure":true}"#), "s/1")];

    // Without the CA the server's certificate is not trusted.
    let mut untrusting = sink(HttpSinkConfig::default());
    expect_retryable(send(&mut untrusting, &batch).await, &["record 77"]);
    assert!(server.requests().is_empty());

    let mut sink = sink(HttpSinkConfig {
        tls_ca: Some(certs.path().join("ca.pem")),
        ..HttpSinkConfig::default()
    });
    send(&mut sink, &batch).await.unwrap();
    // By IP address too: the certificate names 127.0.0.1.
    let by_ip = [record(
        78,
        &format!("https://127.0.0.1:{}/ip", server.port),
        "{}",
    )];
    send(&mut sink, &by_ip).await.unwrap();

    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/secure");
    assert_eq!(seen[0].body, r#"{"secure":true}"#);
    assert_eq!(seen[0].header("sluice-record-id"), Some("77"));
    assert_eq!(seen[0].header("sluice-mqtt-topic"), Some("s/1"));
    assert_eq!(seen[1].path, "/ip");
}
