//! The connection machine driven by tests: a host double in memory, time
//! as `Instant` values passed in (no sleeps), packets in and out as the
//! client would see them.

mod connect;
mod ending;
mod keep_alive;
mod publish;
mod subscribe;

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::{ConnectionHost, Count, Machine, ProtocolLimits, Routed, Setup};
use crate::auth::Acl;
use crate::codec::{
    decode_packet, Disconnect, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, SubscriptionOptions,
};
use crate::session::{Message, QueueLimits, SessionState};
use crate::topic::TopicFilter;

/// The broker as the machine sees it, in memory.
pub struct Host {
    pub limits: ProtocolLimits,
    /// What the session's record can still take (see
    /// `ConnectionHost::subscription_room`).
    pub subscription_room: usize,
    pub state: RefCell<SessionState>,
    pub acl: Option<Acl>,
    pub counts: RefCell<Vec<(Count, u64)>>,
    /// Messages routed, QoS 0 included.
    pub routed: Vec<Message>,
    /// What routing a QoS 1/2 message answers.
    pub answer: Routed,
    pub subscriptions: HashMap<ByteString, (TopicFilter, SubscriptionOptions)>,
    pub session_expiry: Option<u32>,
    pub journal_flushes: usize,
    /// The journal entries each `route` found, which the real host writes
    /// in the message's commit.
    pub routed_with_journal: Vec<usize>,
    /// SUBSCRIBE/UNSUBSCRIBE packets carried out (session record writes).
    pub subscription_writes: usize,
    pub drained: Cell<usize>,
}

impl Host {
    pub fn new() -> Host {
        Host {
            subscription_room: usize::MAX,
            limits: ProtocolLimits {
                max_packet_size: 1 << 20,
                max_topic_length: 64,
                max_topic_levels: 4,
                topic_alias_maximum: 2,
                receive_maximum: 2,
                max_subscriptions_per_client: 2,
                max_session_expiry: 3600,
                maximum_qos: QoS::ExactlyOnce,
            },
            state: RefCell::new(SessionState::new(QueueLimits::default())),
            acl: None,
            counts: RefCell::new(Vec::new()),
            routed: Vec::new(),
            answer: Routed {
                matched: 1,
                saturated: false,
                refused: false,
            },
            subscriptions: HashMap::new(),
            session_expiry: None,
            journal_flushes: 0,
            routed_with_journal: Vec::new(),
            subscription_writes: 0,
            drained: Cell::new(0),
        }
    }

    pub fn with_acl(mut self, text: &str) -> Host {
        match Acl::parse(text, "acl.conf") {
            Ok(acl) => self.acl = Some(acl),
            Err(e) => panic!("{e}"),
        }
        self
    }

    pub fn counted(&self, counter: Count) -> u64 {
        self.counts
            .borrow()
            .iter()
            .filter(|(c, _)| *c == counter)
            .map(|(_, n)| n)
            .sum()
    }
}

impl ConnectionHost for Host {
    type State<'a> = RefMut<'a, SessionState>;

    fn limits(&self) -> ProtocolLimits {
        self.limits
    }

    fn state(&self) -> RefMut<'_, SessionState> {
        self.state.borrow_mut()
    }

    fn with_acl<R>(&self, f: impl FnOnce(Option<&Acl>) -> R) -> R {
        f(self.acl.as_ref())
    }

    fn count(&self, counter: Count, n: u64) {
        self.counts.borrow_mut().push((counter, n));
    }

    fn now_ms(&self) -> u64 {
        1_000
    }

    fn route_at_most_once(&mut self, message: Message) {
        self.routed.push(message);
    }

    fn route(&mut self, message: Message, _refuse_if_saturated: bool) -> Routed {
        let (journal, _) = self.state.borrow_mut().take_journal();
        self.routed_with_journal.push(journal.len());
        if !self.answer.refused {
            self.routed.push(message);
        }
        self.answer
    }

    fn flush_journal(&mut self) {
        self.state.borrow_mut().take_journal();
        self.journal_flushes += 1;
    }

    fn drained(&self, _state: &SessionState, _more: bool) {
        self.drained.set(self.drained.get() + 1);
    }

    fn subscriptions(&self, raw: &ByteString) -> (usize, bool) {
        (
            self.subscriptions.len(),
            self.subscriptions.contains_key(raw),
        )
    }

    fn subscription_room(&self) -> usize {
        self.subscription_room
    }

    fn subscribe(
        &mut self,
        filter: TopicFilter,
        options: SubscriptionOptions,
        _identifier: Option<u32>,
        _now: Instant,
    ) {
        self.subscriptions
            .insert(filter.raw.clone(), (filter, options));
    }

    fn unsubscribe(&mut self, raw: &ByteString) -> bool {
        self.subscriptions.remove(raw).is_some()
    }

    fn subscriptions_changed(&mut self) {
        self.subscription_writes += 1;
    }

    fn set_session_expiry(&mut self, seconds: u32) {
        self.session_expiry = Some(seconds);
    }
}

pub fn setup(version: ProtocolVersion, keep_alive: u16) -> Setup {
    Setup {
        version,
        client_id: ByteString::from_static("c1"),
        username: None,
        keep_alive,
        window: 10,
        client_max_packet: usize::MAX,
        client_alias_max: 0,
        rate_messages: 0,
        rate_bytes: 0,
        session_expiry_was_zero: false,
        problem_info: true,
    }
}

pub fn machine(version: ProtocolVersion, now: Instant) -> Machine {
    Machine::new(setup(version, 0), now)
}

pub fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap_or_else(|| panic!("packet id {n}"))
}

pub fn publish(topic: &str, qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: packet_id.map(id),
        properties: Properties::default(),
        payload: Bytes::from_static(b"payload"),
    }
}

/// The packets the machine queued for the client, taken out.
pub fn sent(m: &mut Machine) -> Vec<Packet> {
    let version = m.version();
    let out = m.output();
    let mut packets = Vec::new();
    let mut buf = BytesMut::from(&out[..]);
    out.clear();
    while let Ok(Some(p)) = decode_packet(&mut buf, Some(version), usize::MAX) {
        packets.push(p);
    }
    assert!(buf.is_empty(), "undecodable output left: {buf:?}");
    packets
}

/// The reason of the DISCONNECT the machine sent last.
pub fn disconnect_reason(m: &mut Machine) -> Option<ReasonCode> {
    sent(m).into_iter().rev().find_map(|p| match p {
        Packet::Disconnect(Disconnect { reason, .. }) => Some(reason),
        _ => None,
    })
}
