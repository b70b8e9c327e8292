#!/usr/bin/env python3
"""Cluster mode against a single node, in one run, on 127.0.0.1.

    python3 examples/bench/cluster.py [--seconds 8] [--rounds 3] [--setups single,cluster2]

Setups, each loaded by sluice-bench `pairs` (50 publishers, each to its own
topic, 50 subscribers, 64-byte payloads, closed loop) at QoS 0 and QoS 1,
and at QoS 1 with persistent subscribers (clean start 0: a single node
stores what it queues for them, a cluster feeds them from their JetStream
consumers):

- single:   one Sluice, no cluster (the default), store on;
- cluster1: one Sluice node in cluster mode, publishers and subscribers on it;
- cluster2: two nodes, publishers on node 1, subscribers on node 2;
- cluster3: three nodes, publishers on node 1, subscribers spread over
            nodes 2 and 3.

Every cluster setup uses the same three nats-server processes (JetStream,
streams with 3 replicas), started once; each setup gets its own subject
prefix. Prints the delivered rate and publish-to-delivery latency (median
of the rounds), and the cores the Sluice processes and the NATS servers
kept busy over each load (from /proc: where the CPU goes). Needs `nats-server` on PATH (tests/install-deps.sh) and
builds the release binaries itself. Bounded: every process stops by itself.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import free_port, stop, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = os.path.join(ROOT, "target", "release")


def start_nats(workdir, n=3):
    ports = [(free_port(), free_port()) for _ in range(n)]
    routes = ",".join(f"nats://127.0.0.1:{c}" for _, c in ports)
    procs = []
    for i, (client, cluster) in enumerate(ports):
        log = open(os.path.join(workdir, f"nats{i}.log"), "w")
        procs.append(subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(client), "-js", "-sd",
             os.path.join(workdir, f"nats{i}"), "--server_name", f"n{i}",
             "--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{cluster}",
             "--routes", routes], stdout=log, stderr=log))
    for (client, _), p in zip(ports, procs):
        wait_port(client, p)
    time.sleep(3)  # a JetStream meta leader
    return procs, [f"nats://127.0.0.1:{c}" for c, _ in ports]


def start_node(workdir, name, cluster=None):
    port = free_port()
    conf = os.path.join(workdir, f"{name}.toml")
    text = f'sys_interval = 0\nlog_level = "warn"\n[[listeners]]\nbind = "127.0.0.1:{port}"\n'
    text += "[limits]\nmax_queued_messages = 1000000\nmax_queued_bytes = 1000000000\n"
    if cluster:
        servers, prefix = cluster
        urls = ", ".join(f'"{u}"' for u in servers)
        text += f'[cluster]\nservers = [{urls}]\nnode_name = "{name}"\nprefix = "{prefix}"\n'
    with open(conf, "w") as f:
        f.write(text)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    proc = subprocess.Popen([os.path.join(REL, "sluice"), "--config", conf, "--data-dir",
                             os.path.join(workdir, f"{name}-data"), "--admin-bind", "127.0.0.1:0"],
                            stdout=log, stderr=log)
    wait_port(port, proc)
    return proc, port


def cpu_seconds(procs):
    """User plus system CPU time the processes used so far."""
    total = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def load(pub_ports, sub_ports, qos, seconds, prefix, rate=0, persistent=False):
    out = subprocess.run(
        [os.path.join(REL, "sluice-bench"), "--qos", str(qos), "--duration", str(seconds),
         "--rate", str(rate),
         "--warmup", "2", "--prefix", prefix, "--json",
         "--pub-ports", ",".join(map(str, pub_ports)),
         "--sub-ports", ",".join(map(str, sub_ports))]
        + (["--persistent-subscribers"] if persistent else [])
        + ["pairs", "-n", "50"],
        capture_output=True, text=True, timeout=seconds + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def setup(workdir, kind, nats_urls):
    if kind == "single":
        proc, port = start_node(workdir, "single")
        return [proc], [port], [port]
    n = int(kind[-1])
    nodes = [start_node(workdir, f"{kind}n{i}", (nats_urls, kind)) for i in range(n)]
    time.sleep(3)  # stream and bucket ready, interest propagated
    ports = [p for _, p in nodes]
    subs = ports[1:] if n > 1 else ports
    return [p for p, _ in nodes], ports[:1], subs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--setups", default="single,cluster1,cluster2,cluster3")
    # Full speed (throughput; latency is then queueing), and QoS 1 at a
    # fixed 2,000 msg/s (latency of one message); QoS 1 again with
    # persistent subscribers (in a cluster, fed from their JetStream
    # consumers). Each load is qos:rate:c (clean) or qos:rate:p.
    ap.add_argument("--loads", default="0:0:c,1:0:c,1:2000:c,1:0:p,1:2000:p")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release"],
                   cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="sluice-cluster-bench-")
    nats, urls = start_nats(workdir)
    results = {}
    try:
        for r in range(a.rounds):
            for kind in a.setups.split(","):
                procs, pubs, subs = setup(workdir, kind, urls)
                try:
                    loads = [(int(q), int(r), kind_ == "p")
                             for q, r, kind_ in (l.split(":") for l in a.loads.split(","))]
                    for qos, rate, persistent in loads:
                        tag = f"b{r}{kind}q{qos}r{rate}{'p' if persistent else ''}"
                        # Cores busy in Sluice and in NATS over the whole
                        # load (connects, warm-up and drain included).
                        before = cpu_seconds(procs), cpu_seconds(nats), time.monotonic()
                        res = load(pubs, subs, qos, a.seconds, tag, rate, persistent)
                        span = time.monotonic() - before[2]
                        cpu = [(after - b) / span
                               for after, b in zip((cpu_seconds(procs), cpu_seconds(nats)), before)]
                        res["cores"] = cpu
                        results.setdefault((kind, qos, rate, persistent), []).append(res)
                        print(kind, f"qos{qos}", f"rate{rate}", "persistent" * persistent,
                              round(res["received_per_sec"]),
                              "msg/s p50", res["latency_us"]["p50"], "us p99",
                              res["latency_us"]["p99"], "lost", res["lost"],
                              "cores: sluice %.2f nats %.2f" % tuple(cpu), flush=True)
                finally:
                    for p in procs:
                        stop(p)
    finally:
        for p in nats:
            stop(p)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n| setup | QoS | subscribers | offered | delivered msg/s | p50 latency | p99 latency | lost "
          "| cores: Sluice | cores: NATS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (kind, qos, rate, persistent), runs in results.items():
        med = lambda f: statistics.median(f(x) for x in runs)
        offered = f"{rate:,}/s" if rate else "full speed"
        subscribers = "persistent" if persistent else "clean"
        print(f"| {kind} | {qos} | {subscribers} | {offered} | {med(lambda x: x['received_per_sec']):,.0f} | "
              f"{med(lambda x: x['latency_us']['p50']) / 1000:.2f} ms | "
              f"{med(lambda x: x['latency_us']['p99']) / 1000:.2f} ms | "
              f"{sum(x['lost'] for x in runs)} | {med(lambda x: x['cores'][0]):.2f} | "
              f"{med(lambda x: x['cores'][1]):.2f} |")


if __name__ == "__main__":
    main()
