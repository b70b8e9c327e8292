//! Codec failures. Each decode failure maps to the MQTT 5 reason code the
//! server must send before closing, so the connection task never has to guess.

use super::reason::ReasonCode;

/// Why bytes from a client could not become a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the packet grammar (0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well formed but breaks a protocol rule (0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The packet is bigger than the configured maximum (0x95). Detected from
    /// the fixed header, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// CONNECT named a protocol level we do not speak (CONNACK 0x01 / 0x84).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// A topic name that is not allowed in PUBLISH (0x90).
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(&'static str),
    /// A topic alias of 0 (0x94).
    #[error("invalid topic alias")]
    TopicAliasInvalid,
}

impl DecodeError {
    /// The reason code to send in a v5 DISCONNECT (or CONNACK) for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => ReasonCode::ProtocolError,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TopicNameInvalid,
            DecodeError::TopicAliasInvalid => ReasonCode::TopicAliasInvalid,
        }
    }
}

/// Why a packet could not be written. Never truncates silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("string or binary field of {0} bytes exceeds 65535")]
    FieldTooLong(usize),
    #[error("packet of {0} bytes exceeds the protocol maximum of 268435455")]
    PacketTooLarge(usize),
    #[error("variable byte integer {0} out of range")]
    VarIntOutOfRange(u32),
    #[error("packet needs a packet identifier")]
    MissingPacketId,
}
