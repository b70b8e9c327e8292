//! DISCONNECT and AUTH (spec 3.14, 3.15): a reason code and properties, both
//! optional on the wire.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyScope};
use super::reason::ReasonCode;
use super::wire::{ProtocolVersion, Reader};

/// DISCONNECT in v5; in 3.1.1 it has no body and `reason` is `Success`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }

    pub fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
        let (reason, properties) =
            decode_reason_and_properties(r, version, PropertyScope::Disconnect)?;
        if !valid_disconnect_reason(reason) {
            return Err(DecodeError::Malformed(
                "reason code not allowed in DISCONNECT",
            ));
        }
        Ok(Disconnect { reason, properties })
    }

    pub fn body_len(&self, version: ProtocolVersion) -> usize {
        reason_and_properties_len(self.reason, &self.properties, version)
    }

    pub fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_reason_and_properties(self.reason, &self.properties, version, buf)
    }
}

/// The DISCONNECT reason codes of spec 3.14.2.1, plus 0x8C (bad
/// authentication method), which table 2.4 also allows in DISCONNECT for a
/// failed re-authentication. Anything else (0x01, 0x18, ...) is meaningless
/// here and would only confuse the session layer.
fn valid_disconnect_reason(reason: ReasonCode) -> bool {
    matches!(
        reason.as_u8(),
        0x00 | 0x04
            | 0x80..=0x83
            | 0x87
            | 0x89
            | 0x8B..=0x90
            | 0x93..=0xA2
    )
}

/// AUTH (v5 only): enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Auth {
    pub fn decode(r: &mut Reader) -> Result<Auth, DecodeError> {
        let (reason, properties) =
            decode_reason_and_properties(r, ProtocolVersion::V5, PropertyScope::Auth)?;
        if !matches!(
            reason,
            ReasonCode::Success | ReasonCode::ContinueAuthentication | ReasonCode::ReAuthenticate
        ) {
            return Err(DecodeError::Malformed("reason code not allowed in AUTH"));
        }
        Ok(Auth { reason, properties })
    }

    pub fn body_len(&self) -> usize {
        reason_and_properties_len(self.reason, &self.properties, ProtocolVersion::V5)
    }

    pub fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_reason_and_properties(self.reason, &self.properties, ProtocolVersion::V5, buf)
    }
}

fn decode_reason_and_properties(
    r: &mut Reader,
    version: ProtocolVersion,
    scope: PropertyScope,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if !version.is_v5() || r.is_empty() {
        if !r.is_empty() {
            return Err(DecodeError::Malformed("bytes in a 3.1.1 DISCONNECT"));
        }
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason =
        ReasonCode::from_u8(r.u8()?).ok_or(DecodeError::Malformed("unknown reason code"))?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, scope)?
    };
    if !r.is_empty() {
        return Err(DecodeError::Malformed("bytes after properties"));
    }
    Ok((reason, properties))
}

fn reason_and_properties_len(
    reason: ReasonCode,
    props: &Properties,
    version: ProtocolVersion,
) -> usize {
    if !version.is_v5() {
        return 0;
    }
    if props.is_empty() && reason == ReasonCode::Success {
        0
    } else {
        1 + props.wire_len()
    }
}

fn encode_reason_and_properties(
    reason: ReasonCode,
    props: &Properties,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !version.is_v5() {
        return Ok(());
    }
    if props.is_empty() && reason == ReasonCode::Success {
        return Ok(());
    }
    // With a reason code we always write the property length too (0 when
    // empty): the short form is legal, but clients such as rumqttc 0.25
    // cannot read it, and mosquitto writes the long form as well.
    buf.put_u8(reason.as_u8());
    props.encode(buf)
}
