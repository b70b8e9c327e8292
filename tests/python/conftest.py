"""Fixtures for the paho-mqtt (v2 API) interoperability tests.

The `broker` fixture runs the real `sluice` binary (``$SLUICE_BIN``, else
``target/debug/sluice``) on an ephemeral port, reads the port from its
"listening ... addr=127.0.0.1:PORT" log line and kills it afterwards.
`mqtt` builds connected clients (see `helpers.Client`) and closes them.
"""

import os
import shutil
import tempfile
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from helpers import Client

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0


def sluice_bin() -> str:
    path = os.environ.get("SLUICE_BIN") or str(REPO / "target" / "debug" / "sluice")
    if not os.path.exists(path):
        pytest.exit(f"sluice binary not found at {path} (cargo build, or set SLUICE_BIN)", 2)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsCluster:
    """Three nats-server processes clustered with JetStream on loopback,
    for SLUICE_TEST_CLUSTER runs (the suite against a node of a cluster)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-py-nats-")
        ports = [(free_port(), free_port()) for _ in range(3)]
        routes = ",".join(f"nats://127.0.0.1:{c}" for _, c in ports)
        self.procs = []
        for i, (client, cluster) in enumerate(ports):
            log = open(os.path.join(self.dir, f"n{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                ["nats-server", "-a", "127.0.0.1", "-p", str(client), "-js",
                 "-sd", os.path.join(self.dir, f"n{i}"), "--server_name", f"n{i}",
                 "--cluster_name", "pytest", "--cluster", f"nats://127.0.0.1:{cluster}",
                 "--routes", routes], stdout=log, stderr=log))
        self.urls = [f"nats://127.0.0.1:{c}" for c, _ in ports]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


NATS = None
CLUSTERS = 0


def cluster_table(node: str, prefix: str) -> str:
    """The [cluster] table of a node of the current test's cluster."""
    global NATS
    if NATS is None:
        NATS = NatsCluster()
    servers = ", ".join(f'"{u}"' for u in NATS.urls)
    return (f'\n[cluster]\nservers = [{servers}]\nnode_name = "{node}"\n'
            f'prefix = "{prefix}"\nredeliver_after_secs = 3\n')


class Broker:
    """A running sluice process. With SLUICE_TEST_CLUSTER=1 in the
    environment, node 0 of a fresh three-node cluster (its own subject
    prefix on a NATS cluster shared by the run): the suite then checks a
    cluster node as clients see it."""

    def __init__(self, env_overrides=None, config=None):
        self.peers = []
        if os.environ.get("SLUICE_TEST_CLUSTER") and not (env_overrides or {}).get("peer"):
            global CLUSTERS
            CLUSTERS += 1
            prefix = f"t{os.getpid()}x{CLUSTERS}"
            if config is None:
                config = '[[listeners]]\nbind = "127.0.0.1:0"\n'
            for i in (1, 2):
                peer_config = '[[listeners]]\nbind = "127.0.0.1:0"\n' + cluster_table(f"node{i}", prefix)
                self.peers.append(Broker({"peer": "1"}, peer_config))
            config += cluster_table("node0", prefix)
        self._start(env_overrides, config)

    def _start(self, env_overrides, config):
        env_overrides = {k: v for k, v in (env_overrides or {}).items() if k != "peer"}
        env = dict(os.environ)
        env["RUST_LOG"] = "sluice=info"
        env.update(env_overrides or {})
        # Each broker gets its own store, removed when it stops.
        self.data_dir = tempfile.mkdtemp(prefix="sluice-py-")
        args = [sluice_bin(), "--data-dir", os.path.join(self.data_dir, "store")]
        # Tests run side by side: never the default admin port.
        args += ["--admin-bind", "127.0.0.1:0"]
        if config is None:
            args += ["--bind", "127.0.0.1:0"]
        else:
            # A configuration brings its own listeners (port 0 each).
            path = os.path.join(self.data_dir, "sluice.toml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        self.ports = {}
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.log = []
        self.port = None
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                if "listening" in line:
                    m = re.search(r"addr=127\.0\.0\.1:(\d+)", line)
                    proto = re.search(r'protocol="?(\w+)', line)
                    if m:
                        if self.port is None:
                            self.port = int(m.group(1))
                        if proto:
                            self.ports.setdefault(proto.group(1), int(m.group(1)))
                if "sluice started" in line and "[cluster]" not in (config or ""):
                    found.set()
                if "stream and retained bucket ready" in line:
                    found.set()
            found.set()  # EOF: the process is gone

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        if not found.wait(STARTUP_TIMEOUT) or self.port is None:
            self.stop()
            raise RuntimeError("sluice did not report its listening address:\n" + "\n".join(self.log))

    def stop(self):
        for peer in self.peers:
            peer.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=2)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def nats_cluster():
    """Stops the NATS cluster of a SLUICE_TEST_CLUSTER run at its end."""
    yield
    if NATS is not None:
        NATS.stop()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()


@pytest.fixture
def broker_factory():
    """Starts brokers with extra SLUICE__... environment settings."""
    started = []

    def start(**env):
        b = Broker(env)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture(params=[mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def version(request):
    return request.param


@pytest.fixture
def mqtt_client(broker):
    """`mqtt_client(version, client_id="", **connect_kwargs)` -> connected Client."""
    clients = []

    def make(version, client_id="", connect=True, port=None, manual_ack=False, **kwargs):
        c = Client(port or broker.port, version, client_id, manual_ack=manual_ack)
        clients.append(c)
        if connect:
            c.connect(**kwargs)
        return c

    yield make
    for c in clients:
        c.close()
    # Let the broker finish with closing sockets before it is killed.
    time.sleep(0.01)


@pytest.fixture(scope="session")
def certs():
    """A development CA, server and client certificates from
    certs/generate.sh, made once per run (test only)."""
    d = tempfile.mkdtemp(prefix="sluice-certs-")
    subprocess.run(["bash", str(REPO / "certs" / "generate.sh"), d], check=True, capture_output=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)
