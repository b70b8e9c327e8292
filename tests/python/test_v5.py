"""MQTT 5 features with paho-mqtt: properties passed through, request /
response, message expiry, subscription identifiers, subscription options,
shared subscriptions, topic aliases, reason codes and will options."""

import os
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from helpers import WAIT, Client, props, publish_props

V5 = mqtt.MQTTv5


def sub_props(identifier):
    return props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=identifier)


def test_user_properties_and_content_properties_pass_through(mqtt_client):
    sub = mqtt_client(V5, "py5-props-sub")
    sub.subscribe("tele/#", 1)
    pub = mqtt_client(V5, "py5-props-pub")
    user = [("site", "lyon"), ("unit", "celsius"), ("site", "paris"), ("ünï", "çødé")]
    pub.publish(
        "tele/k/temp",
        '{"t": 21.5}',
        qos=1,
        properties=publish_props(
            UserProperty=user,
            ContentType="application/json",
            PayloadFormatIndicator=1,
        ),
    )
    m = sub.recv()
    assert m.payload == b'{"t": 21.5}'
    assert m.properties.UserProperty == user  # order and duplicates kept
    assert m.properties.ContentType == "application/json"
    assert m.properties.PayloadFormatIndicator == 1
    assert not hasattr(m.properties, "MessageExpiryInterval")
    assert not hasattr(m.properties, "TopicAlias")


def test_properties_are_dropped_for_v311_subscribers(mqtt_client):
    sub = mqtt_client(mqtt.MQTTv311, "py5-old-sub")
    sub.subscribe("mix", 1)
    pub = mqtt_client(V5, "py5-mix-pub")
    pub.publish("mix", "x", qos=1, properties=publish_props(UserProperty=[("k", "v")], ContentType="text/plain"))
    m = sub.recv()
    assert (m.topic, m.payload, m.qos) == ("mix", b"x", 1)


def test_request_response_round_trip(mqtt_client):
    """The requester names a response topic and correlation data; the
    responder answers on that topic with the same correlation data."""
    responder = mqtt_client(V5, "py5-responder")
    responder.subscribe("svc/time/request", 1)

    requester = mqtt_client(V5, "py5-requester", connect=False)
    _, _, connack = requester.connect(properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    reply_to = connack.ResponseInformation + "/time"
    assert reply_to == "sluice/response/py5-requester/time"
    requester.subscribe(reply_to, 1)

    for n in range(3):
        corr = b"\x00req-" + bytes([n]) + b"\xff"
        requester.publish(
            "svc/time/request",
            f"what time? #{n}",
            qos=1,
            properties=publish_props(ResponseTopic=reply_to, CorrelationData=corr),
        )
        req = responder.recv()
        assert req.payload == f"what time? #{n}".encode()
        assert req.properties.ResponseTopic == reply_to
        assert req.properties.CorrelationData == corr
        responder.publish(
            req.properties.ResponseTopic,
            f"noon #{n}",
            qos=1,
            properties=publish_props(CorrelationData=req.properties.CorrelationData),
        )
        resp = requester.recv()
        assert (resp.topic, resp.payload) == (reply_to, f"noon #{n}".encode())
        assert resp.properties.CorrelationData == corr


def test_message_expiry_drops_expired_and_decrements_remaining(mqtt_client):
    c = mqtt_client(V5, "py5-exp", connect=False)
    c.connect(clean=False, session_expiry=60)
    c.subscribe("exp/#", 1)
    c.disconnect()
    pub = mqtt_client(V5, "py5-exp-pub")
    pub.publish("exp/short", "s", qos=1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish("exp/long", "l", qos=1, properties=publish_props(MessageExpiryInterval=60))
    pub.publish("exp/retained", "r", qos=1, retain=True, properties=publish_props(MessageExpiryInterval=1))
    time.sleep(1.6)
    c = mqtt_client(V5, "py5-exp", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert flags.session_present
    m = c.recv()
    assert m.topic == "exp/long"
    # 1.6 s of the 60 have passed; the broker sends the rest, rounded up.
    assert m.properties.MessageExpiryInterval in (58, 59)
    c.expect_nothing(0.2)
    # The expired retained message is gone for new subscribers too.
    fresh = mqtt_client(V5, "py5-exp-fresh")
    fresh.subscribe("exp/#", 1)
    fresh.expect_nothing(0.2)


def test_subscription_identifiers(mqtt_client):
    c = mqtt_client(V5, "py5-sid")
    c.subscribe("sid/#", 1, properties=sub_props(5))
    c.subscribe("sid/+/temp", 2, properties=sub_props(268435455))  # the largest
    c.subscribe("sid/plain", 1)  # no identifier
    pub = mqtt_client(V5, "py5-sid-pub")

    pub.publish("sid/k/temp", "both", qos=2)
    m = c.recv()
    assert m.qos == 2
    assert sorted(m.properties.SubscriptionIdentifier) == [5, 268435455]
    pub.publish("sid/k/hum", "one", qos=1)
    m = c.recv()
    assert m.properties.SubscriptionIdentifier == [5]
    pub.publish("sid/plain", "overlap with #", qos=1)
    m = c.recv()
    assert m.properties.SubscriptionIdentifier == [5]
    c.expect_nothing(0.2)

    # Re-subscribing without an identifier removes it from that subscription.
    c.subscribe("sid/#", 1)
    pub.publish("sid/k/hum", "none", qos=1)
    m = c.recv()
    assert not hasattr(m.properties, "SubscriptionIdentifier")


def test_subscription_identifier_on_retained_delivery(mqtt_client):
    pub = mqtt_client(V5, "py5-sidr-pub")
    pub.publish("sidr/a", "kept", qos=1, retain=True)
    c = mqtt_client(V5, "py5-sidr")
    c.subscribe("sidr/#", 1, properties=sub_props(77))
    m = c.recv()
    assert (m.payload, m.retain, m.properties.SubscriptionIdentifier) == (b"kept", True, [77])


def test_no_local(mqtt_client):
    c = mqtt_client(V5, "py5-nolocal")
    c.subscribe("chat/room", options=SubscribeOptions(qos=1, noLocal=True))
    other = mqtt_client(V5, "py5-nolocal-other")
    other.subscribe("chat/room", 1)
    c.publish("chat/room", "mine", qos=1)
    assert other.recv().payload == b"mine"  # others still get it
    c.expect_nothing(0.3)
    other.publish("chat/room", "theirs", qos=1)
    assert c.recv().payload == b"theirs"


def test_retain_handling_and_retain_as_published(mqtt_client):
    pub = mqtt_client(V5, "py5-rh-pub")
    pub.publish("rh/a", "kept", qos=1, retain=True)
    rh = SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE, SubscribeOptions.RETAIN_SEND_IF_NEW_SUB, SubscribeOptions.RETAIN_DO_NOT_SEND

    c = mqtt_client(V5, "py5-rh")
    # 0: sent on every subscribe.
    c.subscribe("rh/#", options=SubscribeOptions(qos=1, retainHandling=rh[0]))
    assert c.recv().payload == b"kept"
    c.subscribe("rh/#", options=SubscribeOptions(qos=1, retainHandling=rh[0]))
    assert c.recv().payload == b"kept"
    # 1: only when the subscription is new.
    c.subscribe("rh/#", options=SubscribeOptions(qos=1, retainHandling=rh[1]))
    c.expect_nothing(0.3)
    c.subscribe("rh/+", options=SubscribeOptions(qos=1, retainHandling=rh[1]))
    assert c.recv().payload == b"kept"
    # 2: never.
    d = mqtt_client(V5, "py5-rh-never")
    d.subscribe("rh/#", options=SubscribeOptions(qos=1, retainHandling=rh[2]))
    d.expect_nothing(0.3)

    # Retain as published: live messages keep their RETAIN flag.
    e = mqtt_client(V5, "py5-rap")
    e.subscribe("rap/#", options=SubscribeOptions(qos=1, retainAsPublished=True))
    f = mqtt_client(V5, "py5-norap")
    f.subscribe("rap/#", options=SubscribeOptions(qos=1, retainAsPublished=False))
    pub.publish("rap/x", "r", qos=1, retain=True)
    pub.publish("rap/y", "n", qos=1, retain=False)
    assert [(m.topic, m.retain) for m in e.recv_n(2)] == [("rap/x", True), ("rap/y", False)]
    assert [(m.topic, m.retain) for m in f.recv_n(2)] == [("rap/x", False), ("rap/y", False)]


def test_shared_subscription_balances_between_members(mqtt_client):
    members = [mqtt_client(V5, f"py5-worker-{i}") for i in range(2)]
    for m in members:
        assert m.subscribe("$share/workers/jobs/#", 1) == [1]
    other_group = mqtt_client(V5, "py5-auditor")
    other_group.subscribe("$share/audit/jobs/#", 1)
    plain = mqtt_client(V5, "py5-plain")
    plain.subscribe("jobs/#", 1)

    pub = mqtt_client(V5, "py5-jobs-pub")
    for i in range(10):
        pub.publish(f"jobs/{i}", str(i), qos=1)

    # Round robin: each message to exactly one member, five each.
    got = [[msg.payload.decode() for msg in m.recv_n(5)] for m in members]
    for m in members:
        m.expect_nothing(0.2)
    assert sorted(got[0] + got[1], key=int) == [str(i) for i in range(10)]
    assert Counter(len(g) for g in got) == Counter({5: 2})
    # Every group gets its copy, and so does a plain subscriber.
    assert [m.payload.decode() for m in other_group.recv_n(10)] == [str(i) for i in range(10)]
    assert [m.payload.decode() for m in plain.recv_n(10)] == [str(i) for i in range(10)]


def test_shared_subscription_ignores_retained_and_survives_member_leaving(mqtt_client):
    pub = mqtt_client(V5, "py5-share-pub")
    pub.publish("q/jobs", "retained", qos=1, retain=True)
    a = mqtt_client(V5, "py5-share-a")
    a.subscribe("$share/g/q/#", 1)
    a.expect_nothing(0.2)  # no retained messages for shared subscriptions
    b = mqtt_client(V5, "py5-share-b")
    b.subscribe("$share/g/q/#", 1)
    b.disconnect()  # b's session (expiry 0) ends with its subscription
    for i in range(4):
        pub.publish("q/jobs", str(i), qos=1)
    assert [m.payload for m in a.recv_n(4)] == [b"0", b"1", b"2", b"3"]


def test_no_local_on_shared_subscription_is_a_protocol_error(mqtt_client):
    c = mqtt_client(V5, "py5-share-nolocal")
    c.c.subscribe("$share/g/x", options=SubscribeOptions(qos=1, noLocal=True))
    rc, _ = c.wait_closed()
    assert rc == 130  # DISCONNECT 0x82 Protocol error


@pytest.mark.skipif(
    bool(os.environ.get("SLUICE_TEST_CLUSTER")),
    reason="a cluster node does not know whether another node has a subscriber: it says 0x00 (the spec's MAY)",
)
def test_puback_reason_no_matching_subscribers(mqtt_client):
    pub = mqtt_client(V5, "py5-nomatch")
    assert pub.publish("nobody/listens", "x", qos=1) == 16  # 0x10
    sub = mqtt_client(V5, "py5-nomatch-sub")
    sub.subscribe("nobody/#", 1)
    assert pub.publish("nobody/listens", "y", qos=1) == 0


def test_topic_alias_from_client(mqtt_client):
    sub = mqtt_client(V5, "py5-alias-sub")
    sub.subscribe("alias/#", 1)
    pub = mqtt_client(V5, "py5-alias-pub")
    pub.publish("alias/long/topic/name", "1", qos=1, properties=publish_props(TopicAlias=3))
    pub.publish("", "2", qos=1, properties=publish_props(TopicAlias=3))
    got = [(m.topic, m.payload) for m in sub.recv_n(2)]
    assert got == [("alias/long/topic/name", b"1"), ("alias/long/topic/name", b"2")]


def test_topic_alias_above_maximum_disconnects_0x94(mqtt_client):
    pub = mqtt_client(V5, "py5-alias-bad")
    pub.c.publish("a", "x", qos=0, properties=publish_props(TopicAlias=65))
    rc, _ = pub.wait_closed()
    assert rc == 148  # Topic alias invalid


def test_broker_uses_topic_aliases_when_client_allows(mqtt_client):
    sub = mqtt_client(V5, "py5-out-alias", connect=False)
    sub.connect(properties=props(PacketTypes.CONNECT, TopicAliasMaximum=2))
    sub.subscribe("oa/#", 1)
    pub = mqtt_client(V5, "py5-out-alias-pub")
    for t in ["oa/first", "oa/first", "oa/second", "oa/third", "oa/first"]:
        pub.publish(t, t, qos=1)
    # paho 2.x does not resolve incoming aliases: the application sees the
    # wire form, which shows what the broker chose.
    msgs = sub.recv_n(5)
    wire = [(m.topic, getattr(m.properties, "TopicAlias", None), m.payload.decode()) for m in msgs]
    assert wire == [
        ("oa/first", 1, "oa/first"),  # alias 1 set up
        ("", 1, "oa/first"),  # then used alone
        ("oa/second", 2, "oa/second"),
        ("oa/third", None, "oa/third"),  # the client allowed only 2
        ("", 1, "oa/first"),
    ]
    sub.expect_nothing(0.1)


def test_client_maximum_packet_size_is_respected(mqtt_client):
    sub = mqtt_client(V5, "py5-small", connect=False)
    sub.connect(properties=props(PacketTypes.CONNECT, MaximumPacketSize=128))
    sub.subscribe("mps/#", 1)
    pub = mqtt_client(V5, "py5-small-pub")
    pub.publish("mps/big", b"x" * 500, qos=1)
    pub.publish("mps/small", b"y", qos=1)
    m = sub.recv()
    assert (m.topic, m.payload) == ("mps/small", b"y")
    sub.expect_nothing(0.2)


def test_packet_larger_than_broker_maximum_gets_disconnect_0x95(broker_factory):
    b = broker_factory(SLUICE__LIMITS__MAX_PACKET_SIZE="1024")
    c = Client(b.port, V5, "py5-huge")
    try:
        _, _, p = c.connect()
        assert p.MaximumPacketSize == 1024
        # paho does not enforce the server's maximum itself.
        c.c.publish("big", b"z" * 2000, qos=0)
        rc, _ = c.wait_closed()
        assert rc == 149  # Packet too large
    finally:
        c.close()


def test_disconnect_with_will_message_sends_the_will(mqtt_client):
    watcher = mqtt_client(V5, "py5-dww-watch")
    watcher.subscribe("dww/#", 1)
    c = mqtt_client(V5, "py5-dww", connect=False)
    c.will("dww/status", "bye with will", qos=1)
    c.connect()
    c.c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    c.wait_closed()
    m = watcher.recv()
    assert (m.topic, m.payload) == ("dww/status", b"bye with will")


def test_will_delay_and_resumption_cancels_the_will(mqtt_client):
    watcher = mqtt_client(V5, "py5-wd-watch")
    watcher.subscribe("wd/#", 1)
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=1, UserProperty=[("why", "lost")])

    # Reconnecting within the delay: no will.
    c = mqtt_client(V5, "py5-wd", connect=False)
    c.will("wd/status", "offline", qos=1, properties=will_props)
    c.connect(clean=False, session_expiry=30)
    c.kill()
    c = mqtt_client(V5, "py5-wd", connect=False)
    c.will("wd/status", "offline", qos=1, properties=will_props)
    c.connect(clean=False, session_expiry=30)
    watcher.expect_nothing(1.3)

    # Staying away: the will goes out after about a second, with its properties.
    t0 = time.monotonic()
    c.kill()
    m = watcher.recv(timeout=WAIT)
    elapsed = time.monotonic() - t0
    assert (m.topic, m.payload) == ("wd/status", b"offline")
    assert m.properties.UserProperty == [("why", "lost")]
    assert 0.8 <= elapsed <= 4.5, elapsed


def test_receive_maximum_limits_unacknowledged_deliveries(mqtt_client):
    c = mqtt_client(V5, "py5-rm", connect=False, manual_ack=True)
    c.connect(properties=props(PacketTypes.CONNECT, ReceiveMaximum=2))
    c.subscribe("rm/#", 1)
    pub = mqtt_client(V5, "py5-rm-pub")
    for i in range(5):
        pub.publish(f"rm/{i}", str(i), qos=1)
    first = c.recv_n(2)
    assert [m.topic for m in first] == ["rm/0", "rm/1"]
    c.expect_nothing(0.3)  # window full
    c.c.ack(first[0].mid, 1)
    assert c.recv().topic == "rm/2"
    c.expect_nothing(0.3)
    c.c.ack(first[1].mid, 1)
    assert c.recv().topic == "rm/3"


def test_session_expiry_changed_at_disconnect(mqtt_client):
    c = mqtt_client(V5, "py5-sexp", connect=False)
    c.connect(clean=False, session_expiry=60)
    c.subscribe("sexp/#", 1)
    # DISCONNECT with Session Expiry Interval 0: the session ends now.
    c.c.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    c.wait_closed()
    time.sleep(0.05)
    c = mqtt_client(V5, "py5-sexp", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert not flags.session_present


def test_session_expiry_cannot_be_raised_from_zero_at_disconnect(mqtt_client):
    c = mqtt_client(V5, "py5-sexp0", connect=False)
    c.connect(clean=True)  # no Session Expiry Interval: 0
    c.c.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=60))
    c.wait_closed()
    # The broker answers the protocol error by closing; the session is not kept.
    time.sleep(0.05)
    c = mqtt_client(V5, "py5-sexp0", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert not flags.session_present
