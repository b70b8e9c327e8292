//! What stands between the tests and tansu when the bridge must use TLS and
//! SASL: tansu 0.6.0 cannot serve either as the bridge needs them.
//!
//! - TLS: `tansu broker --cert C --key K` is refused (the two options share
//!   a clap group, so they exclude each other), and the broker only builds
//!   its acceptor (`_acceptor` in tansu-broker's `broker.rs`) without using
//!   it: connections are plain. [`TlsFront`] terminates TLS with the test
//!   CA's server certificate and forwards in plain to tansu, which
//!   advertises the front's address.
//! - SASL: with `--authentication` tansu requires SCRAM-SHA-256/512
//!   (its SASL library is built without PLAIN), and its CLI (`tansu user
//!   create`, `tansu topic create`) cannot log in, so no first user can be
//!   made (nor kept: its in-memory storage keeps no SCRAM credentials).
//!   [`AdminRelay`] logs in for the CLI: tansu 0.6.0 counts a SCRAM
//!   exchange that *ended* as a login, even when it ended in
//!   `e=unknown-user` (librdkafka stops there; the relay carries on). The
//!   bridge never goes through it; its login is checked by the TLS front
//!   (`kafka_scram`).
//!
//! Both run on a Tokio runtime of their own, dropped with them (every
//! connection ends), and listen on 127.0.0.1 only.

use std::io::BufReader;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::kafka_scram::ScramUser;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the Kafka front")
}

/// Accepts on `listener` and hands each connection to `serve` with a fresh
/// connection to tansu on `upstream`.
fn forward<F, Fut>(runtime: &Runtime, listener: StdListener, upstream: u16, serve: F)
where
    F: Fn(TcpStream, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _entered = runtime.enter();
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let listener = TcpListener::from_std(listener).expect("listener on the runtime");
    runtime.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(tansu) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            tokio::spawn(serve(client, tansu));
        }
    });
}

/// TLS in front of tansu's plain port.
pub struct TlsFront {
    pub port: u16,
    _runtime: Runtime,
}

impl TlsFront {
    /// Serves TLS on `listener` (bound by the caller, whose port tansu
    /// advertises) with `cert` (a PEM chain) and `key`; with `user`, checks
    /// each connection's SCRAM-SHA-256 login first (see `kafka_scram`).
    pub fn start(
        listener: StdListener,
        upstream: u16,
        (cert, key): (&Path, &Path),
        user: Option<ScramUser>,
    ) -> TlsFront {
        let port = listener.local_addr().expect("front address").port();
        let chain = rustls_pemfile::certs(&mut BufReader::new(
            std::fs::File::open(cert).expect("open the server certificate"),
        ))
        .collect::<Result<Vec<_>, _>>()
        .expect("read the server certificate");
        let key = rustls_pemfile::private_key(&mut BufReader::new(
            std::fs::File::open(key).expect("open the server key"),
        ))
        .expect("read the server key")
        .expect("a private key in the key file");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the server certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = runtime();
        forward(&runtime, listener, upstream, move |client, mut tansu| {
            let acceptor = acceptor.clone();
            let user = user.clone();
            async move {
                // A client that does not trust the certificate gives up here.
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                if let Some(user) = user {
                    if user.check(&mut client, &mut tansu).await.is_err() {
                        return;
                    }
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut tansu).await;
            }
        });
        TlsFront {
            port,
            _runtime: runtime,
        }
    }
}

/// A plain port where every connection reaches tansu already logged in,
/// for tansu's CLI.
pub struct AdminRelay {
    pub port: u16,
    _runtime: Runtime,
}

impl AdminRelay {
    pub fn start(upstream: u16) -> AdminRelay {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the admin relay");
        let port = listener.local_addr().expect("relay address").port();
        let runtime = runtime();
        forward(
            &runtime,
            listener,
            upstream,
            |mut client, mut tansu| async move {
                if let Err(error) = log_in(&mut tansu).await {
                    eprintln!("admin relay: logging in to tansu failed: {error}");
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut tansu).await;
            },
        );
        AdminRelay {
            port,
            _runtime: runtime,
        }
    }
}

/// SaslHandshake v1 for SCRAM-SHA-256, then both SaslAuthenticate v1 steps
/// for a user tansu does not know (see the module docs).
async fn log_in(tansu: &mut TcpStream) -> std::io::Result<()> {
    const MECHANISM: &[u8] = b"SCRAM-SHA-256";
    let mut handshake = (MECHANISM.len() as i16).to_be_bytes().to_vec();
    handshake.extend_from_slice(MECHANISM);
    expect_no_error(&exchange(tansu, 17, 1, &handshake).await?)?;

    let first = exchange(tansu, 36, 2, &sasl_bytes(b"n,,n=relay,r=relay")).await?;
    expect_no_error(&first)?;
    let server_first = auth_bytes(&first)?;
    let nonce = server_first
        .split(|b| *b == b',')
        .find_map(|field| field.strip_prefix(b"r="))
        .ok_or_else(|| invalid("no nonce in the server's first SCRAM message"))?;
    // A proof of the right length (SHA-256); it cannot be right.
    let mut last = b"c=biws,r=".to_vec();
    last.extend_from_slice(nonce);
    last.extend_from_slice(b",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    expect_no_error(&exchange(tansu, 36, 3, &sasl_bytes(&last)).await?)
}

/// One request with header v1 (not flexible); the response's body.
async fn exchange(
    tansu: &mut TcpStream,
    api_key: i16,
    correlation_id: i32,
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    const CLIENT_ID: &[u8] = b"admin-relay";
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes()); // api version
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    frame.extend_from_slice(CLIENT_ID);
    frame.extend_from_slice(body);
    tansu.write_all(&(frame.len() as i32).to_be_bytes()).await?;
    tansu.write_all(&frame).await?;
    let len = tansu.read_i32().await?;
    let mut response = vec![0; usize::try_from(len).map_err(|_| invalid("negative size"))?];
    tansu.read_exact(&mut response).await?;
    // Response header v0: the correlation id only.
    Ok(response.split_off(4.min(response.len())))
}

/// BYTES: an i32 length, then the bytes.
fn sasl_bytes(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fn expect_no_error(body: &[u8]) -> std::io::Result<()> {
    match body.get(..2) {
        Some([0, 0]) => Ok(()),
        _ => Err(invalid(&format!("error in response {body:?}"))),
    }
}

/// A SaslAuthenticate v1 response's auth_bytes, after the error code and
/// the (nullable) error message.
fn auth_bytes(body: &[u8]) -> std::io::Result<&[u8]> {
    let field = |at: usize, n: usize| body.get(at..at + n).ok_or_else(|| invalid("short"));
    let message_len = i16::from_be_bytes(field(2, 2)?.try_into().map_err(|_| invalid("len"))?);
    let at = 4 + usize::try_from(message_len).unwrap_or(0);
    let len = i32::from_be_bytes(field(at, 4)?.try_into().map_err(|_| invalid("len"))?);
    field(at + 4, usize::try_from(len).map_err(|_| invalid("len"))?)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}
