//! Reading a property block: each property at most once (except the
//! repeatable ones), only where its packet allows it (spec 2.2.2.2), with
//! the value checks the spec asks for.

use super::id::*;
use super::{allowed, Properties, PropertyScope};
use crate::error::DecodeError;
use crate::wire::Reader;

fn set_once<T>(slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears twice"));
    }
    *slot = Some(v);
    Ok(())
}

fn zero_or_one(v: u8) -> Result<u8, DecodeError> {
    if v > 1 {
        return Err(DecodeError::Protocol("property value must be 0 or 1"));
    }
    Ok(v)
}

impl Properties {
    /// Reads a property block (length prefix included).
    pub fn decode(r: &mut Reader, scope: PropertyScope) -> Result<Properties, DecodeError> {
        let len = r.varint()? as usize;
        let mut r = Reader::new(r.take(len)?);
        let mut p = Properties::default();
        while !r.is_empty() {
            // Property identifiers are variable byte integers; all defined ones
            // fit in one byte, so a multi-byte id is unknown and malformed.
            let pid = r.varint()?;
            let pid = u8::try_from(pid).map_err(|_| DecodeError::Malformed("unknown property"))?;
            if !allowed(pid, scope) {
                return Err(DecodeError::Malformed(
                    "property not allowed in this packet",
                ));
            }
            if !p.read_message_property(pid, &mut r, scope)? {
                p.read_connection_property(pid, &mut r)?;
            }
        }
        Ok(p)
    }

    /// The properties a message carries (PUBLISH, will) and the user
    /// properties every packet may carry; false if `pid` is none of them.
    fn read_message_property(
        &mut self,
        pid: u8,
        r: &mut Reader,
        scope: PropertyScope,
    ) -> Result<bool, DecodeError> {
        let p = self;
        match pid {
            PAYLOAD_FORMAT_INDICATOR => {
                set_once(&mut p.payload_format_indicator, zero_or_one(r.u8()?)?)?
            }
            MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, r.u32()?)?,
            CONTENT_TYPE => set_once(&mut p.content_type, r.string()?)?,
            RESPONSE_TOPIC => {
                let t = r.string()?;
                if t.is_empty() || t.contains(['+', '#']) {
                    return Err(DecodeError::Protocol("response topic must be a topic name"));
                }
                set_once(&mut p.response_topic, t)?
            }
            CORRELATION_DATA => set_once(&mut p.correlation_data, r.binary()?)?,
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(DecodeError::Protocol("subscription identifier 0"));
                }
                if scope == PropertyScope::Subscribe && !p.subscription_identifiers.is_empty() {
                    return Err(DecodeError::Protocol("property appears twice"));
                }
                p.subscription_identifiers.push(v);
            }
            TOPIC_ALIAS => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(DecodeError::TopicAliasInvalid);
                }
                set_once(&mut p.topic_alias, v)?
            }
            USER_PROPERTY => {
                let k = r.string()?;
                let v = r.string()?;
                p.user_properties.push((k, v));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The properties of connecting, acknowledging and closing (CONNECT,
    /// CONNACK, DISCONNECT, AUTH, the acks' reason string).
    fn read_connection_property(&mut self, pid: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let p = self;
        match pid {
            SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, r.u32()?)?,
            ASSIGNED_CLIENT_IDENTIFIER => set_once(&mut p.assigned_client_identifier, r.string()?)?,
            SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, r.u16()?)?,
            AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r.string()?)?,
            AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r.binary()?)?,
            REQUEST_PROBLEM_INFORMATION => {
                set_once(&mut p.request_problem_information, zero_or_one(r.u8()?)?)?
            }
            WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, r.u32()?)?,
            REQUEST_RESPONSE_INFORMATION => {
                set_once(&mut p.request_response_information, zero_or_one(r.u8()?)?)?
            }
            RESPONSE_INFORMATION => set_once(&mut p.response_information, r.string()?)?,
            SERVER_REFERENCE => set_once(&mut p.server_reference, r.string()?)?,
            REASON_STRING => set_once(&mut p.reason_string, r.string()?)?,
            RECEIVE_MAXIMUM => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(DecodeError::Protocol("receive maximum 0"));
                }
                set_once(&mut p.receive_maximum, v)?
            }
            TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r.u16()?)?,
            MAXIMUM_QOS => set_once(&mut p.maximum_qos, zero_or_one(r.u8()?)?)?,
            RETAIN_AVAILABLE => set_once(&mut p.retain_available, zero_or_one(r.u8()?)?)?,
            MAXIMUM_PACKET_SIZE => {
                let v = r.u32()?;
                if v == 0 {
                    return Err(DecodeError::Protocol("maximum packet size 0"));
                }
                set_once(&mut p.maximum_packet_size, v)?
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => set_once(
                &mut p.wildcard_subscription_available,
                zero_or_one(r.u8()?)?,
            )?,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_once(
                &mut p.subscription_identifier_available,
                zero_or_one(r.u8()?)?,
            )?,
            SHARED_SUBSCRIPTION_AVAILABLE => {
                set_once(&mut p.shared_subscription_available, zero_or_one(r.u8()?)?)?
            }
            _ => return Err(DecodeError::Malformed("unknown property")),
        }
        Ok(())
    }
}
