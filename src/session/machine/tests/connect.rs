//! CONNECT's pure rules.

use bytestring::ByteString;

use crate::codec::{Connect, Properties, ProtocolVersion, ReasonCode};
use crate::session::machine::{
    check_connect, check_will_topic, connack_properties, keep_alive, owner_check, session_expiry,
    ClientIdRule, ConnackInputs, OwnerCheck,
};
use crate::session::NEVER;

fn connect(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

#[test]
fn an_empty_client_id_is_assigned_except_for_a_311_persistent_session() {
    let rule = |v, clean| check_connect(&connect(v, "", clean), "$bridge/");
    assert_eq!(rule(V5, false), Ok(ClientIdRule::Assign));
    assert_eq!(rule(V311, true), Ok(ClientIdRule::Assign));
    assert_eq!(rule(V311, false), Err(ReasonCode::ClientIdentifierNotValid));
}

#[test]
fn the_reserved_prefix_is_refused() {
    let c = connect(V5, "$bridge/kafka", true);
    assert_eq!(
        check_connect(&c, "$bridge/"),
        Err(ReasonCode::ClientIdentifierNotValid)
    );
    let c = connect(V5, "device-1", true);
    assert_eq!(
        check_connect(&c, "$bridge/"),
        Ok(ClientIdRule::Given(ByteString::from("device-1")))
    );
}

#[test]
fn session_expiry_by_version_and_cap() {
    assert_eq!(session_expiry(&connect(V311, "c", true), 100).granted, 0);
    let persistent = session_expiry(&connect(V311, "c", false), 100);
    assert_eq!((persistent.requested, persistent.granted), (NEVER, 100));
    let mut c = connect(V5, "c", false);
    c.properties.session_expiry_interval = Some(50);
    assert_eq!(session_expiry(&c, 100).granted, 50);
}

#[test]
fn will_topics_obey_publish_rules() {
    assert_eq!(check_will_topic("a/b", 10, 3, true), Ok(()));
    assert_eq!(
        check_will_topic("$SYS/x", 10, 3, true),
        Err(ReasonCode::NotAuthorized)
    );
    assert_eq!(
        check_will_topic("a/b/c/d", 10, 3, true),
        Err(ReasonCode::TopicNameInvalid)
    );
    assert_eq!(
        check_will_topic("a/b/c/d", 10, 3, false),
        Err(ReasonCode::NotAuthorized)
    );
}

#[test]
fn a_session_belongs_to_its_identity() {
    let alice = ByteString::from("alice");
    let bob = ByteString::from("bob");
    assert_eq!(owner_check(None, Some(&bob), false), OwnerCheck::Same);
    assert_eq!(
        owner_check(Some((Some(&alice), false)), Some(&alice), false),
        OwnerCheck::Same
    );
    assert_eq!(
        owner_check(Some((Some(&alice), false)), Some(&bob), false),
        OwnerCheck::ForeignRefused
    );
    assert_eq!(
        owner_check(Some((Some(&alice), false)), Some(&bob), true),
        OwnerCheck::ForeignDiscard
    );
    assert_eq!(
        owner_check(Some((Some(&alice), true)), Some(&bob), false),
        OwnerCheck::Same,
        "an owner not known"
    );
}

#[test]
fn v311_keeps_its_requested_keep_alive() {
    let mut c = connect(V311, "c", true);
    c.keep_alive = 120;
    assert_eq!(keep_alive(&c, 60), (120, None));
    c.protocol = V5;
    assert_eq!(keep_alive(&c, 60), (60, Some(60)));
}

#[test]
fn connack_properties_say_what_differs_from_the_request() {
    let mut c = connect(V5, "", true);
    c.properties.request_response_information = Some(1);
    let id = ByteString::from("assigned-1");
    let expiry = session_expiry(&c, 100);
    let inputs = ConnackInputs {
        client_id: &id,
        assigned: true,
        server_keep_alive: Some(30),
        expiry,
        receive_maximum: u16::MAX,
        max_packet_size: 1024,
        topic_alias_maximum: 0,
        response_prefix: "reply/",
    };
    let p = connack_properties(&c, &inputs);
    assert_eq!(p.assigned_client_identifier.as_deref(), Some("assigned-1"));
    assert_eq!(p.server_keep_alive, Some(30));
    assert_eq!(p.session_expiry_interval, None, "granted as asked");
    assert_eq!(p.receive_maximum, None);
    assert_eq!(p.maximum_packet_size, Some(1024));
    assert_eq!(p.topic_alias_maximum, None);
    assert_eq!(p.response_information.as_deref(), Some("reply/assigned-1"));
    c.protocol = V311;
    assert_eq!(connack_properties(&c, &inputs), Properties::default());
}
