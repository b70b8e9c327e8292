//! One client connection's protocol, without I/O (quinn-proto's shape).
//!
//! The machine takes what arrived (bytes, with `now`), the passing of time
//! (`handle_timeout`) and the session's queue (`drain`), and answers with
//! bytes to write (`output`), the next deadline (`poll_timeout`) and, when
//! the connection must end, an [`Exit`] with the DISCONNECT already
//! queued. What it needs of the broker goes through [`ConnectionHost`].
//! The async task in `server::connection` only moves bytes and timers.

mod connect;
mod deliver;
mod exit;
mod host;
mod outgoing;
mod publish;
mod rate;
mod reason_text;
mod subscribe;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;

use crate::codec::{
    decode_packet, encode_packet, ConnAck, Connect, Disconnect, Packet, ReasonCode,
};
use crate::session::KeepAlive;

pub use connect::{
    check_connect, check_will_topic, connack_properties, keep_alive, owner_check, refusal,
    refusal_because, session_expiry, ClientIdRule, ConnackInputs, OwnerCheck, SessionExpiry,
};
pub use exit::{ending, Ending, Exit};
pub use host::{ConnectionHost, Count, ProtocolLimits, Routed};
pub use outgoing::OutgoingLimits;
pub use rate::PublishRate;
pub use reason_text::{
    because, because_of, keep_reason_if_allowed, reason_text, wants_problem_information,
};

/// What a connection knows once CONNECT is accepted.
#[derive(Debug)]
pub struct Setup {
    pub version: crate::codec::ProtocolVersion,
    pub client_id: ByteString,
    /// Authenticated user name (or certificate identity), for the ACL.
    pub username: Option<ByteString>,
    /// Keep alive in force, in seconds (0 = off).
    pub keep_alive: u16,
    /// Outgoing QoS 1/2 window: min(client's Receive Maximum, our limit).
    pub window: usize,
    /// The client's Maximum Packet Size.
    pub client_max_packet: usize,
    /// Topic aliases the client accepts from us.
    pub client_alias_max: u16,
    /// Publish rate limits (0 = none).
    pub rate_messages: u32,
    pub rate_bytes: u64,
    /// CONNECT asked for session expiry 0: DISCONNECT may not raise it.
    pub session_expiry_was_zero: bool,
    /// The client asked for problem information (3.1.2.11.7).
    pub problem_info: bool,
}

impl Setup {
    /// The setup for an accepted CONNECT; no publish rate limit.
    pub fn from_connect(
        connect: &Connect,
        client_id: ByteString,
        username: Option<ByteString>,
        keep_alive: u16,
        session_expiry_was_zero: bool,
        max_inflight: u16,
    ) -> Setup {
        let client_receive_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        Setup {
            version: connect.protocol,
            client_id,
            username,
            keep_alive,
            window: usize::from(client_receive_max.min(max_inflight)),
            client_max_packet: connect
                .properties
                .maximum_packet_size
                .map_or(usize::MAX, |v| v as usize),
            client_alias_max: connect.properties.topic_alias_maximum.unwrap_or(0),
            rate_messages: 0,
            rate_bytes: 0,
            session_expiry_was_zero,
            problem_info: wants_problem_information(connect),
        }
    }
}

/// The per-connection protocol state.
#[derive(Debug)]
pub struct Machine {
    version: crate::codec::ProtocolVersion,
    client_id: ByteString,
    username: Option<ByteString>,
    keep_alive: KeepAlive,
    rate: Option<PublishRate>,
    /// Reading is paused until then: the client is over its publish rate,
    /// or a subscriber asked publishers to slow down.
    paused_until: Option<Instant>,
    outgoing: OutgoingLimits,
    /// Topic aliases the client set up towards us.
    incoming_aliases: HashMap<u16, ByteString>,
    window: usize,
    session_expiry_was_zero: bool,
    problem_info: bool,
    /// Encoded packets waiting to be written. Allocated by the first
    /// packet, and let go again when idle (`free_idle_output`).
    out: BytesMut,
}

impl Machine {
    pub fn new(setup: Setup, now: Instant) -> Machine {
        Machine {
            version: setup.version,
            client_id: setup.client_id,
            username: setup.username,
            keep_alive: KeepAlive::new(setup.keep_alive, now),
            rate: PublishRate::new(setup.rate_messages, setup.rate_bytes, now),
            paused_until: None,
            outgoing: OutgoingLimits::new(
                setup.version,
                setup.client_max_packet,
                setup.client_alias_max,
            ),
            incoming_aliases: HashMap::new(),
            window: setup.window,
            session_expiry_was_zero: setup.session_expiry_was_zero,
            problem_info: setup.problem_info,
            out: BytesMut::new(),
        }
    }

    pub fn version(&self) -> crate::codec::ProtocolVersion {
        self.version
    }

    /// Whether there are bytes to write.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The bytes to write; the caller writes and clears them.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Lets go of an empty output buffer: idle connections (most of a
    /// fleet) hold none.
    pub fn free_idle_output(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = BytesMut::new();
        }
    }

    /// Whether reading is paused (publish rate, back-pressure).
    pub fn is_paused(&self) -> bool {
        self.paused_until.is_some()
    }

    /// The next deadline: keep alive, or the end of a reading pause.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.keep_alive.deadline(), self.paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time has passed: a pause may end (the caller then processes what
    /// it buffered), and a keep alive may have expired (3.1.2.10): then
    /// the connection ends with DISCONNECT 0x8D.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Exit> {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
        }
        if self.keep_alive.expired(now) {
            tracing::debug!("keep alive timeout");
            return Some(self.violation(ReasonCode::KeepAliveTimeout));
        }
        None
    }

    /// The CONNACK, then what a resumed session owes (4.4): in-flight
    /// messages again, those this identity may still read (the ACL may
    /// have changed meanwhile) and that fit the client's limit.
    pub fn start<H: ConnectionHost>(&mut self, connack: ConnAck, now: Instant, host: &mut H) {
        self.send(Packet::ConnAck(connack));
        let denied = Cell::new(0);
        let resend =
            host.with_acl(|acl| host.state().resend(now, &self.sendable_again(acl, &denied)));
        if denied.get() > 0 {
            tracing::info!(
                denied = denied.get(),
                "in-flight messages the ACL no longer allows not sent again"
            );
        }
        for p in resend {
            self.send(p);
        }
        // A flow completed instead of sent again wrote a record (released)
        // that must be durable before the PUBREL leaves: submitted now,
        // not only with the next packet or delivery pass.
        host.flush_journal();
    }

    /// Bytes arrived from the client (any counts for keep alive): handles
    /// every complete packet in `input`.
    pub fn receive<H: ConnectionHost>(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        self.keep_alive.seen(now);
        self.process(input, now, host)
    }

    /// Decodes and handles every complete packet in `input`, unless
    /// reading is paused (the rest then waits in the buffer).
    pub fn process<H: ConnectionHost>(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        let max = host.limits().max_packet_size as usize;
        loop {
            if self.paused_until.is_some() {
                return Ok(());
            }
            match decode_packet(input, Some(self.version), max) {
                Ok(Some(p)) => {
                    let result = self.handle(p, now, host);
                    host.flush_journal();
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

    /// Handles one packet from the client.
    pub fn handle<H: ConnectionHost>(
        &mut self,
        packet: Packet,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, now, host),
            Packet::PubAck(a) => {
                host.state().on_puback(a.packet_id);
                Ok(())
            }
            Packet::PubRec(a) => {
                let rel = host.state().on_pubrec(a.packet_id, a.reason);
                if let Some(rel) = rel {
                    self.send(Packet::PubRel(rel));
                }
                Ok(())
            }
            Packet::PubRel(a) => {
                let comp = host.state().on_pubrel(a.packet_id);
                self.send(Packet::PubComp(comp));
                Ok(())
            }
            Packet::PubComp(a) => {
                host.state().on_pubcomp(a.packet_id);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s, now, host),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u, host);
                Ok(())
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(d, host)),
            Packet::Auth(_) => Err(self.violation(ReasonCode::ProtocolError)),
            other => {
                tracing::debug!(packet = other.name(), "client sent a server-only packet");
                Err(self.violation(ReasonCode::ProtocolError))
            }
        }
    }

    /// DISCONNECT from the client: a v5 session expiry may change, unless
    /// CONNECT set it to 0 (3.14.2.2.2).
    fn on_disconnect<H: ConnectionHost>(&mut self, d: Disconnect, host: &mut H) -> Exit {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.session_expiry_was_zero && expiry != 0 {
                return self.violation(ReasonCode::ProtocolError);
            }
            host.set_session_expiry(expiry.min(host.limits().max_session_expiry));
        }
        // Only a normal disconnection (0x00) discards the will (3.1.2.5, 3.14.4).
        Exit::Disconnect {
            with_will: d.reason != ReasonCode::Success,
        }
    }

    /// Told to leave (takeover, admin kick): DISCONNECT with `reason`.
    pub fn kicked(&mut self, reason: ReasonCode) -> Exit {
        self.send_disconnect(reason);
        Exit::kicked(reason)
    }

    /// The server shuts down: DISCONNECT 0x8B.
    pub fn shutting_down(&mut self) -> Exit {
        self.send_disconnect(ReasonCode::ServerShuttingDown);
        Exit::Shutdown
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

    fn send(&mut self, packet: Packet) {
        if !self.outgoing.fits(&packet) {
            tracing::debug!(
                packet = packet.name(),
                "packet exceeds the client's maximum size, not sent"
            );
            return;
        }
        if let Err(e) = encode_packet(&packet, self.version, &mut self.out) {
            tracing::warn!(packet = packet.name(), error = %e, "could not encode packet");
        }
    }
}
