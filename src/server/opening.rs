//! Reading CONNECT, before the client has authenticated: what such a
//! connection may make the broker buffer is bounded twice. Per connection,
//! by `limits.max_connect_packet_size` (a CONNECT announced larger is
//! refused from its fixed header, nothing of it buffered); across all
//! opening connections, by `limits.max_opening_bytes` (a read that would
//! go beyond waits until others finish, within the connect timeout). A
//! thousand sockets each announcing a 1 MiB CONNECT cost 165 MiB before.
//!
//! Then the opening phase itself: CONNECT read, attached (or refused with
//! a CONNACK that says why), and the serving connection built.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use super::closing::linger;
use super::connection::{Connection, Origin, FINAL_WRITE_BUDGET};
use super::handshake::{attach, Refused};
use super::read_chunk::{read_chunk, FIRST_READ, READ_CHUNK};
use crate::broker::{Broker, Budgets, OpeningCharge};
use crate::codec::{
    decode_packet, decode_varint, encode_packet, ConnAck, Connect, DecodeError, Packet,
    ProtocolVersion, ReasonCode,
};
use crate::session::machine::{
    because, because_of, keep_reason_if_allowed, wants_problem_information, OutgoingLimits,
};
use crate::store::now_ms;

pub enum ConnectFailure {
    Io,
    Decode(DecodeError, Option<ProtocolVersion>),
}

/// Reads until a whole CONNECT is buffered, holding in `charge` what the
/// buffer may grow to once the fixed header says how big it will be.
pub async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    charge: &mut OpeningCharge,
) -> Result<Box<Connect>, ConnectFailure> {
    let max_connect = charge.max_connect;
    loop {
        // Decoding makes room for the whole announced CONNECT, and reads
        // may bring up to a chunk more: hold that, once, before (an
        // oversized one is refused by the decoder instead). Once only: a
        // connection never waits for the budget while holding part of it,
        // so waiting connections cannot starve each other. A CONNECT of up
        // to a kilobyte (most are) is free: devices still connect while
        // large openers wait, and it costs what a connection costs anyway
        // (bounded by `max_connections`).
        if let Some(total) = announced_len(rbuf).filter(|&n| n > FIRST_READ && n <= max_connect) {
            charge.hold(total + READ_CHUNK).await;
        }
        match decode_packet(rbuf, None, max_connect) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(_)) => {
                return Err(ConnectFailure::Decode(
                    DecodeError::Protocol("first packet is not CONNECT"),
                    None,
                ))
            }
            Ok(None) => {}
            Err(e) => {
                if matches!(e, DecodeError::PacketTooLarge { .. }) {
                    Budgets::count(&charge.budgets().refused.connect_too_large);
                }
                let version = super::handshake::peek_connect_version(rbuf);
                return Err(ConnectFailure::Decode(e, version));
            }
        }
        match read_chunk(stream, rbuf).await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Io),
            Ok(_) => {}
        }
    }
}

/// The whole size of the packet whose fixed header starts `buf`, once
/// the header is in.
fn announced_len(buf: &[u8]) -> Option<usize> {
    let (remaining, n) = decode_varint(buf.get(1..)?).ok()??;
    Some(1 + n + remaining as usize)
}

/// Reads CONNECT and attaches the session; `None` if the connection ended
/// there (refused, malformed, timed out).
pub(super) async fn open<S>(
    broker: Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    origin: Origin,
) -> Option<(Connection, S, tracing::Span)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = Duration::from_secs(broker.config.limits.connect_timeout_secs);
    let mut rbuf = BytesMut::new();
    // The CONNECT size limit and this connection's share of the opening
    // budget, held until this function returns (CONNACK sent, or gone).
    let mut opening = broker.budget.opening_charge();
    let read = read_connect(&mut stream, &mut rbuf, &mut opening);
    let connect = match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within the connect timeout");
            return None;
        }
        Ok(Err(ConnectFailure::Io)) => return None,
        Ok(Err(ConnectFailure::Decode(e, version))) => {
            tracing::debug!(%peer, error = %e, "bad CONNECT");
            drop(opening);
            refuse_bad_connect(&mut stream, &e, version).await;
            return None;
        }
        Ok(Ok(c)) => c,
    };
    let version = connect.protocol;
    if origin.over_limit {
        tracing::warn!(%peer, "connection refused: max_connections reached");
        drop(opening);
        Box::pin(refuse(
            &mut stream,
            over_limit(version),
            version,
            Some(&connect),
        ))
        .await;
        return None;
    }
    let span = tracing::info_span!("conn", client_id = %connect.client_id, %peer);
    let attached = match attach(&broker, &connect, &origin)
        .instrument(span.clone())
        .await
    {
        Ok(a) => a,
        Err(Refused(ack)) => {
            if matches!(
                ack.code,
                ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized
            ) {
                broker.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            }
            span.in_scope(|| tracing::info!(code = ?ack.code, "connection refused"));
            drop(opening);
            Box::pin(refuse(&mut stream, ack, version, Some(&connect))).await;
            return None;
        }
    };
    span.in_scope(|| {
        tracing::debug!(
            protocol = version.level(),
            keep_alive = attached.keep_alive,
            "client connected"
        )
    });
    {
        let mut c = attached.slot.control.lock();
        c.peer = Some(peer);
        c.connected_at_ms = now_ms();
        c.keep_alive = attached.keep_alive;
    }
    let conn = Connection::new(broker, &connect, attached, rbuf);
    Some((conn, stream, span))
}

/// The CONNACK for a connection over the global or listener limit.
fn over_limit(version: ProtocolVersion) -> ConnAck {
    let code = if version.is_v5() {
        ReasonCode::ServerBusy
    } else {
        ReasonCode::ServerUnavailable
    };
    ConnAck {
        session_present: false,
        code,
        properties: because_of("connection limit reached, try again later"),
    }
}

/// Answers a CONNECT that could not be read where its version allows.
async fn refuse_bad_connect<S>(stream: &mut S, e: &DecodeError, version: Option<ProtocolVersion>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let code = match e {
        DecodeError::UnsupportedProtocolVersion(_) => Some(ReasonCode::UnsupportedProtocolVersion),
        // 3.1.1 has no CONNACK code for a malformed CONNECT: just close.
        _ if version == Some(ProtocolVersion::V5) => Some(e.reason_code()),
        _ => None,
    };
    if let Some(code) = code {
        let v = version.unwrap_or(ProtocolVersion::V311);
        let ack = ConnAck {
            session_present: false,
            code,
            properties: because(code),
        };
        Box::pin(refuse(stream, ack, v, None)).await;
    }
}

/// Sends the CONNACK of a refused CONNECT (its Reason String as the
/// client's CONNECT allows, if it could be read), then closes so that the
/// client reads it (see `closing`), all within [`FINAL_WRITE_BUDGET`].
async fn refuse<S>(
    stream: &mut S,
    ack: ConnAck,
    version: ProtocolVersion,
    connect: Option<&Connect>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut packet = Packet::ConnAck(ack);
    let (wanted, max_packet_size) = connect.map_or((true, usize::MAX), |c| {
        let max = c.properties.maximum_packet_size;
        (
            wants_problem_information(c),
            max.map_or(usize::MAX, |v| v as usize),
        )
    });
    let limits = OutgoingLimits::new(version, max_packet_size, 0);
    keep_reason_if_allowed(&mut packet, wanted && version.is_v5(), &limits);
    let sent = tokio::time::timeout(FINAL_WRITE_BUDGET, write_packet(stream, &packet, version));
    if let Ok(Ok(())) = sent.await {
        linger(stream, started + FINAL_WRITE_BUDGET).await;
    }
}

async fn write_packet<S: AsyncWrite + Unpin>(
    stream: &mut S,
    packet: &Packet,
    version: ProtocolVersion,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    if encode_packet(packet, version, &mut buf).is_err() {
        tracing::warn!(packet = packet.name(), "could not encode packet");
    }
    stream.write_all(&buf).await?;
    stream.flush().await
}
