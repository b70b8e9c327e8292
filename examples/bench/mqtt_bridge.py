#!/usr/bin/env python3
"""MQTT bridge throughput against publishing to the remote directly, on
127.0.0.1, the remote being Debian's mosquitto (persistence off: its own
disk is not what is measured).

    python3 examples/bench/mqtt_bridge.py [--seconds 8] [--rounds 3]

Direct: sluice-bench publishes QoS 1 (50 publishers, 64 bytes) to the
remote and one subscriber there receives them; the rate is what it
received per second. Bridge: the same load goes to a Sluice edge (store on,
the bridge's disk buffer with fsync) whose MQTT bridge forwards it to the
remote at QoS 1; the rate is the bridge's `delivered` counter (messages the
remote acknowledged) over the window. Prints medians and the ratio.
Bounded: every process stops by itself.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

from common import bridge_rate, free_port, stop, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")
MOSQUITTO = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else "mosquitto"


def start_remote(workdir):
    port = free_port()
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
                "max_queued_messages 1000000\nmax_inflight_messages 100\nlog_dest none\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port


def bench(port, seconds, prefix):
    out = subprocess.run(
        [os.path.join(REL, "sluice-bench"), "--port", str(port), "--qos", "1", "--duration", str(seconds),
         "--warmup", "1", "--prefix", prefix, "--json", "fanin", "-p", "50", "-s", "1"],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def direct(workdir, seconds):
    remote, port = start_remote(workdir)
    try:
        return bench(port, seconds, "direct")["received_per_sec"]
    finally:
        stop(remote)


def bridged(workdir, seconds):
    remote, remote_port = start_remote(workdir)
    try:
        return bridge_rate(REL, workdir, f"""[[bridges]]
name = "cloud"
filters = ["mb/#"]
[bridges.sink]
kind = "mqtt"
address = "127.0.0.1:{remote_port}"
protocol = 5
client_id = "bench-edge"
topic = "cloud/{{topic}}"
qos = 1
""", "cloud", "mb", seconds)
    finally:
        stop(remote)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sluice", "--bin", "sluice-bench"],
                   cwd=ROOT, check=True)
    d, b = [], []
    for rnd in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="sluice-mb-") as workdir:
            d.append(direct(workdir, args.seconds))
            b.append(bridged(workdir, args.seconds))
        print(f"round {rnd + 1}: direct {d[-1]:,.0f} msg/s, bridge {b[-1]:,.0f} msg/s", flush=True)
    md, mb = statistics.median(d), statistics.median(b)
    print(f"median: direct to mosquitto {md:,.0f} msg/s, through the bridge {mb:,.0f} msg/s "
          f"({100 * mb / md:.0f}% of direct)")


if __name__ == "__main__":
    main()
