#!/usr/bin/env python3
"""Sluice, Mosquitto and rumqttd side by side, with the project's load
generator (sluice-bench), on 127.0.0.1.

    python3 examples/bench/compare.py [--rounds 3] [--duration 10] [--only SCENARIO,...]
                                      [--brokers sluice,sluice-1t,mosquitto,rumqttd] [--out DIR]
                                      [--baseline PATH]

Installs what is missing (Debian's mosquitto, `cargo install rumqttd
--version 0.20.0`, matplotlib), builds Sluice in release mode, then runs
every scenario against every broker, alternating brokers within each
round, ROUNDS times. Prints the medians and the ratios, and writes
DIR/results.json, DIR/results.md (the table for BENCHMARKS.md) and
DIR/chart.png. `--baseline PATH` adds the broker "sluice-baseline": another
Sluice binary (e.g. a release build of an earlier commit) run with the same
settings, for before/after comparisons in one run. Every broker runs in memory, with limits raised so that no
broker drops messages for a slow subscriber. Each run is bounded by
--duration (plus a warm-up); the whole comparison stops by itself.
"""

import argparse
import json
import resource
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import free_port, stop, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "target", "release", "sluice-bench")
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
# Set by --baseline: the binary run as broker "sluice-baseline".
BASELINE = ""

# name -> (description, sluice-bench arguments, the metric compared, unit)
SCENARIOS = {
    "fanin_q0": ("fan-in QoS 0, 50 → 1, closed loop", ["--qos", "0", "fanin", "-p", "50", "-s", "1"], "received_per_sec", "msg/s"),
    "fanin_q0_open": ("fan-in QoS 0, 50 → 1, open loop", ["--qos", "0", "--max-owed", "0", "fanin", "-p", "50", "-s", "1"], "received_per_sec", "msg/s"),
    "fanout_q0": ("fan-out QoS 0, 1 → 100, closed loop", ["--qos", "0", "fanout", "-s", "100"], "received_per_sec", "deliveries/s"),
    "fanout_q0_open": ("fan-out QoS 0, 1 → 100, open loop", ["--qos", "0", "--max-owed", "0", "fanout", "-s", "100"], "received_per_sec", "deliveries/s"),
    "pairs_q1": ("pairs QoS 1 ×50, max", ["--qos", "1", "--inflight", "100", "pairs", "-n", "50"], "received_per_sec", "msg/s"),
    "pairs_q1_20k": ("pairs QoS 1 ×50 at 20k msg/s, p99 latency", ["--qos", "1", "--rate", "20000", "pairs", "-n", "50"], "p99_us", "µs"),
    # 18,000, not 20,000: this machine's hard open-file limit is 20,000 per
    # process, and the generator needs a descriptor per connection too.
    "conn_18k": ("18,000 idle connections, keep alive 300", ["conn", "-n", "18000", "--source-addresses", "4"], "rss_per_connection", "B/conn"),
}

LOWER_IS_BETTER = {"p99_us", "rss_per_connection"}

# Sluice as shipped (one worker thread per core), and with one worker
# thread: on 2 cores shared with the generator, one thread costs less CPU
# per message (no cross-thread wake-ups), as Mosquitto's single thread does.
SLUICE_VARIANTS = {"sluice": {}, "sluice-1t": {"SLUICE__WORKER_THREADS": "1"}}






def ensure_tools(brokers):
    if "mosquitto" in brokers and not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"], check=True)
    if "rumqttd" in brokers and not shutil.which("rumqttd"):
        # Without --locked: its lockfile pins a `metrics` release that no
        # longer builds with current Rust.
        subprocess.run(["cargo", "install", "rumqttd", "--version", "0.20.0"], check=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sluice", "--bin", "sluice-bench"], cwd=ROOT, check=True)


def start_broker(name, workdir):
    """Starts one broker on a free port; returns (process, port)."""
    port = free_port()
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    if name in SLUICE_VARIANTS or name == "sluice-baseline":
        env = dict(os.environ)
        env.update({
            "SLUICE__LOG_LEVEL": "warn",
            "SLUICE__SYS_INTERVAL": "0",
            "SLUICE__LIMITS__MAX_QUEUED_MESSAGES": "10000000",
            "SLUICE__LIMITS__MAX_QUEUED_BYTES": "4000000000",
            "SLUICE__LIMITS__MAX_TOTAL_QUEUED_BYTES": "16000000000",
            "SLUICE__LIMITS__MAX_INFLIGHT_MESSAGES": "1000",
        })
        env.update(SLUICE_VARIANTS.get(name, {}))
        exe = BASELINE if name == "sluice-baseline" else SLUICE
        cmd = [exe, "--bind", f"127.0.0.1:{port}", "--in-memory", "--admin-bind", "127.0.0.1:0"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    elif name == "mosquitto":
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(
                f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 10000000\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
                "max_connections -1\nlog_type error\n"
            )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        proc = subprocess.Popen([exe, "-c", conf], stdout=log, stderr=log)
    elif name == "rumqttd":
        conf = os.path.join(workdir, "rumqttd.toml")
        with open(conf, "w") as f:
            f.write(
                "id = 0\n[router]\nid = 0\nmax_connections = 200000\nmax_outgoing_packet_count = 1000\n"
                "max_segment_size = 104857600\nmax_segment_count = 10\n"
                f"[v4.1]\nname = \"v4-1\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n"
                "[v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 20480\n"
                "max_inflight_count = 1000\ndynamic_filters = true\n"
            )
        proc = subprocess.Popen(["rumqttd", "-c", conf, "-q"], stdout=log, stderr=log)
    else:
        raise ValueError(name)
    wait_port(port, proc)
    return proc, port




def run_one(broker, scenario, args, workdir):
    proc, port = start_broker(broker, workdir)
    try:
        cmd = [BENCH, "--port", str(port), "--duration", str(args.duration), "--warmup", str(args.warmup),
               "--broker-pid", str(proc.pid), "--json", "--prefix", f"cmp{int(time.time() * 1000) % 100000}"]
        cmd += SCENARIOS[scenario][1]
        timeout = args.duration + args.warmup + 120
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if not out.stdout.strip():
            return {"error": out.stderr.strip()[-500:]}
        r = json.loads(out.stdout)
        r["exit_code"] = out.returncode
        return r
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    finally:
        stop(proc)


def value(result, metric):
    if "error" in result:
        return None
    if metric == "p99_us":
        return (result.get("latency_us") or {}).get("p99")
    return result.get(metric)


def per_cpu(result):
    cpu = result.get("broker_cpu_s")
    if not cpu:
        return None
    return result.get("received", 0) / cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--only", default="")
    p.add_argument("--brokers", default="sluice,sluice-1t,mosquitto,rumqttd")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "bench-compare"))
    p.add_argument("--baseline", default="", help="another sluice binary, run as broker sluice-baseline")
    args = p.parse_args()
    global BASELINE
    BASELINE = os.path.abspath(args.baseline) if args.baseline else ""
    if "sluice-baseline" in args.brokers.split(",") and not BASELINE:
        p.error("broker sluice-baseline needs --baseline PATH")
    # Thousands of connections need as many descriptors in the generator
    # and the broker (both inherit this limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    brokers = args.brokers.split(",")
    scenarios = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    ensure_tools(brokers)
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="sluice-compare-")
    raw = {s: {b: [] for b in brokers} for s in scenarios}
    for rnd in range(args.rounds):
        for s in scenarios:
            order = brokers[rnd % len(brokers):] + brokers[:rnd % len(brokers)]
            for b in order:
                r = run_one(b, s, args, workdir)
                raw[s][b].append(r)
                v = value(r, SCENARIOS[s][2])
                print(f"round {rnd + 1} {s:15} {b:10} {v if v is not None else r.get('error', '?')}", flush=True)
    summary = {}
    for s in scenarios:
        metric = SCENARIOS[s][2]
        summary[s] = {}
        for b in brokers:
            vals = [value(r, metric) for r in raw[s][b]]
            vals = [v for v in vals if v is not None]
            cpus = [per_cpu(r) for r in raw[s][b] if "error" not in r]
            cpus = [c for c in cpus if c]
            lost = [r.get("lost", 0) for r in raw[s][b] if "error" not in r]
            summary[s][b] = {
                "median": statistics.median(vals) if vals else None,
                "runs": vals,
                "msgs_per_broker_cpu_s": statistics.median(cpus) if cpus else None,
                "lost_max": max(lost) if lost else None,
                "conn_per_s": statistics.median([r["connects_per_sec"] for r in raw[s][b] if "connects_per_sec" in r]) if any("connects_per_sec" in r for r in raw[s][b]) else None,
            }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"raw": raw, "summary": summary, "args": vars(args)}, f, indent=1)
    ours_names = [b for b in brokers if b in SLUICE_VARIANTS]
    with_baseline = "sluice-baseline" in brokers and "sluice" in brokers
    header = " | ".join(f"{b} vs best other" for b in ours_names)
    if with_baseline:
        header += " | sluice vs sluice-baseline"
    lines = ["| scenario | " + " | ".join(brokers) + f" | {header} (>1: Sluice better) |",
             "|---" * (len(brokers) + 1 + len(ours_names) + int(with_baseline)) + "|"]
    for s in scenarios:
        desc, _, metric, unit = SCENARIOS[s]
        cells = []
        for b in brokers:
            m = summary[s][b]["median"]
            cell = "n/a" if m is None else f"{m:,.0f} {unit}"
            cpu = summary[s][b]["msgs_per_broker_cpu_s"]
            if s == "pairs_q1_20k" and cpu:
                cell += f" ({cpu / 1000:,.0f}k msg/CPU-s)"
            cps = summary[s][b]["conn_per_s"]
            if s.startswith("conn") and cps:
                cell += f", {cps:,.0f} conn/s"
            cells.append(cell)
        others = [summary[s][b]["median"] for b in brokers
                  if b not in SLUICE_VARIANTS and b != "sluice-baseline" and summary[s][b]["median"]]
        ratios = [ratio_of(summary[s][name]["median"], others, metric) for name in ours_names]
        if with_baseline:
            before = summary[s]["sluice-baseline"]["median"]
            ratios.append(ratio_of(summary[s]["sluice"]["median"], [before] if before else [], metric))
        lines.append(f"| {desc} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    print()
    print(table)
    chart(summary, scenarios, brokers, os.path.join(args.out, "chart.png"))
    shutil.rmtree(workdir, ignore_errors=True)


def ratio_of(ours, others, metric):
    """Ours against the best of `others`, as a factor where >1 is better."""
    if not ours or not others:
        return "n/a"
    best = min(others) if metric in LOWER_IS_BETTER else max(others)
    return f"{best / ours:.2f}×" if metric in LOWER_IS_BETTER else f"{ours / best:.2f}×"


def chart(summary, scenarios, brokers, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(4, len(scenarios))
    rows = (len(scenarios) + cols - 1) // cols
    fig, grid = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(scenarios):]:
        ax.axis("off")
    colors = {"sluice": "#1f77b4", "sluice-1t": "#17becf", "sluice-baseline": "#9ecae1", "mosquitto": "#7f7f7f", "rumqttd": "#ff7f0e"}
    for ax, s in zip(axes, scenarios):
        desc, _, metric, unit = SCENARIOS[s]
        vals = [summary[s][b]["median"] or 0 for b in brokers]
        ax.bar(brokers, vals, color=[colors.get(b, "#999") for b in brokers])
        ax.set_title(desc, fontsize=8, wrap=True)
        ax.set_ylabel(unit + (" (lower is better)" if metric in LOWER_IS_BETTER else ""), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
