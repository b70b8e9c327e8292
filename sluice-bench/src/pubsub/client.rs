//! One hand-rolled MQTT client connection: connect, CONNECT/CONNACK.

use anyhow::{bail, Context};
use bytes::BytesMut;
use sluice::codec::{
    decode_packet, encode_packet, ConnAck, Connect, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::args::Args;

pub fn version(args: &Args) -> anyhow::Result<ProtocolVersion> {
    match args.mqtt_version {
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        v => bail!("--mqtt must be 4 or 5, not {v}"),
    }
}

pub fn qos(args: &Args) -> anyhow::Result<QoS> {
    QoS::from_u8(args.qos).context("--qos must be 0, 1 or 2")
}

/// Opens a connection and completes CONNECT/CONNACK.
pub async fn connect(
    args: &Args,
    client_id: &str,
    keep_alive: u16,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    connect_with(args, client_id, keep_alive, source, false).await
}

pub async fn connect_with(
    args: &Args,
    client_id: &str,
    keep_alive: u16,
    source: Option<std::net::IpAddr>,
    persistent: bool,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let v = version(args)?;
    let stream = open(args, source).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::new();
    let connect = Connect {
        protocol: v,
        clean_start: !persistent,
        keep_alive,
        properties: Properties {
            session_expiry_interval: (persistent && v.is_v5()).then_some(3600),
            ..Properties::default()
        },
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    };
    encode_packet(&Packet::Connect(Box::new(connect)), v, &mut buf)?;
    wr.write_all(&buf).await?;
    buf.clear();
    loop {
        if let Some(p) = decode_packet(&mut buf, Some(v), usize::MAX)? {
            match p {
                Packet::ConnAck(ConnAck {
                    code: ReasonCode::Success,
                    ..
                }) => return Ok((rd, wr, buf)),
                other => bail!("connection refused: {other:?}"),
            }
        }
        if rd.read_buf(&mut buf).await? == 0 {
            bail!("broker closed the connection during CONNECT");
        }
    }
}

/// The TCP connection, from `source` when given.
async fn open(args: &Args, source: Option<std::net::IpAddr>) -> anyhow::Result<TcpStream> {
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .context("host did not resolve")?;
    Ok(match source {
        Some(ip) => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            // Back-to-back runs leave tens of thousands of ports in
            // TIME_WAIT. A bind to port 0 then searches the whole port
            // range for one free of them (BENCHMARKS.md has what that cost
            // a run), so the rate measured would be the kernel's.
            // IP_BIND_ADDRESS_NO_PORT picks the port at connect, where only
            // the four-tuple must be unique.
            no_port_at_bind(&socket);
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    })
}

/// Sets IP_BIND_ADDRESS_NO_PORT (Linux); a failure only costs speed.
fn no_port_at_bind(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the
    // size given.
    #[allow(unsafe_code)]
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
