//! Writing a property block: identifiers and values in one fixed order,
//! absent properties left out.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::id::*;
use super::Properties;
use crate::error::EncodeError;
use crate::wire::{put_binary, put_string, put_varint};

/// Writes one property (identifier, then value) when it is present.
struct PropertyWriter<'a> {
    buf: &'a mut BytesMut,
}

impl PropertyWriter<'_> {
    fn u8(&mut self, pid: u8, v: Option<u8>) {
        if let Some(v) = v {
            self.buf.put_u8(pid);
            self.buf.put_u8(v);
        }
    }

    fn u16(&mut self, pid: u8, v: Option<u16>) {
        if let Some(v) = v {
            self.buf.put_u8(pid);
            self.buf.put_u16(v);
        }
    }

    fn u32(&mut self, pid: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.buf.put_u8(pid);
            self.buf.put_u32(v);
        }
    }

    fn string(&mut self, pid: u8, v: &Option<ByteString>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.buf.put_u8(pid);
            put_string(self.buf, v)?;
        }
        Ok(())
    }

    fn binary(&mut self, pid: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.buf.put_u8(pid);
            put_binary(self.buf, v)?;
        }
        Ok(())
    }
}

impl Properties {
    /// Writes the property block with its length prefix.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self.encoded_len();
        put_varint(
            buf,
            u32::try_from(len).map_err(|_| EncodeError::PacketTooLarge(len))?,
        )?;
        let mut w = PropertyWriter { buf };
        w.u8(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        w.u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        w.string(CONTENT_TYPE, &self.content_type)?;
        w.string(RESPONSE_TOPIC, &self.response_topic)?;
        w.binary(CORRELATION_DATA, &self.correlation_data)?;
        for v in &self.subscription_identifiers {
            w.buf.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(w.buf, *v)?;
        }
        w.u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        w.string(ASSIGNED_CLIENT_IDENTIFIER, &self.assigned_client_identifier)?;
        w.u16(SERVER_KEEP_ALIVE, self.server_keep_alive);
        w.string(AUTHENTICATION_METHOD, &self.authentication_method)?;
        w.binary(AUTHENTICATION_DATA, &self.authentication_data)?;
        w.u8(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        w.u32(WILL_DELAY_INTERVAL, self.will_delay_interval);
        w.u8(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        w.string(RESPONSE_INFORMATION, &self.response_information)?;
        w.string(SERVER_REFERENCE, &self.server_reference)?;
        w.string(REASON_STRING, &self.reason_string)?;
        w.u16(RECEIVE_MAXIMUM, self.receive_maximum);
        w.u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        w.u16(TOPIC_ALIAS, self.topic_alias);
        w.u8(MAXIMUM_QOS, self.maximum_qos);
        w.u8(RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            w.buf.put_u8(USER_PROPERTY);
            put_string(w.buf, k)?;
            put_string(w.buf, v)?;
        }
        w.u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        w.u8(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        w.u8(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        w.u8(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        Ok(())
    }
}
