//! CONNECT's rules (3.1, 3.2) as pure decisions: the client id, session
//! expiry, the will topic, who may use an existing session, the keep
//! alive in force and the CONNACK's properties. Authentication, session
//! takeover and the store are the server's (I/O) part.

use bytestring::ByteString;

use crate::codec::{owned_string, ConnAck, Connect, Properties, ReasonCode};
use crate::session::{negotiate_keep_alive, NEVER};

use super::{because, because_of};

/// A refusing CONNACK with the words for `code`.
pub fn refusal(code: ReasonCode) -> ConnAck {
    ConnAck {
        session_present: false,
        code,
        properties: because(code),
    }
}

/// A refusal whose code alone would not say which rule refused.
pub fn refusal_because(code: ReasonCode, why: &'static str) -> ConnAck {
    ConnAck {
        session_present: false,
        code,
        properties: because_of(why),
    }
}

/// Whose client id a CONNECT uses (3.1.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdRule {
    /// The client's own (an owned copy: the CONNECT may be a megabyte).
    Given(ByteString),
    /// Empty: the server assigns one.
    Assign,
}

/// Checks CONNECT's client id. `reserved_prefix` marks the broker's own
/// sessions (bridges), which no client may take.
pub fn check_connect(connect: &Connect, reserved_prefix: &str) -> Result<ClientIdRule, ReasonCode> {
    if connect.client_id.is_empty() {
        // 3.1.1 assigns one only to a clean session (3.1.3.1).
        if !connect.protocol.is_v5() && !connect.clean_start {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        return Ok(ClientIdRule::Assign);
    }
    if connect.client_id.len() > 65_535 || connect.client_id.starts_with(reserved_prefix) {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    Ok(ClientIdRule::Given(owned_string(&connect.client_id)))
}

/// The session expiry asked for and the one granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpiry {
    pub requested: u32,
    pub granted: u32,
}

/// Session expiry: v3.1.1 clean session ends with the connection, a
/// persistent one never expires; v5 says it in CONNECT, capped by config.
pub fn session_expiry(connect: &Connect, max: u32) -> SessionExpiry {
    let requested = if connect.protocol.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        NEVER
    };
    SessionExpiry {
        requested,
        granted: requested.min(max),
    }
}

/// A will is a PUBLISH made later: its topic obeys the same limits, and
/// like a PUBLISH it may not write to `$SYS` (the broker's own topics). A
/// topic a PUBLISH would be refused is refused here, at CONNECT, where the
/// client can still be told: v5 0x90 for limits, 0x87 for `$SYS`; 3.1.1
/// has only "not authorized" (rc 5) for both.
pub fn check_will_topic(
    topic: &str,
    max_length: usize,
    max_levels: usize,
    v5: bool,
) -> Result<(), ReasonCode> {
    if topic.starts_with("$SYS/") || topic == "$SYS" {
        return Err(ReasonCode::NotAuthorized);
    }
    if topic.len() > max_length || topic.split('/').count() > max_levels {
        return Err(if v5 {
            ReasonCode::TopicNameInvalid
        } else {
            ReasonCode::NotAuthorized
        });
    }
    Ok(())
}

/// Whether the connecting identity may use the session under its client id.
#[derive(Debug, PartialEq, Eq)]
pub enum OwnerCheck {
    /// No session, or one created by this identity.
    Same,
    /// Another identity's session, and the operator lets it be taken over:
    /// its state is discarded first, never handed over.
    ForeignDiscard,
    /// Another identity's session: refused (v5 0x87, 3.1.1 rc 5).
    ForeignRefused,
}

/// A session belongs to the identity that created it. `existing`: the
/// session's owner and whether that is unknown (a session stored before
/// owners were kept); `any_identity`: the operator lets any identity take
/// over (discarding the state).
pub fn owner_check(
    existing: Option<(Option<&ByteString>, bool)>,
    identity: Option<&ByteString>,
    any_identity: bool,
) -> OwnerCheck {
    let Some((owner, unknown)) = existing else {
        return OwnerCheck::Same;
    };
    if unknown || owner == identity {
        OwnerCheck::Same
    } else if any_identity {
        OwnerCheck::ForeignDiscard
    } else {
        OwnerCheck::ForeignRefused
    }
}

/// The keep alive in force (3.1.2.10) and, for v5, the Server Keep Alive
/// to send when it differs from the request (3.2.2.3.14). 3.1.1 has no way
/// to say so: its request stands.
pub fn keep_alive(connect: &Connect, max: u16) -> (u16, Option<u16>) {
    if connect.protocol.is_v5() {
        negotiate_keep_alive(connect.keep_alive, max)
    } else {
        (connect.keep_alive, None)
    }
}

/// What the CONNACK's v5 properties say besides the request.
#[derive(Debug)]
pub struct ConnackInputs<'a> {
    pub client_id: &'a ByteString,
    /// The client sent no id: this one was assigned.
    pub assigned: bool,
    pub server_keep_alive: Option<u16>,
    pub expiry: SessionExpiry,
    pub receive_maximum: u16,
    pub max_packet_size: u32,
    pub topic_alias_maximum: u16,
    /// Prepended to the client id as Response Information, when asked.
    pub response_prefix: &'a str,
}

/// The v5 CONNACK properties that set the connection's limits (none for
/// 3.1.1).
pub fn connack_properties(connect: &Connect, i: &ConnackInputs) -> Properties {
    let mut properties = Properties::default();
    if !connect.protocol.is_v5() {
        return properties;
    }
    properties.assigned_client_identifier = i.assigned.then(|| i.client_id.clone());
    properties.server_keep_alive = i.server_keep_alive;
    if i.expiry.granted != i.expiry.requested {
        properties.session_expiry_interval = Some(i.expiry.granted);
    }
    if i.receive_maximum != u16::MAX {
        properties.receive_maximum = Some(i.receive_maximum);
    }
    properties.maximum_packet_size = Some(i.max_packet_size);
    if i.topic_alias_maximum > 0 {
        properties.topic_alias_maximum = Some(i.topic_alias_maximum);
    }
    if connect.properties.request_response_information == Some(1) {
        properties.response_information = Some(ByteString::from(format!(
            "{}{}",
            i.response_prefix, i.client_id
        )));
    }
    properties
}
