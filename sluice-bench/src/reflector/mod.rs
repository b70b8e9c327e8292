//! The reflector: a null MQTT broker that measures the generator's own
//! ceiling.
//!
//! It answers CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and QoS 1/2
//! PUBLISH, and forwards every PUBLISH to the connections subscribed to
//! exactly its topic or to a `PREFIX/#` above it (no other wildcards, no
//! sessions, no retained messages, no retries, delivery at QoS 0 or 1).
//! It does as little as possible per
//! message: 64 KB reads, packets walked in place, a run of QoS 0 packets
//! for the same subscribers copied once per subscriber as it came, one
//! write per wake-up. A scenario run against it tells what the generator
//! can drive on this machine; the reflector shares the cores with it, so
//! that ceiling is a lower bound of the generator's own.

mod connection;
mod routes;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use routes::Routes;

/// Accepts connections on `host:port` until the process is stopped.
pub async fn run(host: &str, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    eprintln!("reflector listening on {}", listener.local_addr()?);
    let routes = Arc::new(Routes::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            if let Err(e) = connection::serve(stream, routes).await {
                eprintln!("reflector: connection ended: {e:#}");
            }
        });
    }
}
