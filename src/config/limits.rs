//! The `[limits]` table: bounds against misbehaving or overloaded clients.

use serde::Deserialize;

use super::validate::Problem;
use crate::session::QueueFullPolicy;

/// Limits against misbehaving or overloaded clients. Every one has a safe
/// default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet accepted from a client, fixed header included.
    pub max_packet_size: u32,
    /// Simultaneous client connections.
    pub max_connections: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight_messages: u16,
    /// QoS 2 messages a client may have unreleased towards us (v5 Receive Maximum).
    pub receive_maximum: u16,
    /// Messages queued per session (offline, or beyond the inflight window).
    pub max_queued_messages: usize,
    /// Payload bytes queued per session.
    pub max_queued_bytes: usize,
    pub queue_full_policy: QueueFullPolicy,
    /// Levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Bytes in a topic name or filter.
    pub max_topic_length: usize,
    /// Largest keep alive accepted; clients asking for more (or 0) are told
    /// this value through v5 Server Keep Alive. 0 = no limit.
    pub max_keep_alive: u16,
    /// Cap on the v5 session expiry interval, seconds.
    pub max_session_expiry: u32,
    /// Topic aliases a v5 client may use towards us.
    pub topic_alias_maximum: u16,
    /// Seconds a new socket has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds one write to a client may wait for the client to read; a
    /// client that stops reading is disconnected after it (and counted).
    pub write_timeout_secs: u64,
    /// Milliseconds a plain-TCP connection with nothing to do stays a task
    /// before it is parked in the idle table (a small record waiting on
    /// its socket, far cheaper than a task). 0 = never park.
    pub park_after_idle_ms: u64,
    /// Subscriptions per client.
    pub max_subscriptions_per_client: usize,
    /// PUBLISH packets per second one client may send; beyond it the broker
    /// stops reading from that client until it is back under (back-pressure,
    /// nothing is dropped). 0 = no limit.
    pub publish_rate_messages: u32,
    /// Payload bytes per second one client may publish; 0 = no limit.
    pub publish_rate_bytes: u64,
    /// Bad passwords from one address (IPv6: one /64) within
    /// `auth_failure_window_secs` before its password logins are refused
    /// until the window ends (v5 0x9F, 3.1.1 rc 3). 0 = no throttle.
    pub max_auth_failures: u32,
    pub auth_failure_window_secs: u64,
    /// Largest CONNECT accepted, checked from the fixed header before any
    /// of it is buffered: a client that has not authenticated yet gets
    /// less than `max_packet_size` (the smaller of the two applies). The
    /// default, 320 KiB, holds every field of a CONNECT at its protocol
    /// limit (client id, will topic and payload, user name and password of
    /// 65,535 bytes each): every CONNECT the protocol allows is accepted,
    /// and `max_opening_bytes` bounds what unauthenticated clients hold
    /// together.
    pub max_connect_packet_size: u32,
    /// Bytes all connections still opening (before CONNACK) may buffer
    /// together; beyond it their reads wait (within the connect timeout).
    pub max_opening_bytes: usize,
    /// Bytes of retained messages (topic, payload, properties and a
    /// per-message overhead) across the broker; a retained PUBLISH that
    /// would go beyond is not retained (v5 QoS 1/2: refused with 0x97).
    pub max_retained_bytes: usize,
    /// Sessions (online and offline) across the broker; a CONNECT that
    /// would create one more is refused (v5 0x97, 3.1.1 rc 3).
    pub max_sessions: usize,
    /// Payload and topic bytes queued across all sessions; deliveries
    /// beyond it are dropped and counted (a bridge's QoS 1/2 deliveries
    /// are charged and kept: a bridge's session never drops them).
    pub max_total_queued_bytes: usize,
}

impl Limits {
    /// The largest CONNECT accepted: the smaller of the two packet limits.
    pub fn connect_packet_limit(&self) -> usize {
        self.max_connect_packet_size.min(self.max_packet_size) as usize
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1 << 20,
            max_connections: 100_000,
            max_inflight_messages: 256,
            receive_maximum: 1024,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 << 20,
            queue_full_policy: QueueFullPolicy::DropOldest,
            max_topic_levels: 32,
            max_topic_length: 4096,
            max_keep_alive: 0,
            max_session_expiry: u32::MAX,
            topic_alias_maximum: 64,
            connect_timeout_secs: 10,
            write_timeout_secs: 30,
            park_after_idle_ms: 1000,
            max_subscriptions_per_client: 1000,
            publish_rate_messages: 0,
            publish_rate_bytes: 0,
            max_auth_failures: 10,
            auth_failure_window_secs: 60,
            max_connect_packet_size: 320 << 10,
            max_opening_bytes: 64 << 20,
            max_retained_bytes: 256 << 20,
            max_sessions: 1_000_000,
            max_total_queued_bytes: 1 << 30,
        }
    }
}

impl Limits {
    /// The packet size bound (checked first: the largest packet frames
    /// every other check).
    pub(super) fn validate_packet_size(&self) -> Result<(), Problem> {
        if self.max_packet_size < 64 || self.max_packet_size > crate::codec::MAX_VARINT + 5 {
            return Err(Problem::new(
                "limits.max_packet_size",
                "must be between 64 and 268435460",
            ));
        }
        Ok(())
    }

    /// The per-client and global bounds, except the packet size and the
    /// connection count, which `Config::validate` checks in their own
    /// places (the order in which problems are reported stays as it was).
    pub(super) fn validate(&self) -> Result<(), Problem> {
        let at_least_one = |key: &'static str, zero: bool| {
            if zero {
                Err(Problem::new(key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        at_least_one(
            "limits.max_inflight_messages",
            self.max_inflight_messages == 0,
        )?;
        at_least_one("limits.receive_maximum", self.receive_maximum == 0)?;
        at_least_one("limits.max_queued_messages", self.max_queued_messages == 0)?;
        at_least_one("limits.max_topic_levels", self.max_topic_levels == 0)?;
        if self.max_topic_length == 0 || self.max_topic_length > 65_535 {
            return Err(Problem::new(
                "limits.max_topic_length",
                "must be between 1 and 65535",
            ));
        }
        at_least_one(
            "limits.auth_failure_window_secs",
            self.auth_failure_window_secs == 0,
        )?;
        at_least_one(
            "limits.connect_timeout_secs",
            self.connect_timeout_secs == 0,
        )?;
        at_least_one("limits.write_timeout_secs", self.write_timeout_secs == 0)?;
        if self.max_connect_packet_size < 64 {
            return Err(Problem::new(
                "limits.max_connect_packet_size",
                "must be at least 64",
            ));
        }
        if self.max_opening_bytes < self.connect_packet_limit() {
            return Err(Problem::new(
                "limits.max_opening_bytes",
                "must be at least the largest CONNECT accepted (limits.max_connect_packet_size)",
            ));
        }
        at_least_one("limits.max_sessions", self.max_sessions == 0)
    }

    /// Checked after the listeners, bridges and store, where it always was.
    pub(super) fn validate_connections(&self) -> Result<(), Problem> {
        if self.max_connections == 0 {
            return Err(Problem::new("limits.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}
