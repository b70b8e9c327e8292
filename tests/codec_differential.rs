//! Differential tests of Sluice's codec against two independent MQTT codecs:
//! `mqttbytes` (its v4 and v5 modules) and `rmqtt-codec` (v3 and v5).
//!
//! Only valid packets are exchanged. Each case goes both ways: encoded by us
//! and decoded by the other library, then encoded by the other library and
//! decoded by us. Either way the result is mapped into our packet model and
//! compared field by field, so a disagreement on the wire shows up as a
//! named field that differs.
//!
//! The other libraries have quirks of their own; where a case steers around
//! one, a comment says which.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use sluice::codec::*;

const MAX: usize = 1 << 20;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("test packet ids are non-zero")
}

fn ours_encode(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    let n = encode_packet(p, v, &mut buf).expect("our encoder accepts the test packet");
    assert_eq!(n, buf.len());
    buf
}

/// Decodes exactly one packet with our codec; CONNECT is decoded as the first
/// packet of a connection.
#[track_caller]
fn ours_decode(bytes: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let version = if bytes.first().is_some_and(|b| b >> 4 == 1) {
        None
    } else {
        Some(v)
    };
    let p = decode_packet(&mut buf, version, MAX)
        .unwrap_or_else(|e| panic!("our decoder refused {bytes:02x?}: {e}"))
        .expect("a whole packet");
    assert!(buf.is_empty(), "our decoder left {} bytes", buf.len());
    p
}

fn bs(s: &str) -> ByteString {
    ByteString::from(s)
}

fn qos(v: u8) -> QoS {
    QoS::from_u8(v).expect("QoS 0, 1 or 2")
}

fn reason(v: u8) -> ReasonCode {
    ReasonCode::from_u8(v).expect("a known reason code")
}

fn some_if<T>(cond: bool, v: T) -> Option<T> {
    cond.then_some(v)
}

/// Publish packets covering every QoS with and without retain and DUP.
fn publish_variants(v5: bool) -> Vec<Publish> {
    let mut out = Vec::new();
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for retain in [false, true] {
            for dup in [false, true] {
                if dup && q == QoS::AtMostOnce {
                    continue;
                }
                out.push(Publish {
                    dup,
                    qos: q,
                    retain,
                    topic: "plant/line-2/temp".into(),
                    packet_id: some_if(q != QoS::AtMostOnce, pid(1234)),
                    properties: if v5 {
                        Properties {
                            message_expiry_interval: Some(60),
                            ..Default::default()
                        }
                    } else {
                        Properties::default()
                    },
                    payload: Bytes::from_static(b"\x00\x01{\"t\":21.5}\xff"),
                });
            }
        }
    }
    out
}

mod mqttbytes_v4 {
    use super::*;
    use mqttbytes::v4;

    fn their_qos(q: QoS) -> mqttbytes::QoS {
        mqttbytes::qos(q.as_u8()).expect("valid QoS")
    }

    /// Maps a decoded mqttbytes packet into our model.
    fn to_ours(p: v4::Packet) -> Packet {
        match p {
            v4::Packet::Connect(c) => {
                assert_eq!(c.protocol, mqttbytes::Protocol::V4);
                Packet::Connect(Box::new(Connect {
                    protocol: ProtocolVersion::V311,
                    clean_start: c.clean_session,
                    keep_alive: c.keep_alive,
                    properties: Properties::default(),
                    client_id: c.client_id.into(),
                    will: c.last_will.map(|w| Will {
                        topic: w.topic.into(),
                        payload: w.message,
                        qos: qos(w.qos as u8),
                        retain: w.retain,
                        properties: Properties::default(),
                    }),
                    // mqttbytes models credentials as a pair of strings, so
                    // the cases always send both.
                    username: c.login.as_ref().map(|l| l.username.clone().into()),
                    password: c.login.map(|l| Bytes::from(l.password)),
                }))
            }
            v4::Packet::ConnAck(c) => {
                let code = match c.code {
                    v4::ConnectReturnCode::Success => ReasonCode::Success,
                    v4::ConnectReturnCode::RefusedProtocolVersion => {
                        ReasonCode::UnsupportedProtocolVersion
                    }
                    v4::ConnectReturnCode::BadClientId => ReasonCode::ClientIdentifierNotValid,
                    v4::ConnectReturnCode::ServiceUnavailable => ReasonCode::ServerUnavailable,
                    v4::ConnectReturnCode::BadUserNamePassword => ReasonCode::BadUserNameOrPassword,
                    v4::ConnectReturnCode::NotAuthorized => ReasonCode::NotAuthorized,
                };
                Packet::ConnAck(ConnAck {
                    session_present: c.session_present,
                    code,
                    properties: Properties::default(),
                })
            }
            v4::Packet::Publish(p) => Packet::Publish(Publish {
                dup: p.dup,
                qos: qos(p.qos as u8),
                retain: p.retain,
                topic: p.topic.into(),
                packet_id: PacketId::new(p.pkid),
                properties: Properties::default(),
                payload: p.payload,
            }),
            v4::Packet::PubAck(a) => Packet::PubAck(Ack::new(pid(a.pkid))),
            v4::Packet::PubRec(a) => Packet::PubRec(Ack::new(pid(a.pkid))),
            v4::Packet::PubRel(a) => Packet::PubRel(Ack::new(pid(a.pkid))),
            v4::Packet::PubComp(a) => Packet::PubComp(Ack::new(pid(a.pkid))),
            v4::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
                packet_id: pid(s.pkid),
                properties: Properties::default(),
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| {
                        (
                            f.path.into(),
                            SubscriptionOptions {
                                qos: qos(f.qos as u8),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            }),
            v4::Packet::SubAck(s) => Packet::SubAck(SubAck {
                packet_id: pid(s.pkid),
                properties: Properties::default(),
                reasons: s
                    .return_codes
                    .into_iter()
                    .map(|c| match c {
                        v4::SubscribeReasonCode::Success(q) => q as u8,
                        v4::SubscribeReasonCode::Failure => 0x80,
                    })
                    .collect(),
            }),
            v4::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(u.pkid),
                properties: Properties::default(),
                filters: u.topics.into_iter().map(ByteString::from).collect(),
            }),
            v4::Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
                packet_id: pid(u.pkid),
                properties: Properties::default(),
                reasons: Vec::new(),
            }),
            v4::Packet::PingReq => Packet::PingReq,
            v4::Packet::PingResp => Packet::PingResp,
            v4::Packet::Disconnect => Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        }
    }

    #[track_caller]
    fn theirs_decode(bytes: &[u8]) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let p = v4::read(&mut buf, MAX)
            .unwrap_or_else(|e| panic!("mqttbytes refused {bytes:02x?}: {e:?}"));
        assert!(buf.is_empty(), "mqttbytes left {} bytes", buf.len());
        to_ours(p)
    }

    /// Ours → theirs: our encoding decodes in mqttbytes to the same packet.
    #[track_caller]
    fn ours_to_theirs(p: Packet) {
        let bytes = ours_encode(&p, ProtocolVersion::V311);
        assert_eq!(
            theirs_decode(&bytes),
            p,
            "mqttbytes v4 read our {}",
            p.name()
        );
    }

    /// Theirs → ours: mqttbytes' encoding decodes in ours to the same packet.
    #[track_caller]
    fn theirs_to_ours(write: impl FnOnce(&mut BytesMut) -> Result<usize, mqttbytes::Error>) {
        let mut buf = BytesMut::new();
        write(&mut buf).expect("mqttbytes encodes the test packet");
        let expected = theirs_decode(&buf);
        assert_eq!(ours_decode(&buf, ProtocolVersion::V311), expected);
        // Byte-for-byte: the canonical 3.1.1 encoding is unique.
        assert_eq!(&ours_encode(&expected, ProtocolVersion::V311)[..], &buf[..]);
    }

    fn connect_cases() -> Vec<Connect> {
        let base = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: "sensor-0042".into(),
            will: None,
            username: None,
            password: None,
        };
        let mut out = vec![
            base.clone(),
            Connect {
                clean_start: false,
                keep_alive: 0,
                ..base.clone()
            },
        ];
        for (q, retain) in [
            (QoS::AtMostOnce, false),
            (QoS::AtLeastOnce, true),
            (QoS::ExactlyOnce, true),
        ] {
            out.push(Connect {
                will: Some(Will {
                    topic: "status/sensor-0042".into(),
                    payload: Bytes::from_static(b"offline\x00\xff"),
                    qos: q,
                    retain,
                    properties: Properties::default(),
                }),
                username: Some("user".into()),
                password: Some(Bytes::from_static(b"p4ss")),
                ..base.clone()
            });
        }
        out
    }

    #[test]
    fn connect() {
        for c in connect_cases() {
            ours_to_theirs(Packet::Connect(Box::new(c)));
        }
        theirs_to_ours(|b| v4::Connect::new("plain").write(b));
        let mut c = v4::Connect::new("dev");
        c.keep_alive = 600;
        c.clean_session = false;
        c.set_login("name", "secret");
        c.last_will = Some(v4::LastWill::new(
            "will/topic",
            "gone",
            mqttbytes::QoS::ExactlyOnce,
            true,
        ));
        theirs_to_ours(|b| c.write(b));
    }

    #[test]
    fn connack() {
        for code in [
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ] {
            ours_to_theirs(Packet::ConnAck(ConnAck {
                session_present: code == ReasonCode::Success,
                code,
                properties: Properties::default(),
            }));
        }
        theirs_to_ours(|b| v4::ConnAck::new(v4::ConnectReturnCode::Success, true).write(b));
        theirs_to_ours(|b| v4::ConnAck::new(v4::ConnectReturnCode::NotAuthorized, false).write(b));
        theirs_to_ours(|b| v4::ConnAck::new(v4::ConnectReturnCode::BadClientId, false).write(b));
    }

    #[test]
    fn publish() {
        for p in publish_variants(false) {
            ours_to_theirs(Packet::Publish(p.clone()));
            let mut theirs =
                v4::Publish::from_bytes(p.topic.to_string(), their_qos(p.qos), p.payload.clone());
            theirs.retain = p.retain;
            theirs.dup = p.dup;
            theirs.pkid = p.packet_id.map_or(0, |id| id.get());
            theirs_to_ours(|b| theirs.write(b));
        }
        // Empty payload, long topic, payload needing a multi-byte remaining length.
        let p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/".repeat(200).into(),
            packet_id: Some(pid(u16::MAX)),
            properties: Properties::default(),
            payload: Bytes::new(),
        };
        ours_to_theirs(Packet::Publish(p));
        let big = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "big".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(vec![0xa5; 20_000]),
        };
        ours_to_theirs(Packet::Publish(big));
    }

    #[test]
    fn subscribe_and_suback() {
        let filters = vec![
            (
                bs("a/+/c"),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..Default::default()
                },
            ),
            (
                bs("#"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            ),
            (
                bs("$share/g/x"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            ),
        ];
        ours_to_theirs(Packet::Subscribe(Subscribe {
            packet_id: pid(7),
            properties: Properties::default(),
            filters,
        }));
        let mut s = v4::Subscribe::new("x/y", mqttbytes::QoS::AtLeastOnce);
        s.add("z/#".into(), mqttbytes::QoS::ExactlyOnce);
        s.pkid = 99;
        theirs_to_ours(|b| s.write(b));

        ours_to_theirs(Packet::SubAck(SubAck {
            packet_id: pid(7),
            properties: Properties::default(),
            reasons: vec![0, 1, 2, 0x80],
        }));
        let codes = vec![
            v4::SubscribeReasonCode::Success(mqttbytes::QoS::ExactlyOnce),
            v4::SubscribeReasonCode::Failure,
            v4::SubscribeReasonCode::Success(mqttbytes::QoS::AtMostOnce),
        ];
        theirs_to_ours(|b| v4::SubAck::new(99, codes).write(b));
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        ours_to_theirs(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            properties: Properties::default(),
            filters: vec![bs("a/#"), bs("b/+")],
        }));
        let mut u = v4::Unsubscribe::new("a/b");
        u.topics.push("c/#".into());
        u.pkid = 12;
        theirs_to_ours(|b| u.write(b));

        ours_to_theirs(Packet::UnsubAck(UnsubAck {
            packet_id: pid(3),
            properties: Properties::default(),
            reasons: vec![],
        }));
        theirs_to_ours(|b| v4::UnsubAck::new(12).write(b));
    }

    #[test]
    fn publish_acknowledgements() {
        for id in [1, 300, u16::MAX] {
            ours_to_theirs(Packet::PubAck(Ack::new(pid(id))));
            ours_to_theirs(Packet::PubRec(Ack::new(pid(id))));
            ours_to_theirs(Packet::PubRel(Ack::new(pid(id))));
            ours_to_theirs(Packet::PubComp(Ack::new(pid(id))));
            theirs_to_ours(|b| v4::PubAck::new(id).write(b));
            theirs_to_ours(|b| v4::PubRec::new(id).write(b));
            theirs_to_ours(|b| v4::PubRel::new(id).write(b));
            theirs_to_ours(|b| v4::PubComp::new(id).write(b));
        }
    }

    #[test]
    fn ping_and_disconnect() {
        ours_to_theirs(Packet::PingReq);
        ours_to_theirs(Packet::PingResp);
        ours_to_theirs(Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        theirs_to_ours(|b| v4::PingReq.write(b));
        theirs_to_ours(|b| v4::PingResp.write(b));
        theirs_to_ours(|b| v4::Disconnect.write(b));
    }
}

mod mqttbytes_v5 {
    use super::*;
    use mqttbytes::v5;

    fn users(u: Vec<(String, String)>) -> Vec<(ByteString, ByteString)> {
        u.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn ack_props(
        reason_string: Option<String>,
        user_properties: Vec<(String, String)>,
    ) -> Properties {
        Properties {
            reason_string: reason_string.map(Into::into),
            user_properties: users(user_properties),
            ..Default::default()
        }
    }

    /// Maps a decoded mqttbytes v5 packet into our model.
    fn to_ours(p: v5::Packet) -> Packet {
        match p {
            v5::Packet::Connect(c) => {
                assert_eq!(c.protocol, mqttbytes::Protocol::V5);
                let properties = c
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        session_expiry_interval: p.session_expiry_interval,
                        receive_maximum: p.receive_maximum,
                        maximum_packet_size: p.max_packet_size,
                        topic_alias_maximum: p.topic_alias_max,
                        request_response_information: p.request_response_info,
                        request_problem_information: p.request_problem_info,
                        user_properties: users(p.user_properties),
                        authentication_method: p.authentication_method.map(Into::into),
                        authentication_data: p.authentication_data,
                        ..Default::default()
                    });
                Packet::Connect(Box::new(Connect {
                    protocol: ProtocolVersion::V5,
                    clean_start: c.clean_session,
                    keep_alive: c.keep_alive,
                    properties,
                    client_id: c.client_id.into(),
                    will: c.last_will.map(|w| Will {
                        topic: w.topic.into(),
                        payload: w.message,
                        qos: qos(w.qos as u8),
                        retain: w.retain,
                        properties: w
                            .properties
                            .map_or_else(Properties::default, |p| Properties {
                                will_delay_interval: p.delay_interval,
                                payload_format_indicator: p.payload_format_indicator,
                                message_expiry_interval: p.message_expiry_interval,
                                content_type: p.content_type.map(Into::into),
                                response_topic: p.response_topic.map(Into::into),
                                correlation_data: p.correlation_data,
                                user_properties: users(p.user_properties),
                                ..Default::default()
                            }),
                    }),
                    username: c.login.as_ref().map(|l| l.username.clone().into()),
                    password: c.login.map(|l| Bytes::from(l.password)),
                }))
            }
            v5::Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
                session_present: c.session_present,
                code: reason(c.code as u8),
                properties: c
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        session_expiry_interval: p.session_expiry_interval,
                        receive_maximum: p.receive_max,
                        maximum_qos: p.max_qos,
                        retain_available: p.retain_available,
                        maximum_packet_size: p.max_packet_size,
                        assigned_client_identifier: p.assigned_client_identifier.map(Into::into),
                        topic_alias_maximum: p.topic_alias_max,
                        reason_string: p.reason_string.map(Into::into),
                        user_properties: users(p.user_properties),
                        wildcard_subscription_available: p.wildcard_subscription_available,
                        subscription_identifier_available: p.subscription_identifiers_available,
                        shared_subscription_available: p.shared_subscription_available,
                        server_keep_alive: p.server_keep_alive,
                        response_information: p.response_information.map(Into::into),
                        server_reference: p.server_reference.map(Into::into),
                        authentication_method: p.authentication_method.map(Into::into),
                        authentication_data: p.authentication_data,
                        ..Default::default()
                    }),
            }),
            v5::Packet::Publish(p) => Packet::Publish(Publish {
                dup: p.dup,
                qos: qos(p.qos as u8),
                retain: p.retain,
                topic: p.topic.into(),
                packet_id: PacketId::new(p.pkid),
                properties: p
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        payload_format_indicator: p.payload_format_indicator,
                        message_expiry_interval: p.message_expiry_interval,
                        topic_alias: p.topic_alias,
                        response_topic: p.response_topic.map(Into::into),
                        correlation_data: p.correlation_data,
                        user_properties: users(p.user_properties),
                        subscription_identifiers: p
                            .subscription_identifiers
                            .into_iter()
                            .map(|id| u32::try_from(id).expect("fits"))
                            .collect(),
                        content_type: p.content_type.map(Into::into),
                        ..Default::default()
                    }),
                payload: p.payload,
            }),
            v5::Packet::PubAck(a) => Packet::PubAck(Ack {
                packet_id: pid(a.pkid),
                reason: reason(a.reason as u8),
                properties: a.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
            }),
            v5::Packet::PubRec(a) => Packet::PubRec(Ack {
                packet_id: pid(a.pkid),
                reason: reason(a.reason as u8),
                properties: a.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
            }),
            v5::Packet::PubRel(a) => Packet::PubRel(Ack {
                packet_id: pid(a.pkid),
                reason: reason(a.reason as u8),
                properties: a.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
            }),
            v5::Packet::PubComp(a) => Packet::PubComp(Ack {
                packet_id: pid(a.pkid),
                reason: reason(a.reason as u8),
                properties: a.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
            }),
            v5::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
                packet_id: pid(s.pkid),
                properties: s
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        subscription_identifiers: p
                            .id
                            .map(|id| u32::try_from(id).expect("fits"))
                            .into_iter()
                            .collect(),
                        user_properties: users(p.user_properties),
                        ..Default::default()
                    }),
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| {
                        let retain_handling = match f.retain_forward_rule {
                            v5::RetainForwardRule::OnEverySubscribe => {
                                RetainHandling::SendAtSubscribe
                            }
                            v5::RetainForwardRule::OnNewSubscribe => RetainHandling::SendIfNew,
                            v5::RetainForwardRule::Never => RetainHandling::DoNotSend,
                        };
                        let options = SubscriptionOptions {
                            qos: qos(f.qos as u8),
                            no_local: f.nolocal,
                            retain_as_published: f.preserve_retain,
                            retain_handling,
                        };
                        (f.path.into(), options)
                    })
                    .collect(),
            }),
            v5::Packet::SubAck(s) => Packet::SubAck(SubAck {
                packet_id: pid(s.pkid),
                properties: s.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
                reasons: s.return_codes.into_iter().map(|c| c as u8).collect(),
            }),
            v5::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(u.pkid),
                properties: u
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        user_properties: users(p.user_properties),
                        ..Default::default()
                    }),
                filters: u.filters.into_iter().map(ByteString::from).collect(),
            }),
            v5::Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
                packet_id: pid(u.pkid),
                properties: u.properties.map_or_else(Properties::default, |p| {
                    ack_props(p.reason_string, p.user_properties)
                }),
                reasons: u.reasons.into_iter().map(|c| c as u8).collect(),
            }),
            v5::Packet::PingReq => Packet::PingReq,
            v5::Packet::PingResp => Packet::PingResp,
            v5::Packet::Disconnect(d) => Packet::Disconnect(Disconnect {
                reason: reason(d.reason_code as u8),
                properties: d
                    .properties
                    .map_or_else(Properties::default, |p| Properties {
                        session_expiry_interval: p.session_expiry_interval,
                        reason_string: p.reason_string.map(Into::into),
                        user_properties: users(p.user_properties),
                        server_reference: p.server_reference.map(Into::into),
                        ..Default::default()
                    }),
            }),
        }
    }

    #[track_caller]
    fn theirs_decode(bytes: &[u8]) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let p = v5::read(&mut buf, MAX)
            .unwrap_or_else(|e| panic!("mqttbytes refused {bytes:02x?}: {e:?}"));
        assert!(buf.is_empty(), "mqttbytes left {} bytes", buf.len());
        to_ours(p)
    }

    #[track_caller]
    fn ours_to_theirs(p: Packet) {
        let bytes = ours_encode(&p, ProtocolVersion::V5);
        assert_eq!(
            theirs_decode(&bytes),
            p,
            "mqttbytes v5 read our {}",
            p.name()
        );
    }

    #[track_caller]
    fn theirs_to_ours(write: impl FnOnce(&mut BytesMut) -> Result<usize, mqttbytes::Error>) {
        let mut buf = BytesMut::new();
        write(&mut buf).expect("mqttbytes encodes the test packet");
        let expected = theirs_decode(&buf);
        assert_eq!(ours_decode(&buf, ProtocolVersion::V5), expected);
    }

    fn connect_properties() -> v5::ConnectProperties {
        v5::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(32),
            max_packet_size: Some(1 << 16),
            topic_alias_max: Some(8),
            request_response_info: Some(1),
            request_problem_info: Some(0),
            user_properties: vec![
                ("site".into(), "north".into()),
                ("site".into(), "south".into()),
            ],
            authentication_method: Some("token".into()),
            authentication_data: Some(Bytes::from_static(b"\x00\x01\x02")),
        }
    }

    #[test]
    fn connect() {
        let ours = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 45,
            properties: Properties {
                session_expiry_interval: Some(120),
                receive_maximum: Some(10),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(5),
                request_response_information: Some(0),
                request_problem_information: Some(1),
                user_properties: vec![(bs("a"), bs("1"))],
                authentication_method: Some(bs("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"first")),
                ..Default::default()
            },
            client_id: "v5-client".into(),
            will: Some(Will {
                topic: "last/words".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties {
                    will_delay_interval: Some(30),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(600),
                    content_type: Some(bs("text/plain")),
                    response_topic: Some(bs("reply/here")),
                    correlation_data: Some(Bytes::from_static(b"\x07")),
                    user_properties: vec![(bs("w"), bs("x"))],
                    ..Default::default()
                },
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pw")),
        };
        ours_to_theirs(Packet::Connect(Box::new(ours.clone())));
        ours_to_theirs(Packet::Connect(Box::new(Connect {
            properties: Properties::default(),
            will: None,
            username: None,
            password: None,
            ..ours
        })));

        theirs_to_ours(|b| v5::Connect::new("bare").write(b));
        let mut c = v5::Connect::new("full");
        c.keep_alive = 5;
        c.properties = Some(connect_properties());
        c.set_login("u", "p");
        let mut will = v5::LastWill::new("w/t", "gone", mqttbytes::QoS::ExactlyOnce, false);
        will.properties = Some(v5::WillProperties {
            delay_interval: Some(9),
            payload_format_indicator: Some(0),
            message_expiry_interval: Some(77),
            content_type: Some("application/octet-stream".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![("k".into(), "v".into())],
        });
        c.last_will = Some(will);
        theirs_to_ours(|b| c.write(b));
    }

    #[test]
    fn connack() {
        let properties = Properties {
            session_expiry_interval: Some(0),
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(1),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some(bs("auto-1")),
            topic_alias_maximum: Some(16),
            reason_string: Some(bs("hi")),
            user_properties: vec![(bs("k"), bs("v"))],
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
            server_keep_alive: Some(20),
            response_information: Some(bs("resp")),
            server_reference: Some(bs("other")),
            authentication_method: Some(bs("m")),
            authentication_data: Some(Bytes::from_static(b"d")),
            ..Default::default()
        };
        ours_to_theirs(Packet::ConnAck(ConnAck {
            session_present: true,
            code: ReasonCode::Success,
            properties,
        }));
        for code in [
            ReasonCode::NotAuthorized,
            ReasonCode::ServerMoved,
            ReasonCode::BadAuthenticationMethod,
        ] {
            ours_to_theirs(Packet::ConnAck(ConnAck {
                session_present: false,
                code,
                properties: Properties::default(),
            }));
        }
        // mqttbytes omits the mandatory property length when it has no
        // properties to send, which our strict decoder rightly refuses; so
        // their CONNACKs always carry some.
        let mut c = v5::ConnAck::new(v5::ConnectReturnCode::Success, false);
        c.properties = Some(v5::ConnAckProperties {
            session_expiry_interval: Some(10),
            receive_max: Some(5),
            max_qos: Some(0),
            retain_available: Some(0),
            max_packet_size: Some(999),
            assigned_client_identifier: Some("assigned".into()),
            topic_alias_max: Some(3),
            reason_string: Some("ok".into()),
            user_properties: vec![("a".into(), "b".into())],
            wildcard_subscription_available: Some(0),
            subscription_identifiers_available: Some(1),
            shared_subscription_available: Some(0),
            server_keep_alive: Some(99),
            response_information: Some("ri".into()),
            server_reference: Some("sr".into()),
            authentication_method: Some("am".into()),
            authentication_data: Some(Bytes::from_static(b"ad")),
        });
        theirs_to_ours(|b| c.write(b));
    }

    #[test]
    fn publish() {
        for p in publish_variants(true) {
            ours_to_theirs(Packet::Publish(p));
        }
        let properties = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            topic_alias: Some(2),
            response_topic: Some(bs("resp/1")),
            correlation_data: Some(Bytes::from_static(b"\x00corr")),
            user_properties: vec![(bs("a"), bs("b")), (bs("a"), bs("c"))],
            subscription_identifiers: vec![1, 200, 70_000],
            content_type: Some(bs("application/json")),
            ..Default::default()
        };
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            ours_to_theirs(Packet::Publish(Publish {
                dup: false,
                qos: q,
                retain: true,
                topic: "t/1".into(),
                packet_id: some_if(q != QoS::AtMostOnce, pid(5)),
                properties: properties.clone(),
                payload: Bytes::from_static(b"{}"),
            }));
        }

        for q in [
            mqttbytes::QoS::AtMostOnce,
            mqttbytes::QoS::AtLeastOnce,
            mqttbytes::QoS::ExactlyOnce,
        ] {
            let mut p = v5::Publish::new("x/y", q, b"payload".to_vec());
            if q != mqttbytes::QoS::AtMostOnce {
                p.pkid = 77;
                p.dup = true;
            }
            p.retain = true;
            theirs_to_ours(|b| p.write(b));
            p.properties = Some(v5::PublishProperties {
                payload_format_indicator: Some(0),
                message_expiry_interval: Some(5),
                topic_alias: Some(9),
                response_topic: Some("back".into()),
                correlation_data: Some(Bytes::from_static(b"cd")),
                user_properties: vec![("u".into(), "v".into())],
                subscription_identifiers: vec![3],
                content_type: Some("ct".into()),
            });
            theirs_to_ours(|b| p.write(b));
        }
    }

    #[test]
    fn subscribe_and_suback() {
        let mut filters = Vec::new();
        for (i, rh) in [
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ]
        .into_iter()
        .enumerate()
        {
            for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let options = SubscriptionOptions {
                    qos: q,
                    no_local: i == 1,
                    retain_as_published: i == 2,
                    retain_handling: rh,
                };
                filters.push((ByteString::from(format!("f/{i}/{}/#", q.as_u8())), options));
            }
        }
        let properties = Properties {
            subscription_identifiers: vec![4242],
            user_properties: vec![(bs("k"), bs("v"))],
            ..Default::default()
        };
        ours_to_theirs(Packet::Subscribe(Subscribe {
            packet_id: pid(11),
            properties,
            filters: filters.clone(),
        }));
        ours_to_theirs(Packet::Subscribe(Subscribe {
            packet_id: pid(12),
            properties: Properties::default(),
            filters,
        }));

        let mut f = v5::SubscribeFilter::new("a/+".into(), mqttbytes::QoS::AtLeastOnce);
        f.set_nolocal(true)
            .set_preserve_retain(true)
            .set_retain_forward_rule(v5::RetainForwardRule::OnNewSubscribe);
        let mut s = v5::Subscribe::new_many([
            f,
            v5::SubscribeFilter::new("b".into(), mqttbytes::QoS::ExactlyOnce),
        ]);
        s.pkid = 8;
        theirs_to_ours(|b| s.write(b));
        s.properties = Some(v5::SubscribeProperties {
            id: Some(16_384),
            user_properties: vec![("x".into(), "y".into())],
        });
        theirs_to_ours(|b| s.write(b));

        ours_to_theirs(Packet::SubAck(SubAck {
            packet_id: pid(11),
            properties: Properties {
                reason_string: Some(bs("partial")),
                ..Default::default()
            },
            reasons: vec![
                0, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2,
            ],
        }));
        let codes = vec![
            v5::SubscribeReasonCode::QoS1,
            v5::SubscribeReasonCode::NotAuthorized,
        ];
        let mut sa = v5::SubAck::new(8, codes);
        theirs_to_ours(|b| sa.write(b));
        sa.properties = Some(v5::SubAckProperties {
            reason_string: Some("why".into()),
            user_properties: vec![("u".into(), "p".into())],
        });
        theirs_to_ours(|b| sa.write(b));
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        ours_to_theirs(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            properties: Properties {
                user_properties: vec![(bs("a"), bs("b"))],
                ..Default::default()
            },
            filters: vec![bs("a/#"), bs("c")],
        }));
        let mut u = v5::Unsubscribe::new("x/#");
        u.pkid = 6;
        theirs_to_ours(|b| u.write(b));

        ours_to_theirs(Packet::UnsubAck(UnsubAck {
            packet_id: pid(4),
            properties: Properties {
                reason_string: Some(bs("done")),
                ..Default::default()
            },
            reasons: vec![0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
        }));
        let mut ua = v5::UnsubAck::new(6);
        ua.reasons = vec![
            v5::UnsubAckReason::Success,
            v5::UnsubAckReason::NoSubscriptionExisted,
        ];
        theirs_to_ours(|b| ua.write(b));
    }

    #[test]
    fn publish_acknowledgements() {
        let props = Properties {
            reason_string: Some(bs("r")),
            user_properties: vec![(bs("k"), bs("v"))],
            ..Default::default()
        };
        for (reason, properties) in [
            (ReasonCode::Success, Properties::default()),
            (ReasonCode::NoMatchingSubscribers, Properties::default()),
            (ReasonCode::QuotaExceeded, props.clone()),
            (ReasonCode::Success, props.clone()),
        ] {
            let a = Ack {
                packet_id: pid(21),
                reason,
                properties,
            };
            ours_to_theirs(Packet::PubAck(a.clone()));
            ours_to_theirs(Packet::PubRec(a));
        }
        for (reason, properties) in [
            (ReasonCode::Success, Properties::default()),
            (ReasonCode::PacketIdentifierNotFound, Properties::default()),
            (ReasonCode::PacketIdentifierNotFound, props.clone()),
        ] {
            let a = Ack {
                packet_id: pid(22),
                reason,
                properties,
            };
            ours_to_theirs(Packet::PubRel(a.clone()));
            ours_to_theirs(Packet::PubComp(a));
        }

        theirs_to_ours(|b| v5::PubAck::new(1).write(b));
        theirs_to_ours(|b| v5::PubRec::new(2).write(b));
        theirs_to_ours(|b| v5::PubRel::new(3).write(b));
        theirs_to_ours(|b| v5::PubComp::new(4).write(b));
        let mut a = v5::PubAck::new(5);
        a.reason = v5::PubAckReason::PayloadFormatInvalid;
        theirs_to_ours(|b| a.write(b));
        a.properties = Some(v5::PubAckProperties {
            reason_string: Some("bad".into()),
            user_properties: vec![("a".into(), "b".into())],
        });
        theirs_to_ours(|b| a.write(b));
        let mut r = v5::PubRec::new(6);
        r.reason = v5::PubRecReason::NotAuthorized;
        theirs_to_ours(|b| r.write(b));
        let mut rel = v5::PubRel::new(7);
        rel.reason = v5::PubRelReason::PacketIdentifierNotFound;
        rel.properties = Some(v5::PubRelProperties {
            reason_string: Some("gone".into()),
            user_properties: vec![],
        });
        theirs_to_ours(|b| rel.write(b));
        let mut comp = v5::PubComp::new(8);
        comp.reason = v5::PubCompReason::PacketIdentifierNotFound;
        theirs_to_ours(|b| comp.write(b));
    }

    #[test]
    fn ping_and_disconnect() {
        ours_to_theirs(Packet::PingReq);
        ours_to_theirs(Packet::PingResp);
        theirs_to_ours(|b| v5::PingReq.write(b));
        theirs_to_ours(|b| v5::PingResp.write(b));

        // mqttbytes' reader cannot parse a DISCONNECT without properties
        // (empty body or reason code alone), so ours → theirs carries some.
        let properties = Properties {
            session_expiry_interval: Some(0),
            reason_string: Some(bs("shutting down")),
            user_properties: vec![(bs("k"), bs("v"))],
            server_reference: Some(bs("backup:1883")),
            ..Default::default()
        };
        for reason in [
            ReasonCode::Success,
            ReasonCode::ServerShuttingDown,
            ReasonCode::UseAnotherServer,
        ] {
            ours_to_theirs(Packet::Disconnect(Disconnect {
                reason,
                properties: properties.clone(),
            }));
        }
        // Their short forms decode in ours.
        let mut buf = BytesMut::new();
        v5::Disconnect::new().write(&mut buf).unwrap();
        assert_eq!(
            ours_decode(&buf, ProtocolVersion::V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::Success))
        );
        let mut d = v5::Disconnect::new();
        d.reason_code = v5::DisconnectReasonCode::KeepAliveTimeout;
        let mut buf = BytesMut::new();
        d.write(&mut buf).unwrap();
        assert_eq!(
            ours_decode(&buf, ProtocolVersion::V5),
            Packet::Disconnect(Disconnect::new(ReasonCode::KeepAliveTimeout))
        );
        d.properties = Some(v5::DisconnectProperties {
            session_expiry_interval: Some(7),
            reason_string: Some("r".into()),
            user_properties: vec![("a".into(), "b".into())],
            server_reference: Some("s".into()),
        });
        theirs_to_ours(|b| d.write(b));
    }
}

mod rmqtt_v3 {
    use super::*;
    use rmqtt_codec::v3;
    use tokio_util::codec::{Decoder, Encoder};

    fn their_qos(q: QoS) -> rmqtt_codec::types::QoS {
        rmqtt_codec::types::QoS::try_from(q.as_u8()).expect("valid QoS")
    }

    fn our_qos(q: rmqtt_codec::types::QoS) -> QoS {
        qos(u8::from(q))
    }

    fn to_ours(p: v3::Packet) -> Packet {
        match p {
            v3::Packet::Connect(c) => Packet::Connect(Box::new(Connect {
                protocol: match c.protocol.level() {
                    3 => ProtocolVersion::V31,
                    4 => ProtocolVersion::V311,
                    l => panic!("unexpected level {l}"),
                },
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                properties: Properties::default(),
                client_id: c.client_id,
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    payload: w.message,
                    qos: our_qos(w.qos),
                    retain: w.retain,
                    properties: Properties::default(),
                }),
                username: c.username,
                password: c.password,
            })),
            v3::Packet::ConnectAck(c) => Packet::ConnAck(ConnAck {
                session_present: c.session_present,
                code: match u8::from(c.return_code) {
                    0 => ReasonCode::Success,
                    1 => ReasonCode::UnsupportedProtocolVersion,
                    2 => ReasonCode::ClientIdentifierNotValid,
                    3 => ReasonCode::ServerUnavailable,
                    4 => ReasonCode::BadUserNameOrPassword,
                    5 => ReasonCode::NotAuthorized,
                    other => panic!("unexpected return code {other}"),
                },
                properties: Properties::default(),
            }),
            v3::Packet::Publish(p) => {
                assert!(p.properties.is_none());
                Packet::Publish(Publish {
                    dup: p.dup,
                    qos: our_qos(p.qos),
                    retain: p.retain,
                    topic: p.topic,
                    packet_id: p.packet_id,
                    properties: Properties::default(),
                    payload: p.payload,
                })
            }
            v3::Packet::PublishAck { packet_id } => Packet::PubAck(Ack::new(packet_id)),
            v3::Packet::PublishReceived { packet_id } => Packet::PubRec(Ack::new(packet_id)),
            v3::Packet::PublishRelease { packet_id } => Packet::PubRel(Ack::new(packet_id)),
            v3::Packet::PublishComplete { packet_id } => Packet::PubComp(Ack::new(packet_id)),
            v3::Packet::Subscribe {
                packet_id,
                topic_filters,
            } => Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                filters: topic_filters
                    .into_iter()
                    .map(|(f, q)| {
                        (
                            f,
                            SubscriptionOptions {
                                qos: our_qos(q),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            }),
            v3::Packet::SubscribeAck { packet_id, status } => Packet::SubAck(SubAck {
                packet_id,
                properties: Properties::default(),
                reasons: status
                    .into_iter()
                    .map(|s| match s {
                        v3::SubscribeReturnCode::Success(q) => u8::from(q),
                        v3::SubscribeReturnCode::Failure => 0x80,
                    })
                    .collect(),
            }),
            v3::Packet::Unsubscribe {
                packet_id,
                topic_filters,
            } => Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters: topic_filters,
            }),
            v3::Packet::UnsubscribeAck { packet_id } => Packet::UnsubAck(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reasons: vec![],
            }),
            v3::Packet::PingRequest => Packet::PingReq,
            v3::Packet::PingResponse => Packet::PingResp,
            v3::Packet::Disconnect => Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        }
    }

    #[track_caller]
    fn theirs_decode(bytes: &[u8]) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let (p, _) = v3::Codec::new(0)
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("rmqtt-codec refused {bytes:02x?}: {e:?}"))
            .expect("a whole packet");
        assert!(buf.is_empty(), "rmqtt-codec left {} bytes", buf.len());
        to_ours(p)
    }

    #[track_caller]
    fn ours_to_theirs(ours: &Packet, v: ProtocolVersion) -> BytesMut {
        let bytes = ours_encode(ours, v);
        assert_eq!(
            &theirs_decode(&bytes),
            ours,
            "rmqtt-codec v3 read our {}",
            ours.name()
        );
        bytes
    }

    #[track_caller]
    fn round(ours: Packet, theirs: v3::Packet) {
        let v = ProtocolVersion::V311;
        let bytes = ours_to_theirs(&ours, v);
        // Theirs → ours, and both sides agree on the bytes.
        let mut buf = BytesMut::new();
        v3::Codec::new(0)
            .encode(theirs, &mut buf)
            .expect("rmqtt-codec encodes the test packet");
        assert_eq!(ours_decode(&buf, v), ours);
        assert_eq!(&buf[..], &bytes[..], "{} encodings differ", ours.name());
    }

    #[test]
    fn connect() {
        // Passwords are binary in both models: a non-UTF-8 one must survive.
        let ours = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::default(),
            client_id: "dev-7".into(),
            will: Some(Will {
                topic: "dev/7/lwt".into(),
                payload: Bytes::from_static(b"\xffdead"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: Properties::default(),
            }),
            username: Some("operator".into()),
            password: Some(Bytes::from_static(&[0x00, 0xff, 0xfe, 0x80])),
        };
        // MQTT 3.1 only one way: rmqtt-codec writes "MQIsdp" with level 4,
        // a combination no 3.1 or 3.1.1 peer sends and which we refuse.
        let old = Connect {
            protocol: ProtocolVersion::V31,
            ..ours.clone()
        };
        ours_to_theirs(&Packet::Connect(Box::new(old)), ProtocolVersion::V31);
        let theirs = v3::Connect {
            protocol: rmqtt_codec::types::Protocol(4),
            clean_session: true,
            keep_alive: 30,
            last_will: Some(v3::LastWill {
                qos: their_qos(QoS::ExactlyOnce),
                retain: true,
                topic: "dev/7/lwt".into(),
                message: Bytes::from_static(b"\xffdead"),
            }),
            client_id: "dev-7".into(),
            username: Some("operator".into()),
            password: Some(Bytes::from_static(&[0x00, 0xff, 0xfe, 0x80])),
            cert: None,
        };
        round(
            Packet::Connect(Box::new(ours)),
            v3::Packet::Connect(Box::new(theirs)),
        );
        let ours = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: false,
            keep_alive: 0,
            properties: Properties::default(),
            client_id: "keep".into(),
            will: None,
            username: Some("only-user".into()),
            password: None,
        };
        let theirs = v3::Connect {
            protocol: rmqtt_codec::types::Protocol(4),
            clean_session: false,
            keep_alive: 0,
            last_will: None,
            client_id: "keep".into(),
            username: Some("only-user".into()),
            password: None,
            cert: None,
        };
        round(
            Packet::Connect(Box::new(ours)),
            v3::Packet::Connect(Box::new(theirs)),
        );
    }

    #[test]
    fn connack() {
        for (code, theirs) in [
            (
                ReasonCode::Success,
                v3::ConnectAckReason::ConnectionAccepted,
            ),
            (
                ReasonCode::UnsupportedProtocolVersion,
                v3::ConnectAckReason::UnacceptableProtocolVersion,
            ),
            (
                ReasonCode::ClientIdentifierNotValid,
                v3::ConnectAckReason::IdentifierRejected,
            ),
            (
                ReasonCode::ServerUnavailable,
                v3::ConnectAckReason::ServiceUnavailable,
            ),
            (
                ReasonCode::BadUserNameOrPassword,
                v3::ConnectAckReason::BadUserNameOrPassword,
            ),
            (
                ReasonCode::NotAuthorized,
                v3::ConnectAckReason::NotAuthorized,
            ),
        ] {
            let session_present = code == ReasonCode::Success;
            round(
                Packet::ConnAck(ConnAck {
                    session_present,
                    code,
                    properties: Properties::default(),
                }),
                v3::Packet::ConnectAck(v3::ConnectAck {
                    return_code: theirs,
                    session_present,
                }),
            );
        }
    }

    #[test]
    fn publish() {
        for p in publish_variants(false) {
            let theirs = rmqtt_codec::types::Publish {
                dup: p.dup,
                retain: p.retain,
                qos: their_qos(p.qos),
                topic: p.topic.clone(),
                packet_id: p.packet_id,
                payload: p.payload.clone(),
                properties: None,
            };
            round(Packet::Publish(p), v3::Packet::Publish(Box::new(theirs)));
        }
    }

    #[test]
    fn subscriptions() {
        let filters = [
            (bs("a/#"), QoS::AtMostOnce),
            (bs("b/+/c"), QoS::AtLeastOnce),
            (bs("d"), QoS::ExactlyOnce),
        ];
        round(
            Packet::Subscribe(Subscribe {
                packet_id: pid(5),
                properties: Properties::default(),
                filters: filters
                    .iter()
                    .map(|(f, q)| {
                        (
                            f.clone(),
                            SubscriptionOptions {
                                qos: *q,
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            }),
            v3::Packet::Subscribe {
                packet_id: pid(5),
                topic_filters: filters
                    .iter()
                    .map(|(f, q)| (f.clone(), their_qos(*q)))
                    .collect(),
            },
        );
        round(
            Packet::SubAck(SubAck {
                packet_id: pid(5),
                properties: Properties::default(),
                reasons: vec![2, 0x80, 0],
            }),
            v3::Packet::SubscribeAck {
                packet_id: pid(5),
                status: vec![
                    v3::SubscribeReturnCode::Success(their_qos(QoS::ExactlyOnce)),
                    v3::SubscribeReturnCode::Failure,
                    v3::SubscribeReturnCode::Success(their_qos(QoS::AtMostOnce)),
                ],
            },
        );
        round(
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(6),
                properties: Properties::default(),
                filters: vec![bs("a/#"), bs("x")],
            }),
            v3::Packet::Unsubscribe {
                packet_id: pid(6),
                topic_filters: vec![bs("a/#"), bs("x")],
            },
        );
        round(
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(6),
                properties: Properties::default(),
                reasons: vec![],
            }),
            v3::Packet::UnsubscribeAck { packet_id: pid(6) },
        );
    }

    #[test]
    fn acknowledgements_ping_and_disconnect() {
        let id = pid(777);
        round(
            Packet::PubAck(Ack::new(id)),
            v3::Packet::PublishAck { packet_id: id },
        );
        round(
            Packet::PubRec(Ack::new(id)),
            v3::Packet::PublishReceived { packet_id: id },
        );
        round(
            Packet::PubRel(Ack::new(id)),
            v3::Packet::PublishRelease { packet_id: id },
        );
        round(
            Packet::PubComp(Ack::new(id)),
            v3::Packet::PublishComplete { packet_id: id },
        );
        round(Packet::PingReq, v3::Packet::PingRequest);
        round(Packet::PingResp, v3::Packet::PingResponse);
        round(
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
            v3::Packet::Disconnect,
        );
    }
}

mod rmqtt_v5 {
    use super::*;
    use rmqtt_codec::v5;
    use tokio_util::codec::{Decoder, Encoder};

    fn their_qos(q: QoS) -> rmqtt_codec::types::QoS {
        rmqtt_codec::types::QoS::try_from(q.as_u8()).expect("valid QoS")
    }

    fn our_qos(q: rmqtt_codec::types::QoS) -> QoS {
        qos(u8::from(q))
    }

    fn ack_props(
        reason_string: Option<ByteString>,
        user_properties: v5::UserProperties,
    ) -> Properties {
        Properties {
            reason_string,
            user_properties,
            ..Default::default()
        }
    }

    /// rmqtt-codec resolves absent properties to their defaults; a value equal
    /// to the default maps back to "absent", so the cases avoid sending a
    /// default explicitly.
    fn to_ours(p: v5::Packet) -> Packet {
        match p {
            v5::Packet::Connect(c) => Packet::Connect(Box::new(Connect {
                protocol: ProtocolVersion::V5,
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                properties: Properties {
                    session_expiry_interval: some_if(
                        c.session_expiry_interval_secs != 0,
                        c.session_expiry_interval_secs,
                    ),
                    authentication_method: c.auth_method,
                    authentication_data: c.auth_data,
                    request_problem_information: some_if(!c.request_problem_info, 0),
                    request_response_information: some_if(c.request_response_info, 1),
                    receive_maximum: c.receive_max.map(NonZeroU16::get),
                    topic_alias_maximum: some_if(c.topic_alias_max != 0, c.topic_alias_max),
                    user_properties: c.user_properties,
                    maximum_packet_size: c.max_packet_size.map(NonZeroU32::get),
                    ..Default::default()
                },
                client_id: c.client_id,
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    payload: w.message,
                    qos: our_qos(w.qos),
                    retain: w.retain,
                    properties: Properties {
                        will_delay_interval: w.will_delay_interval_sec,
                        correlation_data: w.correlation_data,
                        message_expiry_interval: w.message_expiry_interval.map(NonZeroU32::get),
                        content_type: w.content_type,
                        user_properties: w.user_properties,
                        payload_format_indicator: w.is_utf8_payload.map(u8::from),
                        response_topic: w.response_topic,
                        ..Default::default()
                    },
                }),
                username: c.username,
                password: c.password,
            })),
            v5::Packet::ConnectAck(c) => Packet::ConnAck(ConnAck {
                session_present: c.session_present,
                code: reason(u8::from(c.reason_code)),
                properties: Properties {
                    session_expiry_interval: c.session_expiry_interval_secs,
                    receive_maximum: some_if(c.receive_max.get() != u16::MAX, c.receive_max.get()),
                    maximum_qos: some_if(
                        c.max_qos != their_qos(QoS::ExactlyOnce),
                        u8::from(c.max_qos),
                    ),
                    maximum_packet_size: c.max_packet_size,
                    assigned_client_identifier: c.assigned_client_id,
                    topic_alias_maximum: some_if(c.topic_alias_max != 0, c.topic_alias_max),
                    retain_available: some_if(!c.retain_available, 0),
                    wildcard_subscription_available: some_if(!c.wildcard_subscription_available, 0),
                    subscription_identifier_available: some_if(
                        !c.subscription_identifiers_available,
                        0,
                    ),
                    shared_subscription_available: some_if(!c.shared_subscription_available, 0),
                    server_keep_alive: c.server_keepalive_sec,
                    response_information: c.response_info,
                    server_reference: c.server_reference,
                    authentication_method: c.auth_method,
                    authentication_data: c.auth_data,
                    reason_string: c.reason_string,
                    user_properties: c.user_properties,
                    ..Default::default()
                },
            }),
            v5::Packet::Publish(p) => {
                let props = p.properties.unwrap_or_default();
                Packet::Publish(Publish {
                    dup: p.dup,
                    qos: our_qos(p.qos),
                    retain: p.retain,
                    topic: p.topic,
                    packet_id: p.packet_id,
                    properties: Properties {
                        topic_alias: props.topic_alias.map(NonZeroU16::get),
                        correlation_data: props.correlation_data,
                        message_expiry_interval: props.message_expiry_interval.map(NonZeroU32::get),
                        content_type: props.content_type,
                        user_properties: props.user_properties,
                        payload_format_indicator: some_if(props.is_utf8_payload, 1),
                        response_topic: props.response_topic,
                        subscription_identifiers: props
                            .subscription_ids
                            .into_iter()
                            .map(NonZeroU32::get)
                            .collect(),
                        ..Default::default()
                    },
                    payload: p.payload,
                })
            }
            v5::Packet::PublishAck(a) => Packet::PubAck(Ack {
                packet_id: a.packet_id,
                reason: reason(u8::from(a.reason_code)),
                properties: ack_props(a.reason_string, a.properties),
            }),
            v5::Packet::PublishReceived(a) => Packet::PubRec(Ack {
                packet_id: a.packet_id,
                reason: reason(u8::from(a.reason_code)),
                properties: ack_props(a.reason_string, a.properties),
            }),
            v5::Packet::PublishRelease(a) => Packet::PubRel(Ack {
                packet_id: a.packet_id,
                reason: reason(u8::from(a.reason_code)),
                properties: ack_props(a.reason_string, a.properties),
            }),
            v5::Packet::PublishComplete(a) => Packet::PubComp(Ack {
                packet_id: a.packet_id,
                reason: reason(u8::from(a.reason_code)),
                properties: ack_props(a.reason_string, a.properties),
            }),
            v5::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
                packet_id: s.packet_id,
                properties: Properties {
                    subscription_identifiers: s.id.map(NonZeroU32::get).into_iter().collect(),
                    user_properties: s.user_properties,
                    ..Default::default()
                },
                filters: s
                    .topic_filters
                    .into_iter()
                    .map(|(f, o)| {
                        let retain_handling = match u8::from(o.retain_handling) {
                            0 => RetainHandling::SendAtSubscribe,
                            1 => RetainHandling::SendIfNew,
                            _ => RetainHandling::DoNotSend,
                        };
                        let options = SubscriptionOptions {
                            qos: our_qos(o.qos),
                            no_local: o.no_local,
                            retain_as_published: o.retain_as_published,
                            retain_handling,
                        };
                        (f, options)
                    })
                    .collect(),
            }),
            v5::Packet::SubscribeAck(s) => Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: ack_props(s.reason_string, s.properties),
                reasons: s.status.into_iter().map(u8::from).collect(),
            }),
            v5::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
                packet_id: u.packet_id,
                properties: Properties {
                    user_properties: u.user_properties,
                    ..Default::default()
                },
                filters: u.topic_filters,
            }),
            v5::Packet::UnsubscribeAck(u) => Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: ack_props(u.reason_string, u.properties),
                reasons: u.status.into_iter().map(u8::from).collect(),
            }),
            v5::Packet::PingRequest => Packet::PingReq,
            v5::Packet::PingResponse => Packet::PingResp,
            v5::Packet::Disconnect(d) => Packet::Disconnect(Disconnect {
                reason: reason(u8::from(d.reason_code)),
                properties: Properties {
                    session_expiry_interval: d.session_expiry_interval_secs,
                    server_reference: d.server_reference,
                    reason_string: d.reason_string,
                    user_properties: d.user_properties,
                    ..Default::default()
                },
            }),
            v5::Packet::Auth(a) => Packet::Auth(Auth {
                reason: reason(u8::from(a.reason_code)),
                properties: Properties {
                    authentication_method: a.auth_method,
                    authentication_data: a.auth_data,
                    reason_string: a.reason_string,
                    user_properties: a.user_properties,
                    ..Default::default()
                },
            }),
        }
    }

    #[track_caller]
    fn theirs_decode(bytes: &[u8]) -> Packet {
        let mut buf = BytesMut::from(bytes);
        let (p, _) = v5::Codec::new(0, 0)
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("rmqtt-codec refused {bytes:02x?}: {e:?}"))
            .expect("a whole packet");
        assert!(buf.is_empty(), "rmqtt-codec left {} bytes", buf.len());
        to_ours(p)
    }

    #[track_caller]
    fn ours_to_theirs(p: Packet) {
        let bytes = ours_encode(&p, ProtocolVersion::V5);
        assert_eq!(
            theirs_decode(&bytes),
            p,
            "rmqtt-codec v5 read our {}",
            p.name()
        );
    }

    #[track_caller]
    fn theirs_to_ours(p: v5::Packet) {
        let mut buf = BytesMut::new();
        v5::Codec::new(0, 0)
            .encode(p, &mut buf)
            .expect("rmqtt-codec encodes the test packet");
        let expected = theirs_decode(&buf);
        assert_eq!(ours_decode(&buf, ProtocolVersion::V5), expected);
    }

    fn their_connect() -> v5::Connect {
        v5::Connect {
            clean_start: true,
            keep_alive: 15,
            session_expiry_interval_secs: 86_400,
            auth_method: Some("PLAIN".into()),
            auth_data: Some(Bytes::from_static(b"\x00user\x00pass")),
            request_problem_info: false,
            request_response_info: true,
            receive_max: NonZeroU16::new(50),
            topic_alias_max: 4,
            user_properties: vec![(bs("a"), bs("b"))],
            max_packet_size: NonZeroU32::new(100_000),
            last_will: Some(v5::LastWill {
                qos: their_qos(QoS::AtLeastOnce),
                retain: false,
                topic: "lwt".into(),
                message: Bytes::from_static(b"\x01\x02"),
                will_delay_interval_sec: Some(10),
                correlation_data: Some(Bytes::from_static(b"c")),
                message_expiry_interval: NonZeroU32::new(99),
                content_type: Some("bin".into()),
                user_properties: vec![(bs("w"), bs("1"))],
                is_utf8_payload: Some(false),
                response_topic: Some("r/t".into()),
            }),
            client_id: "rm-5".into(),
            username: Some("u".into()),
            password: Some(Bytes::from_static(&[0xff, 0x00])),
            cert: None,
        }
    }

    #[test]
    fn connect() {
        let Packet::Connect(ours) = to_ours(v5::Packet::Connect(Box::new(their_connect()))) else {
            unreachable!()
        };
        ours_to_theirs(Packet::Connect(ours.clone()));
        ours_to_theirs(Packet::Connect(Box::new(Connect {
            properties: Properties::default(),
            will: None,
            username: None,
            password: None,
            ..*ours
        })));
        theirs_to_ours(v5::Packet::Connect(Box::new(their_connect())));
        theirs_to_ours(v5::Packet::Connect(Box::new(
            v5::Connect::default().client_id("min"),
        )));
    }

    #[test]
    fn connack() {
        let theirs = v5::ConnectAck {
            session_present: true,
            reason_code: v5::ConnectAckReason::Success,
            session_expiry_interval_secs: Some(60),
            receive_max: NonZeroU16::new(10).unwrap(),
            max_qos: their_qos(QoS::AtLeastOnce),
            max_packet_size: Some(2048),
            assigned_client_id: Some("given".into()),
            topic_alias_max: 7,
            retain_available: false,
            wildcard_subscription_available: false,
            subscription_identifiers_available: false,
            shared_subscription_available: false,
            server_keepalive_sec: Some(40),
            response_info: Some("ri".into()),
            server_reference: Some("sr".into()),
            auth_method: Some("am".into()),
            auth_data: Some(Bytes::from_static(b"ad")),
            reason_string: Some("welcome".into()),
            user_properties: vec![(bs("k"), bs("v"))],
        };
        let ours = to_ours(v5::Packet::ConnectAck(Box::new(theirs.clone())));
        ours_to_theirs(ours);
        theirs_to_ours(v5::Packet::ConnectAck(Box::new(theirs)));
        let refused = v5::ConnectAck {
            reason_code: v5::ConnectAckReason::Banned,
            ..Default::default()
        };
        ours_to_theirs(to_ours(v5::Packet::ConnectAck(Box::new(refused.clone()))));
        theirs_to_ours(v5::Packet::ConnectAck(Box::new(refused)));
    }

    #[test]
    fn publish() {
        for p in publish_variants(true) {
            ours_to_theirs(Packet::Publish(p.clone()));
            let theirs = rmqtt_codec::types::Publish {
                dup: p.dup,
                retain: p.retain,
                qos: their_qos(p.qos),
                topic: p.topic.clone(),
                packet_id: p.packet_id,
                payload: p.payload.clone(),
                properties: Some(v5::PublishProperties {
                    message_expiry_interval: NonZeroU32::new(60),
                    ..Default::default()
                }),
            };
            theirs_to_ours(v5::Packet::Publish(Box::new(theirs)));
        }
        let props = v5::PublishProperties {
            topic_alias: NonZeroU16::new(3),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            message_expiry_interval: NonZeroU32::new(1),
            content_type: Some("text/plain".into()),
            user_properties: vec![(bs("a"), bs("b")), (bs("a"), bs("b"))],
            is_utf8_payload: true,
            response_topic: Some("reply".into()),
            subscription_ids: [1, 128, 268_435_455]
                .into_iter()
                .filter_map(NonZeroU32::new)
                .collect(),
        };
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let theirs = rmqtt_codec::types::Publish {
                dup: false,
                retain: false,
                qos: their_qos(q),
                topic: "t".into(),
                packet_id: some_if(q != QoS::AtMostOnce, pid(9)),
                payload: Bytes::from_static(b"hello"),
                properties: Some(props.clone()),
            };
            ours_to_theirs(to_ours(v5::Packet::Publish(Box::new(theirs.clone()))));
            theirs_to_ours(v5::Packet::Publish(Box::new(theirs)));
        }
        // An empty topic with an alias is valid in v5.
        let aliased = rmqtt_codec::types::Publish {
            dup: false,
            retain: false,
            qos: their_qos(QoS::AtMostOnce),
            topic: "".into(),
            packet_id: None,
            payload: Bytes::new(),
            properties: Some(v5::PublishProperties {
                topic_alias: NonZeroU16::new(3),
                ..Default::default()
            }),
        };
        ours_to_theirs(to_ours(v5::Packet::Publish(Box::new(aliased.clone()))));
        theirs_to_ours(v5::Packet::Publish(Box::new(aliased)));
    }

    #[test]
    fn subscriptions() {
        let mut topic_filters = Vec::new();
        for rh in 0..3u8 {
            for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let opts = v5::SubscriptionOptions {
                    qos: their_qos(q),
                    no_local: rh == 1,
                    retain_as_published: rh != 1,
                    retain_handling: v5::RetainHandling::try_from(rh).unwrap(),
                };
                topic_filters.push((ByteString::from(format!("s/{rh}/{}", q.as_u8())), opts));
            }
        }
        let sub = v5::Subscribe {
            packet_id: pid(31),
            id: NonZeroU32::new(12),
            user_properties: vec![(bs("x"), bs("y"))],
            topic_filters: topic_filters.clone(),
        };
        ours_to_theirs(to_ours(v5::Packet::Subscribe(sub.clone())));
        theirs_to_ours(v5::Packet::Subscribe(sub));
        let plain = v5::Subscribe {
            packet_id: pid(32),
            id: None,
            user_properties: vec![],
            topic_filters,
        };
        ours_to_theirs(to_ours(v5::Packet::Subscribe(plain.clone())));
        theirs_to_ours(v5::Packet::Subscribe(plain));

        let suback = v5::SubscribeAck {
            packet_id: pid(31),
            properties: vec![(bs("k"), bs("v"))],
            reason_string: Some("some refused".into()),
            status: [
                0u8, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2,
            ]
            .into_iter()
            .map(|c| v5::SubscribeAckReason::try_from(c).unwrap())
            .collect(),
        };
        ours_to_theirs(to_ours(v5::Packet::SubscribeAck(suback.clone())));
        theirs_to_ours(v5::Packet::SubscribeAck(suback));

        let unsub = v5::Unsubscribe {
            packet_id: pid(33),
            user_properties: vec![(bs("u"), bs("p"))],
            topic_filters: vec![bs("a/#"), bs("b")],
        };
        ours_to_theirs(to_ours(v5::Packet::Unsubscribe(unsub.clone())));
        theirs_to_ours(v5::Packet::Unsubscribe(unsub));

        let unsuback = v5::UnsubscribeAck {
            packet_id: pid(33),
            properties: vec![],
            reason_string: None,
            status: [0u8, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91]
                .into_iter()
                .map(|c| v5::UnsubscribeAckReason::try_from(c).unwrap())
                .collect(),
        };
        ours_to_theirs(to_ours(v5::Packet::UnsubscribeAck(unsuback.clone())));
        theirs_to_ours(v5::Packet::UnsubscribeAck(unsuback));
    }

    #[test]
    fn publish_acknowledgements() {
        for (reason, with_props) in [(0u8, false), (0x10, false), (0x99, true), (0, true)] {
            let a = v5::PublishAck {
                packet_id: pid(41),
                reason_code: v5::PublishAckReason::try_from(reason).unwrap(),
                properties: if with_props {
                    vec![(bs("k"), bs("v"))]
                } else {
                    vec![]
                },
                reason_string: some_if(with_props, "because".into()),
            };
            ours_to_theirs(to_ours(v5::Packet::PublishAck(a.clone())));
            ours_to_theirs(to_ours(v5::Packet::PublishReceived(a.clone())));
            theirs_to_ours(v5::Packet::PublishAck(a.clone()));
            theirs_to_ours(v5::Packet::PublishReceived(a));
        }
        for (reason, with_props) in [(0u8, false), (0x92, false), (0x92, true)] {
            let a = v5::PublishAck2 {
                packet_id: pid(42),
                reason_code: v5::PublishAck2Reason::try_from(reason).unwrap(),
                properties: if with_props {
                    vec![(bs("k"), bs("v"))]
                } else {
                    vec![]
                },
                reason_string: some_if(with_props, "gone".into()),
            };
            ours_to_theirs(to_ours(v5::Packet::PublishRelease(a.clone())));
            ours_to_theirs(to_ours(v5::Packet::PublishComplete(a.clone())));
            theirs_to_ours(v5::Packet::PublishRelease(a.clone()));
            theirs_to_ours(v5::Packet::PublishComplete(a));
        }
    }

    #[test]
    fn ping_disconnect_and_auth() {
        ours_to_theirs(Packet::PingReq);
        ours_to_theirs(Packet::PingResp);
        theirs_to_ours(v5::Packet::PingRequest);
        theirs_to_ours(v5::Packet::PingResponse);

        for code in [
            v5::DisconnectReasonCode::NormalDisconnection,
            v5::DisconnectReasonCode::SessionTakenOver,
        ] {
            let plain = v5::Disconnect::new(code);
            ours_to_theirs(to_ours(v5::Packet::Disconnect(plain.clone())));
            theirs_to_ours(v5::Packet::Disconnect(plain));
            let full = v5::Disconnect {
                reason_code: code,
                session_expiry_interval_secs: Some(30),
                server_reference: Some("elsewhere".into()),
                reason_string: Some("bye".into()),
                user_properties: vec![(bs("a"), bs("b"))],
            };
            ours_to_theirs(to_ours(v5::Packet::Disconnect(full.clone())));
            theirs_to_ours(v5::Packet::Disconnect(full));
        }

        for (code, with_props) in [
            (v5::AuthReasonCode::Success, false),
            (v5::AuthReasonCode::ContinueAuth, true),
            (v5::AuthReasonCode::ReAuth, true),
        ] {
            let auth = v5::Auth {
                reason_code: code,
                auth_method: some_if(with_props, "SCRAM-SHA-256".into()),
                auth_data: some_if(with_props, Bytes::from_static(b"\x00\xffchallenge")),
                reason_string: some_if(with_props, "step".into()),
                user_properties: if with_props {
                    vec![(bs("k"), bs("v"))]
                } else {
                    vec![]
                },
            };
            ours_to_theirs(to_ours(v5::Packet::Auth(auth.clone())));
            theirs_to_ours(v5::Packet::Auth(auth));
        }
    }
}
