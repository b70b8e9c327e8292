"""WebSocket and WebSocket-over-TLS with a real browser-style client
(paho-mqtt's websockets transport), and TLS with certificates from
certs/generate.sh."""

import os
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import Broker

WAIT = 5.0


@pytest.fixture
def transports_broker(certs):
    config = f"""
[[listeners]]
bind = "127.0.0.1:0"
protocol = "ws"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "wss"
ws_path = "/mqtt"
[listeners.tls]
cert = "{certs}/server-chain.pem"
key = "{certs}/server.key"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "tls"
[listeners.tls]
cert = "{certs}/server-chain.pem"
key = "{certs}/server.key"
client_ca = "{certs}/ca.pem"
require_certificate = true
"""
    b = Broker(config=config)
    yield b
    b.stop()


def client(version, transport, tls_ca=None, cert=None, key=None):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version, transport=transport)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    if tls_ca:
        c.tls_set(ca_certs=tls_ca, certfile=cert, keyfile=key)
    got = {"connected": threading.Event(), "rc": None, "messages": [], "msg": threading.Event(), "sub": threading.Event()}

    def on_connect(cl, userdata, flags, rc, props=None):
        got["rc"] = rc
        got["connected"].set()

    def on_message(cl, userdata, m):
        got["messages"].append((m.topic, m.payload))
        got["msg"].set()

    def on_subscribe(cl, userdata, mid, rcs, props=None):
        got["sub"].set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.on_subscribe = on_subscribe
    return c, got


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_websocket_pub_sub(transports_broker, certs, version, kind):
    ca = f"{certs}/ca.pem" if kind == "wss" else None
    port = transports_broker.ports[kind]
    sub, sgot = client(version, "websockets", ca)
    pub, pgot = client(version, "websockets", ca)
    try:
        sub.connect("localhost", port)
        sub.loop_start()
        assert sgot["connected"].wait(WAIT) and not sgot["rc"].is_failure
        sub.subscribe("dash/#", qos=1)
        assert sgot["sub"].wait(WAIT)
        pub.connect("localhost", port)
        pub.loop_start()
        assert pgot["connected"].wait(WAIT)
        pub.publish("dash/temp", b"21.5", qos=1).wait_for_publish(WAIT)
        assert sgot["msg"].wait(WAIT)
        assert sgot["messages"][0] == ("dash/temp", b"21.5")
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_mutual_tls_with_paho(transports_broker, certs):
    port = transports_broker.ports["tls"]
    ok, got = client(mqtt.MQTTv5, "tcp", f"{certs}/ca.pem", f"{certs}/client.pem", f"{certs}/client.key")
    ok.connect("localhost", port)
    ok.loop_start()
    try:
        assert got["connected"].wait(WAIT) and not got["rc"].is_failure
    finally:
        ok.disconnect()
        ok.loop_stop()
    bad, bgot = client(mqtt.MQTTv5, "tcp", f"{certs}/ca.pem", f"{certs}/expired.pem", f"{certs}/expired.key")
    try:
        bad.connect("localhost", port)
        bad.loop_start()
    except (ssl.SSLError, OSError):
        return  # refused during the handshake
    try:
        # TLS 1.3 reports a refused client certificate after the handshake:
        # the broker must never accept the session.
        accepted = bgot["connected"].wait(2.0) and not bgot["rc"].is_failure
        assert not accepted, "expired client certificate was accepted"
    finally:
        bad.disconnect()
        bad.loop_stop()
