"""The dashboard on the defaults: `sluice --bind ...` has one TCP listener
and no WebSocket listener, so the page talks MQTT over WebSocket to the
admin listener's own `/mqtt` (admin.mqtt_websocket). This is what a fresh
`cargo run --release` followed by opening /dashboard/ does."""

import json
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Broker  # noqa: E402
from test_dashboard import browser, evidence_on_failure, publish, text, wait_connected, wait_for  # noqa: E402,F401


@pytest.fixture
def default_broker():
    b = Broker()
    yield b
    b.stop()


def test_dashboard_works_on_the_defaults(browser, default_broker, tmp_path):  # noqa: F811
    admin, tcp = default_broker.ports["admin"], default_broker.port
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/dashboard/config.json", timeout=5) as r:
        cfg = json.load(r)
    assert cfg["listeners"] == [{"protocol": "ws", "port": admin, "path": "/mqtt", "admin": True}], cfg
    assert cfg["token_required"] is False

    # The overview first: the broker's state, its own connection counted.
    browser.get(f"http://127.0.0.1:{admin}/dashboard/")
    with evidence_on_failure(browser, tmp_path):
        wait_connected(browser)
        assert text(browser, "#url") == f"ws://127.0.0.1:{admin}/mqtt"
        wait_for("the page's connection counted", lambda: text(browser, "#ov-connected") == "1")
        browser.get(f"http://127.0.0.1:{admin}/dashboard/#topics")
        wait_connected(browser)
        publish(tcp, "sensors/kitchen/temp", "21.5")
        row = '#tree .row[data-topic="sensors/kitchen/temp"]'
        wait_for("the reading", lambda: text(browser, row + " .value") == "21.5")
