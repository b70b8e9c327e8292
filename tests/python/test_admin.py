"""The admin listener over HTTPS with a bearer token, as an operator's
script (Python's urllib) uses it; and the ALPN each TLS listener offers."""

import json
import socket
import ssl
import urllib.error
import urllib.request

import pytest

from conftest import Broker


@pytest.fixture
def https_broker(certs, tmp_path):
    token = tmp_path / "token"
    token.write_text("py-admin-token\n")
    config = f"""
[[listeners]]
bind = "127.0.0.1:0"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "wss"
[listeners.tls]
cert = "{certs}/server-chain.pem"
key = "{certs}/server.key"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "tls"
[listeners.tls]
cert = "{certs}/server-chain.pem"
key = "{certs}/server.key"

[admin]
token_file = "{token}"
tls_cert = "{certs}/server-chain.pem"
tls_key = "{certs}/server.key"
"""
    b = Broker(config=config)
    yield b
    b.stop()


def get(broker, certs, path, token=None):
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    req = urllib.request.Request(f"https://localhost:{broker.ports['admin']}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_admin_over_https_needs_the_token(https_broker, certs):
    status, body = get(https_broker, certs, "/healthz")
    assert (status, body.strip()) == (200, "ok")
    status, _ = get(https_broker, certs, "/api/v1/broker")
    assert status == 401
    status, body = get(https_broker, certs, "/api/v1/broker", token="py-admin-token")
    assert status == 200
    assert json.loads(body)["version"]


def negotiated_alpn(port, offered, certs):
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    ctx.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.selected_alpn_protocol()


def test_each_tls_listener_offers_the_protocol_it_speaks(https_broker, certs):
    # Browsers offer h2 and http/1.1 for a WebSocket: a wss listener must
    # accept http/1.1 (it offered only "mqtt" once, and browsers failed).
    assert negotiated_alpn(https_broker.ports["wss"], ["h2", "http/1.1"], certs) == "http/1.1"
    assert negotiated_alpn(https_broker.ports["tls"], ["mqtt"], certs) == "mqtt"
    # The admin listener speaks HTTP/1.1.
    assert negotiated_alpn(https_broker.ports["admin"], ["h2", "http/1.1"], certs) == "http/1.1"
