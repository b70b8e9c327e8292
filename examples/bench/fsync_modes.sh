#!/usr/bin/env bash
# Throughput cost of durability: the same QoS 1 load (N publisher/subscriber
# pairs, persistent subscriber sessions, so every message must be stored)
# against Sluice in memory and with each fsync mode. Bounded: each run lasts
# DURATION seconds after a 1 s warm-up, on 127.0.0.1 only.
#
#   bash examples/bench/fsync_modes.sh [PAIRS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${1:-20}
DURATION=${2:-5}
PORT=${PORT:-18900}
cargo build --release --quiet --bin sluice --bin sluice-bench
B=target/release
DATA=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$DATA"' EXIT
for mode in memory never batch always; do
    rm -rf "$DATA/store"
    if [ "$mode" = memory ]; then extra=(--in-memory); else extra=(--data-dir "$DATA/store"); fi
    # Queues big enough that no message is dropped for a slow subscriber.
    # The same limits as compare.py gives Sluice.
    SLUICE__FSYNC=${mode/memory/batch} SLUICE__LOG_LEVEL=warn SLUICE__SYS_INTERVAL=0 \
    SLUICE__LIMITS__MAX_QUEUED_MESSAGES=10000000 SLUICE__LIMITS__MAX_QUEUED_BYTES=4000000000 \
    SLUICE__LIMITS__MAX_TOTAL_QUEUED_BYTES=16000000000 \
    SLUICE__LIMITS__MAX_INFLIGHT_MESSAGES=1000 \
        "$B/sluice" --bind "127.0.0.1:$PORT" --admin-bind 127.0.0.1:0 "${extra[@]}" 2>/dev/null &
    pid=$!
    sleep 0.5
    printf '%-7s ' "$mode"
    "$B/sluice-bench" --port "$PORT" --qos 1 --duration "$DURATION" --warmup 1 --inflight 1000 \
        --persistent-subscribers --broker-pid "$pid" --json pairs -n "$PAIRS" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_us"]; print("%9.0f msg/s  %9.0f msg/broker-CPU-s  p50 %s us  p99 %s us  lost %s" % (r["received_per_sec"], r["received_per_broker_cpu_s"] or 0, l["p50"], l["p99"], r["lost"]))'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
