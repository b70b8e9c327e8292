//! v5 Reason Strings (property 0x1F) on the packets that end a connection:
//! refusing CONNACKs and the server's DISCONNECTs. A reason code says what
//! kind of failure; the string says it in words, for the client's log.
//!
//! Sent only when the client asked for problem information (CONNECT
//! property 0x17, absent = 1, 3.1.2.11.7). With 0 the spec still allows a
//! Reason String on CONNACK and DISCONNECT (it forbids one on any packet
//! but PUBLISH, CONNACK and DISCONNECT, MQTT-3.1.2-29); we take the 0 as
//! "no thanks" there too. And never past the client's Maximum Packet Size
//! (3.1.2.11.4): without the string the packet fits, so it still goes.

use bytestring::ByteString;

use super::outgoing::OutgoingLimits;
use crate::codec::{Connect, Packet, Properties, ReasonCode};

/// Words for a reason code the server ends a connection with; `None` for
/// the codes it never sends there.
pub fn reason_text(code: ReasonCode) -> Option<&'static str> {
    Some(match code {
        ReasonCode::MalformedPacket => "malformed packet",
        ReasonCode::ProtocolError => "protocol error",
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ClientIdentifierNotValid => "client identifier not allowed",
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::NotAuthorized => "not authorized",
        ReasonCode::ServerBusy => "server busy, try again later",
        ReasonCode::BadAuthenticationMethod => "enhanced authentication is not supported",
        ReasonCode::ServerShuttingDown => "server shutting down",
        ReasonCode::KeepAliveTimeout => "no packet within 1.5 times the keep alive",
        ReasonCode::SessionTakenOver => "another connection took over this client id",
        ReasonCode::TopicNameInvalid => "topic name invalid or over the server's limits",
        ReasonCode::ReceiveMaximumExceeded => {
            "more QoS 1/2 messages in flight than the receive maximum"
        }
        ReasonCode::TopicAliasInvalid => "topic alias invalid",
        ReasonCode::PacketTooLarge => "packet larger than the server's maximum packet size",
        ReasonCode::QuotaExceeded => "server session quota reached",
        ReasonCode::AdministrativeAction => "disconnected by an administrator",
        ReasonCode::ConnectionRateExceeded => "too many failed logins from this address",
        _ => return None,
    })
}

/// Properties carrying the words for `code` as Reason String.
pub fn because(code: ReasonCode) -> Properties {
    Properties {
        reason_string: reason_text(code).map(ByteString::from_static),
        ..Properties::default()
    }
}

/// Properties carrying `text` as Reason String, where the code alone
/// would say too little (which rule refused, say).
pub fn because_of(text: &'static str) -> Properties {
    Properties {
        reason_string: Some(ByteString::from_static(text)),
        ..Properties::default()
    }
}

/// Whether the client asked for problem information (absent means yes).
pub fn wants_problem_information(connect: &Connect) -> bool {
    connect.properties.request_problem_information != Some(0)
}

/// Drops the Reason String of a CONNACK or DISCONNECT unless the client
/// wants it and the packet fits the client's limit with it.
pub fn keep_reason_if_allowed(packet: &mut Packet, wanted: bool, limits: &OutgoingLimits) {
    if !wanted || !limits.fits(packet) {
        if let Some(slot) = reason_slot(packet) {
            *slot = None;
        }
    }
}

fn reason_slot(packet: &mut Packet) -> Option<&mut Option<ByteString>> {
    match packet {
        Packet::ConnAck(a) => Some(&mut a.properties.reason_string),
        Packet::Disconnect(d) => Some(&mut d.properties.reason_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Disconnect, ProtocolVersion};

    fn disconnect() -> Packet {
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::ReceiveMaximumExceeded,
            properties: because(ReasonCode::ReceiveMaximumExceeded),
        })
    }

    fn reason_string(p: &Packet) -> Option<&str> {
        match p {
            Packet::Disconnect(d) => d.properties.reason_string.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn the_string_goes_only_where_wanted_and_within_the_maximum_packet_size() {
        let why = reason_text(ReasonCode::ReceiveMaximumExceeded);
        let roomy = OutgoingLimits::new(ProtocolVersion::V5, usize::MAX, 0);
        let mut p = disconnect();
        keep_reason_if_allowed(&mut p, true, &roomy);
        assert_eq!(reason_string(&p), why);

        let mut p = disconnect();
        keep_reason_if_allowed(&mut p, false, &roomy);
        assert_eq!(reason_string(&p), None);

        // DISCONNECT with a reason code and no properties is 4 bytes.
        let tight = OutgoingLimits::new(ProtocolVersion::V5, 10, 0);
        let mut p = disconnect();
        keep_reason_if_allowed(&mut p, true, &tight);
        assert_eq!(reason_string(&p), None);
        assert!(tight.fits(&p));
    }
}
