//! Reading CONNECT, before the client has authenticated: what such a
//! connection may make the broker buffer is bounded twice. Per connection,
//! by `limits.max_connect_packet_size` (a CONNECT announced larger is
//! refused from its fixed header, nothing of it buffered); across all
//! opening connections, by `limits.max_opening_bytes` (a read that would
//! go beyond waits until others finish, within the connect timeout). A
//! thousand sockets each announcing a 1 MiB CONNECT cost 165 MiB before.

use bytes::BytesMut;
use tokio::io::AsyncRead;

use super::read_chunk::{read_chunk, FIRST_READ, READ_CHUNK};
use crate::broker::{Budgets, OpeningCharge};
use crate::codec::{decode_packet, decode_varint, Connect, DecodeError, Packet, ProtocolVersion};

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
