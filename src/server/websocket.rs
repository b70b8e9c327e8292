//! MQTT over WebSocket (spec 6): the HTTP upgrade with subprotocol `mqtt`
//! on the configured path, and an adapter that turns binary frames into a
//! byte stream for the same codec. MQTT packets may be split across frames
//! and a frame may hold several packets; the codec never sees frames.
//! Browsers' upgrades are checked against the listener's allowed origins.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::origin::{origin_listed, Authority, WebOrigin};
use crate::config::ListenerConfig;

/// Which pages a browser may open this listener from. Without such a
/// check any site the user visits can talk MQTT through the user's
/// browser to a broker only the user's network reaches.
#[derive(Debug)]
pub struct AllowedOrigins {
    /// `[[listeners]] allowed_origins` (`*` = any).
    listed: Vec<String>,
    /// Port a Host header without one means (80 for ws, 443 for wss).
    default_port: u16,
    /// The admin listener's scheme and port: the dashboard it serves
    /// connects here from that origin (same host name, other port). Set
    /// once the admin listener is bound.
    dashboard: OnceLock<(&'static str, u16)>,
}

impl AllowedOrigins {
    pub fn new(config: &ListenerConfig) -> AllowedOrigins {
        AllowedOrigins {
            listed: config.allowed_origins.clone(),
            default_port: if config.protocol.uses_tls() { 443 } else { 80 },
            dashboard: OnceLock::new(),
        }
    }

    /// Admits pages of the admin dashboard served at `scheme://host:port`.
    pub fn set_dashboard(&self, scheme: &'static str, port: u16) {
        let _ = self.dashboard.set((scheme, port));
    }

    /// No Origin (not a browser), the listener's own host and port, the
    /// dashboard's origin on the same host name, or a listed origin.
    fn admits(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if origin_listed(origin, &self.listed) {
            return true;
        }
        let (Some(o), Some(h)) = (WebOrigin::parse(origin), host.and_then(Authority::parse)) else {
            return false;
        };
        o.same_as_host(&h, self.default_port)
            || self.dashboard.get().is_some_and(|&(scheme, port)| {
                o.scheme == scheme && o.authority.host == h.host && o.port() == Some(port)
            })
    }
}

/// Completes the WebSocket upgrade on `path`, negotiating subprotocol
/// `mqtt` (or `mqttv3.1` for old clients).
// The callback's error type is tungstenite's HTTP response, not ours.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(
    stream: S,
    path: &str,
    max_frame: usize,
    origins: &AllowedOrigins,
) -> io::Result<WsIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = path.to_string();
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != path {
            let mut e = ErrorResponse::new(Some("no MQTT endpoint here".into()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            return Err(e);
        }
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        if !origins.admits(header("origin"), header("host")) {
            tracing::info!(
                origin = header("origin").unwrap_or(""),
                "WebSocket upgrade from a page of another origin refused"
            );
            let mut e = ErrorResponse::new(Some("origin not allowed".into()));
            *e.status_mut() = StatusCode::FORBIDDEN;
            return Err(e);
        }
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| *p == "mqtt" || *p == "mqttv3.1")
            .map(str::to_string);
        if let Some(p) = offered {
            if let Ok(v) = HeaderValue::from_str(&p) {
                resp.headers_mut().insert("sec-websocket-protocol", v);
            }
        }
        Ok(resp)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config(max_frame)))
            .await
            .map_err(io::Error::other)?;
    Ok(WsIo::new(ws))
}

/// Frames and messages no larger than the largest MQTT packet accepted.
pub(super) fn config(max_frame: usize) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.max_frame_size = Some(max_frame);
    config.max_message_size = Some(max_frame);
    config
}

/// A WebSocket connection seen as a byte stream.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// Rest of the last binary frame not yet read.
    pending: Bytes,
    closed: bool,
}

impl<S> WsIo<S> {
    pub(super) fn new(ws: WebSocketStream<S>) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
            closed: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) | Poll::Ready(Some(Ok(Message::Close(_)))) => {
                    self.closed = true;
                }
                Poll::Ready(Some(Ok(Message::Binary(data)))) => self.pending = data,
                // MQTT is binary only (6.0): a text frame ends the connection.
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )))
                }
                // Pings are answered by tungstenite itself.
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            Poll::Ready(Ok(())) => {}
        }
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
