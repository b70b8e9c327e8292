//! One connection to the remote broker: TCP (or TLS over it), CONNECT,
//! CONNACK, and reading and writing whole packets with the project's codec.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use sluice_codec::{
    decode_packet, encode_packet, Connect, Packet, Properties, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{MqttSinkConfig, RemoteProtocol};

/// The largest packet the bridge accepts from the remote. It sends
/// acknowledgements, and messages of the bridge's own subscriptions.
pub(crate) const MAX_INCOMING_PACKET: usize = 16 << 20;

/// The receive maximum the bridge announces (MQTT 5): how many QoS 1/2
/// messages the remote may have in flight towards it.
const OUR_RECEIVE_MAXIMUM: u16 = 100;

/// A byte stream to the remote, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection whose CONNACK accepted us.
pub(crate) struct Link {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    pub(crate) version: ProtocolVersion,
    /// The remote still had our session (in-flight messages, QoS 2 state).
    pub(crate) session_present: bool,
    /// QoS 1/2 messages the remote takes in flight at once.
    pub(crate) receive_maximum: u16,
    /// The largest packet the remote accepts, if it said.
    pub(crate) maximum_packet_size: Option<u32>,
    /// The highest QoS the remote accepts (MQTT 5), 2 if it did not say.
    pub(crate) maximum_qos: u8,
    /// Seconds between PINGREQs when idle: ours, or the remote's Server
    /// Keep Alive (MQTT 5), which the client must use.
    pub(crate) keep_alive_secs: u16,
}

/// What the sink needs to open links.
pub(crate) struct Dialer {
    pub(crate) cfg: MqttSinkConfig,
    pub(crate) tls: Option<TlsConnector>,
    pub(crate) password: Option<Bytes>,
}

impl Dialer {
    pub(crate) fn version(&self) -> ProtocolVersion {
        match self.cfg.protocol {
            RemoteProtocol::V311 => ProtocolVersion::V311,
            RemoteProtocol::V5 => ProtocolVersion::V5,
        }
    }

    /// Connects and logs in, within the connect timeout.
    pub(crate) async fn dial(&self) -> Result<Link, String> {
        match tokio::time::timeout(self.cfg.connect_timeout, self.dial_now()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no CONNACK from {} within {:?}",
                self.cfg.address, self.cfg.connect_timeout
            )),
        }
    }

    async fn dial_now(&self) -> Result<Link, String> {
        let (host, port) = self
            .cfg
            .host_port()
            .ok_or_else(|| format!("`{}` is not host:port", self.cfg.address))?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.cfg.address))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(connector) => {
                let name = self
                    .cfg
                    .tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                    .unwrap_or_else(|| host.to_owned());
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("`{name}` is not a server name: {e}"))?;
                let tls = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {} failed: {e}", self.cfg.address))?;
                Box::new(tls)
            }
        };
        let mut link = Link {
            io,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
            version: self.version(),
            session_present: false,
            receive_maximum: u16::MAX,
            maximum_packet_size: None,
            maximum_qos: 2,
            keep_alive_secs: self.cfg.keep_alive_secs,
        };
        link.send(&Packet::Connect(Box::new(self.connect_packet())))
            .await?;
        match link.read().await? {
            Packet::ConnAck(ack) if ack.code == ReasonCode::Success => {
                link.session_present = ack.session_present;
                let p = &ack.properties;
                link.receive_maximum = p.receive_maximum.unwrap_or(u16::MAX).max(1);
                link.maximum_packet_size = p.maximum_packet_size;
                link.maximum_qos = p.maximum_qos.unwrap_or(2);
                if let Some(k) = p.server_keep_alive {
                    link.keep_alive_secs = k;
                }
                Ok(link)
            }
            Packet::ConnAck(ack) => Err(format!(
                "{} refused the connection: {:?}{}",
                self.cfg.address,
                ack.code,
                ack.properties
                    .reason_string
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            other => Err(format!(
                "{} answered CONNECT with {}",
                self.cfg.address,
                other.name()
            )),
        }
    }

    fn connect_packet(&self) -> Connect {
        let v5 = self.cfg.protocol == RemoteProtocol::V5;
        let mut properties = Properties::default();
        if v5 {
            properties.session_expiry_interval = Some(self.cfg.session_expiry_secs);
            properties.receive_maximum = Some(OUR_RECEIVE_MAXIMUM);
        }
        Connect {
            protocol: self.version(),
            // The remote keeps our session: what it acknowledged and what
            // it holds for QoS 2 survives our reconnects and restarts.
            clean_start: false,
            keep_alive: self.cfg.keep_alive_secs,
            properties,
            client_id: ByteString::from(self.cfg.client_id.as_str()),
            will: None,
            username: self.cfg.username.as_deref().map(ByteString::from),
            password: self.password.clone(),
        }
    }
}

impl Link {
    /// Encodes `packet` into the write buffer (sent by [`Link::flush`]).
    pub(crate) fn queue(&mut self, packet: &Packet) -> Result<(), String> {
        encode_packet(packet, self.version, &mut self.wbuf)
            .map(|_| ())
            .map_err(|e| format!("cannot encode {}: {e}", packet.name()))
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes what is queued, within `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) -> Result<(), String> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(format!("write to the remote failed: {e}")),
            Err(_) => Err(format!("the remote did not read for {limit:?}")),
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        self.queue(packet)?;
        self.flush(Duration::from_secs(30)).await
    }

    /// The next whole packet already buffered, if any.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Packet>, String> {
        decode_packet(&mut self.rbuf, Some(self.version), MAX_INCOMING_PACKET)
            .map_err(|e| format!("bad packet from the remote: {e}"))
    }

    /// Reads more bytes; cancel-safe (`select!` may drop it). `Ok(false)`
    /// when the remote closed the connection.
    pub(crate) async fn fill(&mut self) -> Result<bool, String> {
        match self.io.read_buf(&mut self.rbuf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(format!("read from the remote failed: {e}")),
        }
    }

    /// Reads one whole packet (used during the handshake).
    async fn read(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(p) = self.next_buffered()? {
                return Ok(p);
            }
            if !self.fill().await? {
                return Err("the remote closed the connection".into());
            }
        }
    }
}
