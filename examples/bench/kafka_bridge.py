#!/usr/bin/env python3
"""Kafka bridge end to end against direct rdkafka production, to the same
Kafka-protocol peer (tansu, in memory), on 127.0.0.1.

    python3 examples/bench/kafka_bridge.py [--seconds 10] [--rounds 3]

Direct: examples/kafka_produce.rs produces 64-byte records as fast as an
idempotent acks=all producer awaiting 5000 records at a time (the sink's
default `max_in_flight`) allows. Bridge:
sluice-bench publishes QoS 1 (50 publishers, 64 bytes) to topics a Kafka
bridge subscribes to; the rate is the bridge's `delivered` counter (records
acknowledged by Kafka) over the measured window. Prints medians and the
ratio. Bounded: every process stops by itself.
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


def start_tansu(workdir):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.path.join(workdir, "tansu.log"), "w")
    proc = subprocess.Popen(
        ["tansu", "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"], stdout=log, stderr=log)
    wait_port(port)
    for topic in ("direct", "bridged"):
        subprocess.run(["tansu", "topic", "create", "--broker", url, "--partitions", "1", topic],
                       check=True, capture_output=True, timeout=30)
    return proc, f"127.0.0.1:{port}"


def direct(bootstrap, count):
    out = subprocess.run([os.path.join(REL, "examples", "kafka_produce"), bootstrap, "direct", str(count)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["per_sec"]


def bridged(bootstrap, workdir, seconds):
    return bridge_rate(REL, workdir, f"""[[bridges]]
name = "kafka"
filters = ["kb/#"]
# The generator's payloads are binary: forwarded as they are.
on_decode_error = "pass"
[bridges.sink]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "bridged"
key = "{{topic.2}}"
""", "kafka", "kb", seconds)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--count", type=int, default=300000, help="records per direct run")
    args = p.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sluice", "--bin", "sluice-bench",
                    "--example", "kafka_produce"], cwd=ROOT, check=True)
    d, b = [], []
    for rnd in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="sluice-kb-") as workdir:
            tansu, bootstrap = start_tansu(workdir)
            try:
                d.append(direct(bootstrap, args.count))
                b.append(bridged(bootstrap, workdir, args.seconds))
            finally:
                stop(tansu)
        print(f"round {rnd + 1}: direct {d[-1]:,.0f} rec/s, bridge {b[-1]:,.0f} rec/s", flush=True)
    md, mb = statistics.median(d), statistics.median(b)
    print(f"median: direct rdkafka {md:,.0f} records/s, through the bridge {mb:,.0f} records/s "
          f"({100 * mb / md:.0f}% of direct)")


if __name__ == "__main__":
    main()
