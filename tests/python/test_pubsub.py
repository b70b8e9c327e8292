"""Publish / subscribe with paho-mqtt over MQTT 3.1.1 and 5.0: QoS flows,
wildcards, $-topics, retained messages, wills, persistent sessions and
unsubscribe."""

import socket
import time

import paho.mqtt.client as mqtt
import pytest

from helpers import WAIT, raw_read_packet


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_qos_delivery_is_min_of_publish_and_subscription(mqtt_client, version, pub_qos, sub_qos):
    sub = mqtt_client(version, "py-sub")
    assert sub.subscribe("qos/test", sub_qos) == [sub_qos]
    pub = mqtt_client(version, "py-pub")
    payload = bytes(range(256)) + b"\x00end"
    pub.publish("qos/test", payload, qos=pub_qos)
    m = sub.recv()
    assert (m.topic, m.payload, m.qos, m.retain) == ("qos/test", payload, min(pub_qos, sub_qos), False)
    assert not m.dup
    sub.expect_nothing(0.1)


@pytest.mark.parametrize("qos_cycle", [(0, 1), (2,)], ids=["qos0+1", "qos2"])
def test_messages_from_one_publisher_arrive_in_order(mqtt_client, version, qos_cycle):
    # paho hands a QoS 2 message to the application at PUBREL, after any
    # QoS 0/1 message that arrived meanwhile, so QoS 2 is checked on its own.
    sub = mqtt_client(version, "py-order-sub")
    sub.subscribe("order/#", 2)
    pub = mqtt_client(version, "py-order-pub")
    sent = []
    for i in range(30):
        qos = qos_cycle[i % len(qos_cycle)]
        info = pub.c.publish(f"order/{i}", str(i), qos=qos)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        sent.append((f"order/{i}", qos))
    got = [(m.topic, m.qos) for m in sub.recv_n(30)]
    assert got == sent


def test_wildcards(mqtt_client, version):
    sub = mqtt_client(version, "py-wild")
    assert sub.subscribe([("site/+/temp", 1), ("fleet/#", 1), ("+", 1)]) == [1, 1, 1]
    pub = mqtt_client(version, "py-wild-pub")
    topics = [
        "site/a/temp",  # + matches one level
        "site/a/b/temp",  # not two
        "site//temp",  # an empty level is a level
        "fleet",  # '#' includes the parent
        "fleet/x/y/z",
        "fleetx",  # not matched by fleet/# (no prefix match), but by '+'
        "top",  # '+' alone: single-level topics
        "/top",  # two levels: no
    ]
    for t in topics:
        pub.publish(t, t, qos=1)
    got = [m.topic for m in sub.recv_n(6)]
    # "fleet" matches both "fleet/#" and "+" and comes once.
    assert got == ["site/a/temp", "site//temp", "fleet", "fleet/x/y/z", "fleetx", "top"]
    sub.expect_nothing(0.2)


def test_dollar_topics_are_not_matched_by_leading_wildcards(mqtt_client, version):
    sub = mqtt_client(version, "py-dollar")
    sub.subscribe([("#", 1), ("+/status", 1)])
    explicit = mqtt_client(version, "py-dollar-explicit")
    explicit.subscribe([("$app/#", 1), ("$SYS/broker/fake", 1)])
    pub = mqtt_client(version, "py-dollar-pub")
    pub.publish("$app/status", "d", qos=1)
    pub.publish("$SYS/broker/fake", "s", qos=1)  # clients cannot publish into $SYS
    pub.publish("dev/status", "n", qos=1)
    m = explicit.recv()
    assert (m.topic, m.payload) == ("$app/status", b"d")
    explicit.expect_nothing(0.2)
    m = sub.recv()
    assert (m.topic, m.payload) == ("dev/status", b"n")
    sub.expect_nothing(0.2)


def test_invalid_filters_are_refused_in_suback(broker, version):
    # paho validates filters itself, so this one speaks the bytes.
    v5 = version == mqtt.MQTTv5
    props = b"\x00" if v5 else b""
    body = b"\x00\x04MQTT" + bytes([5 if v5 else 4, 0x02, 0, 60]) + props + b"\x00\x02py"
    filters = [(b"ok/#", 1), (b"bad/#/x", 1), (b"a+/b", 0), (b"x/+/y", 2)]
    sub = b"\x00\x07" + props + b"".join(len(f).to_bytes(2, "big") + f + bytes([q]) for f, q in filters)
    with socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT) as s:
        s.sendall(bytes([0x10, len(body)]) + body + bytes([0x82, len(sub)]) + sub)
        first, connack = raw_read_packet(s)
        assert first == 0x20 and connack[1] == 0
        first, suback = raw_read_packet(s)
        # v5: 0x8F Topic filter invalid; 3.1.1: 0x80 Failure.
        bad = 0x8F if v5 else 0x80
        assert (first, suback) == (0x90, b"\x00\x07" + props + bytes([1, bad, bad, 2]))


def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(mqtt_client, version):
    sub = mqtt_client(version, "py-overlap")
    sub.subscribe([("ov/#", 0), ("ov/+", 2), ("ov/a", 1)])
    pub = mqtt_client(version, "py-overlap-pub")
    pub.publish("ov/a", "x", qos=2)
    m = sub.recv()
    assert (m.topic, m.qos) == ("ov/a", 2)
    sub.expect_nothing(0.2)


def test_retained_store_replace_and_clear(mqtt_client, version):
    pub = mqtt_client(version, "py-ret-pub")
    pub.publish("ret/a", "first", qos=1, retain=True)
    pub.publish("ret/a", "second", qos=1, retain=True)
    pub.publish("ret/b", "b", qos=0, retain=True)
    time.sleep(0.05)  # QoS 0 has no acknowledgement to wait for

    later = mqtt_client(version, "py-ret-later")
    later.subscribe("ret/#", 1)
    got = sorted((m.topic, m.payload, m.retain, m.qos) for m in later.recv_n(2))
    assert got == [("ret/a", b"second", True, 1), ("ret/b", b"b", True, 0)]
    later.expect_nothing(0.1)

    # Live delivery of a retained publish to an existing subscription: no RETAIN flag.
    pub.publish("ret/a", "live", qos=1, retain=True)
    m = later.recv()
    assert (m.topic, m.payload, m.retain) == ("ret/a", b"live", False)

    # An empty retained message clears the topic (and is delivered live as such).
    pub.publish("ret/a", b"", qos=1, retain=True)
    m = later.recv()
    assert (m.topic, m.payload, m.retain) == ("ret/a", b"", False)

    fresh = mqtt_client(version, "py-ret-fresh")
    fresh.subscribe("ret/#", 1)
    m = fresh.recv()
    assert (m.topic, m.payload, m.retain) == ("ret/b", b"b", True)
    fresh.expect_nothing(0.2)


def test_will_on_abnormal_disconnect_only(mqtt_client, version):
    watcher = mqtt_client(version, "py-will-watch")
    watcher.subscribe("will/#", 1)

    polite = mqtt_client(version, "py-will-polite", connect=False)
    polite.will("will/polite", "should not appear", qos=1)
    polite.connect()
    polite.disconnect()
    watcher.expect_nothing(0.3)

    victim = mqtt_client(version, "py-will-victim", connect=False)
    victim.will("will/victim", "gone", qos=1, retain=True)
    victim.connect()
    victim.kill()  # socket closed without DISCONNECT
    m = watcher.recv()
    assert (m.topic, m.payload, m.qos, m.retain) == ("will/victim", b"gone", 1, False)

    # A retained will stays for later subscribers.
    later = mqtt_client(version, "py-will-later")
    later.subscribe("will/#", 1)
    m = later.recv()
    assert (m.topic, m.payload, m.retain) == ("will/victim", b"gone", True)


def test_persistent_session_receives_offline_messages(mqtt_client, version):
    c = mqtt_client(version, "py-persist", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=300)
    assert not flags.session_present
    c.subscribe([("inbox/#", 2)])
    c.disconnect()

    pub = mqtt_client(version, "py-persist-pub")
    # QoS 2 last: paho hands QoS 2 messages over only at PUBREL.
    pub.publish("inbox/1", "one", qos=1)
    pub.publish("inbox/2", "two", qos=1)
    pub.publish("inbox/3", "three", qos=2)

    c = mqtt_client(version, "py-persist", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=300)
    assert flags.session_present
    got = [(m.topic, m.payload, m.qos) for m in c.recv_n(3)]
    assert got == [("inbox/1", b"one", 1), ("inbox/2", b"two", 1), ("inbox/3", b"three", 2)]
    # The subscription survived too.
    pub.publish("inbox/4", "four", qos=1)
    assert c.recv().topic == "inbox/4"
    c.disconnect()

    # Clean start / clean session: the old session and its queue are gone.
    pub.publish("inbox/5", "lost", qos=1)
    c = mqtt_client(version, "py-persist", connect=False)
    _, flags, _ = c.connect(clean=True)
    assert not flags.session_present
    c.expect_nothing(0.3)


def test_unsubscribe(mqtt_client, version):
    c = mqtt_client(version, "py-unsub")
    c.subscribe([("u/a", 1), ("u/b", 1)])
    rcs = c.unsubscribe(["u/a", "u/never"])
    if version == mqtt.MQTTv5:
        assert rcs == [0, 17]  # Success, No subscription existed
    pub = mqtt_client(version, "py-unsub-pub")
    pub.publish("u/a", "a", qos=1)
    pub.publish("u/b", "b", qos=1)
    assert c.recv().topic == "u/b"
    c.expect_nothing(0.2)


def test_unacknowledged_message_is_redelivered_with_dup(mqtt_client, version):
    c = mqtt_client(version, "py-redeliver", connect=False, manual_ack=True)
    c.connect(clean=False, session_expiry=60)
    c.subscribe("rd/#", 1)
    pub = mqtt_client(version, "py-redeliver-pub")
    pub.publish("rd/1", "once", qos=1)
    m = c.recv()
    assert (m.topic, m.dup) == ("rd/1", False)
    c.kill()  # never acknowledged

    c = mqtt_client(version, "py-redeliver", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert flags.session_present
    m = c.recv()
    assert (m.topic, m.payload, m.qos, m.dup) == ("rd/1", b"once", 1, True)
    c.expect_nothing(0.2)


def test_keep_alive_timeout_closes_and_publishes_will(mqtt_client, version):
    watcher = mqtt_client(version, "py-ka-watch")
    watcher.subscribe("ka/#", 1)
    c = mqtt_client(version, "py-ka", connect=False)
    c.will("ka/status", "timed out", qos=1)
    c.connect(keepalive=1)
    t0 = time.monotonic()
    c.stall()  # silent, socket still open
    m = watcher.recv(timeout=WAIT)
    elapsed = time.monotonic() - t0
    assert (m.topic, m.payload) == ("ka/status", b"timed out")
    # 1.5 x keep alive, measured from the last packet (CONNECT).
    assert 1.0 <= elapsed <= 4.5, elapsed


@pytest.mark.parametrize(
    "filter_, topic",
    [
        ("odd topics/with spaces/+", "odd topics/with spaces/ünïcødé ✓"),
        ("dots.in/a.level/#", "dots.in/a.level/x.y"),
        ("/leading//empty/", "/leading//empty/"),
        ("long/" + "l" * 2000 + "/#", "long/" + "l" * 2000 + "/end"),
        ("$app/+/status", "$app/unit-7/status"),
    ],
    ids=["spaces-unicode", "dots", "empty-levels", "long", "dollar"],
)
def test_persistent_subscriber_gets_unusual_topics(mqtt_client, filter_, topic):
    """A persistent session's unusual filters (in a cluster: the subject
    filters of its JetStream consumer) are granted and deliver."""
    sub = mqtt_client(mqtt.MQTTv5, "py-odd-sub", connect=False)
    sub.connect(clean=False, session_expiry=300)
    assert sub.subscribe(filter_, 1) == [1]
    pub = mqtt_client(mqtt.MQTTv5, "py-odd-pub")
    pub.publish(topic, "x", qos=1)
    m = sub.recv()
    assert (m.topic, m.payload, m.qos) == (topic, b"x", 1)
    sub.expect_nothing(0.2)
