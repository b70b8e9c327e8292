//! Listeners and connection tasks: the layer that moves bytes and timers.
//! Each accepted socket gets its own task; the accept loop never waits on
//! a client.

mod connection;
mod handshake;
mod outgoing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::ListenerConfig;

/// Binds every configured listener. Fails with the address on error.
pub async fn bind_listeners(configs: &[ListenerConfig]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        let l = TcpListener::bind(c.bind).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", c.bind))
        })?;
        out.push(l);
    }
    Ok(out)
}

/// Serves clients on `listeners` until `shutdown` resolves, then asks every
/// connection to close (v5 clients get DISCONNECT 0x8B) and waits for them,
/// up to `drain_timeout`.
pub async fn serve(
    broker: Arc<Broker>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let broker = Arc::clone(&broker);
        accept_tasks.push(tokio::spawn(accept_loop(broker, listener)));
    }
    shutdown.await;
    tracing::info!("shutting down: closing listeners and connections");
    for t in &accept_tasks {
        t.abort();
    }
    broker.begin_shutdown();
    let deadline = tokio::time::Instant::now() + drain_timeout;
    while broker.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(
        remaining_connections = broker.connection_count(),
        "shutdown complete"
    );
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let broker = Arc::clone(&broker);
                tokio::spawn(connection::run(broker, stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The address a listener actually bound (port 0 resolved).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
