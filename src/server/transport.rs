//! The byte streams a connection is served on, and which of them can be
//! parked in the idle table.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::websocket::WsIo;

/// A stream a connection is served on. Only plain TCP parks: TLS and
/// WebSocket keep state of their own in user space (session keys, a
/// partly read frame) that the idle table's socket-only record would lose.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether an idle connection on this stream may be parked.
    const PARKS: bool;

    /// The socket out of the runtime's reactor, for the idle table
    /// (called only when [`Transport::PARKS`]).
    fn into_socket(self) -> std::io::Result<std::net::TcpStream>;
}

impl Transport for TcpStream {
    const PARKS: bool = true;

    fn into_socket(self) -> std::io::Result<std::net::TcpStream> {
        self.into_std()
    }
}

fn not_parkable() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "only plain TCP parks")
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport
    for tokio_rustls::server::TlsStream<S>
{
    const PARKS: bool = false;

    fn into_socket(self) -> std::io::Result<std::net::TcpStream> {
        Err(not_parkable())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WsIo<S> {
    const PARKS: bool = false;

    fn into_socket(self) -> std::io::Result<std::net::TcpStream> {
        Err(not_parkable())
    }
}
