"""The dashboard's views of the broker's own state (Overview, Clients,
Subscriptions, Retained, Bridges; src/admin/dashboard) in headless Chromium
against a real broker, and the admin token form.

One broker serves the view tests: a TCP listener, a WS listener (the page's
Topics connection), at most 5 queued messages per session (so an offline
session drops), an HTTP bridge to a closed 127.0.0.1 port (so it fails and
keeps a backlog), a Kafka bridge to the same closed port (nothing routed to
it: it stays running, and librdkafka's connection errors count by code) and
an MQTT bridge to a second broker (its link is up). Each test uses its own client ids and topics. The
setup of test_dashboard.py (Selenium with Debian's chromium and
chromedriver) is reused; on failure a screenshot and the browser's console
log are saved in the test's tmp_path.

    python3 tests/python/test_dashboard_views.py --screenshots docs/

fills a broker with simulated sensors, clients, retained messages and a
failing bridge for a minute and saves docs/dashboard-<view>.png (the
README shows them; docs/dashboard.png, the Topics view, comes from
test_dashboard.py --screenshot).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO, Broker  # noqa: E402
from test_dashboard import browser_missing, evidence_on_failure, publish, start_browser, text, wait_for  # noqa: E402

# Against a cluster node (SLUICE_TEST_CLUSTER) the views differ on purpose:
# the cluster link's session is listed, and a persistent session's overflow
# waits in JetStream instead of being dropped.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SLUICE_TEST_CLUSTER")),
    reason="single-node views (the cluster lists its link and keeps overflow in JetStream)",
)


def closed_port():
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def views_config(dead_port, remote_port):
    return f"""
[[listeners]]
bind = "127.0.0.1:0"
protocol = "tcp"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "ws"

[limits]
max_queued_messages = 5

[[bridges]]
name = "hooks"
filters = ["alerts/#"]
qos = 1
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{dead_port}/hook"
timeout_secs = 1

[[bridges]]
name = "stream"
filters = ["stream/#"]
[bridges.sink]
kind = "kafka"
bootstrap_servers = "127.0.0.1:{dead_port}"
topic = "telemetry"

[[bridges]]
name = "uplink"
filters = ["uplink/#"]
[bridges.sink]
kind = "mqtt"
address = "127.0.0.1:{remote_port}"
client_id = "edge-1"
"""


def api(broker, path):
    """(status, JSON) of an admin API GET (from loopback: no token needed
    unless one is configured)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.ports['admin']}/api/v1/{path}", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def subscriber(broker, client_id, *filters):
    """A mosquitto_sub (MQTT 5: it leaves on the broker's DISCONNECT
    instead of reconnecting), connected when this returns."""
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.ports["tcp"]), "-V", "mqttv5", "-q", "1", "-i", client_id]
    for f in filters:
        args += ["-t", f]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(f"{client_id} to connect", lambda: api(broker, "clients/" + client_id)[1].get("connected"))
    return proc


def offline_session(broker, client_id, topic_filter):
    """A persistent session that subscribes and leaves."""
    subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.ports["tcp"]), "-c", "-E", "-q", "1",
                    "-i", client_id, "-t", topic_filter], check=True, timeout=10)


def overflow(broker, client_id, topic, messages=20):
    """An offline session on `topic`, then more QoS 1 messages than its
    queue holds (5): messages - 5 are dropped."""
    tcp = str(broker.ports["tcp"])
    offline_session(broker, client_id, topic)
    lines = "".join(f"m{i}\n" for i in range(messages))
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", tcp, "-q", "1", "-t", topic, "-l"],
                   input=lines, text=True, check=True, timeout=10)


def open_view(driver, broker, name):
    driver.get(f"http://127.0.0.1:{broker.ports['admin']}/dashboard/#{name}")
    wait_for(f"the {name} view", lambda: driver.execute_script("return document.body.dataset.view") == name)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def answer_confirm(driver, accept):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())
    alert = driver.switch_to.alert
    question = alert.text
    alert.accept() if accept else alert.dismiss()
    return question


def need_browser():
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the dashboard tests, but {missing} is missing (tests/install-deps.sh)")
        pytest.skip(f"headless Chromium not available ({missing} missing; tests/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def ops():
    need_browser()
    remote = Broker()
    b = Broker(config=views_config(closed_port(), remote.port))
    yield b
    b.stop()
    remote.stop()


@pytest.fixture(scope="module")
def page(ops):
    driver = start_browser()
    yield driver
    driver.quit()


def test_overview_cards_and_charts_over_the_last_minutes(page, ops, tmp_path):
    from selenium.webdriver.common.by import By

    open_view(page, ops, "overview")
    with evidence_on_failure(page, tmp_path):
        # The first sample: the charts' rates start from it.
        wait_for("the connected clients card", lambda: text(page, "#ov-connected").isdigit())
        publish(ops.ports["tcp"], "sensors/overview/1", "21.5")
        overflow(ops, "slow-overview", "load/overview")  # 15 dropped: queue_full

        rates = page.find_element(By.ID, "chart-rates")
        wait_for("the message rate chart", lambda: int(rates.get_attribute("data-points")) >= 2
                 and float(rates.get_attribute("data-max")) > 0)
        drops = page.find_element(By.ID, "chart-drops")
        wait_for("queue_full among the charted drops", lambda: "queue_full" in drops.get_attribute("data-reasons").split())
        assert "too_large" not in drops.get_attribute("data-reasons").split()  # nothing too large was sent
        assert int(text(page, "#ov-dropped")) >= 15
        clients = page.find_element(By.ID, "chart-clients")
        assert int(clients.get_attribute("data-points")) >= 2
        # A bridge that cannot deliver is counted on its card.
        publish(ops.ports["tcp"], "alerts/overview", '{"severity": 1}')
        wait_for("the failing bridge on its card", lambda: text(page, "#ov-bridges-note") == "bridges · 1 failing")
        assert text(page, "#ov-bridges") == "3"
        assert text(page, "#ov-uptime").endswith((" s", " min"))


def test_clients_search_detail_and_kick(page, ops, tmp_path):
    overflow(ops, "slow-clients", "load/clients")
    sub = subscriber(ops, "watcher-1", "plant/#", "plant/+/alarm")
    try:
        open_view(page, ops, "clients")
        with evidence_on_failure(page, tmp_path):
            box = css(page, "#clients-q")[0]
            box.send_keys("watcher")
            row = 'tr[data-client="watcher-1"]'
            wait_for("the client's row", lambda: css(page, row))
            # The search leaves out the other sessions.
            wait_for("only matching rows", lambda: [r.get_attribute("data-client") for r in css(page, "#clients-table tbody tr")]
                     == ["watcher-1"])
            cells = [td.text for td in css(page, row + " td")]
            assert cells[1:3] == ["connected", "5.0"], cells
            assert cells[3].startswith("127.0.0.1:"), cells

            # A session that lost messages shows its queue depth and drops.
            box.clear()
            box.send_keys("slow-clients")
            slow = 'tr[data-client="slow-clients"]'
            wait_for("the offline session", lambda: css(page, slow))
            cells = [td.text for td in css(page, slow + " td")]
            assert cells[1] == "offline" and cells[8:10] == ["5", "15"], cells  # queued, dropped
            assert not css(page, slow + " .kick")[0].is_displayed()  # not connected: nothing to kick

            box.clear()
            box.send_keys("watcher")
            wait_for("the client's row again", lambda: css(page, row))
            css(page, row)[0].click()
            wait_for("its subscriptions", lambda: css(page, '#client-detail[data-client="watcher-1"] li[data-filter="plant/+/alarm"]'))
            assert css(page, '#client-detail li[data-filter="plant/#"]')

            # Kick asks first: no means no.
            css(page, row + " .kick")[0].click()
            assert "watcher-1" in answer_confirm(page, accept=False)
            time.sleep(0.3)
            assert api(ops, "clients/watcher-1")[1]["connected"] is True
            css(page, row + " .kick")[0].click()
            answer_confirm(page, accept=True)
            # A clean session ends with its connection.
            wait_for("the session to be gone", lambda: api(ops, "clients/watcher-1")[0] == 404)
            assert sub.wait(timeout=5) is not None
            wait_for("its row to go", lambda: not css(page, row))
            assert "disconnected" in text(page, "#notice")
    finally:
        sub.kill()
        sub.wait()


def test_subscriptions_across_clients(page, ops, tmp_path):
    sub = subscriber(ops, "subs-a", "factory/+/temp", "factory/#")
    try:
        open_view(page, ops, "subscriptions")
        with evidence_on_failure(page, tmp_path):
            wait_for("both of its subscriptions", lambda: len(css(page, 'tr[data-client="subs-a"]')) == 2)
            # The bridge's own subscription is listed too.
            assert css(page, 'tr[data-client="$bridge/hooks"][data-filter="alerts/#"]')
            css(page, "#subs-q")[0].send_keys("factory/+")
            wait_for("only the matching filter", lambda: [(r.get_attribute("data-client"), r.get_attribute("data-filter"))
                                                          for r in css(page, "#subs-table tbody tr")]
                     == [("subs-a", "factory/+/temp")])
            assert text(page, '#subs-table tr[data-filter="factory/+/temp"] td:nth-child(3)') == "connected"
            # The client id leads to its session.
            css(page, '#subs-table tr[data-filter="factory/+/temp"] td:nth-child(2)')[0].click()
            wait_for("the Clients view on it", lambda: css(page, '#client-detail[data-client="subs-a"] li[data-filter="factory/#"]'))
    finally:
        sub.kill()
        sub.wait()


def test_subscriptions_endpoint_lists_every_session():
    """GET /api/v1/subscriptions, the list the Subscriptions view shows:
    every session's subscriptions (offline ones too), sorted by filter then
    client id, searchable by filter or client id, paged."""
    b = Broker()
    subs = []
    try:
        subs.append(subscriber(b, "sub-b", "x/+/t", "a/#"))
        subs.append(subscriber(b, "sub-a", "x/+/t"))
        subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-c", "-E", "-q", "2", "-i", "sub-off",
                        "-t", "m/n"], check=True, timeout=10)
        status, v = api(b, "subscriptions")
        assert status == 200
        listed = [(s["filter"], s["client_id"], s["qos"], s["connected"]) for s in v["items"]]
        assert listed == [("a/#", "sub-b", 1, True), ("m/n", "sub-off", 2, False),
                          ("x/+/t", "sub-a", 1, True), ("x/+/t", "sub-b", 1, True)], listed
        assert v["total"] == 4
        assert [(s["filter"], s["client_id"]) for s in api(b, "subscriptions?q=sub-b")[1]["items"]] == [
            ("a/#", "sub-b"), ("x/+/t", "sub-b")]
        assert [s["client_id"] for s in api(b, "subscriptions?q=%2B")[1]["items"]] == ["sub-a", "sub-b"]
        v = api(b, "subscriptions?offset=1&limit=2")[1]
        assert v["total"] == 4 and [s["filter"] for s in v["items"]] == ["m/n", "x/+/t"], v
    finally:
        for p in subs:
            p.kill()
            p.wait()
        b.stop()


def test_retained_filter_and_delete(page, ops, tmp_path):
    tcp = ops.ports["tcp"]
    for topic, payload in (("config/lamp-1", '{"on": true}'), ("config/lamp-2", '{"on": false}'), ("status/gateway", "up")):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tcp), "-r", "-q", "1", "-t", topic, "-m", payload],
                       check=True, timeout=10)
    open_view(page, ops, "retained")
    with evidence_on_failure(page, tmp_path):
        wait_for("the retained messages", lambda: len(css(page, '#retained-table tr[data-topic^="config/"]')) == 2)
        assert text(page, '#retained-table tr[data-topic="config/lamp-1"] td:nth-child(4)') == '{"on": true}'
        assert css(page, '#retained-table tr[data-topic="status/gateway"]')
        box = css(page, "#retained-filter")[0]
        box.clear()
        box.send_keys("config/#\n")
        wait_for("the filter to apply", lambda: not css(page, '#retained-table tr[data-topic="status/gateway"]'))
        assert text(page, "#retained-total") == "2 retained"

        css(page, '#retained-table tr[data-topic="config/lamp-1"] .delete')[0].click()
        assert "config/lamp-1" in answer_confirm(page, accept=True)
        wait_for("its row to go", lambda: not css(page, '#retained-table tr[data-topic="config/lamp-1"]'))
        assert api(ops, "retained?filter=config/lamp-1")[1]["total"] == 0
        assert api(ops, "retained?filter=config/%23")[1]["total"] == 1  # the other one stays
        assert css(page, '#retained-table tr[data-topic="config/lamp-2"]')


def test_bridges_state_backlog_errors_and_pause(page, ops, tmp_path):
    publish(ops.ports["tcp"], "alerts/site-1/pump", '{"severity": 5}')
    open_view(page, ops, "bridges")
    card = '[data-bridge="hooks"]'
    with evidence_on_failure(page, tmp_path):
        wait_for("the failing bridge", lambda: css(page, card + " .bridge-state")[0].get_attribute("data-state") == "failing")
        assert "connection refused" in text(page, card + " .error").lower()
        backlog = card + ' dl > div[data-key="backlog"] dd'
        wait_for("a backlog", lambda: int(text(page, backlog).split()[0]) >= 1)
        assert text(page, card + ' dl > div[data-key="oldest undelivered"] dd').endswith(" s")
        assert css(page, card + " .link")[0].is_displayed() is False  # an HTTP sink has no link
        # An MQTT sink's link to its remote broker.
        uplink = '[data-bridge="uplink"]'
        wait_for("the MQTT sink's link", lambda: css(page, uplink + ' .link[data-connected="true"]'))
        assert "1 connects" in text(page, uplink + " .link")
        assert css(page, uplink + " .bridge-state")[0].get_attribute("data-state") == "running"
        assert css(page, card + " .kafka")[0].is_displayed() is False  # nor a Kafka part
        # A Kafka sink's partitions (none yet: the cluster never answered)
        # and librdkafka's errors by code.
        stream = '[data-bridge="stream"]'
        wait_for("the Kafka client errors", lambda: "BROKER_TRANSPORT_FAILURE" in text(page, stream + " .kafka-errors"))
        assert "record errors: none" in text(page, stream + " .kafka-errors")
        assert css(page, stream + " .kafka-partitions thead th")[0].text == "topic"
        assert not css(page, stream + " .kafka-partitions tbody tr")

        toggle = css(page, card + " .toggle")[0]
        assert toggle.text == "Pause"
        toggle.click()
        wait_for("the paused state", lambda: css(page, card + " .bridge-state")[0].get_attribute("data-state") == "paused")
        assert api(ops, "bridges/hooks")[1]["state"] == "paused"
        wait_for("the resume button", lambda: css(page, card + " .toggle")[0].text == "Resume")
        css(page, card + " .toggle")[0].click()
        wait_for("the bridge to resume", lambda: api(ops, "bridges/hooks")[1]["state"] != "paused")
        wait_for("the page to follow", lambda: css(page, card + " .bridge-state")[0].get_attribute("data-state") != "paused")
        chart = css(page, "#chart-backlog")[0]
        wait_for("the backlog chart", lambda: int(chart.get_attribute("data-points")) >= 1)


TOKEN = "s3cret-token"
TOKEN_PROTOCOL = "sluice.bearer.czNjcmV0LXRva2Vu"  # base64url(TOKEN), no padding


@pytest.fixture
def guarded(tmp_path):
    """A broker whose admin API needs TOKEN (a TCP listener, no WebSocket
    one), and a browser."""
    need_browser()
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    b = Broker(config=f'[[listeners]]\nbind = "127.0.0.1:0"\nprotocol = "tcp"\n\n[admin]\ntoken_file = "{token_file}"\n')
    driver = start_browser()
    yield b, driver
    driver.quit()
    b.stop()


def test_token_form_when_the_api_needs_a_token(guarded, tmp_path):
    b, driver = guarded
    assert api(b, "broker")[0] == 401
    open_view(driver, b, "overview")
    with evidence_on_failure(driver, tmp_path):
        form = css(driver, "#token-form")[0]
        wait_for("the token form", form.is_displayed)
        assert text(driver, "#ov-connected") == "–"
        field = css(driver, "#token")[0]
        field.send_keys("wrong\n")
        wait_for("the refusal", lambda: "refused this token" in text(driver, "#token-why"))
        assert text(driver, "#ov-connected") == "–"
        field.send_keys(TOKEN + "\n")
        wait_for("the numbers", lambda: text(driver, "#ov-connected").isdigit())
        assert not form.is_displayed()
        assert driver.execute_script("return sessionStorage.getItem('sluice.admin-token')") == TOKEN
        # Kept for the tab's session: a reload needs no form.
        driver.refresh()
        wait_for("the numbers after a reload", lambda: text(driver, "#ov-connected").isdigit())
        assert not css(driver, "#token-form")[0].is_displayed()
        # A broker that went away is said so.
        assert not css(driver, "#api-error")[0].is_displayed()
        b.stop()
        wait_for("the page to notice", lambda: "cannot reach the broker's admin API" in text(driver, "#api-error"))


# Run before the page's scripts: config.json announces an admin WebSocket
# endpoint that needs the token (as the contract of issue 24 says), and
# every WebSocket the page opens is recorded with the subprotocols offered.
FAKE_ADMIN_ENDPOINT = """
(() => {
  const config = {listeners: [{protocol: "ws", port: Number(location.port), path: "/mqtt", admin: true}],
                  token_required: true};
  const realFetch = window.fetch;
  window.fetch = (url, options) => String(url).endsWith("config.json")
    ? Promise.resolve(new Response(JSON.stringify(config), {headers: {"Content-Type": "application/json"}}))
    : realFetch(url, options);
  window.openedSockets = [];
  window.WebSocket = class extends window.WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      window.openedSockets.push({url, protocols: [].concat(protocols)});
    }
  };
})();
"""


def test_admin_endpoint_is_offered_the_token_as_a_subprotocol(guarded, tmp_path):
    """The page's side of the admin listener's MQTT endpoint, whatever the
    broker serves there: with token_required it asks for the token at once,
    and offers it as `sluice.bearer.<base64url, no padding>` besides mqtt."""
    b, driver = guarded
    admin = b.ports["admin"]
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_ADMIN_ENDPOINT})
    driver.get(f"http://127.0.0.1:{admin}/dashboard/#topics")
    with evidence_on_failure(driver, tmp_path):
        opened = lambda: driver.execute_script("return window.openedSockets")  # noqa: E731
        wait_for("a first attempt", opened)
        assert opened()[0] == {"url": f"ws://127.0.0.1:{admin}/mqtt", "protocols": ["mqtt"]}
        assert css(driver, "#token-form")[0].is_displayed()
        css(driver, "#token")[0].send_keys(TOKEN + "\n")
        wait_for("an attempt with the token", lambda: opened()[-1]["protocols"] == ["mqtt", TOKEN_PROTOCOL])
        assert {s["url"] for s in opened()} == {f"ws://127.0.0.1:{admin}/mqtt"}


def test_topics_over_the_admin_endpoint_with_the_token(guarded, tmp_path):
    """With no WebSocket listener, the page uses the admin listener's own
    MQTT endpoint, offering the token as a subprotocol (the broker's side
    of issue 24: skipped where config.json has no admin endpoint yet)."""
    b, driver = guarded
    admin = b.ports["admin"]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/dashboard/config.json", timeout=5) as r:
        cfg = json.load(r)
    if not any(entry.get("admin") for entry in cfg["listeners"]):
        pytest.skip("this broker's config.json has no admin WebSocket endpoint")
    assert cfg.get("token_required") is True, cfg
    driver.get(f"http://127.0.0.1:{admin}/dashboard/#topics")
    with evidence_on_failure(driver, tmp_path):
        wait_for("the token form", css(driver, "#token-form")[0].is_displayed)
        css(driver, "#token")[0].send_keys(TOKEN + "\n")
        wait_for("the page to connect", lambda: css(driver, "#state")[0].get_attribute("data-state") == "connected")
        assert text(driver, "#url") == f"ws://127.0.0.1:{admin}/mqtt"
        publish(b.ports["tcp"], "sensors/admin-ws/1", "7.5")
        wait_for("the reading", lambda: text(driver, '#tree .row[data-topic="sensors/admin-ws/1"] .value') == "7.5")


def make_screenshots(out_dir):
    """The README's pictures of each view: a minute of simulated sensors,
    a few subscribers, retained messages, a session that drops and a
    bridge that cannot reach its sink."""
    sim = REPO / "target" / "debug" / "examples" / "sensor_sim"
    if not sim.exists():
        sys.exit(f"{sim} not found: cargo build --example sensor_sim")
    remote = Broker()
    b = Broker(config=views_config(closed_port(), remote.port))
    driver = start_browser(1400, 900)
    procs = []
    try:
        tcp = b.ports["tcp"]
        open_view(driver, b, "overview")
        procs.append(subprocess.Popen(
            [str(sim), "--port", str(tcp), "--count", "9", "--rate", "2", "--duration", "75"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i, filters in enumerate((["sensors/#"], ["sensors/site-1/#", "alerts/#"], ["sensors/+/+/telemetry"])):
            procs.append(subscriber(b, f"grafana-agent-{i + 1}", *filters))
        for site in (1, 2, 3):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tcp), "-r", "-q", "1",
                            "-t", f"config/site-{site}/thresholds", "-m", json.dumps({"temperature_max": 30 + site, "humidity_max": 80})],
                           check=True, timeout=10)
        for t in range(60):
            if t in (15, 40):
                offline_session(b, f"archiver-{t}", "sensors/#")  # the sensors fill its queue
            if t % 10 == 5:
                publish(tcp, f"alerts/site-{t % 3 + 1}/boiler", json.dumps({"severity": 4, "msg": "pressure high"}))
            if t % 4 == 0:
                publish(tcp, "uplink/site-1/summary", json.dumps({"sensors": 9, "t": t}))
            time.sleep(1)
        shots = {"overview": None, "clients": 'tr[data-client="archiver-15"]', "subscriptions": None,
                 "retained": None, "bridges": None}
        for view, click in shots.items():
            open_view(driver, b, view)
            time.sleep(2.5)
            if click:
                css(driver, click)[0].click()
                time.sleep(1)
            path = Path(out_dir) / f"dashboard-{view}.png"
            driver.save_screenshot(str(path))
            print(f"saved {path}")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        driver.quit()
        b.stop()
        remote.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--screenshots":
        make_screenshots(Path(sys.argv[2]).resolve())
    else:
        sys.exit(f"usage: {sys.argv[0]} --screenshots DIR  (the tests run under pytest)")
