//! Listeners and connection tasks: the layer that moves bytes and timers.
//! Each accepted socket gets its own task; the accept loop never waits on
//! a client.

mod closing;
mod connection;
mod handshake;
mod host;
pub mod idle;
mod listener;
mod opening;
pub mod origin;
mod parking;
mod read_chunk;
mod tls;
mod transport;
mod upgraded;
mod websocket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use listener::{bind_all, ListenError, Listener, ListenerCtx};
pub use tls::{certificate_identity, server_config, TlsSetupError};
pub use upgraded::{admin_endpoint, serve_upgraded, ADMIN_MQTT_PATH};
pub use websocket::AllowedOrigins;

use crate::broker::Broker;

/// Serves clients on `listeners` until `shutdown` resolves, then asks every
/// connection to close (v5 clients get DISCONNECT 0x8B) and waits for them,
/// up to `drain_timeout`.
pub async fn serve(
    broker: Arc<Broker>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let broker = Arc::clone(&broker);
        accept_tasks.push(tokio::spawn(listener::accept_loop(broker, listener)));
    }
    shutdown.await;
    tracing::info!("shutting down: closing listeners and connections");
    for t in &accept_tasks {
        t.abort();
    }
    broker.begin_shutdown();
    // Every serving connection is told as a kick (one wake-up source per
    // connection instead of a shutdown branch polled on every wake-up;
    // one that attaches after this sees the flag at its next turn), and
    // parked ones are woken to say goodbye as tasks do.
    for slot in broker.sessions() {
        slot.kick(crate::codec::ReasonCode::ServerShuttingDown);
    }
    parking::wake_all(&broker);
    let deadline = tokio::time::Instant::now() + drain_timeout;
    while broker.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(
        remaining_connections = broker.connection_count(),
        "shutdown complete"
    );
}
