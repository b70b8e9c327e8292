//! MQTT over a WebSocket that another HTTP server already upgraded: the
//! admin listener's `/mqtt`, so the dashboard works on the defaults (no
//! ws listener configured, or `--bind` replacing the MQTT listeners). The
//! admin listener checks Host, Origin and its token before the upgrade;
//! from here on it is an MQTT connection like any other, under the
//! broker's own authentication and connection limits.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::connection::{self, Origin};
use super::listener::{admit, ListenerCtx};
use super::websocket::{self, WsIo};
use crate::broker::Broker;
use crate::config::{ListenerConfig, ListenerProtocol};

/// Path of the MQTT endpoint on the admin listener.
pub const ADMIN_MQTT_PATH: &str = "/mqtt";

/// The listener context of the admin listener's MQTT endpoint at `addr`
/// (`wss` when the admin listener serves HTTPS).
pub fn admin_endpoint(addr: SocketAddr, https: bool, allow_anonymous: bool) -> ListenerCtx {
    let config = ListenerConfig {
        protocol: if https {
            ListenerProtocol::Wss
        } else {
            ListenerProtocol::Ws
        },
        ws_path: ADMIN_MQTT_PATH.to_owned(),
        ..ListenerConfig::tcp(addr)
    };
    ListenerCtx::new(&config, addr, allow_anonymous, None)
}

/// Serves MQTT on `io`, the raw stream after the HTTP 101 response.
pub async fn serve_upgraded<S>(broker: Arc<Broker>, ctx: Arc<ListenerCtx>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (permit, over_limit) = admit(&broker, &ctx);
    let max_frame = broker.config.limits.max_packet_size as usize + 16;
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(websocket::config(max_frame)))
        .await;
    let origin = Origin {
        listener: ctx,
        peer,
        identity: None,
        over_limit,
    };
    connection::run(broker, WsIo::new(ws), peer, origin, permit).await;
}
