//! One configured listener: its socket, its rules (anonymous access,
//! connection limit) and transport (TCP, TLS, WebSocket, WSS). The accept
//! loop only accepts; TLS and WebSocket handshakes run in the connection's
//! own task under the connect timeout, so a slow client stalls nobody.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::connection::{self, Origin};
use super::tls::TlsEndpoint;
use super::websocket;
use crate::broker::Broker;
use crate::config::{ListenerConfig, ListenerProtocol};

/// What a connection needs to know about the listener it came through.
pub struct ListenerCtx {
    pub protocol: ListenerProtocol,
    pub addr: SocketAddr,
    pub allow_anonymous: bool,
    pub max_connections: usize,
    pub connections: AtomicUsize,
    /// Sockets accepted since start (metrics).
    pub accepted_total: std::sync::atomic::AtomicU64,
    pub ws_path: String,
    /// Which browser pages may open a WebSocket here.
    pub ws_origins: websocket::AllowedOrigins,
    /// The queue policy of sessions connecting here, if not the global one.
    pub queue_full_policy: Option<crate::session::QueueFullPolicy>,
    pub tls: Option<Arc<TlsEndpoint>>,
}

impl ListenerCtx {
    /// The context of listener `config`, bound at `addr`.
    pub fn new(
        config: &ListenerConfig,
        addr: SocketAddr,
        allow_anonymous: bool,
        tls: Option<Arc<TlsEndpoint>>,
    ) -> ListenerCtx {
        ListenerCtx {
            protocol: config.protocol,
            addr,
            allow_anonymous: config.allow_anonymous.unwrap_or(allow_anonymous),
            max_connections: config.max_connections,
            connections: AtomicUsize::new(0),
            accepted_total: Default::default(),
            ws_path: config.ws_path.clone(),
            ws_origins: websocket::AllowedOrigins::new(config),
            queue_full_policy: config.queue_full_policy,
            tls,
        }
    }

    /// Whether a client certificate identity replaces the user name.
    pub fn identity_is_username(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.uses_identity())
    }
}

pub struct Listener {
    pub socket: TcpListener,
    pub ctx: Arc<ListenerCtx>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("listener {addr}: {error}")]
    Tls {
        addr: SocketAddr,
        error: super::tls::TlsSetupError,
    },
}

/// Binds every configured listener and loads its TLS configuration.
pub async fn bind_all(
    configs: &[ListenerConfig],
    allow_anonymous: bool,
) -> Result<Vec<Listener>, ListenError> {
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        let tls = match &c.tls {
            Some(t) => {
                let alpn: &'static [u8] = if c.protocol.is_websocket() {
                    b"http/1.1"
                } else {
                    b"mqtt"
                };
                Some(Arc::new(TlsEndpoint::new(t, alpn).map_err(|error| {
                    ListenError::Tls {
                        addr: c.bind,
                        error,
                    }
                })?))
            }
            None => None,
        };
        let socket = listen(c.bind).map_err(|error| ListenError::Bind {
            addr: c.bind,
            error,
        })?;
        let addr = socket.local_addr().unwrap_or(c.bind);
        out.push(Listener {
            socket,
            ctx: Arc::new(ListenerCtx::new(c, addr, allow_anonymous, tls)),
        });
    }
    Ok(out)
}

/// How many connections may wait for `accept`. Fleets reconnect in
/// bursts (after a broker restart, thousands at once); with a short queue
/// the kernel drops their SYNs and each client waits a full second to retry.
/// The kernel caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 8192;

/// Binds with a deep accept queue (std and tokio use 128 or 1024).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Counts a connection against the global and the listener limit for as
/// long as it lives (as a task or parked in the idle table).
pub(super) struct Permit {
    broker: Arc<Broker>,
    ctx: Arc<ListenerCtx>,
    global: bool,
}

impl Permit {
    pub(super) fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.ctx.connections.fetch_sub(1, Ordering::AcqRel);
        if self.global {
            self.broker.remove_connection();
        }
    }
}

/// Counts a new connection against the global and the listener limit;
/// over either, it is still served far enough to be told why it is refused.
pub(super) fn admit(broker: &Arc<Broker>, ctx: &Arc<ListenerCtx>) -> (Permit, bool) {
    let global = broker.try_add_connection();
    let on_listener = ctx.connections.fetch_add(1, Ordering::AcqRel) + 1;
    ctx.accepted_total.fetch_add(1, Ordering::Relaxed);
    let over_limit = !global || (ctx.max_connections > 0 && on_listener > ctx.max_connections);
    let permit = Permit {
        broker: Arc::clone(broker),
        ctx: Arc::clone(ctx),
        global,
    };
    (permit, over_limit)
}

pub async fn accept_loop(broker: Arc<Broker>, listener: Listener) {
    loop {
        match listener.socket.accept().await {
            Ok((stream, peer)) => {
                let broker = Arc::clone(&broker);
                let ctx = Arc::clone(&listener.ctx);
                tokio::spawn(handle(broker, ctx, stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!(error = %e, listener = %listener.ctx.addr, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(broker: Arc<Broker>, ctx: Arc<ListenerCtx>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (permit, over_limit) = admit(&broker, &ctx);
    let origin = |identity| Origin {
        listener: Arc::clone(&ctx),
        peer,
        identity,
        over_limit,
    };
    // Plain TCP, most of a fleet, runs inline in this task (one allocation
    // per connection). The other transports are boxed: inline, their
    // handshakes would make every task as large as the largest.
    match ctx.protocol {
        ListenerProtocol::Tcp => connection::run(broker, stream, peer, origin(None), permit).await,
        ListenerProtocol::Ws => {
            Box::pin(over_websocket(
                broker,
                stream,
                peer,
                origin(None),
                &ctx.ws_path,
                permit,
            ))
            .await;
        }
        ListenerProtocol::Tls | ListenerProtocol::Wss => {
            Box::pin(over_tls(broker, &ctx, stream, peer, origin, permit)).await;
        }
    }
}

/// Completes the TLS handshake (under the connect timeout), then serves
/// MQTT or WebSocket over it. One allocation holds the handshake and then
/// the connection, which reuse the same bytes.
async fn over_tls(
    broker: Arc<Broker>,
    ctx: &ListenerCtx,
    stream: TcpStream,
    peer: SocketAddr,
    origin: impl Fn(Option<String>) -> Origin,
    permit: Permit,
) {
    let Some(tls) = ctx.tls.as_ref() else {
        return;
    };
    let timeout = Duration::from_secs(broker.config.limits.connect_timeout_secs);
    let acceptor = tls.acceptor();
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = tls.identity(stream.get_ref().1.peer_certificates());
    if ctx.protocol == ListenerProtocol::Tls {
        connection::run(broker, stream, peer, origin(identity), permit).await;
        return;
    }
    over_websocket(broker, stream, peer, origin(identity), &ctx.ws_path, permit).await;
}

/// Completes the WebSocket upgrade (under the connect timeout) on any
/// stream, plain or TLS, then serves MQTT over it.
async fn over_websocket<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    origin: Origin,
    path: &str,
    permit: Permit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    websocket::WsIo<S>: super::transport::Transport,
{
    let timeout = Duration::from_secs(broker.config.limits.connect_timeout_secs);
    let max_frame = broker.config.limits.max_packet_size as usize + 16;
    let origins = &origin.listener.ws_origins;
    match tokio::time::timeout(timeout, websocket::accept(stream, path, max_frame, origins)).await {
        Ok(Ok(ws)) => connection::run(broker, ws, peer, origin, permit).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "WebSocket handshake failed"),
        Err(_) => tracing::debug!(%peer, "WebSocket handshake timed out"),
    }
}
