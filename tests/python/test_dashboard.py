"""The live dashboard (src/admin/dashboard, served at /dashboard/ by the admin
listener) in headless Chromium, connected back to the broker over WSS with
the development certificates.

Debian's `chromium` and `chromium-driver` drive it through Selenium
(tests/install-deps.sh installs all three); nothing is downloaded at test
time. The browser ignores certificate errors for the test only: the page is
served over plain HTTP, and the WSS listener's certificate is from the
throw-away CA of certs/generate.sh. Readings are published with
mosquitto_pub over TCP. On failure a screenshot and the browser's console
log are saved in the test's tmp_path (the paths are printed).

    python3 tests/python/test_dashboard.py --screenshot docs/dashboard.png

runs the same setup with the sensor simulator (target/debug/examples/
sensor_sim) feeding it, and saves the screenshot the README shows.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO, Broker  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0


def browser_missing():
    """What is missing to drive Chromium, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    return ", ".join(missing) or None


def generate_certs(directory):
    subprocess.run(["bash", str(REPO / "certs" / "generate.sh"), str(directory)], check=True)
    return directory


def dashboard_config(certs):
    """TCP for the publishers, WSS for the page (the admin port comes from
    --admin-bind)."""
    return f"""
[[listeners]]
bind = "127.0.0.1:0"
protocol = "tcp"

[[listeners]]
bind = "127.0.0.1:0"
protocol = "wss"
[listeners.tls]
cert = "{certs}/server-chain.pem"
key = "{certs}/server.key"
"""


def start_browser(width=1400, height=860):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--ignore-certificate-errors",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    return driver


def wait_for(what, check, timeout=WAIT):
    """Polls `check()` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # the element may not exist yet
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_connected(driver):
    """Waits for the page's MQTT connection; on failure says what the page
    and the browser console said."""
    from selenium.webdriver.common.by import By

    state = driver.find_element(By.ID, "state")
    try:
        wait_for("the page to connect", lambda: state.get_attribute("data-state") == "connected")
    except AssertionError:
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        raise AssertionError(f"the page did not connect: {state.text!r}; console: {errors[-3:]}") from None


def publish(port, topic, payload, qos=1):
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic, "-m", payload],
        check=True,
        timeout=10,
    )


def text(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


@contextlib.contextmanager
def evidence_on_failure(driver, out_dir):
    """On any failure: a screenshot and the console log into `out_dir`."""
    try:
        yield
    except BaseException:
        shot = Path(out_dir) / "dashboard-failure.png"
        console = Path(out_dir) / "dashboard-console.log"
        try:
            driver.save_screenshot(str(shot))
            console.write_text("\n".join(str(e) for e in driver.get_log("browser")))
            print(f"\nscreenshot: {shot}\nbrowser console: {console}")
        except Exception as e:  # the browser itself may be gone
            print(f"\nno screenshot: {e}")
        raise


@pytest.fixture
def browser():
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the dashboard test, but {missing} is missing (tests/install-deps.sh)")
        pytest.skip(f"headless Chromium not available ({missing} missing; tests/install-deps.sh installs it)")
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def dash_broker(certs):
    b = Broker(config=dashboard_config(certs))
    yield b
    b.stop()


def reading(seq, temperature):
    return json.dumps({"temperature": temperature, "humidity": 40 + seq, "battery": 99 - seq, "seq": seq, "ts": int(time.time() * 1000)})


def test_dashboard_shows_live_topics_over_wss(browser, dash_broker, tmp_path):
    from selenium.webdriver.common.by import By

    admin, wss, tcp = dash_broker.ports["admin"], dash_broker.ports["wss"], dash_broker.ports["tcp"]
    # The page's own view of the listeners, which it chooses from.
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/dashboard/config.json", timeout=5) as r:
        cfg = json.load(r)
    assert {"protocol": "wss", "port": wss, "path": "/mqtt"} in cfg["listeners"], cfg

    browser.get(f"http://127.0.0.1:{admin}/dashboard/#topics")
    with evidence_on_failure(browser, tmp_path):
        wait_connected(browser)
        assert text(browser, "#url") == f"wss://127.0.0.1:{wss}/mqtt"
        assert text(browser, "#rate") == "0.0"

        topics = [f"sensors/site-{s}/sensor-00{s}/telemetry" for s in (1, 2, 3)]
        for seq in (1, 2, 3):
            for i, topic in enumerate(topics):
                publish(tcp, topic, reading(seq, 20.5 + i + seq / 10))
        # Not matched by the default filter sensors/#: must not show up.
        publish(tcp, "alerts/site-1/boiler", '{"severity": 4}')

        for i, topic in enumerate(topics):
            row = f'#tree .row[data-topic="{topic}"]'
            wait_for(f"the row of {topic}", lambda: text(browser, row + " .count") == "3")
            assert f"temperature {20.5 + i + 0.3:g}" in text(browser, row + " .value")
            assert text(browser, row + " .age").endswith(" s")
        # The levels above the topics are rows of the tree too.
        assert text(browser, '#tree .row[data-path="sensors"] .count') == "3 topics"
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-topic^="alerts/"]')
        rate = float(wait_for("a positive rate", lambda: float(text(browser, "#rate")) > 0 and text(browser, "#rate")))
        assert 0 < rate <= 10 / 5, rate  # 9 messages within the 5 s window
        assert text(browser, "#total") == "9"
        assert text(browser, "#topic-count") == "3"

        # The first topic with numbers is selected and charted.
        chart = browser.find_element(By.ID, "chart")
        wait_for("the chart to have points", lambda: int(chart.get_attribute("data-points")) == 3)
        assert chart.get_attribute("data-field") == "temperature"
        assert chart.get_attribute("data-topic") in topics

        # Selecting another topic and field re-targets the chart.
        browser.find_element(By.CSS_SELECTOR, f'#tree .row[data-topic="{topics[2]}"]').click()
        wait_for("the chart to follow the selection", lambda: chart.get_attribute("data-topic") == topics[2])
        # The field list is rebuilt for the selected topic: pick from the
        # new one (a click on the old list's option raced the rebuild).
        browser.find_element(By.CSS_SELECTOR, '#field option[value="humidity"]').click()
        wait_for("the chart to follow the field", lambda: chart.get_attribute("data-field") == "humidity")
        assert json.loads(text(browser, "#payload"))["humidity"] == 43

        # A new filter: the tree starts over with what matches it.
        box = browser.find_element(By.ID, "filter")
        box.clear()
        box.send_keys("alerts/#\n")
        wait_for("the old topics to go", lambda: not browser.find_elements(By.CSS_SELECTOR, "#tree .row[data-topic]"))
        time.sleep(0.3)  # the UNSUBSCRIBE/SUBSCRIBE round trip
        publish(tcp, "alerts/site-2/pump", '{"severity": 5, "msg": "dry run"}')
        publish(tcp, topics[0], reading(4, 30.0))
        wait_for("the alert", lambda: "severity 5" in text(browser, '#tree .row[data-topic="alerts/site-2/pump"] .value'))
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-topic^="sensors/"]')


def test_dashboard_speaks_mqtt_311_and_plain_ws(browser, certs, tmp_path):
    """?mqtt=4 makes the page speak 3.1.1; with only a ws listener it uses it."""
    b = Broker(config='[[listeners]]\nbind = "127.0.0.1:0"\nprotocol = "tcp"\n\n'
                      '[[listeners]]\nbind = "127.0.0.1:0"\nprotocol = "ws"\nws_path = "/live"\n')
    try:
        admin, ws, tcp = b.ports["admin"], b.ports["ws"], b.ports["tcp"]
        browser.get(f"http://127.0.0.1:{admin}/dashboard/?mqtt=4&filter=plant/%2B/temp#topics")
        with evidence_on_failure(browser, tmp_path):
            from selenium.webdriver.common.by import By

            wait_connected(browser)
            assert text(browser, "#url") == f"ws://127.0.0.1:{ws}/live"
            assert browser.find_element(By.ID, "filter").get_attribute("value") == "plant/+/temp"
            publish(tcp, "plant/7/temp", "81.5", qos=0)
            publish(tcp, "plant/7/pressure", "2", qos=0)
            wait_for("the reading", lambda: text(browser, '#tree .row[data-topic="plant/7/temp"] .value') == "81.5")
            chart = browser.find_element(By.ID, "chart")
            wait_for("the chart", lambda: chart.get_attribute("data-field") == "value")
            assert not browser.find_elements(By.CSS_SELECTOR, '[data-topic="plant/7/pressure"]')
            # The broker sees a 3.1.1 client.
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/v1/clients?q=dashboard-", timeout=5) as r:
                clients = json.load(r)["items"]
            assert [c["protocol"] for c in clients] == ["3.1.1"], clients
    finally:
        b.stop()


def make_screenshot(out):
    """The README's picture: nine simulated sensors for 40 s, one selected."""
    sim = REPO / "target" / "debug" / "examples" / "sensor_sim"
    if not sim.exists():
        sys.exit(f"{sim} not found: cargo build --example sensor_sim")
    certs = generate_certs(tempfile.mkdtemp(prefix="sluice-dash-certs-"))
    broker = Broker(config=dashboard_config(certs))
    driver = start_browser(1400, 900)
    proc = None
    try:
        driver.get(f"http://127.0.0.1:{broker.ports['admin']}/dashboard/#topics")
        wait_connected(driver)
        proc = subprocess.Popen(
            [str(sim), "--port", str(broker.ports["tcp"]), "--count", "9", "--rate", "2", "--duration", "45"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(40)
        driver.find_element("css selector", '#tree .row[data-topic="sensors/site-2/sensor-005/telemetry"]').click()
        time.sleep(0.6)
        driver.save_screenshot(str(out))
        print(f"saved {out}")
    finally:
        if proc:
            proc.kill()
            proc.wait()
        driver.quit()
        broker.stop()
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--screenshot":
        make_screenshot(Path(sys.argv[2]).resolve())
    else:
        sys.exit(f"usage: {sys.argv[0]} --screenshot OUT.png  (the tests run under pytest)")
