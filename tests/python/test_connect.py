"""CONNECT / CONNACK with paho-mqtt: reason codes, client ids, sessions."""

import socket

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from helpers import WAIT, Client, props, raw_read_packet


def test_connack_success(mqtt_client, version):
    c = mqtt_client(version, "py-connect", connect=False)
    rc, flags, p = c.connect()
    assert rc == 0
    assert not flags.session_present
    if version == mqtt.MQTTv5:
        # Limits announced with the default configuration.
        assert p.MaximumPacketSize == 1048576
        assert p.ReceiveMaximum == 1024
        assert p.TopicAliasMaximum == 64
        assert not hasattr(p, "AssignedClientIdentifier")
    c.disconnect()


def test_v5_empty_client_id_is_assigned(mqtt_client):
    c = mqtt_client(mqtt.MQTTv5, "", connect=False)
    rc, _, p = c.connect()
    assert rc == 0
    assigned = p.AssignedClientIdentifier
    assert assigned.startswith("sluice-"), assigned
    # Two clients get different ids.
    d = mqtt_client(mqtt.MQTTv5, "", connect=False)
    _, _, p2 = d.connect()
    assert p2.AssignedClientIdentifier != assigned


def test_v311_empty_client_id_with_clean_session(mqtt_client):
    c = mqtt_client(mqtt.MQTTv311, "", connect=False)
    rc, flags, _ = c.connect(clean=True)
    assert rc == 0 and not flags.session_present


def test_v311_empty_client_id_without_clean_session_is_refused(broker):
    # paho refuses to build such a client, so speak the bytes: CONNECT
    # "MQTT" level 4, flags 0 (clean session off), keep alive 60, id "".
    with socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT) as s:
        s.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x00, 0, 60, 0, 0]))
        assert raw_read_packet(s) == (0x20, bytes([0, 2]))  # CONNACK, rc 2 (identifier rejected)
        assert s.recv(1) == b""  # then the broker closes


def test_v5_bad_authentication_method_is_refused(mqtt_client):
    c = mqtt_client(mqtt.MQTTv5, "py-auth", connect=False)
    rc, _, _ = c.connect(properties=props(PacketTypes.CONNECT, AuthenticationMethod="SCRAM-SHA-1"), expect_ok=False)
    assert rc == 140  # 0x8C Bad authentication method
    assert rc.is_failure


def test_v5_request_response_information(mqtt_client):
    c = mqtt_client(mqtt.MQTTv5, "py-rri", connect=False)
    _, _, p = c.connect(properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    assert p.ResponseInformation == "sluice/response/py-rri"


def test_session_present_on_resume_and_not_after_clean(mqtt_client, version):
    c = mqtt_client(version, "py-resume", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert not flags.session_present
    c.disconnect()
    c = mqtt_client(version, "py-resume", connect=False)
    _, flags, _ = c.connect(clean=False, session_expiry=60)
    assert flags.session_present
    c.disconnect()
    c = mqtt_client(version, "py-resume", connect=False)
    _, flags, _ = c.connect(clean=True)
    assert not flags.session_present
    c.disconnect()


def test_takeover_closes_the_older_connection(mqtt_client, version):
    first = mqtt_client(version, "py-same")
    mqtt_client(version, "py-same")
    rc, _ = first.wait_closed()
    if version == mqtt.MQTTv5:
        assert rc == 142  # DISCONNECT 0x8E Session taken over
    else:
        assert rc.is_failure  # 3.1.1: the socket just closes


def test_max_connections_refused(broker_factory, version):
    b = broker_factory(SLUICE__LIMITS__MAX_CONNECTIONS="1")
    first = Client(b.port, version, "py-one")
    try:
        first.connect()
        second = Client(b.port, version, "py-two")
        rc, _, _ = second.connect(expect_ok=False)
        # v5: 0x89 Server busy; 3.1.1: return code 3, which paho maps to
        # the v5 name "Server unavailable".
        assert str(rc) == ("Server busy" if version == mqtt.MQTTv5 else "Server unavailable")
        second.close()
    finally:
        first.close()
