#!/usr/bin/env python3
"""Sluice, Mosquitto and rumqttd side by side, with the project's load
generator (sluice-bench), on 127.0.0.1.

    python3 examples/bench/compare.py [--rounds 3] [--duration 10] [--only SCENARIO,...]
                                      [--brokers sluice,sluice-1t,mosquitto,rumqttd,null] [--out DIR]
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

Broker "null" is sluice-bench's reflector, a null broker that only answers
and forwards: what the generator reaches against it is the generator's
ceiling on this machine (it shares the cores with the reflector, so the
true ceiling is higher still). A broker result near that ceiling measures
the generator, not the broker.

The durable scenarios (*_durable) run against the Sluice variants only,
each twice per round: with persistence on (`fsync = "batch"`, a fresh data
directory per run) and in memory, both with persistent subscriber sessions
so that every message must be stored; results.md reports the ratio.
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
    "pairs_q2": ("pairs QoS 2 ×50, max", ["--qos", "2", "--inflight", "100", "pairs", "-n", "50"], "received_per_sec", "msg/s"),
    "pairs_q2_20k": ("pairs QoS 2 ×50 at 20k msg/s, p99 latency", ["--qos", "2", "--rate", "20000", "pairs", "-n", "50"], "p99_us", "µs"),
    # 18,000, not 20,000: this machine's hard open-file limit is 20,000 per
    # process, and the generator needs a descriptor per connection too.
    "conn_18k": ("18,000 idle connections, keep alive 300", ["conn", "-n", "18000", "--source-addresses", "4"], "rss_per_connection", "B/conn"),
    # The same, each connection subscribed (QoS 1) to a topic of its own, as
    # devices that listen for commands are: a subscription costs a broker
    # memory too (notes in BENCHMARKS.md).
    "conn_18k_sub": ("18,000 idle connections, keep alive 300, one subscription each", ["--qos", "1", "conn", "-n", "18000", "--source-addresses", "4", "--subscribe"], "rss_per_connection", "B/conn"),
    "pairs_q1_durable": ("pairs QoS 1 ×50, max, durable (fsync batch)", ["--qos", "1", "--inflight", "100", "--persistent-subscribers", "pairs", "-n", "50"], "received_per_sec", "msg/s"),
    "pairs_q1_20k_durable": ("pairs QoS 1 ×50 at 20k msg/s, durable (fsync batch), p99 latency", ["--qos", "1", "--rate", "20000", "--persistent-subscribers", "pairs", "-n", "50"], "p99_us", "µs"),
}

# Run against the Sluice variants only, durable and in memory (see above).
DURABLE = {"pairs_q1_durable", "pairs_q1_20k_durable"}

# Rows of the table read from another scenario's runs:
# name -> (description, source scenario, metric, unit).
DERIVED = {
    "conn_18k_rate": ("connect rate, 18,000 connections", "conn_18k", "connects_per_sec", "conn/s"),
}

LOWER_IS_BETTER = {"p99_us", "rss_per_connection"}

# The reflector: never counted as "best other", labelled as the ceiling.
NULL = "null"

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


def is_sluice(name):
    return name in SLUICE_VARIANTS or name == "sluice-baseline"


def start_broker(name, workdir, data_dir=None):
    """Starts one broker on a free port; returns (process, port). With
    `data_dir` (Sluice only), persistence is on with fsync "batch"."""
    port = free_port()
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    if is_sluice(name):
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
        cmd = [exe, "--bind", f"127.0.0.1:{port}", "--admin-bind", "127.0.0.1:0"]
        if data_dir:
            env["SLUICE__PERSISTENCE"] = "true"
            env["SLUICE__FSYNC"] = "batch"
            cmd += ["--data-dir", data_dir]
        else:
            cmd += ["--in-memory"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    elif name == NULL:
        proc = subprocess.Popen([BENCH, "--port", str(port), "reflector"], stdout=log, stderr=log)
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




def run_one(broker, scenario, args, workdir, durable=False):
    data_dir = tempfile.mkdtemp(prefix="store-", dir=workdir) if durable else None
    proc, port = start_broker(broker, workdir, data_dir)
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
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


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
    raw = {s: {b: [] for b in brokers_of(s, brokers)} for s in scenarios}
    # The in-memory twin of each durable run, same arguments.
    raw_mem = {s: {b: [] for b in brokers_of(s, brokers)} for s in scenarios if s in DURABLE}
    for rnd in range(args.rounds):
        for s in scenarios:
            names = brokers_of(s, brokers)
            order = names[rnd % len(names):] + names[:rnd % len(names)] if names else []
            for b in order:
                r = run_one(b, s, args, workdir, durable=s in DURABLE)
                raw[s][b].append(r)
                v = value(r, SCENARIOS[s][2])
                print(f"round {rnd + 1} {s:20} {b:10} {v if v is not None else r.get('error', '?')}", flush=True)
                if s in DURABLE:
                    r = run_one(b, s, args, workdir)
                    raw_mem[s][b].append(r)
                    v = value(r, SCENARIOS[s][2])
                    print(f"round {rnd + 1} {s:20} {b + ' (mem)':10} {v if v is not None else r.get('error', '?')}", flush=True)
    rows = scenarios + [d for d, (_, src, _, _) in DERIVED.items() if src in scenarios]
    summary = {row: {b: summarize(raw[source(row)][b], metric_of(row)) for b in raw[source(row)]} for row in rows}
    for s in raw_mem:
        for b, runs in raw_mem[s].items():
            mem = summarize(runs, metric_of(s))
            summary[s][b]["in_memory_median"] = mem["median"]
            summary[s][b]["in_memory_msgs_per_broker_cpu_s"] = mem["msgs_per_broker_cpu_s"]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"raw": raw, "raw_in_memory": raw_mem, "summary": summary, "args": vars(args)}, f, indent=1)
    text = "\n\n".join(t for t in (
        main_table(summary, rows, brokers),
        per_cpu_table(summary, rows, brokers),
        durable_table(summary, [s for s in scenarios if s in DURABLE]),
    ) if t)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    chart(summary, rows, brokers, os.path.join(args.out, "chart.png"))
    shutil.rmtree(workdir, ignore_errors=True)


def brokers_of(scenario, brokers):
    """The brokers a scenario runs against: the Sluice variants only for
    the durable ones."""
    return [b for b in brokers if is_sluice(b)] if scenario in DURABLE else list(brokers)


def source(row):
    return DERIVED[row][1] if row in DERIVED else row


def metric_of(row):
    return DERIVED[row][2] if row in DERIVED else SCENARIOS[row][2]


def describe(row):
    """(description, metric, unit) of a table row."""
    if row in DERIVED:
        desc, _, metric, unit = DERIVED[row]
        return desc, metric, unit
    desc, _, metric, unit = SCENARIOS[row]
    return desc, metric, unit


def summarize(runs, metric):
    ok = [r for r in runs if "error" not in r]
    vals = [v for v in (value(r, metric) for r in runs) if v is not None]
    cpus = [c for c in (per_cpu(r) for r in ok) if c]
    lost = [r.get("lost", 0) for r in ok]
    rates = [r["connects_per_sec"] for r in ok if "connects_per_sec" in r]
    return {
        "median": statistics.median(vals) if vals else None,
        "runs": vals,
        "msgs_per_broker_cpu_s": statistics.median(cpus) if cpus else None,
        "lost_max": max(lost) if lost else None,
        "conn_per_s": statistics.median(rates) if rates else None,
    }


def column(b):
    return "null (generator ceiling)" if b == NULL else b


def ratio_columns(brokers):
    """Sluice variants compared with the best other broker (not the
    reflector, not the baseline), and sluice with its baseline."""
    ours = [b for b in brokers if b in SLUICE_VARIANTS]
    heads = [f"{b} vs best other" for b in ours]
    if "sluice-baseline" in brokers and "sluice" in brokers:
        heads.append("sluice vs sluice-baseline")
    return ours, heads


def ratios(cells_of, brokers, lower_is_better):
    """The ratio cells of one row; `cells_of(b)` is broker b's median."""
    ours, heads = ratio_columns(brokers)
    others = [cells_of(b) for b in brokers if not is_sluice(b) and b != NULL and cells_of(b)]
    out = [ratio_of(cells_of(b), others, lower_is_better) for b in ours]
    if "sluice vs sluice-baseline" in heads:
        before = cells_of("sluice-baseline")
        out.append(ratio_of(cells_of("sluice"), [before] if before else [], lower_is_better))
    return out


def table(heads, lines):
    return "\n".join(["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
                     + ["| " + " | ".join(cells) + " |" for cells in lines])


def main_table(summary, rows, brokers):
    _, ratio_heads = ratio_columns(brokers)
    heads = ["scenario"] + [column(b) for b in brokers] + [h + " (>1: Sluice better)" for h in ratio_heads]
    lines = []
    for row in rows:
        desc, metric, unit = describe(row)
        cells = []
        for b in brokers:
            m = summary[row].get(b, {}).get("median")
            # The reflector's own memory says nothing about the generator.
            absent = b not in summary[row] or (b == NULL and metric == "rss_per_connection")
            cells.append("—" if absent else "n/a" if m is None else f"{m:,.0f} {unit}")
        med = lambda b: summary[row].get(b, {}).get("median")
        lines.append([desc] + cells + ratios(med, brokers, metric in LOWER_IS_BETTER))
    return table(heads, lines)


def per_cpu_table(summary, rows, brokers):
    """Messages (fan-out: deliveries) received per broker CPU-second."""
    _, ratio_heads = ratio_columns(brokers)
    heads = ["messages received per broker CPU-second"] + [column(b) for b in brokers] + ratio_heads
    lines = []
    for row in rows:
        if row in DERIVED or SCENARIOS[row][2] == "rss_per_connection":
            continue
        cpu = lambda b: summary[row].get(b, {}).get("msgs_per_broker_cpu_s")
        cells = ["—" if b not in summary[row] else "n/a" if not cpu(b) else f"{cpu(b):,.0f}" for b in brokers]
        lines.append([describe(row)[0]] + cells + ratios(cpu, brokers, False))
    return table(heads, lines)


def durable_table(summary, durable_rows):
    lines = []
    for row in durable_rows:
        desc, metric, unit = describe(row)
        for b, m in summary[row].items():
            dur, mem = m.get("median"), m.get("in_memory_median")
            ratio = f"{dur / mem:.2f}" if dur and mem else "n/a"
            cpu_d, cpu_m = m.get("msgs_per_broker_cpu_s"), m.get("in_memory_msgs_per_broker_cpu_s")
            lines.append([desc, b, "n/a" if dur is None else f"{dur:,.0f} {unit}",
                          "n/a" if mem is None else f"{mem:,.0f} {unit}", ratio,
                          f"{cpu_d:,.0f}" if cpu_d else "n/a", f"{cpu_m:,.0f}" if cpu_m else "n/a"])
    if not lines:
        return ""
    return table(["durable scenario", "broker", "durable", "in memory", "durable / in memory",
                  "msg per broker CPU-s durable", "in memory"], lines)


def ratio_of(ours, others, lower_is_better):
    """Ours against the best of `others`, as a factor where >1 is better."""
    if not ours or not others:
        return "n/a"
    best = min(others) if lower_is_better else max(others)
    return f"{best / ours:.2f}×" if lower_is_better else f"{ours / best:.2f}×"


def chart(summary, rows, brokers, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(4, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig, grid = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.2 * nrows), squeeze=False)
    axes = [ax for r in grid for ax in r]
    for ax in axes[len(rows):]:
        ax.axis("off")
    colors = {"sluice": "#1f77b4", "sluice-1t": "#17becf", "sluice-baseline": "#9ecae1", "mosquitto": "#7f7f7f",
              "rumqttd": "#ff7f0e", NULL: "#d9d9d9"}
    for ax, row in zip(axes, rows):
        desc, metric, unit = describe(row)
        # The null broker's own memory says nothing about the generator.
        names = [b for b in brokers if b in summary[row] and not (b == NULL and metric == "rss_per_connection")]
        vals = [summary[row][b]["median"] or 0 for b in names]
        ax.bar(names, vals, color=[colors.get(b, "#999") for b in names])
        ax.set_title(desc, fontsize=8, wrap=True)
        ax.set_ylabel(unit + (" (lower is better)" if metric in LOWER_IS_BETTER else ""), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
