"""Process and port helpers shared by the benchmark scripts."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port():
    """A port nothing listens on now (bind to 0 and let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=15):
    """Waits until 127.0.0.1:port accepts; fails if `proc` exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc, grace=15):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bridge_rate(rel, workdir, bridge_toml, name, prefix, seconds):
    """Starts sluice (store on) with one bridge `name` (its `[[bridges]]`
    table in `bridge_toml`, filtering `prefix/#`), loads it with
    sluice-bench (QoS 1, 50 publishers) and returns the bridge's
    `delivered` counter per second over `seconds`."""
    port, admin = free_port(), free_port()
    conf = os.path.join(workdir, "sluice.toml")
    with open(conf, "w") as f:
        f.write(f"""sys_interval = 0
log_level = "warn"
[[listeners]]
bind = "127.0.0.1:{port}"
[limits]
max_queued_messages = 10000000
max_queued_bytes = 4000000000
{bridge_toml}""")

    def delivered():
        url = f"http://127.0.0.1:{admin}/api/v1/bridges/{name}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["delivered"]

    log = open(os.path.join(workdir, "sluice.log"), "w")
    proc = subprocess.Popen([os.path.join(rel, "sluice"), "--config", conf, "--data-dir",
                             os.path.join(workdir, "data"), "--admin-bind", f"127.0.0.1:{admin}"],
                            stdout=log, stderr=log)
    try:
        wait_port(port, proc)
        wait_port(admin, proc)
        load = subprocess.Popen(
            [os.path.join(rel, "sluice-bench"), "--port", str(port), "--qos", "1", "--duration",
             str(seconds + 4), "--warmup", "0", "--prefix", prefix, "--json", "fanin", "-p", "50", "-s", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        a, ta = delivered(), time.time()
        time.sleep(seconds)
        b, tb = delivered(), time.time()
        load.wait(timeout=seconds + 120)
        return (b - a) / (tb - ta)
    finally:
        stop(proc)
