//! One client connection: reads packets, feeds them to the session and the
//! router, writes what the session has to send in batches, and carries out
//! keep alive, takeover and shutdown. All protocol decisions live in
//! `session` and `broker`; this task only moves bytes and timers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::oneshot::error::TryRecvError;
use tracing::Instrument;

use super::closing::linger;
use super::handshake::{attach, Attached, Refused};
use super::listener::ListenerCtx;
use super::opening::{read_connect, ConnectFailure};
use super::outgoing::OutgoingLimits;
use super::rate::PublishRate;
use super::read_chunk::read_chunk;
use super::reason_text::{because, because_of, keep_reason_if_allowed, wants_problem_information};
use crate::auth::Access;
use crate::broker::{Broker, SessionSlot, Subscription};
use crate::codec::{
    decode_packet, encode_packet, Ack, ConnAck, Connect, DecodeError, Disconnect, Packet,
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use crate::session::{after_disconnect, FlowError, KeepAlive, Message};
use crate::store::{now_ms, Store, Ticket};
use crate::topic::TopicFilter;

/// Bytes written per wake-up before yielding to reads.
const WRITE_BATCH: usize = 64 * 1024;

/// Most bytes held back while what they acknowledge is not yet durable
/// (on disk, or at a bridge's sink with `ack = "sink"`). Below it the
/// connection keeps reading during a group commit, so the next commit
/// carries more of this client's messages; at it, reading waits (the
/// client's backpressure).
const MAX_HELD_BYTES: usize = 64 * 1024;

/// The most a connection that is ending spends on its last write: a kick,
/// a takeover or shutdown completes within it whatever the client does.
const FINAL_WRITE_BUDGET: Duration = Duration::from_secs(2);

/// What became of one queued delivery in `drain`.
#[derive(Debug, PartialEq, Eq)]
enum Outgoing {
    Written,
    /// Larger than the client's maximum packet size (3.1.2.11.4).
    TooLarge,
    /// The receiving identity may not read its topic (any more).
    Denied,
}

/// Why a write to the client did not complete.
#[derive(Debug)]
enum WriteStop {
    /// The socket failed, or held acks can never be sent.
    Io,
    /// Told to leave (takeover, admin kick) while waiting or writing.
    Kicked(ReasonCode),
    Shutdown,
    /// No progress within `limits.write_timeout_secs`: the client stopped
    /// reading.
    Stalled,
}

/// Why a connection ended; decides the will and the session's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The client sent DISCONNECT; `with_will` for any v5 reason but 0x00.
    Disconnect {
        with_will: bool,
    },
    /// The socket closed or failed without DISCONNECT.
    Closed,
    /// We closed it for a protocol violation or keep alive timeout.
    Violation(ReasonCode),
    TakenOver,
    Shutdown,
}

/// Where a connection came from: its listener's rules and, for TLS with
/// client certificates, the certificate identity.
pub struct Origin {
    pub listener: Arc<ListenerCtx>,
    /// The client's address (the login throttle counts per address).
    pub peer: SocketAddr,
    pub identity: Option<String>,
    /// The global or listener connection limit was reached: answer CONNECT
    /// with "server busy" and close.
    pub over_limit: bool,
}

/// Serves one client on any byte stream (TCP, TLS, WebSocket).
///
/// Two phases. Opening (CONNECT, authentication, CONNACK) is boxed and
/// freed when it ends: its CONNECT, CONNACK and `attach` state are a few
/// KB that an established connection, idle for hours, must not carry. What
/// stays inline in the task is only the serving phase.
pub async fn run<S>(broker: Arc<Broker>, stream: S, peer: SocketAddr, origin: Origin)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some((mut conn, stream, span)) = Box::pin(open(broker, stream, peer, origin)).await else {
        return;
    };
    async move {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let exit = conn.serve(&mut reader, &mut writer).await;
        tracing::debug!(?exit, "client disconnected");
        let last_words = conn.last_words;
        // The session is let go (a takeover proceeds, the will is
        // scheduled) before the socket lingers.
        conn.finish(exit);
        if let Some(started) = last_words {
            // Boxed: only connections that end this way pay for its state.
            let mut stream = reader.unsplit(writer);
            Box::pin(linger(&mut stream, started + FINAL_WRITE_BUDGET)).await;
        }
    }
    .instrument(span)
    .await
}

/// Reads CONNECT and attaches the session; `None` if the connection ended
/// there (refused, malformed, timed out).
async fn open<S>(
    broker: Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    origin: Origin,
) -> Option<(Connection, S, tracing::Span)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let over_limit = origin.over_limit;
    let timeout = Duration::from_secs(broker.config.limits.connect_timeout_secs);
    let mut rbuf = BytesMut::new();
    // The CONNECT size limit and this connection's share of the opening
    // budget, held until this function returns (CONNACK sent, or gone).
    let mut opening = broker.budget.opening_charge();

    let connect =
        match tokio::time::timeout(timeout, read_connect(&mut stream, &mut rbuf, &mut opening))
            .await
        {
            Err(_) => {
                tracing::debug!(%peer, "no CONNECT within the connect timeout");
                return None;
            }
            Ok(Err(ConnectFailure::Io)) => return None,
            Ok(Err(ConnectFailure::Decode(e, version))) => {
                tracing::debug!(%peer, error = %e, "bad CONNECT");
                let code = match e {
                    DecodeError::UnsupportedProtocolVersion(_) => {
                        Some(ReasonCode::UnsupportedProtocolVersion)
                    }
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
                    drop(opening);
                    Box::pin(refuse(&mut stream, ack, v, None)).await;
                }
                return None;
            }
            Ok(Ok(c)) => c,
        };
    let version = connect.protocol;
    if over_limit {
        let code = if version.is_v5() {
            ReasonCode::ServerBusy
        } else {
            ReasonCode::ServerUnavailable
        };
        let ack = ConnAck {
            session_present: false,
            code,
            properties: because_of("connection limit reached, try again later"),
        };
        tracing::warn!(%peer, "connection refused: max_connections reached");
        drop(opening);
        Box::pin(refuse(&mut stream, ack, version, Some(&connect))).await;
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
    let packets = [packet];
    let sent = tokio::time::timeout(FINAL_WRITE_BUDGET, write_packets(stream, &packets, version));
    if let Ok(Ok(())) = sent.await {
        linger(stream, started + FINAL_WRITE_BUDGET).await;
    }
}

async fn write_packets<S: AsyncWrite + Unpin>(
    stream: &mut S,
    packets: &[Packet],
    version: ProtocolVersion,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    for p in packets {
        if encode_packet(p, version, &mut buf).is_err() {
            tracing::warn!(packet = p.name(), "could not encode packet");
        }
    }
    stream.write_all(&buf).await?;
    stream.flush().await
}

struct Connection {
    broker: Arc<Broker>,
    /// Authenticated user name (or certificate identity), for the ACL.
    username: Option<ByteString>,
    rate: Option<PublishRate>,
    /// Reading is paused until then: the client is over its publish rate.
    paused_until: Option<Instant>,
    version: ProtocolVersion,
    client_id: ByteString,
    slot: Arc<SessionSlot>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    kick: tokio::sync::oneshot::Receiver<ReasonCode>,
    keep_alive: KeepAlive,
    rbuf: BytesMut,
    wbuf: BytesMut,
    outgoing: OutgoingLimits,
    /// Topic aliases the client set up towards us.
    incoming_aliases: HashMap<u16, ByteString>,
    /// Outgoing QoS 1/2 window: min(client's Receive Maximum, our limit).
    window: usize,
    session_expiry_was_zero: bool,
    /// Boxed: v5 properties make a CONNACK ~400 bytes, needed only once.
    connack: Option<Box<ConnAck>>,
    store: Store,
    /// What must be durable before the write buffer goes out: acks to
    /// publishers wait for their messages to be on disk.
    pending: Ticket,
    /// Bridges with `ack = "sink"` that must confirm before the write
    /// buffer (holding the PUBACKs, in order) goes out.
    sink_waits: VecDeque<tokio::sync::oneshot::Receiver<()>>,
    /// A bridge could not confirm one of them: the held acks never go out.
    sink_failed: bool,
    /// How long one write may wait for the client to read.
    write_timeout: Duration,
    /// When the last write of an ending connection started, if it went
    /// out: the socket then lingers (see `closing`) within the same
    /// [`FINAL_WRITE_BUDGET`].
    last_words: Option<Instant>,
    /// The client asked for problem information (3.1.2.11.7).
    problem_info: bool,
}

impl Connection {
    fn new(broker: Arc<Broker>, connect: &Connect, a: Attached, rbuf: BytesMut) -> Connection {
        let version = connect.protocol;
        broker.stats.client_connected(version);
        let limits = &broker.config.limits;
        let client_receive_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let window = usize::from(client_receive_max.min(limits.max_inflight_messages));
        let client_max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |v| v as usize);
        let alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
        let client_id = a.slot.client_id.clone();
        Connection {
            username: a.username.clone(),
            rate: PublishRate::new(
                limits.publish_rate_messages,
                limits.publish_rate_bytes,
                Instant::now(),
            ),
            paused_until: None,
            version,
            client_id,
            slot: a.slot,
            _guard: a.guard,
            kick: a.kick,
            keep_alive: KeepAlive::new(a.keep_alive, Instant::now()),
            rbuf,
            // Allocated by the first packet, and let go again when idle.
            wbuf: BytesMut::new(),
            outgoing: OutgoingLimits::new(version, client_max_packet, alias_max),
            incoming_aliases: HashMap::new(),
            window,
            session_expiry_was_zero: a.session_expiry_requested_zero,
            connack: Some(Box::new(a.connack)),
            store: broker.store().clone(),
            pending: a.ticket,
            sink_waits: VecDeque::new(),
            sink_failed: false,
            write_timeout: Duration::from_secs(limits.write_timeout_secs),
            last_words: None,
            problem_info: wants_problem_information(connect),
            broker,
        }
    }

    fn send(&mut self, packet: Packet) {
        if !self.outgoing.fits(&packet) {
            tracing::debug!(
                packet = packet.name(),
                "packet exceeds the client's maximum size, not sent"
            );
            return;
        }
        if let Err(e) = encode_packet(&packet, self.version, &mut self.wbuf) {
            tracing::warn!(packet = packet.name(), error = %e, "could not encode packet");
        }
    }

    async fn serve<S>(&mut self, reader: &mut ReadHalf<S>, writer: &mut WriteHalf<S>) -> Exit
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut shutdown = self.broker.shutdown_signal();
        if let Some(ack) = self.connack.take() {
            self.send(Packet::ConnAck(*ack));
        }
        // A resumed session first resends what was in flight (4.4), what
        // this identity may still read: the ACL may have changed meanwhile.
        let resend = {
            let access = self.broker.access();
            let mut state = self.slot.state.lock();
            if let Some(acl) = &access.acl {
                let (client_id, username) = (&self.client_id, self.username.as_deref());
                let denied = state.discard_inflight_where(|topic| {
                    !acl.check_topic(client_id, username, topic, Access::Read)
                });
                if denied > 0 {
                    tracing::info!(
                        denied,
                        "in-flight messages the ACL no longer allows dropped"
                    );
                }
            }
            state.resend(Instant::now())
        };
        for p in resend {
            self.send(p);
        }
        // Bytes that came with CONNECT.
        if let Err(exit) = self.process_input() {
            self.flush_final(writer).await;
            return exit;
        }
        self.drain();
        loop {
            // One reading of the disk's progress decides both whether to
            // write now and what to wait for. Read twice, a group commit
            // landing in between left the acks unwritten and nothing to
            // wake the task: a PUBACK held until the next packet or the
            // keep-alive timeout (seen as PUBACKs that never came on a
            // busy machine).
            let durable_now = self.store.is_durable(self.pending);
            if self.ready_to_write(durable_now) {
                if let Err(stop) = self.flush_out(writer, &mut shutdown).await {
                    return self.stopped_writing(writer, stop).await;
                }
            }
            if *shutdown.borrow() {
                return self
                    .close(writer, ReasonCode::ServerShuttingDown, Exit::Shutdown)
                    .await;
            }
            let deadline = self.keep_alive.deadline();
            let paused_until = self.paused_until;
            let pause_timer = async {
                match paused_until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let keep_alive_timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Acks wait for the disk or a bridge's sink; reads go on
            // meanwhile (see `ready_to_write`). Boxed: only connections
            // with something held pay for the disk wait's state.
            let held_for = (!self.wbuf.is_empty() && !durable_now).then_some(self.pending);
            let store = &self.store;
            let durable = async {
                match held_for {
                    Some(ticket) => Box::pin(store.wait(ticket)).await,
                    None => std::future::pending().await,
                }
            };
            let oldest_sink_wait = self.sink_waits.front_mut();
            let sink_confirmed = async {
                match oldest_sink_wait {
                    Some(wait) => wait.await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                reason = &mut self.kick => {
                    let reason = reason.unwrap_or(ReasonCode::SessionTakenOver);
                    let exit = if reason == ReasonCode::SessionTakenOver { Exit::TakenOver } else { Exit::Violation(reason) };
                    return self.close(writer, reason, exit).await;
                }
                _ = shutdown.changed() => {
                    return self.close(writer, ReasonCode::ServerShuttingDown, Exit::Shutdown).await;
                }
                _ = durable => {}
                confirmed = sink_confirmed => {
                    self.sink_waits.pop_front();
                    self.sink_failed |= !confirmed;
                }
                _ = pause_timer => {
                    self.paused_until = None;
                    if let Err(exit) = self.process_input() {
                        self.flush_final(writer).await;
                        return exit;
                    }
                }
                read = read_chunk(&mut *reader, &mut self.rbuf), if self.paused_until.is_none() => {
                    match read {
                        Ok(0) | Err(_) => return Exit::Closed,
                        Ok(n) => {
                            self.broker.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                            self.keep_alive.seen(Instant::now());
                            if let Err(exit) = self.process_input() {
                                self.flush_final(writer).await;
                                return exit;
                            }
                        }
                    }
                }
                _ = self.slot.notify.notified() => {}
                _ = keep_alive_timer => {
                    tracing::debug!("keep alive timeout");
                    return self.close(writer, ReasonCode::KeepAliveTimeout, Exit::Violation(ReasonCode::KeepAliveTimeout)).await;
                }
            }
            self.drain();
            if self.rbuf.is_empty() {
                // Reads go through a stack chunk (`read_chunk`): a consumed
                // buffer is not needed for the next read.
                self.rbuf = BytesMut::new();
                if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
                    // Nothing read, nothing to write: idle connections (most
                    // of a fleet) hold no write buffer.
                    self.wbuf = BytesMut::new();
                }
            }
        }
    }

    /// Writes the buffer once what it acknowledges is durable. Every wait
    /// in here gives way to a kick, a takeover or shutdown, and the socket
    /// write itself is bounded by `limits.write_timeout_secs`: a client
    /// that stops reading can neither pin its session nor its task.
    async fn flush_out<S: AsyncWrite>(
        &mut self,
        writer: &mut WriteHalf<S>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), WriteStop> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write_timeout = self.write_timeout;
        let Connection {
            kick,
            pending,
            store,
            wbuf,
            sink_waits,
            sink_failed,
            broker,
            ..
        } = self;
        let work = async {
            let ticket = std::mem::take(pending);
            store.wait(ticket).await;
            for wait in std::mem::take(sink_waits) {
                *sink_failed |= wait.await.is_err();
            }
            if *sink_failed {
                // A bridge lost the message from memory before its sink had
                // it: no PUBACK; the client resends after reconnecting.
                tracing::warn!(
                    "bridge could not confirm a message to its sink; closing so the client resends"
                );
                wbuf.clear();
                return Err(WriteStop::Io);
            }
            broker
                .stats
                .bytes_sent
                .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
            match tokio::time::timeout(write_timeout, flush(writer, wbuf)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(WriteStop::Io),
                Err(_) => Err(WriteStop::Stalled),
            }
        };
        tokio::select! {
            biased;
            reason = kick => Err(WriteStop::Kicked(reason.unwrap_or(ReasonCode::SessionTakenOver))),
            _ = shutdown.changed() => Err(WriteStop::Shutdown),
            done = work => done,
        }
    }

    /// The last write of a connection that is ending (DISCONNECT, acks of
    /// what was read): best effort, within [`FINAL_WRITE_BUDGET`]. Once it
    /// went out, `last_words` has the connection linger so it arrives.
    async fn flush_final<S: AsyncWrite>(&mut self, writer: &mut WriteHalf<S>) {
        if self.wbuf.is_empty() {
            return;
        }
        let started = Instant::now();
        let Connection {
            pending,
            store,
            wbuf,
            sink_waits,
            sink_failed,
            ..
        } = self;
        let work = async {
            store.wait(std::mem::take(pending)).await;
            for wait in std::mem::take(sink_waits) {
                *sink_failed |= wait.await.is_err();
            }
            !*sink_failed && flush(writer, wbuf).await.is_ok()
        };
        match tokio::time::timeout(FINAL_WRITE_BUDGET, work).await {
            Ok(true) => self.last_words = Some(started),
            Ok(false) => {}
            Err(_) => tracing::debug!("last write to the client did not complete in time"),
        }
        self.wbuf.clear();
    }

    /// Ends the connection after a write that could not complete.
    async fn stopped_writing<S: AsyncWrite>(
        &mut self,
        writer: &mut WriteHalf<S>,
        stop: WriteStop,
    ) -> Exit {
        match stop {
            WriteStop::Io => Exit::Closed,
            WriteStop::Kicked(reason) => {
                let exit = if reason == ReasonCode::SessionTakenOver {
                    Exit::TakenOver
                } else {
                    Exit::Violation(reason)
                };
                self.close(writer, reason, exit).await
            }
            WriteStop::Shutdown => {
                self.close(writer, ReasonCode::ServerShuttingDown, Exit::Shutdown)
                    .await
            }
            WriteStop::Stalled => {
                let total = self
                    .broker
                    .stats
                    .slow_consumers_disconnected
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                tracing::warn!(
                    timeout_secs = self.write_timeout.as_secs(),
                    total,
                    "client stopped reading; disconnected"
                );
                // Nothing more can reach a client that does not read.
                self.wbuf.clear();
                Exit::Closed
            }
        }
    }

    /// Whether the write buffer should go out now. What it acknowledges
    /// may still be on its way to disk, or to a bridge's sink (`ack =
    /// "sink"`): then the connection goes on reading (a group commit takes
    /// a few milliseconds, and a publisher read a kilobyte at a time would
    /// otherwise get a dozen messages into each commit, or each request to
    /// the sink), unless too much is held. `durable_now` is the caller's
    /// one reading of whether what the buffer acknowledges is on disk.
    fn ready_to_write(&mut self, durable_now: bool) -> bool {
        if self.wbuf.is_empty() {
            return false;
        }
        while let Some(wait) = self.sink_waits.front_mut() {
            match wait.try_recv() {
                Ok(()) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => self.sink_failed = true,
            }
            self.sink_waits.pop_front();
        }
        self.sink_failed
            || self.wbuf.len() >= MAX_HELD_BYTES
            || (self.sink_waits.is_empty() && durable_now)
    }

    fn wait_for(&mut self, ticket: Ticket) {
        self.pending = self.pending.max(ticket);
    }

    /// Sends a v5 DISCONNECT with `reason` (3.1.1 has none) and ends.
    async fn close<S: AsyncWrite>(
        &mut self,
        writer: &mut WriteHalf<S>,
        reason: ReasonCode,
        exit: Exit,
    ) -> Exit {
        self.send_disconnect(reason);
        self.flush_final(writer).await;
        exit
    }

    /// Decodes and handles every complete packet in the read buffer.
    fn process_input(&mut self) -> Result<(), Exit> {
        let max = self.broker.config.limits.max_packet_size as usize;
        loop {
            if self.paused_until.is_some() {
                // Over the publish rate: the rest waits in the buffer.
                return Ok(());
            }
            match decode_packet(&mut self.rbuf, Some(self.version), max) {
                Ok(Some(p)) => {
                    let result = self.handle(p);
                    let ticket = self.slot.flush_journal(&self.store);
                    self.wait_for(ticket);
                    result?
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "bad packet from client");
                    return Err(self.violation(e.reason_code()));
                }
            }
        }
    }

    /// Queues a v5 DISCONNECT for a protocol violation.
    fn violation(&mut self, reason: ReasonCode) -> Exit {
        self.send_disconnect(reason);
        Exit::Violation(reason)
    }

    /// Queues the server's v5 DISCONNECT (3.1.1 has none), with a Reason
    /// String where the client asked for problem information.
    fn send_disconnect(&mut self, reason: ReasonCode) {
        if self.version.is_v5() {
            let mut packet = Packet::Disconnect(Disconnect {
                reason,
                properties: because(reason),
            });
            keep_reason_if_allowed(&mut packet, self.problem_info, &self.outgoing);
            self.send(packet);
        }
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Exit> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => {
                self.slot.state.lock().on_puback(a.packet_id);
                Ok(())
            }
            Packet::PubRec(a) => {
                let rel = self.slot.state.lock().on_pubrec(a.packet_id, a.reason);
                if let Some(rel) = rel {
                    self.send(Packet::PubRel(rel));
                }
                Ok(())
            }
            Packet::PubRel(a) => {
                let comp = self.slot.state.lock().on_pubrel(a.packet_id);
                self.send(Packet::PubComp(comp));
                Ok(())
            }
            Packet::PubComp(a) => {
                self.slot.state.lock().on_pubcomp(a.packet_id);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Auth(_) => Err(self.violation(ReasonCode::ProtocolError)),
            other => {
                tracing::debug!(packet = other.name(), "client sent a server-only packet");
                Err(self.violation(ReasonCode::ProtocolError))
            }
        }
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), Exit> {
        let limits = &self.broker.config.limits;
        if self.version.is_v5() {
            if !p.properties.subscription_identifiers.is_empty() {
                return Err(self.violation(ReasonCode::ProtocolError));
            }
            if let Some(alias) = p.properties.topic_alias.take() {
                if alias > limits.topic_alias_maximum {
                    return Err(self.violation(ReasonCode::TopicAliasInvalid));
                }
                if p.topic.is_empty() {
                    match self.incoming_aliases.get(&alias) {
                        Some(t) => p.topic = t.clone(),
                        None => return Err(self.violation(ReasonCode::ProtocolError)),
                    }
                } else {
                    // Owned: the alias outlives this (maybe 1 MB) PUBLISH.
                    self.incoming_aliases
                        .insert(alias, crate::codec::owned_string(&p.topic));
                }
            }
        }
        if p.topic.len() > limits.max_topic_length
            || p.topic.split('/').count() > limits.max_topic_levels
        {
            return Err(self.violation(ReasonCode::TopicNameInvalid));
        }
        let now = Instant::now();
        if let Some(rate) = &mut self.rate {
            if let Some(wait) = rate.charge(p.payload.len(), now) {
                self.paused_until = Some(now + wait);
            }
        }
        let qos = p.qos;
        let packet_id = p.packet_id;
        self.broker.stats.received_by_qos[usize::from(qos.as_u8())].fetch_add(1, Ordering::Relaxed);
        if let Some(acl) = &self.broker.access().acl {
            if !acl.check_topic(
                &self.client_id,
                self.username.as_deref(),
                &p.topic,
                Access::Write,
            ) {
                tracing::debug!(topic = %p.topic, "PUBLISH denied by the ACL");
                self.broker
                    .stats
                    .publish_denied
                    .fetch_add(1, Ordering::Relaxed);
                // v5 says why; 3.1.1 has no way to, so the flow completes
                // as if delivered (as mosquitto does).
                let reason = if self.version.is_v5() {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::Success
                };
                match (qos, packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        self.send(Packet::PubAck(Ack::with_reason(id, reason)))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        self.send(Packet::PubRec(Ack::with_reason(id, reason)))
                    }
                    _ => {}
                }
                return Ok(());
            }
        }
        let routable = !(p.topic.starts_with("$SYS/") || &*p.topic == "$SYS");
        let message = Message {
            topic: p.topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            expires_at: p
                .properties
                .message_expiry_interval
                .map(|s| now + Duration::from_secs(u64::from(s))),
            properties: Message::forwardable_properties(&p.properties),
            publisher: Some(self.client_id.clone()),
            username: self.username.clone(),
            accepted_ms: crate::store::now_ms(),
            stored: None,
        };
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => {
                if routable {
                    self.broker.publish(message);
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                let matched = if routable {
                    self.publish(message)
                } else {
                    Some(0)
                };
                let reason = self.ack_reason(matched);
                self.send(Packet::PubAck(Ack::with_reason(id, reason)));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let receive_max = limits.receive_maximum;
                let fresh = self.slot.state.lock().on_incoming_qos2(id, receive_max);
                match fresh {
                    Ok(true) => {
                        // The incoming id and the message become durable together.
                        let ticket = self.slot.flush_journal(&self.store);
                        self.wait_for(ticket);
                        let matched = if routable {
                            self.publish(message)
                        } else {
                            Some(0)
                        };
                        if matched.is_none() {
                            // Refused: the flow ends here, the id is free again.
                            self.slot.state.lock().on_pubrel(id);
                        }
                        let reason = self.ack_reason(matched);
                        self.send(Packet::PubRec(Ack::with_reason(id, reason)));
                    }
                    Ok(false) => self.send(Packet::PubRec(Ack::new(id))),
                    Err(FlowError::ReceiveMaximumExceeded) => {
                        return Err(self.violation(ReasonCode::ReceiveMaximumExceeded));
                    }
                }
            }
            _ => return Err(self.violation(ReasonCode::ProtocolError)),
        }
        Ok(())
    }

    /// Routes a message whose acknowledgement must wait for its durability.
    /// `None` when refused because a subscriber (a full bridge) asks
    /// publishers to slow down: v5 QoS 1/2 publishers are told 0x97 and
    /// retry; others are routed and paused briefly (back-pressure).
    fn publish(&mut self, message: Message) -> Option<usize> {
        let refuse = self.version.is_v5() && message.qos != QoS::AtMostOnce;
        let published = self.broker.publish_with(message, refuse);
        if published.saturated {
            let until = Instant::now() + Duration::from_millis(100);
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
        if published.refused {
            self.broker
                .stats
                .publish_quota_refused
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.wait_for(published.ticket);
        self.sink_waits.extend(published.sink_acks);
        Some(published.matched)
    }

    fn ack_reason(&self, matched: Option<usize>) -> ReasonCode {
        match matched {
            None => ReasonCode::QuotaExceeded,
            Some(0) if self.version.is_v5() => ReasonCode::NoMatchingSubscribers,
            Some(_) => ReasonCode::Success,
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Exit> {
        let limits = &self.broker.config.limits;
        let v5 = self.version.is_v5();
        let identifier = s.properties.subscription_identifiers.first().copied();
        let now = Instant::now();
        let mut reasons = Vec::with_capacity(s.filters.len());
        for (raw, mut options) in s.filters {
            let filter = if raw.len() > limits.max_topic_length {
                None
            } else {
                TopicFilter::parse(raw.clone(), limits.max_topic_levels).ok()
            };
            let Some(filter) = filter else {
                tracing::debug!(filter = %raw, "invalid topic filter");
                reasons.push(if v5 {
                    ReasonCode::TopicFilterInvalid.as_u8()
                } else {
                    0x80
                });
                continue;
            };
            if v5 && filter.share_group.is_some() && options.no_local {
                return Err(self.violation(ReasonCode::ProtocolError));
            }
            if let Some(acl) = &self.broker.access().acl {
                if !acl.check_subscribe(&self.client_id, self.username.as_deref(), &filter.filter) {
                    tracing::debug!(filter = %raw, "SUBSCRIBE denied by the ACL");
                    reasons.push(if v5 {
                        ReasonCode::NotAuthorized.as_u8()
                    } else {
                        0x80
                    });
                    continue;
                }
            }
            let count = self.slot.subscriptions.lock().len();
            let exists = self.slot.subscriptions.lock().contains_key(&filter.raw);
            if !exists && count >= limits.max_subscriptions_per_client {
                reasons.push(if v5 {
                    ReasonCode::QuotaExceeded.as_u8()
                } else {
                    0x80
                });
                continue;
            }
            options.qos = options.qos.min(self.broker.maximum_qos());
            let granted = options.qos;
            self.broker.subscribe(
                &self.slot,
                Subscription {
                    filter,
                    options,
                    identifier,
                },
                now,
            );
            reasons.push(granted.as_u8());
        }
        self.send(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            reasons,
        }));
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let existed = self.broker.unsubscribe(&self.slot, f);
            reasons.push(
                if existed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
                .as_u8(),
            );
        }
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reasons,
        }));
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), Exit> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.session_expiry_was_zero && expiry != 0 {
                return Err(self.violation(ReasonCode::ProtocolError));
            }
            let capped = expiry.min(self.broker.config.limits.max_session_expiry);
            self.slot.control.lock().session_expiry = capped;
        }
        // Only a normal disconnection (0x00) discards the will (3.1.2.5, 3.14.4).
        Err(Exit::Disconnect {
            with_will: d.reason != ReasonCode::Success,
        })
    }

    /// Moves queued messages into the write buffer, within the inflight
    /// window and a per-wake-up byte budget.
    fn drain(&mut self) {
        let now = Instant::now();
        let mut state = self.slot.state.lock();
        let mut budget_used = false;
        let mut sent = [0u64; 3];
        let mut too_large = 0u64;
        // One allocation for this wake-up's batch, not a series of
        // doublings (and copies) from an idle connection's empty buffer.
        let wanted = state.pending_wire_bytes().min(WRITE_BATCH + 1024);
        self.wbuf.reserve(wanted);
        // Checked again at delivery: queued and in-flight messages may have
        // been routed under older rules (a reload).
        let access = self.broker.access();
        let acl = access.acl.as_ref();
        let mut denied = 0u64;
        loop {
            if self.wbuf.len() >= WRITE_BATCH {
                budget_used = true;
                break;
            }
            let outgoing = &mut self.outgoing;
            let wbuf = &mut self.wbuf;
            let (client_id, username) = (&self.client_id, self.username.as_deref());
            let Some((id, qos, encoded)) = state.next_delivery(now, self.window, |d, id| {
                let allowed = acl.is_none_or(|acl| {
                    acl.check_topic(client_id, username, &d.message.topic, Access::Read)
                });
                let encoded = if allowed {
                    outgoing.encode_delivery(d, id, now, wbuf).map(|fits| {
                        if fits {
                            Outgoing::Written
                        } else {
                            Outgoing::TooLarge
                        }
                    })
                } else {
                    Ok(Outgoing::Denied)
                };
                (id, d.qos, encoded)
            }) else {
                break;
            };
            match encoded {
                Ok(Outgoing::Written) => sent[usize::from(qos.as_u8())] += 1,
                Ok(skipped) => {
                    if skipped == Outgoing::TooLarge {
                        tracing::debug!(
                            "message larger than the client's maximum packet size dropped"
                        );
                        too_large += 1;
                    } else {
                        denied += 1;
                    }
                    if let Some(id) = id {
                        state.discard_inflight(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode PUBLISH"),
            }
        }
        if denied > 0 {
            tracing::debug!(denied, "queued messages the ACL does not allow dropped");
        }
        if budget_used && state.has_pending() {
            // Come back after writing; a full window waits for acks instead.
            self.slot.notify.notify_one();
        }
        self.slot.release_push_back(&state);
        drop(state);
        let stats = &self.broker.stats;
        for (counter, n) in stats.sent_by_qos.iter().zip(sent) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if too_large > 0 {
            stats
                .dropped_too_large
                .fetch_add(too_large, Ordering::Relaxed);
        }
        let ticket = self.slot.flush_journal(&self.store);
        self.wait_for(ticket);
    }

    /// After the socket is gone: will, session expiry, or nothing if the
    /// session moved to a new connection.
    fn finish(self, exit: Exit) {
        let slot = self.slot;
        let broker = self.broker;
        broker.stats.client_disconnected(self.version);
        slot.set_online(false);
        let (will, will_delay, expiry, generation) = {
            let mut c = slot.control.lock();
            c.kick = None;
            (c.will.take(), c.will_delay, c.session_expiry, c.generation)
        };
        match exit {
            // The store keeps the session as it was: a restart treats the
            // connection as lost then.
            Exit::Shutdown => return,
            Exit::TakenOver => {
                // The new connection opened before any will delay passed.
                if will_delay == 0 {
                    if let Some(w) = will {
                        broker.publish_will(&w, &slot);
                    }
                }
                return;
            }
            _ => {}
        }
        let send_will = !matches!(exit, Exit::Disconnect { with_will: false });
        let plan = after_disconnect(will.is_some(), send_will, will_delay, expiry);
        match (plan.will_after, will) {
            (Some(after), Some(w)) if after.is_zero() => {
                broker.publish_will(&w, &slot);
            }
            // Kept in the session (and on disk) until its delay has passed.
            (Some(_), Some(w)) => slot.control.lock().will = Some(w),
            _ => {}
        }
        slot.set_persistent(expiry != 0 && broker.store().is_enabled());
        if expiry != 0 {
            broker.persist_session(&slot, now_ms());
        }
        broker.schedule_offline(&slot, plan, generation);
    }
}

async fn flush<S: AsyncWrite>(
    writer: &mut WriteHalf<S>,
    wbuf: &mut BytesMut,
) -> std::io::Result<()> {
    let r = writer.write_all(wbuf).await;
    wbuf.clear();
    r?;
    // TLS and WebSocket buffer: push the batch out now.
    writer.flush().await
}

#[cfg(test)]
mod tests {
    /// An idle connection's memory is mostly its task's future, which
    /// holds a `Connection`, and its `SessionSlot`: values inline in them
    /// (v5 properties are ~400 bytes) multiply by every client of a fleet.
    #[test]
    fn per_connection_state_stays_small() {
        assert!(std::mem::size_of::<super::Connection>() <= 512);
        assert!(std::mem::size_of::<crate::broker::SessionSlot>() <= 512);
    }
}
